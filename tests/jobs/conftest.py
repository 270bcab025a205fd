"""A tracker wired to the emulator over HTTP, a real SQLite file and a recording Delivery,
all on one manual clock: tests move time with `Rig.step()` instead of sleeping. The bot's
wall clock can be set forward or back without moving its monotonic one (`Rig.jump_wall`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from bot.astria import AstriaClient, RetryPolicy
from bot.config import Branch, ProfileName, Settings
from bot.jobs import DeliveryFailed, JobEvent, Outcome, PollPolicy, Progress, Tracker, TrackerConfig
from bot.offline.emulator import Emulator, EmulatorConfig, ManualClock
from bot.store import PromptRecord, Store, TuneRecord, TuneState
from tests.conftest import KEY, FakeTime, photo
from tests.pg import Schemas

BRANCH: Branch = "sd15"  # a paid branch: money moves, so ledger = charges proves something
TUNE_MC = 150_000
IMAGE_MC = 2_000
GUILD = 10
CHANNEL = 20


@dataclass
class RecordingDelivery:
    """Keeps every call; can fail (raise) or say undeliverable on demand: `fail_next` an
    unexpected error, `transient_next` Discord's 503, and `refuse_channel` / `refuse_dm`
    a refusal raised for every report there (permanent, or certain)."""

    reports: list[JobEvent] = field(default_factory=list)  # the ones that got through
    private: list[JobEvent] = field(default_factory=list)  # of those, the ones by DM
    attempts: list[tuple[str, bool, datetime]] = field(default_factory=list)  # key, DM, when
    progress_updates: list[Progress] = field(default_factory=list)
    fail_next: int = 0
    transient_next: int = 0
    refuse_channel: DeliveryFailed | None = None
    refuse_dm: DeliveryFailed | None = None
    outcome: Outcome = Outcome.DELIVERED
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def report(self, event: JobEvent, *, private: bool = False) -> Outcome:
        self.attempts.append((event.key, private, self.clock()))
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("discord is down")
        if self.transient_next:
            self.transient_next -= 1
            raise DeliveryFailed("503 Service Unavailable")
        refusal = self.refuse_dm if private else self.refuse_channel
        if refusal is not None:
            raise refusal
        self.reports.append(event)
        if private:
            self.private.append(event)
        return self.outcome

    def tries(self, key: str, *, private: bool | None = None) -> list[datetime]:
        """When `key` was tried (only in the channel or by DM, if `private` says)."""
        return [t for k, p, t in self.attempts if k == key and private in (None, p)]

    async def progress(self, update: Progress) -> None:
        self.progress_updates.append(update)

    def keys(self, prefix: str = "") -> Counter[str]:
        return Counter(e.key for e in self.reports if e.key.startswith(prefix))

    def ends(self, kind: str) -> list[JobEvent]:
        return [e for e in self.reports if e.kind == kind]


@dataclass
class WallClock:
    """The bot's wall clock: the manual clock plus a skew (a clock jump on the bot's host;
    Astria's clock and the bot's monotonic one stay on the manual clock)."""

    clock: ManualClock
    skew: float = 0.0

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now() + self.skew, UTC)


def settings_for(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "astria_branch": BRANCH,
        "model_profile": "sd15-checkpoint",
        "tune_price_mc": {BRANCH: TUNE_MC},
        "image_price_mc": {BRANCH: IMAGE_MC},
        "guild_monthly_budget_mc": 10**12,
        "user_daily_limit_mc": 10**12,
        "user_monthly_limit_mc": 10**12,
        "balance_safety_margin_mc": 0,
        "sd15_prompt_seconds": 10,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@dataclass
class Rig:
    emulator: Emulator
    clock: ManualClock
    store: Store
    client: AstriaClient
    delivery: RecordingDelivery
    tracker: Tracker
    settings: Settings
    photos: Path
    fake_time: FakeTime
    wall: WallClock

    def now(self) -> datetime:
        return self.wall()

    def jump_wall(self, seconds: float) -> None:
        """Set the bot's wall clock forward (or back, when negative) by `seconds`."""
        self.wall.skew += seconds

    async def step(self, seconds: float = 5.0, rounds: int = 1) -> None:
        for _ in range(rounds):
            await self.emulator.advance(seconds)
            await self.tracker.poll_once()

    async def run_until(self, done: Any, *, step: float = 5.0, limit: int = 400) -> int:
        """Step until `done()` is true; returns the rounds it took."""
        for n in range(limit):
            if await done():
                return n
            await self.step(step)
        raise AssertionError(f"not done after {limit} rounds")

    async def tune(
        self,
        owner: int,
        name: str = "me",
        photos: int = 4,
        *,
        profile: ProfileName = "sd15-checkpoint",
        branch: Branch = BRANCH,
    ) -> TuneRecord:
        paths = []
        for i in range(photos):
            path = self.photos / f"{owner}-{name}-{i}.jpg"
            path.write_bytes(photo(owner * 100 + i))
            paths.append(str(path))
        created = await self.store.tunes.create(
            owner_id=owner,
            guild_id=GUILD,
            channel_id=CHANNEL,
            name=name,
            subject_class="man",
            profile=profile,
            branch=branch,
            photo_paths=paths,
            price_mc=TUNE_MC,
        )
        assert isinstance(created, TuneRecord), created
        return created

    async def ready_tune(
        self,
        owner: int,
        name: str = "me",
        *,
        profile: ProfileName = "sd15-checkpoint",
        branch: Branch = BRANCH,
    ) -> TuneRecord:
        tune = await self.tune(owner, name, profile=profile, branch=branch)

        async def ready() -> bool:
            current = await self.store.tunes.get(tune.id)
            return current is not None and current.state == TuneState.READY

        await self.run_until(ready, step=30)
        found = await self.store.tunes.get(tune.id)
        assert found is not None
        return found

    async def prompt(
        self,
        owner: int,
        tune: TuneRecord,
        text: str = "sks man",
        *,
        seed: int | None = None,
        images: int = 2,
        target: int | None = None,
        channel: int = CHANNEL,
    ) -> PromptRecord:
        created = await self.store.prompts.create(
            owner_id=owner,
            guild_id=GUILD,
            channel_id=channel,
            tune_id=tune.id,
            user_text=text,
            final_text=text,
            num_images=images,
            price_mc=IMAGE_MC * images,
            seed=seed,
            target_tune_id=target or tune.astria_id or 0,
        )
        assert isinstance(created, PromptRecord), created
        return created

    def status_requests(self) -> int:
        keys = ("GET /tunes", "GET /tunes/{id}", "GET /prompts", "GET /prompts/{id}")
        return sum(self.emulator.counters[k] for k in keys)

    async def ledger_matches_charges(self) -> None:
        charged = sum(c.cost_mc for c in self.emulator.charges)
        entries = await self.store.ledger.entries()
        spent = sum(e.amount_mc for e in entries if e.kind != "grant")
        held = await self.store.ledger.open_reservations()
        assert held == [], f"reservations still held: {held}"
        assert spent == charged, f"ledger {spent} mc, Astria charged {charged} mc"

    def new_tracker(self, **config: Any) -> Tracker:
        base = TrackerConfig.from_settings(self.settings)
        values = {**base.__dict__, **config}
        return Tracker(
            self.store,
            self.client,
            self.delivery,
            TrackerConfig(**values),
            clock=self.now,
            monotonic=self.clock.now,
            sleep=self.fake_time.sleep,
        )


def fast_polls(settings: Settings) -> PollPolicy:
    return TrackerConfig.from_settings(settings).poll


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(api_key=KEY, train_seconds=120, prompt_seconds=10, foreign_prompts=0)


@pytest.fixture
def rig_backend() -> str:
    """The rig's store: a SQLite file; a test module overrides this fixture with
    `params=tests.pg.BACKENDS` to run on PostgreSQL too."""
    return "sqlite"


@pytest.fixture
async def rig(
    emulator: Emulator,
    clock: ManualClock,
    tmp_path: Path,
    fake_time: FakeTime,
    rig_backend: str,
) -> AsyncIterator[Rig]:
    schemas = Schemas()
    url = await schemas.url() if rig_backend == "postgres" else None
    settings = settings_for(database_path=tmp_path / "bot.sqlite3", database_url=url)
    now = WallClock(clock)

    store = await Store.open_configured(settings, clock=now)
    await store.account.record_balance(emulator.balance_mc, read_at=now() - timedelta(seconds=1))
    photos = tmp_path / "photos"
    photos.mkdir()
    async with aiohttp.ClientSession() as session:
        client = AstriaClient(
            session,
            SecretStr(KEY),
            base_url=emulator.base_url,
            policy=RetryPolicy(base_delay=1.0, max_attempts=3, lookup_wait=5.0, timeout=5.0),
            sleep=fake_time.sleep,
            monotonic=fake_time.monotonic,
            wall_clock=now,
        )
        delivery = RecordingDelivery(clock=now)
        config = TrackerConfig.from_settings(settings)
        tracker = Tracker(
            store,
            client,
            delivery,
            config,
            clock=now,
            monotonic=clock.now,
            sleep=fake_time.sleep,
        )
        yield Rig(
            emulator, clock, store, client, delivery, tracker, settings, photos, fake_time, now
        )
        await tracker.stop()
    await store.close()
    await schemas.drop_all()
