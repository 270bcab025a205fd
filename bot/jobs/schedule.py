"""When to look at a job next: pure functions of its expected finish and how often it was
already found unfinished. Tunes expect to finish at Astria's `eta`; prompts, which carry
none, after the model profile's expected duration."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

FLAT_MISSES = 2  # looks at the minimum interval before the interval starts doubling


@dataclass(frozen=True)
class PollPolicy:
    """Intervals in seconds. `slowdown` stretches every interval when callbacks are on
    (polling is then only the safety net)."""

    tune_min: float = 30.0
    prompt_min: float = 5.0
    cap: float = 600.0
    tune_stuck_after: float = 3600.0
    prompt_stuck_after: float = 900.0
    stuck_interval: float = 1800.0
    slowdown: float = 1.0

    def minimum(self, kind: str) -> float:
        return self.tune_min if kind == "tune" else self.prompt_min


def expected_done(
    kind: str, submitted_at: datetime, eta: datetime | None, prompt_seconds: float
) -> datetime:
    """When the job should be finished: Astria's eta for a tune, else a duration estimate."""
    if eta is not None:
        return eta
    seconds = prompt_seconds if kind == "prompt" else 20 * 60
    return submitted_at + timedelta(seconds=seconds)


def first_check(
    kind: str, submitted_at: datetime, expected: datetime, policy: PollPolicy
) -> datetime:
    """Nothing to learn before the job could be done: look first at its expected finish
    (not sooner than the minimum interval after submission). With callbacks on, polling is
    the safety net and waits longer."""
    earliest = submitted_at + timedelta(seconds=policy.minimum(kind))
    extra = timedelta(seconds=policy.minimum(kind) * (policy.slowdown - 1))
    return max(expected, earliest) + extra


def next_check(
    kind: str, now: datetime, misses: int, policy: PollPolicy, *, stuck: bool = False
) -> datetime:
    """After `misses` looks that found the job unfinished: the minimum interval for the
    first two (most jobs that miss their expected finish run only a little long, and
    are then seen within one interval), then doubling up to the cap; stuck jobs are
    looked at slowly."""
    if stuck:
        interval = policy.stuck_interval
    else:
        interval = min(policy.minimum(kind) * 2 ** max(misses - FLAT_MISSES, 0), policy.cap)
    return now + timedelta(seconds=interval * policy.slowdown)


def is_stuck(kind: str, now: datetime, expected: datetime, policy: PollPolicy) -> bool:
    """Long past its expected finish with no result."""
    grace = policy.tune_stuck_after if kind == "tune" else policy.prompt_stuck_after
    return now > expected + timedelta(seconds=grace)
