"""/pack: Astria's gallery packs. `list` shows them with the price for the member's tune
class (paged with buttons that survive a restart, from a short cache); `run` runs one on
the member's own tune."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.actions import packs
from bot.rules.credits import format_mc
from bot.ui.buttons import pack_pages_view
from bot.ui.door import actor_of, done, entry, place_of, reply, services
from cogs.checks import ready_tune_choices, refuse_if_cannot_post

if TYPE_CHECKING:
    from bot.app import AstriaBot


@app_commands.guild_only()
@app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
@app_commands.allowed_installs(guilds=True, users=False)
class Packs(commands.GroupCog, group_name="pack", group_description="Astria's photo packs"):
    def __init__(self, bot: AstriaBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="list", description="Astria's packs, priced for your tune")
    @entry("reads")
    async def list_(self, interaction: discord.Interaction[AstriaBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        shown = done(
            await packs.list_packs(
                services(interaction), actor_of(interaction), place_of(interaction)
            )
        ).value
        view = pack_pages_view(shown) if shown.pages > 1 else discord.utils.MISSING
        await interaction.followup.send(shown.text(), ephemeral=True, view=view)

    @app_commands.command(name="run", description="Run one of Astria's packs on your tune")
    @app_commands.describe(
        pack="A pack from Astria's gallery (start typing its name)",
        tune="One of your own ready tunes",
    )
    @entry("spends")
    async def run(self, interaction: discord.Interaction[AstriaBot], pack: str, tune: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        refuse_if_cannot_post(interaction)
        outcome = await packs.run_pack(
            services(interaction), actor_of(interaction), place_of(interaction), pack, tune
        )
        await reply(interaction, outcome)

    @run.autocomplete("pack")
    async def pack_names(
        self, interaction: discord.Interaction[AstriaBot], current: str
    ) -> list[app_commands.Choice[str]]:
        offers = await packs.pack_choices(
            services(interaction), actor_of(interaction), place_of(interaction), current
        )
        return [
            app_commands.Choice(
                name=(
                    f"{o.title} ({format_mc(o.price_mc)})"
                    if o.price_mc is not None
                    else f"{o.title} (for {', '.join(o.classes)})"
                )[:100],
                value=str(o.id),
            )
            for o in offers
        ]

    @run.autocomplete("tune")
    async def tune_names(
        self, interaction: discord.Interaction[AstriaBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return await ready_tune_choices(interaction, current, own_only=True)


async def setup(bot: AstriaBot) -> None:
    await bot.add_cog(Packs(bot))
