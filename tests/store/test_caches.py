"""Caches that stay true: a process caches each server's settings (limits, budget, pause,
allowed channels and roles, bans, alert channel, NSFW mode), and on PostgreSQL another
process may change them. Each write NOTIFYs on commit and every process's listener
connection forgets the row; a listener that dies is reconnected, the caches dropped.

The processes here are real OS processes (tests/store/worker.py) on one PostgreSQL
schema; every wait is bounded (a broken invalidation fails, it does not hang)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from bot.store import Store
from bot.store.postgres import PostgresDatabase
from tests.pg import SKIP_REASON, TEST_DATABASE_URL, Schemas, base_url
from tests.store.helpers import RICH_MC, Stores, make_settings
from tests.store.test_processes import WAIT, read_line, spawn

GUILD = 7
# How long a change may take to reach the other process's cache: a bound on a broken
# invalidation, not a speed expectation (a NOTIFY arrives in milliseconds; a lost
# listener is noticed at once when the server ends it, reconnected within a second).
SEEN_WITHIN = 20.0
POLL = 0.05

postgres_only = [
    pytest.mark.postgres,
    pytest.mark.skipif(TEST_DATABASE_URL is None, reason=SKIP_REASON),
]


@pytest.fixture
async def schema() -> AsyncIterator[SecretStr]:
    schemas = Schemas()
    try:
        yield await schemas.url()
    finally:
        await schemas.drop_all()


class Worker:
    """A second OS process holding a store on the same database, asked over stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, where: SecretStr) -> tuple[Worker, dict[str, Any]]:
        worker = cls(await spawn("settings", where, GUILD))
        hello = json.loads(await read_line(worker.proc))
        assert hello["ready"] is True
        return worker, hello

    async def ask(self, what: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(what.encode() + b"\n")
        await self.proc.stdin.drain()
        answer: dict[str, Any] = json.loads(await read_line(self.proc))
        return answer

    async def budget_becomes(self, expected: int) -> int:
        """Ask until the worker's settings show `expected`, at most SEEN_WITHIN seconds;
        return the last budget it saw (the caller asserts it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SEEN_WITHIN
        seen = -1
        for _ in range(int(SEEN_WITHIN / POLL) + 1):  # bounded, whatever the clock does
            seen = int((await self.ask("get"))["budget"])
            if seen == expected or loop.time() > deadline:
                break
            await asyncio.sleep(POLL)
        return seen

    async def stop(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"quit\n")
            await self.proc.stdin.drain()
            try:
                await asyncio.wait_for(self.proc.wait(), WAIT)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@pytest.fixture
async def worker(schema: SecretStr) -> AsyncIterator[tuple[Worker, dict[str, Any]]]:
    await (await Store.open(schema, settings=make_settings())).close()  # migrate first
    started = await Worker.start(schema)
    try:
        yield started
    finally:
        await started[0].stop()


async def terminate_backend(pid: int) -> None:
    conn = await asyncpg.connect(base_url())
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid) is True
    finally:
        await conn.close()


@pytest.mark.postgres
@pytest.mark.skipif(TEST_DATABASE_URL is None, reason=SKIP_REASON)
async def test_another_process_sees_a_changed_setting(
    schema: SecretStr, worker: tuple[Worker, dict[str, Any]]
):
    """The worker has the default budget cached; this process sets it, then pauses the
    server: each is seen there. Red without the NOTIFY (the worker's
    cache answers the old budget for ever)."""
    other, _hello = worker
    assert (await other.ask("get"))["budget"] == RICH_MC  # read once: now cached there
    assert (await other.ask("get"))["budget"] == RICH_MC
    store = await Store.open(schema, settings=make_settings())
    try:
        for budget in (123_000, 456_000):
            await store.guilds.set_monthly_budget(GUILD, budget)
            assert await other.budget_becomes(budget) == budget
        await store.guilds.set_paused(GUILD, True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SEEN_WITHIN
        for _ in range(int(SEEN_WITHIN / POLL) + 1):
            if (await other.ask("get"))["paused"] or loop.time() > deadline:
                break
            await asyncio.sleep(POLL)
        assert (await other.ask("get"))["paused"] is True
    finally:
        await store.close()


@pytest.mark.postgres
@pytest.mark.skipif(TEST_DATABASE_URL is None, reason=SKIP_REASON)
async def test_a_change_made_while_the_listener_is_dead_is_still_seen(
    schema: SecretStr, worker: tuple[Worker, dict[str, Any]]
):
    """The server ends the worker's listener connection (as a restart or a network cut
    would) and the budget is changed right after, its NOTIFY heard by no one: the worker
    still ends up with the new budget (it drops its caches when it notices, and again when
    it listens again), and later changes are heard by the new listener. Red when a lost
    listener neither drops nor stops the caches."""
    other, hello = worker
    first = hello["listener"]
    assert isinstance(first, int)
    assert (await other.ask("get"))["budget"] == RICH_MC  # cached there
    store = await Store.open(schema, settings=make_settings())
    try:
        await terminate_backend(first)
        await store.guilds.set_monthly_budget(GUILD, 111_000)  # while no one listens there
        assert await other.budget_becomes(111_000) == 111_000
        # It listens again, on a new connection, and hears what comes next.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SEEN_WITHIN
        now_listening = None
        for _ in range(int(SEEN_WITHIN / POLL) + 1):
            now_listening = (await other.ask("listener"))["listener"]
            if now_listening not in (None, first) or loop.time() > deadline:
                break
            await asyncio.sleep(POLL)
        assert now_listening not in (None, first)
        assert (await other.ask("get"))["budget"] == 111_000  # cached again
        await store.guilds.set_monthly_budget(GUILD, 222_000)
        assert await other.budget_becomes(222_000) == 222_000
    finally:
        await store.close()


async def eventually_budget(store: Store, expected: int) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SEEN_WITHIN
    seen = -1
    for _ in range(int(SEEN_WITHIN / POLL) + 1):
        seen = (await store.guilds.get(GUILD)).monthly_budget_mc
        if seen == expected or loop.time() > deadline:
            break
        await asyncio.sleep(POLL)
    return seen


@pytest.mark.postgres
@pytest.mark.skipif(TEST_DATABASE_URL is None, reason=SKIP_REASON)
async def test_a_closed_listener_connection_then_a_change_is_still_seen(tmp_path: Path):
    """Two stores of one process on one schema (each with its own listener): the reader's
    listener connection is closed under it and the other store changes the budget at once;
    the reader still ends up seeing it. Red without the reconnect-and-drop."""
    stores = Stores(tmp_path, "postgres")
    try:
        reader, writer = await stores.open(), await stores.open()
        db = reader._db
        assert isinstance(db, PostgresDatabase) and db.listener is not None
        assert (await reader.guilds.get(GUILD)).monthly_budget_mc == RICH_MC  # cached
        await db.listener.close()
        await writer.guilds.set_monthly_budget(GUILD, 333_000)
        assert await eventually_budget(reader, 333_000) == 333_000
    finally:
        await stores.close_all()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=postgres_only)])
async def test_a_process_still_caches_its_settings(tmp_path: Path, backend: str):
    """Caching still saves the reads: a row changed behind the store's back (not through
    `Guilds`, so no one is told) is not read again, on SQLite (one process, nothing
    changes) and on PostgreSQL with a live listener; the store's own change is seen at once."""
    stores = Stores(tmp_path, backend)  # type: ignore[arg-type]
    try:
        store = await stores.open()
        assert (await store.guilds.get(GUILD)).monthly_budget_mc == RICH_MC
        async with store._db.write() as tx:
            await tx.execute(
                "INSERT INTO guild_settings (guild_id, monthly_budget_mc, updated_at_ms)"
                " VALUES (?, ?, 0)",
                (GUILD, 5_000),
            )
        assert (await store.guilds.get(GUILD)).monthly_budget_mc == RICH_MC  # the cache
        assert (await store.guilds.set_monthly_budget(GUILD, 9_000)).monthly_budget_mc == 9_000
        assert (await store.guilds.get(GUILD)).monthly_budget_mc == 9_000
    finally:
        await stores.close_all()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=postgres_only)])
async def test_a_read_that_overlapped_a_change_is_not_cached(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
):
    """A change heard while a read was in flight (the read may predate that commit) keeps
    the read out of the cache; so does a listener that is down (`Changes.trusted` false).
    Red without the generation check: the stale read would stay cached after the forget."""
    stores = Stores(tmp_path, backend)  # type: ignore[arg-type]
    try:
        store = await stores.open()
        guilds = store.guilds
        original = guilds._read
        reads: list[int] = []

        async def read_then_hear(guild_id: int) -> Any:
            settings = await original(guild_id)
            reads.append(guild_id)
            if len(reads) == 1:  # the other process's NOTIFY lands just after this read
                store._db.changes.heard("guild", guild_id)
            return settings

        monkeypatch.setattr(guilds, "_read", read_then_hear)
        await guilds.get(GUILD)
        await guilds.get(GUILD)
        assert len(reads) == 2  # the first read was not kept
        await guilds.get(GUILD)
        assert len(reads) == 2  # the second was

        store._db.changes.lost()  # no one listens: nothing is cached
        await guilds.get(GUILD)
        await guilds.get(GUILD)
        assert len(reads) == 4
        store._db.changes.regained()
        await guilds.get(GUILD)
        await guilds.get(GUILD)
        assert len(reads) == 5
    finally:
        await stores.close_all()
