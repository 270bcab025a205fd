"""REST under /api/v10: login, command sync, messages, DMs, interaction callbacks, webhooks."""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from bot.offline.fakecord import interactions as ix
from bot.offline.fakecord.config import FakeDiscordConfig
from bot.offline.fakecord.errors import (
    DiscordError,
    archived_thread,
    invalid_form,
    missing_access,
    missing_permissions,
    not_text,
    too_large,
    unknown,
    unknown_channel,
    unknown_interaction,
    unknown_message,
)
from bot.offline.fakecord.gateway import Gateway
from bot.offline.fakecord.interactions import InteractionHandle
from bot.offline.fakecord.limits import Nonces, RateLimits, Verdict
from bot.offline.fakecord.state import (
    ATTACH_FILES,
    COMPONENTS_V2,
    DM,
    EPHEMERAL,
    GUILD_FORUM,
    LOADING,
    MANAGE_THREADS,
    PRIVATE_THREAD,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    SUPPRESS_EMBEDS,
    SUPPRESS_NOTIFICATIONS,
    VIEW_CHANNEL,
    Attachment,
    Channel,
    Message,
    World,
    walk,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API = "/api/v10"
ID = r"{%s:\d+}"
CHANNEL_FLAGS = SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | COMPONENTS_V2
INTERACTION_FLAGS = CHANNEL_FLAGS | EPHEMERAL
NAME = re.compile(r"[-_\w]{1,32}")


def bad_json() -> DiscordError:
    return DiscordError(400, 50109, "The request body contains invalid JSON.")


@dataclass
class RequestInfo:
    """What the recorder keeps about one request, filled in by the handler."""

    json: Any = None
    files: list[int] = field(default_factory=list)
    channel_id: int | None = None
    verdict: Verdict | None = None


INFO = web.RequestKey("fakecord", RequestInfo)


@dataclass
class Upload:
    index: int
    filename: str
    data: bytes


@dataclass
class Body:
    json: dict[str, Any]
    files: list[Upload]


class RateLimited(Exception):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__(f"rate limited for {verdict.reset_after}s")
        self.verdict = verdict


def _replied_to(reference: Any, channel: Channel, world: World) -> int | None:
    """The message a reply answers, or None for a plain post. A reference to a message
    that is not (or no longer) in the channel is refused, as Discord does, unless it says
    `fail_if_not_exists: false`: then the post goes out plainly."""
    if not reference:
        return None
    if not isinstance(reference, dict):
        raise invalid_form("message_reference", "MODEL_TYPE_CONVERT", "Only dictionaries.")
    message_id = _int(reference.get("message_id"), "message_reference.message_id")
    found = world.messages.get(message_id)
    if found is not None and found.channel_id == channel.id and not found.deleted:
        return found.id
    if reference.get("fail_if_not_exists", True) is False:
        return None
    raise invalid_form("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")


def json_response(body: Any, status: int = 200) -> web.Response:
    # Exactly "application/json": discord.py decodes nothing else (no charset suffix).
    return web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json"
    )


def _int(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid_form(what, "NUMBER_TYPE_COERCE", "Value is not snowflake.") from None


def normalise_components(raw: Any, flags: int, where: str = "components") -> list[dict[str, Any]]:
    """Check the limits Discord enforces and number components the way Discord does."""
    if not isinstance(raw, list):
        raise invalid_form(where, "LIST_TYPE_CONVERT", "Must be an array.")
    components: list[dict[str, Any]] = copy.deepcopy(raw)
    every = walk(components)
    if flags & COMPONENTS_V2:
        if len(every) > 40:
            raise invalid_form(where, "BASE_TYPE_MAX_LENGTH", "Must be 40 or fewer in total.")
    else:
        if len(components) > 5:
            raise invalid_form(where, "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        for n, row in enumerate(components):
            children = row.get("components") or []
            if row.get("type") != 1 or not 1 <= len(children) <= 5:
                raise invalid_form(f"{where}.{n}", "COMPONENT_LAYOUT_WIDTH_EXCEEDED", "Bad row.")
    seen: set[str] = set()
    for number, component in enumerate(every, start=1):
        component.setdefault("id", number)
        custom_id = component.get("custom_id")
        if custom_id is None:
            continue
        if not 1 <= len(str(custom_id)) <= 100:
            raise invalid_form(f"{where}.custom_id", "BASE_TYPE_BAD_LENGTH", "Must be 1-100.")
        if custom_id in seen:
            raise invalid_form(
                f"{where}.custom_id", "COMPONENT_CUSTOM_ID_DUPLICATED", "Duplicate custom_id."
            )
        seen.add(str(custom_id))
    return components


def check_modal(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The modal rules: title, custom_id, 1-5 rows, FileUpload only inside a Label.
    Returns the rows numbered as Discord numbers them."""
    custom_id, title = str(data.get("custom_id") or ""), str(data.get("title") or "")
    if not 1 <= len(custom_id) <= 100:
        raise invalid_form("data.custom_id", "BASE_TYPE_BAD_LENGTH", "Must be 1-100 long.")
    if not 1 <= len(title) <= 45:
        raise invalid_form("data.title", "BASE_TYPE_BAD_LENGTH", "Must be 1-45 long.")
    rows = data.get("components")
    if not isinstance(rows, list) or not 1 <= len(rows) <= 5:
        raise invalid_form("data.components", "BASE_TYPE_BAD_LENGTH", "Must be 1-5 long.")
    for n, row in enumerate(rows):
        where = f"data.components.{n}"
        kind = row.get("type")
        if kind == 18:
            inner = row.get("component") or {}
            if not 1 <= len(str(row.get("label") or "")) <= 45:
                raise invalid_form(f"{where}.label", "BASE_TYPE_BAD_LENGTH", "Must be 1-45.")
            if len(str(row.get("description") or "")) > 100:
                raise invalid_form(f"{where}.description", "BASE_TYPE_MAX_LENGTH", "Max 100.")
            if inner.get("type") not in (3, 4, 5, 6, 7, 8, 19, 21, 22, 23):
                raise invalid_form(f"{where}.component", "UNION_TYPE_CHOICES", "Bad type.")
            if inner.get("type") == 19 and not 1 <= int(inner.get("max_values", 1)) <= 10:
                raise invalid_form(f"{where}.component.max_values", "NUMBER_TYPE_MAX", "Max 10.")
        elif kind == 1:
            children = row.get("components") or []
            if len(children) != 1 or children[0].get("type") != 4:
                raise invalid_form(where, "MODAL_ROW_TYPE", "Rows hold one text input.")
        elif kind != 10:
            raise invalid_form(f"{where}.type", "UNION_TYPE_CHOICES", "Not allowed in a modal.")
    return normalise_components(rows, COMPONENTS_V2, "data.components")


class RestApi:
    """The handlers; all state lives in the World, the limits and the interaction table."""

    def __init__(
        self,
        world: World,
        gateway: Gateway,
        limits: RateLimits,
        nonces: Nonces,
        config: FakeDiscordConfig,
    ) -> None:
        self.world = world
        self.gateway = gateway
        self.limits = limits
        self.nonces = nonces
        self.config = config
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.command_syncs: list[int | None] = []
        self.interactions: dict[int, InteractionHandle] = {}
        self.by_token: dict[str, InteractionHandle] = {}
        self.gateway_url = ""
        # Crash tests: a post this matches is kept but never answered, so the bot dies
        # (killed by the test) between Discord having the message and the bot knowing it.
        self.stall_posts: Callable[[Message], bool] | None = None
        self.stalled: list[Message] = []
        self.stalled_signal = asyncio.Event()

    def routes(self) -> list[tuple[str, str, Handler]]:
        c, m, g, u = ID % "channel_id", ID % "message_id", ID % "guild_id", ID % "user_id"
        app, wid = ID % "app_id", ID % "webhook_id"
        hook_msg = "{message_id:(?:@original|\\d+)}"
        table: list[tuple[str, str, Handler]] = [
            ("GET", "/gateway", self.get_gateway),
            ("GET", "/gateway/bot", self.get_gateway_bot),
            ("GET", "/users/@me", self.get_me),
            ("GET", "/oauth2/applications/@me", self.get_application),
            ("GET", f"/applications/{app}/commands", self.get_commands),
            ("PUT", f"/applications/{app}/commands", self.put_commands),
            ("GET", f"/applications/{app}/guilds/{g}/commands", self.get_commands),
            ("PUT", f"/applications/{app}/guilds/{g}/commands", self.put_commands),
            ("GET", f"/channels/{c}", self.get_channel),
            ("GET", f"/channels/{c}/messages", self.list_messages),
            ("POST", f"/channels/{c}/messages", self.create_message),
            ("GET", f"/channels/{c}/messages/{m}", self.get_message),
            ("PATCH", f"/channels/{c}/messages/{m}", self.edit_message),
            ("DELETE", f"/channels/{c}/messages/{m}", self.delete_message),
            ("POST", "/users/@me/channels", self.create_dm),
            ("GET", f"/users/{u}", self.get_user),
            ("GET", f"/guilds/{g}", self.get_guild),
            ("GET", f"/guilds/{g}/members/{u}", self.get_member),
            ("POST", f"/interactions/{wid}/{{token}}/callback", self.callback),
            ("POST", f"/webhooks/{wid}/{{token}}", self.followup),
            ("GET", f"/webhooks/{wid}/{{token}}/messages/{hook_msg}", self.get_hook_message),
            ("PATCH", f"/webhooks/{wid}/{{token}}/messages/{hook_msg}", self.edit_hook_message),
            ("DELETE", f"/webhooks/{wid}/{{token}}/messages/{hook_msg}", self.delete_hook_message),
        ]
        return [(method, API + path, handler) for method, path, handler in table]

    # -- plumbing -------------------------------------------------------------------------------

    def _auth(self, request: web.Request) -> None:
        given = request.headers.get("Authorization", "")
        wanted = self.config.token
        if not given.startswith("Bot ") or (wanted is not None and given[4:] != wanted):
            raise DiscordError(401, 0, "401: Unauthorized")

    def _now(self) -> float:
        return self.config.clock()

    def _channel(self, request: web.Request) -> Channel:
        channel = self.world.channels.get(int(request.match_info["channel_id"]))
        if channel is None or channel.deleted:
            raise unknown_channel()
        request[INFO].channel_id = channel.id
        return channel

    def _limit(self, request: web.Request, kind: str, channel: Channel) -> None:
        verdict = self.limits.hit(kind, channel.id, self._now())
        request[INFO].verdict = verdict
        if not verdict.allowed:
            raise RateLimited(verdict)

    async def _json(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            value = json.loads(raw) if raw else {}
        except ValueError:
            raise bad_json() from None
        request[INFO].json = value
        return value

    async def _body(self, request: web.Request, file_limit: int) -> Body:
        """JSON, or multipart with `payload_json` and `files[n]`; sizes checked as read."""
        info = request[INFO]
        if request.content_type != "multipart/form-data":
            value = await self._json(request)
            if not isinstance(value, dict):
                raise invalid_form("_root", "DICT_TYPE_CONVERT", "Only dictionaries allowed.")
            return Body(value, [])
        reader = await request.multipart()
        payload: dict[str, Any] = {}
        files: list[Upload] = []
        total, over = 0, False
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise invalid_form("files", "BASE_TYPE_INVALID", "Nested multipart.")
            data, size = bytearray(), 0
            while chunk := await part.read_chunk(1 << 16):
                size += len(chunk)
                total += len(chunk)
                if size > file_limit or total > self.config.request_limit:
                    over = True  # keep draining so the client sees our answer
                else:
                    data.extend(chunk)
            name = part.name or ""
            if name == "payload_json":
                try:
                    payload = json.loads(bytes(data))
                except ValueError:
                    raise bad_json() from None
                continue
            match = re.fullmatch(r"files\[(\d+)\]|file(\d*)", name)
            if match is None:
                continue
            info.files.append(size)
            index = int(match.group(1) or match.group(2) or 0)
            files.append(Upload(index, part.filename or "unknown", bytes(data)))
        info.json = payload
        if over:
            raise too_large()
        return Body(payload, files)

    def _attachments(
        self, body: Body, channel: Channel, existing: list[Attachment] | None, *, ephemeral: bool
    ) -> list[Attachment]:
        uploads = {upload.index: upload for upload in body.files}
        meta = body.json.get("attachments")
        result: list[Attachment] = []
        used: set[int] = set()
        if isinstance(meta, list):
            kept = {a.id: a for a in existing or []}
            for n, item in enumerate(meta):
                ident = _int(item.get("id"), f"attachments.{n}.id")
                if ident in uploads and ident not in used:
                    upload, filename = uploads[ident], item.get("filename")
                    used.add(ident)
                    name = str(filename or upload.filename)
                    made = self.world.store_attachment(
                        channel, name, upload.data, ephemeral=ephemeral
                    )
                    made.description = item.get("description")
                    result.append(made)
                elif ident in kept:
                    result.append(kept[ident])
                else:
                    raise invalid_form(f"attachments.{n}.id", "ATTACHMENT_NOT_FOUND", "Unknown.")
        else:
            result.extend(existing or [])
        for index, upload in sorted(uploads.items()):
            if index not in used:
                made = self.world.store_attachment(
                    channel, upload.filename, upload.data, ephemeral=ephemeral
                )
                result.append(made)
        if len(result) > self.config.max_attachments:
            limit = self.config.max_attachments
            raise invalid_form(
                "attachments", "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."
            )
        return result

    def _fields(
        self, body: Body, channel: Channel, message: Message | None, *, ephemeral: bool = False
    ) -> dict[str, Any]:
        """Validated new values for a message; `message` is the one being edited, if any."""
        payload = body.json
        flags = int(payload.get("flags") or 0) if message is None else message.flags
        if message is not None and "flags" in payload:
            wanted = int(payload.get("flags") or 0)  # may toggle embeds, may switch to V2
            flags = (flags & ~SUPPRESS_EMBEDS) | (wanted & (SUPPRESS_EMBEDS | COMPONENTS_V2))
        fields: dict[str, Any] = {
            "content": "" if message is None else message.content,
            "embeds": [] if message is None else message.embeds,
            "components": [] if message is None else message.components,
        }
        if payload.get("content") is not None or (message is not None and "content" in payload):
            fields["content"] = str(payload.get("content") or "")
        if len(fields["content"]) > 2000:
            raise invalid_form("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer.")
        if payload.get("embeds") is not None or (message is not None and "embeds" in payload):
            fields["embeds"] = list(payload.get("embeds") or [])
        if len(fields["embeds"]) > 10:
            raise invalid_form("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        if payload.get("components") is not None:
            fields["components"] = normalise_components(payload["components"], flags)
        existing = None if message is None else message.attachments
        if message is None or "attachments" in payload or body.files:
            fields["attachments"] = self._attachments(body, channel, existing, ephemeral=ephemeral)
        attachments = fields.get("attachments", existing or [])
        empty = not (fields["content"] or fields["embeds"] or fields["components"] or attachments)
        if empty and not payload.get("sticker_ids") and not payload.get("poll"):
            raise DiscordError(400, 50006, "Cannot send an empty message")
        fields["flags"] = flags
        return fields

    def _edit(self, message: Message, fields: dict[str, Any]) -> None:
        for name, value in fields.items():
            setattr(message, name, value)
        message.edited_timestamp = self.world.now_iso()
        message.edits += 1

    async def _message_event(self, event: str, message: Message) -> None:
        channel = self.world.channels[message.channel_id]
        if message.ephemeral:
            return
        if event == "MESSAGE_DELETE":
            data: dict[str, Any] = {"id": str(message.id), "channel_id": str(channel.id)}
            if channel.guild_id is not None:
                data["guild_id"] = str(channel.guild_id)
        else:
            data = self.world.message_payload(message)
        await self.gateway.message_event(event, channel, data)

    # -- login, gateway, users -----------------------------------------------------------------

    async def get_gateway(self, request: web.Request) -> web.StreamResponse:
        return json_response({"url": self.gateway_url})

    async def get_gateway_bot(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        limit = {
            "total": 1000,
            "remaining": 1000,
            "reset_after": 0,
            "max_concurrency": self.config.max_concurrency,
        }
        shards = self.config.recommended_shards
        body = {"url": self.gateway_url, "shards": shards, "session_start_limit": limit}
        return json_response(body)

    async def get_me(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        me = self.world.bot.payload()
        me.update(verified=True, mfa_enabled=False, flags=0, email=None, locale="en-US")
        return json_response(me)

    async def get_application(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        body: dict[str, Any] = {
            "id": str(self.world.app_id),
            "name": self.config.application_name,
            "icon": None,
            "description": "",
            "summary": "",
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "00" * 32,
            "owner": self.world.owner.payload(),
            "team": None,
            "flags": 0,
            "bot": self.world.bot.payload(),
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "tags": [],
            "approximate_guild_count": len(self.world.guilds),
            "integration_types_config": {"0": {}},
        }
        return json_response(body)

    async def get_user(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        user = self.world.users.get(int(request.match_info["user_id"]))
        if user is None:
            raise unknown("User", 10013)
        return json_response(user.payload())

    async def get_guild(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        guild = self.world.guilds.get(int(request.match_info["guild_id"]))
        if guild is None:
            raise unknown("Guild", 10004)
        return json_response(self.world.guild_update_payload(guild))

    async def get_member(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        guild = self.world.guilds.get(int(request.match_info["guild_id"]))
        if guild is None:
            raise unknown("Guild", 10004)
        member = guild.members.get(int(request.match_info["user_id"]))
        if member is None:
            raise unknown("Member", 10007)
        return json_response(self.world.member_payload(member))

    async def create_dm(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        body: Any = await self._json(request)
        recipient = body.get("recipient_id") if isinstance(body, dict) else None
        user = self.world.users.get(_int(recipient, "recipient_id"))
        if user is None:
            raise unknown("User", 10013)
        return json_response(self.world.channel_payload(self.world.dm_channel(user)))

    # -- application commands ----------------------------------------------------------------

    def _command_scope(self, request: web.Request) -> int | None:
        self._auth(request)
        if int(request.match_info["app_id"]) != self.world.app_id:
            raise DiscordError(403, 50001, "Missing Access")
        if "guild_id" not in request.match_info:
            return None
        guild_id = int(request.match_info["guild_id"])
        if guild_id not in self.world.guilds:
            raise DiscordError(403, 50001, "Missing Access")
        return guild_id

    async def get_commands(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.commands.get(self._command_scope(request), []))

    async def put_commands(self, request: web.Request) -> web.StreamResponse:
        scope = self._command_scope(request)
        body = await self._json(request)
        if not isinstance(body, list):
            raise invalid_form("_root", "LIST_TYPE_CONVERT", "Must be an array.")
        old = {(c["name"], c["type"]): c["id"] for c in self.commands.get(scope, [])}
        stored: list[dict[str, Any]] = []
        counts = {1: 0, 2: 0, 3: 0}
        for n, raw in enumerate(body):
            command = self._check_command(raw, str(n))
            counts[command["type"]] += 1
            key = (command["name"], command["type"])
            if any((c["name"], c["type"]) == key for c in stored):
                raise invalid_form(str(n), "APPLICATION_COMMANDS_DUPLICATE_NAME", "Duplicate.")
            command.update(
                id=old.get(key) or str(self.world.new_id()),
                application_id=str(self.world.app_id),
                version=str(self.world.new_id()),
            )
            if scope is not None:
                command["guild_id"] = str(scope)
            stored.append(command)
        if counts[1] > 100 or counts[2] > 15 or counts[3] > 15:
            raise invalid_form("_root", "BASE_TYPE_MAX_LENGTH", "Too many commands.")
        self.commands[scope] = stored
        self.command_syncs.append(scope)
        self.gateway.changed.notify()
        return json_response(stored)

    def _check_command(self, raw: Any, where: str) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise invalid_form(where, "DICT_TYPE_CONVERT", "Only dictionaries allowed.")
        command: dict[str, Any] = copy.deepcopy(raw)
        kind = command.setdefault("type", 1)
        name = str(command.get("name") or "")
        description = str(command.get("description") or "")
        if kind not in (1, 2, 3):
            raise invalid_form(f"{where}.type", "BASE_TYPE_CHOICES", "Not a command type.")
        if kind == 1:
            if not NAME.fullmatch(name) or name != name.lower():
                raise invalid_form(f"{where}.name", "APPLICATION_COMMAND_INVALID_NAME", "Bad.")
            if not 1 <= len(description) <= 100:
                raise invalid_form(f"{where}.description", "BASE_TYPE_BAD_LENGTH", "1-100.")
            self._check_options(command.get("options") or [], f"{where}.options", depth=0)
        else:
            if not 1 <= len(name) <= 32:
                raise invalid_form(f"{where}.name", "BASE_TYPE_BAD_LENGTH", "Must be 1-32.")
            if description or command.get("options"):
                raise invalid_form(where, "APPLICATION_COMMAND_CONTEXT_MENU", "No options.")
        command["description"] = description
        command.setdefault("options", [])
        return command

    def _check_options(self, options: Any, where: str, depth: int) -> None:
        if not isinstance(options, list) or len(options) > 25:
            raise invalid_form(where, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        kinds = [option.get("type") for option in options]
        nesting = [k in (1, 2) for k in kinds]
        if any(nesting) and not all(nesting):
            raise invalid_form(where, "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Mixed.")
        names: set[str] = set()
        optional_seen = False
        for n, option in enumerate(options):
            here = f"{where}.{n}"
            name, kind = str(option.get("name") or ""), option.get("type")
            if not NAME.fullmatch(name) or name != name.lower() or name in names:
                raise invalid_form(f"{here}.name", "APPLICATION_COMMAND_INVALID_NAME", "Bad.")
            names.add(name)
            if not 1 <= len(str(option.get("description") or "")) <= 100:
                raise invalid_form(f"{here}.description", "BASE_TYPE_BAD_LENGTH", "1-100.")
            if kind not in range(1, 12):
                raise invalid_form(f"{here}.type", "BASE_TYPE_CHOICES", "Bad option type.")
            if kind in (1, 2):
                if depth >= (1 if kind == 2 else 2) or (kind == 2 and depth > 0):
                    raise invalid_form(here, "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Deep.")
                inner = option.get("options") or []
                if kind == 2 and any(o.get("type") != 1 for o in inner):
                    raise invalid_form(here, "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Group.")
                self._check_options(inner, f"{here}.options", depth + 1)
                continue
            if option.get("required"):
                if optional_seen:
                    raise invalid_form(here, "APPLICATION_COMMAND_OPTIONS_ORDER", "Order.")
            else:
                optional_seen = True
            if len(option.get("choices") or []) > 25:
                raise invalid_form(f"{here}.choices", "BASE_TYPE_MAX_LENGTH", "Max 25.")

    # -- channels and messages -----------------------------------------------------------------

    async def get_channel(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        return json_response(self.world.channel_payload(self._channel(request)))

    def _message(self, channel: Channel, request: web.Request) -> Message:
        message = self.world.messages.get(int(request.match_info["message_id"]))
        if message is None or message.deleted or message.ephemeral:
            raise unknown_message()
        if message.channel_id != channel.id:
            raise unknown_message()
        return message

    async def list_messages(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        channel = self._channel(request)
        query = request.query
        limit = _int(query.get("limit", 50), "limit")
        if not 1 <= limit <= 100:
            raise invalid_form("limit", "NUMBER_TYPE_MAX", "Must be between 1 and 100.")
        found = self.world.visible_messages(channel)
        if "before" in query:
            found = [m for m in found if m.id < _int(query["before"], "before")]
        if "after" in query:
            found = [m for m in found if m.id > _int(query["after"], "after")][:limit]
        if "around" in query:
            around = _int(query["around"], "around")
            older = [m for m in found if m.id <= around][-(limit // 2 + limit % 2) :]
            found = older + [m for m in found if m.id > around][: limit // 2]
        newest_first = list(reversed(found))[:limit]
        return json_response([self.world.message_payload(m) for m in newest_first])

    async def get_message(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        channel = self._channel(request)
        return json_response(self.world.message_payload(self._message(channel, request)))

    def _check_thread(self, channel: Channel) -> None:
        """What a thread asks beyond its parent's permissions: a private one is seen by its
        members only (or with Manage Threads); an archived one takes no posts, edits or
        deletes until it is unarchived (Discord's 50083)."""
        if not channel.is_thread:
            return
        bot = self.world.bot.id
        perms = self.world.permissions(bot, channel)
        if (
            channel.type == PRIVATE_THREAD
            and bot not in channel.thread_members
            and not perms & MANAGE_THREADS
        ):
            raise missing_access()
        if channel.archived:
            raise archived_thread()

    def _check_can_send(self, channel: Channel, with_files: bool) -> None:
        if channel.type == GUILD_FORUM:
            raise not_text()  # a forum's posts are threads: post in one of them
        self._check_thread(channel)
        perms = self.world.permissions(self.world.bot.id, channel)
        # In a thread, Send Messages in Threads stands in for Send Messages.
        send = SEND_MESSAGES_IN_THREADS if channel.is_thread else SEND_MESSAGES
        if perms & (VIEW_CHANNEL | send) != VIEW_CHANNEL | send:
            raise missing_permissions()
        if with_files and not perms & ATTACH_FILES:
            raise missing_permissions()
        if channel.type == DM and self.world.users[channel.recipient_id or 0].dms_closed:
            raise DiscordError(403, 50007, "Cannot send messages to this user")

    async def create_message(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        channel = self._channel(request)
        self._limit(request, "send", channel)
        body = await self._body(request, self.world.file_limit(channel))
        self._check_can_send(channel, bool(body.files))
        payload = body.json
        nonce = payload.get("nonce")
        if nonce is not None and (not isinstance(nonce, str | int) or len(str(nonce)) > 25):
            raise invalid_form("nonce", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        enforce = nonce is not None and payload.get("enforce_nonce") is True
        bot = self.world.bot
        if enforce:
            seen = self.nonces.find(channel.id, bot.id, str(nonce), self._now())
            if seen is not None and not self.world.messages[seen].deleted:
                self.nonces.deduped += 1
                return json_response(self.world.message_payload(self.world.messages[seen]))
        fields = self._fields(body, channel, None)
        fields["flags"] &= CHANNEL_FLAGS
        reply_to = _replied_to(payload.get("message_reference"), channel, self.world)
        kind = 19 if reply_to is not None else 0
        message = self.world.add_message(
            channel, bot, nonce=nonce, type=kind, reply_to=reply_to, **fields
        )
        if enforce:
            self.nonces.remember(channel.id, bot.id, str(nonce), message.id, self._now())
        if channel.is_thread and bot.id not in channel.thread_members:
            # Posting in a thread joins it, as on Discord.
            channel.thread_members[bot.id] = self.world.now_iso()
            member = self.world.thread_member_payload(channel, bot.id)
            member["guild_id"] = str(channel.guild_id)
            await self.gateway.dispatch("THREAD_MEMBER_UPDATE", member)
        await self._message_event("MESSAGE_CREATE", message)
        if self.stall_posts is not None and self.stall_posts(message):
            self.stalled.append(message)
            self.stalled_signal.set()
            await asyncio.Event().wait()  # until the bot hangs up (or is killed)
        return json_response(self.world.message_payload(message))

    async def edit_message(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        channel = self._channel(request)
        self._limit(request, "edit", channel)
        message = self._message(channel, request)
        self._check_thread(channel)
        body = await self._body(request, self.world.file_limit(channel))
        if message.author_id != self.world.bot.id:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        self._edit(message, self._fields(body, channel, message))
        await self._message_event("MESSAGE_UPDATE", message)
        return json_response(self.world.message_payload(message))

    async def delete_message(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        channel = self._channel(request)
        message = self._message(channel, request)
        self._check_thread(channel)
        if message.author_id != self.world.bot.id and channel.type != DM:
            raise missing_permissions()
        message.deleted = True
        await self._message_event("MESSAGE_DELETE", message)
        return web.Response(status=204)

    # -- interactions --------------------------------------------------------------------------

    def _interaction_message(
        self, handle: InteractionHandle, fields: dict[str, Any], *, followup: bool
    ) -> Message:
        channel = self.world.channels[handle.channel_id]
        user = self.world.users[handle.user_id]
        meta: dict[str, Any] = {
            "id": str(handle.id),
            "type": handle.type,
            "user": user.payload(),
            "authorizing_integration_owners": handle.payload["authorizing_integration_owners"],
        }
        if followup and handle.original is not None:
            meta["original_response_message_id"] = str(handle.original.id)
        if handle.source_message_id is not None:
            meta["interacted_message_id"] = str(handle.source_message_id)
        kind = 0
        if handle.type == ix.COMMAND:
            kind = 20 if handle.payload["data"].get("type", 1) == 1 else 23
        return self.world.add_message(
            channel,
            self.world.bot,
            type=kind,
            webhook_id=self.world.app_id,
            interaction_metadata=meta,
            **fields,
        )

    async def callback(self, request: web.Request) -> web.StreamResponse:
        handle = self.interactions.get(int(request.match_info["webhook_id"]))
        if handle is None or handle.token != request.match_info["token"]:
            raise unknown_interaction()
        request[INFO].channel_id = handle.channel_id
        latency = self._now() - handle.dispatched_at
        channel = self.world.channels[handle.channel_id]
        body = await self._body(request, self.world.file_limit(channel))
        # From here to the reply being set nothing awaits: two racing callbacks cannot both win.
        if handle.reply is not None:
            handle.rejections.append(40060)
            handle.changed()
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        if latency > self.config.interaction_deadline:
            handle.rejections.append(10062)
            handle.changed()
            raise unknown_interaction()
        kind = body.json.get("type")
        if kind not in ix.ALLOWED_CALLBACKS[handle.type]:
            raise invalid_form("type", "INTERACTION_RESPONSE_TYPE_INVALID", "Not for this type.")
        if kind in (ix.UPDATE_MESSAGE, ix.DEFERRED_UPDATE) and handle.source_message_id is None:
            raise invalid_form("type", "INTERACTION_RESPONSE_TYPE_INVALID", "No message.")
        data = body.json.get("data") or {}
        inner = Body(dict(data) if isinstance(data, dict) else {}, body.files)
        message: Message | None = None
        if kind == ix.CHANNEL_MESSAGE:
            hidden = bool(int(inner.json.get("flags") or 0) & EPHEMERAL)
            fields = self._fields(inner, channel, None, ephemeral=hidden)
            fields["flags"] &= INTERACTION_FLAGS
            message = self._interaction_message(handle, fields, followup=False)
        elif kind == ix.DEFERRED_CHANNEL_MESSAGE:
            flags = LOADING | (int(inner.json.get("flags") or 0) & EPHEMERAL)
            message = self._interaction_message(handle, {"flags": flags}, followup=False)
            handle.thinking = True
        elif kind in (ix.UPDATE_MESSAGE, ix.DEFERRED_UPDATE):
            message = self.world.messages[handle.source_message_id or 0]
            if kind == ix.UPDATE_MESSAGE:
                self._edit(message, self._fields(inner, channel, message))
        elif kind == ix.MODAL:
            inner.json["components"] = check_modal(inner.json)
        handle.original = message
        handle.reply = ix.Reply(kind, inner.json, latency, message)
        handle.changed()
        if message is not None and kind != ix.DEFERRED_UPDATE:
            created = kind != ix.UPDATE_MESSAGE
            await self._message_event("MESSAGE_CREATE" if created else "MESSAGE_UPDATE", message)
        answer: dict[str, Any] = {
            "interaction": {
                "id": str(handle.id),
                "type": handle.type,
                "response_message_loading": kind == ix.DEFERRED_CHANNEL_MESSAGE,
                "response_message_ephemeral": bool(message and message.ephemeral),
            },
            "resource": {"type": kind},
        }
        if message is not None:
            answer["interaction"]["response_message_id"] = str(message.id)
            if kind != ix.DEFERRED_UPDATE:
                answer["resource"]["message"] = self.world.message_payload(message)
        if self.config.callback_answer_delay > 0:
            await asyncio.sleep(self.config.callback_answer_delay)
        return json_response(answer)

    def _hook(self, request: web.Request) -> InteractionHandle:
        if int(request.match_info["webhook_id"]) != self.world.app_id:
            raise unknown("Webhook", 10015)
        handle = self.by_token.get(request.match_info["token"])
        if handle is None or self._now() - handle.dispatched_at > self.config.token_life:
            if handle is not None:
                handle.rejections.append(50027)
                handle.changed()
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        request[INFO].channel_id = handle.channel_id
        if handle.reply is None:
            raise unknown("Webhook", 10015)
        if self.world.channels[handle.channel_id].deleted:
            raise unknown_channel()
        return handle

    def _hook_message(self, handle: InteractionHandle, request: web.Request) -> Message:
        wanted = request.match_info["message_id"]
        if wanted == "@original":
            message = handle.original
        else:
            mine = [handle.original, *handle.followups]
            message = next((m for m in mine if m is not None and str(m.id) == wanted), None)
        if message is None or message.deleted:
            raise unknown_message()
        return message

    async def followup(self, request: web.Request) -> web.StreamResponse:
        handle = self._hook(request)
        channel = self.world.channels[handle.channel_id]
        body = await self._body(request, self.world.file_limit(channel))
        original = handle.original
        if handle.thinking and original is not None:
            # The first followup after a thinking defer completes the loading message.
            ephemeral = original.ephemeral
            fields = self._fields(body, channel, original, ephemeral=ephemeral)
            self._edit(original, fields)
            original.flags = (original.flags & ~LOADING) | (fields["flags"] & CHANNEL_FLAGS)
            handle.thinking = False
            message = original
            await self._message_event("MESSAGE_UPDATE", message)
        else:
            hidden = bool(int(body.json.get("flags") or 0) & EPHEMERAL)
            fields = self._fields(body, channel, None, ephemeral=hidden)
            fields["flags"] &= INTERACTION_FLAGS
            message = self._interaction_message(handle, fields, followup=True)
            await self._message_event("MESSAGE_CREATE", message)
        handle.followups.append(message)
        handle.changed()
        if request.query.get("wait", "").lower() in ("1", "true"):
            return json_response(self.world.message_payload(message))
        return web.Response(status=204)

    async def get_hook_message(self, request: web.Request) -> web.StreamResponse:
        handle = self._hook(request)
        return json_response(self.world.message_payload(self._hook_message(handle, request)))

    async def edit_hook_message(self, request: web.Request) -> web.StreamResponse:
        handle = self._hook(request)
        message = self._hook_message(handle, request)
        channel = self.world.channels[message.channel_id]
        body = await self._body(request, self.world.file_limit(channel))
        self._edit(message, self._fields(body, channel, message, ephemeral=message.ephemeral))
        if message is handle.original and handle.thinking:
            message.flags &= ~LOADING
            handle.thinking = False
        handle.edits.append(body.json)
        handle.changed()
        await self._message_event("MESSAGE_UPDATE", message)
        return json_response(self.world.message_payload(message))

    async def delete_hook_message(self, request: web.Request) -> web.StreamResponse:
        handle = self._hook(request)
        message = self._hook_message(handle, request)
        message.deleted = True
        handle.changed()
        await self._message_event("MESSAGE_DELETE", message)
        return web.Response(status=204)
