"""Running the real bot: API-base overrides for the local Discord fake (loopback only, the
settings enforce it), a clean shutdown on SIGTERM and Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import TextIO

import discord
import yarl

from bot.app import AstriaBot
from bot.config import Settings
from bot.jobs.idempotency import IdempotencyContradiction

log = logging.getLogger(__name__)


# The bot never joins voice: discord.py's warnings about missing voice libraries are noise.
discord.VoiceClient.warn_nacl = False
discord.VoiceClient.warn_dave = False


def apply_discord_overrides(settings: Settings) -> None:
    """Point discord.py at a local fake. Both URLs were checked to be loopback addresses."""
    if settings.discord_api_base:
        discord.http.Route.BASE = settings.discord_api_base
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


async def sync_commands(settings: Settings, guild_id: int | None, out: TextIO) -> int:
    """Register the slash commands and the message menu with Discord, once. Globally they
    can take a while to show; `--guild` makes them appear in one server at once (for
    testing), copied from the global set."""
    assert settings.discord_token is not None
    apply_discord_overrides(settings)
    bot = AstriaBot(settings, run_tracker=False, commands_only=True)
    async with bot:
        try:
            await bot.login(settings.discord_token.get_secret_value())
        except discord.LoginFailure:
            print("Discord refused the token: check DISCORD_TOKEN (Bot > Reset Token).", file=out)
            return 2
        if guild_id is None:
            synced = await bot.tree.sync()
            where = "everywhere (Discord may take up to an hour to show them)"
        else:
            guild = discord.Object(guild_id)
            bot.tree.copy_global_to(guild=guild)
            synced = await bot.tree.sync(guild=guild)
            where = f"in server {guild_id}"
        names = sorted(c.name for c in synced)
        print(f"Registered {len(synced)} commands {where}: {', '.join(names)}", file=out)
    return 0


async def run_bot(settings: Settings) -> int:
    assert settings.discord_token is not None
    apply_discord_overrides(settings)
    bot = AstriaBot(settings)
    loop = asyncio.get_running_loop()
    closing: list[asyncio.Future[None]] = []

    def stop() -> None:
        if not closing:
            closing.append(asyncio.ensure_future(bot.close()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop)
    try:
        async with bot:
            await bot.start(settings.discord_token.get_secret_value())
    except discord.LoginFailure:
        print("Discord refused the token: check DISCORD_TOKEN (Bot > Reset Token).")
        return 2
    except IdempotencyContradiction as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        if closing:  # the signal's close finishes (store, HTTP) before the loop ends
            await closing[0]
    return 0
