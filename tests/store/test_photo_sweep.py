"""The photo sweep on a real database and real files: an orphan older than the grace goes,
a photo an unfinished tune names stays, and so does a young one or one still being read;
and the folder is narrowed to owner-only."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.jobs.photosweep import PhotoSweep
from bot.rules.intake import BATCH_PREFIX, PhotoIntake, PhotoSource
from bot.rules.photos import PhotoRules
from bot.store import Store, TuneRecord, TuneState
from tests.conftest import photo

GRACE = 600.0


def write(folder: Path, name: str, *, age: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"photo")
    moment = time.time() - age
    os.utime(path, (moment, moment))
    return path


def age(path: Path, seconds: float) -> None:
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


async def tune_with(store: Store, paths: list[Path], name: str = "me") -> TuneRecord:
    created = await store.tunes.create(
        owner_id=1,
        guild_id=10,
        channel_id=20,
        name=name,
        subject_class="man",
        profile="flux-lora",
        branch="flux1",
        photo_paths=[str(p) for p in paths],
        price_mc=150_000,
    )
    assert isinstance(created, TuneRecord)
    return created


def intake(folder: Path) -> PhotoIntake:
    return PhotoIntake(folder, PhotoRules(), max_concurrent_downloads=2)


def sweep(store: Store, photos: PhotoIntake, grace: float = GRACE) -> PhotoSweep:
    return PhotoSweep(store, photos, grace=grace, every=0.01)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_old_orphans_go_and_referenced_or_young_photos_stay(store: Store, tmp_path: Path):
    photos = tmp_path / "photos"
    queued = write(photos / f"{BATCH_PREFIX}a", "1.jpg", age=3 * GRACE)
    training = write(photos / f"{BATCH_PREFIX}b", "2.jpg", age=3 * GRACE)
    orphan = write(photos / f"{BATCH_PREFIX}c", "3.jpg", age=GRACE + 5)
    half_written = write(photos / f"{BATCH_PREFIX}c", ".x.part", age=GRACE + 5)
    young = write(photos / f"{BATCH_PREFIX}d", "4.jpg", age=GRACE - 60)
    of_a_failed_tune = write(photos / f"{BATCH_PREFIX}e", "5.jpg", age=3 * GRACE)
    not_ours = write(photos, "notes.txt", age=3 * GRACE)  # outside any batch: never touched
    empty_batch = photos / f"{BATCH_PREFIX}f"
    empty_batch.mkdir()
    age(empty_batch, 2 * GRACE)
    await tune_with(store, [queued], "one")
    moving = await tune_with(store, [training], "two")
    await store.tunes.transition(moving.id, TuneState.QUEUED, TuneState.SUBMITTING)
    await store.tunes.set_astria_id(moving.id, 99)
    await store.tunes.set_state(moving.id, TuneState.TRAINING)
    failed = await tune_with(store, [of_a_failed_tune], "three")
    await store.tunes.set_state(failed.id, TuneState.FAILED)  # a kill before its cleanup

    removed = await sweep(store, intake(photos)).once()

    assert sorted(removed) == sorted([orphan, half_written, of_a_failed_tune])
    assert queued.exists() and training.exists() and young.exists() and not_ours.exists()
    assert not orphan.parent.exists() and not of_a_failed_tune.parent.exists()
    assert not empty_batch.exists()
    assert await sweep(store, intake(photos)).once() == []  # nothing left to do


async def test_a_batch_still_being_read_is_kept_whatever_its_age(store: Store, tmp_path: Path):
    """A slow form in this process: its first photo is older than the grace before the
    last one is read. The sweep keeps the batch until the intake lets it go."""
    photos = intake(tmp_path / "photos")
    gate = asyncio.Event()
    last_read = asyncio.Event()

    def source(n: int) -> PhotoSource:
        data = photo(n)

        async def read() -> bytes:
            if n == 3:  # photos are read in turn: the first three are on disk
                last_read.set()
                await gate.wait()
            return data

        return PhotoSource(f"photo {n}", len(data), read)

    reading = asyncio.create_task(photos.take([source(n) for n in range(4)]))
    await asyncio.wait_for(last_read.wait(), 10)
    on_disk = list(photos.folder.glob(f"{BATCH_PREFIX}*/*.jpg"))
    assert len(on_disk) == 3
    for path in on_disk:
        age(path, 10 * GRACE)
    assert await sweep(store, photos, grace=0).once() == []
    gate.set()
    taken = await reading
    assert taken.ok and len(taken.paths) == 4
    assert await sweep(store, photos, grace=0).once() == []  # read, not yet let go
    await tune_with(store, list(taken.paths))
    photos.release(taken)
    assert await sweep(store, photos, grace=0).once() == []  # a queued tune names them
    assert all(p.exists() for p in taken.paths)


async def test_a_taken_batch_no_tune_names_is_swept_once_let_go(store: Store, tmp_path: Path):
    photos = intake(tmp_path / "photos")
    sources = [PhotoSource(f"p{n}", None, _reader(photo(n))) for n in range(4)]
    taken = await photos.take(sources)
    photos.release(taken)  # as if the row was never written (the process died)
    removed = await sweep(store, photos, grace=0).once()
    assert sorted(removed) == sorted(taken.paths)
    assert list(photos.folder.iterdir()) == []


async def test_the_periodic_sweep_cleans_a_running_bot(store: Store, tmp_path: Path):
    photos = intake(tmp_path / "photos")
    task = asyncio.create_task(sweep(store, photos).run())
    try:
        orphan = write(photos.folder / f"{BATCH_PREFIX}z", "1.jpg", age=2 * GRACE)
        for _ in range(500):
            if not orphan.exists():
                break
            await asyncio.sleep(0.01)
        assert not orphan.exists()
    finally:
        task.cancel()


async def test_a_photos_folder_made_before_is_narrowed_by_the_sweep(store: Store, tmp_path: Path):
    folder = tmp_path / "photos"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    await sweep(store, intake(folder)).once()
    assert mode(folder) == 0o700


def _reader(data: bytes) -> Callable[[], Awaitable[bytes]]:
    async def read() -> bytes:
        return data

    return read


async def test_a_source_image_stays_until_astria_has_its_prompt(store: Store, tmp_path: Path):
    """Image-to-image sources live in the intake's batch folders too: kept while their
    prompt waits or is being sent, swept once Astria has it."""
    from bot.rules.prompts import PromptOptions
    from bot.store import PromptRecord, PromptState

    photos = tmp_path / "photos"
    source = write(photos / f"{BATCH_PREFIX}s", "src.jpg", age=3 * GRACE)
    tune = await tune_with(store, [], "base")
    created = await store.prompts.create(
        owner_id=1,
        guild_id=10,
        channel_id=20,
        tune_id=tune.id,
        user_text="x",
        final_text="x",
        num_images=1,
        price_mc=3_000,
        options=PromptOptions(input_image_path=str(source), denoising_strength=0.6),
        target_tune_id=1504944,
    )
    assert isinstance(created, PromptRecord)
    assert await store.prompts.inputs_in_use() == frozenset({str(source)})
    cleaner = sweep(store, intake(photos))
    assert await cleaner.once() == [] and source.exists()
    await store.prompts.transition(created.id, PromptState.QUEUED, PromptState.SUBMITTING)
    assert await cleaner.once() == [] and source.exists()
    await store.prompts.set_astria_id(created.id, 77)
    await store.prompts.set_state(created.id, PromptState.GENERATING)
    assert await store.prompts.inputs_in_use() == frozenset()
    assert await cleaner.once() == [source] and not source.exists()
