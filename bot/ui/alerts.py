"""Posting the admins' alerts: drains the alert outbox (bot/store/alerts.py) into each
server's alert channel. A new alert is posted once (a deterministic nonce: a post that
reached Discord before a kill is answered with the same message when sent again); a count
that grew since is shown by editing that post, never by posting again.

Failures wait and are tried again, doubling from `RETRY_BASE` to `RETRY_CAP`, also across
restarts (the outbox keeps the attempt); the first pass after a start tries everything at
once. An alert is dropped when its server turned alerts off, its channel is gone, or it
could not be posted for a day.

With several processes one posts at a time: the holder of the outbox's posting claim
(`Alerts.claim_posting`, a `POSTER_LEASE` renewed at every look and before every post). The
others look, find it held, and post nothing; when its holder dies its lease runs out and
the next process to look takes it over (within `POSTER_LEASE` + `IDLE_SECONDS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import discord

from bot.store import AlertRecord, Store, StoreError
from bot.ui.nonce import nonce_for

if TYPE_CHECKING:
    from discord.ext import commands

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
QUIET = discord.AllowedMentions.none()  # an alert never pings anyone
RETRY_BASE = timedelta(seconds=5)
RETRY_CAP = timedelta(minutes=10)
GIVE_UP_AFTER = timedelta(days=1)
IDLE_SECONDS = 5.0  # the outbox is looked at this often even without a nudge
POSTER_LEASE = timedelta(seconds=30)  # renewed at every look (at least every IDLE_SECONDS)


def alert_text(alert: AlertRecord) -> str:
    """The post: the latest fault's words, and how many there were in the window."""
    text = alert.text
    if alert.count > 1:
        since = int(alert.opened_at.timestamp())
        latest = int(alert.updated_at.timestamp())
        text += f"\n-# {alert.count} times since <t:{since}:R>, the latest <t:{latest}:R>."
    return text[:2000]


class AlertPoster:
    def __init__(
        self, bot: commands.Bot, store: Store, *, clock: Clock, holder: str = "bot"
    ) -> None:
        self._bot = bot
        self._store = store
        self._clock = clock
        self._holder = holder  # PROCESS_ID: whose claim lets it post
        self._due = asyncio.Event()
        self._stopping = False
        self._first = True
        self.posted = 0  # posts and edits made (tests read it)
        store.alerts.on_raised(self.nudge)  # raised in another process: look now

    def nudge(self) -> None:
        """An alert was written: post it now rather than at the next look."""
        self._due.set()

    async def run(self) -> None:
        await self._bot.wait_until_ready()
        while not self._stopping:
            self._due.clear()
            try:
                await self.drain()
            except Exception:
                log.exception("posting alerts failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), timeout=IDLE_SECONDS)

    def stop(self) -> None:
        self._stopping = True
        self._due.set()

    async def release(self) -> None:
        """Hand the posting claim back (a clean stop), so another process posts at once."""
        try:
            await self._store.alerts.release_posting(self._holder)
        except StoreError as exc:
            log.warning("the alert posting claim was not handed back (%s)", exc)

    async def drain(self) -> None:
        """Post or update every alert that is due, if this process holds the posting claim
        (renewed before each post: one that lost it stops)."""
        now = self._clock()
        if not await self._store.alerts.claim_posting(self._holder, POSTER_LEASE):
            return  # another process posts them
        due_by = None if self._first else now
        self._first = False
        for alert in await self._store.alerts.pending(due_by=due_by):
            if self._stopping:
                return
            if not await self._store.alerts.claim_posting(self._holder, POSTER_LEASE):
                log.warning("the alert posting claim passed to another process; stopping")
                return
            await self._one(alert, now)

    async def _one(self, alert: AlertRecord, now: datetime) -> None:
        channel_id = alert.channel_id if alert.posted else alert.alert_channel_id
        if channel_id is None:
            log.info("alert %d dropped: its server turned alerts off", alert.id)
            await self._store.alerts.give_up(alert.id)
            return
        try:
            message_id = await self._show(alert, channel_id)
        except (discord.NotFound, _Gone):
            if alert.posted:  # its post was deleted: the count is not shown again
                await self._store.alerts.mark_shown(
                    alert.id, alert.count, channel_id=None, message_id=None
                )
            else:
                log.warning("alert %d dropped: channel %d is gone", alert.id, channel_id)
                await self._store.alerts.give_up(alert.id)
            return
        except (discord.HTTPException, OSError, TimeoutError) as exc:
            await self._failed(alert, now, exc)
            return
        try:
            await self._store.alerts.mark_shown(
                alert.id, alert.count, channel_id=channel_id, message_id=message_id
            )
        except StoreError as exc:  # posted again later: the nonce makes that the same post
            log.warning("alert %d posted but not recorded (%s)", alert.id, exc)
        self.posted += 1

    async def _show(self, alert: AlertRecord, channel_id: int) -> int:
        content = alert_text(alert)
        guild = self._bot.get_guild(alert.guild_id)
        if alert.message_id is not None:
            messageable = self._bot.get_partial_messageable(
                channel_id, guild_id=None if guild is None else guild.id
            )
            await messageable.get_partial_message(alert.message_id).edit(
                content=content, allowed_mentions=QUIET
            )
            return alert.message_id
        channel = self._bot.get_channel(channel_id) or await self._bot.fetch_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            raise _Gone(f"channel {channel_id} is not a text channel")
        sent = await channel.send(
            content, nonce=nonce_for(f"alert:{alert.id}"), allowed_mentions=QUIET
        )
        return sent.id

    async def _failed(self, alert: AlertRecord, now: datetime, exc: BaseException) -> None:
        if now - alert.opened_at > GIVE_UP_AFTER:
            log.warning("alert %d dropped after a day of failures (%s)", alert.id, exc)
            await self._store.alerts.give_up(alert.id)
            return
        delay = min(RETRY_CAP, RETRY_BASE * (1 << min(alert.attempts, 16)))
        log.warning(
            "alert %d not posted (attempt %d: %s); trying again in %ds",
            alert.id,
            alert.attempts + 1,
            str(exc)[:200],
            delay.total_seconds(),
        )
        await self._store.alerts.record_failure(alert.id, next_attempt_at=now + delay)


class _Gone(Exception):
    """The alert channel is not one the bot can post in (no longer a text channel)."""


__all__ = ["AlertPoster", "alert_text"]
