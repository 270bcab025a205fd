"""`astria-bot sync` against the wire-level Discord fake: the commands and the message
menu are registered, globally or in one server, with nothing else started, and never
twice in one server (a server copy and the global set are kept apart)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import discord
import pytest

from bot.config import load_settings
from bot.offline.fakecord import FakeDiscord
from bot.runner import sync_commands
from cogs.imagine import MENU_NAME as IMAGINE_MENU
from cogs.tunes import MENU_NAME

# Every top-level command and message menu the bot registers.
COMMANDS = (
    "tune",
    "imagine",
    "pack",
    "balance",
    "jobs",
    "help",
    "admin",
    "privacy",
    MENU_NAME,
    IMAGINE_MENU,
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord() as fake:
        yield fake
    discord.http.Route.BASE = base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway


@pytest.mark.parametrize("in_guild", [False, True], ids=["global", "one-server"])
async def test_sync_registers_every_command_and_the_menu(
    fake: FakeDiscord, tmp_path: Path, in_guild: bool
):
    guild = await fake.create_guild("Test")
    settings = load_settings(
        discord_token="offline.bot.token",
        discord_api_base=fake.api_base,
        discord_gateway_url=fake.gateway_url,
        database_path=tmp_path / "bot.sqlite3",
    )
    out = io.StringIO()
    code = await sync_commands(settings, guild.id if in_guild else None, out)
    assert code == 0, out.getvalue()
    registered = fake.commands(guild if in_guild else None)
    names = {c["name"] for c in registered}
    assert names == set(COMMANDS)
    # Discord allows five message menus an application.
    assert sum(1 for c in registered if c.get("type") == 3) <= 5
    assert f"Registered {len(names)} commands" in out.getvalue()
    assert fake.commands(None if in_guild else guild) == []
    admin = next(c for c in registered if c["name"] == "admin")
    manage_guild = discord.Permissions(manage_guild=True).value
    assert int(admin["default_member_permissions"]) == manage_guild


async def test_a_server_copy_and_the_global_set_never_show_together(
    fake: FakeDiscord, tmp_path: Path
):
    guild = await fake.create_guild("Test")
    settings = load_settings(
        discord_token="offline.bot.token",
        discord_api_base=fake.api_base,
        discord_gateway_url=fake.gateway_url,
        database_path=tmp_path / "bot.sqlite3",
    )

    def shown_in_server() -> list[str]:
        # What a member of the server sees: the global set plus the server's copy.
        both = [*fake.commands(None), *fake.commands(guild)]
        return sorted(c["name"] for c in both)

    expected = sorted(COMMANDS)
    out = io.StringIO()
    assert await sync_commands(settings, None, out) == 0
    assert shown_in_server() == expected
    # Testing in one server: its copy replaces the global set, not adds to it.
    assert await sync_commands(settings, guild.id, out) == 0
    assert shown_in_server() == expected and fake.commands(None) == []
    assert "Removed the global commands" in out.getvalue()
    # Back to the global set (as a normal start does): the copy goes.
    assert await sync_commands(settings, None, out) == 0
    assert shown_in_server() == expected and fake.commands(guild) == []
    assert f"Removed the copy in server {guild.id}" in out.getvalue()
    # And `sync --clear` takes them away.
    assert await sync_commands(settings, None, out, clear_them=True) == 0
    assert shown_in_server() == []
