"""The PostgreSQL the tests may use: one setting, TEST_DATABASE_URL (a database the tests
may create and drop schemas in, e.g. postgresql://postgres@127.0.0.1:5432/test).

When it is set, the store, ledger and tracker tests also run on PostgreSQL, each test in a
schema of its own (made and dropped around it); when it is not, those variants are
skipped with a reason. `python -m tests.pg` checks the server answers (CI requires it).
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest
from pydantic import SecretStr

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL") or None
SKIP_REASON = "set TEST_DATABASE_URL to run the PostgreSQL variants"

# For parametrized fixtures: SQLite always, PostgreSQL when the setting is there.
BACKENDS = [
    pytest.param("sqlite"),
    pytest.param(
        "postgres",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(TEST_DATABASE_URL is None, reason=SKIP_REASON),
        ],
    ),
]


def in_schema(url: str, schema: str) -> str:
    """`url` with `schema` as its search_path (asyncpg passes unknown query keys on as
    server settings)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    query.append(("search_path", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


def base_url() -> str:
    if TEST_DATABASE_URL is None:
        pytest.skip(SKIP_REASON)
    return TEST_DATABASE_URL


class Schemas:
    """Fresh schemas for one test, dropped at its end, pass or fail."""

    def __init__(self) -> None:
        self.prefix = f"t_{uuid.uuid4().hex[:12]}"
        self.made: dict[str, str] = {}

    async def url(self, name: str = "main") -> SecretStr:
        """The URL of schema `name` of this test (made on first use; the same name is the
        same database, like opening one SQLite file twice)."""
        base = base_url()
        schema = self.made.get(name)
        if schema is None:
            schema = f"{self.prefix}_{''.join(c for c in name if c.isalnum()).lower()}"
            conn = await asyncpg.connect(base)
            try:
                await conn.execute(f'CREATE SCHEMA "{schema}"')
            finally:
                await conn.close()
            self.made[name] = schema
        return SecretStr(in_schema(base, schema))

    async def drop_all(self) -> None:
        if not self.made:
            return
        conn = await asyncpg.connect(base_url())
        try:
            for schema in self.made.values():
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
        self.made.clear()


async def _check() -> int:
    if TEST_DATABASE_URL is None:
        print(f"TEST_DATABASE_URL is not set ({SKIP_REASON}).", file=sys.stderr)
        return 2
    try:
        conn = await asyncpg.connect(TEST_DATABASE_URL, timeout=10)
        version = await conn.fetchval("SHOW server_version")
        await conn.close()
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        print(f"PostgreSQL at TEST_DATABASE_URL does not answer: {exc}", file=sys.stderr)
        return 1
    print(f"PostgreSQL {version} answers at TEST_DATABASE_URL")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_check()))
