"""Two real bot processes on one PostgreSQL, each holding one of two shards, against the
emulator and the wire-level fake. The process holding the running jobs is killed with
SIGKILL mid-run; the other takes its jobs over once their leases run out and delivers
every one exactly once: nothing made twice at Astria, nothing posted twice, the ledger
equal to the emulator's charges."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.offline.demo import demo_photo
from bot.offline.stage import Stage, StageOptions
from bot.store import PromptState
from bot.store.ledger import LedgerKind
from tests.e2e.test_kill import created, details_ids, imagine
from tests.pg import BACKENDS, Schemas

pytestmark = BACKENDS[1].marks  # PostgreSQL only: SQLite is one process's store

LEASE = 3.0  # seconds: short, so the takeover fits a test
ROUND = LEASE / 3  # the tracker's longest wait between rounds (a third of a lease)


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[Stage]:
    schemas = Schemas()
    url = await schemas.url()
    options = StageOptions(
        folder=tmp_path / "stage",
        train_seconds=2.0,
        prompt_seconds=4.0,
        bot_settings={
            "DATABASE_URL": url.get_secret_value(),
            "SHARD_COUNT": "2",
            "LEASE_SECONDS": str(LEASE),
        },
    )
    try:
        async with Stage(options) as stage:
            yield stage
    finally:
        await schemas.drop_all()


async def holders(stage: Stage) -> dict[str, str]:
    async with await stage.open_store() as store:
        return {str(job): holder for job, holder in (await store.leases.holders()).items()}


async def test_a_killed_process_s_jobs_are_delivered_once_by_the_other(stage: Stage):
    alice = stage.members["alice"]
    bots = {
        name: await stage.start_process(SHARD_IDS=str(n), PROCESS_ID=name)
        for n, name in enumerate(("bot-0", "bot-1"))
    }
    try:
        await stage.fake.gateway.changed.wait_for(
            lambda: len(stage.fake.gateway.ready_sessions) == 2, 30.0, "both shards"
        )
        await stage.fake.wait_commands(30.0)
        photos = [(f"p{i}.jpg", demo_photo(i, size=600)) for i in range(5)]
        tune_id = await stage.ready_tune(alice, "me", photos)
        for n in range(4):
            await imagine(stage, tune_id, f"picture {n}")

        # Kill the process holding a prompt at Astria, mid-generation.
        route = "POST /tunes/{tune_id}/prompts"
        await stage.wait_for(lambda: created(stage, route) >= 1, "a prompt at Astria")
        held = await holders(stage)
        victim = next(h for job, h in held.items() if job.startswith("prompt:"))
        victims_jobs = {job for job, h in held.items() if h == victim}
        bots[victim].kill()
        await bots[victim].wait()
        killed_at = time.monotonic()
        survivor = next(name for name in bots if name != victim)

        took_over: float | None = None
        for _ in range(600):
            now = await holders(stage)
            if took_over is None and any(now.get(j) == survivor for j in victims_jobs):
                took_over = time.monotonic() - killed_at
            states = await stage.prompt_states(alice)
            if states == ["delivered"] * 4:
                break
            await asyncio.sleep(0.1)
        assert states == ["delivered"] * 4, states
        assert took_over is not None
        print(f"\ntakeover {took_over:.1f} s after the kill (lease {LEASE:g} s)")
        assert took_over <= LEASE + ROUND + 3.0  # a lease, a round, and the load's slack
    finally:
        for process in bots.values():
            if process.returncode is None:
                process.kill()
                await process.wait()

    # Exactly once in the channel and at Astria.
    posts = stage.image_posts()
    per_job = collections.Counter(i for p in posts for i in details_ids(p))
    assert len(posts) == 4 and set(per_job.values()) == {1}, per_job
    assert len([m for m in stage.posts() if "is ready" in m.content]) == 1
    assert len(stage.emulator.our_tunes()) == 1
    prompts = stage.emulator.our_prompts()
    keys = collections.Counter((p["text"], p["seed"]) for p in prompts)
    assert len(prompts) == 4 and set(keys.values()) == {1}, keys

    # Money: the ledger equals the emulator's charges and the balance change.
    charged = sum(c.cost_mc for c in stage.emulator.charges)
    async with await stage.open_store() as store:
        entries = await store.ledger.entries()
        assert await store.ledger.open_reservations() == []
        assert await store.ledger.audit() == []
        mine = await store.prompts.list_for(alice.id)
        assert [p.state for p in mine] == [PromptState.DELIVERED] * 4
        # The processes took their Astria requests from the account's one budget.
        assert await store.astria_budget.granted() > 0
    settled = sum(e.cost_mc or 0 for e in entries if e.kind == LedgerKind.SETTLE)
    assert settled == charged == stage.options.balance_mc - stage.emulator.balance_mc > 0
