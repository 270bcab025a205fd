"""What the tracker needs from the store: the event outbox, compare-and-set transitions,
claimed Astria prompts and expiring tunes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.store import InvalidTransition, PromptState, Store, TuneState
from tests.store.test_repositories import ALICE, BOB, make_prompt, make_tune


async def test_an_event_is_recorded_once_per_key_and_reported_once(store: Store):
    assert await store.events.record(key="tune:1:ready", job="tune:1", kind="ready", payload={})
    again = await store.events.record(
        key="tune:1:ready", job="tune:1", kind="ready", payload={"other": 1}
    )
    assert again is False
    pending = await store.events.pending()
    assert [e.key for e in pending] == ["tune:1:ready"] and pending[0].payload == {}
    await store.events.mark_reported("tune:1:ready", "delivered")
    await store.events.mark_reported("tune:1:ready", "undeliverable")  # a repeat changes nothing
    assert await store.events.pending() == []
    (event,) = await store.events.for_job("tune:1")
    assert event.outcome == "delivered" and event.reported_at is not None
    assert await store.events.exists("tune:1:ready")


async def test_transition_moves_only_from_the_expected_state(store: Store):
    tune = await make_tune(store)
    moved = await store.tunes.transition(tune.id, TuneState.QUEUED, TuneState.SUBMITTING)
    assert moved is not None and moved.state == TuneState.SUBMITTING
    assert moved.submitted_at is not None
    # A second caller (a cancel racing a submission) finds it moved and gets None.
    assert await store.tunes.transition(tune.id, TuneState.QUEUED, TuneState.CANCELLED) is None
    with pytest.raises(InvalidTransition):
        await store.tunes.transition(tune.id, TuneState.QUEUED, TuneState.READY)
    prompt = await make_prompt(store, tune)
    got = await store.prompts.transition(prompt.id, PromptState.QUEUED, PromptState.CANCELLED)
    assert got is not None and got.state == PromptState.CANCELLED and got.submitted_at is None
    assert (
        await store.prompts.transition(prompt.id, PromptState.QUEUED, PromptState.SUBMITTING)
        is None
    )


async def test_claimed_astria_ids_are_other_jobs_with_the_same_text_and_seed(store: Store):
    tune = await make_tune(store)
    first = await make_prompt(store, tune, seed=7)
    second = await make_prompt(store, tune, seed=7)
    other_seed = await make_prompt(store, tune, seed=8)
    await store.prompts.set_astria_id(first.id, 900)
    await store.prompts.set_astria_id(other_seed.id, 901)
    claimed = await store.prompts.claimed_astria_ids(first.final_text, 7, except_id=second.id)
    assert claimed == frozenset({900})
    assert await store.prompts.claimed_astria_ids(first.final_text, 7, except_id=first.id) == (
        frozenset()
    )


async def test_expiring_lists_ready_tunes_before_a_time(store: Store):
    soon = await make_tune(store, name="soon")
    later = await make_tune(store, name="later")
    other = await make_tune(store, owner=BOB, name="not ready")
    base = datetime(2030, 1, 1, tzinfo=UTC)
    for tune, days in ((soon, 1), (later, 20)):
        await store.tunes.transition(tune.id, TuneState.QUEUED, TuneState.SUBMITTING)
        await store.tunes.set_state(tune.id, TuneState.TRAINING)
        await store.tunes.set_progress(tune.id, expires_at=base + timedelta(days=days))
        await store.tunes.set_state(tune.id, TuneState.READY)
    await store.tunes.set_progress(other.id, expires_at=base)
    found = await store.tunes.expiring(before=base + timedelta(days=3))
    assert [t.id for t in found] == [soon.id] and found[0].owner_id == ALICE


async def test_renew_expiry_moves_only_a_ready_tunes_date(store: Store):
    ready = await make_tune(store, name="ready")
    queued = await make_tune(store, name="queued")
    base = datetime(2030, 1, 1, tzinfo=UTC)
    await store.tunes.transition(ready.id, TuneState.QUEUED, TuneState.SUBMITTING)
    await store.tunes.set_state(ready.id, TuneState.TRAINING)
    await store.tunes.set_progress(ready.id, expires_at=base)
    await store.tunes.set_state(ready.id, TuneState.READY)
    renewed = await store.tunes.renew_expiry(ready.id, base + timedelta(days=30))
    assert renewed is not None and renewed.expires_at == base + timedelta(days=30)
    assert await store.tunes.expiring(before=base + timedelta(days=3)) == []
    # Astria names no date: the tune leaves the expiry watch altogether.
    cleared = await store.tunes.renew_expiry(ready.id, None)
    assert cleared is not None and cleared.expires_at is None
    assert await store.tunes.expiring(before=base + timedelta(days=365)) == []
    assert await store.tunes.renew_expiry(queued.id, base) is None
    untouched = await store.tunes.get(queued.id)
    assert untouched is not None and untouched.expires_at is None
    await store.tunes.set_state(ready.id, TuneState.EXPIRED)
    assert await store.tunes.renew_expiry(ready.id, base + timedelta(days=60)) is None


async def test_event_messages_are_remembered_per_part(store: Store):
    assert await store.events.messages("prompt:1:done") == {}
    await store.events.record_message("prompt:1:done", 0, 5, 500)
    await store.events.record_message("prompt:1:done", 1, 5, 501)
    await store.events.record_message("prompt:2:done", 0, 5, 600)
    assert await store.events.messages("prompt:1:done") == {0: (5, 500), 1: (5, 501)}
