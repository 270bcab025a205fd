"""The status polling of several processes: a job is looked at only by the process that
holds its lease, and one list request serves all the due jobs that process holds. Two
trackers on one store (holders "a" and "b", as two bot processes), their jobs spread over
channels so that both work, against one tracker alone.

The list pages are shared too (docs/architecture.md §7): one list pass a poll interval
for the account, taken as a turn; the process that takes it leaves what it saw of the
others' jobs for their holders, who apply it without a request of their own. So two
processes send no more status requests a job than one."""

from __future__ import annotations

import asyncio

import pytest

from bot.jobs import EventKind, Tracker
from bot.offline.emulator import EmulatorConfig
from bot.store import JobRef, PromptRecord, TuneRecord
from tests.conftest import KEY
from tests.jobs.conftest import CHANNEL, Rig
from tests.pg import BACKENDS

LEASE = 30.0
JOBS = 12
STEP = 5.0


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """Prompts that take a while (several looks each), on an account with older prompts,
    so the list pages are not ours alone."""
    return EmulatorConfig(api_key=KEY, train_seconds=120, prompt_seconds=60, foreign_prompts=300)


@pytest.fixture(params=BACKENDS)
def rig_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def process(rig: Rig, holder: str) -> Tracker:
    return rig.new_tracker(holder=holder, lease_seconds=LEASE, sole_process=False)


async def rounds(
    rig: Rig, held: dict[JobRef, set[str]], *trackers: Tracker, seconds: float = STEP
) -> None:
    """Move time, one round of each tracker at once, and note who holds which job."""
    await rig.emulator.advance(seconds)
    await asyncio.gather(*(tracker.poll_once() for tracker in trackers))
    for job, holder in (await rig.store.leases.holders()).items():
        held.setdefault(job, set()).add(holder)


async def follow(
    rig: Rig, tune: TuneRecord, trackers: list[Tracker], channels: int
) -> tuple[float, dict[str, int]]:
    """JOBS prompts, one new channel each, followed to their end by `trackers`: the status
    requests (GET and list, tunes and prompts) Astria saw per job, and how many jobs each
    holder held."""
    before = rig.status_requests()
    prompts: list[PromptRecord] = []
    held: dict[JobRef, set[str]] = {}
    for n in range(JOBS):
        prompts.append(await rig.prompt(1, tune, f"sks man {n}", channel=channels + n))
        # A new channel's job goes to whichever process's round comes first. No time
        # passes: the jobs run side by side and come due together, as a busy server's do.
        turn = trackers[n % len(trackers) :] + trackers[: n % len(trackers)]
        await rounds(rig, held, *turn, seconds=0)
        assert sum(t.followed for t in trackers) <= len(prompts)  # none followed twice
    ends = {str(p.job) for p in prompts}
    for _ in range(60):
        if ends <= {e.job for e in rig.delivery.ends(EventKind.DONE)}:
            break
        await rounds(rig, held, *trackers)
        assert sum(t.followed for t in trackers) <= JOBS
    assert ends <= {e.job for e in rig.delivery.ends(EventKind.DONE)}
    assert all(len(h) == 1 for h in held.values())  # no job changed or shared its holder
    assert {p.job for p in prompts} == held.keys() & {p.job for p in prompts}
    counts: dict[str, int] = {}
    for job, holders in held.items():
        if job not in {p.job for p in prompts}:
            continue
        for holder in holders:
            counts[holder] = counts.get(holder, 0) + 1
    return (rig.status_requests() - before) / JOBS, counts


async def measured(rig: Rig) -> tuple[float, float]:
    tune = await rig.ready_tune(owner=1)
    alone, one_holder = await follow(rig, tune, [process(rig, "solo")], CHANNEL + 100)
    assert one_holder == {"solo": JOBS}
    single_gets = rig.emulator.counters["GET /prompts/{id}"]
    a, b = process(rig, "a"), process(rig, "b")
    together, holders = await follow(rig, tune, [a, b], CHANNEL + 200)
    assert set(holders) == {"a", "b"}  # both worked, each on jobs of its own
    # No job is looked at on its own more than alone (here: never, the lists serve them).
    assert rig.emulator.counters["GET /prompts/{id}"] == single_gets == 0
    print(f"\nstatus requests per job: one process {alone:.2f}, two {together:.2f} {holders}")
    return alone, together


async def test_two_processes_look_at_each_job_once_and_list_once_a_round_each(rig: Rig):
    alone, together = await measured(rig)
    # One list request a round per process that has jobs due, whatever their number.
    assert together <= 2 * alone


async def test_two_processes_poll_no_more_per_job_than_one(rig: Rig):
    alone, together = await measured(rig)
    # One list pass a poll interval for the account, not one per process (issue 17).
    assert together <= alone
