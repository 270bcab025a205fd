"""The bot's memory on SQLite or PostgreSQL: who owns which tune, every job, the guilds'
credit ledger. Callers see repositories and typed records, never SQL or a connection.
"""

from __future__ import annotations

import random
from pathlib import Path
from types import TracebackType

from pydantic import SecretStr

from bot.config import ProfileName, Settings
from bot.rules.credits import BudgetLimit, BudgetPolicy, BudgetSnapshot, Refusal
from bot.store.account import Account, AccountBalance
from bot.store.alerts import AlertRecord, Alerts
from bot.store.budget import AstriaBudget
from bot.store.db import Clock, Database, Migration, utc_now
from bot.store.erasure import ERASED, Erasure, Scrubbed
from bot.store.errors import (
    IntegrityViolation,
    InvalidTransition,
    MigrationFailed,
    NameTaken,
    NotFound,
    SchemaTooNew,
    StoreBusy,
    StoreError,
    StoreFault,
    TuneUnavailable,
)
from bot.store.events import Events, RecordedEvent
from bot.store.guilds import Guilds, GuildSettings
from bot.store.jobstate import JobKind, JobRef, StartCaps
from bot.store.leases import Leases
from bot.store.ledger import (
    Closing,
    Ledger,
    LedgerEntry,
    LedgerKind,
    Refund,
    RefundOutcome,
    Repair,
    Reservation,
    Settlement,
)
from bot.store.meta import IdempotencyProbe, Meta
from bot.store.packs import MadePrompt, PackRun, Packs
from bot.store.prompts import UNFINISHED_PROMPTS, PromptRecord, Prompts, PromptState
from bot.store.retention import Pruned, Retention
from bot.store.tunes import GONE_TUNES, UNFINISHED_TUNES, TuneRecord, Tunes, TuneState

__all__ = [
    "ERASED",
    "GONE_TUNES",
    "UNFINISHED_PROMPTS",
    "UNFINISHED_TUNES",
    "Account",
    "AccountBalance",
    "AlertRecord",
    "Alerts",
    "AstriaBudget",
    "BudgetLimit",
    "BudgetSnapshot",
    "Closing",
    "Erasure",
    "Events",
    "GuildSettings",
    "Guilds",
    "IdempotencyProbe",
    "IntegrityViolation",
    "InvalidTransition",
    "JobKind",
    "JobRef",
    "Leases",
    "Ledger",
    "LedgerEntry",
    "LedgerKind",
    "MadePrompt",
    "MigrationFailed",
    "NameTaken",
    "NotFound",
    "PackRun",
    "Packs",
    "PromptRecord",
    "PromptState",
    "Prompts",
    "Pruned",
    "RecordedEvent",
    "Refund",
    "RefundOutcome",
    "Refusal",
    "Repair",
    "Reservation",
    "Retention",
    "SchemaTooNew",
    "Scrubbed",
    "Settlement",
    "StartCaps",
    "Store",
    "StoreBusy",
    "StoreError",
    "StoreFault",
    "TuneRecord",
    "TuneState",
    "TuneUnavailable",
    "Tunes",
]


def _base_tunes(settings: Settings) -> dict[str, int]:
    """The base tune of each profile whose prompts go there (LoRA, FaceID)."""
    names: tuple[ProfileName, ...] = ("flux-lora", "sd15-checkpoint", "faceid")
    profiles = [settings.profile_named(n) for n in names]
    return {p.name: p.base_tune_id for p in profiles if p.prompts_go_to_base}


class Store:
    """One open database and its repositories: `guilds`, `tunes`, `prompts`, `ledger`,
    `account`, `events`, `meta`, `retention`, `erasure`, `alerts`, `leases`, and the Astria
    account's shared request budget `astria_budget`. Open it once (in `setup_hook`) and
    close it on shutdown."""

    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        policy = BudgetPolicy.from_settings(settings)
        self.guilds = Guilds(db, policy, clock)
        self.ledger = Ledger(db, policy, clock)
        self.tunes = Tunes(db, self.ledger, clock)
        self.prompts = Prompts(db, self.ledger, clock)
        self.packs = Packs(db, self.ledger, self.prompts, clock)
        self.account = Account(db, clock, safety_margin_mc=policy.safety_margin_mc)
        self.events = Events(db, clock)
        self.meta = Meta(db)
        self.retention = Retention(db)
        self.erasure = Erasure(db)
        self.alerts = Alerts(db, clock)
        self.leases = Leases(db, clock)
        self.astria_budget = AstriaBudget(
            db, settings.astria_requests_per_second, settings.astria_request_burst
        )

    @classmethod
    async def open(
        cls,
        location: Path | str | SecretStr,
        *,
        settings: Settings,
        clock: Clock = utc_now,
        migrations: tuple[Migration, ...] | None = None,
    ) -> Store:
        """Open (creating it and its folder if needed) and migrate the database at
        `location`: a SQLite file path, or a PostgreSQL URL as a SecretStr.

        `clock` returns aware UTC datetimes (tests inject one); `migrations` replaces the
        bundled ones, for tests of the migration machinery only.
        """
        db = await Database.open(
            location,
            migrations=migrations,
            idle_transaction_seconds=settings.database_idle_transaction_seconds,
        )
        store = cls(db, settings, clock)
        if store.schema_version >= 5:
            await store.prompts.fill_missing_targets(_base_tunes(settings))
        return store

    @classmethod
    async def open_configured(cls, settings: Settings, *, clock: Clock = utc_now) -> Store:
        """The database the settings name: DATABASE_URL when set, else DATABASE_PATH."""
        return await cls.open(settings.database_location, settings=settings, clock=clock)

    @property
    def backend(self) -> str:
        """ "sqlite" or "postgres"."""
        return self._db.dialect.name

    @property
    def where(self) -> str:
        """The file, or the PostgreSQL server and database (never its password)."""
        return self._db.where

    @property
    def schema_version(self) -> int:
        return self._db.schema_version

    def inject_faults(self, rate: float, *, seed: int) -> None:
        """Tests only (CHAOS_STORE_FAULT_RATE): from now on, fail about `rate` of the
        writes at their commit, as a failing disk would (rolled back, `StoreFault`)."""
        if rate <= 0:
            self._db.fault = None
            return
        draw = random.Random(f"store-faults:{seed}").random
        self._db.fault = lambda: draw() < rate

    async def integrity_problems(self) -> list[str]:
        """The backend's own integrity checks (SQLite's integrity and foreign-key checks);
        empty when the database is sound."""
        return await self._db.integrity_problems()

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
