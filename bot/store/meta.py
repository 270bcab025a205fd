"""Small facts the bot keeps about itself, by key (for example the command tree's hash)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from bot.store.db import Database

IDEMPOTENCY_PROBE_KEY = "astria:idempotency-probe"
REFUND_FINDING_KEY = "astria:failed-prompt-refunds"


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
