"""The real bot process with SHARD_COUNT=2 on the wire-level fake, which routes each
guild's events to shard (guild_id >> 22) % 2 as Discord does: both shards connect (at once,
as GET /gateway/bot's max_concurrency allows), each server's commands are answered once by
the shard that has it, and a tune trained in each server is delivered in its channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.offline.demo import demo_photo
from bot.offline.fakecord.state import Guild
from bot.offline.stage import Stage, StageOptions


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[Stage]:
    options = StageOptions(
        folder=tmp_path / "stage", train_seconds=1.0, bot_settings={"SHARD_COUNT": "2"}
    )
    async with Stage(options) as stage:
        yield stage


def shard_of(guild: Guild, count: int = 2) -> int:
    return (guild.id >> 22) % count


async def guild_on_other_shard(stage: Stage) -> Guild:
    """A second server whose id puts it on the other shard than the stage's (ids carry
    the millisecond they were made, so a few tries find one)."""
    for _ in range(200):
        guild = await stage.fake.create_guild("Second Server")
        if shard_of(guild) != shard_of(stage.guild):
            return guild
        await asyncio.sleep(0.003)
    raise AssertionError("no guild id on the other shard")


async def test_two_shards_each_answer_their_own_servers(stage: Stage):
    fake = stage.fake
    other = await guild_on_other_shard(stage)
    channel = await fake.create_channel(other, "pics")
    bob = await fake.create_member(other, "bob")
    alice = stage.members["alice"]

    await stage.start_bot()
    await fake.gateway.changed.wait_for(
        lambda: len(fake.gateway.ready_sessions) == 2, 30.0, "both shards"
    )
    shards = sorted(s.shard for s in fake.gateway.ready_sessions if s.shard is not None)
    assert shards == [(0, 2), (1, 2)]
    await fake.wait_commands(30.0)

    # Each server's command reaches one shard only, and is answered once.
    for member, where in ((alice, stage.channel), (bob, channel)):
        handle = await fake.slash(member, where, "balance")
        reply = await handle.response(30.0)
        assert reply is not None and not handle.rejections, handle.rejections

    photos = [(f"p{i}.jpg", demo_photo(i, size=600)) for i in range(4)]
    answers = await asyncio.gather(
        stage.train(alice, "alice", photos),
        stage.train(bob, "bob", photos, channel=channel),
    )
    assert all("Training" in a for a in answers), answers
    for where in (stage.channel, channel):
        await stage.wait_for(
            lambda w=where: any("is ready" in m.content for m in stage.posts(w)),  # type: ignore[misc]
            f"the tune in {where.name}",
        )
    for where in (stage.channel, channel):
        assert len([m for m in stage.posts(where) if "is ready" in m.content]) == 1
    assert fake.gateway.identifies == 2
    # Every server event went to its shard's connection only.
    for session in fake.gateway.ready_sessions:
        assert session.shard is not None
        mine = {g.id for g in fake.world.guilds.values() if shard_of(g) == session.shard[0]}
        asked = {g for event, g in session.sent if event == "INTERACTION_CREATE"}
        created = {g for event, g in session.sent if event == "GUILD_CREATE"}
        assert created == mine, (session.shard, created, mine)
        used = {stage.guild.id, other.id} & mine  # the servers where members used the bot
        assert asked == used, (session.shard, asked, used)
    assert await stage.stop_bot() == 0
