"""Astria refuses a paid create for lack of credit, under each reading of how it says so
(a 402 with a JSON body, or a 422 on a field): paid intake pauses at once with a plain
reason, the refused job waits with its credit held (no second refusal is asked for), and
everything goes on by itself once a balance reading covers it again."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.jobs import EventKind
from bot.jobs.delivery import WAITING_FOR_CREDIT
from bot.offline.emulator import EmulatorConfig
from bot.rules.credits import BudgetLimit, Refusal
from bot.store import PromptState
from tests.conftest import KEY
from tests.jobs.conftest import CHANNEL, GUILD, IMAGE_MC, Rig

PROMPT_CREATE = "POST /tunes/{tune_id}/prompts"


@pytest.fixture(params=[402, 422], ids=["402-json", "422-field"])
def emulator_config(request: pytest.FixtureRequest) -> EmulatorConfig:
    return EmulatorConfig(
        api_key=KEY, train_seconds=120, prompt_seconds=10, low_balance_status=request.param
    )


def refusals(rig: Rig) -> int:
    return sum(
        1
        for r in rig.emulator.requests
        if r.route == PROMPT_CREATE and r.status in (402, 422) and r.fault is None
    )


async def test_a_refusal_for_credit_pauses_paid_work_until_credit_is_back(
    rig: Rig, emulator_config: EmulatorConfig
):
    tune = await rig.ready_tune(owner=1)
    # Spent elsewhere: Astria has less than a prompt costs, while the bot's last reading
    # still says plenty.
    rig.emulator.balance_mc = IMAGE_MC
    first = await rig.prompt(1, tune, "sks man one")
    await rig.tracker.poll_once()

    assert refusals(rig) == 1
    held = await rig.store.prompts.get(first.id)
    assert held is not None and held.state == PromptState.QUEUED  # waits, not failed
    assert await rig.store.ledger.reservation(first.job) is not None  # credit still held
    known = await rig.store.account.last_known()
    assert known is not None and known.short
    waiting = [u for u in rig.delivery.progress_updates if u.job == str(first.job)]
    assert waiting and waiting[-1].state == WAITING_FOR_CREDIT
    assert not rig.delivery.ends(EventKind.FAILED)

    # The next paid command is refused at once, in words a member reads.
    refused = await rig.store.prompts.create(
        owner_id=1,
        guild_id=GUILD,
        channel_id=CHANNEL,
        tune_id=tune.id,
        user_text="sks man two",
        final_text="sks man two",
        num_images=2,
        price_mc=2 * IMAGE_MC,
        target_tune_id=tune.astria_id or 0,
    )
    assert isinstance(refused, Refusal) and refused.limit == BudgetLimit.ACCOUNT_SHORT
    words = refused.reason()
    assert "credit has run out" in words and "402" not in words and "422" not in words

    # Rounds and balance readings go by: nothing is sent to be refused again.
    for _ in range(3):
        await rig.step(rig.settings.balance_refresh_seconds)
    assert refusals(rig) == 1
    assert (await rig.store.prompts.get(first.id)).state == PromptState.QUEUED  # type: ignore[union-attr]

    # The owner tops up: the next reading resumes intake and the queue by itself.
    rig.emulator.balance_mc = 1_000_000

    async def delivered() -> bool:
        return bool(rig.delivery.ends(EventKind.DONE))

    await rig.run_until(delivered, step=30)
    assert refusals(rig) == 1
    known = await rig.store.account.last_known()
    assert known is not None and not known.short
    done = await rig.store.prompts.get(first.id)
    assert done is not None and done.astria_id is not None
    await rig.ledger_matches_charges()


async def test_a_reading_that_does_not_cover_the_refused_job_keeps_the_pause(rig: Rig):
    await rig.store.account.mark_short(5_000, at=rig.now())
    # A reading sent before the refusal says nothing about it.
    early = await rig.store.account.record_balance(10**9, read_at=rig.now() - timedelta(seconds=1))
    assert early.short
    rig.clock.advance(1)
    low = await rig.store.account.record_balance(4_999, read_at=rig.now())
    assert low.short and low.short_need_mc == 5_000
    rig.clock.advance(1)
    enough = await rig.store.account.record_balance(5_000, read_at=rig.now())
    assert not enough.short
