"""What the tracker tells the outside world, and the protocol it tells it through.

End events (ready, done, failed, cancelled, stuck, expiry) carry a key made of the job and
the event. The tracker records each one durably before reporting it, so after a crash it
may report an event again under the same key, never under a new one, and never skips one;
a `Delivery` makes the repeat harmless. Progress updates are best effort and carry no key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol


class EventKind(StrEnum):
    READY = "ready"  # a tune finished training
    DONE = "done"  # a prompt's images are there
    FAILED = "failed"
    CANCELLED = "cancelled"
    STUCK = "stuck"  # long past its expected time; the money stays held
    EXPIRY_SOON = "expiry-soon"  # Astria deletes the tune in a few days
    EXPIRED = "expired"


class Outcome(StrEnum):
    DELIVERED = "delivered"  # posted in the channel or by DM
    UNDELIVERABLE = "undeliverable"  # Discord refused both; the result is kept for /jobs


@dataclass(frozen=True)
class JobEvent:
    """One thing that happened to a job, reported once (repeats share the key)."""

    key: str  # "prompt:34:done"
    job: str  # "prompt:34"
    kind: EventKind
    owner_id: int
    guild_id: int
    channel_id: int
    message: str | None = None  # plain words for the member (a failure's reason)
    images: tuple[str, ...] = ()
    cost_mc: int | None = None
    at: datetime | None = None


# A queued paid job held back because Astria said the account's credit ran out.
WAITING_FOR_CREDIT = "waiting_for_credit"


@dataclass(frozen=True)
class Progress:
    """Where a job stands now: for a status message, edited at milestones only."""

    job: str
    state: str
    owner_id: int
    guild_id: int
    channel_id: int
    queue_position: int | None = None
    eta: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)


class DeliveryFailed(Exception):
    """Discord did not take the report. `permanent`: for a reason trying the same place
    again will not change (the channel is closed to the bot or gone, the post's body is
    refused); `certain` when one refusal proves it (the channel is gone). Anything else is
    transient (Discord's 5xx, a 429 beyond what discord.py waits out, a lost connection, a
    timeout) and is tried again later."""

    def __init__(self, reason: str, *, permanent: bool = False, certain: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent or certain
        self.certain = certain


# Bounds on reporting one event (docs: README, "How a job is followed"). A permanent
# refusal in the channel is tried this many times (a permission an admin is fixing gets
# two more chances) before the member is told by DM; a certain one goes to the DM at once.
# When the DM is refused too, the event ends `undeliverable` (the result is kept for /jobs).
CHANNEL_REFUSALS_BEFORE_DM = 3
# Every failed attempt waits before the next one: doubling from the base, at most the cap.
RETRY_BASE = timedelta(seconds=15)
RETRY_CAP = timedelta(minutes=10)


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failed attempt (1, 2, ...)."""
    doublings: int = min(max(attempts - 1, 0), 16)
    return min(RETRY_CAP, RETRY_BASE * (1 << doublings))


class Delivery(Protocol):
    async def report(self, event: JobEvent, *, private: bool = False) -> Outcome:
        """Tell the member in the job's channel, or (`private`) by DM; repeating a key must
        post nothing new. Raises `DeliveryFailed` when Discord does not take it."""
        ...

    async def progress(self, update: Progress) -> None:
        """Show a milestone or a queue-position change; best effort."""
        ...


def event_key(job: str, kind: EventKind) -> str:
    return f"{job}:{kind}"
