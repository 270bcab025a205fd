"""Image-to-image from a member's picture, through the real `/imagine image:` option and
the message menu "Imagine from this image" with its form, under SimCord against the
emulator on a paid branch: Astria receives the picture's prepared bytes as a multipart
`input_image` with the strength as `denoising_strength`, the member sees the result once,
and the ledger equals the emulator's charge. A bad picture is refused with its reason and
costs nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from bot.actions.prompts import NO_IMAGE_FOR_STRENGTH, NO_READY_TUNE
from bot.offline.emulator.forms import Upload
from bot.rules.credits import format_mc
from bot.rules.tools import FROM_IMAGE_STRENGTH
from bot.store import PromptRecord
from cogs.imagine import MENU_NAME, NO_IMAGE
from tests.bot.conftest import Scene, reply
from tests.bot.test_tools import astria_prompt, finish, ledger_equals_charges, posts_of
from tests.conftest import photo

pytestmark = pytest.mark.simcord(strict_sync=False)

LABEL, TEXT_INPUT = 18, 4


def sent_image(scene: Scene, done: PromptRecord) -> Upload:
    upload = astria_prompt(scene, done).request.values["input_image"]
    assert isinstance(upload, Upload) and upload.valid
    return upload


def kept_files(scene: Scene) -> list[Path]:
    folder = scene.bot.settings.photos_dir
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


async def test_imagine_with_an_image_sends_its_prepared_bytes(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    result = await scene.alice.slash(
        scene.channel,
        "imagine",
        prompt="as a watercolour",
        tune=str(tune.id),
        count=2,
        image=("holiday.jpg", photo(3, size=900)),
        strength=0.4,
    )
    price = 2 * scene.bot.settings.image_price_mc[tune.branch]
    text = reply(result)
    assert "from your image (strength 0.4)" in text and f"({format_mc(price)})" in text
    (job,) = await scene.bot.store.prompts.list_for(scene.alice.id)
    path = job.options.input_image_path
    assert path is not None and Path(path).is_file()  # read at submit, kept until sent
    kept = Path(path).read_bytes()
    done = await finish(scene, job)
    upload = sent_image(scene, done)
    assert upload.sha256 == hashlib.sha256(kept).hexdigest()  # the bytes, not a link
    assert upload.facts is not None and (upload.facts.width, upload.facts.height) == (900, 900)
    assert upload.facts.metadata == ()
    sent = astria_prompt(scene, done).request.values
    assert sent["denoising_strength"] == pytest.approx(0.4)
    assert sent["input_image_url"] is None and sent["num_images"] == 2
    assert len(posts_of(scene, done.id)) == 1
    charge = sum(c.cost_mc for c in scene.emulator.charges if c.object_id == done.astria_id)
    assert done.cost_mc == charge == price
    await ledger_equals_charges(scene)
    # Once Astria has it the sweep may take it; nothing else keeps it.
    assert await scene.bot.store.prompts.inputs_in_use() == frozenset()


async def test_the_menu_opens_the_form_on_anyones_image(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    posted = await scene.bob.send(
        scene.channel, "my cat", attachments=[("cat.png", photo(7, size=700, fmt="PNG"))]
    )
    shown = await scene.alice.context_menu(scene.channel, MENU_NAME, posted)
    modal = shown.modal
    assert modal is not None and not shown.deferred  # the form is the first response
    price = scene.bot.settings.image_price_mc[tune.branch]
    assert format_mc(price) in modal["title"] and len(modal["title"]) <= 45
    rows = modal["components"]
    assert [r["type"] for r in rows] == [LABEL] * 4
    assert [r["component"]["custom_id"] for r in rows] == ["prompt", "tune", "count", "strength"]
    assert rows[1]["component"]["placeholder"] == tune.name  # empty: her newest tune
    submitted = await scene.alice.submit_modal(
        shown, {"prompt": "in a space suit", "tune": "", "count": "3", "strength": ""}
    )
    assert "Queued 3 images" in reply(submitted) and submitted.response.ephemeral
    (job,) = await scene.bot.store.prompts.list_for(scene.alice.id)
    assert job.tune_id == tune.id and job.options.denoising_strength == FROM_IMAGE_STRENGTH
    done = await finish(scene, job)
    upload = sent_image(scene, done)
    assert upload.facts is not None and upload.facts.format == "PNG"
    sent = astria_prompt(scene, done).request.values
    assert sent["denoising_strength"] == pytest.approx(FROM_IMAGE_STRENGTH)
    assert sent["num_images"] == 3 and sent["text"].endswith("in a space suit")
    assert len(posts_of(scene, done.id)) == 1
    await ledger_equals_charges(scene)


async def test_the_form_takes_a_tune_by_name_and_a_strength(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    posted = await scene.alice.send(scene.channel, "me", attachments=[("a.jpg", photo(1))])
    shown = await scene.alice.context_menu(scene.channel, MENU_NAME, posted)
    bad = await scene.alice.submit_modal(
        shown, {"prompt": "x", "tune": tune.name.upper(), "count": "", "strength": "lots"}
    )
    assert "Strength: type a number" in reply(bad)
    shown = await scene.alice.context_menu(scene.channel, MENU_NAME, posted)
    submitted = await scene.alice.submit_modal(
        shown, {"prompt": "x", "tune": tune.name.upper(), "count": "", "strength": "0,3"}
    )
    assert "Queued 1 image" in reply(submitted)
    (job,) = await scene.bot.store.prompts.list_for(scene.alice.id)
    assert job.tune_id == tune.id and job.options.denoising_strength == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("notes.jpg", b"these are not pixels" * 10, "not a JPEG, PNG or WebP photo"),
        ("tiny.jpg", photo(2, size=300), "too small: at least 512 px"),
        ("huge.jpg", b"\xff\xd8\xff" + b"\0" * (11 * 1024 * 1024), "too big: 10 MB at most"),
    ],
)
async def test_a_bad_image_is_refused_with_its_reason_and_costs_nothing(
    scene: Scene, name: str, data: bytes, reason: str
):
    tune = await scene.ready_tune(scene.alice)
    entries = len(await scene.bot.store.ledger.entries())
    result = await scene.alice.slash(
        scene.channel, "imagine", prompt="a", tune=str(tune.id), image=(name, data)
    )
    text = reply(result)
    assert text.startswith("Not queued: the image (") and reason in text, text
    assert result.ephemeral or result.response.ephemeral
    assert await scene.bot.store.prompts.list_for(scene.alice.id) == []
    assert len(await scene.bot.store.ledger.entries()) == entries  # nothing reserved
    assert kept_files(scene) == []  # and nothing kept


async def test_a_budget_refusal_keeps_no_image(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    await scene.bot.store.guilds.set_user_daily_limit(scene.guild.id, 1_000)
    result = await scene.alice.slash(
        scene.channel, "imagine", prompt="a", tune=str(tune.id), image=("a.jpg", photo(4))
    )
    assert "Not queued" in reply(result)
    assert await scene.bot.store.prompts.list_for(scene.alice.id) == []
    assert kept_files(scene) == []


async def test_refusals_before_anything_is_read(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    alone = await scene.alice.slash(
        scene.channel, "imagine", prompt="a", tune=str(tune.id), strength=0.5
    )
    assert reply(alone) == NO_IMAGE_FOR_STRENGTH
    words = await scene.alice.send(scene.channel, "no picture here")
    assert reply(await scene.alice.context_menu(scene.channel, MENU_NAME, words)) == NO_IMAGE
    posted = await scene.alice.send(scene.channel, "me", attachments=[("a.jpg", photo(1))])
    no_tune: Any = await scene.bob.context_menu(scene.channel, MENU_NAME, posted)
    assert no_tune.modal is None and reply(no_tune) == NO_READY_TUNE
    assert await scene.bot.store.prompts.list_for(scene.alice.id) == []
