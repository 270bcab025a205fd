"""/tune: a member's fine-tunes (list and show; create and delete arrive next)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.prompts import display_text
from bot.store import TuneRecord, TuneState
from bot.ui.base import UserError
from bot.ui.text import timestamp

if TYPE_CHECKING:
    from bot.app import AstriaBot


def days_left(tune: TuneRecord, now: datetime) -> int | None:
    """Whole days before Astria deletes the tune (None while it has no expiry yet)."""
    if tune.expires_at is None:
        return None
    return max(0, (tune.expires_at - now).days)


def describe(tune: TuneRecord, now: datetime) -> str:
    name = display_text(tune.name, 40)
    state = str(tune.state)
    if tune.state in (TuneState.TRAINING, TuneState.QUEUED) and tune.eta is not None:
        state += f", ready {timestamp(tune.eta)}"
    left = days_left(tune, now)
    if tune.state == TuneState.READY and left is not None:
        state += f", {left} days before Astria deletes it"
    shared = " (shared with the server)" if tune.shared else ""
    return f"**{name}** ({tune.subject_class}): {state}{shared}"


class Tunes(commands.GroupCog, group_name="tune", group_description="Your fine-tunes"):
    def __init__(self, bot: AstriaBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="list", description="Your tunes and how long they last")
    @app_commands.guild_only()
    async def list_tunes(self, interaction: discord.Interaction[AstriaBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        now = self.bot.now()
        tunes = await self.bot.store.tunes.list_for(interaction.user.id)
        live = [t for t in tunes if t.state not in (TuneState.DELETED, TuneState.CANCELLED)]
        text = "\n".join(describe(t, now) for t in live) or "No tunes yet: `/tune create`."
        await interaction.followup.send(text[:2000], ephemeral=True)

    @app_commands.command(name="show", description="One of your tunes in detail")
    @app_commands.describe(name="The tune's name")
    @app_commands.guild_only()
    async def show(self, interaction: discord.Interaction[AstriaBot], name: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        tune = await self.bot.store.tunes.by_name(interaction.user.id, name)
        if tune is None:
            raise UserError("You have no tune by that name (see `/tune list`).")
        prompts = await self.bot.store.prompts.list_for(interaction.user.id, limit=100)
        used = len([p for p in prompts if p.tune_id == tune.id])
        lines = [describe(tune, self.bot.now()), f"Prompts made with it: {used}"]
        if tune.trained_at is not None:
            lines.append(f"Trained {timestamp(tune.trained_at, 'f')}")
        await interaction.followup.send("\n".join(lines), ephemeral=True)

    @show.autocomplete("name")
    async def own_names(
        self, interaction: discord.Interaction[AstriaBot], current: str
    ) -> list[app_commands.Choice[str]]:
        tunes = await self.bot.store.tunes.list_for(interaction.user.id)
        wanted = current.casefold()
        return [
            app_commands.Choice(name=t.name[:100], value=t.name[:100])
            for t in tunes
            if wanted in t.name.casefold() and t.state != TuneState.DELETED
        ][:25]


async def setup(bot: AstriaBot) -> None:
    await bot.add_cog(Tunes(bot))
