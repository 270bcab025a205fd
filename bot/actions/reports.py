"""Spend charts: a server's last 30 days for its admins (`/admin spend chart:`), a member's
own for them (`/balance chart:`). The ledger's sums are read here, the picture is drawn
in a worker thread (bot/report), and the front only attaches the bytes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date
from typing import Final

from bot.actions.context import Actor, Done, Outcome, Place, Refused, Services, acting
from bot.actions.door import require_admin
from bot.report.spend_chart import render_spend_chart
from bot.rules.prompts import clean_name
from bot.rules.spending import (
    CHART_DAYS,
    ERASED_ID,
    TOP_MEMBERS,
    SpendSummary,
    ranked_members,
    summarize,
    window,
)

log = logging.getLogger(__name__)

# Asks the front for members' current display names (Discord knows them; the core does
# not); ids it cannot name are left out of the answer.
NameLookup = Callable[[Sequence[int]], Awaitable[Mapping[int, str]]]
CHART_FAILED: Final = "The chart could not be drawn this time; the figures above stand."


async def no_names(user_ids: Sequence[int]) -> Mapping[int, str]:
    return {}


@acting
async def guild_spend_chart(
    svc: Services, actor: Actor, place: Place, names: NameLookup = no_names
) -> Outcome[bytes | None]:
    """The server's spend over the last 30 days as a PNG (None if it could not be drawn),
    for its admins: per day by kind of job, the top members by name, and per kind."""
    refused = require_admin(actor, place)
    if refused is not None:
        return refused
    assert place.guild_id is not None
    guild = place.guild_id
    today, rows = await svc.store.ledger.daily_spend(guild, days=CHART_DAYS)
    top = [u for u, _ in ranked_members(rows)[:TOP_MEMBERS] if u is not None and u != ERASED_ID]
    known = dict(await svc.store.tunes.owner_names(guild, top))
    try:
        known.update(await names(top))
    except Exception:  # a name is a nicety: the stored ones (or ids) do
        log.warning("could not look up members' names for the spend chart", exc_info=True)
    title = f"Spend on this server, the last {CHART_DAYS} days"
    summary = summarize(rows, title=title, last_day=today, names=known)
    return await _drawn(summary, today)


@acting
async def member_spend_chart(svc: Services, actor: Actor, place: Place) -> Outcome[bytes | None]:
    """A member's own spend in this server over the last 30 days as a PNG."""
    if place.guild_id is None:
        return Refused("Use this in a server.")
    today, rows = await svc.store.ledger.daily_spend(
        place.guild_id, user_id=actor.user_id, days=CHART_DAYS
    )
    name = clean_name(actor.display_name)
    title = f"{name}'s spend here" if name else "Your spend here"
    summary = summarize(
        rows, title=f"{title}, the last {CHART_DAYS} days", last_day=today, members=False
    )
    return await _drawn(summary, today)


async def _drawn(summary: SpendSummary, today: date) -> Done[bytes | None]:
    first, last = window(today, CHART_DAYS)
    text = f"Spend from {first:%b} {first.day} to {last:%b} {last.day} (UTC days), attached."
    try:
        png = await asyncio.to_thread(render_spend_chart, summary)
    except Exception:  # matplotlib failing must not cost the admin their answer
        log.exception("drawing the spend chart failed")
        return Done(CHART_FAILED, None)
    return Done(text, png)
