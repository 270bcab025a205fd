"""Running the real bot: API-base overrides for the local Discord fake (loopback only, the
settings enforce it), a clean shutdown on SIGTERM and Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import traceback
from typing import TextIO

import discord
import yarl

from bot.app import AstriaBot, make_bot
from bot.config import Settings
from bot.jobs.idempotency import IdempotencyContradiction
from bot.metrics import BotMetrics, MetricsAddress, MetricsServer
from bot.preflight import StartProblem, preflight
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
        async with await Store.open_configured(settings) as store:
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


async def run_bot(settings: Settings, *, debug: bool = False) -> int:
    """Check everything that can be checked before Discord (bot/preflight.py), then run
    until SIGTERM or Ctrl-C. A failure is one line on stderr and exit code 2; `debug`
    prints the traceback above it."""
    assert settings.discord_token is not None
    metrics = BotMetrics()
    address = MetricsAddress.from_settings(settings)
    server = None if address is None else MetricsServer(metrics, address)
    try:
        if server is not None:
            try:
                await server.start()
            except OSError as exc:
                where = f"{server.address.host}:{server.address.port}"
                raise StartProblem(
                    f"METRICS_PORT: cannot listen on {where} ({exc.strerror or exc}); pick a "
                    "free port, like METRICS_PORT=9108, or leave it unset to serve no metrics"
                ) from exc
        ready = await preflight(settings, metrics=metrics)
    except (StartProblem, IdempotencyContradiction) as exc:
        if server is not None:
            await server.stop()
        return _refuse(str(exc), exc, debug)
    if server is not None:
        server.store = ready.store
    apply_discord_overrides(settings)
    bot = make_bot(settings, ready=ready, metrics=metrics, http_trace=metrics.discord_trace())
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
    except discord.LoginFailure as exc:
        return _refuse("DISCORD_TOKEN: Discord refused the token (Bot > Reset Token)", exc, debug)
    except IdempotencyContradiction as exc:
        return _refuse(str(exc), exc, debug)
    except Exception as exc:
        if bot.is_ready():  # a crash after the start: the log keeps the whole story
            log.exception("the bot stopped")
            return 1
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        line = f"astria-bot run could not start: {reason}"
        return _refuse(line if debug else f"{line} (--debug shows the traceback)", exc, debug)
    finally:
        if closing:  # the signal's close finishes (store, HTTP) before the loop ends
            await closing[0]
        if server is not None:
            await server.stop()
    return 0


def _refuse(line: str, exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    print(line, file=sys.stderr)
    return 2
