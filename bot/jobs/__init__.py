"""Following jobs: the queue in front of Astria, the tracker, and the Delivery protocol it
reports to. Knows no Discord."""

from bot.jobs.callbacks import CallbackReceiver
from bot.jobs.delivery import (
    Delivery,
    DeliveryFailed,
    EventKind,
    JobEvent,
    Outcome,
    Progress,
    event_key,
)
from bot.jobs.schedule import PollPolicy
from bot.jobs.tracker import PollReport, Tracker, TrackerConfig

__all__ = [
    "CallbackReceiver",
    "Delivery",
    "DeliveryFailed",
    "EventKind",
    "JobEvent",
    "Outcome",
    "PollPolicy",
    "PollReport",
    "Progress",
    "Tracker",
    "TrackerConfig",
    "event_key",
]
