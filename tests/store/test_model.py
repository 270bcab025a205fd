"""Property: any sequence of reserve/settle/release/grant/adjust (with the clock moving and
balances read) keeps spend within budget and every sum equal to a plain model's."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.rules.credits import (
    Allowance,
    BudgetLimit,
    BudgetSnapshot,
    Refusal,
    day_bounds,
    decide,
    month_bounds,
)
from bot.store import JobRef, LedgerKind, Reservation, Store
from tests.store.helpers import ManualClock, job, open_store

ZONE = ZoneInfo("Pacific/Auckland")
GUILD = 1
USERS = (1, 2, 3)
# Small limits against amounts of the same size, so sequences reach the boundaries often.
GUILD_MONTH_MC, USER_MONTH_MC, USER_DAY_MC, MARGIN_MC = 40_000, 25_000, 10_000, 5_000
LIMITS: dict[str, Any] = {
    "guild_monthly_budget_mc": GUILD_MONTH_MC,
    "user_monthly_limit_mc": USER_MONTH_MC,
    "user_daily_limit_mc": USER_DAY_MC,
    "balance_safety_margin_mc": MARGIN_MC,
    "budget_timezone": "Pacific/Auckland",
}


@dataclass(frozen=True)
class Reserve:
    user: int
    amount: int


@dataclass(frozen=True)
class Settle:
    pick: int
    percent: int  # of the reserved price; above 100 is an overage


@dataclass(frozen=True)
class Release:
    pick: int


@dataclass(frozen=True)
class CloseAgain:
    pick: int
    settle: bool


@dataclass(frozen=True)
class Grant:
    user: int | None
    amount: int


@dataclass(frozen=True)
class Adjust:
    user: int | None
    amount: int


@dataclass(frozen=True)
class Advance:
    minutes: int


@dataclass(frozen=True)
class ReadBalance:
    amount: int


Op = Reserve | Settle | Release | CloseAgain | Grant | Adjust | Advance | ReadBalance

users = st.sampled_from(USERS)
reserves = st.builds(Reserve, users, st.integers(0, 12).map(lambda n: n * 1_000))
closes = st.one_of(
    st.builds(Settle, st.integers(0, 99), st.integers(0, 100) | st.integers(101, 200)),
    st.builds(Release, st.integers(0, 99)),
)
others = st.one_of(
    st.builds(CloseAgain, st.integers(0, 99), st.booleans()),
    st.builds(Grant, st.none() | users, st.integers(1, 10).map(lambda n: n * 1_000)),
    st.builds(Adjust, st.none() | users, st.integers(-10, 10).filter(bool).map(lambda n: n * 500)),
    st.builds(Advance, st.integers(1, 36 * 60)),
    st.builds(ReadBalance, st.integers(0, 100_000)),
)
# Half the steps reserve and a quarter close, in runs long enough to fill budgets, so
# sequences reach the boundaries where bugs live.
step = st.integers(0, 7).flatmap(lambda k: reserves if k < 4 else closes if k < 6 else others)
operations = st.lists(step, min_size=10, max_size=50)


@dataclass
class Row:
    kind: LedgerKind
    user: int | None
    amount: int  # signed effect on spend (a grant's: the allowance it adds)
    period_at: datetime
    at: datetime
    cost: int | None = None


@dataclass
class Model:
    """The ledger's rules written plainly in Python, to compare the SQL against."""

    rows: list[Row] = field(default_factory=list)
    held: dict[JobRef, Row] = field(default_factory=dict)  # open reservations
    closed: dict[JobRef, tuple[Row, Row]] = field(default_factory=dict)  # reserve, close
    balance: tuple[int, datetime] | None = None

    def snapshot(self, user: int, now: datetime) -> BudgetSnapshot:
        day = day_bounds(now, ZONE)
        month = month_bounds(now, ZONE)

        def total(period: tuple[datetime, datetime], who: int | None, grants: bool) -> int:
            return sum(
                r.amount
                for r in self.rows
                if period[0] <= r.period_at < period[1]
                and (r.kind is LedgerKind.GRANT) == grants
                and (who is None or r.user == who)
                and not (grants and who is None and r.user is not None)
            )

        account = None
        if self.balance is not None:
            amount, read_at = self.balance
            since = sum(
                r.cost or 0 for r in self.rows if r.kind is LedgerKind.SETTLE and r.at >= read_at
            )
            held = sum(r.amount for r in self.held.values())
            account = Allowance(BudgetLimit.ACCOUNT, amount - MARGIN_MC, held + since)
        return BudgetSnapshot(
            account=account,
            guild_month=Allowance(
                BudgetLimit.GUILD_MONTH,
                GUILD_MONTH_MC + total(month, None, grants=True),
                total(month, None, grants=False),
            ),
            user_month=Allowance(
                BudgetLimit.USER_MONTH,
                USER_MONTH_MC + total(month, user, grants=True),
                total(month, user, grants=False),
            ),
            user_day=Allowance(
                BudgetLimit.USER_DAY,
                USER_DAY_MC + total(day, user, grants=True),
                total(day, user, grants=False),
            ),
        )


async def check_within_budget(store: Store, now: datetime) -> None:
    """Spend minus overages and admin charges never passes an allowance, computed from the
    store's own rows: only those two can lift spend past a budget."""
    entries = await store.ledger.entries()
    for user in USERS:
        budget = await store.ledger.budget(GUILD, user, at=now)
        for allowance, period, who in (
            (budget.guild_month, month_bounds(now, ZONE), None),
            (budget.user_month, month_bounds(now, ZONE), user),
            (budget.user_day, day_bounds(now, ZONE), user),
        ):
            lifted = sum(
                e.amount_mc
                for e in entries
                if e.kind in (LedgerKind.SETTLE, LedgerKind.ADJUST)
                and e.amount_mc > 0
                and period[0] <= e.period_at < period[1]
                and (who is None or e.user_id == who)
            )
            assert allowance.used_mc - lifted <= allowance.allowance_mc, (allowance, lifted)


async def run(ops: list[Op], path: Path, start_balance: int | None) -> None:
    clock = ManualClock(datetime(2025, 1, 30, 18, 0, tzinfo=UTC))  # 31 Jan 07:00 in Auckland
    store = await open_store(path, clock=clock, balance_mc=None, **LIMITS)
    try:
        model = Model()
        if start_balance is not None:
            await store.account.record_balance(start_balance)
            model.balance = (start_balance, clock.now)
        number = 0
        for op in ops:
            now = clock.now
            if isinstance(op, Reserve):
                number += 1
                expected = decide(op.amount, model.snapshot(op.user, now))
                got = await store.ledger.reserve(
                    guild_id=GUILD, user_id=op.user, job=job(number), amount_mc=op.amount
                )
                if expected is None:
                    assert isinstance(got, Reservation), got
                    row = Row(LedgerKind.RESERVE, op.user, op.amount, now, now)
                    model.rows.append(row)
                    model.held[job(number)] = row
                else:
                    assert isinstance(got, Refusal) and got == expected
            elif isinstance(op, Settle | Release) and model.held:
                chosen = sorted(model.held)[op.pick % len(model.held)]
                reserve = model.held.pop(chosen)
                if isinstance(op, Settle):
                    cost = reserve.amount * op.percent // 100
                    settled = await store.ledger.settle(chosen, cost)
                    assert settled.applied and settled.overage_mc == max(0, cost - reserve.amount)
                    close = Row(
                        LedgerKind.SETTLE,
                        reserve.user,
                        cost - reserve.amount,
                        reserve.period_at,
                        now,
                    )
                    close.cost = cost
                else:
                    assert (await store.ledger.release(chosen)).applied
                    close = Row(
                        LedgerKind.RELEASE, reserve.user, -reserve.amount, reserve.period_at, now
                    )
                model.rows.append(close)
                model.closed[chosen] = (reserve, close)
            elif isinstance(op, CloseAgain) and model.closed:
                chosen = sorted(model.closed)[op.pick % len(model.closed)]
                before = await store.ledger.entries()
                again = await (
                    store.ledger.settle(chosen, 1) if op.settle else store.ledger.release(chosen)
                )
                assert not again.applied
                assert await store.ledger.entries() == before
            elif isinstance(op, Grant):
                await store.ledger.grant(
                    guild_id=GUILD, user_id=op.user, amount_mc=op.amount, actor_id=99
                )
                model.rows.append(Row(LedgerKind.GRANT, op.user, op.amount, now, now))
            elif isinstance(op, Adjust):
                await store.ledger.adjust(
                    guild_id=GUILD, user_id=op.user, amount_mc=op.amount, actor_id=99
                )
                model.rows.append(Row(LedgerKind.ADJUST, op.user, op.amount, now, now))
            elif isinstance(op, Advance):
                clock.advance(minutes=op.minutes)
            elif isinstance(op, ReadBalance):
                await store.account.record_balance(op.amount)
                model.balance = (op.amount, now)
            for user in USERS:
                assert await store.ledger.budget(GUILD, user) == model.snapshot(user, clock.now)
            await check_within_budget(store, clock.now)
        assert await store.ledger.audit(jobs=False) == []
        assert {r.job for r in await store.ledger.open_reservations()} == set(model.held)
        # Looking back at every day touched, the sums still agree with the model.
        day = clock.now
        while day >= datetime(2025, 1, 30, tzinfo=UTC):
            for user in USERS:
                assert await store.ledger.budget(GUILD, user, at=day) == model.snapshot(user, day)
            day -= timedelta(hours=12)
    finally:
        await store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, start_balance=st.none() | st.integers(20_000, 100_000))
def test_any_sequence_keeps_spend_within_budget_and_sums_equal_to_the_model(
    ops: list[Op], start_balance: int | None
):
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(ops, Path(folder) / "bot.sqlite3", start_balance))
