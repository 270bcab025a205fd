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
from bot.config import ASTRIA_KEY_HELP, Settings, env_file_used, fresh_signing_key
from bot.jobs.idempotency import contradiction, effective_idempotency
from bot.store import IdempotencyProbe, Store, StoreError
from bot.store.postgres import describe, inspect


def _usd(mc: int) -> str:
    return f"${mc / 100_000:,.2f}"


DATABASE_FIX = (
    "set DATABASE_PATH to a file in a writable folder, like DATABASE_PATH=data/bot.sqlite3"
)


def database_problem(path: Path) -> str | None:
    """Why the bot could not keep its database at `path`, or None if it can. Creates
    nothing: a folder still to be made is judged by its nearest existing parent (a test
    file is written there and removed at once, which also catches read-only mounts and
    places such as /proc that even root cannot write)."""
    if path.is_dir():
        return f"{path} is a folder, not a database file"
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            return f"{path} exists but is read-only"
        return None
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"cannot create {path.parent}: {folder} is a file, not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        return f"cannot create files in {folder} ({exc.strerror or exc})"
    return None


def settings_source() -> str:
    """Which `.env` the settings came from: the current folder's, or none."""
    env_file = env_file_used()
    if env_file is None:
        return f"Settings: no .env found in {Path.cwd()}; using the environment and defaults"
    return f"Settings: read {env_file} and the environment"


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
    if found is not None and await _may_keep(settings):
        try:
            async with await Store.open_configured(settings) as store:
                await store.meta.record_idempotency_probe(found.on, found.at)
        except StoreError:
            pass  # not kept: the start probes again; the database line below says why
    problem = contradiction(stated, found)
    if problem is not None:
        print(f"  the bot would not start: {problem}", file=out)
        return False
    effective = effective_idempotency(stated, found)
    meaning = idempotency_meaning(effective, settings.astria_lookup_wait_seconds)
    print(f"  idempotency (ASTRIA_IDEMPOTENCY={str(stated).lower()}): {meaning}", file=out)
    return True


async def _may_keep(settings: Settings) -> bool:
    """A database `check` may write the probe's answer to without creating or migrating
    anything: an existing SQLite file, or a PostgreSQL schema already at this version."""
    if settings.database_url is None:
        return settings.database_path.is_file()
    try:
        current, known = await inspect(settings.database_url)
    except StoreError:
        return False
    return current == known


async def _check_postgres(settings: Settings, out: TextIO) -> bool:
    """Reach the PostgreSQL database DATABASE_URL names and read its schema; like the
    SQLite check, nothing is created or migrated (`run` migrates at start)."""
    assert settings.database_url is not None
    where = describe(settings.database_url)
    try:
        current, known = await inspect(settings.database_url)
    except StoreError as exc:
        print(f"Database: {exc}; check DATABASE_URL", file=out)
        return False
    if current > known:
        print(
            f"Database: PostgreSQL at {where} is at schema {current}, newer than this "
            f"version knows ({known}): upgrade the bot",
            file=out,
        )
        return False
    state = (
        "empty: the first start creates the tables"
        if current == 0
        else f"schema {current}"
        + ("" if current == known else f", migrated to {known} at the next start")
    )
    print(f"Database: PostgreSQL at {where}, {state}", file=out)
    return True


def process_lines(settings: Settings) -> list[str]:
    """How this process runs beside others, and where its logs and metrics go."""
    if settings.database_url is None:
        together = "the only process on its SQLite file (several need DATABASE_URL)"
    else:
        together = f"shares the jobs through leases of {settings.lease_seconds:g} s"
    lines = [f"Process: {settings.process_id}, {together}"]
    rate = f"{settings.astria_requests_per_second:g}/s, bursts of {settings.astria_request_burst}"
    shared = settings.database_url is not None
    whose = "all processes together (one budget in the database)" if shared else "this process"
    lines.append(f"  Astria requests: {rate}, for {whose}")
    if settings.shard_count is not None:
        held = settings.shards_held
        which = ", ".join(map(str, held)) if held else "all"
        lines.append(f"  shards: {which} of {settings.shard_count}")
    where = f"to {settings.log_file}" if settings.log_file else "to standard error"
    lines.append(f"  logs: {settings.log_level} and up, as {settings.log_format}, {where}")
    if settings.metrics_port is None:
        lines.append("  metrics: off (METRICS_PORT turns them on)")
    else:
        lines.append(f"  metrics: http://{settings.metrics_host}:{settings.metrics_port}/metrics")
    return lines


async def run_check(settings: Settings, out: TextIO | None = None) -> int:
    """Print what works and what is missing; 0 when the bot could start its Astria side."""
    out = out or sys.stdout  # read at the call: tests and callers may have replaced it
    ok = True
    print(settings_source(), file=out)
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

    if settings.database_url is not None:
        ok = await _check_postgres(settings, out) and ok
    elif problem := database_problem(settings.database_path):
        print(f"Database: {problem}; {DATABASE_FIX}", file=out)
        ok = False
    elif settings.database_path.exists():
        print(f"Database: {settings.database_path} is writable", file=out)
    else:
        print(
            f"Database: {settings.database_path} is writable (not there yet: `run` creates it)",
            file=out,
        )

    for line in process_lines(settings):
        print(line, file=out)

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
