"""kill -9 in the middle of a pack run, on the real bot process against the emulator and
the wire-level Discord fake: once after Astria made the pack but before its answer
reached the bot (the POST's answer held back), once while Astria makes the pack's
prompts. After the restarts every prompt of the pack is delivered exactly once, Astria
made the pack once, and the ledger equals what the emulator charged, under each billing
reading (docs/emulator.md, "Readings")."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.offline.demo import demo_photo
from bot.offline.emulator import READINGS, Fault
from bot.offline.stage import Stage, StageOptions
from bot.store import PromptState
from bot.store.ledger import LedgerKind

MODES = [
    pytest.param((True, "ours"), id="idem-on-ours"),
    pytest.param((False, "kept-not-refunded"), id="idem-off-kept-not-refunded"),
    pytest.param((True, "kept-refunded"), id="idem-on-kept-refunded"),
    pytest.param((False, "zeroed-not-refunded"), id="idem-off-zeroed-not-refunded"),
]
PACK_ROUTE = "POST /p/{pack_id}/tunes"


@pytest.fixture(params=MODES)
async def stage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stage]:
    idempotency, reading = request.param
    options = StageOptions(
        folder=tmp_path / "stage",
        idempotency=idempotency,
        reading=READINGS[reading],
        train_seconds=2.0,
        prompt_seconds=3.0,
    )
    async with Stage(options) as stage:
        yield stage


def details_ids(post: object) -> list[str]:
    return [c for c in post.custom_ids() if c.startswith("job:details:")]  # type: ignore[attr-defined]


async def test_kill_minus_nine_mid_pack_run_delivers_each_prompt_once(stage: Stage) -> None:
    alice = stage.members["alice"]
    await stage.start_bot()
    await stage.fake.wait_commands(30.0)
    photos = [(f"p{i}.jpg", demo_photo(i, size=600)) for i in range(5)]
    tune_id = await stage.ready_tune(alice, "me", photos)
    (astria_tune,) = [t["id"] for t in stage.emulator.our_tunes()]
    charged_before = sum(c.cost_mc for c in stage.emulator.charges)

    # 1. Astria makes the pack, and the bot is killed before the answer reaches it.
    stage.emulator.faults.script(PACK_ROUTE, Fault("latency_after", delay=20.0))
    answer = await stage.command(alice, "pack run", pack="262", tune=tune_id)
    assert "Queued the pack **Fantasy Worlds**" in answer, answer
    await stage.wait_for(
        lambda: len(stage.emulator.prompts_for(astria_tune)) == 3, "the pack at Astria"
    )
    await stage.kill_bot()
    await stage.start_bot()

    # 2. Killed again while Astria makes the pack's prompts (after the bot adopted them).
    async def adopted() -> bool:
        async with await stage.open_store() as store:
            mine = await store.prompts.list_for(alice.id)
            return len(mine) == 4

    for _ in range(300):
        if await adopted():
            break
        await asyncio.sleep(0.05)
    assert await adopted()
    assert not all(p["images"] for p in stage.emulator.prompts_for(astria_tune))
    await stage.kill_bot()
    await stage.start_bot()
    await stage.wait_for(lambda: len(stage.image_posts()) == 3, "the pack's three posts")
    code = await stage.stop_bot()
    assert code == 0

    # Exactly once in the channel and at Astria.
    posts = stage.image_posts()
    per_job = collections.Counter(i for p in posts for i in details_ids(p))
    assert len(posts) == 3 and set(per_job.values()) == {1}, per_job
    assert sum(len(p.attachments) for p in posts) == 6
    assert len(stage.emulator.pack_requests) == 1
    assert len(stage.emulator.prompts_for(astria_tune)) == 3

    # Money: the ledger equals the emulator's charges and the balance change.
    charged = sum(c.cost_mc for c in stage.emulator.charges)
    assert charged - charged_before == 90_001
    async with await stage.open_store() as store:
        entries = await store.ledger.entries()
        assert await store.ledger.open_reservations() == []
        assert await store.ledger.audit() == []
        mine = await store.prompts.list_for(alice.id)
        assert [p.state for p in mine] == [PromptState.DELIVERED] * 4
    settled = sum(e.cost_mc or 0 for e in entries if e.kind == LedgerKind.SETTLE)
    assert settled == charged == stage.options.balance_mc - stage.emulator.balance_mc
