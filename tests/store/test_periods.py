"""Budget days and months in a non-UTC zone: 23:59 local counts in that day, 00:00 in the
next, and a job closed after midnight stays in the period it was reserved in."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.store import BudgetLimit, Refusal, Reservation, Store
from tests.store.helpers import TUNE_MC, ManualClock, Stores, job

LA = ZoneInfo("America/Los_Angeles")
AUCKLAND = ZoneInfo("Pacific/Auckland")
LAST_MS = timedelta(milliseconds=1)


async def reserve(store: Store, number: int) -> Reservation | Refusal:
    return await store.ledger.reserve(guild_id=1, user_id=7, job=job(number), amount_mc=TUNE_MC)


async def test_los_angeles_day_ends_at_local_midnight(stores: Stores):
    clock = ManualClock(datetime(2025, 7, 4, 23, 59, 59, 999_000, tzinfo=LA))
    store = await stores.open(
        clock=clock,
        budget_timezone="America/Los_Angeles",
        user_daily_limit_mc=TUNE_MC,
    )
    assert isinstance(await reserve(store, 1), Reservation)  # the day's last millisecond
    refused = await reserve(store, 2)
    assert isinstance(refused, Refusal) and refused.limit is BudgetLimit.USER_DAY
    clock.advance(milliseconds=1)  # 00:00:00.000 on the 5th in LA, 07:00 UTC
    assert isinstance(await reserve(store, 3), Reservation)
    july_4 = await store.ledger.budget(1, 7, at=datetime(2025, 7, 4, 12, tzinfo=LA))
    july_5 = await store.ledger.budget(1, 7)
    assert july_4.user_day.used_mc == TUNE_MC and july_5.user_day.used_mc == TUNE_MC
    assert july_5.user_month.used_mc == 2 * TUNE_MC


async def test_a_utc_midnight_is_not_a_los_angeles_one(stores: Stores):
    clock = ManualClock(datetime(2025, 7, 4, 16, 59, tzinfo=LA))  # 23:59 UTC
    store = await stores.open(
        clock=clock,
        budget_timezone="America/Los_Angeles",
        user_daily_limit_mc=TUNE_MC,
    )
    await reserve(store, 1)
    clock.advance(minutes=2)  # past midnight UTC, still the 4th in LA
    refused = await reserve(store, 2)
    assert isinstance(refused, Refusal) and refused.limit is BudgetLimit.USER_DAY


async def test_a_release_after_midnight_gives_back_yesterday_not_today(stores: Stores):
    clock = ManualClock(datetime(2025, 7, 4, 23, 50, tzinfo=LA))
    store = await stores.open(
        clock=clock,
        budget_timezone="America/Los_Angeles",
        user_daily_limit_mc=TUNE_MC,
    )
    await reserve(store, 1)
    clock.advance(minutes=20)
    assert isinstance(await reserve(store, 2), Reservation)
    await store.ledger.release(job(1))  # the 4th's job fails on the 5th
    refused = await reserve(store, 3)
    assert isinstance(refused, Refusal) and refused.limit is BudgetLimit.USER_DAY
    assert (await store.ledger.budget(1, 7)).user_day.used_mc == TUNE_MC


async def test_the_short_dst_day_still_ends_at_local_midnight(stores: Stores):
    clock = ManualClock(datetime(2024, 3, 10, 23, 30, tzinfo=LA))  # a 23-hour day
    store = await stores.open(
        clock=clock,
        budget_timezone="America/Los_Angeles",
        user_daily_limit_mc=TUNE_MC,
    )
    await reserve(store, 1)
    clock.set(datetime(2024, 3, 11, 0, 0, tzinfo=LA) - LAST_MS)
    assert isinstance(await reserve(store, 2), Refusal)
    clock.advance(milliseconds=1)
    assert isinstance(await reserve(store, 3), Reservation)


async def test_auckland_month_turns_at_local_midnight_and_keeps_its_overage(stores: Stores):
    clock = ManualClock(datetime(2025, 1, 31, 23, 59, tzinfo=AUCKLAND))  # 10:59 UTC
    store = await stores.open(
        clock=clock,
        budget_timezone="Pacific/Auckland",
        guild_monthly_budget_mc=TUNE_MC,
    )
    assert isinstance(await reserve(store, 1), Reservation)
    refused = await reserve(store, 2)
    assert isinstance(refused, Refusal) and refused.limit is BudgetLimit.GUILD_MONTH
    clock.set(datetime(2025, 2, 1, 0, 0, tzinfo=AUCKLAND))  # 31 January 11:00 UTC
    await store.ledger.settle(job(1), TUNE_MC + 30_000)  # January's job, settled in February
    assert isinstance(await reserve(store, 3), Reservation)
    january = await store.ledger.budget(1, 7, at=datetime(2025, 1, 15, tzinfo=AUCKLAND))
    february = await store.ledger.budget(1, 7)
    assert january.guild_month.used_mc == TUNE_MC + 30_000  # the overage stays in January
    assert february.guild_month.used_mc == TUNE_MC


async def test_a_grant_raises_the_month_of_the_local_calendar(stores: Stores):
    clock = ManualClock(datetime(2025, 2, 28, 23, 0, tzinfo=AUCKLAND))
    store = await stores.open(
        clock=clock,
        budget_timezone="Pacific/Auckland",
        guild_monthly_budget_mc=TUNE_MC,
    )
    await store.ledger.grant(guild_id=1, user_id=None, amount_mc=TUNE_MC, actor_id=9)
    assert (await store.ledger.budget(1, 7)).guild_month.allowance_mc == 2 * TUNE_MC
    clock.advance(hours=1)  # 1 March in Auckland, still 28 February in UTC
    assert (await store.ledger.budget(1, 7)).guild_month.allowance_mc == TUNE_MC
