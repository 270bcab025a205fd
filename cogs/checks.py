"""The one check that stays at the Discord edge: whether the bot itself could post here
(the server's rules for members are the use-case layer's, `bot.actions.door`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from bot.ui.base import UserError

if TYPE_CHECKING:
    from bot.app import AstriaBot


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
    if isinstance(interaction.channel, discord.Thread) and not permissions.send_messages_in_threads:
        missing.append("Send Messages in Threads")
        missing = [m for m in missing if m != "Send Messages"]
    if missing:
        raise UserError(
            "I can't post results in this channel (missing: " + ", ".join(missing) + "). "
            "Try another channel, or ask an admin to give me those permissions here."
        )
