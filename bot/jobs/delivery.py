"""What the tracker tells the outside world, and the protocol it tells it through.

End events (ready, done, failed, cancelled, stuck, expiry) carry a key made of the job and
the event. The tracker records each one durably before reporting it, so after a crash it
may report an event again under the same key, never under a new one, and never skips one;
a `Delivery` makes the repeat harmless. Progress updates are best effort and carry no key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
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


class Delivery(Protocol):
    async def report(self, event: JobEvent) -> Outcome:
        """Tell the member; repeating a key must post nothing new."""
        ...

    async def progress(self, update: Progress) -> None:
        """Show a milestone or a queue-position change; best effort."""
        ...


def event_key(job: str, kind: EventKind) -> str:
    return f"{job}:{kind}"
