"""Fixtures for the emulator tests: a manual clock, started emulators, an HTTP client."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from bot.offline.emulator import Emulator, EmulatorConfig, ManualClock

KEY = "sd_emulator_key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def png_bytes(
    size: tuple[int, int] = (64, 64), colour: tuple[int, int, int] = (10, 20, 30)
) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


class Api:
    """A thin caller over a plain aiohttp session: status and decoded body, nothing clever."""

    def __init__(self, session: aiohttp.ClientSession, emulator: Emulator) -> None:
        self.session = session
        self.emulator = emulator

    @property
    def base(self) -> str:
        return self.emulator.base_url

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, **kwargs) as response:
            text = await response.text()
            if response.content_type == "application/json":
                return response.status, json.loads(text)
            return response.status, text

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("GET", path, **kwargs)

    async def create_tune(
        self, status: int = 201, images: int = 1, **fields: Any
    ) -> dict[str, Any]:
        """POST /tunes as multipart with real PNG uploads; extra fields become tune[...]."""
        form = aiohttp.FormData()
        fields.setdefault("title", "my tune")
        fields.setdefault("name", "man")
        for key, value in fields.items():
            if key == "prompts_attributes":
                for prompt in value:
                    for name, item in prompt.items():
                        form.add_field(f"tune[prompts_attributes][][{name}]", str(item))
            else:
                form.add_field(f"tune[{key}]", str(value))
        for index in range(images):
            form.add_field(
                "tune[images][]", png_bytes(), filename=f"{index}.png", content_type="image/png"
            )
        got, body = await self.call("POST", "/tunes", data=form)
        assert got == status, body
        return body  # type: ignore[no-any-return]

    async def create_prompt(self, tune_id: int, status: int = 201, **fields: Any) -> dict[str, Any]:
        """POST a JSON prompt; unwraps the one-element array Astria sometimes answers with."""
        fields.setdefault("text", "sks man, studio portrait")
        got, body = await self.call("POST", f"/tunes/{tune_id}/prompts", json={"prompt": fields})
        assert got == status, body
        if isinstance(body, list):
            assert len(body) == 1
            return body[0]  # type: ignore[no-any-return]
        return body  # type: ignore[no-any-return]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


StartEmulator = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def start_emulator(clock: ManualClock) -> AsyncIterator[StartEmulator]:
    started: list[Emulator] = []

    async def start(**overrides: Any) -> Emulator:
        emulator = Emulator(EmulatorConfig(**overrides), clock)
        await emulator.start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        await emulator.stop()


@pytest.fixture
async def emu(start_emulator: StartEmulator) -> Emulator:
    return await start_emulator()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=AUTH) as client:
        yield client


@pytest.fixture
def api(session: aiohttp.ClientSession, emu: Emulator) -> Api:
    return Api(session, emu)


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Run a small helper app on 127.0.0.1 and return it with its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def image_host() -> AsyncIterator[str]:
    """A loopback host with one image, one non-image and nothing else."""

    async def picture(request: web.Request) -> web.Response:
        return web.Response(body=png_bytes(), content_type="image/png")

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="not a picture")

    app = web.Application()
    app.router.add_get("/photo.png", picture)
    app.router.add_get("/notes.txt", text)
    runner, base = await serve(app)
    yield base
    await runner.cleanup()


class Receiver:
    """A callback endpoint on 127.0.0.1 that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self.url = ""
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append((request.path_qs, await request.json()))
        self.arrived.set()
        return web.Response(text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", found.handle)
    runner, base = await serve(app)
    found.url = base
    yield found
    await runner.cleanup()
