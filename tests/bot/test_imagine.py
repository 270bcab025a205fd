"""/imagine through SimCord with the real cog, store, tracker and emulator."""

from __future__ import annotations

import discord
import pytest

from bot.store import PromptState
from tests.bot.conftest import Scene, reply

pytestmark = pytest.mark.simcord(strict_sync=False)


async def test_imagine_queues_and_the_images_arrive_with_buttons(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    choices = await scene.alice.autocomplete(scene.channel, "imagine", "tune", "m")
    assert [c["value"] for c in choices] == [str(tune.id)]
    result = await scene.alice.slash(
        scene.channel, "imagine", prompt="on a beach at sunset", tune=str(tune.id), count=2
    )
    assert "Queued 2 images" in reply(result) and "$0.04" in reply(result)
    (prompt,) = await scene.bot.store.prompts.list_for(scene.alice.id)
    assert prompt.final_text == "sks man on a beach at sunset"
    assert prompt.options.aspect_ratio == "1:1"
    for _ in range(10):
        await scene.step(5)
    record = await scene.bot.store.prompts.get(prompt.id)
    assert record is not None and record.state == PromptState.DELIVERED
    post = next(m for m in scene.channel.history() if m.attachments)
    assert len(post.attachments) == 2


async def test_imagine_refusals_are_clear_and_spend_nothing(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    # Someone else's tune, by id (autocomplete offers bob nothing).
    assert await scene.bob.autocomplete(scene.channel, "imagine", "tune", "") == []
    other = await scene.bob.slash(scene.channel, "imagine", prompt="hi", tune=str(tune.id))
    assert "not yours" in reply(other)
    # A tag naming a tune the member may not use.
    tagged = await scene.alice.slash(
        scene.channel, "imagine", prompt="<lora:999999:1> on a beach", tune=str(tune.id)
    )
    assert "tune 999999, which is not yours" in reply(tagged)
    # A Midjourney-style flag.
    flagged = await scene.alice.slash(
        scene.channel, "imagine", prompt="on a beach --ar 16:9", tune=str(tune.id)
    )
    assert "--ar" in reply(flagged)
    # Paused server.
    await scene.bot.store.guilds.set_paused(scene.guild.id, True)
    paused = await scene.alice.slash(scene.channel, "imagine", prompt="x", tune=str(tune.id))
    assert "paused" in reply(paused)
    await scene.bot.store.guilds.set_paused(scene.guild.id, False)
    # Over budget: a daily limit below one image.
    await scene.bot.store.guilds.set_user_daily_limit(scene.guild.id, 1_000)
    poor = await scene.alice.slash(scene.channel, "imagine", prompt="x", tune=str(tune.id))
    assert "Not queued" in reply(poor) and "day" in reply(poor).lower()
    assert await scene.bot.store.prompts.list_for(scene.alice.id) == []
    assert await scene.bot.store.prompts.list_for(scene.bob.id) == []
    for result in (other, tagged, flagged, paused, poor):
        assert result.ephemeral or result.response.ephemeral


async def test_balance_shows_the_ledger_figures(scene: Scene):
    from bot.rules.credits import format_mc

    tune = await scene.ready_tune(scene.alice)
    await scene.alice.slash(scene.channel, "imagine", prompt="a", tune=str(tune.id), count=3)
    for _ in range(10):
        await scene.step(5)
    snapshot = await scene.bot.store.ledger.budget(scene.guild.id, scene.alice.id)
    spent = sum(e.amount_mc for e in await scene.bot.store.ledger.entries() if e.kind != "grant")
    assert snapshot.user_month.used_mc == spent  # the tune and the three images
    text = reply(await scene.alice.slash(scene.channel, "balance"))
    assert f"**You this month:** {format_mc(spent)} of" in text
    assert "0 training, 0 waiting, 0 generating" in text
    assert "Astria balance" not in text  # members do not see the account


async def test_balance_and_jobs_say_being_posted_once_astria_is_done(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    await scene.alice.slash(scene.channel, "imagine", prompt="a", tune=str(tune.id))
    text = reply(await scene.alice.slash(scene.channel, "balance"))
    assert "1 waiting, 0 generating" in text, text
    # Astria finishes; the end is recorded but not posted yet (a busy channel).
    for _ in range(10):
        await scene.emulator.advance(5)
        await scene.bot.tracker.poll_once(report=False)
    text = reply(await scene.alice.slash(scene.channel, "balance"))
    assert "0 waiting, 0 generating, 1 being posted" in text, text
    jobs = reply(await scene.alice.slash(scene.channel, "jobs"))
    assert "done, being posted" in jobs, jobs


async def test_jobs_lists_states_and_the_results_discord_refused(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    await scene.alice.slash(scene.channel, "imagine", prompt="kept for later", tune=str(tune.id))
    assert "kept for later (1): queued" in reply(await scene.alice.slash(scene.channel, "jobs"))
    scene.refuse_posts(scene.alice)
    for _ in range(20):  # the channel is tried three times (15 s, then 30 s apart), then a DM
        await scene.step(5)
    text = reply(await scene.alice.slash(scene.channel, "jobs"))
    assert "kept for later (1): undeliverable" in text and "/files/prompts/" in text
    assert "No jobs yet" in reply(await scene.bob.slash(scene.channel, "jobs"))


async def test_help_states_prices_and_this_servers_limits(scene: Scene):
    await scene.bot.store.guilds.set_user_daily_limit(scene.guild.id, 50_000)
    text = reply(await scene.alice.slash(scene.channel, "help"))
    assert "/tune create" in text and "/imagine" in text
    assert "a tune $1.50, an image $0.02" in text  # the paid test branch's prices
    assert "high resolution (2K) $0.03" in text and "Imagine from this image" in text
    assert len(text) <= 2000
    assert "you $0.50 a day" in text


async def test_tune_list_and_show_are_the_members_own(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    listed = reply(await scene.alice.slash(scene.channel, "tune list"))
    assert f"**{tune.name}** (man): ready" in listed
    assert "29 days before Astria deletes it" in listed or "30 days" in listed
    assert [
        c["value"] for c in await scene.alice.autocomplete(scene.channel, "tune show", "name", "")
    ] == [tune.name]
    shown = reply(await scene.alice.slash(scene.channel, "tune show", name=tune.name))
    assert "Prompts made with it: 0" in shown and "Trained <t:" in shown
    assert "No tunes yet" in reply(await scene.bob.slash(scene.channel, "tune list"))
    other = reply(await scene.bob.slash(scene.channel, "tune show", name=tune.name))
    assert "no tune by that name" in other


@pytest.mark.parametrize(
    "settings_overrides", [{"prompt_banned_words": "gore, blood bath", "prompt_max_length": 40}]
)
async def test_the_operators_banned_words_and_length_limit_apply(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    for text in ("a GORE scene", "a Blood  Bath at noon", "x" * 41):
        result = await scene.alice.slash(scene.channel, "imagine", prompt=text, tune=str(tune.id))
        assert "Queued" not in reply(result), text
    assert "40" in reply(
        await scene.alice.slash(scene.channel, "imagine", prompt="x" * 41, tune=str(tune.id))
    )
    fine = await scene.alice.slash(scene.channel, "imagine", prompt="a gorge", tune=str(tune.id))
    assert "Queued" in reply(fine)
    (prompt,) = await scene.bot.store.prompts.list_for(scene.alice.id)
    assert prompt.user_text == "a gorge"


async def test_a_channel_where_the_bot_cannot_attach_files_is_refused_up_front(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    locked = scene.guild.create_text_channel(
        "no-files",
        overwrites={scene.guild.default_role: discord.PermissionOverwrite(attach_files=False)},
    )
    result = await scene.alice.slash(locked, "imagine", prompt="a", tune=str(tune.id))
    assert "missing: Attach Files" in reply(result)
    form = await scene.alice.slash(locked, "tune create")
    assert form.modal is None and "missing: Attach Files" in reply(form)
    assert await scene.bot.store.prompts.list_for(scene.alice.id) == []


FLUX_BASE = 1504944


@pytest.mark.parametrize(
    "settings_overrides", [{"model_profile": "flux-lora", "astria_branch": "flux1"}]
)
async def test_negative_on_flux_is_refused_with_the_reason_and_nothing_is_sent(scene: Scene):
    tune = await scene.ready_tune(scene.alice, profile="flux-lora", branch="flux1")
    result = await scene.alice.slash(
        scene.channel, "imagine", prompt="on a beach", tune=str(tune.id), negative="blurry"
    )
    text = reply(result)
    assert "Flux" in text and "ignores negative prompts" in text and "Queued" not in text
    assert result.ephemeral or result.response.ephemeral
    assert await scene.bot.store.prompts.list_for(scene.alice.id) == []
    # Without it the same prompt goes to Flux's base tune behind the tune's LoRA tag.
    fine = await scene.alice.slash(scene.channel, "imagine", prompt="on a beach", tune=str(tune.id))
    assert "Queued" in reply(fine)
    await scene.step(1)
    (sent,) = scene.emulator.prompts_for(FLUX_BASE)
    assert sent["text"].startswith(f"<lora:{tune.astria_id}:1> ohwx man")
    assert not sent["negative_prompt"]


async def test_negative_on_sd15_reaches_astria_cleaned(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    result = await scene.alice.slash(
        scene.channel, "imagine", prompt="portrait", tune=str(tune.id), negative=" blurry,  text "
    )
    assert "Queued" in reply(result)
    await scene.step(1)
    (sent,) = scene.emulator.prompts_for(tune.astria_id or 0)
    assert sent["negative_prompt"] == "blurry, text"
