"""The gateway websocket: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats, dispatches.

Frames are JSON text, so the `compress=zlib-stream` the client asks for is ignored
(discord.py only inflates binary frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from bot.offline.fakecord.config import FakeDiscordConfig
from bot.offline.fakecord.interactions import Signal
from bot.offline.fakecord.state import Channel, World

log = logging.getLogger(__name__)

Shape = Callable[["Session"], dict[str, Any] | None]

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, RESUME = 0, 1, 2, 3, 6
REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 8, 9, 10, 11
ACK_DELAY = 0.05

INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15


@dataclass(eq=False)
class Session:
    ws: web.WebSocketResponse
    session_id: str = field(default_factory=lambda: secrets.token_hex(16))
    intents: int = 0
    seq: int = 0
    ready: bool = False
    dropped: bool = False  # closed by the fake: resumable
    missed: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    shard: tuple[int, int] | None = None  # (shard id, shard count) from IDENTIFY
    sent: list[tuple[str, int | None]] = field(default_factory=list)  # (event, guild id)

    def covers(self, guild_id: int | None) -> bool:
        """Discord's rule: a guild's events go to shard (guild_id >> 22) % count; DMs and
        other guildless events to shard 0."""
        if self.shard is None:
            return True
        shard_id, count = self.shard
        return shard_id == (0 if guild_id is None else (guild_id >> 22) % count)

    async def send(self, op: int, data: Any, event: str | None = None) -> None:
        async with self.lock:
            frame: dict[str, Any] = {"op": op, "d": data, "s": None, "t": None}
            if op == DISPATCH:
                self.seq += 1
                frame.update(s=self.seq, t=event)
                self.sent.append((event or "", _guild_of(event or "", data)))
            if not self.ws.closed:
                await self.ws.send_str(json.dumps(frame))


_GUILD_EVENTS = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})


def _guild_of(event: str, payload: dict[str, Any]) -> int | None:
    raw = payload.get("id") if event in _GUILD_EVENTS else payload.get("guild_id")
    try:
        return None if raw is None else int(raw)
    except (TypeError, ValueError):
        return None


class Gateway:
    """All live sessions; a dispatch goes to every ready one (normally exactly one bot)."""

    def __init__(self, world: World, config: FakeDiscordConfig, url: Callable[[], str]) -> None:
        self.world = world
        self.config = config
        self._url = url
        self.sessions: list[Session] = []
        self.detached: dict[str, Session] = {}  # dropped sessions a RESUME may pick up
        self.identifies = 0
        self.resumes = 0
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.changed = Signal()

    @property
    def ready_sessions(self) -> list[Session]:
        return [s for s in self.sessions if s.ready and not s.dropped and not s.ws.closed]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        session = Session(ws)
        self.sessions.append(session)
        interval_ms = round(self.config.heartbeat_interval * 1000)
        try:
            await session.send(HELLO, {"heartbeat_interval": interval_ms})
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                await self._on_frame(session, frame.data)
        finally:
            self.sessions.remove(session)
            if session.ready and session.dropped and self.config.allow_resume:
                self.detached[session.session_id] = session
            self.changed.notify()
        return ws

    async def _on_frame(self, session: Session, text: str) -> None:
        try:
            frame = json.loads(text)
            op = frame["op"]
        except (ValueError, KeyError, TypeError):
            await session.ws.close(code=4002, message=b"Error while decoding payload.")
            return
        data = frame.get("d")
        if op == HEARTBEAT:
            # A moment of "network": discord.py stamps the send after its own send completes,
            # on another thread, so an instant ACK can land first and read as 41 s behind.
            await asyncio.sleep(ACK_DELAY)
            await session.send(HEARTBEAT_ACK, None)
        elif op == IDENTIFY:
            await self._identify(session, data if isinstance(data, dict) else {})
        elif op == RESUME:
            await self._resume(session, data if isinstance(data, dict) else {})
        elif op in (PRESENCE, REQUEST_MEMBERS):
            pass
        else:
            await session.ws.close(code=4001, message=b"Unknown opcode.")

    async def _resume(self, session: Session, data: dict[str, Any]) -> None:
        """Pick up a session the fake dropped: replay what it missed, then RESUMED."""
        old = self.detached.pop(str(data.get("session_id")), None)
        token = str(data.get("token", ""))
        if old is None or (self.config.token is not None and token != self.config.token):
            await session.send(INVALID_SESSION, False)
            return
        self.resumes += 1
        session.session_id, session.seq, session.intents = old.session_id, old.seq, old.intents
        for event, payload in old.missed:
            await session.send(DISPATCH, payload, event)
        await session.send(DISPATCH, {}, "RESUMED")
        session.ready = True
        self.changed.notify()

    async def _identify(self, session: Session, data: dict[str, Any]) -> None:
        if session.ready:
            await session.ws.close(code=4005, message=b"Already authenticated.")
            return
        token = str(data.get("token", ""))
        wanted = self.config.token
        if not token or (wanted is not None and token.removeprefix("Bot ") != wanted):
            await session.ws.close(code=4004, message=b"Authentication failed.")
            return
        shard = data.get("shard")
        if shard is not None:
            try:
                shard_id, count = int(shard[0]), int(shard[1])
            except (TypeError, ValueError, IndexError, KeyError):
                shard_id, count = -1, 0
            if not 0 <= shard_id < count:
                await session.ws.close(code=4010, message=b"Invalid shard.")
                return
            session.shard = (shard_id, count)
        self.identifies += 1
        session.intents = int(data.get("intents", 0))
        bot = self.world.bot.payload()
        bot.update(verified=True, mfa_enabled=False, flags=0)
        ready: dict[str, Any] = {
            "v": 10,
            "user": bot,
            "guilds": [
                {"id": str(g), "unavailable": True} for g in self.world.guilds if session.covers(g)
            ],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self._url(),
            "application": {"id": str(self.world.app_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "_trace": ['["fakecord",{"micros":0}]'],
        }
        if "shard" in data:
            ready["shard"] = data["shard"]
        await session.send(DISPATCH, ready, "READY")
        everyone = bool(session.intents & INTENT_GUILD_MEMBERS)
        for guild in list(self.world.guilds.values()):
            if not session.covers(guild.id):
                continue
            payload = self.world.guild_payload(guild, all_members=everyone)
            await session.send(DISPATCH, payload, "GUILD_CREATE")
        session.ready = True
        self.changed.notify()

    async def dispatch(
        self, event: str, data: dict[str, Any] | Shape, plain: dict[str, Any] | None = None
    ) -> int:
        """Send one event to every ready session whose shard has its guild; `data` may
        shape it per session (None: not for that one). Dropped sessions keep it for a
        RESUME. How many got it."""
        self.events.append((event, data if isinstance(data, dict) else plain or {}))
        for detached in self.detached.values():
            shaped = data if isinstance(data, dict) else data(detached)
            if shaped is not None and detached.covers(_guild_of(event, shaped)):
                detached.missed.append((event, shaped))
        sent = 0
        for session in self.ready_sessions:
            shaped = data if isinstance(data, dict) else data(session)
            if shaped is not None and session.covers(_guild_of(event, shaped)):
                await session.send(DISPATCH, shaped, event)
                sent += 1
        return sent

    async def guild_create(self, guild_id: int) -> None:
        guild = self.world.guilds[guild_id]

        def shape(session: Session) -> dict[str, Any]:
            everyone = bool(session.intents & INTENT_GUILD_MEMBERS)
            return self.world.guild_payload(guild, all_members=everyone)

        await self.dispatch("GUILD_CREATE", shape, {"id": str(guild_id)})

    async def message_event(self, event: str, channel: Channel, data: dict[str, Any]) -> None:
        """MESSAGE_CREATE/UPDATE/DELETE, to sessions whose intents cover the channel.

        Without the message content intent, others' guild messages arrive emptied."""
        needed = INTENT_DIRECT_MESSAGES if channel.guild_id is None else INTENT_GUILD_MESSAGES
        mine = data.get("author", {}).get("id") == str(self.world.bot.id)
        hidden = {"content": "", "embeds": [], "attachments": [], "components": []}

        def shape(session: Session) -> dict[str, Any] | None:
            if not session.intents & needed:
                return None
            full = mine or channel.guild_id is None or session.intents & INTENT_MESSAGE_CONTENT
            return data if full or "content" not in data else {**data, **hidden}

        await self.dispatch(event, shape, data)

    async def close_all(self, code: int = 4000) -> None:
        for session in list(self.sessions):
            session.dropped = True
            with contextlib.suppress(Exception):
                await session.ws.close(code=code, message=b"Reconnect.")
        self.changed.notify()
