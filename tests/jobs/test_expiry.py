"""Expiry on Astria's word: before a ready tune is reminded of or marked expired, it is
re-read at Astria. An account with auto-extend keeps its tunes past 30 days (the emulator's
`auto_extend` reading); the bot keeps such a tune ready with its new date, expires a tune
Astria has deleted, and changes nothing while Astria cannot answer."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest

from bot.jobs import EventKind
from bot.jobs.tracker import STORE_TRIES
from bot.offline.emulator import EmulatorConfig, Fault
from bot.store import LedgerKind, PromptState, TuneRecord, TuneState
from tests.conftest import KEY
from tests.jobs.conftest import GUILD, Rig
from tests.jobs.faults import StoreFaults

DAY = 86_400.0
EXTENSION_MC = 50_000
GET_TUNE = "GET /tunes/{id}"


@pytest.fixture
def emulator_config(request: pytest.FixtureRequest) -> EmulatorConfig:
    return EmulatorConfig(
        api_key=KEY,
        train_seconds=120,
        prompt_seconds=10,
        foreign_prompts=0,
        auto_extend=getattr(request, "param", False),
        auto_extend_price_mc=EXTENSION_MC,
    )


# The emulated account auto-extends its tunes (the other tests: it does not).
AUTO_EXTEND = pytest.mark.parametrize("emulator_config", [True], indirect=True, ids=["auto"])


async def stored(rig: Rig, tune: TuneRecord) -> TuneRecord:
    current = await rig.store.tunes.get(tune.id)
    assert current is not None
    return current


async def to_moment(rig: Rig, moment: datetime) -> None:
    """Advance the shared clock to `moment`, then one tracker round."""
    await rig.step((moment - rig.now()).total_seconds())


def extension_charges(rig: Rig) -> int:
    return sum(c.cost_mc for c in rig.emulator.charges if c.kind == "extension")


async def extensions_booked_for_the_operator(rig: Rig) -> int:
    """What the ledger books as the operator's cost for storage extensions."""
    return sum(
        e.amount_mc
        for e in await rig.store.ledger.entries()
        if e.kind == LedgerKind.ADJUST and e.guild_id == 0 and "auto-extend" in (e.note or "")
    )


@AUTO_EXTEND
async def test_an_auto_extended_tune_stays_ready_with_its_new_date(
    rig: Rig, caplog: pytest.LogCaptureFixture
):
    tune = await rig.ready_tune(owner=1)
    first = (await stored(rig, tune)).expires_at
    assert first is not None
    reads = rig.emulator.counters[GET_TUNE]
    await to_moment(rig, first - timedelta(days=2))
    # The account keeps its tunes: no member is told it will be deleted, and Astria is
    # not asked before the date.
    assert not rig.delivery.ends(EventKind.EXPIRY_SOON)
    assert rig.emulator.counters[GET_TUNE] == reads
    caplog.set_level(logging.INFO)
    await to_moment(rig, first + timedelta(seconds=1))
    assert rig.emulator.counters[GET_TUNE] > reads  # asked Astria before expiring
    kept = await stored(rig, tune)
    assert kept.state == TuneState.READY
    assert kept.expires_at == first + timedelta(days=30)
    assert not rig.delivery.ends(EventKind.EXPIRED)
    assert extension_charges(rig) == EXTENSION_MC
    # Astria's extension fee is not read as spend the bot cannot account for.
    assert not [r for r in caplog.records if "balance moved" in r.getMessage()]
    # Members can still prompt it, and later rounds do not ask Astria again before the
    # new date.
    prompt = await rig.prompt(1, kept, "sks man after a month")

    async def done() -> bool:
        current = await rig.store.prompts.get(prompt.id)
        return current is not None and current.state == PromptState.DELIVERED

    await rig.run_until(done)
    reads = rig.emulator.counters[GET_TUNE]
    await rig.step(3600, rounds=3)
    assert rig.emulator.counters[GET_TUNE] == reads
    assert (await stored(rig, tune)).state == TuneState.READY
    # The extension is the operator's cost: in the ledger, on no member's budget.
    assert await extensions_booked_for_the_operator(rig) == EXTENSION_MC
    member_side = [e for e in await rig.store.ledger.entries() if e.guild_id == GUILD]
    assert not [e for e in member_side if e.kind == LedgerKind.ADJUST]
    await rig.ledger_matches_charges()


async def test_a_tune_astria_deleted_is_expired_with_one_notice(rig: Rig):
    tune = await rig.ready_tune(owner=1)
    expires = (await stored(rig, tune)).expires_at
    assert expires is not None
    await to_moment(rig, expires - timedelta(days=2))
    (reminder,) = rig.delivery.ends(EventKind.EXPIRY_SOON)
    assert reminder.message == f"Astria deletes it on {expires:%Y-%m-%d %H:%M} UTC"
    reads = rig.emulator.counters[GET_TUNE]
    await to_moment(rig, expires + timedelta(seconds=1))
    assert rig.emulator.counters[GET_TUNE] == reads + 1  # the 404 that confirms it
    assert (await stored(rig, tune)).state == TuneState.EXPIRED
    await rig.step(DAY, rounds=2)
    assert rig.delivery.keys(f"tune:{tune.id}") == {
        f"tune:{tune.id}:ready": 1,
        f"tune:{tune.id}:expiry-soon": 1,
        f"tune:{tune.id}:expired": 1,
    }
    assert extension_charges(rig) == 0
    await rig.ledger_matches_charges()


@pytest.mark.parametrize(
    "fault",
    [Fault("http_502"), Fault("http_429", retry_after=1.0), Fault("drop")],
    ids=["5xx", "429", "dropped"],
)
async def test_astria_not_answering_keeps_the_tune_until_the_next_round(rig: Rig, fault: Fault):
    tune = await rig.ready_tune(owner=1)
    expires = (await stored(rig, tune)).expires_at
    assert expires is not None
    await to_moment(rig, expires - timedelta(days=2))
    rig.emulator.faults.rate(fault, 1.0, GET_TUNE)
    await to_moment(rig, expires + timedelta(seconds=1))
    await rig.step(5)
    assert (await stored(rig, tune)).state == TuneState.READY
    assert not rig.delivery.ends(EventKind.EXPIRED)
    # Astria answers again: its 404 expires the tune, with the member told once.
    rig.emulator.faults.clear()
    await rig.step(5)
    assert (await stored(rig, tune)).state == TuneState.EXPIRED
    assert rig.delivery.keys(f"tune:{tune.id}:expired") == {f"tune:{tune.id}:expired": 1}


@AUTO_EXTEND
async def test_astria_not_answering_then_extending_keeps_the_tune(rig: Rig):
    tune = await rig.ready_tune(owner=1)
    expires = (await stored(rig, tune)).expires_at
    assert expires is not None
    rig.emulator.faults.rate(Fault("http_500"), 1.0, GET_TUNE)
    await to_moment(rig, expires + timedelta(seconds=1))
    assert (await stored(rig, tune)).expires_at == expires  # unknown yet: nothing changed
    rig.emulator.faults.clear()
    await rig.step(5)
    kept = await stored(rig, tune)
    assert kept.state == TuneState.READY and kept.expires_at == expires + timedelta(days=30)
    assert not rig.delivery.ends(EventKind.EXPIRED)


async def test_the_reminder_uses_the_date_astria_gives(rig: Rig):
    """Astria moved the date before the reminder (auto-extend switched on for this
    tune at Astria): no reminder for the old date, one for the new."""
    tune = await rig.ready_tune(owner=1)
    old = (await stored(rig, tune)).expires_at
    assert old is not None and tune.astria_id is not None
    new = old + timedelta(days=30)
    rig.emulator.account.tunes[tune.astria_id].extended_to = new.timestamp()
    await to_moment(rig, old - timedelta(days=2))
    assert not rig.delivery.ends(EventKind.EXPIRY_SOON)
    assert (await stored(rig, tune)).expires_at == new
    await to_moment(rig, old + timedelta(days=1))
    assert (await stored(rig, tune)).state == TuneState.READY
    await to_moment(rig, new - timedelta(days=2))
    (reminder,) = rig.delivery.ends(EventKind.EXPIRY_SOON)
    assert reminder.message == f"Astria deletes it on {new:%Y-%m-%d %H:%M} UTC"
    await to_moment(rig, new + timedelta(seconds=1))
    assert (await stored(rig, tune)).state == TuneState.EXPIRED
    assert len(rig.delivery.ends(EventKind.EXPIRED)) == 1


@AUTO_EXTEND
@pytest.mark.parametrize("method", ["tunes.renew_expiry", "ledger.absorb"])
async def test_an_extension_whose_write_fails_for_good_is_booked_once_next_round(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, method: str
):
    """The expiry step's writes fail for good once (issue 13): the next round does it
    again, the tune stays ready with its new date, and the fee is booked once."""
    tune = await rig.ready_tune(owner=1)
    first = (await stored(rig, tune)).expires_at
    assert first is not None
    faults = StoreFaults(rig.store, monkeypatch)
    # The first call at or after the expiry date (the reminder came before it).
    await to_moment(rig, first - timedelta(days=2))
    faults.fail(method, times=STORE_TRIES)
    await to_moment(rig, first + timedelta(seconds=1))
    assert faults.raised[method] == STORE_TRIES
    await rig.step(60, rounds=2)
    kept = await stored(rig, tune)
    assert kept.state == TuneState.READY
    assert kept.expires_at == first + timedelta(days=30)
    assert await extensions_booked_for_the_operator(rig) == EXTENSION_MC == extension_charges(rig)
    await rig.ledger_matches_charges()
