"""The last known Astria account balance and when it was read: the ceiling of every
reservation, whatever the servers' own budgets say.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.store.db import Clock, Database, Row, from_ms, to_ms

_SELECT = "SELECT balance_mc, read_at_ms, short_since_ms, short_need_mc FROM account_balance"


@dataclass(frozen=True)
class AccountBalance:
    balance_mc: int
    read_at: datetime  # when the request that read it was sent
    # Set while Astria's last word on a paid create was "not enough credit" (docs/
    # architecture.md §3): paid intake is paused and queued paid jobs wait.
    short_since: datetime | None = None
    short_need_mc: int | None = None

    @property
    def short(self) -> bool:
        return self.short_since is not None


def _balance(row: Row) -> AccountBalance:
    since = row["short_since_ms"]
    need = row["short_need_mc"]
    return AccountBalance(
        int(row["balance_mc"]),
        from_ms(int(row["read_at_ms"])),
        None if since is None else from_ms(int(since)),
        None if need is None else int(need),
    )


class Account:
    def __init__(self, db: Database, clock: Clock, *, safety_margin_mc: int = 0) -> None:
        self._db = db
        self._clock = clock
        self._margin = safety_margin_mc

    async def record_balance(
        self,
        balance_mc: int,
        *,
        read_at: datetime | None = None,
        ledger_mark: int | None = None,
    ) -> AccountBalance:
        """Keep `balance_mc` unless a reading sent later is already stored.

        Pass `ledger_mark`, the last ledger id before the request was *sent*
        (`Ledger.last_id()`): every settle written after it may not be in the balance
        yet, so the account check counts it again (erring on the safe side). Ids only grow,
        so a clock set back cannot hide a settle. Without a mark, the last row stamped
        before `read_at` stands in (wall time: the old way). "Later" is the larger mark,
        then the later `read_at`; a reading sent at the same mark is as good as another,
        since nothing the bot spent lies between them.

        A reading sent after a shortage began that covers what was refused (above the
        safety margin) ends the shortage: paid intake and the queue go on by themselves.
        """
        at_ms = to_ms(read_at or self._clock())
        async with self._db.write() as tx:
            await tx.lock_money()  # the mark must not pass a ledger row still uncommitted
            if ledger_mark is None:
                row = await tx.fetchone(
                    "SELECT COALESCE(MAX(id), 0) FROM ledger WHERE at_ms < ?", (at_ms,)
                )
                assert row is not None
                ledger_mark = int(row[0])
            await tx.execute(
                "INSERT INTO account_balance (id, balance_mc, read_at_ms, ledger_mark)"
                " VALUES (1, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET balance_mc = excluded.balance_mc,"
                " read_at_ms = excluded.read_at_ms, ledger_mark = excluded.ledger_mark"
                " WHERE excluded.ledger_mark > account_balance.ledger_mark"
                " OR (excluded.ledger_mark = account_balance.ledger_mark"
                " AND excluded.read_at_ms >= account_balance.read_at_ms)",
                (balance_mc, at_ms, ledger_mark),
            )
            await tx.execute(
                "UPDATE account_balance SET short_since_ms = NULL, short_need_mc = NULL"
                " WHERE short_since_ms IS NOT NULL AND short_since_ms < ?"
                " AND ? >= short_need_mc",
                (at_ms, balance_mc - self._margin),
            )
            row = await tx.fetchone(_SELECT)
        assert row is not None
        return _balance(row)

    async def mark_short(self, need_mc: int, *, at: datetime | None = None) -> bool:
        """Astria refused a create costing `need_mc` for lack of credit. True when this
        starts a shortage (the first refusal since credit was last enough)."""
        at_ms = to_ms(at or self._clock())
        async with self._db.write() as tx:
            # Before the read: two processes refused at once start one shortage, not two.
            await tx.lock_money()
            row = await tx.fetchone("SELECT short_since_ms FROM account_balance WHERE id = 1")
            if row is None:  # refused before any reading: the balance is, in effect, 0
                await tx.execute(
                    "INSERT INTO account_balance (id, balance_mc, read_at_ms) VALUES (1, 0, 0)"
                )
            started = row is None or row["short_since_ms"] is None
            # The earliest refusal stands; the need is the largest refused, so a reading
            # that covers a cheap prompt does not resume a queue headed by a tune.
            await tx.execute(
                "UPDATE account_balance SET short_since_ms = COALESCE(short_since_ms, ?),"  # noqa: S608
                f" short_need_mc = {self._db.dialect.greatest}(COALESCE(short_need_mc, 0), ?)"
                " WHERE id = 1",
                (at_ms, need_mc),
            )
        return started

    async def last_known(self) -> AccountBalance | None:
        row = await self._db.fetchone(_SELECT)
        if row is None:
            return None
        return _balance(row)
