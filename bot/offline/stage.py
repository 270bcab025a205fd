"""Everything the bot talks to, on loopback, with the real bot as its own process.

A `Stage` starts the Astria emulator (a paid branch, so money moves) and the Discord fake
in this process, sets the scene (a server, a channel, members, an admin), and runs the
unmodified bot (`python -m bot run`) against both through settings only. It can kill the
bot with SIGKILL and start it again on the same database, which is how the end-to-end
tests, the chaos run and `astria-bot demo` prove that nothing is lost or done twice.

The bot process reads no `.env` of the user's: it runs in the stage's folder with an
environment built here from scratch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.config import Settings, load_settings
from bot.offline.emulator import Emulator, EmulatorConfig, Reading
from bot.offline.fakecord import FakeDiscord, FakeDiscordConfig
from bot.offline.fakecord.driver import Files
from bot.offline.fakecord.interactions import InteractionHandle
from bot.offline.fakecord.state import Channel, Guild, Member, Message
from bot.store import Store

BOT_TOKEN = "offline.bot.token"  # noqa: S105 - the fake accepts any token; never a real one
PAID_BRANCH = "flux1"
TUNE_PRICE_MC = 150_000
IMAGE_PRICE_MC = 3_000


@dataclass
class StageOptions:
    folder: Path
    branch: str = PAID_BRANCH
    idempotency: bool = True
    train_seconds: float = 4.0
    prompt_seconds: float = 2.0
    balance_mc: int = 5_000_000
    seed: int = 0
    foreign_tunes: int = 0
    # A reading of what Astria leaves undocumented; the bot is told what an operator can
    # state (whether failed prompts are refunded), and must cope with the rest.
    reading: Reading = field(default_factory=Reading)
    members: Sequence[str] = ("alice", "bob")
    fake: FakeDiscordConfig = field(default_factory=FakeDiscordConfig)
    # Extra settings for the bot process, by environment variable name.
    bot_settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StartMark:
    """The emulator's request counts by route (at arrival), its request records and the
    fake's 429s, when the bot process last started."""

    astria_arrivals: collections.Counter[str] = field(default_factory=collections.Counter)
    astria_records: int = 0
    discord_429s: int = 0


class StageError(Exception):
    """Something the stage waited for did not happen."""


class Stage:
    def __init__(self, options: StageOptions) -> None:
        self.options = options
        # Absolute: the bot process runs in this folder and is given these paths.
        self.folder = options.folder.resolve()
        self.emulator = Emulator(
            options.reading.apply(
                EmulatorConfig(
                    idempotency=options.idempotency,
                    balance_mc=options.balance_mc,
                    train_seconds=options.train_seconds,
                    prompt_seconds=options.prompt_seconds,
                    seed=options.seed,
                    foreign_tunes=options.foreign_tunes,
                )
            )
        )
        self.fake = FakeDiscord(options.fake)
        self.guild: Guild
        self.channel: Channel
        self.admin: Member
        self.members: dict[str, Member] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._starts = 0
        self.database = self.folder / "bot.sqlite3"
        # What the emulator and the fake had seen when the bot process last started: its
        # own metrics count from there (a process's counters start at 0).
        self.at_start = StartMark()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        await self.emulator.start()
        await self.fake.start()
        self.guild = await self.fake.create_guild("Offline Server")
        self.channel = await self.fake.create_channel(self.guild, "art")
        for name in self.options.members:
            self.members[name] = await self.fake.create_member(self.guild, name)
        self.admin = await self.fake.create_member(self.guild, "admin", admin=True)

    async def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            await self.stop_bot()
        await self.fake.stop()
        await self.emulator.stop()

    async def __aenter__(self) -> Stage:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def bot_env(self) -> dict[str, str]:
        """The bot's whole environment: settings only, pointing at the loopback services."""
        options = self.options
        env = {
            # Nothing is inherited: the bot runs by the interpreter's full path, from the
            # venv where it is installed, and reads no setting but these.
            "HOME": str(self.folder),
            "PYTHONUNBUFFERED": "1",
            "PYTHONUTF8": "1",
            "DISCORD_TOKEN": BOT_TOKEN,
            "DISCORD_API_BASE": self.fake.api_base,
            "DISCORD_GATEWAY_URL": self.fake.gateway_url,
            "ASTRIA_API_KEY": self.emulator.config.api_key,
            "ASTRIA_BASE_URL": self.emulator.base_url,
            "ASTRIA_BRANCH": options.branch,
            "ASTRIA_IDEMPOTENCY": "true" if options.idempotency else "false",
            "ASTRIA_REFUNDS_FAILED_PROMPTS": (
                "true" if options.reading.refund_failed_prompts else "false"
            ),
            "MODEL_PROFILE": "flux-lora",
            "DATABASE_PATH": str(self.database),
            "PHOTOS_DIR": str(self.folder / "photos"),
            "TUNE_PRICE_MC": f'{{"{options.branch}": {TUNE_PRICE_MC}}}',
            "IMAGE_PRICE_MC": f'{{"{options.branch}": {IMAGE_PRICE_MC}}}',
            "GUILD_MONTHLY_BUDGET_MC": "100000000",
            "USER_DAILY_LIMIT_MC": "10000000",
            "USER_MONTHLY_LIMIT_MC": "10000000",
            "BALANCE_SAFETY_MARGIN_MC": "0",
            # Seconds, not minutes: the emulator's jobs take seconds here.
            "POLL_TUNE_MIN_SECONDS": "0.5",
            "POLL_PROMPT_MIN_SECONDS": "0.3",
            "POLL_MAX_SECONDS": "2",
            "FLUX_PROMPT_SECONDS": str(options.prompt_seconds),
            "ASTRIA_RETRY_BASE_SECONDS": "0.3",
            "ASTRIA_LOOKUP_WAIT_SECONDS": "0.5",
            "ASTRIA_REQUEST_TIMEOUT_SECONDS": "10",
            "ASTRIA_REQUESTS_PER_SECOND": "100",
            "BALANCE_REFRESH_SECONDS": "2",
        }
        env.update(options.bot_settings)
        return env

    def settings(self) -> Settings:
        """The bot's settings, as its process reads them from `bot_env()`."""
        values: dict[str, Any] = {}
        for name, value in self.bot_env().items():
            field = name.lower()
            if field in Settings.model_fields:
                values[field] = json.loads(value) if value.startswith("{") else value
        return load_settings(**values)

    async def open_store(self) -> Store:
        """The bot's database, to read what it did (SQLite lets a reader in beside the
        running bot; write nothing while it runs): the SQLite file, or the PostgreSQL
        database a DATABASE_URL in `bot_settings` names."""
        settings = self.settings()
        return await Store.open(settings.database_location, settings=settings)

    async def prompt_states(self, owner: Member) -> list[str]:
        """The member's prompts' states, oldest first, read from the bot's database."""
        async with await self.open_store() as store:
            prompts = await store.prompts.list_for(owner.id, limit=1000)
        return [str(p.state) for p in reversed(prompts)]

    async def start_bot(self, *, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Start the bot process and wait until it is connected to the fake."""
        if self._process is not None and self._process.returncode is None:
            raise StageError("the bot is already running")
        self._process = await self.start_process(timeout=timeout)

    async def start_process(
        self,
        *,
        timeout: float = 30.0,  # noqa: ASYNC109
        **settings: str,
    ) -> asyncio.subprocess.Process:
        """Start one more bot process, with `settings` (by variable name) over the
        stage's, and wait until it is connected; the caller stops or kills it (several
        processes on one PostgreSQL share the jobs through leases)."""
        identifies = self.fake.gateway.identifies
        self._starts += 1
        # The previous process is gone (killed or stopped): every request from here on is
        # the new one's. Arrivals are counted (`counters`), so a request of the dead
        # process still sleeping in the emulator's latency is not the new one's.
        self.at_start = StartMark(
            collections.Counter(self.emulator.counters),
            len(self.emulator.requests),
            sum(self.fake.rate_limited.values()),
        )
        log = (self.folder / f"bot-{self._starts}.log").open("wb")
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                cwd=self.folder,
                env={**self.bot_env(), **settings},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            log.close()
        try:
            await self.fake.wait_reconnected(identifies, timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise StageError(f"the bot did not connect; see {self.log_path()}") from None
        return process

    def log_path(self, start: int | None = None) -> Path:
        return self.folder / f"bot-{start or self._starts}.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def kill_bot(self) -> None:
        """SIGKILL: no cleanup of any kind, as a crash or an OOM kill."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.kill()
        await process.wait()

    async def stop_bot(self, *, timeout: float = 15.0) -> int | None:  # noqa: ASYNC109
        """SIGTERM and wait for a clean exit (SIGKILL after `timeout`); the exit code."""
        process = self._process
        if process is None or process.returncode is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise StageError("the bot did not stop on SIGTERM") from None

    # ------------------------------------------------------------------ waiting

    async def wait_for(
        self,
        check: Callable[[], Any],
        what: str,
        *,
        timeout: float = 60.0,  # noqa: ASYNC109
        every: float = 0.05,
    ) -> Any:
        """Poll `check` until it returns something truthy; that value."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if self._process is not None and self._process.returncode not in (None, -9):
                raise StageError(f"the bot exited while waiting for {what}; see {self.log_path()}")
            if time.monotonic() > deadline:
                raise StageError(f"timed out after {timeout:g} s waiting for {what}")
            await asyncio.sleep(every)

    def posts(self, channel: Channel | None = None) -> list[Message]:
        """The bot's messages in the channel (not members' posts, not ephemerals)."""
        bot_id = self.fake.world.bot.id
        return [m for m in self.fake.messages(channel or self.channel) if m.author_id == bot_id]

    def image_posts(self, channel: Channel | None = None) -> list[Message]:
        return [m for m in self.posts(channel) if m.attachments]

    # ------------------------------------------------------------------ what members do

    async def train(
        self,
        member: Member,
        name: str,
        photos: Files,
        *,
        subject: str = "man",
        timeout: float = 30.0,  # noqa: ASYNC109
        channel: Channel | None = None,
    ) -> str:
        """`/tune create`, then the form with these photos; the bot's answer. In the
        stage's channel, or another (a thread, a forum post, a voice channel's chat)."""
        where = channel or self.channel
        shown = await self.fake.slash(member, where, "tune create")
        reply = await shown.response(timeout)
        if reply.modal is None:
            return reply.content or ""
        first, second = list(photos[:10]), list(photos[10:])
        values: dict[str, Any] = {
            "name": name,
            "class": [subject],
            "consent": ["yes"],
            "photos1": first,
        }
        if second:
            values["photos2"] = second
        submitted = await self.fake.submit_modal(member, where, shown, values)
        return await answer_of(submitted, timeout)

    async def ready_tune(self, member: Member, name: str, photos: Files) -> str:
        """Train a tune from these photos and wait for its ready post; its id, as /imagine's
        autocomplete offers it."""
        answer = await self.train(member, name, photos)
        if "Training" not in answer:
            raise StageError(f"the tune {name!r} was not queued: {answer}")
        await self.wait_for(
            lambda: any("is ready" in m.content for m in self.posts()), "the tune to be ready"
        )
        return await self.tune_choice(member, name)

    async def command(
        self,
        member: Member,
        name: str,
        timeout: float = 30.0,  # noqa: ASYNC109
        channel: Channel | None = None,
        **options: Any,
    ) -> str:
        """A slash command (in the stage's channel unless told); the bot's answer."""
        handle = await self.fake.slash(member, channel or self.channel, name, **options)
        return await answer_of(handle, timeout)

    async def command_reply(
        self,
        member: Member,
        name: str,
        timeout: float = 30.0,  # noqa: ASYNC109
        **options: Any,
    ) -> Message | None:
        """A slash command in the stage's channel; the message the member ends up reading
        (the completed defer, with any files the bot attached), None if there is none."""
        handle = await self.fake.slash(member, self.channel, name, **options)
        reply = await handle.response(timeout)
        if reply.type == 5:
            return await handle.wait_done(timeout)
        return reply.message

    async def tune_choice(self, member: Member, partial: str = "") -> str:
        """What autocomplete offers first for /imagine's tune (its value, a tune id)."""
        handle = await self.fake.autocomplete(member, self.channel, "imagine", "tune", partial)
        reply = await handle.response(10.0)
        if not reply.choices:
            raise StageError(f"no tune offered to {member.user.name}")
        return str(reply.choices[0]["value"])

    async def click(self, member: Member, message: Message, custom_id: str) -> str:
        handle = await self.fake.click(member, message, custom_id)
        return await answer_of(handle, 30.0)


async def answer_of(handle: InteractionHandle, timeout: float) -> str:  # noqa: ASYNC109
    """The text the member ends up reading: the completed defer, or the reply itself."""
    reply = await handle.response(timeout)
    if reply.type == 5:  # a thinking defer: the first followup completes it
        done = await handle.wait_done(timeout)
        return "" if done is None else done.content
    return reply.content or ""
