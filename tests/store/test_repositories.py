"""Tunes, prompts and guild settings: typed records, state rules, and ownership isolation
(a query for one member never returns another member's tune or prompt)."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.rules.prompts import PromptOptions
from bot.store import (
    BudgetLimit,
    InvalidTransition,
    JobKind,
    JobRef,
    LedgerKind,
    NameTaken,
    NotFound,
    PromptRecord,
    PromptState,
    Refusal,
    Store,
    StoreError,
    TuneRecord,
    TuneState,
    TuneUnavailable,
)
from tests.store.helpers import IMAGE_MC, TUNE_MC, ManualClock, Stores, open_store

ALICE, BOB = 101, 202
HOME, AWAY = 1, 2


async def make_tune(store: Store, owner: int = ALICE, name: str = "me", **over: Any) -> TuneRecord:
    values: dict[str, Any] = {
        "owner_id": owner,
        "guild_id": HOME,
        "channel_id": 55,
        "name": name,
        "subject_class": "woman",
        "profile": "flux-lora",
        "branch": "flux1",
        "photo_paths": ["/photos/a.jpg", "/photos/b.jpg"],
        "price_mc": TUNE_MC,
    }
    values.update(over)
    created = await store.tunes.create(**values)
    assert isinstance(created, TuneRecord)
    return created


async def make_prompt(
    store: Store, tune: TuneRecord, owner: int = ALICE, guild: int = HOME, **over: Any
) -> PromptRecord:
    values: dict[str, Any] = {
        "owner_id": owner,
        "guild_id": guild,
        "channel_id": 55,
        "tune_id": tune.id,
        "user_text": "on a beach",
        "final_text": "<lora:1:1> ohwx woman on a beach",
        "num_images": 4,
        "price_mc": 4 * IMAGE_MC,
        "target_tune_id": 1504944,
    }
    values.update(over)
    created = await store.prompts.create(**values)
    assert isinstance(created, PromptRecord)
    return created


# --- tunes -------------------------------------------------------------------------------


async def test_a_new_tune_is_queued_with_a_fresh_uuid_title_and_its_reservation(store: Store):
    tune = await make_tune(store)
    other = await make_tune(store, name="me too")
    assert tune.state is TuneState.QUEUED and tune.owner_id == ALICE
    assert uuid.UUID(tune.title) and tune.title != other.title
    assert tune.photo_paths == ("/photos/a.jpg", "/photos/b.jpg")
    reservation = await store.ledger.reservation(tune.job)
    assert reservation is not None and reservation.amount_mc == TUNE_MC
    assert await store.tunes.by_title(tune.title) == tune


async def test_a_refused_tune_leaves_no_row_and_no_reservation(stores: Stores):
    store = await stores.open(user_daily_limit_mc=TUNE_MC)
    await make_tune(store)
    refused = await store.tunes.create(
        owner_id=ALICE,
        guild_id=HOME,
        channel_id=1,
        name="second",
        subject_class="man",
        profile="flux-lora",
        branch="flux1",
        photo_paths=[],
        price_mc=TUNE_MC,
    )
    assert isinstance(refused, Refusal) and refused.limit is BudgetLimit.USER_DAY
    assert [t.name for t in await store.tunes.list_for(ALICE)] == ["me"]
    assert len(await store.ledger.entries()) == 1


async def test_names_are_unique_per_owner_until_the_tune_is_gone(store: Store):
    tune = await make_tune(store, name="Holiday  Me")
    with pytest.raises(NameTaken):
        await make_tune(store, name="holiday me")
    await make_tune(store, owner=BOB, name="Holiday Me")  # another owner may use it
    await store.tunes.set_state(tune.id, TuneState.CANCELLED)
    again = await make_tune(store, name="holiday me")
    assert await store.tunes.by_name(ALICE, "HOLIDAY ME") == again


async def test_tune_states_follow_the_allowed_steps(store: Store):
    tune = await make_tune(store)
    for state in (TuneState.SUBMITTING, TuneState.TRAINING, TuneState.STUCK, TuneState.READY):
        tune = await store.tunes.set_state(tune.id, state)
    assert tune.state is TuneState.READY
    assert (await store.tunes.set_state(tune.id, TuneState.READY)).state is TuneState.READY
    with pytest.raises(InvalidTransition, match="ready and cannot become training"):
        await store.tunes.set_state(tune.id, TuneState.TRAINING)
    failed = await store.tunes.set_state(
        (await make_tune(store, name="x")).id, TuneState.FAILED, error="422: too few photos"
    )
    assert failed.error == "422: too few photos"
    with pytest.raises(NotFound):
        await store.tunes.set_state(9999, TuneState.READY)


async def test_tune_records_astria_progress_messages_and_photos(store: Store):
    tune = await make_tune(store)
    eta = tune.created_at + timedelta(minutes=20)
    tune = await store.tunes.set_astria_id(tune.id, 5005)
    assert (await store.tunes.set_astria_id(tune.id, 5005)).astria_id == 5005  # a repeat is fine
    with pytest.raises(StoreError, match="already Astria tune 5005"):
        await store.tunes.set_astria_id(tune.id, 6006)
    await store.tunes.set_progress(tune.id, eta=eta)
    tune = await store.tunes.set_progress(tune.id, trained_at=eta, expires_at=eta + timedelta(30))
    assert (tune.eta, tune.trained_at) == (eta, eta)
    tune = await store.tunes.set_status_message(tune.id, 77, 88)
    assert (tune.status_channel_id, tune.status_message_id) == (77, 88)
    assert await store.tunes.clear_photos(tune.id) == ("/photos/a.jpg", "/photos/b.jpg")
    assert (await store.tunes.get(tune.id)).photo_paths == ()  # type: ignore[union-attr]
    assert await store.tunes.by_astria_id(5005) == await store.tunes.get(tune.id)


async def test_unfinished_tunes_are_the_trackers_in_order(store: Store):
    a = await make_tune(store, name="a")
    b = await make_tune(store, name="b")
    c = await make_tune(store, name="c")
    await store.tunes.set_state(b.id, TuneState.CANCELLED)
    await store.tunes.set_state(c.id, TuneState.SUBMITTING)
    assert [t.id for t in await store.tunes.unfinished()] == [a.id, c.id]


# --- prompts -----------------------------------------------------------------------------


async def test_a_prompt_gets_a_random_seed_unless_the_member_gave_one(store: Store):
    tune = await make_tune(store)
    options = PromptOptions(aspect_ratio="16:9", negative_prompt="blur")
    drawn = await make_prompt(store, tune, options=options, target_tune_id=1504944)
    chosen = await make_prompt(store, tune, seed=42)
    assert not drawn.seed_from_user and drawn.seed > 0
    assert chosen.seed == 42 and chosen.seed_from_user
    assert drawn.options == options and drawn.target_tune_id == 1504944
    assert drawn.state is PromptState.QUEUED
    assert (await store.ledger.reservation(drawn.job)).amount_mc == 4 * IMAGE_MC  # type: ignore[union-attr]


async def test_a_prompt_records_its_life_at_astria_and_in_discord(store: Store):
    tune = await make_tune(store)
    prompt = await make_prompt(store, tune)
    for state in (PromptState.SUBMITTING, PromptState.GENERATING):
        prompt = await store.prompts.set_state(prompt.id, state)
    await store.prompts.set_astria_id(prompt.id, 9001)
    await store.prompts.set_images(prompt.id, ["https://x/1.jpg", "https://x/2.jpg"])
    await store.prompts.set_cost(prompt.id, 11_000)
    await store.prompts.set_delivery_nonce(prompt.id, "job:9:done")
    await store.prompts.set_delivery_nonce(prompt.id, "job:9:done")  # the same again is fine
    with pytest.raises(StoreError, match="another delivery nonce"):
        await store.prompts.set_delivery_nonce(prompt.id, "other")
    await store.prompts.set_status_message(prompt.id, 55, 66)
    await store.prompts.set_result_messages(prompt.id, [67, 68])
    prompt = await store.prompts.set_state(prompt.id, PromptState.DELIVERED)
    assert prompt.image_urls == ("https://x/1.jpg", "https://x/2.jpg")
    assert (prompt.astria_id, prompt.cost_mc, prompt.delivery_nonce) == (9001, 11_000, "job:9:done")
    assert prompt.result_message_ids == (67, 68) and prompt.status_message_id == 66
    with pytest.raises(InvalidTransition):
        await store.prompts.set_state(prompt.id, PromptState.FAILED)
    failed = await make_prompt(store, tune)
    failed = await store.prompts.set_state(failed.id, PromptState.FAILED, error="NSFW")
    assert failed.error == "NSFW"
    assert await store.prompts.set_error(failed.id, "later note") != failed


async def test_several_jobs_may_claim_one_astria_prompt(store: Store):
    tune = await make_tune(store)
    first = await make_prompt(store, tune, seed=7)
    second = await make_prompt(store, tune, seed=7)
    await store.prompts.set_astria_id(first.id, 31)
    await store.prompts.set_astria_id(second.id, 31)
    assert [p.id for p in await store.prompts.by_astria_id(31)] == [first.id, second.id]


async def test_a_refused_prompt_leaves_no_row(stores: Stores):
    store = await stores.open(user_daily_limit_mc=TUNE_MC + IMAGE_MC)
    tune = await make_tune(store)
    refused = await store.prompts.create(
        owner_id=ALICE,
        guild_id=HOME,
        channel_id=1,
        tune_id=tune.id,
        user_text="x",
        final_text="x",
        num_images=2,
        price_mc=2 * IMAGE_MC,
        target_tune_id=1504944,
    )
    assert isinstance(refused, Refusal) and refused.shortfall_mc == IMAGE_MC
    assert await store.prompts.list_for(ALICE) == []
    assert [e.job for e in await store.ledger.entries()] == [JobRef(JobKind.TUNE, tune.id)]


async def test_unfinished_prompts_are_the_trackers_in_order(store: Store):
    tune = await make_tune(store)
    a, b, c = [await make_prompt(store, tune) for _ in range(3)]
    await store.prompts.set_state(b.id, PromptState.CANCELLED)
    await store.prompts.set_state(c.id, PromptState.SUBMITTING)
    assert [p.id for p in await store.prompts.unfinished()] == [a.id, c.id]


# --- ownership ---------------------------------------------------------------------------


async def test_a_member_cannot_see_or_prompt_with_another_members_tune(store: Store):
    alices = await make_tune(store)
    assert await store.tunes.get_owned(BOB, alices.id) is None
    assert await store.tunes.get_usable(BOB, HOME, alices.id) is None
    assert await store.tunes.list_for(BOB) == []
    assert await store.tunes.list_usable(BOB, HOME) == []
    with pytest.raises(NotFound):
        await make_prompt(store, alices, owner=BOB)
    assert await store.prompts.list_for(BOB) == []


async def test_a_shared_tune_is_usable_in_its_own_guild_only(store: Store):
    alices = await store.tunes.set_shared((await make_tune(store)).id, True)
    assert await store.tunes.get_usable(BOB, HOME, alices.id) == alices
    assert await store.tunes.get_usable(BOB, AWAY, alices.id) is None
    assert await store.tunes.list_usable(BOB, HOME) == [alices]
    assert await store.tunes.list_usable(BOB, AWAY) == []
    assert await store.tunes.get_owned(BOB, alices.id) is None  # shared is not owned
    bobs_prompt = await make_prompt(store, alices, owner=BOB)
    with pytest.raises(NotFound):
        await make_prompt(store, alices, owner=BOB, guild=AWAY)
    # Alice owns the tune, not Bob's prompt with it.
    assert await store.prompts.get_owned(ALICE, bobs_prompt.id) is None
    assert await store.prompts.list_for(ALICE) == []
    assert await store.prompts.get_owned(BOB, bobs_prompt.id) == bobs_prompt


async def test_a_gone_tune_takes_no_prompts(store: Store):
    tune = await make_tune(store)
    for state in (TuneState.SUBMITTING, TuneState.TRAINING, TuneState.READY, TuneState.DELETED):
        await store.tunes.set_state(tune.id, state)
    with pytest.raises(TuneUnavailable, match="is deleted"):
        await make_prompt(store, tune)


async def test_admins_reach_only_their_own_servers_jobs(store: Store):
    tune = await make_tune(store)
    prompt = await make_prompt(store, tune)
    assert await store.tunes.get_in_guild(HOME, tune.id) == tune
    assert await store.tunes.get_in_guild(AWAY, tune.id) is None
    assert await store.prompts.get_in_guild(AWAY, prompt.id) is None


owners = st.sampled_from([1, 2, 3])
guilds = st.sampled_from([10, 20])
tune_specs = st.lists(st.tuples(owners, guilds, st.booleans()), min_size=1, max_size=8)
prompt_specs = st.lists(st.tuples(owners, guilds, st.integers(0, 7)), max_size=10)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tunes=tune_specs, prompts=prompt_specs)
def test_ownership_queries_never_return_another_members_rows(
    tunes: list[tuple[int, int, bool]], prompts: list[tuple[int, int, int]]
):
    async def scenario(path: Path) -> None:
        store = await open_store(path)
        try:
            made: list[TuneRecord] = []
            for n, (owner, guild, shared) in enumerate(tunes):
                tune = await make_tune(store, owner=owner, name=f"t{n}", guild_id=guild)
                made.append(await store.tunes.set_shared(tune.id, shared))
            for owner, guild, pick in prompts:
                tune = made[pick % len(made)]
                usable = tune.owner_id == owner or (tune.shared and tune.guild_id == guild)
                if usable:
                    await make_prompt(store, tune, owner=owner, guild=guild)
                else:
                    with pytest.raises(NotFound):
                        await make_prompt(store, tune, owner=owner, guild=guild)
            for user in (1, 2, 3):
                assert {t.owner_id for t in await store.tunes.list_for(user)} <= {user}
                assert {p.owner_id for p in await store.prompts.list_for(user, limit=100)} <= {user}
                for guild in (10, 20):
                    for t in await store.tunes.list_usable(user, guild):
                        assert t.owner_id == user or (t.shared and t.guild_id == guild)
                for t in made:
                    assert (await store.tunes.get_owned(user, t.id) is not None) == (
                        t.owner_id == user
                    )
        finally:
            await store.close()

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(scenario(Path(folder) / "bot.sqlite3"))


# --- guild settings ----------------------------------------------------------------------


async def test_guild_settings_default_to_the_operators_and_can_be_reset(stores: Stores):
    store = await stores.open(
        guild_monthly_budget_mc=2_000_000,
        user_daily_limit_mc=200_000,
        user_monthly_limit_mc=1_000_000,
    )
    fresh = await store.guilds.get(HOME)
    assert (fresh.monthly_budget_mc, fresh.user_daily_limit_mc) == (2_000_000, 200_000)
    assert fresh.user_monthly_limit_mc == 1_000_000 and not fresh.paused
    assert fresh.allows_channel(5) and fresh.allows_roles(set())
    changed = await store.guilds.set_monthly_budget(HOME, 500_000)
    changed = await store.guilds.set_user_daily_limit(HOME, 50_000)
    changed = await store.guilds.set_user_monthly_limit(HOME, 70_000)
    assert (changed.monthly_budget_mc, changed.user_daily_limit_mc) == (500_000, 50_000)
    assert changed.user_monthly_limit_mc == 70_000
    assert (await store.ledger.budget(HOME, ALICE)).user_day.allowance_mc == 50_000
    reset = await store.guilds.set_monthly_budget(HOME, None)
    assert reset.monthly_budget_mc == 2_000_000 and reset.user_daily_limit_mc == 50_000
    assert (await store.guilds.get(AWAY)).user_daily_limit_mc == 200_000
    with pytest.raises(ValueError, match="negative"):
        await store.guilds.set_user_daily_limit(HOME, -1)


async def test_guild_pause_channels_roles_and_bans(store: Store):
    await store.guilds.set_paused(HOME, True)
    await store.guilds.allow_channel(HOME, 11)
    await store.guilds.allow_channel(HOME, 12)
    await store.guilds.allow_channel(HOME, 12)  # twice is once
    await store.guilds.allow_role(HOME, 21)
    await store.guilds.ban(HOME, BOB, actor_id=ALICE, reason="spam")
    home = await store.guilds.get(HOME)
    assert home.paused and home.allowed_channel_ids == {11, 12}
    assert home.allows_channel(11) and not home.allows_channel(13)
    assert home.allows_roles({21, 99}) and not home.allows_roles({99})
    assert home.banned_user_ids == {BOB} and await store.guilds.is_banned(HOME, BOB)
    assert not await store.guilds.is_banned(AWAY, BOB)
    await store.guilds.disallow_channel(HOME, 11)
    await store.guilds.disallow_role(HOME, 21)
    home = await store.guilds.unban(HOME, BOB)
    home = await store.guilds.set_paused(HOME, False)
    assert not home.paused and home.allowed_channel_ids == {12}
    assert home.allowed_role_ids == frozenset() and home.banned_user_ids == frozenset()


async def test_reservation_rows_name_the_member_as_actor(store: Store):
    tune = await make_tune(store)
    (entry,) = await store.ledger.entries(job=tune.job)
    assert entry.kind is LedgerKind.RESERVE and entry.actor_id == ALICE
    assert entry.user_id == ALICE and entry.guild_id == HOME


async def test_records_carry_the_stores_clock(stores: Stores):
    clock = ManualClock()
    store = await stores.open(clock=clock)
    tune = await make_tune(store)
    assert tune.created_at == clock.now
    clock.advance(hours=1)
    later = await store.tunes.set_state(tune.id, TuneState.SUBMITTING)
    assert later.updated_at == clock.now and later.created_at == tune.created_at
