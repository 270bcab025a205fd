"""One tracker process of `bench.processes`: the bot's job side without Discord, on the
PostgreSQL schema and the emulator its environment names.

Its settings come from the environment as a deployed process's do (DATABASE_URL,
PROCESS_ID, LEASE_SECONDS, ASTRIA_BASE_URL, ASTRIA_API_KEY, ASTRIA_REQUESTS_PER_SECOND);
its Astria client is built as the bot builds it (`AstriaClient.from_settings`, so with
the bot's own request limiter). It prints `{"ready": ...}` once the store is open, runs
`Tracker.run()` until a line "stop" arrives on stdin (or it is killed), then prints what
it delivered as one JSON line.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

import aiohttp

from bench.common import child_figures
from bench.rig import CountingDelivery, settings_for
from bot.astria import AstriaClient
from bot.jobs import JobEvent, Outcome, Tracker, TrackerConfig
from bot.store import Store


class NamingDelivery(CountingDelivery):
    """Counts as the rig's does, and keeps the keys it was told more than once."""

    def __init__(self) -> None:
        super().__init__()
        self.repeated: list[str] = []

    async def report(self, event: JobEvent, *, private: bool = False) -> Outcome:
        if event.key in self.keys:
            self.repeated.append(event.key)
        return await super().report(event, private=private)


async def run() -> None:
    settings = settings_for()  # DATABASE_URL, PROCESS_ID, ... from the environment
    store = await Store.open_configured(settings)
    try:
        async with aiohttp.ClientSession() as session:
            # as the bot builds it: on PostgreSQL the account's one budget (bot/app.py)
            shared = store.astria_budget if store.backend == "postgres" else None
            client = AstriaClient.from_settings(settings, session, limiter=shared)
            delivery = NamingDelivery()
            tracker = Tracker(
                store, client, delivery, TrackerConfig.from_settings(settings), clock=_utc_now
            )
            print(child_figures({"ready": settings.process_id}), flush=True)
            running = asyncio.create_task(tracker.run(), name="tracker")
            while (await asyncio.to_thread(sys.stdin.readline)).strip() not in ("stop", ""):
                pass
            await tracker.stop()
            await running
            figures = {
                "delivered": sum(delivery.ends.values()),
                "repeats": delivery.repeats,
                "repeated": delivery.repeated,
                "holder": settings.process_id,
            }
    finally:
        await store.close()
    print(child_figures(figures), flush=True)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def main() -> int:
    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
