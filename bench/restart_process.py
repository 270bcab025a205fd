"""The process under test in `bench.restart`: the bot's start-up without Discord.

It imports what `astria-bot run` imports, opens the store, builds the tracker on the
emulator, schedules every unfinished job (`Tracker.start()` and the first round, as
`Tracker.run()` does), then waits for the background recovery, and prints its timings as
one JSON line. `bench.restart` runs it and reads its peak memory from the kernel.
"""

from __future__ import annotations

import time

STARTED = time.time()  # before the heavy imports below

import argparse  # noqa: E402 - timed: these imports are part of what is measured
import asyncio  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import aiohttp  # noqa: E402

import bot.app  # noqa: E402, F401 - the real process loads discord.py and the UI too
from bench.common import KEY, child_figures, current_rss  # noqa: E402
from bench.rig import CountingDelivery, client_for, settings_for  # noqa: E402
from bot.jobs import Tracker, TrackerConfig  # noqa: E402
from bot.store import PromptState, Store, TuneState  # noqa: E402


async def run(database: Path, astria: str, spawned_at: float, lookup_wait: float) -> None:
    marks: dict[str, float] = {"interpreter": STARTED - spawned_at}
    marks["imported"] = time.time() - spawned_at
    settings = settings_for(
        database_path=database,
        astria_base_url=astria,
        astria_api_key=KEY,
        astria_lookup_wait_seconds=lookup_wait,
    )
    store = await Store.open(database, settings=settings)
    marks["store_open"] = time.time() - spawned_at
    figures: dict[str, Any] = {"marks": marks}
    try:
        async with aiohttp.ClientSession() as session:
            client = client_for(session, astria, lookup_wait=lookup_wait)
            delivery = CountingDelivery()
            tracker = Tracker(
                store, client, delivery, TrackerConfig.from_settings(settings), clock=_utc_now
            )
            await tracker.start()
            marks["started"] = time.time() - spawned_at
            await tracker.poll_once(wait=False)  # the queue ordered, as run() does first
            marks["scheduled"] = time.time() - spawned_at
            figures["rss_scheduled"] = current_rss()
            await tracker.settle_background()
            marks["recovered"] = time.time() - spawned_at
            figures.update(await _counts(store, tracker))
            figures["progress_updates"] = delivery.progress_updates
            figures["ends_reported"] = sum(delivery.ends.values())
            await tracker.stop()
    finally:
        await store.close()
    print(child_figures(figures), flush=True)


async def _counts(store: Store, tracker: Tracker) -> dict[str, int]:
    """What the tracker holds now, read after the timings (it costs nothing measured)."""
    tunes = await store.tunes.unfinished()
    prompts = await store.prompts.unfinished()
    queued = [t.job for t in tunes if t.state == TuneState.QUEUED]
    queued += [p.job for p in prompts if p.state == PromptState.QUEUED]
    submitting = sum(t.state == TuneState.SUBMITTING for t in tunes)
    submitting += sum(p.state == PromptState.SUBMITTING for p in prompts)
    return {
        "followed": tracker.followed,
        "queued": len(queued),
        "queued_with_position": sum(tracker.queue_position(j) is not None for j in queued),
        "still_submitting": submitting,
        "unfinished": len(tunes) + len(prompts),
    }


def _utc_now() -> datetime:
    return datetime.now(UTC)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", type=Path, required=True)
    parser.add_argument("--astria", required=True)
    parser.add_argument("--spawned-at", type=float, required=True)
    parser.add_argument("--lookup-wait", type=float, default=0.2)
    args = parser.parse_args(argv)
    asyncio.run(run(args.database, args.astria, args.spawned_at, args.lookup_wait))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
