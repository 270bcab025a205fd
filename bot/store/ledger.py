"""The credit ledger: append-only reserve, settle, release, grant and adjust entries in integer
millicents, and every budget's spend as sums over them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from bot.rules.credits import (
    MAX_AMOUNT_MC,
    Allowance,
    BudgetLimit,
    BudgetPolicy,
    BudgetSnapshot,
    Denial,
    Refusal,
    day_bounds,
    decide,
    month_bounds,
)
from bot.rules.spending import CHART_DAYS, SpendKind, SpendRow, window
from bot.store.db import Clock, Database, Params, Row, Transaction, from_ms, to_ms
from bot.store.errors import NotFound, StoreError
from bot.store.jobstate import JobRef


class LedgerKind(StrEnum):
    RESERVE = "reserve"
    SETTLE = "settle"
    RELEASE = "release"
    GRANT = "grant"
    ADJUST = "adjust"


@dataclass(frozen=True)
class LedgerEntry:
    """One row of the ledger. `amount_mc` is its signed effect on spend (a grant's is the
    allowance it adds); `cost_mc` is set on settles only."""

    id: int
    kind: LedgerKind
    guild_id: int
    user_id: int | None
    job: JobRef | None
    amount_mc: int
    cost_mc: int | None
    reserve_id: int | None
    at: datetime
    period_at: datetime  # the instant whose day and month this entry counts in
    actor_id: int | None
    note: str | None


@dataclass(frozen=True)
class Reservation:
    """Credit held for one job until it is settled or released."""

    id: int
    job: JobRef
    guild_id: int
    user_id: int
    amount_mc: int
    at: datetime


class Closing(StrEnum):
    SETTLED = "settled"
    RELEASED = "released"


@dataclass(frozen=True)
class Settlement:
    """How a reservation was closed. `applied` is False when it already was: the call
    wrote nothing and this describes the earlier closing."""

    reservation_id: int
    job: JobRef
    closing: Closing
    reserved_mc: int
    cost_mc: int  # 0 for a release
    applied: bool

    @property
    def overage_mc(self) -> int:
        """What Astria charged beyond the reservation; it counts against later ones."""
        return max(0, self.cost_mc - self.reserved_mc)


@dataclass(frozen=True)
class Repair:
    """A reservation the start-up repair closed: its job had ended (`state`), or there is
    no such job (`state` None), and nothing had closed it (a crash between the steps)."""

    job: JobRef
    state: str | None
    closing: Closing
    cost_mc: int  # 0 for a release


# Open holds whose job has ended, with what the job's end says it cost: a prompt's stored
# cost, a tune's cost as its ready event recorded it (none: the reserved price).
# The id is cut out of the job's name inside a CASE: PostgreSQL, unlike SQLite, may cast
# before it tests the prefix, and 'prompt:1' is no tune id.
_ENDED_OPEN_SQL = """
SELECT r.job AS job, t.state AS state, NULL AS cost_mc, e.payload AS ready
    FROM open_holds AS h JOIN ledger AS r ON r.id = h.reserve_id
    JOIN tunes AS t ON t.id = CASE WHEN r.job LIKE 'tune:%'
        THEN CAST(substr(r.job, 6) AS INTEGER) END
    LEFT JOIN job_events AS e ON e.key = r.job || ':ready'
    WHERE t.state IN ('ready', 'failed', 'cancelled', 'deleted', 'expired')
UNION ALL
SELECT r.job, p.state, p.cost_mc, NULL
    FROM open_holds AS h JOIN ledger AS r ON r.id = h.reserve_id
    JOIN prompts AS p ON p.id = CASE WHEN r.job LIKE 'prompt:%'
        THEN CAST(substr(r.job, 8) AS INTEGER) END
    WHERE p.state IN ('delivered', 'undeliverable', 'failed', 'cancelled')
"""
# Open holds whose job does not exist (nothing will ever close them).
_JOBLESS_OPEN_SQL = """
SELECT r.job AS job FROM open_holds AS h JOIN ledger AS r ON r.id = h.reserve_id
    WHERE NOT EXISTS (SELECT 1 FROM tunes AS t
                      WHERE t.id = CASE WHEN r.job LIKE 'tune:%'
        THEN CAST(substr(r.job, 6) AS INTEGER) END)
      AND NOT EXISTS (SELECT 1 FROM prompts AS p
                      WHERE p.id = CASE WHEN r.job LIKE 'prompt:%'
        THEN CAST(substr(r.job, 8) AS INTEGER) END)
"""
# The ends that cost what Astria charged; the others (failed, cancelled) cost nothing.
_CHARGED_ENDS = frozenset({"ready", "deleted", "expired", "delivered", "undeliverable"})


def _ready_cost(payload: object) -> int | None:
    if not isinstance(payload, str):
        return None
    try:
        cost = json.loads(payload).get("cost_mc")
    except (ValueError, AttributeError):
        return None
    return cost if isinstance(cost, int) and cost >= 0 else None


# The operator's own costs (what Astria kept for a failed job) are booked on server 0:
# no member acts there, so no budget pays for them, and every sum over the ledger has them.
OPERATOR_GUILD = 0
_DAY_MS = 86_400_000  # a UTC day: the epoch is midnight UTC and UTC has no leap seconds here


class RefundOutcome(StrEnum):
    REFUNDED = "refunded"
    UNKNOWN = "unknown"  # no such job in this server
    NOT_SETTLED = "not_settled"  # still running, or it failed and was released
    NOTHING_LEFT = "nothing_left"  # cost nothing, or refunded already


@dataclass(frozen=True)
class Refund:
    job: JobRef
    outcome: RefundOutcome
    amount_mc: int
    user_id: int | None


class Refused(Exception):
    """Rolls back a transaction whose reservation (or queue place) was refused; never
    leaves the store."""

    def __init__(self, refusal: Denial) -> None:
        super().__init__(refusal.reason())
        self.refusal = refusal


# Every budget a reservation must fit, in one statement so it reads one snapshot. Spend in a
# period is the sum of the non-grant rows whose period instant falls in it; grants add to
# the allowance. The account's exposure is every open hold plus the real cost of every
# settle written since the balance was read (Astria may have charged it after the read):
# the rows after the reading's ledger mark, which a clock set back cannot reorder.
_SNAPSHOT_SQL = """
SELECT
    (SELECT monthly_budget_mc FROM guild_settings WHERE guild_id = :guild) AS guild_budget,
    (SELECT user_daily_limit_mc FROM guild_settings WHERE guild_id = :guild) AS day_limit,
    (SELECT user_monthly_limit_mc FROM guild_settings WHERE guild_id = :guild) AS month_limit,
    (SELECT COALESCE(SUM(amount_mc), 0) FROM ledger
        WHERE guild_id = :guild AND period_at_ms >= :month_start AND period_at_ms < :month_end
          AND kind <> 'grant') AS guild_used,
    (SELECT COALESCE(SUM(amount_mc), 0) FROM ledger
        WHERE guild_id = :guild AND period_at_ms >= :month_start AND period_at_ms < :month_end
          AND kind = 'grant' AND user_id IS NULL) AS guild_granted,
    (SELECT COALESCE(SUM(amount_mc), 0) FROM ledger
        WHERE guild_id = :guild AND user_id = :user
          AND period_at_ms >= :month_start AND period_at_ms < :month_end
          AND kind <> 'grant') AS month_used,
    (SELECT COALESCE(SUM(amount_mc), 0) FROM ledger
        WHERE guild_id = :guild AND user_id = :user
          AND period_at_ms >= :month_start AND period_at_ms < :month_end
          AND kind = 'grant') AS month_granted,
    (SELECT COALESCE(SUM(amount_mc), 0) FROM ledger
        WHERE guild_id = :guild AND user_id = :user
          AND period_at_ms >= :day_start AND period_at_ms < :day_end
          AND kind <> 'grant') AS day_used,
    (SELECT COALESCE(SUM(amount_mc), 0) FROM ledger
        WHERE guild_id = :guild AND user_id = :user
          AND period_at_ms >= :day_start AND period_at_ms < :day_end
          AND kind = 'grant') AS day_granted,
    (SELECT balance_mc FROM account_balance WHERE id = 1) AS balance,
    (SELECT short_since_ms FROM account_balance WHERE id = 1) AS short_since,
    (SELECT COALESCE(SUM(amount_mc), 0) FROM open_holds) AS held,
    (SELECT COALESCE(SUM(CASE WHEN kind = 'settle' THEN cost_mc ELSE amount_mc END), 0)
        FROM ledger
        WHERE (kind = 'settle' OR (kind = 'adjust' AND guild_id = 0))
          AND id > (SELECT ledger_mark FROM account_balance WHERE id = 1)) AS settled_since
"""


def _entry(row: Row) -> LedgerEntry:
    return LedgerEntry(
        id=int(row["id"]),
        kind=LedgerKind(row["kind"]),
        guild_id=int(row["guild_id"]),
        user_id=None if row["user_id"] is None else int(row["user_id"]),
        job=None if row["job"] is None else JobRef.parse(str(row["job"])),
        amount_mc=int(row["amount_mc"]),
        cost_mc=None if row["cost_mc"] is None else int(row["cost_mc"]),
        reserve_id=None if row["reserve_id"] is None else int(row["reserve_id"]),
        at=from_ms(int(row["at_ms"])),
        period_at=from_ms(int(row["period_at_ms"])),
        actor_id=None if row["actor_id"] is None else int(row["actor_id"]),
        note=None if row["note"] is None else str(row["note"]),
    )


def _reservation(entry: LedgerEntry) -> Reservation:
    assert entry.kind is LedgerKind.RESERVE and entry.job is not None
    assert entry.user_id is not None
    return Reservation(
        entry.id, entry.job, entry.guild_id, entry.user_id, entry.amount_mc, entry.period_at
    )


class Ledger:
    """Reservations and their closing, grants, corrections, and the sums budgets check."""

    def __init__(self, db: Database, policy: BudgetPolicy, clock: Clock) -> None:
        self._db = db
        self._policy = policy
        self._clock = clock

    # --- writes -------------------------------------------------------------------------

    @asynccontextmanager
    async def _money(self) -> AsyncIterator[Transaction]:
        """A write transaction holding the money lock from its first statement on."""
        async with self._db.write() as tx:
            await tx.lock_money()
            yield tx

    async def reserve(
        self,
        *,
        guild_id: int,
        user_id: int,
        job: JobRef,
        amount_mc: int,
        note: str | None = None,
        paid: bool = True,
    ) -> Reservation | Refusal:
        """Hold `amount_mc` for `job` if every budget allows it; a refusal writes nothing.

        The check and the row are one transaction holding the money lock (SQLite's BEGIN
        IMMEDIATE, PostgreSQL's advisory lock): no concurrent caller, in this process or
        another, can slip a reservation between them.
        """
        async with self._money() as tx:
            return await self._reserve_in(tx, guild_id, user_id, job, amount_mc, note, paid)

    async def _reserve_in(
        self,
        tx: Transaction,
        guild_id: int,
        user_id: int,
        job: JobRef,
        amount_mc: int,
        note: str | None = None,
        paid: bool = True,
    ) -> Reservation | Refusal:
        """`reserve` inside a transaction of the store's own (not part of the interface)."""
        await tx.lock_money()  # before the sums are read (the tune and prompt rows' path)
        if await tx.fetchone(
            "SELECT 1 FROM ledger WHERE kind = 'reserve' AND job = ?", (str(job),)
        ):
            raise StoreError(f"{job} already has a reservation")
        now = self._clock()
        refusal = await self._check_in(tx, guild_id, user_id, amount_mc, now, paid)
        if refusal is not None:
            return refusal
        now_ms = to_ms(now)
        reservation_id = await tx.insert(
            "INSERT INTO ledger (kind, guild_id, user_id, job, amount_mc, at_ms, period_at_ms,"
            " actor_id, note) VALUES ('reserve', ?, ?, ?, ?, ?, ?, ?, ?)",
            (guild_id, user_id, str(job), amount_mc, now_ms, now_ms, user_id, note),
        )
        return Reservation(reservation_id, job, guild_id, user_id, amount_mc, from_ms(now_ms))

    async def _hold_in(
        self, tx: Transaction, guild_id: int, user_id: int, job: JobRef, *, note: str
    ) -> None:
        """A hold of 0 for a prompt a pack run made (bot/store/packs.py): no budget is
        asked (the run's reservation holds the pack's price); its settle books what
        Astria charged for that prompt."""
        now_ms = to_ms(self._clock())
        await tx.insert(
            "INSERT INTO ledger (kind, guild_id, user_id, job, amount_mc, at_ms, period_at_ms,"
            " actor_id, note) VALUES ('reserve', ?, ?, ?, 0, ?, ?, ?, ?)",
            (guild_id, user_id, str(job), now_ms, now_ms, user_id, note),
        )

    async def _reserve_or_roll_back(
        self,
        tx: Transaction,
        guild_id: int,
        user_id: int,
        job: JobRef,
        amount_mc: int,
        *,
        paid: bool,
    ) -> Reservation:
        """For the tune and prompt repositories: reserve inside their transaction, raising
        `Refused` so it rolls back the job row they wrote first (to learn the job's id)."""
        result = await self._reserve_in(tx, guild_id, user_id, job, amount_mc, paid=paid)
        if isinstance(result, Refusal):
            raise Refused(result)
        return result

    async def _check_in(
        self,
        tx: Transaction,
        guild_id: int,
        user_id: int,
        amount_mc: int,
        now: datetime,
        paid: bool = True,
    ) -> Refusal | None:
        row = await tx.fetchone(_SNAPSHOT_SQL, self._snapshot_params(guild_id, user_id, now))
        assert row is not None
        return decide(amount_mc, self._snapshot(row), paid=paid)

    async def settle(
        self,
        job: JobRef,
        cost_mc: int | None = None,
        *,
        actor_id: int | None = None,
        note: str | None = None,
    ) -> Settlement:
        """Close `job`'s reservation at the real cost (the reserved price when Astria gave
        none). A cost above the price is recorded as it is: the overage counts as spend.
        Settling or releasing a closed reservation writes nothing and says so."""
        if cost_mc is not None and cost_mc < 0:
            raise ValueError("a cost cannot be negative")
        async with self._money() as tx:
            return await self._close(tx, job, cost_mc, actor_id, note, settle=True)

    async def release(
        self, job: JobRef, *, actor_id: int | None = None, note: str | None = None
    ) -> Settlement:
        """Give `job`'s reservation back (the job failed and Astria charged nothing)."""
        async with self._money() as tx:
            return await self._close(tx, job, None, actor_id, note, settle=False)

    async def _close(
        self,
        tx: Transaction,
        job: JobRef,
        cost_mc: int | None,
        actor_id: int | None,
        note: str | None,
        *,
        settle: bool,
    ) -> Settlement:
        await tx.lock_money()
        reserve_row = await tx.fetchone(
            "SELECT * FROM ledger WHERE kind = 'reserve' AND job = ?", (str(job),)
        )
        if reserve_row is None:
            raise NotFound(f"{job} has no reservation to close")
        reserve = _entry(reserve_row)
        closed = await tx.fetchone(
            "SELECT kind, cost_mc FROM ledger WHERE reserve_id = ?", (reserve.id,)
        )
        if closed is not None:
            was_settled = closed["kind"] == LedgerKind.SETTLE
            return Settlement(
                reserve.id,
                job,
                Closing.SETTLED if was_settled else Closing.RELEASED,
                reserve.amount_mc,
                int(closed["cost_mc"]) if was_settled else 0,
                applied=False,
            )
        if settle:
            cost = reserve.amount_mc if cost_mc is None else cost_mc
            kind, delta, stored_cost = LedgerKind.SETTLE, cost - reserve.amount_mc, cost
        else:
            kind, delta, stored_cost = LedgerKind.RELEASE, -reserve.amount_mc, None
        await tx.insert(
            "INSERT INTO ledger (kind, guild_id, user_id, job, amount_mc, cost_mc, reserve_id,"
            " at_ms, period_at_ms, actor_id, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                kind,
                reserve.guild_id,
                reserve.user_id,
                str(job),
                delta,
                stored_cost,
                reserve.id,
                to_ms(self._clock()),
                to_ms(reserve.period_at),
                actor_id,
                note,
            ),
        )
        return Settlement(
            reserve.id,
            job,
            Closing.SETTLED if settle else Closing.RELEASED,
            reserve.amount_mc,
            stored_cost or 0,
            applied=True,
        )

    async def repair(self) -> list[Repair]:
        """Close every reservation left open by a crash between a job's steps (the start-up
        repair): an ended job's the way its end says (settled at its recorded cost when it
        delivered, released when it failed or was cancelled), and one whose job does not
        exist released. One transaction; what it closed is returned (empty when sound)."""
        done: list[Repair] = []
        async with self._money() as tx:
            for row in await tx.fetchall(_ENDED_OPEN_SQL):
                job, state = JobRef.parse(str(row["job"])), str(row["state"])
                charged = state in _CHARGED_ENDS
                cost = row["cost_mc"] if row["cost_mc"] is not None else _ready_cost(row["ready"])
                note = f"repaired at start: the job was {state}"
                closed = await self._close(
                    tx, job, None if cost is None else int(cost), None, note, settle=charged
                )
                if closed.applied:
                    done.append(Repair(job, state, closed.closing, closed.cost_mc))
            for row in await tx.fetchall(_JOBLESS_OPEN_SQL):
                job = JobRef.parse(str(row["job"]))
                note = "repaired at start: no such job"
                closed = await self._close(tx, job, None, None, note, settle=False)
                if closed.applied:
                    done.append(Repair(job, None, closed.closing, 0))
        return done

    async def grant(
        self,
        *,
        guild_id: int,
        user_id: int | None,
        amount_mc: int,
        actor_id: int | None,
        note: str | None = None,
    ) -> LedgerEntry:
        """Raise a server's budget (user_id None) or a member's limits for the current
        month; a member's grant also raises today's daily limit, so it can be used now."""
        if amount_mc <= 0:
            raise ValueError("a grant adds a positive amount; lower a limit with its setting")
        if amount_mc > MAX_AMOUNT_MC:
            raise ValueError("a grant above the maximum amount")
        return await self._append(LedgerKind.GRANT, guild_id, user_id, amount_mc, actor_id, note)

    async def adjust(
        self,
        *,
        guild_id: int,
        user_id: int | None,
        amount_mc: int,
        actor_id: int | None,
        note: str | None = None,
        job: JobRef | None = None,
    ) -> LedgerEntry:
        """An admin's correction of spend this month: negative refunds, positive charges.
        With `job`, it refunds (or corrects) that job, which must be this server's."""
        if amount_mc == 0:
            raise ValueError("an adjustment of 0 changes nothing")
        if abs(amount_mc) > MAX_AMOUNT_MC:
            raise ValueError("an adjustment above the maximum amount")
        async with self._money() as tx:
            if job is not None:
                found = await tx.fetchone(
                    "SELECT guild_id, user_id FROM ledger WHERE kind = 'reserve' AND job = ?",
                    (str(job),),
                )
                if found is None or int(found["guild_id"]) != guild_id:
                    raise NotFound(f"{job} has no reservation in this server")
                if user_id is not None and int(found["user_id"]) != user_id:
                    raise NotFound(f"{job} is not this member's")
            return await self._append_in(
                tx, LedgerKind.ADJUST, guild_id, user_id, amount_mc, actor_id, note, job
            )

    async def refund(
        self, job: JobRef, *, guild_id: int, actor_id: int | None, note: str | None = None
    ) -> Refund:
        """Give a settled job's spend back to its member's and server's budgets, once.

        The check ("settled, not refunded already") and the write are one transaction, so
        two admins refunding at once refund once. The refund counts in the period the job
        was charged in (its reserve's instant), not the day it is made: a late refund
        never leaves a later month below zero. Astria's charge to the account stands.
        """
        async with self._money() as tx:
            rows = await tx.fetchall(
                "SELECT * FROM ledger WHERE job = ? AND guild_id = ? ORDER BY id",
                (str(job), guild_id),
            )
            entries = [_entry(r) for r in rows]
            reserve = next((e for e in entries if e.kind is LedgerKind.RESERVE), None)
            if reserve is None:
                return Refund(job, RefundOutcome.UNKNOWN, 0, None)
            if not any(e.kind is LedgerKind.SETTLE for e in entries):
                return Refund(job, RefundOutcome.NOT_SETTLED, 0, reserve.user_id)
            spent = sum(e.amount_mc for e in entries)
            if spent <= 0:
                return Refund(job, RefundOutcome.NOTHING_LEFT, 0, reserve.user_id)
            now_ms = to_ms(self._clock())
            await tx.insert(
                "INSERT INTO ledger (kind, guild_id, user_id, job, amount_mc, at_ms,"
                " period_at_ms, actor_id, note) VALUES ('adjust', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    guild_id,
                    reserve.user_id,
                    str(job),
                    -spent,
                    now_ms,
                    to_ms(reserve.period_at),
                    actor_id,
                    note,
                ),
            )
            return Refund(job, RefundOutcome.REFUNDED, spent, reserve.user_id)

    async def absorb(self, job: JobRef, amount_mc: int, *, note: str) -> LedgerEntry | None:
        """Book what Astria kept or charged outside a member's job (a failed prompt's
        cost, a tune's storage extension) as the operator's cost: on no member's and no
        server's budget (server 0, which no member can act in), but in the ledger's
        total, so the ledger still equals Astria's net charge. Once per job and note."""
        if amount_mc <= 0:
            return None
        if amount_mc > MAX_AMOUNT_MC:
            raise ValueError("an amount above the maximum")
        async with self._money() as tx:
            if await tx.fetchone(
                "SELECT 1 FROM ledger WHERE kind = 'adjust' AND guild_id = ? AND job = ?"
                " AND note = ?",
                (OPERATOR_GUILD, str(job), note),
            ):
                return None
            return await self._append_in(
                tx, LedgerKind.ADJUST, OPERATOR_GUILD, None, amount_mc, None, note, job
            )

    async def _append(
        self,
        kind: LedgerKind,
        guild_id: int,
        user_id: int | None,
        amount_mc: int,
        actor_id: int | None,
        note: str | None,
    ) -> LedgerEntry:
        async with self._money() as tx:
            return await self._append_in(
                tx, kind, guild_id, user_id, amount_mc, actor_id, note, None
            )

    async def _append_in(
        self,
        tx: Transaction,
        kind: LedgerKind,
        guild_id: int,
        user_id: int | None,
        amount_mc: int,
        actor_id: int | None,
        note: str | None,
        job: JobRef | None,
    ) -> LedgerEntry:
        await tx.lock_money()
        now = from_ms(to_ms(self._clock()))
        entry_id = await tx.insert(
            "INSERT INTO ledger (kind, guild_id, user_id, job, amount_mc, at_ms, period_at_ms,"
            " actor_id, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                kind,
                guild_id,
                user_id,
                None if job is None else str(job),
                amount_mc,
                to_ms(now),
                to_ms(now),
                actor_id,
                note,
            ),
        )
        return LedgerEntry(
            entry_id, kind, guild_id, user_id, job, amount_mc, None, None, now, now, actor_id, note
        )

    # --- reads --------------------------------------------------------------------------

    async def budget(
        self, guild_id: int, user_id: int, at: datetime | None = None
    ) -> BudgetSnapshot:
        """Every budget a member's reservation must fit, in the periods holding `at`."""
        params = self._snapshot_params(guild_id, user_id, at or self._clock())
        row = await self._db.fetchone(_SNAPSHOT_SQL, params)
        assert row is not None
        return self._snapshot(row)

    async def spend_by_member(self, guild_id: int, at: datetime | None = None) -> dict[int, int]:
        """Each member's spend (held included) in the month holding `at`."""
        start, end = month_bounds(at or self._clock(), self._policy.zone)
        rows = await self._db.fetchall(
            "SELECT user_id, SUM(amount_mc) AS spent FROM ledger"
            " WHERE guild_id = ? AND period_at_ms >= ? AND period_at_ms < ?"
            " AND kind <> 'grant' AND user_id IS NOT NULL GROUP BY user_id",
            (guild_id, to_ms(start), to_ms(end)),
        )
        return {int(r["user_id"]): int(r["spent"]) for r in rows}

    async def daily_spend(
        self, guild_id: int, *, user_id: int | None = None, days: int = CHART_DAYS
    ) -> tuple[date, list[SpendRow]]:
        """Spend (held included, grants left out) per UTC day, member and kind of job over
        the `days` ending today, and today's date. A day is the one a row counts in (its
        period instant), so a refund lowers the day the job was charged. Days with no
        spend have no row (the chart fills them)."""
        today = self._clock().astimezone(UTC).date()
        first, _ = window(today, days)
        start = datetime.combine(first, time(), UTC)
        end = datetime.combine(today + timedelta(days=1), time(), UTC)
        values: dict[str, object] = {
            "day_ms": _DAY_MS,
            "guild": guild_id,
            "start": to_ms(start),
            "end": to_ms(end),
        }
        # Only with a member: PostgreSQL cannot type a parameter that is only compared to NULL.
        member = ""
        if user_id is not None:
            member, values["user"] = " AND user_id = :user", user_id
        rows = await self._db.fetchall(
            "SELECT period_at_ms / :day_ms AS day, user_id,"  # noqa: S608
            " CASE WHEN job LIKE 'tune:%' THEN 'tunes' WHEN job LIKE 'prompt:%' THEN 'images'"
            " ELSE 'other' END AS job_kind, SUM(amount_mc) AS spent FROM ledger"
            " WHERE guild_id = :guild AND period_at_ms >= :start AND period_at_ms < :end"
            f" AND kind <> 'grant'{member}"
            " GROUP BY day, user_id, job_kind",
            values,
        )
        epoch = date(1970, 1, 1)
        kinds: dict[str, SpendKind] = {"tunes": "tunes", "images": "images", "other": "other"}
        return today, [
            SpendRow(
                day=epoch + timedelta(days=int(r["day"])),
                user_id=None if r["user_id"] is None else int(r["user_id"]),
                kind=kinds[str(r["job_kind"])],
                amount_mc=int(r["spent"]),
            )
            for r in rows
        ]

    async def grants_by_member(
        self, guild_id: int, at: datetime | None = None
    ) -> dict[int | None, int]:
        """What was granted in the month holding `at`, per member (None: to the server)."""
        start, end = month_bounds(at or self._clock(), self._policy.zone)
        rows = await self._db.fetchall(
            "SELECT user_id, SUM(amount_mc) AS granted FROM ledger"
            " WHERE guild_id = ? AND period_at_ms >= ? AND period_at_ms < ?"
            " AND kind = 'grant' GROUP BY user_id",
            (guild_id, to_ms(start), to_ms(end)),
        )
        return {
            None if r["user_id"] is None else int(r["user_id"]): int(r["granted"]) for r in rows
        }

    async def last_id(self) -> int:
        """The newest ledger row's id (0 for none): a balance reading's mark, taken before
        its request is sent."""
        row = await self._db.fetchone("SELECT COALESCE(MAX(id), 0) FROM ledger")
        assert row is not None
        return int(row[0])

    async def reservation(self, job: JobRef) -> Reservation | None:
        row = await self._db.fetchone(
            "SELECT * FROM ledger WHERE kind = 'reserve' AND job = ?", (str(job),)
        )
        return None if row is None else _reservation(_entry(row))

    async def open_reservations(self) -> list[Reservation]:
        """Reservations neither settled nor released, oldest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM ledger WHERE id IN (SELECT reserve_id FROM open_holds) ORDER BY id"
        )
        return [_reservation(_entry(r)) for r in rows]

    async def totals_by_kind(self) -> dict[str, int]:
        """The sum of `amount_mc` (the signed effect on spend) of each kind of row, and of
        `cost_mc` as "cost" (what Astria said the settled jobs cost), for the metrics."""
        rows = await self._db.fetchall(
            "SELECT kind, COALESCE(SUM(amount_mc), 0) AS total,"
            " COALESCE(SUM(cost_mc), 0) AS cost FROM ledger GROUP BY kind"
        )
        totals = {str(r["kind"]): int(r["total"]) for r in rows}
        totals["cost"] = sum(int(r["cost"]) for r in rows)
        return totals

    async def entries(
        self,
        *,
        guild_id: int | None = None,
        user_id: int | None = None,
        job: JobRef | None = None,
    ) -> list[LedgerEntry]:
        """Ledger rows in order, optionally for one server, member or job."""
        rows = await self._db.fetchall(
            "SELECT * FROM ledger WHERE (CAST(:guild AS BIGINT) IS NULL OR guild_id = :guild)"
            " AND (CAST(:user AS BIGINT) IS NULL OR user_id = :user)"
            " AND (CAST(:job AS TEXT) IS NULL OR job = :job)"
            " ORDER BY id",
            {"guild": guild_id, "user": user_id, "job": None if job is None else str(job)},
        )
        return [_entry(r) for r in rows]

    async def audit(self, *, jobs: bool = True) -> list[str]:
        """Problems in the ledger's bookkeeping; empty when it is consistent. With `jobs`
        (the default) reservations are checked against their jobs too: one still open
        for an ended job, or for no job at all, is a step a crash cut short (`repair`).
        False is for a ledger used without job rows (its own unit tests)."""
        problems = await self._db.integrity_problems()
        checks: tuple[tuple[str, str], ...] = (
            (
                "a settle or release closes no reserve of its job",
                "SELECT c.id FROM ledger AS c LEFT JOIN ledger AS r ON r.id = c.reserve_id"
                " WHERE c.kind IN ('settle', 'release')"
                " AND (r.id IS NULL OR r.kind <> 'reserve'"
                " OR c.job IS NULL OR r.job <> c.job)",
            ),
            (
                "a reservation is closed more than once",
                "SELECT reserve_id FROM ledger WHERE reserve_id IS NOT NULL"
                " GROUP BY reserve_id HAVING COUNT(*) > 1",
            ),
            (
                "an open hold does not match an unclosed reserve",
                "SELECT h.reserve_id FROM open_holds AS h LEFT JOIN ledger AS r"
                " ON r.id = h.reserve_id AND r.kind = 'reserve'"
                " WHERE r.id IS NULL OR r.amount_mc <> h.amount_mc"
                " OR EXISTS (SELECT 1 FROM ledger AS c WHERE c.reserve_id = h.reserve_id)",
            ),
            (
                "an unclosed reserve has no open hold",
                "SELECT r.id FROM ledger AS r WHERE r.kind = 'reserve'"
                " AND NOT EXISTS (SELECT 1 FROM ledger AS c WHERE c.reserve_id = r.id)"
                " AND NOT EXISTS (SELECT 1 FROM open_holds AS h WHERE h.reserve_id = r.id)",
            ),
        )
        for problem, sql in checks:
            rows = await self._db.fetchall(sql)
            if rows:
                ids = ", ".join(str(r[0]) for r in rows[:10])
                problems.append(f"{problem} (ledger ids {ids})")
        if not jobs:
            return problems
        ended = await self._db.fetchall(_ENDED_OPEN_SQL)
        if ended:
            listed = ", ".join(f"{r['job']} {r['state']}" for r in ended[:10])
            problems.append(f"an ended job's reservation is still open ({listed})")
        jobless = await self._db.fetchall(_JOBLESS_OPEN_SQL)
        if jobless:
            listed = ", ".join(str(r["job"]) for r in jobless[:10])
            problems.append(f"an open reservation has no job ({listed})")
        return problems

    # --- helpers ------------------------------------------------------------------------

    def _snapshot_params(self, guild_id: int, user_id: int, at: datetime) -> Params:
        day_start, day_end = day_bounds(at, self._policy.zone)
        month_start, month_end = month_bounds(at, self._policy.zone)
        return {
            "guild": guild_id,
            "user": user_id,
            "day_start": to_ms(day_start),
            "day_end": to_ms(day_end),
            "month_start": to_ms(month_start),
            "month_end": to_ms(month_end),
        }

    def _snapshot(self, row: Row) -> BudgetSnapshot:
        policy = self._policy

        def setting(name: str, default: int) -> int:
            value = row[name]
            return default if value is None else int(value)

        account = None
        if row["balance"] is not None:
            account = Allowance(
                BudgetLimit.ACCOUNT,
                int(row["balance"]) - policy.safety_margin_mc,
                int(row["held"]) + int(row["settled_since"]),
            )
        return BudgetSnapshot(
            account=account,
            account_short=row["short_since"] is not None,
            guild_month=Allowance(
                BudgetLimit.GUILD_MONTH,
                setting("guild_budget", policy.guild_monthly_budget_mc) + int(row["guild_granted"]),
                int(row["guild_used"]),
            ),
            user_month=Allowance(
                BudgetLimit.USER_MONTH,
                setting("month_limit", policy.user_monthly_limit_mc) + int(row["month_granted"]),
                int(row["month_used"]),
            ),
            user_day=Allowance(
                BudgetLimit.USER_DAY,
                setting("day_limit", policy.user_daily_limit_mc) + int(row["day_granted"]),
                int(row["day_used"]),
            ),
        )
