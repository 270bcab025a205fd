"""The job-table base the tune and prompt repositories share: reading one row by id (any,
in a guild, an owner's), the unfinished ones, the state machine's two doors (compare and
set, checked step), the status message, one-column updates, and the queue cap and the
reservation a new row is created with. `Tunes` and `Prompts` add only what is their own
kind's (a tune's name and photos and expiry, a prompt's images, cost and delivery).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from enum import StrEnum
from typing import Generic, TypeVar

from bot.rules.credits import QueueFull
from bot.store.db import Clock, Database, Row, Transaction, to_ms
from bot.store.errors import InvalidTransition, NotFound, StoreError
from bot.store.jobstate import (
    JobKind,
    JobRef,
    JobTable,
    StartCaps,
    fits_caps,
    move_if,
    step,
    waiting_jobs,
)
from bot.store.ledger import Ledger, Refused

R = TypeVar("R")  # TuneRecord or PromptRecord
S = TypeVar("S", bound=StrEnum)  # TuneState or PromptState


class JobRepository(Generic[R, S]):
    """One job table (`tunes` or `prompts`) and the record its rows read as."""

    def __init__(
        self,
        db: Database,
        ledger: Ledger,
        clock: Clock,
        *,
        kind: JobKind,
        record: Callable[[Row], R],
        state: Callable[[str], S],
        transitions: Mapping[S, Set[S]],
        unfinished_sql: str,
    ) -> None:
        self._db = db
        self._ledger = ledger
        self._clock = clock
        self._kind = kind
        self._table: JobTable = "tunes" if kind is JobKind.TUNE else "prompts"
        self._record = record
        self._state = state
        self._transitions = transitions
        # The literal `state IN (...)` the table's partial index is declared with (SQLite
        # uses a partial index only for the very terms it was made with).
        self._unfinished_sql = unfinished_sql

    # --- reads --------------------------------------------------------------------------

    async def get(self, row_id: int) -> R | None:
        """Any job by id: for the tracker and admins, never for a member's own view."""
        return await self._one("id = ?", (row_id,))

    async def get_in_guild(self, guild_id: int, row_id: int) -> R | None:
        """A job made in `guild_id` (admins act on their own server's jobs only)."""
        return await self._one("id = ? AND guild_id = ?", (row_id, guild_id))

    async def get_owned(self, owner_id: int, row_id: int) -> R | None:
        """The job if `owner_id` made it, else None (another member's is not found)."""
        return await self._one("id = ? AND owner_id = ?", (row_id, owner_id))

    async def count_by_state(self) -> dict[str, int]:
        """How many jobs are in each state (for the metrics)."""
        rows = await self._db.fetchall(
            f"SELECT state, COUNT(*) AS n FROM {self._table} GROUP BY state"  # noqa: S608
        )
        return {str(r["state"]): int(r["n"]) for r in rows}

    async def unfinished(self) -> list[R]:
        """Jobs the tracker owns after a restart, in the order they were accepted."""
        rows = await self._db.fetchall(
            f"SELECT * FROM {self._table} WHERE {self._unfinished_sql} ORDER BY id"  # noqa: S608
        )
        return [self._record(r) for r in rows]

    # --- the state machine --------------------------------------------------------------

    async def transition(
        self, row_id: int, expected: S, state: S, *, caps: StartCaps | None = None
    ) -> R | None:
        """Move the job from `expected` to `state` only if it is still in `expected`
        (compare and set): None when something else moved it first. With `caps` (a
        submission), also None when the owner or everyone together has no room left at
        Astria, counted in this transaction (another process may have just submitted)."""
        if state not in self._transitions[expected]:
            raise InvalidTransition(f"{self._kind} {row_id}", expected, state)
        async with self._db.write() as tx:
            if caps is not None and not await fits_caps(tx, self._table, row_id, caps):
                return None
            moved = await move_if(
                tx,
                self._table,
                row_id,
                expected,
                state,
                self._now_ms(),
                for_update=self._db.dialect.for_update,
            )
            if not moved:
                return None
            return await self._current(tx, row_id)

    async def set_state(self, row_id: int, state: S, *, error: str | None = None) -> R:
        """Move the job to `state` if that is an allowed step; asking for the state it
        is already in changes nothing (a repeat after a crash is harmless)."""
        async with self._db.write() as tx:
            current = self._state(await self._column(tx, row_id, "state"))
            await step(
                tx,
                self._table,
                row_id,
                current,
                state,
                self._transitions,
                error,
                self._now_ms(),
            )
            return await self._current(tx, row_id)

    async def set_status_message(self, row_id: int, channel_id: int, message_id: int) -> R:
        return await self._update(
            row_id, "status_channel_id = ?, status_message_id = ?", (channel_id, message_id)
        )

    # --- for the kinds' own methods -----------------------------------------------------

    def _now_ms(self) -> int:
        return to_ms(self._clock())

    async def _one(self, where: str, params: tuple[object, ...]) -> R | None:
        row = await self._db.fetchone(
            f"SELECT * FROM {self._table} WHERE {where}",  # noqa: S608
            params,
        )
        return None if row is None else self._record(row)

    # `_column` and `_current` read inside a write transaction: the row stays locked until
    # the commit (PostgreSQL; SQLite's write lock is the whole file), so a check made on
    # what they read (a state's step, an Astria id set once) holds against other processes.
    async def _column(self, tx: Transaction, row_id: int, column: str) -> str:
        row = await tx.fetchone(
            f"SELECT {column} FROM {self._table} WHERE id = ?{self._db.dialect.for_update}",  # noqa: S608
            (row_id,),
        )
        if row is None:
            raise NotFound(f"no {self._kind} {row_id}")
        return str(row[0])

    async def _current(self, tx: Transaction, row_id: int) -> R:
        row = await tx.fetchone(
            f"SELECT * FROM {self._table} WHERE id = ?{self._db.dialect.for_update}",  # noqa: S608
            (row_id,),
        )
        if row is None:
            raise NotFound(f"no {self._kind} {row_id}")
        return self._record(row)

    async def _update(self, row_id: int, assignments: str, params: tuple[object, ...]) -> R:
        """Set `assignments` (a literal of the kind's module) and stamp the change."""
        async with self._db.write() as tx:
            await self._current(tx, row_id)
            return await self._set(tx, row_id, assignments, params)

    async def _set(
        self, tx: Transaction, row_id: int, assignments: str, params: tuple[object, ...]
    ) -> R:
        await tx.execute(
            # Only placeholders vary: `assignments` is one of the kinds' literals.
            f"UPDATE {self._table} SET {assignments}, updated_at_ms = ? WHERE id = ?",  # noqa: S608
            (*params, self._now_ms(), row_id),
        )
        return await self._current(tx, row_id)

    def _same_astria_id(self, row_id: int, current: int | None, given: int) -> None:
        """A job never changes its Astria id once it has one."""
        if current is not None and current != given:
            raise StoreError(
                f"{self._kind} {row_id} is already Astria {self._kind} {current}, not {given}"
            )

    async def _check_queue(self, tx: Transaction, owner_id: int, max_waiting: int | None) -> None:
        """Refuse a new job when the owner already has `max_waiting` unfinished (raises
        `Refused`, which rolls the transaction back)."""
        if max_waiting is None:
            return
        waiting = await waiting_jobs(tx, owner_id)
        if waiting >= max_waiting:
            raise Refused(QueueFull(waiting, max_waiting))

    async def _reserve(
        self, tx: Transaction, row_id: int, guild_id: int, owner_id: int, price_mc: int, paid: bool
    ) -> None:
        """The new row's reservation, in its transaction (a refusal rolls both back)."""
        await self._ledger._reserve_or_roll_back(
            tx, guild_id, owner_id, JobRef(self._kind, row_id), price_mc, paid=paid
        )
