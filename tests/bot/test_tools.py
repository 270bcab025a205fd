"""Upscale, Vary (subtle, strong) and Edit prompt, pressed through the real buttons and
menu under SimCord, against the emulator over HTTP, on a paid branch: the request Astria
got carries the tool's fields, the member sees the result once, and the ledger equals
what the emulator charged."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from bot.actions import Actor, Place, Refused, tools
from bot.actions.tools import UPSCALED_ALREADY
from bot.offline.emulator.account import Prompt
from bot.rules.tools import UPSCALE_DENOISING, VARY_IMAGES, VARY_STRONG, VARY_SUBTLE
from bot.store import PromptRecord, PromptState
from tests.bot.conftest import Scene, reply

pytestmark = pytest.mark.simcord(strict_sync=False)

SIZE = 256  # the emulator's image size in these tests (tests/bot/conftest.py)


async def delivered(scene: Scene, images: int = 2) -> tuple[PromptRecord, Any]:
    tune = await scene.ready_tune(scene.alice)
    prompt = await scene.prompt(scene.alice, tune, images=images)
    for _ in range(10):
        await scene.step(5)
    post = next(m for m in scene.channel.history() if m.attachments)
    record = await scene.bot.store.prompts.get(prompt.id)
    assert record is not None and record.state == PromptState.DELIVERED
    assert len(record.image_urls) == images
    return record, post


async def newest(scene: Scene) -> PromptRecord:
    mine = await scene.bot.store.prompts.list_for(scene.alice.id)
    return max(mine, key=lambda p: p.id)


async def finish(scene: Scene, job: PromptRecord) -> PromptRecord:
    for _ in range(10):
        await scene.step(5)
    done = await scene.bot.store.prompts.get(job.id)
    assert done is not None and done.state == PromptState.DELIVERED, done
    return done


def astria_prompt(scene: Scene, record: PromptRecord) -> Prompt:
    assert record.astria_id is not None
    return scene.emulator.account.prompts[record.astria_id]


def posts_of(scene: Scene, job_id: int) -> list[Any]:
    """The channel's posts carrying this job's buttons (one per delivered result)."""
    return [
        m
        for m in scene.channel.history()
        if any(
            f":{job_id}" in (getattr(c, "custom_id", "") or "")
            for row in m.components
            for c in row.children
        )
    ]


async def ledger_equals_charges(scene: Scene) -> None:
    charged = sum(c.cost_mc for c in scene.emulator.charges)
    entries = await scene.bot.store.ledger.entries()
    assert await scene.bot.store.ledger.open_reservations() == []
    assert sum(e.amount_mc for e in entries if e.kind != "grant") == charged


async def test_upscale_sends_super_resolution_and_replies_at_full_size(scene: Scene, make_bot: Any):
    source, post = await delivered(scene)
    await scene.env.restart_bot(make_bot())  # the buttons still work
    pressed = await scene.alice.click(post, custom_id=f"job:upscale:{source.id}-1")
    assert pressed.response.ephemeral and "Upscaling image 2" in reply(pressed)
    job = await newest(scene)
    assert (job.tool, job.parent_id, job.image_index, job.num_images) == (
        "upscale",
        source.id,
        1,
        1,
    )
    assert job.seed != source.seed
    done = await finish(scene, job)

    sent = astria_prompt(scene, done).request.values
    assert sent["super_resolution"] is True
    assert sent["inpaint_faces"] is True  # a tune of a man: a face to repair
    assert sent["input_image_url"] == source.image_urls[1]
    assert sent["denoising_strength"] == pytest.approx(UPSCALE_DENOISING)
    assert sent["num_images"] == 1 and sent["text"] == source.final_text

    (result,) = posts_of(scene, done.id)
    assert "image 2 upscaled" in result.content
    assert result.reference is not None and result.reference.message_id == post.id
    (attachment,) = result.attachments
    with Image.open(io.BytesIO(await attachment.read())) as image:
        assert image.size == (4 * SIZE, 4 * SIZE)  # not shrunk: it fits the limit
    ids = [c.custom_id for row in result.components for c in row.children]
    assert ids == [f"job:details:{done.id}", f"job:delete:{done.id}"]
    # Not offered, and refused if asked for anyway (an old or hand-made button).
    again = await tools.upscale(
        scene.bot.services,
        Actor(scene.alice.id),
        Place(scene.guild.id, scene.channel.id),
        done.id,
        0,
    )
    assert again == Refused(UPSCALED_ALREADY)
    # Settled at what Astria charged: the image and its super-resolution.
    charge = sum(c.cost_mc for c in scene.emulator.charges if c.object_id == done.astria_id)
    assert done.cost_mc == charge == scene.bot.settings.upscale_price_mc["sd15"]
    await ledger_equals_charges(scene)


@pytest.mark.parametrize(
    ("action", "strength"), [("vary-subtle", VARY_SUBTLE), ("vary-strong", VARY_STRONG)]
)
async def test_vary_starts_from_the_image_with_a_new_seed(
    scene: Scene, action: str, strength: float
):
    source, post = await delivered(scene)
    pressed = await scene.alice.click(post, custom_id=f"job:{action}:{source.id}-0")
    assert "variations of image 1" in reply(pressed)
    job = await newest(scene)
    assert job.tool == "vary" and job.seed != source.seed
    done = await finish(scene, job)
    sent = astria_prompt(scene, done).request.values
    assert sent["input_image_url"] == source.image_urls[0]
    assert sent["denoising_strength"] == pytest.approx(strength)
    assert sent["num_images"] == VARY_IMAGES
    assert not sent["super_resolution"] and not sent["inpaint_faces"]
    assert sent["seed"] == done.seed != source.seed
    (result,) = posts_of(scene, done.id)
    assert len(result.attachments) == VARY_IMAGES
    assert ("strong" if strength == VARY_STRONG else "subtle") in result.content
    await ledger_equals_charges(scene)


async def test_beyond_four_images_the_tools_are_one_select_menu(scene: Scene, make_bot: Any):
    source, post = await delivered(scene, images=6)
    await scene.env.restart_bot(make_bot())
    picked = await scene.alice.select(post, ["upscale:5"], custom_id=f"job:tools:{source.id}")
    assert "Upscaling image 6" in reply(picked)
    done = await finish(scene, await newest(scene))
    assert astria_prompt(scene, done).request.values["input_image_url"] == source.image_urls[5]
    assert len(posts_of(scene, done.id)) == 1
    await ledger_equals_charges(scene)


async def test_strangers_cannot_use_the_tools_and_nothing_is_charged(scene: Scene):
    source, post = await delivered(scene)
    before = len(await scene.bot.store.ledger.entries())
    for custom_id in (f"job:upscale:{source.id}-0", f"job:vary-strong:{source.id}-1"):
        refused = await scene.bob.click(post, custom_id=custom_id)
        assert refused.response.ephemeral and "Only the member" in reply(refused)
    edit = await scene.bob.click(post, custom_id=f"job:edit:{source.id}")
    assert edit.modal is None and "Only the member" in reply(edit)
    assert len(await scene.bot.store.ledger.entries()) == before


async def test_edit_opens_the_prompt_filled_in_and_queues_the_new_one(scene: Scene, make_bot: Any):
    source, post = await delivered(scene)
    await scene.env.restart_bot(make_bot())
    shown = await scene.alice.click(post, custom_id=f"job:edit:{source.id}")
    modal = shown.modal
    assert modal is not None
    fields = {
        row["component"]["custom_id"]: row["component"].get("value") for row in modal["components"]
    }
    assert fields == {"prompt": "on a beach", "negative": None}  # SD 1.5 reads negatives
    submitted = await scene.alice.submit_modal(
        shown, {"prompt": "in a forest at dusk", "negative": "blurry"}
    )
    assert "Queued 2 images" in reply(submitted)
    job = await newest(scene)
    assert (job.tool, job.parent_id, job.tune_id) == ("edit", source.id, source.tune_id)
    done = await finish(scene, job)
    sent = astria_prompt(scene, done).request.values
    assert sent["text"] == "sks man in a forest at dusk"
    assert sent["negative_prompt"] == "blurry"
    assert not sent["input_image_url"]
    assert len(posts_of(scene, done.id)) == 1
    await ledger_equals_charges(scene)


FLUX = {
    "astria_branch": "flux1",
    "model_profile": "flux-lora",
    "tune_price_mc": {"flux1": 150_000},
    "image_price_mc": {"flux1": 3_000},
}


@pytest.mark.parametrize("settings_overrides", [FLUX])
async def test_edit_on_flux_has_no_negative_field(scene: Scene):
    tune = await scene.ready_tune(scene.alice, profile="flux-lora", branch="flux1")
    created = await scene.bot.store.prompts.create(
        owner_id=scene.alice.id,
        guild_id=scene.guild.id,
        channel_id=scene.channel.id,
        tune_id=tune.id,
        user_text="on a beach",
        final_text=f"<lora:{tune.astria_id}:1> ohwx man on a beach",
        num_images=1,
        price_mc=3_000,
        target_tune_id=scene.bot.settings.flux_base_tune_id,
    )
    assert isinstance(created, PromptRecord)
    for _ in range(10):
        await scene.step(5)
    post = next(m for m in scene.channel.history() if m.attachments)
    shown = await scene.alice.click(post, custom_id=f"job:edit:{created.id}")
    assert shown.modal is not None
    ids = [row["component"]["custom_id"] for row in shown.modal["components"]]
    assert ids == ["prompt"]
    # Upscale on Flux goes to the base tune with the LoRA tag, like the prompt did.
    await scene.alice.click(post, custom_id=f"job:upscale:{created.id}-0")
    done = await finish(scene, await newest(scene))
    prompt = astria_prompt(scene, done)
    assert prompt.tune_id == scene.bot.settings.flux_base_tune_id
    assert prompt.request.values["super_resolution"] is True
    await ledger_equals_charges(scene)


async def test_details_say_which_tool_made_it(scene: Scene):
    source, post = await delivered(scene)
    await scene.alice.click(post, custom_id=f"job:vary-subtle:{source.id}-1")
    done = await finish(scene, await newest(scene))
    (result,) = posts_of(scene, done.id)
    shown = await scene.alice.click(result, custom_id=f"job:details:{done.id}")
    assert f"**Made by:** Vary of image 2 (denoising {VARY_SUBTLE})" in reply(shown)


async def test_an_upscale_over_the_budget_is_refused_and_costs_nothing(scene: Scene):
    source, post = await delivered(scene)
    spent = sum(e.amount_mc for e in await scene.bot.store.ledger.entries())
    upscale = scene.bot.settings.upscale_price_mc["sd15"]
    # Room for one more image, not for an upscale (two images' worth by default).
    await scene.bot.store.guilds.set_user_daily_limit(scene.guild.id, spent + upscale - 1)
    before = len(await scene.bot.store.ledger.entries())
    refused = await scene.alice.click(post, custom_id=f"job:upscale:{source.id}-0")
    assert "Not queued" in reply(refused)
    assert len(await scene.bot.store.ledger.entries()) == before
    varied = await scene.alice.click(post, custom_id=f"job:vary-subtle:{source.id}-0")
    assert "Not queued" in reply(varied)  # four images are over it too
    assert len(await scene.bot.store.prompts.list_for(scene.alice.id)) == 1


async def test_an_edit_form_left_open_across_a_restart_is_answered(scene: Scene, make_bot: Any):
    source, post = await delivered(scene)
    shown = await scene.alice.click(post, custom_id=f"job:edit:{source.id}")
    assert shown.modal is not None
    await scene.env.restart_bot(make_bot())
    late = await scene.alice.submit_modal(shown, {"prompt": "in the snow"})
    assert "restarted" in reply(late)
    assert len(await scene.bot.store.prompts.list_for(scene.alice.id)) == 1
