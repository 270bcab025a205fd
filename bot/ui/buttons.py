"""Buttons on results and status messages, as `DynamicItem`s: their custom_id
(`job:<action>:<id>`) carries all they need and the rest comes from the store, so they
keep working after a restart. Each press is one action call (`bot.actions`); every press
is answered, refusals included."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import discord

from bot.actions import packs, privacy, prompts, tools, tunes
from bot.actions.context import Done, Outcome
from bot.rules.tools import BUTTONS_UP_TO, Strength
from bot.store import JobKind, JobRef
from bot.ui.base import SafeView, UserError, answer, answer_error
from bot.ui.door import EntryKind, actor_of, done, place_of, reply, services
from bot.ui.forms import STALE_COMPONENT, EditForm, open_form
from bot.ui.nonce import marker

log = logging.getLogger(__name__)


class _Answered:
    """Every press is answered: `press` does the work, and an error in it becomes the
    member's answer (discord.py would swallow it unanswered)."""

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            await self.press(interaction)
        except Exception as exc:
            await answer_error(interaction, exc)

    async def press(self, interaction: discord.Interaction[Any]) -> None:
        raise NotImplementedError


class JobButton(
    _Answered,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"job:unused:(?P<id>[0-9]+)",
):
    """Base: parses the id, never raises out of a callback, answers every press."""

    action: ClassVar[str] = "unused"
    entry: ClassVar[EntryKind]
    target: ClassVar[JobKind] = JobKind.PROMPT  # what the id in the custom_id names
    label: ClassVar[str] = ""
    emoji: ClassVar[str | None] = None
    style: ClassVar[discord.ButtonStyle] = discord.ButtonStyle.secondary

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        super().__init__(
            discord.ui.Button(
                label=self.label,
                emoji=self.emoji,
                style=self.style,
                custom_id=marker(self.action, job_id),
            )
        )

    @classmethod
    def for_job(cls, job: JobRef) -> JobButton:
        """The button for a job (`target` says which kind its id names)."""
        return cls(job.id)

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> JobButton:
        return cls(int(match["id"]))


class RerollButton(JobButton, template=r"job:reroll:(?P<id>[0-9]+)"):
    action = "reroll"
    entry = "spends"
    label = "Reroll"
    emoji = "🎲"

    async def press(self, interaction: discord.Interaction[Any]) -> None:
        outcome = await prompts.reroll(
            services(interaction), actor_of(interaction), place_of(interaction), self.job_id
        )
        await reply(interaction, outcome)


class DetailsButton(JobButton, template=r"job:details:(?P<id>[0-9]+)"):
    action = "details"
    entry = "reads"
    label = "Details"
    emoji = "ℹ️"

    async def press(self, interaction: discord.Interaction[Any]) -> None:
        outcome = await prompts.prompt_details(
            services(interaction), actor_of(interaction), place_of(interaction), self.job_id
        )
        await reply(interaction, outcome)


class DeleteButton(JobButton, template=r"job:delete:(?P<id>[0-9]+)"):
    action = "delete"
    entry = "removes"
    label = "Delete"
    emoji = "🗑️"
    style = discord.ButtonStyle.danger

    async def press(self, interaction: discord.Interaction[Any]) -> None:
        svc = services(interaction)
        actor, place = actor_of(interaction), place_of(interaction)
        # Checked before the defer, so a stranger's click gets the plain reason at once.
        done(await prompts.may_delete_result(svc, actor, place, self.job_id))
        await interaction.response.defer(ephemeral=True, thinking=True)
        deleted = done(await prompts.delete_result(svc, actor, place, self.job_id))
        channel = interaction.channel
        if isinstance(channel, _POSTABLE):
            for message_id in deleted.value.result_message_ids:
                with contextlib.suppress(discord.NotFound):
                    await channel.get_partial_message(message_id).delete()
        await answer(interaction, deleted.text)


# Channels whose messages the bot can delete by id (threads, forum posts and voice chats
# included).
_POSTABLE = (
    discord.TextChannel,
    discord.Thread,
    discord.VoiceChannel,
    discord.StageChannel,
    discord.DMChannel,
    discord.PartialMessageable,
)


class CancelButton(
    _Answered,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"job:cancel:(?P<kind>tune|prompt)-(?P<id>[0-9]+)",
):
    """On a queued job's status message: its owner takes it out of the queue."""

    entry: ClassVar[EntryKind] = "removes"

    def __init__(self, job: JobRef) -> None:
        self.job = job
        super().__init__(
            discord.ui.Button(
                label="Cancel",
                style=discord.ButtonStyle.secondary,
                custom_id=f"job:cancel:{job.kind}-{job.id}",
            )
        )

    @classmethod
    def for_job(cls, job: JobRef) -> CancelButton:
        return cls(job)

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> CancelButton:
        return cls(JobRef(JobKind(match["kind"]), int(match["id"])))

    async def press(self, interaction: discord.Interaction[Any]) -> None:
        outcome = await tunes.cancel_waiting(
            services(interaction), actor_of(interaction), place_of(interaction), self.job
        )
        await reply(interaction, outcome)


def _on_the_question(interaction: discord.Interaction[Any]) -> bool:
    """True when pressed on the member's own ephemeral question (edited in place)."""
    message = interaction.message
    return message is not None and message.flags.ephemeral


async def _answer_question(
    interaction: discord.Interaction[Any], working: str, act: Callable[[], Awaitable[str]]
) -> None:
    """Do the slow part of a confirmed question: the question itself says `working` (or
    the press is deferred when it was not on the question), then the result's words."""
    in_place = _on_the_question(interaction)
    if in_place:
        await interaction.response.edit_message(content=working, view=None)
    else:
        await interaction.response.defer(ephemeral=True, thinking=True)
    text = await act()
    if in_place:
        await interaction.edit_original_response(content=text)
    else:
        await answer(interaction, text)


async def _close_question(interaction: discord.Interaction[Any], text: str) -> None:
    """The member said no: the question becomes `text` (or `text` is the answer)."""
    if _on_the_question(interaction):
        await interaction.response.edit_message(content=text, view=None)
    else:
        await answer(interaction, text)


class TuneDeleteButton(JobButton, template=r"job:tune-delete:(?P<id>[0-9]+)"):
    """Under "Delete this tune?": the tune's id is in the custom_id, so the question still
    works after a restart."""

    action = "tune-delete"
    entry = "removes"
    target = JobKind.TUNE
    label = "Delete"
    style = discord.ButtonStyle.danger

    async def press(self, interaction: discord.Interaction[Any]) -> None:
        svc, actor, place = services(interaction), actor_of(interaction), place_of(interaction)
        done(await tunes.may_delete_tune(svc, actor, place, self.job_id))

        async def delete() -> str:
            deleted = await tunes.delete_tune(svc, actor, place, self.job_id)
            return deleted.text if isinstance(deleted, Done) else deleted.reason

        await _answer_question(interaction, "Deleting…", delete)


class TuneKeepButton(JobButton, template=r"job:tune-keep:(?P<id>[0-9]+)"):
    action = "tune-keep"
    entry = "reads"
    target = JobKind.TUNE
    label = "Keep it"

    async def press(self, interaction: discord.Interaction[Any]) -> None:
        await _close_question(interaction, "Nothing was changed.")


def delete_question_view(tune_id: int) -> discord.ui.View:
    """Delete / Keep it under "Delete this tune?"; works after a restart."""
    view = SafeView(timeout=None)
    view.add_item(TuneDeleteButton(tune_id))
    view.add_item(TuneKeepButton(tune_id))
    return view


class EditButton(JobButton, template=r"job:edit:(?P<id>[0-9]+)"):
    """Edit prompt: a form with the prompt (and the negative, where the tune's model reads
    one) filled in; its submit queues the new prompt with the same tune. The form must be
    the press's first answer, so only the door's checks (fast reads) run before it."""

    action = "edit"
    entry = "spends"
    label = "Edit"
    emoji = "✏️"

    async def press(self, interaction: discord.Interaction[Any]) -> None:
        svc, actor, place = services(interaction), actor_of(interaction), place_of(interaction)
        draft = done(await tools.edit_form(svc, actor, place, self.job_id)).value
        form = EditForm(interaction.client.forms, draft)
        await open_form(interaction, form)


class ImageButton(
    _Answered,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"job:image-unused:(?P<id>[0-9]+)-(?P<index>[0-9]+)",
):
    """Base of the per-image buttons: the result's id and the image's index (0-based) are
    in the custom_id (`job:<action>:<id>-<index>`), so they work after a restart."""

    action: ClassVar[str] = "image-unused"
    entry: ClassVar[EntryKind] = "spends"
    word: ClassVar[str] = ""
    emoji: ClassVar[str | None] = None
    row_offset: ClassVar[int] = 1

    def __init__(self, job_id: int, index: int) -> None:
        self.job_id = job_id
        self.index = index
        super().__init__(
            discord.ui.Button(
                label=f"{self.word} {index + 1}",
                emoji=self.emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=f"job:{self.action}:{job_id}-{index}",
            ),
            row=self.row_offset,
        )

    @classmethod
    def for_job(cls, job: JobRef) -> ImageButton:
        return cls(job.id, 0)

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> ImageButton:
        return cls(int(match["id"]), int(match["index"]))

    async def press(self, interaction: discord.Interaction[Any]) -> None:
        outcome = await _use_tool(interaction, self.job_id, self.index, self.action)
        await reply(interaction, outcome)


class UpscaleButton(ImageButton, template=r"job:upscale:(?P<id>[0-9]+)-(?P<index>[0-9]+)"):
    action = "upscale"
    word = "Upscale"
    emoji = "⬆️"
    row_offset = 1


class VarySubtleButton(ImageButton, template=r"job:vary-subtle:(?P<id>[0-9]+)-(?P<index>[0-9]+)"):
    action = "vary-subtle"
    word = "Subtle"
    emoji = "🪄"
    row_offset = 2


class VaryStrongButton(ImageButton, template=r"job:vary-strong:(?P<id>[0-9]+)-(?P<index>[0-9]+)"):
    action = "vary-strong"
    word = "Strong"
    emoji = "🌀"
    row_offset = 3


_IMAGE_TOOLS: dict[str, str] = {
    "upscale": "Upscale image {n}",
    "vary-subtle": "Vary image {n} (subtle)",
    "vary-strong": "Vary image {n} (strong)",
}


async def _use_tool(
    interaction: discord.Interaction[Any], job_id: int, index: int, action: str
) -> Outcome[Any]:
    svc, actor, place = services(interaction), actor_of(interaction), place_of(interaction)
    if action == "upscale":
        return await tools.upscale(svc, actor, place, job_id, index)
    strength: Strength = "subtle" if action == "vary-subtle" else "strong"
    return await tools.vary(svc, actor, place, job_id, index, strength)


class ImageToolSelect(
    _Answered,
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=r"job:tools:(?P<id>[0-9]+)",
):
    """For results of more than `BUTTONS_UP_TO` images: one menu with Upscale and both
    Varies for each image (3 x 8 = 24 options, within Discord's 25)."""

    entry: ClassVar[EntryKind] = "spends"

    def __init__(self, job_id: int, images: int) -> None:
        self.job_id = job_id
        options = [
            discord.SelectOption(label=label.format(n=index + 1), value=f"{action}:{index}")
            for index in range(images)
            for action, label in _IMAGE_TOOLS.items()
        ]
        super().__init__(
            discord.ui.Select(
                custom_id=f"job:tools:{job_id}",
                placeholder="Upscale or vary an image…",
                options=options[:MAX_SELECT_OPTIONS],
                min_values=1,
                max_values=1,
            ),
            row=1,
        )

    @classmethod
    def for_job(cls, job: JobRef) -> ImageToolSelect:
        return cls(job.id, 1)

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> ImageToolSelect:
        count = len(getattr(item, "options", ())) // len(_IMAGE_TOOLS)
        return cls(int(match["id"]), max(count, 1))

    async def press(self, interaction: discord.Interaction[Any]) -> None:
        picked = self.item.values[0] if self.item.values else ""
        action, _, index = picked.partition(":")
        if action not in _IMAGE_TOOLS or not index.isdigit():
            raise UserError(STALE_COMPONENT)
        outcome = await _use_tool(interaction, self.job_id, int(index), action)
        await reply(interaction, outcome)


MAX_ROWS = 5
MAX_BUTTONS_PER_ROW = 5
MAX_SELECT_OPTIONS = 25


def result_view(job: JobRef, images: int = 0, tool: str = "imagine") -> discord.ui.View | None:
    """The buttons under a prompt's images: Reroll, Edit, Details, Delete on the first row;
    then, for up to `BUTTONS_UP_TO` images, a row each of Upscale, Vary subtle and Vary
    strong buttons, one per image; beyond that one select menu with all of them. An
    upscale's post keeps Details and Delete only (it is one image already at full size)."""
    if job.kind != JobKind.PROMPT:
        return None
    view = SafeView(timeout=None)
    first: list[JobButton] = [DetailsButton(job.id), DeleteButton(job.id)]
    if tool != "upscale":
        first = [RerollButton(job.id), EditButton(job.id), *first]
    for button in first:
        button.row = 0
        view.add_item(button)
    if tool == "upscale" or images < 1:
        return view
    if images <= BUTTONS_UP_TO:
        for kind in (UpscaleButton, VarySubtleButton, VaryStrongButton):
            for index in range(images):
                view.add_item(kind(job.id, index))
    else:
        view.add_item(ImageToolSelect(job.id, images))
    return view


def status_view(job: JobRef) -> discord.ui.View | None:
    """The Cancel button on a queued job's status message."""
    view = SafeView(timeout=None)
    view.add_item(CancelButton(job))
    return view


class EraseButton(
    _Answered,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"privacy:erase:(?P<user>[0-9]+)-(?P<guild>[0-9]+)",
):
    """Under "Erase your data?": whose and where are in the custom_id, so the question
    still works after a restart; the action checks who presses."""

    entry: ClassVar[EntryKind] = "removes"
    action: ClassVar[str] = "erase"
    label: ClassVar[str] = "Erase"
    style: ClassVar[discord.ButtonStyle] = discord.ButtonStyle.danger

    def __init__(self, request: privacy.EraseRequest) -> None:
        self.request = request
        super().__init__(
            discord.ui.Button(
                label=self.label,
                style=self.style,
                custom_id=f"privacy:{self.action}:{request.user_id}-{request.guild_id}",
            )
        )

    @classmethod
    def for_job(cls, job: JobRef) -> EraseButton:
        """For the entry-point walk: a button naming someone (the job's id as a user id)."""
        return cls(privacy.EraseRequest(job.id, privacy.EVERYWHERE))

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> EraseButton:
        return cls(privacy.EraseRequest(int(match["user"]), int(match["guild"])))

    async def press(self, interaction: discord.Interaction[Any]) -> None:
        svc, actor, place = services(interaction), actor_of(interaction), place_of(interaction)
        refused = privacy.may_erase(actor, place, self.request)
        if refused is not None:  # before the defer: a stranger is answered at once
            done(refused)

        async def erase() -> str:
            outcome = await privacy.erase(svc, actor, place, self.request)
            if not isinstance(outcome, Done):
                return outcome.reason
            await _delete_posts(interaction.client, outcome.value.messages)
            return outcome.text

        await _answer_question(interaction, "Erasing…", erase)


class EraseKeepButton(EraseButton, template=r"privacy:keep:(?P<user>[0-9]+)-(?P<guild>[0-9]+)"):
    entry: ClassVar[EntryKind] = "reads"
    action: ClassVar[str] = "keep"
    label: ClassVar[str] = "Keep my data"
    style: ClassVar[discord.ButtonStyle] = discord.ButtonStyle.secondary

    async def press(self, interaction: discord.Interaction[Any]) -> None:
        await _close_question(interaction, "Nothing was erased.")


async def _delete_posts(client: discord.Client, messages: tuple[tuple[int, int], ...]) -> None:
    """Delete the posts the bot made for an erased member, where it still can (a channel
    gone or a permission taken away leaves the post: said in the README)."""
    for channel_id, message_id in messages:
        channel = client.get_partial_messageable(channel_id)
        try:
            await channel.get_partial_message(message_id).delete()
        except discord.HTTPException as exc:
            log.info("erase: message %s in %s not deleted (%s)", message_id, channel_id, exc)


def erase_question_view(request: privacy.EraseRequest) -> discord.ui.View:
    """Erase / Keep under "Erase your data?"; works after a restart."""
    view = SafeView(timeout=None)
    view.add_item(EraseButton(request))
    view.add_item(EraseKeepButton(request))
    return view


class PackPageButton(
    _Answered,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"pack:page:(?P<page>[0-9]+)",
):
    """Previous / Next under `/pack list`: the custom_id names the page it shows, so a
    press after a restart still turns the page (the member who asked is the one who sees
    the ephemeral answer, and the page is read for whoever presses)."""

    entry: ClassVar[EntryKind] = "reads"

    def __init__(self, page: int, *, label: str = "Next", disabled: bool = False) -> None:
        self.page = page
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"pack:page:{page}",
                disabled=disabled,
            )
        )

    @classmethod
    def for_job(cls, job: JobRef) -> PackPageButton:
        """For the test that presses every entry: a page names no job; the first."""
        return cls(0)

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> PackPageButton:
        return cls(int(match["page"]))

    async def press(self, interaction: discord.Interaction[Any]) -> None:
        outcome = await packs.list_packs(
            services(interaction), actor_of(interaction), place_of(interaction), self.page
        )
        if not isinstance(outcome, Done):
            await reply(interaction, outcome)
            return
        await interaction.response.edit_message(
            content=outcome.value.text(), view=pack_pages_view(outcome.value)
        )


def pack_pages_view(page: packs.PackPage) -> discord.ui.View:
    """Previous / Next for a page of the gallery; works after a restart. The two
    custom_ids differ on every page (a message's must), the disabled one included."""
    view = SafeView(timeout=None)
    view.add_item(PackPageButton(max(page.page - 1, 0), label="Previous", disabled=page.page <= 0))
    view.add_item(
        PackPageButton(
            min(page.page + 1, page.pages - 1), label="Next", disabled=page.page >= page.pages - 1
        )
    )
    return view


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    RerollButton,
    EditButton,
    UpscaleButton,
    VarySubtleButton,
    VaryStrongButton,
    ImageToolSelect,
    DetailsButton,
    DeleteButton,
    CancelButton,
    TuneDeleteButton,
    TuneKeepButton,
    EraseButton,
    EraseKeepButton,
    PackPageButton,
)
