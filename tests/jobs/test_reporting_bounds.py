"""Reporting a job's end is bounded: a refusal that will not change goes to the DM after a
few tries and then ends undeliverable; a transient failure waits longer each time, also
across a restart; the money is settled once, before any of it."""

from __future__ import annotations

import itertools
import logging
from datetime import timedelta
from typing import Any

import pytest

from bot.jobs import DeliveryFailed
from bot.jobs.delivery import CHANNEL_REFUSALS_BEFORE_DM, RETRY_BASE, RETRY_CAP, retry_delay
from bot.store import PromptRecord, PromptState, RecordedEvent
from tests.jobs.conftest import Rig

FORBIDDEN = DeliveryFailed("403 50013 Missing Permissions", permanent=True)
GONE = DeliveryFailed("404 10003 Unknown Channel", certain=True)
DM_CLOSED = DeliveryFailed("403 50007 Cannot send messages to this user", permanent=True)


async def done_prompt(rig: Rig, **failures: Any) -> tuple[PromptRecord, str]:
    """A prompt whose images are there, its report failing as `failures` say (attributes
    of the RecordingDelivery, set once the tune is ready)."""
    tune = await rig.ready_tune(owner=1)
    for name, value in failures.items():
        setattr(rig.delivery, name, value)
    prompt = await rig.prompt(1, tune)
    key = f"prompt:{prompt.id}:done"

    async def recorded() -> bool:
        return await rig.store.events.exists(key)

    await rig.run_until(recorded, step=5)
    return prompt, key


async def event(rig: Rig, key: str) -> RecordedEvent:
    job = key.rsplit(":", 1)[0]
    return next(e for e in await rig.store.events.for_job(job) if e.key == key)


async def settles(rig: Rig, prompt: PromptRecord) -> int:
    return sum(
        1 for e in await rig.store.ledger.entries() if e.kind == "settle" and e.job == prompt.job
    )


def test_the_wait_doubles_up_to_its_cap():
    waits = [retry_delay(n) for n in range(1, 12)]
    assert waits[:4] == [RETRY_BASE, RETRY_BASE * 2, RETRY_BASE * 4, RETRY_BASE * 8]
    assert waits[-1] == RETRY_CAP == timedelta(minutes=10)
    assert retry_delay(10_000) == RETRY_CAP


async def test_a_forbidden_channel_is_tried_three_times_then_the_member_gets_a_dm(rig: Rig):
    prompt, key = await done_prompt(rig, refuse_channel=FORBIDDEN)
    await rig.step(5, rounds=60)  # five minutes
    channel = rig.delivery.tries(key, private=False)
    assert len(channel) == CHANNEL_REFUSALS_BEFORE_DM == 3
    assert [e.key for e in rig.delivery.private] == [key]
    assert len(rig.delivery.tries(key, private=True)) == 1
    final = await rig.store.prompts.get(prompt.id)
    assert final is not None and final.state == PromptState.DELIVERED
    assert (await event(rig, key)).outcome == "delivered"
    assert await settles(rig, prompt) == 1
    await rig.ledger_matches_charges()


async def test_a_channel_that_is_gone_goes_to_the_dm_at_once(rig: Rig):
    prompt, key = await done_prompt(rig, refuse_channel=GONE)
    await rig.step(5)
    assert len(rig.delivery.tries(key, private=False)) == 1
    assert [e.key for e in rig.delivery.private] == [key]
    final = await rig.store.prompts.get(prompt.id)
    assert final is not None and final.state == PromptState.DELIVERED


async def test_channel_and_dm_refused_end_undeliverable_and_are_never_tried_again(rig: Rig):
    prompt, key = await done_prompt(rig, refuse_channel=FORBIDDEN, refuse_dm=DM_CLOSED)

    async def given_up() -> bool:
        current = await rig.store.prompts.get(prompt.id)
        return current is not None and current.state == PromptState.UNDELIVERABLE

    await rig.run_until(given_up, step=5, limit=60)
    await rig.step(60, rounds=30)  # half an hour more: nothing is tried again
    assert len(rig.delivery.tries(key, private=False)) == CHANNEL_REFUSALS_BEFORE_DM
    assert len(rig.delivery.tries(key, private=True)) == 1
    recorded = await event(rig, key)
    assert recorded.outcome == "undeliverable" and recorded.reported_at is not None
    final = await rig.store.prompts.get(prompt.id)
    assert final is not None and len(final.image_urls) == 2  # kept for /jobs
    assert await rig.store.events.pending() == []
    assert await settles(rig, prompt) == 1
    await rig.ledger_matches_charges()


async def test_a_transient_failure_waits_longer_each_time_then_gets_through(
    rig: Rig, caplog: pytest.LogCaptureFixture
):
    prompt, key = await done_prompt(rig, transient_next=4)
    caplog.set_level(logging.WARNING, logger="bot.jobs.tracker")

    async def delivered() -> bool:
        current = await rig.store.prompts.get(prompt.id)
        return current is not None and current.state == PromptState.DELIVERED

    await rig.run_until(delivered, step=5, limit=200)
    await rig.step(60, rounds=5)
    tries = rig.delivery.tries(key)
    assert len(tries) == 5  # four failures, one success, nothing after
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(tries)]
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
    assert gaps[0] >= RETRY_BASE.total_seconds()
    assert rig.delivery.keys("prompt:") == {key: 1}
    warnings = [r for r in caplog.records if key in r.getMessage()]
    assert len(warnings) == 4, [r.getMessage() for r in warnings]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in warnings)
    assert await settles(rig, prompt) == 1


async def test_an_unexpected_error_is_logged_in_full_once_and_backs_off(
    rig: Rig, caplog: pytest.LogCaptureFixture
):
    prompt, key = await done_prompt(rig, fail_next=3)
    caplog.set_level(logging.WARNING, logger="bot.jobs.tracker")
    await rig.step(5, rounds=4)  # 20 s: the first try and one more, not one a round
    assert len(rig.delivery.tries(key)) == 2

    async def delivered() -> bool:
        current = await rig.store.prompts.get(prompt.id)
        return current is not None and current.state == PromptState.DELIVERED

    await rig.run_until(delivered, step=5, limit=200)
    lines = [r for r in caplog.records if key in r.getMessage()]
    assert [r.exc_info is not None for r in lines] == [True, False, False]
    assert [r.levelno for r in lines] == [logging.ERROR, logging.WARNING, logging.WARNING]


async def test_the_wait_and_the_refusals_survive_a_restart(rig: Rig):
    prompt, key = await done_prompt(rig, refuse_channel=FORBIDDEN)
    await rig.step(5, rounds=4)  # refused twice: the first try and the one 15 s later
    assert len(rig.delivery.tries(key)) == 2
    before = await event(rig, key)
    assert before.attempts == 2 and before.refusals == 2
    assert before.next_attempt_at is not None and before.next_attempt_at > rig.now()
    await rig.tracker.stop()
    rig.tracker = rig.new_tracker()  # a new process: only the database remembers
    await rig.tracker.start()
    await rig.tracker.poll_once()
    assert len(rig.delivery.tries(key)) == 2  # not at once after the start
    await rig.step(5, rounds=12)
    # One more refusal in the channel (the third), then the DM: not three more.
    assert len(rig.delivery.tries(key, private=False)) == 3
    assert [e.key for e in rig.delivery.private] == [key]
    final = await rig.store.prompts.get(prompt.id)
    assert final is not None and final.state == PromptState.DELIVERED
