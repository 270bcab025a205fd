"""Checks every member command runs first: they read like the rule they enforce."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from bot.ui.base import UserError

if TYPE_CHECKING:
    from bot.app import AstriaBot


async def refuse_if_not_allowed(interaction: discord.Interaction[AstriaBot]) -> None:
    """Paused servers, banned members, and channel or role rules: refused before any spend."""
    store = interaction.client.store
    guild_id = interaction.guild_id or 0
    settings = await store.guilds.get(guild_id)
    if settings.paused:
        raise UserError("The bot is paused on this server; an admin can resume it.")
    if interaction.user.id in settings.banned_user_ids:
        raise UserError("You can't use the bot on this server.")
    if interaction.channel_id is not None and not settings.allows_channel(interaction.channel_id):
        raise UserError("The bot isn't used in this channel; try one the admins allowed.")
    roles = getattr(interaction.user, "roles", [])
    if not settings.allows_roles({r.id for r in roles}):
        raise UserError("Your roles don't include one allowed to use the bot here.")


# What delivery needs in the channel: post the status, the images as files, and find its
# own earlier posts after a restart.
_POSTING = {
    "view_channel": "View Channel",
    "send_messages": "Send Messages",
    "attach_files": "Attach Files",
    "read_message_history": "Read Message History",
}


def refuse_if_cannot_post(interaction: discord.Interaction[AstriaBot]) -> None:
    """Refuse before anything is spent if the bot could not post the result here."""
    permissions = interaction.app_permissions
    missing = [label for flag, label in _POSTING.items() if not getattr(permissions, flag)]
    if missing:
        raise UserError(
            "I can't post results in this channel (missing: " + ", ".join(missing) + "). "
            "Try another channel, or ask an admin to give me those permissions here."
        )
