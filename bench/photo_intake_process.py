"""The process under test in `bench.photo_intake`: members submit their photos at once.

`--mode intake` is the bot's path: `PhotoIntake.take` (one photo at a time per member, a
download limit shared by all), then the tune queued in the store, then the tracker's
create at the emulator. `--mode direct` is the floor the same bytes need: download, write,
create, with no checks, no store and no tracker. Timings and what was checked come out as
one JSON line; `bench.photo_intake` reads the peak memory from the kernel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

import bot.app  # noqa: F401 - the real process loads discord.py and the UI too
from bench.common import KEY, Sampler, child_figures, current_rss, p99
from bench.rig import CHANNEL, GUILD, PROFILE, TUNE_MC, CountingDelivery, client_for, settings_for
from bot.astria import TuneRequest
from bot.jobs import Tracker, TrackerConfig
from bot.rules.intake import PhotoIntake, PhotoSource
from bot.rules.photos import PhotoRules
from bot.store import Store, TuneRecord, TuneState

Read = Callable[[], Awaitable[bytes]]


def reader(session: aiohttp.ClientSession, url: str) -> Read:
    """What `discord.Attachment.read` does: GET the file, return all its bytes."""

    async def read() -> bytes:
        async with session.get(url) as response:
            response.raise_for_status()
            return await response.read()

    return read


async def intake_mode(args: argparse.Namespace, manifest: dict[str, Any]) -> dict[str, Any]:
    folder: Path = args.dir
    database = folder / "bot.sqlite3"
    settings = settings_for(
        database_path=database,
        astria_base_url=args.astria,
        astria_api_key=KEY,
        max_concurrent_downloads=args.max_downloads,
    )
    store = await Store.open(database, settings=settings)
    rules = PhotoRules()
    intake = PhotoIntake(
        folder / "photos", rules, max_concurrent_downloads=settings.max_concurrent_downloads
    )
    figures: dict[str, Any] = {"memory_bound": intake.memory_bound}
    try:
        async with aiohttp.ClientSession() as session:
            client = client_for(session, args.astria)
            delivery = CountingDelivery()
            tracker = Tracker(
                store, client, delivery, TrackerConfig.from_settings(settings), clock=_now
            )
            running = asyncio.create_task(tracker.run())
            await asyncio.sleep(0.2)  # the tracker's first round is behind us
            figures["rss_ready"] = current_rss()
            sampler = Sampler()
            sampler.start()
            started = time.perf_counter()
            intake_done: list[float] = []
            accepted_ok: list[bool] = []

            async def member(m: int) -> TuneRecord:
                photos = manifest["members"][m]
                sources = [
                    PhotoSource(f"photo {n + 1}", p["size"], reader(session, p["url"]))
                    for n, p in enumerate(photos)
                ]
                result = await intake.take(sources)
                intake_done.append(time.perf_counter() - started)
                if not result.ok:
                    raise RuntimeError(f"member {m}: {result.summary}")
                accepted_ok.append(
                    [i.sha256 for i in result.accepted] == [p["sha256"] for p in photos]
                )
                tune = await store.tunes.create(
                    owner_id=1000 + m,
                    guild_id=GUILD,
                    channel_id=CHANNEL,
                    name="me",
                    subject_class="man",
                    profile=PROFILE,
                    branch="sd15",
                    photo_paths=[str(p) for p in result.paths],
                    price_mc=TUNE_MC,
                )
                if not isinstance(tune, TuneRecord):
                    raise RuntimeError(f"member {m}: tune refused: {tune}")
                tracker.nudge()
                return tune

            tunes = await asyncio.gather(*(member(m) for m in range(args.members)))
            while len(delivery.milestones.get("training", [])) < len(tunes):
                await asyncio.sleep(0.01)
                if time.perf_counter() - started > 600:
                    raise RuntimeError("the creates did not finish in 10 minutes")
            last_create = max(delivery.milestones.get("training", [started])) - started
            await sampler.stop()
            figures["rss_peak_sampled"] = sampler.peak_rss
            figures["worst_stall"] = sampler.worst_stall
            figures["p99_stall"] = p99(sampler.lateness) if sampler.lateness else 0.0
            await tracker.stop()
            await asyncio.wait_for(running, timeout=30)
            states = [await store.tunes.get(t.id) for t in tunes]
            figures.update(
                last_intake=max(intake_done, default=0.0),
                last_create=last_create if tunes else 0.0,
                training=sum(s is not None and s.state == TuneState.TRAINING for s in states),
                same_bytes=all(accepted_ok),
                photos_left=sum(1 for p in (folder / "photos").rglob("*") if p.is_file()),
            )
    finally:
        await store.close()
    return figures


async def direct_mode(args: argparse.Namespace, manifest: dict[str, Any]) -> dict[str, Any]:
    """The same bytes with no bot code in the way: the floor the intake is held against."""
    folder: Path = args.dir / "direct"  # made by main()
    downloads = asyncio.Semaphore(args.max_downloads)
    creates = asyncio.Semaphore(4)
    figures: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        client = client_for(session, args.astria)
        started = time.perf_counter()
        done: list[float] = []

        async def member(m: int) -> None:
            paths: list[Path] = []
            for n, photo in enumerate(manifest["members"][m]):
                async with downloads:
                    data = await reader(session, photo["url"])()
                    path = folder / f"{m}-{n}.jpg"
                    await asyncio.to_thread(path.write_bytes, data)
                    paths.append(path)
            async with creates:
                request = TuneRequest(
                    title=str(uuid.uuid4()), name="man", images=paths, branch="sd15"
                )
                await client.create_tune(request)
            done.append(time.perf_counter() - started)

        await asyncio.gather(*(member(m) for m in range(args.members)))
        figures["last_create"] = max(done, default=0.0)
    return figures


def _now() -> datetime:
    return datetime.now(UTC)


async def run(args: argparse.Namespace, manifest: dict[str, Any]) -> None:
    if args.mode == "intake":
        figures = await intake_mode(args, manifest)
    else:
        figures = await direct_mode(args, manifest)
    print(child_figures(figures), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("intake", "direct"), required=True)
    parser.add_argument("--members", type=int, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--astria", required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--max-downloads", type=int, default=4)
    args = parser.parse_args(argv)
    (args.dir / "direct").mkdir(parents=True, exist_ok=True)
    asyncio.run(run(args, json.loads(args.manifest.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
