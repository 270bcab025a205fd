"""A wire-level Discord fake: REST under /api/v10 and a gateway websocket on 127.0.0.1.

An unmodified discord.py bot talks to it once `discord.http.Route.BASE` is set to
`fake.api_base` and `DiscordWebSocket.DEFAULT_GATEWAY` to `fake.gateway_url`. It imports
neither discord.py nor anything else from `bot`.
"""

from bot.offline.fakecord.config import FakeDiscordConfig
from bot.offline.fakecord.errors import DiscordError, DriverError
from bot.offline.fakecord.interactions import InteractionHandle, ModalSpec, Reply
from bot.offline.fakecord.server import FakeDiscord, RequestRecord
from bot.offline.fakecord.state import Attachment, Channel, Guild, Member, Message, User

__all__ = [
    "Attachment",
    "Channel",
    "DiscordError",
    "DriverError",
    "FakeDiscord",
    "FakeDiscordConfig",
    "Guild",
    "InteractionHandle",
    "Member",
    "Message",
    "ModalSpec",
    "Reply",
    "RequestRecord",
    "User",
]
