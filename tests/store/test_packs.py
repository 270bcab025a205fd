"""The pack-run store on SQLite and PostgreSQL: the run row with its one reservation and
its `pack_runs` row in one transaction, the tune's prompts seen before the POST, the
adoption (once, in one transaction, holds of 0), and which holds are still open."""

from __future__ import annotations

from bot.rules.credits import Refusal
from bot.store import MadePrompt, PromptRecord, PromptState, Store
from bot.store.jobstate import JobKind, JobRef
from tests.store.helpers import TUNE_MC
from tests.store.test_repositories import ALICE, HOME, make_tune


async def _run(store: Store, price: int = 90_001) -> PromptRecord:
    tune = await make_tune(store)
    created = await store.packs.create_run(
        owner_id=ALICE,
        guild_id=HOME,
        channel_id=55,
        tune_id=tune.id,
        astria_tune_id=2_000_001,
        pack_id=262,
        pack_title="Fantasy Worlds",
        num_images=6,
        price_mc=price,
    )
    assert isinstance(created, PromptRecord), created
    return created


async def test_a_run_is_one_reserved_prompt_row_and_its_pack_row(store: Store) -> None:
    run = await _run(store)
    assert run.state == PromptState.QUEUED and run.user_text == "Pack: Fantasy Worlds"
    held = await store.ledger.reservation(run.job)
    assert held is not None and held.amount_mc == 90_001
    pack = await store.packs.run(run.id)
    assert pack is not None and (pack.pack_id, pack.astria_tune_id) == (262, 2_000_001)
    assert pack.seen_ids is None and not pack.posted
    seen = await store.packs.set_seen(run.id, [30_000_003, 30_000_001])
    assert seen.seen_ids == frozenset({30_000_001, 30_000_003}) and seen.posted
    assert await store.packs.runs([run.id, 999]) == {run.id: seen}


async def test_a_refused_run_writes_nothing(store: Store) -> None:
    tune = await make_tune(store, name="other")
    await store.guilds.set_user_daily_limit(HOME, 1_000)
    refused = await store.packs.create_run(
        owner_id=ALICE,
        guild_id=HOME,
        channel_id=55,
        tune_id=tune.id,
        astria_tune_id=2_000_001,
        pack_id=262,
        pack_title="Fantasy Worlds",
        num_images=6,
        price_mc=90_001,
    )
    assert isinstance(refused, Refusal)
    assert await store.prompts.list_for(ALICE) == []


async def test_adoption_happens_once_with_holds_of_zero(store: Store) -> None:
    run = await _run(store)
    await store.prompts.transition(run.id, PromptState.QUEUED, PromptState.SUBMITTING)
    made = [MadePrompt(30_000_010 + n, f"ohwx woman {n}", n + 1, 30_000) for n in range(3)]
    items = await store.packs.adopt(run.id, made)
    assert [i.astria_id for i in items] == [30_000_010, 30_000_011, 30_000_012]
    assert [i.num_images for i in items] == [1, 2, 3]
    assert {i.state for i in items} == {PromptState.GENERATING}
    assert [i.cost_mc for i in items] == [30_000] * 3
    again = await store.packs.adopt(run.id, made[:1])
    assert [i.id for i in again] == [i.id for i in items]  # nothing written twice
    moved = await store.prompts.get(run.id)
    assert moved is not None and moved.state == PromptState.GENERATING
    for item in items:
        held = await store.ledger.reservation(item.job)
        assert held is not None and held.amount_mc == 0
        assert await store.packs.run_of(item.id) == run.id
    assert await store.packs.run_of(run.id) is None
    assert await store.packs.adopted_astria_ids(2_000_001) == frozenset(
        {30_000_010, 30_000_011, 30_000_012}
    )
    assert await store.packs.open_items(run.id) == 3
    await store.ledger.settle(items[0].job, 30_000)
    await store.ledger.release(items[1].job)
    assert await store.packs.open_items(run.id) == 1
    await store.ledger.settle(items[2].job, 30_000)
    assert await store.packs.open_items(run.id) == 0
    await store.ledger.release(JobRef(JobKind.PROMPT, run.id))
    spend = await store.ledger.budget(HOME, ALICE)
    assert spend.user_month.used_mc == TUNE_MC + 60_000  # the tune's hold, the two settles
