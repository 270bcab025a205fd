"""Repair at start-up (issue 13, item 4): a crash between the steps of cancelling,
failing, settling or refunding a job leaves nothing open for good. The crash is
simulated: the operation's first steps run, its next store write raises an exception
nothing in the bot catches (the process is gone), and a new Tracker starts on the same
database. Its start-up repair closes what the crash left open, the ledger audit is clean
and the ledger equals what Astria charged."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bot.jobs import Tracker
from bot.jobs.tracker import STORE_TRIES
from bot.store import (
    JobRef,
    LedgerKind,
    PromptRecord,
    PromptState,
    RefundOutcome,
    StoreFault,
)
from bot.store.ledger import Closing
from tests.jobs.conftest import GUILD, Rig
from tests.jobs.faults import WRITES, Crash, StoreFaults
from tests.pg import BACKENDS

FAIL_MARKER = "EMULATOR_FAIL"


@pytest.fixture(params=BACKENDS)
def rig_backend(request: pytest.FixtureRequest) -> str:
    """These tracker tests run on SQLite and, with TEST_DATABASE_URL, on PostgreSQL."""
    return str(request.param)


def crash_at(faults: StoreFaults, job: JobRef, at: int) -> list[str]:
    """The job's `at`-th store write (1 = its first) raises `Crash`; the writes made for
    the job before it are listed in the returned list."""
    made: list[str] = []

    def concerns(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        repository = name.split(".")[0]
        first = args[0] if args else None
        if repository == "prompts":
            return first == job.id
        if repository == "ledger":
            return first == job
        if repository == "events":
            return kwargs.get("job") == str(job) or str(first).startswith(f"{job}:")
        return False

    for name in sorted(WRITES):
        repository, method = name.split(".")
        target = getattr(faults.store, repository)
        real = getattr(target, method)

        def bind(name: str, real: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                if concerns(name, args, kwargs):
                    if len(made) + 1 == at:
                        raise Crash(f"killed before {name}")
                    made.append(name)
                return await real(*args, **kwargs)

            return wrapper

        faults.monkeypatch.setattr(target, method, bind(name, real))
    return made


async def _restart(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> Tracker:
    """The old process is gone; a new one starts on the same database."""
    monkeypatch.undo()
    await rig.tracker.stop()
    rig.tracker = rig.new_tracker()
    await rig.tracker.start()
    return rig.tracker


async def _state(rig: Rig, prompt: PromptRecord) -> PromptState:
    found = await rig.store.prompts.get(prompt.id)
    assert found is not None
    return found.state


async def _ended(rig: Rig, prompt: PromptRecord) -> None:
    async def done() -> bool:
        live = {
            PromptState.QUEUED,
            PromptState.SUBMITTING,
            PromptState.GENERATING,
            PromptState.STUCK,
        }
        return await _state(rig, prompt) not in live and not await rig.store.events.pending()

    await rig.run_until(done, step=60)


async def _at_astria(rig: Rig, prompt: PromptRecord) -> int:
    async def sent() -> bool:
        found = await rig.store.prompts.get(prompt.id)
        return found is not None and found.astria_id is not None

    await rig.run_until(sent, step=1)
    found = await rig.store.prompts.get(prompt.id)
    assert found is not None and found.astria_id is not None
    return found.astria_id


async def _clean(rig: Rig) -> None:
    assert await rig.store.ledger.audit() == []
    await rig.ledger_matches_charges()


# Each operation's store writes for its job, in order (the crash comes before the n-th).
CANCEL_QUEUED = ("prompts.transition", "ledger.release", "events.record")
FAIL = ("ledger.release", "events.record", "prompts.set_state")
SETTLE = (
    "ledger.settle",
    "prompts.set_images",
    "prompts.set_cost",
    "events.record",
    "prompts.set_state",
    "events.mark_reported",
)
CANCEL_STUCK = ("ledger.settle", "events.record", "prompts.set_state")


@pytest.mark.parametrize("at", range(1, len(CANCEL_QUEUED) + 1))
async def test_a_crash_while_cancelling_a_queued_job(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, at: int
) -> None:
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune, "sks man, cancelled")
    made = crash_at(StoreFaults(rig.store, monkeypatch), prompt.job, at)
    with pytest.raises(Crash):
        await rig.tracker.cancel_queued(prompt.job, owner_id=1)
    assert made == list(CANCEL_QUEUED[: at - 1])
    if at == 2:  # cancelled, credit still held: the audit sees it
        problems = await rig.store.ledger.audit()
        assert any("still open" in p and str(prompt.job) in p for p in problems), problems

    await _restart(rig, monkeypatch)
    if at == 2:  # the start-up repair released it
        closing = [e for e in await rig.store.ledger.entries(job=prompt.job)]
        assert [e.kind for e in closing] == [LedgerKind.RESERVE, LedgerKind.RELEASE]
    await _ended(rig, prompt)
    # Cancelled if the first step was made; otherwise it was never cancelled.
    expected = PromptState.DELIVERED if at == 1 else PromptState.CANCELLED
    assert await _state(rig, prompt) == expected
    await _clean(rig)


@pytest.mark.parametrize(
    ("steps", "text", "at"),
    [(FAIL, FAIL_MARKER, at) for at in range(1, len(FAIL) + 1)]
    + [(SETTLE, "delivered", at) for at in range(1, len(SETTLE) + 1)],
    ids=[f"fail-{at}" for at in range(1, len(FAIL) + 1)]
    + [f"settle-{at}" for at in range(1, len(SETTLE) + 1)],
)
async def test_a_crash_while_failing_or_settling_a_job(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, steps: tuple[str, ...], text: str, at: int
) -> None:
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune, f"sks man, {text}")
    await _at_astria(rig, prompt)
    made = crash_at(StoreFaults(rig.store, monkeypatch), prompt.job, at)
    with pytest.raises(Crash):
        for _ in range(100):
            await rig.step(5)
    assert made == list(steps[: at - 1])

    await _restart(rig, monkeypatch)
    await _ended(rig, prompt)
    wanted = PromptState.FAILED if text == FAIL_MARKER else PromptState.DELIVERED
    assert await _state(rig, prompt) == wanted
    await _clean(rig)


@pytest.mark.parametrize("at", range(1, len(CANCEL_STUCK) + 1))
async def test_a_crash_while_cancelling_a_stuck_job(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, at: int
) -> None:
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune, "sks man, stuck")
    rig.emulator.stall("prompt", await _at_astria(rig, prompt))

    async def stuck() -> bool:
        return await _state(rig, prompt) == PromptState.STUCK

    await rig.run_until(stuck, step=60)
    made = crash_at(StoreFaults(rig.store, monkeypatch), prompt.job, at)
    with pytest.raises(Crash):
        await rig.tracker.cancel_stuck(prompt.job, actor_id=99)
    assert made == list(CANCEL_STUCK[: at - 1])

    await _restart(rig, monkeypatch)
    await _ended(rig, prompt)
    # Deleted at Astria either way: cancelled once the admin's steps were written, failed
    # ("Astria no longer has it") when the crash came first.
    assert await _state(rig, prompt) in (PromptState.CANCELLED, PromptState.FAILED)
    await _clean(rig)


async def test_a_crash_while_refunding_refunds_once_after_the_restart(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refund is one transaction: a crash in it (at its commit) writes nothing."""
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune, "sks man, refunded")
    await _ended(rig, prompt)
    db = rig.store._db  # the commit fails as if the process died in it
    db.fault = lambda: True
    with pytest.raises(StoreFault):
        await rig.store.ledger.refund(prompt.job, guild_id=GUILD, actor_id=99)
    db.fault = None
    assert [e.kind for e in await rig.store.ledger.entries(job=prompt.job)] == [
        LedgerKind.RESERVE,
        LedgerKind.SETTLE,
    ]
    await _restart(rig, monkeypatch)
    assert await rig.store.ledger.audit() == []
    first = await rig.store.ledger.refund(prompt.job, guild_id=GUILD, actor_id=99)
    again = await rig.store.ledger.refund(prompt.job, guild_id=GUILD, actor_id=99)
    assert first.outcome == RefundOutcome.REFUNDED and first.amount_mc > 0
    assert again.outcome == RefundOutcome.NOTHING_LEFT
    assert await rig.store.ledger.audit() == []


async def test_start_up_repair_closes_each_ended_job_its_way_and_jobless_holds(
    rig: Rig,
) -> None:
    """Open reservations of ended jobs (as a crash leaves them) and one whose job does not
    exist: reported by the audit, closed by the repair the way each end says."""
    tune = await rig.ready_tune(owner=1)
    delivered = await rig.prompt(1, tune, "sks man, delivered")
    failed = await rig.prompt(1, tune, "sks man, failed")
    # As a crash between the state and the ledger would leave them (written behind the
    # tracker's back, through the same repositories).
    await rig.store.prompts.transition(delivered.id, PromptState.QUEUED, PromptState.SUBMITTING)
    await rig.store.prompts.set_astria_id(delivered.id, 424242, cost_mc=1_500)
    await rig.store.prompts.set_state(delivered.id, PromptState.GENERATING)
    await rig.store.prompts.set_state(delivered.id, PromptState.DELIVERED)
    await rig.store.prompts.set_state(failed.id, PromptState.FAILED, error="crashed")
    ghost = JobRef.parse("prompt:999999")
    await rig.store.ledger.reserve(guild_id=GUILD, user_id=1, job=ghost, amount_mc=7)
    problems = await rig.store.ledger.audit()
    assert any(str(delivered.job) in p and str(failed.job) in p for p in problems), problems
    assert any("has no job" in p and str(ghost) in p for p in problems), problems

    repairs = {str(r.job): r for r in await rig.store.ledger.repair()}
    assert set(repairs) == {str(delivered.job), str(failed.job), str(ghost)}
    assert repairs[str(delivered.job)].closing == Closing.SETTLED
    assert repairs[str(delivered.job)].cost_mc == 1_500  # its recorded cost
    assert repairs[str(failed.job)].closing == Closing.RELEASED
    assert repairs[str(ghost)].closing == Closing.RELEASED
    assert await rig.store.ledger.audit() == []
    assert await rig.store.ledger.repair() == []  # nothing left: a second start changes nothing


async def test_a_failed_repair_is_tried_again_next_round(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune, "sks man, cancelled")
    await rig.store.prompts.transition(prompt.id, PromptState.QUEUED, PromptState.CANCELLED)
    faults = StoreFaults(rig.store, monkeypatch)
    faults.fail("ledger.repair", times=STORE_TRIES)
    rig.tracker = rig.new_tracker()
    await rig.tracker.start()  # the repair fails for good: the start goes on
    assert faults.raised["ledger.repair"] == STORE_TRIES
    assert await rig.store.ledger.open_reservations() != []
    await rig.tracker.poll_once()
    assert await rig.store.ledger.open_reservations() == []
    assert await rig.store.ledger.audit() == []
