"""/tune create and "Train a tune from these photos" through SimCord: the form's shape, the
photos read at submit and checked, the whole path to images, and every refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.offline.emulator import EmulatorConfig
from bot.rules.credits import format_mc
from bot.store import PromptState, TuneRecord, TuneState
from bot.ui.forms import RESTARTED
from cogs.tunes import MENU_NAME
from tests.bot.conftest import Scene, reply
from tests.conftest import KEY, photo
from tests.jobs.conftest import TUNE_MC
from tests.test_photos import png_header_only
from tests.test_prepare import phone_jpeg

pytestmark = pytest.mark.simcord(strict_sync=False)
PRICE = format_mc(TUNE_MC)

# Discord's component types (discord.py's ComponentType values).
LABEL, TEXT_INPUT, STRING_SELECT, FILE_UPLOAD = 18, 4, 3, 19


def photos(count: int, first: int = 1) -> list[tuple[str, bytes]]:
    return [(f"IMG_{i}.jpg", photo(i, size=600)) for i in range(first, first + count)]


def fields(**kw: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"name": "me", "class": ["man"], "consent": ["yes"]}
    values.update(kw)
    return values


async def train(scene: Scene, member: Any, **kw: Any) -> tuple[Any, Any]:
    shown = await member.slash(scene.channel, "tune create")
    assert shown.modal is not None, reply(shown)
    submitted = await member.submit_modal(shown, fields(**kw))
    return shown, submitted


async def paid(scene: Scene) -> None:
    if await scene.bot.store.account.last_known() is None:
        await scene.bot.store.account.record_balance(scene.emulator.balance_mc)


async def until_ready(scene: Scene, tune_id: int) -> TuneRecord:
    for _ in range(30):
        tune = await scene.bot.store.tunes.get(tune_id)
        assert tune is not None
        if tune.state == TuneState.READY:
            return tune
        await scene.step(30)
    raise AssertionError("the tune never got ready")


def photo_files(root: Path) -> list[Path]:
    return list(root.glob("**/*.jpg")) + list(root.glob("**/*.png"))


async def test_the_form_has_discords_shape_and_the_price(scene: Scene):
    await paid(scene)
    shown = await scene.alice.slash(scene.channel, "tune create")
    modal = shown.modal
    assert modal is not None and not shown.deferred  # the form is the first response
    assert len(modal["title"]) <= 45 and PRICE in modal["title"]
    rows = modal["components"]
    assert len(rows) == 5 and all(row["type"] == LABEL for row in rows)
    inner = [row["component"] for row in rows]
    assert [c["type"] for c in inner] == [
        TEXT_INPUT,
        STRING_SELECT,
        STRING_SELECT,
        FILE_UPLOAD,
        FILE_UPLOAD,
    ]
    name, subject, consent, first, second = inner
    assert (name["min_length"], name["max_length"]) == (1, 32)
    assert {o["value"] for o in subject["options"]} >= {"man", "woman", "dog", "cat"}
    assert {o["value"] for o in consent["options"]} == {"yes", "no"}
    assert (first["min_values"], first["max_values"], first["required"]) == (4, 10, True)
    assert (second["min_values"], second["max_values"], second["required"]) == (0, 10, False)
    assert all(len(row["label"]) <= 45 for row in rows)
    assert all(len(row.get("description", "")) <= 100 for row in rows)
    assert PRICE in rows[3]["description"]


async def test_whole_path_form_to_images_then_reroll_after_a_restart(
    scene: Scene, make_bot: Any, tmp_path: Path
):
    await paid(scene)
    balance = scene.emulator.balance_mc
    _, submitted = await train(scene, scene.alice, photos1=photos(6))
    assert submitted.response.ephemeral
    assert f"Training **me** (man) from 6 photos ({PRICE})" in reply(submitted)
    (tune,) = await scene.bot.store.tunes.list_for(scene.alice.id)
    assert tune.state == TuneState.QUEUED and len(tune.photo_paths) == 6
    assert all(Path(p).is_file() for p in tune.photo_paths)  # read at submit, kept on disk
    ready = await until_ready(scene, tune.id)
    assert ready.astria_id is not None
    assert photo_files(tmp_path / "kept-photos") == []  # gone once Astria had them
    (astria_tune,) = scene.emulator.tunes_with_title(tune.title)
    assert len(astria_tune["orig_images"]) == 6
    result = await scene.alice.slash(
        scene.channel, "imagine", prompt="on a beach", tune=str(ready.id), count=2
    )
    assert "Queued 2 images" in reply(result)
    for _ in range(10):
        await scene.step(5)
    post = next(m for m in scene.channel.history() if m.attachments)
    assert len(post.attachments) == 2
    (prompt,) = await scene.bot.store.prompts.list_for(scene.alice.id)
    assert prompt.state == PromptState.DELIVERED

    await scene.env.restart_bot(make_bot())
    again = await scene.alice.click(post, custom_id=f"job:reroll:{prompt.id}")
    assert "Rerolling" in again.response.content
    for _ in range(10):
        await scene.step(5)
    prompts = await scene.bot.store.prompts.list_for(scene.alice.id)
    assert [p.state for p in prompts] == [PromptState.DELIVERED, PromptState.DELIVERED]
    spent = balance - scene.emulator.balance_mc
    assert spent == sum(c.cost_mc for c in scene.emulator.charges) > TUNE_MC


async def test_astria_gets_the_photos_upright_small_and_without_their_exif(scene: Scene):
    await paid(scene)
    sent = [(f"IMG_{n}.jpg", phone_jpeg((3000 + n, 2000))) for n in range(4)]
    _, submitted = await train(scene, scene.alice, photos1=sent)
    assert "Training **me** (man) from 4 photos" in reply(submitted)
    (tune,) = await scene.bot.store.tunes.list_for(scene.alice.id)
    await until_ready(scene, tune.id)
    received = scene.emulator.photos_received[tune.title]
    assert [f.metadata for f in received] == [()] * 4  # no EXIF, GPS, XMP, ICC or comment
    assert all(f.format == "JPEG" and f.height == 2048 > f.width for f in received)
    assert all(f.size < len(data) for f, (_, data) in zip(received, sent, strict=True))


async def test_refused_photos_are_named_with_reasons_and_nothing_is_kept(
    scene: Scene, tmp_path: Path
):
    await paid(scene)
    bad = [
        ("scan.png", b"%PDF-1.7 not a photo at all" * 10),
        ("thumb.jpg", photo(7, size=200)),
        ("copy.jpg", photo(1, size=600)),
        ("bomb.png", png_header_only(30_000, 30_000)),
    ]
    _, submitted = await train(scene, scene.alice, photos1=photos(3) + bad[:1], photos2=bad[1:])
    text = reply(submitted)
    assert text.startswith("Not started: 4 photos at least; 3 were usable"), text
    assert text.count("usable") == 1, text  # said once, then one line a refused photo
    assert "photo 4 (scan.png)" in text and "JPEG, PNG or WebP" in text
    assert "photo 5 (thumb.jpg): too small: at least 512 px" in text
    assert "photo 6 (copy.jpg): the same photo as photo 1" in text
    assert "photo 7 (bomb.png): too large" in text
    assert await scene.bot.store.tunes.list_for(scene.alice.id) == []
    assert photo_files(tmp_path / "kept-photos") == []
    assert await scene.bot.store.ledger.open_reservations() == []


async def test_heic_from_a_phone_gets_the_export_tip(scene: Scene):
    await paid(scene)
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200
    _, submitted = await train(scene, scene.alice, photos1=[*photos(3), ("IMG_9.HEIC", heic)])
    assert "export it as JPEG" in reply(submitted)


async def test_consent_no_and_a_taken_name_are_refused(scene: Scene):
    await paid(scene)
    _, refused = await train(scene, scene.alice, consent=["no"], photos1=photos(4))
    assert "of you, or of someone who agreed" in reply(refused)
    assert await scene.bot.store.tunes.list_for(scene.alice.id) == []
    _, first = await train(scene, scene.alice, name="Rex", photos1=photos(4))
    assert "Training **Rex**" in reply(first)
    _, second = await train(scene, scene.alice, name="  rex ", photos1=photos(4, first=10))
    assert "already have a tune named **rex**" in reply(second)
    assert len(await scene.bot.store.tunes.list_for(scene.alice.id)) == 1


async def test_over_budget_paused_and_banned_get_no_form(scene: Scene):
    await paid(scene)
    store = scene.bot.store
    await store.guilds.set_user_daily_limit(scene.guild.id, TUNE_MC - 1)
    poor = await scene.alice.slash(scene.channel, "tune create")
    assert poor.modal is None and poor.response.ephemeral
    assert "Not started" in reply(poor) and "your limit for today" in reply(poor)
    assert "/admin budget user" in reply(poor)  # who can raise it
    await store.guilds.set_user_daily_limit(scene.guild.id, None)
    await store.guilds.set_paused(scene.guild.id, True)
    paused = await scene.alice.slash(scene.channel, "tune create")
    assert paused.modal is None and "paused" in reply(paused)
    await store.guilds.set_paused(scene.guild.id, False)
    await store.guilds.ban(scene.guild.id, scene.bob.id, actor_id=scene.admin.id)
    banned = await scene.bob.slash(scene.channel, "tune create")
    assert banned.modal is None and "can't use the bot" in reply(banned)
    assert await store.ledger.open_reservations() == []


async def test_a_form_submitted_after_a_restart_is_answered(scene: Scene, make_bot: Any):
    await paid(scene)
    shown = await scene.alice.slash(scene.channel, "tune create")
    await scene.env.restart_bot(make_bot())
    submitted = await scene.alice.submit_modal(shown, fields(photos1=photos(4)))
    assert submitted.response.ephemeral and submitted.response.content == RESTARTED
    assert await scene.bot.store.tunes.list_for(scene.alice.id) == []


async def test_training_from_my_own_posted_photos(scene: Scene):
    await paid(scene)
    message = await scene.alice.send(scene.channel, "my photos", attachments=photos(5))
    shown = await scene.alice.context_menu(scene.channel, MENU_NAME, message)
    assert shown.modal is not None
    rows = shown.modal["components"]
    assert len(rows) == 3  # no upload fields: the photos are the message's
    assert "Uses the 5 photos of your message" in rows[2]["description"]
    submitted = await scene.alice.submit_modal(shown, fields(name="posted"))
    assert "from 5 photos" in reply(submitted)
    (tune,) = await scene.bot.store.tunes.list_for(scene.alice.id)
    assert tune.name == "posted" and len(tune.photo_paths) == 5


async def test_training_from_someone_elses_photos_is_refused(scene: Scene):
    await paid(scene)
    message = await scene.alice.send(scene.channel, "alice", attachments=photos(5))
    refused = await scene.bob.context_menu(scene.channel, MENU_NAME, message)
    assert refused.modal is None and refused.response.ephemeral
    assert "your own message" in reply(refused) and "consent" in reply(refused)
    few = await scene.bob.send(scene.channel, "bob", attachments=photos(2, first=20))
    too_few = await scene.bob.context_menu(scene.channel, MENU_NAME, few)
    assert too_few.modal is None and "needs 4 at least" in reply(too_few)
    assert await scene.bot.store.tunes.list_for(scene.bob.id) == []


async def test_tune_delete_asks_then_deletes_at_astria(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    assert tune.astria_id is not None
    choices = await scene.alice.autocomplete(scene.channel, "tune delete", "name", "")
    assert [c["value"] for c in choices] == ["me"]
    asked = await scene.alice.slash(scene.channel, "tune delete", name="me")
    question = asked.followups[-1] if asked.followups else asked.response
    assert "cannot be undone" in question.content
    kept = await scene.alice.click(question, label="Keep it")
    assert "Nothing was changed" in str(kept.response.content)
    current = await scene.bot.store.tunes.get(tune.id)
    assert current is not None and current.state == TuneState.READY
    asked = await scene.alice.slash(scene.channel, "tune delete", name="me")
    done = await scene.alice.click(asked.response, label="Delete")
    assert "Deleted **me** at Astria" in str(done.response.content), done.response.content
    current = await scene.bot.store.tunes.get(tune.id)
    assert current is not None and current.state == TuneState.DELETED
    assert scene.emulator.tunes_with_title(tune.title) == []
    gone = await scene.alice.slash(scene.channel, "tune delete", name="me")
    assert "no tune by that name" in reply(gone)


SMALL_UPLOADS = EmulatorConfig(
    api_key=KEY, train_seconds=120, prompt_seconds=10, image_size=(256, 256), max_upload_bytes=1000
)


@pytest.mark.parametrize("emulator_config", [SMALL_UPLOADS])
async def test_astria_refusing_the_tune_is_told_in_plain_words_and_released(scene: Scene):
    await paid(scene)
    _, submitted = await train(scene, scene.alice, photos1=photos(4))
    assert "Training **me**" in reply(submitted)
    (tune,) = await scene.bot.store.tunes.list_for(scene.alice.id)
    await scene.step(5, rounds=2)
    failed = await scene.bot.store.tunes.get(tune.id)
    assert failed is not None and failed.state == TuneState.FAILED
    told = next(m for m in scene.channel.history() if "Astria refused it" in m.content)
    assert "images" in told.content and "Traceback" not in told.content
    assert await scene.bot.store.ledger.open_reservations() == []
    assert scene.emulator.charges == []


async def test_commands_are_registered_once_not_on_every_start(scene: Scene, make_bot: Any):
    def registrations() -> int:
        return sum(
            1 for r in scene.env.http_requests if r.method == "PUT" and r.path.endswith("/commands")
        )

    assert registrations() == 1  # a new database: the commands were registered at start
    await scene.env.restart_bot(make_bot())
    assert registrations() == 1  # same commands, same database: not again
    names = {c.name for c in scene.bot.tree.get_commands()}
    assert {"tune", "imagine", "balance", "jobs", "help", "admin", MENU_NAME} <= names


async def test_the_delete_question_still_works_after_a_restart(scene: Scene, make_bot: Any):
    tune = await scene.ready_tune(scene.alice)
    asked = await scene.alice.slash(scene.channel, "tune delete", name="me")
    question = asked.followups[-1] if asked.followups else asked.response
    assert question.components  # Delete / Keep it
    await scene.env.restart_bot(make_bot())
    # A stranger cannot answer it; its owner still can, an hour later.
    await scene.env.advance_time(3600)
    done = await scene.alice.click(question, label="Delete")
    assert "Deleted **me** at Astria" in str(done.response.content), done.response.content
    current = await scene.bot.store.tunes.get(tune.id)
    assert current is not None and current.state == TuneState.DELETED


async def test_tune_delete_offers_only_tunes_it_can_delete(scene: Scene):
    ready = await scene.ready_tune(scene.alice)
    old = await scene.bot.store.tunes.create(
        owner_id=scene.alice.id,
        guild_id=ready.guild_id,
        channel_id=ready.channel_id,
        name="old",
        subject_class="man",
        profile=ready.profile,
        branch=ready.branch,
        photo_paths=[],
        price_mc=0,
    )
    assert isinstance(old, TuneRecord)
    await scene.bot.store.tunes.set_state(old.id, TuneState.FAILED)
    offered = await scene.alice.autocomplete(scene.channel, "tune delete", "name", "")
    assert [c["value"] for c in offered] == ["me"]
    shown = await scene.alice.autocomplete(scene.channel, "tune show", "name", "")
    assert sorted(c["value"] for c in shown) == ["me", "old"]
