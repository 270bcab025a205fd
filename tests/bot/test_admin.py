"""/admin through SimCord: budgets, grants, pause and spend, for Manage Server only."""

from __future__ import annotations

from typing import Any

import discord
import pytest
from simcord.backend.errors import SetupError

from bot.credits import parse_usd
from tests.bot.conftest import Scene, reply

pytestmark = pytest.mark.simcord(strict_sync=False)


def test_dollar_amounts_are_read_exactly():
    assert parse_usd("20") == 2_000_000
    assert parse_usd("$12.50") == 1_250_000
    assert parse_usd("0.00001") == 1
    assert parse_usd("1,000") == 100_000_000
    for bad in ("", "-5", "abc", "1.000001", "1.2.3", "$"):
        assert parse_usd(bad) is None, bad


@pytest.fixture
def boss(scene: Scene) -> Any:
    role = scene.guild.create_role("mods", permissions=discord.Permissions(manage_guild=True))
    return scene.guild.add_member(scene.env.create_user("boss"), roles=[role])


async def test_admin_sets_budgets_and_limits_and_members_feel_them(scene: Scene, boss: Any):
    tune = await scene.ready_tune(scene.alice)  # $1.50 spent today
    text = reply(await boss.slash(scene.channel, "admin budget server", amount="25"))
    assert "$25.00" in text
    text = reply(await boss.slash(scene.channel, "admin budget user", daily="1.51", monthly="5"))
    assert "$1.51 a day" in text and "$5.00 a month" in text
    poor = reply(await scene.alice.slash(scene.channel, "imagine", prompt="a", tune=str(tune.id)))
    assert "Not queued" in poor
    granted = reply(await boss.slash(scene.channel, "admin grant", member=scene.alice, amount="1"))
    assert "Granted $1.00" in granted, granted
    rich = reply(await scene.alice.slash(scene.channel, "imagine", prompt="a", tune=str(tune.id)))
    assert "Queued 1 image" in rich
    spend = reply(await boss.slash(scene.channel, "admin spend"))
    assert f"<@{scene.alice.id}>: $1.52" in spend  # the tune and one image
    entries = await scene.bot.store.ledger.entries()
    assert sum(e.amount_mc for e in entries if e.kind != "grant") == 152_000


async def test_pause_and_resume(scene: Scene, boss: Any):
    tune = await scene.ready_tune(scene.alice)
    assert "Paused" in reply(await boss.slash(scene.channel, "admin pause"))
    refused = reply(
        await scene.alice.slash(scene.channel, "imagine", prompt="a", tune=str(tune.id))
    )
    assert "paused" in refused
    assert "Resumed" in reply(await boss.slash(scene.channel, "admin resume"))


async def test_members_without_manage_server_are_refused(scene: Scene, boss: Any):
    # Discord itself hides /admin from members without Manage Server (default permission).
    with pytest.raises(SetupError, match="default-member-permissions"):
        await scene.alice.slash(scene.channel, "admin pause")
    bad = reply(await boss.slash(scene.channel, "admin budget server", amount="lots"))
    assert "not an amount in dollars" in bad
    settings = await scene.bot.store.guilds.get(scene.guild.id)
    assert not settings.paused
