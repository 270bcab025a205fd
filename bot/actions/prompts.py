"""Use cases on prompts: queue one with a tune, reroll a result, show its details, delete
it. The price is always the tune's own branch's, whatever the bot runs now."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from bot.actions.context import Actor, Done, Outcome, Place, Refused, Services, acting
from bot.actions.door import NOT_YOURS, admit_images, budget_refusal, parse_id
from bot.astria import AstriaError
from bot.logs import bind_job
from bot.rules.credits import Denial, format_mc, prompt_price
from bot.rules.intake import IntakeResult, PhotoSource, forget
from bot.rules.prompts import (
    PromptOptions,
    PromptRefusal,
    TuneRef,
    build_prompt,
    display_text,
    prompt_options,
    rules_from,
)
from bot.rules.tools import FROM_IMAGE_STRENGTH, MAX_STRENGTH, MIN_STRENGTH, Tool
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
    # Image-to-image from a member's picture: read at submit (Discord's links expire),
    # checked and prepared like a training photo; `strength` is its denoising.
    image: PhotoSource | None = None
    strength: float | None = None


NO_IMAGE_FOR_STRENGTH: Final = (
    "`strength` says how far to move away from an image: attach one in `image`, or leave "
    "`strength` out."
)
NO_READY_TUNE: Final = "You have no ready tune here yet: train one with `/tune create`."
PACK_REROLL: Final = "A pack's prompt is not rerolled alone: run the pack again with `/pack run`."
SOURCE_GONE: Final = (
    "The image this was made from is not kept once Astria has it; run `/imagine` with the "
    "image again."
)


@acting
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
    guild_id = place.guild_id  # narrowed for the lambda below too
    tune_id = await _tune_id(svc, actor, place.guild_id, order.tune)
    if isinstance(tune_id, Refused):
        return tune_id
    strength = order.strength
    if order.image is None and strength is not None:
        return Refused(NO_IMAGE_FOR_STRENGTH)
    if order.image is not None:
        strength = FROM_IMAGE_STRENGTH if strength is None else strength
        if not MIN_STRENGTH <= strength <= MAX_STRENGTH:
            return Refused(f"`strength` is a number from {MIN_STRENGTH} to {MAX_STRENGTH}.")
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
    price = prompt_price(
        settings,
        order.count,
        tune.branch,
        super_resolution=options.super_resolution,
        high_resolution=options.resolution is not None,
    )
    taken: IntakeResult | None = None
    if order.image is not None:
        # Read only now, once every cheap rule passed; refused here, nothing is charged.
        taken = await svc.intake.take_one(order.image)
        if taken.problem is not None or not taken.paths:
            svc.intake.release(taken)
            return Refused(f"Not queued: {_image_problem(taken)}")
        options = replace(
            options, input_image_path=str(taken.paths[0]), denoising_strength=strength
        )
    try:
        created = await queue_created(
            svc,
            place,
            tune,
            "Not queued. ",
            lambda: store.prompts.create(
                owner_id=actor.user_id,
                guild_id=guild_id,
                channel_id=place.channel_id or 0,
                tune_id=tune.id,
                user_text=built.user_text,
                final_text=built.final_text,
                num_images=order.count,
                price_mc=price,
                options=options,
                seed=order.seed,
                target_tune_id=built.target_tune_id,
                max_waiting=svc.settings.max_waiting_per_member,
                tool=tool,
                parent_id=parent_id,
            ),
        )
    finally:
        if taken is not None:
            svc.intake.release(taken)  # in a prompt row now, or forgotten below
    if isinstance(created, Refused):
        if taken is not None:
            forget(taken.paths)
        return created
    plural = "s" if order.count > 1 else ""
    return Done(
        f"🎨 Queued {order.count} image{plural} with **{display_text(tune.name, 32)}**"
        f"{_extras(options)} ({format_mc(price)}). They will be posted in this channel.",
        created,
    )


async def source_kept(options: PromptOptions) -> bool:
    """Whether a member's source image is still on disk (True when there is none): it is
    kept until Astria has the prompt, then swept, so a later Reroll or Edit may find it
    gone."""
    path = options.input_image_path
    return path is None or await asyncio.to_thread(Path(path).is_file)


def _image_problem(taken: IntakeResult) -> str:
    """Why the member's picture cannot be a source, in their words."""
    if taken.problems:
        return f"{taken.problems[0]}."
    return f"{taken.problem}." if taken.problem is not None else "the image could not be read."


async def _tune_id(svc: Services, actor: Actor, guild_id: int, picked: str) -> int | Refused:
    """The tune `picked` names: its id (the `/imagine` option's value), its name (typed in
    the form), or nothing: the member's newest ready tune (else one shared here)."""
    text = picked.strip()
    if text.isascii() and text.isdigit():
        return parse_id(text, "a tune")
    usable = await svc.store.tunes.list_usable(actor.user_id, guild_id, states=[TuneState.READY])
    if not text:
        own = [t for t in usable if t.owner_id == actor.user_id]
        chosen = max(own or usable, key=lambda t: t.id, default=None)
        return chosen.id if chosen is not None else Refused(NO_READY_TUNE)
    wanted = text.casefold()
    named = [t for t in usable if t.name.casefold() == wanted]
    if not named:
        return parse_id(text, "a tune")  # not a name either: the option's own refusal
    return min(named, key=lambda t: (t.owner_id != actor.user_id, -t.id)).id


def _extras(options: PromptOptions) -> str:
    """The chosen style, quality and source image, in words for the queue answer."""
    parts = []
    if options.input_image_path:
        parts.append(f"from your image (strength {options.denoising_strength})")
    if options.style:
        parts.append(f"style {options.style}")
    if options.quality == "high":
        parts.append("high resolution (2K)")
    elif options.quality == "super":
        parts.append("super-resolution (x4)")
    return ", " + ", ".join(parts) if parts else ""


@dataclass(frozen=True)
class FromImageQuote:
    """What the "Imagine from this image" form says before it opens: the price of one
    image with the tune it would use when the member leaves the tune empty."""

    tune_name: str
    image_price_mc: int


async def quote_from_image(svc: Services, actor: Actor, place: Place) -> Outcome[FromImageQuote]:
    """Whether `actor` may make images from a posted picture here: the server's rules and
    a ready tune to make them with (checked before the form opens, and all again at
    submit by `queue_prompt`)."""
    refused = await admit_images(svc, actor, place)
    if refused is not None:
        return refused
    assert place.guild_id is not None
    picked = await _tune_id(svc, actor, place.guild_id, "")
    if isinstance(picked, Refused):
        return picked
    tune = await svc.store.tunes.get(picked)
    assert tune is not None
    price = prompt_price(svc.settings, 1, tune.branch)
    return Done("", FromImageQuote(display_text(tune.name, 32), price))


@acting
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
    if await store.packs.run_of(original.id) is not None:
        # Astria made it for a pack, where its text may only work (a LoRA tune's pack
        # prompts live on the tune itself): the pack is what runs again.
        return Refused(PACK_REROLL)
    tune = await store.tunes.get_usable(actor.user_id, place.guild_id, original.tune_id)
    if tune is None:
        return Refused(NOT_YOURS)
    unusable = _unusable(tune)
    if unusable is not None:
        return unusable
    target = original.target_tune_id
    if target is None:
        return Refused(GONE)  # its tune never reached Astria
    guild_id = place.guild_id
    options = original.options
    if not await source_kept(options):
        return Refused(SOURCE_GONE)
    if not svc.settings.profile_named(tune.profile).takes_negative_prompt:
        # Made before negatives were refused on Flux: Flux ignored it then, so dropping
        # it changes nothing in the pictures.
        options = replace(options, negative_prompt=None)
    # An upscale rerolled is an upscale again: priced as one (super-resolution).
    price = prompt_price(
        svc.settings,
        original.num_images,
        tune.branch,
        super_resolution=options.super_resolution,
        high_resolution=options.resolution is not None,
    )
    created = await queue_created(
        svc,
        place,
        tune,
        "Not rerolled. ",
        lambda: store.prompts.create(
            owner_id=actor.user_id,
            guild_id=guild_id,
            channel_id=place.channel_id or original.channel_id,
            tune_id=tune.id,
            user_text=original.user_text,
            final_text=original.final_text,
            num_images=original.num_images,
            price_mc=price,
            options=options,
            target_tune_id=target,
            max_waiting=svc.settings.max_waiting_per_member,
            tool="reroll",
            parent_id=original.id,
            image_index=original.image_index,
        ),
    )
    if isinstance(created, Refused):
        return created
    return Done(
        f"🎲 Rerolling with a new seed ({format_mc(price)}); the images will be posted here.",
        created,
    )


async def queue_created(
    svc: Services,
    place: Place,
    tune: TuneRecord,
    lead: str,
    create: Callable[[], Awaitable[PromptRecord | Denial]],
) -> PromptRecord | Refused:
    """How every way of making a prompt ends (`/imagine`, Reroll, Edit, the image tools):
    `create` writes the job with its reservation in one transaction; a budget's refusal
    becomes words (saying when the admins were alerted), a tune deleted or expired
    meanwhile is named, the new job is bound to the log lines, and the tracker woken."""
    try:
        created = await create()
    except TuneUnavailable as exc:  # deleted or expired since it was read
        return _unusable(replace(tune, state=TuneState(exc.state))) or Refused(GONE)
    if not isinstance(created, PromptRecord):
        assert place.guild_id is not None
        return await budget_refusal(svc, place.guild_id, lead, created)
    bind_job(created.job)  # the rest of the action's lines name the new job
    svc.tracker.nudge()
    return created


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


@acting
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
    extras = _extras(prompt.options).removeprefix(", ")
    if extras and prompt.tool != "upscale":
        lines.insert(1, f"**Options:** {extras}")
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


@acting
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


@acting
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
