"""Astria requests per completed job: the tracker (adaptive schedule, list pages) against
the naive loop that GETs each job every 5 s (what Astria's own CLI does).

Both run on a fresh emulator with the same seed, on a manual clock stepped 5 s a round, so
durations are realistic (prompts 20 s, tunes 15 min, ±20 % jitter) yet nothing sleeps. The
account holds 1,000 older prompts and 200 older tunes, so our jobs are not alone on the
list pages. Requests are counted by the emulator, per route.

    .venv/bin/python -m bench.requests_per_job [--quick]
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp

from bench.common import (
    KEY,
    Goal,
    Stopwatch,
    Table,
    fmt,
    parse_args,
    ratio,
    report,
    times,
    work_dir,
)
from bench.rig import (
    CHANNEL,
    GUILD,
    PROFILE,
    TUNE_MC,
    CountingDelivery,
    Requests,
    client_for,
    manual_now,
    queue_prompt,
    route_counts,
    settings_for,
    write_photos,
)
from bot.astria import AstriaClient, PromptRequest, TuneRequest
from bot.jobs import EventKind, Tracker, TrackerConfig
from bot.offline.emulator import Emulator, EmulatorConfig, ManualClock
from bot.store import Store, TuneRecord, TuneState

STEP = 5.0  # seconds of emulator time per round, as the naive loop polls
PROMPT_SECONDS = 20.0  # sd15 prompt, and the profile's expected duration
TRAIN_SECONDS = 900.0  # a tune trains about 15 minutes
JITTER = 0.2
GALLERY_SD15 = 690204  # the naive loop prompts the public base tune: no training needed
NAIVE_CONCURRENCY = 16  # the naive loop's GETs overlap; the count is the same either way
MAX_ROUNDS = 20_000


def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(
        api_key=KEY,
        train_seconds=TRAIN_SECONDS,
        prompt_seconds=PROMPT_SECONDS,
        jitter=JITTER,
        seed=8,
        foreign_tunes=200,
        foreign_prompts=1000,
        balance_mc=10**12,
    )


@dataclass(frozen=True)
class Run:
    """One way of following `jobs` jobs to their end."""

    method: str
    kind: str
    jobs: int
    gap: float  # seconds between arrivals; 0 = all at once
    requests: Requests
    virtual_seconds: float
    wall_seconds: float

    def per_job(self, count: int) -> float:
        return count / self.jobs


# ---------------------------------------------------------------------- the tracker


def arrivals(jobs: int, gap: float) -> deque[float]:
    """When each job arrives, in seconds from the start: all at once, or one every `gap`."""
    return deque(n * gap for n in range(jobs))


async def tracker_run(
    folder: Path, kind: str, jobs: int, *, max_in_flight: int, gap: float = 0.0
) -> Run:
    clock = ManualClock()
    now = manual_now(clock)
    emulator = Emulator(emulator_config(), clock=clock)
    await emulator.start()
    database = folder / f"tracker-{kind}-{jobs}-{max_in_flight}-{gap:g}.sqlite3"
    settings = settings_for(
        database_path=database,
        sd15_prompt_seconds=PROMPT_SECONDS,
        max_jobs_in_flight=max_in_flight,
    )
    store = await Store.open(database, settings=settings, clock=now)
    try:
        await store.account.record_balance(
            emulator.balance_mc, read_at=now() - timedelta(seconds=1)
        )
        async with aiohttp.ClientSession() as session:
            client = client_for(session, emulator.base_url, now=now)
            delivery = CountingDelivery()
            config = TrackerConfig.from_settings(settings)
            tracker = Tracker(store, client, delivery, config, clock=now, monotonic=clock.now)
            try:
                make: Callable[[int], Awaitable[object]]
                if kind == "prompt":
                    tune = await _ready_tune(store, tracker, emulator, folder, owner=1)
                    await store.tunes.set_shared(tune.id, True)
                    end = EventKind.DONE

                    async def make(n: int) -> object:
                        return await queue_prompt(store, tune, n)

                else:
                    end = EventKind.READY

                    async def make(n: int) -> object:
                        return await _tune(store, folder, owner=1000 + n)

                expected = delivery.count(end) + jobs
                before = route_counts(emulator)
                started_at = clock.now()
                due = arrivals(jobs, gap)
                made = 0
                watch = Stopwatch()
                for _ in range(MAX_ROUNDS):
                    while due and clock.now() - started_at >= due[0]:
                        due.popleft()
                        await make(made)
                        made += 1
                    await tracker.poll_once()
                    if not due and delivery.count(end) >= expected:
                        break
                    await emulator.advance(STEP)
                else:
                    raise RuntimeError(f"{jobs} {kind}s not done after {MAX_ROUNDS} rounds")
                wall = watch.seconds()
                requests = Requests.between(before, route_counts(emulator))
                if delivery.repeats:
                    raise RuntimeError(f"{delivery.repeats} ends were reported twice")
            finally:
                await tracker.stop()
    finally:
        await store.close()
        await emulator.stop()
    label = f"tracker (in flight ≤ {max_in_flight})"
    return Run(label, kind, jobs, gap, requests, clock.now() - started_at, wall)


async def _ready_tune(
    store: Store, tracker: Tracker, emulator: Emulator, folder: Path, owner: int
) -> TuneRecord:
    tune = await _tune(store, folder, owner)
    for _ in range(200):
        await emulator.advance(60)
        await tracker.poll_once()
        current = await store.tunes.get(tune.id)
        if current is not None and current.state == TuneState.READY:
            return current
    raise RuntimeError("the setup tune never finished training")


async def _tune(store: Store, folder: Path, owner: int) -> TuneRecord:
    created = await store.tunes.create(
        owner_id=owner,
        guild_id=GUILD,
        channel_id=CHANNEL,
        name="me",
        subject_class="man",
        profile=PROFILE,
        branch="sd15",
        photo_paths=write_photos(folder / "photos", f"{owner}-{uuid.uuid4().hex[:8]}"),
        price_mc=TUNE_MC,
    )
    if not isinstance(created, TuneRecord):
        raise RuntimeError(f"tune refused: {created}")
    return created


# ---------------------------------------------------------------------- the naive loop


async def naive_run(folder: Path, kind: str, jobs: int, *, gap: float = 0.0) -> Run:
    """Create each job as it arrives, then GET each unfinished one every 5 s until done."""
    clock = ManualClock()
    now = manual_now(clock)
    emulator = Emulator(emulator_config(), clock=clock)
    await emulator.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = client_for(session, emulator.base_url, now=now)
            if kind == "prompt":

                async def make(n: int) -> int:
                    return await _naive_prompt(client, n)

                done = _prompt_done(client)
            else:

                async def make(n: int) -> int:
                    return await _naive_tune(client, folder, n)

                done = _tune_done(client)
            before = route_counts(emulator)
            started_at = clock.now()
            watch = Stopwatch()
            pending: set[int] = set()
            slots = asyncio.Semaphore(NAIVE_CONCURRENCY)

            async def look(astria_id: int) -> None:
                async with slots:
                    if await done(astria_id):
                        pending.discard(astria_id)

            due = arrivals(jobs, gap)
            made = 0
            for _ in range(MAX_ROUNDS):
                while due and clock.now() - started_at >= due[0]:
                    due.popleft()
                    pending.add(await make(made))
                    made += 1
                if not due and not pending:
                    break
                await emulator.advance(STEP)
                await asyncio.gather(*(look(i) for i in list(pending)))
            else:
                raise RuntimeError(f"naive: {len(pending)} {kind}s not done")
            wall = watch.seconds()
            requests = Requests.between(before, route_counts(emulator))
    finally:
        await emulator.stop()
    return Run("naive GET every 5 s", kind, jobs, gap, requests, clock.now() - started_at, wall)


async def _naive_prompt(client: AstriaClient, n: int) -> int:
    request = PromptRequest(text=f"sks man, portrait number {n}", num_images=2, seed=n + 1)
    return (await client.create_prompt(GALLERY_SD15, request)).id


async def _naive_tune(client: AstriaClient, folder: Path, n: int) -> int:
    paths = write_photos(folder / "naive-photos", f"naive-{n}")
    request = TuneRequest(
        title=str(uuid.uuid4()), name="man", images=[Path(p) for p in paths], branch="sd15"
    )
    return (await client.create_tune(request)).id


def _prompt_done(client: AstriaClient) -> Callable[[int], Awaitable[bool]]:
    async def done(astria_id: int) -> bool:
        prompt = await client.get_prompt(astria_id)
        return prompt.is_done or prompt.is_failed

    return done


def _tune_done(client: AstriaClient) -> Callable[[int], Awaitable[bool]]:
    async def done(astria_id: int) -> bool:
        return (await client.get_tune(astria_id)).is_trained

    return done


# ---------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Scenario:
    kind: str
    jobs: int
    caps: tuple[int, ...]
    gap: float = 0.0

    @property
    def label(self) -> str:
        arrive = "at once" if self.gap == 0 else f"one every {self.gap:g} s"
        return f"{self.jobs:,} {self.kind}s, {arrive}"


def scenarios(quick: bool) -> list[Scenario]:
    sizes = (10, 100) if quick else (10, 100, 1000)
    plans = [Scenario("prompt", n, (50,) if n <= 50 else (50, n)) for n in sizes]
    # Members do not all press enter in the same second: the same jobs, arriving steadily.
    plans += [Scenario("prompt", n, (50,), gap=1.0) for n in sizes if n >= 100]
    plans.append(Scenario("tune", 5 if quick else 10, (50,)))
    return plans


def _row(table: Table, scenario: Scenario, run: Run, naive: Run) -> None:
    r = run.requests
    table.add(
        scenario.label,
        run.method,
        fmt(run.per_job(r.creates)),
        fmt(run.per_job(r.status), 3),
        fmt(run.per_job(r.other), 3),
        fmt(run.per_job(r.total), 3),
        times(naive.requests.status, r.status) if run is not naive else "×1 (baseline)",
        f"{run.virtual_seconds:,.0f} s",
        f"{run.wall_seconds:.1f} s",
    )


async def run_all(folder: Path, quick: bool) -> int:
    table = Table(
        [
            "jobs",
            "method",
            "creates/job",
            "status/job",
            "other/job",
            "total/job",
            "status: naive ÷ this",
            "emulator time",
            "wall",
        ]
    )
    results: dict[tuple[Scenario, int], Run] = {}
    naives: dict[Scenario, Run] = {}
    for scenario in scenarios(quick):
        kind, jobs, gap = scenario.kind, scenario.jobs, scenario.gap
        naive = await naive_run(folder, kind, jobs, gap=gap)
        naives[scenario] = naive
        for cap in scenario.caps:
            run = await tracker_run(folder, kind, jobs, max_in_flight=cap, gap=gap)
            results[(scenario, cap)] = run
            _row(table, scenario, run, naive)
        _row(table, scenario, naive, naive)
        print(f"  measured {scenario.label}", flush=True)

    goals: list[Goal] = []
    for (scenario, cap), run in results.items():
        naive = naives[scenario]
        if scenario.kind != "prompt" or cap != 50:
            continue
        if scenario.jobs == 100:
            fewer = ratio(naive.requests.status, run.requests.status)
            goals.append(
                Goal(
                    f"{scenario.label}: at least 10 times fewer status requests than naive",
                    fewer >= 10,
                    f"×{fewer:.1f} ({run.per_job(run.requests.status):.3f} against "
                    f"{naive.per_job(naive.requests.status):.2f} a job)",
                )
            )
    for (scenario, cap), run in results.items():
        if scenario.kind == "prompt" and scenario.jobs == 1000:
            per_job = run.per_job(run.requests.status)
            goals.append(
                Goal(
                    f"{scenario.label}, in flight ≤ {cap}: under 1.2 status requests a job",
                    per_job < 1.2,
                    f"{per_job:.3f}",
                )
            )
    notes = [
        "status = GET /tunes, /tunes/{id}, /prompts, /prompts/{id} and the per-tune prompt "
        "routes; other = GET /users (the balance, re-read after paid creates)",
        "creates are one a job both ways, so the comparison is on status requests",
        "in flight ≤ 50 is the production default (MAX_JOBS_IN_FLIGHT); in flight ≤ N lets "
        "every job be at Astria at once (the deepest list paging)",
        f"prompts take {PROMPT_SECONDS:g} s and tunes {TRAIN_SECONDS:g} s of emulator time, "
        f"±{JITTER:.0%}; one round = {STEP:g} s; emulator time = first arrival to last end",
        "the account also holds 1,000 older prompts and 200 older tunes (not ours)",
    ]
    if quick:
        notes.append("--quick: 1,000 jobs not run, so their goal is not checked")
    return report("Astria requests per completed job", [table], goals, notes)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__ or "", argv)
    with work_dir(args.dir, "requests_per_job") as folder:
        return asyncio.run(run_all(folder, args.quick))


if __name__ == "__main__":
    raise SystemExit(main())
