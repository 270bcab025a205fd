"""Members' fine-tunes: who owns which, their state at Astria, and where their photos wait
until Astria has them. Every member-facing query filters by owner (or by a guild's shares).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import cast

from bot.config import Branch, ProfileName
from bot.rules.credits import Denial
from bot.store.db import (
    Clock,
    Database,
    Dialect,
    Row,
    from_ms,
    opt_from_ms,
    opt_to_ms,
    to_ms,
)
from bot.store.errors import NameTaken
from bot.store.jobstate import JobKind, JobRef
from bot.store.jobtable import JobRepository
from bot.store.ledger import Ledger, Refused


class TuneState(StrEnum):
    QUEUED = "queued"  # accepted and paid for; waiting for a slot at Astria
    SUBMITTING = "submitting"  # the create is in flight (its answer may be lost)
    TRAINING = "training"  # Astria has it
    READY = "ready"
    STUCK = "stuck"  # long past its eta; still polled, slowly
    FAILED = "failed"
    CANCELLED = "cancelled"
    DELETED = "deleted"
    EXPIRED = "expired"


TUNE_TRANSITIONS: dict[TuneState, frozenset[TuneState]] = {
    TuneState.QUEUED: frozenset({TuneState.SUBMITTING, TuneState.FAILED, TuneState.CANCELLED}),
    TuneState.SUBMITTING: frozenset(
        {TuneState.TRAINING, TuneState.QUEUED, TuneState.FAILED, TuneState.CANCELLED}
    ),
    TuneState.TRAINING: frozenset(
        {TuneState.READY, TuneState.STUCK, TuneState.FAILED, TuneState.CANCELLED}
    ),
    # A stuck tune that Astria finishes after all is delivered as usual.
    TuneState.STUCK: frozenset({TuneState.READY, TuneState.FAILED, TuneState.CANCELLED}),
    TuneState.READY: frozenset({TuneState.DELETED, TuneState.EXPIRED}),
    TuneState.FAILED: frozenset(),
    TuneState.CANCELLED: frozenset(),
    TuneState.DELETED: frozenset(),
    TuneState.EXPIRED: frozenset(),
}

UNFINISHED_TUNES = frozenset(
    {TuneState.QUEUED, TuneState.SUBMITTING, TuneState.TRAINING, TuneState.STUCK}
)
# States that free the name for a new tune (matches the partial index tunes_live_name).
GONE_TUNES = frozenset(
    {TuneState.FAILED, TuneState.CANCELLED, TuneState.DELETED, TuneState.EXPIRED}
)


@dataclass(frozen=True)
class TuneRecord:
    id: int
    title: str  # the UUID sent to Astria
    owner_id: int
    guild_id: int
    channel_id: int
    name: str
    subject_class: str
    profile: ProfileName
    branch: Branch
    state: TuneState
    astria_id: int | None
    photo_paths: tuple[str, ...]
    eta: datetime | None
    trained_at: datetime | None
    expires_at: datetime | None
    status_channel_id: int | None
    status_message_id: int | None
    shared: bool
    error: str | None
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None = None  # when it was handed to Astria
    owner_name: str = ""  # the owner's display name when it was made, cleaned

    @property
    def job(self) -> JobRef:
        return JobRef(JobKind.TUNE, self.id)

    @property
    def paid(self) -> bool:
        """Astria charges for it (every branch but the free `fast` one)."""
        return self.branch != "fast"


def name_key(name: str) -> str:
    """What makes two names the same: case and runs of spaces do not count."""
    return " ".join(name.split()).casefold()


def _tune(row: Row) -> TuneRecord:
    return TuneRecord(
        id=int(row["id"]),
        title=str(row["title"]),
        owner_id=int(row["owner_id"]),
        guild_id=int(row["guild_id"]),
        channel_id=int(row["channel_id"]),
        name=str(row["name"]),
        subject_class=str(row["subject_class"]),
        profile=cast(ProfileName, str(row["profile"])),
        branch=cast(Branch, str(row["branch"])),
        state=TuneState(row["state"]),
        astria_id=row["astria_id"],
        photo_paths=tuple(json.loads(row["photo_paths"])),
        eta=opt_from_ms(row["eta_ms"]),
        trained_at=opt_from_ms(row["trained_at_ms"]),
        expires_at=opt_from_ms(row["expires_at_ms"]),
        status_channel_id=row["status_channel_id"],
        status_message_id=row["status_message_id"],
        shared=bool(row["shared"]),
        error=row["error"],
        created_at=from_ms(int(row["created_at_ms"])),
        updated_at=from_ms(int(row["updated_at_ms"])),
        submitted_at=opt_from_ms(row["submitted_at_ms"]),
        owner_name=str(row["owner_name"]),
    )


def states_filter(states: Collection[str] | None) -> str | None:
    """States as ",a,b," for a static `instr` test in SQL (None: every state)."""
    return None if states is None else "," + ",".join(states) + ","


def in_states(dialect: Dialect) -> str:
    """The SQL test of `state` against the `:states` parameter (`states_filter`)."""
    return f"(CAST(:states AS TEXT) IS NULL OR {dialect.instr}(:states, ',' || state || ',') > 0)"


class Tunes(JobRepository[TuneRecord, TuneState]):
    """Tunes: the job-table base, and a tune's own name, photos, sharing and expiry."""

    def __init__(self, db: Database, ledger: Ledger, clock: Clock) -> None:
        super().__init__(
            db,
            ledger,
            clock,
            kind=JobKind.TUNE,
            record=_tune,
            state=TuneState,
            transitions=TUNE_TRANSITIONS,
            unfinished_sql="state IN ('queued', 'submitting', 'training', 'stuck')",
        )

    async def create(
        self,
        *,
        owner_id: int,
        guild_id: int,
        channel_id: int,
        name: str,
        subject_class: str,
        profile: ProfileName,
        branch: Branch,
        photo_paths: Sequence[str],
        price_mc: int,
        owner_name: str = "",
        max_waiting: int | None = None,
    ) -> TuneRecord | Denial:
        """A queued tune with a fresh UUID title and its reservation, in one transaction:
        both exist before Astria is called, or neither does (a refusal writes nothing).
        `max_waiting` caps the owner's unfinished jobs, checked in the same transaction."""
        clean = " ".join(name.split())
        if not clean:
            raise ValueError("a tune needs a name")
        now_ms = to_ms(self._clock())
        try:
            async with self._db.write() as tx:
                # Before the name and the queue cap are read: another process's create
                # must not pass the same checks between these reads and the rows.
                await tx.lock_money()
                taken = await tx.fetchone(
                    "SELECT 1 FROM tunes WHERE owner_id = ? AND name_key = ?"
                    " AND state NOT IN ('failed', 'cancelled', 'deleted', 'expired')",
                    (owner_id, name_key(clean)),
                )
                if taken is not None:
                    raise NameTaken(clean)
                await self._check_queue(tx, owner_id, max_waiting)
                tune_id = await tx.insert(
                    "INSERT INTO tunes (title, owner_id, guild_id, channel_id, name, name_key,"
                    " subject_class, profile, branch, photo_paths, created_at_ms, updated_at_ms,"
                    " owner_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        str(uuid.uuid4()),
                        owner_id,
                        guild_id,
                        channel_id,
                        clean,
                        name_key(clean),
                        subject_class,
                        profile,
                        branch,
                        json.dumps(list(photo_paths)),
                        now_ms,
                        now_ms,
                        owner_name,
                    ),
                )
                await self._reserve(tx, tune_id, guild_id, owner_id, price_mc, branch != "fast")
                return await self._current(tx, tune_id)
        except Refused as refused:
            return refused.refusal

    # --- member-facing reads: always scoped to the owner or to a guild's shares ---------

    async def get_usable(self, user_id: int, guild_id: int, tune_id: int) -> TuneRecord | None:
        """The tune if `user_id` owns it or an admin shared it with `guild_id`."""
        row = await self._db.fetchone(
            "SELECT * FROM tunes WHERE id = ? AND (owner_id = ? OR (shared = 1 AND guild_id = ?))",
            (tune_id, user_id, guild_id),
        )
        return None if row is None else _tune(row)

    async def by_name(self, owner_id: int, name: str) -> TuneRecord | None:
        """The owner's live tune with this name (case and spacing do not count)."""
        row = await self._db.fetchone(
            "SELECT * FROM tunes WHERE owner_id = ? AND name_key = ?"
            " AND state NOT IN ('failed', 'cancelled', 'deleted', 'expired')",
            (owner_id, name_key(name)),
        )
        return None if row is None else _tune(row)

    async def list_for(
        self,
        owner_id: int,
        *,
        guild_id: int | None = None,
        states: Collection[TuneState] | None = None,
    ) -> list[TuneRecord]:
        """The owner's own tunes (made in `guild_id` only, when given), oldest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM tunes WHERE owner_id = :owner"  # noqa: S608
            " AND (CAST(:guild AS BIGINT) IS NULL OR guild_id = :guild)"
            f" AND {in_states(self._db.dialect)}"
            " ORDER BY id",
            {"owner": owner_id, "guild": guild_id, "states": states_filter(states)},
        )
        return [_tune(r) for r in rows]

    async def list_usable(
        self, user_id: int, guild_id: int, *, states: Collection[TuneState] | None = None
    ) -> list[TuneRecord]:
        """What `user_id` may prompt with in `guild_id`: their own tunes and the ones an
        admin shared with this guild (the same rule as `get_usable`), oldest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM tunes WHERE (owner_id = :user OR (shared = 1 AND guild_id = :guild))"  # noqa: S608
            f" AND {in_states(self._db.dialect)}"
            " ORDER BY id",
            {"user": user_id, "guild": guild_id, "states": states_filter(states)},
        )
        return [_tune(r) for r in rows]

    # --- reads for the tracker and for admins -------------------------------------------

    async def list_in_guild(
        self, guild_id: int, *, states: Collection[TuneState] | None = None
    ) -> list[TuneRecord]:
        """Every tune made in `guild_id`, oldest first (for admins' pickers)."""
        rows = await self._db.fetchall(
            "SELECT * FROM tunes WHERE guild_id = :guild"  # noqa: S608
            f" AND {in_states(self._db.dialect)}"
            " ORDER BY id",
            {"guild": guild_id, "states": states_filter(states)},
        )
        return [_tune(r) for r in rows]

    async def owner_names(self, guild_id: int, user_ids: Collection[int]) -> dict[int, str]:
        """The display name each member had when they last made a tune here (an erased
        tune keeps none), for members the bot cannot ask Discord about."""
        if not user_ids:
            return {}
        rows = await self._db.fetchall(
            "SELECT owner_id, owner_name FROM tunes WHERE id IN (SELECT MAX(id) FROM tunes"  # noqa: S608
            " WHERE guild_id = ? AND owner_name <> ''"
            f" AND owner_id IN {self._db.dialect.json_ints()} GROUP BY owner_id)",
            (guild_id, json.dumps(sorted(user_ids))),
        )
        return {int(r["owner_id"]): str(r["owner_name"]) for r in rows}

    async def profiles(self, tune_ids: Collection[int]) -> dict[int, str]:
        """Each tune's model profile, by id (one query, for the tracker's start-up)."""
        if not tune_ids:
            return {}
        rows = await self._db.fetchall(
            f"SELECT id, profile FROM tunes WHERE id IN {self._db.dialect.json_ints()}",  # noqa: S608
            (json.dumps(sorted(tune_ids)),),
        )
        return {int(r["id"]): str(r["profile"]) for r in rows}

    async def branches(self, tune_ids: Collection[int]) -> dict[int, str]:
        """Each tune's Astria branch, by id (one query: which queued prompts are paid)."""
        if not tune_ids:
            return {}
        rows = await self._db.fetchall(
            f"SELECT id, branch FROM tunes WHERE id IN {self._db.dialect.json_ints()}",  # noqa: S608
            (json.dumps(sorted(tune_ids)),),
        )
        return {int(r["id"]): str(r["branch"]) for r in rows}

    async def by_astria_id(self, astria_id: int) -> TuneRecord | None:
        row = await self._db.fetchone("SELECT * FROM tunes WHERE astria_id = ?", (astria_id,))
        return None if row is None else _tune(row)

    async def by_title(self, title: str) -> TuneRecord | None:
        row = await self._db.fetchone("SELECT * FROM tunes WHERE title = ?", (title,))
        return None if row is None else _tune(row)

    async def expiring(self, *, before: datetime) -> list[TuneRecord]:
        """Ready tunes that Astria deletes before `before` (reminders and expiry)."""
        rows = await self._db.fetchall(
            "SELECT * FROM tunes WHERE state = 'ready' AND expires_at_ms IS NOT NULL"
            " AND expires_at_ms <= ? ORDER BY expires_at_ms",
            (to_ms(before),),
        )
        return [_tune(r) for r in rows]

    async def photos_in_use(self) -> frozenset[str]:
        """Every photo path an unfinished tune still needs (its photos go once Astria has
        them): what the photo sweep must keep."""
        rows = await self._db.fetchall(
            "SELECT photo_paths FROM tunes WHERE photo_paths != '[]'"
            " AND state IN ('queued', 'submitting', 'training', 'stuck')"
        )
        return frozenset(str(p) for r in rows for p in json.loads(r["photo_paths"]))

    # --- updates ------------------------------------------------------------------------

    async def set_astria_id(self, tune_id: int, astria_id: int) -> TuneRecord:
        """Record the Astria tune; a tune never changes its Astria id once it has one."""
        async with self._db.write() as tx:
            current = await self._current(tx, tune_id)
            self._same_astria_id(tune_id, current.astria_id, astria_id)
            await tx.execute(
                "UPDATE tunes SET astria_id = ?, updated_at_ms = ? WHERE id = ?",
                (astria_id, self._now_ms(), tune_id),
            )
            return await self._current(tx, tune_id)

    async def set_progress(
        self,
        tune_id: int,
        *,
        eta: datetime | None = None,
        trained_at: datetime | None = None,
        expires_at: datetime | None = None,
    ) -> TuneRecord:
        """Record Astria's times; a None leaves what is stored."""
        return await self._update(
            tune_id,
            "eta_ms = COALESCE(?, eta_ms), trained_at_ms = COALESCE(?, trained_at_ms),"
            " expires_at_ms = COALESCE(?, expires_at_ms)",
            (opt_to_ms(eta), opt_to_ms(trained_at), opt_to_ms(expires_at)),
        )

    async def renew_expiry(self, tune_id: int, expires_at: datetime | None) -> TuneRecord | None:
        """Astria still serves the ready tune and names its new deletion date (auto-extend
        moved it; None: no date at all). Only a ready tune's date moves: None when the tune
        is no longer ready (deleted or expired meanwhile)."""
        async with self._db.write() as tx:
            if (await self._current(tx, tune_id)).state != TuneState.READY:
                return None
            await tx.execute(
                "UPDATE tunes SET expires_at_ms = ?, updated_at_ms = ? WHERE id = ?",
                (opt_to_ms(expires_at), self._now_ms(), tune_id),
            )
            return await self._current(tx, tune_id)

    async def set_shared(self, tune_id: int, shared: bool) -> TuneRecord:
        """Share the tune with the guild it was made in (an admin's decision)."""
        return await self._update(tune_id, "shared = ?", (int(shared),))

    async def clear_photos(self, tune_id: int) -> tuple[str, ...]:
        """Forget the photos' paths and return them, for the caller to delete the files
        (Astria has confirmed the tune, or it failed)."""
        async with self._db.write() as tx:
            current = await self._current(tx, tune_id)
            await tx.execute(
                "UPDATE tunes SET photo_paths = '[]', updated_at_ms = ? WHERE id = ?",
                (self._now_ms(), tune_id),
            )
        return current.photo_paths
