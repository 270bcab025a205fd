"""The ledger's spend per UTC day for the chart: the 30 days ending today, by member and
kind of job, held and settled spend in, grants out, a refund on the day it was charged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.rules.spending import SpendRow
from bot.store import JobKind, JobRef, Reservation, Store
from tests.store.helpers import TUNE_MC, ManualClock, Stores

TODAY = date(2026, 12, 3)
FIRST = TODAY - timedelta(days=29)


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Stores]:
    opened = Stores(tmp_path)
    yield opened
    await opened.close_all()


async def reserve(store: Store, job: JobRef, user: int, amount: int, guild: int = 1) -> None:
    held = await store.ledger.reserve(guild_id=guild, user_id=user, job=job, amount_mc=amount)
    assert isinstance(held, Reservation), held


def at(day: date, hour: int = 12, minute: int = 0, ms: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) + timedelta(
        milliseconds=ms
    )


async def test_spend_per_utc_day_member_and_kind_over_the_last_30_days(stores: Stores):
    clock = ManualClock(at(FIRST - timedelta(days=1), 23, 59, 59_999))  # the day before
    store = await stores.open(clock=clock)
    await reserve(store, JobRef(JobKind.TUNE, 1), 7, TUNE_MC)
    clock.set(at(FIRST, 0))  # the window's first millisecond
    await reserve(store, JobRef(JobKind.TUNE, 2), 7, TUNE_MC)
    await store.ledger.settle(JobRef(JobKind.TUNE, 2), 140_000)  # settled below the price
    clock.set(at(TODAY - timedelta(days=5)))
    await reserve(store, JobRef(JobKind.PROMPT, 3), 8, 12_000)
    clock.set(
        at(TODAY - timedelta(days=4))
    )  # settled the next day: it still counts on the day it was reserved
    await store.ledger.settle(JobRef(JobKind.PROMPT, 3))
    await store.ledger.grant(guild_id=1, user_id=8, amount_mc=500_000, actor_id=1)
    await store.ledger.adjust(guild_id=1, user_id=8, amount_mc=-2_000, actor_id=1, note="fix")
    await reserve(store, JobRef(JobKind.PROMPT, 4), 8, 6_000, guild=2)  # another server
    clock.set(at(TODAY, 23, 59, 59_999))
    await reserve(store, JobRef(JobKind.PROMPT, 5), 7, 3_000)  # held, not settled yet
    await reserve(store, JobRef(JobKind.PROMPT, 6), 7, 9_000)
    await store.ledger.settle(JobRef(JobKind.PROMPT, 6))
    refund = await store.ledger.refund(JobRef(JobKind.PROMPT, 3), guild_id=1, actor_id=1)
    assert refund.amount_mc == 12_000

    today, rows = await store.ledger.daily_spend(1)
    assert today == TODAY
    assert sorted(rows, key=lambda r: (r.day, r.kind)) == [
        SpendRow(FIRST, 7, "tunes", 140_000),
        SpendRow(TODAY - timedelta(days=5), 8, "images", 0),  # refunded on its own day
        SpendRow(TODAY - timedelta(days=4), 8, "other", -2_000),
        SpendRow(TODAY, 7, "images", 12_000),
    ]
    _, mine = await store.ledger.daily_spend(1, user_id=8)
    assert {r.user_id for r in mine} == {8} and len(mine) == 2
    clock.advance(milliseconds=1)  # tomorrow: the first day leaves the window
    today, later = await store.ledger.daily_spend(1)
    assert today == TODAY + timedelta(days=1)
    assert all(r.day > FIRST for r in later) and len(later) == 3
