"""Restart with 10,000 unfinished jobs: time from process start to every job scheduled, the
background recovery after it, and the process's peak resident memory. Baseline: the same
process on an empty database.

"Scheduled" is what `Tracker.run()` has done before its first wait: `start()` (every job
at Astria has its next check; creates that were in flight are handed to background
recovery) and the first round (every queued job has its place in the queue). The jobs at
Astria were submitted just before the "crash", so none is due in that round: its polling
is the tracker's steady work, measured by `bench.requests_per_job`.

The database is built with fast SQL (one transaction); the emulator runs in this process,
the bot in a child (`bench.restart_process`) whose peak RSS the kernel reports.

    .venv/bin/python -m bench.restart [--quick]
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    KEY,
    MB,
    Goal,
    Measured,
    Table,
    fmt,
    mb,
    median,
    parse_args,
    python_module,
    ratio,
    report,
    run_measured,
    times,
    work_dir,
)
from bench.rig import BRANCH, CHANNEL, GUILD, IMAGE_MC, PROFILE, TUNE_MC, settings_for, small_photo
from bot.offline.emulator import Emulator, EmulatorConfig
from bot.store import Store

GALLERY_SD15 = 690204  # the shared tune's Astria id: the emulator's public sd15 base
LOOKUP_WAIT = 0.2  # ASTRIA_LOOKUP_WAIT_SECONDS for the run (60 s in production)
HISTORY = 20_000  # finished prompts behind the unfinished ones, as a live database has
MEMBERS = 2_000
GOAL_SECONDS = 2.0
GOAL_RSS = 150 * MB


@dataclass(frozen=True)
class Mix:
    """How many unfinished jobs of each kind and state the database holds."""

    name: str
    prompts_generating: int = 0
    tunes_training: int = 0
    prompts_queued: int = 0
    tunes_queued: int = 0
    prompts_submitting: int = 0
    tunes_submitting: int = 0
    history: int = 0

    @property
    def total(self) -> int:
        return (
            self.prompts_generating
            + self.tunes_training
            + self.prompts_queued
            + self.tunes_queued
            + self.prompts_submitting
            + self.tunes_submitting
        )

    @property
    def at_astria(self) -> int:
        return self.prompts_generating + self.tunes_training

    @property
    def queued(self) -> int:
        return self.prompts_queued + self.tunes_queued

    @property
    def submitting(self) -> int:
        return self.prompts_submitting + self.tunes_submitting


def mixes(scale: int) -> list[Mix]:
    """The baseline, then `scale` unfinished jobs in two shapes."""
    k = scale // 100
    return [
        Mix("empty database (baseline)"),
        # An operator raised MAX_JOBS_IN_FLIGHT: most jobs are at Astria.
        Mix(
            f"{scale:,} jobs, most at Astria",
            prompts_generating=60 * k,
            tunes_training=5 * k - 20,
            prompts_queued=34 * k,
            tunes_queued=k,
            prompts_submitting=16,
            tunes_submitting=4,
            history=HISTORY,
        ),
        # Production caps: 50 in flight, the rest waiting in the queue.
        Mix(
            f"{scale:,} jobs, production caps",
            prompts_generating=40,
            tunes_training=6,
            prompts_queued=scale - 200,
            tunes_queued=200 - 50,
            prompts_submitting=3,
            tunes_submitting=1,
            history=HISTORY,
        ),
    ]


# ---------------------------------------------------------------------- the database


def ms(moment: float) -> int:
    return int(moment * 1000)


async def build_database(path: Path, photos: Path, mix: Mix) -> None:
    """Migrate with the store itself, then write the rows in one SQL transaction, as
    consistent as the store would have left them (each job with its reservation)."""
    store = await Store.open(path, settings=settings_for(database_path=path))
    await store.close()
    rng = random.Random(4)
    now = time.time()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        writer = _Writer(conn, rng, now, photos)
        conn.execute(
            "INSERT OR REPLACE INTO account_balance (id, balance_mc, read_at_ms) VALUES (1, ?, ?)",
            (10**12, ms(now - 60)),
        )
        shared = writer.tune("ready", astria_id=GALLERY_SD15, shared=True)
        for _ in range(mix.history):
            writer.prompt(shared, "delivered", astria_id=writer.next_astria(), age=86400)
        for _ in range(mix.tunes_training):
            writer.tune("training", astria_id=writer.next_astria())
        for _ in range(mix.prompts_generating):
            writer.prompt(shared, "generating", astria_id=writer.next_astria())
        for _ in range(mix.tunes_submitting):
            writer.tune("submitting")
        for _ in range(mix.prompts_submitting):
            writer.prompt(shared, "submitting")
        for _ in range(mix.tunes_queued):
            writer.tune("queued")
        for _ in range(mix.prompts_queued):
            writer.prompt(shared, "queued")
        conn.execute("COMMIT")
    finally:
        conn.close()


class _Writer:
    """Rows for tunes, prompts and their ledger entries, with times around `now`."""

    def __init__(self, conn: sqlite3.Connection, rng: random.Random, now: float, photos: Path):
        self.conn = conn
        self.rng = rng
        self.now = now
        self.photos = photos
        self.astria_id = 50_000_000
        self.jobs = 0

    def next_astria(self) -> int:
        self.astria_id += 1
        return self.astria_id

    def _owner(self) -> int:
        return 1000 + self.rng.randrange(MEMBERS)

    def _reserve(self, job: str, owner: int, amount: int, at: int, settled: bool) -> None:
        reserve_id = self.conn.execute(
            "INSERT INTO ledger (kind, guild_id, user_id, job, amount_mc, at_ms, period_at_ms,"
            " actor_id) VALUES ('reserve', ?, ?, ?, ?, ?, ?, ?)",
            (GUILD, owner, job, amount, at, at, owner),
        ).lastrowid
        if settled:
            self.conn.execute(
                "INSERT INTO ledger (kind, guild_id, user_id, job, amount_mc, cost_mc,"
                " reserve_id, at_ms, period_at_ms) VALUES ('settle', ?, ?, ?, 0, ?, ?, ?, ?)",
                (GUILD, owner, job, amount, reserve_id, at + 20_000, at),
            )

    def tune(self, state: str, *, astria_id: int | None = None, shared: bool = False) -> int:
        self.jobs += 1
        owner = self._owner()
        created = ms(self.now - 600 if state in ("training", "ready") else self.now - 1)
        eta = ms(self.now + 600) if state == "training" else None
        paths: list[str] = []
        if state in ("queued", "submitting"):
            for n in range(4):
                path = self.photos / f"tune-{self.jobs}-{n}.jpg"
                path.write_bytes(small_photo(n))
                paths.append(str(path))
        name = f"tune {self.jobs}"
        tune_id = self.conn.execute(
            "INSERT INTO tunes (title, owner_id, guild_id, channel_id, name, name_key,"
            " subject_class, profile, branch, state, astria_id, photo_paths, eta_ms, shared,"
            " created_at_ms, updated_at_ms, submitted_at_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, 'man', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(uuid.uuid4()),
                owner,
                GUILD,
                CHANNEL,
                name,
                name,
                PROFILE,
                BRANCH,
                state,
                astria_id,
                json.dumps(paths),
                eta,
                int(shared),
                created,
                created,
                created if astria_id else None,
            ),
        ).lastrowid
        assert tune_id is not None
        self._reserve(f"tune:{tune_id}", owner, TUNE_MC, created, settled=state == "ready")
        return tune_id

    def prompt(
        self, tune_id: int, state: str, *, astria_id: int | None = None, age: float = 0.0
    ) -> None:
        self.jobs += 1
        owner = self._owner()
        # Jobs at Astria were submitted in the last 3 s before the crash: none is due yet.
        created = ms(self.now - age - self.rng.uniform(0, 3))
        text = f"sks man, portrait {self.jobs}"
        prompt_id = self.conn.execute(
            "INSERT INTO prompts (owner_id, guild_id, channel_id, tune_id, user_text,"
            " final_text, seed, num_images, astria_id, state, created_at_ms, updated_at_ms,"
            " submitted_at_ms, target_tune_id) VALUES (?, ?, ?, ?, ?, ?, ?, 2, ?, ?, ?, ?, ?, ?)",
            (
                owner,
                GUILD,
                CHANNEL,
                tune_id,
                text,
                text,
                self.rng.randrange(1, 2**31),
                astria_id,
                state,
                created,
                created,
                created if astria_id else None,
                GALLERY_SD15,  # the shared tune's own id: where a live store says it goes
            ),
        ).lastrowid
        settled = state == "delivered"
        self._reserve(f"prompt:{prompt_id}", owner, 2 * IMAGE_MC, created, settled=settled)


# ---------------------------------------------------------------------- one restart


@dataclass(frozen=True)
class Restart:
    """One start of the process on one freshly built database."""

    mix: Mix
    child: Measured
    figures: dict[str, Any]

    def mark(self, name: str) -> float:
        return float(self.figures["marks"][name])

    def problems(self) -> list[str]:
        """Jobs the restart did not schedule, or a recovery that did not finish."""
        f, mix = self.figures, self.mix
        found: list[str] = []
        if f["followed"] != mix.at_astria + mix.submitting:
            found.append(f"{f['followed']} followed, not {mix.at_astria + mix.submitting}")
        if f["queued_with_position"] != mix.queued or f["queued"] != mix.queued:
            found.append(f"{f['queued_with_position']} of {mix.queued} queued jobs placed")
        if f["still_submitting"]:
            found.append(f"{f['still_submitting']} creates not recovered")
        if f["ends_reported"]:
            found.append(f"{f['ends_reported']} jobs ended (none should, in this window)")
        return found


@dataclass(frozen=True)
class Repeated:
    """The same restart a few times (2 noisy cores): medians of the times, the largest
    peak memory."""

    mix: Mix
    runs: list[Restart]

    def mark(self, name: str) -> float:
        return median([r.mark(name) for r in self.runs])

    def phase(self, end: str, start: str) -> float:
        return median([r.mark(end) - r.mark(start) for r in self.runs])

    @property
    def scheduled(self) -> float:
        return self.mark("scheduled")

    @property
    def scheduled_range(self) -> str:
        values = [r.mark("scheduled") for r in self.runs]
        return f"{min(values):.2f}–{max(values):.2f} s"

    @property
    def peak_rss(self) -> int:
        return max(r.child.peak_rss for r in self.runs)

    def problems(self) -> list[str]:
        return sorted({p for r in self.runs for p in r.problems()})


async def restart(folder: Path, mix: Mix, emulator: Emulator) -> Restart:
    run = folder / uuid.uuid4().hex[:8]
    photos = run / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    database = run / "bot.sqlite3"
    await build_database(database, photos, mix)
    args = python_module(
        "bench.restart_process",
        "--database",
        str(database),
        "--astria",
        emulator.base_url,
        "--lookup-wait",
        str(LOOKUP_WAIT),
        "--spawned-at",
        str(time.time()),
    )
    child = await asyncio.to_thread(run_measured, args, timeout=300)
    if child.returncode != 0:
        raise RuntimeError(f"the restarted process failed:\n{child.stderr[-3000:]}")
    return Restart(mix, child, child.last_json())


async def run_all(folder: Path, quick: bool) -> int:
    scale = 1_000 if quick else 10_000
    repeats = 1 if quick else 3
    config = EmulatorConfig(api_key=KEY, foreign_prompts=1000, balance_mc=10**12)
    emulator = Emulator(config)  # wall-clock time: the child runs on real time
    await emulator.start()
    try:
        results: list[Repeated] = []
        for mix in mixes(scale):
            # Interleaving would be fairer still, but each run needs its own fresh database.
            runs = [await restart(folder, mix, emulator) for _ in range(repeats)]
            results.append(Repeated(mix, runs))
    finally:
        await emulator.stop()
    base = results[0]
    table = Table(
        [
            "database",
            "imports",
            "store open",
            "start()",
            "1st round",
            "scheduled",
            "(range)",
            "÷ baseline",
            "all recovered",
            "peak RSS",
            "÷ baseline",
        ]
    )
    for r in results:
        table.add(
            r.mix.name,
            f"{r.mark('imported'):.2f} s",
            f"{r.phase('store_open', 'imported'):.2f} s",
            f"{r.phase('started', 'store_open'):.2f} s",
            f"{r.phase('scheduled', 'started'):.2f} s",
            f"{r.scheduled:.2f} s",
            r.scheduled_range,
            times(r.scheduled, base.scheduled),
            f"{r.mark('recovered'):.2f} s",
            mb(r.peak_rss),
            times(r.peak_rss, base.peak_rss),
        )
    goals: list[Goal] = []
    for r in results[1:]:
        problems = r.problems()
        goals.append(
            Goal(
                f"{r.mix.name}: every job scheduled in under {GOAL_SECONDS:g} s from process start",
                r.scheduled < GOAL_SECONDS and not problems,
                f"median {r.scheduled:.2f} s" + (f"; {'; '.join(problems)}" if problems else ""),
            )
        )
        goals.append(
            Goal(
                f"{r.mix.name}: peak resident memory under {mb(GOAL_RSS)}",
                r.peak_rss < GOAL_RSS,
                f"{mb(r.peak_rss)}, {mb(r.peak_rss - base.peak_rss)} over the empty database",
            )
        )
    most, capped = results[1].mix, results[2].mix
    notes = [
        f"medians of {repeats} starts each, every one on a freshly built database; times from "
        "the parent's spawn of the process; imports include discord.py (bot.app), as "
        "`astria-bot run` loads it",
        f"at Astria / queued / submitting: {most.at_astria:,} / {most.queued:,} / "
        f"{most.submitting} and {capped.at_astria} / {capped.queued:,} / {capped.submitting}; "
        f"both over {HISTORY:,} finished prompts",
        "start() = Tracker.start(); 1st round = poll_once(wait=False), which places the "
        "queued jobs; scheduled = both done",
        f"all recovered = the creates that were in flight looked up twice and re-posted, in "
        f"the background from start() on (lookup wait {LOOKUP_WAIT:g} s here; "
        "ASTRIA_LOOKUP_WAIT_SECONDS is 60 s in production, and recovery takes that long)",
        f"scheduled ÷ baseline {fmt(ratio(results[1].scheduled, base.scheduled))}: the "
        "baseline is interpreter start and imports",
    ]
    return report("Restart with unfinished jobs", [table], goals, notes)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__ or "", argv)
    with work_dir(args.dir, "restart") as folder:
        return asyncio.run(run_all(folder, args.quick))


if __name__ == "__main__":
    raise SystemExit(main())
