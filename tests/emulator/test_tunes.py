"""Tunes: creation in both encodings, validation, training time, expiry, deletion."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta

import aiohttp
import pytest

from bot.offline.emulator import Emulator, ManualClock

from .conftest import AUTH, Api, StartEmulator, png_bytes


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_missing_or_wrong_key_gets_401_json(emu: Emulator) -> None:
    async with aiohttp.ClientSession() as anonymous:
        for headers in (
            {},
            {"Authorization": "Bearer sd_wrong"},
            {"Authorization": "sd_emulator_key"},
        ):
            async with anonymous.get(emu.base_url + "/tunes", headers=headers) as response:
                assert response.status == 401
                assert response.content_type == "application/json"
                assert "error" in await response.json()


async def test_create_tune_multipart_returns_the_documented_fields(
    api: Api, clock: ManualClock
) -> None:
    tune = await api.create_tune(title="order-1", name="woman", branch="sd15", images=4)
    assert tune["title"] == "order-1"
    assert tune["name"] == "woman"
    assert tune["branch"] == "sd15"
    assert tune["token"] == "sks"
    assert tune["trained_at"] is None
    assert tune["expires_at"] is None
    assert tune["is_api"] is True
    assert len(tune["orig_images"]) == 4
    assert tune["url"] == f"{api.base}/tunes/{tune['id']}.json"
    created = parse(tune["created_at"])
    assert created.timestamp() == pytest.approx(clock.now(), abs=0.001)
    assert tune["created_at"].endswith("Z") and len(tune["created_at"]) == len(
        "2026-01-01T00:00:00.000Z"
    )
    assert parse(tune["eta"]) - created == timedelta(seconds=60)
    status, same = await api.get(f"/tunes/{tune['id']}")
    assert status == 200 and same == tune
    status, same = await api.get(f"/tunes/{tune['id']}.json")
    assert status == 200 and same == tune


async def test_create_tune_json_fetches_loopback_image_urls(api: Api, image_host: str) -> None:
    body = {
        "tune": {
            "title": "json tune",
            "name": "dog",
            "base_tune_id": 1504944,
            "model_type": "lora",
            "image_urls": [f"{image_host}/photo.png", f"{image_host}/photo.png"],
        }
    }
    status, tune = await api.call("POST", "/tunes", json=body)
    assert status == 201, tune
    assert tune["branch"] == "flux1"  # from the base tune
    assert tune["token"] == "ohwx"
    assert tune["base_tune_id"] == 1504944
    assert tune["cost_mc"] == 150_000
    assert len(tune["orig_images"]) == 2


async def test_branch_defaults_to_sd15_without_a_base_tune(api: Api) -> None:
    tune = await api.create_tune()
    assert tune["branch"] == "sd15"


@pytest.mark.parametrize(
    ("fields", "images", "expected"),
    [
        ({"title": ""}, 1, {"title": ["can't be blank"]}),
        ({"name": ""}, 1, {"name": ["can't be blank"]}),
        ({}, 0, {"images": ["must contain at least one image"]}),
        ({"branch": "sd21"}, 1, {"branch": ["is not included in the list"]}),
        ({"model_type": "dreambooth"}, 1, {"model_type": ["is not included in the list"]}),
        ({"preset": "flux-lora-ultra"}, 1, {"preset": ["is not included in the list"]}),
    ],
)
async def test_invalid_tunes_get_rails_style_422(
    api: Api, emu: Emulator, fields: dict[str, str], images: int, expected: dict[str, list[str]]
) -> None:
    body = await api.create_tune(status=422, images=images, **fields)
    assert body == expected
    assert emu.charges == []


async def test_json_tune_without_title_and_name_names_both_fields(api: Api) -> None:
    status, body = await api.call("POST", "/tunes", json={"tune": {"image_urls": ["x"]}})
    assert status == 422
    assert body["title"] == ["can't be blank"]
    assert body["name"] == ["can't be blank"]


async def test_missing_tune_wrapper_is_400(api: Api) -> None:
    status, body = await api.call("POST", "/tunes", json={"title": "flat"})
    assert status == 400
    assert "tune" in body["error"]


async def test_non_image_upload_is_422_naming_its_index(api: Api, emu: Emulator) -> None:
    form = aiohttp.FormData()
    form.add_field("tune[title]", "t")
    form.add_field("tune[name]", "man")
    form.add_field("tune[images][]", png_bytes(), filename="ok.png", content_type="image/png")
    form.add_field("tune[images][]", b"%PDF-1.4 nope", filename="cv.pdf", content_type="image/png")
    status, body = await api.call("POST", "/tunes", data=form)
    assert status == 422
    assert list(body) == ["images"]
    assert "index 1" in body["images"][0] and "cv.pdf" in body["images"][0]
    assert emu.tunes_with_title("t") == []


async def test_oversized_upload_is_422(
    start_emulator: StartEmulator, session: aiohttp.ClientSession
) -> None:
    emu = await start_emulator(max_upload_bytes=1024)
    form = aiohttp.FormData()
    form.add_field("tune[title]", "t")
    form.add_field("tune[name]", "man")
    form.add_field("tune[images][]", png_bytes((256, 256)) + b"\0" * 4096, filename="big.png")
    async with session.post(emu.base_url + "/tunes", data=form) as response:
        assert response.status == 422
        assert "larger than" in (await response.json())["images"][0]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://example.com/photo.jpg", "loopback"),
        ("http://10.0.0.1/photo.jpg", "loopback"),
        ("http://127.0.0.1:{closed}/photo.jpg", "could not be fetched"),
        ("{host}/missing.png", "HTTP 404"),
        ("{host}/notes.txt", "not a valid image"),
    ],
)
async def test_bad_image_urls_get_422(
    api: Api, emu: Emulator, image_host: str, url: str, reason: str
) -> None:
    url = url.format(host=image_host, closed=free_port())
    body = {"tune": {"title": "u", "name": "man", "image_urls": [url]}}
    status, answer = await api.call("POST", "/tunes", json=body)
    assert status == 422
    assert list(answer) == ["image_urls"]
    assert url in answer["image_urls"][0] and reason in answer["image_urls"][0]
    assert emu.tunes_with_title("u") == []


async def test_training_finishes_after_the_clock_passes_jittered_not_on_eta(
    api: Api, emu: Emulator
) -> None:
    tune = await api.create_tune()
    path = f"/tunes/{tune['id']}"
    # train_seconds 60 with jitter 0.2 finishes between 48 s and 72 s.
    await emu.advance(47.9)
    _, now = await api.get(path)
    assert now["trained_at"] is None and now["expires_at"] is None
    await emu.advance(24.2)
    _, done = await api.get(path)
    trained = parse(done["trained_at"])
    created = parse(done["created_at"])
    assert timedelta(seconds=48) <= trained - created <= timedelta(seconds=72)
    assert done["trained_at"] != done["eta"]
    assert parse(done["expires_at"]) - trained == timedelta(days=30)
    assert done["updated_at"] == done["trained_at"]


async def test_same_seed_gives_the_same_timings(clock: ManualClock) -> None:
    finishes = []
    for _ in range(2):
        emulator = Emulator(clock=ManualClock(clock.now()))
        await emulator.start()
        async with aiohttp.ClientSession(headers=AUTH) as session:
            api = Api(session, emulator)
            tune = await api.create_tune()
            await emulator.advance(100)
            finishes.append((await api.get(f"/tunes/{tune['id']}"))[1]["trained_at"])
        await emulator.stop()
    assert finishes[0] == finishes[1]


async def test_expired_tunes_and_their_prompts_are_gone(api: Api, emu: Emulator) -> None:
    tune = await api.create_tune()
    prompt = await api.create_prompt(tune["id"])
    await emu.advance(120)
    _, trained = await api.get(f"/tunes/{tune['id']}")
    expires = parse(trained["expires_at"]).timestamp()
    await emu.advance(expires - emu.clock.now() - 1)
    assert (await api.get(f"/tunes/{tune['id']}"))[0] == 200
    await emu.advance(1)
    assert (await api.get(f"/tunes/{tune['id']}"))[0] == 404
    assert (await api.get(f"/prompts/{prompt['id']}"))[0] == 404
    assert (await api.get("/tunes"))[1] == []
    assert (await api.get("/prompts"))[1] == []
    assert (await api.get(f"/files/prompts/{prompt['id']}/0.png"))[0] == 404


async def test_auto_extend_moves_expires_at_on_and_charges_for_it(
    start_emulator: StartEmulator, session: aiohttp.ClientSession
) -> None:
    emu = await start_emulator(auto_extend=True, auto_extend_price_mc=50_000, balance_mc=10**6)
    api = Api(session, emu)
    tune = await api.create_tune(branch="fast")
    prompt = await api.create_prompt(tune["id"])
    await emu.advance(120)
    path = f"/tunes/{tune['id']}"
    first = parse((await api.get(path))[1]["expires_at"])
    assert (await api.get("/users"))[1]["auto_extend_tunes"] is True
    await emu.advance(first.timestamp() - emu.clock.now())
    status, extended = await api.get(path)
    assert status == 200 and parse(extended["expires_at"]) == first + timedelta(days=30)
    assert (await api.get(f"/prompts/{prompt['id']}"))[0] == 200
    assert [(c.kind, c.cost_mc) for c in emu.charges if c.kind == "extension"] == [
        ("extension", 50_000)
    ]
    # A long gap is charged period by period, while the balance pays for it...
    await emu.advance(65 * 86_400)
    status, later = await api.get(path)
    assert status == 200 and parse(later["expires_at"]) == first + timedelta(days=90)
    assert emu.balance_mc == 10**6 - 3 * 50_000
    # ...and a balance that cannot pay lets the tune go at its date, for good.
    emu.balance_mc = 10_000
    await emu.advance(parse(later["expires_at"]).timestamp() - emu.clock.now())
    assert (await api.get(path))[0] == 404
    emu.balance_mc = 10**6
    assert (await api.get(path))[0] == 404
    assert (await api.get(f"/prompts/{prompt['id']}"))[0] == 404


async def test_without_auto_extend_the_account_says_so_and_nothing_is_charged(
    api: Api, emu: Emulator
) -> None:
    assert (await api.get("/users"))[1]["auto_extend_tunes"] is False
    tune = await api.create_tune(branch="fast")
    await emu.advance(31 * 86_400)
    assert (await api.get(f"/tunes/{tune['id']}"))[0] == 404
    assert emu.charges == []


async def test_faceid_tune_is_trained_at_creation(api: Api) -> None:
    tune = await api.create_tune(model_type="faceid", base_tune_id=690204)
    assert tune["trained_at"] == tune["created_at"]
    assert tune["expires_at"] is not None


@pytest.mark.parametrize("preset", ["flux-lora-portrait", "flux-lora-focus", "flux-lora-fast"])
async def test_a_documented_preset_is_kept_on_the_tune(api: Api, preset: str) -> None:
    tune = await api.create_tune(branch="flux1", model_type="lora", preset=preset)
    assert tune["preset"] == preset
    status, same = await api.get(f"/tunes/{tune['id']}")
    assert status == 200 and same["preset"] == preset


async def test_no_preset_reads_null_astrias_high_preset(api: Api) -> None:
    tune = await api.create_tune(branch="flux1", model_type="lora")
    assert tune["preset"] is None


async def test_sdxl_tunes_are_pti(api: Api) -> None:
    tune = await api.create_tune(branch="sdxl1")
    assert tune["model_type"] == "pti"
    assert tune["token"] == "ohwx"


async def test_gallery_tunes_take_prompts_but_are_not_listed_or_deletable(api: Api) -> None:
    status, flux = await api.get("/tunes/1504944")
    assert status == 200 and flux["branch"] == "flux1" and flux["trained_at"] is not None
    assert (await api.get("/tunes/690204"))[1]["branch"] == "sd15"
    assert (await api.get("/tunes/666678"))[1]["branch"] == "sdxl1"
    assert (await api.get("/tunes"))[1] == []
    status, _ = await api.call("DELETE", "/tunes/1504944")
    assert status == 403
    prompt = await api.create_prompt(1504944, text="a red bicycle")
    assert prompt["tune_id"] == 1504944


async def test_delete_tune_deletes_its_prompts(api: Api, emu: Emulator) -> None:
    tune = await api.create_tune()
    prompt = await api.create_prompt(tune["id"])
    other = await api.create_tune(title="other")
    kept = await api.create_prompt(other["id"])
    status, body = await api.call("DELETE", f"/tunes/{tune['id']}")
    assert status == 200 and body == ""
    assert (await api.get(f"/tunes/{tune['id']}"))[0] == 404
    assert (await api.get(f"/prompts/{prompt['id']}"))[0] == 404
    assert (await api.get(f"/tunes/{tune['id']}/prompts"))[0] == 404
    assert [p["id"] for p in (await api.get("/prompts"))[1]] == [kept["id"]]
    assert emu.tunes_with_title("my tune") == []
    assert emu.prompts_for(tune["id"]) == []
    assert (await api.call("DELETE", f"/tunes/{tune['id']}"))[0] == 404


@pytest.mark.parametrize(
    "path",
    [
        "/tunes/999",
        "/prompts/999",
        "/tunes/999/prompts",
        "/tunes/1504944/prompts/999",
        "/tunes/abc",
    ],
)
async def test_unknown_ids_get_404_json(api: Api, path: str) -> None:
    status, body = await api.get(path)
    assert status == 404
    assert isinstance(body, dict) and "error" in body
    assert (await api.call("DELETE", path))[0] in (404, 405)
