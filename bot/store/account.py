"""The last known Astria account balance and when it was read: the ceiling of every
reservation, whatever the servers' own budgets say.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.store.db import Clock, Database, from_ms, to_ms


@dataclass(frozen=True)
class AccountBalance:
    balance_mc: int
    read_at: datetime  # when the request that read it was sent


class Account:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def record_balance(
        self, balance_mc: int, *, read_at: datetime | None = None
    ) -> AccountBalance:
        """Keep `balance_mc` unless a reading sent later is already stored.

        Pass the time the request was *sent*: a settle written after that instant may not
        be in the balance yet, so the account check counts it again (erring on the safe side).
        """
        at_ms = to_ms(read_at or self._clock())
        async with self._db.write() as tx:
            await tx.execute(
                "INSERT INTO account_balance (id, balance_mc, read_at_ms) VALUES (1, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET balance_mc = excluded.balance_mc,"
                " read_at_ms = excluded.read_at_ms"
                " WHERE excluded.read_at_ms >= account_balance.read_at_ms",
                (balance_mc, at_ms),
            )
            row = await tx.fetchone("SELECT balance_mc, read_at_ms FROM account_balance")
        assert row is not None
        return AccountBalance(int(row["balance_mc"]), from_ms(int(row["read_at_ms"])))

    async def last_known(self) -> AccountBalance | None:
        row = await self._db.fetchone("SELECT balance_mc, read_at_ms FROM account_balance")
        if row is None:
            return None
        return AccountBalance(int(row["balance_mc"]), from_ms(int(row["read_at_ms"])))
