"""/balance: what a member has spent and has left, and what the server has; admins also see
the Astria account."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.credits import Allowance, format_mc
from bot.ui.text import timestamp
from cogs.imagine import refuse_if_not_allowed

if TYPE_CHECKING:
    from bot.app import AstriaBot


def _line(label: str, allowance: Allowance) -> str:
    left = max(0, allowance.remaining_mc)
    return (
        f"**{label}:** {format_mc(allowance.used_mc)} of {format_mc(allowance.allowance_mc)} "
        f"used, {format_mc(left)} left"
    )


class Account(commands.Cog):
    def __init__(self, bot: AstriaBot) -> None:
        self.bot = bot

    @app_commands.command(name="balance", description="Your spend and what is left")
    @app_commands.guild_only()
    async def balance(self, interaction: discord.Interaction[AstriaBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await refuse_if_not_allowed(interaction)
        store = self.bot.store
        guild_id = interaction.guild_id or 0
        snapshot = await store.ledger.budget(guild_id, interaction.user.id)
        in_flight = [
            p
            for p in await store.prompts.unfinished()
            if p.owner_id == interaction.user.id and p.guild_id == guild_id
        ]
        training = [
            t
            for t in await store.tunes.unfinished()
            if t.owner_id == interaction.user.id and t.guild_id == guild_id
        ]
        lines = [
            _line("You today", snapshot.user_day),
            _line("You this month", snapshot.user_month),
            _line("This server this month", snapshot.guild_month),
            f"**You can still spend:** {format_mc(snapshot.member_remaining_mc)}",
            f"**In progress:** {len(training)} training, {len(in_flight)} generating",
        ]
        if interaction.permissions.manage_guild:
            known = await store.account.last_known()
            if known is None:
                lines.append("**Astria balance:** not read yet")
            else:
                lines.append(
                    f"**Astria balance:** {format_mc(known.balance_mc)} "
                    f"(read {timestamp(known.read_at)})"
                )
        await interaction.followup.send("\n".join(lines), ephemeral=True)


async def setup(bot: AstriaBot) -> None:
    await bot.add_cog(Account(bot))
