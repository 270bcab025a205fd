"""Small facts the bot keeps about itself, by key (for example the command tree's hash)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.store.db import Database, to_ms

IDEMPOTENCY_PROBE_KEY = "astria:idempotency-probe"
REFUND_FINDING_KEY = "astria:failed-prompt-refunds"
# A periodic duty's turn: the key holds when it is next due (wall milliseconds, as text).
TURN_KEY = "turn:{duty}"


@dataclass(frozen=True)
class IdempotencyProbe:
    """What the last conclusive idempotency probe found at Astria, and when."""

    on: bool
    at: datetime


class Meta:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key: str) -> str | None:
        row = await self._db.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row["value"])

    async def set(self, key: str, value: str) -> None:
        async with self._db.write() as tx:
            await tx.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    async def take_turn(self, duty: str, *, now: datetime, every: timedelta) -> bool:
        """True for exactly one caller per period of `every`, whichever process asks
        first once the duty is due (the daily retention, the balance watch): several
        processes on one database then do it once a period, not once each. The claim
        reads the due time with its row locked (`Dialect.for_update`): on PostgreSQL a
        second claimer waits for the first's commit and then reads the new due time
        (SQLite's write lock serialises them). A due time
        more than two periods ahead (the wall clock was set back) is claimable too."""
        key, now_ms = TURN_KEY.format(duty=duty), to_ms(now)
        every_ms = max(0, to_ms(now + every) - now_ms)
        # Set back: due more than two periods ahead (one period is the skew between two
        # processes' clocks it allows; a claim just made by a clock ahead of ours stands).
        far = now_ms + 2 * every_ms
        # Read first: most rounds find the turn taken, and need no write lock for it.
        seen = await self._db.fetchone(
            "SELECT 1 FROM meta WHERE key = :key"
            " AND CAST(value AS BIGINT) > :now AND CAST(value AS BIGINT) <= :far",
            {"key": key, "now": now_ms, "far": far},
        )
        if seen is not None:
            return False
        async with self._db.write() as tx:
            await tx.execute(
                "INSERT INTO meta (key, value) VALUES (?, '0') ON CONFLICT (key) DO NOTHING",
                (key,),
            )
            row = await tx.fetchone(
                f"SELECT value FROM meta WHERE key = ?{self._db.dialect.for_update}",  # noqa: S608
                (key,),
            )
            assert row is not None
            due = int(row["value"])
            if now_ms < due <= far:
                return False  # taken by another process meanwhile
            await tx.execute(
                "UPDATE meta SET value = ? WHERE key = ?", (str(now_ms + every_ms), key)
            )
        return True

    async def idempotency_probe(self) -> IdempotencyProbe | None:
        raw = await self.get(IDEMPOTENCY_PROBE_KEY)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return IdempotencyProbe(bool(data["on"]), datetime.fromisoformat(data["at"]))
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: as if never probed

    async def refund_finding(self) -> RefundFinding | None:
        raw = await self.get(REFUND_FINDING_KEY)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return RefundFinding(
                str(data["found"]), str(data["stated"]), datetime.fromisoformat(data["at"])
            )
        except (ValueError, KeyError, TypeError):
            return None

    async def record_refund_finding(self, found: str, stated: str, at: datetime) -> None:
        await self.set(
            REFUND_FINDING_KEY,
            json.dumps({"found": found, "stated": stated, "at": at.isoformat()}),
        )

    async def record_idempotency_probe(self, on: bool, at: datetime) -> None:
        await self.set(IDEMPOTENCY_PROBE_KEY, json.dumps({"on": on, "at": at.isoformat()}))


@dataclass(frozen=True)
class RefundFinding:
    """What the balance last proved about failed prompts' costs, against the setting."""

    found: str  # "refunded" or "kept"
    stated: str
    at: datetime

    @property
    def contradicts(self) -> bool:
        return self.found != self.stated
