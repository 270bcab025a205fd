"""Check-then-write races between two processes on one PostgreSQL, interleaved by hand.

Each test opens two stores on one schema (two processes' connections) and runs one write
of each in the worst order: the first stops right after the statement that reads what it
checks (an asyncio event holds it there), the second runs until it is done or waits in
PostgreSQL for a lock, and only then does the first go on. Where a check's read came
before the money lock, both passed the same check (red); with the lock first, the second
waits for the first's commit and reads it. SQLite needs none of this: BEGIN IMMEDIATE
holds its one write lock from the first read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from bot.store import JobKind, JobRef, PromptRecord, Reservation, StartCaps, Store, TuneRecord
from bot.store.db import Params, Row
from bot.store.errors import InvalidTransition, StoreError
from bot.store.postgres import PostgresDatabase, PostgresTransaction
from bot.store.prompts import PromptState
from bot.store.tunes import TuneState
from tests.pg import TEST_DATABASE_URL, Schemas
from tests.store.helpers import RICH_MC, open_store
from tests.store.test_repositories import ALICE, HOME, make_prompt, make_tune

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(TEST_DATABASE_URL is None, reason="set TEST_DATABASE_URL"),
]

WAIT = 60.0  # seconds: a bound on a stuck test, never a speed expectation


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one PostgreSQL schema: two processes' writers."""
    schemas = Schemas()
    opened: list[Store] = []
    try:
        url = await schemas.url()
        for _ in range(2):
            opened.append(await open_store(url, balance_mc=RICH_MC))
        yield opened[0], opened[1]
    finally:
        for store in opened:
            await store.close()
        await schemas.drop_all()


def writer_pid(store: Store) -> int:
    db = store._db
    assert isinstance(db, PostgresDatabase)
    return int(db._writer.get_server_pid())


async def waits_in_postgres(pid: int) -> bool:
    assert TEST_DATABASE_URL is not None
    conn = await asyncpg.connect(TEST_DATABASE_URL)
    try:
        return bool(
            await conn.fetchval("SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted", pid)
        )
    finally:
        await conn.close()


async def interleave(
    monkeypatch: pytest.MonkeyPatch,
    first: Store,
    after: str,
    run_first: Callable[[], Awaitable[Any]],
    second: Store,
    run_second: Callable[[], Awaitable[Any]],
) -> tuple[Any, Any]:
    """`run_first` on `first` until its write has run a statement containing `after`;
    then `run_second` on `second` until it returns or waits in PostgreSQL for a lock;
    then the first goes on. Both outcomes (or exceptions), in that order."""
    reached, go = asyncio.Event(), asyncio.Event()
    held = first._db
    assert isinstance(held, PostgresDatabase)
    original = PostgresTransaction.fetchall

    async def fetchall(self: PostgresTransaction, sql: str, params: Params = ()) -> list[Row]:
        rows = await original(self, sql, params)
        if self._conn is held._writer and after in sql and not reached.is_set():
            reached.set()
            await go.wait()
        return rows

    monkeypatch.setattr(PostgresTransaction, "fetchall", fetchall)
    task_a = asyncio.ensure_future(run_first())
    await asyncio.wait_for(reached.wait(), WAIT)
    task_b = asyncio.ensure_future(run_second())
    pid = writer_pid(second)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not task_b.done() and not await waits_in_postgres(pid):
        assert loop.time() < deadline, "the second write neither ended nor waited"
        await asyncio.sleep(0.005)
    go.set()
    outcomes: tuple[Any, Any] = await asyncio.gather(task_a, task_b, return_exceptions=True)
    return outcomes[0], outcomes[1]


QUEUE_COUNT = "AS waiting"  # jobstate.waiting_jobs: the queue cap's read


async def test_two_processes_creating_tunes_keep_the_queue_cap(
    pair: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
):
    """Cap 1 (MAX_WAITING_PER_MEMBER): a tune's create reads the member's unfinished jobs,
    then writes the row and its reservation. Red before the money lock was taken first:
    both read 0 and both were queued."""
    one, two = pair

    async def create(store: Store, name: str) -> object:
        return await store.tunes.create(
            owner_id=ALICE,
            guild_id=HOME,
            channel_id=55,
            name=name,
            subject_class="woman",
            profile="flux-lora",
            branch="flux1",
            photo_paths=[f"/photos/{name}.jpg"],
            price_mc=150_000,
            max_waiting=1,
        )

    a, b = await interleave(
        monkeypatch, one, QUEUE_COUNT, lambda: create(one, "a"), two, lambda: create(two, "b")
    )
    made = [r for r in (a, b) if isinstance(r, TuneRecord)]
    assert len(made) == 1, (a, b)
    assert len(await one.tunes.unfinished()) == 1


async def test_two_processes_creating_prompts_keep_the_queue_cap(
    pair: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
):
    one, two = pair
    tune = await make_tune(one)
    await one.tunes.set_state(tune.id, TuneState.SUBMITTING)
    await one.tunes.set_state(tune.id, TuneState.TRAINING)
    await one.tunes.set_state(tune.id, TuneState.READY)

    async def create(store: Store) -> object:
        return await store.prompts.create(
            owner_id=ALICE,
            guild_id=HOME,
            channel_id=55,
            tune_id=tune.id,
            user_text="x",
            final_text="x",
            num_images=1,
            price_mc=3_000,
            target_tune_id=1,
            max_waiting=1,
        )

    a, b = await interleave(
        monkeypatch, one, QUEUE_COUNT, lambda: create(one), two, lambda: create(two)
    )
    made = [r for r in (a, b) if isinstance(r, PromptRecord)]
    assert len(made) == 1, (a, b)
    assert [p.state for p in await one.prompts.unfinished()] == [PromptState.QUEUED]


async def test_two_processes_refused_for_credit_at_once_start_one_shortage(
    pair: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
):
    """mark_short's True alerts the operator: one shortage, one alert. Red before the
    money lock came before its read: both saw no shortage and both said it started."""
    one, two = pair
    a, b = await interleave(
        monkeypatch,
        one,
        "SELECT short_since_ms FROM account_balance",
        lambda: one.account.mark_short(1_000),
        two,
        lambda: two.account.mark_short(2_000),
    )
    assert sorted([a, b]) == [False, True], (a, b)
    known = await one.account.last_known()
    assert known is not None and known.short and known.short_need_mc == 2_000


async def test_an_erasure_returns_the_photos_of_a_tune_made_meanwhile_or_leaves_it_whole(
    pair: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
):
    """A member's tune made in another process while their data is erased: either the
    erasure sees it (and hands its photos back for deletion) or it comes after, whole.
    Red before the erasure took the money lock first: the tune's row was emptied by the
    erasure's later UPDATE but its photos were not among those to delete (left on disk)."""
    one, two = pair
    await make_tune(one, name="old", photo_paths=["/photos/old.jpg"])
    a, b = await interleave(
        monkeypatch,
        one,
        "SELECT id, photo_paths, status_channel_id",
        lambda: one.erasure.scrub(ALICE),
        two,
        lambda: make_tune(two, name="new", photo_paths=["/photos/new.jpg"]),
    )
    assert isinstance(b, TuneRecord), b
    kept = await one.tunes.get(b.id)
    assert kept is not None
    if kept.owner_id == ALICE:  # made after the erasure: the member's own, untouched
        assert kept.photo_paths == ("/photos/new.jpg",)
        assert a.photo_paths == ("/photos/old.jpg",)
    else:  # erased with the rest: its photos are the caller's to delete
        assert "/photos/new.jpg" in a.photo_paths, a


async def session_gone(pid: int) -> bool:
    assert TEST_DATABASE_URL is not None
    conn = await asyncpg.connect(TEST_DATABASE_URL)
    try:
        found = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)
        return not found
    finally:
        await conn.close()


async def test_a_frozen_process_idle_in_a_transaction_loses_its_locks_and_reconnects():
    """A process stopped inside a write (SIGSTOP, a frozen VM) holds the money lock; the
    server ends its session after DATABASE_IDLE_TRANSACTION_SECONDS, so the others go on,
    its own write is rolled back (a StoreError, never a half commit), and its next write
    works on a new connection. Red without the setting: the session stays (and every
    other process's ledger write waits for it, then fails as busy)."""
    schemas = Schemas()
    try:
        url = await schemas.url()
        frozen = await open_store(url, database_idle_transaction_seconds=1)
        other = await open_store(url, balance_mc=None)
        try:
            pid = writer_pid(frozen)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            with pytest.raises(StoreError):
                async with frozen._db.write() as tx:
                    await tx.lock_money()
                    await tx.execute("INSERT INTO meta (key, value) VALUES ('frozen', 'x')")
                    while not await session_gone(pid):  # frozen: this process does nothing
                        assert loop.time() < deadline, "the idle session was never ended"
                        await asyncio.sleep(0.05)
                    made = await other.ledger.reserve(
                        guild_id=HOME, user_id=ALICE, job=JobRef(JobKind.PROMPT, 1), amount_mc=1
                    )
                    assert isinstance(made, Reservation)
            assert await other.meta.get("frozen") is None  # rolled back, not committed
            await frozen.meta.set("thawed", "yes")  # a new session
            assert await other.meta.get("thawed") == "yes"
            assert writer_pid(frozen) != pid
        finally:
            await frozen.close()
            await other.close()
    finally:
        await schemas.drop_all()


async def test_a_cancel_and_a_submission_of_one_queued_prompt_never_both_win(
    pair: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
):
    """A member's Cancel (handled by the process that got the click) and the holder's
    queued -> submitting, at once. Both winning would release the credit of a prompt
    that is then created at Astria (charged, with nothing held). Red before the compare
    locked the row: both compares read `queued` and both moved it."""
    one, two = pair
    tune = await make_tune(one)
    for state in (TuneState.SUBMITTING, TuneState.TRAINING, TuneState.READY):
        await one.tunes.set_state(tune.id, state)
    prompt = await make_prompt(one, tune)
    a, b = await interleave(
        monkeypatch,
        one,
        "SELECT state FROM prompts WHERE id",
        lambda: one.prompts.transition(prompt.id, PromptState.QUEUED, PromptState.SUBMITTING),
        two,
        lambda: two.prompts.transition(prompt.id, PromptState.QUEUED, PromptState.CANCELLED),
    )
    assert isinstance(a, PromptRecord) and a.state is PromptState.SUBMITTING, a
    assert b is None, b
    stored = await one.prompts.get(prompt.id)
    assert stored is not None and stored.state is PromptState.SUBMITTING


async def test_a_ready_tune_deleted_and_expired_at_once_takes_one_step(
    pair: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
):
    """set_state checks the step from the state it reads, then writes: a member's delete
    and another process's expiry at once. Red before the read locked the row: both read
    `ready`, both stepped, and the later write overwrote the first's end."""
    one, two = pair
    tune = await make_tune(one)
    for state in (TuneState.SUBMITTING, TuneState.TRAINING, TuneState.READY):
        await one.tunes.set_state(tune.id, state)
    a, b = await interleave(
        monkeypatch,
        one,
        "SELECT state FROM tunes WHERE id",
        lambda: one.tunes.set_state(tune.id, TuneState.DELETED),
        two,
        lambda: two.tunes.set_state(tune.id, TuneState.EXPIRED),
    )
    # The first moved it; the second then found it deleted, not ready: not a step.
    assert isinstance(a, TuneRecord) and a.state is TuneState.DELETED, a
    assert isinstance(b, InvalidTransition), b
    stored = await one.tunes.get(tune.id)
    assert stored is not None and stored.state is TuneState.DELETED


async def test_two_processes_asking_for_a_due_turn_at_once_get_one(
    pair: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
):
    """Meta.take_turn (the daily retention's, the balance watch's): the first reads the
    turn as due and stops there; the second's read waits for the first's row lock, then
    finds it taken. Red without the row lock: both read it due and both took it."""
    one, two = pair
    now, every = datetime(2025, 3, 14, 12, 0, tzinfo=UTC), timedelta(days=1)
    assert await one.meta.take_turn("retention", now=now - every, every=every)
    a, b = await interleave(
        monkeypatch,
        one,
        "SELECT value FROM meta WHERE key",
        lambda: one.meta.take_turn("retention", now=now, every=every),
        two,
        lambda: two.meta.take_turn("retention", now=now, every=every),
    )
    assert (a, b) == (True, False)


async def test_two_processes_submitting_one_member_s_tunes_keep_one_training(
    pair: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
):
    """MAX_TRAINING_PER_MEMBER 1: each process's round decided on its own read that its
    tune may go; the submission's write counts again under the money lock. Red without
    that count (or with it outside the lock): both tunes went to Astria."""
    one, two = pair
    first = await make_tune(one, name="first")
    second = await make_tune(one, name="second")
    caps = StartCaps(per_member=1, in_flight=50)
    a, b = await interleave(
        monkeypatch,
        one,
        "AS prompts_mine",
        lambda: one.tunes.transition(first.id, TuneState.QUEUED, TuneState.SUBMITTING, caps=caps),
        two,
        lambda: two.tunes.transition(second.id, TuneState.QUEUED, TuneState.SUBMITTING, caps=caps),
    )
    assert isinstance(a, TuneRecord) and b is None, (a, b)
    states = {t.id: t.state for t in await one.tunes.unfinished()}
    assert states == {first.id: TuneState.SUBMITTING, second.id: TuneState.QUEUED}


async def test_two_processes_submitting_prompts_keep_the_global_cap(
    pair: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
):
    """MAX_JOBS_IN_FLIGHT, across members: one place left, two members' prompts."""
    one, two = pair
    tune = await make_tune(one)
    for state in (TuneState.SUBMITTING, TuneState.TRAINING, TuneState.READY):
        await one.tunes.set_state(tune.id, state)
    await one.tunes.set_shared(tune.id, True)
    running = await make_prompt(one, tune)
    await one.prompts.transition(running.id, PromptState.QUEUED, PromptState.SUBMITTING)
    mine = await make_prompt(one, tune)
    theirs = await make_prompt(one, tune, owner=ALICE + 1)
    caps = StartCaps(per_member=4, in_flight=2)
    a, b = await interleave(
        monkeypatch,
        one,
        "AS prompts_mine",
        lambda: one.prompts.transition(
            mine.id, PromptState.QUEUED, PromptState.SUBMITTING, caps=caps
        ),
        two,
        lambda: two.prompts.transition(
            theirs.id, PromptState.QUEUED, PromptState.SUBMITTING, caps=caps
        ),
    )
    assert isinstance(a, PromptRecord) and b is None, (a, b)


async def test_two_processes_raising_one_alert_at_once_open_one_row(
    pair: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
):
    """An alert is folded into its open row of the window or opens one: two processes
    told of one fault at once (a low balance, a stuck job) make one post with a count of
    2. Red before the alerts lock: both found no open row and both opened one."""
    one, two = pair
    await one.guilds.set_alert_channel(HOME, 777)
    window = timedelta(hours=1)
    a, b = await interleave(
        monkeypatch,
        one,
        "SELECT id FROM alerts WHERE guild_id",
        lambda: one.alerts.raise_alert("low_balance", "low", guild_id=HOME, window=window),
        two,
        lambda: two.alerts.raise_alert("low_balance", "low", guild_id=HOME, window=window),
    )
    assert a == b and len(a) == 1, (a, b)
    [alert] = await one.alerts.pending()
    assert alert.count == 2
