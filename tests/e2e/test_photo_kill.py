"""kill -9 while a member's photos are being read, on the real bot process: the photos
already written belong to no record yet, and the restarted bot deletes them (the sweep at
start, past PHOTO_SWEEP_GRACE_SECONDS). A tune trained after the restart is untouched."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.offline.demo import demo_photo
from bot.offline.fakecord import FakeDiscordConfig
from bot.offline.stage import Stage, StageOptions
from bot.rules.intake import BATCH_PREFIX

GRACE_SECONDS = 1.0


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[Stage]:
    options = StageOptions(
        folder=tmp_path / "stage",
        train_seconds=2.0,
        # Each photo download waits: the kill lands between two photos of one form.
        # One download at a time: six photos take 3 s, so a loaded machine's late kill
        # still lands mid-intake.
        fake=FakeDiscordConfig(attachment_delay=0.5),
        bot_settings={
            "PHOTO_SWEEP_GRACE_SECONDS": str(GRACE_SECONDS),
            "MAX_CONCURRENT_DOWNLOADS": "1",
        },
    )
    async with Stage(options) as stage:
        yield stage


def photo_files(stage: Stage) -> list[Path]:
    folder = stage.folder / "photos"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


async def test_a_kill_during_intake_leaves_no_photo_after_the_restart(stage: Stage):
    alice = stage.members["alice"]
    await stage.start_bot()
    await stage.fake.wait_commands(30.0)

    shown = await stage.fake.slash(alice, stage.channel, "tune create")
    assert (await shown.response(10.0)).modal is not None
    photos = [(f"p{i}.jpg", demo_photo(i, size=600)) for i in range(6)]
    await stage.fake.submit_modal(
        alice,
        stage.channel,
        shown,
        {"name": "me", "class": ["man"], "consent": ["yes"], "photos1": photos},
    )
    written = await stage.wait_for(
        lambda: [p for p in photo_files(stage) if p.suffix == ".jpg"], "a first photo on disk"
    )
    await stage.kill_bot()
    left = photo_files(stage)
    assert written and left and all(p.parent.name.startswith(BATCH_PREFIX) for p in left)
    assert len([p for p in left if p.suffix == ".jpg"]) < len(photos)  # really mid-intake
    async with await stage.open_store() as store:
        assert await store.tunes.list_for(alice.id) == []  # no record names them
        assert await store.tunes.photos_in_use() == frozenset()

    # Past the grace, the restarted bot's first act is the sweep.
    await asyncio.sleep(GRACE_SECONDS + 0.2)
    await stage.start_bot()
    assert photo_files(stage) == []
    assert [p.name for p in (stage.folder / "photos").iterdir()] == []
    assert "removed" in stage.log_path().read_text() and "photos no tune refers to" in (
        stage.log_path().read_text()
    )

    # The bot still trains: a new form's photos are kept until Astria has the tune, and
    # the periodic sweep never takes them from under it.
    stage.fake.config.attachment_delay = 0.0
    assert "Training" in await stage.train(alice, "me", photos[:5])
    async with await stage.open_store() as store:
        (tune,) = await store.tunes.list_for(alice.id)
        kept = [Path(p) for p in tune.photo_paths]
        there = [p.exists() for p in kept]
        # The tracker forgets the record's paths before it deletes the files: paths still
        # listed after the look were on disk when looked at, unless something else (the
        # sweep) took them. Read before and after, so a create finishing in between (a
        # loaded machine) is not taken for the sweep.
        still = (await store.tunes.get(tune.id)).photo_paths  # type: ignore[union-attr]
    assert not still or all(there), (kept, there)
    await stage.wait_for(
        lambda: any("is ready" in m.content for m in stage.posts()), "the tune to be ready"
    )
    # Gone once Astria had them (deleted in the create's task, which a loaded machine can
    # finish after the ready post: waited for, not assumed).
    await stage.wait_for(lambda: not photo_files(stage), "the photos to be deleted", timeout=10)
    assert stat_mode(stage.folder / "photos") == 0o700
    assert stat_mode(stage.database) == 0o600
    assert await stage.stop_bot() == 0


def stat_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777
