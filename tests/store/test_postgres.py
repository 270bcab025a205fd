"""The PostgreSQL backend: its migrations twin SQLite's, from empty and under several
openers; the ledger's triggers hold there too; Discord's 64-bit ids fit; placeholders are
numbered without touching strings, casts or comments. (The repositories' own tests run on
both backends through the `stores` fixture.)"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import asyncpg
import pytest
from pydantic import SecretStr

from bot.offline.emulator import Emulator
from bot.store import IntegrityViolation, MigrationFailed, SchemaTooNew, Store, StoreError
from bot.store.db import Migration, bundled_migrations
from bot.store.postgres import describe, drop_schema, fresh_schema, numbered
from tests.conftest import KEY
from tests.pg import TEST_DATABASE_URL, Schemas, base_url
from tests.store.helpers import job, make_settings, open_store

LATEST = bundled_migrations()[-1].version
# The tests below that need a server skip themselves (base_url) without TEST_DATABASE_URL.
needs_server = pytest.mark.postgres


@pytest.fixture
async def schemas() -> AsyncIterator[Schemas]:
    made = Schemas()
    yield made
    await made.drop_all()


def test_every_sqlite_migration_has_a_postgres_twin_of_the_same_number_and_name():
    sqlite = [(m.version, m.name) for m in bundled_migrations("sqlite")]
    postgres = [(m.version, m.name) for m in bundled_migrations("postgres")]
    assert postgres == sqlite


def test_placeholders_are_numbered_outside_strings_casts_and_comments():
    sql, args = numbered("SELECT '?', x::text, ? -- not ? here\nFROM t WHERE b = ?", (1, 2))
    assert sql == "SELECT '?', x::text, $1 -- not ? here\nFROM t WHERE b = $2"
    assert args == [1, 2]
    sql, args = numbered("SELECT ':no' WHERE a = :a OR (:b IS NULL AND c = :a)", {"a": 1, "b": 2})
    assert sql == "SELECT ':no' WHERE a = $1 OR ($2 IS NULL AND c = $1)"
    assert args == [1, 2]


def test_messages_name_the_server_never_the_password():
    where = describe(SecretStr("postgresql://bot:hunter2@db.internal:5433/bot?sslmode=require"))
    assert where == "postgresql://db.internal:5433/bot"


async def columns_in_sqlite(tmp_path: Path) -> dict[str, set[str]]:
    path = tmp_path / "bot.sqlite3"
    await (await open_store(path, balance_mc=None)).close()
    with sqlite3.connect(path) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables}


@needs_server
async def test_from_empty_postgres_gets_the_tables_and_columns_sqlite_has(
    schemas: Schemas, tmp_path: Path
):
    url = await schemas.url()
    store = await Store.open(url, settings=make_settings())
    assert store.schema_version == LATEST and store.backend == "postgres"
    await store.close()
    conn = await asyncpg.connect(url.get_secret_value())
    try:
        rows = await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name <> 'schema_version'"
        )
    finally:
        await conn.close()
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["table_name"], set()).add(row["column_name"])
    assert found == await columns_in_sqlite(tmp_path)
    # Every integer column is 64-bit: snowflakes, millicents and milliseconds pass int32.
    assert {r["data_type"] for r in rows} == {"bigint", "text"}


@needs_server
async def test_a_fresh_schema_is_a_store_of_its_own_and_is_dropped_whole():
    """What the two-process chaos run opens its store in (and drops when it passed)."""
    server = SecretStr(base_url())
    first, second = await fresh_schema(server, "Chaos-Run"), await fresh_schema(server, "chaos")
    schema = dict(parse_qsl(urlsplit(first.get_secret_value()).query))["search_path"]
    assert schema.startswith("chaos_run_") and first != second
    try:
        store = await open_store(first)
        try:
            await store.guilds.ban(1, 2, actor_id=1, reason="test")
        finally:
            await store.close()
        other = await open_store(second)
        try:
            assert (await other.guilds.get(1)).banned_user_ids == frozenset()
        finally:
            await other.close()
    finally:
        await drop_schema(first)
        await drop_schema(second)
    conn = await asyncpg.connect(base_url())
    try:
        left = await conn.fetchval(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", schema
        )
    finally:
        await conn.close()
    assert left == 0


@needs_server
async def test_snowflakes_beyond_int32_go_in_and_come_back(schemas: Schemas):
    store = await open_store(await schemas.url())
    guild, member = 1_234_567_890_123_456_789, 987_654_321_098_765_432
    try:
        await store.guilds.ban(guild, member, actor_id=guild, reason="test")
        reserved = await store.ledger.reserve(
            guild_id=guild, user_id=member, job=job(1), amount_mc=5
        )
        assert reserved.guild_id == guild  # type: ignore[union-attr]
        assert (await store.guilds.get(guild)).banned_user_ids == frozenset({member})
        (entry,) = await store.ledger.entries(guild_id=guild)
        assert (entry.guild_id, entry.user_id) == (guild, member)
    finally:
        await store.close()


@needs_server
async def test_a_newer_postgres_schema_refuses_to_start_and_stays(schemas: Schemas):
    url = await schemas.url()
    await (await Store.open(url, settings=make_settings())).close()
    conn = await asyncpg.connect(url.get_secret_value())
    try:
        await conn.execute("UPDATE schema_version SET version = $1", LATEST + 6)
        with pytest.raises(SchemaTooNew, match=f"schema {LATEST + 6}, this version knows"):
            await Store.open(url, settings=make_settings())
        assert await conn.fetchval("SELECT version FROM schema_version") == LATEST + 6
    finally:
        await conn.close()


@needs_server
async def test_a_failing_postgres_migration_leaves_the_previous_schema_whole(schemas: Schemas):
    url = await schemas.url()
    broken = Migration(
        LATEST + 1, "broken", "CREATE TABLE half_done (id BIGINT);\nINSERT INTO nowhere VALUES (1);"
    )
    with pytest.raises(MigrationFailed, match=f"still at schema {LATEST}"):
        await Store.open(
            url, settings=make_settings(), migrations=(*bundled_migrations("postgres"), broken)
        )
    conn = await asyncpg.connect(url.get_secret_value())
    try:
        assert await conn.fetchval("SELECT version FROM schema_version") == LATEST
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
    finally:
        await conn.close()
    store = await Store.open(url, settings=make_settings())  # the bundled set still opens
    assert store.schema_version == LATEST
    await store.close()


@needs_server
async def test_three_openers_of_an_empty_postgres_migrate_it_once(schemas: Schemas):
    url = await schemas.url()
    stores = await asyncio.gather(*(Store.open(url, settings=make_settings()) for _ in range(3)))
    try:
        assert {s.schema_version for s in stores} == {LATEST}
    finally:
        for store in stores:
            await store.close()


@needs_server
async def test_the_postgres_ledger_refuses_changes_but_the_erasure_of_an_id(schemas: Schemas):
    url = await schemas.url()
    store = await open_store(url)
    await store.ledger.reserve(guild_id=1, user_id=2, job=job(1), amount_mc=5)
    await store.close()
    conn = await asyncpg.connect(url.get_secret_value())
    try:
        for statement in (
            "UPDATE ledger SET amount_mc = 0",
            "DELETE FROM ledger",
            "UPDATE ledger SET user_id = 3",
            "UPDATE ledger SET user_id = 0, amount_mc = 4",
            "UPDATE ledger SET actor_id = 0, note = 'x'",
        ):
            with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
                await conn.execute(statement)
        await conn.execute("UPDATE ledger SET user_id = 0, actor_id = 0")
        row = await conn.fetchrow("SELECT user_id, actor_id, amount_mc FROM ledger")
        assert tuple(row) == (0, 0, 5)
    finally:
        await conn.close()


@needs_server
async def test_a_close_without_its_reserve_is_an_integrity_violation(schemas: Schemas):
    store = await open_store(await schemas.url())
    try:
        with pytest.raises(IntegrityViolation, match="matching reserve"):
            async with store._db.write() as tx:
                await tx.execute(
                    "INSERT INTO ledger (kind, guild_id, user_id, job, amount_mc, reserve_id,"
                    " at_ms, period_at_ms) VALUES ('release', 1, 2, 'prompt:1', -5, 999, 0, 0)"
                )
    finally:
        await store.close()


async def test_an_unreachable_server_is_a_store_error_naming_it_without_the_password():
    url = SecretStr("postgresql://bot:hunter2@127.0.0.1:9/none")  # port 9: nothing listens
    with pytest.raises(StoreError) as failed:
        await Store.open(url, settings=make_settings())
    assert "127.0.0.1:9" in str(failed.value) and "hunter2" not in str(failed.value)


def test_the_variants_say_how_to_run_them():
    if TEST_DATABASE_URL is None:
        with pytest.raises(pytest.skip.Exception, match="set TEST_DATABASE_URL"):
            base_url()


async def has_tables(url: SecretStr) -> bool:
    """Whether anything was ever migrated into the schema `url` names."""
    conn = await asyncpg.connect(url.get_secret_value())
    try:
        return await conn.fetchval("SELECT to_regclass('schema_version')") is not None
    finally:
        await conn.close()


@needs_server
async def test_check_reads_a_postgres_schema_without_creating_anything(schemas: Schemas):
    import io

    from bot.check import run_check
    from bot.config import Settings

    url = await schemas.url()
    settings = Settings(_env_file=None, database_url=url)
    out = io.StringIO()
    await run_check(settings, out)
    assert "empty: the first start creates the tables" in out.getvalue(), out.getvalue()
    assert not await has_tables(url)
    await (await Store.open(url, settings=make_settings())).close()
    out = io.StringIO()
    await run_check(settings, out)
    assert f", schema {LATEST}\n" in out.getvalue(), out.getvalue()
    assert "password" not in out.getvalue()


@needs_server
async def test_check_s_idempotency_probe_migrates_no_postgres_schema(
    schemas: Schemas, emulator: Emulator
):
    """The probe's answer is kept only in a schema already at this version: `check` on an
    empty one leaves it empty, as without a key."""
    import io

    from bot.check import run_check
    from bot.config import Settings

    url = await schemas.url()
    settings = Settings(
        _env_file=None, database_url=url, astria_api_key=KEY, astria_base_url=emulator.base_url
    )
    out = io.StringIO()
    await run_check(settings, out)
    assert "idempotency at Astria" in out.getvalue(), out.getvalue()
    assert not await has_tables(url)
