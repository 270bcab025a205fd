"""The tracker runs retention once a day (on its steady clock): finished jobs' events go
after RETENTION_DAYS, the ledger and its sums stay as they were. Repeating faults are
logged once, then once a minute with a count."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from bot.jobs import EventKind
from bot.jobs.quiet import Coalesced
from bot.offline.emulator import Fault
from bot.store import PromptState
from tests.jobs.conftest import GUILD, Rig

DAY = 86_400.0


async def test_the_tracker_prunes_finished_jobs_events_once_a_day_and_keeps_the_ledger(
    rig: Rig,
) -> None:
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune)

    async def done() -> bool:
        return bool(rig.delivery.ends(EventKind.DONE))

    await rig.run_until(done)
    await rig.step(5)  # reported and marked
    done_key = f"{prompt.job}:done"
    assert await rig.store.events.exists(done_key)
    entries = await rig.store.ledger.entries()
    when = rig.now()
    budget = await rig.store.ledger.budget(GUILD, 1, at=when)

    await rig.step(91 * DAY)  # the prompt's events are now 91 days old
    assert not await rig.store.events.exists(done_key)
    current = await rig.store.prompts.get(prompt.id)
    assert current is not None and current.state == PromptState.DELIVERED
    assert current.image_urls == ()  # compacted, the row kept
    after = await rig.store.ledger.entries()
    assert after[: len(entries)] == entries  # nothing removed or changed
    then = await rig.store.ledger.budget(GUILD, 1, at=when)  # that month's sums, unchanged
    assert (then.guild_month, then.user_month, then.user_day) == (
        budget.guild_month,
        budget.user_month,
        budget.user_day,
    )
    assert await rig.store.ledger.audit() == []

    # An old reported event of a finished job, written now: not pruned until a day later.
    rig.jump_wall(-100 * DAY)
    await rig.store.events.record(key="prompt:1:late", job="prompt:1", kind="late", payload={})
    await rig.store.events.mark_reported("prompt:1:late", "delivered")
    rig.jump_wall(100 * DAY)
    await rig.step(3600)
    assert await rig.store.events.exists("prompt:1:late")
    await rig.step(DAY)
    assert not await rig.store.events.exists("prompt:1:late")
    await rig.ledger_matches_charges()


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_identical_warnings_within_a_minute_are_one_line_and_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticks = Ticks()
    quiet = Coalesced(logging.getLogger("test.quiet"), monotonic=ticks)
    caplog.set_level(logging.INFO, logger="test.quiet")
    for n in range(50):
        quiet.warning("balance not read (%s)", f"try {n}")
        ticks.now += 1.0  # 50 s in all
    quiet.flush()
    assert [r.getMessage() for r in caplog.records] == ["balance not read (try 0)"]
    ticks.now += 11.0
    quiet.flush()  # the fault stopped: its count is still written
    assert [r.getMessage() for r in caplog.records] == [
        "balance not read (try 0)",
        "balance not read (try 49) (49 more like it in the last 61 s)",
    ]
    quiet.warning("balance not read (%s)", "again")  # a new window: at once
    quiet.warning("status page failed (%s)", "x")  # another fault is its own
    assert [r.getMessage() for r in caplog.records][2:] == [
        "balance not read (again)",
        "status page failed (x)",
    ]


async def test_a_balance_outage_logs_a_line_a_minute_not_one_a_round(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.tracker = rig.new_tracker(balance_refresh=timedelta(0))
    rig.emulator.faults.script("GET /users", *[Fault("http_500")] * 300)
    caplog.set_level(logging.WARNING, logger="bot.jobs.tracker")
    await rig.step(5, rounds=11)  # 55 s, a reading failed in every round
    lines = [r.getMessage() for r in caplog.records if "balance not read" in r.getMessage()]
    assert len(lines) == 1, lines
    await rig.step(10)
    lines = [r.getMessage() for r in caplog.records if "balance not read" in r.getMessage()]
    assert len(lines) == 2 and "more like it in the last" in lines[1], lines
