"""Use cases on tunes: quote and start one (from uploaded or posted photos), delete one,
and take a waiting job out of the queue."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bot.actions.context import Actor, Done, Outcome, Place, Refused, Services, acting
from bot.actions.door import NOT_YOURS, admit, budget_refusal, in_server
from bot.jobs.removal import delete_tune as remove_everywhere
from bot.logs import bind_job
from bot.rules.credits import decide, format_mc, tune_price
from bot.rules.intake import PhotoSource, forget, refused_list
from bot.rules.prompts import PromptRefusal, clean_name, display_text, subject_classes, tune_name
from bot.store import JobKind, JobRef, NameTaken, PromptRecord, TuneRecord, TuneState

log = logging.getLogger(__name__)

CONSENT_NEEDED: Final = (
    "Not started: a tune may only be trained on photos of you, or of someone who agreed to it."
)
NOT_YOUR_MESSAGE: Final = (
    "You can only train from your own message: training on someone else's photos needs "
    "their consent. They can use this menu on their own message."
)


@dataclass(frozen=True)
class TuneQuote:
    """What a new tune costs and what the member may still spend after it."""

    price_mc: int
    left_mc: int
    photos: int | None = None  # posted photos that will be used (the message menu)


@dataclass(frozen=True)
class PostedPhotos:
    """Photos already posted in a message, for the message menu."""

    author_id: int
    count: int


@dataclass(frozen=True)
class TuneOrder:
    """What the member filled in: the form's fields and the photos to read."""

    name: str
    subject_class: str
    consent: bool
    photos: Sequence[PhotoSource]


@acting
async def quote_tune(
    svc: Services, actor: Actor, place: Place, posted: PostedPhotos | None = None
) -> Outcome[TuneQuote]:
    """The fast checks a tune form must pass before it opens (it is the interaction's
    first response, so nothing slow): the server's rules, whose photos, the budget."""
    refused = await admit(svc, actor, place)
    if refused is not None:
        return refused
    count = None
    if posted is not None:
        if posted.author_id != actor.user_id:
            return Refused(NOT_YOUR_MESSAGE)
        rules = svc.intake.rules
        if posted.count < rules.min_photos:
            plural = "s" if posted.count != 1 else ""
            return Refused(
                f"This message has {posted.count} photo{plural}; a tune needs "
                f"{rules.min_photos} at least. Post them in one message, or use "
                "`/tune create` to upload them in a form."
            )
        count = min(posted.count, rules.max_photos)
    assert place.guild_id is not None
    quote = await _price_fits(svc, actor, place.guild_id)
    if isinstance(quote, Refused):
        return quote
    return Done("", TuneQuote(quote.price_mc, quote.left_mc, count))


async def _price_fits(svc: Services, actor: Actor, guild_id: int) -> TuneQuote | Refused:
    """A new tune's price (the bot's current branch) against every budget, before any
    photo is read; the store's transaction checks again when it reserves."""
    price = tune_price(svc.settings)
    snapshot = await svc.store.ledger.budget(guild_id, actor.user_id)
    refusal = decide(price, snapshot, paid=svc.settings.astria_branch != "fast")
    if refusal is not None:
        return await budget_refusal(svc, guild_id, "Not started: ", refusal)
    return TuneQuote(price, max(0, snapshot.member_remaining_mc - price))


@acting
async def start_tune(
    svc: Services, actor: Actor, place: Place, order: TuneOrder
) -> Outcome[TuneRecord]:
    """The form was submitted: every rule again (time has passed since it opened), then
    read and check the photos, then reserve and queue in one transaction."""
    refused = await admit(svc, actor, place)
    if refused is not None:
        return refused
    assert place.guild_id is not None
    if not order.consent:
        return Refused(CONSENT_NEEDED)
    name = tune_name(order.name)
    if isinstance(name, PromptRefusal):
        return Refused(name.reason)
    settings = svc.settings
    if order.subject_class not in subject_classes(settings.model_profile):
        return Refused("Pick who or what is in the photos from the list.")
    store = svc.store
    if await store.tunes.by_name(actor.user_id, name) is not None:
        return Refused(_taken(name))
    quote = await _price_fits(svc, actor, place.guild_id)
    if isinstance(quote, Refused):
        return quote
    price = quote.price_mc
    taken = await svc.intake.take(order.photos)
    try:
        if taken.problem is not None:
            listing = refused_list(taken.problems)
            return Refused(f"Not started: {taken.problem.reason}.\n{listing}".strip()[:1900])
        created = await _record_tune(svc, actor, place, order, name, price, taken.paths)
    finally:
        svc.intake.release(taken)  # in a tune row now, or forgotten: the sweep may judge
    if isinstance(created, Refused):
        return created
    svc.tracker.nudge()
    cost = "free" if price == 0 else format_mc(price)
    text = (
        f"🧠 Training **{display_text(name, 32)}** ({order.subject_class}) from "
        f"{len(taken.paths)} photos ({cost}). Its progress shows in this channel, and you "
        "will be told there when it is ready."
    )
    if taken.problems:
        text += f"\nLeft out:\n{refused_list(taken.problems)}"
    return Done(text[:2000], created)


async def _record_tune(
    svc: Services,
    actor: Actor,
    place: Place,
    order: TuneOrder,
    name: str,
    price: int,
    paths: Sequence[Path],
) -> TuneRecord | Refused:
    """The tune row with its photos' paths, its reservation in the same transaction; the
    photos are forgotten when no row is written."""
    assert place.guild_id is not None
    settings = svc.settings
    try:
        created = await svc.store.tunes.create(
            owner_id=actor.user_id,
            guild_id=place.guild_id,
            channel_id=place.channel_id or 0,
            name=name,
            subject_class=order.subject_class,
            profile=settings.model_profile,
            branch=settings.astria_branch,
            photo_paths=[str(p) for p in paths],
            price_mc=price,
            owner_name=clean_name(actor.display_name),
            max_waiting=settings.max_waiting_per_member,
        )
    except NameTaken:
        forget(paths)
        return Refused(_taken(name))
    except BaseException:
        forget(paths)
        raise
    if not isinstance(created, TuneRecord):
        forget(paths)
        return await budget_refusal(svc, place.guild_id, "Not started: ", created)
    bind_job(created.job)  # the rest of the action's lines name the new job
    return created


def _taken(name: str) -> str:
    return f"You already have a tune named **{display_text(name, 32)}**; pick another name."


@acting
async def ask_delete_tune(
    svc: Services, actor: Actor, place: Place, name: str
) -> Outcome[TuneRecord | None]:
    """`/tune delete`: a queued tune is cancelled at once (value None); a ready one needs
    the member's confirmation (value: the tune, text: the question)."""
    refused = in_server(place)
    if refused is not None:
        return refused
    tune = await svc.store.tunes.by_name(actor.user_id, name)
    if tune is None:
        return Refused("You have no tune by that name (see `/tune list`).")
    shown = display_text(tune.name, 32)
    if tune.state == TuneState.QUEUED:
        if await svc.tracker.cancel_queued(tune.job, actor.user_id):
            return Done(
                f"🚫 **{shown}** was still waiting: cancelled, and your credit was given back.",
                None,
            )
        return Refused(f"**{shown}** has just started training; delete it once it is ready.")
    if tune.state != TuneState.READY:
        return Refused(
            f"**{shown}** is {tune.state}; it can be deleted once it is ready "
            "(an admin can cancel a stuck one)."
        )
    return Done(
        f"Delete **{shown}**? The model, its training photos and the images made with it "
        "are deleted at Astria. This cannot be undone.",
        tune,
    )


@acting
async def may_delete_tune(
    svc: Services, actor: Actor, place: Place, tune_id: int
) -> Outcome[TuneRecord]:
    """Whether `actor` may delete this tune: its owner, or an admin of the server it was
    made in (checked before the slow part, so a stranger is answered at once)."""
    tune = await svc.store.tunes.get(tune_id)
    if tune is None or not _may_remove(actor, place, tune.owner_id, tune.guild_id):
        return Refused(NOT_YOURS)
    return Done("", tune)


@acting
async def delete_tune(svc: Services, actor: Actor, place: Place, tune_id: int) -> Outcome[None]:
    """The member confirmed: delete the tune at Astria (with its prompts), then here. Its
    owner may, and an admin of the server it was made in."""
    allowed = await may_delete_tune(svc, actor, place, tune_id)
    if isinstance(allowed, Refused):
        return allowed
    tune = allowed.value
    shown = display_text(tune.name, 32)
    if tune.state != TuneState.READY:
        return Done(f"**{shown}** is already gone.", None)
    removed = await remove_everywhere(svc.store, svc.astria, tune)
    extra = f" and {removed.prompts_deleted} prompts" if removed.prompts_deleted else ""
    return Done(
        f"🗑️ Deleted **{shown}**{extra} at Astria. Images already posted stay in Discord.", None
    )


@acting
async def cancel_waiting(svc: Services, actor: Actor, place: Place, job: JobRef) -> Outcome[None]:
    """The owner takes a job still waiting in the queue out of it; its credit is released."""
    store = svc.store
    record: TuneRecord | PromptRecord | None = (
        await store.tunes.get(job.id)
        if job.kind == JobKind.TUNE
        else await store.prompts.get(job.id)
    )
    if record is None or record.owner_id != actor.user_id:
        return Refused("Only the member who started this can cancel it.")
    if await svc.tracker.cancel_queued(job, actor.user_id):
        return Done("🚫 Cancelled; your credit was given back.", None)
    cost = await svc.tracker.cancel_running(job, actor.user_id)
    if cost is not None:
        paid = f"Astria charged {format_mc(cost)} for it" if cost else "it cost nothing"
        return Done(f"🚫 Stopped at Astria; {paid}.", None)
    return Refused("This can't be cancelled any more: it has already finished.")


def _may_remove(actor: Actor, place: Place, owner_id: int, guild_id: int) -> bool:
    if owner_id == actor.user_id:
        return True
    return actor.manages_guild and place.guild_id == guild_id
