"""The photo sweep: no training photo (or image-to-image source) outlives every record of it.

A photo is written while a member's form is read, before its tune row exists (the row is
written with the paths once the whole set passed), so a kill mid-intake leaves files no
record names. The sweep deletes them: at start, before the tracker runs, and then every
`every` seconds for a bot that runs for weeks. A file is kept while an unfinished tune
names it, while this process's intake holds its batch, and for `grace` seconds after it
was written (another process's intake may not have written its row yet).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from bot.rules.intake import PhotoIntake, sweep_orphans
from bot.rules.photos import private_folder
from bot.store import Store

log = logging.getLogger(__name__)

SWEEP_EVERY_SECONDS = 600.0


class PhotoSweep:
    def __init__(
        self,
        store: Store,
        intake: PhotoIntake,
        *,
        grace: float,
        every: float = SWEEP_EVERY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._intake = intake
        self._grace = grace
        self._every = every
        self._clock = clock  # wall seconds: compared with files' modification times

    async def once(self) -> list[Path]:
        """One sweep; the files deleted. The cut-off is taken before the store is read, so
        a file written after the read is always young enough to be kept."""
        folder = self._intake.folder
        older_than = self._clock() - self._grace
        held = self._intake.held
        # Training photos of unfinished tunes, and the source images of image-to-image
        # prompts Astria does not have yet: both live in the intake's batch folders.
        keep = await self._store.tunes.photos_in_use() | await self._store.prompts.inputs_in_use()
        held |= self._intake.held  # a batch taken up while the store was read
        removed = await asyncio.to_thread(self._sweep, folder, keep, older_than, held)
        if removed:
            log.info("removed %d training photos no tune refers to", len(removed))
        return removed

    @staticmethod
    def _sweep(
        folder: Path, keep: frozenset[str], older_than: float, held: frozenset[Path]
    ) -> list[Path]:
        if folder.is_dir():
            private_folder(folder)  # a folder made before photos were kept owner-only
        return sweep_orphans(folder, keep, older_than=older_than, held=held)

    async def run(self) -> None:
        """Sweep every `every` seconds until cancelled; a failed sweep is logged and the
        next one tries again."""
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.once()
            except Exception:
                log.exception("the photo sweep failed; trying again in %g s", self._every)
