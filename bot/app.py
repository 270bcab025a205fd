"""The bot: one `commands.Bot` whose `setup_hook` builds every service once (the Astria
client over one HTTP session, the store, the tracker, Discord delivery) and loads the cogs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
import discord
from discord.ext import commands

from bot.actions import Services
from bot.astria import AstriaClient, Limiter
from bot.astria.probe import probe_client
from bot.config import Settings
from bot.jobs import CallbackReceiver, Tracker, TrackerConfig
from bot.jobs.alerts import Alerter, AlertPolicy
from bot.jobs.idempotency import settle_idempotency
from bot.jobs.photosweep import PhotoSweep
from bot.metrics import BotMetrics
from bot.preflight import Ready
from bot.registration import register
from bot.rules.intake import PhotoIntake
from bot.rules.photos import PhotoRules
from bot.store import Store
from bot.ui.alerts import AlertPoster
from bot.ui.base import answer
from bot.ui.buttons import DYNAMIC_ITEMS, result_view, status_view
from bot.ui.delivery import DiscordDelivery
from bot.ui.forms import RESTARTED, STALE_COMPONENT, FormRegistry

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
EXTENSIONS: tuple[str, ...] = (
    "cogs.errors",
    "cogs.imagine",
    "cogs.packs",
    "cogs.account",
    "cogs.tunes",
    "cogs.admin",
    "cogs.privacy",
)
BALANCE_AT_START_SECONDS = 10.0
DRAIN_AT_STOP_SECONDS = 5.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class AstriaBot(commands.Bot):
    settings: Settings
    store: Store
    astria: AstriaClient
    tracker: Tracker
    delivery: DiscordDelivery
    intake: PhotoIntake
    forms: FormRegistry
    services: Services  # what the use cases (bot.actions) work with
    alerts: Alerter  # the core's alerts for the admins
    alert_poster: AlertPoster  # posts them in each server's alert channel

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        run_tracker: bool = True,
        astria: AstriaClient | None = None,
        extensions: Sequence[str] = EXTENSIONS,
        commands_only: bool = False,
        ready: Ready | None = None,
        metrics: BotMetrics | None = None,
        **options: object,
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # nothing privileged: menus carry their message's attachments
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=discord.AllowedMentions(users=True, roles=False, everyone=False),
            **options,  # type: ignore[arg-type]
        )
        self.settings = settings
        self._clock = clock
        self._monotonic = monotonic  # the tracker's schedules (tests inject both clocks)
        self._run_tracker = run_tracker
        self._given_astria = astria
        self._extensions = tuple(extensions)
        self._commands_only = commands_only  # `astria-bot sync`: the tree, no services
        self._session: aiohttp.ClientSession | None = None
        self.metrics = metrics  # counted by the Astria client and the tracker when given
        self._preflight = ready  # `run`'s checks opened the store and settled idempotency
        if ready is not None:
            self.store = ready.store  # closed by close(), even if setup_hook never runs
            self._session = ready.session
        self._tracker_task: asyncio.Task[None] | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        self._alerts_task: asyncio.Task[None] | None = None
        self._callbacks: CallbackReceiver | None = None
        self.forms = FormRegistry()
        self._closed_services = False
        self.intake = PhotoIntake(
            settings.photos_dir,
            PhotoRules(),
            max_concurrent_downloads=settings.max_concurrent_downloads,
        )

    def now(self) -> datetime:
        """The bot's clock (tests share it with the emulator)."""
        return self._clock()

    def _shared_limiter(self) -> Limiter | None:
        """On PostgreSQL, where several processes may share the account, its one budget
        and pause (bot/store/budget.py); on SQLite, one process, the client's own."""
        return self.store.astria_budget if self.store.backend == "postgres" else None

    async def setup_hook(self) -> None:
        if self._commands_only:
            for extension in self._extensions:
                await self.load_extension(extension)
            return
        settings = self.settings
        ready = self._preflight
        metrics = self.metrics
        if ready is None:
            self.store = await Store.open_configured(settings, clock=self._clock)
        if self._given_astria is not None:
            self.astria = self._given_astria  # its giver chose its idempotency
        elif ready is not None:
            self.astria = AstriaClient.from_settings(
                settings,
                ready.session,
                idempotency=ready.idempotency,
                on_retry=None if metrics is None else metrics.retried,
                limiter=self._shared_limiter(),
            )
        else:
            self._session = aiohttp.ClientSession()
            idempotency = await self._settle_idempotency(self._session)
            self.astria = AstriaClient.from_settings(
                settings, self._session, idempotency=idempotency, limiter=self._shared_limiter()
            )
        self.delivery = DiscordDelivery(
            self,
            self.store,
            self.astria,
            result_view=result_view,
            status_view=status_view,
            post_links=settings.post_image_links,
            clock=self._clock,
        )
        self.alert_poster = AlertPoster(
            self, self.store, clock=self._clock, holder=settings.process_id
        )
        self.alerts = Alerter(
            self.store,
            self._clock,
            AlertPolicy.from_settings(settings),
            notify=self.alert_poster.nudge,
        )
        self.tracker = Tracker(
            self.store,
            self.astria,
            self.delivery,
            TrackerConfig.from_settings(settings),
            clock=self._clock,
            monotonic=self._monotonic,
            alerts=self.alerts,
            on_delivered=None if metrics is None else metrics.delivered,
        )
        self.services = Services(
            settings, self.store, self.astria, self.tracker, self.intake, self.alerts
        )
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        for extension in self._extensions:
            await self.load_extension(extension)
        if settings.sync_commands_on_start:
            await self._sync_if_changed()
        if self._run_tracker:
            # Photos a killed intake left behind go before anything else runs.
            sweep = PhotoSweep(self.store, self.intake, grace=settings.photo_sweep_grace_seconds)
            try:
                await sweep.once()
            except Exception:
                log.exception("the photo sweep at start failed; it runs again in a while")
            self._sweep_task = asyncio.create_task(sweep.run(), name="photo-sweep")
            # Before the gateway connects, so a member's first command already has a known
            # balance to reserve against; Astria being down must not stop the bot starting.
            try:
                await asyncio.wait_for(self.tracker.read_balance(), BALANCE_AT_START_SECONDS)
            except TimeoutError:
                log.warning("the Astria balance was not read at start; the tracker retries")
            await self._start_callbacks()
            # Tests only: the chaos run's store faults, once the bot is up.
            self.store.inject_faults(
                settings.chaos_store_fault_rate, seed=settings.chaos_store_fault_seed
            )
            self._tracker_task = asyncio.create_task(self.tracker.run(), name="tracker")
            # Alerts written before a kill are posted once the gateway is ready.
            self._alerts_task = asyncio.create_task(self.alert_poster.run(), name="alerts")

    async def _settle_idempotency(self, session: aiohttp.ClientSession) -> bool:
        """Astria's idempotency as the probe found it (reused for a day); raises
        IdempotencyContradiction when ASTRIA_IDEMPOTENCY says otherwise."""
        settings = self.settings
        if settings.astria_api_key is None:
            raise ValueError("ASTRIA_API_KEY is not set")
        client = probe_client(session, settings.astria_api_key, settings.astria_base_url)
        settled = await settle_idempotency(
            settings.astria_idempotency, self.store.meta, client, now=self._clock()
        )
        return settled.effective

    async def _sync_if_changed(self) -> None:
        """Register the commands with Discord when they differ from what this database last
        registered (a new install or an upgrade): never a blind sync on every start, which
        Discord rate-limits. `DEV_GUILD_ID` registers them in that one server instead; each
        mode removes the other's, so no server lists a command twice (bot/registration.py)."""
        try:
            done = await register(self, self.tree, self.store.meta, self.settings.dev_guild_id)
        except discord.HTTPException as exc:
            log.warning("could not register the commands (%s); run `astria-bot sync`", exc)
            return
        if done.registered:
            log.info("registered %d commands %s", len(done.registered), done.where)
        for where in done.cleared:
            log.info("removed the commands registered %s", where)

    async def on_interaction(self, interaction: discord.Interaction[AstriaBot]) -> None:
        """A form opened before a restart, or a button no handler knows (an old message's,
        from a version of the bot that had it), is dropped by discord.py without a word:
        the member would read "This interaction failed". Say what happened instead."""
        if interaction.data is None:
            return
        custom_id = str(interaction.data.get("custom_id", ""))
        if interaction.type == discord.InteractionType.modal_submit:
            if self.forms.is_stale(custom_id):
                await answer(interaction, RESTARTED)
        elif interaction.type == discord.InteractionType.component and not (
            self._handles_component(custom_id)
        ):
            await answer(interaction, STALE_COMPONENT)

    def _handles_component(self, custom_id: str) -> bool:
        """Whether discord.py will route this custom_id: a registered dynamic item, or an
        item of a live view (on any message: a view keyed by an interaction counts)."""
        # discord.py offers no public lookup; this mirrors ViewStore.dispatch_view.
        store = self._connection._view_store
        if any(p.fullmatch(custom_id) for p in store._dynamic_items):
            return True
        return any(key[1] == custom_id for items in store._views.values() for key in items)

    async def _start_callbacks(self) -> None:
        settings = self.settings
        if settings.public_callback_url and settings.callback_signing_key is not None:
            host, _, port = settings.callback_listen.rpartition(":")
            self._callbacks = CallbackReceiver(settings.callback_signing_key, self.tracker.wake)
            await self._callbacks.start(host.strip("[]"), int(port))

    async def close(self) -> None:
        """SIGTERM ends here: the tracker stops first (creates in flight stay `submitting`
        and are recovered on the next start), then Discord, then the store and HTTP. Safe to
        call twice (the signal handler and `async with` both do)."""
        if self._closed_services:
            await super().close()
            return
        self._closed_services = True
        try:
            if self._sweep_task is not None:
                self._sweep_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._sweep_task
            if self._alerts_task is not None:
                self.alert_poster.stop()
                self._alerts_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._alerts_task
                await self.alert_poster.release()
            if self._tracker_task is not None:
                await self.tracker.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._tracker_task
            if hasattr(self, "delivery"):
                # The last status edits, so no message is left saying "Generating…".
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.delivery.drain(), DRAIN_AT_STOP_SECONDS)
            if self._callbacks is not None:
                await self._callbacks.stop()
            await super().close()
        finally:
            if hasattr(self, "store"):
                await self.store.close()
            if self._session is not None:
                await self._session.close()


class ShardedAstriaBot(AstriaBot, commands.AutoShardedBot):
    """The same bot over SHARD_COUNT shards (Discord requires them past about 2,500
    servers), each a connection of its own; discord.py routes each event to its shard.

    Identifies follow Discord's session start limit: shards whose `shard_id %
    max_concurrency` is the same identify at least 5 s apart; the others at once."""

    IDENTIFY_WINDOW = 5.0

    def __init__(self, settings: Settings, **options: Any) -> None:
        held = list(settings.shards_held) or None
        super().__init__(settings, shard_count=settings.shard_count, shard_ids=held, **options)
        self._max_concurrency: int | None = None
        self._identified: dict[int, float] = {}

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if self._max_concurrency is None:
            try:
                _, _, limits = await self.http.get_bot_gateway()
                self._max_concurrency = max(1, int(limits.get("max_concurrency", 1)))
            except (discord.HTTPException, KeyError, TypeError, ValueError):
                self._max_concurrency = 1
        key = (shard_id or 0) % self._max_concurrency
        last = self._identified.get(key)
        if last is not None:
            wait = last + self.IDENTIFY_WINDOW - self._monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        self._identified[key] = self._monotonic()


def make_bot(settings: Settings, **options: Any) -> AstriaBot:
    """The bot for these settings: sharded when SHARD_COUNT is set."""
    if settings.shard_count is not None:
        return ShardedAstriaBot(settings, **options)
    return AstriaBot(settings, **options)
