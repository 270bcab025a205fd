"""The bot's wall clock jumps (NTP stepping it, a VM resumed): forward must not mark running
jobs stuck, back must neither freeze polling nor under-count the account's exposure. The
rig moves the bot's wall clock alone; Astria's clock and the bot's monotonic one go on."""

from __future__ import annotations

from bot.jobs import EventKind
from bot.store import PromptState, TuneState
from tests.jobs.conftest import GUILD, Rig

HOURS = 3600.0


async def done(rig: Rig) -> bool:
    return bool(rig.delivery.ends(EventKind.DONE))


async def test_a_forward_jump_does_not_mark_running_jobs_stuck(rig: Rig) -> None:
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune)
    training = await rig.tune(owner=2, name="second")
    await rig.tracker.poll_once()  # both submitted
    rig.jump_wall(3 * HOURS)  # far past both stuck thresholds, by the wall clock
    await rig.run_until(lambda: done(rig), limit=40)
    await rig.run_until(lambda: _ready(rig, training.id), step=30, limit=40)
    assert rig.delivery.ends(EventKind.STUCK) == []
    current = await rig.store.prompts.get(prompt.id)
    assert current is not None and current.state == PromptState.DELIVERED
    await rig.ledger_matches_charges()


async def test_a_backward_jump_does_not_freeze_polling(rig: Rig) -> None:
    tune = await rig.ready_tune(owner=1)
    await rig.prompt(1, tune)
    await rig.tracker.poll_once()
    rig.jump_wall(-1 * HOURS)
    # Ten seconds of generation: found within a few rounds, not an hour later.
    rounds = await rig.run_until(lambda: done(rig), limit=10)
    assert rounds <= 4
    await rig.ledger_matches_charges()


async def test_a_backward_jump_does_not_under_count_the_accounts_exposure(rig: Rig) -> None:
    tune = await rig.ready_tune(owner=1)
    await rig.emulator.advance(1)  # the tune's settle is older than the reading
    assert await rig.tracker.read_balance()
    rig.jump_wall(-1 * HOURS)  # settles from now on are stamped before that reading
    for n in range(3):
        await rig.prompt(1, tune, f"sks man {n}")
    await rig.run_until(lambda: _all_done(rig, 3), limit=40)
    assert await rig.store.ledger.open_reservations() == []
    snapshot = await rig.store.ledger.budget(GUILD, 1)
    assert snapshot.account is not None
    # What the bot may still reserve never exceeds what Astria really has left.
    assert snapshot.account.remaining_mc <= rig.emulator.balance_mc, (
        snapshot.account,
        rig.emulator.balance_mc,
    )
    await rig.ledger_matches_charges()


async def _ready(rig: Rig, tune_id: int) -> bool:
    current = await rig.store.tunes.get(tune_id)
    return current is not None and current.state == TuneState.READY


async def _all_done(rig: Rig, count: int) -> bool:
    return len(rig.delivery.ends(EventKind.DONE)) == count
