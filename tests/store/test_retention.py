"""Retention: finished jobs' reported events and old prompts' image links go after the
period; unreported events, live jobs' events, recent ones and the whole ledger stay."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.store import PromptRecord, PromptState, Store, TuneRecord
from tests.store.helpers import TUNE_MC, ManualClock, Stores

GUILD, OWNER = 1, 7
DAYS = 90


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def a_tune(store: Store) -> TuneRecord:
    tune = await store.tunes.create(
        owner_id=OWNER,
        guild_id=GUILD,
        channel_id=3,
        name="me",
        subject_class="man",
        profile="sd15-checkpoint",
        branch="sd15",
        photo_paths=[],
        price_mc=TUNE_MC,
    )
    assert isinstance(tune, TuneRecord)
    return tune


async def a_prompt(store: Store, tune: TuneRecord, text: str, end: PromptState) -> PromptRecord:
    prompt = await store.prompts.create(
        owner_id=OWNER,
        guild_id=GUILD,
        channel_id=3,
        tune_id=tune.id,
        user_text=text,
        final_text=text,
        num_images=2,
        price_mc=4_000,
        target_tune_id=99,
    )
    assert isinstance(prompt, PromptRecord)
    for state in (PromptState.SUBMITTING, PromptState.GENERATING):
        await store.prompts.set_state(prompt.id, state)
    await store.prompts.set_images(prompt.id, [f"https://img.example/{prompt.id}/1.png"])
    if end == PromptState.DELIVERED:
        await store.ledger.settle(prompt.job, 3_000)
    elif end == PromptState.FAILED:
        await store.ledger.release(prompt.job, note="failed")
    if end != PromptState.GENERATING:
        prompt = await store.prompts.set_state(prompt.id, end)
    return prompt


async def event(store: Store, job: object, kind: str, *, reported: bool = True) -> str:
    key = f"{job}:{kind}"
    await store.events.record(key=key, job=str(job), kind=kind, payload={"images": ["x"] * 8})
    if reported:
        await store.events.mark_reported(key, "delivered")
    return key


async def test_prune_deletes_old_reported_events_of_finished_jobs_and_keeps_the_ledger(
    stores: Stores, clock: ManualClock
):
    store = await stores.open(clock=clock)
    tune = await a_tune(store)
    await store.ledger.settle(tune.job, TUNE_MC)
    delivered = await a_prompt(store, tune, "old delivered", PromptState.DELIVERED)
    failed = await a_prompt(store, tune, "old failed", PromptState.FAILED)
    running = await a_prompt(store, tune, "old running", PromptState.GENERATING)
    gone = [await event(store, delivered.job, "done"), await event(store, failed.job, "failed")]
    await store.events.record_message(gone[0], 0, 3, 555)
    kept = [
        await event(store, failed.job, "late", reported=False),  # never reported: stays
        await event(store, running.job, "stuck"),  # the job is not over
        await event(store, tune.job, "ready"),  # a ready tune is alive
    ]
    clock.advance(days=DAYS + 1)
    recent = await a_prompt(store, tune, "recent", PromptState.DELIVERED)
    kept.append(await event(store, recent.job, "done"))
    entries = await store.ledger.entries()
    budget = await store.ledger.budget(GUILD, OWNER)
    spend = await store.ledger.spend_by_member(GUILD)

    pruned = await store.retention.prune(before=clock.now - timedelta(days=DAYS))

    assert pruned.events == 2 and pruned.prompts_compacted == 2
    assert sorted(e.key for e in await store.events.all()) == sorted(kept)
    assert await store.events.messages(gone[0]) == {}
    assert await store.ledger.entries() == entries
    assert await store.ledger.budget(GUILD, OWNER) == budget
    assert await store.ledger.spend_by_member(GUILD) == spend
    assert await store.ledger.audit() == []
    links = {p.id: p.image_urls for p in await store.prompts.list_for(OWNER, limit=10)}
    assert links[delivered.id] == () and links[failed.id] == ()
    assert links[running.id] and links[recent.id]  # unfinished, or not old enough
    # A second pass finds nothing more; a later prompt gets a new id, never an old one.
    assert await store.retention.prune(before=clock.now - timedelta(days=DAYS)) == type(pruned)()
    assert (await a_prompt(store, tune, "next", PromptState.DELIVERED)).id > recent.id
