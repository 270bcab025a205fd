"""A small real discord.py bot on the wire-level Discord fake, through the two overrides."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import discord
import pytest
import yarl
from discord import app_commands, ui
from discord.ext import commands
from PIL import Image

from bot.offline.fakecord import Channel, FakeDiscord, FakeDiscordConfig, Guild, Member


class ManualClock:
    """A clock for the fake's windows that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def png(size: tuple[int, int] = (32, 24), colour: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


@dataclass
class Seen:
    """What the test bot observed, for assertions from the test side."""

    uploads: list[tuple[str, int, bytes, int | None, int | None]] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    menu_files: list[str] = field(default_factory=list)


class PhotoModal(ui.Modal):
    """Name plus two FileUpload fields, each inside a Label, as the real bot's modal."""

    def __init__(self, seen: Seen) -> None:
        super().__init__(title="Create a tune", custom_id="tune:create", timeout=60)
        self.seen = seen
        self.name: ui.TextInput[PhotoModal] = ui.TextInput(label="Name", custom_id="name")
        self.first: ui.FileUpload[PhotoModal] = ui.FileUpload(
            custom_id="photos1", min_values=2, max_values=10
        )
        self.second: ui.FileUpload[PhotoModal] = ui.FileUpload(
            custom_id="photos2", min_values=0, max_values=10, required=False
        )
        self.add_item(ui.Label(text="Name", component=self.name))
        self.add_item(ui.Label(text="Photos", description="2 to 10", component=self.first))
        self.add_item(ui.Label(text="More photos", component=self.second))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        for attachment in [*self.first.values, *self.second.values]:
            data = await attachment.read()
            self.seen.uploads.append(
                (attachment.filename, attachment.size, data, attachment.width, attachment.height)
            )
        await interaction.followup.send(f"{self.name.value}: {len(self.seen.uploads)} photos")


class PressView(ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=60)

    @ui.button(label="Press", custom_id="press")
    async def press(self, interaction: discord.Interaction, button: ui.Button[PressView]) -> None:
        await interaction.response.send_message("pressed", ephemeral=True)


class AskModal(ui.Modal):
    def __init__(self) -> None:
        super().__init__(title="Ask", custom_id="ask", timeout=60)
        self.answer: ui.TextInput[AskModal] = ui.TextInput(label="Answer", custom_id="answer")
        self.add_item(ui.Label(text="Answer", component=self.answer))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.edit_message(content=f"answered {self.answer.value}")


class EditView(ui.View):
    """Buttons that change the message they sit on, in each way Discord allows."""

    def __init__(self) -> None:
        super().__init__(timeout=60)

    @ui.button(label="Edit", custom_id="edit")
    async def edit(self, interaction: discord.Interaction, button: ui.Button[EditView]) -> None:
        await interaction.response.edit_message(content="edited")

    @ui.button(label="Later", custom_id="later")
    async def later(self, interaction: discord.Interaction, button: ui.Button[EditView]) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content="later")
        await interaction.followup.send("and a new message")

    @ui.button(label="Ask", custom_id="ask")
    async def ask(self, interaction: discord.Interaction, button: ui.Button[EditView]) -> None:
        await interaction.response.send_modal(AskModal())

    @ui.select(custom_id="size", options=[discord.SelectOption(label=s) for s in ("S", "L")])
    async def size(self, interaction: discord.Interaction, select: ui.Select[EditView]) -> None:
        await interaction.response.send_message(f"size {select.values[0]}", ephemeral=True)


def make_bot(guild_id: int, seen: Seen) -> commands.Bot:
    intents = discord.Intents.none()
    intents.guilds = True
    bot = commands.Bot(
        command_prefix=commands.when_mentioned, intents=intents, guild_ready_timeout=0.05
    )
    tune = app_commands.Group(name="tune", description="Tunes")
    admin = app_commands.Group(name="admin", description="Admin")
    budget = app_commands.Group(name="budget", description="Budgets", parent=admin)

    @tune.command(name="create", description="Train a tune")
    async def tune_create(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(PhotoModal(seen))

    @budget.command(name="server", description="Server budget")
    async def budget_server(interaction: discord.Interaction, dollars: int) -> None:
        await interaction.response.send_message(f"budget {dollars}", ephemeral=True)

    @app_commands.command(name="echo", description="Echo text, maybe a file")
    async def echo(
        interaction: discord.Interaction, text: str, file: discord.Attachment | None = None
    ) -> None:
        await interaction.response.defer(thinking=True)
        size = 0 if file is None else len(await file.read())
        await interaction.followup.send(f"{text} ({size} bytes)")

    @app_commands.command(name="buttons", description="A button")
    async def buttons(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("press it", view=PressView())

    @app_commands.command(name="edits", description="Editable message")
    async def edits(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("original", view=EditView())

    @app_commands.command(name="late", description="Answers late")
    async def late(interaction: discord.Interaction) -> None:
        await seen.release.wait()
        try:
            await interaction.response.send_message("too late")
        except discord.NotFound as error:
            seen.errors.append(error.code)

    @app_commands.command(name="pick", description="Autocomplete")
    async def pick(interaction: discord.Interaction, fruit: str) -> None:
        await interaction.response.send_message(fruit)

    @pick.autocomplete("fruit")
    async def pick_fruit(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        fruits = ["apple", "apricot", "banana"]
        return [app_commands.Choice(name=f, value=f) for f in fruits if f.startswith(current)]

    async def count_files(interaction: discord.Interaction, message: discord.Message) -> None:
        seen.menu_files.extend(a.filename for a in message.attachments)
        await interaction.response.send_message(f"{len(message.attachments)} files", ephemeral=True)

    async def wave(interaction: discord.Interaction, user: discord.Member) -> None:
        await interaction.response.send_message(f"hi {user.name}", ephemeral=True)

    guild = discord.Object(guild_id)
    bot.tree.add_command(app_commands.ContextMenu(name="Wave", callback=wave), guild=guild)
    slash: list[app_commands.Command[Any, ..., Any] | app_commands.Group] = [
        tune,
        admin,
        echo,
        buttons,
        edits,
        late,
        pick,
    ]
    for command in slash:
        bot.tree.add_command(command, guild=guild)
    bot.tree.add_command(
        app_commands.ContextMenu(name="Count files", callback=count_files), guild=guild
    )

    async def setup_hook() -> None:
        await bot.tree.sync(guild=guild)

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    return bot


@dataclass
class Env:
    fake: FakeDiscord
    bot: commands.Bot
    task: asyncio.Task[None]
    guild: Guild
    channel: Channel
    member: Member
    seen: Seen

    def bot_channel(self, channel: Channel | None = None) -> discord.TextChannel:
        found = self.bot.get_channel((channel or self.channel).id)
        assert isinstance(found, discord.TextChannel)
        return found


Starter = Callable[..., Awaitable[Env]]


@pytest.fixture
async def start() -> AsyncIterator[Starter]:
    """start(config=None, premium_tier=0) -> Env with a connected, synced, ready bot."""
    saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    envs: list[Env] = []

    async def starter(config: FakeDiscordConfig | None = None, premium_tier: int = 0) -> Env:
        fake = FakeDiscord(config or FakeDiscordConfig(token="token"))
        await fake.start()
        discord.http.Route.BASE = fake.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
        guild = await fake.create_guild("Test", premium_tier=premium_tier)
        channel = await fake.create_channel(guild, "general")
        member = await fake.create_member(guild, "alice")
        seen = Seen()
        bot = make_bot(guild.id, seen)
        task = asyncio.create_task(bot.start("token"))
        env = Env(fake, bot, task, guild, channel, member, seen)
        envs.append(env)
        await fake.wait_ready(5)
        await fake.wait_commands(5, guild)
        await asyncio.wait_for(bot.wait_until_ready(), 5)
        return env

    yield starter
    for env in envs:
        await env.bot.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(env.task, 5)
        await env.fake.stop()
    discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


async def eventually(check: Callable[[], object]) -> None:
    """Wait (up to 3 s) until the bot has caught up with an event."""
    deadline = asyncio.get_running_loop().time() + 3.0
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)
