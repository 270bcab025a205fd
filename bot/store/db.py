"""The store's backends behind one interface, and the SQLite one.

`Database` and `Transaction` are what the repositories see: `fetchall`/`fetchone` on the
last commit, and `write()` for one transaction. Two backends implement them: SQLite here
(WAL, foreign keys, migrations by `PRAGMA user_version`, writes serialised in the process
and `BEGIN IMMEDIATE` across processes) and PostgreSQL in `bot.store.postgres` (asyncpg).
Both take the same SQL with `?` or `:name` placeholders; the few phrases that differ
between the two are asked of `Database.dialect`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias

import aiosqlite
from pydantic import SecretStr

from bot.store.errors import (
    IntegrityViolation,
    MigrationFailed,
    SchemaTooNew,
    StoreBusy,
    StoreError,
    StoreFault,
)

log = logging.getLogger(__name__)

Params: TypeAlias = Sequence[object] | Mapping[str, object]
Clock: TypeAlias = Callable[[], datetime]

Backend: TypeAlias = Literal["sqlite", "postgres"]


class Row(Protocol):
    """A result row, read by column name or position (sqlite3.Row, or the PostgreSQL one)."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def keys(self) -> list[str]: ...


@dataclass(frozen=True)
class Dialect:
    """The SQL phrases that differ between the backends; everything else is shared."""

    name: Backend
    # The scalar larger-of-two (SQLite's two-argument MAX, PostgreSQL's GREATEST).
    greatest: str
    # Where `needle` starts in `haystack`, 0 if absent: `{instr}(haystack, needle)`.
    instr: str
    # After a SELECT of rows the transaction will claim: PostgreSQL locks them and skips
    # rows another transaction has locked (FOR UPDATE SKIP LOCKED); SQLite needs nothing,
    # its BEGIN IMMEDIATE already holds the one write lock from the first read.
    skip_locked: str
    # After a SELECT of one row a transaction is about to change on what it read (a job's
    # state, compare and set): PostgreSQL locks it until the commit, so a second process's
    # check waits and reads the first one's change; SQLite's BEGIN IMMEDIATE already did.
    for_update: str
    # A comma-joined list of one column's values (group_concat, or string_agg over text).
    _concat: str
    # One parameter holding a JSON array, as a subquery of its elements.
    _json_ints: str
    _json_texts: str
    # Now on the database's clock, in whole microseconds since the Unix epoch, read when
    # the statement runs: the processes sharing a database share this clock.
    epoch_us: str = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)"

    def group_concat(self, column: str) -> str:
        return self._concat.format(column=column)

    def json_ints(self) -> str:
        """`(SELECT ...)` of the integers in one JSON-array parameter, for `x IN ...`."""
        return self._json_ints

    def json_texts(self) -> str:
        """`(SELECT ...)` of the strings in one JSON-array parameter, for `x IN ...`."""
        return self._json_texts


SQLITE = Dialect(
    name="sqlite",
    greatest="MAX",
    instr="instr",
    skip_locked="",
    for_update="",
    _concat="group_concat({column})",
    _json_ints="(SELECT value FROM json_each(?))",
    _json_texts="(SELECT value FROM json_each(?))",
)

BUSY_TIMEOUT_SECONDS = 10.0
# Upserts (ON CONFLICT DO UPDATE) arrived in 3.24; nothing newer is used.
MIN_SQLITE = (3, 24, 0)

INJECTED_FAULT = "disk I/O error (injected: CHAOS_STORE_FAULT_RATE)"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch; naive datetimes are refused, never guessed."""
    if moment.utcoffset() is None:
        raise ValueError("the store needs aware datetimes (UTC), got a naive one")
    return (moment - _EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return _EPOCH + ms * _MS


def opt_from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else from_ms(ms)


def opt_to_ms(moment: datetime | None) -> int | None:
    return None if moment is None else to_ms(moment)


@dataclass(frozen=True)
class Migration:
    """One numbered schema change, applied in its own transaction."""

    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The script cut into statements (`executescript` would commit our transaction)."""
        out: list[str] = []
        pending = ""
        for piece in self.sql.split(";"):
            pending += piece + ";"
            # complete_statement knows comments, strings and trigger bodies (BEGIN ... END;).
            if sqlite3.complete_statement(pending):
                if _strip_comments(pending).strip(" \t\r\n;"):
                    out.append(pending.strip())
                pending = ""
        if _strip_comments(pending).strip(" \t\r\n;"):
            raise MigrationFailed(f"migration {self.version} ends with an incomplete statement")
        return out


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def bundled_migrations(backend: Backend = "sqlite") -> tuple[Migration, ...]:
    """The migrations shipped for `backend`, checked to be numbered 1..N: SQLite's in
    bot/store/migrations, PostgreSQL's twins in bot/store/migrations/postgres."""
    folder = resources.files("bot.store").joinpath("migrations")
    if backend == "postgres":
        folder = folder.joinpath("postgres")
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _MIGRATION_FILE.match(entry.name)
        if match is None:
            raise StoreError(f"migration file {entry.name} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return check_numbering(found)


def check_numbering(migrations: Iterable[Migration]) -> tuple[Migration, ...]:
    ordered = tuple(sorted(migrations, key=lambda m: m.version))
    for expected, migration in enumerate(ordered, start=1):
        if migration.version != expected:
            raise StoreError(
                f"migrations must be numbered 1, 2, 3...; found {migration.version} "
                f"({migration.name}) where {expected} was expected"
            )
    return ordered


def translate(exc: sqlite3.Error) -> StoreError:
    """The store's own error for a sqlite3 one, so callers never import sqlite3."""
    text = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityViolation(text)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return StoreBusy(
            f"the database stayed locked for more than {BUSY_TIMEOUT_SECONDS:g} s ({text})"
        )
    if isinstance(exc, sqlite3.OperationalError):
        return StoreFault(f"database error: {text}")
    return StoreError(f"database error: {text}")


# A cache's forgetter: told a topic and key another process changed, or (None, None): forget
# everything (changes may have gone unheard).
Forget: TypeAlias = Callable[[str | None, int | None], None]


class Changes:
    """What keeps a process's caches of rows true when another process changes them.

    A cache subscribes a forgetter and caches only while `trusted`. On SQLite one process
    owns the file, so nothing else ever writes and this stays trusted and silent. On
    PostgreSQL a listener connection hears the NOTIFY each writing transaction sends on
    commit (`Transaction.notify`) and forgets the row; while that connection is down,
    changes may go unheard, so every cache is dropped and not refilled (reads go to the
    database) until it is back and listening, when they are dropped once more.
    """

    def __init__(self) -> None:
        self.trusted = True
        self._forgetters: list[Forget] = []

    def subscribe(self, forget: Forget) -> None:
        self._forgetters.append(forget)

    def heard(self, topic: str | None, key: int | None) -> None:
        for forget in self._forgetters:
            forget(topic, key)

    def lost(self) -> None:
        """Changes may go unheard from now on: drop everything, cache nothing."""
        self.trusted = False
        self.heard(None, None)

    def regained(self) -> None:
        """Listening again: whatever changed meanwhile was never heard, so drop it all."""
        self.heard(None, None)
        self.trusted = True


class Transaction(ABC):
    """Statements inside one write transaction; only the store's repositories hold one."""

    @abstractmethod
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def execute(self, sql: str, params: Params = ()) -> None:
        await self.fetchall(sql, params)

    @abstractmethod
    async def insert(self, sql: str, params: Params = ()) -> int:
        """Run an INSERT into a table with an `id` key and return the new row's id."""

    @abstractmethod
    async def lock_money(self) -> None:
        """Hold the money lock until this transaction ends: every ledger write takes it
        before reading the sums it checks, so no other process's reservation, settle or
        grant lands between the check and the row (SQLite: BEGIN IMMEDIATE already holds
        the one write lock, so nothing more is needed)."""

    async def lock_claims(self) -> None:
        """Hold the lease-claim lock until this transaction ends: claims run one at a
        time, so two processes never both take jobs of one channel that no one held
        (SQLite: BEGIN IMMEDIATE already serialises them)."""
        return None

    async def lock_alerts(self) -> None:
        """Hold the alert lock until this transaction ends: raising an alert reads whether
        its server has an open row of that kind and then folds into it or inserts one, so
        two processes never both insert (SQLite: BEGIN IMMEDIATE already serialises)."""
        return None

    async def notify(self, topic: str, key: int) -> None:
        """Tell the other processes' caches, when this transaction commits (and only if it
        does), that `key` of `topic` changed (PostgreSQL: NOTIFY; SQLite: one process,
        no one to tell)."""
        return None


class Database(ABC):
    """One open database: reads on the last commit, and one door for write transactions."""

    dialect: Dialect
    schema_version: int
    # Tests only (Store.inject_faults): True fails this write at its commit.
    fault: Callable[[], bool] | None
    # What the process's caches subscribe to (see `Changes`).
    changes: Changes

    @classmethod
    async def open(
        cls,
        location: Path | str | SecretStr,
        *,
        migrations: Sequence[Migration] | None = None,
        idle_transaction_seconds: float | None = None,
    ) -> Database:
        """Open and migrate the database at `location`: a PostgreSQL URL (a SecretStr, as
        the settings hold it) or a SQLite file path. `idle_transaction_seconds` is
        PostgreSQL's: how long the server lets a session idle inside a transaction (None:
        the backend's default); SQLite has no such thing (its lock dies with the process)."""
        if isinstance(location, SecretStr):
            from bot.store.postgres import PostgresDatabase

            return await PostgresDatabase.open(
                location, migrations=migrations, idle_transaction_seconds=idle_transaction_seconds
            )
        return await SqliteDatabase.open(location, migrations=migrations)

    @property
    @abstractmethod
    def where(self) -> str:
        """Where the data is, for messages: the file, or the server without credentials."""

    @abstractmethod
    def write(self) -> AbstractAsyncContextManager[Transaction]:
        """One write transaction: commit when the block ends, roll back if it raises."""

    @abstractmethod
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def statement(self, sql: str, params: Params = ()) -> list[Row]:
        """One writing statement on its own (`UPDATE ... RETURNING`), committed when it
        returns. SQLite: a write transaction of its own; PostgreSQL runs it in autocommit
        on the read pool, so it never queues behind the writer's long transactions."""
        async with self.write() as tx:
            return await tx.fetchall(sql, params)

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def integrity_problems(self) -> list[str]: ...


class SqliteTransaction(Transaction):
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            return list(await self._conn.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def lock_money(self) -> None:
        return None  # BEGIN IMMEDIATE took SQLite's one write lock

    async def insert(self, sql: str, params: Params = ()) -> int:
        """Run an INSERT and return the new row's id."""
        try:
            row = await self._conn.execute_insert(sql, params)
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        if row is None:
            raise StoreError("the insert returned no row id")
        return int(row[0])


# The database holds who trained on whose photos and what they spent: owner-only, like
# its WAL and shared-memory files (SQLite gives those the database file's own mode).
FILE_MODE = 0o600
FOLDER_MODE = 0o700
SIDE_FILES = ("-wal", "-shm", "-journal")


def _owner_only(path: Path) -> None:
    """Create the database file 0600 if it is new (an empty file is a valid empty
    database), and narrow an existing one and its side files (a database made before this
    rule, or copied in) to 0600. A file we do not own keeps its mode, with a warning."""
    if str(path) == ":memory:" or str(path).startswith("file:"):
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        pass
    else:
        os.close(fd)
    for file in (path, *(path.with_name(path.name + s) for s in SIDE_FILES)):
        try:
            if file.stat().st_mode & 0o777 != FILE_MODE:
                file.chmod(FILE_MODE)
        except FileNotFoundError:
            continue
        except PermissionError:
            log.warning("%s is readable by others and not ours to change; chmod 600 it", file)


async def _connect(path: Path) -> aiosqlite.Connection:
    # isolation_level=None: the sqlite3 module starts no transaction behind our back; every
    # write transaction is an explicit BEGIN IMMEDIATE below.
    conn = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
    conn.row_factory = sqlite3.Row
    try:
        await conn.execute_fetchall(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        await _use_wal(conn, path)
        # FULL: a committed reservation or tune title survives a power cut or an OS crash,
        # not only kill -9; we act on Astria right after committing.
        await conn.execute_fetchall("PRAGMA synchronous = FULL")
        await conn.execute_fetchall("PRAGMA foreign_keys = ON")
    except BaseException:
        await conn.close()
        raise
    return conn


async def _journal_mode(conn: aiosqlite.Connection, statement: str) -> str:
    return str(next(iter(await conn.execute_fetchall(statement)))[0]).lower()


async def _use_wal(conn: aiosqlite.Connection, path: Path) -> None:
    # WAL is a property of the file: once set, later openers find it and need not switch.
    if await _journal_mode(conn, "PRAGMA journal_mode") == "wal":
        return
    # Switching fails at once with "database is locked", without the busy handler, while
    # another connection holds the new file (two processes starting together): retry
    # within the busy timeout instead.
    deadline = asyncio.get_running_loop().time() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            mode = await _journal_mode(conn, "PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or asyncio.get_running_loop().time() > deadline:
                raise
            log.debug("switching %s to WAL waits for another connection: %s", path, exc)
            await asyncio.sleep(0.02)
    if mode != "wal":
        raise StoreError(
            f"SQLite could not use WAL journaling for {path} (network or read-only "
            "file system?); put DATABASE_PATH on a local disk"
        )


async def _user_version(conn: aiosqlite.Connection) -> int:
    rows = await conn.execute_fetchall("PRAGMA user_version")
    return int(next(iter(rows))[0])


async def _rollback(conn: aiosqlite.Connection, why: str) -> None:
    try:
        await conn.execute_fetchall("ROLLBACK")
    except sqlite3.OperationalError as exc:
        # SQLite ends some failed transactions itself (a full disk, for one); then there is
        # nothing left to roll back, which is what we wanted.
        if "no transaction is active" in str(exc):
            log.debug("rollback after %s: SQLite had already ended the transaction", why)
        else:
            log.error("rollback after %s failed: %s", why, exc)


async def _migrate(conn: aiosqlite.Connection, migrations: Sequence[Migration]) -> int:
    known = migrations[-1].version if migrations else 0
    current = await _user_version(conn)
    if current > known:
        raise SchemaTooNew(current, known)
    for migration in migrations:
        if migration.version <= current:
            continue
        try:
            await conn.execute_fetchall("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        try:
            # Another process may have migrated while we waited for the write lock.
            current = await _user_version(conn)
            if current > known:
                raise SchemaTooNew(current, known)
            if current >= migration.version:
                await _rollback(conn, "a migration another process had already applied")
                continue
            for statement in migration.statements():
                await conn.execute_fetchall(statement)
            await conn.execute_fetchall(f"PRAGMA user_version = {migration.version}")
            await conn.execute_fetchall("COMMIT")
        except sqlite3.Error as exc:
            await _rollback(conn, f"migration {migration.version}")
            raise MigrationFailed(
                f"migration {migration.version} ({migration.name}) failed and was rolled "
                f"back, the database is still at schema {current}: {exc}"
            ) from exc
        except BaseException:
            await _rollback(conn, f"migration {migration.version}")
            raise
        log.info("database migrated to schema %d (%s)", migration.version, migration.name)
        current = migration.version
    return current


class SqliteDatabase(Database):
    """Two connections to one file: a writer behind a lock, and a reader for queries.

    WAL lets the reader see the last commit while a write transaction is open, so reads
    never wait for the lock and never see another coroutine's uncommitted rows.
    """

    def __init__(
        self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection, version: int
    ) -> None:
        self.path = path
        self.schema_version = version
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._closed = False
        self._in_write: ContextVar[bool] = ContextVar(f"store_write_{id(self)}", default=False)
        self.dialect = SQLITE
        self.fault = None
        self.changes = Changes()  # one process owns the file: always trusted

    @property
    def where(self) -> str:
        return str(self.path)

    @classmethod
    async def open(  # type: ignore[override]
        cls, path: Path | str, *, migrations: Sequence[Migration] | None = None
    ) -> SqliteDatabase:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old; the bot needs "
                f"{'.'.join(map(str, MIN_SQLITE))} or newer"
            )
        path = Path(path)
        path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        try:
            _owner_only(path)
        except OSError as exc:
            raise StoreError(f"cannot open the database {path}: {exc}") from exc
        chosen = bundled_migrations() if migrations is None else check_numbering(migrations)
        try:
            writer = await _connect(path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {path}: {exc}") from exc
        try:
            version = await _migrate(writer, chosen)
            reader = await _connect(path)
            # The reader must never write: every write goes through the lock below.
            await reader.execute_fetchall("PRAGMA query_only = ON")
            _owner_only(path)  # the WAL and -shm files exist now
        except sqlite3.Error as exc:
            await writer.close()
            raise translate(exc) from exc
        except BaseException:
            await writer.close()
            raise
        return cls(path, writer, reader, version)

    async def close(self) -> None:
        """Close both connections; closing twice is harmless (shutdown paths overlap)."""
        async with self._write_lock:
            if self._closed:
                return
            self._closed = True
            try:
                await self._reader.close()
            finally:
                await self._writer.close()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Transaction]:
        """One write transaction: commit when the block ends, roll back if it raises.

        The asyncio lock serialises transactions on our one writer connection (aiosqlite
        cannot nest BEGIN: without the lock a second coroutine's BEGIN fails while its
        statements run inside, and commit with, the first one's transaction). BEGIN
        IMMEDIATE takes SQLite's write lock before the first read, so a budget check and
        the row it allows are atomic against other processes too; busy_timeout queues them.
        """
        if self._in_write.get():
            raise StoreError("a write transaction cannot be opened inside another one")
        async with self._write_lock:
            token = self._in_write.set(True)
            try:
                try:
                    await self._writer.execute_fetchall("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    raise translate(exc) from exc
                try:
                    yield SqliteTransaction(self._writer)
                except BaseException:
                    # Cancellation included: aiosqlite runs calls in order on its thread,
                    # so this ROLLBACK runs before the next holder's BEGIN whatever happens.
                    await _rollback(self._writer, "an error in a write transaction")
                    raise
                try:
                    if self.fault is not None and self.fault():
                        log.warning("a write fails on purpose: %s", INJECTED_FAULT)
                        raise sqlite3.OperationalError(INJECTED_FAULT)
                    await self._writer.execute_fetchall("COMMIT")
                except sqlite3.Error as exc:
                    await _rollback(self._writer, "a failed commit")
                    raise translate(exc) from exc
            finally:
                self._in_write.reset(token)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """A read on the reader connection: one statement, one consistent snapshot."""
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def integrity_problems(self) -> list[str]:
        """What `PRAGMA integrity_check` and `foreign_key_check` report; empty when sound."""
        problems = [str(r[0]) for r in await self.fetchall("PRAGMA integrity_check")]
        problems = [p for p in problems if p != "ok"]
        for row in await self.fetchall("PRAGMA foreign_key_check"):
            problems.append(f"foreign key: {row[0]} row {row[1]} points at a missing {row[2]}")
        return problems
