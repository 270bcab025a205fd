"""Several OS processes on one database (a SQLite file; with TEST_DATABASE_URL also
PostgreSQL): reservations that never overspend between them, and a writer killed with
SIGKILL mid-write leaving a database that opens and adds up."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.rules.credits import month_bounds
from bot.store import LedgerKind, Store
from tests.pg import BACKENDS, Schemas
from tests.store.helpers import RICH_MC, TUNE_MC, make_settings

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0  # seconds: a bound on a stuck child, never a speed expectation


Location = Path | SecretStr


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Location]:
    """One database the test's processes share: a file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield tmp_path / "bot.sqlite3"
        return
    schemas = Schemas()
    try:
        yield await schemas.url()
    finally:
        await schemas.drop_all()


def argument(where: Location) -> str:
    return where.get_secret_value() if isinstance(where, SecretStr) else str(where)


async def spawn(*args: object) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.store.worker",
        *(argument(a) if isinstance(a, SecretStr) else str(a) for a in args),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def read_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), WAIT)
    if not line:
        assert proc.stderr is not None
        error = await proc.stderr.read()
        raise AssertionError(f"worker ended early: {error.decode()[-2000:]}")
    return line.decode().strip()


async def run_together(*workers: asyncio.subprocess.Process) -> list[dict[str, Any]]:
    """Wait for each worker's "ready", start them all at once, collect each one's report
    (a JSON line), and see each end cleanly; a worker left running is killed."""
    try:
        for proc in workers:
            assert await read_line(proc) == "ready"
        for proc in workers:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        reports: list[dict[str, Any]] = [json.loads(await read_line(p)) for p in workers]
        for proc in workers:
            assert await asyncio.wait_for(proc.wait(), WAIT) == 0
        return reports
    finally:
        for proc in workers:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def prepare(path: Location, balance_mc: int = RICH_MC) -> None:
    store = await Store.open(path, settings=make_settings())
    try:
        await store.account.record_balance(balance_mc)
    finally:
        await store.close()


async def test_processes_reserving_at_once_fit_a_budget_of_10_exactly(database: Location):
    """Two processes on one SQLite file, four on PostgreSQL (where the money lock, not one
    file lock, keeps the check and the row together: without it this goes red)."""
    path = database
    await prepare(path)
    budget = json.dumps({"guild_monthly_budget_mc": 10 * TUNE_MC})
    count = 4 if isinstance(path, SecretStr) else 2
    workers = [await spawn("reserve", path, index, 100, budget) for index in range(1, count + 1)]
    reports = await run_together(*workers)  # all start their 100 reservations together
    reported = [rid for report in reports for rid in report["reserved"]]
    assert len(reported) == 10
    assert sum(report["refused"] for report in reports) == count * 100 - 10
    store = await Store.open(path, settings=make_settings())
    try:
        rows = [e.id for e in await store.ledger.entries() if e.kind is LedgerKind.RESERVE]
        assert sorted(reported) == rows  # what the callers saw is what the ledger holds
        assert await store.ledger.audit(jobs=False) == []
    finally:
        await store.close()


async def test_a_writer_killed_mid_write_leaves_a_consistent_ledger(database: Location):
    path = database
    await prepare(path)
    rng = random.Random(20250314)
    limits = json.dumps({})
    acknowledged: list[dict[str, Any]] = []
    for run in range(1, 6):  # five kills on the same file, each recovering the last
        proc = await spawn("churn", path, run, limits)
        try:
            assert await read_line(proc) == "ready"
            for _ in range(rng.randint(5, 60)):
                acknowledged.append(json.loads(await read_line(proc)))
            await asyncio.sleep(rng.uniform(0, 0.02))  # so the kill lands anywhere in a write
        finally:
            proc.send_signal(signal.SIGKILL)
            assert await asyncio.wait_for(proc.wait(), WAIT) == -signal.SIGKILL
        # Lines already in the pipe were written after their commit returned: they count too.
        assert proc.stdout is not None
        for line in (await proc.stdout.read()).decode().splitlines():
            if line.strip():
                acknowledged.append(json.loads(line))
        await check_consistent(path, acknowledged)
    counts = Counter(a["op"] for a in acknowledged)
    print(f"\nkill -9 runs: 5, acknowledged writes: {dict(counts)}")


async def check_consistent(path: Location, acknowledged: list[dict[str, Any]]) -> None:
    store = await Store.open(path, settings=make_settings())
    try:
        assert await store.integrity_problems() == []
        assert await store.ledger.audit(jobs=False) == []
        entries = await store.ledger.entries()
        by_id = {e.id: e for e in entries}
        closes = [e for e in entries if e.kind in (LedgerKind.SETTLE, LedgerKind.RELEASE)]
        for close in closes:  # every settle or release closes a reserve of its own job
            reserve = by_id[close.reserve_id]  # type: ignore[index]
            assert reserve.kind is LedgerKind.RESERVE and reserve.job == close.job
        closed = Counter(c.reserve_id for c in closes)
        assert max(closed.values(), default=1) == 1  # no job settled twice
        open_ids = {r.id for r in await store.ledger.open_reservations()}
        reserves = {e.id for e in entries if e.kind is LedgerKind.RESERVE}
        assert open_ids == reserves - set(closed)
        # Every write the worker saw committed survived the kill.
        for ack in acknowledged:
            if "id" in ack:
                assert ack["id"] in by_id, ack
            else:
                assert any(str(c.job) == ack["job"] for c in closes), ack
        # The sums the budgets read equal the entries summed by hand (this month's: the
        # workers ran on the real clock).
        now = datetime.now(UTC)
        start, end = month_bounds(now, UTC)
        month = [e for e in entries if start <= e.period_at < end]
        for user in {e.user_id for e in month if e.user_id is not None}:
            budget = await store.ledger.budget(1, user, at=now)
            mine = [e for e in month if e.user_id == user]
            spent = sum(e.amount_mc for e in mine if e.kind is not LedgerKind.GRANT)
            granted = sum(e.amount_mc for e in mine if e.kind is LedgerKind.GRANT)
            assert budget.user_month.used_mc == spent
            assert budget.user_month.allowance_mc == RICH_MC + granted
    finally:
        await store.close()


async def test_processes_claiming_at_once_never_hold_one_job_together(database: Location):
    """Two processes on one SQLite file, four on PostgreSQL, claim 150 due jobs in 70
    channels a few at a time, all at once: each job goes to exactly one of them, and each
    channel's jobs to one of them (the leases outlast the test, so a job claimed twice
    would be held by two holders at once). Without the claim's locking (PostgreSQL's
    advisory claim lock, SQLite's read inside the write) this goes red."""
    from tests.store.test_repositories import make_prompt, make_tune

    store = await Store.open(database, settings=make_settings())
    try:
        await store.account.record_balance(RICH_MC)
        tunes = [await make_tune(store, name=f"t{n}", channel_id=100 + n) for n in range(10)]
        prompts = [
            await make_prompt(store, tunes[n % 10], channel_id=100 + n % 70) for n in range(140)
        ]
    finally:
        await store.close()
    every = {str(t.job) for t in tunes} | {str(p.job) for p in prompts}
    count = 4 if isinstance(database, SecretStr) else 2
    workers = [await spawn("claim", database, f"bot-{n}", 3, 600) for n in range(count)]
    claims: list[list[str]] = [report["claimed"] for report in await run_together(*workers)]
    taken = Counter(job for claimed in claims for job in claimed)
    assert [job for job, n in taken.items() if n > 1] == []  # no job held by two
    assert set(taken) == every  # and none left unclaimed
    assert all(claimed for claimed in claims), "every process got some of the work"
    store = await Store.open(database, settings=make_settings())
    try:
        holders = await store.leases.holders()
    finally:
        await store.close()
    owner = {job: f"bot-{n}" for n, claimed in enumerate(claims) for job in claimed}
    assert {str(j): h for j, h in holders.items()} == owner  # the store agrees with them
    channel = {str(t.job): t.channel_id for t in tunes} | {
        str(p.job): p.channel_id for p in prompts
    }
    by_channel: dict[int, set[str]] = {}
    for job, holder in owner.items():
        by_channel.setdefault(channel[job], set()).add(holder)
    assert {c: len(h) for c, h in by_channel.items()} == dict.fromkeys(by_channel, 1)
