"""The fake's world: users, guilds, channels, messages, attachments and their JSON shapes."""

from __future__ import annotations

import io
import mimetypes
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from bot.offline.fakecord.config import FakeDiscordConfig

DISCORD_EPOCH_MS = 1_420_070_400_000

# Permission bits (https://discord.com/developers/docs/topics/permissions).
CREATE_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1

EVERYONE_PERMISSIONS = (
    CREATE_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_APPLICATION_COMMANDS
    | SEND_MESSAGES_IN_THREADS
)
BOT_PERMISSIONS = EVERYONE_PERMISSIONS
ADMIN_PERMISSIONS = MANAGE_GUILD
DM_PERMISSIONS = (
    ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_APPLICATION_COMMANDS
)

# Message flags.
SUPPRESS_EMBEDS = 1 << 2
EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_NOTIFICATIONS = 1 << 12
COMPONENTS_V2 = 1 << 15
SETTABLE_FLAGS = SUPPRESS_EMBEDS | EPHEMERAL | SUPPRESS_NOTIFICATIONS | COMPONENTS_V2

MANAGE_THREADS = 1 << 34

# Channel types (https://discord.com/developers/docs/resources/channel#channel-object-channel-types).
GUILD_TEXT = 0
DM = 1
GUILD_VOICE = 2  # has a text chat beside the voice
PUBLIC_THREAD = 11
PRIVATE_THREAD = 12
GUILD_STAGE_VOICE = 13  # has a text chat too
GUILD_FORUM = 15  # holds no messages itself: its posts are threads
THREAD_TYPES = frozenset({PUBLIC_THREAD, PRIVATE_THREAD})
VOICE_TYPES = frozenset({GUILD_VOICE, GUILD_STAGE_VOICE})


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def safe_filename(name: str) -> str:
    """Discord keeps letters, digits, dots, dashes and underscores; the rest become '_'."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name.strip()) or "unknown"
    return cleaned[:1024]


def sniff(data: bytes, filename: str) -> tuple[str | None, int | None, int | None]:
    """Content type and, for images Pillow can read, width and height."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            mime = Image.MIME.get(image.format or "")
            return mime, image.width, image.height
    except Exception:  # not an image, or Pillow missing: fall back to the name
        guessed, _ = mimetypes.guess_type(filename)
        return guessed, None, None


@dataclass(eq=False)
class User:
    id: int
    name: str
    bot: bool = False
    dms_closed: bool = False

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": str(self.id),
            "username": self.name,
            "discriminator": "0",
            "global_name": None if self.bot else self.name,
            "avatar": None,
            "public_flags": 0,
        }
        if self.bot:
            body["bot"] = True
        return body


@dataclass(eq=False)
class Member:
    user: User
    guild_id: int
    admin: bool = False
    joined_at: str = ""

    @property
    def id(self) -> int:
        return self.user.id


@dataclass(eq=False)
class Channel:
    id: int
    type: int
    name: str
    guild_id: int | None = None
    position: int = 0
    recipient_id: int | None = None
    deny: dict[int, int] = field(default_factory=dict)  # member id -> denied bits
    deleted: bool = False
    last_message_id: int | None = None
    nsfw: bool = False  # age-restricted (guild channels; a thread follows its parent)
    # Threads (forum posts are threads whose parent is the forum).
    parent_id: int | None = None
    owner_id: int | None = None
    archived: bool = False
    locked: bool = False
    archive_timestamp: str = ""
    thread_members: dict[int, str] = field(default_factory=dict)  # user id -> joined at

    @property
    def is_thread(self) -> bool:
        return self.type in THREAD_TYPES


@dataclass(eq=False)
class Guild:
    id: int
    name: str
    premium_tier: int
    owner_id: int
    admin_role_id: int
    bot_role_id: int
    channels: list[int] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    members: dict[int, Member] = field(default_factory=dict)


@dataclass(eq=False)
class Attachment:
    id: int
    channel_id: int
    filename: str
    data: bytes
    content_type: str | None
    width: int | None
    height: int | None
    ephemeral: bool
    uploaded_at: float  # wall clock
    description: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(eq=False)
class Message:
    """The fake's picture of one message; ephemeral ones are kept but never listed."""

    id: int
    channel_id: int
    author_id: int
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    nonce: str | int | None = None
    flags: int = 0
    type: int = 0
    timestamp: str = ""
    edited_timestamp: str | None = None
    webhook_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    # A reply's (type 19) message_reference: the message it answers.
    reply_to: int | None = None
    deleted: bool = False
    edits: int = 0

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & LOADING)

    def custom_ids(self) -> list[str]:
        """Every component's custom_id on the message, in order (rows and labels opened)."""
        return [str(c["custom_id"]) for c in walk(self.components) if "custom_id" in c]

    def labels(self) -> list[str]:
        """The buttons' labels, in order."""
        return [str(c["label"]) for c in walk(self.components) if c.get("label")]


def walk(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every component, nested ones included (action rows, labels, sections)."""
    found: list[dict[str, Any]] = []
    for component in components:
        found.append(component)
        found.extend(walk(list(component.get("components") or [])))
        inner = component.get("component") or component.get("accessory")
        if isinstance(inner, dict):
            found.extend(walk([inner]))
    return found


class World:
    """All state the REST API, the gateway and the driver share."""

    def __init__(self, config: FakeDiscordConfig) -> None:
        self.config = config
        self.base_url = "http://127.0.0.1"
        self._last_id = 0
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, Message] = {}
        self.channel_messages: dict[int, list[int]] = {}
        self.attachments: dict[int, Attachment] = {}
        self.dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self.bot = self.add_user(config.bot_name, bot=True)
        self.owner = self.add_user("app-owner")
        self.app_id = self.bot.id  # as for every application made since 2020

    # -- ids and time -----------------------------------------------------------------------

    def new_id(self) -> int:
        ms = int(self.config.wall_clock() * 1000) - DISCORD_EPOCH_MS
        self._last_id = max(self._last_id + 1, max(ms, 0) << 22)
        return self._last_id

    def now_iso(self) -> str:
        return iso(self.config.wall_clock())

    # -- entities ---------------------------------------------------------------------------

    def add_user(self, name: str, *, bot: bool = False, dms_closed: bool = False) -> User:
        user = User(self.new_id(), name, bot=bot, dms_closed=dms_closed)
        self.users[user.id] = user
        return user

    def add_guild(self, name: str, premium_tier: int) -> Guild:
        guild_id = self.new_id()
        owner = self.add_user(f"{name}-owner")
        guild = Guild(guild_id, name, premium_tier, owner.id, self.new_id(), self.new_id())
        self.guilds[guild_id] = guild
        self.add_member(guild, owner, admin=True)
        self.add_member(guild, self.bot)
        return guild

    def add_member(self, guild: Guild, user: User, *, admin: bool = False) -> Member:
        member = Member(user, guild.id, admin=admin, joined_at=self.now_iso())
        guild.members[user.id] = member
        return member

    def add_channel(
        self,
        guild: Guild,
        name: str,
        *,
        bot_can_send: bool = True,
        kind: int = GUILD_TEXT,
        nsfw: bool = False,
    ) -> Channel:
        if kind not in (GUILD_TEXT, GUILD_FORUM, *VOICE_TYPES):
            raise ValueError(f"channel type {kind} is not a guild channel the fake models")
        channel = Channel(
            self.new_id(), kind, name, guild.id, position=len(guild.channels), nsfw=nsfw
        )
        if not bot_can_send:
            channel.deny[self.bot.id] = SEND_MESSAGES
        guild.channels.append(channel.id)
        self.channels[channel.id] = channel
        self.channel_messages[channel.id] = []
        return channel

    def add_thread(
        self, parent: Channel, name: str, owner: User, *, private: bool = False
    ) -> Channel:
        """A thread under a text channel, or (parent a forum) a forum post, whose starter
        message shares the thread's id as on Discord."""
        if parent.type not in (GUILD_TEXT, GUILD_FORUM) or parent.guild_id is None:
            raise ValueError("threads live under a text or forum channel")
        if private and parent.type == GUILD_FORUM:
            raise ValueError("forum posts are public threads")
        guild = self.guilds[parent.guild_id]
        kind = PRIVATE_THREAD if private else PUBLIC_THREAD
        thread = Channel(self.new_id(), kind, name, guild.id, parent_id=parent.id)
        thread.owner_id = owner.id
        thread.archive_timestamp = self.now_iso()
        thread.thread_members[owner.id] = self.now_iso()
        guild.threads.append(thread.id)
        self.channels[thread.id] = thread
        self.channel_messages[thread.id] = []
        return thread

    def parent_of(self, channel: Channel) -> Channel:
        """The channel whose permissions apply: a thread's parent, else the channel."""
        if channel.parent_id is not None and channel.is_thread:
            return self.channels[channel.parent_id]
        return channel

    def dm_channel(self, user: User) -> Channel:
        existing = self.dm_channels.get(user.id)
        if existing is not None:
            return self.channels[existing]
        channel = Channel(self.new_id(), DM, "", recipient_id=user.id)
        self.channels[channel.id] = channel
        self.channel_messages[channel.id] = []
        self.dm_channels[user.id] = channel.id
        return channel

    def guild_of(self, channel: Channel) -> Guild | None:
        return None if channel.guild_id is None else self.guilds.get(channel.guild_id)

    def file_limit(self, channel: Channel) -> int:
        guild = self.guild_of(channel)
        return self.config.file_limit(None if guild is None else guild.premium_tier)

    def permissions(self, user_id: int, channel: Channel) -> int:
        guild = self.guild_of(channel)
        if guild is None:
            return DM_PERMISSIONS
        if user_id == guild.owner_id:
            return ALL_PERMISSIONS
        member = guild.members.get(user_id)
        if member is None:
            return 0
        perms = EVERYONE_PERMISSIONS
        if member.admin:
            perms |= ADMIN_PERMISSIONS
        if member.user.bot:
            perms |= BOT_PERMISSIONS
        if perms & ADMINISTRATOR:
            return ALL_PERMISSIONS
        # A thread has no overwrites of its own: its parent's apply.
        return perms & ~self.parent_of(channel).deny.get(user_id, 0)

    # -- messages and attachments -------------------------------------------------------------

    def store_attachment(
        self, channel: Channel, filename: str, data: bytes, *, ephemeral: bool = False
    ) -> Attachment:
        name = safe_filename(filename)
        content_type, width, height = sniff(data, name)
        attachment = Attachment(
            self.new_id(),
            channel.id,
            name,
            data,
            content_type,
            width,
            height,
            ephemeral,
            self.config.wall_clock(),
        )
        self.attachments[attachment.id] = attachment
        return attachment

    def add_message(
        self, channel: Channel, author: User, *, ident: int | None = None, **fields: Any
    ) -> Message:
        """A new message; `ident` for a forum post's starter (it shares the thread's id)."""
        message_id = self.new_id() if ident is None else ident
        message = Message(message_id, channel.id, author.id, timestamp=self.now_iso(), **fields)
        self.messages[message.id] = message
        self.channel_messages.setdefault(channel.id, []).append(message.id)
        if not message.ephemeral:
            channel.last_message_id = message.id
        return message

    def visible_messages(self, channel: Channel, *, ephemeral: bool = False) -> list[Message]:
        """Oldest first; deleted messages never, ephemeral ones only when asked."""
        found = (self.messages[mid] for mid in self.channel_messages.get(channel.id, []))
        return [m for m in found if not m.deleted and (ephemeral or not m.ephemeral)]

    # -- payloads -----------------------------------------------------------------------------

    def attachment_url(self, attachment: Attachment) -> str:
        url = (
            f"{self.base_url}/attachments/{attachment.channel_id}/{attachment.id}/"
            f"{quote(attachment.filename)}"
        )
        life = self.config.attachment_url_life
        if life is not None:
            url += f"?ex={int(attachment.uploaded_at + life):x}"
        return url

    def attachment_payload(self, attachment: Attachment) -> dict[str, Any]:
        url = self.attachment_url(attachment)
        body: dict[str, Any] = {
            "id": str(attachment.id),
            "filename": attachment.filename,
            "size": attachment.size,
            "url": url,
            "proxy_url": url,
        }
        if attachment.content_type is not None:
            body["content_type"] = attachment.content_type
        if attachment.width is not None:
            body["width"] = attachment.width
            body["height"] = attachment.height
        if attachment.ephemeral:
            body["ephemeral"] = True
        if attachment.description is not None:
            body["description"] = attachment.description
        return body

    def role_ids(self, member: Member) -> list[str]:
        guild = self.guilds[member.guild_id]
        roles: list[str] = []
        if member.admin:
            roles.append(str(guild.admin_role_id))
        if member.user.bot:
            roles.append(str(guild.bot_role_id))
        return roles

    def member_payload(
        self, member: Member, channel: Channel | None = None, *, with_user: bool = True
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "roles": self.role_ids(member),
            "joined_at": member.joined_at,
            "nick": None,
            "avatar": None,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            body["user"] = member.user.payload()
        if channel is not None:
            body["permissions"] = str(self.permissions(member.id, channel))
        return body

    def roles_payload(self, guild: Guild) -> list[dict[str, Any]]:
        def role(role_id: int, name: str, perms: int, position: int) -> dict[str, Any]:
            return {
                "id": str(role_id),
                "name": name,
                "permissions": str(perms),
                "position": position,
                "color": 0,
                "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
                "hoist": False,
                "managed": False,
                "mentionable": False,
                "icon": None,
                "unicode_emoji": None,
                "flags": 0,
            }

        bot_role = role(guild.bot_role_id, self.bot.name, BOT_PERMISSIONS, 2)
        bot_role.update(managed=True, tags={"bot_id": str(self.bot.id)})
        return [
            role(guild.id, "@everyone", EVERYONE_PERMISSIONS, 0),
            role(guild.admin_role_id, "Admin", ADMIN_PERMISSIONS, 1),
            bot_role,
        ]

    def channel_payload(self, channel: Channel, *, for_user: int | None = None) -> dict[str, Any]:
        last = None if channel.last_message_id is None else str(channel.last_message_id)
        body: dict[str, Any] = {
            "id": str(channel.id),
            "type": channel.type,
            "last_message_id": last,
            "flags": 0,
        }
        if channel.type == DM:
            recipient = self.users[channel.recipient_id or 0]
            body["recipients"] = [recipient.payload()]
        elif channel.is_thread:
            body.update(self._thread_fields(channel))
        else:
            body.update(
                guild_id=str(channel.guild_id),
                name=channel.name,
                position=channel.position,
                parent_id=None,
                topic=None,
                nsfw=channel.nsfw,
                rate_limit_per_user=0,
                permission_overwrites=[
                    {"id": str(uid), "type": 1, "allow": "0", "deny": str(bits)}
                    for uid, bits in channel.deny.items()
                ],
            )
            if channel.type in VOICE_TYPES:
                body.update(bitrate=64000, user_limit=0, rtc_region=None, video_quality_mode=1)
            if channel.type == GUILD_FORUM:
                body.update(
                    available_tags=[],
                    default_reaction_emoji=None,
                    default_thread_rate_limit_per_user=0,
                    default_sort_order=None,
                    default_forum_layout=0,
                )
        if for_user is not None:
            body["permissions"] = str(self.permissions(for_user, channel))
        return body

    def _thread_fields(self, thread: Channel) -> dict[str, Any]:
        messages = len(self.visible_messages(thread))
        body: dict[str, Any] = {
            "guild_id": str(thread.guild_id),
            "parent_id": str(thread.parent_id),
            "owner_id": str(thread.owner_id),
            "name": thread.name,
            "rate_limit_per_user": 0,
            "message_count": messages,
            "member_count": min(len(thread.thread_members), 50),
            "total_message_sent": messages,
            "applied_tags": [],
            "thread_metadata": {
                "archived": thread.archived,
                "auto_archive_duration": 1440,
                "archive_timestamp": thread.archive_timestamp,
                "locked": thread.locked,
                "invitable": False,
                "create_timestamp": thread.archive_timestamp,
            },
        }
        joined = thread.thread_members.get(self.bot.id)
        if joined is not None:
            body["member"] = self.thread_member_payload(thread, self.bot.id)
        return body

    def thread_member_payload(self, thread: Channel, user_id: int) -> dict[str, Any]:
        return {
            "id": str(thread.id),
            "user_id": str(user_id),
            "join_timestamp": thread.thread_members[user_id],
            "flags": 0,
        }

    def guild_payload(self, guild: Guild, *, all_members: bool) -> dict[str, Any]:
        """The GUILD_CREATE shape; without the members intent only the bot is listed."""
        members = [
            self.member_payload(m)
            for m in guild.members.values()
            if all_members or m.id == self.bot.id
        ]
        channels = [self.channels[cid] for cid in guild.channels]
        body = self.guild_update_payload(guild)
        body.update(
            channels=[self.channel_payload(c) for c in channels if not c.deleted],
            members=members,
            member_count=len(guild.members),
            large=False,
            unavailable=False,
            joined_at=guild.members[self.bot.id].joined_at,
            # Active threads only, as Discord sends them.
            threads=[
                self.channel_payload(self.channels[t])
                for t in guild.threads
                if not self.channels[t].deleted and not self.channels[t].archived
            ],
            voice_states=[],
            presences=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
        )
        return body

    def guild_update_payload(self, guild: Guild) -> dict[str, Any]:
        """The GUILD_UPDATE shape (no channels or members); unset fields are Discord's
        defaults, which discord.py assumes when they are missing."""
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "premium_tier": guild.premium_tier,
            "premium_subscription_count": (0, 2, 7, 14)[min(guild.premium_tier, 3)],
            "roles": self.roles_payload(guild),
            "emojis": [],
            "stickers": [],
            "features": [],
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "max_members": 500_000,
        }

    def message_payload(self, message: Message) -> dict[str, Any]:
        channel = self.channels[message.channel_id]
        author = self.users[message.author_id]
        body: dict[str, Any] = {
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            "type": message.type,
            "author": author.payload(),
            "content": message.content,
            "timestamp": message.timestamp,
            "edited_timestamp": message.edited_timestamp,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [self.attachment_payload(a) for a in message.attachments],
            "embeds": message.embeds,
            "components": message.components,
            "pinned": False,
            "flags": message.flags,
        }
        if channel.guild_id is not None:
            body["guild_id"] = str(channel.guild_id)
        if message.nonce is not None:
            body["nonce"] = message.nonce
        if message.webhook_id is not None:
            body["webhook_id"] = str(message.webhook_id)
            body["application_id"] = str(self.app_id)
        if message.interaction_metadata is not None:
            body["interaction_metadata"] = message.interaction_metadata
        if message.reply_to is not None:
            body["message_reference"] = {
                "type": 0,
                "message_id": str(message.reply_to),
                "channel_id": str(message.channel_id),
            }
        return body
