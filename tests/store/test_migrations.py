"""Opening the database: folders, WAL, migrations by user_version, refusing a newer schema."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.store import MigrationFailed, SchemaTooNew, Store, StoreError
from bot.store.db import Database, Migration, bundled_migrations
from tests.store.helpers import job, make_settings, open_store

LATEST = bundled_migrations()[-1].version


def pragma(path: Path, name: str) -> object:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


async def test_opening_creates_folder_and_schema_in_wal_mode(tmp_path: Path):
    path = tmp_path / "nested" / "data" / "bot.sqlite3"
    store = await open_store(path)
    await store.close()
    assert path.exists()
    assert store.schema_version == LATEST
    assert pragma(path, "user_version") == LATEST
    assert pragma(path, "journal_mode") == "wal"


async def test_reopening_migrates_nothing_and_keeps_the_data(tmp_path: Path):
    path = tmp_path / "bot.sqlite3"
    store = await open_store(path)
    kept = await store.ledger.reserve(guild_id=1, user_id=2, job=job(1), amount_mc=5)
    await store.close()
    for _ in range(2):
        store = await open_store(path, balance_mc=None)
        assert store.schema_version == LATEST
        assert [e.id for e in await store.ledger.entries()] == [kept.id]  # type: ignore[union-attr]
        await store.close()


async def test_a_database_from_a_newer_bot_refuses_to_start(tmp_path: Path):
    path = tmp_path / "bot.sqlite3"
    await (await open_store(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST + 6}")
    with pytest.raises(SchemaTooNew) as refused:
        await Store.open(path, settings=make_settings())
    message = str(refused.value)
    assert f"schema {LATEST + 6}, this version knows {LATEST}" in message
    assert "upgrade the bot or restore a backup" in message
    assert pragma(path, "user_version") == LATEST + 6  # untouched


async def test_a_later_migration_upgrades_an_existing_database(tmp_path: Path):
    path = tmp_path / "bot.sqlite3"
    first = bundled_migrations()
    extra = Migration(LATEST + 1, "notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY, t TEXT);")
    await (await Store.open(path, settings=make_settings(), migrations=first)).close()
    store = await Store.open(path, settings=make_settings(), migrations=(*first, extra))
    assert store.schema_version == LATEST + 1
    await store.close()
    assert pragma(path, "user_version") == LATEST + 1


async def test_a_failing_migration_leaves_the_previous_schema_whole(tmp_path: Path):
    path = tmp_path / "bot.sqlite3"
    broken = Migration(
        LATEST + 1,
        "broken",
        "CREATE TABLE half_done (id INTEGER);\nINSERT INTO no_such_table VALUES (1);",
    )
    with pytest.raises(MigrationFailed, match=f"still at schema {LATEST}"):
        await Store.open(path, settings=make_settings(), migrations=(*bundled_migrations(), broken))
    assert pragma(path, "user_version") == LATEST
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in tables and "ledger" in tables


async def test_two_openers_of_a_new_file_migrate_it_once(tmp_path: Path):
    path = tmp_path / "bot.sqlite3"
    stores = await asyncio.gather(*(Store.open(path, settings=make_settings()) for _ in range(3)))
    assert {s.schema_version for s in stores} == {LATEST}
    for store in stores:
        await store.close()


def test_migrations_must_be_numbered_without_gaps():
    with pytest.raises(StoreError, match="numbered"):
        asyncio.run(
            Database.open(":memory:", migrations=(Migration(1, "a", ""), Migration(3, "c", "")))
        )


def test_trigger_bodies_stay_whole_when_a_script_is_cut_into_statements():
    (migration,) = bundled_migrations()[:1]
    statements = migration.statements()
    triggers = [s for s in statements if s.upper().lstrip().startswith("CREATE TRIGGER")]
    assert triggers and all(s.rstrip().upper().endswith("END;") for s in triggers)
    assert all(sqlite3.complete_statement(s) for s in statements)


async def test_the_ledger_refuses_updates_and_deletes(tmp_path: Path):
    path = tmp_path / "bot.sqlite3"
    store = await open_store(path)
    await store.ledger.reserve(guild_id=1, user_id=2, job=job(1), amount_mc=5)
    await store.close()
    with sqlite3.connect(path) as conn:
        for statement in ("UPDATE ledger SET amount_mc = 0", "DELETE FROM ledger"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)


async def test_the_ledger_lets_an_erased_member_lose_their_id_and_nothing_else(tmp_path: Path):
    # Schema 9: the one UPDATE allowed puts 0 ("an erased member") in place of the member
    # or actor id; every other change, or another id, is refused as before.
    path = tmp_path / "bot.sqlite3"
    store = await open_store(path)
    await store.ledger.reserve(guild_id=1, user_id=2, job=job(1), amount_mc=5)
    await store.close()
    with sqlite3.connect(path) as conn:
        for statement in (
            "UPDATE ledger SET user_id = 3",
            "UPDATE ledger SET user_id = 0, amount_mc = 4",
            "UPDATE ledger SET actor_id = 0, note = 'x'",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)
        conn.execute("UPDATE ledger SET user_id = 0, actor_id = 0")
        assert conn.execute("SELECT user_id, actor_id, amount_mc FROM ledger").fetchall() == [
            (0, 0, 5)
        ]


async def test_a_write_inside_a_write_is_an_error_not_a_deadlock(tmp_path: Path):
    db = await Database.open(tmp_path / "bot.sqlite3")
    try:
        async with db.write():
            with pytest.raises(StoreError, match="inside another"):
                async with db.write():
                    pass
    finally:
        await db.close()


BAN = "INSERT INTO guild_bans (guild_id, user_id, banned_at_ms) VALUES (1, 2, 0)"


async def test_an_error_inside_a_transaction_rolls_all_of_it_back(tmp_path: Path):
    db = await Database.open(tmp_path / "bot.sqlite3")
    try:
        with pytest.raises(RuntimeError):
            async with db.write() as tx:
                await tx.execute(BAN)
                raise RuntimeError("boom")
        assert await db.fetchall("SELECT * FROM guild_bans") == []
        async with db.write() as tx:  # the connection is usable again
            await tx.execute(BAN)
        assert len(await db.fetchall("SELECT * FROM guild_bans")) == 1
    finally:
        await db.close()


async def test_a_cancelled_transaction_rolls_back_and_frees_the_writer(tmp_path: Path):
    db = await Database.open(tmp_path / "bot.sqlite3")
    inside = asyncio.Event()

    async def interrupted() -> None:
        async with db.write() as tx:
            await tx.execute(BAN)
            inside.set()
            await asyncio.Event().wait()  # until cancelled

    try:
        task = asyncio.create_task(interrupted())
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with db.write() as tx:
            assert await tx.fetchall("SELECT * FROM guild_bans") == []
    finally:
        await db.close()


async def test_prompts_from_before_schema_5_get_where_they_were_posted(tmp_path: Path):
    path = tmp_path / "bot.sqlite3"
    four = tuple(m for m in bundled_migrations() if m.version <= 4)
    await (await Store.open(path, settings=make_settings(), migrations=four)).close()
    with sqlite3.connect(path) as conn:
        tunes = [
            (1, "flux-lora", "flux1", 11),  # LoRA on a paid branch: the base tune, tag in text
            (2, "sd15-checkpoint", "sd15", 22),  # a checkpoint takes its prompts itself
            (3, "flux-lora", "fast", 33),  # the free branch: always the tune itself
            (4, "faceid", "sd15", None),  # never reached Astria
        ]
        for tune_id, profile, branch, astria_id in tunes:
            conn.execute(
                "INSERT INTO tunes (id, title, owner_id, guild_id, channel_id, name, name_key,"
                " subject_class, profile, branch, state, astria_id, created_at_ms, updated_at_ms)"
                " VALUES (?, ?, 1, 1, 1, 'me', ?, 'man', ?, ?, 'ready', ?, 0, 0)",
                (tune_id, f"t{tune_id}", f"me{tune_id}", profile, branch, astria_id),
            )
            conn.execute(
                "INSERT INTO prompts (id, owner_id, guild_id, channel_id, tune_id, user_text,"
                " final_text, seed, num_images, created_at_ms, updated_at_ms)"
                " VALUES (?, 1, 1, 1, ?, 'x', 'x', 5, 1, 0, 0)",
                (tune_id, tune_id),
            )
    store = await Store.open(path, settings=make_settings(flux_base_tune_id=1504944))
    targets = {i: (await store.prompts.get(i)).target_tune_id for i in (1, 2, 3, 4)}  # type: ignore[union-attr]
    assert targets == {1: 1504944, 2: 22, 3: 33, 4: None}
    await store.close()


async def test_a_balance_reading_from_before_schema_8_keeps_counting_the_same_settles(
    tmp_path: Path,
):
    """The reading's mark is the last ledger row stamped before it: the settles it counted
    by time it counts by id after the upgrade."""
    path = tmp_path / "bot.sqlite3"
    seven = tuple(m for m in bundled_migrations() if m.version <= 7)
    await (await Store.open(path, settings=make_settings(), migrations=seven)).close()
    with sqlite3.connect(path) as conn:
        for row_id, at_ms in ((1, 1_000), (2, 2_000), (3, 3_000)):
            conn.execute(
                "INSERT INTO ledger (id, kind, guild_id, job, amount_mc, at_ms, period_at_ms)"
                " VALUES (?, 'adjust', 0, ?, 5, ?, ?)",
                (row_id, f"prompt:{row_id}", at_ms, at_ms),
            )
        conn.execute(
            "INSERT INTO account_balance (id, balance_mc, read_at_ms) VALUES (1, 100, 2000)"
        )
    store = await Store.open(path, settings=make_settings())
    assert pragma(path, "user_version") == LATEST
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT ledger_mark FROM account_balance").fetchone()[0] == 1
    account = (await store.ledger.budget(1, 7)).account
    assert account is not None and account.used_mc == 10  # rows 2 and 3, as before
    await store.close()
