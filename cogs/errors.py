"""The tree's error handler: every failure of a slash command becomes a short ephemeral
message (a refusal in its own words, Astria down, or a plain "something went wrong")."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.ui.base import UserError, answer_error

if TYPE_CHECKING:
    from bot.app import AstriaBot

log = logging.getLogger(__name__)


class Errors(commands.Cog):
    def __init__(self, bot: AstriaBot) -> None:
        self.bot = bot
        bot.tree.error(self.on_app_command_error)

    async def on_app_command_error(
        self, interaction: discord.Interaction[AstriaBot], error: app_commands.AppCommandError
    ) -> None:
        cause: BaseException = error
        if isinstance(error, app_commands.CommandInvokeError):
            cause = error.original
        elif isinstance(error, app_commands.NoPrivateMessage):
            cause = UserError("Use this command in a server.")
        elif isinstance(error, app_commands.MissingPermissions):
            cause = UserError("Only members with Manage Server can do that.")
        await answer_error(interaction, cause)


async def setup(bot: AstriaBot) -> None:
    await bot.add_cog(Errors(bot))
