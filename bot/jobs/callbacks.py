"""The optional callback receiver: Astria POSTs here when a job finishes. The body is never
trusted; a correctly signed URL only asks the tracker to look at that job now."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger
from pydantic import SecretStr

from bot.jobs.signing import CALLBACK_PATH, verified_job

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
# Forged or mangled callbacks are logged at most once this often, with a count of the
# ones not logged: 500 forged requests must not be 500 WARNING lines.
REFUSED_LOG_EVERY_SECONDS = 60.0


class RefusalLog:
    """One WARNING per `every` seconds for refused callbacks, naming how many were left out
    since the last line. `clock` is monotonic seconds (injectable for tests)."""

    def __init__(
        self, every: float = REFUSED_LOG_EVERY_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._every = every
        self._clock = clock
        self._last: float | None = None
        self._left_out = 0

    def refused(self, peer: str | None, what: str = "a bad signature") -> None:
        now = self._clock()
        if self._last is not None and now - self._last < self._every:
            self._left_out += 1
            return
        more = (
            f" ({self._left_out} more refused since the last such line)" if self._left_out else ""
        )
        log.warning("callback with %s refused, from %s%s", what, peer or "?", more)
        self._last = now
        self._left_out = 0


class _ServerLog(logging.Logger):
    """aiohttp's server log for the callback port. A malformed request (a line too long,
    not HTTP) is the internet's noise, like a forged signature: it goes to the one line a
    minute, not an ERROR with a traceback. Anything else is logged as aiohttp would."""

    def __init__(self, refusals: RefusalLog) -> None:
        super().__init__(f"{server_logger.name}.callbacks")
        self.parent = server_logger
        self._refusals = refusals

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        error = kwargs.get("exc_info")
        if isinstance(error, HttpProcessingError):
            peer = args[0] if args and isinstance(args[0], str) else None
            self._refusals.refused(peer, f"a malformed request ({error.code})")
            return
        super().exception(msg, *args, **kwargs)


class CallbackReceiver:
    def __init__(
        self,
        key: SecretStr,
        wake: Callable[[str], bool],
        *,
        refusals: RefusalLog | None = None,
    ) -> None:
        self._key = key
        self._wake = wake
        self._refusals = refusals or RefusalLog()
        self.accepted = 0
        self.refused = 0
        self.app = web.Application(client_max_size=MAX_BODY)
        self.app.router.add_post(CALLBACK_PATH, self._handle)
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port; returns the port (0 picks a free one)."""
        runner = web.AppRunner(self.app, access_log=None, logger=_ServerLog(self._refusals))
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        return int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        job = verified_job(self._key, request.query)
        await request.read()  # drain the body; its content is not used
        if job is None:
            self.refused += 1
            self._refusals.refused(request.remote)
            return web.json_response({"error": "bad signature"}, status=403)
        self.accepted += 1
        self._wake(job)
        return web.json_response({"ok": True})
