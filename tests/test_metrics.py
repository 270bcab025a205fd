"""The metrics (bot/metrics.py): their own registry each, Astria requests by route template
and status counted on the wire (real HTTP to the emulator), 429s from both sides, retries,
jobs and the ledger read from a real store at scrape, the delivery histogram, and an
endpoint that stays on loopback unless told otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.astria import AstriaClient, AstriaNotFound
from bot.astria.client import route_template
from bot.config import ConfigError, load_settings
from bot.metrics import BotMetrics, MetricsAddress, MetricsServer
from bot.offline.chaos import Scrape, scrape
from bot.offline.emulator import Emulator
from bot.offline.emulator.faults import Fault
from tests.conftest import KEY, POLICY, FakeTime
from tests.store.helpers import TUNE_MC, make_settings, open_store
from tests.store.test_repositories import make_prompt, make_tune


async def serve(metrics: BotMetrics) -> MetricsServer:
    server = MetricsServer(metrics, MetricsAddress("127.0.0.1", 0))
    await server.start()
    return server


async def scraped(server: MetricsServer) -> Scrape:
    async with aiohttp.ClientSession() as session, session.get(server.url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return scrape(await resp.text())


@pytest.fixture
async def metered(
    emulator: Emulator, fake_time: FakeTime
) -> AsyncIterator[tuple[BotMetrics, AstriaClient]]:
    metrics = BotMetrics()
    async with aiohttp.ClientSession(trace_configs=[metrics.astria_trace()]) as session:
        client = AstriaClient(
            session,
            SecretStr(KEY),
            base_url=emulator.base_url,
            policy=POLICY,
            sleep=fake_time.sleep,
            monotonic=fake_time.monotonic,
            on_retry=metrics.retried,
        )
        yield metrics, client


def test_routes_become_templates_never_ids():
    assert route_template("/tunes/123/prompts") == "/tunes/{tune_id}/prompts"
    assert route_template("/tunes/1/prompts/99") == "/tunes/{tune_id}/prompts/{id}"
    assert route_template("/tunes/5.json") == "/tunes/{id}"
    assert route_template("/prompts/7") == "/prompts/{id}"
    assert route_template("/users") == "/users"
    assert route_template("/odd/42") == "(other)"


def test_two_metrics_in_one_process_do_not_share_a_registry():
    first, second = BotMetrics(), BotMetrics()  # the global registry would refuse this
    first.retried("/users")
    assert scrape(first.exposition().decode()).total("astria_bot_astria_retries_total") == 1
    assert scrape(second.exposition().decode()).total("astria_bot_astria_retries_total") == 0


async def test_astria_requests_are_counted_by_route_and_status_as_the_emulator_saw_them(
    emulator: Emulator, metered: tuple[BotMetrics, AstriaClient]
):
    metrics, client = metered
    emulator.faults.script("GET /users", Fault("http_429", retry_after=0.1))
    await client.get_user()  # a 429, then the retry
    tune = await client.get_tune(next(iter(emulator.account.tunes)))
    with pytest.raises(AstriaNotFound):
        await client.get_tune(987654)
    await client.list_prompts(tune_id=tune.id)
    server = await serve(metrics)
    try:
        seen = await scraped(server)
    finally:
        await server.stop()
    assert (
        seen.value("astria_bot_astria_requests_total", method="GET", route="/users", status="429")
        == 1
    )
    assert (
        seen.value("astria_bot_astria_requests_total", method="GET", route="/users", status="200")
        == 1
    )
    assert (
        seen.value(
            "astria_bot_astria_requests_total", method="GET", route="/tunes/{id}", status="404"
        )
        == 1
    )
    assert seen.value("astria_bot_rate_limited_total", side="astria") == 1
    assert seen.value("astria_bot_astria_retries_total", route="/users") == 1
    assert seen.astria_by_route() == emulator.counters  # the emulator's own count, per route
    assert "987654" not in metrics.exposition().decode()  # no id became a label


async def test_aiohttp_s_silent_resend_on_a_dropped_kept_alive_connection_is_counted(
    emulator: Emulator, metered: tuple[BotMetrics, AstriaClient]
):
    """aiohttp sends a GET again by itself when a reused connection is dropped, inside one
    request as the client and the trace's start and end see it: the emulator receives
    two. Found by the chaos run's comparison; each send must be counted."""
    metrics, client = metered
    await client.get_user()  # the connection is now kept alive
    emulator.faults.script("GET /users", Fault("drop"))
    await client.get_user()  # dropped, re-sent by aiohttp, answered
    seen = scrape(metrics.exposition().decode())
    assert emulator.counters["GET /users"] == 3
    assert seen.astria_by_route() == emulator.counters
    assert (
        seen.value("astria_bot_astria_requests_total", method="GET", route="/users", status="error")
        == 1
    )
    assert seen.value("astria_bot_astria_retries_total", route="/users") == 1


async def test_discord_429s_are_counted_from_discord_py_s_session():
    metrics = BotMetrics()
    answers = iter([429, 200])

    async def handle(_: web.Request) -> web.Response:
        return web.json_response({"retry_after": 0.01}, status=next(answers))

    app = web.Application()
    app.router.add_get("/api/v10/channels/1", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession(trace_configs=[metrics.discord_trace()]) as session:
            for _ in range(2):
                async with session.get(f"http://127.0.0.1:{port}/api/v10/channels/1"):
                    pass
    finally:
        await runner.cleanup()
    seen = scrape(metrics.exposition().decode())
    assert seen.value("astria_bot_rate_limited_total", side="discord") == 1
    assert seen.value("astria_bot_rate_limited_total", side="astria") == 0
    assert seen.value("astria_bot_discord_requests_total", method="GET", status="200") == 1


async def test_jobs_queue_and_ledger_are_read_from_the_store_at_each_scrape(tmp_path: Path):
    store = await open_store(tmp_path / "bot.sqlite3")
    metrics = BotMetrics()
    server = await serve(metrics)
    server.store = store
    try:
        tune = await make_tune(store)  # queued, its price reserved
        seen = await scraped(server)
        assert seen.value("astria_bot_jobs", kind="tune", state="queued") == 1
        assert seen.value("astria_bot_queue_depth") == 1
        assert seen.value("astria_bot_ledger_mc", kind="reserve") == TUNE_MC
        await make_prompt(store, tune)
        await make_prompt(store, tune)
        seen = await scraped(server)  # read again, not cached
        assert seen.value("astria_bot_jobs", kind="prompt", state="queued") == 2
        assert seen.value("astria_bot_queue_depth") == 3
    finally:
        await server.stop()
        await store.close()


def test_delivery_latency_is_a_histogram_by_kind():
    metrics = BotMetrics()
    metrics.delivered("prompt", 0.4)
    metrics.delivered("prompt", 7.0)
    metrics.delivered("tune", 0.1)
    seen = scrape(metrics.exposition().decode())
    bucket = "astria_bot_delivery_latency_seconds_bucket"
    assert seen.value(bucket, kind="prompt", le="0.5") == 1
    assert seen.value(bucket, kind="prompt", le="10.0") == 2
    assert seen.value("astria_bot_delivery_latency_seconds_count", kind="tune") == 1


def test_the_endpoint_is_off_by_default_and_on_loopback_when_on():
    assert MetricsAddress.from_settings(make_settings()) is None
    on = MetricsAddress.from_settings(make_settings(metrics_port=9108))
    assert on == MetricsAddress("127.0.0.1", 9108)
    assert on.url == "http://127.0.0.1:9108/metrics"


def test_a_public_address_is_refused_unless_allowed():
    with pytest.raises(ConfigError) as refused:
        load_settings(_env_file=None, metrics_port=9108, metrics_host="0.0.0.0")
    message = str(refused.value)
    assert "METRICS_HOST=0.0.0.0" in message and "METRICS_ALLOW_PUBLIC=true" in message
    allowed = make_settings(
        metrics_port=9108,
        metrics_host="0.0.0.0",
        metrics_allow_public=True,
    )
    assert MetricsAddress.from_settings(allowed) == MetricsAddress("0.0.0.0", 9108)
    assert make_settings(metrics_host="::1").metrics_host == "::1"
    with pytest.raises(ConfigError, match="METRICS_PORT"):
        load_settings(_env_file=None, metrics_port=0)
