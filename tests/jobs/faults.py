"""A store wrapper for tests: the chosen calls of a repository method fail the way the
database fails them (an `OperationalError`, as the store translates it), or the process
"crashes" there (an exception nothing in the bot catches)."""

from __future__ import annotations

import functools
import re
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.store import Store
from bot.store.db import translate

TRACKER = Path(__file__).resolve().parents[2] / "bot" / "jobs" / "tracker.py"

# What the tracker calls on the store, by repository, split into reads and writes. A new
# call in the tracker fails `test_every_store_call_of_the_tracker_is_listed` until it is
# listed here (and, for a write, covered by the fault tests).
READS: frozenset[str] = frozenset(
    {
        "account.last_known",
        "events.existing",
        "packs.adopted_astria_ids",
        "packs.items",
        "packs.open_items",
        "packs.run",
        "packs.run_of",
        "events.pending",
        "events.reported_since",
        "ledger.audit",
        "ledger.last_id",
        "ledger.reservation",
        "prompts.by_astria_id",
        "prompts.claimed_astria_ids",
        "prompts.get",
        "prompts.get_owned",
        "prompts.unfinished",
        "leases.others_followed",
        "tunes.branches",
        "tunes.expiring",
        "tunes.get",
        "tunes.get_owned",
        "tunes.profiles",
        "tunes.unfinished",
    }
)
WRITES: frozenset[str] = frozenset(
    {
        "account.mark_short",
        "account.record_balance",
        "packs.adopt",
        "packs.set_seen",
        "alerts.prune",
        "events.mark_reported",
        "events.record",
        "events.record_failure",
        "ledger.absorb",
        "ledger.release",
        "ledger.repair",
        "ledger.settle",
        "leases.claim_due",
        "leases.release",
        "leases.renew",
        "leases.wake",
        "leases.woken",
        "leases.take_turn",
        "leases.leave_seen",
        "leases.seen",
        "meta.record_refund_finding",
        "meta.take_turn",
        "prompts.set_astria_id",
        "prompts.set_cost",
        "prompts.set_images",
        "prompts.set_state",
        "prompts.transition",
        "retention.prune",
        "tunes.clear_photos",
        "tunes.renew_expiry",
        "tunes.set_astria_id",
        "tunes.set_progress",
        "tunes.set_state",
        "tunes.transition",
    }
)


def tracker_store_calls() -> set[str]:
    """Every `self._store.<repository>.<method>` the tracker's source names."""
    text = TRACKER.read_text(encoding="utf-8")
    return set(re.findall(r"self\._store\.([a-z_]+\.[a-z_]+)\b", text))


class Crash(BaseException):
    """The process died here (simulated): nothing in the bot catches a BaseException."""


def store_fault() -> Exception:
    """What the store raises when SQLite fails a write with an I/O error."""
    return translate(sqlite3.OperationalError("disk I/O error (injected by a test)"))


class StoreFaults:
    """Wraps methods of a store's repositories; `rule(call_number)` says what the call does:
    None runs it, an exception is raised instead (nothing is written)."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.store = store
        self.monkeypatch = monkeypatch
        self.calls: Counter[str] = Counter()
        self.raised: Counter[str] = Counter()

    def wrap(self, name: str, rule: Callable[[int], BaseException | None]) -> None:
        repository, method = name.split(".")
        target = getattr(self.store, repository)
        real = getattr(target, method)

        @functools.wraps(real)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            error = rule(self.calls[name])
            if error is not None:
                self.raised[name] += 1
                raise error
            return await real(*args, **kwargs)

        self.monkeypatch.setattr(target, method, wrapper)

    def fail(self, name: str, *, first: int = 1, times: int = 1) -> None:
        """Calls `first` .. `first + times - 1` of `name` fail with a store fault."""
        self.wrap(name, lambda n: store_fault() if first <= n < first + times else None)

    def fail_every_other(self, name: str) -> None:
        """Every odd call fails: each write of `name` fails once, then its retry runs."""
        self.wrap(name, lambda n: store_fault() if n % 2 == 1 else None)
