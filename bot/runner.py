"""Running the real bot: API-base overrides for the local Discord fake (loopback only, the
settings enforce it), a clean shutdown on SIGTERM and Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import discord
import yarl

from bot.app import AstriaBot
from bot.config import Settings

log = logging.getLogger(__name__)


def apply_discord_overrides(settings: Settings) -> None:
    """Point discord.py at a local fake. Both URLs were checked to be loopback addresses."""
    if settings.discord_api_base:
        discord.http.Route.BASE = settings.discord_api_base
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


async def run_bot(settings: Settings) -> int:
    assert settings.discord_token is not None
    apply_discord_overrides(settings)
    bot = AstriaBot(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
    try:
        async with bot:
            await bot.start(settings.discord_token.get_secret_value())
    except discord.LoginFailure:
        print("Discord refused the token: check DISCORD_TOKEN (Bot > Reset Token).")
        return 2
    return 0
