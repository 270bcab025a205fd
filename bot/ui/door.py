"""The Discord side of the one door: an interaction becomes a `Place` and an `Actor`, and
an action's `Outcome` becomes a reply (a refusal is raised as a `UserError`, which every
entry point's one error path answers ephemerally)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

import discord

from bot.actions import Actor, Done, Outcome, Place, Refused, Services
from bot.ui.base import UserError, answer

T = TypeVar("T")


def place_of(interaction: discord.Interaction[Any]) -> Place:
    channel = interaction.channel
    parent = channel.parent_id if isinstance(channel, discord.Thread) else None
    return Place(interaction.guild_id, interaction.channel_id, parent)


def actor_of(interaction: discord.Interaction[Any]) -> Actor:
    user = interaction.user
    roles = frozenset(r.id for r in getattr(user, "roles", ()))
    manages = bool(interaction.guild_id) and interaction.permissions.manage_guild
    return Actor(user.id, roles, manages, user.display_name)


def services(interaction: discord.Interaction[Any]) -> Services:
    """The use cases' services, hung on the bot once in `setup_hook`."""
    return cast(Services, interaction.client.services)


def done(outcome: Outcome[T]) -> Done[T]:
    """The outcome if the action was done; a refusal becomes the member's answer."""
    if isinstance(outcome, Refused):
        raise UserError(outcome.reason)
    return outcome


async def reply(interaction: discord.Interaction[Any], outcome: Outcome[Any]) -> None:
    """Answer the member with the outcome's words (ephemeral, deferred or not)."""
    await answer(interaction, done(outcome).text)


# What each entry point does, declared where it is defined, so a test can walk every
# command and button and hold each to the rules of its kind: `spends` may create a job
# (every server rule applies), `removes` acts on the member's own things (theirs only),
# `admin` needs Manage Server, `reads` shows and changes nothing.
EntryKind = Literal["spends", "removes", "admin", "reads"]
F = TypeVar("F", bound=Callable[..., Any])


def entry(kind: EntryKind) -> Callable[[F], F]:
    """Mark a command's or menu's callback with its kind (see `EntryKind`)."""

    def mark(callback: F) -> F:
        callback.__entry_kind__ = kind  # type: ignore[attr-defined]
        return callback

    return mark


def entry_kind(callback: object) -> EntryKind | None:
    kind = getattr(callback, "__entry_kind__", None)
    return cast(EntryKind | None, kind)
