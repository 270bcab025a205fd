"""A database write that fails (issue 13, item 2): at every write the tracker makes, once
(the retry absorbs it), for good (the job is left where the tracker takes it up again:
recovery looks a create up at Astria, the next round repeats a step, the repair closes
a reservation) and at every call of the method once. Each case ends with every job
ended, nothing made twice at Astria, and the ledger equal to Astria's charges."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter

import pytest

from bot.jobs import EventKind
from bot.jobs.tracker import STORE_TRIES
from bot.offline.emulator import EmulatorConfig
from bot.store import JobRef, PromptRecord, PromptState, StoreFault, TuneState
from tests.conftest import KEY
from tests.jobs.conftest import Rig
from tests.jobs.faults import READS, WRITES, StoreFaults, tracker_store_calls

FAIL_MARKER = "EMULATOR_FAIL"

# Reached by the flow below; the others have their own tests (named beside them).
FLOW_WRITES = sorted(
    WRITES
    - {
        "account.mark_short",  # test_credit_runs_out_with_a_store_fault
        "meta.record_refund_finding",  # best effort: suppressed (a later reading repeats it)
        "tunes.renew_expiry",  # tests/jobs/test_expiry.py (the auto-extend reading)
        "ledger.repair",  # tests/jobs/test_repair.py
        "events.record_failure",  # a failed report: tests/jobs/test_reporting_bounds.py
        "retention.prune",  # once a day, suppressed and repeated: tests/store/test_retention.py
        "meta.take_turn",  # a periodic duty's turn: tests/jobs/test_turns.py
        "leases.wake",  # several processes only: tests/jobs/test_leases.py
        "leases.woken",  # several processes only: tests/jobs/test_leases.py
        # Pack runs only (tests/bot/test_packs.py); a failed write leaves the run
        # `submitting`, recovered by listing the tune's prompts (no fault test yet).
        "packs.adopt",
        "packs.set_seen",
        "leases.take_turn",  # several processes only: tests/jobs/test_shared_polling.py
        "leases.leave_seen",  # several processes only: tests/jobs/test_shared_polling.py
        "leases.seen",  # several processes only: tests/jobs/test_shared_polling.py
    }
)
MODES = ("once", "for-good", "every-call-once")


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    # Astria keeps a failed prompt's cost: the tracker books it (ledger.absorb) too.
    return EmulatorConfig(
        api_key=KEY,
        train_seconds=120,
        prompt_seconds=10,
        foreign_prompts=0,
        refund_failed_prompts=False,
    )


def test_every_store_call_of_the_tracker_is_listed() -> None:
    calls = tracker_store_calls()
    assert calls, "the tracker's store calls were not found"
    assert calls - READS - WRITES == set(), "list the new store calls in tests/jobs/faults.py"
    assert calls >= WRITES, "a listed write is no longer made by the tracker"


async def _prompt_state(rig: Rig, prompt: PromptRecord) -> PromptState:
    found = await rig.store.prompts.get(prompt.id)
    assert found is not None
    return found.state


async def _flow(rig: Rig) -> dict[str, set[str]]:
    """A tune, a prompt delivered, one Astria fails, one cancelled in the queue, one stuck
    and cancelled by an admin; returns each job's acceptable ends."""
    tune = await rig.ready_tune(owner=1)
    ok = await rig.prompt(1, tune, "sks man, delivered")
    failing = await rig.prompt(1, tune, f"sks man, {FAIL_MARKER}")
    slow = await rig.prompt(1, tune, "sks man, stuck")
    cancelled = await rig.prompt(1, tune, "sks man, cancelled")
    ends = {
        str(tune.job): {"ready"},
        str(ok.job): {"delivered"},
        str(failing.job): {"failed"},
        str(slow.job): {"cancelled", "failed"},  # failed: the cancel's write failed for good
        str(cancelled.job): {"cancelled", "delivered"},  # delivered: the cancel never happened
    }
    with contextlib.suppress(StoreFault):  # the member is told it failed; it stays queued
        await rig.tracker.cancel_queued(cancelled.job, owner_id=1)

    async def slow_at_astria() -> bool:
        found = await rig.store.prompts.get(slow.id)
        return found is not None and found.astria_id is not None

    await rig.run_until(slow_at_astria, step=5)
    current = await rig.store.prompts.get(slow.id)
    assert current is not None and current.astria_id is not None
    rig.emulator.stall("prompt", current.astria_id)

    async def stuck() -> bool:
        return await _prompt_state(rig, slow) == PromptState.STUCK

    await rig.run_until(stuck, step=60)
    # The admin is told it failed; Astria deleted it, so the tracker fails it.
    with contextlib.suppress(StoreFault):
        await rig.tracker.cancel_stuck(slow.job, actor_id=99)

    async def all_ended() -> bool:
        for prompt in (ok, failing, slow, cancelled):
            if await _prompt_state(rig, prompt) in (
                PromptState.QUEUED,
                PromptState.SUBMITTING,
                PromptState.GENERATING,
                PromptState.STUCK,
            ):
                return False
        return not await rig.store.events.pending()

    await rig.run_until(all_ended, step=20)
    return ends


async def _assert_clean(rig: Rig, ends: dict[str, set[str]]) -> None:
    for job, allowed in ends.items():
        ref = JobRef.parse(job)
        record = (
            await rig.store.tunes.get(ref.id)
            if job.startswith("tune:")
            else await rig.store.prompts.get(ref.id)
        )
        assert record is not None and str(record.state) in allowed, (job, record)
    tunes = await rig.store.tunes.list_for(1)
    assert len(tunes) == 1 and tunes[0].state == TuneState.READY
    assert len(rig.emulator.tunes_with_title(tunes[0].title)) == 1  # never posted twice
    assert tunes[0].astria_id is not None
    texts = Counter(p["text"] for p in rig.emulator.prompts_for(tunes[0].astria_id))
    assert texts and max(texts.values()) == 1, texts  # no prompt posted twice
    for kind in (EventKind.READY, EventKind.DONE, EventKind.FAILED):
        assert rig.delivery.ends(kind), f"no {kind} reported"
    await rig.ledger_matches_charges()
    assert await rig.store.ledger.audit() == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", FLOW_WRITES)
async def test_a_failing_write_leaves_no_job_behind(
    rig: Rig,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    method: str,
    mode: str,
) -> None:
    rig.tracker = rig.new_tracker(refunds_failed_prompts=False)
    faults = StoreFaults(rig.store, monkeypatch)
    if mode == "once":
        faults.fail(method)
    elif mode == "for-good":
        faults.fail(method, times=STORE_TRIES)
    else:
        faults.fail_every_other(method)
    caplog.set_level(logging.WARNING, logger="bot.jobs.tracker")

    ends = await _flow(rig)

    assert faults.raised[method] >= (STORE_TRIES if mode == "for-good" else 1), faults.calls
    await _assert_clean(rig, ends)
    # Logged with the job (or "tracker" for the account's own writes).
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert any(m.startswith(("tune:", "prompt:", "tracker:")) for m in failed), failed
    if mode == "for-good":
        assert any("left for the tracker" in m for m in failed), failed
    # Retries wait on the injected sleep, never a real one.
    assert all(s <= 1.0 for s in rig.fake_time.sleeps)


async def test_credit_runs_out_with_a_store_fault(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Astria refuses a create for lack of credit and the store fails the "short" mark for
    good: the job stays `submitting`, recovery asks again (never two objects), and it is
    delivered once credit is back."""
    tune = await rig.ready_tune(owner=1)
    rig.emulator.balance_mc = 1  # spent elsewhere
    prompt = await rig.prompt(1, tune, "sks man, short")
    faults = StoreFaults(rig.store, monkeypatch)
    faults.fail("account.mark_short", times=STORE_TRIES)
    await rig.tracker.poll_once()
    assert faults.raised["account.mark_short"] == STORE_TRIES
    assert await _prompt_state(rig, prompt) == PromptState.SUBMITTING  # left for recovery
    rig.emulator.balance_mc = 50_000_000

    async def delivered() -> bool:
        return await _prompt_state(rig, prompt) == PromptState.DELIVERED

    await rig.run_until(delivered, step=20)
    ready = await rig.store.tunes.get(tune.id)
    assert ready is not None and ready.astria_id is not None
    assert len(rig.emulator.prompts_for(ready.astria_id)) == 1
    assert rig.delivery.keys(str(prompt.job)) == {f"{prompt.job}:done": 1}
    await rig.ledger_matches_charges()


async def test_a_report_whose_failure_cannot_be_written_is_tried_again_not_raised(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
):
    """Discord fails a report and the store then fails to write that failure down: the
    channel's report task ends cleanly and the event is tried again (the chaos run with
    store faults logged "Task exception was never retrieved" from such tasks)."""
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune, "sks man, reported at the second try")
    faults = StoreFaults(rig.store, monkeypatch)
    faults.fail("events.record_failure")
    rig.delivery.transient_next = 1  # the first report gets Discord's 503

    async def delivered() -> bool:
        return bool(rig.delivery.ends(EventKind.DONE))

    await rig.run_until(delivered, limit=60)
    assert faults.raised["events.record_failure"] == 1
    assert rig.delivery.keys("prompt:") == {f"prompt:{prompt.id}:done": 1}
