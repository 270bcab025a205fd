"""/admin: a server's budget, members' limits, grants, refunds, stuck jobs, pausing, where
and by whom the bot may be used, bans, sharing tunes, spend and the Astria balance. Needs
Manage Server (the default permission, checked again at run time)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.credits import format_mc, parse_usd
from bot.store import JobRef, LedgerKind, TuneState
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


def _job(text: str) -> JobRef:
    try:
        return JobRef.parse(text.strip().lower().replace("-", ":").replace(" ", ""))
    except ValueError:
        raise UserError(
            f"`{text[:30]}` is not a job; use its reference from `/jobs`, like `prompt:12`."
        ) from None


Switch = Literal["allow", "disallow", "list"]


@app_commands.default_permissions(manage_guild=True)
@app_commands.guild_only()
class Admin(commands.GroupCog, group_name="admin", group_description="Budgets and rules"):
    budget = app_commands.Group(name="budget", description="Set budgets and limits")
    # Manage Server again on the nested group: Discord applies a group's own default.

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

    @app_commands.command(name="refund", description="Give a finished job's cost back")
    @app_commands.describe(job="The job's reference, like prompt:12 (members see it in /jobs)")
    async def refund(self, interaction: discord.Interaction[AstriaBot], job: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = _require_admin(interaction)
        ref = _job(job)
        ledger = self.bot.store.ledger
        entries = await ledger.entries(guild_id=guild_id, job=ref)
        if not entries:
            raise UserError(f"There is no job `{ref}` on this server.")
        if not any(e.kind == LedgerKind.SETTLE for e in entries):
            raise UserError(f"`{ref}` has not finished (or cost nothing): nothing to refund.")
        owner = entries[0].user_id
        spent = sum(e.amount_mc for e in entries)
        if spent <= 0:
            raise UserError(f"`{ref}` cost nothing, or was refunded already.")
        await ledger.adjust(
            guild_id=guild_id,
            user_id=owner,
            amount_mc=-spent,
            actor_id=interaction.user.id,
            note="refund with /admin refund",
            job=ref,
        )
        await self._reply(
            interaction,
            f"Refunded {format_mc(spent)} for `{ref}` to <@{owner}>'s and the server's "
            "budgets. (Astria's charge to the account stands.)",
        )

    @app_commands.command(name="cancel", description="Cancel a stuck job (settled at its cost)")
    @app_commands.describe(job="The job's reference, like tune:3 (members see it in /jobs)")
    async def cancel(self, interaction: discord.Interaction[AstriaBot], job: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = _require_admin(interaction)
        ref = _job(job)
        store = self.bot.store
        record = (
            await store.tunes.get_in_guild(guild_id, ref.id)
            if ref.kind == "tune"
            else await store.prompts.get_in_guild(guild_id, ref.id)
        )
        if record is None:
            raise UserError(f"There is no job `{ref}` on this server.")
        if not await self.bot.tracker.cancel_stuck(ref, interaction.user.id):
            raise UserError(
                f"`{ref}` is {record.state}: only a stuck job can be cancelled here "
                "(its owner can cancel a queued one from its status message)."
            )
        await self._reply(
            interaction, f"Cancelled `{ref}`: deleted at Astria and settled at what it cost."
        )

    async def _switch(
        self,
        interaction: discord.Interaction[AstriaBot],
        what: str,
        action: Switch,
        target: int | None,
        mention: str,
    ) -> None:
        guild_id = _require_admin(interaction)
        guilds = self.bot.store.guilds
        if action != "list":
            if target is None:
                raise UserError(f"Say which {what[:-1]} to {action}.")
            allow = action == "allow"
            if what == "channels":
                await (guilds.allow_channel if allow else guilds.disallow_channel)(guild_id, target)
            else:
                await (guilds.allow_role if allow else guilds.disallow_role)(guild_id, target)
        settings = await guilds.get(guild_id)
        ids = settings.allowed_channel_ids if what == "channels" else settings.allowed_role_ids
        shown = ", ".join(mention.format(i) for i in sorted(ids))
        text = (
            f"The bot may be used in: {shown}."
            if what == "channels"
            else (f"Only members with one of these roles may use the bot: {shown}.")
        )
        if not ids:
            text = f"No {what} rule: every {what[:-1]} may use the bot."
        await self._reply(interaction, text)

    @app_commands.command(name="channels", description="Where members may use the bot")
    @app_commands.describe(action="allow or disallow a channel, or list the rule")
    async def channels(
        self,
        interaction: discord.Interaction[AstriaBot],
        action: Switch,
        channel: discord.TextChannel | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        target = None if channel is None else channel.id
        await self._switch(interaction, "channels", action, target, "<#{}>")

    @app_commands.command(name="roles", description="Which roles may use the bot")
    @app_commands.describe(action="allow or disallow a role, or list the rule")
    async def roles(
        self,
        interaction: discord.Interaction[AstriaBot],
        action: Switch,
        role: discord.Role | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        target = None if role is None else role.id
        await self._switch(interaction, "roles", action, target, "<@&{}>")

    @app_commands.command(name="ban", description="Stop a member from using the bot here")
    async def ban(
        self,
        interaction: discord.Interaction[AstriaBot],
        member: discord.Member,
        reason: app_commands.Range[str, 0, 200] | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = _require_admin(interaction)
        await self.bot.store.guilds.ban(
            guild_id, member.id, actor_id=interaction.user.id, reason=reason
        )
        await self._reply(
            interaction, f"{member.mention} can no longer use the bot here; running jobs finish."
        )

    @app_commands.command(name="unban", description="Let a member use the bot here again")
    async def unban(
        self, interaction: discord.Interaction[AstriaBot], member: discord.Member
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.bot.store.guilds.unban(_require_admin(interaction), member.id)
        await self._reply(interaction, f"{member.mention} may use the bot here again.")

    @app_commands.command(name="refresh-balance", description="Read the Astria balance now")
    async def refresh_balance(self, interaction: discord.Interaction[AstriaBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        _require_admin(interaction)
        user = await self.bot.astria.get_user()
        await self.bot.store.account.record_balance(user.usd_balance_mc)
        await self._reply(
            interaction, f"The Astria account has {format_mc(user.usd_balance_mc)} left."
        )

    async def _share(
        self, interaction: discord.Interaction[AstriaBot], tune: str, shared: bool
    ) -> None:
        guild_id = _require_admin(interaction)
        store = self.bot.store
        record = await store.tunes.get_in_guild(guild_id, int(tune)) if tune.isdigit() else None
        if record is None:
            raise UserError("Pick a tune of this server from the list.")
        if shared and record.state != TuneState.READY:
            raise UserError(f"**{record.name}** is {record.state}; share it once it is ready.")
        await store.tunes.set_shared(record.id, shared)
        if shared:
            text = f"**{record.name}** is shared: every member here may use it in `/imagine`."
        else:
            text = f"**{record.name}** is no longer shared; only <@{record.owner_id}> may use it."
        await self._reply(interaction, text)

    @app_commands.command(name="share", description="Let every member here use a tune")
    async def share(self, interaction: discord.Interaction[AstriaBot], tune: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self._share(interaction, tune, True)

    @app_commands.command(name="unshare", description="Stop sharing a tune with the server")
    async def unshare(self, interaction: discord.Interaction[AstriaBot], tune: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self._share(interaction, tune, False)

    @share.autocomplete("tune")
    @unshare.autocomplete("tune")
    async def guild_tunes(
        self, interaction: discord.Interaction[AstriaBot], current: str
    ) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None or not interaction.permissions.manage_guild:
            return []
        tunes = await self.bot.store.tunes.list_in_guild(
            interaction.guild_id, states=[TuneState.READY]
        )
        wanted = current.casefold()
        return [
            app_commands.Choice(name=f"{t.name} (by {t.owner_id})"[:100], value=str(t.id))
            for t in tunes
            if wanted in t.name.casefold()
        ][:25]


async def setup(bot: AstriaBot) -> None:
    await bot.add_cog(Admin(bot))
