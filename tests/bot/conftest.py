"""The real bot under SimCord, with the real store on a file and the emulator over HTTP;
the tracker is driven from the test with `poll_once()` on the emulator's manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import simcord
from pydantic import SecretStr

from bot.app import AstriaBot
from bot.astria import AstriaClient, RetryPolicy
from bot.config import Branch, ProfileName
from bot.offline.emulator import Emulator, EmulatorConfig, ManualClock
from bot.store import PromptRecord, TuneRecord, TuneState
from tests.conftest import KEY, FakeTime, photo
from tests.jobs.conftest import BRANCH, IMAGE_MC, TUNE_MC, settings_for


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(api_key=KEY, train_seconds=120, prompt_seconds=10, image_size=(256, 256))


@pytest.fixture
async def astria(
    emulator: Emulator, clock: ManualClock, fake_time: FakeTime
) -> AsyncIterator[AstriaClient]:
    async with aiohttp.ClientSession() as session:
        yield AstriaClient(
            session,
            SecretStr(KEY),
            base_url=emulator.base_url,
            policy=RetryPolicy(base_delay=1.0, max_attempts=3, lookup_wait=5.0, timeout=5.0),
            sleep=fake_time.sleep,
            monotonic=fake_time.monotonic,
            wall_clock=lambda: datetime.fromtimestamp(clock.now(), UTC),
        )


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Extra settings for the bot; a test parametrizes this fixture to change them."""
    return {}


@pytest.fixture
async def make_bot(
    tmp_path: Path, clock: ManualClock, astria: AstriaClient, settings_overrides: dict[str, Any]
) -> AsyncIterator[Any]:
    settings = settings_for(
        database_path=tmp_path / "bot.sqlite3",
        photos_dir=tmp_path / "kept-photos",
        **settings_overrides,
    )
    made: list[AstriaBot] = []

    def make() -> AstriaBot:
        bot = AstriaBot(
            settings,
            clock=lambda: datetime.fromtimestamp(clock.now(), UTC),
            monotonic=clock.now,
            run_tracker=False,
            astria=astria,
        )
        made.append(bot)
        return bot

    yield make
    # SimCord neither closes the bot at shutdown nor the old one at restart_bot: an open
    # aiosqlite connection's thread would keep the test process alive after pytest ends.
    for bot in made:
        if hasattr(bot, "store"):
            await bot.store.close()


@pytest.fixture
def simcord_bot(make_bot: Any) -> AstriaBot:
    return make_bot()  # type: ignore[no-any-return]


@dataclass
class Scene:
    env: simcord.Env
    emulator: Emulator
    guild: Any
    channel: Any
    alice: Any
    bob: Any
    admin: Any
    photos: Path

    @property
    def bot(self) -> AstriaBot:
        return self.env.bot  # type: ignore[return-value]

    async def step(self, seconds: float = 5.0, rounds: int = 1) -> None:
        for _ in range(rounds):
            await self.emulator.advance(seconds)
            await self.bot.tracker.poll_once()
            await self.bot.delivery.drain()

    async def ready_tune(
        self, owner: Any, *, profile: ProfileName = "sd15-checkpoint", branch: Branch = BRANCH
    ) -> TuneRecord:
        store = self.bot.store
        known = await store.account.last_known()
        if known is None:
            await store.account.record_balance(self.emulator.balance_mc)
        paths = []
        for i in range(4):
            path = self.photos / f"{owner.id}-{i}.jpg"
            path.write_bytes(photo(i))
            paths.append(str(path))
        tune = await store.tunes.create(
            owner_id=owner.id,
            guild_id=self.guild.id,
            channel_id=self.channel.id,
            name="me",
            subject_class="man",
            profile=profile,
            branch=branch,
            photo_paths=paths,
            price_mc=TUNE_MC,
        )
        assert isinstance(tune, TuneRecord), tune
        for _ in range(100):
            current = await store.tunes.get(tune.id)
            assert current is not None
            if current.state == TuneState.READY:
                return current
            await self.step(30)
        raise AssertionError("the tune never got ready")

    def refuse_posts(self, member: Any) -> None:
        """Discord refuses everything: the channel (Missing Permissions) and the member's
        DMs (closed), for the rest of the test."""
        self.env.inject_error(
            "POST",
            f"/channels/{self.channel.id}/messages",
            status=403,
            code=50013,
            message="Missing Permissions",
            times=None,
        )
        self.env.inject_error(
            "POST",
            f"/channels/{member.user.dm_channel.id}/messages",
            status=403,
            code=50007,
            message="Cannot send messages to this user",
            times=None,
        )

    async def prompt(self, owner: Any, tune: TuneRecord, images: int = 2) -> PromptRecord:
        created = await self.bot.store.prompts.create(
            owner_id=owner.id,
            guild_id=self.guild.id,
            channel_id=self.channel.id,
            tune_id=tune.id,
            user_text="on a beach",
            final_text="sks man on a beach",
            num_images=images,
            price_mc=IMAGE_MC * images,
            target_tune_id=tune.astria_id or 0,
        )
        assert isinstance(created, PromptRecord), created
        return created


def reply(result: Any) -> str:
    """What the member read last: the followup after a defer, else the response."""
    if result.followups:
        return str(result.followups[-1].content)
    return str(result.response.content)


@pytest.fixture
async def scene(simcord_env: simcord.Env, emulator: Emulator, tmp_path: Path) -> Scene:
    env = simcord_env
    guild = env.create_guild("Server")
    channel = guild.create_text_channel("art")
    alice = guild.add_member(env.create_user("alice"))
    bob = guild.add_member(env.create_user("bob"))
    admin = guild.add_member(env.create_user("admin"))
    photos = tmp_path / "photos"
    photos.mkdir()
    return Scene(env, emulator, guild, channel, alice, bob, admin, photos)
