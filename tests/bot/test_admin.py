"""/admin through SimCord: budgets, grants, pause and spend, for Manage Server only."""

from __future__ import annotations

from typing import Any

import discord
import pytest
from simcord.backend.errors import SetupError

from bot.offline.emulator import Fault
from bot.rules.credits import MAX_AMOUNT_MC, AmountError, format_mc, parse_usd
from bot.store import PromptState
from bot.ui.base import ASTRIA_DOWN
from tests.bot.conftest import Scene, reply

pytestmark = pytest.mark.simcord(strict_sync=False)


def test_dollar_amounts_are_read_exactly_and_strictly():
    assert parse_usd("20") == 2_000_000
    assert parse_usd("$12.50") == 1_250_000
    assert parse_usd(" $ 1.5 ") == 150_000
    assert parse_usd("0.00001") == 1
    assert parse_usd(".5") == 50_000
    assert parse_usd("100000") == MAX_AMOUNT_MC
    reasons = {
        "1,5": "use a dot",
        "1,000": "use a dot",
        "-5": "negative",
        "100000.01": "more than the most allowed",
        "1e3": "not an amount",
        "NaN": "not an amount",
        "inf": "not an amount",
        "١٢": "not an amount",  # Arabic-Indic digits
        "²": "not an amount",
        "": "not an amount",
        "$": "not an amount",
        "1.000001": "not an amount",
        "1.2.3": "not an amount",
        "9" * 25: "not an amount",
    }
    for bad, why in reasons.items():
        with pytest.raises(AmountError, match=why):
            parse_usd(bad)


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


async def delivered_prompt(scene: Scene) -> Any:
    tune = await scene.ready_tune(scene.alice)
    prompt = await scene.prompt(scene.alice, tune, images=2)
    for _ in range(10):
        await scene.step(5)
    record = await scene.bot.store.prompts.get(prompt.id)
    assert record is not None and record.state == PromptState.DELIVERED
    return record


async def test_refund_gives_a_finished_jobs_cost_back_once(scene: Scene, boss: Any):
    prompt = await delivered_prompt(scene)
    ledger = scene.bot.store.ledger
    before = (await ledger.spend_by_member(scene.guild.id))[scene.alice.id]
    done = reply(await boss.slash(scene.channel, "admin refund", job=f"prompt-{prompt.id}"))
    assert f"Refunded $0.04 for `prompt:{prompt.id}`" in done, done
    after = (await ledger.spend_by_member(scene.guild.id))[scene.alice.id]
    assert before - after == 4_000
    again = reply(await boss.slash(scene.channel, "admin refund", job=f"prompt:{prompt.id}"))
    assert "refunded already" in again
    assert "not a job" in reply(await boss.slash(scene.channel, "admin refund", job="banana"))
    assert "no job" in reply(await boss.slash(scene.channel, "admin refund", job="prompt:999"))
    assert await ledger.audit() == []


async def test_cancel_takes_only_stuck_jobs(scene: Scene, boss: Any):
    prompt = await delivered_prompt(scene)
    refused = reply(await boss.slash(scene.channel, "admin cancel", job=f"prompt:{prompt.id}"))
    assert "only a stuck job" in refused
    tune = await scene.bot.store.tunes.list_for(scene.alice.id)
    stuck = await scene.prompt(scene.alice, tune[0], images=1)
    await scene.step(5)
    current = await scene.bot.store.prompts.get(stuck.id)
    assert current is not None and current.astria_id is not None
    scene.emulator.stall("prompt", current.astria_id)
    for _ in range(40):
        current = await scene.bot.store.prompts.get(stuck.id)
        assert current is not None
        if current.state == PromptState.STUCK:
            break
        await scene.step(60)
    assert current.state == PromptState.STUCK
    done = reply(await boss.slash(scene.channel, "admin cancel", job=f"prompt:{stuck.id}"))
    assert "Cancelled" in done, done
    current = await scene.bot.store.prompts.get(stuck.id)
    assert current is not None and current.state == PromptState.CANCELLED
    assert await scene.bot.store.ledger.open_reservations() == []


async def test_channel_and_role_rules_and_bans(scene: Scene, boss: Any):
    tune = await scene.ready_tune(scene.alice)
    other = scene.guild.create_text_channel("random")
    listed = reply(await boss.slash(scene.channel, "admin channels", action="list"))
    assert "every channel may use the bot" in listed
    allowed = reply(
        await boss.slash(scene.channel, "admin channels", action="allow", channel=scene.channel)
    )
    assert f"<#{scene.channel.id}>" in allowed
    elsewhere = await scene.alice.slash(other, "imagine", prompt="a", tune=str(tune.id))
    assert "isn't used in this channel" in reply(elsewhere)
    here = await scene.alice.slash(scene.channel, "imagine", prompt="a", tune=str(tune.id))
    assert "Queued" in reply(here)

    artists = scene.guild.create_role("artists")
    roles = reply(await boss.slash(scene.channel, "admin roles", action="allow", role=artists))
    assert f"<@&{artists.id}>" in roles
    no_role = await scene.alice.slash(scene.channel, "imagine", prompt="b", tune=str(tune.id))
    assert "roles don't include" in reply(no_role)
    reply(await boss.slash(scene.channel, "admin roles", action="disallow", role=artists))

    banned = reply(await boss.slash(scene.channel, "admin ban", member=scene.alice))
    assert "can no longer use the bot" in banned
    refused = await scene.alice.slash(scene.channel, "imagine", prompt="c", tune=str(tune.id))
    assert "can't use the bot" in reply(refused)
    reply(await boss.slash(scene.channel, "admin unban", member=scene.alice))
    again = await scene.alice.slash(scene.channel, "imagine", prompt="d", tune=str(tune.id))
    assert "Queued" in reply(again)


async def test_share_lets_other_members_use_a_tune(scene: Scene, boss: Any):
    tune = await scene.ready_tune(scene.alice)
    assert await scene.bob.autocomplete(scene.channel, "imagine", "tune", "") == []
    choices = await boss.autocomplete(scene.channel, "admin share", "tune", "m")
    assert [c["value"] for c in choices] == [str(tune.id)]
    shared = reply(await boss.slash(scene.channel, "admin share", tune=str(tune.id)))
    assert "is shared" in shared
    offered = await scene.bob.autocomplete(scene.channel, "imagine", "tune", "")
    assert [c["value"] for c in offered] == [str(tune.id)]
    used = await scene.bob.slash(scene.channel, "imagine", prompt="a", tune=str(tune.id))
    assert "Queued" in reply(used)
    reply(await boss.slash(scene.channel, "admin unshare", tune=str(tune.id)))
    later = await scene.bob.slash(scene.channel, "imagine", prompt="b", tune=str(tune.id))
    assert "not yours" in reply(later)


async def test_refresh_balance_reads_astria_and_says_when_it_is_down(scene: Scene, boss: Any):
    text = reply(await boss.slash(scene.channel, "admin refresh-balance"))
    assert format_mc(scene.emulator.balance_mc) in text
    known = await scene.bot.store.account.last_known()
    assert known is not None and known.balance_mc == scene.emulator.balance_mc
    scene.emulator.faults.script("GET /users", *[Fault("http_500")] * 5)
    down = await boss.slash(scene.channel, "admin refresh-balance")
    assert reply(down) == ASTRIA_DOWN and down.response.ephemeral


async def test_admin_sees_the_account_balance_in_balance_and_members_do_not(
    scene: Scene, boss: Any
):
    await delivered_prompt(scene)
    mine = reply(await scene.alice.slash(scene.channel, "balance"))
    assert "Astria balance" not in mine
    assert "**You this month:** $1.54 of" in mine  # the tune and two images
    theirs = reply(await boss.slash(scene.channel, "balance"))
    known = await scene.bot.store.account.last_known()
    assert known is not None and f"**Astria balance:** {format_mc(known.balance_mc)}" in theirs
    spend = reply(await boss.slash(scene.channel, "admin spend"))
    entries = await scene.bot.store.ledger.entries(user_id=scene.alice.id)
    assert f"<@{scene.alice.id}>: {format_mc(sum(e.amount_mc for e in entries))}" in spend
    charged = sum(c.cost_mc for c in scene.emulator.charges)
    assert sum(e.amount_mc for e in entries) == charged


async def test_while_the_credit_has_run_out_members_and_admins_are_told_plainly(
    scene: Scene, boss: Any
):
    tune = await scene.ready_tune(scene.alice)
    store = scene.bot.store
    # Astria refused a job for lack of credit (tests/jobs/test_credit_runs_out.py).
    await store.account.mark_short(10_000)
    refused = reply(
        await scene.alice.slash(scene.channel, "imagine", prompt="a", tune=str(tune.id))
    )
    assert "Not queued" in refused and "credit has run out" in refused, refused
    assert "402" not in refused and "/tunes" not in refused
    mine = reply(await scene.alice.slash(scene.channel, "balance"))
    assert "**You can still spend:** nothing on paid commands for now" in mine, mine
    theirs = reply(await boss.slash(scene.channel, "balance"))
    assert "**Paid commands paused** since" in theirs, theirs
    # The owner tops up a moment later; an admin's refresh resumes at once.
    scene.emulator.balance_mc = 10**8
    await scene.emulator.advance(1)
    text = reply(await boss.slash(scene.channel, "admin refresh-balance"))
    assert "Paid commands are going again" in text, text
    queued = reply(await scene.alice.slash(scene.channel, "imagine", prompt="b", tune=str(tune.id)))
    assert "Queued" in queued, queued


async def test_balance_names_the_limit_that_binds_the_member(scene: Scene, boss: Any):
    await scene.ready_tune(scene.alice)
    await boss.slash(scene.channel, "admin budget user", daily="2.00", monthly="5")
    mine = reply(await scene.alice.slash(scene.channel, "balance"))
    assert "**You can still spend:** $0.50: what is left of your limit for today" in mine, mine


async def test_settings_shows_every_rule_with_the_command_that_changes_it(scene: Scene, boss: Any):
    tune = await scene.ready_tune(scene.alice)
    before = reply(await boss.slash(scene.channel, "admin settings"))
    assert "every channel" in before and "**Banned:** 0." in before, before
    assert "**Paused:** no" in before and "**Shared tunes:** none" in before
    await boss.slash(scene.channel, "admin budget server", amount="25")
    await boss.slash(scene.channel, "admin budget user", daily="2", monthly="7.50")
    await boss.slash(scene.channel, "admin grant", member=scene.bob, amount="3")
    await boss.slash(scene.channel, "admin channels", action="allow", channel=scene.channel)
    await boss.slash(scene.channel, "admin ban", member=scene.alice)
    await boss.slash(scene.channel, "admin pause")
    await boss.slash(scene.channel, "admin share", tune=str(tune.id))
    await scene.bot.store.account.mark_short(10_000)
    shown = await boss.slash(scene.channel, "admin settings")
    text = reply(shown)
    assert shown.response.ephemeral, "the settings view is for the admin only"
    assert "$25.00 a month; $1.50 used this month" in text, text
    assert "$2.00 a day, $7.50 a month" in text
    assert f"<@{scene.bob.id}> $3.00" in text
    assert f"**Channels:** <#{scene.channel.id}>." in text
    assert f"**Banned:** 1: <@{scene.alice.id}>." in text
    assert "**Paused:** yes" in text
    assert f"**me** (<@{scene.alice.id}>)" in text
    settings = scene.bot.settings
    assert f"`{settings.astria_branch}`" in text
    assert f"a tune {format_mc(settings.tune_price())}" in text
    assert "paused for lack of credit" in text
    for command in ("budget server", "budget user", "channels", "ban", "pause", "share"):
        assert f"`/admin {command}`" in text, command
    assert len(text) < 2000


async def test_settings_cuts_long_lists(scene: Scene, boss: Any):
    for i in range(40):
        await scene.bot.store.guilds.ban(scene.guild.id, 10**17 + i, actor_id=boss.id, reason=None)
    text = reply(await boss.slash(scene.channel, "admin settings"))
    assert "**Banned:** 40:" in text and "and 35 more" in text, text
    assert len(text) < 2000
    with pytest.raises(SetupError, match="default-member-permissions"):
        await scene.alice.slash(scene.channel, "admin settings")
