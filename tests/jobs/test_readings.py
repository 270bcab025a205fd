"""Money under every reading of what Astria leaves undocumented about failed prompts:
whether a failed prompt still reports its cost, and whether the cost goes back to the
balance. Under each, with the operator's setting matching the account, the member's
budget pays nothing for the failed prompt and the ledger equals Astria's net charge."""

from __future__ import annotations

import pytest

from bot.jobs import EventKind
from bot.offline.emulator import EmulatorConfig
from bot.store import LedgerKind, PromptState
from tests.conftest import KEY
from tests.jobs.conftest import GUILD, IMAGE_MC, Rig

READINGS = [
    pytest.param(("zeroed", True), id="cost-zeroed-refunded"),
    pytest.param(("kept", True), id="cost-kept-refunded"),
    pytest.param(("kept", False), id="cost-kept-not-refunded"),
    pytest.param(("zeroed", False), id="cost-zeroed-not-refunded"),
]


@pytest.fixture(params=READINGS)
def emulator_config(request: pytest.FixtureRequest) -> EmulatorConfig:
    cost, refunded = request.param
    return EmulatorConfig(
        api_key=KEY,
        train_seconds=120,
        prompt_seconds=10,
        failed_prompt_cost=cost,
        refund_failed_prompts=refunded,
    )


async def test_a_failed_prompt_costs_the_member_nothing_under_every_reading(
    rig: Rig, emulator_config: EmulatorConfig
):
    refunds = emulator_config.refund_failed_prompts
    rig.tracker = rig.new_tracker(refunds_failed_prompts=refunds)
    tune = await rig.ready_tune(owner=1)
    spent_before = (await rig.store.ledger.budget(GUILD, 1)).user_month.used_mc
    ok = await rig.prompt(1, tune, "sks man on a beach")
    bad = await rig.prompt(1, tune, "sks man EMULATOR_FAIL")

    async def both_ended() -> bool:
        return bool(rig.delivery.ends(EventKind.FAILED)) and bool(rig.delivery.ends(EventKind.DONE))

    await rig.run_until(both_ended)
    failed = await rig.store.prompts.get(bad.id)
    assert failed is not None and failed.state == PromptState.FAILED
    member = (await rig.store.ledger.budget(GUILD, 1)).user_month.used_mc
    assert member - spent_before == 2 * IMAGE_MC  # the delivered prompt only
    server = (await rig.store.ledger.budget(GUILD, 1)).guild_month.used_mc
    assert server == member
    absorbed = [e for e in await rig.store.ledger.entries(job=bad.job) if e.guild_id == 0]
    assert [e.kind for e in absorbed] == ([] if refunds else [LedgerKind.ADJUST])
    await rig.ledger_matches_charges()
    assert ok.id != bad.id


async def test_an_operator_who_states_the_reading_wrongly_is_caught_by_the_ledger_check(
    rig: Rig, emulator_config: EmulatorConfig
):
    # The check above is not true by construction: told the other reading, the ledger
    # and Astria's charge part by the failed prompt's cost.
    if emulator_config.refund_failed_prompts:
        pytest.skip("the wrong statement is the one that books a kept cost")
    tune = await rig.ready_tune(owner=1)
    await rig.prompt(1, tune, "sks man EMULATOR_FAIL")

    async def ended() -> bool:
        return bool(rig.delivery.ends(EventKind.FAILED))

    await rig.run_until(ended)
    with pytest.raises(AssertionError, match="Astria charged"):
        await rig.ledger_matches_charges()


@pytest.mark.parametrize("stated_right", [True, False], ids=["stated-right", "stated-wrong"])
async def test_the_balance_tells_whether_the_refund_statement_is_true(
    rig: Rig, emulator_config: EmulatorConfig, stated_right: bool, caplog
):
    refunded = emulator_config.refund_failed_prompts
    rig.tracker = rig.new_tracker(refunds_failed_prompts=refunded == stated_right)
    tune = await rig.ready_tune(owner=1)
    await rig.prompt(1, tune, "sks man on a beach")
    await rig.prompt(1, tune, "sks man EMULATOR_FAIL")

    async def both_ended() -> bool:
        return bool(rig.delivery.ends(EventKind.FAILED)) and bool(rig.delivery.ends(EventKind.DONE))

    await rig.run_until(both_ended)
    await rig.step(rig.settings.balance_refresh_seconds, rounds=2)
    finding = await rig.store.meta.refund_finding()
    assert finding is not None
    assert finding.found == ("refunded" if refunded else "kept")
    assert finding.contradicts is not stated_right
    warned = [r for r in caplog.records if "ASTRIA_REFUNDS_FAILED_PROMPTS" in r.getMessage()]
    assert bool(warned) is not stated_right
