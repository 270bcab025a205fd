"""One request limiter for everything the bot sends to Astria (the client calls it before
every request): a token bucket, so bursts stay small and the steady rate stays under what
Astria answers with 429.

`Limiter` is what the client asks of one: `acquire` before each request, `pause` when a
429 asked for quiet. `RequestLimiter` here is this process's own (SQLite: one process);
with several processes on PostgreSQL the store's `AstriaBudget` (bot/store/budget.py)
keeps one budget and one pause for the whole account."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol


class Limiter(Protocol):
    async def acquire(self) -> None:
        """Wait until the next request may go (its slot in the rate, past any pause)."""

    async def pause(self, seconds: float) -> None:
        """A 429 asked for `seconds` of quiet: the requests this limiter serves wait."""


class RequestLimiter:
    def __init__(
        self,
        rate_per_second: float,
        burst: int = 5,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_second <= 0:
            raise ValueError("the rate must be positive")
        self._rate = rate_per_second
        self._burst = float(max(burst, 1))
        self._tokens = self._burst
        self._monotonic = monotonic
        self._sleep = sleep
        self._last = monotonic()
        self._lock = asyncio.Lock()
        self.waited = 0.0  # total seconds spent waiting, for benchmarks and logs

    async def pause(self, seconds: float) -> None:
        """Nothing to share: the client's own pause already holds this process."""

    async def acquire(self) -> None:
        """Wait for a token. Callers queue in arrival order behind the lock."""
        async with self._lock:
            now = self._monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens < 1:
                wait = (1 - self._tokens) / self._rate
                self.waited += wait
                await self._sleep(wait)
                self._last = self._monotonic()
                self._tokens = 1.0
            self._tokens -= 1
