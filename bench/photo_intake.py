"""Photo intake: members each submitting 20 phone-sized photos at once. Peak resident memory
against the bound the download and preparation limits imply (and flat as members grow: 1,
5, 20), time to the last tune create, and bytes sent to Astria per photo against the
photo the member sent (the intake prepares each one: upright, at most 2048 px, no EXIF).

This process serves the photos (4032×3024 JPEGs with noise, so they stay 5-10 MB, with
EXIF and a GPS position) from a small aiohttp server on 127.0.0.1 and runs the emulator;
the bot's side runs in a child (`bench.photo_intake_process`) whose peak RSS the kernel
reports. Baselines, same run: the child with no members (memory), and the same photos
moved as they came with no bot code (time).

The emulator notes each uploaded photo's size, pixels and metadata
(`Emulator.photos_received`); a middleware added to its aiohttp app before it starts
counts the body bytes of each POST /tunes, multipart framing included.

    .venv/bin/python -m bench.photo_intake [--quick]
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image

from bench.common import (
    KEY,
    MB,
    Goal,
    Measured,
    Table,
    fmt,
    mb,
    parse_args,
    python_module,
    ratio,
    report,
    run_measured,
    times,
    work_dir,
)
from bot.offline.emulator import Emulator, EmulatorConfig
from bot.offline.emulator.images import PhotoFacts
from bot.rules.intake import PREPARE_SLOTS
from bot.rules.photos import PhotoRules
from bot.rules.prepare import DRAFT_SIDE, LONG_SIDE

PHOTOS = 20
PHONE = (4032, 3024)  # a 12 MP phone photo
MAX_DOWNLOADS = 4  # MAX_CONCURRENT_DOWNLOADS, the production default
GOAL_PHOTO_BYTES = 3 * MB  # Astria's FAQ: about 3 MB a photo
GOAL_FRAMING_RATIO = 1.01  # a tune's body over its photos: each byte sent once


# ---------------------------------------------------------------------- the photos


def phone_jpeg(seed: int) -> bytes:
    """A phone's photo: 4032×3024 at quality 92, smooth light under sensor-like noise (the
    noise keeps it near 7 MB, as real detail does), with EXIF: an orientation, a camera
    and a GPS position, which must not reach Astria."""
    rng = random.Random(seed)
    width, height = PHONE
    light = Image.linear_gradient("L").rotate(seed * 37 % 360).resize(PHONE).convert("RGB")
    grain = Image.frombytes("RGB", PHONE, rng.randbytes(width * height * 3))
    image = Image.blend(light, grain, 0.35)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: turn 90° to view
    exif[0x010F] = "BenchPhone"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, float(seed))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92, exif=exif.tobytes())
    return out.getvalue()


def noise_jpeg(seed: int, target: int) -> bytes:
    """A JPEG of random noise, about `target` bytes (noise does not compress)."""
    rng = random.Random(seed)
    side = 1640  # about 3 MB at quality 95; the loop finds the side for `target`
    for _ in range(4):
        image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=95)
        data = out.getvalue()
        if abs(len(data) - target) < target * 0.05:
            break
        side = int(side * (target / len(data)) ** 0.5)
    return data


def for_member(base: bytes, member: int, photo: int) -> bytes:
    """The photo with a comment naming its member: the same size for everyone, different
    bytes (two members never send the very same file), and no re-encoding."""
    text = f"member {member:04d} photo {photo:02d}".encode()
    segment = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    return base[:2] + segment + base[2:]


@dataclass
class PhotoServer:
    """Serves member m's photo n at /m/n.jpg, from one set of base photos in memory."""

    bases: list[bytes]
    app: web.Application = field(default_factory=web.Application)
    runner: web.AppRunner | None = None
    base_url: str = ""
    served: int = 0

    async def start(self) -> None:
        self.app.router.add_get("/{member:\\d+}/{photo:\\d+}.jpg", self._photo)
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _photo(self, request: web.Request) -> web.Response:
        member, photo = int(request.match_info["member"]), int(request.match_info["photo"])
        if photo >= len(self.bases):
            raise web.HTTPNotFound()
        data = for_member(self.bases[photo], member, photo)
        self.served += len(data)
        return web.Response(body=data, content_type="image/jpeg")

    def manifest(self, members: int) -> dict[str, Any]:
        return {
            "members": [
                [
                    {
                        "url": f"{self.base_url}/{m}/{n}.jpg",
                        "size": len(for_member(base, m, n)),
                        "sha256": hashlib.sha256(for_member(base, m, n)).hexdigest(),
                    }
                    for n, base in enumerate(self.bases)
                ]
                for m in range(members)
            ]
        }


def count_tune_bodies(emulator: Emulator, sizes: list[int]) -> None:
    """Record the body size of every POST /tunes the emulator answers."""

    @web.middleware
    async def counting(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if request.method == "POST" and request.path.rstrip("/") in ("/tunes", "/tunes.json"):
            sizes.append(request.content.total_bytes)
        return response

    emulator.app.middlewares.append(counting)


# ---------------------------------------------------------------------- one run


@dataclass(frozen=True)
class Run:
    label: str
    members: int
    photos: int  # a member's
    set_bytes: int  # one member's photos, in bytes
    child: Measured
    figures: dict[str, Any]
    bodies: list[int]  # each POST /tunes body, in bytes
    sent: list[PhotoFacts]  # each photo Astria received, as the emulator noted it

    def figure(self, name: str) -> float:
        return float(self.figures[name])

    @property
    def photo_bytes(self) -> float:
        """One photo as the member sent it (all of a set are about the same size)."""
        return self.set_bytes / self.photos

    def sent_ratios(self) -> list[float]:
        return [ratio(f.size, self.photo_bytes) for f in self.sent]

    def problems(self) -> list[str]:
        found: list[str] = []
        if self.members and not self.figures.get("same_bytes", True):
            found.append(f"{self.label}: the checked photos differ from the sources")
        if len(self.sent) != self.members * self.photos:
            found.append(f"{self.label}: Astria got {len(self.sent)} photos")
        if "training" in self.figures and (
            self.figures["training"] != self.members or len(self.bodies) != self.members
        ):
            found.append(
                f"{self.label}: {self.figures['training']} tunes training, "
                f"{len(self.bodies)} POST /tunes for {self.members} members"
            )
        return found


@dataclass
class Bench:
    """The emulator, the photo servers and the body counter, for every child run."""

    folder: Path
    emulator: Emulator
    bodies: list[int] = field(default_factory=list)

    async def run(
        self, mode: str, label: str, members: int, server: PhotoServer, photos: int
    ) -> Run:
        self.bodies.clear()
        self.emulator.photos_received.clear()
        run = self.folder / f"{mode}-{len(list(self.folder.iterdir()))}"
        run.mkdir(parents=True)
        manifest = run / "manifest.json"
        data = await asyncio.to_thread(server.manifest, members)
        manifest.write_text(json.dumps(data))
        args = python_module(
            "bench.photo_intake_process",
            "--mode",
            mode,
            "--members",
            str(members),
            "--manifest",
            str(manifest),
            "--astria",
            self.emulator.base_url,
            "--dir",
            str(run),
            "--max-downloads",
            str(MAX_DOWNLOADS),
        )
        child = await asyncio.to_thread(run_measured, args, timeout=900)
        if child.returncode != 0:
            raise RuntimeError(f"the {mode} process failed:\n{child.stderr[-3000:]}")
        set_bytes = sum(len(for_member(b, 0, n)) for n, b in enumerate(server.bases))
        figures = child.last_json()
        sent = [f for photos in self.emulator.photos_received.values() for f in photos]
        return Run(label, members, photos, set_bytes, child, figures, list(self.bodies), sent)


async def photo_server(count: int, target: int | None) -> PhotoServer:
    """Phone photos, or (with a target size) noise JPEGs of that size."""

    def make(n: int) -> bytes:
        return phone_jpeg(n) if target is None else noise_jpeg(n, target)

    bases = await asyncio.to_thread(lambda: [make(n) for n in range(count)])
    server = PhotoServer(bases)
    await server.start()
    return server


async def run_all(folder: Path, quick: bool) -> int:
    counts = (1, 4, 8) if quick else (1, 5, 20)
    photos = 6 if quick else PHOTOS
    big_photos = 4 if quick else 8
    big_target = int(9.4 * MB)  # just under PhotoRules.max_bytes (10 MB), Discord's cap
    emulator = Emulator(EmulatorConfig(api_key=KEY, balance_mc=10**12, train_seconds=600))
    bench = Bench(folder, emulator)
    count_tune_bodies(emulator, bench.bodies)
    await emulator.start()
    servers: list[PhotoServer] = []
    try:
        servers.append(await photo_server(photos, None))
        servers.append(await photo_server(big_photos, big_target))
        usual, big = servers
        baseline = await bench.run("intake", "0 (baseline)", 0, usual, photos)
        runs = [await bench.run("intake", f"{m}", m, usual, photos) for m in counts]
        floors = [await bench.run("direct", f"{m}", m, usual, photos) for m in counts]
        worst = await bench.run("intake", f"5, {mb(big_target)} photos", 5, big, big_photos)
        worst_floor = await bench.run("direct", "5 big", 5, big, big_photos)
    finally:
        await emulator.stop()
        for server in servers:
            await server.stop()
    return summarise(baseline, [*runs, worst], [*floors, worst_floor], quick)


def summarise(baseline: Run, runs: list[Run], floors: list[Run], quick: bool) -> int:
    bound = int(baseline.figure("memory_bound"))
    download_bound = 2 * MAX_DOWNLOADS * PhotoRules().max_bytes
    prepare_bound = bound - download_bound
    base_rss = baseline.child.peak_rss
    table = Table(
        [
            "members",
            "photos",
            "peak RSS",
            "over baseline",
            "÷ bound",
            "RSS growth (sampled)",
            "worst loop stall",
            "last intake",
            "last create",
            "direct floor",
            "÷ floor",
            "photo sent",
            "to Astria per photo (max)",
            "÷ photo sent (max)",
        ]
    )
    table.add(baseline.label, "0", mb(base_rss), "0", "", "", "", "", "", "", "", "", "", "")
    for r, floor in zip(runs, floors, strict=True):
        over = r.child.peak_rss - base_rss
        largest = max((f.size for f in r.sent), default=0)
        table.add(
            r.label,
            f"{r.members * r.photos:,}",
            mb(r.child.peak_rss),
            mb(over),
            fmt(ratio(over, bound)),
            mb(r.figure("rss_peak_sampled") - r.figure("rss_ready")),
            f"{r.figure('worst_stall') * 1000:.0f} ms",
            f"{r.figure('last_intake'):.2f} s",
            f"{r.figure('last_create'):.2f} s",
            f"{floor.figure('last_create'):.2f} s",
            times(r.figure("last_create"), floor.figure("last_create")),
            mb(r.photo_bytes),
            mb(largest) if r.sent else "none",
            f"{max(r.sent_ratios()):.3f}" if r.sent else "none",
        )

    usual, worst = runs[:-1], runs[-1]
    overs = [r.child.peak_rss - base_rss for r in usual]
    # One member reads one photo at a time; from MAX_DOWNLOADS members on, the limit binds.
    saturated = [o for r, o in zip(usual, overs, strict=True) if r.members >= MAX_DOWNLOADS]
    first_saturated = next(r.members for r in usual if r.members >= MAX_DOWNLOADS)
    problems = [p for r in runs for p in r.problems()]
    worst_over = worst.child.peak_rss - base_rss
    phone_sent = [f for r in usual for f in r.sent]
    all_ratios = [x for r in runs for x in r.sent_ratios()]
    framing = [ratio(sum(r.bodies), sum(f.size for f in r.sent)) for r in runs]
    goals = [
        Goal(
            f"peak memory within the intake's bound ({MAX_DOWNLOADS} downloads × 2 × "
            f"{mb(PhotoRules().max_bytes)} + {PREPARE_SLOTS} preparation × "
            f"{mb(prepare_bound / PREPARE_SLOTS)} = {mb(bound)} over the baseline), phone "
            "photos",
            all(o <= bound for o in overs),
            ", ".join(
                f"{r.members} members: {mb(o)} ({fmt(ratio(o, bound))}× the bound)"
                for r, o in zip(usual, overs, strict=True)
            ),
        ),
        Goal(
            f"flat as members grow: from {MAX_DOWNLOADS} members on (the limit binds), more "
            f"members add under a quarter of the bound ({mb(bound / 4)})",
            saturated[-1] - saturated[0] <= bound / 4,
            f"{mb(saturated[-1] - saturated[0])} more at {usual[-1].members} members than at "
            f"{first_saturated}",
        ),
        Goal(
            "the same bound with photos just under the size cap (the worst a member can send)",
            worst_over <= bound,
            f"{mb(worst_over)} over the baseline, {fmt(ratio(worst_over, bound))}× the bound",
        ),
        Goal(
            f"each phone photo ({PHONE[0]}×{PHONE[1]}, {mb(usual[0].photo_bytes)}) reaches "
            f"Astria in at most {mb(GOAL_PHOTO_BYTES)}, upright, {DRAFT_SIDE}-{LONG_SIDE} px, "
            "with no "
            "EXIF, GPS or other metadata",
            bool(phone_sent)
            and all(
                f.size <= GOAL_PHOTO_BYTES
                and f.metadata == ()
                and DRAFT_SIDE <= f.height <= LONG_SIDE
                and f.height > f.width  # orientation 6 turned the landscape upright
                for f in phone_sent
            ),
            f"max {mb(max((f.size for f in phone_sent), default=0))} of "
            f"{len(phone_sent)} sent, "
            f"{fmt(max(usual[0].sent_ratios(), default=0), 3)}× the photo; metadata left: "
            f"{sorted({m for f in phone_sent for m in f.metadata}) or 'none'}",
        ),
        Goal(
            "no photo reaches Astria bigger than the member sent it, and each byte once (a "
            f"tune's body at most {GOAL_FRAMING_RATIO}× its photos), the checked photos "
            "being the sources",
            bool(all_ratios)
            and max(all_ratios) <= 1.0
            and max(framing) <= GOAL_FRAMING_RATIO
            and not problems,
            f"max {max(all_ratios, default=0):.3f}× the photo, bodies "
            f"{max(framing, default=0):.5f}× the photos"
            + (f"; {'; '.join(problems)}" if problems else ""),
        ),
    ]
    notes = [
        f"{usual[0].photos} photos a member, {PHONE[0]}×{PHONE[1]} JPEGs of "
        f"{mb(usual[0].photo_bytes)} each (light under noise, quality 92, EXIF with GPS and "
        f"orientation 6); the big set: noise JPEGs of {mb(worst.photo_bytes)}",
        f"MAX_CONCURRENT_DOWNLOADS = {MAX_DOWNLOADS}, PREPARE_SLOTS = {PREPARE_SLOTS}: "
        f"PhotoIntake.memory_bound = {mb(bound)} (2 × downloads × max_bytes: a read holds "
        "its chunks and their joined copy; plus each preparation's prepare_memory: a decoded "
        "photo of up to max_pixels and its reduced copies)",
        "baseline = the same process (discord.py, store, tracker, emulator client) with no "
        f"members; peak RSS = the process's VmHWM ({mb(base_rss)} for the baseline)",
        "RSS growth (sampled) = the highest RSS seen every 20 ms from the members' submit "
        "to the last create, minus the RSS just before; loop stall = how late a 20 ms "
        "sleep woke up",
        "last intake / last create: seconds from every member submitting at once to the "
        "last set checked, prepared and stored / the last POST /tunes answered (the "
        "tracker makes 4 creates at a time)",
        "direct floor = the same photos downloaded (same limit), written and posted as they "
        "came by the client, with no checks, preparation, store or tracker",
        "to Astria per photo = each uploaded file as the emulator received it, over the "
        "photo the member sent (its EXIF and comment included)",
    ]
    if quick:
        notes.append("--quick: 6 photos a member; 1, 4 and 8 members")
    return report("Photo intake", [table], goals, notes)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__ or "", argv)
    with work_dir(args.dir, "photo_intake") as folder:
        return asyncio.run(run_all(folder, args.quick))


if __name__ == "__main__":
    raise SystemExit(main())
