"""A member stops their own prompt while Astria generates it: deleted at Astria, settled at
what Astria says it cost, never reported as done, and the ledger still equals the bill."""

from __future__ import annotations

from bot.jobs import EventKind
from bot.store import PromptState
from tests.jobs.conftest import Rig


async def test_the_owner_stops_a_running_prompt(rig: Rig):
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune, "sks man on a long walk")
    await rig.tracker.poll_once()
    running = await rig.store.prompts.get(prompt.id)
    assert running is not None and running.state == PromptState.GENERATING
    assert running.astria_id is not None

    assert await rig.tracker.cancel_running(prompt.job, owner_id=2) is None  # not theirs
    cost = await rig.tracker.cancel_running(prompt.job, owner_id=1)
    assert cost is not None and cost == running.cost_mc

    assert rig.emulator.counters["DELETE /prompts/{id}"] == 1
    await rig.step(30, rounds=4)
    ended = await rig.store.prompts.get(prompt.id)
    assert ended is not None and ended.state == PromptState.CANCELLED
    assert not rig.delivery.ends(EventKind.DONE)
    assert [e.job for e in rig.delivery.ends(EventKind.CANCELLED)] == [str(prompt.job)]
    assert await rig.tracker.cancel_running(prompt.job, owner_id=1) is None  # once
    await rig.ledger_matches_charges()
