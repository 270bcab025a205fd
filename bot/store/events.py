"""The outbox of job events: each written once per key, reported, then marked reported."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.store.db import Clock, Database, Row, from_ms, opt_from_ms, to_ms


@dataclass(frozen=True)
class RecordedEvent:
    key: str
    job: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime
    reported_at: datetime | None
    outcome: str | None
    attempts: int = 0  # failed attempts to report it
    refusals: int = 0  # of those, the channel refusing for good
    next_attempt_at: datetime | None = None  # not before this (None: now)


def _event(row: Row) -> RecordedEvent:
    return RecordedEvent(
        key=str(row["key"]),
        job=str(row["job"]),
        kind=str(row["kind"]),
        payload=json.loads(row["payload"]),
        created_at=from_ms(int(row["created_at_ms"])),
        reported_at=opt_from_ms(row["reported_at_ms"]),
        outcome=row["outcome"],
        attempts=int(row["attempts"]),
        refusals=int(row["refusals"]),
        next_attempt_at=opt_from_ms(row["next_attempt_at_ms"]),
    )


class Events:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def record(self, *, key: str, job: str, kind: str, payload: dict[str, Any]) -> bool:
        """Write the event unless its key exists; True when it is new."""
        async with self._db.write() as tx:
            before = await tx.fetchone("SELECT 1 FROM job_events WHERE key = ?", (key,))
            if before is not None:
                return False
            await tx.execute(
                "INSERT INTO job_events (key, job, kind, payload, created_at_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (key, job, kind, json.dumps(payload), to_ms(self._clock())),
            )
        return True

    async def exists(self, key: str) -> bool:
        return await self._db.fetchone("SELECT 1 FROM job_events WHERE key = ?", (key,)) is not None

    async def existing(self, keys: Collection[str]) -> set[str]:
        """Which of `keys` are recorded (one query, however many keys)."""
        if not keys:
            return set()
        rows = await self._db.fetchall(
            f"SELECT key FROM job_events WHERE key IN {self._db.dialect.json_texts()}",  # noqa: S608
            (json.dumps(list(keys)),),
        )
        return {str(r["key"]) for r in rows}

    async def pending(self) -> list[RecordedEvent]:
        """Events not yet reported, oldest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM job_events WHERE reported_at_ms IS NULL ORDER BY created_at_ms, key"
        )
        return [_event(r) for r in rows]

    async def reported_since(self, since: datetime) -> list[RecordedEvent]:
        """Events reported at or after `since`, oldest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM job_events WHERE reported_at_ms >= ? ORDER BY reported_at_ms, key",
            (to_ms(since),),
        )
        return [_event(r) for r in rows]

    async def mark_reported(self, key: str, outcome: str) -> None:
        async with self._db.write() as tx:
            await tx.execute(
                "UPDATE job_events SET reported_at_ms = ?, outcome = ?"
                " WHERE key = ? AND reported_at_ms IS NULL",
                (to_ms(self._clock()), outcome, key),
            )

    async def record_failure(self, key: str, *, refusals: int, next_attempt_at: datetime) -> None:
        """One more failed attempt to report the event, `refusals` of them by the channel
        for good so far; the next is not before `next_attempt_at`."""
        async with self._db.write() as tx:
            await tx.execute(
                "UPDATE job_events SET attempts = attempts + 1,"
                " refusals = ?, next_attempt_at_ms = ?"
                " WHERE key = ? AND reported_at_ms IS NULL",
                (refusals, to_ms(next_attempt_at), key),
            )

    async def for_job(self, job: str) -> list[RecordedEvent]:
        rows = await self._db.fetchall(
            "SELECT * FROM job_events WHERE job = ? ORDER BY created_at_ms, key", (job,)
        )
        return [_event(r) for r in rows]

    async def record_message(self, key: str, part: int, channel_id: int, message_id: int) -> None:
        """Remember that part `part` of the event's post is message `message_id`."""
        async with self._db.write() as tx:
            await tx.execute(
                "INSERT INTO event_messages (key, part, channel_id, message_id)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (key, part) DO UPDATE SET"
                " channel_id = excluded.channel_id, message_id = excluded.message_id",
                (key, part, channel_id, message_id),
            )

    async def messages(self, key: str) -> dict[int, tuple[int, int]]:
        """The posted parts of an event: part -> (channel id, message id)."""
        rows = await self._db.fetchall(
            "SELECT part, channel_id, message_id FROM event_messages WHERE key = ?", (key,)
        )
        return {int(r["part"]): (int(r["channel_id"]), int(r["message_id"])) for r in rows}

    async def all(self) -> list[RecordedEvent]:
        rows = await self._db.fetchall("SELECT * FROM job_events ORDER BY created_at_ms, key")
        return [_event(r) for r in rows]
