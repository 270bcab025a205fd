"""The outbox of admins' alerts: one row per server, kind and window, written in the core
and posted by the Discord side. A fault that repeats inside the window is folded into its
row (`count` grows); the post is edited to show the count, never posted again.

Which servers hear an alert: one server's (a job's), or every server that named an alert
channel (`guild_id=None`: the Astria account is shared by all of them). A server without
an alert channel gets no row: there is nowhere to tell it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.store.db import Clock, Database, Row, Transaction, from_ms, opt_from_ms, to_ms


@dataclass(frozen=True)
class AlertRecord:
    id: int
    guild_id: int
    kind: str
    opened_at: datetime  # the window started here
    updated_at: datetime  # the latest fault folded in
    count: int  # faults in this window
    text: str  # the latest one's words
    shown_count: int  # what the post shows; 0 until it is posted
    channel_id: int | None  # where it was posted
    message_id: int | None
    attempts: int  # failed attempts to post or edit it since the last success
    next_attempt_at: datetime | None
    alert_channel_id: int | None = None  # the server's alert channel now (pending() only)

    @property
    def posted(self) -> bool:
        return self.message_id is not None


def _alert(row: Row) -> AlertRecord:
    keys = row.keys()
    return AlertRecord(
        id=int(row["id"]),
        guild_id=int(row["guild_id"]),
        kind=str(row["kind"]),
        opened_at=from_ms(int(row["opened_at_ms"])),
        updated_at=from_ms(int(row["updated_at_ms"])),
        count=int(row["count"]),
        text=str(row["text"]),
        shown_count=int(row["shown_count"]),
        channel_id=None if row["channel_id"] is None else int(row["channel_id"]),
        message_id=None if row["message_id"] is None else int(row["message_id"]),
        attempts=int(row["attempts"]),
        next_attempt_at=opt_from_ms(row["next_attempt_at_ms"]),
        alert_channel_id=(
            int(row["alert_channel_id"])
            if "alert_channel_id" in keys and row["alert_channel_id"] is not None
            else None
        ),
    )


class Alerts:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def raise_alert(
        self,
        kind: str,
        text: str,
        *,
        guild_id: int | None,
        window: timedelta,
        count: int = 1,
    ) -> list[int]:
        """Record `count` faults of `kind` for one server (or, with None, every server with
        an alert channel): folded into the server's open row of that kind when its window
        (`window` from its first fault) is still running, else a new row. The ids written."""
        if count < 1:
            return []
        now = to_ms(self._clock())
        async with self._db.write() as tx:
            await tx.lock_alerts()  # before the open rows are read (`_fold`)
            if guild_id is None:
                rows = await tx.fetchall(
                    "SELECT guild_id FROM guild_settings WHERE alert_channel_id IS NOT NULL"
                    " ORDER BY guild_id"
                )
            else:
                rows = await tx.fetchall(
                    "SELECT guild_id FROM guild_settings"
                    " WHERE guild_id = ? AND alert_channel_id IS NOT NULL",
                    (guild_id,),
                )
            written: list[int] = []
            for row in rows:
                written.append(
                    await self._fold(tx, int(row["guild_id"]), kind, text, now, window, count)
                )
        return written

    async def _fold(
        self,
        tx: Transaction,
        guild_id: int,
        kind: str,
        text: str,
        now: int,
        window: timedelta,
        count: int,
    ) -> int:
        since = now - int(window.total_seconds() * 1000)
        open_row = await tx.fetchone(
            "SELECT id FROM alerts WHERE guild_id = ? AND kind = ? AND opened_at_ms > ?"
            " ORDER BY opened_at_ms DESC, id DESC LIMIT 1",
            (guild_id, kind, since),
        )
        if open_row is not None:
            alert_id = int(open_row["id"])
            await tx.execute(
                "UPDATE alerts SET count = count + ?, text = ?,"  # noqa: S608
                f" updated_at_ms = {self._db.dialect.greatest}(updated_at_ms, ?) WHERE id = ?",
                (count, text, now, alert_id),
            )
            return alert_id
        return await tx.insert(
            "INSERT INTO alerts (guild_id, kind, opened_at_ms, updated_at_ms, count, text)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (guild_id, kind, now, now, count, text),
        )

    async def pending(self, *, due_by: datetime | None = None) -> list[AlertRecord]:
        """Alerts whose post is missing or shows an older count, oldest first, with each
        server's alert channel as it is now; only those due by `due_by` when given."""
        due, values = "", tuple[int, ...]()
        if due_by is not None:
            due = " AND (a.next_attempt_at_ms IS NULL OR a.next_attempt_at_ms <= ?)"
            values = (to_ms(due_by),)
        rows = await self._db.fetchall(
            "SELECT a.*, g.alert_channel_id FROM alerts AS a"  # noqa: S608
            " LEFT JOIN guild_settings AS g ON g.guild_id = a.guild_id"
            f" WHERE a.shown_count < a.count AND a.given_up = 0{due}"
            " ORDER BY a.id",
            values,
        )
        return [_alert(r) for r in rows]

    async def mark_shown(
        self, alert_id: int, count: int, *, channel_id: int | None, message_id: int | None
    ) -> None:
        """The post (made or edited) now shows `count`; a post keeps its first ids."""
        async with self._db.write() as tx:
            await tx.execute(
                f"UPDATE alerts SET shown_count = {self._db.dialect.greatest}(shown_count, ?),"  # noqa: S608
                " channel_id = COALESCE(channel_id, ?), message_id = COALESCE(message_id, ?),"
                " attempts = 0, next_attempt_at_ms = NULL WHERE id = ?",
                (count, channel_id, message_id, alert_id),
            )

    async def record_failure(self, alert_id: int, *, next_attempt_at: datetime) -> None:
        async with self._db.write() as tx:
            await tx.execute(
                "UPDATE alerts SET attempts = attempts + 1, next_attempt_at_ms = ? WHERE id = ?",
                (to_ms(next_attempt_at), alert_id),
            )

    async def give_up(self, alert_id: int) -> None:
        """Never to be posted: the server turned its alerts off, or Discord refuses it for
        good (the channel is gone or closed to the bot)."""
        async with self._db.write() as tx:
            await tx.execute("UPDATE alerts SET given_up = 1 WHERE id = ?", (alert_id,))

    async def told_since(self, guild_id: int, kind: str, since: datetime) -> bool:
        """Whether the server's admins were given an alert of `kind` raised at or after
        `since` (posted or waiting to be)."""
        row = await self._db.fetchone(
            "SELECT 1 FROM alerts WHERE guild_id = ? AND kind = ? AND updated_at_ms >= ?"
            " AND given_up = 0 LIMIT 1",
            (guild_id, kind, to_ms(since)),
        )
        return row is not None

    async def all(self) -> list[AlertRecord]:
        rows = await self._db.fetchall("SELECT * FROM alerts ORDER BY id")
        return [_alert(r) for r in rows]

    async def low_balance_thresholds(self, default_mc: int) -> dict[int, int]:
        """Each server with an alert channel and the balance below which it wants to
        hear (its own threshold, or `default_mc`); 0 means it does not want to."""
        rows = await self._db.fetchall(
            "SELECT guild_id, low_balance_alert_mc FROM guild_settings"
            " WHERE alert_channel_id IS NOT NULL"
        )
        found: dict[int, int] = {}
        for row in rows:
            own = row["low_balance_alert_mc"]
            found[int(row["guild_id"])] = default_mc if own is None else int(own)
        return found

    async def prune(self, *, before: datetime) -> int:
        """Alerts last changed before `before` that need nothing more (posted, or given up)."""
        async with self._db.write() as tx:
            rows = await tx.fetchall(
                "SELECT id FROM alerts WHERE updated_at_ms < ?"
                " AND (shown_count >= count OR given_up = 1)",
                (to_ms(before),),
            )
            await tx.execute(
                "DELETE FROM alerts WHERE updated_at_ms < ? AND (shown_count >= count"
                " OR given_up = 1)",
                (to_ms(before),),
            )
        return len(rows)
