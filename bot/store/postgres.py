"""The PostgreSQL backend (asyncpg): the same interface and the same SQL as SQLite's.

The repositories write SQL once, with `?` or `:name` placeholders; this module numbers them
(`$1`, `$2`, ...), adds `RETURNING id` where SQLite reads the last row id, and reads every
row back as the same kind of row SQLite gives (by name or position; integral `numeric`
sums as `int`, so money stays exact integers). A write transaction is one `BEGIN` on one
writer connection, serialised in the process like SQLite's; across processes the ledger
takes the money lock (`lock_money`, a transaction-scoped advisory lock) before it reads
the sums it checks, and the other rows are guarded by their own constraints.

Caches stay true across processes (`Changes`): a write to cached rows sends a NOTIFY in
its transaction (delivered on commit), and a dedicated listener connection per process
hears the others'. If that connection dies it is reconnected, and the caches are dropped
and bypassed from the moment the loss is noticed until it listens again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from pydantic import SecretStr

from bot.store.db import (
    INJECTED_FAULT,
    Changes,
    Database,
    Dialect,
    Migration,
    Params,
    Row,
    Transaction,
    bundled_migrations,
    check_numbering,
)
from bot.store.errors import (
    IntegrityViolation,
    MigrationFailed,
    SchemaTooNew,
    StoreBusy,
    StoreError,
    StoreFault,
)

log = logging.getLogger(__name__)

POSTGRES = Dialect(
    name="postgres",
    greatest="GREATEST",
    instr="strpos",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    for_update=" FOR UPDATE",
    _concat="string_agg(CAST({column} AS TEXT), ',')",
    _json_ints="(SELECT CAST(jsonb_array_elements_text(CAST(? AS jsonb)) AS BIGINT))",
    _json_texts="(SELECT jsonb_array_elements_text(CAST(? AS jsonb)))",
    # clock_timestamp(), not now(): evaluated when the row is locked and updated, not when
    # a statement that waited for the row's lock began.
    epoch_us="CAST(extract(epoch FROM clock_timestamp()) * 1000000 AS BIGINT)",
)

CONNECT_TIMEOUT_SECONDS = 10.0
# A lock wait longer than this is a stuck peer, reported like SQLite's busy timeout.
LOCK_TIMEOUT_MS = 10_000
# A session idle inside a transaction this long is ended by the server (a frozen process):
# its locks go with it. The DATABASE_IDLE_TRANSACTION_SECONDS setting; this is its default.
IDLE_TRANSACTION_SECONDS = 60.0
READ_POOL_SIZE = 4
# Advisory lock keys (constants of our own): the ledger's money, migrating, lease claims,
# raising alerts.
MONEY_LOCK = 0x4153_5452_4941_0001
MIGRATION_LOCK = 0x4153_5452_4941_0002
CLAIM_LOCK = 0x4153_5452_4941_0003
ALERT_LOCK = 0x4153_5452_4941_0017
# The NOTIFY channel of cache changes, one per database: a payload names its schema, so
# stores in other schemas of the same database ignore it.
CHANGES_CHANNEL = "astria_bot_changes"
# The listener is pinged this often: a connection that died silently (no reset reached us)
# is noticed within about two of these; a terminated or reset one at once.
LISTENER_PING_SECONDS = 5.0
LISTENER_RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)

_TOKEN = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|--[^\n]*|::|\?|:([A-Za-z_][A-Za-z0-9_]*)")
_INSERT = re.compile(r"^\s*INSERT\b", re.IGNORECASE)


def numbered(sql: str, params: Params) -> tuple[str, list[object]]:
    """`sql` with `?` / `:name` placeholders as asyncpg's `$n`, and the arguments in order.
    A name used twice is one parameter (PostgreSQL infers its type from every use)."""
    args: list[object] = []
    names: dict[str, int] = {}
    positional = iter(params) if not isinstance(params, Mapping) else None

    def swap(match: re.Match[str]) -> str:
        token = match[0]
        if token == "?":  # noqa: S105
            if positional is None:
                raise StoreError("a `?` placeholder needs positional parameters")
            args.append(next(positional))
            return f"${len(args)}"
        name = match[1]
        if name is None:
            return token  # a string, a quoted name, a comment or a `::` cast
        if not isinstance(params, Mapping):
            raise StoreError(f"the placeholder :{name} needs named parameters")
        if name not in names:
            args.append(params[name])
            names[name] = len(args)
        return f"${names[name]}"

    return _TOKEN.sub(swap, sql), args


class PgRow:
    """A row as sqlite3.Row reads: `row["name"]`, `row[0]`, `keys()`."""

    __slots__ = ("_index", "_values")

    def __init__(self, record: asyncpg.Record) -> None:
        self._values = tuple(_plain(v) for v in record.values())
        self._index = {k: i for i, k in enumerate(record.keys())}

    def __getitem__(self, key: int | str, /) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Any:
        return iter(self._values)


def _plain(value: object) -> object:
    # SUM over BIGINT is numeric in PostgreSQL; the store's sums are whole millicents.
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


def translate(exc: BaseException) -> StoreError:
    """The store's own error for an asyncpg or connection one (callers never see asyncpg)."""
    text = str(exc)
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return IntegrityViolation(text)
    if isinstance(
        exc,
        asyncpg.LockNotAvailableError
        | asyncpg.DeadlockDetectedError
        | asyncpg.SerializationError
        | asyncpg.QueryCanceledError,
    ):
        return StoreBusy(f"the database stayed locked ({text})")
    return StoreFault(f"database error: {text}")


_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


def _rows(records: list[asyncpg.Record]) -> list[Row]:
    return [PgRow(r) for r in records]


class PostgresTransaction(Transaction):
    def __init__(self, conn: asyncpg.Connection, schema: str) -> None:
        self._conn = conn
        self._schema = schema

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        text, args = numbered(sql, params)
        try:
            return _rows(await self._conn.fetch(text, *args))
        except _ERRORS as exc:
            raise translate(exc) from exc

    async def insert(self, sql: str, params: Params = ()) -> int:
        if not _INSERT.match(sql):
            raise StoreError("insert() runs INSERT statements only")
        row = await self.fetchone(sql.rstrip().rstrip(";") + " RETURNING id", params)
        if row is None:
            raise StoreError("the insert returned no row id")
        return int(row[0])

    async def lock_money(self) -> None:
        await self.execute("SELECT pg_advisory_xact_lock(?)", (MONEY_LOCK,))

    async def lock_claims(self) -> None:
        await self.execute("SELECT pg_advisory_xact_lock(?)", (CLAIM_LOCK,))

    async def lock_alerts(self) -> None:
        await self.execute("SELECT pg_advisory_xact_lock(?)", (ALERT_LOCK,))

    async def notify(self, topic: str, key: int) -> None:
        # pg_notify in a transaction is queued and sent at COMMIT (dropped on rollback).
        payload = f"{self._schema} {topic} {int(key)}"
        await self.execute("SELECT pg_notify(?, ?)", (CHANGES_CHANNEL, payload))


def parse_change(payload: str, schema: str) -> tuple[str, int] | None:
    """The topic and key a NOTIFY payload names, or None if it is another schema's (or not
    ours at all)."""
    parts = payload.rsplit(" ", 2)
    if len(parts) != 3 or parts[0] != schema or not parts[2].lstrip("-").isdigit():
        return None
    return parts[1], int(parts[2])


def describe(url: SecretStr) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url.get_secret_value())
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"postgresql://{host}{port}{parts.path}"


async def _migrate(conn: asyncpg.Connection, migrations: Sequence[Migration]) -> int:
    known = migrations[-1].version if migrations else 0
    # One migrating process at a time; the others wait and then find the work done.
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        current = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
        if current > known:
            raise SchemaTooNew(current, known)
        for migration in migrations:
            if migration.version <= current:
                continue
            try:
                async with conn.transaction():
                    # Simple-query protocol: the whole script, function bodies included.
                    await conn.execute(migration.sql)
                    await conn.execute("DELETE FROM schema_version")
                    await conn.execute(
                        "INSERT INTO schema_version (version) VALUES ($1)", migration.version
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationFailed(
                    f"migration {migration.version} ({migration.name}) failed and was rolled "
                    f"back, the database is still at schema {current}: {exc}"
                ) from exc
            log.info("database migrated to schema %d (%s)", migration.version, migration.name)
            current = migration.version
        return int(current)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)


async def fresh_schema(url: SecretStr, prefix: str) -> SecretStr:
    """Make a new, empty schema (named `prefix` and a random suffix) in the database at
    `url`; its URL (the same with the schema as its search_path), for a run that wants a
    store of its own beside others' (the chaos run's two-process mode)."""
    schema = f"{re.sub(r'[^a-z0-9_]', '_', prefix.lower())}_{secrets.token_hex(6)}"
    try:
        conn = await asyncpg.connect(url.get_secret_value(), timeout=CONNECT_TIMEOUT_SECONDS)
    except (*_ERRORS, ValueError) as exc:
        raise StoreError(f"cannot open the database {describe(url)}: {exc}") from exc
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    except _ERRORS as exc:
        raise StoreError(f"cannot make a schema in {describe(url)}: {exc}") from exc
    finally:
        await conn.close()
    return SecretStr(with_search_path(url.get_secret_value(), schema))


async def drop_schema(url: SecretStr) -> None:
    """Drop the schema a URL from `fresh_schema` names, with everything in it."""
    schema = dict(parse_qsl(urlsplit(url.get_secret_value()).query)).get("search_path")
    if not schema:
        raise StoreError("the URL names no schema (search_path) to drop")
    conn = await asyncpg.connect(url.get_secret_value(), timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def with_search_path(url: str, schema: str) -> str:
    """`url` with `schema` as its search_path (asyncpg passes unknown query keys on as
    server settings)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    query.append(("search_path", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


async def inspect(url: SecretStr) -> tuple[int, int]:
    """The schema the database at `url` is at (0: never migrated) and the one this version
    would migrate it to, read without creating or changing anything (for `check`)."""
    try:
        conn = await asyncpg.connect(url.get_secret_value(), timeout=CONNECT_TIMEOUT_SECONDS)
    except (*_ERRORS, ValueError) as exc:
        raise StoreError(f"cannot open the database {describe(url)}: {exc}") from exc
    try:
        exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
        current = await conn.fetchval("SELECT max(version) FROM schema_version") if exists else 0
    except _ERRORS as exc:
        raise StoreError(f"cannot read the database {describe(url)}: {exc}") from exc
    finally:
        await conn.close()
    known = bundled_migrations("postgres")[-1].version
    return int(current or 0), known


class PostgresDatabase(Database):
    """One writer connection behind a lock, and a small pool for reads.

    Reads run on the pool in autocommit: each sees the last commit, never another
    coroutine's open transaction (as SQLite's WAL reader does).
    """

    def __init__(
        self,
        url: SecretStr,
        writer: asyncpg.Connection,
        readers: asyncpg.Pool,
        version: int,
        schema: str,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self._settings = settings or {}
        self.schema_version = version
        self.dialect = POSTGRES
        self.fault = None
        self.changes = Changes()
        self.changes.trusted = False  # until the listener listens
        self.schema = schema
        self._writer = writer
        self._readers = readers
        self._write_lock = asyncio.Lock()
        self._closed = False
        self._in_write: ContextVar[bool] = ContextVar(f"store_write_{id(self)}", default=False)
        # The listener connection while it listens (tests end it to prove the fallback).
        self.listener: asyncpg.Connection | None = None
        self._listening: asyncio.Task[None] | None = None

    @property
    def where(self) -> str:
        return describe(self.url)

    @classmethod
    async def open(  # type: ignore[override]
        cls,
        url: SecretStr,
        *,
        migrations: Sequence[Migration] | None = None,
        idle_transaction_seconds: float | None = None,
    ) -> PostgresDatabase:
        chosen = (
            bundled_migrations("postgres") if migrations is None else check_numbering(migrations)
        )
        dsn = url.get_secret_value()
        idle = (
            IDLE_TRANSACTION_SECONDS
            if idle_transaction_seconds is None
            else idle_transaction_seconds
        )
        settings = {
            "lock_timeout": str(LOCK_TIMEOUT_MS),
            "idle_in_transaction_session_timeout": str(max(1, round(idle * 1000))),
        }
        try:
            writer = await asyncpg.connect(
                dsn, timeout=CONNECT_TIMEOUT_SECONDS, server_settings=settings
            )
        except (*_ERRORS, ValueError) as exc:
            raise StoreError(f"cannot open the database {describe(url)}: {exc}") from exc
        try:
            version = await _migrate(writer, chosen)
            schema = str(await writer.fetchval("SELECT current_schema()"))
            readers = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=READ_POOL_SIZE,
                timeout=CONNECT_TIMEOUT_SECONDS,
                server_settings=settings,
            )
        except _ERRORS as exc:
            await writer.close()
            raise StoreError(f"cannot open the database {describe(url)}: {exc}") from exc
        except BaseException:
            await writer.close()
            raise
        db = cls(url, writer, readers, version, schema, settings)
        try:
            first = await db._listen()
        except _ERRORS as exc:
            await db.close()
            raise StoreError(f"cannot open the database {describe(url)}: {exc}") from exc
        except BaseException:
            await db.close()
            raise
        db._listening = asyncio.create_task(db._keep_listening(first), name="store-listener")
        return db

    async def _listen(self) -> asyncpg.Connection:
        """A new listener connection, listening; the caches are trusted from here on."""
        conn = await asyncpg.connect(
            self.url.get_secret_value(),
            timeout=CONNECT_TIMEOUT_SECONDS,
            server_settings={"application_name": "astria-bot changes"},
        )
        try:
            await conn.add_listener(CHANGES_CHANNEL, self._heard)
        except BaseException:
            conn.terminate()
            raise
        self.listener = conn
        self.changes.regained()
        return conn

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        change = parse_change(payload, self.schema)
        if change is not None:
            self.changes.heard(*change)

    async def _keep_listening(self, conn: asyncpg.Connection | None) -> None:
        """Watch the listener; when it dies, drop the caches and reconnect (backing off)."""
        failures = 0
        while not self._closed:
            if conn is None:
                try:
                    conn = await self._listen()
                except _ERRORS as exc:
                    delay = LISTENER_RETRY_SECONDS[min(failures, len(LISTENER_RETRY_SECONDS) - 1)]
                    failures += 1
                    log.warning(
                        "the store's listener cannot reconnect (%s); again in %gs", exc, delay
                    )
                    await asyncio.sleep(delay)
                    continue
                failures = 0
                log.info("the store's listener is back: caches were dropped")
            why = "the connection ended"
            try:
                await self._watch(conn)
            except Exception as exc:  # whatever ended it, the caches must not trust it
                why = str(exc) or type(exc).__name__
            finally:
                if not self._closed:
                    log.warning(
                        "the store's listener was lost (%s): caches off until it is back", why
                    )
                self.changes.lost()
                self.listener = None
                if not conn.is_closed():
                    conn.terminate()
                conn = None

    async def _watch(self, conn: asyncpg.Connection) -> None:
        """Return or raise once `conn` is closed, terminated, or stops answering pings."""
        ended = asyncio.Event()
        conn.add_termination_listener(lambda _c: ended.set())
        while not self._closed and not conn.is_closed():
            try:
                await asyncio.wait_for(ended.wait(), LISTENER_PING_SECONDS)
                return
            except TimeoutError:
                pass
            await asyncio.wait_for(conn.fetchval("SELECT 1"), LISTENER_PING_SECONDS)

    async def close(self) -> None:
        async with self._write_lock:
            if self._closed:
                return
            self._closed = True
            if self._listening is not None:
                self._listening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._listening
            if self.listener is not None and not self.listener.is_closed():
                self.listener.terminate()
            self.changes.lost()
            try:
                await self._readers.close()
            finally:
                await self._writer.close()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Transaction]:
        if self._in_write.get():
            raise StoreError("a write transaction cannot be opened inside another one")
        async with self._write_lock:
            token = self._in_write.set(True)
            try:
                try:
                    await self._begin()
                except _ERRORS as exc:
                    raise translate(exc) from exc
                try:
                    yield PostgresTransaction(self._writer, self.schema)
                except BaseException:
                    await self._rollback("an error in a write transaction")
                    raise
                try:
                    if self.fault is not None and self.fault():
                        log.warning("a write fails on purpose: %s", INJECTED_FAULT)
                        raise StoreFault(f"database error: {INJECTED_FAULT}")
                    await self._writer.execute("COMMIT")
                except StoreFault:
                    await self._rollback("a failed commit")
                    raise
                except _ERRORS as exc:
                    await self._rollback("a failed commit")
                    raise translate(exc) from exc
            finally:
                self._in_write.reset(token)

    async def _begin(self) -> None:
        """BEGIN on the writer, connecting it again first if the server ended its session
        (idle in a transaction past the timeout while this process was frozen, or a
        restart of the server): that transaction was rolled back, and this one starts anew."""
        if not self._writer.is_closed():
            try:
                await self._writer.execute("BEGIN")
                return
            except (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError):
                if not self._writer.is_closed():
                    raise
        log.warning("the PostgreSQL write connection was closed by the server; reconnecting")
        self._writer = await asyncpg.connect(
            self.url.get_secret_value(),
            timeout=CONNECT_TIMEOUT_SECONDS,
            server_settings=self._settings,
        )
        await self._writer.execute("BEGIN")

    async def _rollback(self, why: str) -> None:
        if self._writer.is_closed():
            return
        try:
            await self._writer.execute("ROLLBACK")
        except _ERRORS as exc:
            log.error("rollback after %s failed: %s", why, exc)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        text, args = numbered(sql, params)
        try:
            return _rows(await self._readers.fetch(text, *args))
        except _ERRORS as exc:
            raise translate(exc) from exc

    async def statement(self, sql: str, params: Params = ()) -> list[Row]:
        text, args = numbered(sql, params)
        try:
            return _rows(await self._readers.fetch(text, *args))
        except _ERRORS as exc:
            raise translate(exc) from exc

    async def integrity_problems(self) -> list[str]:
        """PostgreSQL checks foreign keys and pages itself; report an unreachable server."""
        try:
            await self._readers.fetchval("SELECT 1")
        except _ERRORS as exc:
            return [f"the server does not answer: {exc}"]
        return []
