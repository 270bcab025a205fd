"""A separate OS process writing to a shared database, for the multi-process and kill -9 tests.

DB is a SQLite file, or a PostgreSQL URL (postgresql://...).

python -m tests.store.worker reserve DB INDEX COUNT SETTINGS_JSON
    opens DB, prints "ready", waits for a line on stdin, runs COUNT concurrent
    reservations, prints one JSON line: {"reserved": [ids], "refused": n}
python -m tests.store.worker claim DB HOLDER LIMIT LEASE_SECONDS
    prints "ready", waits for a line on stdin, then claims due jobs LIMIT at a time until
    three claims in a row find none, and prints one JSON line: {"claimed": ["tune:1", ...]}
python -m tests.store.worker settings DB GUILD
    prints {"ready": true, "listener": pid} (pid: its PostgreSQL listener's backend, or
    null), then answers each line on stdin: "get" with {"budget": mc, "paused": bool} as
    its store's (cached) settings of GUILD read, "listener" with {"listener": pid or null};
    ends on "quit" or the end of stdin
python -m tests.store.worker raise DB KINDS
    prints "ready", waits for a line on stdin, raises alerts "kind-0" .. "kind-(KINDS-1)"
    for GUILD (one hour window) one after another, prints {"written": [ids]}
python -m tests.store.worker post DB HOLDER
    prints "ready", waits for a line on stdin, then drains the alert outbox as HOLDER (an
    AlertPoster over a stand-in for Discord whose every send takes a few milliseconds) until
    three looks in a row find nothing pending (at most 2,000 looks), prints {"sent": [ids]}
python -m tests.store.worker churn DB SEED SETTINGS_JSON
    prints "ready", then writes reserve/settle/release/grant/adjust entries until killed,
    printing one JSON line per committed write (after the commit returned)
python -m tests.store.worker budget DB KIND RATE BURST COUNT
    KIND "shared" (the store's AstriaBudget) or "local" (a process-local RequestLimiter);
    prints "ready", waits for a line on stdin, acquires COUNT requests from four
    coroutines at once (as the tracker's requests do), and prints one JSON line:
    {"times": [time.monotonic() as each acquire returned, ...]}
python -m tests.store.worker pause DB KIND
    prints "ready", then answers stdin lines: "pause S" (a 429 asked for S seconds)
    prints "paused"; "acquire" prints {"waited": seconds the acquire slept}
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import discord
from pydantic import SecretStr

from bot.astria import Limiter, RequestLimiter
from bot.store import JobKind, JobRef, Refusal, Reservation, Store
from bot.store.db import utc_now
from tests.store.helpers import TUNE_MC, make_settings

GUILD = 1


def location(db: str) -> Path | SecretStr:
    return SecretStr(db) if db.startswith("postgresql://") else Path(db)


def say(message: dict[str, Any] | str) -> None:
    text = message if isinstance(message, str) else json.dumps(message)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def reserve(path: str, index: int, count: int, settings: dict[str, Any]) -> None:
    store = await Store.open(location(path), settings=make_settings(**settings))
    try:
        say("ready")
        await asyncio.to_thread(sys.stdin.readline)  # start with the other process

        async def one(i: int) -> Reservation | Refusal:
            number = index * 1_000_000 + i
            return await store.ledger.reserve(
                guild_id=GUILD,
                user_id=number,
                job=JobRef(JobKind.PROMPT, number),
                amount_mc=TUNE_MC,
            )

        outcomes = await asyncio.gather(*(one(i) for i in range(count)))
        say(
            {
                "reserved": [o.id for o in outcomes if isinstance(o, Reservation)],
                "refused": sum(isinstance(o, Refusal) for o in outcomes),
            }
        )
    finally:
        await store.close()


async def churn(path: str, seed: int, settings: dict[str, Any]) -> None:
    rng = random.Random(seed)
    store = await Store.open(location(path), settings=make_settings(**settings))
    say("ready")
    open_jobs: list[JobRef] = []
    # Job numbers unique across runs on the same file: the seed picks the block.
    number = seed * 10_000_000
    while True:  # until SIGKILL: closing the store is exactly what this test must not need
        roll = rng.random()
        user = rng.randint(1, 5)
        if roll < 0.45 or not open_jobs:
            number += 1
            job = JobRef(JobKind.PROMPT, number)
            outcome = await store.ledger.reserve(
                guild_id=GUILD, user_id=user, job=job, amount_mc=rng.randint(0, 5) * 1_000
            )
            if isinstance(outcome, Reservation):
                open_jobs.append(job)
                say({"op": "reserve", "id": outcome.id, "job": str(job)})
        elif roll < 0.70:
            job = open_jobs.pop(rng.randrange(len(open_jobs)))
            settled = await store.ledger.settle(job, rng.randint(0, 6) * 1_000)
            say({"op": "settle", "job": str(job), "applied": settled.applied})
        elif roll < 0.85:
            job = open_jobs.pop(rng.randrange(len(open_jobs)))
            released = await store.ledger.release(job)
            say({"op": "release", "job": str(job), "applied": released.applied})
        elif roll < 0.93:
            entry = await store.ledger.grant(
                guild_id=GUILD, user_id=user, amount_mc=1_000, actor_id=99, note="churn"
            )
            say({"op": "grant", "id": entry.id})
        else:
            entry = await store.ledger.adjust(
                guild_id=GUILD, user_id=user, amount_mc=-500, actor_id=99, note="churn"
            )
            say({"op": "adjust", "id": entry.id})


async def claim(path: str, holder: str, limit: int, lease_seconds: float) -> None:
    store = await Store.open(location(path), settings=make_settings())
    try:
        say("ready")
        await asyncio.to_thread(sys.stdin.readline)  # start with the other processes
        claimed: list[str] = []
        empty = 0
        while empty < 3:
            got = await store.leases.claim_due(holder, limit, lease_seconds)
            claimed += [str(j) for j in got]
            empty = 0 if got else empty + 1
            await asyncio.sleep(0.002)  # a tracker's round, shortened: the claims interleave
        say({"claimed": claimed})
    finally:
        await store.close()


def listener_pid(store: Store) -> int | None:
    from bot.store.postgres import PostgresDatabase

    db = store._db
    if not isinstance(db, PostgresDatabase) or db.listener is None:
        return None
    return int(db.listener.get_server_pid())


async def settings(path: str, guild: int) -> None:
    store = await Store.open(location(path), settings=make_settings())
    try:
        say({"ready": True, "listener": listener_pid(store)})
        while True:
            line = (await asyncio.to_thread(sys.stdin.readline)).strip()
            if line == "get":
                got = await store.guilds.get(guild)
                say({"budget": got.monthly_budget_mc, "paused": got.paused})
            elif line == "listener":
                say({"listener": listener_pid(store)})
            else:
                return
    finally:
        await store.close()


async def raise_alerts(path: str, kinds: int) -> None:
    store = await Store.open(location(path), settings=make_settings())
    try:
        say("ready")
        await asyncio.to_thread(sys.stdin.readline)  # start with the other processes
        written: list[int] = []
        for k in range(kinds):
            written += await store.alerts.raise_alert(
                f"kind-{k}", f"fault {k}", guild_id=GUILD, window=timedelta(hours=1)
            )
        say({"written": written})
    finally:
        await store.close()


class _Channel(discord.abc.Messageable):
    """A stand-in for an alert channel: a send takes a few milliseconds, as Discord's do,
    and is recorded by its text."""

    def __init__(self, channel_id: int, sent: list[str]) -> None:
        self.id = channel_id
        self._sent = sent

    async def _get_channel(self) -> Any:
        return self

    async def send(self, content: Any = None, **options: Any) -> Any:
        await asyncio.sleep(0.005)
        self._sent.append(str(content))
        return SimpleNamespace(id=10_000 + len(self._sent))


class _Bot:
    """What AlertPoster asks of the Discord client, and no more."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def get_guild(self, guild_id: int) -> None:
        return None

    def get_channel(self, channel_id: int) -> _Channel:
        return _Channel(channel_id, self.sent)


async def post_alerts(path: str, holder: str) -> None:
    from bot.ui.alerts import AlertPoster

    store = await Store.open(location(path), settings=make_settings())
    try:
        bot = _Bot()
        poster = AlertPoster(bot, store, clock=utc_now, holder=holder)  # type: ignore[arg-type]
        say("ready")
        await asyncio.to_thread(sys.stdin.readline)  # start with the other processes
        idle = 0
        for _ in range(2_000):  # bounded: a broken claim fails the test, it never hangs
            await poster.drain()
            idle = 0 if await store.alerts.pending() else idle + 1
            if idle >= 3:
                break
            await asyncio.sleep(0.002)
        say({"sent": bot.sent})
    finally:
        await store.close()


def limiter_of(store: Store, kind: str, rate: float, burst: int) -> Limiter:
    if kind == "shared":
        return store.astria_budget
    if kind == "local":
        return RequestLimiter(rate, burst=burst)
    raise SystemExit(f"unknown limiter {kind!r}")


async def budget(path: str, kind: str, rate: float, burst: int, count: int) -> None:
    settings = make_settings(astria_requests_per_second=rate, astria_request_burst=burst)
    store = await Store.open(location(path), settings=settings)
    try:
        limiter = limiter_of(store, kind, rate, burst)
        say("ready")
        await asyncio.to_thread(sys.stdin.readline)  # start with the other processes
        times: list[float] = []
        left = iter(range(count))

        async def requests() -> None:
            for _ in left:
                await limiter.acquire()
                times.append(time.monotonic())  # one clock for every process on this host

        await asyncio.gather(*(requests() for _ in range(4)))
        say({"times": times})
    finally:
        await store.close()


async def pause(path: str, kind: str) -> None:
    store = await Store.open(location(path), settings=make_settings())
    try:
        limiter = limiter_of(store, kind, 1000.0, 5)
        say("ready")
        while line := (await asyncio.to_thread(sys.stdin.readline)).split():
            if line[0] == "pause":
                await limiter.pause(float(line[1]))
                say("paused")
            else:
                started = time.monotonic()
                await limiter.acquire()
                say({"waited": time.monotonic() - started})
    finally:
        await store.close()


def main(argv: list[str]) -> None:
    mode, path = argv[0], argv[1]
    if mode == "reserve":
        asyncio.run(reserve(path, int(argv[2]), int(argv[3]), json.loads(argv[4])))
    elif mode == "claim":
        asyncio.run(claim(path, argv[2], int(argv[3]), float(argv[4])))
    elif mode == "raise":
        asyncio.run(raise_alerts(path, int(argv[2])))
    elif mode == "post":
        asyncio.run(post_alerts(path, argv[2]))
    elif mode == "settings":
        asyncio.run(settings(path, int(argv[2])))
    elif mode == "budget":
        rate, burst, count = float(argv[3]), int(argv[4]), int(argv[5])
        asyncio.run(budget(path, argv[2], rate, burst, count))
    elif mode == "pause":
        asyncio.run(pause(path, argv[2]))
    elif mode == "churn":
        asyncio.run(churn(path, int(argv[2]), json.loads(argv[3])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
