"""/privacy: a member's own data. `/privacy erase` asks, then (the Erase button, which
works after a restart) deletes their tunes and prompts at Astria and here, their photos
and their result posts, and unlinks their id from everything the bot keeps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.actions import privacy
from bot.ui.buttons import erase_question_view
from bot.ui.door import actor_of, done, entry, place_of, services

if TYPE_CHECKING:
    from bot.app import AstriaBot


# Guild-only like every command (the payload test holds them to it); run from any server,
# it erases the member's data in every server.
@app_commands.guild_only()
@app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
@app_commands.allowed_installs(guilds=True, users=False)
class Privacy(commands.GroupCog, group_name="privacy", group_description="Your data"):
    def __init__(self, bot: AstriaBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(
        name="erase", description="Erase your tunes, images and photos, here and at Astria"
    )
    @entry("removes")
    async def erase(self, interaction: discord.Interaction[AstriaBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        asked = done(
            await privacy.ask_erase(
                services(interaction), actor_of(interaction), place_of(interaction)
            )
        )
        await interaction.followup.send(
            asked.text, view=erase_question_view(asked.value), ephemeral=True
        )


async def setup(bot: AstriaBot) -> None:
    await bot.add_cog(Privacy(bot))
