"""Money and idempotency: charges, balance, 402, and replays that create nothing."""

from __future__ import annotations

import aiohttp

from bot.offline.emulator import Emulator
from bot.offline.emulator.config import DOCUMENTED_PROMPT_MATCH

from .conftest import Api, StartEmulator


async def test_paid_branch_charges_tune_and_images(api: Api, emu: Emulator) -> None:
    start = emu.balance_mc
    tune = await api.create_tune(branch="flux1", base_tune_id=1504944)
    assert tune["cost_mc"] == 150_000
    prompt = await api.create_prompt(1504944, text="a portrait", num_images=4)
    assert prompt["cost_mc"] == 12_000
    assert [(c.kind, c.object_id, c.cost_mc) for c in emu.charges] == [
        ("tune", tune["id"], 150_000),
        ("prompt", prompt["id"], 12_000),
    ]
    assert emu.balance_mc == start - 162_000
    status, user = await api.get("/users")
    assert status == 200
    assert user["usd_balance_mc"] == emu.balance_mc
    assert set(user) == {
        "id",
        "name",
        "email",
        "usd_balance_mc",
        "auto_extend_tunes",
        "top_off_amount",
        "purchased_plugin_at",
    }


async def test_fast_lora_prompted_on_a_paid_base_is_billed(api: Api, emu: Emulator) -> None:
    tune = await api.create_tune(branch="fast", base_tune_id=1504944, model_type="lora")
    await emu.advance(100)
    prompt = await api.create_prompt(1504944, text=f"<lora:{tune['id']}:1> ohwx man")
    assert prompt["cost_mc"] == 3_000
    await emu.advance(60)
    _, done = await api.get(f"/prompts/{prompt['id']}")
    assert done["images"] and "/mock/" not in done["images"][0]


async def test_short_balance_gets_402_and_creates_nothing(
    start_emulator: StartEmulator, session: aiohttp.ClientSession
) -> None:
    emu = await start_emulator(balance_mc=100_000)
    api = Api(session, emu)
    body = await api.create_tune(status=402, branch="sd15")
    assert "error" in body
    assert emu.tunes_with_title("my tune") == [] and emu.charges == []
    assert (await api.get("/tunes"))[1] == []
    fast = await api.create_tune(branch="fast")  # free, so never refused
    emu.balance_mc = 3_000
    body = await api.create_prompt(690204, status=402, text="a cat", num_images=2)
    assert "error" in body
    await api.create_prompt(690204, text="a cat", num_images=1)
    assert emu.balance_mc == 1_000
    await api.create_prompt(fast["id"], text="sks man", num_images=8)
    assert emu.balance_mc == 1_000


async def test_tune_with_prompts_attributes_is_refused_when_the_total_is_short(
    start_emulator: StartEmulator, session: aiohttp.ClientSession
) -> None:
    emu = await start_emulator(balance_mc=150_000)
    api = Api(session, emu)
    await api.create_tune(status=402, prompts_attributes=[{"text": "sks man", "num_images": 1}])
    assert emu.balance_mc == 150_000
    await api.create_tune()
    assert emu.balance_mc == 0


async def test_idempotency_off_every_post_creates(api: Api, emu: Emulator) -> None:
    first = await api.create_tune(title="same")
    second = await api.create_tune(title="same")
    assert first["id"] != second["id"]
    one = await api.create_prompt(first["id"], text="sks man", seed=1)
    two = await api.create_prompt(first["id"], text="sks man", seed=1)
    assert one["id"] != two["id"]
    assert len(emu.tunes_with_title("same")) == 2
    assert len(emu.charges) == 4


async def test_idempotency_on_replays_tunes_by_title(
    start_emulator: StartEmulator, session: aiohttp.ClientSession
) -> None:
    emu = await start_emulator(idempotency=True)
    api = Api(session, emu)
    first = await api.create_tune(title="order-7", prompts_attributes=[{"text": "sks man"}])
    again = await api.create_tune(title="order-7", name="woman", images=2)
    assert again == first
    other = await api.create_tune(title="order-8")
    assert other["id"] != first["id"]
    assert len(emu.tunes_with_title("order-7")) == 1
    assert len(emu.prompts_for(first["id"])) == 1
    assert [c.kind for c in emu.charges] == ["tune", "prompt", "tune"]
    await api.call("DELETE", f"/tunes/{first['id']}")
    fresh = await api.create_tune(title="order-7")
    assert fresh["id"] != first["id"]


async def test_idempotency_on_replays_prompts_with_the_same_text_and_seed(
    start_emulator: StartEmulator, session: aiohttp.ClientSession
) -> None:
    emu = await start_emulator(idempotency=True)
    api = Api(session, emu)
    tune = await api.create_tune()
    first = await api.create_prompt(tune["id"], text="sks man", seed=5, num_images=2)
    replay = await api.create_prompt(tune["id"], text="sks man", seed=5, num_images=2)
    assert replay == first
    # The overview's rule is text and seed only: other attributes do not matter.
    changed = await api.create_prompt(tune["id"], text="sks man", seed=5, num_images=4)
    assert changed["id"] == first["id"]
    new_seed = await api.create_prompt(tune["id"], text="sks man", seed=6)
    other_tune = await api.create_prompt(690204, text="sks man", seed=5)
    assert len({first["id"], new_seed["id"], other_tune["id"]}) == 3
    assert len(emu.charges) == 4  # tune + three prompts


async def test_documented_match_set_compares_every_listed_attribute(
    start_emulator: StartEmulator, session: aiohttp.ClientSession
) -> None:
    emu = await start_emulator(idempotency=True, prompt_match=DOCUMENTED_PROMPT_MATCH)
    api = Api(session, emu)
    first = await api.create_prompt(690204, text="a cat", seed=5, callback="http://127.0.0.1/a")
    assert (await api.create_prompt(690204, text="a cat", seed=5, callback="http://127.0.0.1/a"))[
        "id"
    ] == first["id"]
    other = await api.create_prompt(690204, text="a cat", seed=5, callback="http://127.0.0.1/b")
    assert other["id"] != first["id"]
    more = await api.create_prompt(
        690204, text="a cat", seed=5, callback="http://127.0.0.1/a", w=512
    )
    assert more["id"] not in (first["id"], other["id"])
