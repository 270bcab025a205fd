"""Erasing a member: every row that links their Discord id to a tune name, a prompt text or
a photo loses the link, in one transaction. No Discord and no Astria here (the action
deletes at Astria first, and the ui deletes the messages whose ids this returns).

- Tunes and prompts rows stay, emptied: owner 0, no name, text, photos, links or message
  ids. Their ids must not be reused (SQLite would give a deleted newest id to the next job,
  whose reservation would collide with the old job's in the ledger).
- The outbox events of their jobs are deleted, with the ids of the messages they posted.
- The ledger keeps every row and amount; the member's id (as member or actor) becomes 0,
  "an erased member" (the only UPDATE its trigger allows, schema 9).
- Bans of the member stay: they are the admins' rule, not the member's data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bot.store.db import Database, Row, Transaction

ERASED = 0  # the id that stands for every erased member


@dataclass(frozen=True)
class Scrubbed:
    """What the store held and no longer does: for the caller to finish outside."""

    tunes: int
    prompts: int
    ledger_rows: int
    photo_paths: tuple[str, ...]
    messages: tuple[tuple[int, int], ...]  # (channel id, message id) the bot posted


class Erasure:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def scrub(self, user_id: int, *, guild_id: int | None = None) -> Scrubbed:
        """Unlink `user_id` from everything in `guild_id` (None: every server)."""
        if user_id == ERASED:
            raise ValueError("the erased id cannot be erased again")
        mine = {"user": user_id, "guild": guild_id}
        async with self._db.write() as tx:
            # A ledger write, and before the reads: a create committing meanwhile (which
            # takes this lock too) is either seen whole, photos included, or comes after.
            await tx.lock_money()
            tunes = await tx.fetchall(
                "SELECT id, photo_paths, status_channel_id, status_message_id FROM tunes"
                " WHERE owner_id = :user"
                " AND (CAST(:guild AS BIGINT) IS NULL OR guild_id = :guild)",
                mine,
            )
            prompts = await tx.fetchall(
                "SELECT id, channel_id, status_channel_id, status_message_id,"
                " result_message_ids FROM prompts WHERE owner_id = :user"
                " AND (CAST(:guild AS BIGINT) IS NULL OR guild_id = :guild)",
                mine,
            )
            jobs = [f"tune:{r['id']}" for r in tunes] + [f"prompt:{r['id']}" for r in prompts]
            messages = await self._messages(tx, jobs, tunes, prompts, self._db.dialect.json_texts())
            photos = tuple(p for r in tunes for p in json.loads(r["photo_paths"]))
            chosen, texts = (json.dumps(jobs),), self._db.dialect.json_texts()
            await tx.execute(
                "DELETE FROM event_messages WHERE key IN (SELECT key FROM job_events"  # noqa: S608
                f" WHERE job IN {texts})",
                chosen,
            )
            await tx.execute(
                f"DELETE FROM job_events WHERE job IN {texts}",  # noqa: S608
                chosen,
            )
            # What another process's list saw of these jobs, left for their holder.
            await tx.execute(
                f"DELETE FROM meta WHERE key IN {texts}",  # noqa: S608
                (json.dumps([f"seen:{job}" for job in jobs]),),
            )
            await tx.execute(
                "UPDATE prompts SET owner_id = 0, user_text = '', final_text = '',"
                " params = '{}', image_urls = '[]', delivery_nonce = NULL,"
                " status_channel_id = NULL, status_message_id = NULL,"
                " result_message_ids = '[]', error = NULL WHERE owner_id = :user"
                " AND (CAST(:guild AS BIGINT) IS NULL OR guild_id = :guild)",
                mine,
            )
            await tx.execute(
                "UPDATE tunes SET owner_id = 0, name = '', name_key = 'erased:' || id,"
                " owner_name = '', photo_paths = '[]', status_channel_id = NULL,"
                " status_message_id = NULL, shared = 0, error = NULL"
                " WHERE owner_id = :user"
                " AND (CAST(:guild AS BIGINT) IS NULL OR guild_id = :guild)",
                mine,
            )
            ledger = await tx.fetchall(
                "SELECT id FROM ledger WHERE (user_id = :user OR actor_id = :user)"
                " AND (CAST(:guild AS BIGINT) IS NULL OR guild_id = :guild)",
                mine,
            )
            await tx.execute(
                "UPDATE ledger SET user_id = 0 WHERE user_id = :user"
                " AND (CAST(:guild AS BIGINT) IS NULL OR guild_id = :guild)",
                mine,
            )
            await tx.execute(
                "UPDATE ledger SET actor_id = 0 WHERE actor_id = :user"
                " AND (CAST(:guild AS BIGINT) IS NULL OR guild_id = :guild)",
                mine,
            )
        return Scrubbed(len(tunes), len(prompts), len(ledger), photos, messages)

    @staticmethod
    async def _messages(
        tx: Transaction, jobs: list[str], tunes: list[Row], prompts: list[Row], texts: str
    ) -> tuple[tuple[int, int], ...]:
        rows = await tx.fetchall(
            "SELECT m.channel_id, m.message_id FROM event_messages AS m"  # noqa: S608
            " JOIN job_events AS e ON e.key = m.key"
            f" WHERE e.job IN {texts}",
            (json.dumps(jobs),),
        )
        found = {(int(r["channel_id"]), int(r["message_id"])) for r in rows}
        for row in [*tunes, *prompts]:
            channel, message = row["status_channel_id"], row["status_message_id"]
            if channel is not None and message is not None:
                found.add((int(channel), int(message)))
        for row in prompts:
            channel = row["status_channel_id"] or row["channel_id"]
            for message in json.loads(row["result_message_ids"]):
                found.add((int(channel), int(message)))
        return tuple(sorted(found))
