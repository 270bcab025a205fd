"""Shared fixtures: the Astria emulator on 127.0.0.1 with a manual clock, and clients."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from PIL import Image
from pydantic import SecretStr

from bot.astria import AstriaClient, RetryPolicy
from bot.offline.emulator import Emulator, EmulatorConfig, ManualClock

KEY = "sd_test_key_d0n7_l3ak_7h15"


@dataclass
class FakeTime:
    """Sleeps that return at once but move a clock, and remember how long they were."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    def monotonic(self) -> float:
        return self.now


def photo(seed: int = 0, size: int = 600, fmt: str = "JPEG") -> bytes:
    image = Image.new("RGB", (size, size), (seed * 37 % 256, 90, 160))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(api_key=KEY, train_seconds=60.0, prompt_seconds=10.0)


@pytest.fixture
async def emulator(emulator_config: EmulatorConfig, clock: ManualClock) -> AsyncIterator[Emulator]:
    emu = Emulator(emulator_config, clock=clock)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


POLICY = RetryPolicy(base_delay=0.25, max_delay=10.0, max_attempts=4, lookup_wait=7.0, timeout=5.0)

MakeClient = Callable[..., AstriaClient]


@pytest.fixture
def make_client(
    emulator: Emulator, session: aiohttp.ClientSession, fake_time: FakeTime, clock: ManualClock
) -> MakeClient:
    def make(**overrides: Any) -> AstriaClient:
        options: dict[str, Any] = {
            "base_url": emulator.base_url,
            "policy": POLICY,
            "sleep": fake_time.sleep,
            "monotonic": fake_time.monotonic,
            "wall_clock": lambda: datetime.fromtimestamp(clock.now(), UTC),
        }
        key = overrides.pop("key", KEY)
        options.update(overrides)
        return AstriaClient(session, SecretStr(key), **options)

    return make


@pytest.fixture
def client(make_client: MakeClient) -> AstriaClient:
    return make_client()
