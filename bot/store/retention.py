"""Retention: what the bot no longer needs of finished jobs is pruned or compacted after a
period (`RETENTION_DAYS`), so the outbox and the prompts table do not grow with every
image ever made. The ledger is never touched: it is the record of every charge.

- Events (the outbox) of finished jobs, reported before the cutoff, are deleted with the
  Discord message ids of their posts. Unreported events, and those of live jobs (a ready
  tune's reminder keeps it from being sent twice), stay.
- Prompts in a final state, last changed before the cutoff, lose their image links (the
  largest field; Astria's links to old images do not outlive its tunes). The rows stay:
  the ledger names jobs by text ("prompt:12"), and a deleted newest row would let SQLite
  give its id to the next prompt, whose reservation would then collide with the old one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from bot.store.db import Database, to_ms
from bot.store.prompts import UNFINISHED_PROMPTS, PromptState
from bot.store.tunes import GONE_TUNES, states_filter

BATCH = 500  # rows per write transaction: other writers never wait long behind a prune

_FINAL_PROMPTS = states_filter(sorted(set(PromptState) - UNFINISHED_PROMPTS))
_FINAL_TUNES = states_filter(sorted(GONE_TUNES))

# Reported before the cutoff, and the job's row says it is over. The id is cut out of the
# job's name so each lookup is one primary-key probe. `{instr}`: the dialect's name for it.
_OLD_EVENTS = """
SELECT e.key FROM job_events AS e
WHERE e.reported_at_ms IS NOT NULL AND e.reported_at_ms < :cutoff
  AND (
    (e.job LIKE 'prompt:%' AND EXISTS (
        SELECT 1 FROM prompts AS p WHERE p.id = CASE WHEN e.job LIKE 'prompt:%'
            THEN CAST(substr(e.job, 8) AS INTEGER) END
          AND {instr}(:final_prompts, ',' || p.state || ',') > 0))
    OR (e.job LIKE 'tune:%' AND EXISTS (
        SELECT 1 FROM tunes AS t WHERE t.id = CASE WHEN e.job LIKE 'tune:%'
            THEN CAST(substr(e.job, 6) AS INTEGER) END
          AND {instr}(:final_tunes, ',' || t.state || ',') > 0))
  )
LIMIT :batch
"""

_OLD_PROMPTS = """
SELECT id FROM prompts
WHERE updated_at_ms < :cutoff AND image_urls <> '[]'
  AND {instr}(:final_prompts, ',' || state || ',') > 0
LIMIT :batch
"""


@dataclass(frozen=True)
class Pruned:
    events: int = 0
    prompts_compacted: int = 0


_STALE_SEEN = (
    "DELETE FROM meta WHERE key LIKE 'seen:%'"
    " AND key NOT IN (SELECT 'seen:tune:' || CAST(id AS TEXT) FROM tunes"
    " WHERE state IN ('training', 'stuck'))"
    " AND key NOT IN (SELECT 'seen:prompt:' || CAST(id AS TEXT) FROM prompts"
    " WHERE state IN ('generating', 'stuck'))"
)


class Retention:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def prune(self, *, before: datetime) -> Pruned:
        """Prune what finished before `before` (see the module docstring), in batches."""
        params = {
            "cutoff": to_ms(before),
            "final_prompts": _FINAL_PROMPTS,
            "final_tunes": _FINAL_TUNES,
            "batch": BATCH,
        }
        events = compacted = 0
        instr, texts = self._db.dialect.instr, self._db.dialect.json_texts()
        old_events, old_prompts = _OLD_EVENTS.format(instr=instr), _OLD_PROMPTS.format(instr=instr)
        while True:
            async with self._db.write() as tx:
                keys = [str(r["key"]) for r in await tx.fetchall(old_events, params)]
                if keys:
                    chosen = (json.dumps(keys),)
                    await tx.execute(
                        f"DELETE FROM event_messages WHERE key IN {texts}",  # noqa: S608
                        chosen,
                    )
                    await tx.execute(
                        f"DELETE FROM job_events WHERE key IN {texts}",  # noqa: S608
                        chosen,
                    )
            events += len(keys)
            if len(keys) < BATCH:
                break
        while True:
            async with self._db.write() as tx:
                ids = [int(r["id"]) for r in await tx.fetchall(old_prompts, params)]
                if ids:
                    # updated_at stays: compacting is not a change of the job.
                    await tx.execute(
                        "UPDATE prompts SET image_urls = '[]'"  # noqa: S608
                        f" WHERE id IN {self._db.dialect.json_ints()}",
                        (json.dumps(ids),),
                    )
            compacted += len(ids)
            if len(ids) < BATCH:
                break
        # Snapshots another process's list left for a job's holder that the holder never
        # took (the job ended another way): nothing reads them once the job is not
        # followed any more.
        async with self._db.write() as tx:
            await tx.execute(_STALE_SEEN)
        return Pruned(events, compacted)
