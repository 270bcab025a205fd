"""Packs: the gallery list with per-class prices, and `POST /p/:pack_id/tunes` making the
pack's prompts on a tune, billed under each reading (at create, or per prompt as each
ends), failed prompts refunded or not."""

from __future__ import annotations

from typing import Any

import pytest

from bot.offline.emulator import READINGS, Emulator

from .conftest import Api, StartEmulator


async def _trained_tune(api: Api, emu: Emulator, **fields: Any) -> dict[str, Any]:
    fields.setdefault("branch", "sd15")
    tune = await api.create_tune(**fields)
    await emu.advance(100)
    return tune


async def _run(api: Api, pack_id: int, tune_id: int, status: int = 201) -> Any:
    got, body = await api.call(
        "POST", f"/p/{pack_id}/tunes", json={"tune": {"tune_ids": [tune_id]}}
    )
    assert got == status, body
    return body


async def test_gallery_lists_packs_with_prices_per_class(api: Api) -> None:
    for path in ("/packs", "/gallery/packs", "/packs.json"):
        status, packs = await api.get(path)
        assert status == 200
        assert [p["id"] for p in packs] == [260, 261, 262]
    headshots = packs[0]
    assert headshots["cost_mc_hash"] == {"man": 60_000, "woman": 60_000}
    assert headshots["costs"]["man"] == {"cost_mc": 60_000, "cost": 0.6, "num_images": 6}
    assert (await api.get("/p/261"))[1]["title"] == "Pet Portraits"
    assert (await api.get("/p/999"))[0] == 404


@pytest.mark.parametrize("reading", sorted(READINGS))
async def test_a_pack_run_makes_its_prompts_and_charges_its_price(
    start_emulator: StartEmulator, session: Any, reading: str
) -> None:
    emu = await start_emulator(**vars(READINGS[reading]))
    api = Api(session, emu)
    tune = await _trained_tune(api, emu)
    before = emu.balance_mc
    body = await _run(api, 262, tune["id"])
    prompts = body["prompts"]
    assert body["id"] == tune["id"] and len(prompts) == 3
    assert [p["num_images"] for p in prompts] == [2, 1, 3]
    assert all(p["pack_id"] == 262 and p["tune_id"] == tune["id"] for p in prompts)
    assert prompts[0]["text"].startswith("sks man as a knight")
    # The shares add up to the man price, 90,001 mc.
    assert [p["cost_mc"] for p in prompts] == [30_001, 30_000, 30_000]
    listed = {p["id"] for p in emu.prompts_for(tune["id"])}
    assert {p["id"] for p in prompts} <= listed
    billed_at_create = READINGS[reading].pack_billing == "create"
    assert emu.balance_mc == before - (90_001 if billed_at_create else 0)
    emu.fail_prompt(prompts[1]["id"], "the pack prompt failed")
    await emu.advance(60)
    done = [(await api.get(f"/prompts/{p['id']}"))[1] for p in prompts]
    assert [bool(d["images"]) for d in done] == [True, False, True]
    kept = 0 if READINGS[reading].refund_failed_prompts else 30_000
    assert emu.balance_mc == before - 60_001 - kept
    assert sum(c.cost_mc for c in emu.charges) == 150_000 + 60_001 + kept  # with the tune


async def test_packs_refuse_other_classes_short_balance_and_unknown_tunes(
    start_emulator: StartEmulator, session: Any
) -> None:
    emu = await start_emulator(balance_mc=200_000)
    api = Api(session, emu)
    tune = await _trained_tune(api, emu)  # a man, 150,000 mc
    refused = await _run(api, 261, tune["id"], status=422)
    assert "name" in refused
    assert "tune_ids" in await _run(api, 260, 123, status=422)
    assert "error" in await _run(api, 262, tune["id"], status=402)
    assert emu.prompts_for(tune["id"]) == []
    assert await _run(api, 999, tune["id"], status=404)


async def test_a_pack_on_the_fast_branch_is_free_and_mock(api: Api, emu: Emulator) -> None:
    tune = await _trained_tune(api, emu, branch="fast")
    before = emu.balance_mc
    prompts = (await _run(api, 260, tune["id"]))["prompts"]
    await emu.advance(60)
    done = (await api.get(f"/prompts/{prompts[0]['id']}"))[1]
    assert "/mock/" in done["images"][0] and done["cost_mc"] == 0
    assert emu.balance_mc == before


async def test_each_post_makes_the_pack_again(start_emulator: StartEmulator, session: Any) -> None:
    emu = await start_emulator(idempotency=True)
    api = Api(session, emu)
    tune = await _trained_tune(api, emu, name="woman")
    first = await _run(api, 260, tune["id"])
    second = await _run(api, 260, tune["id"])
    assert {p["id"] for p in first["prompts"]}.isdisjoint(p["id"] for p in second["prompts"])
    assert len(emu.prompts_for(tune["id"])) == 6
