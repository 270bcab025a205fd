"""The admins' alert channel on the real bot process, against the emulator and the
wire-level Discord fake: a stuck job, Astria refusing a job for lack of credit and a
balance drift each post one alert there; a fault that repeats inside the window is one
post whose count is edited; an alert the bot could not post before a kill -9 is posted
after the restart, and one it posted is not posted again."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bot.offline.demo import demo_photo
from bot.offline.fakecord.state import Channel, Message
from bot.offline.stage import Stage, StageOptions, answer_of

# Words an admin must never read in an alert: routes, status codes, Python.
RAW = re.compile(r"\b(402|422|500|503|403|404)\b|/tunes|/users|Traceback|Error\b")


def alerts_in(stage: Stage, channel: Channel, words: str) -> list[Message]:
    return [m for m in stage.posts(channel) if words in m.content]


async def set_alert_channel(stage: Stage) -> Channel:
    channel = await stage.fake.create_channel(stage.guild, "bot-alerts")
    handle = await stage.fake.slash(stage.admin, stage.channel, "admin alerts", channel=channel)
    answer = await answer_of(handle, 30.0)
    assert f"Alerts go to <#{channel.id}>" in answer, answer
    return channel


def assert_friendly(messages: list[Message]) -> None:
    for message in messages:
        assert not RAW.search(message.content), message.content


@pytest.fixture
async def stuck_stage(tmp_path: Path) -> AsyncIterator[Stage]:
    options = StageOptions(
        folder=tmp_path / "stage",
        train_seconds=2.0,
        prompt_seconds=6.0,
        bot_settings={
            # The bot expects a prompt in 1 s and calls it stuck 1 s later; Astria takes 6.
            "FLUX_PROMPT_SECONDS": "1",
            "PROMPT_STUCK_AFTER_SECONDS": "1",
            "STUCK_POLL_SECONDS": "1",
            # Read only at start and after each paid create: the balance the test takes
            # away is found by Astria's refusal, not by a routine reading first.
            "BALANCE_REFRESH_SECONDS": "3600",
        },
    )
    async with Stage(options) as stage:
        yield stage


async def test_a_stuck_job_and_a_refusal_for_credit_each_post_one_alert(stuck_stage: Stage):
    stage = stuck_stage
    alice = stage.members["alice"]
    await stage.start_bot()
    await stage.fake.wait_commands(30.0)
    alerts = await set_alert_channel(stage)
    settings = await stage.command(stage.admin, "admin settings")
    assert f"**Alerts:** to <#{alerts.id}>" in settings and "below $5.00" in settings, settings

    photos = [(f"p{i}.jpg", demo_photo(i, size=600)) for i in range(4)]
    assert "Training" in await stage.train(alice, "me", photos)
    await stage.wait_for(
        lambda: any("is ready" in m.content for m in stage.posts()), "the tune", timeout=30
    )
    tune = await stage.tune_choice(alice)
    assert "Queued" in await stage.command(alice, "imagine", prompt="a lighthouse", tune=tune)
    stuck = await stage.wait_for(
        lambda: alerts_in(stage, alerts, "much longer than expected"), "the stuck alert"
    )
    await stage.wait_for(lambda: stage.image_posts(), "the late images", timeout=30)
    assert len(stuck) == 1 and "`prompt:" in stuck[0].content, stuck

    # Spent elsewhere: Astria has a cent while the bot's last reading says plenty.
    stage.emulator.balance_mc = 1_000
    assert "Queued" in await stage.command(alice, "imagine", prompt="a harbour", tune=tune)
    credit = await stage.wait_for(
        lambda: alerts_in(stage, alerts, "out of credit"), "the out-of-credit alert"
    )
    await stage.wait_for(lambda: alerts_in(stage, alerts, "below this server"), "low balance")
    await stage.wait_for(lambda: alerts_in(stage, alerts, "cannot account for"), "the drift")
    # The next paid command is refused, and the member learns the admins know.
    refused = await stage.command(alice, "imagine", prompt="a pier", tune=tune)
    assert "credit has run out" in refused and "admins have been told" in refused, refused
    posts = stage.posts(alerts)
    assert len(credit) == 1 and len(stuck) == 1
    assert len(alerts_in(stage, alerts, "much longer than expected")) == 1
    assert len(posts) == 4, [m.content for m in posts]  # stuck, credit, low balance, drift
    assert_friendly(posts)
    assert not any(f"<@{alice.id}>" in m.content for m in posts)  # admins' words, no pings
    assert await stage.stop_bot() == 0


@pytest.fixture
async def drift_stage(tmp_path: Path) -> AsyncIterator[Stage]:
    options = StageOptions(
        folder=tmp_path / "stage",
        bot_settings={
            "BALANCE_REFRESH_SECONDS": "0.5",
            "ALERT_WINDOW_SECONDS": "8",
            "LOW_BALANCE_ALERT_MC": "0",
        },
    )
    async with Stage(options) as stage:
        yield stage


async def test_drift_coalesces_and_a_restart_neither_repeats_nor_loses_an_alert(
    drift_stage: Stage,
):
    stage = drift_stage
    await stage.start_bot()
    await stage.fake.wait_commands(30.0)
    alerts = await set_alert_channel(stage)

    def drifts() -> list[Message]:
        return alerts_in(stage, alerts, "cannot account for")

    # Another app on the same key spends $1.00, then $0.50: one alert, its count edited.
    stage.emulator.balance_mc -= 100_000
    [first] = await stage.wait_for(drifts, "the drift alert")
    opened = time.monotonic()
    assert "$1.00" in first.content and "times since" not in first.content
    stage.emulator.balance_mc -= 50_000
    await stage.wait_for(lambda: "2 times since" in first.content, "the count of 2")
    assert len(drifts()) == 1 and first.edits >= 1
    assert "$0.50" in first.content  # the latest fault's words
    assert_friendly([first])

    # Past the window, Discord refuses the bot the channel: the next alert waits in the
    # outbox, and the bot is killed before it could post it.
    await asyncio.sleep(max(0.0, 8.5 - (time.monotonic() - opened)))
    await stage.fake.set_bot_can_send(alerts, False)
    stage.emulator.balance_mc -= 30_000
    await until(lambda: unsent_alert(stage), "a refused alert in the outbox")
    await stage.kill_bot()
    edits = first.edits

    await stage.fake.set_bot_can_send(alerts, True)
    await stage.start_bot()
    later = await stage.wait_for(lambda: len(drifts()) == 2 and drifts(), "the kept alert")
    assert "$0.30" in later[1].content
    await until(lambda: all_shown(stage), "the outbox to empty")
    assert len(drifts()) == 2 and first.edits == edits  # nothing sent again
    assert len(stage.posts(alerts)) == 2
    assert await stage.stop_bot() == 0


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    """Poll an async check (a read of the bot's database) until it holds."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def unsent_alert(stage: Stage) -> bool:
    """An alert in the outbox that Discord refused at least once and that has no post."""
    async with await stage.open_store() as store:
        return any(a.message_id is None and a.attempts >= 1 for a in await store.alerts.all())


async def all_shown(stage: Stage) -> bool:
    async with await stage.open_store() as store:
        return not await store.alerts.pending()
