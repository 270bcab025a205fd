"""`/imagine style:` and `quality:` through SimCord with the real cog, store, tracker and
emulator on a paid branch: the request Astria got carries the style and the resolution
fields, the price is said when it is queued, and the ledger equals the emulator's charge."""

from __future__ import annotations

import pytest

from bot.rules.credits import format_mc
from bot.store import PromptState
from tests.bot.conftest import Scene, reply
from tests.bot.test_tools import astria_prompt, finish, ledger_equals_charges, posts_of

pytestmark = pytest.mark.simcord(strict_sync=False)


@pytest.mark.parametrize(
    ("quality", "resolution", "super_resolution", "price_setting", "said"),
    [
        ("standard", None, False, "image_price_mc", ""),
        ("high", "2K", False, "high_resolution_price_mc", "high resolution (2K)"),
        ("super", None, True, "upscale_price_mc", "super-resolution (x4)"),
    ],
)
async def test_style_and_quality_reach_astria_at_their_price(
    scene: Scene,
    quality: str,
    resolution: str | None,
    super_resolution: bool,
    price_setting: str,
    said: str,
):
    tune = await scene.ready_tune(scene.alice)
    result = await scene.alice.slash(
        scene.channel,
        "imagine",
        prompt="on a beach",
        tune=str(tune.id),
        count=2,
        style="Comic book",
        quality=quality,
    )
    per_image = getattr(scene.bot.settings, price_setting)[tune.branch]
    text = reply(result)
    assert f"({format_mc(2 * per_image)})" in text and "style Comic book" in text
    assert said in text
    (job,) = await scene.bot.store.prompts.list_for(scene.alice.id)
    done = await finish(scene, job)
    sent = astria_prompt(scene, done).request.values
    assert sent["style"] == "Comic book"
    assert sent["resolution"] == resolution
    assert sent["super_resolution"] is super_resolution
    assert len(posts_of(scene, done.id)) == 1  # the member sees it once
    charge = sum(c.cost_mc for c in scene.emulator.charges if c.object_id == done.astria_id)
    assert done.cost_mc == charge == 2 * per_image  # the bot's default = the emulator's
    await ledger_equals_charges(scene)


async def test_a_quality_result_rerolls_at_the_same_price(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    await scene.alice.slash(
        scene.channel, "imagine", prompt="a", tune=str(tune.id), count=1, quality="high"
    )
    (job,) = await scene.bot.store.prompts.list_for(scene.alice.id)
    await finish(scene, job)
    post = next(m for m in scene.channel.history() if m.attachments)
    pressed = await scene.alice.click(post, custom_id=f"job:reroll:{job.id}")
    price = scene.bot.settings.high_resolution_price_mc[tune.branch]
    assert format_mc(price) in reply(pressed)
    again = max(await scene.bot.store.prompts.list_for(scene.alice.id), key=lambda p: p.id)
    done = await finish(scene, again)
    assert astria_prompt(scene, done).request.values["resolution"] == "2K"
    assert done.state == PromptState.DELIVERED
    await ledger_equals_charges(scene)
