"""`astria-bot check`: is this installation ready? Settings, the Astria key, the database path."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TextIO

import aiohttp

from bot.astria import AstriaAuthError, AstriaClient, AstriaError, RetryPolicy
from bot.config import ASTRIA_KEY_HELP, Settings


def _usd(mc: int) -> str:
    return f"${mc / 100_000:,.2f}"


def database_problem(path: Path) -> str | None:
    """Why the bot could not write its database at `path`, or None if it can."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        return f"cannot write in {folder}: {exc.strerror or exc}"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} exists but is read-only"
    return None


def idempotency_meaning(on: bool, lookup_wait: float) -> str:
    if on:
        return (
            "on: after a timeout the bot sends the same create again and Astria returns the "
            "object it already made (make sure it is on in Astria's API settings too)"
        )
    return (
        f"off: after a timeout the bot waits {lookup_wait:g} s and looks the tune or prompt up "
        "before creating it again. Turning it on in Astria's API settings and setting "
        "ASTRIA_IDEMPOTENCY=true makes retries simpler and faster"
    )


async def run_check(settings: Settings, out: TextIO = sys.stdout) -> int:
    """Print what works and what is missing; 0 when the bot could start its Astria side."""
    ok = True
    if settings.astria_api_key is None:
        print(f"Astria: ASTRIA_API_KEY is not set ({ASTRIA_KEY_HELP}).", file=out)
        ok = False
    else:
        policy = RetryPolicy(base_delay=1.0, max_attempts=2, timeout=20.0)
        async with aiohttp.ClientSession() as session:
            client = AstriaClient(
                session,
                settings.astria_api_key,
                base_url=settings.astria_base_url,
                idempotency=settings.astria_idempotency,
                policy=policy,
            )
            try:
                user = await client.get_user()
            except AstriaAuthError:
                print(f"Astria: the Astria key is wrong ({ASTRIA_KEY_HELP}).", file=out)
                ok = False
            except AstriaError as exc:
                print(f"Astria: cannot reach {settings.astria_base_url}: {exc}", file=out)
                ok = False
            else:
                who = user.email or user.name or f"user {user.id}"
                print(f"Astria: connected to {settings.astria_base_url} as {who}", file=out)
                print(
                    f"  balance: {_usd(user.usd_balance_mc)} ({user.usd_balance_mc:,} mc)",
                    file=out,
                )
    branch = settings.astria_branch
    if branch == "fast":
        print("  branch: fast (free; Astria returns mock images)", file=out)
    else:
        print(
            f"  branch: {branch}: {_usd(settings.tune_price())} a tune, "
            f"{_usd(settings.image_price())} an image (configured prices)",
            file=out,
        )
    profile = settings.profile
    print(f"  model: {profile.name} (base tune {profile.base_tune_id})", file=out)
    if profile.name == "flux-lora":
        preset = profile.training_preset or "none (Astria's high preset: about 3.7x the steps)"
        print(f"  training preset: {preset}", file=out)
        if profile.training_preset is None and branch != "fast":
            print(
                "  note: with no preset each Flux tune trains about 3.7x the steps of "
                "flux-lora-portrait; check TUNE_PRICE_MC against your Astria invoice",
                file=out,
            )
    meaning = idempotency_meaning(settings.astria_idempotency, settings.astria_lookup_wait_seconds)
    print(f"  idempotency: {meaning}", file=out)

    problem = database_problem(settings.database_path)
    if problem:
        print(f"Database: {problem} (set DATABASE_PATH to a writable file)", file=out)
        ok = False
    else:
        print(f"Database: {settings.database_path} is writable", file=out)

    todo = []
    if settings.discord_token is None:
        todo.append("DISCORD_TOKEN: needed by `astria-bot run` (the bot's token from Discord)")
    if settings.public_callback_url is None:
        todo.append("PUBLIC_CALLBACK_URL: not set, so the bot polls Astria (works; slower)")
    if settings.dev_guild_id is None:
        todo.append("DEV_GUILD_ID: not set, so `astria-bot sync` updates commands globally")
    if todo:
        print("Not configured yet:", file=out)
        for line in todo:
            print(f"  - {line}", file=out)
    return 0 if ok else 1
