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
from bot.registration import clear, register
from bot.store import Store

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


async def sync_commands(
    settings: Settings, guild_id: int | None, out: TextIO, *, clear_them: bool = False
) -> int:
    """Register the slash commands and the message menu with Discord, once, globally or
    in one server (for testing; the global set is then removed, and the next global
    registration removes the server's copy: bot/registration.py). `clear_them` removes
    them instead. The store remembers where copies are."""
    assert settings.discord_token is not None
    apply_discord_overrides(settings)
    bot = AstriaBot(settings, run_tracker=False, commands_only=True)
    async with bot:
        try:
            await bot.login(settings.discord_token.get_secret_value())
        except discord.LoginFailure:
            print("Discord refused the token: check DISCORD_TOKEN (Bot > Reset Token).", file=out)
            return 2
        async with await Store.open(settings.database_path, settings=settings) as store:
            if clear_them:
                done = await clear(bot, store.meta, guild_id)
            else:
                done = await register(bot, bot.tree, store.meta, guild_id, force=True)
    if done.registered:
        where = done.where
        if guild_id is None:
            where += " (Discord may take up to an hour to show them)"
        names = ", ".join(done.registered)
        print(f"Registered {len(done.registered)} commands {where}: {names}", file=out)
    for where in done.cleared:
        if where == "everywhere":
            print("Removed the global commands, so none shows twice", file=out)
        else:
            print(f"Removed the copy {where.replace('server', 'in server')}", file=out)
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
