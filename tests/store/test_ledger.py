"""The ledger: reservations that never overspend, idempotent settle and release, grants,
adjustments, overage, the account check, and concurrency on one real SQLite file."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from bot.store import (
    BudgetLimit,
    Closing,
    LedgerKind,
    NotFound,
    Refusal,
    Reservation,
    Store,
)
from tests.store.helpers import TUNE_MC, ManualClock, Stores, job


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def reserve(store: Store, number: int, amount: int = TUNE_MC, user: int = 7, guild: int = 1):
    return await store.ledger.reserve(
        guild_id=guild, user_id=user, job=job(number), amount_mc=amount
    )


async def test_a_reservation_holds_credit_until_it_is_settled(stores: Stores):
    store = await stores.open(user_daily_limit_mc=200_000)
    held = await reserve(store, 1, 150_000)
    assert isinstance(held, Reservation) and held.amount_mc == 150_000
    assert (await store.ledger.budget(1, 7)).user_day.used_mc == 150_000
    settled = await store.ledger.settle(job(1), 120_000)
    assert (settled.closing, settled.cost_mc, settled.applied) == (Closing.SETTLED, 120_000, True)
    assert (await store.ledger.budget(1, 7)).user_day.used_mc == 120_000
    assert await store.ledger.open_reservations() == []


async def test_settle_and_release_twice_change_nothing_and_say_so(stores: Stores):
    store = await stores.open()
    await reserve(store, 1)
    await reserve(store, 2)
    first = await store.ledger.settle(job(1), 100_000)
    rows = await store.ledger.entries()
    again = [
        await store.ledger.settle(job(1), 140_000),
        await store.ledger.release(job(1)),
    ]
    assert all(not s.applied for s in again)
    assert all((s.closing, s.cost_mc) == (Closing.SETTLED, 100_000) for s in again)
    released = await store.ledger.release(job(2))
    assert released.applied and released.closing is Closing.RELEASED
    later = await store.ledger.entries()
    assert await store.ledger.release(job(2)) == replace(released, applied=False)
    assert await store.ledger.entries() == later
    assert len(later) == len(rows) + 1
    assert first.applied


async def test_concurrent_settles_of_one_job_apply_once(stores: Stores):
    store = await stores.open()
    await reserve(store, 1)
    results = await asyncio.gather(
        *(store.ledger.settle(job(1), 90_000) for _ in range(10)),
        *(store.ledger.release(job(1)) for _ in range(10)),
    )
    assert sum(r.applied for r in results) == 1
    closes = [e for e in await store.ledger.entries() if e.reserve_id is not None]
    assert len(closes) == 1


async def test_settle_without_a_cost_uses_the_reserved_price(stores: Stores):
    store = await stores.open()
    await reserve(store, 1, 42_000)
    assert (await store.ledger.settle(job(1))).cost_mc == 42_000


async def test_closing_an_unknown_job_or_a_negative_cost_is_an_error(stores: Stores):
    store = await stores.open()
    with pytest.raises(NotFound):
        await store.ledger.settle(job(404), 1)
    with pytest.raises(NotFound):
        await store.ledger.release(job(404))
    await reserve(store, 1)
    with pytest.raises(ValueError, match="negative"):
        await store.ledger.settle(job(1), -1)


async def test_an_overage_is_settled_as_charged_and_counts_against_the_next_reservation(
    stores: Stores,
):
    store = await stores.open(user_daily_limit_mc=2 * TUNE_MC)
    await reserve(store, 1)
    settled = await store.ledger.settle(job(1), TUNE_MC + 60_000)  # Astria charged more
    assert settled.overage_mc == 60_000
    budget = await store.ledger.budget(1, 7)
    assert budget.user_day.used_mc == TUNE_MC + 60_000
    refused = await reserve(store, 2)
    assert isinstance(refused, Refusal)
    assert refused.limit is BudgetLimit.USER_DAY and refused.shortfall_mc == 60_000


@pytest.mark.parametrize(
    ("limit", "settings"),
    [
        (BudgetLimit.GUILD_MONTH, {"guild_monthly_budget_mc": 250_000}),
        (BudgetLimit.USER_MONTH, {"user_monthly_limit_mc": 250_000}),
        (BudgetLimit.USER_DAY, {"user_daily_limit_mc": 250_000}),
        (BudgetLimit.ACCOUNT, {"balance_safety_margin_mc": 50_000, "balance_mc": 300_000}),
    ],
)
async def test_a_refusal_says_which_limit_and_by_how_much(
    stores: Stores, limit: BudgetLimit, settings: dict[str, Any]
):
    store = await stores.open(**settings)
    assert isinstance(await reserve(store, 1), Reservation)
    refused = await reserve(store, 2)
    assert isinstance(refused, Refusal)
    assert (refused.limit, refused.allowance_mc, refused.used_mc) == (limit, 250_000, TUNE_MC)
    assert refused.shortfall_mc == 50_000
    assert "$0.50 short" in refused.reason()
    assert [e.kind for e in await store.ledger.entries()] == [LedgerKind.RESERVE]  # no trace


async def test_with_no_balance_known_paid_reservations_are_refused_and_free_ones_pass(
    stores: Stores,
):
    store = await stores.open(balance_mc=None)
    refused = await reserve(store, 1)
    assert isinstance(refused, Refusal) and refused.limit is BudgetLimit.BALANCE_UNKNOWN
    # The free branch needs no balance; a price of 0 on a paid branch still does.
    free = await store.ledger.reserve(guild_id=1, user_id=7, job=job(2), amount_mc=0, paid=False)
    assert isinstance(free, Reservation)
    mispriced = await reserve(store, 4, amount=0)
    assert isinstance(mispriced, Refusal) and mispriced.limit is BudgetLimit.BALANCE_UNKNOWN
    await store.account.record_balance(TUNE_MC)
    assert isinstance(await reserve(store, 3), Reservation)


async def test_the_account_counts_holds_and_settles_since_the_balance_was_read(
    stores: Stores, clock: ManualClock
):
    store = await stores.open(clock=clock, balance_mc=None)
    await store.account.record_balance(400_000)
    clock.advance(minutes=1)
    await reserve(store, 1, 100_000)
    await reserve(store, 2, 100_000)
    await store.ledger.settle(job(1), 150_000)
    await store.ledger.release(job(2))
    account = (await store.ledger.budget(1, 7)).account
    assert account is not None and account.used_mc == 150_000  # the settle, not the release
    await reserve(store, 3, 100_000)
    assert (await store.ledger.budget(1, 7)).account.used_mc == 250_000  # type: ignore[union-attr]
    # A fresh balance already includes the settled job; the open hold still counts.
    clock.advance(minutes=1)
    await store.account.record_balance(250_000)
    account = (await store.ledger.budget(1, 7)).account
    assert account is not None and (account.allowance_mc, account.used_mc) == (250_000, 100_000)


async def test_settles_after_the_readings_mark_count_whatever_the_clock_says(
    stores: Stores, clock: ManualClock
):
    """The exposure is measured against the ledger row the reading was sent after, not
    the wall time: a clock set back after the reading does not hide the next settles,
    and a later reading at a later mark replaces it though it is stamped earlier."""
    store = await stores.open(clock=clock, balance_mc=500_000)
    assert isinstance(await reserve(store, 1, 100_000), Reservation)
    mark = await store.ledger.last_id()
    await store.account.record_balance(400_000, read_at=clock.now, ledger_mark=mark)
    clock.advance(hours=-1)
    await store.ledger.settle(job(1), 90_000)
    account = (await store.ledger.budget(1, 7)).account
    assert account is not None and account.used_mc == 90_000
    later = await store.account.record_balance(
        310_000, read_at=clock.now, ledger_mark=await store.ledger.last_id()
    )
    assert later.balance_mc == 310_000
    account = (await store.ledger.budget(1, 7)).account
    assert account is not None and (account.allowance_mc, account.used_mc) == (310_000, 0)


async def test_an_older_balance_reading_does_not_replace_a_newer_one(
    stores: Stores, clock: ManualClock
):
    store = await stores.open(clock=clock, balance_mc=None)
    await store.account.record_balance(500, read_at=clock.now)
    kept = await store.account.record_balance(900, read_at=clock.now.replace(year=2020))
    assert kept.balance_mc == 500 and kept.read_at == clock.now
    assert await store.account.last_known() == kept


async def test_grants_raise_this_months_allowance_only(stores: Stores, clock: ManualClock):
    store = await stores.open(
        clock=clock,
        guild_monthly_budget_mc=TUNE_MC,
        user_daily_limit_mc=TUNE_MC,
        user_monthly_limit_mc=TUNE_MC,
    )
    await reserve(store, 1)
    refused = await reserve(store, 2)
    assert isinstance(refused, Refusal) and refused.limit is BudgetLimit.GUILD_MONTH
    await store.ledger.grant(guild_id=1, user_id=None, amount_mc=TUNE_MC, actor_id=99, note="event")
    refused = await reserve(store, 2)
    assert isinstance(refused, Refusal) and refused.limit is BudgetLimit.USER_MONTH
    grant = await store.ledger.grant(guild_id=1, user_id=7, amount_mc=TUNE_MC, actor_id=99)
    assert grant.kind is LedgerKind.GRANT and grant.actor_id == 99
    assert isinstance(await reserve(store, 2), Reservation)  # month and today both raised
    clock.set(clock.now.replace(month=clock.now.month + 1, day=1))
    budget = await store.ledger.budget(1, 7)
    assert budget.guild_month.allowance_mc == TUNE_MC  # grants were for last month
    assert budget.user_month.allowance_mc == TUNE_MC
    with pytest.raises(ValueError, match="positive"):
        await store.ledger.grant(guild_id=1, user_id=7, amount_mc=0, actor_id=99)


async def test_an_adjustment_refunds_a_job_and_is_checked_against_its_server(stores: Stores):
    store = await stores.open(user_daily_limit_mc=TUNE_MC)
    await reserve(store, 1)
    await store.ledger.settle(job(1))
    with pytest.raises(NotFound):
        await store.ledger.adjust(
            guild_id=2, user_id=7, amount_mc=-TUNE_MC, actor_id=99, job=job(1)
        )
    with pytest.raises(NotFound):
        await store.ledger.adjust(
            guild_id=1, user_id=8, amount_mc=-TUNE_MC, actor_id=99, job=job(1)
        )
    refund = await store.ledger.adjust(
        guild_id=1, user_id=7, amount_mc=-TUNE_MC, actor_id=99, note="bad images", job=job(1)
    )
    assert refund.job == job(1) and refund.note == "bad images"
    assert (await store.ledger.budget(1, 7)).user_day.used_mc == 0
    assert isinstance(await reserve(store, 2), Reservation)
    with pytest.raises(ValueError, match="changes nothing"):
        await store.ledger.adjust(guild_id=1, user_id=7, amount_mc=0, actor_id=99)


async def test_spend_by_member_sums_the_month_per_member(stores: Stores):
    store = await stores.open()
    await reserve(store, 1, 10, user=1)
    await reserve(store, 2, 20, user=1)
    await reserve(store, 3, 30, user=2)
    await store.ledger.release(job(3))
    await reserve(store, 4, 40, user=3, guild=2)
    assert await store.ledger.spend_by_member(1) == {1: 30, 2: 0}


async def test_a_job_has_one_reservation(stores: Stores):
    store = await stores.open()
    await reserve(store, 1)
    with pytest.raises(Exception, match="already has a reservation"):
        await reserve(store, 1)


# --- concurrency -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "settings", "same_user"),
    [
        (BudgetLimit.GUILD_MONTH, {"guild_monthly_budget_mc": 10 * TUNE_MC}, False),
        (BudgetLimit.USER_DAY, {"user_daily_limit_mc": 10 * TUNE_MC}, True),
        (BudgetLimit.USER_MONTH, {"user_monthly_limit_mc": 10 * TUNE_MC + 1}, True),
        (BudgetLimit.ACCOUNT, {"balance_mc": 10 * TUNE_MC + TUNE_MC - 1}, False),
    ],
)
async def test_200_concurrent_reservations_fit_a_budget_of_10_exactly(
    stores: Stores, limit: BudgetLimit, settings: dict[str, Any], same_user: bool
):
    store = await stores.open(**settings)
    outcomes = await asyncio.gather(
        *(reserve(store, i, user=7 if same_user else i) for i in range(200))
    )
    granted = [o for o in outcomes if isinstance(o, Reservation)]
    refused = [o for o in outcomes if isinstance(o, Refusal)]
    assert len(granted) == 10 and len(refused) == 190
    assert {r.limit for r in refused} == {limit}
    rows = [e for e in await store.ledger.entries() if e.kind is LedgerKind.RESERVE]
    assert sorted(r.id for r in granted) == [e.id for e in rows]  # one row per success
    assert {r.job for r in granted} == {e.job for e in rows}
    assert await store.ledger.audit(jobs=False) == []


async def test_concurrent_reservations_settles_and_grants_keep_the_books_straight(
    stores: Stores,
):
    store = await stores.open(guild_monthly_budget_mc=20 * TUNE_MC)
    first = await asyncio.gather(*(reserve(store, i, user=i % 5) for i in range(40)))
    held = [o for o in first if isinstance(o, Reservation)]
    assert len(held) == 20
    await asyncio.gather(
        *(store.ledger.settle(r.job, TUNE_MC // 2) for r in held[:10]),
        *(store.ledger.release(r.job) for r in held[10:15]),
        store.ledger.grant(guild_id=1, user_id=None, amount_mc=TUNE_MC, actor_id=1),
        *(reserve(store, 100 + i, user=i % 5) for i in range(40)),
    )
    budget = await store.ledger.budget(1, 0)
    assert budget.guild_month.used_mc <= budget.guild_month.allowance_mc
    entries = await store.ledger.entries()
    assert budget.guild_month.used_mc == sum(
        e.amount_mc for e in entries if e.kind is not LedgerKind.GRANT
    )
    assert await store.ledger.audit(jobs=False) == []
