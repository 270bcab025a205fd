"""Several tracker processes on one PostgreSQL: jobs per second and Astria status requests
per job with two processes against one (the baseline, same workload, same run), the peak
request rate of both together against the account's configured rate, and the time from a
SIGKILL of one process to the other's takeover of its jobs.

Each run has a fresh PostgreSQL schema and a fresh emulator on the real clock; the
processes are `bench.processes_process` children (the tracker as the bot runs it, with
its own Astria client and limiter, delivering to a counter instead of Discord). Prompts
arrive steadily over many channels (a channel is worked by one process at a time, so a
single channel would leave the second process idle). Requests are counted, and
timestamped, by the emulator as they arrive.

Needs TEST_DATABASE_URL (or DATABASE_URL): a PostgreSQL database this may create and drop
its own schemas in. Without it the benchmark says so and exits 0.

    .venv/bin/python -m bench.processes [--quick]
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import asyncpg
from pydantic import SecretStr

from bench.common import (
    KEY,
    Goal,
    Table,
    fmt,
    median,
    parse_args,
    python_module,
    ratio,
    report,
    times,
    work_dir,
)
from bench.rig import (
    GUILD,
    PROFILE,
    TUNE_MC,
    CountingDelivery,
    Requests,
    client_for,
    queue_prompt,
    route_counts,
    settings_for,
    write_photos,
)
from bot.astria.limiter import RequestLimiter
from bot.jobs import Tracker, TrackerConfig
from bot.offline.emulator import Emulator, EmulatorConfig
from bot.store import JobRef, PromptRecord, PromptState, Store, TuneRecord, TuneState

LEASE = 3.0  # LEASE_SECONDS for the run (30 s in production): the takeover fits a run
ROUND = min(5.0, LEASE / 3)  # the tracker's longest wait between rounds (Tracker._idle)
RATE = 10.0  # ASTRIA_REQUESTS_PER_SECOND, the account's rate each process is configured with
BURST = int(inspect.signature(RequestLimiter).parameters["burst"].default)
PROMPT_SECONDS = 3.0  # emulator time a prompt generates (real time here), ±20 %
KILL_PROMPT_SECONDS = 3 * LEASE  # long enough that the victim dies holding prompts
LOOKUP_WAIT = 0.5
WAIT = 120.0  # seconds: a bound on a stuck run, never a speed expectation


def database_url() -> str | None:
    return os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL") or None


# ---------------------------------------------------------------------- the rig


class TimedCounter(collections.Counter[str]):
    """The emulator's per-route counter, also noting when each request came in."""

    def __init__(self) -> None:
        self.stamps: list[tuple[float, str]] = []
        super().__init__()

    def __setitem__(self, key: str, value: int) -> None:
        if value > self.get(key, 0):
            self.stamps.append((time.monotonic(), key))
        super().__setitem__(key, value)

    def peak(self, start: float, end: float, window: float = 1.0) -> int:
        """The most API requests (files aside) in any `window` seconds of [start, end]."""
        moments = [t for t, route in self.stamps if start <= t <= end and " /files" not in route]
        best = first = 0
        for last, moment in enumerate(moments):
            while moment - moments[first] >= window:
                first += 1
            best = max(best, last - first + 1)
        return best


def in_schema(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    query.append(("search_path", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


@asynccontextmanager
async def fresh_schema(base: str) -> AsyncIterator[str]:
    """A schema of this run's own, dropped afterwards: the URL that selects it."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    try:
        yield in_schema(base, schema)
    finally:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


@asynccontextmanager
async def emulator_on(prompt_seconds: float) -> AsyncIterator[tuple[Emulator, TimedCounter]]:
    config = EmulatorConfig(
        api_key=KEY,
        train_seconds=1.0,
        prompt_seconds=prompt_seconds,
        jitter=0.2,
        seed=17,
        foreign_prompts=1000,
        balance_mc=10**12,
    )
    emulator = Emulator(config)  # wall-clock time: the children run on real time
    counter = TimedCounter()
    emulator.counters = counter
    await emulator.start()
    try:
        yield emulator, counter
    finally:
        await emulator.stop()


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    log: TextIO

    async def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), WAIT)
        if not raw:
            raise RuntimeError(f"{self.name} ended early; its log: {self.log.name}")
        loaded = json.loads(raw)
        assert isinstance(loaded, dict)
        return loaded

    async def stop(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(b"stop\n")
        await self.process.stdin.drain()
        figures = await self.line()
        await asyncio.wait_for(self.process.wait(), WAIT)
        return figures

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()


async def spawn(folder: Path, name: str, url: str, emulator: Emulator) -> Child:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PROCESS_ID": name,
        "LEASE_SECONDS": str(LEASE),
        "ASTRIA_BASE_URL": emulator.base_url,
        "ASTRIA_API_KEY": KEY,
        "ASTRIA_REQUESTS_PER_SECOND": str(RATE),
        "SD15_PROMPT_SECONDS": str(PROMPT_SECONDS),
        # A create in flight at the kill is looked up twice, this far apart (60 s in
        # production), before any re-post.
        "ASTRIA_LOOKUP_WAIT_SECONDS": str(LOOKUP_WAIT),
    }
    env.pop("TEST_DATABASE_URL", None)
    log = (folder / f"{name}-{uuid.uuid4().hex[:6]}.log").open("w")
    process = await asyncio.create_subprocess_exec(
        *python_module("bench.processes_process"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        env=env,
    )
    return Child(name, process, log)


async def start_children(folder: Path, count: int, url: str, emulator: Emulator) -> list[Child]:
    children = [await spawn(folder, f"bench-{n}", url, emulator) for n in range(count)]
    for child in children:
        await child.line()  # ready
    return children


async def prepare(folder: Path, url: str, emulator: Emulator) -> TuneRecord:
    """Migrate the schema, record the balance, and train the shared tune every prompt
    uses (one tracker in this process, which hands its leases back)."""
    settings = settings_for(
        database_url=url,
        process_id="bench-setup",
        lease_seconds=LEASE,
        astria_api_key=KEY,
        poll_tune_min_seconds=0.5,  # the emulator trains it in 1 s
    )
    store = await Store.open(SecretStr(url), settings=settings)
    try:
        await store.account.record_balance(emulator.balance_mc)
        created = await store.tunes.create(
            owner_id=1,
            guild_id=GUILD,
            channel_id=1,
            name="me",
            subject_class="man",
            profile=PROFILE,
            branch="sd15",
            photo_paths=write_photos(folder / "photos", uuid.uuid4().hex[:8]),
            price_mc=TUNE_MC,
        )
        if not isinstance(created, TuneRecord):
            raise RuntimeError(f"tune refused: {created}")
        async with aiohttp.ClientSession() as session:
            client = client_for(session, emulator.base_url)
            tracker = Tracker(
                store,
                client,
                CountingDelivery(),
                TrackerConfig.from_settings(settings),
                clock=_utc_now,
            )
            try:
                for _ in range(300):
                    await tracker.poll_once()
                    tune = await store.tunes.get(created.id)
                    if tune is not None and tune.state == TuneState.READY:
                        await tracker.poll_once()  # its "ready" reported: no lease left
                        return await store.tunes.set_shared(tune.id, True)
                    await asyncio.sleep(0.2)
            finally:
                await tracker.stop()
        raise RuntimeError("the setup tune never finished training")
    finally:
        await store.close()


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def add_prompt(store: Store, tune: TuneRecord, n: int, channels: int) -> PromptRecord:
    """Prompt `n` of a member of its own, in channel n mod `channels`."""
    return await queue_prompt(store, tune, n, channel_id=100 + n % channels)


async def feed(
    store: Store, tune: TuneRecord, jobs: int, channels: int, seconds: float
) -> list[PromptRecord]:
    """`jobs` prompts arriving evenly over `seconds`, as members send them."""
    started = time.monotonic()
    made: list[PromptRecord] = []
    for n in range(jobs):
        made.append(await add_prompt(store, tune, n, channels))
        delay = started + (n + 1) * seconds / jobs - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    return made


async def until_done(store: Store, made: Sequence[PromptRecord]) -> None:
    deadline = time.monotonic() + WAIT
    while await store.prompts.unfinished():
        if time.monotonic() > deadline:
            raise RuntimeError(f"prompts still unfinished after {WAIT:g} s")
        await asyncio.sleep(0.05)
    for prompt in made:
        now = await store.prompts.get(prompt.id)
        if now is None or now.state != PromptState.DELIVERED:
            raise RuntimeError(f"prompt {prompt.id} ended {now and now.state}, not delivered")


def check_once_at_astria(emulator: Emulator, jobs: int) -> None:
    ours = emulator.our_prompts()
    made = collections.Counter(p["text"] for p in ours)
    if len(ours) != jobs or set(made.values()) != {1}:
        raise RuntimeError(f"{len(ours)} prompts at Astria for {jobs} jobs")


# ---------------------------------------------------------------------- throughput


@dataclass(frozen=True)
class Throughput:
    processes: int
    jobs: int
    seconds: float  # first arrival to the last prompt delivered
    requests: Requests
    peak: int  # API requests in the busiest second, all processes together
    delivered: tuple[int, ...]  # by process
    channels: tuple[int, ...]  # how many channels each process worked
    repeated: tuple[str, ...]  # events a process reported more than once (their keys)

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds

    @property
    def status_per_job(self) -> float:
        return self.requests.status / self.jobs

    @property
    def total_per_job(self) -> float:
        return self.requests.total / self.jobs


async def throughput(
    folder: Path, base: str, processes: int, jobs: int, channels: int, feed_seconds: float
) -> Throughput:
    async with fresh_schema(base) as url, emulator_on(PROMPT_SECONDS) as (emulator, counter):
        tune = await prepare(folder, url, emulator)
        children = await start_children(folder, processes, url, emulator)
        try:
            store = await Store.open(SecretStr(url), settings=settings_for(database_url=url))
            try:
                worked: dict[str, set[int]] = collections.defaultdict(set)
                channel_of: dict[JobRef, int] = {}
                watching = asyncio.create_task(watch_channels(store, channel_of, worked))
                before = route_counts(emulator)
                started = time.monotonic()
                made = await feed(store, tune, jobs, channels, feed_seconds)
                channel_of.update({p.job: p.channel_id for p in made})
                await until_done(store, made)
                ended = time.monotonic()
                requests = Requests.between(before, route_counts(emulator))
                watching.cancel()
                await asyncio.gather(watching, return_exceptions=True)
            finally:
                await store.close()
            figures = [await child.stop() for child in children]
        finally:
            for child in children:
                await child.kill()
        check_once_at_astria(emulator, jobs)
    return Throughput(
        processes,
        jobs,
        ended - started,
        requests,
        counter.peak(started, ended),
        tuple(int(f["delivered"]) for f in figures),
        tuple(len(worked[c.name]) for c in children),
        tuple(key for f in figures for key in f["repeated"]),
    )


async def watch_channels(
    store: Store, channel_of: dict[JobRef, int], worked: dict[str, set[int]]
) -> None:
    """Which channels each process held jobs in (sampled), for the table."""
    while True:
        for job, holder in (await store.leases.holders()).items():
            channel = channel_of.get(job)
            if channel is not None:
                worked[holder].add(channel)
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------- kill and takeover


@dataclass(frozen=True)
class Takeover:
    victim_jobs: int
    first: float  # kill to the first of its jobs claimed by the survivor
    every: float  # kill to the last of them
    repeated: tuple[str, ...]  # events the survivor reported more than once


async def takeover(folder: Path, base: str, jobs: int, channels: int) -> Takeover:
    """Two processes; one holding prompts at Astria is SIGKILLed; the other must claim
    every job the dead one held (and deliver them all, each made once at Astria)."""
    async with (
        fresh_schema(base) as url,
        emulator_on(KILL_PROMPT_SECONDS) as (emulator, _),
    ):
        tune = await prepare(folder, url, emulator)
        children = await start_children(folder, 2, url, emulator)
        by_name = {c.name: c for c in children}
        try:
            store = await Store.open(SecretStr(url), settings=settings_for(database_url=url))
            try:
                made = await feed(store, tune, jobs, channels, 2.0)
                victim, held = await a_victim(store, made)
                survivor = next(name for name in by_name if name != victim)
                await by_name[victim].kill()
                killed = time.monotonic()
                taken: dict[JobRef, float] = {}
                deadline = killed + WAIT
                while len(taken) < len(held):
                    now = await store.leases.holders()
                    moment = time.monotonic() - killed
                    for job in held - set(taken):
                        if now.get(job) != victim:  # the survivor's now, or done and handed back
                            taken[job] = moment
                    if time.monotonic() > deadline:
                        raise RuntimeError("the survivor never took the jobs over")
                    await asyncio.sleep(0.02)
                await until_done(store, made)
            finally:
                await store.close()
            figures = await by_name[survivor].stop()
        finally:
            for child in children:
                await child.kill()
        check_once_at_astria(emulator, jobs)
    return Takeover(len(held), min(taken.values()), max(taken.values()), tuple(figures["repeated"]))


async def a_victim(store: Store, made: Sequence[PromptRecord]) -> tuple[str, set[JobRef]]:
    """Wait until every prompt has been claimed and one is generating at Astria: the
    process holding the most jobs, and the jobs it holds. (The other may hold none: a
    process with jobs due rounds sooner, so it tends to claim the new arrivals too.)"""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        holders = await store.leases.holders()
        states = {p.job: p.state for p in await store.prompts.unfinished()}
        claimed = all(p.job in holders for p in made)
        if claimed and PromptState.GENERATING in states.values():
            most = collections.Counter(holders.values()).most_common(1)[0][0]
            return most, {j for j, h in holders.items() if h == most and j in states}
        await asyncio.sleep(0.05)
    raise RuntimeError("the prompts were never all claimed with one generating")


# ---------------------------------------------------------------------- the report


async def run_all(folder: Path, base: str, quick: bool) -> int:
    jobs, channels = (40, 8) if quick else (200, 40)
    feed_seconds = 2.0 if quick else 5.0
    repeats = 1 if quick else 2
    kills = 1 if quick else 3
    runs: dict[int, list[Throughput]] = {1: [], 2: []}
    for _ in range(repeats):  # interleaved, so a noisy minute hits both
        for processes in (1, 2):
            run = await throughput(folder, base, processes, jobs, channels, feed_seconds)
            runs[processes].append(run)
            print(
                f"  {processes} process(es): {run.jobs_per_second:.2f} jobs/s, "
                f"{run.status_per_job:.3f} status/job, peak {run.peak}/s",
                flush=True,
            )
    takeovers = []
    for _ in range(kills):
        taken = await takeover(folder, base, 40 if not quick else 16, 40 if not quick else 16)
        takeovers.append(taken)
        print(f"  takeover: {taken.every:.2f} s after the kill", flush=True)

    def med(n: int, value: str) -> float:
        return median([float(getattr(r, value)) for r in runs[n]])

    one_rate, two_rate = med(1, "jobs_per_second"), med(2, "jobs_per_second")
    one_status, two_status = med(1, "status_per_job"), med(2, "status_per_job")
    two_peak = max(r.peak for r in runs[2])
    limit = RATE + BURST
    table = Table(
        [
            "processes",
            "run",
            "jobs/s",
            "÷ one",
            "status/job",
            "÷ one",
            "total req/job",
            "peak req/s",
            "÷ (rate+burst)",
            "delivered by",
            "channels by",
        ]
    )
    # Each run against the one-process medians; a last row of medians for two.
    for n in (1, 2):
        for number, run in enumerate(runs[n], start=1):
            table.add(
                "1 (baseline)" if n == 1 else "2",
                str(number),
                fmt(run.jobs_per_second),
                times(run.jobs_per_second, one_rate),
                fmt(run.status_per_job, 3),
                times(run.status_per_job, one_status),
                fmt(run.total_per_job, 3),
                str(run.peak),
                times(run.peak, limit),
                " + ".join(str(d) for d in run.delivered),
                " + ".join(str(c) for c in run.channels),
            )
    table.add(
        "2",
        "median",
        fmt(two_rate),
        times(two_rate, one_rate),
        fmt(two_status, 3),
        times(two_status, one_status),
        fmt(med(2, "total_per_job"), 3),
        f"max {two_peak}",
        times(two_peak, limit),
        "",
        "",
    )
    every = median([t.every for t in takeovers])
    bound = LEASE + ROUND
    kill_table = Table(["kill", "victim's jobs", "first taken", "all taken", "÷ (lease+round)"])
    for n, t in enumerate(takeovers, start=1):
        kill_table.add(
            str(n),
            str(t.victim_jobs),
            f"{t.first:.2f} s",
            f"{t.every:.2f} s",
            times(t.every, bound),
        )
    repeated = sorted(
        {k for rs in runs.values() for r in rs for k in r.repeated}
        | {k for t in takeovers for k in t.repeated}
    )
    goals = [
        Goal(
            "every event handed to the delivery once by its process (a repeat within "
            "minutes is absorbed by Discord's nonce, but costs a second report)",
            not repeated,
            f"{len(repeated)} reported twice: {', '.join(repeated)}" if repeated else "none twice",
        ),
        Goal(
            "two processes send no more status requests per job than one",
            ratio(two_status, one_status) <= 1.0,
            f"{two_status:.3f} against {one_status:.3f}, {times(two_status, one_status)}",
        ),
        Goal(
            f"both processes together within the account's rate ({RATE:g}/s + burst {BURST})",
            two_peak <= limit,
            f"peak {two_peak} requests in a second, {times(two_peak, limit)} of {limit:g}",
        ),
        Goal(
            f"a killed process's jobs taken over within a lease and a round ({bound:g} s)",
            every <= bound,
            f"median {every:.2f} s, {times(every, bound)}",
        ),
    ]
    notes = [
        f"{jobs} prompts over {channels} channels, one member each, arriving evenly over "
        f"{feed_seconds:g} s; {PROMPT_SECONDS:g} s a prompt at the emulator (real time, ±20 %); "
        f"the account holds 1,000 older prompts",
        f"jobs/s = jobs ÷ (first arrival to last delivered); medians of {repeats} interleaved "
        "runs, each on a fresh PostgreSQL schema and a fresh emulator; peak = the most API "
        "requests the emulator received in any 1 s, all processes together",
        f"each process: ASTRIA_REQUESTS_PER_SECOND={RATE:g} (its limiter's burst {BURST}), "
        f"LEASE_SECONDS={LEASE:g} (a round at least every {ROUND:g} s), MAX_JOBS_IN_FLIGHT=50 "
        "counted across processes",
        f"takeover: {kills} SIGKILLs of a process holding a generating prompt; its jobs count "
        "as taken once the survivor holds them (or has finished and handed them back); every "
        "prompt then delivered once, each made once at Astria",
        "÷ one: against the one-process medians; delivered by / channels by: per process "
        "(channels sampled from "
        "the leases every 0.2 s); a process whose creates keep finishing starts its next "
        "round at once and claims the new arrivals, while an idle one waits up to a round, so "
        "the second process may be left little or nothing",
        f"jobs/s two ÷ one {fmt(ratio(two_rate, one_rate))}; status/job two ÷ one "
        f"{fmt(ratio(two_status, one_status), 3)}",
    ]
    return report("Several processes on PostgreSQL", [table, kill_table], goals, notes)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__ or "", argv)
    base = database_url()
    if base is None:
        print(
            "bench.processes: skipped: set TEST_DATABASE_URL (or DATABASE_URL) to a PostgreSQL "
            "database this may make schemas in, e.g. "
            "TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test",
            flush=True,
        )
        return 0
    with work_dir(args.dir, "processes") as folder:
        return asyncio.run(run_all(folder, base, args.quick))


if __name__ == "__main__":
    raise SystemExit(main())
