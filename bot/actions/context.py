"""What every use case takes and returns: plain values, no Discord.

An entry point (a slash command, a button, the message menu) turns its interaction into a
`Place` and an `Actor`, calls one action, and turns the `Outcome` into a reply.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeAlias, TypeVar

from bot.astria import AstriaClient
from bot.config import Settings
from bot.jobs import Tracker
from bot.jobs.alerts import Alerter
from bot.logs import job_context
from bot.rules.intake import PhotoIntake
from bot.store import Store

T = TypeVar("T")


@dataclass(frozen=True)
class Place:
    """Where the member acted. `guild_id` is None in a DM; `parent_id` is the channel a
    thread or forum post belongs to (its channel rule is the parent's). `age_restricted`:
    Discord's channel `nsfw` flag (a thread's is its parent's); False when not known."""

    guild_id: int | None
    channel_id: int | None
    parent_id: int | None = None
    age_restricted: bool = False


@dataclass(frozen=True)
class Actor:
    """Who acted: their roles in the server and whether they have Manage Server."""

    user_id: int
    role_ids: frozenset[int] = frozenset()
    manages_guild: bool = False
    display_name: str = ""


@dataclass(frozen=True)
class Refused:
    """The action was not done; `reason` is for the member, as it is."""

    reason: str


@dataclass(frozen=True)
class Done(Generic[T]):
    """The action was done: `text` is what to tell the member, `value` what it made."""

    text: str
    value: T


Outcome: TypeAlias = Done[T] | Refused


@dataclass
class Services:
    """What the use cases work with, built once in `setup_hook`."""

    settings: Settings
    store: Store
    astria: AstriaClient
    tracker: Tracker
    intake: PhotoIntake
    alerts: Alerter | None = None  # what admins are told in their alert channel


P = ParamSpec("P")
R = TypeVar("R")


def acting(action: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """For an action taking `(svc, actor, place, ...)`: every line logged while it runs
    names the server and the member (bot/logs.py), and the job once it binds one."""

    @functools.wraps(action)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        actor = kwargs.get("actor", args[1] if len(args) > 1 else None)
        place = kwargs.get("place", args[2] if len(args) > 2 else None)
        guild_id = place.guild_id if isinstance(place, Place) else None
        member_id = actor.user_id if isinstance(actor, Actor) else None
        with job_context(guild_id=guild_id, member_id=member_id):
            return await action(*args, **kwargs)

    return wrapper
