"""Settings, a manual clock, job references and the stores of one test, on SQLite files or
PostgreSQL schemas (no shared fixtures)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from bot.config import Settings
from bot.store import JobKind, JobRef, Store
from tests.pg import Schemas

TUNE_MC = 150_000  # the flux1 tune price these tests run at (a paid branch: 0 = 0 proves nothing)
IMAGE_MC = 3_000
RICH_MC = 10**12  # a balance, budget or limit that never binds


def make_settings(**overrides: Any) -> Settings:
    """Settings on a paid branch with no .env and limits that do not bind unless given."""
    values: dict[str, Any] = {
        "astria_branch": "flux1",
        "tune_price_mc": {"flux1": TUNE_MC},
        "image_price_mc": {"flux1": IMAGE_MC},
        "guild_monthly_budget_mc": RICH_MC,
        "user_daily_limit_mc": RICH_MC,
        "user_monthly_limit_mc": RICH_MC,
        "balance_safety_margin_mc": 0,
        "budget_timezone": "UTC",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@dataclass
class ManualClock:
    """A clock the test moves by hand; the store reads it for every row it writes."""

    now: datetime = field(default_factory=lambda: datetime(2025, 3, 14, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def set(self, moment: datetime) -> None:
        self.now = moment


def job(number: int) -> JobRef:
    return JobRef(JobKind.PROMPT, number)


async def open_store(
    path: Path | SecretStr,
    *,
    clock: ManualClock | None = None,
    balance_mc: int | None = RICH_MC,
    **settings: Any,
) -> Store:
    """A store on a real file; with a known balance unless `balance_mc` is None."""
    store = await Store.open(path, settings=make_settings(**settings), clock=clock or ManualClock())
    if balance_mc is not None:
        await store.account.record_balance(balance_mc)
    return store


class Stores:
    """Opens stores for one test and closes them all at its end, pass or fail: an unclosed
    aiosqlite connection keeps a non-daemon thread alive and would hang pytest's exit.

    On "postgres" each name is a schema of its own in TEST_DATABASE_URL's database, dropped
    at the end; on "sqlite" it is a file in `folder`. The same name is the same database.
    """

    def __init__(self, folder: Path, backend: Literal["sqlite", "postgres"] = "sqlite") -> None:
        self.folder = folder
        self.backend = backend
        self.schemas = Schemas()
        self.opened: list[Store] = []

    async def location(self, name: str = "bot.sqlite3") -> Path | SecretStr:
        if self.backend == "postgres":
            return await self.schemas.url(name)
        return self.folder / name

    async def open(
        self, name: str = "bot.sqlite3", *, clock: ManualClock | None = None, **options: Any
    ) -> Store:
        store = await open_store(await self.location(name), clock=clock, **options)
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        try:
            for store in self.opened:
                await store.close()
        finally:
            await self.schemas.drop_all()
