"""kill -9 while Astria makes an Upscale and a Subtle variation, on the real bot process
against the emulator and the wire-level Discord fake, on SQLite and on PostgreSQL, with the
emulator's idempotency on and off.

The kill lands at the worst point reachable from outside: Astria has made (and charged)
both tool prompts, and its answers are held back (the emulator's `latency_after`), so the
bot never learned their ids. The restarted bot must find them at Astria rather than make
them again: each tool result is posted exactly once (the upscale as a reply to the post
it came from), Astria holds no prompt twice, and the ledger equals what it charged.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.offline.demo import demo_photo
from bot.offline.emulator import READINGS, Fault
from bot.offline.fakecord.state import Message
from bot.offline.stage import Stage, StageOptions
from bot.rules.tools import VARY_IMAGES, VARY_SUBTLE
from bot.store import PromptState
from bot.store.ledger import LedgerKind
from tests.e2e.test_kill import delivered, details_ids, imagine
from tests.pg import BACKENDS, Schemas

PROMPT_ROUTE = "POST /tunes/{tune_id}/prompts"
# Longer than the test: the answers only go out when the killed bot's sockets close.
HELD_SECONDS = 600.0

MODES = [
    pytest.param((True, "ours"), id="idem-on"),
    pytest.param((False, "kept-not-refunded"), id="idem-off"),
]


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, str]]:
    """The bot's database settings: its SQLite file (the stage's default), or a
    PostgreSQL schema of this test's own."""
    if request.param == "sqlite":
        yield {}
        return
    schemas = Schemas()
    try:
        # Short leases: the restarted process takes the killed one's jobs over sooner.
        yield {"DATABASE_URL": (await schemas.url()).get_secret_value(), "LEASE_SECONDS": "3"}
    finally:
        await schemas.drop_all()


@pytest.fixture(params=MODES)
async def stage(
    request: pytest.FixtureRequest, backend: dict[str, str], tmp_path: Path
) -> AsyncIterator[Stage]:
    idempotency, reading = request.param
    options = StageOptions(
        folder=tmp_path / "stage",
        idempotency=idempotency,
        reading=READINGS[reading],
        train_seconds=2.0,
        prompt_seconds=2.0,
        bot_settings=backend,
    )
    async with Stage(options) as stage:
        yield stage


def button(post: Message, action: str, index: int) -> str:
    return next(
        c for c in post.custom_ids() if c.startswith(f"job:{action}:") and c.endswith(f"-{index}")
    )


async def test_a_kill_while_astria_makes_tools_posts_each_once_and_pays_once(stage: Stage):
    alice = stage.members["alice"]
    await stage.start_bot()
    await stage.fake.wait_commands(30.0)
    photos = [(f"p{i}.jpg", demo_photo(i, size=600)) for i in range(5)]
    tune_id = await stage.ready_tune(alice, "me", photos)
    await imagine(stage, tune_id, "a lighthouse at dusk")
    (source,) = await stage.wait_for(stage.image_posts, "the first images")
    await delivered(stage, 1)

    # Both tools reach Astria, which makes and charges them and keeps its answers back.
    stage.emulator.faults.script(
        PROMPT_ROUTE, *(Fault("latency_after", delay=HELD_SECONDS) for _ in range(2))
    )
    assert "Upscaling image 1" in await stage.click(alice, source, button(source, "upscale", 0))
    said = await stage.click(alice, source, button(source, "vary-subtle", 1))
    assert "subtle variations of image 2" in said, said
    await stage.wait_for(lambda: len(stage.emulator.our_prompts()) == 3, "both tools at Astria")
    await stage.kill_bot()
    assert stage.emulator.faults.pending == 0
    async with await stage.open_store() as store:
        tools = (await store.prompts.list_for(alice.id))[:2]
    # Really the worst point: the bot had sent both and recorded neither answer.
    assert {p.tool for p in tools} == {"upscale", "vary"}
    assert [(p.state, p.astria_id) for p in tools] == [(PromptState.SUBMITTING, None)] * 2

    # Killed again once Discord has the upscale's reply but before the bot knew its id,
    # restarted past Discord's nonce window: the bot must find its own reply, not post
    # another.
    stage.fake.stall_posts(lambda m: m.type == 19)
    await stage.start_bot()
    stalled = await stage.fake.wait_stalled(60.0)
    await stage.kill_bot()
    stage.fake.stall_posts(None)
    stage.fake.config.nonce_window = 0.0
    await stage.start_bot()
    await delivered(stage, 3)
    assert await stage.stop_bot() == 0

    # Exactly once in the channel: the source, the upscale as a reply to it, the variations.
    posts = stage.image_posts()
    per_job = collections.Counter(i for p in posts for i in details_ids(p))
    assert len(posts) == 3 and set(per_job.values()) == {1}, per_job
    assert posts[0].id == source.id
    (upscaled,) = [p for p in posts if "upscaled" in p.content]
    (varied,) = [p for p in posts if "variations" in p.content]
    assert upscaled is stalled and upscaled.type == 19 and upscaled.reply_to == source.id
    assert len(upscaled.attachments) == 1
    assert varied.type == 0 and len(varied.attachments) == VARY_IMAGES

    # Exactly once at Astria: three prompts, each made and charged once, each one job's.
    prompts = stage.emulator.our_prompts()
    assert len(prompts) == 3
    assert len({(p["text"], p["seed"]) for p in prompts}) == 3
    assert sorted(p["super_resolution"] for p in prompts) == [False, False, True]
    images = [str(u) for u in prompts[0]["images"]]
    made = {str(p["input_image_url"]): float(p["denoising_strength"]) for p in prompts[1:]}
    assert set(made) == {images[0], images[1]} and made[images[1]] == VARY_SUBTLE
    prompt_charges = collections.Counter(
        c.object_id for c in stage.emulator.charges if c.kind == "prompt"
    )
    assert prompt_charges == {p["id"]: 1 for p in prompts}
    async with await stage.open_store() as store:
        mine = await store.prompts.list_for(alice.id)
        assert [p.state for p in mine] == [PromptState.DELIVERED] * 3
        assert sorted(p.astria_id or 0 for p in mine) == sorted(p["id"] for p in prompts)
        entries = await store.ledger.entries()
        assert await store.ledger.open_reservations() == []
        assert await store.ledger.audit() == []

    # Money: the ledger equals the emulator's charges and the balance change.
    charged = sum(c.cost_mc for c in stage.emulator.charges)
    settled = sum(e.cost_mc or 0 for e in entries if e.kind == LedgerKind.SETTLE)
    assert settled == charged == stage.options.balance_mc - stage.emulator.balance_mc > 0
