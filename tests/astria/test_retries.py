"""Astria's error rules: which errors are final, how reads retry, and creates that never
duplicate and never lose the job (DESIGN.md, "Astria API rules")."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from pydantic import SecretStr

from bot.astria import (
    AstriaAuthError,
    AstriaBadRequest,
    AstriaClient,
    AstriaConnectionLost,
    AstriaGatewayTimeout,
    AstriaNotFound,
    AstriaPaymentRefused,
    AstriaRateLimited,
    AstriaTimeout,
    AstriaUnavailable,
    AstriaValidationError,
    PromptRequest,
    RetryPolicy,
    TuneRequest,
)
from bot.offline.emulator import Emulator, EmulatorConfig, Fault
from tests.conftest import KEY, POLICY, FakeTime, MakeClient, photo


def request(title: str) -> TuneRequest:
    return TuneRequest(title=title, name="woman", images=[photo(i) for i in range(4)])


# ---------------------------------------------------------------- final errors


async def test_422_is_final_and_names_the_fields(client: AstriaClient, emulator: Emulator):
    with pytest.raises(AstriaValidationError) as caught:
        await client.create_tune(TuneRequest(title="no-photos", name="man"))
    assert "images" in caught.value.fields
    assert "images" in caught.value.plain()
    assert emulator.counters["POST /tunes"] == 1  # never retried


async def test_wrong_key_is_an_auth_error(make_client: MakeClient, emulator: Emulator):
    client = make_client(key="sd_wrong")
    with pytest.raises(AstriaAuthError) as caught:
        await client.get_user()
    assert "sd_wrong" not in str(caught.value)
    assert emulator.counters["GET /users"] == 1


async def test_unknown_ids_are_not_found(client: AstriaClient):
    with pytest.raises(AstriaNotFound):
        await client.get_tune(999_999_999)
    with pytest.raises(AstriaNotFound):
        await client.get_prompt(999_999_999)


async def test_page_over_the_limit_is_a_bad_request(client: AstriaClient):
    assert len(await client.list_tunes(limit=120)) == 0
    with pytest.raises(AstriaBadRequest):
        await client.list_tunes(limit=121)
    with pytest.raises(AstriaBadRequest):
        await client.list_tunes(offset=201)


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(api_key=KEY, train_seconds=60, prompt_seconds=10)


async def test_short_balance_is_refused_and_not_charged(client: AstriaClient, emulator: Emulator):
    emulator.balance_mc = 1_000
    with pytest.raises(AstriaPaymentRefused):
        await client.create_tune(
            TuneRequest(title="pricey", name="man", images=[photo()], branch="flux1")
        )
    assert emulator.tunes_with_title("pricey") == []
    assert emulator.balance_mc == 1_000 and emulator.charges == []


async def test_fast_is_free_and_paid_branches_charge(client: AstriaClient, emulator: Emulator):
    start = (await client.get_user()).usd_balance_mc
    free = await client.create_tune(
        TuneRequest(title="f", name="man", images=[photo()], branch="fast")
    )
    paid = await client.create_tune(
        TuneRequest(title="p", name="man", images=[photo()], branch="sd15")
    )
    assert (free.cost_mc or 0) == 0
    assert paid.cost_mc == emulator.config.tune_price_mc["sd15"]
    assert (await client.get_user()).usd_balance_mc == start - paid.cost_mc


# ---------------------------------------------------------------- reads retry


def test_backoff_doubles_from_the_base_and_is_capped():
    policy = RetryPolicy(base_delay=30, max_delay=200)
    assert [policy.backoff(n) for n in range(1, 6)] == [30, 60, 120, 200, 200]


async def test_reads_retry_5xx_with_exponential_backoff(
    client: AstriaClient, emulator: Emulator, fake_time: FakeTime
):
    emulator.faults.script("GET /users", Fault("http_500"), Fault("http_502"), Fault("http_500"))
    user = await client.get_user()
    assert user.id
    assert fake_time.sleeps == [0.25, 0.5, 1.0]
    assert emulator.counters["GET /users"] == 4


async def test_reads_give_up_after_max_attempts(
    client: AstriaClient, emulator: Emulator, fake_time: FakeTime
):
    emulator.faults.script("GET /users", *[Fault("http_504")] * POLICY.max_attempts)
    with pytest.raises(AstriaGatewayTimeout) as caught:
        await client.get_user()
    assert "HTML" in str(caught.value)  # 5xx pages are HTML; we say so, not dump them
    assert emulator.counters["GET /users"] == POLICY.max_attempts


async def test_429_honours_retry_after_for_every_request(
    client: AstriaClient, emulator: Emulator, fake_time: FakeTime
):
    emulator.faults.script("GET /users", Fault("http_429", retry_after=3))
    await client.get_user()
    assert fake_time.sleeps == [3.0]
    # The pause is over: nothing more to wait for.
    await client.get_user()
    assert fake_time.sleeps == [3.0]


async def test_429_pause_is_shared_by_other_requests(
    make_client: MakeClient, emulator: Emulator, fake_time: FakeTime
):
    client = make_client(policy=RetryPolicy(max_attempts=1, base_delay=0.25, lookup_wait=7))
    emulator.faults.script("GET /users", Fault("http_429", retry_after=5))
    with pytest.raises(AstriaRateLimited) as caught:
        await client.get_user()
    assert caught.value.retry_after == 5
    await client.list_tunes()  # waits for the pause before its own request
    assert fake_time.sleeps == [5.0]


async def test_dropped_connection_and_timeout_are_their_own_errors(
    make_client: MakeClient, emulator: Emulator
):
    client = make_client(policy=RetryPolicy(max_attempts=1, timeout=0.2))
    # aiohttp itself re-sends an idempotent request once when the connection drops.
    emulator.faults.script("GET /users", Fault("drop"), Fault("drop"))
    with pytest.raises(AstriaConnectionLost) as lost:
        await client.get_user()
    assert not isinstance(lost.value, AstriaTimeout)
    emulator.faults.script("GET /users", Fault("latency", delay=1.0))
    with pytest.raises(AstriaTimeout):
        await client.get_user()
    assert (await client.get_user()).id  # no fault left: fine again


async def test_connection_refused_is_unavailable_and_not_ambiguous(session: aiohttp.ClientSession):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed at once: nothing listens there
    client = AstriaClient(
        session,
        SecretStr(KEY),
        base_url=f"http://127.0.0.1:{port}",
        policy=RetryPolicy(max_attempts=1),
    )
    with pytest.raises(AstriaUnavailable) as caught:
        await client.get_user()
    assert not caught.value.ambiguous


# ---------------------------------------------------------------- creates: exactly once

AMBIGUOUS_AFTER = ["http_504_after", "drop_after", "http_500_after"]
LOST_BEFORE = ["http_504", "drop", "http_500"]


@pytest.mark.parametrize("idempotency", [False, True], ids=["idem-off", "idem-on"])
@pytest.mark.parametrize("kind", AMBIGUOUS_AFTER + LOST_BEFORE)
async def test_lost_tune_create_ends_in_exactly_one_tune_that_is_returned(
    make_client: MakeClient, emulator: Emulator, kind: str, idempotency: bool
):
    emulator.config.idempotency = idempotency
    client = make_client(idempotency=idempotency)
    emulator.faults.script("POST /tunes", Fault(kind))  # type: ignore[arg-type]
    tune = await client.create_tune(request("uuid-1"))
    at_astria = emulator.tunes_with_title("uuid-1")
    assert [t["id"] for t in at_astria] == [tune.id]
    assert len([c for c in emulator.charges if c.kind == "tune"]) == 1


@pytest.mark.parametrize("idempotency", [False, True], ids=["idem-off", "idem-on"])
@pytest.mark.parametrize("kind", AMBIGUOUS_AFTER + LOST_BEFORE)
async def test_lost_prompt_create_ends_in_exactly_one_prompt_that_is_returned(
    make_client: MakeClient, emulator: Emulator, kind: str, idempotency: bool
):
    emulator.config.idempotency = idempotency
    client = make_client(idempotency=idempotency)
    tune = await client.create_tune(request("for-prompts"))
    emulator.faults.script("POST /tunes/{tune_id}/prompts", Fault(kind))  # type: ignore[arg-type]
    prompt = await client.create_prompt(tune.id, PromptRequest(text="sks woman", seed=42))
    assert [p["id"] for p in emulator.prompts_for(tune.id)] == [prompt.id]


async def test_504_after_create_without_idempotency_looks_up_instead_of_posting(
    client: AstriaClient, emulator: Emulator, fake_time: FakeTime
):
    emulator.faults.script("POST /tunes", Fault("http_504_after"))
    tune = await client.create_tune(request("uuid-2"))
    assert emulator.counters["POST /tunes"] == 1  # found by the lookup, never re-posted
    assert fake_time.sleeps == [POLICY.lookup_wait]
    assert tune.title == "uuid-2"


async def test_lost_create_is_reposted_only_after_two_empty_lookups(
    client: AstriaClient, emulator: Emulator, fake_time: FakeTime
):
    emulator.faults.script("POST /tunes", Fault("drop"))
    await client.create_tune(request("uuid-3"))
    assert emulator.counters["POST /tunes"] == 2
    assert emulator.counters["GET /tunes"] == 2
    assert fake_time.sleeps == [POLICY.lookup_wait, POLICY.lookup_wait]


async def test_500_on_create_waits_the_backoff_then_looks_up(
    client: AstriaClient, emulator: Emulator, fake_time: FakeTime
):
    emulator.faults.script("POST /tunes", Fault("http_500"), Fault("http_500"))
    await client.create_tune(request("uuid-4"))
    # Each 500: the backoff, a lookup, the lookup wait, a second lookup, then a re-post.
    assert fake_time.sleeps == [0.25, POLICY.lookup_wait, 0.5, POLICY.lookup_wait]
    assert emulator.counters["POST /tunes"] == 3
    assert len(emulator.tunes_with_title("uuid-4")) == 1


async def test_with_idempotency_a_504_reposts_the_same_title(
    make_client: MakeClient, emulator: Emulator, fake_time: FakeTime
):
    emulator.config.idempotency = True
    client = make_client(idempotency=True)
    emulator.faults.script("POST /tunes", Fault("http_504_after"), Fault("http_500_after"))
    tune = await client.create_tune(request("uuid-5"))
    assert emulator.counters["POST /tunes"] == 3
    assert emulator.counters["GET /tunes"] == 0  # no lookups needed
    assert fake_time.sleeps == [POLICY.lookup_wait, 0.5]
    assert [t["id"] for t in emulator.tunes_with_title("uuid-5")] == [tune.id]


async def test_429_on_create_is_reposted_after_the_pause(
    client: AstriaClient, emulator: Emulator, fake_time: FakeTime
):
    emulator.faults.script("POST /tunes", Fault("http_429", retry_after=2))
    await client.create_tune(request("uuid-6"))
    assert emulator.counters["POST /tunes"] == 2 and emulator.counters["GET /tunes"] == 0
    assert fake_time.sleeps == [2.0]


async def test_failed_lookup_keeps_the_create_ambiguous(client: AstriaClient, emulator: Emulator):
    emulator.faults.script("POST /tunes", Fault("http_504_after"))
    emulator.faults.script("GET /tunes", *[Fault("http_500")] * POLICY.max_attempts)
    with pytest.raises(AstriaGatewayTimeout) as caught:
        await client.create_tune(request("uuid-7"))
    assert caught.value.ambiguous  # the caller must look again later, not re-post
    assert emulator.counters["POST /tunes"] == 1


async def test_lookup_never_adopts_a_prompt_another_job_claims(
    client: AstriaClient, emulator: Emulator
):
    tune = await client.create_tune(request("shared-seed"))
    same = PromptRequest(text="sks woman, same words", seed=5)
    first = await client.create_prompt(tune.id, same)
    emulator.faults.script("POST /tunes/{tune_id}/prompts", Fault("http_504_after"))
    second = await client.create_prompt(tune.id, same, exclude_ids={first.id})
    assert second.id != first.id
    assert {p["id"] for p in emulator.prompts_for(tune.id)} == {first.id, second.id}
