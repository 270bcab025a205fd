"""Two trackers on one store, as two bot processes would be (holders "a" and "b"): each
works only the jobs it holds a lease on, a dead one's jobs are taken over once its leases
run out (a create in flight recovered by a lookup, never posted twice), and a callback
reaching the process that does not hold the job wakes it where it is held."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Collection
from typing import Any

import pytest

from bot.jobs import EventKind, Tracker
from bot.offline.emulator import Fault
from bot.store import JobRef, TuneState
from tests.jobs.conftest import CHANNEL, Rig
from tests.pg import BACKENDS

LEASE = 30.0


@pytest.fixture(params=BACKENDS)
def rig_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def process(rig: Rig, holder: str) -> Tracker:
    return rig.new_tracker(holder=holder, lease_seconds=LEASE, sole_process=False)


async def rounds(rig: Rig, *trackers: Tracker, seconds: float = 5.0, times: int = 1) -> None:
    """Move time, then one round of each tracker, all at once (as processes run)."""
    for _ in range(times):
        await rig.emulator.advance(seconds)
        await asyncio.gather(*(tracker.poll_once() for tracker in trackers))


async def test_two_processes_share_the_jobs_and_make_and_deliver_each_once(rig: Rig):
    a, b = process(rig, "a"), process(rig, "b")
    rig.tracker = a
    tune = await rig.ready_tune(owner=1)
    prompts = []
    for n in range(8):  # a new channel's job goes to whichever process's round comes first
        prompts.append(await rig.prompt(1, tune, f"sks man {n}", channel=CHANNEL + n))
        await rounds(rig, *((a, b) if n % 2 else (b, a)))
    holders = await rig.store.leases.holders()
    assert {holders[p.job] for p in prompts if p.job in holders} == {"a", "b"}

    async def done() -> bool:
        return len(rig.delivery.ends(EventKind.DONE)) == len(prompts)

    for _ in range(40):
        if await done():
            break
        await rounds(rig, a, b)
    assert await done()
    assert tune.astria_id is not None
    texts = Counter(p["text"] for p in rig.emulator.prompts_for(tune.astria_id))
    assert texts == Counter({f"sks man {n}": 1 for n in range(8)})  # none made twice
    assert rig.delivery.keys("prompt:") == {f"prompt:{p.id}:done": 1 for p in prompts}
    await rig.ledger_matches_charges()
    await rounds(rig, a, b)
    assert await rig.store.leases.holders() == {}  # finished and reported: handed back


async def test_a_dead_process_s_jobs_are_taken_over_after_its_lease_without_a_duplicate(
    rig: Rig,
):
    a, b = process(rig, "a"), process(rig, "b")
    rig.tracker = a
    ready = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, ready, "sks man, generating")
    rig.emulator.faults.script("POST /tunes", Fault("http_504_after"))
    rig.emulator.faults.script("GET /tunes", *[Fault("http_500")] * 3)  # its lookup fails too
    lost = await rig.tune(owner=2)
    await a.poll_once()  # the tune's create is answered by nobody; the prompt is generating
    current = await rig.store.tunes.get(lost.id)
    assert current is not None and current.state == TuneState.SUBMITTING
    assert (await rig.store.prompts.get(prompt.id)).astria_id is not None  # type: ignore[union-attr]
    # a dies here (SIGKILL: no stop, no release). Within its lease, b takes nothing.
    await rounds(rig, b, seconds=LEASE / 3, times=2)
    assert set((await rig.store.leases.holders()).values()) == {"a"}
    assert not rig.delivery.ends(EventKind.READY)[1:] and not rig.delivery.ends(EventKind.DONE)
    await rounds(rig, b, seconds=LEASE / 3)  # a's leases ran out: b takes its jobs over
    holders = await rig.store.leases.holders()
    assert holders[lost.job] == "b" and holders[prompt.job] == "b"

    async def finished() -> bool:
        tunes = [e for e in rig.delivery.ends(EventKind.READY) if e.job == str(lost.job)]
        return bool(tunes) and bool(rig.delivery.ends(EventKind.DONE))

    for _ in range(60):
        if await finished():
            break
        await b.settle_background()
        await rounds(rig, b, seconds=30)
    assert await finished()
    assert len(rig.emulator.tunes_with_title(lost.title)) == 1  # recovered, not re-posted
    assert ready.astria_id is not None
    assert len(rig.emulator.prompts_for(ready.astria_id)) == 1
    assert rig.delivery.keys(f"tune:{lost.id}:ready") == {f"tune:{lost.id}:ready": 1}
    assert rig.delivery.keys("prompt:") == {f"prompt:{prompt.id}:done": 1}
    await rig.ledger_matches_charges()
    # a was only stalled, not dead: back, it finds its leases gone and lets the jobs be.
    await a.poll_once()
    assert a.followed == 0


async def test_a_callback_reaching_the_other_process_wakes_the_job_where_it_is_held(rig: Rig):
    a, b = process(rig, "a"), process(rig, "b")
    rig.tracker = a
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune)
    await a.poll_once()  # a holds it and submits it: first look in a while
    assert (await a.poll_once()).checked == 0  # not due yet
    assert b.wake(str(prompt.job)) is False  # b does not follow it...
    await b.settle_background()  # ...and passes the wake on through the store
    assert (await a.poll_once()).checked == 1  # a looks at it at once
    assert (await a.poll_once()).checked == 0  # once
    assert await rig.store.leases.woken("a") == set()
    assert JobRef.parse(str(prompt.job)) in a._held


async def test_a_round_held_up_past_the_lease_keeps_it_so_the_other_process_takes_nothing(
    rig: Rig,
):
    """A live process whose round waits on a slow Astria answer for longer than a lease
    (seen in the two-process chaos run): `keep_leases` renews meanwhile. Renewed only by
    the rounds, the lease ran out, the other process took the job over, and both worked
    it until the slow round's process next renewed."""
    a, b = process(rig, "a"), process(rig, "b")
    rig.tracker = a
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune, "sks man, a slow round")
    await a.poll_once()  # a holds it and submits it
    assert (await rig.store.leases.holders())[prompt.job] == "a"

    keeper = asyncio.create_task(a.keep_leases())
    rig.emulator.faults.rate(Fault("latency", delay=3.0), 1.0)  # every answer, slow
    await rig.emulator.advance(LEASE / 3 + 1)
    held_up = asyncio.create_task(a.poll_once())  # renews, then waits on Astria
    await asyncio.sleep(0.5)
    await rig.emulator.advance(LEASE / 3 + 1)  # a renewal is due while the round waits
    await asyncio.sleep(1.5)  # (real time: keep_leases looks every second)
    rig.emulator.faults.clear()
    await rig.emulator.advance(LEASE - 5)  # past the lease the round itself renewed
    assert not held_up.done()  # still held up: a is alive
    await b.poll_once()
    assert (await rig.store.leases.holders())[prompt.job] == "a"  # b took nothing
    await held_up
    keeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await keeper

    for _ in range(20):
        if rig.delivery.ends(EventKind.DONE):
            break
        await rounds(rig, a, b)
    assert rig.delivery.keys("prompt:") == {f"prompt:{prompt.id}:done": 1}
    assert tune.astria_id is not None
    assert len(rig.emulator.prompts_for(tune.astria_id)) == 1
    await rig.ledger_matches_charges()


async def test_a_renewal_beside_a_round_handing_a_job_back_is_not_a_takeover(
    rig: Rig, caplog: pytest.LogCaptureFixture
):
    """`keep_leases` renews while a round hands back a finished job's lease: a renewal
    that read the held jobs before the hand-back and wrote after it took the job's own
    hand-back for another process's takeover (seen in the two-process chaos run with
    store faults). Renewals and hand-backs take turns."""
    a = process(rig, "a")
    rig.tracker = a
    tune = await rig.ready_tune(owner=1)
    prompt = await rig.prompt(1, tune, "sks man, handed back")
    renew, release = rig.store.leases.renew, rig.store.leases.release
    gate = asyncio.Event()
    keeper: list[asyncio.Task[None]] = []

    async def renewal(*args: Any, **kwargs: Any) -> set[JobRef]:
        if keeper:
            await gate.wait()  # the keeper's renewal: its writer comes after the hand-back
        return await renew(*args, **kwargs)

    async def hand_back(holder: str, jobs: Collection[JobRef]) -> None:
        if keeper or prompt.job not in jobs:
            return await release(holder, jobs)
        await rig.emulator.advance(LEASE / 3 + 1)  # a renewal is due
        keeper.append(asyncio.create_task(a._renew_leases()))
        await asyncio.sleep(0.05)  # the keeper reads which jobs are held
        await release(holder, jobs)
        gate.set()

    rig.store.leases.renew = renewal  # type: ignore[method-assign]
    rig.store.leases.release = hand_back  # type: ignore[method-assign]
    for _ in range(20):
        await rounds(rig, a)
        if keeper:
            break
    assert keeper, "the job was never handed back"
    await keeper[0]
    assert rig.delivery.keys("prompt:") == {f"prompt:{prompt.id}:done": 1}
    assert "another process took it over" not in caplog.text
    assert await rig.store.leases.holders() == {}
