"""Prompts: lifecycle after training, images, quirks, validation and failure."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.offline.emulator import Emulator

from .conftest import Api, StartEmulator

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def fetch_public(url: str) -> tuple[int, bytes, str]:
    """Image URLs are public: fetch them with no key at all."""
    async with aiohttp.ClientSession() as anonymous, anonymous.get(url) as response:
        return response.status, await response.read(), response.content_type


async def test_prompt_waits_for_training_then_serves_real_pngs(api: Api, emu: Emulator) -> None:
    tune = await api.create_tune()
    prompt = await api.create_prompt(tune["id"], num_images=3, seed=42)
    assert prompt["images"] == [] and prompt["trained_at"] is None
    assert prompt["started_training_at"] is None
    # Training takes at least 48 s, so 40 s in the prompt has not even started.
    await emu.advance(40)
    _, waiting = await api.get(f"/tunes/{tune['id']}/prompts/{prompt['id']}")
    assert waiting["images"] == [] and waiting["started_training_at"] is None
    await emu.advance(200)
    _, trained_tune = await api.get(f"/tunes/{tune['id']}")
    status, done = await api.get(f"/tunes/{tune['id']}/prompts/{prompt['id']}")
    assert status == 200
    assert done["trained_at"] is not None and done["user_error"] is None
    assert done["started_training_at"] == trained_tune["trained_at"]
    assert len(done["images"]) == 3
    assert (await api.get(f"/prompts/{prompt['id']}.json"))[1] == done
    status, data, content_type = await fetch_public(done["images"][0])
    assert status == 200 and content_type == "image/png"
    assert data.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (512, 512)
    again = await fetch_public(done["images"][0])
    assert again[1] == data
    assert (await fetch_public(done["images"][1]))[1] != data
    assert (await fetch_public(done["images"][0].replace("/0.png", "/3.png")))[0] == 404


async def test_image_size_follows_config(
    start_emulator: StartEmulator, session: aiohttp.ClientSession
) -> None:
    emu = await start_emulator(image_size=(64, 32))
    api = Api(session, emu)
    prompt = await api.create_prompt(690204, text="a bowl of fruit")
    await emu.advance(30)
    _, done = await api.get(f"/prompts/{prompt['id']}")
    _, data, _ = await fetch_public(done["images"][0])
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (64, 32)


async def test_pending_prompt_images_are_not_served(api: Api) -> None:
    prompt = await api.create_prompt(690204, text="a lighthouse")
    status, _, _ = await fetch_public(f"{api.base}/files/prompts/{prompt['id']}/0.png")
    assert status == 404


async def test_cfg_scale_comes_back_as_a_string(api: Api) -> None:
    prompt = await api.create_prompt(690204, text="a cat", cfg_scale=3)
    assert prompt["cfg_scale"] == "3.0"
    prompt = await api.create_prompt(690204, text="a cat", cfg_scale="7.5")
    assert prompt["cfg_scale"] == "7.5"
    assert (await api.create_prompt(690204, text="a cat"))["cfg_scale"] is None


async def test_post_answers_an_array_for_odd_ids_and_an_object_for_even(api: Api) -> None:
    shapes = set()
    for index in range(4):
        status, body = await api.call(
            "POST", "/tunes/690204/prompts", json={"prompt": {"text": f"a tree {index}"}}
        )
        assert status == 201
        prompt = body[0] if isinstance(body, list) else body
        assert isinstance(body, list) == bool(prompt["id"] % 2)
        shapes.add(type(body))
        status, fetched = await api.get(f"/prompts/{prompt['id']}")
        assert isinstance(fetched, dict)  # GET is always an object
    assert shapes == {list, dict}


async def test_multipart_prompt_is_accepted(api: Api) -> None:
    form = aiohttp.FormData()
    form.add_field("prompt[text]", "a boat")
    form.add_field("prompt[num_images]", "2")
    form.add_field("prompt[super_resolution]", "true")
    status, body = await api.call("POST", "/tunes/690204/prompts", data=form)
    assert status == 201
    prompt = body[0] if isinstance(body, list) else body
    assert prompt["num_images"] == 2 and prompt["super_resolution"] is True


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"num_images": 9}, "num_images", "must be less than or equal to 8"),
        ({"num_images": 0}, "num_images", "must be greater than or equal to 1"),
        ({"num_images": "many"}, "num_images", "is not a number"),
        ({"seed": -1}, "seed", "must be greater than or equal to 0"),
        ({"seed": 2**32 + 1}, "seed", "must be less than or equal to 4294967296"),
        ({"cfg_scale": 16}, "cfg_scale", "must be less than or equal to 15"),
        ({"steps": 51}, "steps", "must be less than or equal to 50"),
        ({"w": 500}, "w", "must be a positive multiple of 8"),
        ({"aspect_ratio": "7:3"}, "aspect_ratio", "is not included in the list"),
        ({"scheduler": "ddim"}, "scheduler", "is not included in the list"),
        ({"text": ""}, "text", "can't be blank"),
        ({"lora_scale": 0.5}, "lora_scale", "is only allowed in a tune's prompts_attributes"),
    ],
)
async def test_invalid_prompts_get_422(
    api: Api, emu: Emulator, fields: dict[str, Any], field: str, message: str
) -> None:
    fields.setdefault("text", "a cat")
    body = await api.create_prompt(690204, status=422, **fields)
    assert body == {field: [message]}
    assert emu.charges == []


async def test_prompt_on_a_lora_tune_is_422(api: Api, emu: Emulator) -> None:
    tune = await api.create_tune(base_tune_id=1504944, model_type="lora")
    await emu.advance(100)
    body = await api.create_prompt(tune["id"], status=422, text="ohwx man")
    assert body == {"base": ["model_type=lora is not supported. Use a checkpoint instead"]}


async def test_lora_tag_on_a_base_tune_must_name_a_trained_tune(api: Api, emu: Emulator) -> None:
    tune = await api.create_tune(base_tune_id=1504944, model_type="lora")
    text = f"<lora:{tune['id']}:1> ohwx man"
    body = await api.create_prompt(1504944, status=422, text=text)
    assert "has not finished training" in body["text"][0]
    body = await api.create_prompt(1504944, status=422, text="<faceid:123:1> man")
    assert "123" in body["text"][0]
    await emu.advance(100)
    prompt = await api.create_prompt(1504944, text=text)
    assert prompt["tune_id"] == 1504944
    assert prompt["cost_mc"] == 3_000


async def test_emulator_fail_sets_user_error_refunds_and_shows_no_images(
    api: Api, emu: Emulator
) -> None:
    before = emu.balance_mc
    prompt = await api.create_prompt(690204, text="a cat EMULATOR_FAIL", num_images=2)
    assert prompt["cost_mc"] == 4_000
    assert emu.balance_mc == before - 4_000
    await emu.advance(30)
    _, failed = await api.get(f"/prompts/{prompt['id']}")
    assert failed["images"] == [] and failed["trained_at"] is None
    assert isinstance(failed["user_error"], str) and failed["user_error"]
    assert failed["cost_mc"] == 0
    assert emu.balance_mc == before
    assert sum(charge.cost_mc for charge in emu.charges) == 0


async def test_fail_prompt_and_stall_control_outcomes(api: Api, emu: Emulator) -> None:
    first = await api.create_prompt(690204, text="one")
    second = await api.create_prompt(690204, text="two")
    emu.fail_prompt(first["id"], "Your prompt was flagged.")
    emu.stall("prompt", second["id"])
    await emu.advance(3600)
    assert (await api.get(f"/prompts/{first['id']}"))[1]["user_error"] == "Your prompt was flagged."
    stuck = (await api.get(f"/prompts/{second['id']}"))[1]
    assert stuck["images"] == [] and stuck["user_error"] is None
    with pytest.raises(ValueError, match="already finished"):
        emu.fail_prompt(first["id"], "again")


async def test_stalled_tune_never_trains_and_holds_its_prompts(api: Api, emu: Emulator) -> None:
    tune = await api.create_tune()
    prompt = await api.create_prompt(tune["id"])
    emu.stall("tune", tune["id"])
    await emu.advance(86_400)
    assert (await api.get(f"/tunes/{tune['id']}"))[1]["trained_at"] is None
    assert (await api.get(f"/prompts/{prompt['id']}"))[1]["images"] == []


async def test_prompts_attributes_start_after_training(api: Api, emu: Emulator) -> None:
    tune = await api.create_tune(
        prompts_attributes=[
            {"text": "sks man, in a suit", "num_images": 2},
            {"text": "sks man, hiking"},
        ]
    )
    prompts = emu.prompts_for(tune["id"])
    assert [p["text"] for p in prompts] == ["sks man, in a suit", "sks man, hiking"]
    assert [p["num_images"] for p in prompts] == [2, 1]
    await emu.advance(100)
    _, listed = await api.get(f"/tunes/{tune['id']}/prompts")
    _, trained = await api.get(f"/tunes/{tune['id']}")
    assert all(p["images"] for p in listed)
    assert all(p["started_training_at"] == trained["trained_at"] for p in listed)


async def test_fast_tune_prompts_are_free_mock_images(api: Api, emu: Emulator) -> None:
    before = emu.balance_mc
    tune = await api.create_tune(branch="fast")
    assert tune["cost_mc"] == 0
    prompt = await api.create_prompt(tune["id"], num_images=4)
    assert prompt["cost_mc"] == 0
    await emu.advance(100)
    _, done = await api.get(f"/prompts/{prompt['id']}")
    assert len(done["images"]) == 4 and all("/mock/" in url for url in done["images"])
    status, data, _ = await fetch_public(done["images"][0])
    assert status == 200 and data.startswith(PNG_SIGNATURE)
    _, trained = await api.get(f"/tunes/{tune['id']}")
    assert "/mock" in trained["ckpt_url"]
    assert emu.balance_mc == before and emu.charges == []


async def test_delete_prompt_both_routes(api: Api) -> None:
    first = await api.create_prompt(690204, text="one")
    second = await api.create_prompt(690204, text="two")
    status, body = await api.call("DELETE", f"/prompts/{first['id']}")
    assert status == 200 and body == {"message": "Prompt successfully deleted"}
    status, body = await api.call("DELETE", f"/tunes/690204/prompts/{second['id']}")
    assert status == 200 and body == {"message": "Prompt successfully deleted"}
    assert (await api.get(f"/prompts/{first['id']}"))[0] == 404
    assert (await api.get("/prompts"))[1] == []


async def test_super_resolution_is_four_times_larger_and_costs_its_extra(
    api: Api, emu: Emulator
) -> None:
    tune = await api.create_tune()
    plain = await api.create_prompt(tune["id"], seed=1)
    upscaled = await api.create_prompt(
        tune["id"], seed=2, super_resolution=True, inpaint_faces=True
    )
    price = emu.config.image_price_mc["sd15"]
    extra = emu.config.super_resolution_price_mc["sd15"]
    assert plain["cost_mc"] == price and upscaled["cost_mc"] == price + extra > price
    assert upscaled["super_resolution"] is True and upscaled["inpaint_faces"] is True
    await emu.advance(300)
    _, done = await api.get(f"/prompts/{upscaled['id']}")
    _, data, _ = await fetch_public(done["images"][0])
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (4 * 512, 4 * 512)


async def test_image_to_image_fetches_its_source_and_records_its_strength(
    api: Api, emu: Emulator, image_host: str
) -> None:
    tune = await api.create_tune()
    source = f"{image_host}/photo.png"
    made = await api.create_prompt(tune["id"], input_image_url=source, denoising_strength=0.35)
    assert made["input_image_url"] == source and made["denoising_strength"] == 0.35
    recorded = emu.account.prompts[made["id"]].request.values
    assert recorded["input_image_url"] == source
    missing = await api.create_prompt(
        tune["id"], status=422, input_image_url=f"{image_host}/nothing.png"
    )
    assert "could not be fetched" in missing["input_image_url"][0]


@pytest.mark.parametrize("flag", ["inpaint_faces", "hires_fix"])
async def test_face_inpainting_needs_super_resolution(api: Api, flag: str) -> None:
    body = await api.create_prompt(690204, status=422, **{flag: True})
    assert body == {flag: ["requires super_resolution"]}
