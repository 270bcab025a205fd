"""The invite link: the scopes and the few permissions the bot needs (README, "Configuration")."""

from __future__ import annotations

import base64
import binascii

import discord


def needed_permissions() -> discord.Permissions:
    return discord.Permissions(
        view_channel=True,
        send_messages=True,
        send_messages_in_threads=True,
        embed_links=True,
        attach_files=True,
        read_message_history=True,
    )


def application_id_from_token(token: str) -> int | None:
    """A bot token starts with its application id in base64; None if it does not."""
    head = token.split(".", 1)[0]
    try:
        text = base64.b64decode(head + "=" * (-len(head) % 4), validate=False).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def invite_url(application_id: int) -> str:
    return discord.utils.oauth_url(
        application_id,
        permissions=needed_permissions(),
        scopes=("bot", "applications.commands"),
    )
