"""100 jobs in one channel on the wire-level fake, which enforces Discord's per-channel
limits on sends and edits with real 429s: every result arrives once, no request is retried
before its `retry_after`, and progress edits are coalesced instead of queued.

Discord's windows are 5 per 5 s; here 5 per 0.5 s, so the test runs ten times faster with
the same shape. With `advertise_ratelimits` off the bot cannot pace itself from headers and
meets the 429s for real (Discord does send the headers; off is the harder case).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.offline.demo import demo_photo
from bot.offline.fakecord import FakeDiscordConfig
from bot.offline.stage import Stage, StageOptions

MEMBERS = 25
PER_MEMBER = 4


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[Stage]:
    options = StageOptions(
        folder=tmp_path / "stage",
        train_seconds=2.0,
        prompt_seconds=3.0,
        members=[f"m{n}" for n in range(MEMBERS)],
        fake=FakeDiscordConfig(
            send_limit=5, send_per=0.5, edit_limit=5, edit_per=0.5, advertise_ratelimits=False
        ),
        bot_settings={"MAX_JOBS_IN_FLIGHT": "100", "ASTRIA_REQUESTS_PER_SECOND": "200"},
    )
    async with Stage(options) as stage:
        yield stage


async def test_100_jobs_in_one_channel_each_posted_once_within_the_limits(stage: Stage):
    await stage.start_bot()
    await stage.fake.wait_commands(30.0)
    first = stage.members["m0"]
    photos = [(f"p{i}.jpg", demo_photo(i, size=600)) for i in range(4)]
    assert "Training" in await stage.train(first, "shared", photos)
    await stage.wait_for(
        lambda: any("is ready" in m.content for m in stage.posts()), "the tune", timeout=60
    )
    tune_id = await stage.tune_choice(first)
    assert "is shared" in await stage.command(stage.admin, "admin share", tune=tune_id)
    sends_before = stage.fake.sends(stage.channel)

    async def imagine(member_name: str, n: int) -> str:
        member = stage.members[member_name]
        return await stage.command(member, "imagine", prompt=f"{member_name} {n}", tune=tune_id)

    answers = await asyncio.gather(
        *(imagine(f"m{m}", n) for m in range(MEMBERS) for n in range(PER_MEMBER))
    )
    assert all("Queued 1 image" in a for a in answers), collections.Counter(answers)
    jobs = MEMBERS * PER_MEMBER
    await stage.wait_for(lambda: len(stage.image_posts()) >= jobs, "100 image posts", timeout=180.0)
    await asyncio.sleep(1.0)  # anything posted twice would show now
    posts = stage.image_posts()
    markers = collections.Counter(
        c for p in posts for c in p.custom_ids() if c.startswith("job:reroll:")
    )
    assert len(posts) == jobs and len(markers) == jobs and set(markers.values()) == {1}

    fake = stage.fake
    sends = fake.sends(stage.channel) - sends_before
    edits = fake.edits(stage.channel)
    refused = fake.rate_limited[stage.channel.id]
    print(f"\n100 jobs: {sends} sends, {edits} edits, {refused} answered 429")
    assert fake.early_retries == 0  # every retry waited for its retry_after
    assert refused > 0  # the limits really bit
    # One status message and one result a job, and at most a few edits each: progress is
    # coalesced, not queued behind the results.
    assert sends <= 2 * jobs + 5, sends
    assert edits <= 3 * jobs, edits
    code = await stage.stop_bot()
    assert code == 0
