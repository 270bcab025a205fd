"""Leases on unfinished jobs (bot/store/leases.py), two stores on one database standing in
for two processes: claims, renewals, releases, and a lapsed lease taken over."""

from __future__ import annotations

from bot.store import JobKind, JobRef, PromptState, Store, TuneState
from tests.store.helpers import ManualClock, Stores
from tests.store.test_repositories import make_prompt, make_tune

LEASE = 30.0


async def two(stores: Stores, clock: ManualClock) -> tuple[Store, Store]:
    first = await stores.open(clock=clock)
    second = await stores.open(clock=clock)  # the same database, its own connections
    return first, second


async def test_a_due_job_is_claimed_once_tunes_first_then_oldest(stores: Stores):
    clock = ManualClock()
    a, b = await two(stores, clock)
    tune = await make_tune(a)
    first = await make_prompt(a, tune)
    prompts = [await make_prompt(a, tune, channel_id=56) for _ in range(2)]  # another channel
    assert await a.leases.claim_due("a", 2, LEASE) == [tune.job, first.job]
    assert await b.leases.claim_due("b", 10, LEASE) == [prompts[0].job, prompts[1].job]
    assert await a.leases.claim_due("a", 10, LEASE) == []
    holders = await b.leases.holders()
    assert holders == {tune.job: "a", first.job: "a", **{p.job: "b" for p in prompts}}


async def test_a_channel_is_worked_by_one_holder_until_its_leases_run_out(stores: Stores):
    """Each channel's reports go out from one process, in order: a new job in a channel
    another holder is working waits for that holder, whichever kind either job is."""
    clock = ManualClock()
    a, b = await two(stores, clock)
    tune = await make_tune(a)  # channel 55
    assert await a.leases.claim_due("a", 10, LEASE) == [tune.job]
    here = await make_prompt(a, tune)  # channel 55 too: a's
    there = await make_prompt(a, tune, channel_id=77)
    assert await b.leases.claim_due("b", 10, LEASE) == [there.job]
    assert await a.leases.claim_due("a", 10, LEASE) == [here.job]
    await a.leases.release("a", [tune.job])
    later = await make_prompt(a, tune)
    assert await b.leases.claim_due("b", 10, LEASE) == []  # a still holds `here` there
    clock.advance(seconds=LEASE)  # a died: its channel is free again (b's own lease lapsed too)
    claimed = await b.leases.claim_due("b", 10, LEASE)
    assert claimed == [tune.job, here.job, there.job, later.job]
    assert set((await a.leases.holders()).values()) == {"b"}


async def test_a_lapsed_lease_is_taken_over_and_its_old_holder_loses_it(stores: Stores):
    clock = ManualClock()
    a, b = await two(stores, clock)
    tune = await make_tune(a)
    assert await a.leases.claim_due("a", 10, LEASE) == [tune.job]
    clock.advance(seconds=LEASE - 1)
    assert await b.leases.claim_due("b", 10, LEASE) == []  # still a's
    assert await a.leases.renew("a", [tune.job], LEASE) == {tune.job}
    clock.advance(seconds=LEASE - 1)
    assert await b.leases.claim_due("b", 10, LEASE) == []  # renewed: a's for 30 s more
    clock.advance(seconds=1)  # a stopped renewing (it died): the lease runs out
    assert await b.leases.claim_due("b", 10, LEASE) == [tune.job]
    assert await a.leases.renew("a", [tune.job], LEASE) == set()  # a must let it go
    await a.leases.release("a", [tune.job])  # and its release leaves b's lease alone
    assert await a.leases.holders() == {tune.job: "b"}


async def test_a_released_job_is_claimed_again_and_a_finished_one_never(stores: Stores):
    clock = ManualClock()
    a, b = await two(stores, clock)
    tune = await make_tune(a)
    prompt = await make_prompt(a, tune)
    assert set(await a.leases.claim_due("a", 10, LEASE)) == {tune.job, prompt.job}
    await a.leases.release("a", [tune.job, prompt.job])
    await a.prompts.set_state(prompt.id, PromptState.CANCELLED)
    assert await b.leases.claim_due("b", 10, LEASE) == [tune.job]
    await b.tunes.set_state(tune.id, TuneState.CANCELLED)
    clock.advance(seconds=10 * LEASE)
    assert await a.leases.claim_due("a", 10, LEASE) == []
    assert await a.leases.holders() == {tune.job: "b"}  # as it was left: no one claims it


async def test_a_finished_job_with_an_event_to_report_is_due_until_it_is_reported(
    stores: Stores,
):
    clock = ManualClock()
    a, b = await two(stores, clock)
    prompt = await make_prompt(a, await make_tune(a))
    await a.tunes.set_state(1, TuneState.CANCELLED)
    await a.prompts.set_state(prompt.id, PromptState.CANCELLED)
    await a.events.record(key=f"{prompt.job}:cancelled", job=str(prompt.job), kind="x", payload={})
    await a.events.record(key="prompt:77:x", job="prompt:77", kind="x", payload={})  # no job
    assert await a.leases.claim_due("a", 10, LEASE) == [prompt.job]  # a reports it
    clock.advance(seconds=LEASE)  # a died before reporting: b reports it
    assert await b.leases.claim_due("b", 10, LEASE) == [prompt.job]
    await b.events.mark_reported(f"{prompt.job}:cancelled", "posted")
    clock.advance(seconds=LEASE)
    assert await a.leases.claim_due("a", 10, LEASE) == []


async def test_a_restart_under_the_same_id_takes_its_own_jobs_back_at_once(stores: Stores):
    clock = ManualClock()
    a, b = await two(stores, clock)
    tune = await make_tune(a)
    assert await a.leases.claim_due("a", 10, LEASE) == [tune.job]
    assert await b.leases.claim_due("a", 10, LEASE) == []  # a's lease is not due
    assert await b.leases.claim_due("a", 10, LEASE, own=True) == [tune.job]
    assert await b.leases.claim_due("b", 10, LEASE, own=True) == []


async def test_renewing_and_releasing_nothing_is_harmless(store: Store):
    assert await store.leases.renew("a", [], LEASE) == set()
    await store.leases.release("a", [])
    assert await store.leases.claim_due("a", 0, LEASE) == []
    missing = JobRef.parse("prompt:999")
    assert await store.leases.renew("a", [missing], LEASE) == set()


async def test_the_list_turn_goes_to_one_holder_an_interval_and_snapshots_to_the_holder(
    stores: Stores,
):
    """Shared polling (issue 17): one process a poll interval lists for everyone; what it
    saw of another holder's job reaches that holder once, and no one else."""
    clock = ManualClock()
    a, b = await two(stores, clock)
    tune = await make_tune(a)
    mine = await make_prompt(a, tune)
    theirs = await make_prompt(a, tune, channel_id=77)
    for prompt, astria_id in ((mine, 900), (theirs, 901)):
        await a.prompts.set_state(prompt.id, PromptState.SUBMITTING)
        await a.prompts.set_astria_id(prompt.id, astria_id)
        await a.prompts.set_state(prompt.id, PromptState.GENERATING)
    assert await a.leases.claim_due("a", 2, LEASE) == [tune.job, mine.job]
    assert await b.leases.claim_due("b", 10, LEASE) == [theirs.job]

    assert await a.leases.take_turn(JobKind.PROMPT, "a", 5.0)
    assert not await b.leases.take_turn(JobKind.PROMPT, "b", 5.0)  # a's interval
    assert await a.leases.take_turn(JobKind.PROMPT, "a", 5.0)  # its own, again
    assert await b.leases.take_turn(JobKind.TUNE, "b", 30.0)  # each kind has its own
    clock.advance(seconds=5)
    assert await b.leases.take_turn(JobKind.PROMPT, "b", 5.0)  # a's ran out
    assert not await a.leases.take_turn(JobKind.PROMPT, "a", 5.0)

    assert await a.leases.others_followed(JobKind.PROMPT, "a") == {901: theirs.id}
    assert await b.leases.others_followed(JobKind.PROMPT, "b") == {900: mine.id}
    await a.leases.leave_seen(JobKind.PROMPT, {theirs.id: '{"id": 901}'})
    assert await a.leases.seen("a") == {}  # not a's job
    assert await b.leases.seen("b") == {theirs.job: '{"id": 901}'}
    assert await b.leases.seen("b") == {}  # taken once

    # Erasure takes what was left for an erased member's job; the prune what is left of
    # a job no longer followed, and keeps what waits for a followed one.
    await a.leases.leave_seen(JobKind.PROMPT, {theirs.id: '{"id": 901}', mine.id: "{}"})
    await a.prompts.set_state(mine.id, PromptState.DELIVERED)
    await a.retention.prune(before=clock.now)
    assert await a.meta.get(f"seen:prompt:{mine.id}") is None
    assert await a.meta.get(f"seen:prompt:{theirs.id}") == '{"id": 901}'
    await a.erasure.scrub(theirs.owner_id)
    assert await a.meta.get(f"seen:prompt:{theirs.id}") is None
