"""Lost creates, 429 storms, stuck jobs, callbacks, fixed seeds and expiry."""

from __future__ import annotations

from datetime import timedelta

import aiohttp
import pytest

from bot.astria import PromptRequest
from bot.jobs import CallbackReceiver, EventKind
from bot.jobs.signing import callback_url
from bot.offline.emulator import Fault
from bot.store import PromptState, TuneState
from tests.jobs.conftest import TUNE_MC, Rig

KINDS = ["http_504_after", "drop_after", "http_500_after", "http_504", "drop", "http_500"]


@pytest.mark.parametrize("idempotency", [False, True], ids=["idem-off", "idem-on"])
@pytest.mark.parametrize("kind", KINDS)
async def test_lost_tune_create_makes_one_tune_and_the_job_finishes(
    rig: Rig, kind: str, idempotency: bool
):
    rig.emulator.config.idempotency = idempotency
    rig.client.idempotency = idempotency
    # Enough faults to outlast the client's own tries: the tracker's recovery takes over.
    rig.emulator.faults.script("POST /tunes", *[Fault(kind)] * 4)  # type: ignore[arg-type]
    tune = await rig.tune(owner=1)

    async def ready() -> bool:
        return bool(rig.delivery.ends(EventKind.READY))

    await rig.run_until(ready, step=30)
    assert len(rig.emulator.tunes_with_title(tune.title)) == 1
    assert rig.delivery.keys() == {f"tune:{tune.id}:ready": 1}
    await rig.ledger_matches_charges()


@pytest.mark.parametrize("idempotency", [False, True], ids=["idem-off", "idem-on"])
@pytest.mark.parametrize("kind", KINDS)
async def test_lost_prompt_create_makes_one_prompt_and_the_job_finishes(
    rig: Rig, kind: str, idempotency: bool
):
    tune = await rig.ready_tune(owner=1)
    rig.emulator.config.idempotency = idempotency
    rig.client.idempotency = idempotency
    route = "POST /tunes/{tune_id}/prompts"
    rig.emulator.faults.script(route, *[Fault(kind)] * 4)  # type: ignore[arg-type]
    prompt = await rig.prompt(1, tune)

    async def done() -> bool:
        return bool(rig.delivery.ends(EventKind.DONE))

    await rig.run_until(done)
    assert tune.astria_id is not None
    assert len(rig.emulator.prompts_for(tune.astria_id)) == 1
    assert rig.delivery.keys("prompt:") == {f"prompt:{prompt.id}:done": 1}
    await rig.ledger_matches_charges()


async def test_a_restart_during_a_lost_create_recovers_it_without_a_duplicate(rig: Rig):
    rig.emulator.faults.script("POST /tunes", Fault("http_504_after"))
    rig.emulator.faults.script("GET /tunes", *[Fault("http_500")] * 3)  # the lookup fails too
    tune = await rig.tune(owner=1)
    await rig.tracker.poll_once()  # the create's answer is lost; the tune stays submitting
    current = await rig.store.tunes.get(tune.id)
    assert current is not None and current.state == TuneState.SUBMITTING
    await rig.tracker.stop()
    rig.tracker = rig.new_tracker()
    await rig.tracker.start()
    await rig.tracker.settle_background()

    async def ready() -> bool:
        return bool(rig.delivery.ends(EventKind.READY))

    await rig.run_until(ready, step=30)
    assert len(rig.emulator.tunes_with_title(tune.title)) == 1
    await rig.ledger_matches_charges()


async def test_429_storm_backs_off_and_still_finishes(rig: Rig):
    tune = await rig.ready_tune(owner=1)
    prompts = [await rig.prompt(1, tune, f"sks man {n}") for n in range(4)]
    rig.emulator.faults.rate(Fault("http_429", retry_after=2), 0.5)
    slept_before = len(rig.fake_time.sleeps)

    async def done() -> bool:
        return len(rig.delivery.ends(EventKind.DONE)) == len(prompts)

    await rig.run_until(done)
    rig.emulator.faults.clear()
    assert 2.0 in rig.fake_time.sleeps[slept_before:]  # Retry-After was honoured
    for p in prompts:
        assert p.astria_id is None  # (the records above are from before submission)
    assert len(rig.delivery.keys("prompt:")) == len(prompts)
    await rig.ledger_matches_charges()


async def test_stuck_prompt_is_told_then_delivered_and_settled_when_astria_finishes(rig: Rig):
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune)
    await rig.tracker.poll_once()
    current = await rig.store.prompts.get(prompt.id)
    assert current is not None and current.astria_id is not None
    rig.emulator.stall("prompt", current.astria_id)

    async def stuck() -> bool:
        return bool(rig.delivery.ends(EventKind.STUCK))

    await rig.run_until(stuck, step=60)
    assert (await rig.store.ledger.open_reservations()) != []  # the money stays held
    rig.emulator.resume("prompt", current.astria_id)  # Astria finishes after all

    async def done() -> bool:
        return bool(rig.delivery.ends(EventKind.DONE))

    await rig.run_until(done, step=600)
    assert rig.delivery.keys("prompt:") == {
        f"prompt:{prompt.id}:stuck": 1,
        f"prompt:{prompt.id}:done": 1,
    }
    await rig.ledger_matches_charges()


async def test_admin_cancels_a_stuck_tune_settled_at_what_astria_reports(rig: Rig):
    tune = await rig.tune(owner=1)
    await rig.tracker.poll_once()
    current = await rig.store.tunes.get(tune.id)
    assert current is not None and current.astria_id is not None
    rig.emulator.stall("tune", current.astria_id)

    async def stuck() -> bool:
        return bool(rig.delivery.ends(EventKind.STUCK))

    await rig.run_until(stuck, step=300)
    assert await rig.tracker.cancel_stuck(tune.job, actor_id=99) is True
    await rig.tracker.poll_once()
    final = await rig.store.tunes.get(tune.id)
    assert final is not None and final.state == TuneState.CANCELLED
    assert rig.delivery.keys()[f"tune:{tune.id}:cancelled"] == 1
    assert rig.emulator.tunes_with_title(tune.title) == []  # deleted at Astria
    settled = [e for e in await rig.store.ledger.entries() if e.kind == "settle"]
    assert [e.cost_mc for e in settled] == [TUNE_MC]  # what Astria charged for it
    await rig.ledger_matches_charges()


@pytest.mark.parametrize("idempotency", [False, True], ids=["idem-off", "idem-on"])
async def test_fixed_seed_twice_in_a_row(rig: Rig, idempotency: bool):
    tune = await rig.ready_tune(owner=1)
    rig.emulator.config.idempotency = idempotency
    rig.client.idempotency = idempotency
    first = await rig.prompt(1, tune, "sks man, same", seed=1234)
    second = await rig.prompt(1, tune, "sks man, same", seed=1234)
    report = await rig.tracker.poll_once()
    assert report.submitted == [f"prompt:{first.id}"]  # the twin waits for the first's id
    await rig.tracker.poll_once()

    async def done() -> bool:
        return len(rig.delivery.ends(EventKind.DONE)) == 2

    await rig.run_until(done)
    a = await rig.store.prompts.get(first.id)
    b = await rig.store.prompts.get(second.id)
    assert a is not None and b is not None
    assert (a.astria_id == b.astria_id) is idempotency  # Astria merged them only when asked
    assert a.state == b.state == PromptState.DELIVERED
    await rig.ledger_matches_charges()  # with idempotency, the twin is settled at 0


async def test_callbacks_wake_the_job_and_forged_ones_are_refused(rig: Rig):
    from pydantic import SecretStr

    key = SecretStr("callback-signing-key")
    receiver = CallbackReceiver(key, lambda job: rig.tracker.wake(job))
    port = await receiver.start("127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"
    rig.tracker = rig.new_tracker(callback_base=base, signing_key=key)
    try:
        tune = await rig.ready_tune(owner=1)
        assert receiver.accepted == 1  # the tune's own callback
        prompt = await rig.prompt(1, tune)
        await rig.tracker.poll_once()
        record = await rig.store.prompts.get(prompt.id)
        assert record is not None and record.astria_id is not None
        sent = rig.emulator.prompts_for(tune.astria_id or 0)[0]
        assert sent["callback"] == callback_url(base, key, f"prompt:{prompt.id}")
        async with aiohttp.ClientSession() as session:
            forged = f"{base}/astria/callback?job=prompt:{prompt.id}&sig=deadbeef"
            async with session.post(forged, json={"prompt": {"id": 1}}) as response:
                assert response.status == 403
        assert receiver.refused == 1 and receiver.accepted == 1
        # Astria finishes the prompt and calls back; the tracker looks at it at once,
        # long before its own schedule would have.
        polls_before = rig.status_requests()
        await rig.emulator.advance(12.5)  # done (10 s +/- 20 %) before the first scheduled look
        assert receiver.accepted == 2
        await rig.tracker.poll_once()
        assert rig.delivery.ends(EventKind.DONE)
        assert rig.status_requests() - polls_before == 1
    finally:
        await receiver.stop()
    await rig.ledger_matches_charges()


async def test_expiry_reminder_then_expired(rig: Rig):
    tune = await rig.ready_tune(owner=1)
    current = await rig.store.tunes.get(tune.id)
    assert current is not None and current.expires_at is not None
    to_reminder = current.expires_at - rig.now() - timedelta(days=2)
    await rig.step(to_reminder.total_seconds())
    await rig.step(3600, rounds=2)
    assert rig.delivery.keys()[f"tune:{tune.id}:expiry-soon"] == 1
    await rig.step(3 * 86400)
    assert rig.delivery.keys()[f"tune:{tune.id}:expired"] == 1
    final = await rig.store.tunes.get(tune.id)
    assert final is not None and final.state == TuneState.EXPIRED


async def test_recovery_after_a_long_outage_finds_a_create_buried_under_newer_objects(
    rig: Rig,
):
    """The lookup after a restart pages back to when the lost create was sent, not to the
    restart: a long outage with a full page of other prompts in between must not hide it
    (prompts cannot be looked up by text; they are paged through)."""
    tune = await rig.ready_tune(owner=1)
    assert tune.astria_id is not None
    route = "POST /tunes/{tune_id}/prompts"
    rig.emulator.faults.script(route, Fault("http_504_after"))
    rig.emulator.faults.script("GET /tunes/{tune_id}/prompts", *[Fault("http_500")] * 3)
    prompt = await rig.prompt(1, tune)
    await rig.tracker.poll_once()
    current = await rig.store.prompts.get(prompt.id)
    assert current is not None and current.state == PromptState.SUBMITTING
    await rig.tracker.stop()
    # Another client on the key makes a page and a half of prompts, then hours pass.
    for n in range(130):
        await rig.client.create_prompt(tune.astria_id, PromptRequest(text=f"other {n}", seed=n))
    await rig.emulator.advance(3 * 3600)
    rig.tracker = rig.new_tracker()
    await rig.tracker.start()
    await rig.tracker.settle_background()

    async def done() -> bool:
        return bool(rig.delivery.ends(EventKind.DONE))

    await rig.run_until(done)
    ours = [p for p in rig.emulator.prompts_for(tune.astria_id) if p["text"] == current.final_text]
    assert len(ours) == 1
