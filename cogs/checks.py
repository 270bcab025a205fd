"""What the cogs share at the Discord edge: whether the bot itself could post here (the
server's rules for members are the use-case layer's, `bot.actions.door`), and the `tune`
option's autocomplete."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.store import TuneState
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


def server_menu(
    name: str,
    callback: Callable[[discord.Interaction[Any], discord.Message], Coroutine[Any, Any, None]],
) -> app_commands.ContextMenu:
    """A message menu offered in servers only (never in DMs or private chats, and not as a
    user-installed app); a cog adds it to the tree in `cog_load`, since the decorator form
    does not work inside a cog."""
    return app_commands.ContextMenu(
        name=name,
        callback=callback,
        allowed_contexts=app_commands.AppCommandContext(
            guild=True, dm_channel=False, private_channel=False
        ),
        allowed_installs=app_commands.AppInstallationType(guild=True, user=False),
    )


async def ready_tune_choices(
    interaction: discord.Interaction[AstriaBot], current: str, *, own_only: bool
) -> list[app_commands.Choice[str]]:
    """Autocomplete for a `tune` option: the ready tunes the member may use here (their
    own, and the server's shared ones unless `own_only`) whose name has `current`."""
    tunes = await interaction.client.store.tunes.list_usable(
        interaction.user.id, interaction.guild_id or 0, states=[TuneState.READY]
    )
    wanted = current.casefold()
    return [
        app_commands.Choice(name=t.name[:100], value=str(t.id))
        for t in tunes
        if (not own_only or t.owner_id == interaction.user.id) and wanted in t.name.casefold()
    ][:25]
