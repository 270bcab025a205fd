"""kill -9 at the worst moments, on the real bot process against the emulator and the
wire-level Discord fake, with the emulator's idempotency on and off.

One session per mode: the bot is killed during training, during generation, and between
an image post reaching Discord and the bot recording it (restarted once within Discord's
nonce window and once after it), and while Astria makes an Upscale. At the end every job
is delivered exactly once, no Astria object exists twice, and the ledger equals what the
emulator charged, to the millicent.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.offline.demo import demo_photo
from bot.offline.emulator import READINGS
from bot.offline.fakecord.state import Message
from bot.offline.stage import Stage, StageOptions
from bot.store import PromptState, TuneState
from bot.store.ledger import LedgerKind

# Each mode under another reading of what Astria leaves undocumented (docs/emulator.md):
# every named reading once, with idempotency on and off by turns.
MODES = [
    pytest.param((True, "ours"), id="idem-on-ours"),
    pytest.param((False, "kept-not-refunded"), id="idem-off-kept-not-refunded"),
    pytest.param((True, "kept-refunded"), id="idem-on-kept-refunded"),
    pytest.param((False, "zeroed-not-refunded"), id="idem-off-zeroed-not-refunded"),
]


@pytest.fixture(params=MODES)
async def stage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stage]:
    idempotency, reading = request.param
    options = StageOptions(
        folder=tmp_path / "stage",
        idempotency=idempotency,
        reading=READINGS[reading],
        train_seconds=3.0,
        prompt_seconds=2.0,
        foreign_tunes=5,
    )
    async with Stage(options) as stage:
        yield stage


def created(stage: Stage, route: str) -> int:
    """Creates the emulator answered with success on this route."""
    return sum(
        1
        for r in stage.emulator.requests
        if r.route == route and r.status is not None and r.status < 300
    )


def details_ids(post: Message) -> list[str]:
    return [c for c in post.custom_ids() if c.startswith("job:details:")]


async def imagine(stage: Stage, tune_id: str, text: str) -> None:
    alice = stage.members["alice"]
    answer = await stage.command(alice, "imagine", prompt=text, tune=tune_id, count=2)
    assert "Queued 2 images" in answer, answer


async def delivered(stage: Stage, count: int) -> None:
    """Until the bot's database says the member's first `count` prompts are delivered."""
    alice = stage.members["alice"]
    for _ in range(600):
        states = await stage.prompt_states(alice)
        if states[:count] == ["delivered"] * count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"prompts not delivered: {states}")


async def test_kill_minus_nine_loses_nothing_and_doubles_nothing(stage: Stage):
    alice = stage.members["alice"]
    await stage.start_bot()
    await stage.fake.wait_commands(30.0)

    # 1. Killed while Astria trains the tune.
    photos = [(f"p{i}.jpg", demo_photo(i, size=600)) for i in range(5)]
    probes = created(stage, "POST /tunes")  # the idempotency probe's, at start
    assert "Training" in await stage.train(alice, "me", photos)
    await stage.wait_for(lambda: created(stage, "POST /tunes") > probes, "the tune to reach Astria")
    await stage.kill_bot()
    assert not stage.emulator.our_tunes()[0]["trained_at"]  # it really was mid-training
    await stage.start_bot()
    await stage.wait_for(
        lambda: any("is ready" in m.content for m in stage.posts()), "the tune to be ready"
    )
    tune_id = await stage.tune_choice(alice, "me")

    # 2. Killed while Astria generates the images.
    prompt_route = "POST /tunes/{tune_id}/prompts"
    await imagine(stage, tune_id, "first")
    await stage.wait_for(lambda: created(stage, prompt_route), "the prompt to reach Astria")
    await stage.kill_bot()
    await stage.start_bot()
    await stage.wait_for(lambda: len(stage.image_posts()) == 1, "the first images")

    # 3. Killed after Discord has the post but before the bot knew its id, restarted at
    #    once (inside Discord's nonce window).
    stage.fake.stall_posts(lambda m: bool(m.attachments))
    await imagine(stage, tune_id, "second")
    stalled = await stage.fake.wait_stalled(60.0)
    await stage.kill_bot()
    stage.fake.stall_posts(None)
    await stage.start_bot()
    await delivered(stage, 2)

    # 4. The same, restarted after the nonce window (Discord would no longer dedupe a
    #    resend): the bot must find its own post before posting again.
    stage.fake.stall_posts(lambda m: bool(m.attachments))
    await imagine(stage, tune_id, "third")
    await stage.wait_for(lambda: len(stage.fake.rest.stalled) == 2, "the third post")
    await stage.kill_bot()
    stage.fake.stall_posts(None)
    stage.fake.config.nonce_window = 0.0
    await stage.start_bot()
    await delivered(stage, 3)

    # 5. An Upscale of the first images, killed while Astria makes it.
    first = stage.image_posts()[0]
    upscale = next(c for c in first.custom_ids() if c.startswith("job:upscale:"))
    assert "Upscaling" in await stage.click(alice, first, upscale)
    await stage.wait_for(lambda: created(stage, prompt_route) == 4, "the upscale at Astria")
    # Held unfinished across the kill (on a loaded machine the kill could land after its
    # two seconds), and let finish once the bot is gone.
    upscaling = stage.emulator.our_prompts()[-1]["id"]
    stage.emulator.stall("prompt", upscaling)
    await stage.kill_bot()
    assert not stage.emulator.our_prompts()[-1]["images"]  # it really was mid-generation
    stage.emulator.resume("prompt", upscaling)
    await stage.start_bot()
    await delivered(stage, 4)
    code = await stage.stop_bot()
    assert code == 0

    # Exactly once in the channel: one image post per prompt, and the stalled ones are the
    # posts that count (nothing was posted again beside them).
    posts = stage.image_posts()
    per_job = collections.Counter(i for p in posts for i in details_ids(p))
    assert len(posts) == 4 and set(per_job.values()) == {1}, per_job
    assert posts[1] is stalled and posts[2] is stage.fake.rest.stalled[1]
    assert "upscaled" in posts[3].content and posts[3].type == 19  # a reply to its source
    assert len(posts[3].attachments) == 1
    ready_posts = [m for m in stage.posts() if "is ready" in m.content]
    assert len(ready_posts) == 1

    # Exactly once at Astria.
    tunes = stage.emulator.our_tunes()
    assert len(tunes) == 1
    prompts = stage.emulator.our_prompts()
    keys = collections.Counter((p["text"], p["seed"]) for p in prompts)
    assert len(prompts) == 4 and set(keys.values()) == {1}, keys
    assert [p["super_resolution"] for p in prompts] == [False, False, False, True]

    # Money: the ledger equals the emulator's charges and the balance change.
    charged = sum(c.cost_mc for c in stage.emulator.charges)
    async with await stage.open_store() as store:
        entries = await store.ledger.entries()
        assert await store.ledger.open_reservations() == []
        assert await store.ledger.audit() == []
        (tune,) = await store.tunes.list_for(alice.id)
        assert tune.state == TuneState.READY
        mine = await store.prompts.list_for(alice.id)
        assert [p.state for p in mine] == [PromptState.DELIVERED] * 4
    settled = sum(e.cost_mc or 0 for e in entries if e.kind == LedgerKind.SETTLE)
    assert settled == charged == stage.options.balance_mc - stage.emulator.balance_mc > 0
