"""`astria-bot check`: is this installation ready? Settings, the Astria key, the database path."""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import aiohttp

from bot.astria import AstriaAuthError, AstriaClient, AstriaError, RetryPolicy
from bot.astria.probe import probe_client, probe_idempotency
from bot.config import ASTRIA_KEY_HELP, Settings, fresh_signing_key
from bot.jobs.idempotency import contradiction, effective_idempotency
from bot.store import IdempotencyProbe, Store


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
            "object it already made"
        )
    return (
        f"off: after a timeout the bot waits {lookup_wait:g} s and looks the tune or prompt up "
        "before creating it again. Turning idempotency on in Astria's API settings makes "
        "retries simpler and faster (ASTRIA_IDEMPOTENCY=auto finds it)"
    )


async def _probe(settings: Settings, client: AstriaClient, out: TextIO) -> bool:
    """Probe Astria's idempotency, print what was found and what the bot will do; keep the
    answer for the next start (a day) when the database exists. False on a contradiction."""
    result = await probe_idempotency(client)
    print(f"  idempotency at Astria: {result.describe()}", file=out)
    stated = settings.astria_idempotency
    found = None if result.on is None else IdempotencyProbe(result.on, datetime.now(UTC))
    # Kept only in a database that exists: `check` creates nothing (the start probes).
    if found is not None and settings.database_path.is_file():
        async with await Store.open(settings.database_path, settings=settings) as store:
            await store.meta.record_idempotency_probe(found.on, found.at)
    problem = contradiction(stated, found)
    if problem is not None:
        print(f"  the bot would not start: {problem}", file=out)
        return False
    effective = effective_idempotency(stated, found)
    meaning = idempotency_meaning(effective, settings.astria_lookup_wait_seconds)
    print(f"  idempotency (ASTRIA_IDEMPOTENCY={str(stated).lower()}): {meaning}", file=out)
    return True


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
                session, settings.astria_api_key, base_url=settings.astria_base_url, policy=policy
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
                probing = probe_client(session, settings.astria_api_key, settings.astria_base_url)
                ok = await _probe(settings, probing, out) and ok
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
    if settings.callback_signing_key is None:
        # A weak key never gets here: the settings refuse it, with a fresh one to use.
        todo.append(
            "CALLBACK_SIGNING_KEY: not set (needed with PUBLIC_CALLBACK_URL); a fresh "
            f"random one: CALLBACK_SIGNING_KEY={fresh_signing_key()}"
        )
    if settings.dev_guild_id is None:
        todo.append("DEV_GUILD_ID: not set, so `astria-bot sync` updates commands globally")
    if todo:
        print("Not configured yet:", file=out)
        for line in todo:
            print(f"  - {line}", file=out)
    return 0 if ok else 1
