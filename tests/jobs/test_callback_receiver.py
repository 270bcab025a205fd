"""The callback endpoint over real HTTP on 127.0.0.1: anything but our own signature is a
403 without a traceback, and forged requests cannot flood the log."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
import yarl
from pydantic import SecretStr

from bot.jobs.callbacks import REFUSED_LOG_EVERY_SECONDS, CallbackReceiver, RefusalLog
from bot.jobs.signing import CALLBACK_PATH, signature

KEY = SecretStr(secrets.token_hex(32))
JOB = "prompt:7"


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Endpoint:
    base: str
    receiver: CallbackReceiver
    clock: Clock
    woken: list[str] = field(default_factory=list)

    async def post(self, query: str) -> int:
        """POST with the query exactly as given (already encoded), the status."""
        url = f"{self.base}{CALLBACK_PATH}?{query}"
        async with (
            aiohttp.ClientSession() as session,
            session.post(yarl.URL(url, encoded=True), json={"prompt": {}}) as response,
        ):
            await response.read()
            return response.status


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    clock = Clock()
    woken: list[str] = []

    def wake(job: str) -> bool:
        woken.append(job)
        return True

    receiver = CallbackReceiver(KEY, wake, refusals=RefusalLog(clock=clock))
    port = await receiver.start("127.0.0.1", 0)
    try:
        yield Endpoint(f"http://127.0.0.1:{port}", receiver, clock, woken)
    finally:
        await receiver.stop()


GOOD = signature(KEY, JOB)

BAD_QUERIES = [
    pytest.param("job=prompt:7&sig=%C3%A9" + "a" * 31, id="non-ascii"),
    pytest.param("job=prompt:7&sig=" + "%C3%A9" * 16, id="non-ascii-only"),
    pytest.param("job=prompt:7&sig=%FF%FE" + "a" * 30, id="not-utf8"),
    pytest.param("job=prompt:7&sig=deadbeef", id="short"),
    pytest.param("job=prompt:7&sig=" + GOOD + "00", id="long"),
    pytest.param("job=prompt:7&sig=" + GOOD.upper(), id="upper-case"),
    pytest.param("job=prompt:7&sig=" + "z" * 32, id="not-hex"),
    pytest.param("job=prompt:7&sig=", id="empty"),
    pytest.param("job=prompt:7", id="missing"),
    pytest.param("sig=" + GOOD, id="no-job"),
    pytest.param("job=prompt:8&sig=" + GOOD, id="other-job"),
    pytest.param("job=" + "%E2%80%AE" * 40 + "&sig=" + GOOD, id="non-ascii-job"),
    pytest.param("job=prompt:7&sig=%00" + "a" * 31, id="nul"),
    pytest.param("job=prompt:7&sig=" + "a" * 4000, id="huge"),
]


@pytest.mark.parametrize("query", BAD_QUERIES)
async def test_any_signature_that_is_not_ours_is_a_403_without_a_traceback(
    endpoint: Endpoint, query: str, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    assert await endpoint.post(query) == 403
    assert endpoint.woken == [] and endpoint.receiver.refused == 1
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []


async def test_our_signature_wakes_the_job(endpoint: Endpoint):
    assert await endpoint.post(f"job={JOB}&sig={GOOD}") == 200
    assert endpoint.woken == [JOB] and endpoint.receiver.accepted == 1


async def test_forged_callbacks_log_one_line_a_minute_with_a_count(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="bot.jobs.callbacks")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "bot.jobs.callbacks"]

    for _ in range(200):
        assert await endpoint.post(f"job={JOB}&sig=deadbeef") == 403
    assert len(lines()) == 1 and "more refused" not in lines()[0]
    endpoint.clock.now += REFUSED_LOG_EVERY_SECONDS - 0.5
    assert await endpoint.post(f"job={JOB}&sig=deadbeef") == 403
    assert len(lines()) == 1  # still inside the minute
    endpoint.clock.now += 1.0
    assert await endpoint.post(f"job={JOB}&sig=deadbeef") == 403
    assert len(lines()) == 2 and "200 more refused" in lines()[1]
    assert endpoint.receiver.refused == 202
    # A real callback is never held back by the refusals around it.
    assert await endpoint.post(f"job={JOB}&sig={GOOD}") == 200
    assert endpoint.woken == [JOB]


async def test_a_malformed_request_is_refused_quietly_too(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture
):
    """A request line past aiohttp's limit never reaches the handler: a 400, counted in the
    same one-a-minute line, no traceback."""
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        assert await endpoint.post("job=prompt:7&sig=" + "a" * 10_000) == 400
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "malformed request" in warnings[0]
