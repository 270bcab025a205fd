"""Alerts the tracker raises, on the emulator over HTTP: a job Astria charged more than
its price is told once, to its own server only; account alerts reach every server with an
alert channel."""

from __future__ import annotations

import pytest

from bot.offline.emulator import EmulatorConfig
from bot.store import PromptState
from tests.conftest import KEY
from tests.jobs.conftest import BRANCH, GUILD, IMAGE_MC, Rig

OTHER = 99  # another server with an alert channel


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    # Astria charges half as much again as the bot's configured image price.
    prices: dict[str, int] = {"fast": 0, BRANCH: IMAGE_MC * 3 // 2}
    return EmulatorConfig(
        api_key=KEY, train_seconds=120, prompt_seconds=10, foreign_prompts=0, image_price_mc=prices
    )


async def test_an_overage_is_told_once_to_its_own_server(rig: Rig):
    await rig.store.guilds.set_alert_channel(GUILD, 1)
    await rig.store.guilds.set_alert_channel(OTHER, 2)
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune, images=2)

    async def delivered() -> bool:
        found = await rig.store.prompts.get(prompt.id)
        return found is not None and found.state == PromptState.DELIVERED

    await rig.run_until(delivered)
    await rig.step(5, rounds=3)  # later rounds tell nothing new
    overages = [a for a in await rig.store.alerts.all() if a.kind == "overage"]
    assert [(a.guild_id, a.count) for a in overages] == [(GUILD, 1)]
    text = overages[0].text
    assert f"`{prompt.job}`" in text and "$0.06" in text and "$0.02 more" in text, text
    assert "$0.04" in text


async def test_running_out_of_credit_is_told_to_every_server_with_an_alert_channel(rig: Rig):
    await rig.store.guilds.set_alert_channel(GUILD, 1)
    await rig.store.guilds.set_alert_channel(OTHER, 2)
    await rig.store.guilds.set_paused(3, False)  # a server without an alert channel
    tune = await rig.ready_tune(owner=1)
    rig.emulator.balance_mc = 1  # spent elsewhere; the bot's last reading says plenty
    await rig.prompt(1, tune)
    await rig.step(5, rounds=3)
    told = [a for a in await rig.store.alerts.all() if a.kind == "out-of-credit"]
    assert sorted((a.guild_id, a.count) for a in told) == [(GUILD, 1), (OTHER, 1)]
    assert "402" not in told[0].text and "out of credit" in told[0].text
