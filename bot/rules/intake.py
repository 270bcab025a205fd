"""Taking a member's training photos in: read each one, check it, prepare it, write it.

Discord's attachment URLs are signed and expire, and a modal's uploads are ephemeral, so the
bytes are read at submit and kept on disk until Astria has the tune. What is kept is the
prepared photo (`bot/rules/prepare.py`: upright, at most 2048 px, no EXIF, GPS or other
metadata), never the member's original, so the photos folder holds no position or camera
data and every upload, retries included, sends the same small bytes.

Memory is bounded by two limits shared by every member, not by how many photos or members
there are: at most `max_concurrent_downloads` photos are in memory as bytes at once (each
at most `PhotoRules.max_bytes`), and of those at most `PREPARE_SLOTS` are being decoded
and re-encoded at once (each `prepare_memory`). A member's photos are read one at a time.

No Discord here: a photo is a `PhotoSource` whose `read` the caller supplies (in the bot,
`discord.Attachment.read`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bot.rules.photos import (
    BatchProblem,
    PhotoBatch,
    PhotoInfo,
    PhotoProblem,
    PhotoRules,
)
from bot.rules.prepare import prepare_memory, prepare_photo, store_prepared

log = logging.getLogger(__name__)

# Each set of photos gets its own folder: two members may send the same photo, and one
# tune's cleanup must never delete a file another tune still needs.
BATCH_PREFIX = "batch-"

# Photos decoded at once, across all members. A decode holds a full-size photo (up to
# `PhotoRules.max_pixels`, hundreds of MB in the worst case), and Pillow's decoder and
# encoder keep a core busy: one at a time leaves the other core to the event loop and
# keeps the bound at one image. Never more than the downloads, which hold the bytes.
PREPARE_SLOTS = 1


@dataclass(frozen=True)
class PhotoSource:
    """One photo to read. `size` is what the sender declared (Discord knows it before any
    download); a declared size over the limit is refused without reading a byte."""

    label: str
    size: int | None
    read: Callable[[], Awaitable[bytes]]


@dataclass(frozen=True)
class IntakeResult:
    """The photos kept on disk (in order) and what was refused; `problem` says why the set as
    a whole cannot train (too few or too many usable photos), or is None when it can."""

    paths: tuple[Path, ...]
    accepted: tuple[PhotoInfo, ...]
    problems: tuple[PhotoProblem, ...]
    problem: BatchProblem | None
    summary: str
    folder: Path | None = None  # the batch's folder, held until `PhotoIntake.release`

    @property
    def ok(self) -> bool:
        return self.problem is None


class PhotoIntake:
    """Shared by the whole bot: one semaphore bounds the photos held in memory at once."""

    def __init__(
        self,
        folder: Path,
        rules: PhotoRules,
        *,
        max_concurrent_downloads: int,
        prepare_slots: int = PREPARE_SLOTS,
    ) -> None:
        if max_concurrent_downloads < 1:
            raise ValueError("max_concurrent_downloads must be at least 1")
        if prepare_slots < 1:
            raise ValueError("prepare_slots must be at least 1")
        self.folder = folder
        self.rules = rules
        self._downloads = asyncio.Semaphore(max_concurrent_downloads)
        self.max_concurrent_downloads = max_concurrent_downloads
        # Taken inside a download slot, so more slots than downloads could never be used.
        self.prepare_slots = min(prepare_slots, max_concurrent_downloads)
        self._prepares = asyncio.Semaphore(self.prepare_slots)
        # Batches being read, or read and not yet in a tune row: the sweep leaves them be
        # whatever their age (a slow intake's first photo may be older than the grace).
        self._held: set[Path] = set()

    @property
    def held(self) -> frozenset[Path]:
        return frozenset(self._held)

    def release(self, result: IntakeResult) -> None:
        """The batch's photos are in a tune row now (or forgotten): the sweep may judge
        them by the store from here on."""
        if result.folder is not None:
            self._held.discard(result.folder)

    @property
    def memory_bound(self) -> int:
        """The most photo memory held at once, whatever the number of members: a read holds
        its chunks and their joined copy for a moment (aiohttp, which
        `discord.Attachment.read` uses, joins them), so twice the photos in flight; and
        each preparation running holds its decoded image and copies (`prepare_memory`)."""
        downloads = 2 * self.max_concurrent_downloads * self.rules.max_bytes
        return downloads + self.prepare_slots * prepare_memory(self.rules)

    async def take(self, sources: Sequence[PhotoSource]) -> IntakeResult:
        """Read, check and store each photo in turn; never raises for a bad photo.

        On a refused set the photos already written are removed again: nothing is kept for a
        tune that will not be made. A failed read (an expired URL, Discord down) refuses
        that photo with a tip, like any other problem.
        """
        batch = PhotoBatch(self.rules)
        if len(sources) > self.rules.max_photos:
            return self._too_many(len(sources))
        folder = self.folder / f"{BATCH_PREFIX}{secrets.token_hex(8)}"
        self._held.add(folder)
        try:
            return await self._take(sources, batch, folder)
        except BaseException:
            self._held.discard(folder)
            raise

    async def take_one(self, source: PhotoSource) -> IntakeResult:
        """One picture to start image-to-image from, read, checked and prepared exactly as
        a training photo is (type by its bytes, size, dimensions, no metadata kept), in a
        batch folder of its own held until `release`."""
        batch = PhotoBatch(replace(self.rules, min_photos=1, max_photos=1))
        folder = self.folder / f"{BATCH_PREFIX}{secrets.token_hex(8)}"
        self._held.add(folder)
        try:
            return await self._take([source], batch, folder)
        except BaseException:
            self._held.discard(folder)
            raise

    async def _take(
        self, sources: Sequence[PhotoSource], batch: PhotoBatch, folder: Path
    ) -> IntakeResult:
        paths: list[Path] = []
        refused_early: list[PhotoProblem] = []
        for source in sources:
            if source.size is not None and source.size > self.rules.max_bytes:
                refused_early.append(self._too_big(source))
                continue
            async with self._downloads:
                try:
                    data = await source.read()
                except Exception:
                    log.info("could not read %s", source.label, exc_info=True)
                    refused_early.append(
                        PhotoProblem(
                            source.label,
                            "Discord did not give it to the bot",
                            "send it again in a minute",
                        )
                    )
                    continue
                # Checking decodes headers and verifies the file: off the event loop, so
                # 20 members' photos do not stall every other command (bench/photo_intake).
                result = await asyncio.to_thread(batch.add, source.label, data)
                if isinstance(result, PhotoInfo):
                    path = await self._prepare_and_store(batch, folder, source.label, result, data)
                    if path is not None:
                        paths.append(path)
                del data
        problems = tuple(refused_early) + batch.problems
        verdict = batch.verdict()
        summary = _summary(len(batch.accepted), problems)
        if isinstance(verdict, BatchProblem):
            forget(paths)
            self._held.discard(folder)
            problem = BatchProblem(_headline(verdict, batch), problems)
            return IntakeResult((), batch.accepted, problems, problem, summary)
        return IntakeResult(tuple(paths), batch.accepted, problems, None, summary, folder)

    async def _prepare_and_store(
        self, batch: PhotoBatch, folder: Path, label: str, info: PhotoInfo, data: bytes
    ) -> Path | None:
        """Prepare a checked photo (off the event loop, within the decode limit) and write
        the prepared bytes; a photo whose full decode fails is refused as damaged."""
        try:
            async with self._prepares:
                prepared = await asyncio.to_thread(prepare_photo, info, data)
        except Exception:
            # The checks read headers and a reduced decode; a full decode can still find
            # a broken stream (Pillow raises many kinds), which means the same to a member.
            log.info("photo %s could not be prepared", info.sha256, exc_info=True)
            batch.withdraw(
                info,
                PhotoProblem(label, "this file is damaged or cut short", "send the photo again"),
            )
            return None
        return await asyncio.to_thread(store_prepared, folder, prepared)

    def _too_big(self, source: PhotoSource) -> PhotoProblem:
        limit = self.rules.max_bytes // (1024 * 1024)
        size = (source.size or 0) / (1024 * 1024)
        return PhotoProblem(
            source.label,
            f"too big: {limit} MB at most; this one is {size:.1f} MB",
            "send a smaller copy",
        )

    def _too_many(self, count: int) -> IntakeResult:
        rules = self.rules
        reason = f"{rules.max_photos} photos at most; you sent {count}"
        return IntakeResult((), (), (), BatchProblem(reason), reason)


def forget(paths: Sequence[Path]) -> None:
    """Remove photos written for a set that will not train, and their batch folder."""
    for path in paths:
        path.unlink(missing_ok=True)
    for folder in {p.parent for p in paths}:
        if folder.name.startswith(BATCH_PREFIX):
            with contextlib.suppress(OSError):
                folder.rmdir()


def sweep_orphans(
    folder: Path, keep: Collection[str], *, older_than: float, held: Collection[Path] = ()
) -> list[Path]:
    """Delete the intake's files under `folder` that no record keeps, and empty batches.

    Only what the intake writes is touched (`batch-*` folders and the files in them,
    half-written `.part` files included), so a PHOTOS_DIR pointed somewhere shared loses
    nothing else. A file stays when `keep` names it (the paths of unfinished tunes), when
    it was modified at or after `older_than` (seconds since the epoch: an intake in another
    process may not have written its tune row yet), or when its batch is `held` by this
    process's intake. Returns the files deleted.
    """
    if not folder.is_dir():
        return []
    kept = {os.path.realpath(p) for p in keep}
    spared = {os.path.realpath(p) for p in held}
    removed: list[Path] = []
    for batch in sorted(folder.iterdir()):
        if not batch.name.startswith(BATCH_PREFIX) or not batch.is_dir() or batch.is_symlink():
            continue
        if os.path.realpath(batch) in spared:
            continue
        # Its own age before anything in it is deleted (a deletion makes it look new).
        old_batch = batch.lstat().st_mtime < older_than
        emptied = False
        for file in sorted(batch.iterdir()):
            try:
                young = file.lstat().st_mtime >= older_than
            except FileNotFoundError:
                continue
            if young or os.path.realpath(file) in kept or file.is_dir():
                continue
            file.unlink(missing_ok=True)
            removed.append(file)
            emptied = True
        if old_batch or emptied:
            with contextlib.suppress(OSError):  # not empty: something in it is kept
                batch.rmdir()
    return removed


def _summary(usable: int, problems: Sequence[PhotoProblem]) -> str:
    text = f"{usable} {'photo was' if usable == 1 else 'photos were'} usable"
    return f"{text}:\n{refused_list(problems)}" if problems else text


def refused_list(problems: Sequence[PhotoProblem], shown: int = 10) -> str:
    """One bullet a refused photo, with its reason and tip (at most `shown` of them)."""
    lines = [f"• {p}" for p in problems[:shown]]
    if len(problems) > shown:
        lines.append(f"• and {len(problems) - shown} more")
    return "\n".join(lines)


def _headline(verdict: BatchProblem, batch: PhotoBatch) -> str:
    """Why the set cannot train, in one line (the summary lists each refused photo)."""
    usable, rules = len(batch.accepted), batch.rules
    if usable < rules.min_photos:
        were = "was" if usable == 1 else "were"
        return f"{rules.min_photos} photos at least; {usable} {were} usable"
    return verdict.reason.split(":")[0]
