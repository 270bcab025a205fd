"""The photo intake: bounded memory across members, refusals before reading, cleanup."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.rules.intake import PhotoIntake, PhotoSource
from bot.rules.photos import PhotoRules
from bot.rules.prepare import prepare_memory
from tests.conftest import photo


class Reads:
    """Sources whose reads take a moment and count how many run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.calls = 0

    def source(self, label: str, data: bytes, size: int | None = None) -> PhotoSource:
        async def read() -> bytes:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
            await asyncio.sleep(0.002)
            self.running -= 1
            return data

        return PhotoSource(label, len(data) if size is None else size, read)


async def test_downloads_at_once_never_pass_the_limit_whatever_the_members(tmp_path: Path):
    reads = Reads()
    intake = PhotoIntake(tmp_path, PhotoRules(), max_concurrent_downloads=2)
    members = [[reads.source(f"photo {i}", photo(m * 10 + i)) for i in range(5)] for m in range(6)]
    results = await asyncio.gather(*(intake.take(sources) for sources in members))
    assert reads.peak == 2  # six members, one photo each at a time, two in memory at most
    assert all(r.ok and len(r.paths) == 5 for r in results)
    # Each set in its own folder: two members' identical photos never share a file.
    assert len(list(tmp_path.glob("batch-*/*.jpg"))) == 30
    assert len({p.parent for r in results for p in r.paths}) == 6
    # Two downloads (a photo and its joined copy each) and one preparation at a time.
    assert intake.prepare_slots == 1
    assert intake.memory_bound == 2 * 2 * PhotoRules().max_bytes + prepare_memory(PhotoRules())


async def test_a_declared_oversize_photo_is_refused_without_reading_it(tmp_path: Path):
    reads = Reads()
    intake = PhotoIntake(tmp_path, PhotoRules(), max_concurrent_downloads=1)
    sources = [reads.source(f"photo {i}", photo(i)) for i in range(1, 5)]
    sources.append(reads.source("photo 5 (huge.jpg)", b"never read", size=50 * 1024 * 1024))
    result = await intake.take(sources)
    assert reads.calls == 4
    assert result.ok and len(result.paths) == 4
    assert "photo 5 (huge.jpg): too big: 10 MB at most; this one is 50.0 MB" in result.summary


async def test_a_refused_set_leaves_no_photo_on_disk(tmp_path: Path):
    async def broken() -> bytes:
        raise ConnectionResetError("Discord hung up")

    reads = Reads()
    intake = PhotoIntake(tmp_path, PhotoRules(), max_concurrent_downloads=3)
    sources = [reads.source(f"photo {i}", photo(i)) for i in range(1, 4)]
    sources.append(PhotoSource("photo 4", 100, broken))
    result = await intake.take(sources)
    assert not result.ok and result.problem is not None
    assert result.problem.reason == "4 photos at least; 3 were usable"
    assert "photo 4: Discord did not give it to the bot; send it again in a minute" in (
        result.summary
    )
    assert list(tmp_path.iterdir()) == []


async def test_more_photos_than_allowed_are_refused_before_any_read(tmp_path: Path):
    reads = Reads()
    intake = PhotoIntake(tmp_path, PhotoRules(max_photos=5), max_concurrent_downloads=3)
    result = await intake.take([reads.source(f"p{i}", photo(i)) for i in range(6)])
    assert reads.calls == 0
    assert result.problem is not None and "5 photos at most; you sent 6" in result.problem.reason
