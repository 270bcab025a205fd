"""What tunes and prompts share: the job reference, and one place for the compare-and-set
and the checked step, so both job tables follow the same rules."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, TypeVar

from bot.store.db import Transaction
from bot.store.errors import InvalidTransition, NotFound


class JobKind(StrEnum):
    TUNE = "tune"
    PROMPT = "prompt"


@dataclass(frozen=True, order=True)
class JobRef:
    """One job, whatever its kind; written as "tune:12" or "prompt:34" (members see it in
    `/jobs`, the ledger keys reservations by it, the outbox keys events by it)."""

    kind: JobKind
    id: int

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> JobRef:
        kind, _, number = text.partition(":")
        if not number.isascii() or not number.isdigit() or len(number) > 18:
            raise ValueError(f"not a job reference: {text!r}")
        try:
            return cls(JobKind(kind), int(number))
        except ValueError:
            raise ValueError(f"not a job reference: {text!r}") from None


JobTable = Literal["tunes", "prompts"]


@dataclass(frozen=True)
class StartCaps:
    """What a job's submission must fit, counted in the transaction that makes it (under
    the money lock): the owner's jobs of its kind at Astria (one training, four
    generations by default) and every member's jobs at Astria together. A prompt done at
    Astria and only waiting for Discord (its done event recorded) is no longer at Astria."""

    per_member: int
    in_flight: int


# At Astria: past the queue and not finished there. `:owner` and the kind pick "mine".
_AT_ASTRIA = """
SELECT
    (SELECT COUNT(*) FROM tunes WHERE state IN ('submitting', 'training', 'stuck'))
    + (SELECT COUNT(*) FROM prompts AS p WHERE p.state IN ('submitting', 'generating', 'stuck')
        AND NOT EXISTS (SELECT 1 FROM job_events AS e
                        WHERE e.key = 'prompt:' || CAST(p.id AS TEXT) || ':done')) AS total,
    (SELECT COUNT(*) FROM tunes WHERE owner_id = :owner
        AND state IN ('submitting', 'training', 'stuck')) AS tunes_mine,
    (SELECT COUNT(*) FROM prompts AS p WHERE p.owner_id = :owner
        AND p.state IN ('submitting', 'generating', 'stuck')
        AND NOT EXISTS (SELECT 1 FROM job_events AS e
                        WHERE e.key = 'prompt:' || CAST(p.id AS TEXT) || ':done')) AS prompts_mine
"""


async def fits_caps(tx: Transaction, table: JobTable, row_id: int, caps: StartCaps) -> bool:
    """Whether the row's owner and everyone together have room for one more job at
    Astria. The caller holds the money lock, so two processes' submissions are counted
    one after the other, never both against the same free place."""
    await tx.lock_money()
    owner = await tx.fetchone(
        f"SELECT owner_id FROM {table} WHERE id = ?",  # noqa: S608
        (row_id,),
    )
    if owner is None:
        raise NotFound(f"no {table[:-1]} {row_id}")
    row = await tx.fetchone(_AT_ASTRIA, {"owner": int(owner["owner_id"])})
    assert row is not None
    mine = int(row["tunes_mine"] if table == "tunes" else row["prompts_mine"])
    return mine < caps.per_member and int(row["total"]) < caps.in_flight


S = TypeVar("S", bound=str)  # TuneState or PromptState


async def move_if(
    tx: Transaction,
    table: JobTable,
    row_id: int,
    expected: str,
    state: str,
    now_ms: int,
    *,
    for_update: str = "",
) -> bool:
    """Move the row from `expected` to `state` if it is still there (compare and set).
    Entering `submitting` stamps the submission time. False when something moved it first.
    `for_update` is the dialect's row lock: on PostgreSQL a second process's compare waits
    for this one's commit and then reads its state (a cancel and a submission never both
    win, which would release the credit of a job Astria then charges for)."""
    row = await tx.fetchone(
        f"SELECT state FROM {table} WHERE id = ?{for_update}",  # noqa: S608
        (row_id,),
    )
    if row is None:
        raise NotFound(f"no {table[:-1]} {row_id}")
    if row["state"] != expected:
        return False
    submitted = now_ms if state == "submitting" else None
    await tx.execute(
        # Only placeholders vary: `table` is one of two literals.
        f"UPDATE {table} SET state = ?, updated_at_ms = ?,"  # noqa: S608
        " submitted_at_ms = COALESCE(?, submitted_at_ms) WHERE id = ?",
        (state, now_ms, submitted, row_id),
    )
    return True


async def step(
    tx: Transaction,
    table: JobTable,
    row_id: int,
    current: S,
    state: S,
    allowed: Mapping[S, Set[S]],
    error: str | None,
    now_ms: int,
) -> None:
    """Move the row from `current` to `state` if that is an allowed step; the state it is
    already in changes nothing (a repeat after a crash is harmless)."""
    if current == state:
        return
    if state not in allowed[current]:
        raise InvalidTransition(f"{table[:-1]} {row_id}", current, state)
    await tx.execute(
        f"UPDATE {table} SET state = ?, error = COALESCE(?, error), updated_at_ms = ?"  # noqa: S608
        " WHERE id = ?",
        (state, error, now_ms, row_id),
    )


async def waiting_jobs(tx: Transaction, owner_id: int) -> int:
    """The member's jobs not finished yet (queued, at Astria, or stuck), tunes and prompts
    together: the queue cap counts them inside the transaction that adds one more."""
    row = await tx.fetchone(
        "SELECT (SELECT COUNT(*) FROM tunes WHERE owner_id = :owner"
        "  AND state IN ('queued', 'submitting', 'training', 'stuck'))"
        " + (SELECT COUNT(*) FROM prompts WHERE owner_id = :owner"
        "  AND state IN ('queued', 'submitting', 'generating', 'stuck')) AS waiting",
        {"owner": owner_id},
    )
    assert row is not None
    return int(row["waiting"])
