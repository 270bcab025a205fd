"""Fault injection: every kind, before and after processing, scripts, rates and counters."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bot.offline.emulator import Emulator, Fault

from .conftest import Api, png_bytes


def tune_form(title: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("tune[title]", title)
    form.add_field("tune[name]", "man")
    form.add_field("tune[images][]", png_bytes(), filename="a.png", content_type="image/png")
    return form


@pytest.mark.parametrize(
    ("kind", "status", "created"),
    [
        ("http_500", 500, False),
        ("http_502", 502, False),
        ("http_504", 504, False),
        ("http_500_after", 500, True),
        ("http_504_after", 504, True),
    ],
)
async def test_http_faults_answer_html_and_create_only_when_after(
    api: Api, emu: Emulator, kind: str, status: int, created: bool
) -> None:
    emu.faults.script("POST /tunes", Fault(kind))  # type: ignore[arg-type]
    async with api.session.post(api.base + "/tunes", data=tune_form("f")) as response:
        assert response.status == status
        assert response.content_type == "text/html"
        assert "<html" in (await response.text()).lower()
    assert len(emu.tunes_with_title("f")) == (1 if created else 0)
    assert len(emu.charges) == (1 if created else 0)
    assert emu.requests[-1][2:] == ("POST /tunes", status, kind)
    await api.create_tune(title="next")  # the script is used up


@pytest.mark.parametrize(("retry_after", "header"), [(2.0, "2"), (1.5, "1.5")])
async def test_429_has_retry_after_and_a_json_body(
    api: Api, emu: Emulator, retry_after: float, header: str
) -> None:
    emu.faults.script("GET /users", Fault("http_429", retry_after=retry_after))
    async with api.session.get(api.base + "/users") as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == header
        assert "error" in await response.json()
    assert (await api.get("/users"))[0] == 200


@pytest.mark.parametrize(("kind", "created"), [("drop", False), ("drop_after", True)])
async def test_drop_closes_the_connection_without_a_response(
    api: Api, emu: Emulator, kind: str, created: bool
) -> None:
    emu.faults.script("POST /tunes", Fault(kind))  # type: ignore[arg-type]
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        async with api.session.post(api.base + "/tunes", data=tune_form("d")) as response:
            await response.read()
    assert len(emu.tunes_with_title("d")) == (1 if created else 0)
    assert emu.requests[-1][2:] == ("POST /tunes", None, kind)
    assert (await api.get("/users"))[0] == 200


async def test_latency_makes_a_client_time_out_then_requests_work(api: Api, emu: Emulator) -> None:
    emu.faults.script("GET /users", Fault("latency", delay=0.3))
    with pytest.raises(asyncio.TimeoutError):
        async with api.session.get(
            api.base + "/users", timeout=aiohttp.ClientTimeout(total=0.1)
        ) as response:
            await response.read()
    status, _ = await api.get("/users", timeout=aiohttp.ClientTimeout(total=5))
    assert status == 200


async def test_latency_after_creates_then_holds_the_answer_until_the_client_hangs_up(
    api: Api, emu: Emulator
) -> None:
    # The kill tests' worst moment: Astria has the prompt (and charged it), its client
    # has not heard of it and never will.
    emu.faults.script("POST /tunes/{tune_id}/prompts", Fault("latency_after", delay=600.0))
    with pytest.raises(asyncio.TimeoutError):
        async with api.session.post(
            api.base + "/tunes/690204/prompts",
            json={"prompt": {"text": "held"}},
            timeout=aiohttp.ClientTimeout(total=0.3),
        ) as response:
            await response.read()
    assert [p["text"] for p in emu.our_prompts()] == ["held"]
    assert [c.kind for c in emu.charges] == ["prompt"]
    # The hang-up ends the hold (not the ten minutes): the answer went nowhere.
    deadline = asyncio.get_running_loop().time() + 30.0
    while not emu.requests:
        assert asyncio.get_running_loop().time() < deadline, "the hold outlived the client"
        await asyncio.sleep(0.05)
    assert emu.requests[-1][2:] == ("POST /tunes/{tune_id}/prompts", 201, "latency_after")
    assert (await api.get("/users"))[0] == 200


async def test_scripts_match_routes_in_order(api: Api, emu: Emulator) -> None:
    emu.faults.script("GET /prompts/{id}", Fault("http_500"), Fault("http_502"))
    emu.faults.script(None, Fault("http_504"))
    status, _ = await api.call("POST", "/tunes/690204/prompts", json={"prompt": {"text": "x"}})
    assert status == 504
    prompt = await api.create_prompt(690204, text="x")
    assert (await api.get(f"/prompts/{prompt['id']}"))[0] == 500
    assert (await api.get(f"/prompts/{prompt['id']}.json"))[0] == 502
    assert (await api.get(f"/prompts/{prompt['id']}"))[0] == 200
    assert emu.faults.pending == 0


async def test_any_route_faults_leave_image_files_alone(api: Api, emu: Emulator) -> None:
    prompt = await api.create_prompt(690204, text="x")
    await emu.advance(60)
    emu.faults.script(None, Fault("http_500"))
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(f"{api.base}/files/prompts/{prompt['id']}/0.png") as response,
    ):
        assert response.status == 200
    assert (await api.get("/users"))[0] == 500


async def test_rates_are_random_but_seeded_and_clear_stops_them(api: Api, emu: Emulator) -> None:
    emu.faults.rate(Fault("http_502"), 1.0, route="GET /users")
    assert (await api.get("/users"))[0] == 502
    assert (await api.get("/tunes"))[0] == 200
    emu.faults.clear()
    emu.faults.rate(Fault("http_502"), 0.5)
    statuses = [(await api.get("/users"))[0] for _ in range(40)]
    assert set(statuses) == {200, 502}
    emu.faults.clear()
    assert (await api.get("/users"))[0] == 200
    with pytest.raises(ValueError):
        emu.faults.rate(Fault("http_502"), 1.5)


async def test_counters_count_every_request_per_route_including_faults(
    api: Api, emu: Emulator
) -> None:
    emu.faults.script("GET /users", Fault("http_500"))
    tune = await api.create_tune()
    prompt = await api.create_prompt(tune["id"])
    await api.get(f"/tunes/{tune['id']}")
    await api.get(f"/tunes/{tune['id']}.json")
    await api.get(f"/tunes/{tune['id']}/prompts/{prompt['id']}")
    await api.get("/prompts")
    await api.get("/users")
    await api.get("/users")
    assert emu.counters == {
        "POST /tunes": 1,
        "POST /tunes/{tune_id}/prompts": 1,
        "GET /tunes/{id}": 2,
        "GET /tunes/{tune_id}/prompts/{id}": 1,
        "GET /prompts": 1,
        "GET /users": 2,
    }
    assert [record.status for record in emu.requests if record.route == "GET /users"] == [500, 200]
    assert emu.requests[-2].fault == "http_500"
    assert emu.requests[-2].path == "/users"
