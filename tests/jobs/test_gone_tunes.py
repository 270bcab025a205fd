"""Queued work whose tune went meanwhile (deleted by its owner, expired at Astria) is never
sent: it fails with a clear message, its credit released, and Astria is not asked."""

from __future__ import annotations

import pytest

from bot.jobs import EventKind
from bot.jobs.removal import delete_tune
from bot.offline.emulator import Fault
from bot.store import PromptRecord, PromptState, TuneRecord, TuneState
from tests.jobs.conftest import Rig

POST_PROMPT = "POST /tunes/{tune_id}/prompts"
LIST_PROMPTS = "GET /tunes/{tune_id}/prompts"
SD15_BASE = 690204


async def gone(rig: Rig, tune: TuneRecord, how: str) -> None:
    if how == "deleted":
        await delete_tune(rig.store, rig.client, tune)
    else:
        await rig.store.tunes.set_state(tune.id, TuneState.EXPIRED)


async def queued_on(rig: Rig, kind: str) -> tuple[TuneRecord, PromptRecord]:
    if kind == "checkpoint":
        tune = await rig.ready_tune(owner=1)
        return tune, await rig.prompt(1, tune)
    tune = await rig.ready_tune(owner=1, profile="faceid", branch="sd15")
    text = f"<faceid:{tune.astria_id}:1> man, portrait"
    return tune, await rig.prompt(1, tune, text, target=SD15_BASE)


async def assert_failed_and_released(rig: Rig, prompt: PromptRecord, how: str) -> None:
    current = await rig.store.prompts.get(prompt.id)
    assert current is not None and current.state == PromptState.FAILED
    [failed] = rig.delivery.ends(EventKind.FAILED)
    assert failed.job == str(prompt.job)
    assert failed.message == f"its tune was {how} before it started; your credit was given back"
    assert await rig.store.ledger.open_reservations() == []
    entries = await rig.store.ledger.entries(job=prompt.job)
    assert [e.kind for e in entries] == ["reserve", "release"]
    await rig.ledger_matches_charges()


@pytest.mark.parametrize("how", ["deleted", "expired"])
@pytest.mark.parametrize("kind", ["checkpoint", "faceid-on-base"])
async def test_a_queued_prompt_whose_tune_went_never_reaches_astria(
    rig: Rig, kind: str, how: str
) -> None:
    tune, prompt = await queued_on(rig, kind)
    await gone(rig, tune, how)
    posts = rig.emulator.counters[POST_PROMPT]
    await rig.step(5, rounds=3)
    assert rig.emulator.counters[POST_PROMPT] == posts
    await assert_failed_and_released(rig, prompt, how)


async def test_a_lost_create_on_a_gone_tune_is_followed_when_astria_has_it(rig: Rig) -> None:
    """The create reached Astria but its answer was lost; the tune was deleted before the
    recovery. The lookup finds the prompt: it is followed, delivered and settled, never
    posted again."""
    tune, prompt = await queued_on(rig, "faceid-on-base")
    rig.emulator.faults.script(POST_PROMPT, *[Fault("http_504_after")] * 4)
    rig.emulator.faults.script(LIST_PROMPTS, *[Fault("http_500")] * 3)  # the lookup fails too
    await rig.tracker.poll_once()
    current = await rig.store.prompts.get(prompt.id)
    assert current is not None and current.state == PromptState.SUBMITTING
    await gone(rig, tune, "deleted")
    posts = rig.emulator.counters[POST_PROMPT]

    async def done() -> bool:
        return bool(rig.delivery.ends(EventKind.DONE))

    await rig.run_until(done, limit=60)
    assert rig.emulator.counters[POST_PROMPT] == posts
    assert len([p for p in rig.emulator.prompts_for(SD15_BASE) if "faceid" in p["text"]]) == 1
    await rig.ledger_matches_charges()


async def test_a_lost_create_on_a_gone_tune_that_astria_never_made_fails(rig: Rig) -> None:
    """The create never reached Astria (the connection dropped first); the tune was deleted
    before the recovery: the lookup finds nothing, and nothing is posted again."""
    tune, prompt = await queued_on(rig, "faceid-on-base")
    rig.emulator.faults.script(POST_PROMPT, *[Fault("drop")] * 4)
    await rig.tracker.poll_once()
    current = await rig.store.prompts.get(prompt.id)
    assert current is not None and current.state == PromptState.SUBMITTING
    await gone(rig, tune, "deleted")
    posts = rig.emulator.counters[POST_PROMPT]
    await rig.step(30, rounds=4)
    assert rig.emulator.counters[POST_PROMPT] == posts
    assert not [p for p in rig.emulator.prompts_for(SD15_BASE) if "faceid" in p["text"]]
    await assert_failed_and_released(rig, prompt, "deleted")
