"""Pack runs: a prompt row of its own holds the one reservation for a pack's price
(`pack_runs` names the Astria pack and tune), and the prompts the pack made at Astria are
adopted as prompt rows (`pack_items`) that are followed and delivered like any other,
each with a hold of 0 that its settle turns into what Astria charged for it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from bot.rules.credits import Denial
from bot.store.db import Clock, Database, Row, Transaction, to_ms
from bot.store.jobstate import JobKind, JobRef
from bot.store.ledger import Ledger
from bot.store.prompts import PromptRecord, Prompts, PromptState, prompt_from_row

# What every pack run row asks Astria: nothing as a prompt. The text and seed are fixed
# per pack and tune, so the tracker never has two identical runs submitting at once (its
# "identical prompts are never in flight together" rule), which keeps adoption unambiguous.
PACK_SEED: Final = 1


def run_text(pack_id: int, astria_tune_id: int) -> str:
    return f"pack {pack_id} on tune {astria_tune_id}"


@dataclass(frozen=True)
class PackRun:
    prompt_id: int  # the run's own prompt row (its job holds the reservation)
    pack_id: int
    pack_title: str
    astria_tune_id: int
    seen_ids: frozenset[int] | None  # the tune's prompts at Astria before the POST
    posted: bool

    @property
    def job(self) -> JobRef:
        return JobRef(JobKind.PROMPT, self.prompt_id)


@dataclass(frozen=True)
class MadePrompt:
    """One prompt the pack made at Astria, as its create answer or a listing shows it."""

    astria_id: int
    text: str
    num_images: int
    cost_mc: int | None


def _run(row: Row | None) -> PackRun:
    assert row is not None
    seen = row["seen_ids"]
    return PackRun(
        prompt_id=int(row["prompt_id"]),
        pack_id=int(row["pack_id"]),
        pack_title=str(row["pack_title"]),
        astria_tune_id=int(row["astria_tune_id"]),
        seen_ids=None if seen is None else frozenset(int(i) for i in json.loads(seen)),
        posted=row["posted_at_ms"] is not None,
    )


class Packs:
    def __init__(self, db: Database, ledger: Ledger, prompts: Prompts, clock: Clock) -> None:
        self._db = db
        self._ledger = ledger
        self._prompts = prompts
        self._clock = clock

    async def create_run(
        self,
        *,
        owner_id: int,
        guild_id: int,
        channel_id: int,
        tune_id: int,
        astria_tune_id: int,
        pack_id: int,
        pack_title: str,
        num_images: int,
        price_mc: int,
        max_waiting: int | None = None,
    ) -> PromptRecord | Denial:
        """The run's queued prompt row, its reservation for the whole pack and its
        `pack_runs` row, in one transaction (a refusal writes none of them)."""

        async def also(tx: Transaction, prompt_id: int) -> None:
            await tx.execute(
                "INSERT INTO pack_runs (prompt_id, pack_id, pack_title, astria_tune_id)"
                " VALUES (?, ?, ?, ?)",
                (prompt_id, pack_id, pack_title, astria_tune_id),
            )

        return await self._prompts.create(
            owner_id=owner_id,
            guild_id=guild_id,
            channel_id=channel_id,
            tune_id=tune_id,
            user_text=f"Pack: {pack_title}",
            final_text=run_text(pack_id, astria_tune_id),
            num_images=max(1, num_images),
            price_mc=price_mc,
            target_tune_id=astria_tune_id,
            seed=PACK_SEED,
            max_waiting=max_waiting,
            also=also,
        )

    async def run(self, prompt_id: int) -> PackRun | None:
        row = await self._db.fetchone("SELECT * FROM pack_runs WHERE prompt_id = ?", (prompt_id,))
        return None if row is None else _run(row)

    async def runs(self, prompt_ids: Sequence[int]) -> dict[int, PackRun]:
        if not prompt_ids:
            return {}
        marks = ", ".join("?" for _ in prompt_ids)
        rows = await self._db.fetchall(
            f"SELECT * FROM pack_runs WHERE prompt_id IN ({marks})",  # noqa: S608
            tuple(prompt_ids),
        )
        return {int(r["prompt_id"]): _run(r) for r in rows}

    async def set_seen(self, prompt_id: int, astria_ids: Sequence[int]) -> PackRun:
        """The tune's prompts at Astria, listed right before the POST, and the POST about to
        go (written first: after it, any new prompt of the pack on the tune is this run's)."""
        async with self._db.write() as tx:
            await tx.execute(
                "UPDATE pack_runs SET seen_ids = ?, posted_at_ms = ? WHERE prompt_id = ?",
                (json.dumps(sorted(astria_ids)), to_ms(self._clock()), prompt_id),
            )
            row = await tx.fetchone("SELECT * FROM pack_runs WHERE prompt_id = ?", (prompt_id,))
        return _run(row)

    async def adopted_astria_ids(self, astria_tune_id: int) -> frozenset[int]:
        """Astria prompts on this tune some run already adopted (never adopted twice)."""
        rows = await self._db.fetchall(
            "SELECT p.astria_id FROM pack_items AS i JOIN prompts AS p ON p.id = i.prompt_id"
            " JOIN pack_runs AS r ON r.prompt_id = i.run_id"
            " WHERE r.astria_tune_id = ? AND p.astria_id IS NOT NULL",
            (astria_tune_id,),
        )
        return frozenset(int(r["astria_id"]) for r in rows)

    async def adopt(self, run_id: int, made: Sequence[MadePrompt]) -> list[PromptRecord]:
        """The pack's prompts as prompt rows at Astria (`generating`), each with a hold of
        0 under the run's holder, and the run moved on from `submitting`, in one
        transaction; a run that already adopted returns its items and writes nothing."""
        now_ms = to_ms(self._clock())
        async with self._db.write() as tx:
            existing = await self._items_in(tx, run_id)
            if existing:
                return existing
            run = await tx.fetchone("SELECT * FROM prompts WHERE id = ?", (run_id,))
            assert run is not None
            for item in made:
                prompt_id = await tx.insert(
                    "INSERT INTO prompts (owner_id, guild_id, channel_id, tune_id, user_text,"
                    " final_text, params, seed, seed_from_user, num_images, astria_id, state,"
                    " cost_mc, created_at_ms, updated_at_ms, submitted_at_ms, target_tune_id,"
                    " lease_holder, lease_expires_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, 'generating', ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run["owner_id"],
                        run["guild_id"],
                        run["channel_id"],
                        run["tune_id"],
                        f"{run['user_text']}: {item.text}"[:1000],
                        item.text,
                        run["params"],
                        run["seed"],
                        max(1, item.num_images),
                        item.astria_id,
                        item.cost_mc,
                        now_ms,
                        now_ms,
                        now_ms,
                        run["target_tune_id"],
                        run["lease_holder"],
                        run["lease_expires_ms"],
                    ),
                )
                await tx.execute(
                    "INSERT INTO pack_items (prompt_id, run_id) VALUES (?, ?)", (prompt_id, run_id)
                )
                await self._ledger._hold_in(
                    tx,
                    int(run["guild_id"]),
                    int(run["owner_id"]),
                    JobRef(JobKind.PROMPT, prompt_id),
                    note=f"part of pack run prompt:{run_id}",
                )
            await tx.execute(
                "UPDATE prompts SET state = ?, updated_at_ms = ? WHERE id = ? AND state = ?",
                (PromptState.GENERATING, now_ms, run_id, PromptState.SUBMITTING),
            )
            return await self._items_in(tx, run_id)

    async def _items_in(self, tx: Transaction, run_id: int) -> list[PromptRecord]:
        rows = await tx.fetchall(
            "SELECT p.* FROM pack_items AS i JOIN prompts AS p ON p.id = i.prompt_id"
            " WHERE i.run_id = ? ORDER BY p.id",
            (run_id,),
        )
        return [prompt_from_row(r) for r in rows]

    async def items(self, run_id: int) -> list[PromptRecord]:
        rows = await self._db.fetchall(
            "SELECT p.* FROM pack_items AS i JOIN prompts AS p ON p.id = i.prompt_id"
            " WHERE i.run_id = ? ORDER BY p.id",
            (run_id,),
        )
        return [prompt_from_row(r) for r in rows]

    async def run_of(self, prompt_id: int) -> int | None:
        """The run a pack's prompt belongs to, or None for any other prompt."""
        row = await self._db.fetchone(
            "SELECT run_id FROM pack_items WHERE prompt_id = ?", (prompt_id,)
        )
        return None if row is None else int(row["run_id"])

    async def open_items(self, run_id: int) -> int:
        """The run's prompts whose hold is not closed yet (0: Astria is done with all)."""
        row = await self._db.fetchone(
            "SELECT COUNT(*) AS n FROM pack_items AS i JOIN ledger AS r"
            " ON r.kind = 'reserve' AND r.job = 'prompt:' || CAST(i.prompt_id AS TEXT)"
            " WHERE i.run_id = ? AND NOT EXISTS"
            " (SELECT 1 FROM ledger AS c WHERE c.reserve_id = r.id)",
            (run_id,),
        )
        assert row is not None
        return int(row["n"])
