"""Shrinking a large result image runs in a worker thread: the event loop (every member's
commands) keeps ticking meanwhile."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from bot.offline.emulator import EmulatorConfig
from bot.store import PromptState
from bot.ui import delivery as delivery_module
from bot.ui.files import Limits, fit
from tests.bot.conftest import Scene
from tests.conftest import KEY

pytestmark = pytest.mark.simcord(strict_sync=False)


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(
        api_key=KEY, train_seconds=120, prompt_seconds=10, image_size=(2048, 2048)
    )


async def test_the_loop_keeps_ticking_while_a_large_image_is_shrunk(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
):
    fits: list[tuple[float, float]] = []  # (start, end) of each real fit

    def timed_fit(data: bytes, max_bytes: int) -> tuple[bytes, str]:
        start = time.perf_counter()
        try:
            return fit(data, max_bytes)
        finally:
            fits.append((start, time.perf_counter()))

    async def small_limit(channel_id: int | None) -> Limits:
        return Limits(per_file=20_000)  # a 2048x2048 image is shrunk to a quarter to fit

    monkeypatch.setattr(delivery_module, "fit", timed_fit)
    monkeypatch.setattr(scene.bot.delivery, "_file_limit", small_limit)
    tune = await scene.ready_tune(scene.alice)
    prompt = await scene.prompt(scene.alice, tune, images=1)
    ticks: list[float] = []

    async def heartbeat() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.005)

    beat = asyncio.create_task(heartbeat())
    try:
        for _ in range(12):
            record = await scene.bot.store.prompts.get(prompt.id)
            if record is not None and record.state == PromptState.DELIVERED:
                break
            await scene.step(5)
    finally:
        beat.cancel()
    record = await scene.bot.store.prompts.get(prompt.id)
    assert record is not None and record.state == PromptState.DELIVERED
    assert len(fits) == 1
    start, end = fits[0]
    during = [t for t in ticks if start < t < end]
    edges = [start, *during, end]
    stall = max(b - a for a, b in itertools.pairwise(edges))
    print(
        f"fit took {end - start:.3f}s; the loop ticked {len(during)} times meanwhile,"
        f" stalling at most {stall:.3f}s"
    )
    assert end - start > 0.05  # a real re-encode, not a pass-through
    assert len(during) >= 3 and stall < (end - start) / 2
    post = next(m for m in scene.channel.history() if m.attachments)
    assert post.attachments[0].filename.endswith(".jpg")
