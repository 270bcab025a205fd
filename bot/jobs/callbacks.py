"""The optional callback receiver: Astria POSTs here when a job finishes. The body is never
trusted; a correctly signed URL only asks the tracker to look at that job now."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from pydantic import SecretStr

from bot.jobs.signing import CALLBACK_PATH, verified_job

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024


class CallbackReceiver:
    def __init__(self, key: SecretStr, wake: Callable[[str], bool]) -> None:
        self._key = key
        self._wake = wake
        self.accepted = 0
        self.refused = 0
        self.app = web.Application(client_max_size=MAX_BODY)
        self.app.router.add_post(CALLBACK_PATH, self._handle)
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port; returns the port (0 picks a free one)."""
        runner = web.AppRunner(self.app, access_log=None)
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
            log.warning("callback with a bad signature refused")
            return web.json_response({"error": "bad signature"}, status=403)
        self.accepted += 1
        self._wake(job)
        return web.json_response({"ok": True})
