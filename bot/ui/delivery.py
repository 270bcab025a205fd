"""Delivery to Discord: status messages at milestones, results posted exactly once.

Implements `bot.jobs.Delivery`. Results are posted in the job's channel (not as an
interaction followup: those tokens die after 15 minutes), as files within Discord's limits,
each part recorded as soon as Discord accepts it. A repeated report (same key) posts only
the parts not yet recorded; after a restart, a part sent but not recorded is found in the
channel by its marker before anything is sent again. A refused post raises
`DeliveryFailed`, permanent or transient; the tracker bounds the attempts, turns to a DM
(`private`) and at last marks the job undeliverable (kept for /jobs). An image that cannot
be shrunk into a file goes in the post as its link. Images are re-encoded off the loop.
Progress edits are coalesced per channel and wait behind results.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import discord

from bot.astria import AstriaClient, AstriaError
from bot.jobs.delivery import (
    WAITING_FOR_CREDIT,
    DeliveryFailed,
    EventKind,
    JobEvent,
    Outcome,
    Progress,
    event_key,
)
from bot.rules.nsfw import as_spoiler
from bot.store import JobKind, JobRef, PromptRecord, Store, StoreFault, TuneRecord
from bot.ui.door import age_restricted
from bot.ui.files import MULTIPART_SLACK, CannotFit, Limits, batches, fit
from bot.ui.nonce import nonce_for
from bot.ui.text import Made, job_label, progress_line, result_text

# States in which the member may still cancel from the status message.
WAITING_STATES = frozenset({"queued", WAITING_FOR_CREDIT, "generating"})

log = logging.getLogger(__name__)

HISTORY_SCAN = 50  # recent messages searched for a post a crash left unrecorded
MAX_IMAGE_DOWNLOAD = 50 * 1024 * 1024
DM_FILE_LIMIT = 10 * 1024 * 1024
# Discord error codes that say the same post will be refused again.
UNKNOWN_CHANNEL = 10003
UNKNOWN_USER = 10013
INVALID_FORM_BODY = 50035
ENTITY_TOO_LARGE = 40005

StatusViewFactory = Callable[[JobRef], discord.ui.View | None]
# A result's buttons depend on how many images it has and on the tool that made it.
ResultViewFactory = Callable[[JobRef, int, str], discord.ui.View | None]


_SETTLES_STATUS = frozenset(
    {EventKind.READY, EventKind.DONE, EventKind.FAILED, EventKind.CANCELLED, EventKind.STUCK}
)
# Ends after which the job's one message is its result: the status message is removed.
_FINAL = frozenset({EventKind.READY, EventKind.DONE, EventKind.FAILED, EventKind.CANCELLED})
# A status names its member without pinging them (the result post pings).
QUIET = discord.AllowedMentions.none()
ETA_GRACE_SECONDS = 1.0  # past the ETA before the status says "any moment now"


# Every channel type whose messages discord.py can address by id.
_EDITABLE = (
    discord.TextChannel,
    discord.Thread,
    discord.VoiceChannel,
    discord.StageChannel,
    discord.DMChannel,
    discord.PartialMessageable,
)


class ChannelGone(Exception):
    """The job's channel is not a place the bot can post in any more."""


@dataclass
class _ChannelLane:
    """One channel's pending work: results first, then the latest edit per status message."""

    edits: dict[str, Progress] = field(default_factory=dict)
    worker: asyncio.Task[None] | None = None
    results_waiting: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class DiscordDelivery:
    def __init__(
        self,
        bot: discord.Client,
        store: Store,
        astria: AstriaClient,
        *,
        result_view: ResultViewFactory | None = None,
        status_view: StatusViewFactory | None = None,
        post_links: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._bot = bot
        self._clock = clock
        self._latest: dict[str, Progress] = {}  # the newest update per unfinished job
        self._eta_timers: dict[str, asyncio.TimerHandle] = {}
        self._store = store
        self._astria = astria
        self._result_view = result_view or (lambda job, images, tool: None)
        self._status_view = status_view or (lambda job: None)
        self._post_links = post_links
        self._lanes: dict[int, _ChannelLane] = {}
        self._results_lock: dict[int, asyncio.Lock] = {}
        self.edits_sent = 0
        self.edits_coalesced = 0

    # ------------------------------------------------------------------ results

    async def report(self, event: JobEvent, *, private: bool = False) -> Outcome:
        """Post the event in its channel or (`private`) by DM. Discord's refusals are raised
        as `DeliveryFailed`, permanent or transient; the tracker decides when to try
        again, when to turn to the DM and when to give up."""
        lane = self._lane(event.channel_id)
        lane.results_waiting += 1
        try:
            async with self._results_lock.setdefault(event.channel_id, asyncio.Lock()):
                try:
                    await self._post_result(event, None if private else event.channel_id)
                except (discord.DiscordException, ChannelGone, aiohttp.ClientError, OSError) as exc:
                    raise _failure(exc) from exc
                return Outcome.DELIVERED
        finally:
            lane.results_waiting -= 1
            if event.kind in _SETTLES_STATUS:
                # The status message says how it ended (a low-priority, coalesced edit).
                await self.progress(
                    Progress(
                        event.job,
                        str(event.kind),
                        event.owner_id,
                        event.guild_id,
                        event.channel_id,
                    )
                )
            self._kick(event.channel_id)

    async def _post_result(self, event: JobEvent, channel_id: int | None) -> None:
        """Post every part of the event not yet recorded, to the channel or (None) by DM."""
        job = JobRef.parse(event.job)
        destination = await self._destination(event, channel_id)
        spoiler = await self._as_spoiler(event, destination)
        parts = await self._parts(event, channel_id, spoiler=spoiler)
        posted = await self._store.events.messages(event.key)
        record = await self._store.prompts.get(job.id) if job.kind == JobKind.PROMPT else None
        tool = record.tool if record is not None else "imagine"
        reference = await self._reply_to(record, channel_id)
        last = len(parts) - 1
        for number, (content, files) in enumerate(parts):
            if number in posted:
                continue
            nonce = nonce_for(event.key, number)
            view = (
                self._result_view(job, len(event.images), tool)
                if number == last and event.kind == EventKind.DONE
                else None
            )
            found = await self._already_posted(destination, view)
            if found is not None:
                message = found
            else:
                message = await self._send(
                    destination, content, files, view, nonce, reference if number == 0 else None
                )
            await self._store.events.record_message(
                event.key, number, message.channel.id, message.id
            )
        if event.kind == EventKind.DONE:
            ids = [m for _, m in (await self._store.events.messages(event.key)).values()]
            await self._store.prompts.set_result_messages(job.id, ids)

    @staticmethod
    async def _send(
        destination: discord.abc.Messageable,
        content: str,
        files: list[discord.File],
        view: discord.ui.View | None,
        nonce: str,
        reference: discord.MessageReference | None,
    ) -> discord.Message:
        view_or_missing = view or discord.utils.MISSING
        if reference is None:
            return await destination.send(
                content=content, files=files, view=view_or_missing, nonce=nonce
            )
        return await destination.send(
            content=content,
            files=files,
            view=view_or_missing,
            nonce=nonce,
            reference=reference,
            mention_author=False,
        )

    async def _reply_to(
        self, record: PromptRecord | None, channel_id: int | None
    ) -> discord.MessageReference | None:
        """An upscale is posted as a reply to the result it came from, when that result is
        in the same channel (a reply to a deleted one is posted plainly)."""
        if record is None or record.tool != "upscale" or record.parent_id is None:
            return None
        parent = await self._store.prompts.get(record.parent_id)
        if parent is None or not parent.result_message_ids or channel_id is None:
            return None
        if parent.channel_id != channel_id:
            return None
        # The post that carries the buttons: the one the member pressed.
        return discord.MessageReference(
            message_id=parent.result_message_ids[-1],
            channel_id=channel_id,
            fail_if_not_exists=False,
        )

    async def _as_spoiler(self, event: JobEvent, destination: discord.abc.Messageable) -> bool:
        """Whether the result's images go as spoilers: the server's NSFW mode outside an
        age-restricted channel (a thread's parent is fetched when not cached). A DM has no
        age restriction, so a DM'd result is a spoiler unless the mode is `show`."""
        if not event.guild_id:
            return False
        mode = (await self._store.guilds.get(event.guild_id)).nsfw_mode
        if not as_spoiler(mode, False):
            return False  # shown as they are everywhere: nothing to look up
        channel: object = destination
        if isinstance(destination, discord.Thread) and destination.parent is None:
            try:
                channel = await self._bot.fetch_channel(destination.parent_id)
            except discord.HTTPException:
                return True  # cannot tell: the cautious side
        elif isinstance(destination, discord.Thread):
            channel = destination.parent
        return as_spoiler(mode, age_restricted(channel))

    async def _destination(
        self, event: JobEvent, channel_id: int | None
    ) -> discord.abc.Messageable:
        if channel_id is not None:
            channel = self._bot.get_channel(channel_id) or await self._bot.fetch_channel(channel_id)
            if not isinstance(channel, discord.abc.Messageable):
                raise ChannelGone(f"channel {channel_id} is not a text channel")
            return channel
        user = self._bot.get_user(event.owner_id) or await self._bot.fetch_user(event.owner_id)
        return await user.create_dm()

    async def _already_posted(
        self, destination: discord.abc.Messageable, view: discord.ui.View | None
    ) -> discord.Message | None:
        """A post a crash left unrecorded: the bot's recent message carrying the same marker
        (the result buttons' custom_ids). Posts without buttons carry no marker; for them a
        rare duplicate line is the price of never losing one (Discord's nonce dedupe covers
        the first minutes)."""
        wanted = _custom_ids(view.children) if view is not None else set()
        me = self._bot.user
        if not wanted or me is None:
            return None
        try:
            async for message in destination.history(limit=HISTORY_SCAN):
                if message.author.id != me.id:
                    continue
                found = _custom_ids(
                    child for row in message.components for child in getattr(row, "children", [])
                )
                if wanted & found:
                    return message
        except discord.HTTPException:
            return None  # cannot read history: posting again is the lesser harm
        return None

    async def _parts(
        self, event: JobEvent, channel_id: int | None, *, spoiler: bool = False
    ) -> list[tuple[str, list[discord.File]]]:
        text = result_text(event, label=await self._label(event.job), made=await self._made(event))
        if event.kind != EventKind.DONE or not event.images:
            return [(text, [])]

        def link(url: str) -> str:  # a spoilered link hides its embedded preview too
            return f"||{url}||" if spoiler else url

        if self._post_links:
            links = "\n".join(link(url) for url in event.images)
            return [(f"{text}\n{links}"[:2000], [])]
        limit = await self._file_limit(channel_id)
        per_file = min(limit.per_file, limit.per_request - MULTIPART_SLACK)
        images: list[tuple[bytes, str]] = []
        for url in event.images:
            try:
                data = await self._astria.fetch_image(url, max_bytes=MAX_IMAGE_DOWNLOAD)
            except AstriaError as exc:
                log.warning("%s: image not downloaded (%s); linking it", event.key, exc.message)
                text += f"\n{link(url)}"
                continue
            try:
                # Re-encoding a large image takes most of a second: never on the event loop.
                images.append(await asyncio.to_thread(fit, data, per_file))
            except CannotFit as exc:
                # No retry or DM would post it as a file either: its link goes in the post.
                log.warning("%s: image not posted as a file (%s); linking it", event.key, exc)
                text += f"\n{link(url)}"
        groups = batches([len(data) for data, _ in images], limit)
        job_id = JobRef.parse(event.job).id
        parts: list[tuple[str, list[discord.File]]] = []
        for number, group in enumerate(groups or [[]]):
            files = [
                discord.File(
                    io.BytesIO(images[i][0]),
                    filename=f"{job_id}-{i + 1}.{images[i][1]}",
                    spoiler=spoiler,  # Discord's way: the name starts with SPOILER_
                )
                for i in group
            ]
            content = text if number == 0 else f"({number + 1}/{len(groups)})"
            parts.append((content, files))
        return parts

    async def _file_limit(self, channel_id: int | None) -> Limits:
        """The upload limit where the post goes: the guild's, or a DM's (None)."""
        channel = self._bot.get_channel(channel_id) if channel_id is not None else None
        guild = getattr(channel, "guild", None)
        per_file = guild.filesize_limit if guild is not None else DM_FILE_LIMIT
        return Limits(per_file=per_file)

    # ------------------------------------------------------------------ progress

    async def progress(self, update: Progress) -> None:
        """Queue the newest status of a job; a later update for the same job replaces it."""
        lane = self._lane(update.channel_id)
        if update.job in lane.edits:
            self.edits_coalesced += 1
        lane.edits[update.job] = update
        self._latest[update.job] = update
        timer = self._eta_timers.pop(update.job, None)
        if timer is not None:
            timer.cancel()
        if update.state in _SETTLES_STATUS:
            self._latest.pop(update.job, None)
        self._kick(update.channel_id)

    def _show_again_at_eta(self, update: Progress, now: datetime) -> None:
        """Once the ETA has passed, the status says "any moment now" instead of counting
        up ("expected 2 minutes ago"): the same update is shown again then, unless a newer
        one came first."""
        if update.eta is None or update.eta <= now or update.job in self._eta_timers:
            return

        def again() -> None:
            self._eta_timers.pop(update.job, None)
            if self._latest.get(update.job) is not update:
                return  # a newer state is shown, or the job is over
            if self._clock() < (update.eta or now):
                self._show_again_at_eta(update, self._clock())  # the clock is not there yet
                return
            lane = self._lane(update.channel_id)
            lane.edits.setdefault(update.job, update)
            self._kick(update.channel_id)

        delay = (update.eta - now).total_seconds() + ETA_GRACE_SECONDS
        self._eta_timers[update.job] = asyncio.get_running_loop().call_later(delay, again)

    async def drain(self) -> None:
        """Wait until every queued status edit is sent (tests and shutdown); the pending
        "any moment now" re-renders are dropped (a status still counts down truly)."""
        for timer in self._eta_timers.values():
            timer.cancel()
        self._eta_timers.clear()
        for lane in list(self._lanes.values()):
            if lane.worker is not None:
                await lane.worker

    def _lane(self, channel_id: int) -> _ChannelLane:
        return self._lanes.setdefault(channel_id, _ChannelLane())

    def _kick(self, channel_id: int) -> None:
        lane = self._lane(channel_id)
        if lane.worker is None or lane.worker.done():
            lane.worker = asyncio.create_task(self._work(channel_id))

    async def _work(self, channel_id: int) -> None:
        lane = self._lane(channel_id)
        while lane.edits and lane.results_waiting == 0:
            job, update = next(iter(lane.edits.items()))
            del lane.edits[job]
            try:
                await self._show(update)
            except discord.HTTPException as exc:
                log.info("status of %s not shown (%s)", job, exc.text)
            except StoreFault as exc:  # the next update of the job shows it again
                log.warning("status of %s not recorded (%s)", job, exc)

    async def _record(self, ref: JobRef) -> TuneRecord | PromptRecord | None:
        if ref.kind == JobKind.TUNE:
            return await self._store.tunes.get(ref.id)
        return await self._store.prompts.get(ref.id)

    async def _made(self, event: JobEvent) -> Made | None:
        """What a tool made, for the result's words (None: a prompt's usual images)."""
        ref = JobRef.parse(event.job)
        if ref.kind != JobKind.PROMPT:
            return None
        record = await self._store.prompts.get(ref.id)
        if record is None or record.tool not in ("upscale", "vary"):
            return None
        strength = record.options.denoising_strength
        return Made(record.tool, (record.image_index or 0) + 1, strength)

    async def _label(self, job: str) -> str:
        """The prompt or the tune's name, as the status and the result quote it."""
        record = await self._record(JobRef.parse(job))
        if record is None:
            return ""
        return job_label(record.name if isinstance(record, TuneRecord) else record.user_text)

    async def _show(self, update: Progress) -> None:
        ref = JobRef.parse(update.job)
        record = await self._record(ref)
        if record is None:
            return
        if record.status_message_id is None and update.state in _SETTLES_STATUS:
            return  # never shown a status: the result post says it all
        label = job_label(record.name if isinstance(record, TuneRecord) else record.user_text)
        now = self._clock()
        content = progress_line(update, label=label, now=now)
        view = self._status_view(ref) if update.state in WAITING_STATES else None
        channel: object = self._bot.get_channel(update.channel_id)
        status_channel = record.status_channel_id or update.channel_id
        if update.state in _FINAL and record.status_message_id is not None:
            key = event_key(update.job, EventKind(update.state))
            posted = await self._store.events.messages(key)
            if not posted:
                return  # not delivered yet: the status stays until it is
            if any(where == status_channel for where, _ in posted.values()):
                # The result is posted beside it: one message per job, so the status goes.
                message = self._status_message(channel, status_channel, record.status_message_id)
                with contextlib.suppress(discord.NotFound):
                    await message.delete()
                    self.edits_sent += 1
                return
        if update.state in ("training", "generating") and update.eta is not None:
            self._show_again_at_eta(update, now)
        if record.status_message_id is not None:
            message = self._status_message(channel, status_channel, record.status_message_id)
            with contextlib.suppress(discord.NotFound):
                await message.edit(content=content, view=view, allowed_mentions=QUIET)
                self.edits_sent += 1
                return
        if channel is None:  # not in the cache yet (before READY, just after a restart)
            with contextlib.suppress(discord.HTTPException):
                channel = await self._bot.fetch_channel(update.channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            return
        # A status sent but not recorded before a crash is deduplicated when sent again.
        nonce = nonce_for(f"{update.job}:status")
        sent = await channel.send(
            content, view=view or discord.utils.MISSING, nonce=nonce, allowed_mentions=QUIET
        )
        self.edits_sent += 1
        setter: Callable[[int, int, int], Awaitable[object]] = (
            self._store.tunes.set_status_message
            if ref.kind == JobKind.TUNE
            else self._store.prompts.set_status_message
        )
        await setter(ref.id, sent.channel.id, sent.id)

    def _status_message(
        self, channel: object, channel_id: int, message_id: int
    ) -> discord.PartialMessage:
        """The status message, to edit in place wherever it is: a text channel, a thread or
        forum post, a voice or stage channel's chat, a DM; by channel id alone when the
        channel is not cached (an archived thread, just after a restart). Never sent again
        instead: Discord would answer a resend with the first message (enforce_nonce), so
        the status would never change."""
        if isinstance(channel, _EDITABLE) and channel.id == channel_id:
            return channel.get_partial_message(message_id)
        guild_id = getattr(getattr(channel, "guild", None), "id", None)
        messageable = self._bot.get_partial_messageable(channel_id, guild_id=guild_id)
        return messageable.get_partial_message(message_id)


def _failure(exc: BaseException) -> DeliveryFailed:
    """What a failed post means for trying again. Permanent: the channel is closed to the
    bot (403: Missing Permissions 50013, Missing Access 50001, a DM closed 50007), gone
    (404, Unknown Channel 10003: certain) or the post's body is refused (50035, 413:
    certain). Transient: Discord's 5xx, a 429 discord.py gave up waiting on, a lost
    connection or a timeout."""
    if isinstance(exc, ChannelGone):
        return DeliveryFailed(str(exc), certain=True)
    if isinstance(exc, discord.HTTPException):
        reason = f"{exc.status} {exc.code} {exc.text}".strip()[:200]
        if exc.status >= 500 or exc.status == 429:
            return DeliveryFailed(reason)
        if exc.code in (UNKNOWN_CHANNEL, UNKNOWN_USER, INVALID_FORM_BODY, ENTITY_TOO_LARGE):
            return DeliveryFailed(reason, certain=True)
        if exc.status == 413:
            return DeliveryFailed(reason, certain=True)
        return DeliveryFailed(reason, permanent=True)
    if isinstance(exc, discord.RateLimited):
        return DeliveryFailed(f"rate limited for {exc.retry_after:.0f}s")
    return DeliveryFailed(f"{type(exc).__name__}: {exc}"[:200])


def _custom_ids(items: Iterable[object]) -> set[str]:
    """custom_ids of buttons, dynamic items (which wrap a button) included."""
    return {cid for item in items if isinstance(cid := getattr(item, "custom_id", None), str)}


__all__ = ["ChannelGone", "DiscordDelivery"]
