"""A form submitted before the bot has read Discord's answer to opening it, on the real bot
process: the fake holds that answer back, so the submit arrives on the gateway first (a
fast client, or a loaded host reading slowly). discord.py alone drops such a submit
without a word; the bot listens for its forms before it opens them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.offline.demo import demo_photo
from bot.offline.fakecord import FakeDiscordConfig
from bot.offline.stage import Stage, StageOptions


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[Stage]:
    options = StageOptions(
        folder=tmp_path / "stage",
        train_seconds=1.0,
        fake=FakeDiscordConfig(callback_answer_delay=1.5),
    )
    async with Stage(options) as stage:
        yield stage


async def test_a_form_submitted_before_its_opening_was_read_is_still_answered(stage: Stage):
    alice = stage.members["alice"]
    await stage.start_bot()
    await stage.fake.wait_commands(30.0)
    photos = [(f"p{i}.jpg", demo_photo(i, size=600)) for i in range(4)]
    answer = await stage.train(alice, "quick", photos)
    assert "Training" in answer, answer
    await stage.wait_for(
        lambda: any("is ready" in m.content for m in stage.posts()), "the tune to be ready"
    )
    assert await stage.stop_bot() == 0
