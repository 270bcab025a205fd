"""Result and status buttons: they work after a restart, refuse strangers politely, and
always answer, even when their callback fails."""

from __future__ import annotations

from typing import Any

import discord
import pytest

from bot.actions.door import NOT_YOURS
from bot.jobs import EventKind
from bot.store import PromptRecord, PromptState
from bot.ui.base import SORRY
from bot.ui.forms import STALE_COMPONENT
from tests.bot.conftest import Scene

pytestmark = pytest.mark.simcord(strict_sync=False)


async def delivered(scene: Scene) -> tuple[PromptRecord, Any]:
    tune = await scene.ready_tune(scene.alice)
    prompt = await scene.prompt(scene.alice, tune)
    for _ in range(10):
        await scene.step(5)
    post = next(m for m in scene.channel.history() if m.attachments)
    record = await scene.bot.store.prompts.get(prompt.id)
    assert record is not None and record.state == PromptState.DELIVERED
    return record, post


async def test_details_after_a_restart_for_the_owner_only(scene: Scene, make_bot: Any):
    prompt, post = await delivered(scene)
    await scene.env.restart_bot(make_bot())
    shown = await scene.alice.click(post, custom_id=f"job:details:{prompt.id}")
    assert shown.response.ephemeral
    assert f"**Seed:** {prompt.seed}" in shown.response.content
    assert "on a beach" in shown.response.content
    refused = await scene.bob.click(post, custom_id=f"job:details:{prompt.id}")
    assert refused.response.ephemeral and refused.response.content == NOT_YOURS


async def test_reroll_queues_a_new_prompt_with_a_new_seed(scene: Scene, make_bot: Any):
    prompt, post = await delivered(scene)
    await scene.env.restart_bot(make_bot())
    answer = await scene.alice.click(post, custom_id=f"job:reroll:{prompt.id}")
    assert answer.response.ephemeral and "Rerolling" in answer.response.content
    mine = await scene.bot.store.prompts.list_for(scene.alice.id)
    newest = max(mine, key=lambda p: p.id)
    assert newest.id != prompt.id and newest.state == PromptState.QUEUED
    assert newest.final_text == prompt.final_text and newest.seed != prompt.seed
    refused = await scene.bob.click(post, custom_id=f"job:reroll:{prompt.id}")
    assert refused.response.content == NOT_YOURS
    for _ in range(10):
        await scene.step(5)
    assert len([m for m in scene.channel.history() if m.attachments]) == 2


async def test_delete_removes_the_post_and_the_prompt_at_astria(scene: Scene, make_bot: Any):
    prompt, post = await delivered(scene)
    await scene.env.restart_bot(make_bot())
    refused = await scene.bob.click(post, custom_id=f"job:delete:{prompt.id}")
    assert refused.response.content == NOT_YOURS
    done = await scene.alice.click(post, custom_id=f"job:delete:{prompt.id}")
    assert "Deleted" in (done.followups[-1].content if done.followups else done.response.content)
    assert not [m for m in scene.channel.history() if m.attachments]
    assert prompt.astria_id is not None
    assert all(p["id"] != prompt.astria_id for p in scene.emulator.prompts_for(prompt.tune_id))


async def test_cancel_on_a_queued_status_message(scene: Scene, make_bot: Any):
    scene.bot.tracker._config = scene.bot.tracker._config.__class__(
        **{**scene.bot.tracker._config.__dict__, "max_generating_per_member": 1}
    )
    tune = await scene.ready_tune(scene.alice)
    first = await scene.prompt(scene.alice, tune)
    second = await scene.prompt(scene.alice, tune)
    await scene.step(1)
    status = next(
        m
        for m in scene.channel.history()
        if f"job:cancel:prompt-{second.id}"
        in [c.custom_id for r in m.components for c in r.children]
    )
    await scene.env.restart_bot(make_bot())
    refused = await scene.bob.click(status, custom_id=f"job:cancel:prompt-{second.id}")
    assert "Only the member who started this can cancel it" in refused.response.content
    done = await scene.alice.click(status, custom_id=f"job:cancel:prompt-{second.id}")
    assert "Cancelled" in done.response.content
    record = await scene.bot.store.prompts.get(second.id)
    assert record is not None and record.state == PromptState.CANCELLED
    assert first.id != second.id


async def test_a_button_whose_callback_fails_still_answers(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
):
    prompt, post = await delivered(scene)

    async def broken(prompt_id: int) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(scene.bot.store.prompts, "get", broken)
    answer = await scene.alice.click(post, custom_id=f"job:details:{prompt.id}")
    assert answer.response.ephemeral and answer.response.content == SORRY
    assert EventKind.DONE  # the post itself was fine


async def test_a_button_no_handler_knows_is_answered_kindly(scene: Scene):
    # A message from an older version of the bot, with a button this one does not have.
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(label="Upscale", custom_id="job:retired:7"))
    channel = scene.bot.get_channel(scene.channel.id)
    sent = await channel.send("an old result", view=view)  # type: ignore[union-attr]
    view.stop()  # forgotten, as after a restart
    message = next(m for m in scene.channel.history() if m.id == sent.id)
    pressed = await scene.alice.click(message, custom_id="job:retired:7")
    assert pressed.response is not None and pressed.response.ephemeral
    assert pressed.response.content == STALE_COMPONENT


async def test_cancel_on_a_generating_status_message_stops_it_at_astria(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    prompt = await scene.prompt(scene.alice, tune)
    await scene.step(1)
    running = await scene.bot.store.prompts.get(prompt.id)
    assert running is not None and running.state == PromptState.GENERATING
    custom_id = f"job:cancel:prompt-{prompt.id}"
    status = next(
        m
        for m in scene.channel.history()
        if custom_id in [c.custom_id for r in m.components for c in r.children]
    )
    done = await scene.alice.click(status, custom_id=custom_id)
    assert "Stopped at Astria" in done.response.content, done.response.content
    assert done.response.ephemeral
    record = await scene.bot.store.prompts.get(prompt.id)
    assert record is not None and record.state == PromptState.CANCELLED
    assert all(
        p["id"] != running.astria_id for p in scene.emulator.prompts_for(tune.astria_id or 0)
    )
