"""The three list routes: newest first, limit, before_id, offset, filters, foreign objects."""

from __future__ import annotations

import aiohttp
import pytest

from bot.offline.emulator import Emulator

from .conftest import Api, StartEmulator


async def walk(api: Api, path: str, limit: int) -> list[list[int]]:
    """Every page of a list route by the keyset cursor, until an empty page."""
    pages: list[list[int]] = []
    before: int | None = None
    while True:
        query = f"?limit={limit}" + (f"&before_id={before}" if before is not None else "")
        status, items = await api.get(path + query)
        assert status == 200 and isinstance(items, list)
        if not items:
            return pages
        pages.append([item["id"] for item in items])
        before = items[-1]["id"]


async def test_prompt_pages_newest_first_by_before_id(api: Api) -> None:
    made = [(await api.create_prompt(690204, text=f"fruit {n}"))["id"] for n in range(7)]
    pages = await walk(api, "/prompts", limit=3)
    assert [len(page) for page in pages] == [3, 3, 1]
    flat = [item for page in pages for item in page]
    assert flat == sorted(made, reverse=True)
    assert await walk(api, "/tunes/690204/prompts", limit=5) == [flat[:5], flat[5:]]


async def test_default_limit_is_20(api: Api) -> None:
    for n in range(21):
        await api.create_prompt(690204, text=f"tree {n}")
    status, items = await api.get("/prompts")
    assert status == 200 and len(items) == 20


@pytest.mark.parametrize("path", ["/tunes", "/prompts", "/tunes/690204/prompts"])
async def test_limit_must_be_1_to_120(api: Api, path: str) -> None:
    assert (await api.get(path + "?limit=120"))[0] == 200
    for bad in ("121", "0", "-1", "ten"):
        status, body = await api.get(f"{path}?limit={bad}")
        assert status == 400 and "error" in body


async def test_offset_limits(api: Api) -> None:
    assert (await api.get("/tunes?offset=200"))[0] == 200
    assert (await api.get("/tunes?offset=201"))[0] == 400
    assert (await api.get("/prompts?offset=10000"))[0] == 200
    assert (await api.get("/prompts?offset=10001"))[0] == 400
    assert (await api.get("/tunes/690204/prompts?offset=10001"))[0] == 400


async def test_offset_pages(api: Api) -> None:
    made = [(await api.create_tune(title=f"t{n}"))["id"] for n in range(5)]
    _, items = await api.get("/tunes?offset=2&limit=2")
    assert [item["id"] for item in items] == sorted(made, reverse=True)[2:4]


async def test_foreign_objects_are_older_and_fill_later_pages(
    start_emulator: StartEmulator, session: aiohttp.ClientSession
) -> None:
    emu = await start_emulator(foreign_tunes=30, foreign_prompts=130)
    api = Api(session, emu)
    ours = await api.create_tune(title="ours")
    tunes = await walk(api, "/tunes", limit=20)
    assert [len(page) for page in tunes] == [20, 11]
    assert tunes[0][0] == ours["id"]
    assert all(other < ours["id"] for other in tunes[0][1:] + tunes[1])
    _, foreign = await api.get(f"/tunes/{tunes[1][-1]}")
    assert foreign["trained_at"] is not None and foreign["is_api"] is False
    prompt = await api.create_prompt(ours["id"])
    _, first_page = await api.get("/prompts?limit=120")
    assert first_page[0]["id"] == prompt["id"] and len(first_page) == 120
    assert all(p["images"] for p in first_page[1:])
    pages = await walk(api, "/prompts", limit=120)
    assert sum(len(page) for page in pages) == 131
    assert emu.tunes_with_title("ours") == [(await api.get(f"/tunes/{ours['id']}"))[1]]


async def test_filters(api: Api, emu: Emulator) -> None:
    first = await api.create_tune(title="alpha", branch="fast")
    await api.create_tune(title="beta")
    _, found = await api.get("/tunes?title=alpha")
    assert [t["id"] for t in found] == [first["id"]]
    _, found = await api.get("/tunes?branch=sd15")
    assert [t["title"] for t in found] == ["beta"]
    one = await api.create_prompt(first["id"], text="sks man", seed=7)
    await api.create_prompt(first["id"], text="sks man", seed=8)
    await api.create_prompt(690204, text="sks man")
    _, found = await api.get(f"/prompts?tune_id={first['id']}&text=sks%20man")
    assert len(found) == 2 and found[-1]["id"] == one["id"]
    _, found = await api.get("/prompts?text=nothing")
    assert found == []
    assert (await api.get("/prompts?tune_id=abc"))[0] == 400
