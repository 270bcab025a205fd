"""/admin alerts through SimCord, and the alerts the real cogs and tracker post in the
alert channel: an undeliverable result (the job's server) and Astria failing again and
again (every server with an alert channel), in words an admin reads."""

from __future__ import annotations

from typing import Any

import discord
import pytest

from bot.offline.emulator import Fault
from bot.store import PromptState
from tests.bot.conftest import Scene, reply
from tests.bot.test_delivery import step_until

pytestmark = pytest.mark.simcord(strict_sync=False)


@pytest.fixture
def boss(scene: Scene) -> Any:
    role = scene.guild.create_role("mods", permissions=discord.Permissions(manage_guild=True))
    return scene.guild.add_member(scene.env.create_user("boss"), roles=[role])


def texts(channel: Any) -> list[str]:
    return [str(m.content) for m in channel.history()]


async def test_admins_set_turn_off_and_tune_the_alert_channel(scene: Scene, boss: Any):
    alerts = scene.guild.create_text_channel("bot-alerts")
    before = reply(await boss.slash(scene.channel, "admin settings"))
    assert "**Alerts:** off" in before, before

    said = reply(await boss.slash(scene.channel, "admin alerts", channel=alerts))
    assert f"Alerts go to <#{alerts.id}>" in said and "below $5.00" in said, said
    assert "stuck jobs" in said and "drift" in said
    said = reply(await boss.slash(scene.channel, "admin alerts", low_balance="2.50"))
    assert "below $2.50" in said and "operator's default" not in said, said
    shown = reply(await boss.slash(scene.channel, "admin settings"))
    assert f"**Alerts:** to <#{alerts.id}>; a low balance is told below $2.50" in shown, shown
    assert "`/admin alerts`" in shown

    refused = reply(await boss.slash(scene.channel, "admin alerts", low_balance="lots"))
    assert "not an amount" in refused, refused
    said = reply(await boss.slash(scene.channel, "admin alerts", low_balance="0"))
    assert "a low balance is told never" in said, said
    said = reply(await boss.slash(scene.channel, "admin alerts", low_balance="default"))
    assert "below $5.00 (the operator's default)" in said, said

    closed = scene.guild.create_text_channel(
        "closed",
        overwrites={scene.guild.default_role: discord.PermissionOverwrite(send_messages=False)},
    )
    refused = reply(await boss.slash(scene.channel, "admin alerts", channel=closed))
    assert f"cannot post in <#{closed.id}>" in refused, refused
    said = reply(await boss.slash(scene.channel, "admin alerts", off=True))
    assert "Alerts are off" in said, said
    settings = await scene.bot.store.guilds.get(scene.guild.id)
    assert settings.alert_channel_id is None

    with pytest.raises(Exception, match="default-member-permissions"):
        await scene.alice.slash(scene.channel, "admin alerts", channel=alerts)


async def test_an_undeliverable_result_and_repeated_astria_failures_are_told(
    scene: Scene, boss: Any
):
    alerts = scene.guild.create_text_channel("bot-alerts")
    reply(await boss.slash(scene.channel, "admin alerts", channel=alerts, low_balance="0"))
    tune = await scene.ready_tune(scene.alice)
    prompt = await scene.prompt(scene.alice, tune)
    scene.refuse_posts(scene.alice)
    await step_until(scene, prompt.id, PromptState.UNDELIVERABLE, rounds=60)
    await scene.bot.alert_poster.drain()
    told = [t for t in texts(alerts) if "could not be posted" in t]
    assert len(told) == 1 and f"`{prompt.job}`" in told[0] and "`/jobs`" in told[0], told

    # Astria fails every balance reading: two are the bot's own retries' business, the
    # third in a few minutes tells the admins, and later ones only raise its count.
    scene.emulator.faults.rate(Fault("http_500"), 1.0, "GET /users")
    bot = scene.bot

    async def fail_readings(times: int) -> list[str]:
        for _ in range(times):
            await bot.tracker.read_balance()
        await bot.alerts.flush()  # what each tracker round does
        await bot.alert_poster.drain()
        return [t for t in texts(alerts) if "Astria keeps failing" in t]

    assert await fail_readings(2) == []
    [failing] = await fail_readings(1)
    assert "3 times since" in failing, failing
    [failing] = await fail_readings(2)
    assert "5 times since" in failing, failing  # the same post, edited
    for text in texts(alerts):
        assert "500" not in text and "/users" not in text and "Traceback" not in text


async def test_members_hear_the_admins_were_told_only_when_they_were(scene: Scene, boss: Any):
    tune = await scene.ready_tune(scene.alice)
    await scene.bot.store.account.mark_short(10_000)

    async def refused() -> str:
        return reply(
            await scene.alice.slash(scene.channel, "imagine", prompt="a", tune=str(tune.id))
        )

    first = await refused()
    assert "credit has run out" in first and "admins have been told" not in first, first
    alerts = scene.guild.create_text_channel("bot-alerts")
    await boss.slash(scene.channel, "admin alerts", channel=alerts)
    assert "admins have been told" not in await refused()  # set after the alert went out
    await scene.bot.alerts.out_of_credit(10_000)
    assert "admins have been told in their alert channel" in await refused()


async def test_a_low_balance_read_by_an_admin_is_told_once(scene: Scene, boss: Any):
    alerts = scene.guild.create_text_channel("bot-alerts")
    await boss.slash(scene.channel, "admin alerts", channel=alerts, low_balance="5")
    await scene.bot.store.account.record_balance(scene.emulator.balance_mc)
    scene.emulator.balance_mc = 100_000
    for _ in range(2):
        said = reply(await boss.slash(scene.channel, "admin refresh-balance"))
        assert "$1.00 left" in said, said
        await scene.bot.alert_poster.drain()
    told = texts(alerts)
    assert len(told) == 1 and "$1.00, below this server's alert threshold of $5.00" in told[0]
