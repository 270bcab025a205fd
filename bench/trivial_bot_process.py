"""The baseline bot of `bench.command_latency` and `bench.results_latency`: a trivial
discord.py process on the same transport as the real bot (aiohttp, the gateway websocket,
the `Route.BASE` override), doing none of the bot's work.

- `/help`, `/balance`, `/imagine prompt tune`: a thinking defer (as the bot answers them
  first), then one ephemeral followup.
- `/tune create`: a one-field modal as the first response (as the bot's form).
- `POST /callback/{channel_id}` (an Astria callback, trusted blindly): answered at once;
  then the prompt's images are downloaded one after another, as the bot does, and posted
  in the channel as files in one message whose content is `prompt <id>`.

It prints one JSON line, `{"ready": true, "callback_port": N}`, once it is connected and its
commands are synced, then runs until SIGTERM. `TrivialBot` starts and stops it from a
benchmark.

    .venv/bin/python -m bench.trivial_bot_process --api-base URL --gateway URL
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import discord
import yarl
from aiohttp import web
from discord import app_commands

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "trivial.bot.token"  # noqa: S105 - the fake accepts any token; never a real one


# ---------------------------------------------------------------------- the child


class TrivialForm(discord.ui.Modal, title="New tune"):
    name: discord.ui.TextInput[TrivialForm] = discord.ui.TextInput(label="Name")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("ok", ephemeral=True)


class Trivial(discord.Client):
    def __init__(self) -> None:
        super().__init__(intents=discord.Intents(guilds=True), guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.session: aiohttp.ClientSession | None = None
        self.posting: set[asyncio.Task[None]] = set()
        self.synced = asyncio.Event()
        self._add_commands()

    def _add_commands(self) -> None:
        async def deferred(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            await interaction.followup.send("ok", ephemeral=True)

        @self.tree.command(name="help", description="Baseline: defer, then a followup")
        async def help_(interaction: discord.Interaction) -> None:
            await deferred(interaction)

        @self.tree.command(name="balance", description="Baseline: defer, then a followup")
        async def balance(interaction: discord.Interaction) -> None:
            await deferred(interaction)

        @self.tree.command(name="imagine", description="Baseline: defer, then a followup")
        async def imagine(interaction: discord.Interaction, prompt: str, tune: str) -> None:
            await deferred(interaction)

        tune_group = app_commands.Group(name="tune", description="Baseline tunes")

        @tune_group.command(name="create", description="Baseline: a modal first")
        async def create(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(TrivialForm())

        self.tree.add_command(tune_group)

    async def setup_hook(self) -> None:
        self.session = aiohttp.ClientSession()
        await self.tree.sync()
        self.synced.set()

    async def close(self) -> None:
        for task in list(self.posting):
            task.cancel()
        if self.session is not None:
            await self.session.close()
        await super().close()

    async def on_callback(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["channel_id"])
        body: dict[str, Any] = await request.json()
        prompt = body.get("prompt") or {}
        task = asyncio.create_task(self.post_images(channel_id, prompt))
        self.posting.add(task)
        task.add_done_callback(self.posting.discard)
        return web.json_response({"ok": True})

    async def post_images(self, channel_id: int, prompt: dict[str, Any]) -> None:
        assert self.session is not None
        files: list[discord.File] = []
        for n, url in enumerate(prompt.get("images") or [], start=1):
            async with self.session.get(url) as response:
                data = await response.read()
            files.append(discord.File(io.BytesIO(data), filename=f"{prompt.get('id')}-{n}.png"))
        channel = self.get_partial_messageable(channel_id)
        await channel.send(content=f"prompt {prompt.get('id')}", files=files)


async def run(api_base: str, gateway: str) -> None:
    discord.http.Route.BASE = api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
    client = Trivial()
    app = web.Application()
    app.router.add_post(r"/callback/{channel_id:\d+}", client.on_callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = int(runner.addresses[0][1])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with client:
            connection = asyncio.create_task(client.start(TOKEN))
            await client.wait_until_ready()
            await client.synced.wait()
            print(json.dumps({"ready": True, "callback_port": port}), flush=True)
            await stop.wait()
            await client.close()
            with contextlib.suppress(asyncio.CancelledError):
                await connection
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-base", required=True)
    parser.add_argument("--gateway", required=True)
    args = parser.parse_args(argv)
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False
    asyncio.run(run(args.api_base, args.gateway))
    return 0


# ---------------------------------------------------------------------- the parent's handle


class TrivialBot:
    """The trivial bot as a child process of a benchmark, connected to a Discord fake."""

    def __init__(self, api_base: str, gateway: str, log: Path) -> None:
        self.api_base = api_base
        self.gateway = gateway
        self.log = log
        self.callback_port = 0
        self._process: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        with self.log.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.trivial_bot_process",
                "--api-base",
                self.api_base,
                "--gateway",
                self.gateway,
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        assert self._process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self._process.stdout.readline()
                if not line:
                    raise RuntimeError(f"the trivial bot exited; see {self.log}")
                if line.startswith(b"{"):
                    self.callback_port = int(json.loads(line)["callback_port"])
                    return

    def callback_url(self, channel_id: int) -> str:
        return f"http://127.0.0.1:{self.callback_port}/callback/{channel_id}"

    async def stop(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15.0)
        except TimeoutError:
            process.kill()
            await process.wait()


if __name__ == "__main__":
    raise SystemExit(main())
