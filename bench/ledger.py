"""Ledger reservations per second: 200 concurrent callers (asyncio tasks on one Store over a
real SQLite file) against one writer doing the same reservations one after another.

The budget fits only some of them (a server budget of 1,500 reservations for 2,000 tries,
and a per-member day limit), so the run also proves that no interleaving overspends: the
granted count, the sums and the ledger's own audit must be exact afterwards.

    .venv/bin/python -m bench.ledger [--quick]
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Goal, Table, fmt, median, p99, parse_args, ratio, report, work_dir
from bench.rig import GUILD, settings_for
from bot.rules.credits import Refusal
from bot.store import JobKind, JobRef, LedgerKind, Reservation, Store

PRICE_MC = 4_000  # a two-image prompt


@dataclass(frozen=True)
class Plan:
    callers: int
    tries_each: int
    members: int
    heavy: int  # the first `heavy` members make `heavy_share` of the tries between them
    heavy_share: float
    fit: int  # reservations the server's budget holds
    member_fit: int  # reservations one member's day limit holds

    @property
    def tries(self) -> int:
        return self.callers * self.tries_each

    def member(self, n: int) -> int:
        """Who makes try n: heavy members first, then the rest, each group round robin."""
        cut = int(self.tries * self.heavy_share)
        if n < cut:
            return n % self.heavy
        return self.heavy + (n - cut) % (self.members - self.heavy)

    @property
    def expected(self) -> int:
        """What the budgets hold, whatever the interleaving: every try is granted while
        both the server and its member have room, so the server budget runs out unless the
        members' limits bind first."""
        tries = Counter(self.member(n) for n in range(self.tries))
        return min(self.fit, sum(min(self.member_fit, t) for t in tries.values()))


@dataclass(frozen=True)
class Outcome:
    label: str
    seconds: float
    latencies: list[float]
    granted: int
    refused: Counter[str]
    problems: list[str]

    def per_second(self, count: int) -> float:
        return count / self.seconds


# 20 heavy members try 40 times each against a day limit of 20; 80 others try 15 times.
FULL = Plan(
    callers=200, tries_each=10, members=100, heavy=20, heavy_share=0.4, fit=1_500, member_fit=20
)
QUICK = Plan(callers=50, tries_each=6, members=25, heavy=5, heavy_share=0.4, fit=150, member_fit=12)


async def open_store(path: Path, plan: Plan) -> Store:
    settings = settings_for(
        database_path=path,
        guild_monthly_budget_mc=plan.fit * PRICE_MC,
        user_daily_limit_mc=plan.member_fit * PRICE_MC,
        user_monthly_limit_mc=10**12,
    )
    store = await Store.open(path, settings=settings)
    await store.account.record_balance(10**12, read_at=datetime.now(UTC))
    return store


async def reserve(store: Store, plan: Plan, n: int) -> tuple[Reservation | Refusal, float]:
    """Try reservation `n`: caller n's job, for member n mod `members`."""
    started = time.perf_counter()
    result = await store.ledger.reserve(
        guild_id=GUILD,
        user_id=1000 + plan.member(n),
        job=JobRef(JobKind.PROMPT, n + 1),
        amount_mc=PRICE_MC,
    )
    return result, time.perf_counter() - started


async def measure(folder: Path, plan: Plan, *, concurrent: bool, run: int) -> Outcome:
    label = f"{plan.callers} concurrent callers" if concurrent else "one serial writer"
    path = folder / f"{'concurrent' if concurrent else 'serial'}-{run}.sqlite3"
    store = await open_store(path, plan)
    try:
        started = time.perf_counter()
        if concurrent:
            # Caller c makes tries c, c + callers, c + 2·callers, ...: a member's tries come
            # from many callers at once, so the member limits are contended too.
            async def caller(c: int) -> list[tuple[Reservation | Refusal, float]]:
                return [
                    await reserve(store, plan, c + k * plan.callers) for k in range(plan.tries_each)
                ]

            chunks = await asyncio.gather(*(caller(c) for c in range(plan.callers)))
            results = [r for chunk in chunks for r in chunk]
        else:
            results = [await reserve(store, plan, n) for n in range(plan.tries)]
        seconds = time.perf_counter() - started
        granted = sum(isinstance(r, Reservation) for r, _ in results)
        refused = Counter(str(r.limit) for r, _ in results if isinstance(r, Refusal))
        problems = await check_exact(store, plan, granted)
    finally:
        await store.close()
    return Outcome(label, seconds, [t for _, t in results], granted, refused, problems)


async def check_exact(store: Store, plan: Plan, granted: int) -> list[str]:
    """What is wrong with the ledger after the run (empty when the sums are exact)."""
    problems = list(await store.ledger.audit())
    expected = plan.expected
    if granted != expected:
        problems.append(f"{granted} reservations granted; the budgets hold exactly {expected}")
    entries = await store.ledger.entries(guild_id=GUILD)
    reserves = [e for e in entries if e.kind is LedgerKind.RESERVE]
    if len(reserves) != granted:
        problems.append(f"{len(reserves)} reserve rows for {granted} granted reservations")
    held = sum(e.amount_mc for e in reserves)
    if held != granted * PRICE_MC or held > plan.fit * PRICE_MC:
        problems.append(f"{held} mc held; budget {plan.fit * PRICE_MC} mc")
    if len({e.job for e in reserves}) != len(reserves):
        problems.append("a job holds two reservations")
    per_member = Counter(e.user_id for e in reserves if e.user_id is not None)
    over = {m: c for m, c in per_member.items() if c > plan.member_fit}
    if over:
        problems.append(f"members past their day limit: {over}")
    snapshot = await store.ledger.budget(GUILD, 1000)
    if snapshot.guild_month.used_mc != held:
        problems.append(f"the budget reads {snapshot.guild_month.used_mc} mc used, not {held}")
    if len(await store.ledger.open_reservations()) != granted:
        problems.append("open holds do not match the reservations")
    return problems


@dataclass(frozen=True)
class Repeated:
    """The same run a few times, interleaved with the other kind (2 noisy cores)."""

    outcomes: list[Outcome]

    @property
    def label(self) -> str:
        return self.outcomes[0].label

    @property
    def seconds(self) -> float:
        return median([o.seconds for o in self.outcomes])

    @property
    def latencies(self) -> list[float]:
        return [t for o in self.outcomes for t in o.latencies]

    @property
    def granted(self) -> int:
        return self.outcomes[0].granted

    @property
    def refused(self) -> Counter[str]:
        return self.outcomes[0].refused

    @property
    def problems(self) -> list[str]:
        found = [p for o in self.outcomes for p in o.problems]
        # Which limit refuses a try may depend on the interleaving; how many fit may not.
        if len({o.granted for o in self.outcomes}) > 1:
            found.append("repeats granted different counts")
        return found


async def run_all(folder: Path, quick: bool) -> int:
    plan = QUICK if quick else FULL
    repeats = 1 if quick else 3
    serial_runs: list[Outcome] = []
    concurrent_runs: list[Outcome] = []
    for run in range(repeats):
        serial_runs.append(await measure(folder, plan, concurrent=False, run=run))
        concurrent_runs.append(await measure(folder, plan, concurrent=True, run=run))
    serial, concurrent = Repeated(serial_runs), Repeated(concurrent_runs)
    table = Table(
        [
            "who",
            "tries",
            "granted",
            "refused (by)",
            "seconds",
            "tries/s",
            "granted/s",
            "call p50",
            "call p99",
            "throughput ÷ serial",
        ]
    )
    for outcome in (serial, concurrent):
        table.add(
            outcome.label,
            f"{plan.tries:,}",
            f"{outcome.granted:,}",
            ", ".join(f"{n} {limit}" for limit, n in sorted(outcome.refused.items())) or "0",
            fmt(outcome.seconds),
            fmt(plan.tries / outcome.seconds, 0),
            fmt(outcome.granted / outcome.seconds, 0),
            f"{median(outcome.latencies) * 1000:.1f} ms",
            f"{p99(outcome.latencies) * 1000:.1f} ms",
            fmt(ratio(serial.seconds, outcome.seconds)) + "×",
        )
    speed = ratio(serial.seconds, concurrent.seconds)
    goals = [
        Goal(
            "sums exact after the concurrent run: no overspend, granted = what the budget holds",
            not concurrent.problems,
            "; ".join(concurrent.problems) or f"{concurrent.granted} granted, audit clean",
        ),
        Goal(
            "sums exact after the serial run",
            not serial.problems,
            "; ".join(serial.problems) or f"{serial.granted} granted, audit clean",
        ),
        Goal(
            "no collapse under contention: concurrent throughput at least 0.8× serial "
            "(our bar; the issue sets none)",
            speed >= 0.8,
            f"{speed:.2f}×",
        ),
    ]
    notes = [
        f"medians of {repeats} runs each, serial and concurrent interleaved, each on a new "
        "database file",
        f"one Store (one writer connection behind an asyncio lock, WAL, synchronous=FULL) "
        f"on a file in {folder}",
        f"{plan.members} members ({plan.heavy} of them make {plan.heavy_share:.0%} of the "
        f"tries); the server budget holds {plan.fit:,} reservations of {PRICE_MC:,} mc, a "
        f"member's day limit {plan.member_fit}: exactly {plan.expected:,} fit",
        "every try is one BEGIN IMMEDIATE transaction (budget check + row); a refusal "
        "writes nothing, so it commits without an fsync",
        "p50/p99: one reserve call's time as its caller saw it (queueing for the lock included)",
    ]
    return report("Ledger reservations", [table], goals, notes)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__ or "", argv)
    with work_dir(args.dir, "ledger") as folder:
        return asyncio.run(run_all(folder, args.quick))


if __name__ == "__main__":
    raise SystemExit(main())
