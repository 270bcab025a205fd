"""The idempotency probe against the emulator over HTTP: the right answer under each
switch, nothing left at Astria, nothing paid, even when Astria loses an answer."""

from __future__ import annotations

import pytest

from bot.astria import AstriaClient
from bot.astria.probe import PROBE_BRANCH, probe_idempotency, probe_photos
from bot.offline.emulator import Emulator, Fault
from bot.offline.emulator.images import is_image
from tests.conftest import POLICY

TUNE_CREATE = "POST /tunes"
TUNE_DELETE = "DELETE /tunes/{id}"


@pytest.mark.parametrize("on", [True, False], ids=["idem-on", "idem-off"])
async def test_the_probe_sees_the_switch_and_leaves_no_tune(
    client: AstriaClient, emulator: Emulator, on: bool
):
    emulator.config.idempotency = on
    balance = emulator.balance_mc
    result = await probe_idempotency(client)
    assert result.on is on, result
    assert result.error is None and result.left_behind == ()
    assert len(result.tune_ids) == (1 if on else 2)
    assert emulator.counters[TUNE_CREATE] == 2
    assert emulator.counters[TUNE_DELETE] == len(result.tune_ids)
    assert emulator.our_tunes() == []  # the listing at the emulator has no probe tune
    assert emulator.tunes_with_title(result.title) == []
    assert emulator.balance_mc == balance and emulator.charges == []
    assert result.title.startswith("astria-bot idempotency probe ")


async def test_each_probe_uses_a_fresh_title(client: AstriaClient, emulator: Emulator):
    emulator.config.idempotency = True
    first = await probe_idempotency(client)
    second = await probe_idempotency(client)
    assert first.title != second.title and first.on is second.on is True


@pytest.mark.parametrize("on", [True, False], ids=["idem-on", "idem-off"])
@pytest.mark.parametrize("which", [1, 2], ids=["first-lost", "second-lost"])
async def test_a_lost_answer_still_gives_the_right_answer_and_no_leftover(
    client: AstriaClient, emulator: Emulator, on: bool, which: int
):
    """A 504 after the tune was made: the probe's client looks it up by title instead of
    posting blindly, so the answer and the clean-up hold."""
    emulator.config.idempotency = on
    if which == 2:
        emulator.faults.script(TUNE_CREATE, Fault("http_504"))  # refused: nothing made
        emulator.faults.script(TUNE_CREATE, Fault("http_504_after"))
    else:
        emulator.faults.script(TUNE_CREATE, Fault("http_504_after"))
    result = await probe_idempotency(client)
    assert result.on is on, result
    assert emulator.our_tunes() == [] and result.left_behind == ()


async def test_a_probe_astria_refuses_cannot_tell_and_makes_nothing(
    client: AstriaClient, emulator: Emulator
):
    emulator.faults.rate(Fault("http_500"), 1.0, TUNE_CREATE)
    result = await probe_idempotency(client)
    assert result.on is None and result.error and "500" in result.error
    assert "could not be probed" in result.describe()
    assert emulator.our_tunes() == [] and result.left_behind == ()


async def test_a_probe_cut_short_still_finds_its_tune_by_title_and_deletes_it(
    client: AstriaClient, emulator: Emulator
):
    """The first create's answer is lost and the lookups fail too: the probe gives up,
    then finds the tune it did make by its title and deletes it."""
    emulator.faults.script(TUNE_CREATE, Fault("http_500_after"))
    emulator.faults.script("GET /tunes", *[Fault("http_500")] * POLICY.max_attempts)
    result = await probe_idempotency(client)
    assert result.on is None and result.error
    assert emulator.counters[TUNE_CREATE] == 1
    assert len(result.tune_ids) == 1 and result.left_behind == ()
    assert emulator.our_tunes() == []


async def test_a_probe_that_cannot_list_its_tunes_says_some_may_remain(
    client: AstriaClient, emulator: Emulator
):
    emulator.faults.script(TUNE_CREATE, Fault("http_500_after"))
    emulator.faults.rate(Fault("http_500"), 1.0, "GET /tunes")
    result = await probe_idempotency(client)
    assert result.on is None and not result.listed
    assert result.title in result.describe() and "may remain" in result.describe()
    assert len(emulator.our_tunes()) == 1  # what the probe could not see, it says


async def test_a_tune_that_cannot_be_deleted_is_named(client: AstriaClient, emulator: Emulator):
    emulator.faults.rate(Fault("http_500"), 1.0, TUNE_DELETE)
    result = await probe_idempotency(client)
    assert result.on is False and len(result.left_behind) == 2
    assert set(result.left_behind) == {t["id"] for t in emulator.our_tunes()}
    text = result.describe()
    assert "not deleted" in text and all(str(i) in text for i in result.left_behind)


def test_probe_photos_are_small_valid_images_of_astrias_minimum_size():
    from io import BytesIO

    from PIL import Image

    photos = probe_photos()
    assert len(photos) >= 4 and all(is_image(p) for p in photos)
    for data in photos:
        with Image.open(BytesIO(data)) as image:
            assert image.size == (512, 512)
        assert len(data) < 20_000
    assert PROBE_BRANCH == "fast"
