"""Leases on unfinished jobs: which process works which job, and until when.

Each bot process has a holder id (PROCESS_ID). `claim_due` gives it jobs no one holds or
whose lease ran out (their holder died or lost the database), `renew` keeps what it still
holds, `release` hands jobs back (finished, or the process stopping). Two holders never
hold one job at once: on PostgreSQL the claim's read locks the rows it takes and skips the
rows another claim has locked (`FOR UPDATE SKIP LOCKED`); on SQLite the read and the
update are one `BEGIN IMMEDIATE` transaction, which holds the one write lock throughout.
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
_KINDS: dict[JobTable, JobKind] = {"tunes": JobKind.TUNE, "prompts": JobKind.PROMPT}
_TABLES: tuple[JobTable, ...] = ("tunes", "prompts")


class Leases:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def claim_due(self, holder: str, limit: int, lease_seconds: float) -> list[JobRef]:
        """Claim up to `limit` unfinished jobs that no one holds or whose lease has run out
        (this holder's own lapsed ones included), tunes first, each kind oldest first;
        the lease lasts `lease_seconds`. Returns the jobs claimed."""
        if limit <= 0:
            return []
        now_ms = to_ms(self._clock())
        until_ms = now_ms + int(timedelta(seconds=lease_seconds) / timedelta(milliseconds=1))
        claimed: list[JobRef] = []
        async with self._db.write() as tx:
            for table in _TABLES:
                left = limit - len(claimed)
                if left <= 0:
                    break
                ids = await self._due(tx, table, now_ms, left)
                if ids:
                    await tx.execute(
                        f"UPDATE {table} SET lease_holder = ?, lease_expires_ms = ?"  # noqa: S608
                        f" WHERE id IN {self._db.dialect.json_ints()}",
                        (holder, until_ms, json.dumps(ids)),
                    )
                    claimed += [JobRef(_KINDS[table], i) for i in ids]
        return claimed

    async def _due(self, tx: Transaction, table: JobTable, now_ms: int, limit: int) -> list[int]:
        rows = await tx.fetchall(
            # Only the table and the dialect's lock phrase vary, both literals.
            f"SELECT id FROM {table} WHERE {_UNFINISHED[table]}"  # noqa: S608
            " AND (lease_holder IS NULL OR lease_expires_ms IS NULL OR lease_expires_ms <= ?)"
            f" ORDER BY id LIMIT ?{self._db.dialect.skip_locked}",
            (now_ms, limit),
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

    async def holders(self) -> dict[JobRef, str]:
        """Who holds which unfinished job (unexpired or not): for tests and `/jobs` views."""
        found: dict[JobRef, str] = {}
        for table in _TABLES:
            rows = await self._db.fetchall(
                f"SELECT id, lease_holder FROM {table}"  # noqa: S608
                f" WHERE {_UNFINISHED[table]} AND lease_holder IS NOT NULL"
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
