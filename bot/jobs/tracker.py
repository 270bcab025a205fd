"""The tracker: owns every unfinished tune and prompt, from the store, until it ends.

It submits queued jobs within the caps, follows what Astria has with an adaptive schedule
and batched list requests, settles or releases the money, and reports each job's end to a
`Delivery` exactly once per key (an outbox in the store makes the report survive a crash).
It knows no Discord. Tests drive it with `poll_once()` and an injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, SecretStr, ValidationError

from bot.astria import (
    AstriaAuthError,
    AstriaClient,
    AstriaError,
    AstriaNotFound,
    AstriaPaymentRefused,
    AstriaValidationError,
    Prompt,
    PromptRequest,
    Tune,
    TuneRequest,
)
from bot.config import ModelProfile, ProfileName, Settings
from bot.jobs.alerts import Alerter
from bot.jobs.delivery import (
    CHANNEL_REFUSALS_BEFORE_DM,
    WAITING_FOR_CREDIT,
    Delivery,
    DeliveryFailed,
    EventKind,
    JobEvent,
    Outcome,
    Progress,
    event_key,
    retry_delay,
)
from bot.jobs.quiet import Coalesced
from bot.jobs.refunds import RefundWatch
from bot.jobs.schedule import PollPolicy, expected_done, first_check, is_stuck, next_check
from bot.jobs.signing import callback_url
from bot.logs import about_job, bind_record
from bot.rules.intake import BATCH_PREFIX
from bot.store import (
    GONE_TUNES,
    JobKind,
    JobRef,
    MadePrompt,
    PackRun,
    PromptRecord,
    PromptState,
    RecordedEvent,
    Settlement,
    StartCaps,
    Store,
    StoreError,
    StoreFault,
    TuneRecord,
    TuneState,
)

log = logging.getLogger(__name__)

# A pack run's own status (bot/ui/text.py words them): its prompts post their results.
PACK_RUNNING = "pack_running"
PACK_DONE = "pack_done"

Clock = Callable[[], datetime]
PAGE = 120


class _HasId(Protocol):
    @property
    def id(self) -> int: ...


T = TypeVar("T", bound=_HasId)
W = TypeVar("W")
Sleep = Callable[[float], Awaitable[None]]

# A write the database fails (an I/O error, a lock held too long) is tried this many times
# in all, waiting 0.1 s, then 0.2 s between; then the job is left where the tracker takes
# it up again (recovery, the next round, the next start's repair).
STORE_TRIES = 3
STORE_BACKOFF_SECONDS = 0.1

REPORT_GRACE_SECONDS = 10.0
PRUNE_EVERY = timedelta(days=1)
# Periodic duties that one process does per period (Meta.take_turn), however many run.
RETENTION_TURN = "retention"
BALANCE_TURN = "balance-watch"
# At start, jobs reported this recently get their final status shown again.
STATUS_REPAIR_WINDOW = timedelta(minutes=10)
_FINAL_KINDS = frozenset(
    {str(EventKind.READY), str(EventKind.DONE), str(EventKind.FAILED), str(EventKind.CANCELLED)}
)  # on stop, how long the report in hand may take to finish
PROFILE_NAMES: tuple[ProfileName, ...] = ("flux-lora", "sd15-checkpoint", "faceid")
# Leases: a start claims every job due at once; a round claims at most this many more.
CLAIM_ALL = 1_000_000
CLAIM_BATCH = 1_000
# What a list turn leaves of another process's job for its holder: what `_on_tune` and
# `_on_prompt` read (no prompt text, no member data).
_TUNE_SEEN = {"id", "eta", "trained_at", "expires_at", "cost_mc"}
_PROMPT_SEEN = {"id", "images", "user_error", "cost_mc"}


@dataclass(frozen=True)
class TrackerConfig:
    poll: PollPolicy = field(default_factory=PollPolicy)
    max_training_per_member: int = 1
    max_generating_per_member: int = 4
    max_in_flight: int = 50
    max_concurrent_creates: int = 4
    expiry_reminder: timedelta = timedelta(days=3)
    balance_refresh: timedelta = timedelta(minutes=5)
    profiles: dict[str, ModelProfile] = field(default_factory=dict)
    callback_base: str | None = None
    signing_key: SecretStr | None = None
    resubmit_delay: timedelta = timedelta(seconds=60)
    callback_slowdown: float = 4.0  # with callbacks on, polling is only the safety net
    refunds_failed_prompts: bool = True  # the operator's reading (undocumented at Astria)
    extension_price_mc: int = 0  # Astria's fee for 30 more days of a tune (auto-extend)
    retention: timedelta = timedelta(days=90)  # finished jobs' events, old prompts' links
    # Leases: this process's holder id (PROCESS_ID) and how long a lease lasts unless
    # renewed. The tracker works only the jobs it holds (see `_take_leases`).
    holder: str = "tracker"
    lease_seconds: float = 30.0
    # On a store only one process uses (SQLite), a start takes every job whoever held it.
    sole_process: bool = True

    @property
    def policy(self) -> PollPolicy:
        if self.callback_base and self.signing_key is not None:
            return replace(self.poll, slowdown=max(self.poll.slowdown, self.callback_slowdown))
        return self.poll

    @classmethod
    def from_settings(cls, settings: Settings) -> TrackerConfig:
        profiles: dict[str, ModelProfile] = {
            name: settings.profile_named(name) for name in PROFILE_NAMES
        }
        return cls(
            poll=PollPolicy(
                tune_min=settings.poll_tune_min_seconds,
                prompt_min=settings.poll_prompt_min_seconds,
                cap=settings.poll_max_seconds,
                tune_stuck_after=settings.tune_stuck_after_seconds,
                prompt_stuck_after=settings.prompt_stuck_after_seconds,
                stuck_interval=settings.stuck_poll_seconds,
            ),
            max_training_per_member=settings.max_training_per_member,
            max_generating_per_member=settings.max_generating_per_member,
            max_in_flight=settings.max_jobs_in_flight,
            max_concurrent_creates=settings.max_concurrent_creates,
            expiry_reminder=timedelta(days=settings.expiry_reminder_days),
            balance_refresh=timedelta(seconds=settings.balance_refresh_seconds),
            profiles=profiles,
            callback_base=settings.public_callback_url,
            signing_key=settings.callback_signing_key,
            resubmit_delay=timedelta(seconds=settings.astria_lookup_wait_seconds),
            refunds_failed_prompts=settings.astria_refunds_failed_prompts,
            extension_price_mc=settings.astria_extension_price_mc,
            retention=timedelta(days=settings.retention_days),
            holder=settings.process_id,
            lease_seconds=settings.lease_seconds,
            sole_process=settings.database_url is None,
        )


@dataclass
class _Watch:
    """A job at Astria and when to look at it next (kept in memory, rebuilt on start)."""

    job: JobRef
    astria_id: int
    expected: datetime
    next_at: datetime
    misses: int = 0
    stuck: bool = False
    # Several processes: due while another process had the list turn, and waiting for
    # what that list saw of it (once; then this process looks itself): since when.
    deferred: datetime | None = None


@dataclass
class PollReport:
    """What one round did; tests and benchmarks read it."""

    submitted: list[str] = field(default_factory=list)
    checked: int = 0
    finished: list[str] = field(default_factory=list)
    reported: list[str] = field(default_factory=list)


class Tracker:
    def __init__(
        self,
        store: Store,
        client: AstriaClient,
        delivery: Delivery,
        config: TrackerConfig,
        *,
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        alerts: Alerter | None = None,
        on_delivered: Callable[[str, float], None] | None = None,
    ) -> None:
        self._store = store
        # What admins should hear about, to the alert outbox (posted by the Discord side).
        self._alerts = alerts or Alerter(store, clock)
        self._on_delivered = on_delivered  # (job kind, seconds from Astria's end to the post)
        self._sleep = sleep  # between tries of a failed write (tests inject theirs)
        self._repair_due = False  # a write failed for good: reconcile the ledger next round
        self._client = client
        self._delivery = delivery
        self._config = config
        self._poll = config.policy
        self._clock = clock  # wall time: what is stored, shown, or compared with Astria's
        self._monotonic = monotonic
        # Schedules, stuck detection and waits run on a steady timeline: wall time at
        # construction, then moved by the monotonic clock only, so a wall clock jump
        # neither marks every job stuck nor freezes polling (`_steady`).
        self._anchor = (clock(), monotonic())
        self._watch: dict[JobRef, _Watch] = {}
        self._create_slots = asyncio.Semaphore(config.max_concurrent_creates)
        self._busy: set[JobRef] = set()  # jobs with a create running in this process
        self._retry_at: dict[JobRef, datetime] = {}  # lost creates waiting for recovery
        self._tasks: set[asyncio.Task[None]] = set()
        self._positions: dict[JobRef, int] = {}
        self._short_told: set[JobRef] = set()  # told they wait for credit
        self._wake = asyncio.Event()
        self._report_due = asyncio.Event()  # an event was recorded: report it now
        # Jobs whose final event is written but whose final state is not yet: their event
        # waits, so a member told "ready" finds the tune ready (a crash in between repeats
        # both on the next poll, the event under its key).
        self._finishing: set[str] = set()
        self._reporting: dict[int, asyncio.Task[list[str]]] = {}  # by channel
        self._traced: set[str] = set()  # events whose unexpected failure was logged in full
        self._stopping = False
        self._balance_read_at: datetime | None = None
        self._balance_due = True
        self._balance_mc: int | None = None
        self._charged_since_read = 0  # what creates said they cost since the last reading
        # True when the balance's move since the last reading cannot be told exactly: a
        # create or recovery was in flight across a reading, or a failed prompt's refund.
        self._balance_unsure = True
        self._auto_extend = False  # the account's auto-extend, from the last reading
        self._refunds = RefundWatch()  # the operator's refund statement, against the balance
        self._quiet = Coalesced(log, monotonic=monotonic)  # repeating faults: a line a minute
        self._pruned_at: datetime | None = None  # on the steady timeline
        self._held: set[JobRef] = set()  # the jobs this process holds a lease on
        self._renewed_at: datetime | None = None  # wall time of the last renewal
        # A round's renewal, keep_leases' one and hand-backs of leases, one at a time.
        self._renewing = asyncio.Lock()
        self._unfinished: set[JobRef] = set()  # as of the last round's read
        self._claimed_since_read: set[JobRef] = set()  # not in that read: not known ended

    def _steady(self) -> datetime:
        """Now on the tracker's steady timeline (see `__init__`). Jobs first seen in this
        process are timed by it alone; jobs found at start are timed from their stored
        (wall) submission, since the process has nothing else to go by."""
        wall, mono = self._anchor
        return wall + timedelta(seconds=self._monotonic() - mono)

    def _offset(self) -> timedelta:
        """What to add to a wall time to place it on the steady timeline."""
        return self._steady() - self._clock()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Take the leases on every job due a holder and schedule them at once; creates
        that were in flight when their process stopped are recovered (looked up before
        any re-post) in the background."""
        await self._repair()
        now = self._clock()
        # A start takes back what this process id held (a restart); alone on the store
        # (SQLite), everything, as before leases.
        try:
            claimed = await self._write(
                None,
                "claiming the jobs",
                lambda: self._store.leases.claim_due(
                    self._config.holder,
                    CLAIM_ALL,
                    self._config.lease_seconds,
                    own=True,
                    anyone=self._config.sole_process,
                ),
            )
        except StoreFault:
            claimed = []  # the rounds claim them

        self._renewed_at = now
        self._held.update(claimed)
        self._claimed_since_read.update(claimed)
        await self._take_up(set(claimed))
        await self._settle_recent_statuses(now)

    async def _take_up(self, jobs: set[JobRef]) -> None:
        """Follow the newly held `jobs` as a start does: those at Astria are scheduled,
        those found `submitting` (a create in flight when their holder stopped or died)
        are recovered by looking them up first, never re-posted blindly; queued ones are
        submitted by the rounds."""
        if not jobs:
            return
        for tune in await self._store.tunes.unfinished():
            if tune.job not in jobs:
                continue
            if tune.state in (TuneState.TRAINING, TuneState.STUCK) and tune.astria_id:
                submitted = tune.submitted_at or tune.updated_at
                self._follow(tune.job, tune.astria_id, tune.eta, submitted)
                self._watch[tune.job].stuck = tune.state == TuneState.STUCK
            elif tune.state == TuneState.SUBMITTING:
                self._spawn(self._submit_tune(tune, maybe_created=True))
        prompts = [p for p in await self._store.prompts.unfinished() if p.job in jobs]
        # Two reads for all, not two per prompt: 10,000 prompts must schedule in well under
        # two seconds (bench/restart.py).
        done_keys = await self._store.events.existing(
            [event_key(str(p.job), EventKind.DONE) for p in prompts]
        )
        profiles = await self._store.tunes.profiles({p.tune_id for p in prompts})
        for prompt in prompts:
            if prompt.state in (PromptState.GENERATING, PromptState.STUCK) and prompt.astria_id:
                if event_key(str(prompt.job), EventKind.DONE) in done_keys:
                    continue  # finished; only its report is pending
                seconds = self._prompt_seconds(profiles.get(prompt.tune_id))
                submitted = prompt.submitted_at or prompt.updated_at
                self._follow(prompt.job, prompt.astria_id, None, submitted, seconds)
                self._watch[prompt.job].stuck = prompt.state == PromptState.STUCK
            elif prompt.state == PromptState.SUBMITTING:
                self._spawn(self._submit_prompt(prompt, maybe_created=True))
            elif prompt.state == PromptState.GENERATING and prompt.astria_id is None:
                # A pack run: its prompts may all have ended before a restart let it close.
                self._spawn(self._close_pack(prompt.id))

    async def _take_leases(self) -> None:
        """Each round: renew the leases held (every third of their length), let go of any
        another process took over, and claim the jobs due a holder (new ones, a dead
        process's lapsed ones), taking them up like a start."""
        holder = self._config.holder
        await self._renew_leases()
        await self._claim_more()
        if not self._config.sole_process:
            # Callbacks that reached another process: look at those jobs now.
            for job in await self._store.leases.woken(holder):
                if (watch := self._watch.get(job)) is not None:
                    watch.next_at = self._steady()

    async def _renew_leases(self) -> None:
        """Renew the leases held once a third of their length has passed since the last
        renewal (or the wall clock went back), and let go of any another process took
        over. From each round, and from `keep_leases` while a round runs long."""
        holder, lease = self._config.holder, self._config.lease_seconds
        async with self._renewing:
            now = self._clock()
            renew_every = timedelta(seconds=lease / 3)
            if not self._held or not (
                self._renewed_at is None
                or now >= self._renewed_at + renew_every
                or now < self._renewed_at
            ):
                return
            held = set(self._held)
            still = await self._write(
                None, "renewing the leases", lambda: self._store.leases.renew(holder, held, lease)
            )
            self._renewed_at = now
            for job in held - still:
                log.warning("%s: another process took it over; this one lets it go", job)
                self._let_go(job)

    async def keep_leases(self) -> None:
        """Until `stop()`: renew the leases in time even while a round is held up (a slow
        Astria answer or a retried write can take longer than a lease). Renewed only by the
        rounds, a live process's leases lapsed in such a round, another process took its
        jobs over, and both worked them (reports and state writes) until this one's next
        renewal found out."""
        check = min(1.0, self._config.lease_seconds / 6)  # real seconds between looks
        while not self._stopping:
            await asyncio.sleep(check)
            try:
                await self._renew_leases()
            except StoreFault:
                pass  # logged by the write; the next look tries again
            except Exception:
                self._quiet.log(logging.ERROR, "renewing the leases failed", exc_info=True)

    async def _claim_more(self) -> None:
        claimed = await self._write(
            None,
            "claiming the jobs",
            lambda: self._store.leases.claim_due(
                self._config.holder, CLAIM_BATCH, self._config.lease_seconds
            ),
        )
        new = {job for job in claimed if job not in self._held}
        self._held.update(claimed)
        self._claimed_since_read.update(claimed)
        if new:
            await self._take_up(new)

    def _let_go(self, job: JobRef) -> None:
        self._held.discard(job)
        self._watch.pop(job, None)
        self._retry_at.pop(job, None)
        self._positions.pop(job, None)

    async def _release_finished(self) -> None:
        """Hand back the leases of held jobs that are finished with nothing left to
        report (a job still unreported stays held: its holder reports it)."""
        done = self._held - self._unfinished - self._claimed_since_read
        if not done:
            return
        pending = {e.job for e in await self._store.events.pending()}
        ended = {job for job in done if str(job) not in pending and job not in self._busy}
        if not ended:
            return
        # Not while `keep_leases` renews: a renewal that read the held jobs before this
        # hand-back and wrote after it would take it for another process's takeover.
        async with self._renewing:
            await self._write(
                None,
                "handing back leases",
                lambda: self._store.leases.release(self._config.holder, ended),
            )
            self._held -= ended

    async def _repair(self) -> None:
        """Close the reservations a crash left open between a job's steps (an ended job's
        the way its end says, a missing job's released): at start, and after a write
        that failed for good."""
        self._repair_due = False
        try:
            repairs = await self._write(None, "ledger repair", self._store.ledger.repair)
        except StoreFault:
            self._repair_due = True
            return
        for done in repairs:
            log.warning(
                "%s: its reservation was still open (the job %s); %s it%s",
                done.job,
                done.state or "does not exist",
                done.closing,
                f" at {done.cost_mc} mc" if done.closing == "settled" else "",
            )

    async def _write(self, job: JobRef | None, what: str, write: Callable[[], Awaitable[W]]) -> W:
        """Run one store write, trying it again (bounded, with a short backoff) when the
        database fails it; the last failure is raised for the caller to leave the job
        where something takes it up again."""
        for attempt in range(1, STORE_TRIES + 1):
            try:
                return await write()
            except StoreFault as exc:
                if attempt == STORE_TRIES:
                    log.error(
                        "%s: %s failed %d times (%s); left for the tracker to take up again",
                        job or "tracker",
                        what,
                        attempt,
                        exc,
                    )
                    raise
                log.warning("%s: %s failed (%s); trying again", job or "tracker", what, exc)
                await self._sleep(STORE_BACKOFF_SECONDS * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def _settle_recent_statuses(self, now: datetime) -> None:
        """A kill between a report and its status edit leaves a status message saying
        "Generating…" under a delivered result. Show the final state again for the jobs
        reported just before this start (an idempotent, coalesced, low-priority edit)."""
        latest: dict[str, RecordedEvent] = {}
        for event in await self._store.events.reported_since(now - STATUS_REPAIR_WINDOW):
            if event.kind in _FINAL_KINDS:
                latest[event.job] = event
        for event in latest.values():
            payload = event.payload
            await self._delivery.progress(
                Progress(
                    job=event.job,
                    state=event.kind,
                    owner_id=int(payload["owner_id"]),
                    guild_id=int(payload["guild_id"]),
                    channel_id=int(payload["channel_id"]),
                )
            )

    async def stop(self) -> None:
        """Stop cleanly (SIGTERM): creates in flight are cancelled and stay `submitting`,
        so the next start recovers them."""
        self._stopping = True
        self._wake.set()
        self._report_due.set()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Another process may take them up at once (a create cut short is recovered by
        # a lookup there, as after a restart); a failure leaves them to lapse.
        async with self._renewing:  # not while a renewal is on its way (see above)
            try:
                await self._store.leases.release(self._config.holder, self._held)
            except StoreError as exc:
                log.warning("the leases were not handed back (%s); they lapse instead", exc)
            self._held.clear()

    async def run(self) -> None:
        """Poll until `stop()`; a callback's `wake()` cuts the wait short. Reports go out
        from their own loop, so a channel's Discord rate limit (a few posts a second)
        never holds up submissions and status checks at Astria."""
        await self.start()
        reporter = asyncio.create_task(self._report_forever(), name="tracker-reports")
        keeper = (
            None
            if self._config.sole_process
            else asyncio.create_task(self.keep_leases(), name="tracker-leases")
        )
        try:
            while not self._stopping:
                try:
                    await self.poll_once(wait=False, report=False)
                except Exception:
                    self._quiet.log(
                        logging.ERROR, "tracker round failed; trying again", exc_info=True
                    )
                await self._idle()
        finally:
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
            self._report_due.set()
            # Let the report in hand finish (a post half sent is found again after a
            # restart, but a clean stop need not rely on that).
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(reporter, REPORT_GRACE_SECONDS)

    async def _report_forever(self) -> None:
        try:
            while not self._stopping:
                self._report_due.clear()
                try:
                    await self._dispatch(wait=False)
                except Exception:
                    log.exception("reporting failed; trying again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._report_due.wait(), timeout=5.0)
        finally:
            await asyncio.gather(*self._reporting.values(), return_exceptions=True)

    async def _idle(self) -> None:
        now = self._steady()
        upcoming = [w.next_at for w in self._watch.values()]
        wait = min(((t - now).total_seconds() for t in upcoming), default=5.0)
        # A round at least every third of a lease: the renewals must come in time.
        longest = min(5.0, self._config.lease_seconds / 3)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=min(max(wait, 0.2), longest))
        self._wake.clear()

    def nudge(self) -> None:
        """A job was queued: start the next round now instead of at the next tick."""
        self._wake.set()

    def wake(self, job: str) -> bool:
        """Look at `job` now (a callback arrived). False if the job is not followed."""
        try:
            ref = JobRef.parse(job)
        except ValueError:
            return False
        watch = self._watch.get(ref)
        if watch is None:
            if not self._config.sole_process:
                self._spawn(self._wake_elsewhere(ref))
            return False
        watch.next_at = self._steady()
        self._wake.set()
        return True

    async def _wake_elsewhere(self, job: JobRef) -> None:
        """A callback for a job this process does not follow: mark it in the store, where
        its holder's next round finds it (within a round, at most a few seconds)."""
        try:
            await self._store.leases.wake(job)
        except StoreError as exc:
            log.warning("%s: callback not passed on (%s); its polling finds it", job, exc)

    async def settle_background(self) -> None:
        """Wait for the background work started so far (recovery, submissions)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------------ one round

    async def poll_once(self, *, wait: bool = True, report: bool = True) -> PollReport:
        """One round: submit what the caps allow, check what is due, handle expiries,
        report recorded events (unless `report` is False: `run` reports from its own
        loop). With `wait`, submissions finish before it returns."""
        outcome = PollReport()
        if self._repair_due:
            await self._repair()
        with contextlib.suppress(StoreFault):
            await self._take_leases()
        if not self._config.sole_process:
            # Before the submissions, as a round that saw them itself would be: a slot a
            # finished job frees is used in this round.
            with contextlib.suppress(StoreFault):
                await self._apply_seen(outcome)
        started = await self._submit_queued()
        outcome.submitted = [str(j) for j in started]
        if wait:
            await self.settle_background()
        # A write that failed for good (logged) leaves the rest of that step to the next
        # round: every step there repeats safely.
        with contextlib.suppress(StoreFault):
            await self._refresh_due(outcome)
        with contextlib.suppress(StoreFault):
            await self._check_expiry()
        with contextlib.suppress(StoreFault):
            await self._refresh_balance()
        with contextlib.suppress(StoreFault):
            await self._prune_due()
        self._quiet.flush()
        await self._alerts.flush()
        if report:
            outcome.reported = await self._dispatch()
        with contextlib.suppress(StoreFault):
            await self._release_finished()
        return outcome

    def queue_position(self, job: JobRef) -> int | None:
        return self._positions.get(job)

    @property
    def followed(self) -> int:
        return len(self._watch)

    # ------------------------------------------------------------------ submission

    async def _submit_queued(self) -> list[JobRef]:
        # The caps count every process's jobs; this one submits only those it holds.
        self._claimed_since_read = set()  # before the reads: a claim during them counts
        tunes = await self._store.tunes.unfinished()
        prompts = await self._store.prompts.unfinished()
        self._unfinished = {t.job for t in tunes} | {p.job for p in prompts}
        # Done at Astria and only waiting for Discord: no longer in flight at Astria.
        posting = await self._store.events.existing(
            [
                event_key(str(p.job), EventKind.DONE)
                for p in prompts
                if p.state == PromptState.GENERATING
            ]
        )
        training: dict[int, int] = {}
        generating: dict[int, int] = {}
        in_flight = 0
        for tune in tunes:
            if tune.state != TuneState.QUEUED:
                training[tune.owner_id] = training.get(tune.owner_id, 0) + 1
                in_flight += 1
        for prompt in prompts:
            if event_key(str(prompt.job), EventKind.DONE) in posting:
                continue
            if prompt.state != PromptState.QUEUED:
                generating[prompt.owner_id] = generating.get(prompt.owner_id, 0) + 1
                in_flight += 1
        pending = [t for t in tunes if t.state == TuneState.QUEUED]
        pending_prompts = [p for p in prompts if p.state == PromptState.QUEUED]
        # Astria said the credit ran out: paid jobs wait (their credit stays held) until a
        # balance reading covers them; free ones go on. No second refusal is asked for.
        short = await self._short_of_credit()
        if short:
            branches = await self._store.tunes.branches({p.tune_id for p in pending_prompts})
            held: list[TuneRecord | PromptRecord] = [t for t in pending if t.paid]
            held += [p for p in pending_prompts if branches.get(p.tune_id, "fast") != "fast"]
            pending = [t for t in pending if not t.paid]
            pending_prompts = [
                p for p in pending_prompts if branches.get(p.tune_id, "fast") == "fast"
            ]
            for waiting_job in held:
                if waiting_job.job not in self._short_told:
                    self._short_told.add(waiting_job.job)
                    await self._progress(waiting_job, WAITING_FOR_CREDIT)
        else:
            self._short_told.clear()
        # Identical prompts (a member's fixed seed) are never in flight at once.
        unsettled = {(p.final_text, p.seed) for p in prompts if p.state == PromptState.SUBMITTING}
        # Tunes first, then prompts, each in the order accepted: a member's training (rare,
        # one at a time, minutes long) should not wait behind a server's flood of prompts.
        queue: list[TuneRecord | PromptRecord] = sorted(
            [*pending, *pending_prompts],
            key=lambda r: (isinstance(r, PromptRecord), r.created_at),
        )
        started: list[JobRef] = []
        waiting: list[TuneRecord | PromptRecord] = []
        for record in queue:
            if isinstance(record, TuneRecord):
                used = training.get(record.owner_id, 0)
                fits = used < self._config.max_training_per_member
            else:
                used = generating.get(record.owner_id, 0)
                fits = used < self._config.max_generating_per_member
                fits = fits and (record.final_text, record.seed) not in unsettled
            if not fits or in_flight >= self._config.max_in_flight or self._stopping:
                waiting.append(record)
                continue
            if record.job not in self._held:
                in_flight += 1  # its holder submits it; it counts against the caps here too
                if isinstance(record, TuneRecord):
                    training[record.owner_id] = used + 1
                else:
                    generating[record.owner_id] = used + 1
                    unsettled.add((record.final_text, record.seed))
                continue
            in_flight += 1
            if isinstance(record, TuneRecord):
                training[record.owner_id] = used + 1
                self._spawn(self._submit_tune(record, maybe_created=False))
            else:
                generating[record.owner_id] = used + 1
                unsettled.add((record.final_text, record.seed))
                self._spawn(self._submit_prompt(record, maybe_created=False))
            started.append(record.job)
        await self._recover_due()
        await self._update_positions(waiting)
        return started

    async def _recover_due(self) -> None:
        """Lost creates whose wait is over: looked up (or re-sent with idempotency on)."""
        now = self._steady()
        for job, when in list(self._retry_at.items()):
            if when > now or job in self._busy:
                continue
            del self._retry_at[job]
            if job.kind == JobKind.TUNE:
                tune = await self._store.tunes.get(job.id)
                if tune is not None and tune.state == TuneState.SUBMITTING:
                    self._spawn(self._submit_tune(tune, maybe_created=True))
            else:
                prompt = await self._store.prompts.get(job.id)
                if prompt is not None and prompt.state == PromptState.SUBMITTING:
                    self._spawn(self._submit_prompt(prompt, maybe_created=True))

    async def _update_positions(self, waiting: Sequence[TuneRecord | PromptRecord]) -> None:
        positions = {record.job: n for n, record in enumerate(waiting, start=1)}
        for record in waiting:
            if record.job not in self._held:
                continue  # its holder tells its member
            if self._positions.get(record.job) != positions[record.job]:
                await self._progress(record, "queued", queue_position=positions[record.job])
        self._positions = positions

    def _start_caps(self, *, training: bool) -> StartCaps:
        """The caps the round checked on its read, checked again where the submission is
        written: other processes submit too, and their moves may be newer than the read."""
        config = self._config
        per_member = (
            config.max_training_per_member if training else config.max_generating_per_member
        )
        return StartCaps(per_member=per_member, in_flight=config.max_in_flight)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @about_job
    async def _submit_tune(self, tune: TuneRecord, *, maybe_created: bool) -> None:
        if tune.job in self._busy:
            return
        self._busy.add(tune.job)
        try:
            async with self._create_slots:
                if not maybe_created:
                    try:
                        moved = await self._write(
                            tune.job,
                            "queued -> submitting",
                            lambda: self._store.tunes.transition(
                                tune.id,
                                TuneState.QUEUED,
                                TuneState.SUBMITTING,
                                caps=self._start_caps(training=True),
                            ),
                        )
                    except StoreFault:
                        return  # still queued: a later round submits it
                    if moved is None:
                        return  # cancelled meanwhile, or taken by another round
                    tune = moved
                try:
                    await self._create_tune(tune, maybe_created)
                except StoreFault:
                    self._recover_later(tune.job)
        finally:
            self._busy.discard(tune.job)

    async def _create_tune(self, tune: TuneRecord, maybe_created: bool) -> None:
        profile = self._config.profiles.get(tune.profile)
        fast = tune.branch == "fast"
        request = TuneRequest(
            title=tune.title,
            name=tune.subject_class,
            images=[Path(p) for p in tune.photo_paths],
            branch=tune.branch,
            base_tune_id=profile.base_tune_id if profile and not fast else None,
            model_type=profile.model_type if profile and not fast else None,
            token=(profile.token or None) if profile else None,
            callback=self._callback(tune.job),
            # The mock trains nothing: a preset only means something on a paid branch.
            preset=profile.training_preset if profile and not fast else None,
        )
        try:
            created = await self._client.create_tune(
                request, maybe_created=maybe_created, since=_since(tune, maybe_created)
            )
        except FileNotFoundError:
            await self._fail(tune, "the photos were lost before Astria took them", charge=None)
            return
        except AstriaError as exc:
            await self._create_failed(tune, exc)
            return
        # Astria has it (and charged): a write failing from here leaves the tune
        # `submitting`, and recovery finds it at Astria (never a second post).
        await self._write(
            tune.job,
            f"recording Astria tune {created.id}",
            lambda: self._store.tunes.set_astria_id(tune.id, created.id),
        )
        await self._write(
            tune.job,
            "recording its eta",
            lambda: self._store.tunes.set_progress(tune.id, eta=created.eta),
        )
        tune = await self._write(
            tune.job,
            "submitting -> training",
            lambda: self._store.tunes.set_state(tune.id, TuneState.TRAINING),
        )
        now = self._steady()
        self._follow(tune.job, created.id, created.eta, self._clock())
        self._note_charge(created.cost_mc)
        await self._forget_photos(tune.id)
        await self._progress(tune, "training", eta=created.eta)
        if created.is_trained:  # FaceID tunes are ready at once
            self._watch[tune.job].next_at = now

    @about_job
    async def _submit_prompt(self, prompt: PromptRecord, *, maybe_created: bool) -> None:
        if prompt.job in self._busy:
            return
        self._busy.add(prompt.job)
        try:
            async with self._create_slots:
                if not maybe_created:
                    try:
                        moved = await self._write(
                            prompt.job,
                            "queued -> submitting",
                            lambda: self._store.prompts.transition(
                                prompt.id,
                                PromptState.QUEUED,
                                PromptState.SUBMITTING,
                                caps=self._start_caps(training=False),
                            ),
                        )
                    except StoreFault:
                        return  # still queued: a later round submits it
                    if moved is None:
                        return
                    prompt = moved
                try:
                    await self._create_prompt(prompt, maybe_created)
                except StoreFault:
                    self._recover_later(prompt.job)
        finally:
            self._busy.discard(prompt.job)

    async def _create_prompt(self, prompt: PromptRecord, maybe_created: bool) -> None:
        tune = await self._store.tunes.get(prompt.tune_id)
        target = prompt.target_tune_id
        if tune is None or tune.astria_id is None or target is None:
            await self._fail(prompt, "its tune is not available any more", charge=None)
            return
        gone = tune.state in GONE_TUNES
        if gone and not maybe_created:
            # Deleted or expired while the prompt waited: never sent (a LoRA or FaceID
            # prompt would reach the base tune with a dead tag, and could be billed).
            await self._fail(prompt, _tune_gone(tune), charge=None)
            return
        run = await self._store.packs.run(prompt.id)
        if run is not None:
            await self._create_pack(prompt, tune, run, maybe_created)
            return
        claimed = await self._store.prompts.claimed_astria_ids(
            prompt.final_text, prompt.seed, except_id=prompt.id
        )
        if gone:
            await self._recover_on_gone_tune(prompt, tune, target, claimed)
            return
        options = prompt.options
        profile = self._config.profiles.get(tune.profile)
        request = PromptRequest(
            text=prompt.final_text,
            num_images=prompt.num_images,
            seed=prompt.seed,
            negative_prompt=options.negative_prompt,
            aspect_ratio=options.aspect_ratio,
            # The profile's guidance (FaceID's 3) where its model reads the prompt: not on
            # the fast branch, whose tunes are mock checkpoints prompted on themselves.
            cfg_scale=profile.cfg_scale if profile and tune.branch != "fast" else None,
            callback=self._callback(prompt.job),
            # The per-image tools (bot/rules/tools.py): unset on a plain prompt.
            input_image_url=options.input_image_url,
            denoising_strength=options.denoising_strength,
            super_resolution=options.super_resolution or None,
            inpaint_faces=options.inpaint_faces or None,
            style=options.style,
            resolution=options.resolution,
            input_image=Path(options.input_image_path) if options.input_image_path else None,
        )
        source = options.input_image_path
        if source and not maybe_created and not await asyncio.to_thread(Path(source).is_file):
            # Kept until Astria has it (the photo sweep spares it); gone means the disk
            # was wiped: nothing to send, nothing charged.
            await self._fail(prompt, "its source image is not kept any more", charge=None)
            return
        try:
            created = await self._client.create_prompt(
                target,
                request,
                exclude_ids=claimed,
                maybe_created=maybe_created,
                since=_since(prompt, maybe_created),
            )
        except AstriaError as exc:
            await self._create_failed(prompt, exc)
            return
        await self._prompt_started(prompt, tune, created)

    async def _create_pack(
        self, prompt: PromptRecord, tune: TuneRecord, run: PackRun, maybe_created: bool
    ) -> None:
        """Run a pack on the member's tune exactly once. Astria makes a pack again on every
        POST, so before it the tune's prompts are listed and kept (`seen_ids`); a run that
        may have been posted (its answer lost, or the process killed) lists them again and
        adopts the pack's new ones instead of posting again (docs/architecture.md)."""
        if tune.state in GONE_TUNES:
            await self._fail(prompt, _tune_gone(tune), charge=None)
            return
        try:
            if maybe_created and run.seen_ids is not None:
                found = await self._pack_made(run)
                if found:
                    log.info(
                        "%s: adopted %d prompts of a pack posted before", prompt.job, len(found)
                    )
                    await self._pack_started(prompt, tune, found)
                    return
            seen = [p.id async for p in self._client.iter_prompts(tune_id=run.astria_tune_id)]
            await self._write(
                prompt.job,
                "recording the tune's prompts before the pack",
                lambda: self._store.packs.set_seen(prompt.id, seen),
            )
            created = await self._client.run_pack(run.pack_id, run.astria_tune_id)
        except AstriaError as exc:
            await self._create_failed(prompt, exc)
            return
        made = [
            MadePrompt(p.id, p.text, p.num_images or 1, p.cost_mc)
            for p in created
            if p.pack_id in (None, run.pack_id)
        ]
        await self._pack_started(prompt, tune, made)

    async def _pack_made(self, run: PackRun) -> list[MadePrompt]:
        """The prompts of `run`'s pack on its tune that were not there before its POST and
        no run adopted: what a lost POST made."""
        seen = run.seen_ids or frozenset()
        adopted = await self._store.packs.adopted_astria_ids(run.astria_tune_id)
        return [
            MadePrompt(p.id, p.text, p.num_images or 1, p.cost_mc)
            async for p in self._client.iter_prompts(tune_id=run.astria_tune_id)
            if p.id not in seen and p.id not in adopted and p.pack_id == run.pack_id
        ][::-1]

    async def _pack_started(
        self, prompt: PromptRecord, tune: TuneRecord, made: Sequence[MadePrompt]
    ) -> None:
        """The pack's prompts become prompt rows of their own, followed like any other;
        the run's reservation stays until Astria is done with every one."""
        if not made:
            await self._fail(prompt, "Astria made no prompts for this pack", charge=None)
            return
        items = await self._write(
            prompt.job,
            f"adopting {len(made)} prompts of the pack",
            lambda: self._store.packs.adopt(prompt.id, made),
        )
        seconds = self._prompt_seconds(tune.profile)
        now = self._clock()
        for item in items:
            assert item.astria_id is not None
            self._held.add(item.job)
            if item.state == PromptState.GENERATING:
                self._follow(item.job, item.astria_id, None, now, seconds)
        self._note_charge(sum(m.cost_mc or 0 for m in made))
        # Its prompts are posted one by one; the run's own status says the pack is on.
        await self._progress(prompt, PACK_RUNNING)

    async def _pack_item_ended(self, record: PromptRecord) -> None:
        """A pack's prompt was settled or released: once all are, the run's reservation is
        given back (its prompts' settles are what Astria charged) and the run is over."""
        run_id = await self._store.packs.run_of(record.id)
        if run_id is not None:
            await self._close_pack(run_id)

    async def _close_pack(self, run_id: int) -> None:
        if await self._store.packs.open_items(run_id) > 0:
            return
        items = await self._store.packs.items(run_id)
        if not items:
            return  # not adopted yet
        job = JobRef(JobKind.PROMPT, run_id)
        await self._write(
            job,
            "releasing the pack's hold",
            lambda: self._store.ledger.release(job, note="settled by the pack's prompts"),
        )
        run = await self._store.prompts.get(run_id)
        if run is not None and run.state in (PromptState.GENERATING, PromptState.STUCK):
            made = any(i.state != PromptState.FAILED for i in items)
            state = PromptState.DELIVERED if made else PromptState.FAILED
            await self._write(job, "-> ended", lambda: self._store.prompts.set_state(run_id, state))
            await self._progress(run, PACK_DONE)

    async def _recover_on_gone_tune(
        self, prompt: PromptRecord, tune: TuneRecord, target: int, claimed: Collection[int]
    ) -> None:
        """A create was in flight when the prompt's tune went: look it up, never re-post.
        Found, it is followed as usual (Astria has it and billed it); not found, the job
        fails and its credit is released. A checkpoint's prompts go with it at Astria (a
        404 on its list): nothing is left to follow there either."""
        try:
            found = await self._client.find_prompt(
                target,
                prompt.final_text,
                prompt.seed,
                since=_since(prompt, True),
                exclude_ids=claimed,
            )
        except AstriaNotFound:
            found = None
        except AstriaError as exc:
            log.warning("%s: lookup on a gone tune failed (%s); later", prompt.job, exc.message)
            self._retry_at[prompt.job] = self._steady() + self._config.resubmit_delay
            return
        if found is None:
            await self._fail(prompt, _tune_gone(tune), charge=None)
            return
        await self._prompt_started(prompt, tune, found)

    async def _prompt_started(
        self, prompt: PromptRecord, tune: TuneRecord, created: Prompt
    ) -> None:
        # What Astria billed at creation is kept with the id: the operator's cost if the
        # prompt fails and Astria keeps it while reporting 0 on the failed prompt.
        # Astria has it (and charged): a write failing from here leaves the prompt
        # `submitting`, and recovery finds it at Astria (never a second post).
        await self._write(
            prompt.job,
            f"recording Astria prompt {created.id}",
            lambda: self._store.prompts.set_astria_id(
                prompt.id, created.id, cost_mc=created.cost_mc or None
            ),
        )
        prompt = await self._write(
            prompt.job,
            "submitting -> generating",
            lambda: self._store.prompts.set_state(prompt.id, PromptState.GENERATING),
        )
        seconds = self._prompt_seconds(tune.profile)
        self._follow(prompt.job, created.id, None, self._clock(), seconds)
        self._note_charge(created.cost_mc)
        eta = self._clock() + timedelta(seconds=seconds)  # shown to the member: wall time
        await self._progress(prompt, "generating", eta=eta)

    def _recover_later(self, job: JobRef) -> None:
        """A store write in the job's submission failed for good: it stays `submitting`
        (or `queued`), and recovery looks it up at Astria before any re-post."""
        log.warning("%s: left submitting after a store failure; recovery looks it up", job)
        self._retry_at[job] = self._clock() + self._config.resubmit_delay
        self._balance_unsure = True  # Astria may have charged for it already

    @about_job
    async def _create_failed(self, record: TuneRecord | PromptRecord, exc: AstriaError) -> None:
        if isinstance(exc, AstriaPaymentRefused):
            await self._refused_for_credit(record, exc)
            return
        if isinstance(exc, AstriaValidationError):
            await self._fail(record, f"Astria refused it: {exc.plain()}", charge=None)
            return
        if exc.ambiguous:
            # It may exist: stay `submitting`; recovery looks it up before any re-post.
            self._quiet.warning(
                "%s: create unanswered (%s); will look it up", record.job, exc.message
            )
            self._alerts.astria_error()
            self._retry_at[record.job] = self._steady() + self._config.resubmit_delay
            return
        if exc.retryable or isinstance(exc, AstriaAuthError):
            # Nothing was created (refused connection, rate limit, a bad key): queue again.
            log.warning("%s: not submitted (%s); back in the queue", record.job, exc.message)
            if exc.retryable:
                self._alerts.astria_error()
            await self._requeue(record)
            return
        # Astria's words only: the route and status are for the log.
        log.warning("%s: refused by Astria (%s)", record.job, exc.message)
        reason = f"Astria refused it: {exc.detail}" if exc.detail else "Astria refused it"
        await self._fail(record, reason, charge=None)

    @about_job
    async def _refused_for_credit(
        self, record: TuneRecord | PromptRecord, exc: AstriaPaymentRefused
    ) -> None:
        """Nothing was made: the job goes back to the queue with its credit held, paid
        intake pauses, and the balance is read again at once."""
        reservation = await self._store.ledger.reservation(record.job)
        need = max(1, reservation.amount_mc if reservation else 1)
        short = await self._write(
            record.job,
            "marking the account short",
            lambda: self._store.account.mark_short(need, at=self._clock()),
        )
        if short:
            log.error(
                "Astria refused %s for lack of credit (%s): paid commands are paused and "
                "paid jobs wait until the balance covers %d mc above the safety margin",
                record.job,
                exc.message,
                need,
            )
            await self._alerts.out_of_credit(need)
        self._balance_due = True
        await self._requeue(record)
        self._short_told.add(record.job)
        await self._progress(record, WAITING_FOR_CREDIT)

    async def _short_of_credit(self) -> bool:
        known = await self._store.account.last_known()
        return known is not None and known.short

    @about_job
    async def _requeue(self, record: TuneRecord | PromptRecord) -> None:
        if isinstance(record, TuneRecord):
            await self._write(
                record.job,
                "submitting -> queued",
                lambda: self._store.tunes.transition(
                    record.id, TuneState.SUBMITTING, TuneState.QUEUED
                ),
            )
        else:
            await self._write(
                record.job,
                "submitting -> queued",
                lambda: self._store.prompts.transition(
                    record.id, PromptState.SUBMITTING, PromptState.QUEUED
                ),
            )

    def _callback(self, job: JobRef) -> str | None:
        if self._config.callback_base and self._config.signing_key is not None:
            return callback_url(self._config.callback_base, self._config.signing_key, str(job))
        return None

    # ------------------------------------------------------------------ following

    def _prompt_seconds(self, profile_name: str | None) -> float:
        profile = self._config.profiles.get(profile_name or "")
        return profile.expected_prompt_seconds if profile else self._poll.prompt_min

    def _follow(
        self,
        job: JobRef,
        astria_id: int,
        eta: datetime | None,
        submitted_at: datetime,
        prompt_seconds: float = 0.0,
    ) -> None:
        """Follow `job`. `eta` and `submitted_at` are wall times (Astria's, the store's):
        what is left until them counts on the steady timeline from now on."""
        offset = self._offset()
        eta = None if eta is None else eta + offset
        submitted_at = submitted_at + offset
        expected = expected_done(job.kind, submitted_at, eta, prompt_seconds)
        first = max(first_check(job.kind, submitted_at, expected, self._poll), self._steady())
        self._watch[job] = _Watch(job, astria_id, expected, first)
        # A create that finished in the background may be due sooner than the loop's
        # current wait: let the loop work out its wait again.
        self._wake.set()

    async def _refresh_due(self, report: PollReport) -> None:
        now = self._steady()
        due = [w for w in self._watch.values() if w.next_at <= now]
        if not due:
            return
        shared = not self._config.sole_process
        tunes = [w for w in due if w.job.kind == JobKind.TUNE]
        prompts = [w for w in due if w.job.kind == JobKind.PROMPT]
        others: dict[JobKind, dict[int, int]] = {JobKind.TUNE: {}, JobKind.PROMPT: {}}
        aside: dict[JobKind, dict[int, int]] = {JobKind.TUNE: {}, JobKind.PROMPT: {}}
        if shared:
            tunes, prompts = (
                await self._take_turn(tunes, others, aside),
                await self._take_turn(prompts, others, aside),
            )
        found_tunes, seen_tunes = await self._fetch(
            tunes,
            self._list_tunes_page,
            self._client.get_tune,
            others[JobKind.TUNE],
            aside[JobKind.TUNE],
        )
        found_prompts, seen_prompts = await self._fetch(
            prompts,
            self._list_prompts_page,
            self._client.get_prompt,
            others[JobKind.PROMPT],
            aside[JobKind.PROMPT],
        )
        # This process's own jobs not yet due that the pages showed: looked at too (their
        # schedules fall in with the list's, so later lists serve them together).
        own_tunes = self._own_seen(JobKind.TUNE, seen_tunes)
        own_prompts = self._own_seen(JobKind.PROMPT, seen_prompts)
        if shared:
            await self._leave_seen(JobKind.TUNE, seen_tunes, _TUNE_SEEN)
            await self._leave_seen(JobKind.PROMPT, seen_prompts, _PROMPT_SEEN)
        report.checked += len(tunes) + len(prompts)
        for watch, tune in own_tunes:
            watch.deferred = None
            await self._on_tune(watch, tune, report)
        for watch, prompt in own_prompts:
            watch.deferred = None
            await self._on_prompt(watch, prompt, report)
        for watch in tunes:
            watch.deferred = None
            if watch.astria_id in found_tunes:
                await self._on_tune(watch, found_tunes[watch.astria_id], report)
            else:
                self._missed(watch)
        for watch in prompts:
            watch.deferred = None
            if watch.astria_id in found_prompts:
                await self._on_prompt(watch, found_prompts[watch.astria_id], report)
            else:
                self._missed(watch)

    # ------------------------------------------------------------------ shared polling
    # Several processes on one store: one list pass per poll interval for the account
    # (docs/architecture.md §7). The process that takes a kind's turn lists for its own
    # due jobs and for the jobs the others follow, and leaves what it saw of theirs on the
    # store; each holder applies that in its next round, without a request of its own.
    # Only a job's holder acts on it; a job whose snapshot did not come (not on the
    # pages, a list that failed) is looked at by its holder after one interval's wait.

    async def _apply_seen(self, report: PollReport) -> None:
        """Apply what other processes' lists saw of the jobs this one follows: the due
        ones, and finished ones whenever seen (the rest is dropped: their own time comes)."""
        try:
            seen = await self._store.leases.seen(self._config.holder)
        except StoreError as exc:
            self._quiet.warning("shared statuses unread this round (%s)", exc)
            return
        now = self._steady()
        for job, snapshot in seen.items():
            watch = self._watch.get(job)
            if watch is None:
                continue
            due = watch.next_at <= now
            try:
                if job.kind == JobKind.TUNE:
                    tune = Tune.model_validate_json(snapshot)
                    if tune.id != watch.astria_id or not (due or tune.is_trained):
                        continue
                    await self._on_tune(watch, tune, report)
                else:
                    prompt = Prompt.model_validate_json(snapshot)
                    finished = prompt.is_done or prompt.is_failed
                    if prompt.id != watch.astria_id or not (due or finished):
                        continue
                    await self._on_prompt(watch, prompt, report)
            except ValidationError:
                continue
            if watch.deferred is not None and job in self._watch:
                # Seen by the list it waited for: its next look counts from then, as
                # if it had looked itself (its schedule keeps the list's phase).
                watch.next_at -= max(now - watch.deferred, timedelta(0))
            watch.deferred = None
            report.checked += 1

    async def _take_turn(
        self,
        due: list[_Watch],
        others: dict[JobKind, dict[int, int]],
        aside: dict[JobKind, dict[int, int]],
    ) -> list[_Watch]:
        """Take the list turn for the due jobs' kind: this process lists for everyone
        (the others' jobs go into `others`, its own not yet due into `aside`); while
        another process's turn lasts, its due
        jobs wait an interval for what that list saw, except those that already waited
        once. Returns the due jobs to look at now."""
        if not due:
            return due
        kind = due[0].job.kind
        seconds = self._poll.minimum(kind) * self._poll.slowdown
        try:
            mine = await self._store.leases.take_turn(kind, self._config.holder, seconds)
            if mine:
                others[kind] = await self._store.leases.others_followed(kind, self._config.holder)
                waiting = {w.job for w in due}
                aside[kind] = {
                    w.astria_id: w.job.id
                    for w in self._watch.values()
                    if w.job.kind == kind and w.job not in waiting
                }
        except StoreError as exc:
            self._quiet.warning("the shared list turn is unknown (%s); listing alone", exc)
            return due
        if mine:
            return due
        now = self._steady()
        looking: list[_Watch] = []
        for watch in due:
            if watch.deferred is not None:
                looking.append(watch)
            else:
                watch.deferred = now
                watch.next_at = now + timedelta(seconds=seconds)
        return looking

    def _own_seen(self, kind: JobKind, seen: dict[int, T]) -> list[tuple[_Watch, T]]:
        """Take this process's own jobs out of what the pages showed (the rest is other
        processes')."""
        own: list[tuple[_Watch, T]] = []
        for job_id in list(seen):
            watch = self._watch.get(JobRef(kind, job_id))
            if watch is not None:
                own.append((watch, seen.pop(job_id)))
        return own

    async def _leave_seen(
        self, kind: JobKind, seen: Mapping[int, BaseModel], fields: set[str]
    ) -> None:
        if not seen:
            return
        snapshots = {job_id: item.model_dump_json(include=fields) for job_id, item in seen.items()}
        try:
            await self._store.leases.leave_seen(kind, snapshots)
        except StoreError as exc:
            # Their holders look themselves after an interval's wait.
            self._quiet.warning("statuses for other processes not left (%s)", exc)

    async def _list_tunes_page(self, before_id: int | None) -> list[Tune]:
        return await self._client.list_tunes(limit=PAGE, before_id=before_id)

    async def _list_prompts_page(self, before_id: int | None) -> list[Prompt]:
        return await self._client.list_prompts(limit=PAGE, before_id=before_id)

    async def _fetch(
        self,
        due: list[_Watch],
        page: Callable[[int | None], Awaitable[Sequence[T]]],
        get_one: Callable[[int], Awaitable[T]],
        others: dict[int, int] | None = None,
        aside: dict[int, int] | None = None,
    ) -> tuple[dict[int, T | None], dict[int, T]]:
        """Astria's view of the due jobs: list pages while one page refreshes several jobs
        (newest first, stopping below the oldest wanted id), single GETs for the rest.
        A job missing from the result could not be read this round. `others` (Astria id
        -> job id): other processes' jobs the pages are listed for too, never fetched on
        their own; what the pages showed of them is returned by job id. `aside`: this
        process's jobs not yet due, returned likewise when on those pages, but never
        listed for (the pages go no deeper for them)."""
        mine = {w.astria_id for w in due}
        others = {**(aside or {}), **(others or {})}
        wanted = mine | (others.keys() - (aside or {}).keys())
        found: dict[int, T | None] = {}
        if len(wanted) >= 2:
            oldest = min(wanted)
            cursor: int | None = None
            pages = 0
            while len(wanted - found.keys()) >= 2 and pages < len(wanted) - 1:
                try:
                    items = await page(cursor)
                except AstriaError as exc:
                    self._quiet.warning("status page failed (%s)", exc.message)
                    self._alerts.astria_error()
                    break
                pages += 1
                for item in items:
                    if item.id in wanted or item.id in others:
                        found[item.id] = item
                if len(items) < PAGE:
                    break
                cursor = items[-1].id
                if cursor <= oldest:
                    break
        seen = {
            others[astria_id]: item
            for astria_id, item in found.items()
            if astria_id in others and astria_id not in mine and item is not None
        }
        for astria_id in mine - found.keys():
            try:
                found[astria_id] = await get_one(astria_id)
            except AstriaNotFound:
                found[astria_id] = None
            except AstriaError as exc:
                self._quiet.warning("status of %s unknown this round (%s)", astria_id, exc.message)
                self._alerts.astria_error()
        return {i: found[i] for i in mine if i in found}, seen

    def _missed(self, watch: _Watch) -> None:
        watch.misses += 1
        watch.next_at = next_check(
            watch.job.kind, self._steady(), watch.misses, self._poll, stuck=watch.stuck
        )

    @about_job
    async def _mark_stuck(self, watch: _Watch, record: TuneRecord | PromptRecord) -> None:
        now = self._steady()
        if watch.stuck or not is_stuck(watch.job.kind, now, watch.expected, self._poll):
            return
        job = record.job
        if isinstance(record, TuneRecord):
            tune_id = record.id
            record = await self._write(
                job,
                "marking it stuck",
                lambda: self._store.tunes.set_state(tune_id, TuneState.STUCK),
            )
        else:
            prompt_id = record.id
            record = await self._write(
                job,
                "marking it stuck",
                lambda: self._store.prompts.set_state(prompt_id, PromptState.STUCK),
            )
        await self._record(
            record,
            EventKind.STUCK,
            message="Astria is taking much longer than expected; the bot keeps checking, "
            "and the credit stays held until it finishes or an admin cancels it",
        )
        await self._alerts.stuck(str(job), record.guild_id)
        watch.stuck = True  # only once both are written: a failed write is tried again

    @about_job
    async def _on_tune(self, watch: _Watch, tune: Tune | None, report: PollReport) -> None:
        record = await self._store.tunes.get(watch.job.id)
        bind_record(record)
        if record is None or record.state not in (TuneState.TRAINING, TuneState.STUCK):
            self._watch.pop(watch.job, None)
            return
        if tune is None:
            await self._fail(record, "Astria no longer has this tune", charge="reserved")
            self._watch.pop(watch.job, None)
            report.finished.append(str(watch.job))
            return
        if not tune.is_trained:
            if tune.eta is not None and tune.eta != record.eta:
                eta = tune.eta
                await self._write(
                    record.job,
                    "recording its eta",
                    lambda: self._store.tunes.set_progress(record.id, eta=eta),
                )
                watch.expected = tune.eta + self._offset()
            self._missed(watch)
            await self._mark_stuck(watch, record)
            return
        settlement = await self._write(
            record.job, "settling", lambda: self._store.ledger.settle(record.job, tune.cost_mc)
        )
        await self._overage(record, settlement)
        await self._write(
            record.job,
            "recording its times",
            lambda: self._store.tunes.set_progress(
                record.id, trained_at=tune.trained_at, expires_at=tune.expires_at
            ),
        )
        async with self._finishing_job(record):
            await self._record(record, EventKind.READY, cost_mc=tune.cost_mc)
            await self._write(
                record.job,
                "-> ready",
                lambda: self._store.tunes.set_state(record.id, TuneState.READY),
            )
        if record.photo_paths:  # not forgotten at submission (a store failure then)
            await self._forget_photos(record.id)
        self._watch.pop(watch.job, None)
        report.finished.append(str(watch.job))

    @about_job
    async def _on_prompt(self, watch: _Watch, prompt: Prompt | None, report: PollReport) -> None:
        record = await self._store.prompts.get(watch.job.id)
        bind_record(record)
        if record is None or record.state not in (PromptState.GENERATING, PromptState.STUCK):
            self._watch.pop(watch.job, None)
            return
        if prompt is None:
            await self._fail(record, "Astria no longer has this prompt", charge="reserved")
        elif prompt.is_done:
            cost = 0 if await self._charged_to_another(record) else prompt.cost_mc
            settlement = await self._write(
                record.job, "settling", lambda: self._store.ledger.settle(record.job, cost)
            )
            if settlement.reserved_mc > 0:  # a pack's prompt holds 0: its cost is no overage
                await self._overage(record, settlement)
            await self._write(
                record.job,
                "recording its images",
                lambda: self._store.prompts.set_images(record.id, prompt.images),
            )
            await self._write(
                record.job,
                "recording its cost",
                lambda: self._store.prompts.set_cost(record.id, settlement.cost_mc),
            )
            await self._record(
                record, EventKind.DONE, images=tuple(prompt.images), cost_mc=settlement.cost_mc
            )
        elif prompt.is_failed:
            # The member never pays for images they did not get: the reservation is
            # released under every reading. What Astria kept, if it keeps anything, is
            # the operator's cost (docs/architecture.md §3).
            self._balance_unsure = True
            another = await self._charged_to_another(record)
            if not self._config.refunds_failed_prompts and not another:
                # Booked first (once per job), so a crash before the end repeats nothing.
                kept = prompt.cost_mc or record.cost_mc
                if kept is None:
                    reservation = await self._store.ledger.reservation(record.job)
                    kept = reservation.amount_mc if reservation is not None else 0
                await self._write(
                    record.job,
                    "booking what Astria kept",
                    lambda: self._store.ledger.absorb(
                        record.job, kept, note="kept by Astria for a failed prompt"
                    ),
                )
            await self._fail(record, f"Astria could not make it: {prompt.user_error}", None)
            if not another:  # after the writes: a failed one repeats this branch
                self._refunds.failed(prompt.cost_mc or record.cost_mc or 0)
        else:
            self._missed(watch)
            await self._mark_stuck(watch, record)
            return
        self._watch.pop(watch.job, None)
        report.finished.append(str(watch.job))
        await self._pack_item_ended(record)

    async def _overage(self, record: TuneRecord | PromptRecord, settlement: Settlement) -> None:
        """Astria charged more than the configured price: the admins hear of it (once: a
        repeated settle writes nothing and says so)."""
        if settlement.applied and settlement.overage_mc > 0:
            await self._alerts.overage(
                str(record.job), record.guild_id, settlement.reserved_mc, settlement.cost_mc
            )

    async def _charged_to_another(self, record: PromptRecord) -> bool:
        """With idempotency on, an identical later job gets the first one's Astria prompt:
        Astria charged once, so only the first job pays."""
        assert record.astria_id is not None
        sharing = await self._store.prompts.by_astria_id(record.astria_id)
        return any(other.id < record.id for other in sharing)

    @about_job
    async def _fail(
        self, record: TuneRecord | PromptRecord, reason: str, charge: int | str | None
    ) -> None:
        """End a job as failed. `charge`: what Astria billed (an int), "reserved" when it
        may have billed the price, or None when it billed nothing (released)."""
        job = record.job
        if isinstance(charge, int):
            cost = charge
            await self._write(job, "settling", lambda: self._store.ledger.settle(job, cost))
        elif charge == "reserved":
            await self._write(
                job, "settling", lambda: self._store.ledger.settle(job, None, note=reason)
            )
        else:
            await self._write(
                job, "releasing", lambda: self._store.ledger.release(job, note=reason)
            )
        async with self._finishing_job(record):
            await self._record(record, EventKind.FAILED, message=reason)
            if isinstance(record, TuneRecord):
                tune_id = record.id
                await self._write(
                    job,
                    "-> failed",
                    lambda: self._store.tunes.set_state(tune_id, TuneState.FAILED, error=reason),
                )
            else:
                prompt_id = record.id
                await self._write(
                    job,
                    "-> failed",
                    lambda: self._store.prompts.set_state(
                        prompt_id, PromptState.FAILED, error=reason
                    ),
                )
        if isinstance(record, TuneRecord):
            await self._forget_photos(record.id)

    async def _forget_photos(self, tune_id: int) -> None:
        """Delete a tune's photos from disk: Astria has them, or the tune will never run.
        A store failure leaves them recorded (a ready tune forgets them then)."""
        job = JobRef(JobKind.TUNE, tune_id)
        try:
            paths = await self._write(
                job, "forgetting its photos", lambda: self._store.tunes.clear_photos(tune_id)
            )
        except StoreFault:
            return
        await asyncio.to_thread(_unlink_all, paths)

    # ------------------------------------------------------------------ cancelling

    async def cancel_queued(self, job: JobRef, owner_id: int) -> bool:
        """The owner cancels a job still waiting in the queue: never submitted, released."""
        if job.kind == JobKind.TUNE:
            tune = await self._store.tunes.get_owned(owner_id, job.id)
            if tune is None:
                return False
            moved: TuneRecord | PromptRecord | None = await self._write(
                job,
                "queued -> cancelled",
                lambda: self._store.tunes.transition(job.id, TuneState.QUEUED, TuneState.CANCELLED),
            )
        else:
            prompt = await self._store.prompts.get_owned(owner_id, job.id)
            if prompt is None:
                return False
            moved = await self._write(
                job,
                "queued -> cancelled",
                lambda: self._store.prompts.transition(
                    job.id, PromptState.QUEUED, PromptState.CANCELLED
                ),
            )
        if moved is None:
            return False
        try:
            await self._write(
                job,
                "releasing",
                lambda: self._store.ledger.release(
                    job, actor_id=owner_id, note="cancelled in the queue"
                ),
            )
        except StoreFault:
            self._repair_due = True  # cancelled: the next round's repair releases it
        if isinstance(moved, TuneRecord):
            await self._forget_photos(moved.id)
        await self._record(moved, EventKind.CANCELLED, message="cancelled before it started")
        self._positions.pop(job, None)
        return True

    async def cancel_running(self, job: JobRef, owner_id: int) -> int | None:
        """The owner cancels their prompt while Astria generates it: claimed here first
        (so no round reports it), deleted at Astria, and settled at what Astria says it
        cost (what it billed at creation when Astria cannot say). The cost, or None when
        it is not running (queued, or its images are already in hand)."""
        if job.kind != JobKind.PROMPT:
            return None
        prompt = await self._store.prompts.get_owned(owner_id, job.id)
        if prompt is None or prompt.astria_id is None or prompt.state != PromptState.GENERATING:
            return None
        if await self._store.events.existing([event_key(str(job), EventKind.DONE)]):
            return None  # done at Astria: only the post is pending
        moved = await self._store.prompts.transition(
            job.id, PromptState.GENERATING, PromptState.CANCELLED
        )
        if moved is None:
            return None
        self._watch.pop(job, None)
        try:
            cost = await self._cost_then_delete(prompt.astria_id, tune=False)
        except AstriaError as exc:
            log.warning("%s: not deleted at Astria (%s)", job, exc.message)
            cost = prompt.cost_mc or 0
        cost = cost or prompt.cost_mc or 0
        self._balance_unsure = True
        settled = await self._store.ledger.settle(
            job, cost, actor_id=owner_id, note="cancelled while generating"
        )
        await self._record(moved, EventKind.CANCELLED, message="cancelled while it was generating")
        await self._pack_item_ended(moved)
        return settled.cost_mc

    async def cancel_stuck(self, job: JobRef, actor_id: int) -> bool:
        """An admin cancels a stuck job: deleted at Astria and settled at what Astria says
        it cost (0 if nothing), so the ledger stays equal to Astria's charges."""
        watch = self._watch.get(job)
        if job.kind == JobKind.TUNE:
            tune = await self._store.tunes.get(job.id)
            if tune is None or tune.state != TuneState.STUCK or tune.astria_id is None:
                return False
            cost = await self._cost_then_delete(tune.astria_id, tune=True)
            await self._write(
                job,
                "settling",
                lambda: self._store.ledger.settle(
                    job, cost, actor_id=actor_id, note="stuck; cancelled"
                ),
            )
            await self._record(tune, EventKind.CANCELLED, message="cancelled by an admin")
            await self._write(
                job,
                "-> cancelled",
                lambda: self._store.tunes.set_state(job.id, TuneState.CANCELLED),
            )
        else:
            prompt = await self._store.prompts.get(job.id)
            if prompt is None or prompt.state != PromptState.STUCK or prompt.astria_id is None:
                return False
            cost = await self._cost_then_delete(prompt.astria_id, tune=False)
            await self._write(
                job,
                "settling",
                lambda: self._store.ledger.settle(
                    job, cost, actor_id=actor_id, note="stuck; cancelled"
                ),
            )
            await self._record(prompt, EventKind.CANCELLED, message="cancelled by an admin")
            await self._pack_item_ended(prompt)
            await self._write(
                job,
                "-> cancelled",
                lambda: self._store.prompts.set_state(job.id, PromptState.CANCELLED),
            )
        if watch is not None:
            self._watch.pop(job, None)
        return True

    async def _cost_then_delete(self, astria_id: int, *, tune: bool) -> int:
        try:
            found: Tune | Prompt = (
                await self._client.get_tune(astria_id)
                if tune
                else await self._client.get_prompt(astria_id)
            )
            cost = found.cost_mc or 0
        except AstriaNotFound:
            cost = 0
        if tune:
            await self._client.delete_tune(astria_id)
        else:
            await self._client.delete_prompt(astria_id)
        return cost

    # ------------------------------------------------------------------ expiry, money

    async def _check_expiry(self) -> None:
        """Remind before a ready tune's deletion date and expire it after, each time on
        Astria's word, not the stored date alone: an account with auto-extend keeps its
        tunes past 30 days, so the tune is re-read first. A new date is stored and the
        tune stays ready; only a 404, or a date Astria itself puts in the past, expires
        it. When Astria cannot say (a timeout, 5xx, 429), nothing changes until the next
        round."""
        now = self._clock()
        window = now + self._config.expiry_reminder
        due = await self._store.tunes.expiring(before=window)
        if not due:
            return
        reminded = await self._store.events.existing(
            [event_key(str(t.job), EventKind.EXPIRY_SOON) for t in due]
        )
        for tune in due:
            stored = tune.expires_at
            assert stored is not None
            if stored > now and event_key(str(tune.job), EventKind.EXPIRY_SOON) in reminded:
                continue  # reminded already: nothing to ask Astria before the date
            if stored > now and self._auto_extend:
                continue  # the account keeps its tunes: no reminder, a re-read at the date
            try:
                expires = await self._expiry_at_astria(tune)
            except AstriaError as exc:
                log.warning("expiry of tune %s not checked (%s)", tune.id, exc.message)
                if exc.retryable:
                    break  # Astria is unreachable for now: the next round asks again
                continue
            current = await self._store.tunes.get(tune.id)
            if current is None or current.state != TuneState.READY:
                continue  # deleted by its owner while Astria was asked
            if expires is not None and expires <= now:
                await self._record(tune, EventKind.EXPIRED, message="Astria deleted it")
                await self._write(
                    tune.job,
                    "-> expired",
                    partial(self._store.tunes.set_state, tune.id, TuneState.EXPIRED),
                )
                continue
            if expires != stored:
                await self._book_extension(tune, stored, expires)
                renewed = await self._write(
                    tune.job,
                    "recording its new expiry",
                    partial(self._store.tunes.renew_expiry, tune.id, expires),
                )
                if renewed is None:
                    continue  # deleted or expired meanwhile
                log.info("Astria keeps tune %s until %s (auto-extend)", tune.id, expires)
                # Astria charges for the extension: the next balance reading may move by
                # more than the bot's own creates.
                self._balance_unsure = True
            if expires is None or expires > window:
                continue
            await self._record(
                tune,
                EventKind.EXPIRY_SOON,
                message=f"Astria deletes it on {expires:%Y-%m-%d %H:%M} UTC",
            )

    async def _book_extension(
        self, tune: TuneRecord, stored: datetime | None, expires: datetime | None
    ) -> None:
        """Astria kept the tune longer and charged for it: the operator's cost, booked
        once per new date (before the date is stored, so a crash between repeats nothing
        and loses nothing)."""
        if stored is None or expires is None or expires <= stored:
            return
        periods = max(1, round((expires - stored) / timedelta(days=30)))
        fee = periods * self._config.extension_price_mc
        note = f"Astria kept it until {expires:%Y-%m-%d %H:%M} UTC (auto-extend)"
        booked = await self._write(
            tune.job,
            "booking the extension",
            lambda: self._store.ledger.absorb(tune.job, fee, note=note),
        )
        if booked is not None:
            self._refunds.charged(fee)

    async def _expiry_at_astria(self, tune: TuneRecord) -> datetime | None:
        """When Astria deletes the tune (None: it names no date), or now when it already
        has: a 404 means it is gone. Errors other than a 404 propagate."""
        if tune.astria_id is None:
            return tune.expires_at
        try:
            found = await self._client.get_tune(tune.astria_id)
        except AstriaNotFound:
            return self._clock()
        return found.expires_at

    def _note_charge(self, cost_mc: int | None) -> None:
        if cost_mc:
            self._charged_since_read += cost_mc
            self._refunds.charged(cost_mc)
            self._balance_due = True  # re-read after each paid create

    async def read_balance(self) -> bool:
        """Read the Astria balance now (at start-up, before members can ask for anything:
        paid reservations wait for a known balance). False if Astria did not answer."""
        self._balance_due = True
        with contextlib.suppress(StoreFault):  # logged; the tracker's rounds read it again
            await self._refresh_balance()
        return not self._balance_due

    async def _refresh_balance(self) -> None:
        now = self._steady()
        stale = (
            self._balance_read_at is None
            or now - self._balance_read_at >= self._config.balance_refresh
        )
        if not (stale or self._balance_due):
            return
        if not self._balance_due and not await self._store.meta.take_turn(
            BALANCE_TURN, now=self._clock(), every=self._config.balance_refresh
        ):
            # Another process read it this period (the watch is one process's a period);
            # the next reading of this one is compared with no earlier one of its own.
            self._balance_unsure = True
            return
        busy = bool(self._tasks)  # creates (and recoveries) in flight
        charged = self._charged_since_read
        sent_at = self._clock()
        mark = await self._store.ledger.last_id()  # settles after it count as exposure
        try:
            user = await self._client.get_user()
        except AstriaError as exc:
            self._quiet.warning("balance not read (%s)", exc.message)
            self._alerts.astria_error()
            return
        before = await self._store.account.last_known()  # stored: a restart knows it too
        busy = busy or bool(self._tasks) or self._charged_since_read != charged
        await self._write(
            None,
            "recording the balance",
            lambda: self._store.account.record_balance(
                user.usd_balance_mc, read_at=sent_at, ledger_mark=mark
            ),
        )
        if self._balance_mc is not None and not (busy or self._balance_unsure):
            # Anything else that moves it is spend the bot did not make (another client
            # on the key) or a price surprise.
            drop = self._balance_mc - user.usd_balance_mc
            if drop != charged:
                # Less spent than expected is a refund of a failed prompt seen before the
                # bot saw the failure; more is money the bot cannot account for.
                log.log(
                    logging.WARNING if drop > charged else logging.INFO,
                    "Astria balance moved by %d mc since the last reading, but the bot's "
                    "creates cost %d mc (drift %d mc)",
                    drop,
                    charged,
                    drop - charged,
                )
                if drop > charged:
                    await self._alerts.drift(drop, charged)
        await self._alerts.balance_read(
            None if before is None else before.balance_mc, user.usd_balance_mc
        )
        self._auto_extend = user.auto_extend_tunes
        await self._check_refund_statement(user.usd_balance_mc, exact=not busy)
        self._balance_mc = user.usd_balance_mc
        # Charges noted while the request was out stay for the next window.
        self._charged_since_read -= charged
        # A create in flight may be in this reading or the next: the next one is unsure too.
        self._balance_unsure = busy
        self._balance_read_at = now
        self._balance_due = False

    async def _check_refund_statement(self, balance_mc: int, *, exact: bool) -> None:
        found = self._refunds.reading(balance_mc, exact=exact)
        if found is None:
            return
        stated = "refunded" if self._config.refunds_failed_prompts else "kept"
        with contextlib.suppress(StoreFault):  # logged; a later reading finds it again
            await self._write(
                None,
                "recording the refund finding",
                lambda: self._store.meta.record_refund_finding(found, stated, self._clock()),
            )
        if found != stated:
            log.warning(
                "ASTRIA_REFUNDS_FAILED_PROMPTS is %s, but the Astria balance shows failed "
                "prompts' costs %s: set it to %s, or the ledger and Astria's bill part",
                "true" if stated == "refunded" else "false",
                "given back" if found == "refunded" else "kept",
                "true" if found == "refunded" else "false",
            )
            await self._alerts.refund_statement(
                "gives back" if stated == "refunded" else "keeps",
                "gave back" if found == "refunded" else "kept",
            )

    async def _prune_due(self) -> None:
        """Retention once a day, from the first round: finished jobs' events and old
        prompts' image links, older than `retention` (bot/store/retention.py)."""
        now = self._steady()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        if not await self._store.meta.take_turn(
            RETENTION_TURN, now=self._clock(), every=PRUNE_EVERY
        ):
            return  # another process's today: this one asks again next round
        self._pruned_at = now
        try:
            pruned = await self._store.retention.prune(
                before=self._clock() - self._config.retention
            )
        except StoreError as exc:
            log.warning("retention not run (%s); tomorrow again", exc)
            return
        cutoff = self._clock() - self._config.retention
        with contextlib.suppress(StoreError):  # logged; tomorrow again
            await self._write(
                None, "pruning old alerts", lambda: self._store.alerts.prune(before=cutoff)
            )
        await self._audit()
        if pruned.events or pruned.prompts_compacted:
            log.info(
                "retention: %d events of finished jobs deleted, %d prompts' links dropped",
                pruned.events,
                pruned.prompts_compacted,
            )

    async def _audit(self) -> None:
        """The ledger's own consistency, once a day: any problem is the operator's to look
        at (logged in full) and the admins hear that there is one."""
        try:
            problems = await self._store.ledger.audit()
        except StoreError as exc:
            log.warning("ledger audit not run (%s); tomorrow again", exc)
            return
        if problems:
            log.error("the ledger audit found: %s", "; ".join(problems))
            await self._alerts.ledger_problems(problems)

    # ------------------------------------------------------------------ reporting

    @contextlib.asynccontextmanager
    async def _finishing_job(self, record: TuneRecord | PromptRecord) -> AsyncIterator[None]:
        """Hold the job's events back while its final event and final state are written."""
        job = str(record.job)
        self._finishing.add(job)
        try:
            yield
        finally:
            self._finishing.discard(job)
            self._report_due.set()

    @about_job
    async def _record(
        self,
        record: TuneRecord | PromptRecord,
        kind: EventKind,
        *,
        message: str | None = None,
        images: tuple[str, ...] = (),
        cost_mc: int | None = None,
    ) -> None:
        """Write the event to the outbox (once per key) before anything that ends the job."""
        job = str(record.job)
        event = JobEvent(
            key=event_key(job, kind),
            job=job,
            kind=kind,
            owner_id=record.owner_id,
            guild_id=record.guild_id,
            channel_id=record.channel_id,
            message=message,
            images=images,
            cost_mc=cost_mc,
            at=self._clock(),
        )
        await self._write(
            record.job,
            f"recording its {kind} event",
            lambda: self._store.events.record(
                key=event.key, job=job, kind=str(kind), payload=_event_payload(event)
            ),
        )
        self._report_due.set()

    async def _dispatch(self, *, wait: bool = True) -> list[str]:
        """Report every recorded, unreported event; a crash before the mark repeats the
        report under the same key. Each channel is reported by its own task, in order: a
        channel at Discord's rate limit never holds up the others. With `wait`, every
        channel's reports finish first; the keys reported are returned.

        A channel whose task is running when the read starts waits for the round its
        task's end starts: that task may end (its events reported and marked) before the
        read returns, which then still lists them, and a task started on that list would
        hand them to the delivery a second time."""
        by_channel: dict[int, list[RecordedEvent]] = {}
        busy = {channel: task for channel, task in self._reporting.items() if not task.done()}
        events = await self._store.events.pending()
        if any(JobRef.parse(e.job) not in self._held for e in events if _is_job(e.job)):
            # Events of jobs no process held (a finished tune's expiry, a cancel made by
            # a command): claim what is due, so this process reports them now.
            with contextlib.suppress(StoreFault):
                await self._claim_more()
        held = {str(job) for job in self._held}
        for pending in events:
            if pending.job in self._finishing:
                continue  # reported once its state is written
            if pending.job not in held:
                continue  # its holder reports it
            channel = int(pending.payload.get("channel_id") or 0)
            by_channel.setdefault(channel, []).append(pending)
        for channel, events in by_channel.items():
            if channel in busy:  # read while it ran: maybe stale for it
                busy[channel].add_done_callback(self._report_again)
                continue
            running = self._reporting.get(channel)
            if running is None or running.done():  # a running one picks up the rest next
                self._reporting[channel] = asyncio.create_task(self._report_channel(events))
        if not wait:
            return []
        tasks = list(self._reporting.values())
        self._reporting = {}
        results = await asyncio.gather(*tasks)
        return [key for keys in results for key in keys]

    def _report_again(self, _: asyncio.Task[list[str]]) -> None:
        """A channel's task ended whose channel a round left out: a round for it now."""
        self._report_due.set()

    async def _report_channel(self, events: list[RecordedEvent]) -> list[str]:
        done: list[str] = []
        waiting: set[str] = set()  # jobs with an event not due yet: their later ones wait too
        attempted = False
        for pending in events:
            if self._stopping:
                break  # a clean stop finishes the report in hand; the rest wait for the next start
            due = pending.next_attempt_at
            if pending.job in waiting or (due is not None and due > self._clock()):
                waiting.add(pending.job)
                continue
            event = _event_from(pending.payload)
            bind_record(event)  # this task's own context: the lines below name the job
            attempted = True
            outcome = await self._attempt(pending, event)
            if outcome is None:
                waiting.add(pending.job)
                continue
            if pending.attempts:
                log.info("%s: %s after %d failed attempts", event.key, outcome, pending.attempts)
            if event.kind == EventKind.DONE:
                ref = JobRef.parse(event.job)
                state = (
                    PromptState.DELIVERED
                    if outcome == Outcome.DELIVERED
                    else PromptState.UNDELIVERABLE
                )
                try:
                    await self._write(
                        ref, f"-> {state}", partial(self._store.prompts.set_state, ref.id, state)
                    )
                except StoreFault:
                    continue  # reported again later: the delivery finds its own posts
            try:
                await self._write(
                    JobRef.parse(event.job),
                    "marking its report",
                    partial(self._store.events.mark_reported, event.key, str(outcome)),
                )
            except StoreFault:
                continue  # reported again later: the delivery finds its own posts
            self._traced.discard(event.key)
            done.append(event.key)
            if outcome == Outcome.DELIVERED and self._on_delivered is not None:
                # From the end seen at Astria (the event's time) to the result posted.
                waited = (self._clock() - pending.created_at).total_seconds()
                self._on_delivered(str(JobRef.parse(event.job).kind), waited)
        if attempted:
            # Events that arrived meanwhile. Not when every event here waits for its next
            # attempt: the reporting loop would spin on them until then.
            self._report_due.set()
        return done

    async def _attempt(self, pending: RecordedEvent, event: JobEvent) -> Outcome | None:
        """Report the event once: in its channel until the channel has refused it for good
        `CHANNEL_REFUSALS_BEFORE_DM` times (or once, when one refusal is proof), then by DM;
        a DM refused for good too makes it undeliverable. None: it failed this time, and
        the next attempt waits (doubling, capped), however often the process restarts."""
        refusals = pending.refusals
        try:
            if refusals < CHANNEL_REFUSALS_BEFORE_DM:
                try:
                    return await self._delivery.report(event)
                except DeliveryFailed as exc:
                    if not exc.permanent:
                        raise
                    refusals = CHANNEL_REFUSALS_BEFORE_DM if exc.certain else refusals + 1
                    if refusals < CHANNEL_REFUSALS_BEFORE_DM:
                        raise
                    log.info("%s: the channel refused it (%s); trying a DM", event.key, exc)
            try:
                return await self._delivery.report(event, private=True)
            except DeliveryFailed as exc:
                if not exc.permanent:
                    raise
                log.warning(
                    "%s: undeliverable, the channel and the DM refused it (%s)", event.key, exc
                )
                await self._alerts.undeliverable(event.job, event.guild_id)
                return Outcome.UNDELIVERABLE
        except Exception as exc:
            self._alerts.discord_error(event.guild_id)
            attempts = pending.attempts + 1
            delay = retry_delay(attempts)
            try:
                await self._store.events.record_failure(
                    event.key, refusals=refusals, next_attempt_at=self._clock() + delay
                )
            except StoreFault as fault:
                # Not written down: the event stays pending as it was and the next report
                # round tries it again (a raise here ended the channel's report task).
                log.warning("%s: its failed report was not recorded (%s)", event.key, fault)
            where = "by DM" if refusals >= CHANNEL_REFUSALS_BEFORE_DM else "in the channel"
            if isinstance(exc, DeliveryFailed):
                reason = exc.reason
                if exc.permanent:
                    reason += f", refusal {refusals} of {CHANNEL_REFUSALS_BEFORE_DM}"
                log.warning(
                    "%s not reported %s (attempt %d: %s); trying again in %ds",
                    event.key,
                    where,
                    attempts,
                    reason,
                    delay.total_seconds(),
                )
            elif event.key not in self._traced:
                self._traced.add(event.key)
                log.error(
                    "%s not reported %s (attempt %d); trying again in %ds",
                    event.key,
                    where,
                    attempts,
                    delay.total_seconds(),
                    exc_info=exc,
                )
            else:
                log.warning(
                    "%s not reported %s (attempt %d: %s, as before); trying again in %ds",
                    event.key,
                    where,
                    attempts,
                    type(exc).__name__,
                    delay.total_seconds(),
                )
            return None

    @about_job
    async def _progress(
        self,
        record: TuneRecord | PromptRecord,
        state: str,
        *,
        queue_position: int | None = None,
        eta: datetime | None = None,
    ) -> None:
        update = Progress(
            job=str(record.job),
            state=state,
            owner_id=record.owner_id,
            guild_id=record.guild_id,
            channel_id=record.channel_id,
            queue_position=queue_position,
            eta=eta,
        )
        try:
            await self._delivery.progress(update)
        except Exception:
            log.exception("progress of %s not shown", update.job)


def _is_job(text: str) -> bool:
    try:
        JobRef.parse(text)
    except ValueError:
        return False
    return True


def _tune_gone(tune: TuneRecord) -> str:
    """Why a prompt whose tune went while it waited failed, in the member's words."""
    if tune.state in (TuneState.DELETED, TuneState.EXPIRED):
        return f"its tune was {tune.state} before it started; your credit was given back"
    return "its tune is not available any more; your credit was given back"


def _since(record: TuneRecord | PromptRecord, maybe_created: bool) -> datetime | None:
    """Where a recovery lookup must page back to: when the lost attempt was made."""
    if not maybe_created:
        return None
    return record.submitted_at or record.updated_at


def _unlink_all(paths: Sequence[str]) -> None:
    folders = set()
    for path in paths:
        Path(path).unlink(missing_ok=True)
        folders.add(Path(path).parent)
    for folder in folders:
        if folder.name.startswith(BATCH_PREFIX):  # the intake's folder for this one tune
            with contextlib.suppress(OSError):
                folder.rmdir()


def _event_payload(event: JobEvent) -> dict[str, Any]:
    return {
        "key": event.key,
        "job": event.job,
        "kind": str(event.kind),
        "owner_id": event.owner_id,
        "guild_id": event.guild_id,
        "channel_id": event.channel_id,
        "message": event.message,
        "images": list(event.images),
        "cost_mc": event.cost_mc,
        "at": event.at.isoformat() if event.at else None,
    }


def _event_from(payload: dict[str, Any]) -> JobEvent:
    at = payload.get("at")
    return JobEvent(
        key=str(payload["key"]),
        job=str(payload["job"]),
        kind=EventKind(payload["kind"]),
        owner_id=int(payload["owner_id"]),
        guild_id=int(payload["guild_id"]),
        channel_id=int(payload["channel_id"]),
        message=payload.get("message"),
        images=tuple(payload.get("images") or ()),
        cost_mc=payload.get("cost_mc"),
        at=datetime.fromisoformat(at) if at else None,
    )


__all__ = ["PollReport", "Tracker", "TrackerConfig"]
