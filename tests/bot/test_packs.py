"""/pack list and /pack run through SimCord with the real cogs, store, tracker and the
emulator: the price for the member's class, pages, the cache, one reservation, each
prompt of the pack delivered once, and the ledger equal to Astria's charges under every
billing reading."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bot.actions import packs
from bot.offline.emulator import READINGS, EmulatorConfig
from bot.store import PromptState
from tests.bot.conftest import Scene, reply
from tests.conftest import KEY

pytestmark = pytest.mark.simcord(strict_sync=False)


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    packs.CACHE.clear()
    yield
    packs.CACHE.clear()


@pytest.fixture(params=sorted(READINGS))
def reading(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def emulator_config(reading: str) -> EmulatorConfig:
    config = EmulatorConfig(api_key=KEY, train_seconds=120, prompt_seconds=10, image_size=(64, 64))
    return READINGS[reading].apply(config)


@pytest.fixture
def settings_overrides(reading: str) -> dict[str, Any]:
    return {"astria_refunds_failed_prompts": READINGS[reading].refund_failed_prompts}


def _attachments(scene: Scene) -> list[str]:
    return [a.filename for m in scene.channel.history() for a in m.attachments]


async def _charged(scene: Scene, since: int) -> int:
    return sum(c.cost_mc for c in scene.emulator.charges[since:])


async def _ledger_spend(scene: Scene) -> int:
    entries = await scene.bot.store.ledger.entries()
    return sum(e.amount_mc for e in entries if e.kind != "grant")


async def test_pack_list_prices_for_the_members_class_pages_and_caches(
    scene: Scene, monkeypatch: pytest.MonkeyPatch, reading: str
) -> None:
    if reading != "ours":
        pytest.skip("the listing does not depend on billing")
    # Without a ready tune: the classes each pack is made for, no price.
    none_yet = reply(await scene.bob.slash(scene.channel, "pack list"))
    assert "**Corporate Headshots**: for man, woman" in none_yet, none_yet
    await scene.ready_tune(scene.alice)  # a man
    monkeypatch.setattr(packs, "PAGE_SIZE", 2)
    result = await scene.alice.slash(scene.channel, "pack list")
    text = reply(result)
    assert "prices for a man" in text
    assert "**Corporate Headshots**: $0.60, 6 images" in text
    assert "**Fantasy Worlds**: $0.90, 6 images" in text
    assert "Pet Portraits" not in text and "Page 1 of 2" in text
    message = result.followups[-1] if result.followups else result.response
    after = await scene.alice.click(message, label="Next")
    shown = reply(after)
    assert "Pet Portraits" in shown and "for cat, dog" in shown, shown
    assert "Page 2 of 2" in shown
    assert packs.CACHE.reads == 1  # the page flip asked Astria nothing
    assert scene.emulator.counters["GET /packs"] == 1
    choices = await scene.alice.autocomplete(scene.channel, "pack run", "pack", "fan")
    assert choices == [{"name": "Fantasy Worlds ($0.90)", "value": "262"}]


async def test_pack_list_pages_turn_after_a_restart(
    scene: Scene, make_bot: Any, monkeypatch: pytest.MonkeyPatch, reading: str
) -> None:
    if reading != "ours":
        pytest.skip("the listing does not depend on billing")
    await scene.ready_tune(scene.alice)
    monkeypatch.setattr(packs, "PAGE_SIZE", 2)
    result = await scene.alice.slash(scene.channel, "pack list")
    message = result.followups[-1] if result.followups else result.response
    assert "Page 1 of 2" in reply(result)
    await scene.env.restart_bot(make_bot())  # the page's view is gone with the old process
    turned = await scene.alice.click(message, custom_id="pack:page:1")
    shown = reply(turned)
    assert "Pet Portraits" in shown and "Page 2 of 2" in shown, shown
    back = await scene.alice.click(message, custom_id="pack:page:0")
    assert "Page 1 of 2" in reply(back) and "Fantasy Worlds" in reply(back)


async def test_pack_run_delivers_each_prompt_once_and_the_ledger_is_the_charge(
    scene: Scene, reading: str
) -> None:
    tune = await scene.ready_tune(scene.alice)
    before = len(scene.emulator.charges)
    spent_before = await _ledger_spend(scene)
    result = await scene.alice.slash(scene.channel, "pack run", pack="262", tune=str(tune.id))
    text = reply(result)
    assert "Queued the pack **Fantasy Worlds**" in text and "$0.90" in text, text
    (run,) = await scene.bot.store.prompts.list_for(scene.alice.id)
    reservation = await scene.bot.store.ledger.reservation(run.job)
    assert reservation is not None and reservation.amount_mc == 90_001  # one, for the pack
    await scene.step(1)
    assert scene.emulator.pack_requests == [
        {
            "pack_id": 262,
            "tune_ids": [tune.astria_id],
            "callback": None,
            "raw": {"tune_ids": [tune.astria_id]},
        }
    ]
    made = scene.emulator.prompts_for(tune.astria_id or 0)
    assert len(made) == 3 and {p["pack_id"] for p in made} == {262}
    scene.emulator.fail_prompt(made[1]["id"], "the pack prompt failed")
    for _ in range(8):
        await scene.step(5)
    items = await scene.bot.store.packs.items(run.id)
    assert sorted(i.astria_id or 0 for i in items) == sorted(p["id"] for p in made)
    assert [i.state for i in items] == [
        PromptState.DELIVERED,
        PromptState.FAILED,
        PromptState.DELIVERED,
    ]
    # Each image of the two prompts that made some, posted once.
    names = _attachments(scene)
    assert len(names) == 2 + 3, names
    for item in items:
        posted = [
            m for m in scene.channel.history() if m.attachments and m.id in item.result_message_ids
        ]
        assert len(posted) == (0 if item.state == PromptState.FAILED else 1)
    # Reroll under a pack's result is refused in words (the pack is what runs again).
    post = next(m for m in scene.channel.history() if m.id in items[0].result_message_ids)
    again = await scene.alice.click(post, custom_id=f"job:reroll:{items[0].id}")
    assert "run the pack again" in reply(again)
    # The run's own status message says the pack is on, then that it is done.
    statuses = [m.content for m in scene.channel.history() if "📦" in (m.content or "")]
    assert len(statuses) == 1 and "The pack is done" in statuses[0], statuses
    ended = await scene.bot.store.prompts.get(run.id)
    assert ended is not None and ended.state == PromptState.DELIVERED
    assert await scene.bot.store.ledger.audit() == []
    # The ledger (member's settles plus what Astria kept, booked as the operator's cost)
    # equals what Astria charged under this reading.
    assert await _ledger_spend(scene) - spent_before == await _charged(scene, before)
    member = sum(i.cost_mc or 0 for i in items if i.state == PromptState.DELIVERED)
    assert member == 60_001  # the member pays for the images they got


async def test_pack_run_refusals_are_clear_and_spend_nothing(scene: Scene, reading: str) -> None:
    if reading != "ours":
        pytest.skip("refusals do not depend on billing")
    tune = await scene.ready_tune(scene.alice)
    entries = len(await scene.bot.store.ledger.entries())
    cases = [
        (scene.alice, {"pack": "261", "tune": str(tune.id)}, "not made for a man"),
        (scene.alice, {"pack": "999", "tune": str(tune.id)}, "not in Astria's gallery"),
        (scene.bob, {"pack": "262", "tune": str(tune.id)}, "not yours"),
        (scene.alice, {"pack": "x", "tune": str(tune.id)}, "Pick a pack from the list"),
    ]
    for member, options, words in cases:
        result = await member.slash(scene.channel, "pack run", **options)
        assert words in reply(result), reply(result)
        assert result.ephemeral or result.response.ephemeral
    await scene.bot.store.guilds.set_paused(scene.guild.id, True)
    paused = await scene.alice.slash(scene.channel, "pack run", pack="262", tune=str(tune.id))
    assert "paused" in reply(paused)
    await scene.bot.store.guilds.set_paused(scene.guild.id, False)
    await scene.bot.store.guilds.set_user_daily_limit(scene.guild.id, 50_000)
    poor = await scene.alice.slash(scene.channel, "pack run", pack="262", tune=str(tune.id))
    assert "Not queued" in reply(poor) and "day" in reply(poor).lower()
    assert len(await scene.bot.store.ledger.entries()) == entries
    assert await scene.bot.store.prompts.list_for(scene.alice.id) == []
    assert scene.emulator.pack_requests == []


@pytest.mark.parametrize("fault", ["drop_after", "http_504_after"])
async def test_a_lost_pack_answer_is_adopted_never_posted_twice(
    scene: Scene, reading: str, fault: str
) -> None:
    if reading not in ("ours", "zeroed-not-refunded"):
        pytest.skip("one reading per billing time is enough here")
    from bot.offline.emulator import Fault

    tune = await scene.ready_tune(scene.alice)
    before = len(scene.emulator.charges)
    spent_before = await _ledger_spend(scene)
    scene.emulator.faults.script("POST /p/{pack_id}/tunes", Fault(fault))  # type: ignore[arg-type]
    await scene.alice.slash(scene.channel, "pack run", pack="260", tune=str(tune.id))
    for _ in range(40):
        await scene.step(5)
    # Astria made the pack once (the answer was lost); the bot adopted it, never re-posted.
    assert len(scene.emulator.pack_requests) == 1
    made = scene.emulator.prompts_for(tune.astria_id or 0)
    assert len(made) == 3
    run = min(await scene.bot.store.prompts.list_for(scene.alice.id), key=lambda p: p.id)
    items = await scene.bot.store.packs.items(run.id)
    assert sorted(i.astria_id or 0 for i in items) == sorted(p["id"] for p in made)
    assert {i.state for i in items} == {PromptState.DELIVERED}
    assert len(_attachments(scene)) == 6
    assert await scene.bot.store.ledger.audit() == []
    assert await _ledger_spend(scene) - spent_before == await _charged(scene, before) == 60_000


@pytest.mark.parametrize("method", ["packs.set_seen", "packs.adopt"])
async def test_a_store_failure_around_the_pack_post_neither_loses_nor_doubles_it(
    scene: Scene, monkeypatch: pytest.MonkeyPatch, reading: str, method: str
) -> None:
    """The write before the POST (the tune's prompts seen) or after it (the adoption)
    fails for good: the run stays `submitting` and its recovery lists the tune's prompts
    first, so the pack is made once and delivered once."""
    if reading != "ours":
        pytest.skip("one reading is enough here")
    from bot.jobs.tracker import STORE_TRIES
    from tests.jobs.faults import StoreFaults

    tune = await scene.ready_tune(scene.alice)
    before = len(scene.emulator.charges)
    spent_before = await _ledger_spend(scene)
    faults = StoreFaults(scene.bot.store, monkeypatch)
    faults.fail(method, times=STORE_TRIES)
    await scene.alice.slash(scene.channel, "pack run", pack="260", tune=str(tune.id))
    for _ in range(40):
        await scene.step(5)
    assert faults.raised[method] == STORE_TRIES
    assert len(scene.emulator.pack_requests) == 1, scene.emulator.pack_requests
    assert len(scene.emulator.prompts_for(tune.astria_id or 0)) == 3
    run = min(await scene.bot.store.prompts.list_for(scene.alice.id), key=lambda p: p.id)
    items = await scene.bot.store.packs.items(run.id)
    assert {i.state for i in items} == {PromptState.DELIVERED} and len(items) == 3
    assert len(_attachments(scene)) == 6
    assert await scene.bot.store.ledger.audit() == []
    assert await _ledger_spend(scene) - spent_before == await _charged(scene, before) == 60_000
