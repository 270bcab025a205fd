"""`/admin nsfw` through SimCord: in spoiler mode every result image posted outside an
age-restricted channel is a spoiler and plain inside one (a thread follows its parent); in
refuse mode /imagine, Reroll, Edit, Upscale and Vary are refused outside, charging
nothing, and allowed inside; a job queued before the switch is still delivered, as
spoilers. SimCord does not model Discord's channel `nsfw` flag, so a channel is marked on
the bot's own cache of it (what discord.py would hold after Discord sent the flag)."""

from __future__ import annotations

from typing import Any

import discord
import pytest

from bot.actions import door
from bot.store import PromptRecord, PromptState, TuneRecord
from tests.bot.conftest import Scene, reply

pytestmark = pytest.mark.simcord(strict_sync=False)


@pytest.fixture
def boss(scene: Scene) -> Any:
    role = scene.guild.create_role("mods", permissions=discord.Permissions(manage_guild=True))
    return scene.guild.add_member(scene.env.create_user("boss"), roles=[role])


def age_restrict(scene: Scene, channel: Any) -> None:
    cached = scene.bot.get_channel(channel.id)
    assert isinstance(cached, discord.TextChannel)
    cached.nsfw = True


async def thread_of(scene: Scene, channel: Any) -> Any:
    parent = scene.bot.get_channel(channel.id)
    assert isinstance(parent, discord.TextChannel)
    await parent.create_thread(name="a thread", type=discord.ChannelType.public_thread)
    (thread,) = channel.threads
    return thread


async def set_mode(scene: Scene, boss: Any, mode: str) -> str:
    return reply(await boss.slash(scene.channel, "admin nsfw", mode=mode))


async def imagine(scene: Scene, where: Any, tune: TuneRecord) -> Any:
    return await scene.alice.slash(where, "imagine", prompt="on a beach", tune=str(tune.id))


async def delivered(scene: Scene, where: Any) -> Any:
    """Run the jobs to their end; the newest result post in `where`."""
    for _ in range(10):
        await scene.step(5)
    return [m for m in where.history() if m.attachments or "/files/" in m.content][-1]


def spoilered(post: Any) -> list[bool]:
    return [a.filename.startswith("SPOILER_") for a in post.attachments]


async def counts(scene: Scene) -> tuple[int, int]:
    store = scene.bot.store
    prompts = await store.prompts.list_for(scene.alice.id, limit=1000)
    return len(prompts), len(await store.ledger.entries())


async def test_admin_nsfw_sets_the_mode_and_settings_show_it(scene: Scene, boss: Any):
    settings = reply(await boss.slash(scene.channel, "admin settings"))
    assert "**NSFW:** `show`" in settings and "/admin nsfw" in settings
    said = await set_mode(scene, boss, "spoiler")
    assert "spoiler" in said and "outside age-restricted channels" in said
    assert "**NSFW:** `spoiler`" in reply(await boss.slash(scene.channel, "admin settings"))
    assert "refused" in await set_mode(scene, boss, "refuse")
    assert (await scene.bot.store.guilds.get(scene.guild.id)).nsfw_mode == "refuse"


async def test_spoiler_mode_hides_results_outside_age_restricted_channels(scene: Scene, boss: Any):
    tune = await scene.ready_tune(scene.alice)
    adult = scene.guild.create_text_channel("after-dark")
    age_restrict(scene, adult)
    thread = await thread_of(scene, adult)

    await imagine(scene, scene.channel, tune)
    assert spoilered(await delivered(scene, scene.channel)) == [False]  # show: as now

    await set_mode(scene, boss, "spoiler")
    await imagine(scene, scene.channel, tune)
    assert spoilered(await delivered(scene, scene.channel)) == [True]
    await imagine(scene, adult, tune)
    assert spoilered(await delivered(scene, adult)) == [False]
    await imagine(scene, thread, tune)
    assert spoilered(await delivered(scene, thread)) == [False]  # its parent's flag

    # Reroll and the tools post their results the same way, under the first result.
    post = next(m for m in scene.channel.history() if m.attachments)
    first = min(await scene.bot.store.prompts.list_for(scene.alice.id), key=lambda p: p.id)
    for custom_id in (
        f"job:reroll:{first.id}",
        f"job:upscale:{first.id}-0",
        f"job:vary-subtle:{first.id}-0",
    ):
        pressed = await scene.alice.click(post, custom_id=custom_id)
        assert pressed.ephemeral and "$" in reply(pressed), reply(pressed)
        shown = spoilered(await delivered(scene, scene.channel))
        assert shown and all(shown), (custom_id, shown)


async def test_spoiler_mode_wraps_image_links(
    scene: Scene, boss: Any, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(scene.bot.delivery, "_post_links", True)
    tune = await scene.ready_tune(scene.alice)
    await set_mode(scene, boss, "spoiler")
    await scene.prompt(scene.alice, tune, images=2)
    post = await delivered(scene, scene.channel)
    assert not post.attachments
    links = [line for line in post.content.splitlines() if "/files/prompts/" in line]
    assert len(links) == 2 and all(x.startswith("||") and x.endswith("||") for x in links)


async def test_refuse_mode_refuses_every_image_entry_outside_and_charges_nothing(
    scene: Scene, boss: Any
):
    tune = await scene.ready_tune(scene.alice)
    await imagine(scene, scene.channel, tune)
    post = await delivered(scene, scene.channel)
    (source,) = await scene.bot.store.prompts.list_for(scene.alice.id)
    await set_mode(scene, boss, "refuse")
    before = await counts(scene)

    tried = {
        "/imagine": await imagine(scene, scene.channel, tune),
        "Reroll": await scene.alice.click(post, custom_id=f"job:reroll:{source.id}"),
        "Edit": await scene.alice.click(post, custom_id=f"job:edit:{source.id}"),
        "Upscale": await scene.alice.click(post, custom_id=f"job:upscale:{source.id}-0"),
        "Subtle": await scene.alice.click(post, custom_id=f"job:vary-subtle:{source.id}-0"),
        "Strong": await scene.alice.click(post, custom_id=f"job:vary-strong:{source.id}-0"),
    }
    for name, result in tried.items():
        assert result.modal is None, name
        assert result.ephemeral and door.AGE_RESTRICTED_ONLY in reply(result), name
    assert await counts(scene) == before  # no job, no ledger row

    # Inside an age-restricted channel (and its threads) the same is allowed.
    age_restrict(scene, scene.channel)
    assert "Queued" in reply(await imagine(scene, scene.channel, tune))
    rerolled = await scene.alice.click(post, custom_id=f"job:reroll:{source.id}")
    assert door.AGE_RESTRICTED_ONLY not in reply(rerolled) and "$" in reply(rerolled)
    upscaled = await scene.alice.click(post, custom_id=f"job:upscale:{source.id}-0")
    assert "Upscaling" in reply(upscaled)
    edit = await scene.alice.click(post, custom_id=f"job:edit:{source.id}")
    assert edit.modal is not None
    thread = await thread_of(scene, scene.channel)
    assert "Queued" in reply(await imagine(scene, thread, tune))
    assert (await counts(scene))[0] > before[0]


async def test_refuse_mode_names_the_allowed_channels(scene: Scene, boss: Any):
    tune = await scene.ready_tune(scene.alice)
    await scene.bot.store.guilds.allow_channel(scene.guild.id, scene.channel.id)
    await set_mode(scene, boss, "refuse")
    said = reply(await imagine(scene, scene.channel, tune))
    assert door.AGE_RESTRICTED_ONLY in said and f"<#{scene.channel.id}>" in said


async def test_a_job_queued_before_refuse_mode_is_delivered_as_spoilers(scene: Scene, boss: Any):
    tune = await scene.ready_tune(scene.alice)
    queued = reply(await imagine(scene, scene.channel, tune))
    assert "Queued" in queued
    await set_mode(scene, boss, "refuse")
    post = await delivered(scene, scene.channel)
    assert spoilered(post) == [True]
    (job,) = await scene.bot.store.prompts.list_for(scene.alice.id)
    assert isinstance(job, PromptRecord) and job.state == PromptState.DELIVERED


async def test_a_result_sent_by_dm_is_a_spoiler_outside_show_mode(scene: Scene, boss: Any):
    # A DM has no age restriction: a result that falls back to the member's DMs (the
    # channel refused it) is posted as spoilers, even from an age-restricted channel.
    tune = await scene.ready_tune(scene.alice)
    age_restrict(scene, scene.channel)
    await set_mode(scene, boss, "spoiler")
    await scene.prompt(scene.alice, tune, images=2)
    scene.env.inject_error(
        "POST",
        f"/channels/{scene.channel.id}/messages",
        status=404,
        code=10003,
        message="Unknown Channel",
        times=None,
    )
    post = await delivered(scene, scene.alice.user.dm_channel)
    assert spoilered(post) == [True, True]
