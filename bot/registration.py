"""Registering the slash commands with Discord so they can never show twice.

Discord shows a server both the global set and that server's own copy: a copy left behind
by `astria-bot sync --guild` (or `DEV_GUILD_ID`) next to the global set lists every command
twice there. So the two are kept apart, and the store remembers where copies are:

- global mode (the default): the global set is registered (when it changed) and every
  server copy this bot made is removed;
- server mode (`DEV_GUILD_ID`, or `sync --guild ID`: a test bot): the copy is registered in
  that server and the global set is removed;
- `sync --clear [--guild ID]` removes the global set, or one server's copy.

Each register is a bulk overwrite, never a blind one on every start (Discord rate-limits
them): a digest of the payload, kept in the store's meta table, says when it changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field

import discord
from discord import app_commands

from bot.store.meta import Meta

log = logging.getLogger(__name__)

GLOBAL_KEY = "commands:global"
COPIES_KEY = "commands:guild-copies"  # JSON list of server ids holding a copy


def _guild_key(guild_id: int) -> str:
    return f"commands:{guild_id}"


@dataclass
class Registered:
    """What one registration did, for the CLI's words and the tests."""

    registered: list[str] = field(default_factory=list)  # command names, when registered
    where: str = ""
    cleared: list[str] = field(default_factory=list)  # "everywhere", "server 123", ...


def _digest(tree: app_commands.CommandTree[discord.Client], guild: discord.Object | None) -> str:
    commands = tree.get_commands(guild=guild)
    payload = sorted(json.dumps(c.to_dict(tree), sort_keys=True) for c in commands)
    return hashlib.sha256("\n".join(payload).encode()).hexdigest()


async def _copies(meta: Meta) -> list[int]:
    raw = await meta.get(COPIES_KEY)
    try:
        return sorted({int(g) for g in json.loads(raw)}) if raw else []
    except (ValueError, TypeError):
        return []


async def _set_copies(meta: Meta, guilds: list[int]) -> None:
    await meta.set(COPIES_KEY, json.dumps(sorted(set(guilds))))


async def register(
    client: discord.Client,
    tree: app_commands.CommandTree[discord.Client],
    meta: Meta,
    guild_id: int | None,
    *,
    force: bool = False,
) -> Registered:
    """Register the commands globally (`guild_id` None) or in one server, and remove the
    other scope's, so no server lists a command twice. `force` registers even when the
    digest says nothing changed (the CLI: the operator asked)."""
    app_id = client.application_id
    assert app_id is not None, "register after login"
    done = Registered()
    if guild_id is None:
        key, guild, done.where = GLOBAL_KEY, None, "everywhere"
    else:
        guild = discord.Object(guild_id)
        tree.copy_global_to(guild=guild)
        key, done.where = _guild_key(guild_id), f"in server {guild_id}"
    digest = _digest(tree, guild)
    if force or await meta.get(key) != digest:
        synced = await tree.sync(guild=guild)
        await meta.set(key, digest)
        done.registered = sorted(c.name for c in synced)
    copies = await _copies(meta)
    if guild_id is None:
        for other in copies:
            await client.http.bulk_upsert_guild_commands(app_id, other, [])
            await meta.set(_guild_key(other), "")
            done.cleared.append(f"server {other}")
        await _set_copies(meta, [])
    else:
        await _set_copies(meta, [*copies, guild_id])
        if force or await meta.get(GLOBAL_KEY) != "":
            await client.http.bulk_upsert_global_commands(app_id, [])
            await meta.set(GLOBAL_KEY, "")  # the next global start registers again
            done.cleared.append("everywhere")
    return done


async def clear(client: discord.Client, meta: Meta, guild_id: int | None) -> Registered:
    """Remove the global set, or one server's copy (`sync --clear`)."""
    app_id = client.application_id
    assert app_id is not None, "clear after login"
    done = Registered()
    if guild_id is None:
        await client.http.bulk_upsert_global_commands(app_id, [])
        await meta.set(GLOBAL_KEY, "")
        done.cleared.append("everywhere")
    else:
        await client.http.bulk_upsert_guild_commands(app_id, guild_id, [])
        await meta.set(_guild_key(guild_id), "")
        await _set_copies(meta, [g for g in await _copies(meta) if g != guild_id])
        done.cleared.append(f"server {guild_id}")
    return done
