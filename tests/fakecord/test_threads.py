"""Threads, forum posts and voice-channel chats on the fake, as a real discord.py bot sees
them: typed channels with parents, joining by posting, archived threads refusing until
unarchived, a forum refusing direct posts, and enforce_nonce answering with the first
message in every one of them."""

from __future__ import annotations

import discord
import pytest

from bot.offline.fakecord.state import GUILD_FORUM, GUILD_STAGE_VOICE, GUILD_VOICE
from tests.fakecord.conftest import Starter, eventually


async def test_threads_forum_posts_and_voice_chats_are_typed_channels(start: Starter) -> None:
    env = await start()
    fake, bot = env.fake, env.bot
    thread = await fake.create_thread(env.channel, "ideas", env.member)
    forum = await fake.create_channel(env.guild, "gallery", kind=GUILD_FORUM)
    post = await fake.create_forum_post(forum, "my portraits", env.member, "post yours here")
    voice = await fake.create_channel(env.guild, "lounge", kind=GUILD_VOICE)
    stage = await fake.create_channel(env.guild, "talks", kind=GUILD_STAGE_VOICE)
    await eventually(lambda: all(bot.get_channel(c.id) for c in (thread, post, voice, stage)))

    seen_thread, seen_post = bot.get_channel(thread.id), bot.get_channel(post.id)
    assert isinstance(seen_thread, discord.Thread) and seen_thread.parent_id == env.channel.id
    assert isinstance(seen_post, discord.Thread) and seen_post.parent_id == forum.id
    assert isinstance(seen_post.parent, discord.ForumChannel)
    assert isinstance(bot.get_channel(voice.id), discord.VoiceChannel)
    assert isinstance(bot.get_channel(stage.id), discord.StageChannel)
    # A forum post opens with a starter message that shares the thread's id.
    assert [m.id for m in fake.messages(post)] == [post.id]

    # Every one takes posts and edits; posting in a thread joins it.
    assert fake.world.bot.id not in thread.thread_members
    for target in (seen_thread, seen_post, bot.get_channel(voice.id), bot.get_channel(stage.id)):
        assert isinstance(target, discord.abc.Messageable)
        sent = await target.send("status", nonce=f"n{target.id % 10**9}")
        await sent.edit(content="done")
        assert fake.world.messages[sent.id].content == "done"
    assert fake.world.bot.id in thread.thread_members
    await eventually(lambda: seen_thread.me is not None)

    # The forum itself holds no messages.
    seen_forum = bot.get_channel(forum.id)
    assert isinstance(seen_forum, discord.ForumChannel)
    with pytest.raises(discord.HTTPException) as refused:
        await bot.get_partial_messageable(forum.id).send("hello")
    assert refused.value.code == 50008


async def test_an_archived_thread_refuses_posts_and_edits_until_unarchived(start: Starter) -> None:
    env = await start()
    fake, bot = env.fake, env.bot
    thread = await fake.create_thread(env.channel, "old", env.member)
    await eventually(lambda: bot.get_channel(thread.id) is not None)
    target = bot.get_partial_messageable(thread.id)
    status = await target.send("⚙️ working")
    await fake.set_thread_archived(thread)
    await eventually(lambda: bot.get_channel(thread.id) is None)  # discord.py drops it
    with pytest.raises(discord.HTTPException) as refused:
        await target.send("result")
    assert (refused.value.status, refused.value.code) == (400, 50083)
    with pytest.raises(discord.HTTPException) as no_edit:
        await target.get_partial_message(status.id).edit(content="done")
    assert no_edit.value.code == 50083
    await fake.set_thread_archived(thread, False)
    await target.get_partial_message(status.id).edit(content="done")
    await target.send("result")
    assert [m.content for m in fake.messages(thread)] == ["done", "result"]


async def test_a_private_thread_needs_membership(start: Starter) -> None:
    env = await start()
    fake, bot = env.fake, env.bot
    secret = await fake.create_thread(env.channel, "secret", env.member, private=True)
    with pytest.raises(discord.Forbidden) as refused:
        await bot.get_partial_messageable(secret.id).send("hello")
    assert refused.value.code == 50001
    secret.thread_members[fake.world.bot.id] = fake.world.now_iso()
    await bot.get_partial_messageable(secret.id).send("hello")
    assert [m.content for m in fake.messages(secret)] == ["hello"]


async def test_enforce_nonce_answers_with_the_first_message_in_a_thread(start: Starter) -> None:
    env = await start()
    fake, bot = env.fake, env.bot
    forum = await fake.create_channel(env.guild, "gallery", kind=GUILD_FORUM)
    post = await fake.create_forum_post(forum, "mine", env.member)
    target = bot.get_partial_messageable(post.id)
    first = await target.send("⚙️ Generating", nonce="prompt-1-status")
    again = await target.send("✅ Done", nonce="prompt-1-status")
    # The repeat is not posted, and what comes back is the first message, unchanged: a
    # status "edited" by sending it again with the same nonce never changes.
    assert again.id == first.id and again.content == "⚙️ Generating"
    assert [m.content for m in fake.messages(post)][1:] == ["⚙️ Generating"]
    assert fake.nonces.deduped == 1


async def test_an_age_restricted_channel_carries_nsfw_and_its_threads_follow(
    start: Starter,
) -> None:
    env = await start()
    fake, bot = env.fake, env.bot
    adult = await fake.create_channel(env.guild, "after-dark", nsfw=True)
    thread = await fake.create_thread(adult, "late", env.member)
    await eventually(lambda: bot.get_channel(thread.id) is not None)
    seen, seen_thread = bot.get_channel(adult.id), bot.get_channel(thread.id)
    assert isinstance(seen, discord.TextChannel) and seen.is_nsfw()
    assert isinstance(seen_thread, discord.Thread) and seen_thread.is_nsfw()
    plain = bot.get_channel(env.channel.id)
    assert isinstance(plain, discord.TextChannel) and not plain.is_nsfw()
    assert fake.world.channel_payload(adult)["nsfw"] is True
    # An admin lifts the flag: discord.py hears it, and the thread follows.
    await fake.set_nsfw(adult, False)
    await eventually(lambda: not seen.is_nsfw())
    assert not seen_thread.is_nsfw()
