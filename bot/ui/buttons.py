"""Buttons on results and status messages, as `DynamicItem`s: their custom_id
(`job:<action>:<id>`) carries all they need and the rest comes from the store, so they
keep working after a restart. Every press is answered, refusals included."""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any, Protocol, cast

import discord

from bot.astria import AstriaClient, AstriaError
from bot.config import Settings
from bot.credits import Refusal, format_mc, images_price
from bot.jobs import Tracker
from bot.store import JobKind, JobRef, PromptRecord, Store
from bot.ui.base import SafeView, UserError, answer, answer_error
from bot.ui.nonce import marker

log = logging.getLogger(__name__)

NOT_YOURS = "Only the member who made this can use that button."


class Services(Protocol):
    """What the buttons need from the bot (AstriaBot provides it)."""

    settings: Settings
    store: Store
    tracker: Tracker
    astria: AstriaClient


def services(interaction: discord.Interaction[Any]) -> Services:
    return cast(Services, interaction.client)


def is_admin(interaction: discord.Interaction[Any]) -> bool:
    return bool(interaction.guild and interaction.permissions.manage_guild)


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"job:unused:(?P<id>[0-9]+)"
):
    """Base: parses the id, never raises out of a callback, answers every press."""

    action = "unused"
    label = ""
    emoji: str | None = None
    style = discord.ButtonStyle.secondary

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
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> JobButton:
        return cls(int(match["id"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            await self.press(interaction, services(interaction))
        except Exception as exc:  # discord.py would swallow it unanswered
            await answer_error(interaction, exc)

    async def press(self, interaction: discord.Interaction[Any], svc: Services) -> None:
        raise NotImplementedError

    async def owned_prompt(
        self, interaction: discord.Interaction[Any], svc: Services, *, admin_ok: bool = False
    ) -> PromptRecord:
        prompt = await svc.store.prompts.get(self.job_id)
        if prompt is None:
            raise UserError("That result is not known any more.")
        if prompt.owner_id == interaction.user.id:
            return prompt
        if admin_ok and is_admin(interaction) and prompt.guild_id == interaction.guild_id:
            return prompt
        raise UserError(NOT_YOURS)


class RerollButton(JobButton, template=r"job:reroll:(?P<id>[0-9]+)"):
    action = "reroll"
    label = "Reroll"
    emoji = "🎲"

    async def press(self, interaction: discord.Interaction[Any], svc: Services) -> None:
        original = await svc.store.prompts.get(self.job_id)
        if original is None:
            raise UserError("That result is not known any more.")
        # The owner, or any member allowed to use the tune here (a tune shared with the
        # server); the store's create enforces the same rule.
        tune = await svc.store.tunes.get_usable(
            interaction.user.id, interaction.guild_id or 0, original.tune_id
        )
        if tune is None and original.owner_id != interaction.user.id:
            raise UserError(NOT_YOURS)
        price = images_price(svc.settings, original.num_images)
        created = await svc.store.prompts.create(
            owner_id=interaction.user.id,
            guild_id=interaction.guild_id or original.guild_id,
            channel_id=interaction.channel_id or original.channel_id,
            tune_id=original.tune_id,
            user_text=original.user_text,
            final_text=original.final_text,
            num_images=original.num_images,
            price_mc=price,
            params=dict(original.params),
        )
        if isinstance(created, Refusal):
            raise UserError(f"Not rerolled: {created.reason()}")
        svc.tracker.nudge()
        await answer(
            interaction,
            f"🎲 Rerolling with a new seed ({format_mc(price)}); the images will be posted here.",
        )


class DetailsButton(JobButton, template=r"job:details:(?P<id>[0-9]+)"):
    action = "details"
    label = "Details"
    emoji = "ℹ️"

    async def press(self, interaction: discord.Interaction[Any], svc: Services) -> None:
        prompt = await self.owned_prompt(interaction, svc)
        tune = await svc.store.tunes.get(prompt.tune_id)
        cost = format_mc(prompt.cost_mc) if prompt.cost_mc is not None else "not settled yet"
        lines = [
            f"**Prompt:** {prompt.user_text}",
            f"**Seed:** {prompt.seed}",
            f"**Tune:** {tune.name if tune else 'deleted'}",
            f"**Images:** {prompt.num_images}",
            f"**Cost:** {cost}",
        ]
        await answer(interaction, "\n".join(lines))


class DeleteButton(JobButton, template=r"job:delete:(?P<id>[0-9]+)"):
    action = "delete"
    label = "Delete"
    emoji = "🗑️"
    style = discord.ButtonStyle.danger

    async def press(self, interaction: discord.Interaction[Any], svc: Services) -> None:
        prompt = await self.owned_prompt(interaction, svc, admin_ok=True)
        await interaction.response.defer(ephemeral=True, thinking=True)
        if prompt.astria_id is not None:
            try:
                await svc.astria.delete_prompt(prompt.astria_id)
            except AstriaError as exc:
                log.warning("prompt %s not deleted at Astria (%s)", prompt.id, exc.message)
        channel = interaction.channel
        if isinstance(channel, discord.abc.Messageable) and isinstance(
            channel, discord.TextChannel | discord.Thread
        ):
            for message_id in prompt.result_message_ids:
                with contextlib.suppress(discord.NotFound):
                    await channel.get_partial_message(message_id).delete()
        await svc.store.prompts.set_error(prompt.id, f"deleted by {interaction.user.id}")
        await answer(interaction, "🗑️ Deleted the images here and at Astria.")


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"job:cancel:(?P<kind>tune|prompt)-(?P<id>[0-9]+)",
):
    """On a queued job's status message: its owner takes it out of the queue."""

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
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> CancelButton:
        return cls(JobRef(JobKind(match["kind"]), int(match["id"])))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            svc = services(interaction)
            if await svc.tracker.cancel_queued(self.job, interaction.user.id):
                await answer(interaction, "🚫 Cancelled; your credit was given back.")
            else:
                raise UserError("This can't be cancelled: it is not yours, or it already started.")
        except Exception as exc:  # discord.py would swallow it unanswered
            await answer_error(interaction, exc)


def result_view(job: JobRef) -> discord.ui.View | None:
    """The buttons under a prompt's images."""
    if job.kind != JobKind.PROMPT:
        return None
    view = SafeView(timeout=None)
    for button in (RerollButton(job.id), DetailsButton(job.id), DeleteButton(job.id)):
        view.add_item(button)
    return view


def status_view(job: JobRef) -> discord.ui.View | None:
    """The Cancel button on a queued job's status message."""
    view = SafeView(timeout=None)
    view.add_item(CancelButton(job))
    return view


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    RerollButton,
    DetailsButton,
    DeleteButton,
    CancelButton,
)
