"""The real bot process at start: it probes Astria's idempotency (the emulator over HTTP),
refuses a contradicting ASTRIA_IDEMPOTENCY in one line, and reuses its finding on a
restart within a day."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.offline.stage import Stage, StageOptions

TUNE_CREATE = "POST /tunes"


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[Stage]:
    async with Stage(StageOptions(folder=tmp_path / "stage", idempotency=False)) as stage:
        yield stage


async def run_bot_process(stage: Stage, **settings: str) -> tuple[int, str]:
    """`python -m bot run` with the stage's environment; its exit code and output."""
    env = {**stage.bot_env(), **settings}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=stage.folder,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(), 60.0)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError("the bot did not stop by itself") from None
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_a_contradicting_setting_stops_the_start_with_one_line(stage: Stage):
    code, err = await run_bot_process(stage, ASTRIA_IDEMPOTENCY="true")
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "ASTRIA_IDEMPOTENCY" in line]
    assert len(lines) == 1, err
    (line,) = lines
    assert line.startswith("ASTRIA_IDEMPOTENCY=true, but Astria's idempotency is off")
    assert "set ASTRIA_IDEMPOTENCY=auto or ASTRIA_IDEMPOTENCY=false" in line
    assert stage.emulator.counters[TUNE_CREATE] == 2
    assert stage.emulator.our_tunes() == []  # the probe cleaned up before refusing
    assert stage.fake.gateway.identifies == 0  # never went online


async def test_auto_starts_with_what_it_found_and_reuses_it_on_a_restart(stage: Stage):
    stage.options.bot_settings["ASTRIA_IDEMPOTENCY"] = "auto"
    await stage.start_bot()
    assert await stage.stop_bot() == 0
    assert stage.emulator.counters[TUNE_CREATE] == 2 and stage.emulator.our_tunes() == []
    async with await stage.open_store() as store:
        found = await store.meta.idempotency_probe()
    assert found is not None and found.on is False
    await stage.start_bot()
    assert await stage.stop_bot() == 0
    assert stage.emulator.counters[TUNE_CREATE] == 2  # the stored finding was reused
    log = stage.log_path().read_text()
    assert "idempotency off (ASTRIA_IDEMPOTENCY=auto, found off)" in log
