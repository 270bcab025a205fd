"""Alerts with several processes: a fault raised in several processes at once is one row
(the alert lock keeps the look for an open row and the insert together), and each alert
is posted once however many processes drain the outbox (one holds the posting claim).

The processes are real OS processes (tests/store/worker.py); every wait is bounded."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.store import Store
from tests.pg import SKIP_REASON, TEST_DATABASE_URL, Schemas
from tests.store.helpers import ManualClock, Stores, make_settings
from tests.store.test_processes import Location, database, run_together, spawn

__all__ = ["database"]  # the fixture, shared with test_processes

GUILD = 1  # the worker's
KINDS = 60


async def with_alert_channels(where: Location, guilds: list[int]) -> Store:
    store = await Store.open(where, settings=make_settings())
    for guild in guilds:
        await store.guilds.set_alert_channel(guild, 500 + guild)
    return store


async def test_a_fault_raised_in_processes_at_once_is_one_alert(database: Location):
    """Four processes on PostgreSQL (two on SQLite) raise the same 60 kinds for one server
    in the same order at once: 60 rows, each counting every process's fault. Red without
    the alert lock on PostgreSQL (two processes both find no open row and both insert)."""
    store = await with_alert_channels(database, [GUILD])
    await store.close()
    count = 4 if isinstance(database, SecretStr) else 2
    reports = await run_together(*[await spawn("raise", database, KINDS) for _ in range(count)])
    assert all(len(r["written"]) == KINDS for r in reports)
    store = await Store.open(database, settings=make_settings())
    try:
        alerts = await store.alerts.all()
    finally:
        await store.close()
    by_kind = Counter(a.kind for a in alerts)
    assert {k: n for k, n in by_kind.items() if n > 1} == {}  # no kind split in two rows
    assert len(alerts) == KINDS
    assert all(a.count == count for a in alerts)


@pytest.mark.postgres
@pytest.mark.skipif(TEST_DATABASE_URL is None, reason=SKIP_REASON)
async def test_alerts_drained_by_processes_at_once_are_each_posted_once():
    """Three processes drain one outbox of 40 alerts over four servers at once (each send
    takes a few milliseconds): every alert is posted exactly once, all by the one process
    holding the posting claim. Red without the claim (each process posts most of them)."""
    schemas = Schemas()
    try:
        where = await schemas.url()
        guilds = [11, 12, 13, 14]
        store = await with_alert_channels(where, guilds)
        try:
            for n in range(40):
                await store.alerts.raise_alert(
                    f"kind-{n}", f"alert {n}", guild_id=guilds[n % 4], window=timedelta(hours=1)
                )
        finally:
            await store.close()
        posters = [await spawn("post", where, f"bot-{n}") for n in range(3)]
        reports = await run_together(*posters)
        sent = Counter(text for r in reports for text in r["sent"])
        assert {t: n for t, n in sent.items() if n > 1} == {}  # nothing posted twice
        assert sorted(sent) == sorted(f"alert {n}" for n in range(40))  # everything posted
        assert sum(1 for r in reports if r["sent"]) == 1  # by one process
        store = await Store.open(where, settings=make_settings())
        try:
            assert await store.alerts.pending() == []
        finally:
            await store.close()
    finally:
        await schemas.drop_all()


@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param(
            "postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(TEST_DATABASE_URL is None, reason=SKIP_REASON),
            ],
        ),
    ],
)
async def test_the_posting_claim_is_one_holders_until_its_lease_runs_out(
    tmp_path: Path, backend: str
):
    """PostgreSQL: A holds the claim; B is refused until A's lease runs out or A hands it
    back; A restarted under its own id takes it back at once. SQLite: one process owns the
    file, so whoever asks may post (a restart under a new PROCESS_ID posts at once)."""
    clock = ManualClock()
    stores = Stores(tmp_path, backend)  # type: ignore[arg-type]
    try:
        alerts = (await stores.open(clock=clock)).alerts
        lease = timedelta(seconds=30)
        assert await alerts.claim_posting("a", lease)
        if backend == "sqlite":
            assert await alerts.claim_posting("b", lease)
            return
        assert not await alerts.claim_posting("b", lease)
        assert await alerts.claim_posting("a", lease)  # its own: renewed
        clock.advance(seconds=29)
        assert not await alerts.claim_posting("b", lease)
        clock.advance(seconds=2)  # A's renewal at 0 s ran out at 30 s
        assert await alerts.claim_posting("b", lease)
        assert not await alerts.claim_posting("a", lease)
        await alerts.release_posting("a")  # not A's to hand back: nothing changes
        assert not await alerts.claim_posting("a", lease)
        await alerts.release_posting("b")
        assert await alerts.claim_posting("a", lease)
    finally:
        await stores.close_all()


@pytest.mark.postgres
@pytest.mark.skipif(TEST_DATABASE_URL is None, reason=SKIP_REASON)
async def test_an_alert_raised_in_another_process_nudges_the_poster(tmp_path: Path):
    """Two stores on one schema (two listeners): an alert raised through one calls the
    other's `on_raised` (its poster looks at once, not at its next idle look). Red without
    the raise's NOTIFY."""
    stores = Stores(tmp_path, "postgres")
    try:
        poster_side, raiser = await stores.open(), await stores.open()
        await raiser.guilds.set_alert_channel(GUILD, 500)
        nudged = asyncio.Event()
        poster_side.alerts.on_raised(nudged.set)
        nudged.clear()  # a settings change is not an alert
        await raiser.alerts.raise_alert("kind", "text", guild_id=GUILD, window=timedelta(hours=1))
        await asyncio.wait_for(nudged.wait(), 20)  # a bound, not a speed expectation
    finally:
        await stores.close_all()
