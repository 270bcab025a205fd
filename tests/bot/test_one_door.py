"""Regression tests for the holes the one-door layer closes, each as a hostile member or a
careless operator found it: the real bot under SimCord, the real store, the emulator."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
import pytest

from bot.actions import Actor, Place, Refused, admin, door, tunes
from bot.rules.credits import MAX_AMOUNT_MC
from bot.store import LedgerKind, PromptRecord, TuneState
from cogs.tunes import MENU_NAME
from tests.bot.conftest import Scene, reply
from tests.bot.test_buttons import delivered
from tests.bot.test_tune_create import fields, paid, photos
from tests.conftest import photo
from tests.jobs.conftest import BRANCH, IMAGE_MC, TUNE_MC

pytestmark = pytest.mark.simcord(strict_sync=False)


async def prompts_of(scene: Scene, member: Any) -> list[PromptRecord]:
    return await scene.bot.store.prompts.list_for(member.id, limit=1000)


@pytest.fixture
def boss(scene: Scene) -> Any:
    role = scene.guild.create_role("mods", permissions=discord.Permissions(manage_guild=True))
    return scene.guild.add_member(scene.env.create_user("boss"), roles=[role])


async def test_reroll_is_refused_to_a_banned_member_and_on_a_paused_server(scene: Scene):
    prompt, post = await delivered(scene)
    reroll = f"job:reroll:{prompt.id}"
    store, guild = scene.bot.store, scene.guild.id
    await store.guilds.ban(guild, scene.alice.id, actor_id=None)
    banned = await scene.alice.click(post, custom_id=reroll)
    assert banned.response.ephemeral and banned.response.content == door.BANNED
    await store.guilds.unban(guild, scene.alice.id)
    await store.guilds.set_paused(guild, True)
    paused = await scene.alice.click(post, custom_id=reroll)
    assert paused.response.content == door.PAUSED
    await store.guilds.set_paused(guild, False)
    other = scene.guild.create_text_channel("elsewhere")
    await store.guilds.allow_channel(guild, other.id)
    assert (await scene.alice.click(post, custom_id=reroll)).response.content == door.NOT_HERE
    await store.guilds.disallow_channel(guild, other.id)
    role = scene.guild.create_role("artists")
    await store.guilds.allow_role(guild, role.id)
    assert (await scene.alice.click(post, custom_id=reroll)).response.content == door.NO_ROLE
    assert [p.id for p in await prompts_of(scene, scene.alice)] == [prompt.id]


async def test_reroll_prices_by_the_tunes_branch_not_the_bots(scene: Scene):
    prompt, post = await delivered(scene)
    bot = scene.bot
    # The operator switches the bot to the free branch; the tune stays a paid one.
    bot.services.settings = bot.settings.model_copy(update={"astria_branch": "fast"})
    answer = await scene.alice.click(post, custom_id=f"job:reroll:{prompt.id}")
    assert "Rerolling" in answer.response.content, answer.response.content
    newest = max(await prompts_of(scene, scene.alice), key=lambda p: p.id)
    held = await bot.store.ledger.reservation(newest.job)
    assert held is not None and held.amount_mc == 2 * IMAGE_MC  # sd15's price, not fast's 0
    assert newest.target_tune_id == prompt.target_tune_id


async def test_a_price_of_0_turns_no_limit_off(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    bot = scene.bot
    bot.services.settings = bot.settings.model_copy(
        update={"image_price_mc": {**bot.settings.image_price_mc, BRANCH: 0}}
    )
    # The account has nothing left: Astria would bill these prompts at its own price.
    await bot.store.account.record_balance(0)
    refused = reply(
        await scene.alice.slash(scene.channel, "imagine", prompt="a", tune=str(tune.id))
    )
    assert "Not queued" in refused and "Astria account's balance" in refused, refused
    await bot.store.account.record_balance(10**9)
    cap = bot.settings.max_waiting_per_member
    said = [
        reply(await scene.alice.slash(scene.channel, "imagine", prompt=f"a {n}", tune=str(tune.id)))
        for n in range(cap + 2)
    ]
    assert sum("Queued" in s for s in said) == cap, said
    assert "jobs waiting or running, the most at once" in said[-1]
    assert len(await prompts_of(scene, scene.alice)) == cap
    # Banned and paused hold at a price of 0 too.
    await bot.store.guilds.set_paused(scene.guild.id, True)
    paused = reply(await scene.bob.slash(scene.channel, "imagine", prompt="a", tune=str(tune.id)))
    assert paused == door.PAUSED


async def test_tune_create_is_refused_outside_a_server(scene: Scene):
    # Discord does not show it in DMs (see test_entry_points); the door refuses server 0
    # whatever reaches it.
    svc = scene.bot.services
    actor = Actor(scene.alice.id)
    for place in (Place(None, 5), Place(0, 5)):
        quoted = await tunes.quote_tune(svc, actor, place)
        assert quoted == Refused(door.IN_A_SERVER)
        order = tunes.TuneOrder("me", "man", True, [])
        assert await tunes.start_tune(svc, actor, place, order) == Refused(door.IN_A_SERVER)
    assert await scene.bot.store.tunes.list_for(scene.alice.id) == []


async def test_a_form_opened_before_a_ban_is_refused_at_submit(scene: Scene):
    await paid(scene)
    shown = await scene.alice.slash(scene.channel, "tune create")
    assert shown.modal is not None
    await scene.bot.store.guilds.ban(scene.guild.id, scene.alice.id, actor_id=None)
    submitted = await scene.alice.submit_modal(shown, fields(photos1=photos(4)))
    assert reply(submitted) == door.BANNED
    assert await scene.bot.store.tunes.list_for(scene.alice.id) == []
    assert await scene.bot.store.ledger.entries() == []


async def test_two_admins_refunding_one_job_at_once_refund_it_once(scene: Scene, boss: Any):
    prompt, _ = await delivered(scene)
    svc = scene.bot.services
    place = Place(scene.guild.id, scene.channel.id)
    first, second = Actor(boss.id, manages_guild=True), Actor(scene.admin.id, manages_guild=True)
    outcomes = await asyncio.gather(
        admin.refund(svc, first, place, str(prompt.job)),
        admin.refund(svc, second, place, str(prompt.job)),
    )
    assert sorted(isinstance(o, Refused) for o in outcomes) == [False, True], outcomes
    entries = await scene.bot.store.ledger.entries(job=prompt.job)
    assert [e.kind for e in entries].count(LedgerKind.ADJUST) == 1
    assert sum(e.amount_mc for e in entries) == 0
    again = reply(await boss.slash(scene.channel, "admin refund", job=str(prompt.job)))
    assert "refunded already" in again


async def test_a_refund_counts_in_the_month_the_job_was_charged(scene: Scene, boss: Any):
    prompt, _ = await delivered(scene)
    store = scene.bot.store
    charged = (await store.ledger.budget(scene.guild.id, scene.alice.id)).user_month.used_mc
    assert charged == TUNE_MC + 2 * IMAGE_MC
    await scene.emulator.advance(40 * 24 * 3600)
    done = reply(await boss.slash(scene.channel, "admin refund", job=str(prompt.job)))
    assert "Refunded $0.04" in done, done
    now = await store.ledger.budget(scene.guild.id, scene.alice.id)
    assert now.user_month.used_mc == 0  # not -$0.04 in the new month
    (refund,) = [e for e in await store.ledger.entries(job=prompt.job) if e.kind == "adjust"]
    reserve = await store.ledger.reservation(prompt.job)
    assert reserve is not None and refund.period_at == reserve.at
    then = await store.ledger.budget(scene.guild.id, scene.alice.id, at=reserve.at)
    assert then.user_month.used_mc == TUNE_MC


async def test_odd_ids_and_amounts_get_a_reason_not_an_error(
    scene: Scene, boss: Any, caplog: pytest.LogCaptureFixture
):
    tune = await scene.ready_tune(scene.alice)
    caplog.set_level(logging.ERROR)
    for bad in ("²", "9" * 25, "-3", "0", "12a"):
        said = reply(await scene.alice.slash(scene.channel, "imagine", prompt="a", tune=bad))
        assert said == "Pick a tune from the list (start typing its name).", (bad, said)
        shared = reply(await boss.slash(scene.channel, "admin share", tune=bad))
        assert "Pick a tune of this server from the list" in shared, (bad, shared)
    for bad, why in (("1,5", "use a dot"), ("²", "not an amount"), ("1" * 25, "not an amount")):
        said = reply(await boss.slash(scene.channel, "admin budget server", amount=bad))
        assert why in said, (bad, said)
    said = reply(await boss.slash(scene.channel, "admin refund", job="prompt:" + "9" * 25))
    assert "is not a job" in said
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert (await scene.bot.store.guilds.get(scene.guild.id)).monthly_budget_mc > 0
    assert [p.tune_id for p in await prompts_of(scene, scene.alice)] == []
    assert tune.state == TuneState.READY


async def test_the_largest_grant_repeated_overflows_nothing(scene: Scene, boss: Any):
    await paid(scene)
    tune = await scene.ready_tune(scene.alice)
    top = f"{MAX_AMOUNT_MC // 100_000}"
    over = reply(
        await boss.slash(scene.channel, "admin grant", member=scene.alice, amount="100001")
    )
    assert "more than the most allowed" in over
    for _ in range(3):
        said = reply(await boss.slash(scene.channel, "admin grant", member=scene.alice, amount=top))
        assert "Granted $100,000.00" in said, said
    store = scene.bot.store
    for _ in range(2000):  # far more than an admin would: the sums stay exact
        await store.ledger.grant(
            guild_id=scene.guild.id, user_id=scene.alice.id, amount_mc=MAX_AMOUNT_MC, actor_id=1
        )
    budget = await store.ledger.budget(scene.guild.id, scene.alice.id)
    assert budget.user_month.allowance_mc == 10**12 + 2003 * MAX_AMOUNT_MC
    assert "**You today:**" in reply(await scene.alice.slash(scene.channel, "balance"))
    queued = reply(await scene.alice.slash(scene.channel, "imagine", prompt="a", tune=str(tune.id)))
    assert "Queued" in queued


async def test_tune_names_are_cleaned_and_pickers_name_the_owner(scene: Scene, boss: Any):
    await paid(scene)
    sneaky = "\u202eem\u200b \u200d  tuo\ufeff"
    shown = await scene.alice.slash(scene.channel, "tune create")
    submitted = await scene.alice.submit_modal(shown, fields(name=sneaky, photos1=photos(4)))
    assert "Training" in reply(submitted), reply(submitted)
    (tune,) = await scene.bot.store.tunes.list_for(scene.alice.id)
    assert tune.name == "em tuo" and tune.owner_name == "alice"
    await scene.step(30, rounds=10)
    choices = await boss.autocomplete(scene.channel, "admin share", "tune", "")
    assert [c["name"] for c in choices] == ["em tuo (by alice)"]
    assert str(scene.alice.id) not in choices[0]["name"]
    bare = await scene.alice.slash(scene.channel, "tune create")
    refused = await scene.alice.submit_modal(bare, fields(name="\u200b\u202e", photos1=photos(4)))
    assert "Give the tune a name" in reply(refused)


async def test_reroll_on_a_deleted_tune_says_why(scene: Scene):
    prompt, post = await delivered(scene)
    store = scene.bot.store
    await store.tunes.set_state(prompt.tune_id, TuneState.DELETED)
    said = await scene.alice.click(post, custom_id=f"job:reroll:{prompt.id}")
    assert "was deleted" in said.response.content and "Train a new tune" in said.response.content
    assert len(await prompts_of(scene, scene.alice)) == 1


@pytest.mark.parametrize("how", [TuneState.DELETED, TuneState.EXPIRED])
async def test_a_tune_gone_between_the_check_and_the_queue_is_refused_clearly(
    scene: Scene, monkeypatch: pytest.MonkeyPatch, how: TuneState
):
    """The tune goes (deleted by its owner, expired at Astria) after `/imagine` read it as
    ready and before the prompt row is written: the store refuses in its transaction, and
    the member reads why, not an error."""
    prompt, post = await delivered(scene)
    store = scene.bot.store
    ready = await store.tunes.get(prompt.tune_id)
    await store.tunes.set_state(prompt.tune_id, how)

    async def stale(user_id: int, guild_id: int, tune_id: int) -> Any:
        return ready  # what was read just before the tune went

    monkeypatch.setattr(store.tunes, "get_usable", stale)
    said = await scene.alice.click(post, custom_id=f"job:reroll:{prompt.id}")
    assert f"was {how}" in said.response.content, said.response.content
    queued = await scene.alice.slash(
        scene.channel, "imagine", prompt="again", tune=str(prompt.tune_id)
    )
    assert f"was {how}" in reply(queued), reply(queued)
    assert len(await prompts_of(scene, scene.alice)) == 1
    assert await store.ledger.open_reservations() == []


async def test_training_from_a_message_in_a_thread_follows_the_parents_rule(scene: Scene):
    await paid(scene)
    parent = scene.bot.get_channel(scene.channel.id)
    assert isinstance(parent, discord.TextChannel)
    await parent.create_thread(name="photos", type=discord.ChannelType.public_thread)
    (thread,) = scene.channel.threads
    await scene.bot.store.guilds.allow_channel(scene.guild.id, scene.channel.id)
    files = [(f"p{i}.jpg", photo(i, size=600)) for i in range(4)]
    message = await scene.alice.send(thread, "mine", attachments=files)
    shown = await scene.alice.context_menu(thread, MENU_NAME, message)
    assert shown.modal is not None, reply(shown)
    submitted = await scene.alice.submit_modal(shown, fields(name="threaded"))
    assert "Training **threaded**" in reply(submitted), reply(submitted)
