"""Owner-only files: the database and its WAL files 0600, training photos 0600 in 0700
folders, whatever the umask, and a database made world-readable before is narrowed."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bot.rules.intake import PhotoIntake, PhotoSource
from bot.rules.photos import PhotoRules
from bot.store import TuneRecord
from tests.conftest import photo
from tests.store.helpers import Stores, open_store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _reader(data: bytes) -> Callable[[], Awaitable[bytes]]:
    async def read() -> bytes:
        return data

    return read


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Stores]:
    """SQLite only: these are the database file's own modes."""
    opened = Stores(tmp_path)
    yield opened
    await opened.close_all()


async def test_photos_are_owner_only(tmp_path: Path):
    old = os.umask(0o022)
    try:
        photos = PhotoIntake(tmp_path / "data" / "photos", PhotoRules(), max_concurrent_downloads=1)
        taken = await photos.take([PhotoSource(f"p{n}", None, _reader(photo(n))) for n in range(4)])
    finally:
        os.umask(old)
    assert taken.ok
    assert mode(photos.folder) == 0o700 and mode(photos.folder.parent) == 0o700
    assert {mode(p.parent) for p in taken.paths} == {0o700}
    assert {mode(p) for p in taken.paths} == {0o600}


async def test_the_database_and_its_wal_files_are_owner_only(stores: Stores, tmp_path: Path):
    old = os.umask(0o022)
    try:
        store = await stores.open("fresh.sqlite3")
        created = await store.tunes.create(
            owner_id=1,
            guild_id=10,
            channel_id=20,
            name="me",
            subject_class="man",
            profile="flux-lora",
            branch="flux1",
            photo_paths=[],
            price_mc=150_000,
        )  # a write, so the WAL has content
        assert isinstance(created, TuneRecord)
    finally:
        os.umask(old)
    files = [tmp_path / f"fresh.sqlite3{s}" for s in ("", "-wal", "-shm")]
    assert all(f.exists() for f in files)
    assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}


async def test_a_database_made_world_readable_before_is_narrowed(tmp_path: Path):
    path = tmp_path / "old.sqlite3"
    first = await open_store(path)
    await first.close()
    for file in tmp_path.glob("old.sqlite3*"):
        file.chmod(0o644)
    again = await open_store(path)
    try:
        files = list(tmp_path.glob("old.sqlite3*"))
        assert len(files) >= 3  # the database, -wal and -shm while it is open
        assert {mode(f) for f in files} == {0o600}
    finally:
        await again.close()
