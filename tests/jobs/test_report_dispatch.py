"""The reporting loop hands each recorded event to the delivery once per process, even
when a channel's report task ends while a new round is reading the outbox."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.jobs import JobEvent, Outcome
from bot.store import PromptRecord, RecordedEvent
from tests.jobs.conftest import Rig
from tests.pg import BACKENDS


@pytest.fixture(params=BACKENDS)
def rig_backend(request: pytest.FixtureRequest) -> str:
    """On SQLite and, with TEST_DATABASE_URL, on PostgreSQL."""
    return str(request.param)


async def _recorded(rig: Rig, prompt: PromptRecord) -> str:
    """Round on (reports left to the reporting loop, as `Tracker.run` does) until the
    prompt's done event is in the outbox, unreported; its key."""
    key = f"{prompt.job}:done"
    for _ in range(40):
        if key in {e.key for e in await rig.store.events.pending()}:
            return key
        await rig.emulator.advance(5)
        await rig.tracker.poll_once(report=False)
    raise AssertionError(f"{key} never recorded")


async def test_a_round_reading_while_the_channels_report_ends_does_not_hand_it_over_again(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reporting loop's round (`_dispatch(wait=False)`) reads the pending events, then
    starts a report task for each channel without one running. Here the channel's task is
    posting the first result when the round starts reading, and ends (the first result
    reported and marked) before the read returns: the read still lists the first result,
    so a task started on it would hand it to the delivery a second time."""
    tune = await rig.ready_tune(owner=1)
    first = await _recorded(rig, await rig.prompt(1, tune, "sks man first"))

    report = rig.delivery.report
    entered = asyncio.Event()
    release = asyncio.Event()
    posting: list[asyncio.Task[Any]] = []

    async def held_report(event: JobEvent, *, private: bool = False) -> Outcome:
        if event.key == first and not posting:
            task = asyncio.current_task()
            assert task is not None
            posting.append(task)  # the channel's report task, mid-post
            entered.set()
            await release.wait()
        return await report(event, private=private)

    monkeypatch.setattr(rig.delivery, "report", held_report)
    assert await rig.tracker._dispatch(wait=False) == []  # the loop's round: starts the task
    await entered.wait()

    second = await _recorded(rig, await rig.prompt(1, tune, "sks man second"))
    pending = rig.store.events.pending
    raced: list[list[str]] = []

    async def racing_pending() -> list[RecordedEvent]:
        events = await pending()
        if not raced:
            raced.append([e.key for e in events])
            release.set()  # the post goes through ...
            await posting[0]  # ... and the channel's task ends, before the read returns
        return events

    monkeypatch.setattr(rig.store.events, "pending", racing_pending)
    await rig.tracker._dispatch(wait=False)  # the round the second event woke
    assert raced == [[first, second]]  # it read the first before its task marked it
    await rig.tracker._dispatch()  # later rounds, until every task has ended
    await rig.tracker._dispatch()
    assert rig.delivery.keys("prompt:") == {first: 1, second: 1}
    assert await rig.store.events.pending() == []
