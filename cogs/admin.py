"""/admin: a server's budget, members' limits, grants, pausing and spend. Needs Manage
Server (the default permission, checked again at run time)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.credits import format_mc, parse_usd
from bot.ui.base import UserError

if TYPE_CHECKING:
    from bot.app import AstriaBot


def _amount(text: str) -> int:
    amount = parse_usd(text)
    if amount is None:
        raise UserError(f"`{text[:20]}` is not an amount in dollars, like `20` or `12.50`.")
    return amount


def _require_admin(interaction: discord.Interaction[AstriaBot]) -> int:
    # Server owners can change who sees /admin; the permission is checked again here.
    if interaction.guild_id is None or not interaction.permissions.manage_guild:
        raise UserError("Only members with Manage Server can do that.")
    return interaction.guild_id


@app_commands.default_permissions(manage_guild=True)
@app_commands.guild_only()
class Admin(commands.GroupCog, group_name="admin", group_description="Budgets and rules"):
    budget = app_commands.Group(name="budget", description="Set budgets and limits")

    def __init__(self, bot: AstriaBot) -> None:
        self.bot = bot
        super().__init__()

    async def _reply(self, interaction: discord.Interaction[AstriaBot], text: str) -> None:
        await interaction.followup.send(text, ephemeral=True)

    @budget.command(name="server", description="This server's monthly budget, in dollars")
    async def budget_server(self, interaction: discord.Interaction[AstriaBot], amount: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = _require_admin(interaction)
        settings = await self.bot.store.guilds.set_monthly_budget(guild_id, _amount(amount))
        await self._reply(
            interaction, f"Monthly budget set to {format_mc(settings.monthly_budget_mc)}."
        )

    @budget.command(name="user", description="Each member's daily and monthly limits")
    async def budget_user(
        self, interaction: discord.Interaction[AstriaBot], daily: str, monthly: str
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = _require_admin(interaction)
        day, month = _amount(daily), _amount(monthly)
        if day > month:
            raise UserError("The daily limit cannot be above the monthly one.")
        await self.bot.store.guilds.set_user_daily_limit(guild_id, day)
        settings = await self.bot.store.guilds.set_user_monthly_limit(guild_id, month)
        await self._reply(
            interaction,
            f"Each member may now spend {format_mc(settings.user_daily_limit_mc)} a day and "
            f"{format_mc(settings.user_monthly_limit_mc)} a month.",
        )

    @app_commands.command(name="grant", description="Extra allowance for a member this month")
    async def grant(
        self, interaction: discord.Interaction[AstriaBot], member: discord.Member, amount: str
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = _require_admin(interaction)
        value = _amount(amount)
        if value <= 0:
            raise UserError("A grant must be more than $0.")
        await self.bot.store.ledger.grant(
            guild_id=guild_id,
            user_id=member.id,
            amount_mc=value,
            actor_id=interaction.user.id,
            note="granted with /admin grant",
        )
        await self._reply(
            interaction, f"Granted {format_mc(value)} to {member.mention} this month."
        )

    @app_commands.command(name="pause", description="Stop new jobs on this server")
    async def pause(self, interaction: discord.Interaction[AstriaBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.bot.store.guilds.set_paused(_require_admin(interaction), True)
        await self._reply(interaction, "Paused: new jobs are refused; running ones finish.")

    @app_commands.command(name="resume", description="Accept new jobs again")
    async def resume(self, interaction: discord.Interaction[AstriaBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.bot.store.guilds.set_paused(_require_admin(interaction), False)
        await self._reply(interaction, "Resumed: members can start jobs again.")

    @app_commands.command(name="spend", description="This month's spend per member")
    async def spend(self, interaction: discord.Interaction[AstriaBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        spend = await self.bot.store.ledger.spend_by_member(_require_admin(interaction))
        lines = [
            f"<@{user}>: {format_mc(mc)}" for user, mc in sorted(spend.items(), key=lambda i: -i[1])
        ]
        await self._reply(interaction, "\n".join(lines)[:2000] or "Nothing spent this month.")


async def setup(bot: AstriaBot) -> None:
    await bot.add_cog(Admin(bot))
