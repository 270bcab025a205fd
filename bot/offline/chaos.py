"""The chaos run (`make chaos`): many members, a faulty Astria and a bot killed with SIGKILL.

Members of one server (20 by default) each train a tune, then send `/imagine` prompts with
it, 200 jobs in all, on a paid branch of the emulator. Meanwhile the emulator answers some
requests with 500s, 429s, 504s after the object was created, dropped connections (before
and after creating) and latency, some of it past the bot's request timeout (balance reads,
status lists and lookups included); a few prompts
fail at Astria by design (and must end with their credit released); and the bot process is
killed with SIGKILL and started again on the same database three times while jobs are in
flight. Commands sent while it is down cannot be answered; a member whose command never got
an answer does not know whether it was taken, so the count of accepted jobs comes from the
bot's database.

At the end, with everything drained and the bot stopped, it prints the figures and checks
the invariants: no accepted job lost, no Astria object made twice for one job, no job's
images posted twice, and the ledger equal to what the emulator charged and to the change
of its balance, to the millicent.

    python -m bot.offline.chaos [--short] [--seed N] [--no-idempotency] [--reading NAME]
                                [--store-faults] [--procs 2] [--output DIR]

`--procs 2` runs two bot processes on one fresh PostgreSQL schema (DATABASE_URL, else
TEST_DATABASE_URL; refused without one), each holding one of two shards, with a server on
each shard and the members spread over several channels in them (a channel is worked by
one process at a time); each kill hits one of the two at random (seeded; with two kills or
more, both), and the other takes its jobs over once their leases run out: the figures also
say how long each takeover took. The metrics comparison is one process's, so it is off.

`--store-faults` also makes the bot's own database fail a share of its writes (an I/O
error at commit, nothing written; the test-only CHAOS_STORE_FAULT_RATE setting).

`--short` is the form CI runs (tests/e2e/test_chaos.py): 30 jobs from 6 members, one kill.
Runs are reproducible in what members do and which requests fail (the emulator's and the
members' random generators are seeded), not in timing: the seed is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import functools
import json
import logging
import random
import re
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from bot.astria.client import IMAGE_ROUTE
from bot.config import offline_postgres_url
from bot.offline.demo import demo_photo
from bot.offline.emulator import READINGS, Fault
from bot.offline.emulator.faults import RequestRecord
from bot.offline.fakecord import DriverError, FakeDiscordConfig, Member, Message
from bot.offline.fakecord.state import Channel, Guild
from bot.offline.stage import BOT_TOKEN, Stage, StageError, StageOptions
from bot.rules.credits import format_mc
from bot.store import (
    JobRef,
    LedgerKind,
    PromptRecord,
    PromptState,
    Store,
    TuneRecord,
    TuneState,
)
from bot.store.errors import StoreError
from bot.store.ledger import OPERATOR_GUILD
from bot.store.postgres import describe, drop_schema, fresh_schema

PROMPT_CREATE = "POST /tunes/{tune_id}/prompts"
TUNE_CREATE = "POST /tunes"
FAIL_MARKER = "EMULATOR_FAIL"  # the emulator fails a prompt whose text carries it
REROLL = re.compile(r"^job:reroll:(\d+)$")
REQUEST_TIMEOUT = 3.0  # the bot's Astria request timeout in the run; some latency exceeds it

# (fault, probability, route or None for every API route); the first rule that fires wins.
FAULTS: tuple[tuple[Fault, float, str | None], ...] = (
    (Fault("http_504_after"), 0.12, TUNE_CREATE),
    (Fault("http_504_after"), 0.08, PROMPT_CREATE),
    (Fault("drop_after"), 0.04, PROMPT_CREATE),
    # Past the bot's timeout: it cannot know whether the prompt was made (the emulator
    # sleeps before reading the request, so here it never is).
    (Fault("latency", delay=REQUEST_TIMEOUT + 0.5), 0.02, PROMPT_CREATE),
    (Fault("http_500"), 0.03, None),
    (Fault("http_429", retry_after=0.5), 0.03, None),
    (Fault("drop"), 0.02, None),
    (Fault("latency", delay=0.4), 0.05, None),
)

# The bot's settings for the run, beyond the stage's short polling and retry times.
BOT_SETTINGS: dict[str, str] = {
    "ASTRIA_REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT),
    "ASTRIA_RETRY_MAX_ATTEMPTS": "6",
    "MAX_JOBS_IN_FLIGHT": "24",  # below 20 members x 4: the global queue is used too
    "MAX_CONCURRENT_CREATES": "4",
    "MAX_WAITING_PER_MEMBER": "50",  # each member sends 10; the cap is not what is tested
}

PROGRESS = ("⏳", "⚙️")  # how bot/ui/text.progress_line starts an unfinished status
LOST_ANSWERS = frozenset({"http_504_after", "drop_after"})
INTAKE_DELAY = 0.3  # with an intake kill: seconds per attachment download
STORE_FAULT_RATE = 0.1  # with --store-faults: the share of the bot's writes that fail
STORE_FAULT_LOGGED = "a write fails on purpose"  # bot/store/db.py logs each one
# bot/jobs/tracker.py logs it when a live process finds another took over a job it held
# (its lease ran out while it still worked it): a dead process never says it.
LEASE_LOST_LOGGED = "another process took it over"
IN_FLIGHT = frozenset({"submitting", "training", "generating", "stuck"})


@dataclass(frozen=True)
class ChaosPlan:
    """What the run does. The defaults are the full run; `short()` is the CI form."""

    members: int = 20
    jobs: int = 200  # one tune per member, the rest prompts
    kills: int = 3
    seed: int = 7
    idempotency: bool = True
    reading: str = "ours"  # a name in READINGS: how Astria behaves where its docs are silent
    fail_share: float = 0.05  # prompts Astria fails on purpose (their credit is released)
    pace: tuple[float, float] = (0.3, 1.5)  # seconds between a member's commands
    answer_timeout: float = 12.0  # a command unanswered this long died with the bot
    ready_timeout: float = 120.0  # a member waits this long for their tune
    drain_timeout: float = 240.0  # after the last command, for every job to end
    balance_mc: int = 50_000_000
    store_faults: bool = False  # the bot's database fails a write now and then
    # An extra kill while a member's form photos are being read (slow attachments): no
    # photo may be left on disk at the end.
    intake_kill: bool = False
    # The bot serves its Prometheus metrics on loopback; after the drain, while it still
    # runs, they are scraped and checked against the emulator's and the fake's own counts.
    metrics: bool = True
    log_format: str = "text"  # the bot's LOG_FORMAT: every line is checked to parse
    # Bot processes on one PostgreSQL (1: the one process, on SQLite unless told); with
    # more, one shard and one server each, members spread over `channels` per server.
    procs: int = 1
    channels: int = 2
    lease_seconds: float = 4.0  # LEASE_SECONDS with several processes: takeovers fit a run

    @classmethod
    def short(cls, seed: int = 7) -> ChaosPlan:
        return cls(
            members=6,
            jobs=30,
            kills=1,
            seed=seed,
            pace=(0.2, 0.8),
            ready_timeout=90.0,
            drain_timeout=120.0,
        )

    @property
    def prompts(self) -> int:
        return self.jobs - self.members

    def kill_points(self) -> list[int]:
        """After how many issued jobs each kill comes: with three or more, the first while
        tunes are being submitted and trained; the others spread over the prompts."""
        points: list[int] = []
        later = self.kills
        if self.kills >= 3:
            points.append(max(1, self.members * 4 // 5))
            later -= 1
        for k in range(1, later + 1):
            points.append(self.members + self.prompts * k // (later + 1))
        return points

    def victims(self) -> list[int]:
        """Which process each kill hits (0 with one): at random, seeded; with as many
        kills as processes or more, each process at least once."""
        rng = random.Random(f"chaos:{self.seed}:victims")
        if self.procs <= 1:
            return [0] * self.kills
        every = list(range(self.procs)) if self.kills >= self.procs else []
        rest = [rng.randrange(self.procs) for _ in range(self.kills - len(every))]
        order = every + rest
        rng.shuffle(order)
        return order


@dataclass
class Kill:
    number: int
    at: float  # seconds into the run
    states: dict[str, int]  # unfinished jobs in the database right after the kill
    down: float  # seconds the bot stayed down
    lost_create: str | None = None  # killed right after Astria lost a create's answer
    slot: int = 0  # which process (by shard) was killed
    process: str = ""  # with several processes: the one killed (its PROCESS_ID)
    held: int = 0  # jobs it held a lease on when it died (unfinished or unreported)
    held_by_others: int = 0  # such jobs the live processes held then
    # Seconds from the kill until another process held the first of those jobs, and all.
    takeover_first: float | None = None
    takeover_all: float | None = None
    taken_by: tuple[str, ...] = ()

    @property
    def in_flight(self) -> int:
        """Jobs at Astria or being created when the bot died (queued ones not counted)."""
        return sum(n for state, n in self.states.items() if state in IN_FLIGHT)


@dataclass
class LostJob:
    job: str
    state: str
    why: str


@dataclass
class ChaosReport:
    plan: ChaosPlan
    folder: Path
    issued: int = 0  # commands sent that the bot could have taken
    answered: int = 0  # answered "Training" / "Queued"
    unanswered: int = 0  # sent, never answered (the bot died with them)
    refusals: collections.Counter[str] = field(default_factory=collections.Counter)
    accepted_tunes: int = 0  # from the database
    accepted_prompts: int = 0
    delivered: int = 0
    undeliverable: int = 0
    failed_released: int = 0
    lost: list[LostJob] = field(default_factory=list)
    duplicates_at_astria: int = 0
    orphans_at_astria: int = 0  # Astria objects no job owns
    orphan_photos: int = 0  # photo files left on disk when every job has ended
    double_posts: int = 0  # a job's images posted more than once
    repeated_notices: int = 0  # a ready or failed line posted more than once
    stale_statuses: int = 0  # status messages still showing progress when all has ended
    settled_mc: int = 0
    absorbed_mc: int = 0  # what Astria kept for failed jobs: the operator's cost
    failed_charged: int = 0  # failed jobs that cost a member's budget anything
    charged_mc: int = 0
    balance_change_mc: int = 0
    open_reservations: int = 0
    audit: list[str] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    store_faults: int = 0  # the bot's writes failed on purpose (from its logs)
    astria_requests: int = 0
    discord_429s: int = 0
    # The scrape after the drain (the last process's counters, against what the emulator
    # and the fake saw since it started): requests compared, equal when they are.
    metrics_requests: int = 0
    metrics_429s: tuple[int, int] = (0, 0)  # (Astria's, Discord's) as the bot counted them
    metrics_retries: int = 0
    metrics_deliveries: int = 0  # observations in the delivery latency histogram
    secrets_in_logs: int = 0  # lines with the Astria key or the Discord token in them
    unparsed_log_lines: int = 0  # with LOG_FORMAT=json: lines that are not one JSON object
    drained: bool = False
    exit_code: int | None = None
    log_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)  # the run itself went wrong
    seconds: float = 0.0
    database: str = ""  # with several processes: the PostgreSQL schema (no password)
    # With several processes: how many jobs each (by shard, over its restarts) was seen
    # holding at some point (sampled twice a second; a job taken over counts for both).
    worked: dict[int, int] = field(default_factory=dict)
    leases_lost: int = 0  # jobs a live process found taken over (from its logs)

    @property
    def takeovers(self) -> list[float]:
        """Seconds until every job of a killed process was held by another, per kill of
        a process that held any."""
        return [k.takeover_all for k in self.kills if k.takeover_all is not None]

    @property
    def accepted(self) -> int:
        return self.accepted_tunes + self.accepted_prompts

    @property
    def ledger_difference_mc(self) -> int:
        """Booked (settled, plus what failed jobs cost the operator) minus charged, or
        minus the balance change if that differs more."""
        booked = self.settled_mc + self.absorbed_mc
        return max(booked - self.charged_mc, booked - self.balance_change_mc, key=abs)

    @property
    def killed_mid_flight(self) -> bool:
        return any(k.in_flight > 0 for k in self.kills)

    def problems(self) -> list[str]:
        found = list(self.failures)
        if self.lost:
            found.append(f"{len(self.lost)} accepted jobs lost")
        if self.duplicates_at_astria:
            found.append(f"{self.duplicates_at_astria} duplicate objects at Astria")
        if self.orphan_photos:
            found.append(f"{self.orphan_photos} photo files left on disk")
        if self.orphans_at_astria:
            found.append(f"{self.orphans_at_astria} Astria objects that no job owns")
        if self.double_posts:
            found.append(f"{self.double_posts} double image posts")
        if self.repeated_notices:
            found.append(f"{self.repeated_notices} repeated ready/failed notices")
        if self.ledger_difference_mc:
            found.append(f"the ledger is {self.ledger_difference_mc} mc off Astria's charges")
        if self.open_reservations:
            found.append(f"{self.open_reservations} reservations still open")
        if self.failed_charged:
            found.append(f"{self.failed_charged} failed jobs charged to a member's budget")
        found.extend(f"ledger audit: {line}" for line in self.audit)
        if not self.drained:
            found.append("jobs were still unfinished when the drain timed out")
        if self.exit_code not in (0, None):
            found.append(f"the bot exited with {self.exit_code} on SIGTERM")
        if len(self.kills) < self.plan.kills + int(self.plan.intake_kill):
            found.append(f"only {len(self.kills)} of {self.plan.kills} kills happened")
        if self.kills and not self.killed_mid_flight:
            found.append("no kill came while jobs were in flight")
        if self.accepted == 0:
            found.append("no job was accepted")
        if self.plan.store_faults and self.store_faults == 0:
            found.append("no store fault was injected")
        if self.secrets_in_logs:
            found.append(f"{self.secrets_in_logs} log lines carry a secret")
        if self.unparsed_log_lines:
            found.append(f"{self.unparsed_log_lines} log lines are not one JSON object")
        for kill in self.kills:
            if kill.held and kill.takeover_all is None:
                found.append(f"kill {kill.number}: {kill.process}'s jobs were never taken over")
        if self.leases_lost:
            found.append(f"{self.leases_lost} jobs taken over from a live process")
        if self.plan.procs > 1 and len({k.slot for k in self.kills}) < min(
            self.plan.procs, self.plan.kills
        ):
            found.append("the kills did not hit every process")
        if self.plan.metrics and self.drained and self.metrics_requests == 0:
            found.append("the metrics were not compared")
        return found

    def lines(self) -> list[str]:
        plan = self.plan
        faults = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items())) or "none"
        out = [
            "",
            f"Chaos run, seed {plan.seed}: {plan.members} members, {plan.jobs} jobs planned, "
            f"{plan.kills} kills, idempotency {'on' if plan.idempotency else 'off'}, "
            f"reading {plan.reading}{', store faults' if plan.store_faults else ''}"
            + (
                f", {plan.procs} processes on {self.database} (lease {plan.lease_seconds:g} s)"
                if plan.procs > 1
                else ""
            )
            + f" ({self.seconds:.0f} s)",
            f"  commands issued          {self.issued} (answered {self.answered}, "
            f"unanswered {self.unanswered}, refused {sum(self.refusals.values())})",
            f"  jobs accepted            {self.accepted} ({self.accepted_tunes} tunes, "
            f"{self.accepted_prompts} prompts; from the bot's database)",
            f"  delivered                {self.delivered}",
            f"  undeliverable            {self.undeliverable}",
            f"  failed with release      {self.failed_released}",
            f"  lost                     {len(self.lost)}",
            f"  duplicates at Astria     {self.duplicates_at_astria} "
            f"(objects no job owns: {self.orphans_at_astria}; photo files left: "
            f"{self.orphan_photos})",
            f"  double posts             {self.double_posts} "
            f"(repeated notices: {self.repeated_notices}; status messages left showing "
            f"progress: {self.stale_statuses})",
            f"  ledger difference        {self.ledger_difference_mc} mc (settled "
            f"{format_mc(self.settled_mc)}, kept by Astria for failed jobs "
            f"{format_mc(self.absorbed_mc)}, Astria charged {format_mc(self.charged_mc)}, "
            f"balance fell by {format_mc(self.balance_change_mc)}; open reservations "
            f"{self.open_reservations}; failed jobs charged to members "
            f"{self.failed_charged})",
        ]
        for kill in self.kills:
            states = ", ".join(f"{s} {n}" for s, n in sorted(kill.states.items())) or "none"
            out.append(
                f"  kill {kill.number} at {kill.at:5.1f} s    in flight {kill.in_flight} "
                f"(unfinished: {states}); down {kill.down:.1f} s"
                + (f"; right after a lost {kill.lost_create}" if kill.lost_create else "")
                + (
                    f"; {kill.process} held {kill.held} (the other {kill.held_by_others})"
                    if kill.process
                    else ""
                )
                + (
                    f", taken over in {kill.takeover_all:.1f} s (first {kill.takeover_first:.1f}"
                    f" s) by {', '.join(kill.taken_by)}"
                    if kill.takeover_all is not None and kill.takeover_first is not None
                    else ""
                )
            )
        if plan.procs > 1:
            shares = ", ".join(f"bot{slot} {n}" for slot, n in sorted(self.worked.items()))
            out.append(
                f"  jobs held per process    {shares or 'none seen'} (sampled); jobs a live "
                f"process lost to the other (its lease ran out): {self.leases_lost}"
            )
            times = self.takeovers
            out.append(
                f"  takeovers                {len(times)} (all of a dead process's jobs held by "
                f"another: median {statistics.median(times):.1f} s, max {max(times):.1f} s; "
                f"lease {plan.lease_seconds:g} s)"
                if times
                else "  takeovers                none (no killed process held a job)"
            )
        out.append(f"  faults injected          {faults} (of {self.astria_requests} requests)")
        if plan.store_faults:
            out.append(f"  store faults             {self.store_faults} failed writes in the bot")
        out.append(f"  Discord 429s             {self.discord_429s}")
        if plan.metrics:
            astria_429s, discord_429s = self.metrics_429s
            out.append(
                f"  metrics (last process)   {self.metrics_requests} Astria requests counted "
                f"as the emulator saw them; 429s from Astria {astria_429s}, from Discord "
                f"{discord_429s}; retries {self.metrics_retries}; deliveries timed "
                f"{self.metrics_deliveries}"
            )
        for reason, n in self.refusals.most_common(5):
            out.append(f"  refused x{n}: {reason[:150]}")
        for line, n in self.log_errors.most_common(8):
            out.append(f"  bot log x{n}: {line[:160]}")
        for lost in self.lost[:20]:
            out.append(f"  LOST {lost.job} ({lost.state}): {lost.why}")
        problems = self.problems()
        out.extend(f"  PROBLEM: {p}" for p in problems)
        out.append(f"  the bot's logs and database: {self.folder}")
        out.append("Chaos run passed." if not problems else "Chaos run FAILED.")
        return out


@dataclass(frozen=True)
class Seat:
    """Where a member sends their commands: their channel, in the server of process `slot`
    (its shard); with one process, the stage's one channel."""

    member: Member
    channel: Channel
    slot: int


class ChaosRun:
    """One run: the stage, the members, the monkey with SIGKILL, and the reckoning."""

    def __init__(
        self,
        plan: ChaosPlan,
        folder: Path,
        out: TextIO | None = None,
        *,
        database_url: SecretStr | None = None,
    ) -> None:
        several: dict[str, str] = {}
        if plan.procs > 1:
            if database_url is None:
                raise ValueError("several bot processes need PostgreSQL: give a database_url")
            if plan.intake_kill:
                raise ValueError("the intake kill is for one process")
            # The metrics comparison is one process's counters against everything the
            # emulator saw since it started: with two at once, it does not hold.
            plan = dataclasses.replace(plan, metrics=False)
            several = {
                "SHARD_COUNT": str(plan.procs),
                "LEASE_SECONDS": f"{plan.lease_seconds:g}",
            }
        if database_url is not None:
            several["DATABASE_URL"] = database_url.get_secret_value()
        self.plan = plan
        self.folder = folder
        self.out = out
        self.report = ChaosReport(plan, folder)
        if database_url is not None:
            self.report.database = _where(database_url)
        options = StageOptions(
            folder=folder,
            idempotency=plan.idempotency,
            reading=READINGS[plan.reading],
            train_seconds=3.0,
            prompt_seconds=2.0,
            balance_mc=plan.balance_mc,
            seed=plan.seed,
            foreign_tunes=5,
            # With several processes the members are seated in `_seat` (a server each).
            members=(
                tuple(f"member{n:02d}" for n in range(1, plan.members + 1))
                if plan.procs == 1
                else ()
            ),
            # Wider windows than Discord's 5 per 5 s (hundreds of posts in one channel would
            # otherwise take minutes), not announced in headers: the bot meets real 429s.
            fake=FakeDiscordConfig(
                send_limit=10,
                send_per=1.0,
                edit_limit=10,
                edit_per=1.0,
                advertise_ratelimits=False,
                attachment_delay=INTAKE_DELAY if plan.intake_kill else 0.0,
            ),
            bot_settings={
                **BOT_SETTINGS,
                **({"METRICS_PORT": str(free_port())} if plan.metrics else {}),
                "LOG_FORMAT": plan.log_format,
                **self._store_fault_settings(),
                **({"PHOTO_SWEEP_GRACE_SECONDS": "1"} if plan.intake_kill else {}),
                **several,
            },
        )
        self.stage = Stage(options)
        # Per process (its shard's server): set while it is connected and members may
        # send commands there.
        self._ups = [asyncio.Event() for _ in range(plan.procs)]
        self._seats: list[Seat] = []
        # With several processes: each one's process, PROCESS_ID and number of starts.
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._ids: dict[int, str] = {}
        self._starts: collections.Counter[int] = collections.Counter()
        self._watchers: list[asyncio.Task[None]] = []
        self._reader: Store | None = None  # one store kept open for reads (PostgreSQL)
        self._seen: dict[JobRef, set[int]] = {}  # with several processes: who held each job
        self._members_done = asyncio.Event()
        self._drained = asyncio.Event()  # the drain is over (passed or not)
        self._issued_more = asyncio.Event()
        self._started = 0.0
        self._photos = [(f"IMG_{i}.jpg", demo_photo(i, size=600)) for i in range(1, 5)]
        self._training = 0  # forms being submitted now
        self._metrics_url = (
            f"http://127.0.0.1:{options.bot_settings['METRICS_PORT']}/metrics"
            if plan.metrics
            else None
        )
        self._form_sent = asyncio.Event()

    def _store_fault_settings(self) -> dict[str, str]:
        if not self.plan.store_faults:
            return {}
        return {
            "CHAOS_STORE_FAULT_RATE": str(STORE_FAULT_RATE),
            "CHAOS_STORE_FAULT_SEED": str(self.plan.seed),
        }

    def say(self, line: str) -> None:
        if self.out is not None:
            print(line, file=self.out, flush=True)

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    # ------------------------------------------------------------------ the run

    async def run(self) -> ChaosReport:
        plan = self.plan
        self._started = time.monotonic()
        try:
            async with self.stage:
                for fault, probability, route in FAULTS:
                    self.stage.emulator.faults.rate(fault, probability, route)
                self.say(
                    f"Chaos run, seed {plan.seed}: Astria emulator {self.stage.emulator.base_url}"
                    f" (branch {self.stage.options.branch}), Discord fake "
                    f"{self.stage.fake.base_url}, folder {self.folder}"
                    + (
                        f", {plan.procs} processes on {self.report.database}"
                        if plan.procs > 1
                        else ""
                    )
                )
                try:
                    await self._seat()
                    for slot in range(plan.procs):
                        await self._start(slot)
                    await self.stage.fake.wait_commands(60.0)
                    for up in self._ups:
                        up.set()
                    self.say(
                        f"  {self.elapsed():5.1f} s  the bot is up; {plan.members} members start"
                        + (
                            f" in {len({s.channel.id for s in self._seats})} channels of "
                            f"{plan.procs} servers"
                            if plan.procs > 1
                            else ""
                        )
                    )
                    await self._play()
                    await self._finish()
                finally:
                    await self._kill_leftovers()
        except StageError as exc:
            self.report.failures.append(str(exc))
        self.report.seconds = self.elapsed()
        self._scan_logs()
        return self.report

    async def _seat(self) -> None:
        """With one process, every member in the stage's channel. With several, a server
        on each process's shard (Discord sends a server's events to shard (id >> 22) %
        count), `channels` channels in each, and the members dealt over them in turn."""
        plan, fake = self.plan, self.stage.fake
        if plan.procs == 1:
            self._seats = [Seat(m, self.stage.channel, 0) for m in self.stage.members.values()]
            return
        guilds: dict[int, Guild] = {(self.stage.guild.id >> 22) % plan.procs: self.stage.guild}
        while len(guilds) < plan.procs:
            guild = await fake.create_guild(f"Offline Server {len(guilds) + 1}")
            guilds.setdefault((guild.id >> 22) % plan.procs, guild)
            await asyncio.sleep(0.002)  # a new millisecond, maybe the other shard's
        channels: dict[int, list[Channel]] = {}
        for slot, guild in guilds.items():
            channels[slot] = [
                self.stage.channel
                if guild is self.stage.guild and n == 0
                else await fake.create_channel(guild, f"art-{n + 1}")
                for n in range(plan.channels)
            ]
        for k in range(plan.members):
            slot = k % plan.procs
            member = await fake.create_member(guilds[slot], f"member{k + 1:02d}")
            channel = channels[slot][(k // plan.procs) % plan.channels]
            self._seats.append(Seat(member, channel, slot))

    async def _play(self) -> None:
        seats = self._seats
        share, extra = divmod(self.plan.prompts, len(seats))
        tasks = [
            asyncio.create_task(self._member(n, seat, share + (1 if n < extra else 0)))
            for n, seat in enumerate(seats)
        ]
        everyone = asyncio.create_task(_all(tasks))
        monkey = asyncio.create_task(self._monkey())
        if self.plan.procs > 1:
            self._watchers.append(asyncio.create_task(self._sample_holders()))
        await asyncio.wait({everyone, monkey}, return_when=asyncio.FIRST_EXCEPTION)
        if monkey.done() and monkey.exception() is not None:
            # The bot did not come back: members would wait for it forever.
            everyone.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await everyone
            await monkey  # raises its error
        self._members_done.set()  # the monkey's remaining kills come now
        self._issued_more.set()
        try:
            await everyone
        finally:
            await monkey

    async def _finish(self) -> None:
        """Wait for every job to end, stop the bot, and count."""
        self.say(f"  {self.elapsed():5.1f} s  every command sent; draining")
        self.report.drained = await self._drain()
        self._drained.set()
        if self.report.drained:
            await self._statuses_settle(within=20.0)
            if self._metrics_url is not None:
                await self._compare_metrics(self._metrics_url)
        await asyncio.gather(*self._watchers)
        self.report.exit_code = await self._stop_all()
        worked: collections.Counter[int] = collections.Counter()
        for slots in self._seen.values():
            worked.update(slots)
        self.report.worked = dict(worked)
        self.say(f"  {self.elapsed():5.1f} s  drained: {self.report.drained}; the bot stopped")
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        await self._reckon()

    # ------------------------------------------------------------------ processes

    async def _start(self, slot: int) -> None:
        """Start process `slot` (with several: shard `slot`, a new PROCESS_ID each start,
        as a restarted process's default host-and-pid is) and wait until it is connected."""
        if self.plan.procs == 1:
            await self.stage.start_bot(timeout=60.0)
            return
        changed = self.stage.fake.gateway.changed
        with contextlib.suppress(TimeoutError):  # a killed process's session, closing
            await changed.wait_for(lambda: not self._shard_up(slot), 10.0, "the old session")
        self._starts[slot] += 1
        holder = f"bot{slot}-{self._starts[slot]}"
        self._procs[slot] = await self.stage.start_process(
            timeout=60.0, SHARD_IDS=str(slot), PROCESS_ID=holder
        )
        self._ids[slot] = holder
        try:
            await changed.wait_for(lambda: self._shard_up(slot), 60.0, f"shard {slot}")
        except TimeoutError:
            raise StageError(f"{holder} did not connect; see {self.stage.log_path()}") from None

    def _shard_up(self, slot: int) -> bool:
        wanted = (slot, self.plan.procs)
        return any(s.shard == wanted for s in self.stage.fake.gateway.ready_sessions)

    async def _kill(self, slot: int) -> None:
        if self.plan.procs == 1:
            await self.stage.kill_bot()
            return
        process = self._procs[slot]
        if process.returncode is None:
            process.kill()
            await process.wait()

    def _running(self) -> bool:
        if self.plan.procs == 1:
            return self.stage.running
        return all(p.returncode is None for p in self._procs.values())

    async def _stop_all(self) -> int | None:
        """SIGTERM to every process at once; the first non-zero exit code, else 0."""
        if self.plan.procs == 1:
            return await self.stage.stop_bot()
        running = [p for p in self._procs.values() if p.returncode is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        try:
            codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), 15.0)
        except TimeoutError:
            raise StageError("a bot process did not stop on SIGTERM") from None
        return next((code for code in codes if code != 0), 0 if codes else None)

    async def _kill_leftovers(self) -> None:
        """Whatever is still running when the run ends early (the stage stops only its own)."""
        for process in self._procs.values():
            if process.returncode is None:
                process.kill()
                await process.wait()
        for task in self._watchers:
            task.cancel()
        if self._reader is not None:
            await self._reader.close()
            self._reader = None

    async def _restart(self, slot: int = 0) -> None:
        """Start the bot again after a kill. With metrics, first until the emulator has
        taken in every request the dead process sent (its loop may lag under load): the
        stage marks the emulator's counts at the start, and the new process's counters
        are compared with what arrives after that mark."""
        if self.plan.metrics:
            counts = self.stage.emulator.counters
            last, steady_since = sum(counts.values()), time.monotonic()
            deadline = steady_since + 5.0
            while time.monotonic() < deadline and time.monotonic() - steady_since < 0.5:
                await asyncio.sleep(0.05)
                now = sum(counts.values())
                if now != last:
                    last, steady_since = now, time.monotonic()
        await self._start(slot)

    # ------------------------------------------------------------------ metrics

    async def _compare_metrics(self, url: str, *, within: float = 15.0) -> None:
        """Scrape the bot and compare its request counters (this process's, since its
        start) with what the emulator and the fake saw in that time. The bot still polls
        its balance now and then, so a scrape counts only when no request arrived at the
        emulator while it was taken; the counts must then be equal, route by route."""
        emulator, fake, mark = self.stage.emulator, self.stage.fake, self.stage.at_start
        deadline = time.monotonic() + within
        problem = "no quiet moment to scrape in"
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                before = collections.Counter(emulator.counters)
                fake_before = sum(fake.rate_limited.values())
                try:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                        text = await resp.text()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    problem = f"the scrape failed ({type(exc).__name__})"
                    await asyncio.sleep(0.5)
                    continue
                if emulator.counters != before or sum(fake.rate_limited.values()) != fake_before:
                    await asyncio.sleep(0.2)
                    continue
                scraped = scrape(text)
                seen = before - mark.astria_arrivals
                records = emulator.requests[mark.astria_records :]
                found = self._metrics_problem(
                    scraped, seen, records, fake_before - mark.discord_429s
                )
                if found is None:
                    return
                problem = found
                await asyncio.sleep(0.5)
        self.report.failures.append(f"metrics: {problem}")

    def _metrics_problem(
        self,
        scraped: Scrape,
        seen: collections.Counter[str],
        records: Sequence[RequestRecord],
        fake_429s: int,
    ) -> str | None:
        report = self.report
        # The emulator keys a request "METHOD /route"; image downloads are its /files.
        expected: collections.Counter[str] = collections.Counter()
        for route, n in seen.items():
            path = route.partition(" ")[2]
            expected[f"GET {IMAGE_ROUTE}" if path.startswith("/files") else route] += n
        counted = scraped.astria_by_route()
        if counted != expected:
            diff = {
                k: (counted[k], expected[k])
                for k in counted | expected
                if counted[k] != expected[k]
            }
            return f"Astria requests by route differ (bot, emulator): {diff}"
        astria_429s = sum(1 for r in records if r.status == 429)
        bot_429s = scraped.value("astria_bot_rate_limited_total", side="astria")
        if bot_429s != astria_429s:
            return f"the bot counted {bot_429s:g} 429s from Astria, the emulator sent {astria_429s}"
        discord_429s = scraped.value("astria_bot_rate_limited_total", side="discord")
        if discord_429s != fake_429s:
            return f"the bot counted {discord_429s:g} 429s from Discord, the fake sent {fake_429s}"
        report.metrics_requests = sum(counted.values())
        report.metrics_429s = (int(bot_429s), int(discord_429s))
        report.metrics_retries = int(scraped.total("astria_bot_astria_retries_total"))
        report.metrics_deliveries = int(scraped.total("astria_bot_delivery_latency_seconds_count"))
        return None

    # ------------------------------------------------------------------ members

    async def _member(self, index: int, seat: Seat, prompts: int) -> None:
        member = seat.member
        rng = random.Random(f"chaos:{self.plan.seed}:member:{index}")
        await asyncio.sleep(rng.uniform(0.0, 2.0))  # not all at once
        name = f"chaos {index + 1:02d}"
        if not await self._train(seat, name):
            return
        tune_id = await self._wait_ready(seat, name)
        if tune_id is None:
            self.report.failures.append(f"{member.user.name}'s tune was never offered")
            return
        for n in range(prompts):
            await asyncio.sleep(rng.uniform(*self.plan.pace))
            text = f"portrait {n + 1} of chaos member {index + 1}, soft light"
            if rng.random() < self.plan.fail_share:
                text += f" {FAIL_MARKER}"
            count = rng.choice((1, 1, 1, 2, 2, 4))
            imagine = functools.partial(
                self.stage.command,
                member,
                "imagine",
                self.plan.answer_timeout,
                channel=seat.channel,
                prompt=text,
                tune=tune_id,
                count=count,
            )
            await self._issue(imagine, ("Queued",), slot=seat.slot)

    async def _train(self, seat: Seat, name: str) -> bool:
        """Until the bot has the member's tune. A member who got no answer tries again; the
        bot then says the name is taken if the first attempt got through."""
        member = seat.member
        for _ in range(8):
            train = functools.partial(
                self.stage.train,
                member,
                name,
                self._photos,
                timeout=self.plan.answer_timeout,
                channel=seat.channel,
            )
            self._training += 1
            self._form_sent.set()
            try:
                outcome = await self._issue(
                    train,
                    ("Training", "already have a tune named"),
                    count=False,
                    slot=seat.slot,
                )
            finally:
                self._training -= 1
            if outcome == "accepted":
                self._count_issued()
                return True
        self._count_issued()
        self.report.failures.append(f"{member.user.name} could not start a tune")
        return False

    async def _issue(
        self,
        action: Callable[[], Awaitable[str]],
        accepted: Sequence[str],
        *,
        count: bool = True,
        slot: int = 0,
    ) -> str:
        """Send a command once the bot (process `slot`, the member's server's) is connected
        (a client cannot send while it is not); "accepted", "refused" or "unanswered"."""
        refused_by_client = 0
        while True:
            await self._ups[slot].wait()
            try:
                answer = await action()
            except DriverError:
                # Not sent: the bot's session just went away. Anything else a client
                # refuses would repeat forever: give up on it after a while.
                refused_by_client += 1
                if refused_by_client > 50:
                    raise
                await asyncio.sleep(0.2)
                continue
            except TimeoutError:
                outcome = "unanswered"
                self.report.unanswered += 1
            else:
                if any(marker in answer for marker in accepted):
                    outcome = "accepted"
                    self.report.answered += 1
                else:
                    outcome = "refused"
                    self.report.refusals[answer.splitlines()[0] if answer else "(empty)"] += 1
            break
        if count:
            self._count_issued()
        return outcome

    def _count_issued(self) -> None:
        self.report.issued += 1
        self._issued_more.set()

    async def _wait_ready(self, seat: Seat, name: str) -> str | None:
        """The member's tune as autocomplete offers it once it is ready."""
        deadline = time.monotonic() + self.plan.ready_timeout
        while time.monotonic() < deadline:
            await self._ups[seat.slot].wait()
            try:
                return await self._tune_choice(seat, name)
            except (StageError, DriverError, TimeoutError):
                await asyncio.sleep(1.0)
        return None

    async def _tune_choice(self, seat: Seat, partial: str) -> str:
        """What autocomplete offers first for /imagine's tune in the member's channel."""
        handle = await self.stage.fake.autocomplete(
            seat.member, seat.channel, "imagine", "tune", partial
        )
        reply = await handle.response(10.0)
        if not reply.choices:
            raise StageError(f"no tune offered to {seat.member.user.name}")
        return str(reply.choices[0]["value"])

    # ------------------------------------------------------------------ the monkey

    async def _kill_during_intake(self) -> None:
        """Kill the bot while a form's photos are being read, down long enough for the
        start-up sweep's grace to pass over what the cut intake wrote."""
        await self._form_sent.wait()
        await asyncio.sleep(INTAKE_DELAY * 1.5)  # a photo or two in
        self._ups[0].clear()
        await self.stage.kill_bot()
        at = self.elapsed()
        states = await self._unfinished_states()
        kill = Kill(0, at, states, 2.0, None)
        self.report.kills.append(kill)
        self.say(f"  {at:5.1f} s  kill -9 during intake ({self._training} forms in flight)")
        await asyncio.sleep(kill.down)
        await self._restart()
        self._ups[0].set()

    async def _monkey(self) -> None:
        rng = random.Random(f"chaos:{self.plan.seed}:monkey")
        if self.plan.intake_kill:
            await self._kill_during_intake()
        several = self.plan.procs > 1
        plan = zip(self.plan.kill_points(), self.plan.victims(), strict=True)
        for number, (point, slot) in enumerate(plan, start=1):
            while self.report.issued < point and not self._members_done.is_set():
                self._issued_more.clear()
                await self._issued_more.wait()
            # The worst moment if it comes soon: Astria made an object and the answer got
            # lost, so the bot dies before it knows the object's id.
            lost_create = await self._lost_create(within=rng.uniform(1.0, 3.0))
            await self._something_in_flight(within=5.0, holder=self._ids.get(slot))
            self._ups[slot].clear()
            victim = self._ids.get(slot, "")
            await self._kill(slot)
            killed_at = time.monotonic()
            at = self.elapsed()
            states = await self._unfinished_states()
            # Only what still needs a holder: a job finished and reported just before
            # the kill may keep its dead holder's lease; no one needs to take it over.
            due = await self._due_jobs()
            holders = {j: h for j, h in (await self._holders()).items() if j in due}
            held = {j for j, h in holders.items() if h == victim}
            down = rng.uniform(0.5, 2.0)
            kill = Kill(number, at, states, down, lost_create, slot, victim, len(held))
            kill.held_by_others = len(holders) - len(held)
            self.report.kills.append(kill)
            self.say(
                f"  {at:5.1f} s  kill -9 #{number}"
                + (
                    f" of {victim} (holding {len(held)} jobs, the other {kill.held_by_others})"
                    if several
                    else ""
                )
                + f" after {self.report.issued} jobs issued; "
                f"in flight {kill.in_flight}, unfinished {sum(states.values())}"
                + (f" (right after a lost {lost_create})" if lost_create else "")
            )
            if several and held:
                watch = self._watch_takeover(kill, victim, held, killed_at)
                self._watchers.append(asyncio.create_task(watch))
            await asyncio.sleep(down)
            await self._restart(slot)
            self._ups[slot].set()
            self.say(
                f"  {self.elapsed():5.1f} s  "
                + (f"{self._ids[slot]} is up" if several else "the bot is up again")
            )

    async def _sample_holders(self) -> None:
        """Twice a second until the drain is over: which process holds which job."""
        slot_of = {f"bot{slot}": slot for slot in range(self.plan.procs)}
        while not self._drained.is_set():
            for job, holder in (await self._holders()).items():
                slot = slot_of.get(holder.partition("-")[0])
                if slot is not None:
                    self._seen.setdefault(job, set()).add(slot)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), 0.5)

    async def _watch_takeover(
        self, kill: Kill, victim: str, jobs: set[JobRef], killed_at: float
    ) -> None:
        """Until no job the killed process held is still held by it: how long until
        another held the first, and all (the dead one's leases run out first)."""
        deadline = killed_at + self.plan.lease_seconds * 3 + 30.0
        by: set[str] = set()
        while time.monotonic() < deadline:
            now = await self._holders()
            moved = {j for j in jobs if now.get(j) != victim}
            by |= {now[j] for j in moved if j in now}
            if moved and kill.takeover_first is None:
                kill.takeover_first = time.monotonic() - killed_at
            if moved == jobs:
                kill.takeover_all = time.monotonic() - killed_at
                kill.taken_by = tuple(sorted(by))
                self.say(
                    f"  {self.elapsed():5.1f} s  {victim}'s {len(jobs)} jobs taken over "
                    f"{kill.takeover_all:.1f} s after the kill by {', '.join(kill.taken_by)}"
                )
                return
            await asyncio.sleep(0.1)

    async def _lost_create(self, *, within: float) -> str | None:
        """Wait up to `within` seconds for a create whose answer the emulator lost after
        making the object; its route, or None."""
        requests = self.stage.emulator.requests
        seen = len(requests)
        for _ in range(max(1, int(within / 0.02))):
            for record in requests[seen:]:
                if record.fault in LOST_ANSWERS and record.method == "POST":
                    return record.route
            seen = len(requests)
            await asyncio.sleep(0.02)
        return None

    async def _something_in_flight(self, *, within: float, holder: str | None = None) -> None:
        """Wait up to `within` seconds until a job is at Astria or being created (read
        while the bot runs), and with several processes until the one to be killed
        (`holder`) holds a job: a kill with nothing in flight would prove little."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            states = await self._unfinished_states()
            holds = holder is None or holder in (await self._holders()).values()
            if holds and any(n for state, n in states.items() if state in IN_FLIGHT):
                return
            await asyncio.sleep(0.1)

    # ------------------------------------------------------------------ the database

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[Store]:
        """The bot's database, to read while it runs: opened each time on SQLite; one
        store kept open on PostgreSQL (a pool, not a connection per look)."""
        if self.plan.procs == 1:
            async with await self.stage.open_store() as store:
                yield store
            return
        if self._reader is None:
            self._reader = await self.stage.open_store()
        yield self._reader

    async def _unfinished_states(self) -> dict[str, int]:
        """Unfinished jobs by state, and end events not yet reported (as "unreported")."""
        async with self._reading() as store:
            return await _unfinished(store)

    async def _due_jobs(self) -> set[JobRef]:
        """Jobs that need a holder: unfinished, or with an end event not yet reported."""
        async with self._reading() as store:
            due = {t.job for t in await store.tunes.unfinished()}
            due |= {p.job for p in await store.prompts.unfinished()}
            due |= {JobRef.parse(e.job) for e in await store.events.pending()}
        return due

    async def _holders(self) -> dict[JobRef, str]:
        """Who holds a lease on which job (with one process, nothing is asked)."""
        if self.plan.procs == 1:
            return {}
        async with self._reading() as store:
            return await store.leases.holders()

    async def _drain(self) -> bool:
        """Until the database shows every job ended and reported (read while the bot runs:
        the store is made for several processes on one file)."""
        deadline = time.monotonic() + self.plan.drain_timeout
        quiet = 0
        last = ""
        while time.monotonic() < deadline:
            if not self._running():
                self.report.failures.append("the bot exited by itself while draining")
                return False
            states = await self._unfinished_states()
            quiet = quiet + 1 if not states else 0
            if quiet >= 2:
                return True
            shown = ", ".join(f"{s} {n}" for s, n in sorted(states.items()))
            if shown and shown != last and self.out is not None:
                self.say(f"  {self.elapsed():5.1f} s  waiting for: {shown}")
                last = shown
            await asyncio.sleep(1.0)
        return False

    async def _statuses_settle(self, *, within: float) -> None:
        """Status edits wait behind result posts: give the last ones time to go out (until
        no status shows progress, or the count stops moving for 3 s)."""
        deadline = time.monotonic() + within
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            stale = _stale_statuses(_bot_posts(self.stage))
            if stale == 0 or time.monotonic() - since >= 3.0:
                return
            if stale != last:
                last, since = stale, time.monotonic()
            await asyncio.sleep(0.5)

    async def _reckon(self) -> None:
        """Every figure, from the stopped bot's database, the emulator and the fake."""
        report, stage = self.report, self.stage
        members = [seat.member for seat in self._seats]
        async with await stage.open_store() as store:
            tunes: list[TuneRecord] = []
            prompts: list[PromptRecord] = []
            for member in members:
                tunes.extend(await store.tunes.list_for(member.id))
                prompts.extend(await store.prompts.list_for(member.id, limit=1_000_000))
            outcomes = {e.key: e.outcome for e in await store.events.all()}
            entries = await store.ledger.entries()
            report.open_reservations = len(await store.ledger.open_reservations())
            report.audit = await store.ledger.audit()
        report.accepted_tunes, report.accepted_prompts = len(tunes), len(prompts)
        released = {str(e.job) for e in entries if e.kind == LedgerKind.RELEASE}

        posts = _bot_posts(stage)
        images = collections.Counter(job for post in posts for job in _reroll_ids(post))
        report.double_posts = sum(n - 1 for n in images.values() if n > 1)
        # End lines without images (ready, failed) carry no buttons; the nonce (one per
        # event and part, the same on every retry) tells a repeat of one from another.
        notices = collections.Counter(
            (post.channel_id, post.nonce)
            for post in posts
            if post.nonce is not None and not _reroll_ids(post)
        )
        report.repeated_notices = sum(n - 1 for n in notices.values() if n > 1)
        # Every job has ended: a status line still saying "waiting" or "generating" is
        # stale (cosmetic; progress edits are best effort, but worth counting).
        report.stale_statuses = _stale_statuses(posts)

        for tune in tunes:
            key = f"{tune.job}:ready"
            if tune.state == TuneState.READY and outcomes.get(key) == "delivered":
                report.delivered += 1
            elif tune.state == TuneState.READY and outcomes.get(key) == "undeliverable":
                report.undeliverable += 1
            elif tune.state == TuneState.FAILED and str(tune.job) in released:
                report.failed_released += 1
            else:
                why = "ready, never reported" if tune.state == TuneState.READY else "not ended"
                report.lost.append(LostJob(str(tune.job), str(tune.state), why))
        for prompt in prompts:
            if prompt.state == PromptState.DELIVERED and images[prompt.id] >= 1:
                report.delivered += 1
            elif prompt.state == PromptState.DELIVERED:
                report.lost.append(
                    LostJob(str(prompt.job), str(prompt.state), "delivered, but no post found")
                )
            elif prompt.state == PromptState.UNDELIVERABLE:
                report.undeliverable += 1
            elif prompt.state == PromptState.FAILED and str(prompt.job) in released:
                report.failed_released += 1
            elif prompt.state == PromptState.FAILED:
                report.lost.append(
                    LostJob(str(prompt.job), "failed", f"not released ({prompt.error})")
                )
            else:
                report.lost.append(LostJob(str(prompt.job), str(prompt.state), "not ended"))

        self._astria_duplicates(tunes, prompts)
        report.settled_mc = sum(e.cost_mc or 0 for e in entries if e.kind == LedgerKind.SETTLE)
        photos = self.stage.folder / "photos"
        report.orphan_photos = sum(1 for p in photos.rglob("*") if p.is_file())
        report.absorbed_mc = sum(
            e.amount_mc
            for e in entries
            if e.kind == LedgerKind.ADJUST and e.guild_id == OPERATOR_GUILD
        )
        failed = {str(t.job) for t in tunes if t.state == TuneState.FAILED}
        failed |= {str(p.job) for p in prompts if p.state == PromptState.FAILED}
        report.failed_charged = len(
            {
                str(e.job)
                for e in entries
                if e.kind == LedgerKind.SETTLE and str(e.job) in failed and e.amount_mc > 0
            }
        )
        report.charged_mc = sum(c.cost_mc for c in stage.emulator.charges)
        report.balance_change_mc = stage.options.balance_mc - stage.emulator.balance_mc
        report.faults = collections.Counter(
            str(r.fault) for r in stage.emulator.requests if r.fault is not None
        )
        report.astria_requests = len(stage.emulator.requests)
        report.discord_429s = sum(stage.fake.rate_limited.values())

    def _astria_duplicates(self, tunes: list[TuneRecord], prompts: list[PromptRecord]) -> None:
        """Astria objects made twice for one job (tunes by title; prompts by text and seed
        on their tune), and objects no job owns."""
        report, emulator = self.report, self.stage.emulator
        for tune in tunes:
            found = emulator.tunes_with_title(tune.title)
            report.duplicates_at_astria += max(0, len(found) - 1)
            report.orphans_at_astria += sum(1 for t in found if t["id"] != tune.astria_id)
        targets = {self.stage.settings().flux_base_tune_id}
        targets.update(t.astria_id for t in tunes if t.astria_id is not None)
        at_astria = [p for target in sorted(targets) for p in emulator.prompts_for(target)]
        keys = collections.Counter((p["tune_id"], p["text"], p["seed"]) for p in at_astria)
        report.duplicates_at_astria += sum(n - 1 for n in keys.values() if n > 1)
        owned = {p.astria_id for p in prompts if p.astria_id is not None}
        report.orphans_at_astria += sum(1 for p in at_astria if p["id"] not in owned)

    def _scan_logs(self) -> None:
        """Errors and tracebacks in the bot's logs, by message (ids and numbers folded);
        secrets; with LOG_FORMAT=json, lines that are not one JSON object."""
        secrets = (BOT_TOKEN, self.stage.emulator.config.api_key)
        for log in sorted(self.folder.glob("bot-*.log")):
            for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
                if any(secret in line for secret in secrets):
                    self.report.secrets_in_logs += 1
                if self.plan.log_format == "json":
                    line = self._json_line(line)
                if STORE_FAULT_LOGGED in line:
                    self.report.store_faults += 1
                if LEASE_LOST_LOGGED in line:
                    self.report.leases_lost += 1
                if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
                    message = line.split(" ERROR ", 1)[-1].split(" CRITICAL ", 1)[-1]
                    self.report.log_errors[re.sub(r"\d+", "N", message)] += 1

    def _json_line(self, line: str) -> str:
        """A JSON log line as the text scan reads it ("LEVEL message"); what is not one
        JSON object (a crash's output before logging starts) is counted."""
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not {"level", "message"} <= record.keys():
            if line.strip():
                self.report.unparsed_log_lines += 1
            return line
        exc = "\nTraceback" if "exc" in record else ""
        return f" {record['level']} {record['message']}{exc}"


def free_port() -> int:
    """A loopback port free now (bound, then released) for the bot's metrics."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass(frozen=True)
class Scrape:
    """A parsed Prometheus scrape: (metric name, labels) -> value."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.samples.items() if n == name)

    def astria_by_route(self) -> collections.Counter[str]:
        counted: collections.Counter[str] = collections.Counter()
        for (name, labels), value in self.samples.items():
            if name == "astria_bot_astria_requests_total" and value:
                found = dict(labels)
                counted[f"{found['method']} {found['route']}"] += int(value)
        return counted


def scrape(text: str) -> Scrape:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(samples)


def _where(url: SecretStr) -> str:
    """The database and schema a URL names, without its password."""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url.get_secret_value()).query))
    schema = query.get("search_path")
    return describe(url) + (f" (schema {schema})" if schema else "")


async def _all(tasks: Sequence[asyncio.Task[None]]) -> None:
    await asyncio.gather(*tasks)


async def _unfinished(store: Store) -> dict[str, int]:
    states: collections.Counter[str] = collections.Counter()
    for tune in await store.tunes.unfinished():
        states[str(tune.state)] += 1
    for prompt in await store.prompts.unfinished():
        states[str(prompt.state)] += 1
    pending = await store.events.pending()
    if pending:
        states["unreported"] += len(pending)
    return dict(states)


def _bot_posts(stage: Stage) -> list[Message]:
    """Every message the bot has in any channel or DM (not ephemeral, not deleted)."""
    bot_id = stage.fake.world.bot.id
    return [
        m
        for m in stage.fake.world.messages.values()
        if m.author_id == bot_id and not m.deleted and not m.ephemeral
    ]


def _stale_statuses(posts: Sequence[Message]) -> int:
    return sum(1 for post in posts if post.content.startswith(PROGRESS))


def _reroll_ids(post: Message) -> list[int]:
    return [int(m.group(1)) for cid in post.custom_ids() if (m := REROLL.match(cid))]


async def run_chaos(
    plan: ChaosPlan,
    folder: Path,
    out: TextIO | None = sys.stdout,
    *,
    database_url: SecretStr | None = None,
) -> ChaosReport:
    """Run the plan with the stage in `folder` (best empty: the database in it is reused),
    or on the PostgreSQL `database_url` names (best a fresh schema; several processes need
    it); the report, printed to `out` as it goes."""
    report = await ChaosRun(plan, folder, out, database_url=database_url).run()
    if out is not None:
        for line in report.lines():
            print(line, file=out, flush=True)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.offline.chaos",
        description="Members, a faulty Astria emulator and kill -9: nothing lost or doubled.",
    )
    parser.add_argument("--short", action="store_true", help="the CI form: 30 jobs, one kill")
    parser.add_argument("--seed", type=int, default=7, help="emulator and members' seed")
    parser.add_argument("--members", type=int, help="members (default 20; 6 with --short)")
    parser.add_argument("--jobs", type=int, help="jobs (default 200; 30 with --short)")
    parser.add_argument("--kills", type=int, help="kill -9s (default 3; 1 with --short)")
    parser.add_argument(
        "--no-idempotency", action="store_true", help="Astria idempotency off (lookups)"
    )
    parser.add_argument(
        "--reading",
        choices=sorted(READINGS),
        default="ours",
        help="how the emulator plays what Astria leaves undocumented (docs/emulator.md)",
    )
    parser.add_argument(
        "--store-faults",
        action="store_true",
        help="the bot's database also fails a write now and then (tests only)",
    )
    parser.add_argument(
        "--intake-kill",
        action="store_true",
        help="one more kill while a form's photos are being read (none may be left)",
    )
    parser.add_argument(
        "--procs",
        type=int,
        choices=(1, 2),
        default=1,
        help="bot processes; 2: one shard each, on a fresh schema of the PostgreSQL that "
        "DATABASE_URL or TEST_DATABASE_URL names",
    )
    parser.add_argument("--output", type=Path, help="the stage's folder (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder on success")
    args = parser.parse_args(argv)
    plan = ChaosPlan.short(args.seed) if args.short else ChaosPlan(seed=args.seed)
    plan = dataclasses.replace(
        plan,
        idempotency=not args.no_idempotency,
        reading=args.reading,
        store_faults=args.store_faults,
        intake_kill=args.intake_kill,
        members=plan.members if args.members is None else args.members,
        jobs=plan.jobs if args.jobs is None else args.jobs,
        kills=plan.kills if args.kills is None else args.kills,
        procs=args.procs,
    )
    if plan.members < 1 or plan.jobs < plan.members or plan.kills < 0:
        parser.error("need at least one member and one job (a tune) per member")
    server: SecretStr | None = None
    if plan.procs > 1:
        if plan.intake_kill:
            parser.error("--intake-kill is for one process (--procs 1)")
        server = offline_postgres_url()
        if server is None:
            parser.error(
                f"--procs {plan.procs} needs PostgreSQL (SQLite is one process's store): set "
                "DATABASE_URL or TEST_DATABASE_URL, like "
                "TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test; the run makes "
                "a fresh schema there and drops it when it passes"
            )
    temporary = args.output is None
    folder = args.output or Path(tempfile.mkdtemp(prefix="astria-chaos-"))
    shutil.rmtree(folder, ignore_errors=True)  # a fresh database every run
    folder.mkdir(parents=True)
    # The emulator's and the fake's own complaints (a request cut by a kill, a timed-out
    # client) go to a file, not between the figures.
    logging.basicConfig(
        filename=folder / "stage.log",
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        database = None if server is None else asyncio.run(fresh_schema(server, "chaos"))
    except StoreError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    report = asyncio.run(run_chaos(plan, folder, database_url=database))
    failed = bool(report.problems())
    if temporary and not failed and not args.keep:
        logging.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
        print(f"(removed {folder}; --keep or --output DIR keeps the logs and database)")
    if database is not None and not failed and not args.keep:
        asyncio.run(drop_schema(database))
        print(f"(dropped {_where(database)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
