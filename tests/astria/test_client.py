"""Every AstriaClient method against the emulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from bot.astria import (
    AstriaClient,
    Prompt,
    PromptRequest,
    Tune,
    TuneRequest,
    parse_callback,
    unwrap,
)
from bot.offline.emulator import Emulator, EmulatorConfig
from tests.conftest import KEY, FakeTime, MakeClient, photo

FLUX = 1504944


def tune_request(title: str = "order-1", **kw: object) -> TuneRequest:
    fields: dict[str, object] = {"name": "man", "images": [photo(i) for i in range(4)]}
    fields.update(kw)
    return TuneRequest(title=title, **fields)  # type: ignore[arg-type]


async def trained_checkpoint(client: AstriaClient, emulator: Emulator, title: str = "t") -> Tune:
    tune = await client.create_tune(tune_request(title, branch="sd15"))
    await emulator.advance(emulator.config.train_seconds * 2)
    return await client.get_tune(tune.id)


async def test_get_user_reports_the_balance_in_millicents(client: AstriaClient, emulator: Emulator):
    user = await client.get_user()
    assert user.usd_balance_mc == emulator.balance_mc == emulator.config.balance_mc


async def test_create_tune_uploads_photo_bytes_as_multipart(
    client: AstriaClient, emulator: Emulator
):
    tune = await client.create_tune(tune_request("uuid-a", branch="fast"))
    assert tune.id > 0 and tune.title == "uuid-a" and tune.name == "man"
    assert tune.trained_at is None and tune.eta is not None
    stored = emulator.tunes_with_title("uuid-a")
    assert [t["id"] for t in stored] == [tune.id]
    assert len(stored[0]["orig_images"]) == 4
    assert emulator.counters["POST /tunes"] == 1


async def test_create_tune_streams_photos_from_disk(
    client: AstriaClient, emulator: Emulator, tmp_path: Path
):
    paths = []
    for i in range(5):
        path = tmp_path / f"{i}.bin"  # the suffix is not what names the upload
        path.write_bytes(photo(i, fmt="PNG"))
        paths.append(path)
    tune = await client.create_tune(TuneRequest(title="from-disk", name="woman", images=paths))
    assert len(emulator.tunes_with_title("from-disk")[0]["orig_images"]) == 5
    assert tune.name == "woman"


@pytest.fixture
async def photo_server() -> AsyncIterator[str]:
    app = web.Application()

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=photo(int(request.match_info["n"])), content_type="image/jpeg")

    app.router.add_get("/p/{n}.jpg", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_create_tune_from_image_urls_and_with_prompts(
    client: AstriaClient, emulator: Emulator, photo_server: str
):
    urls = [f"{photo_server}/p/{i}.jpg" for i in range(4)]
    request = TuneRequest(
        title="by-url",
        name="dog",
        image_urls=urls,
        branch="sd15",
        prompts=[PromptRequest(text="sks dog on a beach", num_images=2, seed=7)],
    )
    tune = await client.create_tune(request)
    prompts = emulator.prompts_for(tune.id)
    assert [p["text"] for p in prompts] == ["sks dog on a beach"]
    assert len(emulator.tunes_with_title("by-url")[0]["orig_images"]) == 4


async def test_tune_is_trained_only_after_its_time_and_expires_after_30_days(
    client: AstriaClient, emulator: Emulator
):
    tune = await client.create_tune(tune_request("slow", branch="sd15"))
    await emulator.advance(emulator.config.train_seconds * 0.5)
    assert not (await client.get_tune(tune.id)).is_trained
    await emulator.advance(emulator.config.train_seconds)
    done = await client.get_tune(tune.id)
    assert done.is_trained and done.trained_at is not None and done.expires_at is not None
    assert (done.expires_at - done.trained_at).days == 30


async def test_list_and_iterate_tunes_across_pages(make_client: MakeClient, emulator: Emulator):
    client = make_client()
    ours = [await client.create_tune(tune_request(f"page-{i}")) for i in range(3)]
    first = await client.list_tunes(limit=2)
    assert [t.id for t in first] == [ours[2].id, ours[1].id]  # newest first
    second = await client.list_tunes(limit=2, before_id=first[-1].id)
    assert second[0].id == ours[0].id
    before = emulator.counters["GET /tunes"]
    every = [t.id async for t in client.iter_tunes(page_size=2)]
    total = 3 + emulator.config.foreign_tunes
    assert len(every) == len(set(every)) == total
    assert every == sorted(every, reverse=True)
    assert emulator.counters["GET /tunes"] - before == total // 2 + 1


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(api_key=KEY, train_seconds=60, prompt_seconds=10, foreign_tunes=130)


async def test_find_tune_by_title_finds_it_under_other_objects(
    client: AstriaClient, emulator: Emulator
):
    tune = await client.create_tune(tune_request("needle"))
    for i in range(3):
        await client.create_tune(tune_request(f"hay-{i}"))
    found = await client.find_tune("needle")
    assert found is not None and found.id == tune.id
    assert await client.find_tune("absent") is None
    assert await client.find_tune("needle", exclude_ids={tune.id}) is None


async def test_delete_tune_then_it_is_gone(client: AstriaClient, emulator: Emulator):
    from bot.astria import AstriaNotFound

    tune = await client.create_tune(tune_request("doomed"))
    assert await client.delete_tune(tune.id) is True
    with pytest.raises(AstriaNotFound):
        await client.get_tune(tune.id)
    assert await client.delete_tune(tune.id) is False


async def test_prompt_lifecycle_on_a_checkpoint_tune(client: AstriaClient, emulator: Emulator):
    tune = await trained_checkpoint(client, emulator)
    # Two prompts: the emulator answers odd ids with an array, so both shapes are read.
    made = [
        await client.create_prompt(
            tune.id, PromptRequest(text=f"sks man {i}", seed=i, num_images=2)
        )
        for i in range(2)
    ]
    assert all(isinstance(p, Prompt) and p.tune_id == tune.id for p in made)
    assert all(not p.is_done and not p.is_failed for p in made)
    await emulator.advance(emulator.config.prompt_seconds * 2)
    nested = await client.get_prompt(made[0].id, tune_id=tune.id)
    plain = await client.get_prompt(made[0].id)
    assert nested.is_done and plain.images == nested.images and len(nested.images) == 2
    assert isinstance(nested.cfg_scale, float | None)
    data = await client.fetch_image(nested.images[0], max_bytes=5_000_000)
    assert data.startswith(b"\x89PNG") and Image.open(io.BytesIO(data)).size == (512, 512)
    listed = await client.list_prompts(tune_id=tune.id)
    assert {p.id for p in listed} == {p.id for p in made}
    everywhere = [p.id async for p in client.iter_prompts(page_size=1)]
    assert set(everywhere) >= {p.id for p in made}
    assert await client.delete_prompt(made[1].id, tune_id=tune.id) is True
    assert {p.id for p in await client.list_prompts(tune_id=tune.id)} == {made[0].id}


async def test_lora_prompt_goes_to_the_base_tune(client: AstriaClient, emulator: Emulator):
    lora = await client.create_tune(
        tune_request("lora", branch="flux1", base_tune_id=FLUX, model_type="lora", token="ohwx")
    )
    await emulator.advance(emulator.config.train_seconds * 2)
    prompt = await client.create_prompt(
        FLUX, PromptRequest(text=f"<lora:{lora.id}:1> ohwx man", num_images=3, seed=11)
    )
    assert prompt.cost_mc == 3 * emulator.config.image_price_mc["flux1"]
    await emulator.advance(emulator.config.prompt_seconds * 2)
    assert len((await client.get_prompt(prompt.id)).images) == 3


async def test_failed_prompt_reports_user_error(client: AstriaClient, emulator: Emulator):
    tune = await trained_checkpoint(client, emulator)
    prompt = await client.create_prompt(
        tune.id, PromptRequest(text="sks man EMULATOR_FAIL", seed=1)
    )
    await emulator.advance(emulator.config.prompt_seconds * 2)
    failed = await client.get_prompt(prompt.id)
    assert failed.is_failed and not failed.is_done and failed.user_error


async def test_fetch_image_refuses_oversize_and_sends_no_key(
    client: AstriaClient, emulator: Emulator
):
    from bot.astria import AstriaBadResponse

    tune = await trained_checkpoint(client, emulator)
    prompt = await client.create_prompt(tune.id, PromptRequest(text="sks man", seed=3))
    await emulator.advance(30)
    url = (await client.get_prompt(prompt.id)).images[0]
    with pytest.raises(AstriaBadResponse):
        await client.fetch_image(url, max_bytes=100)
    image_requests = [r for r in emulator.requests if r.path.startswith("/files/")]
    assert image_requests, "the image was fetched from the emulator"


def test_callback_bodies_are_unwrapped():
    tune = parse_callback({"tune": {"id": 5, "title": "x", "trained_at": None}})
    prompt = parse_callback({"prompt": {"id": 9, "images": ["u"], "cfg_scale": "3.0"}})
    bare = parse_callback({"id": 10, "tune_id": 5, "images": []})
    assert isinstance(tune, Tune) and tune.id == 5
    assert isinstance(prompt, Prompt) and prompt.cfg_scale == 3.0 and prompt.is_done
    assert isinstance(bare, Prompt) and bare.id == 10
    assert parse_callback("junk") is None
    assert unwrap([{"id": 1}], "prompt") == {"id": 1}


async def test_a_fresh_session_closes_cleanly(emulator: Emulator, fake_time: FakeTime):
    # One client over one session; closing the session ends everything it opened.
    from pydantic import SecretStr

    async with aiohttp.ClientSession() as own:
        client = AstriaClient(own, SecretStr(KEY), base_url=emulator.base_url)
        assert (await client.get_user()).id
    assert own.closed
