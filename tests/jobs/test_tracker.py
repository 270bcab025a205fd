"""The tracker against the emulator on a paid branch: every job ends once, money matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.jobs import EventKind, Outcome
from bot.store import PromptState, TuneState
from tests.jobs.conftest import TUNE_MC, Rig
from tests.pg import BACKENDS


@pytest.fixture(params=BACKENDS)
def rig_backend(request: pytest.FixtureRequest) -> str:
    """These tracker tests run on SQLite and, with TEST_DATABASE_URL, on PostgreSQL."""
    return str(request.param)


async def test_tune_is_submitted_followed_and_reported_ready_once(rig: Rig):
    tune = await rig.tune(owner=1)
    report = await rig.tracker.poll_once()
    assert report.submitted == [f"tune:{tune.id}"]
    current = await rig.store.tunes.get(tune.id)
    assert current is not None and current.state == TuneState.TRAINING
    assert current.astria_id is not None and current.photo_paths == ()
    assert not any(Path(p).exists() for p in tune.photo_paths)  # deleted once Astria has them
    assert [t["id"] for t in rig.emulator.tunes_with_title(tune.title)] == [current.astria_id]

    async def ready() -> bool:
        return bool(rig.delivery.ends(EventKind.READY))

    await rig.run_until(ready, step=20)
    await rig.step(20, rounds=3)
    assert rig.delivery.keys() == {f"tune:{tune.id}:ready": 1}
    final = await rig.store.tunes.get(tune.id)
    assert final is not None and final.state == TuneState.READY
    assert final.trained_at is not None and final.expires_at is not None
    assert rig.delivery.ends(EventKind.READY)[0].cost_mc == TUNE_MC
    await rig.ledger_matches_charges()


async def test_prompt_is_generated_reported_and_marked_delivered(rig: Rig):
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune, images=3)

    async def done() -> bool:
        return bool(rig.delivery.ends(EventKind.DONE))

    await rig.run_until(done, step=5)
    event = rig.delivery.ends(EventKind.DONE)[0]
    assert event.key == f"prompt:{prompt.id}:done" and len(event.images) == 3
    final = await rig.store.prompts.get(prompt.id)
    assert final is not None and final.state == PromptState.DELIVERED
    assert final.image_urls == event.images
    await rig.ledger_matches_charges()


async def test_undeliverable_result_is_kept_and_settled(rig: Rig):
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune)
    rig.delivery.outcome = Outcome.UNDELIVERABLE

    async def done() -> bool:
        current = await rig.store.prompts.get(prompt.id)
        return current is not None and current.state == PromptState.UNDELIVERABLE

    await rig.run_until(done)
    final = await rig.store.prompts.get(prompt.id)
    assert final is not None and len(final.image_urls) == 2
    await rig.ledger_matches_charges()


async def test_failed_prompt_is_reported_with_reason_and_released(rig: Rig):
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune, "sks man EMULATOR_FAIL")

    async def failed() -> bool:
        return bool(rig.delivery.ends(EventKind.FAILED))

    await rig.run_until(failed)
    event = rig.delivery.ends(EventKind.FAILED)[0]
    assert event.key == f"prompt:{prompt.id}:failed" and event.message
    final = await rig.store.prompts.get(prompt.id)
    assert final is not None and final.state == PromptState.FAILED
    await rig.ledger_matches_charges()


async def test_422_on_create_fails_the_job_in_plain_words_and_releases(rig: Rig):
    tune = await rig.tune(owner=1, photos=0)  # Astria refuses a tune without photos
    await rig.tracker.poll_once()
    event = rig.delivery.ends(EventKind.FAILED)[0]
    assert event.key == f"tune:{tune.id}:failed" and "image" in (event.message or "")
    assert rig.emulator.counters["POST /tunes"] == 1  # never retried
    await rig.ledger_matches_charges()


async def test_per_member_caps_hold_and_queued_jobs_start_in_order(rig: Rig):
    tunes = [await rig.tune(owner=1, name=f"t{i}") for i in range(3)]
    other = await rig.tune(owner=2, name="x")
    report = await rig.tracker.poll_once()
    assert report.submitted == [f"tune:{tunes[0].id}", f"tune:{other.id}"]
    assert rig.tracker.queue_position(tunes[1].job) == 1
    assert rig.tracker.queue_position(tunes[2].job) == 2
    order: list[str] = []
    for _ in range(60):
        report = await rig.tracker.poll_once()
        order += report.submitted
        await rig.emulator.advance(30)
        if len(order) == 2:
            break
    assert order == [f"tune:{tunes[1].id}", f"tune:{tunes[2].id}"]
    queued_updates = [u for u in rig.delivery.progress_updates if u.state == "queued"]
    assert queued_updates, "queue positions were shown"


async def test_cancelled_queued_job_is_never_submitted_and_released(rig: Rig):
    first = await rig.tune(owner=1, name="a")
    second = await rig.tune(owner=1, name="b")
    await rig.tracker.poll_once()
    assert await rig.tracker.cancel_queued(second.job, owner_id=2) is False  # not the owner
    assert await rig.tracker.cancel_queued(second.job, owner_id=1) is True
    assert await rig.tracker.cancel_queued(first.job, owner_id=1) is False  # already at Astria
    await rig.step(60, rounds=10)
    assert rig.emulator.tunes_with_title(second.title) == []
    assert rig.delivery.keys()[f"tune:{second.id}:cancelled"] == 1
    assert not any(Path(p).exists() for p in second.photo_paths)
    await rig.ledger_matches_charges()


async def test_balance_is_reread_after_paid_creates_and_drift_is_logged(
    rig: Rig, caplog: pytest.LogCaptureFixture
):
    await rig.tracker.poll_once()  # first reading
    tune = await rig.tune(owner=1)
    await rig.tracker.poll_once()  # a paid create, then a fresh reading
    known = await rig.store.account.last_known()
    assert known is not None and known.balance_mc == rig.emulator.balance_mc
    assert "drift" not in caplog.text
    rig.emulator.balance_mc -= 777  # someone else spends on the same key
    await rig.step(rig.settings.balance_refresh_seconds)
    assert "drift 777 mc" in caplog.text
    assert tune.id


async def test_limiter_spaces_requests_to_its_rate(fake_time):
    from bot.astria import RequestLimiter

    limiter = RequestLimiter(2.0, burst=2, monotonic=fake_time.monotonic, sleep=fake_time.sleep)
    for _ in range(6):
        await limiter.acquire()
    assert fake_time.sleeps == [0.5, 0.5, 0.5, 0.5]  # two at once, then one every 0.5 s
    assert fake_time.now == pytest.approx(2.0)


async def test_a_tune_takes_the_next_free_slot_ahead_of_earlier_prompts(rig: Rig):
    rig.tracker = rig.new_tracker(max_in_flight=2, max_generating_per_member=10)
    tune = await rig.ready_tune(owner=1)
    await rig.store.tunes.set_shared(tune.id, True)
    prompts = [await rig.prompt(owner, tune, f"sks man {owner}") for owner in range(2, 6)]
    late_tune = await rig.tune(owner=9, name="late")
    report = await rig.tracker.poll_once()
    assert report.submitted == [f"tune:{late_tune.id}", f"prompt:{prompts[0].id}"]
    assert rig.tracker.queue_position(prompts[1].job) == 1


async def test_a_tune_is_told_ready_only_once_its_state_says_so(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
):
    """A report round that runs between the "ready" event and the READY state (another
    job's event woke it) must not tell the member yet: they would pick the tune in
    `/imagine` and not find it. Here the round runs exactly there."""
    tune = await rig.tune(owner=1)
    await rig.tracker.poll_once()
    set_state = rig.store.tunes.set_state
    told_early: list[bool] = []

    async def racing_set_state(tune_id: int, state: TuneState, **kw: object) -> object:
        if state == TuneState.READY:
            await rig.tracker._dispatch()  # the concurrent report round
            told_early.append(bool(rig.delivery.ends(EventKind.READY)))
        return await set_state(tune_id, state, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(rig.store.tunes, "set_state", racing_set_state)

    async def ready() -> bool:
        return bool(rig.delivery.ends(EventKind.READY))

    await rig.run_until(ready, step=20)
    assert told_early == [False]
    final = await rig.store.tunes.get(tune.id)
    assert final is not None and final.state == TuneState.READY
    assert rig.delivery.keys() == {f"tune:{tune.id}:ready": 1}
