"""Callbacks: wrapped bodies POSTed once when jobs finish, loopback only, and real-time ticking."""

from __future__ import annotations

import asyncio

import aiohttp

from bot.offline.emulator import Emulator, EmulatorConfig

from .conftest import AUTH, Api, Receiver


async def test_tune_and_prompt_callbacks_post_wrapped_bodies_once(
    api: Api, emu: Emulator, receiver: Receiver
) -> None:
    tune = await api.create_tune(
        callback=f"{receiver.url}/hooks/tune?order=9",
        prompts_attributes=[{"text": "sks man", "callback": f"{receiver.url}/hooks/prompt?n=1"}],
    )
    await emu.advance(30)
    assert receiver.bodies == [] and emu.callbacks_sent == []
    await emu.advance(300)
    assert [path for path, _ in receiver.bodies] == ["/hooks/tune?order=9", "/hooks/prompt?n=1"]
    tune_body = receiver.bodies[0][1]
    assert set(tune_body) == {"tune"}
    assert tune_body["tune"]["id"] == tune["id"] and tune_body["tune"]["trained_at"] is not None
    prompt_body = receiver.bodies[1][1]
    assert set(prompt_body) == {"prompt"}
    assert len(prompt_body["prompt"]["images"]) == 1
    assert [(url, status) for url, _, status in emu.callbacks_sent] == [
        (f"{receiver.url}/hooks/tune?order=9", 200),
        (f"{receiver.url}/hooks/prompt?n=1", 200),
    ]
    await emu.advance(300)
    assert len(receiver.bodies) == 2  # never repeated


async def test_failed_prompt_calls_back_with_user_error(
    api: Api, emu: Emulator, receiver: Receiver
) -> None:
    await api.create_prompt(690204, text="EMULATOR_FAIL please", callback=f"{receiver.url}/p")
    await emu.advance(60)
    [(_, body)] = receiver.bodies
    assert body["prompt"]["user_error"] and body["prompt"]["images"] == []


async def test_callbacks_to_other_hosts_or_dead_ports_are_recorded_not_retried(
    api: Api, emu: Emulator
) -> None:
    await api.create_prompt(690204, text="a", callback="https://example.com/hook")
    await api.create_prompt(690204, text="b", callback="http://127.0.0.1:9/hook")
    await emu.advance(60)
    await emu.advance(60)
    assert sorted((url, status) for url, _, status in emu.callbacks_sent) == [
        ("http://127.0.0.1:9/hook", None),
        ("https://example.com/hook", None),
    ]


async def test_faceid_tunes_send_no_training_callback(
    api: Api, emu: Emulator, receiver: Receiver
) -> None:
    await api.create_tune(model_type="faceid", callback=f"{receiver.url}/t")
    await emu.advance(300)
    assert receiver.bodies == []


class SteppedClock:
    """Not a ManualClock, so the emulator ticks by itself; the test still chooses the time."""

    def __init__(self) -> None:
        self.moment = 1_780_000_000.0

    def now(self) -> float:
        return self.moment


async def test_real_time_mode_ticks_in_the_background(receiver: Receiver) -> None:
    clock = SteppedClock()
    emu = Emulator(EmulatorConfig(tick_interval=0.01), clock)
    await emu.start()
    try:
        async with aiohttp.ClientSession(headers=AUTH) as session:
            api = Api(session, emu)
            await api.create_prompt(690204, text="a", callback=f"{receiver.url}/rt")
            clock.moment += 60
            # Wait for the background ticker to notice; generous, only bounds a broken run.
            async with asyncio.timeout(5):
                await receiver.arrived.wait()
        assert receiver.bodies[0][0] == "/rt"
    finally:
        await emu.stop()
