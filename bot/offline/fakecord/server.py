"""FakeDiscord: the aiohttp app (REST, gateway, attachment files), recording and lifecycle."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.offline.fakecord.config import FakeDiscordConfig
from bot.offline.fakecord.driver import Driver
from bot.offline.fakecord.errors import DiscordError
from bot.offline.fakecord.gateway import Gateway
from bot.offline.fakecord.limits import Nonces, RateLimits, Verdict
from bot.offline.fakecord.rest import (
    API,
    INFO,
    Handler,
    RateLimited,
    RequestInfo,
    RestApi,
    json_response,
)
from bot.offline.fakecord.state import Channel, Guild, Message, World

log = logging.getLogger(__name__)


@dataclass
class RequestRecord:
    """One request as the fake saw it; `path` is without the /api/v10 prefix."""

    method: str
    path: str
    route: str
    status: int
    time: float
    json: Any = None
    files: list[int] = field(default_factory=list)
    channel_id: int | None = None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _ratelimit_headers(verdict: Verdict, wall_now: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(verdict.limit),
        "X-RateLimit-Remaining": str(verdict.remaining),
        "X-RateLimit-Reset": f"{wall_now + verdict.reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{verdict.reset_after:.3f}",
        "X-RateLimit-Bucket": verdict.bucket,
    }


class FakeDiscord(Driver):
    """A wire-level Discord on 127.0.0.1 for an unmodified discord.py bot."""

    def __init__(self, config: FakeDiscordConfig | None = None) -> None:
        self.config = config or FakeDiscordConfig()
        self.world = World(self.config)
        self.limits = RateLimits(self.config)
        self.nonces = Nonces(self.config)
        self.gateway = Gateway(self.world, self.config, lambda: self.gateway_url)
        self.rest = RestApi(self.world, self.gateway, self.limits, self.nonces, self.config)
        self.requests: list[RequestRecord] = []
        self.counters: collections.Counter[str] = collections.Counter()
        self.unknown_routes: list[str] = []
        self._route_names: dict[Any, str] = {}
        self._base_url: str | None = None
        self._runner: web.AppRunner | None = None
        self.app = self._build_app()

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the fake has not been started")
        return self._base_url

    @property
    def api_base(self) -> str:
        """What discord.http.Route.BASE should be."""
        return self.base_url + API

    @property
    def gateway_url(self) -> str:
        """What DiscordWebSocket.DEFAULT_GATEWAY should be."""
        return "ws" + self.base_url.removeprefix("http") + "/gateway"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on a loopback address (port 0 = any free port); returns the base URL."""
        if not _loopback(host):
            raise ValueError(f"the fake only listens on loopback addresses, not {host!r}")
        if self._runner is not None:
            raise RuntimeError("the fake is already running")
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        shown = f"[{host}]" if ":" in host else host
        self._base_url = f"http://{shown}:{runner.addresses[0][1]}"
        self.world.base_url = self._base_url
        self.rest.gateway_url = self.gateway_url
        return self._base_url

    async def stop(self) -> None:
        await self.gateway.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def wait_ready(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Until a bot has identified and received READY and every GUILD_CREATE."""
        await self.gateway.changed.wait_for(
            lambda: bool(self.gateway.ready_sessions), timeout, "the bot to connect"
        )

    async def wait_reconnected(self, identifies: int, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Until a bot identified again after `identifies` identifies (a restarted process)."""
        await self.gateway.changed.wait_for(
            lambda: self.gateway.identifies > identifies and bool(self.gateway.ready_sessions),
            timeout,
            "the bot to connect again",
        )

    def stall_posts(self, predicate: Callable[[Message], bool] | None) -> None:
        """Keep matching posts but never answer them: the bot never learns their ids (a
        crash test kills it then). None stops stalling."""
        self.rest.stall_posts = predicate

    async def wait_stalled(self, timeout: float = 30.0) -> Message:  # noqa: ASYNC109
        """Until a post was stalled; that message."""
        await asyncio.wait_for(self.rest.stalled_signal.wait(), timeout)
        return self.rest.stalled[-1]

    async def wait_commands(
        self,
        timeout: float = 10.0,  # noqa: ASYNC109
        guild: Guild | None = None,
    ) -> list[dict[str, Any]]:
        """Until the bot has synced commands (to `guild`, or anywhere); the stored list."""
        scope = None if guild is None else guild.id

        def synced() -> bool:
            return any(guild is None or s == scope for s in self.rest.command_syncs)

        await self.gateway.changed.wait_for(synced, timeout, "a command sync")
        if guild is None:
            scope = self.rest.command_syncs[-1]
        return list(self.rest.commands.get(scope, []))

    # -- recording ------------------------------------------------------------------------------

    def commands(self, guild: Guild | None = None) -> list[dict[str, Any]]:
        return list(self.rest.commands.get(None if guild is None else guild.id, []))

    def count(self, method: str, channel: Channel | int, route: str | None = None) -> int:
        """Requests with this method about this channel (optionally on one route pattern)."""
        cid = channel if isinstance(channel, int) else channel.id
        return sum(
            1
            for r in self.requests
            if r.method == method and r.channel_id == cid and (route is None or r.route == route)
        )

    def sends(self, channel: Channel | int, *, ok: bool = True) -> int:
        """POST /channels/{c}/messages requests (only successful ones by default)."""
        return self._route_count("POST", "/channels/{channel_id}/messages", channel, ok)

    def edits(self, channel: Channel | int, *, ok: bool = True) -> int:
        return self._route_count(
            "PATCH", "/channels/{channel_id}/messages/{message_id}", channel, ok
        )

    def _route_count(self, method: str, route: str, channel: Channel | int, ok: bool) -> int:
        cid = channel if isinstance(channel, int) else channel.id
        return sum(
            1
            for r in self.requests
            if r.method == method
            and r.route == route
            and r.channel_id == cid
            and (not ok or 200 <= r.status < 300)
        )

    @property
    def rate_limited(self) -> collections.Counter[int]:
        """429s answered, per channel id."""
        return self.limits.limited

    @property
    def early_retries(self) -> int:
        """Requests that came before a 429's retry_after had passed (0 for a good bot)."""
        return sum(self.limits.early.values())

    # -- the app -------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._middleware], client_max_size=self.config.request_limit + 2**20
        )
        for method, path, handler in self.rest.routes():
            route = app.router.add_route(method, path, handler)
            self._route_names[route] = path.removeprefix(API).replace(r":\d+", "")
        app.router.add_get("/gateway", self.gateway.handle)
        files = app.router.add_get(r"/attachments/{channel_id:\d+}/{id:\d+}/{name}", self._file)
        self._route_names[files] = "/attachments/{channel_id}/{id}/{name}"
        return app

    async def _file(self, request: web.Request) -> web.StreamResponse:
        attachment = self.world.attachments.get(int(request.match_info["id"]))
        if attachment is None or str(attachment.channel_id) != request.match_info["channel_id"]:
            return web.Response(status=404, text="Not Found")
        life = self.config.attachment_url_life
        if life is not None and self.config.wall_clock() > attachment.uploaded_at + life:
            return web.Response(status=404, text="This content is no longer available.")
        if self.config.attachment_delay > 0:
            await asyncio.sleep(self.config.attachment_delay)
        content_type = attachment.content_type or "application/octet-stream"
        return web.Response(body=attachment.data, content_type=content_type)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        info = RequestInfo()
        request[INFO] = info
        arrived = self.config.clock()
        route = self._route_names.get(request.match_info.route, request.path)
        try:
            response = await handler(request)
        except DiscordError as error:
            response = json_response(error.body, error.status)
        except RateLimited as limited:
            self.counters["429"] += 1
            response = self._too_many(limited.verdict)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            if error.status in (404, 405):
                self.counters["unknown_route"] += 1
                self.unknown_routes.append(f"{request.method} {request.path}")
                route = "(unknown)"
            body = {"message": f"{error.status}: {error.reason}", "code": 0}
            response = json_response(body, error.status)
        except (AttributeError, KeyError, TypeError, ValueError):
            # A payload of the wrong shape: Discord answers 400 (a 500 would make discord.py
            # retry for half a minute). Logged, as it may also be a bug of the fake.
            log.exception("fakecord could not handle %s %s", request.method, request.path)
            self.counters["malformed"] += 1
            response = json_response({"message": "Invalid Form Body", "code": 50035}, 400)
        except Exception:
            log.exception("fakecord handler failed on %s %s", request.method, request.path)
            self.counters["internal_error"] += 1
            response = json_response({"message": "500: Internal Server Error", "code": 0}, 500)
        if info.verdict is not None and info.verdict.allowed and self.config.advertise_ratelimits:
            response.headers.update(_ratelimit_headers(info.verdict, self.config.wall_clock()))
        if request.body_exists and not request.content.at_eof():
            with contextlib.suppress(Exception):
                while await request.content.readany():
                    pass
        self.counters[f"{request.method} {route}"] += 1
        self.requests.append(
            RequestRecord(
                request.method,
                request.path.removeprefix(API),
                route,
                response.status,
                arrived,
                info.json,
                info.files,
                info.channel_id,
            )
        )
        return response

    def _too_many(self, verdict: Verdict) -> web.Response:
        body = {"message": "You are being rate limited.", "retry_after": verdict.reset_after}
        body["global"] = False
        response = json_response(body, 429)
        response.headers.update(_ratelimit_headers(verdict, self.config.wall_clock()))
        response.headers["X-RateLimit-Scope"] = "user"
        response.headers["Retry-After"] = str(max(1, math.ceil(verdict.reset_after)))
        response.headers["Via"] = "1.1 google"
        return response
