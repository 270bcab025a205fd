"""The Astria account's request budget, shared by every process on this database.

Astria's rate limits and its 429 pauses are per account (per API key), not per process:
with several bot processes on one PostgreSQL, each one's own limiter would let the account
send N times the rate. This one keeps a GCRA (the generic cell rate algorithm, a token
bucket written as one time) on one row, `astria_budget`: `tat`, the theoretical arrival
time of the next request, and `paused_until`, the end of the last 429's Retry-After
(microseconds since the epoch, on the database's clock).

`acquire` is one short `UPDATE ... RETURNING` on the database's clock: the row lock
queues the processes, the request is given the slot
    granted = max(now, tat - tolerance, paused_until),   tolerance = (burst - 1) / rate
and `tat` moves on to max(tat, now, paused_until) + 1 / rate; the caller sleeps until its
slot. So in any window of W seconds all the processes together are given at most
rate × W + burst slots, and none inside a pause. `pause` pushes `paused_until` out.

It satisfies bot.astria.limiter.Limiter (structurally: the store does not import the
client). A database that does not answer is not a reason to stop talking to Astria: the
process then spaces its own requests by one interval each (at most `rate` per process)
until the database answers again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from bot.store.db import Database
from bot.store.errors import StoreError

log = logging.getLogger(__name__)

_WARN_EVERY_SECONDS = 60.0


class AstriaBudget:
    def __init__(
        self,
        db: Database,
        rate_per_second: float,
        burst: int = 5,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_second <= 0:
            raise ValueError("the rate must be positive")
        self._db = db
        self.rate = rate_per_second
        self.burst = max(burst, 1)
        # Whole microseconds, rounded up: never a hair faster than the rate.
        self._interval_us = math.ceil(1_000_000 / rate_per_second)
        self._tolerance_us = (self.burst - 1) * self._interval_us
        self._sleep = sleep
        self._warned_at: float | None = None
        self.waited = 0.0  # total seconds spent waiting, for benchmarks and logs
        now, greatest = db.dialect.epoch_us, db.dialect.greatest
        self._take = (
            f"UPDATE astria_budget SET granted_at = {greatest}({now}, tat - :tolerance,"  # noqa: S608
            f" paused_until), tat = {greatest}(tat, {now}, paused_until) + :interval"
            f" WHERE id = 1 RETURNING granted_at - {now} AS wait_us, paused_until"
        )
        self._pause = (
            f"UPDATE astria_budget SET paused_until = {greatest}(paused_until, {now} + :pause_us)"  # noqa: S608
            " WHERE id = 1"
        )
        self._paused = f"SELECT paused_until, paused_until - {now} AS left_us FROM astria_budget"  # noqa: S608

    async def acquire(self) -> None:
        """Wait for this request's slot in the account's budget (and past any pause)."""
        while True:
            try:
                rows = await self._db.statement(
                    self._take, {"tolerance": self._tolerance_us, "interval": self._interval_us}
                )
            except StoreError as exc:
                await self._alone(exc)
                return
            if not rows:
                raise StoreError("the astria_budget row is missing")
            wait = int(rows[0]["wait_us"]) / 1_000_000
            seen_pause = int(rows[0]["paused_until"])
            if wait <= 0:
                return
            self.waited += wait
            await self._sleep(wait)
            # A 429 another request met while this one slept: its slot would fall inside
            # the pause, so it takes a new one, after the pause and spaced like the rest.
            try:
                row = await self._db.fetchone(self._paused)
            except StoreError:
                return
            if row is None or int(row["paused_until"]) <= seen_pause or int(row["left_us"]) <= 0:
                return

    async def granted(self) -> int:
        """The slot the last request was given, in microseconds since the epoch on the
        database's clock (0: no request yet), for tests and diagnostics."""
        row = await self._db.fetchone("SELECT granted_at FROM astria_budget")
        return 0 if row is None else int(row["granted_at"])

    async def pause(self, seconds: float) -> None:
        """A 429 asked for `seconds` of quiet: every process's next requests wait for it."""
        try:
            pause_us = math.ceil(max(seconds, 0.0) * 1_000_000)
            await self._db.statement(self._pause, {"pause_us": pause_us})
        except StoreError as exc:
            self._warn(exc)  # this process's own pause still holds (the client keeps it)

    async def _alone(self, exc: StoreError) -> None:
        self._warn(exc)
        self.waited += self._interval_us / 1_000_000
        await self._sleep(self._interval_us / 1_000_000)

    def _warn(self, exc: StoreError) -> None:
        now = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= _WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(
                "the shared Astria request budget is unreachable (%s); this process "
                "spaces its own requests until the database answers",
                exc,
            )
