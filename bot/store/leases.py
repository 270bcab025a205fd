"""Leases on unfinished jobs: which process works which job, and until when.

Each bot process has a holder id (PROCESS_ID). `claim_due` gives it jobs no one holds or
whose lease ran out (their holder died or lost the database), `renew` keeps what it still
holds, `release` hands jobs back (finished, or the process stopping). Two holders never
hold one job at once: on PostgreSQL the claim's read locks the rows it takes and skips the
rows another claim has locked (`FOR UPDATE SKIP LOCKED`); on SQLite the read and the
update are one `BEGIN IMMEDIATE` transaction, which holds the one write lock throughout.

A channel is worked by one process at a time: a job is not claimed while another holder's
unexpired lease covers a job in the same channel, so each channel's reports go out from
one process, in the order its outbox has them, and Discord's per-channel rate limit is met
by one process's limiter. Claims take a lock of their own (PostgreSQL: an advisory lock for
the transaction), so two claims at once cannot both open one channel.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import timedelta

from bot.store.db import Clock, Database, Transaction, to_ms
from bot.store.jobstate import JobKind, JobRef, JobTable

# The literal `state IN (...)` each table's partial index of unfinished jobs is made with.
_UNFINISHED: dict[JobTable, str] = {
    "tunes": "state IN ('queued', 'submitting', 'training', 'stuck')",
    "prompts": "state IN ('queued', 'submitting', 'generating', 'stuck')",
}
# Finished jobs whose holder still has an event of theirs to report (`job_events.job` is
# "tune:12"; the id is cut out inside a CASE, which PostgreSQL evaluates before the cast).
_REPORTING: dict[JobTable, str] = {
    "tunes": "NOT (state IN ('queued', 'submitting', 'training', 'stuck'))"
    " AND id IN (SELECT CAST(CASE WHEN job LIKE 'tune:%' THEN substr(job, 6) END AS BIGINT)"
    " FROM job_events WHERE reported_at_ms IS NULL AND job LIKE 'tune:%')",
    "prompts": "NOT (state IN ('queued', 'submitting', 'generating', 'stuck'))"
    " AND id IN (SELECT CAST(CASE WHEN job LIKE 'prompt:%' THEN substr(job, 8) END AS BIGINT)"
    " FROM job_events WHERE reported_at_ms IS NULL AND job LIKE 'prompt:%')",
}
# The states a job is followed at Astria in (polled).
_FOLLOWED: dict[JobTable, str] = {
    "tunes": "('training', 'stuck')",
    "prompts": "('generating', 'stuck')",
}
SEEN = "seen:"  # the meta keys of snapshots left for a job's holder: seen:<kind>:<id>
_KINDS: dict[JobTable, JobKind] = {"tunes": JobKind.TUNE, "prompts": JobKind.PROMPT}
_TABLES: tuple[JobTable, ...] = ("tunes", "prompts")


class Leases:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def claim_due(
        self,
        holder: str,
        limit: int,
        lease_seconds: float,
        *,
        own: bool = False,
        anyone: bool = False,
    ) -> list[JobRef]:
        """Claim up to `limit` jobs that are due a holder: unfinished, or finished with an
        event not yet reported (whoever holds a job reports it), and held by no one or on
        a lease that has run out (this holder's own lapsed ones included; with `own`, its
        unexpired ones too: a process restarted under the same id takes its jobs back;
        with `anyone`, whoever holds them: a store only one process uses, SQLite's).
        Tunes first, each kind oldest first; the lease lasts `lease_seconds` from now.
        Returns the jobs claimed."""
        if limit <= 0:
            return []
        now_ms = to_ms(self._clock())
        until_ms = now_ms + int(timedelta(seconds=lease_seconds) / timedelta(milliseconds=1))
        claimed: list[JobRef] = []
        async with self._db.write() as tx:
            if not anyone:
                await tx.lock_claims()
            for table in _TABLES:
                for which in (_UNFINISHED[table], _REPORTING[table]):
                    left = limit - len(claimed)
                    if left <= 0:
                        break
                    ids = await self._due(
                        tx, table, which, holder, own=own, anyone=anyone, now_ms=now_ms, limit=left
                    )
                    if ids:
                        await tx.execute(
                            f"UPDATE {table} SET lease_holder = ?, lease_expires_ms = ?"  # noqa: S608
                            f" WHERE id IN {self._db.dialect.json_ints()}",
                            (holder, until_ms, json.dumps(ids)),
                        )
                        claimed += [JobRef(_KINDS[table], i) for i in ids]
        return claimed

    async def _due(
        self,
        tx: Transaction,
        table: JobTable,
        which: str,
        holder: str,
        *,
        own: bool,
        anyone: bool,
        now_ms: int,
        limit: int,
    ) -> list[int]:
        # A channel another holder is working (an unexpired lease on any of its jobs, in
        # either table) stays theirs: its new jobs wait for that holder's next claim.
        # (`lease_holder IS NOT NULL` lets the partial indexes of schema 14 serve it.)
        elsewhere = " AND ".join(
            f"NOT EXISTS (SELECT 1 FROM {other} AS o WHERE o.channel_id = j.channel_id"  # noqa: S608
            " AND o.lease_holder IS NOT NULL AND o.lease_holder <> ? AND o.lease_expires_ms > ?)"
            for other in _TABLES
        )
        rows = await tx.fetchall(
            # Only the tables, the literal condition and the dialect's lock phrase vary.
            f"SELECT j.id FROM {table} AS j WHERE {which}"  # noqa: S608
            " AND (j.lease_holder IS NULL OR j.lease_expires_ms IS NULL"
            "  OR j.lease_expires_ms <= ? OR j.lease_holder = ? OR ? = 1)"
            f" AND (? = 1 OR ({elsewhere}))"
            f" ORDER BY j.id LIMIT ?{self._db.dialect.skip_locked}",
            (now_ms, holder if own else "", int(anyone), int(anyone))
            + (holder, now_ms) * len(_TABLES)
            + (limit,),
        )
        return [int(r["id"]) for r in rows]

    async def renew(
        self, holder: str, jobs: Collection[JobRef], lease_seconds: float
    ) -> set[JobRef]:
        """Extend this holder's leases on `jobs` by `lease_seconds` from now; returns the
        ones it still holds (a job another holder took over after this one's lease ran out
        is not among them, and this holder must stop working it)."""
        now_ms = to_ms(self._clock())
        until_ms = now_ms + int(timedelta(seconds=lease_seconds) / timedelta(milliseconds=1))
        held: set[JobRef] = set()
        async with self._db.write() as tx:
            for table, ids in _by_table(jobs).items():
                await tx.execute(
                    f"UPDATE {table} SET lease_expires_ms = ?"  # noqa: S608
                    f" WHERE lease_holder = ? AND id IN {self._db.dialect.json_ints()}",
                    (until_ms, holder, json.dumps(ids)),
                )
                rows = await tx.fetchall(
                    f"SELECT id FROM {table}"  # noqa: S608
                    f" WHERE lease_holder = ? AND id IN {self._db.dialect.json_ints()}",
                    (holder, json.dumps(ids)),
                )
                held |= {JobRef(_KINDS[table], int(r["id"])) for r in rows}
        return held

    async def release(self, holder: str, jobs: Collection[JobRef]) -> None:
        """Hand back this holder's leases on `jobs` (another holder's are left alone)."""
        if not jobs:
            return
        async with self._db.write() as tx:
            for table, ids in _by_table(jobs).items():
                await tx.execute(
                    f"UPDATE {table} SET lease_holder = NULL, lease_expires_ms = NULL"  # noqa: S608
                    f" WHERE lease_holder = ? AND id IN {self._db.dialect.json_ints()}",
                    (holder, json.dumps(ids)),
                )

    async def wake(self, job: JobRef) -> None:
        """Ask the job's holder, whichever process it is, to look at it now (a callback
        reached a process that does not hold it): its next round finds the mark."""
        table: JobTable = "tunes" if job.kind is JobKind.TUNE else "prompts"
        async with self._db.write() as tx:
            await tx.execute(
                f"UPDATE {table} SET woken_at_ms = ? WHERE id = ?",  # noqa: S608
                (to_ms(self._clock()), job.id),
            )

    async def woken(self, holder: str) -> set[JobRef]:
        """The jobs this holder holds that someone asked to be looked at now; the marks
        are cleared (a read first, so a round with none writes nothing)."""
        found: dict[JobTable, list[int]] = {}
        for table in _TABLES:
            rows = await self._db.fetchall(
                f"SELECT id FROM {table}"  # noqa: S608
                " WHERE woken_at_ms IS NOT NULL AND lease_holder = ?",
                (holder,),
            )
            if rows:
                found[table] = [int(r["id"]) for r in rows]
        if not found:
            return set()
        async with self._db.write() as tx:
            for table, ids in found.items():
                await tx.execute(
                    f"UPDATE {table} SET woken_at_ms = NULL"  # noqa: S608
                    f" WHERE lease_holder = ? AND id IN {self._db.dialect.json_ints()}",
                    (holder, json.dumps(ids)),
                )
        return {JobRef(_KINDS[t], i) for t, ids in found.items() for i in ids}

    # ------------------------------------------------------------- shared polling
    # One list pass per poll interval for the whole account (docs/architecture.md §7): a
    # process with jobs due takes the kind's turn (`take_turn`), lists the pages for its
    # own due jobs and for the jobs other processes follow (`others_followed`), and leaves
    # what it saw of those on the store (`leave_seen`); their holders apply it in their
    # next round (`seen`) without a request of their own. Both live in `meta`: the turn
    # as "<until, ms, 16 digits>:<holder>" under poll-turn:<kind>, each snapshot (the few
    # fields the tracker needs, JSON) under seen:<kind>:<job id> until its holder takes it.

    async def take_turn(self, kind: JobKind, holder: str, seconds: float) -> bool:
        """Take the account's list turn for `kind` for `seconds` from now: True when no
        one holds it (the last one ran out) or this holder already does; False while
        another process's turn lasts. One conditional statement, so two processes asking
        at once never both get it."""
        now_ms = to_ms(self._clock())
        until_ms = now_ms + int(seconds * 1000)
        rows = await self._db.statement(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
            " SET value = excluded.value WHERE meta.value < ? OR substr(meta.value, 18) = ?"
            " RETURNING key",
            (f"poll-turn:{kind.value}", f"{until_ms:016d}:{holder}", f"{now_ms:016d};", holder),
        )
        return bool(rows)

    async def others_followed(self, kind: JobKind, holder: str) -> dict[int, int]:
        """The jobs of `kind` at Astria that another process holds: Astria id -> job id."""
        table: JobTable = "tunes" if kind is JobKind.TUNE else "prompts"
        rows = await self._db.fetchall(
            f"SELECT id, astria_id FROM {table} WHERE state IN {_FOLLOWED[table]}"  # noqa: S608
            " AND astria_id IS NOT NULL AND lease_holder IS NOT NULL AND lease_holder <> ?",
            (holder,),
        )
        return {int(r["astria_id"]): int(r["id"]) for r in rows}

    async def leave_seen(self, kind: JobKind, seen: dict[int, str]) -> None:
        """Leave what this process's list saw of other holders' jobs (job id -> snapshot)."""
        if not seen:
            return
        async with self._db.write() as tx:
            for job_id, snapshot in seen.items():
                await tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (f"seen:{kind.value}:{job_id}", snapshot),
                )

    async def seen(self, holder: str) -> dict[JobRef, str]:
        """The snapshots other processes left of the jobs this holder holds; they are
        taken off the store (a read first, so a round with none writes nothing)."""
        found: dict[str, tuple[JobRef, str]] = {}
        for table in _TABLES:
            kind = _KINDS[table]
            rows = await self._db.fetchall(
                f"SELECT m.key, m.value, t.id FROM meta m JOIN {table} t"  # noqa: S608
                f" ON m.key = '{SEEN}{kind.value}:' || CAST(t.id AS TEXT)"
                " WHERE t.lease_holder = ?",
                (holder,),
            )
            for r in rows:
                found[str(r["key"])] = (JobRef(kind, int(r["id"])), str(r["value"]))
        if not found:
            return {}
        async with self._db.write() as tx:
            for key, (_, snapshot) in found.items():
                await tx.execute("DELETE FROM meta WHERE key = ? AND value = ?", (key, snapshot))
        return dict(found.values())

    async def holders(self) -> dict[JobRef, str]:
        """Who holds which job (unexpired or not), for tests and diagnostics."""
        found: dict[JobRef, str] = {}
        for table in _TABLES:
            rows = await self._db.fetchall(
                f"SELECT id, lease_holder FROM {table} WHERE lease_holder IS NOT NULL"  # noqa: S608
            )
            for row in rows:
                found[JobRef(_KINDS[table], int(row["id"]))] = str(row["lease_holder"])
        return found


def _by_table(jobs: Collection[JobRef]) -> dict[JobTable, list[int]]:
    tables: dict[JobTable, list[int]] = {}
    for job in jobs:
        table: JobTable = "tunes" if job.kind is JobKind.TUNE else "prompts"
        tables.setdefault(table, []).append(job.id)
    return tables
