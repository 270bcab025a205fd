"""Many jobs at once, few status requests, and restarts that lose and repeat nothing."""

from __future__ import annotations

import pytest

from bot.jobs import EventKind
from bot.offline.emulator import EmulatorConfig
from bot.store import PromptState
from tests.conftest import KEY
from tests.jobs.conftest import Rig

JOBS = 100


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    # 1,000 older objects on the account push ours down the list pages.
    return EmulatorConfig(
        api_key=KEY, train_seconds=120, prompt_seconds=10, foreign_prompts=1000, jitter=0.2
    )


async def test_100_concurrent_prompts_each_reported_once_with_few_status_requests(rig: Rig):
    tune = await rig.ready_tune(owner=1)
    await rig.store.tunes.set_shared(tune.id, True)  # the server's shared tune
    owners = range(100, 100 + JOBS)
    prompts = [await rig.prompt(owner, tune, f"sks man number {owner}") for owner in owners]
    # Members' own caps do not bind (one prompt each); the global cap does: 50 in flight.
    before = rig.status_requests()

    async def all_done() -> bool:
        return len(rig.delivery.ends(EventKind.DONE)) == JOBS

    rounds = await rig.run_until(all_done, step=5)
    status = rig.status_requests() - before
    keys = rig.delivery.keys("prompt:")
    assert all(keys[f"prompt:{p.id}:done"] == 1 for p in prompts)
    assert sum(keys.values()) == JOBS
    for p in prompts:
        current = await rig.store.prompts.get(p.id)
        assert current is not None and current.state == PromptState.DELIVERED
    # The schedule's bound: the global cap (50) makes two waves; a wave's prompts are first
    # looked at together at their expected finish (10 s) and, jittered by at most 20 %, are
    # all done by the next look 5 s later: two rounds a wave. Our 100 are the newest objects
    # on the account, so one list page covers a round; a round with one job left costs one
    # GET. Two waves x two rounds x at most two requests.
    assert status <= 8, f"{status} status requests for {JOBS} jobs in {rounds} rounds"
    await rig.ledger_matches_charges()

    # The naive way, measured in the same run: GET each job every 5 s until it is done.
    naive = await naive_poll_every_5_seconds(rig, tune.astria_id or 0)
    print(f"status requests per job: tracker {status / JOBS:.2f}, naive {naive / JOBS:.2f}")
    assert status * 4 <= naive


async def naive_poll_every_5_seconds(rig: Rig, tune_astria_id: int) -> int:
    from bot.astria import PromptRequest

    ids = [
        (
            await rig.client.create_prompt(tune_astria_id, PromptRequest(text=f"naive {n}", seed=n))
        ).id
        for n in range(JOBS)
    ]
    before = rig.emulator.counters["GET /prompts/{id}"]
    pending = set(ids)
    while pending:
        await rig.emulator.advance(5)
        for astria_id in list(pending):
            if (await rig.client.get_prompt(astria_id)).is_done:
                pending.discard(astria_id)
    return rig.emulator.counters["GET /prompts/{id}"] - before


async def test_second_tracker_resumes_and_reports_each_end_exactly_once(rig: Rig):
    tune = await rig.ready_tune(owner=1)
    await rig.store.tunes.set_shared(tune.id, True)
    prompts = [await rig.prompt(owner, tune, f"sks man {owner}") for owner in range(2, 22)]
    await rig.tracker.poll_once()  # all submitted
    await rig.step(5)
    # The first tracker is dropped mid-flight (as if the process died) ...
    await rig.tracker.stop()
    reported_before = rig.delivery.keys("prompt:")
    # ... and a new one starts on the same database.
    rig.tracker = rig.new_tracker()
    await rig.tracker.start()

    async def all_done() -> bool:
        return len(rig.delivery.keys("prompt:")) == len(prompts)

    await rig.run_until(all_done)
    keys = rig.delivery.keys("prompt:")
    assert set(keys) == {f"prompt:{p.id}:done" for p in prompts}
    assert all(count == 1 for count in keys.values()), keys
    assert set(reported_before) <= set(keys)
    await rig.ledger_matches_charges()


async def test_a_report_lost_in_a_crash_is_repeated_under_the_same_key(rig: Rig):
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune)
    rig.delivery.fail_next = 1  # the first report fails (as if the process died there)

    async def reported() -> bool:
        return bool(rig.delivery.ends(EventKind.DONE))

    await rig.run_until(reported)
    assert rig.delivery.keys("prompt:") == {f"prompt:{prompt.id}:done": 1}
    pending = await rig.store.events.pending()
    assert pending == []


async def test_newer_objects_on_the_account_do_not_hide_our_jobs(rig: Rig):
    tune = await rig.ready_tune(owner=1)
    await rig.store.tunes.set_shared(tune.id, True)
    prompts = [await rig.prompt(owner, tune, f"sks man {owner}") for owner in range(2, 22)]
    await rig.tracker.poll_once()
    # Another client on the same key makes 300 prompts after ours: ours sink to pages 3-4.
    from bot.astria import PromptRequest

    ours_charged = sum(c.cost_mc for c in rig.emulator.charges)
    for n in range(300):
        await rig.client.create_prompt(
            tune.astria_id or 0, PromptRequest(text=f"other {n}", seed=n)
        )
    before = rig.status_requests()

    async def all_done() -> bool:
        return len(rig.delivery.keys("prompt:")) == len(prompts)

    await rig.run_until(all_done)
    status = rig.status_requests() - before
    assert set(rig.delivery.keys("prompt:")) == {f"prompt:{p.id}:done" for p in prompts}
    # Paging stops at our oldest job: at most 4 pages a round, and never more requests in a
    # round than single GETs of the due jobs would have cost.
    assert status < len(prompts), status
    entries = await rig.store.ledger.entries()
    assert sum(e.amount_mc for e in entries) == ours_charged


async def test_run_loop_follows_jobs_and_stops_cleanly(rig: Rig):
    import asyncio

    tune = await rig.tune(owner=1)
    task = asyncio.create_task(rig.tracker.run())
    try:
        for _ in range(200):  # bounded: about 10 s of real time at most
            await asyncio.sleep(0.05)
            await rig.emulator.advance(30)
            rig.tracker.wake(f"tune:{tune.id}")
            if rig.delivery.ends(EventKind.READY):
                break
        assert rig.delivery.keys() == {f"tune:{tune.id}:ready": 1}
    finally:
        await rig.tracker.stop()
        await asyncio.wait_for(task, timeout=10)
    assert task.done() and task.exception() is None


async def test_a_restart_shows_the_final_status_of_jobs_reported_just_before_it(rig: Rig):
    """A kill between a report and its status edit would leave "Generating…" above a
    delivered result: the next start shows the final state of recently reported jobs
    again (and only of recent ones)."""
    tune = await rig.ready_tune(owner=1)
    old = await rig.prompt(1, tune, "sks man old")

    async def reported(prompt_id: int) -> bool:
        return f"prompt:{prompt_id}:done" in rig.delivery.keys("prompt:")

    await rig.run_until(lambda: reported(old.id))
    await rig.emulator.advance(3600)  # an hour later: too old to touch again
    recent = await rig.prompt(1, tune, "sks man recent")
    await rig.run_until(lambda: reported(recent.id))
    await rig.tracker.stop()
    rig.delivery.progress_updates.clear()
    rig.tracker = rig.new_tracker()
    await rig.tracker.start()
    shown = {(u.job, u.state) for u in rig.delivery.progress_updates}
    assert (f"prompt:{recent.id}", "done") in shown
    assert f"tune:{tune.id}" not in {job for job, _ in shown}
    assert f"prompt:{old.id}" not in {job for job, _ in shown}
