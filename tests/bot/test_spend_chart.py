"""`/admin spend chart:` and `/balance chart:` through SimCord: each attaches a PNG drawn off
the event loop, with members named as the server shows them (or as their last tune stored
them), erased members as "erased", never an id when a name is known."""

from __future__ import annotations

import asyncio
import io
import threading
from typing import Any

import discord
import pytest
from PIL import Image

import bot.actions.reports as reports
from bot.report.spend_chart import HEIGHT, MEMBER_HEIGHT, WIDTH, render_spend_chart
from bot.rules.spending import ERASED_LABEL, SpendSummary
from bot.store import JobKind, JobRef, Reservation, TuneRecord
from tests.bot.conftest import Scene, reply
from tests.jobs.conftest import BRANCH, TUNE_MC

pytestmark = pytest.mark.simcord(strict_sync=False)


@pytest.fixture
def boss(scene: Scene) -> Any:
    role = scene.guild.create_role("mods", permissions=discord.Permissions(manage_guild=True))
    return scene.guild.add_member(scene.env.create_user("boss"), roles=[role])


class Spy:
    """Wraps the renderer: records what it drew and on which thread, and (in that thread)
    waits for the event loop to run a coroutine: that only finishes if the loop is free
    while the chart is drawn."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.drawn: list[SpendSummary] = []
        self.threads: list[int] = []
        self.loop_answered: list[bool] = []
        self.real = render_spend_chart

    def __call__(self, summary: SpendSummary) -> bytes:
        self.threads.append(threading.get_ident())

        async def ping() -> bool:
            return True

        pinged = asyncio.run_coroutine_threadsafe(ping(), self.loop)
        self.loop_answered.append(pinged.result(timeout=10))
        self.drawn.append(summary)
        return self.real(summary)


@pytest.fixture
async def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    spied = Spy(asyncio.get_running_loop())
    monkeypatch.setattr(reports, "render_spend_chart", spied)
    return spied


async def spend(scene: Scene, user_id: int, number: int, amount: int) -> None:
    store = scene.bot.store
    if await store.account.last_known() is None:
        await store.account.record_balance(scene.emulator.balance_mc)
    job = JobRef(JobKind.PROMPT, number)
    held = await store.ledger.reserve(
        guild_id=scene.guild.id, user_id=user_id, job=job, amount_mc=amount
    )
    assert isinstance(held, Reservation), held


def files_of(result: Any) -> list[discord.Attachment]:
    """What the member got attached: the completed defer's files and any followup's."""
    messages = [result.response, *result.followups]
    return [a for m in messages if m is not None for a in m.attachments]


async def png_of(result: Any) -> Image.Image:
    files = files_of(result)
    assert len(files) == 1, result
    assert files[0].filename.endswith(".png")
    image = Image.open(io.BytesIO(await files[0].read()))
    image.load()
    assert image.format == "PNG"
    return image


async def test_admin_spend_chart_attaches_a_png_naming_members_drawn_off_the_loop(
    scene: Scene, boss: Any, spy: Spy
):
    store = scene.bot.store
    carol = scene.guild.add_member(scene.env.create_user("carol", global_name="Carol"), nick="Caz")
    await spend(scene, scene.alice.id, 1, 30_000)
    await spend(scene, carol.id, 2, 60_000)
    # Someone Discord does not know here (they left): named as their last tune stored them.
    gone = 424242424242424242
    tune = await store.tunes.create(
        owner_id=gone,
        guild_id=scene.guild.id,
        channel_id=scene.channel.id,
        name="me",
        subject_class="man",
        profile="sd15-checkpoint",
        branch=BRANCH,
        photo_paths=[],
        price_mc=TUNE_MC,
        owner_name="Dora",
    )
    assert isinstance(tune, TuneRecord)
    erased = 777777777777777777
    await spend(scene, erased, 3, 9_000)
    await store.erasure.scrub(erased, guild_id=scene.guild.id)

    result = await boss.slash(scene.channel, "admin spend", chart=True)
    image = await png_of(result)
    assert image.size == (WIDTH, HEIGHT)
    assert len(image.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 50
    text = reply(result)
    assert f"<@{carol.id}>: $0.60" in text and "attached" in text  # the month's list stays
    (summary,) = spy.drawn
    assert summary.members == (
        ("Dora", TUNE_MC),
        ("Caz", 60_000),
        ("alice", 30_000),
        (ERASED_LABEL, 9_000),
    )
    labels = " ".join(label for label, _ in summary.members)
    for member_id in (scene.alice.id, carol.id, gone, erased):
        assert str(member_id) not in labels
    assert summary.per_day[-1] == summary.total_mc == TUNE_MC + 99_000
    assert spy.threads and spy.threads[0] != threading.get_ident()
    assert spy.loop_answered == [True]  # the loop ran while the chart was drawn


async def test_balance_chart_shows_the_members_own_last_30_days(scene: Scene, spy: Spy):
    await spend(scene, scene.alice.id, 1, 30_000)
    await spend(scene, scene.bob.id, 2, 60_000)
    result = await scene.alice.slash(scene.channel, "balance", chart=True)
    image = await png_of(result)
    assert image.size == (WIDTH, MEMBER_HEIGHT)
    assert "You today" in reply(result)
    (summary,) = spy.drawn
    assert summary.total_mc == 30_000 and not summary.members  # bob's spend is not in it
    assert "alice" in summary.title
    plain = await scene.alice.slash(scene.channel, "balance")
    assert not files_of(plain) and len(spy.drawn) == 1


async def test_a_chart_that_cannot_be_drawn_still_answers(
    scene: Scene, boss: Any, monkeypatch: pytest.MonkeyPatch
):
    def broken(summary: SpendSummary) -> bytes:
        raise RuntimeError("no fonts")

    monkeypatch.setattr(reports, "render_spend_chart", broken)
    result = await boss.slash(scene.channel, "admin spend", chart=True)
    assert reports.CHART_FAILED in reply(result)
    assert not files_of(result)
