"""The tune form: a modal with the name, the subject, consent and (from `/tune create`) two
photo-upload fields; the same form without uploads for photos already posted in chat.

Discord allows five rows in a modal, so these are exactly: name, subject, consent, photos,
more photos. Each row is a `ui.Label` around its component (Discord refuses a FileUpload
outside a Label). What the member typed comes back as a `TuneFormValues`; the form itself
decides nothing about money or photos.

A form open across a restart is unknown to the new process; `FormRegistry` is how the bot
tells "a form of ours that this process never opened" from any other interaction.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import discord

from bot.actions import prompts, tools
from bot.actions.prompts import FromImageQuote
from bot.actions.tools import EditDraft
from bot.rules.credits import format_mc
from bot.rules.intake import PhotoSource
from bot.rules.photos import display_name
from bot.rules.prompts import NAME_MAX
from bot.rules.tools import FROM_IMAGE_STRENGTH, MAX_STRENGTH, MIN_STRENGTH
from bot.ui.base import SafeModal, UserError, answer_error
from bot.ui.door import actor_of, place_of, reply, services

log = logging.getLogger(__name__)

FORM_PREFIX: Final = "form:"
CONSENT_YES: Final = "yes"
CONSENT_NO: Final = "no"
PROMPT_INPUT_MAX: Final = 600  # PROMPT_MAX_LENGTH's ceiling; the action checks the setting
NEGATIVE_INPUT_MAX: Final = 300
FORM_TIMEOUT: Final = 15 * 60.0  # a member may take a while to pick 20 photos on a phone
STALE_COMPONENT: Final = (
    "This button belongs to an older message and no longer does anything; nothing was "
    "changed. Run the command again (see `/help`)."
)
RESTARTED: Final = (
    "The bot restarted (or the form was open too long), so this form could not be read. "
    "Nothing was charged; please run the command again."
)


@dataclass(frozen=True)
class TuneFormValues:
    name: str
    subject_class: str
    consent: bool
    photos: tuple[discord.Attachment, ...]


Submit = Callable[[discord.Interaction[Any], TuneFormValues], Awaitable[None]]


class FormRegistry:
    """The forms this process opened (one registry per bot). An id stays known after its
    submit: discord.py answers the submit and our `on_interaction` fallback both see it, in
    no fixed order. Ids are forgotten when the form times out, or when old."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._open: dict[str, float] = {}
        self._monotonic = monotonic

    def new_id(self) -> str:
        now = self._monotonic()
        for old in [k for k, at in self._open.items() if now - at > 2 * FORM_TIMEOUT]:
            del self._open[old]
        custom_id = f"{FORM_PREFIX}{secrets.token_hex(8)}"
        self._open[custom_id] = now
        return custom_id

    def close(self, custom_id: str) -> None:
        self._open.pop(custom_id, None)

    def is_stale(self, custom_id: str) -> bool:
        """A form of ours this process does not know: opened before a restart."""
        return custom_id.startswith(FORM_PREFIX) and custom_id not in self._open

    def __len__(self) -> int:
        return len(self._open)


async def open_form(interaction: discord.Interaction[Any], form: discord.ui.Modal) -> None:
    """Answer with the form, listening for its submit *before* the answer goes out.

    discord.py starts listening only once Discord's reply to the callback has been read;
    a submit that arrives on the gateway first (a fast client, a slow read of that reply
    on a loaded host) is dropped without a word, and the member sees "This interaction
    failed". Registering first closes that window; a form whose answer then fails simply
    times out. (discord.py has no public call for this: the state's `store_view` is what
    `send_modal` itself uses.)"""
    interaction.client._connection.store_view(form)
    await interaction.response.send_modal(form)


class TuneForm(SafeModal):
    """`uploads=True`: the `/tune create` form; False: photos taken from a posted message,
    counted in `photos_note`."""

    def __init__(
        self,
        registry: FormRegistry,
        submit: Submit,
        *,
        title: str,
        classes: Sequence[str],
        uploads: bool,
        price_note: str,
        photos_note: str | None = None,
        given_photos: Sequence[discord.Attachment] = (),
        min_photos: int = 4,
    ) -> None:
        super().__init__(title=title[:45], custom_id=registry.new_id(), timeout=FORM_TIMEOUT)
        self._registry = registry
        self._submit = submit
        self._given = tuple(given_photos)
        self.name_input: discord.ui.TextInput[Any] = discord.ui.TextInput(
            custom_id="name", min_length=1, max_length=NAME_MAX, placeholder="me"
        )
        self.class_select: discord.ui.Select[Any] = discord.ui.Select(
            custom_id="class",
            options=[discord.SelectOption(label=c, value=c) for c in classes[:25]],
            min_values=1,
            max_values=1,
            required=True,
        )
        self.consent_select: discord.ui.Select[Any] = discord.ui.Select(
            custom_id="consent",
            options=[
                discord.SelectOption(
                    label="They are of me, or of someone who agreed", value=CONSENT_YES
                ),
                discord.SelectOption(label="No", value=CONSENT_NO),
            ],
            min_values=1,
            max_values=1,
            required=True,
        )
        self.add_item(
            discord.ui.Label(
                text="Tune name",
                description="Up to 32 characters; you pick the tune by it in /imagine",
                component=self.name_input,
            )
        )
        self.add_item(
            discord.ui.Label(
                text="Who or what is in the photos",
                description="Used in every prompt with this tune",
                component=self.class_select,
            )
        )
        self.add_item(
            discord.ui.Label(
                text="Consent",
                description=(photos_note or "The photos are of you, or of someone who agreed")[
                    :100
                ],
                component=self.consent_select,
            )
        )
        self.first_upload: discord.ui.FileUpload[Any] | None = None
        self.second_upload: discord.ui.FileUpload[Any] | None = None
        if uploads:
            self.first_upload = discord.ui.FileUpload(
                custom_id="photos1", min_values=min_photos, max_values=10, required=True
            )
            self.second_upload = discord.ui.FileUpload(
                custom_id="photos2", min_values=0, max_values=10, required=False
            )
            self.add_item(
                discord.ui.Label(
                    text="Photos (4 to 10)",
                    description=f"Clear photos, one face or subject, varied. {price_note}"[:100],
                    component=self.first_upload,
                )
            )
            self.add_item(
                discord.ui.Label(
                    text="More photos (optional, up to 10)",
                    description="20 photos in all at most; JPEG, PNG or WebP",
                    component=self.second_upload,
                )
            )

    def values(self) -> TuneFormValues:
        photos: list[discord.Attachment] = list(self._given)
        for upload in (self.first_upload, self.second_upload):
            if upload is not None:
                photos.extend(upload.values)
        picked = self.class_select.values
        consent = self.consent_select.values
        return TuneFormValues(
            name=self.name_input.value,
            subject_class=picked[0] if picked else "",
            consent=bool(consent) and consent[0] == CONSENT_YES,
            photos=tuple(photos),
        )

    async def on_submit(self, interaction: discord.Interaction[Any], /) -> None:
        try:
            await self._submit(interaction, self.values())
        except Exception as exc:  # answered here: a refusal is not an error to log
            await answer_error(interaction, exc)

    async def on_timeout(self) -> None:
        self._registry.close(self.custom_id)


class EditForm(SafeModal):
    """Edit prompt: the result's prompt (and its negative, when the tune's model reads
    one; Flux does not) filled in. Its submit queues the new prompt with the same tune,
    through the same action as `/imagine` (every check again, the text included)."""

    def __init__(self, registry: FormRegistry, draft: EditDraft) -> None:
        super().__init__(
            title=f"Edit the prompt ({format_mc(draft.price_mc)})"[:45],
            custom_id=registry.new_id(),
            timeout=FORM_TIMEOUT,
        )
        self._registry = registry
        self._prompt_id = draft.prompt_id
        self.prompt_input: discord.ui.TextInput[Any] = discord.ui.TextInput(
            custom_id="prompt",
            style=discord.TextStyle.paragraph,
            default=draft.text[:PROMPT_INPUT_MAX],
            min_length=1,
            max_length=PROMPT_INPUT_MAX,
            required=True,
        )
        self.add_item(
            discord.ui.Label(
                text="Prompt",
                description="Change the words; the tune, image count and shape stay",
                component=self.prompt_input,
            )
        )
        self.negative_input: discord.ui.TextInput[Any] | None = None
        if draft.negative is not None:
            self.negative_input = discord.ui.TextInput(
                custom_id="negative",
                style=discord.TextStyle.paragraph,
                default=draft.negative[:NEGATIVE_INPUT_MAX] or None,
                max_length=NEGATIVE_INPUT_MAX,
                required=False,
            )
            self.add_item(
                discord.ui.Label(
                    text="Negative prompt (optional)",
                    description="What to keep out of the picture",
                    component=self.negative_input,
                )
            )

    async def on_submit(self, interaction: discord.Interaction[Any], /) -> None:
        try:
            negative = self.negative_input.value if self.negative_input is not None else None
            outcome = await tools.edit_prompt(
                services(interaction),
                actor_of(interaction),
                place_of(interaction),
                self._prompt_id,
                self.prompt_input.value,
                negative,
            )
            await reply(interaction, outcome)
        except Exception as exc:  # answered here: a refusal is not an error to log
            await answer_error(interaction, exc)

    async def on_timeout(self) -> None:
        self._registry.close(self.custom_id)


def image_source(attachment: discord.Attachment) -> PhotoSource:
    """A member's picture as the use case reads it: at submit, by its bytes."""
    label = f"the image ({display_name(attachment.filename)})"
    return PhotoSource(label=label, size=attachment.size, read=attachment.read)


class ImagineForm(SafeModal):
    """ "Imagine from this image": the prompt, the tune (empty: the member's newest), the
    count and the strength. Its submit reads the picture (Discord's links expire, so not
    before) and queues through the same action as `/imagine`, every check again."""

    def __init__(
        self, registry: FormRegistry, image: discord.Attachment, quote: FromImageQuote
    ) -> None:
        super().__init__(
            title=f"Imagine from this image ({format_mc(quote.image_price_mc)} an image)"[:45],
            custom_id=registry.new_id(),
            timeout=FORM_TIMEOUT,
        )
        self._registry = registry
        self._image = image
        self.prompt_input: discord.ui.TextInput[Any] = discord.ui.TextInput(
            custom_id="prompt",
            style=discord.TextStyle.paragraph,
            min_length=1,
            max_length=PROMPT_INPUT_MAX,
            required=True,
        )
        self.tune_input: discord.ui.TextInput[Any] = discord.ui.TextInput(
            custom_id="tune", max_length=NAME_MAX, required=False, placeholder=quote.tune_name
        )
        self.count_input: discord.ui.TextInput[Any] = discord.ui.TextInput(
            custom_id="count", max_length=1, required=False, placeholder="1"
        )
        self.strength_input: discord.ui.TextInput[Any] = discord.ui.TextInput(
            custom_id="strength", max_length=5, required=False, placeholder=str(FROM_IMAGE_STRENGTH)
        )
        self.add_item(
            discord.ui.Label(
                text="Prompt",
                description="What to make of the picture, e.g. 'as a watercolour painting'",
                component=self.prompt_input,
            )
        )
        self.add_item(
            discord.ui.Label(
                text="Tune (optional)",
                description=f"A tune's name from /tune list; empty: {quote.tune_name}"[:100],
                component=self.tune_input,
            )
        )
        self.add_item(
            discord.ui.Label(
                text="How many images (1-8, optional)",
                description=f"{format_mc(quote.image_price_mc)} an image; empty: 1"[:100],
                component=self.count_input,
            )
        )
        self.add_item(
            discord.ui.Label(
                text="Strength (optional)",
                description=(
                    f"{MIN_STRENGTH} keeps the picture, {MAX_STRENGTH} ignores it; "
                    f"empty: {FROM_IMAGE_STRENGTH}"
                )[:100],
                component=self.strength_input,
            )
        )

    async def on_submit(self, interaction: discord.Interaction[Any], /) -> None:
        try:
            count = _whole(self.count_input.value, default=1, what="How many images")
            strength = _number(self.strength_input.value, what="Strength")
            await interaction.response.defer(ephemeral=True, thinking=True)
            order = prompts.PromptOrder(
                text=self.prompt_input.value,
                tune=self.tune_input.value,
                count=count,
                image=image_source(self._image),
                strength=strength,
            )
            outcome = await prompts.queue_prompt(
                services(interaction), actor_of(interaction), place_of(interaction), order
            )
            await reply(interaction, outcome)
        except Exception as exc:  # answered here: a refusal is not an error to log
            await answer_error(interaction, exc)

    async def on_timeout(self) -> None:
        self._registry.close(self.custom_id)


def _whole(text: str, *, default: int, what: str) -> int:
    cleaned = text.strip()
    if not cleaned:
        return default
    if not (cleaned.isascii() and cleaned.isdigit()):
        raise UserError(f"{what}: type a whole number, e.g. 4.")
    return int(cleaned)


def _number(text: str, *, what: str) -> float | None:
    cleaned = text.strip().replace(",", ".")
    if not cleaned:
        return None
    try:
        value = float(cleaned)
    except ValueError:
        raise UserError(
            f"{what}: type a number from {MIN_STRENGTH} to {MAX_STRENGTH}, e.g. 0.6."
        ) from None
    if value != value:  # NaN
        raise UserError(f"{what}: type a number from {MIN_STRENGTH} to {MAX_STRENGTH}.")
    return value
