"""Async client for Astria's REST API, with Astria's retry rules in one place.

Reads are simply retried. Creates follow the rules in docs/architecture.md §6: a 422 is final, a 429
waits for Retry-After, and when a create may have happened without our seeing the answer
(504, 5xx, a dropped connection, a timeout) it is never re-posted blindly: with account
idempotency on, the same request is sent again (Astria returns the existing object); with it
off, the object is looked up (tune by title, prompt by text and seed) and re-posted only
after two empty lookups.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import aiohttp
from pydantic import BaseModel, SecretStr
from pydantic import ValidationError as ModelError

from bot.astria.errors import (
    AstriaAuthError,
    AstriaBadRequest,
    AstriaBadResponse,
    AstriaConnectionLost,
    AstriaError,
    AstriaGatewayTimeout,
    AstriaNotFound,
    AstriaPaymentRefused,
    AstriaRateLimited,
    AstriaServerError,
    AstriaTimeout,
    AstriaUnavailable,
    AstriaValidationError,
)
from bot.astria.limiter import Limiter, RequestLimiter
from bot.astria.models import Pack, Prompt, PromptRequest, Tune, TuneRequest, User, unwrap

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.astria.ai"
MAX_PAGE = 120  # Astria's largest page
LOOKUP_MAX_PAGES = 10  # a lookup pages back at most this far (1,200 objects)
LOOKUP_MARGIN = timedelta(hours=1)  # clock skew allowance when paging back to a create's start

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class _Listed(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def created_at(self) -> datetime | None: ...


L = TypeVar("L", bound=_Listed)
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait and how often to try. Production values follow Astria's docs
    (backoff from 30 s, a 60 s wait before looking up a lost create); tests shrink them."""

    base_delay: float = 30.0
    max_delay: float = 600.0
    max_attempts: int = 5
    lookup_wait: float = 60.0
    timeout: float = 120.0

    def backoff(self, attempt: int) -> float:
        """Delay after the `attempt`-th failure (1-based): base, 2×base, 4×base, … capped."""
        return float(min(self.base_delay * 2 ** max(attempt - 1, 0), self.max_delay))


class AstriaClient:
    """One client per process over one shared aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: SecretStr,
        *,
        base_url: str = DEFAULT_BASE_URL,
        idempotency: bool = False,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        limiter: Limiter | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self._session = session
        self._key = api_key
        self.base_url = base_url.rstrip("/")
        self.idempotency = idempotency
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._monotonic = monotonic
        self._wall = wall_clock
        self._paused_until = 0.0  # this process's back-off after a 429, for every request
        # The rate limit, and the pause shared with other processes (bot/store/budget.py).
        self._limiter = limiter
        self.requests_sent = 0
        self._on_retry = on_retry  # told each request sent again, by route template

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        session: aiohttp.ClientSession,
        *,
        idempotency: bool = False,
        on_retry: Callable[[str], None] | None = None,
        limiter: Limiter | None = None,
    ) -> AstriaClient:
        """`idempotency` is the effective value (bot/jobs/idempotency.py settles it from
        ASTRIA_IDEMPOTENCY and the probe); off looks a lost create up, safe either way.
        `limiter` is the account's shared budget when several processes share it;
        without one, this process's own token bucket."""
        if settings.astria_api_key is None:
            raise ValueError("ASTRIA_API_KEY is not set")
        policy = RetryPolicy(
            base_delay=settings.astria_retry_base_seconds,
            max_attempts=settings.astria_retry_max_attempts,
            lookup_wait=settings.astria_lookup_wait_seconds,
            timeout=settings.astria_request_timeout_seconds,
        )
        if limiter is None:
            limiter = RequestLimiter(
                settings.astria_requests_per_second, burst=settings.astria_request_burst
            )
        return cls(
            session,
            settings.astria_api_key,
            base_url=settings.astria_base_url,
            idempotency=idempotency,
            policy=policy,
            limiter=limiter,
            on_retry=on_retry,
        )

    def __repr__(self) -> str:
        return f"AstriaClient(base_url={self.base_url!r}, idempotency={self.idempotency})"

    # ------------------------------------------------------------------ account

    async def get_user(self) -> User:
        return _parse(User, await self._read("GET", "/users"), "GET /users")

    # ------------------------------------------------------------------ tunes

    async def create_tune(
        self,
        request: TuneRequest,
        *,
        exclude_ids: Collection[int] = (),
        maybe_created: bool = False,
        since: datetime | None = None,
    ) -> Tune:
        """Create a tune exactly once, whatever fails on the way (see the module docstring).
        `maybe_created`: an earlier attempt (before a restart) may have reached Astria;
        `since` is when that attempt started, so a lookup pages back far enough to see it
        even after a long outage with many newer objects on the account."""
        if request.images:

            async def send() -> Any:
                with ExitStack() as files:
                    form = _tune_form(request, files)
                    return await self._send("POST", "/tunes", form=form)

        else:
            body = {"tune": {**_form_values(request.fields()), **_tune_extras(request)}}

            async def send() -> Any:
                return await self._send("POST", "/tunes", json=body)

        since = since or self._wall()

        async def lookup() -> Tune | None:
            return await self.find_tune(request.title, since=since, exclude_ids=exclude_ids)

        return await self._create(
            "POST /tunes",
            send,
            lambda b: _parse(Tune, unwrap(b, "tune"), "POST /tunes"),
            lookup,
            maybe_created=maybe_created,
        )

    async def get_tune(self, tune_id: int) -> Tune:
        path = f"/tunes/{tune_id}"
        return _parse(Tune, await self._read("GET", path), f"GET {path}")

    async def list_tunes(
        self,
        *,
        limit: int = 20,
        before_id: int | None = None,
        offset: int | None = None,
        title: str | None = None,
    ) -> list[Tune]:
        params = _params(limit=limit, before_id=before_id, offset=offset, title=title)
        return _parse_list(Tune, await self._read("GET", "/tunes", params=params), "GET /tunes")

    def iter_tunes(
        self, *, title: str | None = None, page_size: int = MAX_PAGE, before_id: int | None = None
    ) -> AsyncIterator[Tune]:
        """Every tune, newest first, one page (`before_id` cursor) at a time."""

        async def page(cursor: int | None) -> list[Tune]:
            return await self.list_tunes(limit=page_size, before_id=cursor, title=title)

        return _paginate(page, page_size, before_id)

    async def find_tune(
        self, title: str, *, since: datetime | None = None, exclude_ids: Collection[int] = ()
    ) -> Tune | None:
        """The tune with this exact title, or None. Pages back only to `since`."""
        matches = [
            t
            async for t in _recent(self.iter_tunes(title=title), since)
            if t.title == title and t.id not in exclude_ids
        ]
        return min(matches, key=lambda t: t.id) if matches else None

    async def delete_tune(self, tune_id: int) -> bool:
        """Delete a tune (with its model, photos and checkpoint prompts). False if it was
        already gone."""
        return await self._delete(f"/tunes/{tune_id}")

    # ------------------------------------------------------------------ prompts

    async def create_prompt(
        self,
        tune_id: int,
        request: PromptRequest,
        *,
        exclude_ids: Collection[int] = (),
        maybe_created: bool = False,
        since: datetime | None = None,
    ) -> Prompt:
        """Create a prompt on `tune_id` exactly once (see the module docstring and
        `create_tune` for `maybe_created` and `since`)."""
        path = f"/tunes/{tune_id}/prompts"
        if request.input_image is not None:
            # A member's picture goes up as bytes (multipart `prompt[input_image]`), read
            # again on each attempt.

            async def send() -> Any:
                with ExitStack() as files:
                    return await self._send("POST", path, form=_prompt_form(request, files))

        else:
            body = {"prompt": request.form()}

            async def send() -> Any:
                return await self._send("POST", path, json=body)

        since = since or self._wall()

        async def lookup() -> Prompt | None:
            return await self.find_prompt(
                tune_id, request.text, request.seed, since=since, exclude_ids=exclude_ids
            )

        return await self._create(
            f"POST {path}",
            send,
            lambda b: _parse(Prompt, unwrap(b, "prompt"), path),
            lookup,
            maybe_created=maybe_created,
        )

    async def get_prompt(self, prompt_id: int, *, tune_id: int | None = None) -> Prompt:
        path = f"/tunes/{tune_id}/prompts/{prompt_id}" if tune_id else f"/prompts/{prompt_id}"
        return _parse(Prompt, await self._read("GET", path), f"GET {path}")

    async def list_prompts(
        self,
        *,
        tune_id: int | None = None,
        limit: int = 20,
        before_id: int | None = None,
        offset: int | None = None,
    ) -> list[Prompt]:
        """One page of prompts: a tune's (nested route) or the whole account's."""
        path = f"/tunes/{tune_id}/prompts" if tune_id else "/prompts"
        params = _params(limit=limit, before_id=before_id, offset=offset)
        return _parse_list(Prompt, await self._read("GET", path, params=params), f"GET {path}")

    def iter_prompts(
        self,
        *,
        tune_id: int | None = None,
        page_size: int = MAX_PAGE,
        before_id: int | None = None,
    ) -> AsyncIterator[Prompt]:
        async def page(cursor: int | None) -> list[Prompt]:
            return await self.list_prompts(tune_id=tune_id, limit=page_size, before_id=cursor)

        return _paginate(page, page_size, before_id)

    async def find_prompt(
        self,
        tune_id: int,
        text: str,
        seed: int | None,
        *,
        since: datetime | None = None,
        exclude_ids: Collection[int] = (),
    ) -> Prompt | None:
        """A prompt on `tune_id` with this text and seed that no other job claims, or None."""
        matches = [
            p
            async for p in _recent(self.iter_prompts(tune_id=tune_id), since)
            if p.text.strip() == text.strip()
            and (seed is None or p.seed == seed)
            and p.id not in exclude_ids
        ]
        return min(matches, key=lambda p: p.id) if matches else None

    async def delete_prompt(self, prompt_id: int, *, tune_id: int | None = None) -> bool:
        path = f"/tunes/{tune_id}/prompts/{prompt_id}" if tune_id else f"/prompts/{prompt_id}"
        return await self._delete(path)

    # ------------------------------------------------------------------ packs

    async def list_packs(self) -> list[Pack]:
        """The gallery's packs (one bare array; Astria documents no paging for it)."""
        data = await self._read("GET", "/packs")
        if not isinstance(data, list):
            raise AstriaBadResponse("GET /packs: expected a list")
        try:
            return [Pack.from_json(item) for item in data]
        except (KeyError, TypeError, ValueError) as exc:
            raise AstriaBadResponse(f"GET /packs: unexpected shape ({exc})") from None

    async def run_pack(self, pack_id: int, tune_id: int) -> list[Prompt]:
        """`POST /p/:pack_id/tunes` with `tune_ids[]`: the pack's prompts on an existing
        tune. Sent once, never retried here: a pack is not idempotent at Astria, so a lost
        answer is the caller's to recover (it lists the tune's prompts first,
        docs/architecture.md "Packs")."""
        path = f"/p/{pack_id}/tunes"
        body = await self._send("POST", path, json={"tune": {"tune_ids": [tune_id]}})
        made = unwrap(body, "tune")
        if isinstance(made, list):
            made = made[0] if made else {}
        prompts = made.get("prompts") if isinstance(made, dict) else None
        return _parse_list(Prompt, prompts if prompts is not None else [], f"POST {path}")

    # ------------------------------------------------------------------ images

    async def fetch_image(self, url: str, *, max_bytes: int) -> bytes:
        """Download a generated image, streamed and capped. Image URLs are public storage
        links: the API key is never sent with them."""
        attempt = 0
        while True:
            attempt += 1
            failure: AstriaError
            try:
                timeout = aiohttp.ClientTimeout(total=self.policy.timeout)
                async with self._session.get(
                    url, timeout=timeout, trace_request_ctx={"route": IMAGE_ROUTE}
                ) as resp:
                    if resp.status >= 400:
                        failure = _status_error(resp.status, "GET image", b"", None, "")
                    else:
                        chunks: list[bytes] = []
                        size = 0
                        async for chunk in resp.content.iter_chunked(64 * 1024):
                            size += len(chunk)
                            if size > max_bytes:
                                raise AstriaBadResponse(
                                    f"GET image: larger than {max_bytes} bytes, not downloaded"
                                )
                            chunks.append(chunk)
                        return b"".join(chunks)
            except TimeoutError:
                failure = AstriaTimeout("GET image: no answer in time")
            except aiohttp.ClientError as exc:
                failure = AstriaConnectionLost(f"GET image: connection lost ({type(exc).__name__})")
            if not failure.retryable or attempt >= self.policy.max_attempts:
                raise failure
            self._retried(IMAGE_ROUTE)
            await self._sleep(self.policy.backoff(attempt))

    # ------------------------------------------------------------------ transport

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        form: aiohttp.FormData | None = None,
    ) -> Any:
        """One HTTP exchange, mapped onto the error hierarchy. No retries here."""
        pause = self._paused_until - self._monotonic()
        if pause > 0:
            await self._sleep(pause)
        if self._limiter is not None:
            await self._limiter.acquire()
        self.requests_sent += 1
        headers = {
            "Authorization": f"Bearer {self._key.get_secret_value()}",
            "Accept": "application/json",
        }
        timeout = aiohttp.ClientTimeout(total=self.policy.timeout)
        what = f"{method} {path}"
        started = self._monotonic()
        # Errors are raised outside the `except` blocks so that no aiohttp exception (which
        # carries the request headers, key included) is chained onto ours.
        failure: AstriaError
        try:
            async with self._session.request(
                method,
                self.base_url + path,
                params=params,
                json=json,
                data=form,
                headers=headers,
                timeout=timeout,
                trace_request_ctx={"route": route_template(path)},
            ) as resp:
                status = resp.status
                body = await resp.read()
                content_type = resp.content_type
                retry_after = resp.headers.get("Retry-After")
        except TimeoutError:
            failure = AstriaTimeout(f"{what}: no answer within {self.policy.timeout:g} s")
        except aiohttp.ClientConnectorError as exc:
            # Refused before anything was sent: nothing can have been created.
            failure = AstriaUnavailable(f"{what}: cannot connect to Astria ({_os_reason(exc)})")
            failure.ambiguous = False
        except aiohttp.ClientError as exc:
            failure = AstriaConnectionLost(f"{what}: connection lost ({type(exc).__name__})")
        else:
            log.debug("%s -> %s in %.2f s", what, status, self._monotonic() - started)
            if 200 <= status < 300:
                return _decode(what, body, content_type, created=method == "POST")
            failure = _status_error(status, what, body, retry_after, content_type)
            if isinstance(failure, AstriaRateLimited):
                wait = failure.retry_after if failure.retry_after is not None else 1.0
                self._paused_until = max(self._paused_until, self._monotonic() + wait)
                if self._limiter is not None:
                    await self._limiter.pause(wait)  # the other processes wait too
        raise failure

    async def _read(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None
    ) -> Any:
        """A request that is safe to repeat: retried on 429, 5xx and lost connections."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._send(method, path, params=params)
            except AstriaError as exc:
                if not exc.retryable or attempt >= self.policy.max_attempts:
                    raise
                log.warning("%s %s failed (%s); retry %d", method, path, exc.message, attempt)
                self._retried(route_template(path))
                await self._pause(self._retry_delay(exc, attempt))

    def _retried(self, route: str) -> None:
        if self._on_retry is not None:
            self._on_retry(route)

    async def _delete(self, path: str) -> bool:
        try:
            await self._read("DELETE", path)
        except AstriaNotFound:
            return False
        return True

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            await self._sleep(seconds)

    def _retry_delay(self, exc: AstriaError, attempt: int) -> float:
        if isinstance(exc, AstriaRateLimited):
            # The shared pause in _send already waits for Retry-After.
            return 0.0 if exc.retry_after is not None else self.policy.backoff(attempt)
        return self.policy.backoff(attempt)

    async def _create(
        self,
        what: str,
        send: Callable[[], Awaitable[Any]],
        parse: Callable[[Any], T],
        lookup: Callable[[], Awaitable[T | None]],
        *,
        maybe_created: bool = False,
    ) -> T:
        if maybe_created and not self.idempotency:
            # A create from before a restart may exist: two lookups before any post. With
            # idempotency on, posting the same request again is the lookup.
            found = await self._look_up_twice(
                what, AstriaConnectionLost(f"{what}: earlier attempt"), lookup, 0.0
            )
            if found is not None:
                return found
        attempt = 0
        while True:
            attempt += 1
            try:
                body = await send()
                try:
                    return parse(body)
                except AstriaBadResponse as unreadable:
                    unreadable.ambiguous = True  # a 2xx: the object exists even if unreadable
                    raise
            except AstriaError as exc:
                if not (exc.retryable or exc.ambiguous):
                    raise  # 422, auth, payment, not found: final
                if not exc.ambiguous:
                    # Nothing can have been created (429, connection refused): post again.
                    if attempt >= self.policy.max_attempts:
                        raise
                    log.warning("%s: %s; posting again (try %d)", what, exc.message, attempt + 1)
                    self._retried(_create_route(what))
                    await self._pause(self._retry_delay(exc, attempt))
                    continue
                # The create may have happened. A 5xx waits out the backoff; a 504 or a lost
                # connection waits the lookup delay (Astria: "wait 60 s").
                plain_5xx = isinstance(exc, AstriaServerError) and not isinstance(
                    exc, AstriaGatewayTimeout
                )
                wait = self.policy.backoff(attempt) if plain_5xx else self.policy.lookup_wait
                if self.idempotency:
                    if attempt >= self.policy.max_attempts:
                        raise
                    log.warning("%s: %s; re-posting the same request", what, exc.message)
                    self._retried(_create_route(what))
                    await self._sleep(wait)
                    continue
                found = await self._look_up_twice(what, exc, lookup, wait)
                if found is not None:
                    return found
                if attempt >= self.policy.max_attempts:
                    raise
                log.warning("%s: two lookups found nothing; posting again", what)
                self._retried(_create_route(what))

    async def _look_up_twice(
        self,
        what: str,
        cause: AstriaError,
        lookup: Callable[[], Awaitable[T | None]],
        wait: float,
    ) -> T | None:
        """Look for a create that may have happened; None only after two empty lookups.
        If a lookup itself fails we cannot know, so the original ambiguous error stands."""
        for round_ in (1, 2):
            await self._pause(wait if round_ == 1 else self.policy.lookup_wait)
            try:
                found = await lookup()
            except AstriaError as exc:
                log.warning("%s: lookup failed (%s)", what, exc.message)
                raise cause from None
            if found is not None:
                log.info("%s: the lost create did happen; adopting it", what)
                return found
        return None


# ---------------------------------------------------------------------- helpers

# Astria's routes as its docs write them; ids never become metric labels.
IMAGE_ROUTE = "(image)"
_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), template)
    for pattern, template in (
        (r"^/tunes/\d+/prompts/\d+$", "/tunes/{tune_id}/prompts/{id}"),
        (r"^/tunes/\d+/prompts$", "/tunes/{tune_id}/prompts"),
        (r"^/tunes/\d+$", "/tunes/{id}"),
        (r"^/prompts/\d+$", "/prompts/{id}"),
        (r"^/(?:tunes|prompts|users|packs|gallery/packs)$", ""),
        (r"^/p/\d+/tunes$", "/p/{pack_id}/tunes"),
    )
)


def route_template(path: str) -> str:
    """`/tunes/12/prompts` -> `/tunes/{tune_id}/prompts`; an unknown path with digits in it
    becomes "(other)", so no id ends up as a label."""
    path = path.split("?", 1)[0].removesuffix(".json")
    for pattern, template in _ROUTES:
        if pattern.match(path):
            return template or path
    return "(other)"


def _create_route(what: str) -> str:
    """The route of a create's `what` ("POST /tunes/12/prompts")."""
    return route_template(what.split(" ", 1)[-1])


async def _paginate(
    fetch: Callable[[int | None], Awaitable[list[L]]], page_size: int, before_id: int | None
) -> AsyncIterator[L]:
    cursor = before_id
    while True:
        page = await fetch(cursor)
        for item in page:
            yield item
        if len(page) < page_size:
            return
        cursor = page[-1].id


async def _recent(items: AsyncIterator[L], since: datetime | None) -> AsyncIterator[L]:
    """Items until the page in which they become older than `since` ends."""
    cutoff = since - LOOKUP_MARGIN if since is not None else None
    seen = 0
    stop = False
    async for item in items:
        seen += 1
        created = item.created_at
        if cutoff is not None and created is not None and created < cutoff:
            stop = True
        yield item
        if (stop and seen % MAX_PAGE == 0) or seen >= LOOKUP_MAX_PAGES * MAX_PAGE:
            return


def _params(**values: Any) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None}


def _form_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _tune_extras(request: TuneRequest) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    if request.image_urls:
        extras["image_urls"] = list(request.image_urls)
    if request.prompts:
        extras["prompts_attributes"] = [p.form() for p in request.prompts]
    return extras


def _form_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_IMAGE_TYPES = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"))


def _photo_name(index: int, head: bytes) -> str:
    """A neutral file name from the bytes' type: members' file names never travel."""
    suffix = next((s for magic, s in _IMAGE_TYPES if head.startswith(magic)), "")
    if not suffix and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        suffix = ".webp"
    return f"photo-{index:02d}{suffix or '.jpg'}"


def _tune_form(request: TuneRequest, files: ExitStack) -> aiohttp.FormData:
    """The multipart body of a tune create. Files on disk are streamed, not loaded."""
    form = aiohttp.FormData(quote_fields=False)
    for key, value in request.fields().items():
        form.add_field(f"tune[{key}]", _form_text(value))
    for url in request.image_urls:
        form.add_field("tune[image_urls][]", url)
    for index, image in enumerate(request.images, start=1):
        if isinstance(image, Path):
            handle = files.enter_context(image.open("rb"))
            name = _photo_name(index, handle.read(16))
            handle.seek(0)
            form.add_field("tune[images][]", handle, filename=name)
        else:
            form.add_field("tune[images][]", image, filename=_photo_name(index, image[:16]))
    for prompt in request.prompts:
        for key, value in prompt.form().items():
            form.add_field(f"tune[prompts_attributes][][{key}]", _form_text(value))
    return form


def _prompt_form(request: PromptRequest, files: ExitStack) -> aiohttp.FormData:
    """The multipart body of a prompt create with its input image's bytes."""
    form = aiohttp.FormData(quote_fields=False)
    for key, value in request.form().items():
        form.add_field(f"prompt[{key}]", _form_text(value))
    image = request.input_image
    if isinstance(image, Path):
        handle = files.enter_context(image.open("rb"))
        name = _photo_name(1, handle.read(16)).replace("photo-01", "input")
        handle.seek(0)
        form.add_field("prompt[input_image]", handle, filename=name)
    elif image is not None:
        name = _photo_name(1, image[:16]).replace("photo-01", "input")
        form.add_field("prompt[input_image]", image, filename=name)
    return form


def _decode(what: str, body: bytes, content_type: str, *, created: bool) -> Any:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        failure = AstriaBadResponse(
            f"{what}: Astria answered with {content_type or 'no type'}, not JSON"
        )
        # A create answered 2xx did happen, even if we cannot read the answer.
        failure.ambiguous = created
        raise failure from None


def _parse(model: type[M], data: Any, what: str) -> M:
    try:
        return model.model_validate(data)
    except ModelError as exc:
        raise AstriaBadResponse(
            f"{what}: unexpected answer ({exc.error_count()} problems)"
        ) from None


def _parse_list(model: type[M], data: Any, what: str) -> list[M]:
    if not isinstance(data, list):
        raise AstriaBadResponse(f"{what}: expected a list, got {type(data).__name__}")
    return [_parse(model, item, what) for item in data]


def _excerpt(body: bytes, content_type: str) -> str:
    """Astria's words from an error body: its JSON message, or a short plain text."""
    if "html" in content_type or body.lstrip()[:1] == b"<":
        return "an HTML error page"
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        for key in ("error", "message", "detail"):
            if isinstance(data.get(key), str):
                return str(data[key])[:300]
    return str(data)[:300]


def _field_messages(body: bytes) -> dict[str, list[str]]:
    """Rails-style 422 bodies map fields to message lists; some give one `error` string."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body[:300].decode("utf-8", "replace").strip()
        return {"base": [text]} if text else {}
    if not isinstance(data, dict):
        return {"base": [str(data)[:300]]}
    fields: dict[str, list[str]] = {}
    for key, value in data.items():
        if isinstance(value, list):
            fields[str(key)] = [str(v) for v in value]
        elif isinstance(value, str):
            fields[str(key)] = [value]
        elif isinstance(value, dict):
            for sub, messages in value.items():
                items = messages if isinstance(messages, list) else [messages]
                fields[f"{key}.{sub}"] = [str(m) for m in items]
    return fields


# Astria does not document how it refuses a create the balance cannot pay for: a 402, or a
# 422 whose message says so (docs/emulator.md, "Readings"). Words about credit or balance
# together with a shortage are read as the latter; no field message of a prompt or tune
# says both.
_SHORT_WORDS = re.compile(
    r"\b(insufficient|not enough|too low|out of|top[- ]?off|top up|add credits?)\b", re.I
)
_MONEY_WORDS = re.compile(r"\b(balance|credits?|funds)\b", re.I)


def _says_out_of_credit(text: str) -> bool:
    return bool(_SHORT_WORDS.search(text) and _MONEY_WORDS.search(text))


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _status_error(
    status: int, what: str, body: bytes, retry_after: str | None, content_type: str
) -> AstriaError:
    error = _error_for(status, what, body, retry_after, content_type)
    if isinstance(error, AstriaValidationError):
        error.detail = error.plain()
    elif status == 422:
        error.detail = AstriaValidationError("", _field_messages(body)).plain()
    else:
        error.detail = _excerpt(body, content_type)
    return error


def _error_for(
    status: int, what: str, body: bytes, retry_after: str | None, content_type: str
) -> AstriaError:
    if status == 422:
        fields = _field_messages(body)
        plain = AstriaValidationError("", fields).plain()
        if _says_out_of_credit(plain):
            # One reading of the undocumented low-balance refusal: a 422 on a field.
            return AstriaPaymentRefused(f"{what}: refused (422): {plain}", status=status)
        return AstriaValidationError(f"{what}: refused (422): {plain}", fields)
    said = _excerpt(body, content_type)
    message = f"{what}: {status} ({said})" if said else f"{what}: {status}"
    if status in (401, 403):
        return AstriaAuthError(f"{message}: the Astria key was refused", status=status)
    if status == 402:
        return AstriaPaymentRefused(message, status=status)
    if status == 404:
        return AstriaNotFound(message, status=status)
    if status == 429:
        return AstriaRateLimited(message, retry_after=_retry_after_seconds(retry_after))
    if status == 503:
        return AstriaUnavailable(message, status=status)
    if status == 504:
        return AstriaGatewayTimeout(message, status=status)
    if status >= 500:
        return AstriaServerError(message, status=status)
    return AstriaBadRequest(message, status=status)


def _os_reason(exc: aiohttp.ClientConnectorError) -> str:
    return exc.strerror or type(exc).__name__
