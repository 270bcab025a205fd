"""Login, gateway and command sync; slash commands, modals, buttons and menus end to end."""

from __future__ import annotations

import hashlib

import aiohttp
import discord
import pytest

from bot.offline.fakecord import DriverError
from tests.fakecord.conftest import Starter, eventually, png


async def test_login_ready_guilds_and_command_sync(start: Starter) -> None:
    env = await start(premium_tier=1)
    fake, bot = env.fake, env.bot
    calls = [(r.method, r.route, r.status) for r in fake.requests]
    assert calls[:3] == [
        ("GET", "/users/@me", 200),
        ("GET", "/oauth2/applications/@me", 200),
        ("PUT", "/applications/{app_id}/guilds/{guild_id}/commands", 200),
    ]
    assert bot.user is not None and bot.user.id == fake.world.bot.id
    assert bot.application_id == fake.world.app_id
    assert fake.gateway.identifies == 1
    guild = bot.get_guild(env.guild.id)
    assert guild is not None and guild.premium_tier == 1 and guild.member_count == 3
    assert guild.me is not None and guild.owner_id == env.guild.owner_id
    assert env.bot_channel().permissions_for(guild.me).send_messages

    by_name = {c["name"]: c for c in fake.commands(env.guild)}
    assert by_name["Count files"]["type"] == 3
    echo = {o["name"]: o["type"] for o in by_name["echo"]["options"]}
    assert echo == {"text": 3, "file": 11}
    group = by_name["admin"]["options"][0]
    assert (group["name"], group["type"]) == ("budget", 2)
    assert group["options"][0]["options"][0]["type"] == 4
    assert fake.commands() == []  # nothing global

    await fake.set_premium_tier(env.guild, 2)
    await eventually(lambda: guild.premium_tier == 2)
    assert guild.filesize_limit == 50 * 1024 * 1024
    assert fake.unknown_routes == []


async def test_slash_defer_then_followup_completes_the_loading_message(start: Starter) -> None:
    env = await start()
    fake = env.fake
    handle = await fake.slash(env.member, env.channel, "echo", text="hi", file=("a.bin", b"xyz"))
    reply = await handle.response()
    assert reply.type == 5 and handle.latency is not None and handle.latency >= 0
    done = await handle.wait_done()
    assert done is not None and done.content == "hi (3 bytes)" and not done.loading
    (followup,) = await handle.wait_followups()
    assert followup.id == done.id  # the followup edited the loading message
    assert [m.content for m in fake.messages(env.channel)] == ["hi (3 bytes)"]
    history = [m async for m in env.bot_channel().history(limit=10)]
    assert [m.id for m in history] == [done.id]
    with pytest.raises(DriverError):
        await fake.slash(env.member, env.channel, "echo")  # required option missing
    with pytest.raises(DriverError):
        await fake.slash(env.member, env.channel, "nope")


async def test_subcommand_group_ephemeral_reply_and_autocomplete(start: Starter) -> None:
    env = await start()
    fake = env.fake
    handle = await fake.slash(env.member, env.channel, "admin budget server", dollars=7)
    reply = await handle.response()
    assert (reply.type, reply.content, reply.ephemeral) == (4, "budget 7", True)
    assert fake.messages(env.channel) == []
    assert [m.content for m in fake.messages(env.channel, ephemeral=True)] == ["budget 7"]

    suggest = await fake.autocomplete(env.member, env.channel, "pick", "fruit", "ap")
    answer = await suggest.response()
    assert answer.type == 8
    assert [c["value"] for c in answer.choices] == ["apple", "apricot"]


async def test_modal_with_two_file_uploads(start: Starter) -> None:
    env = await start()
    fake = env.fake
    opened = await fake.slash(env.member, env.channel, "tune create")
    modal = (await opened.response()).modal
    assert modal is not None and modal.custom_id == "tune:create"
    labels = [row for row in modal.components if row["type"] == 18]
    assert [row["component"]["type"] for row in labels] == [4, 19, 19]

    photos = [png((40 + n, 30), (n * 40, 0, 0)) for n in range(3)]
    with pytest.raises(DriverError):  # photos1 needs at least two files
        await fake.submit_modal(env.member, env.channel, opened, {"photos1": [("x.png", png())]})
    submitted = await fake.submit_modal(
        env.member,
        env.channel,
        "tune:create",
        {
            "name": "me",
            "photos1": [(f"p{n}.png", data) for n, data in enumerate(photos[:2])],
            "photos2": [("my photo.png", photos[2])],
        },
    )
    done = await submitted.wait_done()
    assert done is not None and done.content == "me: 3 photos"
    uploads = env.seen.uploads
    assert [u[0] for u in uploads] == ["p0.png", "p1.png", "my_photo.png"]
    for (_, size, data, _, _), original in zip(uploads, photos, strict=True):
        assert hashlib.sha256(data).digest() == hashlib.sha256(original).digest()
        assert size == len(original)
    assert [(u[3], u[4]) for u in uploads] == [(40, 30), (41, 30), (42, 30)]
    for attachment in fake.world.attachments.values():
        assert fake.world.attachment_url(attachment).startswith(fake.base_url + "/attachments/")


async def test_button_click_gets_an_ephemeral_reply(start: Starter) -> None:
    env = await start()
    fake = env.fake
    shown = await fake.slash(env.member, env.channel, "buttons")
    message = (await shown.response()).message
    assert message is not None and message.components[0]["components"][0]["custom_id"] == "press"
    click = await fake.click(env.member, message, "press")
    reply = await click.response()
    assert (reply.type, reply.content, reply.ephemeral) == (4, "pressed", True)
    assert click.payload["type"] == 3 and click.payload["message"]["id"] == str(message.id)
    assert [m.id for m in fake.messages(env.channel)] == [message.id]
    with pytest.raises(DriverError):
        await fake.click(env.member, message, "missing")


async def test_message_context_menu_sees_the_attachments(start: Starter) -> None:
    env = await start()
    fake = env.fake
    posted = await fake.post(
        env.member, env.channel, "pics", attachments=[("a.png", png()), ("b.txt", b"hello")]
    )
    handle = await fake.context_menu(env.member, env.channel, "Count files", posted)
    reply = await handle.response()
    assert reply.content == "2 files"
    assert env.seen.menu_files == ["a.png", "b.txt"]
    (picture,) = fake.messages(env.channel)
    assert picture.attachments[0].content_type == "image/png"
    assert picture.attachments[1].content_type == "text/plain"
    waved = await fake.context_menu(env.member, env.channel, "Wave", env.member)
    assert (await waved.response()).content == "hi alice"
    url = fake.world.attachment_url(picture.attachments[1])
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert await response.read() == b"hello"


async def test_unknown_route_is_a_json_404_and_recorded(start: Starter) -> None:
    env = await start()
    async with aiohttp.ClientSession() as session:
        url = env.fake.api_base + "/nowhere/1"
        async with session.get(url, headers={"Authorization": "Bot token"}) as response:
            assert response.status == 404
            assert response.headers["Content-Type"] == "application/json"
            assert (await response.json())["code"] == 0
    assert env.fake.unknown_routes == ["GET /api/v10/nowhere/1"]
    assert env.fake.counters["unknown_route"] == 1
    with pytest.raises(discord.NotFound):
        await env.bot.http.request(discord.http.Route("GET", "/nowhere/2"))


async def test_a_dropped_gateway_session_resumes_and_gets_what_it_missed(start: Starter) -> None:
    env = await start()
    fake = env.fake
    await fake.drop_gateway()
    with pytest.raises(DriverError):
        await fake.slash(env.member, env.channel, "buttons")  # nobody is listening now
    late = await fake.create_channel(env.guild, "made-while-away")
    await fake.wait_ready(5)
    assert (fake.gateway.identifies, fake.gateway.resumes) == (1, 1)
    await eventually(lambda: env.bot.get_channel(late.id) is not None)
    handle = await fake.slash(env.member, env.channel, "buttons")
    assert (await handle.response()).content == "press it"


async def test_a_wrong_token_fails_login_and_gateway_urls_are_served(start: Starter) -> None:
    env = await start()
    intruder = discord.Client(intents=discord.Intents.none())
    with pytest.raises(discord.LoginFailure):
        await intruder.login("not-the-token")
    await intruder.close()
    async with aiohttp.ClientSession() as session:
        url = env.fake.api_base + "/gateway/bot"
        async with session.get(url, headers={"Authorization": "Bot token"}) as response:
            body = await response.json()
    assert body["url"] == env.fake.gateway_url and body["shards"] == 1
    assert env.fake.gateway_url.startswith("ws://127.0.0.1:")


async def test_component_answers_edit_the_message_they_sit_on(start: Starter) -> None:
    env = await start()
    fake = env.fake
    message = (await (await fake.slash(env.member, env.channel, "edits")).response()).message
    assert message is not None

    edit = await (await fake.click(env.member, message, "edit")).response()
    assert edit.type == 7 and message.content == "edited"

    later = await fake.click(env.member, message, "later")
    assert (await later.response()).type == 6
    (new,) = await later.wait_followups()
    assert message.content == "later" and new.id != message.id
    assert new.content == "and a new message"

    asked = await fake.click(env.member, message, "ask")
    submitted = await fake.submit_modal(env.member, env.channel, asked, {"answer": "42"})
    assert (await submitted.response()).type == 7
    assert submitted.payload["message"]["id"] == str(message.id)
    assert message.content == "answered 42"

    picked = await (await fake.select(env.member, message, "size", ["L"])).response()
    assert picked.content == "size L"
    with pytest.raises(DriverError):
        await fake.select(env.member, message, "size", ["XL"])
    contents = [m.content for m in fake.messages(env.channel)]
    assert contents == ["answered 42", "and a new message"]
    assert fake.sends(env.channel, ok=False) == 0  # all of it went through interactions
    assert fake.count("POST", env.channel) == 7  # 6 callbacks and 1 followup
