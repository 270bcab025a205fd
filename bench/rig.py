"""The pieces the Astria-side benchmarks wire together, as the tests' Rig does: settings on a
paid branch, a client on the emulator over loopback, a Delivery that only counts, and
small training photos."""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from PIL import Image
from pydantic import SecretStr

from bench.common import KEY
from bot.astria import AstriaClient, RetryPolicy
from bot.config import ProfileName, Settings
from bot.jobs import EventKind, JobEvent, Outcome, Progress
from bot.store import PromptRecord

if TYPE_CHECKING:  # the process under test in bench.restart never loads the emulator
    from bot.offline.emulator import Emulator, ManualClock
    from bot.store import Store, TuneRecord

BRANCH = "sd15"  # a paid branch, as in the tests: money moves
TUNE_MC = 150_000
IMAGE_MC = 2_000
GUILD = 10
CHANNEL = 20
PROFILE: ProfileName = "sd15-checkpoint"

Clock = Callable[[], datetime]

# Astria's routes by what they are for, as the emulator counts them.
STATUS_ROUTES = (
    "GET /tunes",
    "GET /tunes/{id}",
    "GET /tunes/{tune_id}/prompts",
    "GET /tunes/{tune_id}/prompts/{id}",
    "GET /prompts",
    "GET /prompts/{id}",
)
CREATE_ROUTES = ("POST /tunes", "POST /tunes/{tune_id}/prompts")


def settings_for(**overrides: Any) -> Settings:
    """The bot's settings for a benchmark: paid branch, budgets that never bind (unless a
    benchmark sets its own), no `.env`."""
    values: dict[str, Any] = {
        "astria_branch": BRANCH,
        "model_profile": PROFILE,
        "tune_price_mc": {BRANCH: TUNE_MC},
        "image_price_mc": {BRANCH: IMAGE_MC},
        "guild_monthly_budget_mc": 10**12,
        "user_daily_limit_mc": 10**12,
        "user_monthly_limit_mc": 10**12,
        "balance_safety_margin_mc": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def manual_now(clock: ManualClock) -> Clock:
    """The bot's clock reading the emulator's manual clock, so both agree on the time."""

    def now() -> datetime:
        return datetime.fromtimestamp(clock.now(), UTC)

    return now


def client_for(
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    now: Clock | None = None,
    lookup_wait: float = 5.0,
) -> AstriaClient:
    policy = RetryPolicy(base_delay=0.5, max_attempts=3, lookup_wait=lookup_wait, timeout=30.0)
    if now is None:
        return AstriaClient(session, SecretStr(KEY), base_url=base_url, policy=policy)
    return AstriaClient(session, SecretStr(KEY), base_url=base_url, policy=policy, wall_clock=now)


@dataclass
class CountingDelivery:
    """A Delivery that posts nothing and counts what it was told."""

    ends: Counter[str] = field(default_factory=Counter)
    keys: set[str] = field(default_factory=set)
    repeats: int = 0
    progress_updates: int = 0
    # When each milestone was shown (time.perf_counter()), e.g. "training" after a create.
    milestones: dict[str, list[float]] = field(default_factory=dict)

    async def report(self, event: JobEvent, *, private: bool = False) -> Outcome:
        if event.key in self.keys:
            self.repeats += 1
        self.keys.add(event.key)
        self.ends[str(event.kind)] += 1
        return Outcome.DELIVERED

    async def progress(self, update: Progress) -> None:
        self.progress_updates += 1
        if update.queue_position is None:
            self.milestones.setdefault(update.state, []).append(time.perf_counter())

    def count(self, kind: EventKind) -> int:
        return self.ends[str(kind)]


def route_counts(emulator: Emulator) -> Counter[str]:
    """A copy of the emulator's per-route request counters."""
    return Counter(emulator.counters)


@dataclass(frozen=True)
class Requests:
    """Requests Astria received, split by purpose."""

    creates: int
    status: int
    other: int

    @property
    def total(self) -> int:
        return self.creates + self.status + self.other

    @classmethod
    def between(cls, before: Counter[str], after: Counter[str]) -> Requests:
        diff = after - before
        creates = sum(diff[r] for r in CREATE_ROUTES)
        status = sum(diff[r] for r in STATUS_ROUTES)
        return cls(creates, status, sum(diff.values()) - creates - status)


def small_photo(seed: int, size: int = 600) -> bytes:
    """A valid training photo (JPEG, 600 px): what a tune create needs, kept small."""
    image = Image.new("RGB", (size, size), (seed * 37 % 256, 90, 160))
    out = io.BytesIO()
    image.save(out, "JPEG")
    return out.getvalue()


def write_photos(folder: Path, prefix: str, count: int = 4) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = folder / f"{prefix}-{n}.jpg"
        path.write_bytes(small_photo(n))
        paths.append(str(path))
    return paths


async def queue_prompt(
    store: Store, tune: TuneRecord, n: int, *, channel_id: int = CHANNEL
) -> PromptRecord:
    """Prompt `n` of a member of its own (owner 1000 + n), two images, queued in the store
    as the bot's intake leaves it."""
    text = f"sks man, portrait number {n}"
    created = await store.prompts.create(
        owner_id=1000 + n,
        guild_id=GUILD,
        channel_id=channel_id,
        tune_id=tune.id,
        user_text=text,
        final_text=text,
        num_images=2,
        price_mc=2 * IMAGE_MC,
        target_tune_id=tune.astria_id or 0,
    )
    if not isinstance(created, PromptRecord):
        raise RuntimeError(f"prompt refused: {created}")
    return created
