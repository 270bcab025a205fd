"""A server's NSFW mode (schema 13): `show` until an admin sets it, kept across a reopen,
one server's mode not another's, and only the three modes the column allows."""

from __future__ import annotations

import pytest

from bot.rules.nsfw import NsfwMode
from bot.store import Store
from tests.store.helpers import Stores


async def test_the_mode_defaults_to_show_and_is_kept(stores: Stores) -> None:
    store = await stores.open()
    assert (await store.guilds.get(1)).nsfw_mode is NsfwMode.SHOW
    await store.guilds.set_paused(2, True)  # a settings row with the mode never set
    assert (await store.guilds.get(2)).nsfw_mode is NsfwMode.SHOW
    changed = await store.guilds.set_nsfw_mode(1, NsfwMode.REFUSE)
    assert changed.nsfw_mode is NsfwMode.REFUSE and not changed.paused
    await store.guilds.set_nsfw_mode(2, NsfwMode.SPOILER)
    await store.close()
    again = await stores.open()
    assert (await again.guilds.get(1)).nsfw_mode is NsfwMode.REFUSE
    assert (await again.guilds.get(2)).nsfw_mode is NsfwMode.SPOILER
    assert (await again.guilds.get(2)).paused


async def test_the_column_takes_only_the_three_modes(store: Store) -> None:
    with pytest.raises(Exception, match=r"(?i)check"):
        async with store._db.write() as tx:
            await tx.execute(
                "INSERT INTO guild_settings (guild_id, nsfw_mode, updated_at_ms) VALUES (?, ?, ?)",
                (3, "sometimes", 0),
            )
