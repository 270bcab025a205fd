"""The emulator itself: Astria's HTTP API on aiohttp.web over an Account, plus test controls."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import aiohttp
from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute
from yarl import URL

from bot.offline.emulator.account import Account, Callback, Charge, Prompt, Tune, page
from bot.offline.emulator.clock import Clock, ManualClock, SystemClock
from bot.offline.emulator.config import EmulatorConfig
from bot.offline.emulator.errors import ApiError, bad_request, invalid, not_found
from bot.offline.emulator.faults import Fault, FaultInjector, RequestRecord
from bot.offline.emulator.forms import read_params
from bot.offline.emulator.images import ImageCache, PhotoFacts, is_image
from bot.offline.emulator.packs import Pack
from bot.offline.emulator.validation import parse_prompt, parse_tune, root

SUPER_RESOLUTION_SCALE = 4

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_LIMIT = 120
MAX_TUNE_OFFSET = 200
MAX_PROMPT_OFFSET = 10_000
UNMATCHED = "(unmatched)"

# Error pages as a Rails app and its nginx front would send them: HTML, not JSON.
_HTML = {
    500: (
        "<!DOCTYPE html>\n<html>\n<head>\n<title>We're sorry, but something went wrong "
        '(500)</title>\n</head>\n<body>\n<div class="dialog">\n<h1>We\'re sorry, but something '
        "went wrong.</h1>\n</div>\n</body>\n</html>\n"
    ),
    502: (
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 "
        "Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    ),
    504: (
        "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>"
        "504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n"
        "</html>\r\n"
    ),
}


def is_loopback(host: str | None) -> bool:
    """True for hosts that can only mean this machine."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _html_error(status: int) -> web.Response:
    return web.Response(status=status, text=_HTML[status], content_type="text/html")


def _retry_after(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


async def _held(request: web.Request, seconds: float) -> None:
    """Wait `seconds` before answering, or less if the client hangs up meanwhile (a killed
    client's socket closes; aiohttp does not cancel the handler, so this looks)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(0.05)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


class Emulator:
    """A local Astria API for one account, on 127.0.0.1, with controllable time and faults."""

    def __init__(self, config: EmulatorConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.clock: Clock = clock or SystemClock()
        self.account = Account(self.config, self._now())
        self.faults = FaultInjector(self.config.seed)
        self.counters: collections.Counter[str] = collections.Counter()
        self.requests: list[RequestRecord] = []
        self.callbacks_sent: list[tuple[str, dict[str, Any], int | None]] = []
        # Each tune create's uploaded photos, as noted facts (never their bytes), by title.
        self.photos_received: dict[str, list[PhotoFacts]] = {}
        # What each `POST /p/:pack_id/tunes` asked for (pack, tune ids, prompts' callback).
        self.pack_requests: list[dict[str, Any]] = []
        self._images = ImageCache(self.config.image_size)
        self._route_keys: dict[AbstractRoute, str] = {}
        self._base_url: str | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._tick_lock = asyncio.Lock()
        self.app = self._build_app()

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Where the emulator listens, e.g. "http://127.0.0.1:8765"."""
        if self._base_url is None:
            raise RuntimeError("the emulator has not been started")
        return self._base_url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 = any free port) and return the base URL."""
        if not is_loopback(host):
            raise ValueError(f"the emulator only listens on loopback addresses, not {host!r}")
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        self._base_url = f"http://{shown}:{bound_port}"
        if not isinstance(self.clock, ManualClock):
            self._ticker = asyncio.create_task(self._tick_forever(), name="astria-emulator-tick")
        return self._base_url

    async def stop(self) -> None:
        """Stop listening and ticking; safe to call twice."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _tick_forever(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("emulator tick failed")
            await asyncio.sleep(self.config.tick_interval)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    # -- time -----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Bring state up to the clock and POST every callback that has come due."""
        async with self._tick_lock:
            now = self._now()
            self.account.catch_up(now)
            for callback in self.account.due_callbacks(now, self._base()):
                status = await self._send_callback(callback)
                self.callbacks_sent.append((callback.url, callback.body, status))

    async def advance(self, seconds: float) -> None:
        """Move a ManualClock forward, then deliver what came due (awaiting the callbacks)."""
        if not isinstance(self.clock, ManualClock):
            raise TypeError("advance() needs a ManualClock; real-time emulators tick by themselves")
        self.clock.advance(seconds)
        await self.tick()

    async def _send_callback(self, callback: Callback) -> int | None:
        if not is_loopback(URL(callback.url).host):
            log.info("callback to a non-loopback host not sent: %s", callback.url)
            return None
        timeout = aiohttp.ClientTimeout(total=self.config.callback_timeout)
        try:
            async with self._client().post(
                callback.url, json=callback.body, timeout=timeout, allow_redirects=False
            ) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            log.info("callback to %s failed: %r", callback.url, exc)
            return None

    # -- test controls --------------------------------------------------------------------

    @property
    def balance_mc(self) -> int:
        self.account.catch_up(self._now())
        return self.account.balance_mc

    @balance_mc.setter
    def balance_mc(self, value: int) -> None:
        self.account.balance_mc = value

    @property
    def charges(self) -> list[Charge]:
        self.account.catch_up(self._now())
        return self.account.charges

    def tunes_with_title(self, title: str) -> list[dict[str, Any]]:
        return [t for t in self.our_tunes() if t["title"] == title]

    def our_tunes(self) -> list[dict[str, Any]]:
        """Every tune the key's owner made (not gallery or foreign ones), oldest first."""
        now = self._now()
        self.account.catch_up(now)
        return [
            self.account.tune_json(tune, now, self._base())
            for tune in sorted(self.account.tunes.values(), key=lambda t: t.id)
            if tune.origin == "ours" and not tune.gone(now)
        ]

    def our_prompts(self) -> list[dict[str, Any]]:
        """Every prompt the key's owner made, on any tune, oldest first."""
        now = self._now()
        self.account.catch_up(now)
        return [
            self.account.prompt_json(prompt, now, self._base())
            for prompt in sorted(self.account.prompts.values(), key=lambda p: p.id)
            if prompt.origin == "ours" and not self.account.prompt_gone(prompt, now)
        ]

    def prompts_for(self, tune_id: int) -> list[dict[str, Any]]:
        return [p for p in self.our_prompts() if p["tune_id"] == tune_id]

    def fail_prompt(self, prompt_id: int, message: str) -> None:
        """Make an unfinished prompt fail now with user_error = message (and refund it)."""
        now = self._now()
        prompt = self.account.prompt(prompt_id, now)
        if prompt is None:
            raise KeyError(f"no prompt {prompt_id}")
        self.account.fail_prompt(prompt, message, now)

    def stall(self, kind: Literal["tune", "prompt"], object_id: int) -> None:
        """Make an unfinished tune or prompt never finish."""
        now = self._now()
        if kind == "tune":
            tune = self.account.tune(object_id, now)
            if tune is None:
                raise KeyError(f"no tune {object_id}")
            self.account.stall_tune(tune, now)
        else:
            prompt = self.account.prompt(object_id, now)
            if prompt is None:
                raise KeyError(f"no prompt {object_id}")
            self.account.stall_prompt(prompt, now)

    def resume(self, kind: Literal["tune", "prompt"], object_id: int) -> None:
        """A stalled tune or prompt finishes after all (a stuck job Astria completes late)."""
        now = self._now()
        if kind == "tune":
            tune = self.account.tune(object_id, now)
            if tune is None:
                raise KeyError(f"no tune {object_id}")
            self.account.resume_tune(tune, now)
        else:
            prompt = self.account.prompt(object_id, now)
            if prompt is None:
                raise KeyError(f"no prompt {object_id}")
            self.account.resume_prompt(prompt, now)

    # -- HTTP plumbing --------------------------------------------------------------------

    def _now(self) -> float:
        # Astria's timestamps have millisecond precision; keeping every time on whole
        # milliseconds makes "expired at expires_at" exact instead of off by float noise.
        return round(self.clock.now(), 3)

    def _base(self) -> str:
        return self._base_url or "http://127.0.0.1"

    def _build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._middleware],
            client_max_size=max(self.config.max_upload_bytes, 1024 * 1024),
        )
        api: list[tuple[str, str, Handler]] = [
            ("POST", "/tunes", self._create_tune),
            ("GET", "/tunes", self._list_tunes),
            ("GET", "/tunes/{id}", self._get_tune),
            ("DELETE", "/tunes/{id}", self._delete_tune),
            ("POST", "/tunes/{tune_id}/prompts", self._create_prompt),
            ("GET", "/tunes/{tune_id}/prompts", self._list_tune_prompts),
            ("GET", "/tunes/{tune_id}/prompts/{id}", self._get_tune_prompt),
            ("DELETE", "/tunes/{tune_id}/prompts/{id}", self._delete_tune_prompt),
            ("GET", "/prompts", self._list_prompts),
            ("GET", "/prompts/{id}", self._get_prompt),
            ("DELETE", "/prompts/{id}", self._delete_prompt),
            ("GET", "/users", self._user),
            ("GET", "/packs", self._list_packs),
            ("GET", "/gallery/packs", self._list_packs),
            ("GET", "/p/{pack_id}", self._get_pack),
            ("POST", "/p/{pack_id}/tunes", self._run_pack),
        ]
        files: list[tuple[str, str, Handler]] = [
            ("GET", "/files/prompts/{id}/{n}.png", self._prompt_file),
            ("GET", "/files/mock/prompts/{id}/{n}.png", self._prompt_file),
            ("GET", "/files/tunes/{id}/{n}.png", self._tune_file),
            ("GET", "/files/mock/tunes/{id}/{n}.png", self._tune_file),
            ("GET", "/files/mock", self._mock_checkpoint),
        ]
        for method, pattern, handler in [*api, *files]:
            path = re.sub(r"\{(\w+)\}", r"{\1:\\d+}", pattern)
            if not pattern.startswith("/files"):
                # Rails answers `/tunes/1.json` like `/tunes/1`.
                path += r"{format:(?:\.json)?}"
            route = app.router.add_route(method, path, handler)
            self._route_keys[route] = f"{method} {pattern}"
        return app

    def _route_key(self, request: web.Request) -> str:
        key = self._route_keys.get(request.match_info.route)
        return key or f"{request.method} {UNMATCHED}"

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = self._route_key(request)
        self.counters[route] += 1
        if self._base_url is None:
            # Served by someone else's runner (e.g. aiohttp's test server): learn our URL.
            self._base_url = str(request.url.origin())
        is_file = route.split(" ", 1)[1].startswith("/files")
        fault = self.faults.pick(route, api=not is_file)
        if fault is not None and fault.kind == "latency":
            await asyncio.sleep(fault.delay)
        elif fault is not None and not fault.after:
            return self._record(request, route, fault, self._fault_response(request, fault))
        response = await self._respond(request, handler, route, is_file)
        if fault is not None and fault.kind == "latency_after":
            await _held(request, fault.delay)
        elif fault is not None and fault.after:
            response = self._fault_response(request, fault)
        return self._record(request, route, fault, response)

    def _record(
        self, request: web.Request, route: str, fault: Fault | None, response: web.StreamResponse
    ) -> web.StreamResponse:
        dropped = fault is not None and fault.kind in ("drop", "drop_after")
        self.requests.append(
            RequestRecord(
                request.method,
                request.path,
                route,
                None if dropped else response.status,
                None if fault is None else fault.kind,
            )
        )
        return response

    def _fault_response(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.kind in ("drop", "drop_after"):
            # Close the socket with no HTTP response at all; what is returned is never sent.
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=599)
        if fault.kind == "http_429":
            response = _json(
                {"error": "Too many requests. Slow down, or use callbacks instead of polling."},
                status=429,
            )
            response.headers["Retry-After"] = _retry_after(fault.retry_after)
            return response
        status = fault.status
        assert status is not None
        return _html_error(status)

    async def _respond(
        self, request: web.Request, handler: Handler, route: str, is_file: bool
    ) -> web.StreamResponse:
        try:
            if not is_file and not route.endswith(UNMATCHED):
                self._authorize(request)
            self.account.catch_up(self._now())
            return await handler(request)
        except ApiError as error:
            return _json(error.body, status=error.status)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            return _json({"error": error.reason}, status=error.status)
        except Exception:
            log.exception("emulator handler failed on %s %s", request.method, request.path)
            return _html_error(500)

    def _authorize(self, request: web.Request) -> None:
        expected = f"Bearer {self.config.api_key}".encode()
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise ApiError(
                401, {"error": "Invalid or missing API key (send Authorization: Bearer sd_...)"}
            )

    # -- helpers for handlers -------------------------------------------------------------

    @staticmethod
    def _id(request: web.Request, name: str = "id") -> int:
        return int(request.match_info[name])

    def _tune_or_404(self, tune_id: int) -> Tune:
        tune = self.account.tune(tune_id, self._now())
        if tune is None:
            raise not_found("Tune")
        return tune

    def _prompt_or_404(self, prompt_id: int, tune_id: int | None = None) -> Prompt:
        prompt = self.account.prompt(prompt_id, self._now())
        if prompt is None or (tune_id is not None and prompt.tune_id != tune_id):
            raise not_found("Prompt")
        return prompt

    @staticmethod
    def _query_int(request: web.Request, name: str) -> int | None:
        raw = request.query.get(name)
        if raw is None or raw == "":
            return None
        try:
            return int(raw)
        except ValueError:
            raise bad_request(f"{name} must be an integer") from None

    def _page_args(self, request: web.Request, max_offset: int) -> tuple[int | None, int, int]:
        limit = self._query_int(request, "limit")
        limit = 20 if limit is None else limit
        if not 1 <= limit <= MAX_LIMIT:
            raise bad_request(f"limit must be between 1 and {MAX_LIMIT}")
        offset = self._query_int(request, "offset") or 0
        if offset < 0:
            raise bad_request("offset must not be negative")
        if offset > max_offset:
            raise bad_request(f"offset must be at most {max_offset}; page with before_id instead")
        return self._query_int(request, "before_id"), offset, limit

    def _tune_body(self, tune: Tune) -> dict[str, Any]:
        return self.account.tune_json(tune, self._now(), self._base())

    def _prompt_body(self, prompt: Prompt) -> dict[str, Any]:
        return self.account.prompt_json(prompt, self._now(), self._base())

    async def _fetch_images(self, urls: list[str], field: str = "image_urls") -> None:
        problems: list[str] = []
        timeout = aiohttp.ClientTimeout(total=self.config.fetch_timeout)
        cap = self.config.max_upload_bytes
        for url in urls:
            parsed = URL(url)
            if parsed.scheme not in ("http", "https") or not is_loopback(parsed.host):
                problems.append(
                    f"{url} could not be fetched (the emulator only fetches loopback hosts)"
                )
                continue
            try:
                async with self._client().get(parsed, timeout=timeout) as response:
                    if response.status != 200:
                        problems.append(f"{url} could not be fetched (HTTP {response.status})")
                        continue
                    data = await response.content.read(cap + 1)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                problems.append(f"{url} could not be fetched ({type(exc).__name__})")
                continue
            if len(data) > cap:
                problems.append(f"{url} is larger than {cap // (1024 * 1024)} MB")
            elif not is_image(data):
                problems.append(f"{url} is not a valid image file")
        if problems:
            raise invalid({field: problems})

    # -- API handlers ---------------------------------------------------------------------

    async def _create_tune(self, request: web.Request) -> web.StreamResponse:
        params = await read_params(request, self.config.max_upload_bytes)
        tune_request = parse_tune(params, self.config.max_upload_bytes)
        if self.config.idempotency:
            existing = self.account.tune_titled(tune_request.title, self._now())
            if existing is not None:
                return _json(self._tune_body(existing), status=self.config.replay_status)
        await self._fetch_images(tune_request.image_urls)
        self.photos_received[tune_request.title] = [
            upload.facts for upload in tune_request.uploads if upload.facts is not None
        ]
        tune, _ = self.account.create_tune(tune_request, self._now())
        return _json(self._tune_body(tune), status=201)

    async def _list_tunes(self, request: web.Request) -> web.StreamResponse:
        before_id, offset, limit = self._page_args(request, MAX_TUNE_OFFSET)
        names = [*request.query.getall("name[]", []), *request.query.getall("name", [])]
        tunes = self.account.list_tunes(
            self._now(),
            title=request.query.get("title"),
            branch=request.query.get("branch"),
            model_type=request.query.get("model_type"),
            names=names,
        )
        chosen = page(tunes, before_id=before_id, offset=offset, limit=limit)
        return _json([self._tune_body(tune) for tune in chosen])

    async def _get_tune(self, request: web.Request) -> web.StreamResponse:
        return _json(self._tune_body(self._tune_or_404(self._id(request))))

    async def _delete_tune(self, request: web.Request) -> web.StreamResponse:
        tune = self._tune_or_404(self._id(request))
        if tune.origin == "gallery":
            raise ApiError(403, {"error": "Gallery tunes cannot be deleted"})
        self.account.delete_tune(tune)
        # Documented only as "200 OK": an empty body, as Rails' `head :ok` sends.
        return web.Response(status=200)

    async def _create_prompt(self, request: web.Request) -> web.StreamResponse:
        tune = self._tune_or_404(self._id(request, "tune_id"))
        prompt_request = parse_prompt(await read_params(request, self.config.max_upload_bytes))
        source = prompt_request.values["input_image_url"]
        if source:
            # Image-to-image: Astria downloads the image it starts from, as a tune's URLs.
            await self._fetch_images([source], "input_image_url")
        prompt, _ = self.account.create_prompt(tune, prompt_request, self._now())
        body = self._prompt_body(prompt)
        # Astria has answered with a one-element array; "mixed": odd ids do, so both occur.
        shape = self.config.prompt_response
        as_array = shape == "array" or (shape == "mixed" and prompt.id % 2 == 1)
        return _json([body] if as_array else body, status=201)

    def _pack_or_404(self, request: web.Request) -> Pack:
        pack = self.config.packs.get(self._id(request, "pack_id"))
        if pack is None:
            raise not_found("Pack")
        return pack

    async def _list_packs(self, request: web.Request) -> web.StreamResponse:
        # The gallery is short: one bare array, in id order (no paging documented).
        packs = sorted(self.config.packs.values(), key=lambda pack: pack.id)
        return _json([pack.json(self._base()) for pack in packs])

    async def _get_pack(self, request: web.Request) -> web.StreamResponse:
        return _json(self._pack_or_404(request).json(self._base()))

    async def _run_pack(self, request: web.Request) -> web.StreamResponse:
        """`POST /p/:pack_id/tunes` with `tune[tune_ids][]`: the pack's prompts on an
        existing tune of ours. Answers 201 with the tune and its new `prompts`."""
        pack = self._pack_or_404(request)
        params = await read_params(request, self.config.max_upload_bytes)
        raw = root(params, "tune")
        ids = raw.get("tune_ids")
        ids = ids if isinstance(ids, list) else [] if ids in (None, "") else [ids]
        if len(ids) != 1 or not str(ids[0]).isdigit():
            # Making a new tune through a pack, or several at once: not modelled.
            raise invalid({"tune_ids": ["must name exactly one existing tune"]})
        tune = self.account.tune(int(ids[0]), self._now())
        if tune is None or tune.origin != "ours":
            raise invalid({"tune_ids": ["must name a tune of this account"]})
        attributes = raw.get("prompt_attributes") or params.get("prompt_attributes")
        callback = attributes.get("callback") if isinstance(attributes, dict) else None
        self.pack_requests.append(
            {"pack_id": pack.id, "tune_ids": [int(ids[0])], "callback": callback, "raw": raw}
        )
        made = self.account.run_pack(
            pack, tune, callback if isinstance(callback, str) and callback else None, self._now()
        )
        body = self._tune_body(tune)
        body["prompts"] = [self._prompt_body(prompt) for prompt in made]
        return _json(body, status=201)

    async def _list_prompt_page(
        self, request: web.Request, tune_id: int | None
    ) -> web.StreamResponse:
        before_id, offset, limit = self._page_args(request, MAX_PROMPT_OFFSET)
        if tune_id is None:
            tune_id = self._query_int(request, "tune_id")
        prompts = self.account.list_prompts(
            self._now(), tune_id=tune_id, text=request.query.get("text")
        )
        chosen = page(prompts, before_id=before_id, offset=offset, limit=limit)
        return _json([self._prompt_body(prompt) for prompt in chosen])

    async def _list_tune_prompts(self, request: web.Request) -> web.StreamResponse:
        tune = self._tune_or_404(self._id(request, "tune_id"))
        return await self._list_prompt_page(request, tune.id)

    async def _list_prompts(self, request: web.Request) -> web.StreamResponse:
        return await self._list_prompt_page(request, None)

    async def _get_tune_prompt(self, request: web.Request) -> web.StreamResponse:
        prompt = self._prompt_or_404(self._id(request), self._id(request, "tune_id"))
        return _json(self._prompt_body(prompt))

    async def _get_prompt(self, request: web.Request) -> web.StreamResponse:
        return _json(self._prompt_body(self._prompt_or_404(self._id(request))))

    def _deleted(self, prompt: Prompt) -> web.StreamResponse:
        prompt.deleted = True
        return _json({"message": "Prompt successfully deleted"})

    async def _delete_tune_prompt(self, request: web.Request) -> web.StreamResponse:
        return self._deleted(self._prompt_or_404(self._id(request), self._id(request, "tune_id")))

    async def _delete_prompt(self, request: web.Request) -> web.StreamResponse:
        return self._deleted(self._prompt_or_404(self._id(request)))

    async def _user(self, request: web.Request) -> web.StreamResponse:
        return _json(
            {
                "id": 1,
                "name": "Emulator",
                "email": "emulator@localhost",
                "usd_balance_mc": self.account.balance_mc,
                "auto_extend_tunes": self.config.auto_extend,
                "top_off_amount": None,
                "purchased_plugin_at": None,
            }
        )

    # -- files (public, no key) -----------------------------------------------------------

    async def _prompt_file(self, request: web.Request) -> web.StreamResponse:
        now = self._now()
        prompt = self.account.prompt(self._id(request), now)
        n = self._id(request, "n")
        mock = request.path.startswith("/files/mock/")
        if (
            prompt is None
            or prompt.mock != mock
            or self.account.prompt_state(prompt, now) != "done"
            or n >= prompt.request.num_images
        ):
            raise not_found("File")
        if mock:
            # The fast branch returns the same hard-coded results for every prompt.
            data = self._images.get(f"mock:{n % 4}", label=f"MOCK {n % 4 + 1}")
        else:
            seed = prompt.request.seed
            key = (
                f"{prompt.tune_id}:{prompt.request.text}:{seed}"
                if seed is not None
                else f"id:{prompt.id}"
            )
            values = prompt.request.values
            # Super-resolution is x4 (Astria's docs); an image-to-image result depends on
            # its source too.
            scale = SUPER_RESOLUTION_SCALE if values["super_resolution"] else 1
            upload = values["input_image"]
            source = values["input_image_url"] or (f"upload:{upload.sha256}" if upload else "")
            data = self._images.get(f"{key}:{source}:{n}", scale=scale)
        return web.Response(body=data, content_type="image/png")

    async def _tune_file(self, request: web.Request) -> web.StreamResponse:
        tune = self.account.tune(self._id(request), self._now())
        n = self._id(request, "n")
        mock = request.path.startswith("/files/mock/")
        if tune is None or (tune.branch == "fast") != mock or n >= tune.image_count:
            raise not_found("File")
        # Uploads are checked, not kept, so training images are served as placeholders.
        return web.Response(body=self._images.get(f"orig:{tune.id}:{n}"), content_type="image/png")

    async def _mock_checkpoint(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="mock checkpoint", content_type="text/plain")
