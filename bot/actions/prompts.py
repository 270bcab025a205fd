"""Use cases on prompts: queue one with a tune, reroll a result, show its details, delete
it. The price is always the tune's own branch's, whatever the bot runs now."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Final

from bot.actions.context import Actor, Done, Outcome, Place, Refused, Services
from bot.actions.door import NOT_YOURS, admit_images, budget_refusal, parse_id
from bot.astria import AstriaError
from bot.rules.credits import format_mc, images_price, prompt_price
from bot.rules.prompts import (
    PromptOptions,
    PromptRefusal,
    TuneRef,
    build_prompt,
    display_text,
    prompt_options,
    rules_from,
)
from bot.rules.tools import Tool
from bot.store import PromptRecord, TuneRecord, TuneState, TuneUnavailable

log = logging.getLogger(__name__)

MAX_IMAGES: Final = 8
MAX_SEED: Final = 4_294_967_295
GONE: Final = "That result is not known any more."


@dataclass(frozen=True)
class PromptOrder:
    """What the member asked for in `/imagine`. `tune` is the picked option's value."""

    text: str
    tune: str
    count: int = 1
    seed: int | None = None
    options: PromptOptions = field(default_factory=PromptOptions)


async def queue_prompt(
    svc: Services,
    actor: Actor,
    place: Place,
    order: PromptOrder,
    *,
    tool: Tool = "imagine",
    parent_id: int | None = None,
) -> Outcome[PromptRecord]:
    refused = await admit_images(svc, actor, place)
    if refused is not None:
        return refused
    assert place.guild_id is not None
    tune_id = parse_id(order.tune, "a tune")
    if isinstance(tune_id, Refused):
        return tune_id
    if not 1 <= order.count <= MAX_IMAGES:
        return Refused(f"Ask for 1 to {MAX_IMAGES} images.")
    if order.seed is not None and not 0 <= order.seed <= MAX_SEED:
        return Refused(f"A seed is a whole number from 0 to {MAX_SEED}.")
    store = svc.store
    tune = await store.tunes.get_usable(actor.user_id, place.guild_id, tune_id)
    if tune is None:
        return Refused("That tune is not yours and not shared with this server.")
    unusable = _unusable(tune)
    if unusable is not None:
        return unusable
    assert tune.astria_id is not None
    usable = await store.tunes.list_usable(actor.user_id, place.guild_id, states=[TuneState.READY])
    settings = svc.settings
    rules = rules_from(settings)
    tune_profile = settings.profile_named(tune.profile)
    built = build_prompt(
        order.text,
        TuneRef(
            id=tune.id,
            astria_id=tune.astria_id,
            subject_class=tune.subject_class,
            profile=tune.profile,
            branch=tune.branch,
            token=tune_profile.token,
        ),
        settings.profile,
        rules,
        usable_astria_ids=[t.astria_id for t in usable if t.astria_id is not None],
    )
    if isinstance(built, PromptRefusal):
        return Refused(built.reason)
    options = prompt_options(order.options, tune_profile, rules)
    if isinstance(options, PromptRefusal):
        return Refused(options.reason)
    price = images_price(settings, order.count, tune.branch)
    try:
        created = await store.prompts.create(
            owner_id=actor.user_id,
            guild_id=place.guild_id,
            channel_id=place.channel_id or 0,
            tune_id=tune.id,
            user_text=built.user_text,
            final_text=built.final_text,
            num_images=order.count,
            price_mc=price,
            options=options,
            seed=order.seed,
            target_tune_id=built.target_tune_id,
            max_waiting=settings.max_waiting_per_member,
            tool=tool,
            parent_id=parent_id,
        )
    except TuneUnavailable as exc:  # deleted or expired since it was read above
        return _unusable(replace(tune, state=TuneState(exc.state))) or Refused(GONE)
    if not isinstance(created, PromptRecord):
        return await budget_refusal(svc, place.guild_id, "Not queued. ", created)
    svc.tracker.nudge()
    plural = "s" if order.count > 1 else ""
    return Done(
        f"🎨 Queued {order.count} image{plural} with **{display_text(tune.name, 32)}** "
        f"({format_mc(price)}). They will be posted in this channel.",
        created,
    )


async def reroll(
    svc: Services, actor: Actor, place: Place, prompt_id: int
) -> Outcome[PromptRecord]:
    """The same prompt again with a new seed, by anyone who may use its tune here: every
    rule of `/imagine` applies, and the price is the tune's branch's."""
    refused = await admit_images(svc, actor, place)
    if refused is not None:
        return refused
    assert place.guild_id is not None
    store = svc.store
    original = await store.prompts.get(prompt_id)
    if original is None or original.guild_id != place.guild_id:
        return Refused(GONE)
    tune = await store.tunes.get_usable(actor.user_id, place.guild_id, original.tune_id)
    if tune is None:
        return Refused(NOT_YOURS)
    unusable = _unusable(tune)
    if unusable is not None:
        return unusable
    if original.target_tune_id is None:
        return Refused(GONE)  # its tune never reached Astria
    options = original.options
    if not svc.settings.profile_named(tune.profile).takes_negative_prompt:
        # Made before negatives were refused on Flux: Flux ignored it then, so dropping
        # it changes nothing in the pictures.
        options = replace(options, negative_prompt=None)
    # An upscale rerolled is an upscale again: priced as one (super-resolution).
    price = prompt_price(
        svc.settings, original.num_images, tune.branch, super_resolution=options.super_resolution
    )
    try:
        created = await store.prompts.create(
            owner_id=actor.user_id,
            guild_id=place.guild_id,
            channel_id=place.channel_id or original.channel_id,
            tune_id=tune.id,
            user_text=original.user_text,
            final_text=original.final_text,
            num_images=original.num_images,
            price_mc=price,
            options=options,
            target_tune_id=original.target_tune_id,
            max_waiting=svc.settings.max_waiting_per_member,
            tool="reroll",
            parent_id=original.id,
            image_index=original.image_index,
        )
    except TuneUnavailable as exc:  # deleted or expired since it was read above
        return _unusable(replace(tune, state=TuneState(exc.state))) or Refused(GONE)
    if not isinstance(created, PromptRecord):
        return await budget_refusal(svc, place.guild_id, "Not rerolled. ", created)
    svc.tracker.nudge()
    return Done(
        f"🎲 Rerolling with a new seed ({format_mc(price)}); the images will be posted here.",
        created,
    )


def _unusable(tune: TuneRecord) -> Refused | None:
    shown = display_text(tune.name, 32)
    if tune.state in (TuneState.DELETED, TuneState.EXPIRED):
        return Refused(
            f"**{shown}** was {tune.state} (Astria no longer has it), so it cannot make "
            "new images. Train a new tune with `/tune create`."
        )
    if tune.state != TuneState.READY or tune.astria_id is None:
        return Refused(f"**{shown}** is not ready yet ({tune.state}).")
    return None


async def prompt_details(
    svc: Services, actor: Actor, place: Place, prompt_id: int
) -> Outcome[None]:
    """What was asked, with which seed and tune, and what it cost: for its owner only."""
    prompt = await svc.store.prompts.get(prompt_id)
    if prompt is None:
        return Refused(GONE)
    if prompt.owner_id != actor.user_id:
        return Refused(NOT_YOURS)
    tune = await svc.store.tunes.get(prompt.tune_id)
    cost = format_mc(prompt.cost_mc) if prompt.cost_mc is not None else "not settled yet"
    lines = [
        f"**Prompt:** {display_text(prompt.user_text, 600)}",
        f"**Seed:** {prompt.seed}",
        f"**Tune:** {display_text(tune.name, 32) if tune else 'deleted'}",
        f"**Images:** {prompt.num_images}",
        f"**Cost:** {cost}",
    ]
    made = _made_from(prompt)
    if made:
        lines.insert(1, f"**Made by:** {made}")
    return Done("\n".join(lines), None)


def _made_from(prompt: PromptRecord) -> str:
    """How a tool made the prompt from an earlier one, in words ("" for `/imagine`)."""
    options = prompt.options
    image = (prompt.image_index or 0) + 1
    if prompt.tool == "upscale":
        faces = ", faces repaired" if options.inpaint_faces else ""
        return f"Upscale of image {image} (super-resolution{faces})"
    if prompt.tool == "vary":
        return f"Vary of image {image} (denoising {options.denoising_strength})"
    return {"reroll": "Reroll", "edit": "Edit prompt"}.get(prompt.tool, "")


async def may_delete_result(
    svc: Services, actor: Actor, place: Place, prompt_id: int
) -> Outcome[PromptRecord]:
    """Whether `actor` may delete this result: its owner, or an admin of its server."""
    prompt = await svc.store.prompts.get(prompt_id)
    if prompt is None:
        return Refused(GONE)
    admin_here = actor.manages_guild and place.guild_id == prompt.guild_id
    if prompt.owner_id != actor.user_id and not admin_here:
        return Refused(NOT_YOURS)
    return Done("", prompt)


async def delete_result(
    svc: Services, actor: Actor, place: Place, prompt_id: int
) -> Outcome[PromptRecord]:
    """Delete a result at Astria; the caller then removes the posted messages
    (`value.result_message_ids`)."""
    allowed = await may_delete_result(svc, actor, place, prompt_id)
    if isinstance(allowed, Refused):
        return allowed
    prompt = allowed.value
    if prompt.astria_id is not None:
        try:
            await svc.astria.delete_prompt(prompt.astria_id)
        except AstriaError as exc:
            # The posts still go: what the member sees is what they asked to remove.
            log.warning("prompt %s not deleted at Astria (%s)", prompt.id, exc.message)
    marked = await svc.store.prompts.set_error(prompt.id, f"deleted by {actor.user_id}")
    return Done("🗑️ Deleted the images here and at Astria.", marked)
