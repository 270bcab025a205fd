"""/privacy erase and /admin erase through SimCord, the real store on a file and the
emulator over HTTP: after the erase nothing of the member is at Astria, no photo file is
left, no row of the database names them or holds their tune names and prompt texts, and
the ledger's sums are what they were."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import discord
import pytest
from simcord.backend.errors import SetupError

from bot.actions import Actor, Place, Refused, privacy
from bot.actions.door import ADMINS_ONLY, NOT_YOURS
from bot.actions.privacy import EVERYWHERE, EraseRequest
from bot.store import PromptRecord, PromptState, TuneRecord, TuneState
from bot.ui.buttons import erase_question_view
from tests.bot.conftest import Scene, reply
from tests.conftest import photo
from tests.jobs.conftest import IMAGE_MC, TUNE_MC

pytestmark = pytest.mark.simcord(strict_sync=False)

SECRET_TEXT = "alice private words"
SECRET_TUNE = "alicesecret"


@pytest.fixture
def boss(scene: Scene) -> Any:
    role = scene.guild.create_role("mods", permissions=discord.Permissions(manage_guild=True))
    return scene.guild.add_member(scene.env.create_user("boss"), roles=[role])


async def secret_prompt(scene: Scene, owner: Any, tune: TuneRecord) -> PromptRecord:
    created = await scene.bot.store.prompts.create(
        owner_id=owner.id,
        guild_id=scene.guild.id,
        channel_id=scene.channel.id,
        tune_id=tune.id,
        user_text=SECRET_TEXT,
        final_text=f"sks man {SECRET_TEXT}",
        num_images=1,
        price_mc=IMAGE_MC,
        target_tune_id=tune.astria_id or 0,
    )
    assert isinstance(created, PromptRecord), created
    return created


async def queued_tune(scene: Scene, owner: Any) -> tuple[TuneRecord, list[Path]]:
    paths = []
    for i in range(4):
        path = scene.photos / f"queued-{owner.id}-{i}.jpg"
        path.write_bytes(photo(i))
        paths.append(path)
    tune = await scene.bot.store.tunes.create(
        owner_id=owner.id,
        guild_id=scene.guild.id,
        channel_id=scene.channel.id,
        name=SECRET_TUNE,
        subject_class="man",
        profile="sd15-checkpoint",
        branch="fast",
        photo_paths=[str(p) for p in paths],
        price_mc=TUNE_MC,
        owner_name="alice",
    )
    assert isinstance(tune, TuneRecord), tune
    return tune, paths


async def world(scene: Scene) -> dict[str, Any]:
    """Alice: a ready tune with a delivered prompt, a queued prompt, a queued tune with its
    photos and a grant; Bob: a tune and a delivered prompt of his own."""
    alice, bob = scene.alice, scene.bob
    mine = await scene.ready_tune(alice)
    theirs = await scene.ready_tune(bob)
    delivered = await secret_prompt(scene, alice, mine)
    kept = await scene.prompt(bob, theirs)
    for _ in range(10):
        await scene.step(5)
    for done in (delivered, kept):
        record = await scene.bot.store.prompts.get(done.id)
        assert record is not None and record.state == PromptState.DELIVERED
    await scene.bot.store.ledger.grant(
        guild_id=scene.guild.id, user_id=alice.id, amount_mc=50_000, actor_id=bob.id
    )
    waiting = await secret_prompt(scene, alice, mine)
    later, photos = await queued_tune(scene, alice)
    return {
        "tune": mine,
        "bob_tune": theirs,
        "delivered": await scene.bot.store.prompts.get(delivered.id),
        "bob_prompt": await scene.bot.store.prompts.get(kept.id),
        "waiting": waiting,
        "queued_tune": later,
        "photos": photos,
    }


def ledger_rows(db: Path) -> list[tuple[Any, ...]]:
    """Every ledger row's money and kind, by id (not who: that is what goes)."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT id, kind, guild_id, job, amount_mc, cost_mc, reserve_id, period_at_ms"
            " FROM ledger ORDER BY id"
        ).fetchall()


def ledger_sum(rows: list[tuple[Any, ...]]) -> int:
    return sum(int(r[4]) for r in rows)


def ledger_kept(before: list[tuple[Any, ...]], after: list[tuple[Any, ...]], released: set[str]):
    """Every row before is there unchanged (so its sums are); the only new rows are the
    releases of the queued jobs the erase cancelled."""
    assert after[: len(before)] == before
    added = after[len(before) :]
    assert {(r[1], r[3]) for r in added} == {("release", job) for job in released}
    assert ledger_sum(after) == ledger_sum(before) + sum(int(r[4]) for r in added)


def rows_naming(db: Path, needles: list[str], user_id: int) -> list[str]:
    """Every cell of every table that holds the member's id or one of the needles."""
    found = []
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f"SELECT * FROM {table}"):
                for cell in row:
                    text = str(cell)
                    if cell == user_id or str(user_id) in text or any(n in text for n in needles):
                        found.append(f"{table}: {row}")
    return found


def said_last(result: Any) -> Any:
    """The message the member read last: a followup, or the deferred response."""
    return result.followups[-1] if result.followups else result.response


def posts_of(scene: Scene, prompt: PromptRecord) -> list[Any]:
    ids = set(prompt.result_message_ids)
    return [m for m in scene.channel.history() if m.id in ids]


async def test_a_member_erases_their_data_everywhere_after_a_restart(
    scene: Scene, make_bot: Any
) -> None:
    w = await world(scene)
    alice = scene.alice
    db = scene.bot.settings.database_path
    assert posts_of(scene, w["delivered"]) and posts_of(scene, w["bob_prompt"])
    assert rows_naming(db, [SECRET_TEXT, SECRET_TUNE], alice.id)  # the scan can fail
    before = ledger_rows(db)
    asked = await alice.slash(scene.channel, "privacy erase")
    question = said_last(asked)
    assert "cannot be undone" in question.content and question.ephemeral

    await scene.env.restart_bot(make_bot())  # the question still works
    done = await alice.click(question, label="Erase")
    said = reply(done)
    assert "Erased: 2 tunes and 2 prompts" in said, said

    # Nothing at Astria.
    assert scene.emulator.tunes_with_title(w["tune"].title) == []
    ids = {p["id"] for p in scene.emulator.our_prompts()}
    assert w["delivered"].astria_id not in ids
    # No photo file, no post, no row naming her; the ledger's sums unchanged.
    assert not any(p.exists() for p in w["photos"])
    assert not any(scene.photos.glob(f"*{alice.id}*"))
    assert posts_of(scene, w["delivered"]) == []
    assert rows_naming(db, [SECRET_TEXT, SECRET_TUNE], alice.id) == []
    ledger_kept(before, ledger_rows(db), {str(w["waiting"].job), str(w["queued_tune"].job)})
    # Bob's things are his still.
    assert scene.emulator.tunes_with_title(w["bob_tune"].title) != []
    assert w["bob_prompt"].astria_id in ids
    assert posts_of(scene, w["bob_prompt"])
    assert await scene.bot.store.tunes.list_for(alice.id) == []
    assert await scene.bot.store.prompts.list_for(alice.id) == []
    problems = await scene.bot.store.integrity_problems()
    assert problems == []


async def test_a_stranger_cannot_erase_another_member(scene: Scene, boss: Any) -> None:
    tune = await scene.ready_tune(scene.alice)
    bot = scene.bot
    channel = bot.get_channel(scene.channel.id)
    assert isinstance(channel, discord.TextChannel)
    for request in (
        EraseRequest(scene.alice.id, EVERYWHERE),
        EraseRequest(scene.alice.id, scene.guild.id),
    ):
        sent = await channel.send("erase?", view=erase_question_view(request))
        message = next(m for m in scene.channel.history() if m.id == sent.id)
        for stranger in (scene.bob, boss) if request.guild_id == EVERYWHERE else (scene.bob,):
            refused = await stranger.click(message, label="Erase")
            assert reply(refused) == NOT_YOURS
    with pytest.raises(SetupError, match="default-member-permissions"):
        await scene.bob.slash(scene.channel, "admin erase", member=scene.alice)
    refused = await privacy.ask_admin_erase(
        bot.services,
        Actor(scene.bob.id),
        Place(scene.guild.id, scene.channel.id),
        scene.alice.id,
        None,
    )
    assert refused == Refused(ADMINS_ONLY)
    current = await bot.store.tunes.get(tune.id)
    assert current is not None and current.state == TuneState.READY
    assert scene.emulator.tunes_with_title(tune.title) != []


async def test_an_admin_erases_a_member_who_left_and_a_running_job_holds_it(
    scene: Scene, boss: Any
) -> None:
    alice = scene.alice
    tune = await scene.ready_tune(alice)
    prompt = await secret_prompt(scene, alice, tune)
    await scene.step(1)  # submitted: generating at Astria
    running = await scene.bot.store.prompts.get(prompt.id)
    assert running is not None and running.state == PromptState.GENERATING
    scene.guild.remove_member(alice)  # she left the server
    db = scene.bot.settings.database_path

    asked = await boss.slash(scene.channel, "admin erase", user_id=str(alice.id))
    question = said_last(asked)
    assert "in this server" in question.content
    held = reply(await boss.click(question, label="Erase"))
    assert "Wait until it finishes" in held, held
    assert await scene.bot.store.tunes.list_for(alice.id) != []

    for _ in range(5):
        await scene.step(5)
    before = ledger_rows(db)
    asked = await boss.slash(scene.channel, "admin erase", user_id=str(alice.id))
    said = reply(await boss.click(said_last(asked), label="Erase"))
    assert "Erased: 1 tunes and 1 prompts" in said, said
    assert scene.emulator.tunes_with_title(tune.title) == []
    assert rows_naming(db, [SECRET_TEXT], alice.id) == []
    assert ledger_rows(db) == before
    bad = reply(await boss.slash(scene.channel, "admin erase", user_id="someone"))
    assert "numeric id" in bad
