"""The per-image tools on a result (Upscale, Vary subtle / strong) and Edit prompt.

Each passes the same door as `/imagine` and Reroll (the server's rules, then whether the
member may use the result's tune here), is priced by the tune's own branch, and is queued
with its reservation in one store transaction; the tracker sends it and delivery posts it
once. What the tools send Astria is `bot.rules.tools`'s to decide.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bot.actions.context import Actor, Done, Outcome, Place, Refused, Services, acting
from bot.actions.door import NOT_YOURS, admit_images
from bot.actions.prompts import (
    GONE,
    SOURCE_GONE,
    PromptOrder,
    _unusable,
    queue_created,
    queue_prompt,
    source_kept,
)
from bot.rules.credits import format_mc, prompt_price
from bot.rules.prompts import PromptOptions
from bot.rules.tools import (
    UPSCALE_DENOISING,
    VARY_IMAGES,
    VARY_STRENGTHS,
    Strength,
    Tool,
    inpaints_faces,
)
from bot.store import PromptRecord, PromptState, TuneRecord

NO_IMAGES = "That result has no images to work from (yet)."
NO_SUCH_IMAGE = "That result has no such image."
UPSCALED_ALREADY = "That image is upscaled already."


@dataclass(frozen=True)
class _Source:
    original: PromptRecord
    tune: TuneRecord


async def _source(svc: Services, actor: Actor, place: Place, prompt_id: int) -> _Source | Refused:
    """The result a tool starts from and its tune, if `actor` may use them in `place`."""
    refused = await admit_images(svc, actor, place)
    if refused is not None:
        return refused
    assert place.guild_id is not None
    original = await svc.store.prompts.get(prompt_id)
    if original is None or original.guild_id != place.guild_id:
        return Refused(GONE)
    tune = await svc.store.tunes.get_usable(actor.user_id, place.guild_id, original.tune_id)
    if tune is None:
        return Refused(NOT_YOURS)
    unusable = _unusable(tune)
    if unusable is not None:
        return unusable
    if original.target_tune_id is None:
        return Refused(GONE)  # its tune never reached Astria
    return _Source(original, tune)


@acting
async def upscale(
    svc: Services, actor: Actor, place: Place, prompt_id: int, index: int
) -> Outcome[PromptRecord]:
    """Image `index` of a result again at four times the size (super-resolution), posted
    as a reply to the result."""
    return await _from_image(svc, actor, place, prompt_id, index, "upscale", None)


@acting
async def vary(
    svc: Services, actor: Actor, place: Place, prompt_id: int, index: int, strength: Strength
) -> Outcome[PromptRecord]:
    """New images from image `index` of a result, with a new seed, subtly or strongly."""
    return await _from_image(svc, actor, place, prompt_id, index, "vary", strength)


async def _from_image(
    svc: Services,
    actor: Actor,
    place: Place,
    prompt_id: int,
    index: int,
    tool: Tool,
    strength: Strength | None,
) -> Outcome[PromptRecord]:
    source = await _source(svc, actor, place, prompt_id)
    if isinstance(source, Refused):
        return source
    original, tune = source.original, source.tune
    if original.state != PromptState.DELIVERED or not original.image_urls:
        return Refused(NO_IMAGES)
    if not 0 <= index < len(original.image_urls):
        return Refused(NO_SUCH_IMAGE)
    if tool == "upscale" and original.options.super_resolution:
        return Refused(UPSCALED_ALREADY)  # 16x would pass any upload limit
    target, guild_id = original.target_tune_id, place.guild_id
    assert target is not None and guild_id is not None
    settings = svc.settings
    negative = original.options.negative_prompt
    if not settings.profile_named(tune.profile).takes_negative_prompt:
        negative = None
    base = replace(
        PromptOptions(aspect_ratio=original.options.aspect_ratio, negative_prompt=negative),
        input_image_url=original.image_urls[index],
    )
    if strength is None:
        options = replace(
            base,
            denoising_strength=UPSCALE_DENOISING,
            super_resolution=True,
            inpaint_faces=inpaints_faces(tune.subject_class),
        )
        count = 1
    else:
        options = replace(base, denoising_strength=VARY_STRENGTHS[strength])
        count = VARY_IMAGES
    price = prompt_price(settings, count, tune.branch, super_resolution=options.super_resolution)
    created = await queue_created(
        svc,
        place,
        tune,
        "Not queued. ",
        lambda: svc.store.prompts.create(
            owner_id=actor.user_id,
            guild_id=guild_id,
            channel_id=place.channel_id or original.channel_id,
            tune_id=tune.id,
            user_text=original.user_text,
            final_text=original.final_text,
            num_images=count,
            price_mc=price,
            options=options,
            target_tune_id=target,
            max_waiting=settings.max_waiting_per_member,
            tool=tool,
            parent_id=original.id,
            image_index=index,
        ),
    )
    if isinstance(created, Refused):
        return created
    if strength is None:
        said = f"⬆️ Upscaling image {index + 1} ({format_mc(price)}); it will be posted as a reply."
    else:
        said = (
            f"🪄 Making {count} {strength} variations of image {index + 1} "
            f"({format_mc(price)}); they will be posted here."
        )
    return Done(said, created)


@dataclass(frozen=True)
class EditDraft:
    """What the Edit form shows filled in: the member's words, and the negative prompt
    when the tune's model reads one (None: the form has no negative field)."""

    prompt_id: int
    text: str
    negative: str | None
    price_mc: int


@acting
async def edit_form(
    svc: Services, actor: Actor, place: Place, prompt_id: int
) -> Outcome[EditDraft]:
    """Whether `actor` may edit and queue this result's prompt here, and the draft."""
    source = await _source(svc, actor, place, prompt_id)
    if isinstance(source, Refused):
        return source
    original, tune = source.original, source.tune
    takes_negative = svc.settings.profile_named(tune.profile).takes_negative_prompt
    negative = (original.options.negative_prompt or "") if takes_negative else None
    count = _edit_count(original)
    kept = _kept_options(original)
    price = prompt_price(
        svc.settings,
        count,
        tune.branch,
        super_resolution=kept.super_resolution,
        high_resolution=kept.resolution is not None,
    )
    return Done("", EditDraft(original.id, original.user_text, negative, price))


def _kept_options(original: PromptRecord) -> PromptOptions:
    """What an edit keeps besides the text: the shape, style and quality (an upscale's
    super-resolution was the tool's, not a quality the member chose)."""
    options = original.options
    return PromptOptions(
        aspect_ratio=options.aspect_ratio,
        style=options.style,
        resolution=options.resolution,
        super_resolution=options.super_resolution and original.tool != "upscale",
        # From a member's own picture: the same picture at the same strength.
        input_image_path=options.input_image_path,
        denoising_strength=options.denoising_strength if options.input_image_path else None,
    )


def _edit_count(original: PromptRecord) -> int:
    # An edit is a new text prompt: an upscale's single image becomes a usual set again.
    return original.num_images if original.tool != "upscale" else 1


@acting
async def edit_prompt(
    svc: Services,
    actor: Actor,
    place: Place,
    prompt_id: int,
    text: str,
    negative: str | None,
) -> Outcome[PromptRecord]:
    """The edited prompt queued with the same tune, count and aspect ratio: every rule of
    `/imagine` applies (the text is checked again, a Flux tune refuses a negative)."""
    source = await _source(svc, actor, place, prompt_id)
    if isinstance(source, Refused):
        return source
    original = source.original
    if not await source_kept(original.options):
        return Refused(SOURCE_GONE)
    order = PromptOrder(
        text=text,
        tune=str(original.tune_id),
        count=_edit_count(original),
        options=replace(_kept_options(original), negative_prompt=negative or None),
    )
    return await queue_prompt(svc, actor, place, order, tool="edit", parent_id=original.id)
