"""The rules a bot must live with: rate limits, nonces, upload limits, deadlines, refusals."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import discord
import pytest

from bot.offline.fakecord import FakeDiscordConfig
from tests.fakecord.conftest import ManualClock, Starter, eventually

MIB = 1024 * 1024


async def raw(method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as r:
        body = await r.json() if r.content_type == "application/json" else None
        return r.status, dict(r.headers), body


async def test_twelve_sends_meet_real_429s_and_all_arrive(start: Starter) -> None:
    # Limits not advertised on success (a hidden limit): discord.py meets real 429s.
    config = FakeDiscordConfig(token="token", send_per=0.4, advertise_ratelimits=False)
    env = await start(config)
    channel = env.bot_channel()
    sent = await asyncio.gather(*(channel.send(f"n{i}") for i in range(12)))
    assert len({m.id for m in sent}) == 12
    assert sorted(m.content for m in env.fake.messages(env.channel)) == sorted(
        f"n{i}" for i in range(12)
    )
    assert env.fake.sends(env.channel) == 12
    assert env.fake.rate_limited[env.channel.id] >= 1
    assert env.fake.sends(env.channel, ok=False) == 12 + env.fake.rate_limited[env.channel.id]
    assert env.fake.early_retries == 0


async def test_advertised_limits_let_discord_py_pace_itself(start: Starter) -> None:
    env = await start(FakeDiscordConfig(token="token", send_per=0.3, edit_per=0.3))
    channel = env.bot_channel()
    sent = await asyncio.gather(*(channel.send(f"n{i}") for i in range(7)))
    await asyncio.gather(*(m.edit(content="edited") for m in sent))
    assert env.fake.sends(env.channel) == 7 and env.fake.edits(env.channel) == 7
    assert env.fake.rate_limited[env.channel.id] == 0 and env.fake.early_retries == 0
    record = next(r for r in env.fake.requests if r.method == "PATCH")
    assert record.json is not None and record.json["content"] == "edited"


async def test_a_retry_before_retry_after_counts_as_early(start: Starter) -> None:
    env = await start(FakeDiscordConfig(token="token", send_limit=1, send_per=30))
    url = f"{env.fake.api_base}/channels/{env.channel.id}/messages"
    auth = {"Authorization": "Bot token"}
    status, headers, _ = await raw("POST", url, json={"content": "a"}, headers=auth)
    assert status == 200 and headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Bucket"] and float(headers["X-RateLimit-Reset-After"]) > 29
    status, headers, body = await raw("POST", url, json={"content": "b"}, headers=auth)
    assert status == 429 and body["global"] is False and body["retry_after"] > 29
    assert headers["X-RateLimit-Scope"] == "user" and headers["Via"]
    assert env.fake.early_retries == 0
    status, _, _ = await raw("POST", url, json={"content": "c"}, headers=auth)
    assert status == 429 and env.fake.early_retries == 1


async def test_enforce_nonce_dedupes_inside_the_window_only(start: Starter) -> None:
    clock = ManualClock()
    env = await start(FakeDiscordConfig(token="token", clock=clock, nonce_window=120))
    channel = env.bot_channel()
    first = await channel.send("result", nonce="job-1")
    again = await channel.send("result", nonce="job-1")
    assert again.id == first.id and len(env.fake.messages(env.channel)) == 1
    posted = [r.json for r in env.fake.requests if r.method == "POST" and r.channel_id]
    assert posted[-1]["enforce_nonce"] is True and posted[-1]["nonce"] == "job-1"
    other = await channel.send("result", nonce="job-2")
    assert other.id != first.id
    clock.advance(121)
    late = await channel.send("result", nonce="job-1")
    assert late.id not in (first.id, other.id)
    assert len(env.fake.messages(env.channel)) == 3 and env.fake.nonces.deduped == 1


async def test_a_reply_names_its_message_and_a_missing_one_is_refused_unless_told(
    start: Starter,
) -> None:
    env = await start()
    channel = env.bot_channel()
    source = await channel.send("source")
    answer = await channel.send("answer", reference=source, mention_author=False)
    assert answer.type == discord.MessageType.reply
    assert answer.reference is not None and answer.reference.message_id == source.id
    kept = {m.id: m for m in env.fake.messages(env.channel)}
    assert kept[answer.id].reply_to == source.id and kept[source.id].reply_to is None
    await source.delete()
    gone = discord.MessageReference(message_id=source.id, channel_id=env.channel.id)
    with pytest.raises(discord.HTTPException) as refused:
        await channel.send("late", reference=gone)
    assert (refused.value.status, refused.value.code) == (400, 50035)
    gone.fail_if_not_exists = False
    plain = await channel.send("late", reference=gone)
    assert plain.type == discord.MessageType.default and plain.reference is None


async def test_upload_limits(start: Starter) -> None:
    env = await start()
    channel = env.bot_channel()
    files = [discord.File(io.BytesIO(b"x"), f"{n}.txt") for n in range(11)]
    with pytest.raises(discord.HTTPException) as many:
        await channel.send(files=files)
    assert (many.value.status, many.value.code) == (400, 50035)
    big = b"\0" * (10 * MIB + 1)
    with pytest.raises(discord.HTTPException) as large:
        await channel.send(file=discord.File(io.BytesIO(big), "big.bin"))
    assert (large.value.status, large.value.code) == (413, 40005)
    assert env.fake.requests[-1].files == [len(big)]
    ten = [discord.File(io.BytesIO(b"y" * 10), f"{n}.txt") for n in range(10)]
    ok = await channel.send("ten", files=ten)
    assert len(ok.attachments) == 10 and ok.attachments[0].size == 10

    boosted = await env.fake.create_guild("Boosted", premium_tier=2)
    room = await env.fake.create_channel(boosted, "room")
    await eventually(lambda: env.bot.get_channel(room.id) is not None)
    target = env.bot.get_channel(room.id)
    assert isinstance(target, discord.TextChannel)
    sent = await target.send(file=discord.File(io.BytesIO(big), "big.bin"))
    assert sent.attachments[0].size == len(big)


async def test_a_late_callback_is_an_unknown_interaction(start: Starter) -> None:
    clock = ManualClock()
    env = await start(FakeDiscordConfig(token="token", clock=clock))
    handle = await env.fake.slash(env.member, env.channel, "late")
    clock.advance(3.5)
    env.seen.release.set()
    assert await handle.wait_rejection() == 10062
    await eventually(lambda: env.seen.errors)
    assert env.seen.errors == [10062]
    assert handle.reply is None and env.fake.messages(env.channel) == []


async def test_acknowledgement_and_token_rules(start: Starter) -> None:
    clock = ManualClock()
    env = await start(FakeDiscordConfig(token="token", clock=clock))
    handle = await env.fake.slash(env.member, env.channel, "buttons")
    await handle.response()
    app = env.fake.world.app_id
    callback = f"{env.fake.api_base}/interactions/{handle.id}/{handle.token}/callback"
    status, _, body = await raw("POST", callback, json={"type": 4, "data": {"content": "2"}})
    assert (status, body["code"]) == (400, 40060)
    hook = f"{env.fake.api_base}/webhooks/{app}/{handle.token}"
    status, _, body = await raw("POST", hook + "?wait=true", json={"content": "more"})
    assert status == 200 and body["content"] == "more"
    clock.advance(15 * 60 + 1)
    status, _, body = await raw("PATCH", hook + "/messages/@original", json={"content": "x"})
    assert (status, body["code"]) == (401, 50027)
    assert handle.rejections == [40060, 50027]

    fresh = await env.fake.slash(env.member, env.channel, "late")
    fresh_hook = f"{env.fake.api_base}/webhooks/{app}/{fresh.token}"
    status, _, body = await raw("POST", fresh_hook, json={"content": "too soon"})
    assert (status, body["code"]) == (404, 10015)  # no followup before the first callback
    env.seen.release.set()


async def test_closed_dms_and_missing_permissions(start: Starter) -> None:
    env = await start()
    fake, bot = env.fake, env.bot
    closed = await fake.create_member(env.guild, "shy", dms_closed=True)
    open_ = await fake.create_member(env.guild, "chatty")
    user = await bot.fetch_user(closed.id)
    dm = await user.create_dm()
    with pytest.raises(discord.Forbidden) as refused:
        await dm.send("your result")
    assert refused.value.code == 50007
    friendly = await (await bot.fetch_user(open_.id)).create_dm()
    await friendly.send("your result")
    assert [m.content for m in fake.messages(await fake.dm_channel(open_))] == ["your result"]

    muted = await fake.create_channel(env.guild, "read-only", bot_can_send=False)
    await eventually(lambda: bot.get_channel(muted.id) is not None)
    target = bot.get_channel(muted.id)
    assert isinstance(target, discord.TextChannel) and target.guild.me is not None
    assert not target.permissions_for(target.guild.me).send_messages
    with pytest.raises(discord.Forbidden) as denied:
        await target.send("hello")
    assert denied.value.code == 50013


async def test_deleted_channel_is_unknown(start: Starter) -> None:
    env = await start()
    await env.fake.delete_channel(env.channel)
    await eventually(lambda: env.bot.get_channel(env.channel.id) is None)
    assert env.bot.get_channel(env.channel.id) is None
    with pytest.raises(discord.NotFound) as gone:
        await env.bot.get_partial_messageable(env.channel.id).send("result")
    assert gone.value.code == 10003
    with pytest.raises(discord.NotFound):
        await env.bot.fetch_channel(env.channel.id)
