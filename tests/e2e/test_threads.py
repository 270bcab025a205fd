"""A tune and a prompt in a thread, a forum post and a voice channel's chat, on the real
bot process against the emulator and the wire-level fake (which, like Discord, answers a
repeated nonce with the first message): each job's status message is edited in place,
never re-sent, names the member and the prompt, says "any moment now" once its ETA has
passed, and is removed when the result is posted once, in the place it was asked for:
one message per job."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.offline.demo import demo_photo
from bot.offline.fakecord.state import GUILD_FORUM, GUILD_VOICE, Channel, Message
from bot.offline.stage import Stage, StageOptions
from bot.store import JobKind, JobRef


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[Stage]:
    options = StageOptions(
        folder=tmp_path / "stage",
        train_seconds=2.0,
        prompt_seconds=4.0,
        # The bot expects 1 s: its ETA passes while Astria still works.
        bot_settings={"FLUX_PROMPT_SECONDS": "1"},
    )
    async with Stage(options) as stage:
        yield stage


async def status_of(stage: Stage, job: str) -> Message:
    """The job's status message as Discord has it (deleted ones included)."""
    ref = JobRef.parse(job)
    async with await stage.open_store() as store:
        record = (
            await store.tunes.get(ref.id)
            if ref.kind == JobKind.TUNE
            else await store.prompts.get(ref.id)
        )
    assert record is not None and record.status_message_id is not None, job
    return stage.fake.world.messages[record.status_message_id]


async def jobs_in(stage: Stage, channel: Channel) -> list[str]:
    async with await stage.open_store() as store:
        owner = stage.members["alice"].id
        tunes = [t.job for t in await store.tunes.list_for(owner) if t.channel_id == channel.id]
        prompts = [p.job for p in await store.prompts.list_for(owner) if p.channel_id == channel.id]
    return [str(j) for j in (*tunes, *prompts)]


def assert_shown_in_place(stage: Stage, channel: Channel, status: Message, *, edits: int) -> None:
    """Sent once, in this channel, edited in place at least `edits` times since, and
    removed once the result was posted (the fake keeps a deleted message's last text)."""
    assert status.channel_id == channel.id
    assert status.edits >= edits, (status.edits, status.content)
    assert status.deleted, status.content
    created = [
        r
        for r in stage.fake.requests
        if r.method == "POST" and r.channel_id == channel.id and (r.json or {}).get("nonce")
    ]
    nonces = collections.Counter(r.json["nonce"] for r in created)
    assert nonces[status.nonce] == 1, nonces  # never sent again in place of an edit


async def test_a_tune_and_a_prompt_in_a_thread_a_forum_post_and_a_voice_chat(stage: Stage):
    fake, alice = stage.fake, stage.members["alice"]
    await stage.start_bot()
    await fake.wait_commands(30.0)
    thread = await fake.create_thread(stage.channel, "alice's portraits", alice)
    forum = await fake.create_channel(stage.guild, "gallery", kind=GUILD_FORUM)
    post = await fake.create_forum_post(forum, "my tune", alice, "results here please")
    voice = await fake.create_channel(stage.guild, "lounge", kind=GUILD_VOICE)

    # A tune in the thread and one in the forum post, at once.
    photos = [(f"p{i}.jpg", demo_photo(i, size=600)) for i in range(4)]
    answers = await asyncio.gather(
        stage.train(alice, "threaded", photos, channel=thread),
        stage.train(alice, "forum", photos, channel=post),
    )
    assert all("Training" in a for a in answers), answers
    for where in (thread, post):
        await stage.wait_for(
            lambda w=where: any("is ready" in m.content for m in stage.posts(w)),  # type: ignore[misc]
            f"the tune in {where.name}",
        )
    tune_id = await stage.tune_choice(alice, "threaded")

    # A prompt in each of the three places.
    for where in (thread, post, voice):
        answer = await stage.command(
            alice, "imagine", channel=where, prompt="a lighthouse", tune=tune_id
        )
        assert "Queued 1 image" in answer, answer
    for where in (thread, post, voice):
        await stage.wait_for(lambda w=where: stage.image_posts(w), f"the images in {where.name}")  # type: ignore[misc]
    await asyncio.sleep(1.0)  # a late edit or a second post would show now

    who = f"<@{alice.id}>"
    for where in (thread, post, voice):
        jobs = await jobs_in(stage, where)
        assert len(jobs) == (1 if where is voice else 2), jobs
        for job in jobs:
            status = await status_of(stage, job)
            prompt = job.startswith("prompt:")
            # A prompt's ETA passes before Astria is done: "any moment now" is an edit. A
            # tune's status may go straight from "training" to its result.
            assert_shown_in_place(stage, where, status, edits=1 if prompt else 0)
            assert who in status.content, status.content
            if prompt:
                assert "“a lighthouse”" in status.content
                assert "any moment now" in status.content, status.content
            else:
                assert "Now training" in status.content, status.content
        # One message per job: its result, posted once.
        left = stage.posts(where)
        ready = [m for m in left if "is ready" in m.content]
        images = stage.image_posts(where)
        assert len(images) == 1 and len(ready) == (0 if where is voice else 1)
        assert len(left) == len(jobs), [m.content for m in left]
        assert "“a lighthouse”" in images[0].content and who in images[0].content
    # Posting in the thread joined it, as on Discord.
    assert fake.world.bot.id in thread.thread_members
    assert await stage.stop_bot() == 0
