"""Prompts (generation jobs): what a member asked, what was sent to Astria with which seed,
the images, the cost, and how the result was delivered. Member queries filter by owner.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from bot.rules.credits import Denial
from bot.rules.prompts import PromptOptions
from bot.rules.tools import Tool
from bot.store.db import Clock, Database, Row, Transaction, from_ms, opt_from_ms, to_ms
from bot.store.errors import NotFound, StoreError, TuneUnavailable
from bot.store.jobstate import JobKind, JobRef
from bot.store.jobtable import JobRepository
from bot.store.ledger import Ledger, Refused
from bot.store.tunes import GONE_TUNES, TuneState, in_states, states_filter


class PromptState(StrEnum):
    QUEUED = "queued"  # accepted and paid for; waiting for a slot at Astria
    SUBMITTING = "submitting"  # the create is in flight (its answer may be lost)
    GENERATING = "generating"  # Astria has it
    DELIVERED = "delivered"
    STUCK = "stuck"  # long past its expected time; still polled, slowly
    FAILED = "failed"
    UNDELIVERABLE = "undeliverable"  # done, but neither the channel nor a DM took it
    CANCELLED = "cancelled"


PROMPT_TRANSITIONS: dict[PromptState, frozenset[PromptState]] = {
    PromptState.QUEUED: frozenset(
        {PromptState.SUBMITTING, PromptState.FAILED, PromptState.CANCELLED}
    ),
    PromptState.SUBMITTING: frozenset(
        {PromptState.GENERATING, PromptState.QUEUED, PromptState.FAILED, PromptState.CANCELLED}
    ),
    PromptState.GENERATING: frozenset(
        {
            PromptState.DELIVERED,
            PromptState.STUCK,
            PromptState.FAILED,
            PromptState.UNDELIVERABLE,
            PromptState.CANCELLED,
        }
    ),
    PromptState.STUCK: frozenset(
        {
            PromptState.DELIVERED,
            PromptState.FAILED,
            PromptState.UNDELIVERABLE,
            PromptState.CANCELLED,
        }
    ),
    PromptState.DELIVERED: frozenset(),
    PromptState.FAILED: frozenset(),
    PromptState.UNDELIVERABLE: frozenset(),
    PromptState.CANCELLED: frozenset(),
}

UNFINISHED_PROMPTS = frozenset(
    {PromptState.QUEUED, PromptState.SUBMITTING, PromptState.GENERATING, PromptState.STUCK}
)

TOOLS: tuple[Tool, ...] = ("imagine", "reroll", "edit", "upscale", "vary")

# Astria takes a 32-bit seed; a random one keeps two members' identical prompts apart.
_SEED_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class PromptRecord:
    id: int
    owner_id: int
    guild_id: int
    channel_id: int
    tune_id: int
    user_text: str
    final_text: str
    options: PromptOptions
    seed: int
    seed_from_user: bool
    num_images: int
    astria_id: int | None
    state: PromptState
    image_urls: tuple[str, ...]
    cost_mc: int | None
    delivery_nonce: str | None
    status_channel_id: int | None
    status_message_id: int | None
    result_message_ids: tuple[int, ...]
    error: str | None
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None = None  # when it was handed to Astria
    # The Astria tune it is posted to, decided when it was accepted (None: an older row).
    target_tune_id: int | None = None
    # What made it, and for an upscale or a variation the prompt and image it starts from.
    tool: Tool = "imagine"
    parent_id: int | None = None
    image_index: int | None = None

    @property
    def job(self) -> JobRef:
        return JobRef(JobKind.PROMPT, self.id)


def _prompt(row: Row) -> PromptRecord:
    return PromptRecord(
        id=int(row["id"]),
        owner_id=int(row["owner_id"]),
        guild_id=int(row["guild_id"]),
        channel_id=int(row["channel_id"]),
        tune_id=int(row["tune_id"]),
        user_text=str(row["user_text"]),
        final_text=str(row["final_text"]),
        options=PromptOptions.from_json(json.loads(row["params"])),
        seed=int(row["seed"]),
        seed_from_user=bool(row["seed_from_user"]),
        num_images=int(row["num_images"]),
        astria_id=row["astria_id"],
        state=PromptState(row["state"]),
        image_urls=tuple(json.loads(row["image_urls"])),
        cost_mc=row["cost_mc"],
        delivery_nonce=row["delivery_nonce"],
        status_channel_id=row["status_channel_id"],
        status_message_id=row["status_message_id"],
        result_message_ids=tuple(int(i) for i in json.loads(row["result_message_ids"])),
        error=row["error"],
        created_at=from_ms(int(row["created_at_ms"])),
        updated_at=from_ms(int(row["updated_at_ms"])),
        submitted_at=opt_from_ms(row["submitted_at_ms"]),
        target_tune_id=row["target_tune_id"],
        tool=_tool(row["tool"]),
        parent_id=row["parent_id"],
        image_index=row["image_index"],
    )


prompt_from_row = _prompt  # for the pack runs' joins (bot/store/packs.py)


def _tool(value: object) -> Tool:
    return next((t for t in TOOLS if t == value), "imagine")


class Prompts(JobRepository[PromptRecord, PromptState]):
    """Prompts: the job-table base, and a prompt's own images, cost and delivery."""

    def __init__(self, db: Database, ledger: Ledger, clock: Clock) -> None:
        super().__init__(
            db,
            ledger,
            clock,
            kind=JobKind.PROMPT,
            record=_prompt,
            state=PromptState,
            transitions=PROMPT_TRANSITIONS,
            unfinished_sql="state IN ('queued', 'submitting', 'generating', 'stuck')",
        )

    async def create(
        self,
        *,
        owner_id: int,
        guild_id: int,
        channel_id: int,
        tune_id: int,
        user_text: str,
        final_text: str,
        num_images: int,
        price_mc: int,
        target_tune_id: int,
        options: PromptOptions | None = None,
        seed: int | None = None,
        max_waiting: int | None = None,
        tool: Tool = "imagine",
        parent_id: int | None = None,
        image_index: int | None = None,
        also: Callable[[Transaction, int], Awaitable[None]] | None = None,
    ) -> PromptRecord | Denial:
        """A queued prompt and its reservation, in one transaction (`also` writes more in
        it, given the new id: a pack run's own row). The tune must be the
        owner's or shared with this guild, and not gone. Without a seed, a random one.
        `target_tune_id` is the Astria tune it is posted to (`BuiltPrompt.target_tune_id`).
        The reservation is checked as paid unless the tune is on the free branch;
        `max_waiting` caps the owner's unfinished jobs in the same transaction."""
        if num_images < 1:
            raise ValueError("a prompt makes at least one image")
        chosen_seed = secrets.randbelow(_SEED_LIMIT) + 1 if seed is None else seed
        now_ms = to_ms(self._clock())
        try:
            async with self._db.write() as tx:
                await tx.lock_money()  # before the queue cap is read (as a tune's create)
                tune = await tx.fetchone(
                    "SELECT state, branch FROM tunes WHERE id = ?"
                    " AND (owner_id = ? OR (shared = 1 AND guild_id = ?))",
                    (tune_id, owner_id, guild_id),
                )
                if tune is None:
                    raise NotFound(f"no tune {tune_id} that this member may use here")
                if TuneState(tune["state"]) in GONE_TUNES:
                    raise TuneUnavailable(tune_id, str(tune["state"]))
                await self._check_queue(tx, owner_id, max_waiting)
                prompt_id = await tx.insert(
                    "INSERT INTO prompts (owner_id, guild_id, channel_id, tune_id, user_text,"
                    " final_text, params, seed, seed_from_user, num_images, created_at_ms,"
                    " updated_at_ms, target_tune_id, tool, parent_id, image_index)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        owner_id,
                        guild_id,
                        channel_id,
                        tune_id,
                        user_text,
                        final_text,
                        json.dumps((options or PromptOptions()).to_json(), sort_keys=True),
                        chosen_seed,
                        int(seed is not None),
                        num_images,
                        now_ms,
                        now_ms,
                        target_tune_id,
                        tool,
                        parent_id,
                        image_index,
                    ),
                )
                await self._reserve(
                    tx, prompt_id, guild_id, owner_id, price_mc, tune["branch"] != "fast"
                )
                if also is not None:
                    await also(tx, prompt_id)
                return await self._current(tx, prompt_id)
        except Refused as refused:
            return refused.refusal

    # --- member-facing reads: always scoped to the owner --------------------------------

    async def list_for(
        self,
        owner_id: int,
        *,
        guild_id: int | None = None,
        states: Collection[PromptState] | None = None,
        limit: int = 25,
    ) -> list[PromptRecord]:
        """The owner's prompts, newest first (in `guild_id` only, when given)."""
        rows = await self._db.fetchall(
            "SELECT * FROM prompts WHERE owner_id = :owner"  # noqa: S608
            " AND (CAST(:guild AS BIGINT) IS NULL OR guild_id = :guild)"
            f" AND {in_states(self._db.dialect)}"
            " ORDER BY id DESC LIMIT :limit",
            {"owner": owner_id, "guild": guild_id, "states": states_filter(states), "limit": limit},
        )
        return [_prompt(r) for r in rows]

    # --- reads for the tracker and for admins -------------------------------------------

    async def inputs_in_use(self) -> frozenset[str]:
        """Every member's source image (image-to-image) a prompt not yet at Astria still
        needs: what the photo sweep must keep. Once Astria has the prompt the file may go."""
        rows = await self._db.fetchall(
            "SELECT params FROM prompts WHERE state IN ('queued', 'submitting')"
            " AND params LIKE '%input_image_path%'"
        )
        paths = (PromptOptions.from_json(json.loads(r["params"])).input_image_path for r in rows)
        return frozenset(p for p in paths if p)

    async def for_tune(self, tune_id: int) -> list[PromptRecord]:
        """Every prompt made with a tune, oldest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM prompts WHERE tune_id = ? ORDER BY id", (tune_id,)
        )
        return [_prompt(r) for r in rows]

    async def by_astria_id(self, astria_id: int) -> list[PromptRecord]:
        """Every job that claims this Astria prompt (several, when idempotency merged them)."""
        rows = await self._db.fetchall(
            "SELECT * FROM prompts WHERE astria_id = ? ORDER BY id", (astria_id,)
        )
        return [_prompt(r) for r in rows]

    async def claimed_astria_ids(
        self, final_text: str, seed: int, *, except_id: int
    ) -> frozenset[int]:
        """Astria prompts that other jobs with the same text and seed already own: a lookup
        after a lost create must never adopt one of them."""
        rows = await self._db.fetchall(
            "SELECT DISTINCT astria_id FROM prompts WHERE seed = ? AND final_text = ?"
            " AND id <> ? AND astria_id IS NOT NULL",
            (seed, final_text, except_id),
        )
        return frozenset(int(r["astria_id"]) for r in rows)

    # --- updates ------------------------------------------------------------------------

    async def fill_missing_targets(self, base_tunes: Mapping[str, int]) -> int:
        """Prompts accepted before schema 5 get the Astria tune they are posted to, once:
        after this every prompt carries it, and nothing else decides it again. The rule is
        the one `build_prompt` applies: a prompt on the free branch or a checkpoint tune
        goes to the tune itself, a LoRA or FaceID one to its profile's base tune."""
        missing = (
            "SELECT 1 FROM prompts AS p JOIN tunes AS t ON t.id = p.tune_id"
            " WHERE p.target_tune_id IS NULL AND t.astria_id IS NOT NULL LIMIT 1"
        )
        # Read first: on every start but the first after the upgrade there is nothing to
        # fill, and a write transaction would take the lock for nothing.
        if not await self._db.fetchall(missing):
            return 0
        # Set-based, a statement per profile, not one per prompt: a database upgraded with
        # 20,000 prompts must not spend seconds here (bench.restart).
        filled = 0
        async with self._db.write() as tx:
            for profile, base in sorted(base_tunes.items()):
                rows = await tx.fetchall(
                    "UPDATE prompts SET target_tune_id = ? WHERE target_tune_id IS NULL"
                    " AND tune_id IN (SELECT id FROM tunes WHERE astria_id IS NOT NULL"
                    " AND profile = ? AND branch <> 'fast')"
                    " RETURNING id",
                    (base, profile),
                )
                filled += len(rows)
            # The rest (the free branch, or a profile with no base tune) go to the tune.
            rows = await tx.fetchall(
                "UPDATE prompts SET target_tune_id ="
                " (SELECT astria_id FROM tunes WHERE tunes.id = prompts.tune_id)"
                " WHERE target_tune_id IS NULL"
                " AND tune_id IN (SELECT id FROM tunes WHERE astria_id IS NOT NULL) RETURNING id"
            )
            filled += len(rows)
        return filled

    async def set_astria_id(
        self, prompt_id: int, astria_id: int, *, cost_mc: int | None = None
    ) -> PromptRecord:
        """Record the Astria prompt (and what Astria said it costs, when it said); a
        prompt never changes its Astria id once it has one."""
        async with self._db.write() as tx:
            current = await self._current(tx, prompt_id)
            self._same_astria_id(prompt_id, current.astria_id, astria_id)
            return await self._set(
                tx, prompt_id, "astria_id = ?, cost_mc = COALESCE(?, cost_mc)", (astria_id, cost_mc)
            )

    async def set_images(self, prompt_id: int, urls: Sequence[str]) -> PromptRecord:
        return await self._update(prompt_id, "image_urls = ?", (json.dumps(list(urls)),))

    async def set_cost(self, prompt_id: int, cost_mc: int) -> PromptRecord:
        """What Astria says the prompt cost (the ledger settles it separately)."""
        if cost_mc < 0:
            raise ValueError("a cost cannot be negative")
        return await self._update(prompt_id, "cost_mc = ?", (cost_mc,))

    async def set_delivery_nonce(self, prompt_id: int, nonce: str) -> PromptRecord:
        """Record the intent to post, before posting; the same nonce is kept on repeats."""
        async with self._db.write() as tx:
            current = await self._current(tx, prompt_id)
            if current.delivery_nonce is not None and current.delivery_nonce != nonce:
                raise StoreError(f"prompt {prompt_id} already has another delivery nonce")
            return await self._set(tx, prompt_id, "delivery_nonce = ?", (nonce,))

    async def set_result_messages(self, prompt_id: int, message_ids: Sequence[int]) -> PromptRecord:
        return await self._update(
            prompt_id, "result_message_ids = ?", (json.dumps([int(i) for i in message_ids]),)
        )

    async def set_error(self, prompt_id: int, error: str) -> PromptRecord:
        return await self._update(prompt_id, "error = ?", (error,))
