"""One Astria budget across OS processes (bot/store/budget.py): Astria's rate limit and
its 429 pauses are per account, so the processes on one database share one token bucket
and one pause. The `local` variants run the same checks on process-local limiters (what
each process had before) and must fail them: strict xfails, so the checks have teeth."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.offline.emulator import Emulator, Fault
from bot.store import AstriaBudget, Store
from bot.store.db import Database
from bot.store.errors import StoreFault
from tests.conftest import FakeTime, MakeClient
from tests.store.helpers import make_settings
from tests.store.test_processes import (
    WAIT,
    Location,
    database,
    read_line,
    run_together,
    spawn,
)

__all__ = ["database"]  # the fixture, shared with test_processes

RATE = 20.0  # requests per second, the account's
BURST = 4
PER_PROCESS = 40
WINDOW = 1.0  # seconds
# Scheduling jitter of a loaded host: a request woken late lands in the next window.
SLACK = 2

KINDS = [
    pytest.param("shared"),
    pytest.param(
        "local",
        marks=pytest.mark.xfail(
            strict=True, reason="process-local limiters let each process spend the budget"
        ),
    ),
]


def most_in_a_window(times: list[float], window: float) -> int:
    """The most acquisitions in any closed window of `window` seconds."""
    ordered = sorted(times)
    most, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] > window:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_the_window_count_counts_what_it_says():
    assert most_in_a_window([0.0, 0.5, 1.0, 1.01, 3.0], 1.0) == 3
    assert most_in_a_window([0.0, 0.0, 0.0], 1.0) == 3


async def acquisitions(database: Location, kind: str, processes: int) -> list[float]:
    workers = [
        await spawn("budget", database, kind, RATE, BURST, PER_PROCESS) for _ in range(processes)
    ]
    times = [t for report in await run_together(*workers) for t in report["times"]]
    assert len(times) == processes * PER_PROCESS
    return times


async def opened(database: Location) -> None:
    """Migrate once up front, so the workers' timing is not a migration's."""
    store = await Store.open(database, settings=make_settings())
    await store.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_two_processes_together_stay_inside_one_account_budget(database: Location, kind: str):
    await opened(database)
    times = await acquisitions(database, kind, processes=2)
    most = most_in_a_window(times, WINDOW)
    span = max(times) - min(times)
    print(f"\n{kind}: {len(times)} requests over {span:.2f} s, at most {most} in {WINDOW:g} s")
    assert most <= RATE * WINDOW + BURST + SLACK
    assert len(times) <= RATE * span + BURST + SLACK


@pytest.mark.parametrize("kind", KINDS)
async def test_a_429_met_by_one_process_pauses_the_other(database: Location, kind: str):
    await opened(database)
    met, other = await spawn("pause", database, kind), await spawn("pause", database, kind)
    try:
        for proc in (met, other):
            assert await read_line(proc) == "ready"
        assert met.stdin is not None and other.stdin is not None
        met.stdin.write(b"pause 1.5\n")  # its 429's Retry-After
        await met.stdin.drain()
        assert await read_line(met) == "paused"
        other.stdin.write(b"acquire\n")
        await other.stdin.drain()
        waited = json.loads(await read_line(other))["waited"]
        for proc in (met, other):
            proc.stdin.close()  # type: ignore[union-attr]
            assert await asyncio.wait_for(proc.wait(), WAIT) == 0
    finally:
        for proc in (met, other):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    # Most of the 1.5 s is left when the other asks (a pipe's round trip has passed).
    assert waited >= 1.0


async def test_the_client_shares_its_429_pause_through_the_budget(
    database: Location, make_client: MakeClient, emulator: Emulator, fake_time: FakeTime
):
    """Two clients, each on its own connections to the database as two processes are: a
    429 with Retry-After met by one makes the other's next request wait for it too."""
    first, second = await Database.open(database), await Database.open(database)
    try:
        met = make_client(limiter=AstriaBudget(first, 1000.0, 5, sleep=fake_time.sleep))
        others_time = FakeTime()  # the other process's own clock
        other = make_client(
            limiter=AstriaBudget(second, 1000.0, 5, sleep=others_time.sleep),
            sleep=others_time.sleep,
            monotonic=others_time.monotonic,
        )
        emulator.faults.script("GET /users", Fault("http_429", retry_after=30))
        await met.get_user()  # waits out the 429, then is answered
        assert fake_time.sleeps[0] == 30.0
        await other.get_user()
        # The database's clock has moved on by a moment since the 429, not by 30 s.
        assert len(others_time.sleeps) == 1 and 25.0 < others_time.sleeps[0] <= 30.0
        assert emulator.counters["GET /users"] == 3
    finally:
        await first.close()
        await second.close()


async def test_a_request_waiting_for_its_slot_when_a_pause_comes_takes_one_after_it(
    database: Location,
):
    """The pause is written while a request sleeps towards its slot (another process met
    the 429): the request does not go at its old slot inside the pause, it takes a new
    one after it."""
    first, second = await Database.open(database), await Database.open(database)
    try:
        other = AstriaBudget(second, 1.0, 1)
        sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            if not sleeps:
                await other.pause(30.0)  # met while this one waits
            sleeps.append(seconds)

        budget = AstriaBudget(first, 1.0, 1, sleep=sleep)  # one a second, no burst
        await budget.acquire()
        assert sleeps == []
        await budget.acquire()  # its slot is a second away; the pause comes meanwhile
        assert len(sleeps) == 2 and 0.5 < sleeps[0] <= 1.0 and 29.0 < sleeps[1] <= 30.0
    finally:
        await first.close()
        await second.close()


async def test_an_unreachable_database_leaves_the_process_spacing_its_own_requests(
    database: Location, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    db = await Database.open(database)
    try:
        sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)

        async def down(sql: str, params: object = ()) -> list[object]:
            raise StoreFault("database error: connection refused")

        budget = AstriaBudget(db, 4.0, 5, sleep=sleep)
        monkeypatch.setattr(db, "statement", down)
        for _ in range(3):
            await budget.acquire()
        await budget.pause(10.0)  # not shared, not raised: the client's own pause holds
        assert sleeps == [0.25, 0.25, 0.25]
        assert caplog.text.count("shared Astria request budget is unreachable") == 1
    finally:
        await db.close()
