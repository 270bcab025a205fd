"""Every way a member can act, found by walking the bot itself (the command tree, the
message menus and every registered `DynamicItem`), is driven through SimCord as a banned
member, on a paused server, outside the channel rule, in a thread of an allowed channel,
without the allowed role, in a DM and as another member. Each must refuse with a clear
ephemeral reason and create no job and no ledger row; a thread of an allowed channel is
allowed. With `/admin nsfw mode:refuse`, no entry makes images outside an age-restricted
channel, and a thread of an age-restricted channel counts as one. A command or button
added later is covered without editing this file: it is found, and an entry point whose
kind is not declared (`bot.ui.door.entry`) fails here.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import discord
import pytest
from discord import app_commands
from simcord.backend.errors import SetupError

from bot.actions import door
from bot.rules.nsfw import NsfwMode
from bot.store import JobKind, JobRef, PromptRecord, TuneRecord, TuneState
from bot.ui.base import SORRY, SafeView, answer
from bot.ui.door import EntryKind, entry_kind
from cogs.tunes import MENU_NAME
from tests.bot.conftest import Scene, reply
from tests.conftest import photo

pytestmark = pytest.mark.simcord(strict_sync=False)

RULE_REFUSALS = (door.PAUSED, door.BANNED, door.NOT_HERE, door.NO_ROLE, door.IN_A_SERVER)


@dataclass
class World:
    """The state every case starts from: alice has a ready tune, a delivered result and a
    message with photos, in the channel and in a thread of it."""

    scene: Scene
    tune: TuneRecord
    prompt: PromptRecord
    other: Any  # a second channel
    thread: Any  # a thread of the main channel
    role: Any  # the role a role rule asks for (alice does not have it)
    photos_here: Any  # alice's message with photos, in the channel
    photos_in_thread: Any


@dataclass
class Entry:
    """One entry point: how to drive it as `who` in `where` ("channel", "other",
    "thread" or "dm")."""

    label: str
    kind: EntryKind | None
    has_target: bool  # it acts on something of alice's (a tune, a job, a message)
    drive: Callable[[World, str, str], Awaitable[Any]]


# Values for the required options a command takes, by option name; an option that is not
# here and has no type-based value fails the test (so a new command gets one added).
def _by_name(world: World, name: str) -> object | None:
    values: dict[str, object] = {
        "prompt": "a portrait in soft light",
        "tune": str(world.tune.id),
        "pack": "260",
        "name": world.tune.name,
        "job": str(world.prompt.job),
        "amount": "1",
        "daily": "1",
        "monthly": "2",
    }
    return values.get(name)


TARGET_OPTIONS = frozenset({"tune", "name", "job"})


def _member(world: World, who: str) -> Any:
    return {"alice": world.scene.alice, "bob": world.scene.bob}[who]


def _channel(world: World, where: str) -> Any:
    return {"channel": world.scene.channel, "other": world.other, "thread": world.thread}[where]


def _fill(world: World, command: app_commands.Command[Any, ..., Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for param in command.parameters:
        if not param.required:
            continue
        value = _by_name(world, param.name)
        if value is None and param.choices:
            value = param.choices[0].value
        if value is None and param.type is discord.AppCommandOptionType.user:
            value = world.scene.alice
        if value is None and param.type is discord.AppCommandOptionType.channel:
            value = world.scene.channel
        if value is None and param.type is discord.AppCommandOptionType.role:
            value = world.role
        if value is None:
            pytest.fail(f"/{command.qualified_name}: no value for its option {param.name!r}")
        options[param.name] = value
    return options


def _slash(command: app_commands.Command[Any, ..., Any]) -> Entry:
    async def drive(world: World, who: str, where: str) -> Any:
        options = _fill(world, command)
        member = _member(world, who)
        if where == "dm":
            return await member.user.slash(command.qualified_name, **options)
        return await member.slash(_channel(world, where), command.qualified_name, **options)

    targets = any(p.required and p.name in TARGET_OPTIONS for p in command.parameters)
    return Entry(f"/{command.qualified_name}", entry_kind(command.callback), targets, drive)


def _menu(menu: app_commands.ContextMenu) -> Entry:
    async def drive(world: World, who: str, where: str) -> Any:
        if where == "dm":
            # A message menu runs on a message where it is shown; Discord shows it only
            # in servers when its contexts say so (checked in the payload test below).
            payload = menu.to_dict(world.scene.bot.tree)
            if payload.get("contexts") == [0]:
                raise SetupError("not shown in DMs (reason: context)")
            pytest.fail(f"the menu {menu.name!r} is offered in DMs")
        channel = _channel(world, where)
        message = world.photos_in_thread if where == "thread" else world.photos_here
        if where == "other":
            message = await world.scene.alice.send(
                channel, "photos", attachments=[(f"p{i}.jpg", photo(i)) for i in range(4)]
            )
        return await _member(world, who).context_menu(channel, menu.name, message)

    return Entry(f"menu {menu.name!r}", entry_kind(menu.callback), True, drive)


def _button(item: type[discord.ui.DynamicItem[Any]]) -> Entry:
    async def drive(world: World, who: str, where: str) -> Any:
        for_job = getattr(item, "for_job", None)
        if for_job is None:
            pytest.fail(f"{item.__name__} has no for_job(job): the test cannot press it")
        target = getattr(item, "target", JobKind.PROMPT)
        button = for_job(world.tune.job if target == JobKind.TUNE else world.prompt.job)
        view = SafeView(timeout=None)
        view.add_item(button)
        bot = world.scene.bot
        member = _member(world, who)
        inner = getattr(button, "item", None)
        values = (
            [inner.options[0].value] if isinstance(inner, discord.ui.Select) else None
        )  # a select menu is picked from, not clicked

        async def press(actor: Any, message: Any) -> Any:
            if values is not None:
                return await actor.select(message, values, custom_id=button.custom_id)
            return await actor.click(message, custom_id=button.custom_id)

        if where == "dm":
            dm = await bot.create_dm(discord.Object(member.id))
            sent = await dm.send("a result", view=view)
            return await press(member.user, _handle(member.user.dm_channel, sent.id))
        channel = _channel(world, where)
        target = bot.get_channel(channel.id) or await bot.fetch_channel(channel.id)
        sent = await target.send("a result", view=view)  # type: ignore[union-attr]
        return await press(member, _handle(channel, sent.id))

    kind = getattr(item, "entry", None)
    return Entry(f"button {item.__name__}", kind, True, drive)


def _handle(channel: Any, message_id: int) -> Any:
    return next(m for m in channel.history() if m.id == message_id)


def discover(bot: Any) -> list[Entry]:
    """Every entry point the bot has registered, from the bot itself."""
    tree: app_commands.CommandTree[Any] = bot.tree
    found = [_slash(c) for c in tree.walk_commands() if isinstance(c, app_commands.Command)]
    for kind in (discord.AppCommandType.message, discord.AppCommandType.user):
        for menu in tree.get_commands(type=kind):
            assert isinstance(menu, app_commands.ContextMenu)
            found.append(_menu(menu))
    items = bot._connection._view_store._dynamic_items.values()
    found.extend(_button(item) for item in items)
    return found


@dataclass
class Case:
    name: str
    who: str
    where: str
    expect: str | None  # the refusal's words (None: any clear refusal)
    arrange: Callable[[World], Awaitable[None]] | None = None
    undo: Callable[[World], Awaitable[None]] | None = None


async def _ban(w: World) -> None:
    await w.scene.bot.store.guilds.ban(w.scene.guild.id, w.scene.alice.id, actor_id=None)


async def _unban(w: World) -> None:
    await w.scene.bot.store.guilds.unban(w.scene.guild.id, w.scene.alice.id)


async def _pause(w: World) -> None:
    await w.scene.bot.store.guilds.set_paused(w.scene.guild.id, True)


async def _resume(w: World) -> None:
    await w.scene.bot.store.guilds.set_paused(w.scene.guild.id, False)


async def _channel_rule(w: World) -> None:
    await w.scene.bot.store.guilds.allow_channel(w.scene.guild.id, w.scene.channel.id)


async def _no_channel_rule(w: World) -> None:
    await w.scene.bot.store.guilds.disallow_channel(w.scene.guild.id, w.scene.channel.id)


async def _role_rule(w: World) -> None:
    await w.scene.bot.store.guilds.allow_role(w.scene.guild.id, w.role.id)


async def _no_role_rule(w: World) -> None:
    await w.scene.bot.store.guilds.disallow_role(w.scene.guild.id, w.role.id)


SPENDING_CASES: tuple[Case, ...] = (
    Case("banned", "alice", "channel", door.BANNED, _ban, _unban),
    Case("paused", "alice", "channel", door.PAUSED, _pause, _resume),
    Case(
        "outside the channel rule", "alice", "other", door.NOT_HERE, _channel_rule, _no_channel_rule
    ),
    Case("without the role", "alice", "channel", door.NO_ROLE, _role_rule, _no_role_rule),
    Case("in a DM", "alice", "dm", door.IN_A_SERVER),
    Case("as another member", "bob", "channel", None),
)
# Removing or cancelling one's own things spends nothing: a banned member may still delete
# their tune. Strangers may not, anywhere.
REMOVING_CASES: tuple[Case, ...] = (
    Case("as another member", "bob", "channel", None),
    Case("as another member, in a DM", "bob", "dm", None),
)
ADMIN_CASES: tuple[Case, ...] = (
    Case("as a member without Manage Server", "bob", "channel", door.ADMINS_ONLY),
    Case("in a DM", "alice", "dm", door.IN_A_SERVER),
)
READING_CASES: tuple[Case, ...] = (Case("in a DM", "alice", "dm", None),)
CASES: dict[str, tuple[Case, ...]] = {
    "spends": SPENDING_CASES,
    "removes": REMOVING_CASES,
    "admin": ADMIN_CASES,
    "reads": READING_CASES,
}


async def _counts(world: World) -> tuple[int, int, int]:
    store = world.scene.bot.store
    tunes = prompts = 0
    for member in (world.scene.alice, world.scene.bob):
        tunes += len(await store.tunes.list_for(member.id))
        prompts += len(await store.prompts.list_for(member.id, limit=10_000))
    return tunes, prompts, len(await store.ledger.entries())


def _said(result: Any) -> str:
    if result.modal is not None:
        return "<a form opened>"
    if result.response is None and not result.followups:
        return ""  # unanswered: the member would read "This interaction failed"
    return reply(result)


@dataclass
class Problems:
    found: list[str] = field(default_factory=list)

    def add(self, entry: Entry, case: str, text: str) -> None:
        self.found.append(f"{entry.label} {case}: {text}")


async def check(world: World, entries: list[Entry]) -> list[str]:
    """Drive every entry through the cases of its kind; what went wrong, in words."""
    problems = Problems()
    driven = 0
    for entry in entries:
        if entry.kind is None:
            problems.add(entry, "", "its kind is not declared (bot.ui.door.entry)")
            continue
        for case in CASES[entry.kind]:
            if case.who == "bob" and not entry.has_target:
                continue  # it acts on nothing of anyone else's
            if case.arrange is not None:
                await case.arrange(world)
            before = await _counts(world)
            driven += 1
            try:
                try:
                    result = await entry.drive(world, case.who, case.where)
                except SetupError as exc:
                    # Discord itself would not let the member run it here (not shown in
                    # DMs, or hidden from members without Manage Server).
                    if "context" not in str(exc) and "default-member-permissions" not in str(exc):
                        problems.add(entry, case.name, f"could not be driven: {exc}")
                    continue
                said = _said(result)
                if result.modal is not None:
                    problems.add(entry, case.name, "opened its form instead of refusing")
                elif said == SORRY or not said:
                    problems.add(entry, case.name, f"no clear reason: {said!r}")
                elif case.expect is not None and case.expect not in said:
                    problems.add(entry, case.name, f"refused for another reason: {said!r}")
                if result.response is not None and not result.ephemeral:
                    problems.add(entry, case.name, "answered in public")
                after = await _counts(world)
                if after != before:
                    problems.add(entry, case.name, f"jobs and ledger rows {before} -> {after}")
            finally:
                if case.undo is not None:
                    await case.undo(world)
        if entry.kind == "spends":
            await _check_thread(world, entry, problems)
            await _check_age_restricted(world, entry, problems)
    assert driven >= len(entries), "some entry points were never driven"
    state = await world.scene.bot.store.tunes.get(world.tune.id)
    if state is None or state.state != TuneState.READY:
        problems.found.append("alice's tune was removed by someone else")
    return problems.found


async def _check_thread(world: World, entry: Entry, problems: Problems) -> None:
    """A thread follows its parent's rule: allowed when the parent is."""
    await _channel_rule(world)
    try:
        result = await entry.drive(world, "alice", "thread")
        said = _said(result)
        if said == SORRY or any(r in said for r in RULE_REFUSALS):
            problems.add(entry, "in a thread of an allowed channel", f"refused: {said!r}")
    finally:
        await _no_channel_rule(world)


async def _prompts(world: World) -> int:
    store = world.scene.bot.store
    found = 0
    for member in (world.scene.alice, world.scene.bob):
        found += len(await store.prompts.list_for(member.id, limit=10_000))
    return found


async def _check_age_restricted(world: World, entry: Entry, problems: Problems) -> None:
    """In refuse mode an entry makes no images outside an age-restricted channel (one
    that makes none, like training a tune, may go on), and is not refused for it in a
    thread of an age-restricted channel."""
    guilds = world.scene.bot.store.guilds
    await guilds.set_nsfw_mode(world.scene.guild.id, NsfwMode.REFUSE)
    parent = world.scene.bot.get_channel(world.scene.channel.id)
    assert isinstance(parent, discord.TextChannel)
    try:
        before = await _prompts(world)
        result = await entry.drive(world, "alice", "channel")
        said = _said(result)
        if await _prompts(world) != before:
            problems.add(entry, "in refuse mode outside age-restricted", f"made images: {said!r}")
        elif result.modal is None and door.AGE_RESTRICTED_ONLY not in said:
            problems.add(entry, "in refuse mode outside age-restricted", f"said {said!r}")
        parent.nsfw = True  # what discord.py holds once Discord says the channel is
        result = await entry.drive(world, "alice", "thread")
        said = _said(result)
        if said == SORRY or door.AGE_RESTRICTED_ONLY in said:
            problems.add(entry, "in a thread of an age-restricted channel", f"said {said!r}")
    finally:
        parent.nsfw = False
        await guilds.set_nsfw_mode(world.scene.guild.id, NsfwMode.SHOW)


@pytest.fixture
async def world(scene: Scene) -> World:
    tune = await scene.ready_tune(scene.alice)
    prompt = await scene.prompt(scene.alice, tune)
    for _ in range(10):
        await scene.step(5)
    delivered = await scene.bot.store.prompts.get(prompt.id)
    assert delivered is not None and delivered.state.value == "delivered"
    other = scene.guild.create_text_channel("elsewhere")
    parent = scene.bot.get_channel(scene.channel.id)
    assert isinstance(parent, discord.TextChannel)
    await parent.create_thread(name="a thread", type=discord.ChannelType.public_thread)
    (thread,) = scene.channel.threads
    role = scene.guild.create_role("artists")
    files = [(f"p{i}.jpg", photo(i)) for i in range(4)]
    here = await scene.alice.send(scene.channel, "my photos", attachments=files)
    there = await scene.alice.send(thread, "my photos", attachments=files)
    return World(scene, tune, delivered, other, thread, role, here, there)


async def test_every_entry_point_refuses_whoever_the_rules_refuse(world: World):
    entries = discover(world.scene.bot)
    labels = {e.label for e in entries}
    # What the walk found today (a new entry is checked without being listed here).
    assert {
        "/imagine",
        "/tune create",
        "/tune delete",
        "/admin grant",
        "/admin refund",
        "menu 'Train a tune from these photos'",
        "menu 'Imagine from this image'",
        "button RerollButton",
        "button CancelButton",
    } <= labels, labels
    assert await check(world, entries) == []


class DummyRerollButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"dummy:again:(?P<id>[0-9]+)"
):
    """A button someone might add later: it queues a paid prompt by itself, past the door."""

    entry: ClassVar[EntryKind] = "spends"

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        super().__init__(discord.ui.Button(label="Again", custom_id=f"dummy:again:{job_id}"))

    @classmethod
    def for_job(cls, job: JobRef) -> DummyRerollButton:
        return cls(job.id)

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: Any, match: re.Match[str]
    ) -> DummyRerollButton:
        return cls(int(match["id"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        store = interaction.client.store
        original = await store.prompts.get(self.job_id)
        await store.prompts.create(
            owner_id=interaction.user.id,
            guild_id=original.guild_id,
            channel_id=original.channel_id,
            tune_id=original.tune_id,
            user_text=original.user_text,
            final_text=original.final_text,
            num_images=1,
            price_mc=2_000,
            target_tune_id=original.target_tune_id,
        )
        await answer(interaction, "Again!")


async def test_an_unchecked_button_added_later_is_caught(world: World):
    world.scene.bot.add_dynamic_items(DummyRerollButton)
    entries = [e for e in discover(world.scene.bot) if "Dummy" in e.label]
    assert len(entries) == 1  # found by the walk, not listed anywhere
    problems = await check(world, entries)
    print("\n".join(problems))  # shown with -s: what a developer would read
    assert any("banned" in p and "jobs and ledger rows" in p for p in problems), problems
    assert any("paused" in p for p in problems), problems
    assert any("in refuse mode" in p and "made images" in p for p in problems), problems


async def test_every_command_and_menu_is_guild_only_in_its_payload(scene: Scene):
    # discord.py ignores guild_only on subcommands: the groups and the menu carry it, as
    # `contexts` (0: servers only) and `integration_types` (0: installed to a server).
    tree = scene.bot.tree
    payloads = [c.to_dict(tree) for c in tree.get_commands()]
    payloads += [c.to_dict(tree) for c in tree.get_commands(type=discord.AppCommandType.message)]
    names = {p["name"] for p in payloads}
    assert {"tune", "admin", "imagine", MENU_NAME} <= names
    for payload in payloads:
        assert payload.get("contexts") == [0], payload["name"]
    for payload in payloads:
        if payload["name"] in ("tune", "admin", MENU_NAME):
            assert payload.get("integration_types") == [0], payload["name"]
    with pytest.raises(SetupError, match="context"):
        await scene.alice.user.slash("tune create")


def _placeholders(node: dict[str, Any], path: str) -> list[str]:
    """Every command, subcommand and option under `node` whose description is missing,
    discord.py's placeholder ("…"), or too short to tell a member anything."""
    where = f"{path} {node['name']}".strip()
    description = str(node.get("description", "")).strip()
    found = [f"{where}: {description!r}"] if description in ("", "…", "...") else []
    if 0 < len(description) < 6:
        found.append(f"{where}: {description!r}")
    for option in node.get("options", []):
        found.extend(_placeholders(option, where))
    return found


async def test_every_command_and_option_has_a_real_description(scene: Scene):
    tree = scene.bot.tree
    # Slash commands only: Discord gives context menus no description.
    payloads = [c.to_dict(tree) for c in tree.get_commands(type=discord.AppCommandType.chat_input)]
    assert len(payloads) >= 5
    problems = [p for payload in payloads for p in _placeholders(payload, "")]
    print("\n".join(problems))
    assert problems == []
