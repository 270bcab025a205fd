"""What `astria-bot run` checks before it connects to Discord: the database opens and
migrates, the Astria key works and the balance is read, Astria's idempotency is settled.
Each problem is one line naming the setting and the fix (`StartProblem`); what it opened
is handed to the bot (`Ready`), so nothing is opened or probed twice."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from bot.astria import AstriaAuthError, AstriaClient, AstriaError, RetryPolicy
from bot.astria.models import User
from bot.astria.probe import probe_client
from bot.check import DATABASE_FIX, database_problem, settings_source
from bot.config import ASTRIA_KEY_HELP, Settings
from bot.jobs.idempotency import settle_idempotency
from bot.metrics import BotMetrics
from bot.store import Store, StoreError
from bot.store.db import Clock

log = logging.getLogger(__name__)

# Astria's transient failures (5xx, 429, a dropped connection, a timeout) at start are
# retried, a restart during an outage must not give up at once, but for a bounded time:
# five tries, backoff from 2 s (or ASTRIA_RETRY_BASE_SECONDS when shorter), 30 s in all.
START_ATTEMPTS = 5
START_BASE_DELAY = 2.0
START_MAX_DELAY = 8.0
START_REQUEST_TIMEOUT = 10.0
START_DEADLINE_SECONDS = 30.0


class StartProblem(Exception):
    """The bot cannot start; the message is one line naming the setting and the fix."""


@dataclass
class Ready:
    """What the checks opened and found, for the bot's `setup_hook` to use."""

    store: Store
    session: aiohttp.ClientSession
    user: User
    idempotency: bool  # the effective value (bot/jobs/idempotency.py)

    async def close(self) -> None:
        try:
            await self.store.close()
        finally:
            await self.session.close()


def start_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        base_delay=min(settings.astria_retry_base_seconds, START_BASE_DELAY),
        max_delay=START_MAX_DELAY,
        max_attempts=START_ATTEMPTS,
        timeout=min(settings.astria_request_timeout_seconds, START_REQUEST_TIMEOUT),
    )


async def open_store(settings: Settings, *, clock: Clock) -> Store:
    """The database, created and migrated; a StartProblem when it cannot be."""
    if settings.database_url is not None:
        try:
            return await Store.open_configured(settings, clock=clock)
        except (StoreError, OSError) as exc:
            # The store's message names the server without the password.
            raise StartProblem(f"DATABASE_URL: {exc}") from exc
    path = settings.database_path
    problem = database_problem(path)
    if problem is not None:
        raise StartProblem(f"DATABASE_PATH: {problem}; {DATABASE_FIX}")
    try:
        return await Store.open(path, settings=settings, clock=clock)
    except (StoreError, OSError) as exc:
        raise StartProblem(f"DATABASE_PATH: cannot open {path}: {exc}; {DATABASE_FIX}") from exc


async def read_account(settings: Settings, session: aiohttp.ClientSession) -> User:
    """GET /users with the key, transient failures retried for a while (see above)."""
    assert settings.astria_api_key is not None
    url = settings.astria_base_url
    client = AstriaClient(
        session, settings.astria_api_key, base_url=url, policy=start_policy(settings)
    )
    unreachable = f"check ASTRIA_BASE_URL (now {url}) and the network"
    try:
        return await asyncio.wait_for(client.get_user(), START_DEADLINE_SECONDS)
    except AstriaAuthError as exc:
        raise StartProblem(
            f"ASTRIA_API_KEY: Astria refused the key ({exc.status}); put the right one in .env "
            f"as ASTRIA_API_KEY=sd_... ({ASTRIA_KEY_HELP})"
        ) from exc
    except TimeoutError as exc:
        raise StartProblem(
            f"ASTRIA_BASE_URL: Astria did not answer within {START_DEADLINE_SECONDS:g} s; "
            f"{unreachable}"
        ) from exc
    except AstriaError as exc:
        if exc.retryable:
            raise StartProblem(
                f"ASTRIA_BASE_URL: cannot reach Astria after {START_ATTEMPTS} tries "
                f"({exc.message}); {unreachable}"
            ) from exc
        raise StartProblem(
            f"ASTRIA_BASE_URL: {url} does not answer like Astria ({exc.message}); {unreachable}"
        ) from exc


def low_balance_warning(settings: Settings, user: User) -> str | None:
    """A line for the operator when a paid branch cannot pay for one more tune."""
    if settings.tune_price() == 0:
        return None
    needed = settings.tune_price() + settings.balance_safety_margin_mc
    if user.usd_balance_mc >= needed:
        return None
    return (
        f"the Astria balance is {_usd(user.usd_balance_mc)}, below one tune "
        f"({_usd(settings.tune_price())}) plus BALANCE_SAFETY_MARGIN_MC "
        f"({_usd(settings.balance_safety_margin_mc)}): paid commands are refused until "
        "the account has more credit"
    )


def refuse_partial_shards(settings: Settings) -> None:
    """Some shards here and the rest in other processes needs the processes to share the
    jobs: on PostgreSQL they do, through the job leases (each job worked by the process
    holding its lease, a dead one's taken over). SQLite is one process's store, so there a
    partial set is refused; all shards in this one process are fine."""
    held, count = settings.shards_held, settings.shard_count
    if settings.database_url is not None:
        return
    if held and count is not None and len(held) < count:
        raise StartProblem(
            f"SHARD_IDS={settings.shard_ids}: this process would hold {len(held)} of "
            f"{count} shards, and the others need a second process, which needs the "
            "store on PostgreSQL (DATABASE_URL) to share the jobs; leave SHARD_IDS empty "
            "to run all shards here"
        )


async def preflight(
    settings: Settings, *, clock: Clock | None = None, metrics: BotMetrics | None = None
) -> Ready:
    """Every check `run` makes before Discord; raises StartProblem (or the idempotency
    contradiction, which words its own line) on the first that fails."""
    now = clock or (lambda: datetime.now(UTC))
    log.info("%s", settings_source())
    refuse_partial_shards(settings)
    store = await open_store(settings, clock=now)
    # The one Astria session of the process: the metrics count every request on it.
    traces = [] if metrics is None else [metrics.astria_trace()]
    session = aiohttp.ClientSession(trace_configs=traces)
    try:
        user = await read_account(settings, session)
        who = user.email or user.name or f"user {user.id}"
        log.info(
            "Astria at %s: %s, balance %s", settings.astria_base_url, who, _usd(user.usd_balance_mc)
        )
        warning = low_balance_warning(settings, user)
        if warning is not None:
            log.warning("%s", warning)
        assert settings.astria_api_key is not None
        probing = probe_client(session, settings.astria_api_key, settings.astria_base_url)
        settled = await settle_idempotency(
            settings.astria_idempotency, store.meta, probing, now=now()
        )
    except BaseException:
        try:
            await store.close()
        finally:
            await session.close()
        raise
    return Ready(store, session, user, settled.effective)


def _usd(mc: int) -> str:
    return f"${mc / 100_000:,.2f}"
