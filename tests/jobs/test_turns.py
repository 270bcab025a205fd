"""Periodic duties with several processes (two trackers on one store, as two bot processes
would be): the balance watch and the daily retention are done by one process a period,
whichever takes its turn first (`Meta.take_turn`), not once by each. On SQLite and, with
TEST_DATABASE_URL, PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from bot.jobs import Tracker
from bot.store.retention import Pruned
from tests.jobs.conftest import Rig
from tests.pg import BACKENDS

REFRESH = 300.0  # seconds between the watch's readings (BALANCE_REFRESH_SECONDS)
DAY = 86_400.0


@pytest.fixture(params=BACKENDS)
def rig_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def process(rig: Rig, holder: str) -> Tracker:
    return rig.new_tracker(
        holder=holder,
        lease_seconds=30.0,
        sole_process=False,
        balance_refresh=timedelta(seconds=REFRESH),
    )


async def rounds(rig: Rig, *trackers: Tracker, seconds: float, times: int = 1) -> None:
    """Move time, then one round of each tracker, all at once (as processes run)."""
    for _ in range(times):
        await rig.emulator.advance(seconds)
        await asyncio.gather(*(tracker.poll_once() for tracker in trackers))


async def test_two_processes_read_the_balance_once_a_period_between_them(rig: Rig):
    a, b = process(rig, "a"), process(rig, "b")
    rig.tracker = a
    await rounds(rig, a, b, seconds=1)  # each reads once at start (before members may pay)
    started = rig.emulator.counters["GET /users"]
    assert started == 2
    await rounds(rig, a, b, seconds=REFRESH, times=12)
    # Twelve periods, one reading each (red before the turns: 24, one per process).
    assert rig.emulator.counters["GET /users"] - started == 12


async def test_two_processes_run_the_daily_retention_once_a_day_between_them(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
):
    runs: list[datetime] = []
    prune = rig.store.retention.prune

    async def counted(*, before: datetime) -> Pruned:
        runs.append(before)
        return await prune(before=before)

    monkeypatch.setattr(rig.store.retention, "prune", counted)
    a, b = process(rig, "a"), process(rig, "b")
    rig.tracker = a
    await rounds(rig, a, b, seconds=1)
    assert len(runs) == 1  # the first round of the first process; the other's is taken
    await rounds(rig, a, b, seconds=DAY / 4, times=12)  # three days, four rounds a day
    assert len(runs) == 4, runs  # red before the turns: 8, a pass a day by each


async def test_a_turn_is_one_caller_s_per_period_and_survives_a_clock_set_back(rig: Rig):
    meta, now = rig.store.meta, rig.now()
    every = timedelta(minutes=5)
    taken = await asyncio.gather(*(meta.take_turn("t", now=now, every=every) for _ in range(5)))
    assert sorted(taken) == [False] * 4 + [True]
    assert not await meta.take_turn("t", now=now + every / 2, every=every)
    assert await meta.take_turn("t", now=now + every, every=every)
    assert not await meta.take_turn("t", now=now + every, every=every)
    # The wall clock set back a day: the stored due time is far ahead; it is taken again
    # rather than waited for.
    assert await meta.take_turn("t", now=now - timedelta(days=1), every=every)
    assert not await meta.take_turn("t", now=now - timedelta(days=1), every=every)
