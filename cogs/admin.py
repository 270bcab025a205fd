"""/admin: a server's budget, members' limits, grants, refunds, stuck jobs, pausing, where
and by whom the bot may be used, bans, sharing tunes, spend, the Astria balance, the
alert channel and how results are shown outside age-restricted channels. Needs
Manage Server (the default permission, checked again at run time)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.actions import Actor, Place, Services, admin, privacy, reports
from bot.rules.nsfw import NsfwMode
from bot.store import TuneState
from bot.ui.base import answer
from bot.ui.buttons import erase_question_view
from bot.ui.door import (
    actor_of,
    answer_with_file,
    done,
    entry,
    member_names,
    place_of,
    reply,
    services,
)

if TYPE_CHECKING:
    from bot.app import AstriaBot

CHART_FILE = "spend-last-30-days.png"


@app_commands.default_permissions(manage_guild=True)
@app_commands.guild_only()
@app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
@app_commands.allowed_installs(guilds=True, users=False)
class Admin(commands.GroupCog, group_name="admin", group_description="Budgets and rules"):
    budget = app_commands.Group(name="budget", description="Set budgets and limits")
    # Manage Server again on the nested group: Discord applies a group's own default.

    def __init__(self, bot: AstriaBot) -> None:
        self.bot = bot
        super().__init__()

    @budget.command(name="server", description="This server's monthly budget, in dollars")
    @app_commands.describe(amount="Dollars a month for the whole server, like 20 or 12.50")
    @entry("admin")
    async def budget_server(self, interaction: discord.Interaction[AstriaBot], amount: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await reply(interaction, await admin.set_server_budget(*_who(interaction), amount))

    @budget.command(name="user", description="Each member's daily and monthly limits")
    @app_commands.describe(
        daily="Dollars each member may spend a day, like 2", monthly="And a month, like 10"
    )
    @entry("admin")
    async def budget_user(
        self, interaction: discord.Interaction[AstriaBot], daily: str, monthly: str
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await reply(interaction, await admin.set_member_limits(*_who(interaction), daily, monthly))

    @app_commands.command(name="grant", description="Extra allowance for a member this month")
    @app_commands.describe(member="Who gets it", amount="Dollars, like 5 or 2.50")
    @entry("admin")
    async def grant(
        self, interaction: discord.Interaction[AstriaBot], member: discord.Member, amount: str
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        outcome = await admin.grant(*_who(interaction), member.id, member.mention, amount)
        await reply(interaction, outcome)

    @app_commands.command(name="pause", description="Stop new jobs on this server")
    @entry("admin")
    async def pause(self, interaction: discord.Interaction[AstriaBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await reply(interaction, await admin.set_paused(*_who(interaction), True))

    @app_commands.command(name="resume", description="Accept new jobs again")
    @entry("admin")
    async def resume(self, interaction: discord.Interaction[AstriaBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await reply(interaction, await admin.set_paused(*_who(interaction), False))

    @app_commands.command(name="spend", description="This month's spend per member")
    @app_commands.describe(
        chart="Attach a chart of the last 30 days: per day, top members, by kind of job"
    )
    @entry("admin")
    async def spend(self, interaction: discord.Interaction[AstriaBot], chart: bool = False) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = done(await admin.spend_report(*_who(interaction))).text
        if not chart:
            await answer(interaction, text)
            return
        drawn = done(
            await reports.guild_spend_chart(*_who(interaction), names=member_names(interaction))
        )
        text = f"{text[: 1990 - len(drawn.text)]}\n\n{drawn.text}"
        await answer_with_file(interaction, text, drawn.value, CHART_FILE)

    @app_commands.command(name="settings", description="Everything that governs this server")
    @entry("admin")
    async def settings(self, interaction: discord.Interaction[AstriaBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await reply(interaction, await admin.settings_report(*_who(interaction)))

    @app_commands.command(name="alerts", description="Where the bot tells admins about faults")
    @app_commands.describe(
        channel="The channel for alerts (stuck jobs, credit, drift, failed deliveries...)",
        off="True: tell admins nothing here any more",
        low_balance="Tell when the Astria balance falls below this many dollars "
        "(0: never, default: the operator's)",
    )
    @entry("admin")
    async def alerts(
        self,
        interaction: discord.Interaction[AstriaBot],
        channel: discord.TextChannel | None = None,
        off: bool = False,
        low_balance: app_commands.Range[str, 1, 20] | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        can_post = True
        if channel is not None:
            rights = channel.permissions_for(channel.guild.me)
            can_post = rights.view_channel and rights.send_messages
        outcome = await admin.set_alerts(
            *_who(interaction),
            channel_id=None if channel is None else channel.id,
            can_post=can_post,
            off=off,
            low_balance=low_balance,
        )
        await reply(interaction, outcome)

    @app_commands.command(
        name="nsfw", description="How results show outside age-restricted channels"
    )
    @app_commands.describe(mode="Outside age-restricted channels: show, spoiler or refuse")
    @app_commands.choices(
        mode=[
            app_commands.Choice(name="show: post results as they are", value="show"),
            app_commands.Choice(name="spoiler: every image as a spoiler", value="spoiler"),
            app_commands.Choice(name="refuse: new prompts only in age-restricted", value="refuse"),
        ]
    )
    @entry("admin")
    async def nsfw(
        self, interaction: discord.Interaction[AstriaBot], mode: app_commands.Choice[str]
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        outcome = await admin.set_nsfw_mode(*_who(interaction), NsfwMode(mode.value))
        await reply(interaction, outcome)

    @app_commands.command(name="refund", description="Give a finished job's cost back")
    @app_commands.describe(job="The job's reference, like prompt:12 (members see it in /jobs)")
    @entry("admin")
    async def refund(self, interaction: discord.Interaction[AstriaBot], job: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await reply(interaction, await admin.refund(*_who(interaction), job))

    @app_commands.command(name="cancel", description="Cancel a stuck job (settled at its cost)")
    @app_commands.describe(job="The job's reference, like tune:3 (members see it in /jobs)")
    @entry("admin")
    async def cancel(self, interaction: discord.Interaction[AstriaBot], job: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await reply(interaction, await admin.cancel_stuck(*_who(interaction), job))

    @app_commands.command(name="channels", description="Where members may use the bot")
    @app_commands.describe(
        action="allow or disallow a channel, or list the rule",
        channel="The channel (its threads and posts follow it)",
    )
    @entry("admin")
    async def channels(
        self,
        interaction: discord.Interaction[AstriaBot],
        action: admin.Switch,
        channel: discord.TextChannel | discord.ForumChannel | discord.VoiceChannel | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        target = None if channel is None else channel.id
        outcome = await admin.switch_rule(*_who(interaction), "channels", action, target)
        await reply(interaction, outcome)

    @app_commands.command(name="roles", description="Which roles may use the bot")
    @app_commands.describe(action="allow or disallow a role, or list the rule", role="The role")
    @entry("admin")
    async def roles(
        self,
        interaction: discord.Interaction[AstriaBot],
        action: admin.Switch,
        role: discord.Role | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        target = None if role is None else role.id
        outcome = await admin.switch_rule(*_who(interaction), "roles", action, target)
        await reply(interaction, outcome)

    @app_commands.command(name="ban", description="Stop a member from using the bot here")
    @app_commands.describe(member="The member to ban", reason="Why (kept for the admins)")
    @entry("admin")
    async def ban(
        self,
        interaction: discord.Interaction[AstriaBot],
        member: discord.Member,
        reason: app_commands.Range[str, 0, 200] | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        outcome = await admin.ban(*_who(interaction), member.id, member.mention, reason)
        await reply(interaction, outcome)

    @app_commands.command(name="unban", description="Let a member use the bot here again")
    @app_commands.describe(member="The member to unban")
    @entry("admin")
    async def unban(
        self, interaction: discord.Interaction[AstriaBot], member: discord.Member
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await reply(interaction, await admin.unban(*_who(interaction), member.id, member.mention))

    @app_commands.command(name="refresh-balance", description="Read the Astria balance now")
    @entry("admin")
    async def refresh_balance(self, interaction: discord.Interaction[AstriaBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await reply(interaction, await admin.refresh_balance(*_who(interaction)))

    @app_commands.command(name="share", description="Let every member here use a tune")
    @app_commands.describe(tune="A ready tune made in this server")
    @entry("admin")
    async def share(self, interaction: discord.Interaction[AstriaBot], tune: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await reply(interaction, await admin.share(*_who(interaction), tune, True))

    @app_commands.command(name="unshare", description="Stop sharing a tune with the server")
    @app_commands.describe(tune="A tune shared with this server")
    @entry("admin")
    async def unshare(self, interaction: discord.Interaction[AstriaBot], tune: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await reply(interaction, await admin.share(*_who(interaction), tune, False))

    @app_commands.command(name="erase", description="Erase a member's data in this server")
    @app_commands.describe(
        member="The member whose data to erase",
        user_id="Or the numeric id of someone who left the server",
    )
    @entry("admin")
    async def erase(
        self,
        interaction: discord.Interaction[AstriaBot],
        member: discord.Member | None = None,
        user_id: str | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        picked = None if member is None else member.id
        mention = "" if member is None else member.mention
        asked = done(await privacy.ask_admin_erase(*_who(interaction), picked, user_id, mention))
        await interaction.followup.send(
            asked.text, view=erase_question_view(asked.value), ephemeral=True
        )

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
            app_commands.Choice(name=admin.tune_choice_label(t), value=str(t.id))
            for t in tunes
            if wanted in t.name.casefold()
        ][:25]


def _who(interaction: discord.Interaction[AstriaBot]) -> tuple[Services, Actor, Place]:
    return services(interaction), actor_of(interaction), place_of(interaction)


async def setup(bot: AstriaBot) -> None:
    await bot.add_cog(Admin(bot))
