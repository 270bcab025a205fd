"""Settling ASTRIA_IDEMPOTENCY at start: the probe against the emulator over HTTP, its
result kept in the real SQLite store for a day, and a contradiction refused in one line."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.astria import AstriaClient
from bot.jobs.idempotency import (
    PROBE_MAX_AGE,
    IdempotencyContradiction,
    Stated,
    settle_idempotency,
)
from bot.offline.emulator import Emulator, Fault, ManualClock
from bot.store import IdempotencyProbe, Store
from tests.jobs.conftest import settings_for

TUNE_CREATE = "POST /tunes"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    settings = settings_for(database_path=tmp_path / "bot.sqlite3")
    store = await Store.open(settings.database_path, settings=settings)
    try:
        yield store
    finally:
        await store.close()


def at(clock: ManualClock) -> datetime:
    return datetime.fromtimestamp(clock.now(), UTC)


@pytest.mark.parametrize("on", [True, False], ids=["idem-on", "idem-off"])
async def test_auto_uses_what_the_probe_found_and_keeps_it_with_its_time(
    store: Store, client: AstriaClient, emulator: Emulator, clock: ManualClock, on: bool
):
    emulator.config.idempotency = on
    settled = await settle_idempotency("auto", store.meta, client, now=at(clock))
    assert settled.effective is on and settled.probe is not None
    assert await store.meta.idempotency_probe() == IdempotencyProbe(on, at(clock))
    assert emulator.our_tunes() == []  # no probe tune left behind


@pytest.mark.parametrize("on", [True, False], ids=["idem-on", "idem-off"])
async def test_a_stated_value_the_probe_confirms_is_used(
    store: Store, client: AstriaClient, emulator: Emulator, clock: ManualClock, on: bool
):
    emulator.config.idempotency = on
    settled = await settle_idempotency(on, store.meta, client, now=at(clock))
    assert settled.effective is on and settled.found is not None and settled.found.on is on


@pytest.mark.parametrize("on", [True, False], ids=["idem-on", "idem-off"])
async def test_a_contradiction_is_refused_in_one_line_naming_the_setting_and_the_fix(
    store: Store, client: AstriaClient, emulator: Emulator, clock: ManualClock, on: bool
):
    emulator.config.idempotency = on
    with pytest.raises(IdempotencyContradiction) as caught:
        await settle_idempotency(not on, store.meta, client, now=at(clock))
    text = str(caught.value)
    assert "\n" not in text
    assert f"ASTRIA_IDEMPOTENCY={str(not on).lower()}" in text
    assert f"idempotency is {'on' if on else 'off'}" in text
    assert f"ASTRIA_IDEMPOTENCY=auto or ASTRIA_IDEMPOTENCY={str(on).lower()}" in text
    assert emulator.our_tunes() == []


async def test_the_stored_result_is_reused_within_a_day_and_probed_again_after(
    store: Store, client: AstriaClient, emulator: Emulator, clock: ManualClock
):
    emulator.config.idempotency = True
    await settle_idempotency("auto", store.meta, client, now=at(clock))
    assert emulator.counters[TUNE_CREATE] == 2
    clock.advance(PROBE_MAX_AGE.total_seconds() - 60)
    again = await settle_idempotency("auto", store.meta, client, now=at(clock))
    assert again.probe is None and again.effective is True
    assert emulator.counters[TUNE_CREATE] == 2  # no second probe
    confirmed = await settle_idempotency(True, store.meta, client, now=at(clock))
    assert confirmed.probe is None and emulator.counters[TUNE_CREATE] == 2
    clock.advance(120)
    later = await settle_idempotency("auto", store.meta, client, now=at(clock))
    assert later.probe is not None and emulator.counters[TUNE_CREATE] == 4


async def test_a_stored_result_that_contradicts_the_setting_is_checked_again_first(
    store: Store, client: AstriaClient, emulator: Emulator, clock: ManualClock
):
    """The operator turned idempotency on at Astria and said so: the bot does not refuse on
    this morning's probe, it looks again."""
    await store.meta.record_idempotency_probe(False, at(clock) - timedelta(hours=1))
    emulator.config.idempotency = True
    settled = await settle_idempotency(True, store.meta, client, now=at(clock))
    assert settled.effective is True and settled.probe is not None
    assert emulator.counters[TUNE_CREATE] == 2
    assert await store.meta.idempotency_probe() == IdempotencyProbe(True, at(clock))


@pytest.mark.parametrize(
    ("stated", "stored", "effective"),
    [("auto", None, False), ("auto", True, True), (True, None, True), (False, None, False)],
)
async def test_when_the_probe_cannot_tell_the_last_finding_or_the_safe_reading_holds(
    store: Store,
    client: AstriaClient,
    emulator: Emulator,
    clock: ManualClock,
    stated: Stated,
    stored: bool | None,
    effective: bool,
):
    if stored is not None:
        await store.meta.record_idempotency_probe(stored, at(clock) - timedelta(days=3))
    emulator.faults.rate(Fault("http_500"), 1.0, TUNE_CREATE)
    settled = await settle_idempotency(stated, store.meta, client, now=at(clock))
    assert settled.probe is not None and settled.probe.on is None
    assert settled.effective is effective


async def test_an_old_finding_still_contradicts_when_the_probe_cannot_tell(
    store: Store, client: AstriaClient, emulator: Emulator, clock: ManualClock
):
    await store.meta.record_idempotency_probe(False, at(clock) - timedelta(days=3))
    emulator.faults.rate(Fault("http_500"), 1.0, TUNE_CREATE)
    with pytest.raises(IdempotencyContradiction) as caught:
        await settle_idempotency(True, store.meta, client, now=at(clock))
    assert "idempotency is off" in str(caught.value)


async def test_an_unreadable_stored_result_counts_as_none(store: Store):
    await store.meta.set("astria:idempotency-probe", "not json")
    assert await store.meta.idempotency_probe() is None
