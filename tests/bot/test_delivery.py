"""Delivery through SimCord: status, results with buttons, exactly once, nowhere to post."""

from __future__ import annotations

from collections import Counter

import pytest

from bot.jobs import EventKind, JobEvent, Outcome
from bot.store import PromptState
from tests.bot.conftest import Scene

pytestmark = pytest.mark.simcord(strict_sync=False)


def button_ids(message: object) -> list[str]:
    return [
        child.custom_id
        for row in getattr(message, "components", [])
        for child in getattr(row, "children", [])
        if getattr(child, "custom_id", None)
    ]


async def test_status_then_images_as_files_with_buttons(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    prompt = await scene.prompt(scene.alice, tune, images=3)
    await scene.step(1)
    status = [m for m in scene.channel.history() if "generating" in m.content]
    assert len(status) == 1 and "<t:" in status[0].content
    for _ in range(10):
        await scene.step(5)
    posts = [m for m in scene.channel.history() if m.attachments]
    assert len(posts) == 1
    post = posts[0]
    assert f"<@{scene.alice.id}>" in post.content
    assert len(post.attachments) == 3
    assert all(data.startswith(b"\x89PNG") for data in [await a.read() for a in post.attachments])
    ids = button_ids(post)
    assert ids[:4] == [
        f"job:reroll:{prompt.id}",
        f"job:edit:{prompt.id}",
        f"job:details:{prompt.id}",
        f"job:delete:{prompt.id}",
    ]
    tools = ("upscale", "vary-subtle", "vary-strong")
    assert ids[4:] == [f"job:{t}:{prompt.id}-{i}" for t in tools for i in range(3)]
    record = await scene.bot.store.prompts.get(prompt.id)
    assert record is not None and record.state == PromptState.DELIVERED
    assert record.result_message_ids == (post.id,)
    # One message per job: the status is removed once the result is posted beside it.
    assert record.status_message_id is not None and record.status_message_id != post.id
    assert all(m.id != record.status_message_id for m in scene.channel.history())
    assert [m for m in scene.channel.history() if "generating" in m.content] == []
    for message in scene.channel.history():  # the channel as a member sees it (pytest -s)
        files = f"  [{len(message.attachments)} images]" if message.attachments else ""
        buttons = (
            "  " + " ".join(f"[{c}]" for c in button_ids(message)) if button_ids(message) else ""
        )
        print(f"{message.author.name}: {message.content}{files}{buttons}")


def done_event(scene: Scene, prompt_id: int, images: tuple[str, ...] = ()) -> JobEvent:
    return JobEvent(
        key=f"prompt:{prompt_id}:done",
        job=f"prompt:{prompt_id}",
        kind=EventKind.DONE,
        owner_id=scene.alice.id,
        guild_id=scene.guild.id,
        channel_id=scene.channel.id,
        images=images,
    )


async def test_a_repeated_key_posts_nothing_new(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    prompt = await scene.prompt(scene.alice, tune)
    event = done_event(scene, prompt.id)
    before = len(scene.channel.history())
    assert await scene.bot.delivery.report(event) == Outcome.DELIVERED
    assert await scene.bot.delivery.report(event) == Outcome.DELIVERED
    assert len(scene.channel.history()) == before + 1


async def test_a_post_left_unrecorded_by_a_crash_is_found_after_a_restart(
    scene: Scene, make_bot: object
):
    from bot.ui.buttons import result_view
    from bot.ui.text import result_text

    tune = await scene.ready_tune(scene.alice)
    prompt = await scene.prompt(scene.alice, tune)
    event = done_event(scene, prompt.id)
    # As a crash would leave it: the post is in the channel, nothing recorded about it.
    channel = scene.bot.get_channel(scene.channel.id)
    await channel.send(result_text(event), view=result_view(prompt.job))  # type: ignore[union-attr, arg-type]
    await scene.env.restart_bot(make_bot())  # type: ignore[operator]
    before = len(scene.channel.history())
    assert await scene.bot.delivery.report(event) == Outcome.DELIVERED
    assert len(scene.channel.history()) == before  # found by its marker, not posted again
    assert await scene.bot.store.events.messages(event.key) != {}


def result_posts(scene: Scene, channel_id: int) -> int:
    """Attempts to post a result in the channel (answered or refused)."""
    return sum(
        1
        for r in scene.env.http_requests
        if r.method == "POST"
        and r.path == f"/channels/{channel_id}/messages"
        and "here are your images" in str((r.json or {}).get("content", ""))
    )


async def step_until(scene: Scene, prompt_id: int, state: PromptState, *, rounds: int) -> int:
    for n in range(rounds):
        record = await scene.bot.store.prompts.get(prompt_id)
        assert record is not None
        if record.state == state:
            return n
        await scene.step(5)
    raise AssertionError(f"prompt {prompt_id} not {state} after {rounds} rounds")


async def test_deleted_channel_falls_back_to_dm_at_once(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    prompt = await scene.prompt(scene.alice, tune)
    scene.env.inject_error(
        "POST",
        f"/channels/{scene.channel.id}/messages",
        status=404,
        code=10003,
        message="Unknown Channel",
        times=None,
    )
    await step_until(scene, prompt.id, PromptState.DELIVERED, rounds=12)
    assert result_posts(scene, scene.channel.id) == 1  # gone for certain: tried once
    dm = scene.alice.user.dm_channel
    assert [m for m in dm.history() if f"<@{scene.alice.id}>" in m.content]


async def test_forbidden_channel_is_tried_three_times_then_the_result_goes_by_dm(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    prompt = await scene.prompt(scene.alice, tune)
    scene.env.inject_error(
        "POST",
        f"/channels/{scene.channel.id}/messages",
        status=403,
        code=50013,
        message="Missing Permissions",
        times=None,
    )
    await step_until(scene, prompt.id, PromptState.DELIVERED, rounds=40)
    await scene.step(60, rounds=5)
    assert result_posts(scene, scene.channel.id) == 3
    dm = scene.alice.user.dm_channel
    assert result_posts(scene, dm.id) == 1
    assert [m for m in dm.history() if m.attachments and f"<@{scene.alice.id}>" in m.content]


async def test_closed_channel_and_closed_dms_end_undeliverable_with_money_settled(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    prompt = await scene.prompt(scene.alice, tune)
    scene.refuse_posts(scene.alice)
    await step_until(scene, prompt.id, PromptState.UNDELIVERABLE, rounds=40)
    gets = image_gets(scene)
    await scene.step(60, rounds=10)  # ten minutes more: nothing tried or downloaded again
    assert image_gets(scene) == gets
    assert result_posts(scene, scene.channel.id) == 3
    assert result_posts(scene, scene.alice.user.dm_channel.id) == 1
    record = await scene.bot.store.prompts.get(prompt.id)
    assert record is not None and record.state == PromptState.UNDELIVERABLE
    assert len(record.image_urls) == 2  # the result is kept for /jobs
    assert await scene.bot.store.ledger.open_reservations() == []
    assert await settles(scene, prompt.id) == 1


def image_gets(scene: Scene) -> int:
    return scene.emulator.counters["GET /files/prompts/{id}/{n}.png"]


async def settles(scene: Scene, prompt_id: int) -> int:
    entries = await scene.bot.store.ledger.entries()
    return sum(1 for e in entries if e.kind == "settle" and str(e.job) == f"prompt:{prompt_id}")


async def test_an_image_that_cannot_be_shrunk_is_linked_once_not_downloaded_forever(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
):
    from bot.ui.files import Limits

    async def tiny_limit(channel_id: int | None) -> Limits:
        return Limits(per_file=100)  # no JPEG of a 256x256 image is this small

    monkeypatch.setattr(scene.bot.delivery, "_file_limit", tiny_limit)
    tune = await scene.ready_tune(scene.alice)
    prompt = await scene.prompt(scene.alice, tune, images=2)
    await step_until(scene, prompt.id, PromptState.DELIVERED, rounds=12)
    await scene.step(60, rounds=5)
    assert image_gets(scene) == 2  # each image downloaded once
    posts = [m for m in scene.channel.history() if "here are your images" in m.content]
    assert len(posts) == 1 and not posts[0].attachments
    record = await scene.bot.store.prompts.get(prompt.id)
    assert record is not None
    assert all(url in posts[0].content for url in record.image_urls)
    assert await settles(scene, prompt.id) == 1


async def test_progress_edits_are_coalesced_per_channel(scene: Scene):
    from bot.jobs import Progress

    tune = await scene.ready_tune(scene.alice)
    prompts = [await scene.prompt(scene.alice, tune) for _ in range(20)]
    before = Counter((r.method, r.path.split("/")[1]) for r in scene.env.http_requests)
    for round_ in range(10):  # ten position changes for each job, faster than Discord allows
        for p in prompts:
            await scene.bot.delivery.progress(
                Progress(
                    f"prompt:{p.id}",
                    "queued",
                    scene.alice.id,
                    scene.guild.id,
                    scene.channel.id,
                    queue_position=round_ + 1,
                )
            )
    await scene.bot.delivery.drain()
    after = Counter((r.method, r.path.split("/")[1]) for r in scene.env.http_requests)
    writes = (after - before)[("POST", "channels")] + (after - before)[("PATCH", "channels")]
    assert writes <= 2 * len(prompts), writes  # at most a post and an edit a job, not 10
    assert scene.bot.delivery.edits_coalesced > 0


async def test_eight_large_images_are_reencoded_and_split_to_fit(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
):
    from bot.ui.files import MULTIPART_SLACK, Limits

    per_file = 1_000  # below the emulator's 256x256 PNGs (about 2 KB): all re-encoded
    limits = Limits(per_file=per_file, per_request=MULTIPART_SLACK + 3 * per_file)

    async def small_limits(channel_id: int) -> Limits:
        return limits

    monkeypatch.setattr(scene.bot.delivery, "_file_limit", small_limits)
    tune = await scene.ready_tune(scene.alice)
    prompt = await scene.prompt(scene.alice, tune, images=8)
    for _ in range(10):
        await scene.step(5)
    posts = [m for m in scene.channel.history() if m.attachments]
    attachments = [a for m in posts for a in m.attachments]
    assert len(attachments) == 8 and len(posts) >= 3, [
        (m.content[:30], [(a.filename, a.size) for a in m.attachments]) for m in posts
    ]
    assert all(a.size <= per_file for a in attachments)
    assert all(a.filename.endswith(".jpg") for a in attachments)
    assert [bool(button_ids(m)) for m in posts] == [False] * (len(posts) - 1) + [True]
    record = await scene.bot.store.prompts.get(prompt.id)
    assert record is not None and set(record.result_message_ids) == {m.id for m in posts}


async def test_100_jobs_in_one_channel_post_once_each_with_few_edits(scene: Scene):
    tune = await scene.ready_tune(scene.alice)
    await scene.bot.store.tunes.set_shared(tune.id, True)
    members = [scene.guild.add_member(scene.env.create_user(f"m{n}")) for n in range(100)]
    prompts = [await scene.prompt(m, tune, images=1) for m in members]
    before = Counter((r.method, r.path) for r in scene.env.http_requests)
    for _ in range(20):
        await scene.step(5)
    sent = Counter((r.method, r.path) for r in scene.env.http_requests) - before
    channel_path = f"/channels/{scene.channel.id}/messages"
    posts = sent[("POST", channel_path)]
    edits = sum(n for (method, path), n in sent.items() if method == "PATCH")
    results = [m for m in scene.channel.history() if m.attachments]
    assert len(results) == 100
    states = {(await scene.bot.store.prompts.get(p.id)).state for p in prompts}  # type: ignore[union-attr]
    assert states == {PromptState.DELIVERED}
    # One result and one status message a job, and status edits only at milestones:
    # queued (50 wait behind the global cap) -> generating -> done.
    assert posts <= 2 * 100, posts
    assert edits <= 2 * 100, edits
    print(f"100 jobs in one channel: {posts} posts, {edits} edits")


async def test_links_instead_of_files_when_the_setting_says_so(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(scene.bot.delivery, "_post_links", True)
    tune = await scene.ready_tune(scene.alice)
    await scene.prompt(scene.alice, tune, images=2)
    for _ in range(10):
        await scene.step(5)
    post = next(m for m in scene.channel.history() if "here are your images" in m.content)
    assert not post.attachments and post.content.count("/files/prompts/") == 2
