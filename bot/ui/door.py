"""The Discord side of the one door: an interaction becomes a `Place` and an `Actor`, and
an action's `Outcome` becomes a reply (a refusal is raised as a `UserError`, which every
entry point's one error path answers ephemerally)."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar, cast

import discord

from bot.actions import Actor, Done, Outcome, Place, Refused, Services
from bot.actions.reports import NameLookup
from bot.ui.base import UserError, answer

log = logging.getLogger(__name__)

T = TypeVar("T")


def place_of(interaction: discord.Interaction[Any]) -> Place:
    channel = interaction.channel
    parent = channel.parent_id if isinstance(channel, discord.Thread) else None
    return Place(interaction.guild_id, interaction.channel_id, parent, age_restricted(channel))


def age_restricted(channel: object) -> bool:
    """Discord's `nsfw` flag of a channel; a thread's is its parent's (discord.py reads the
    parent from the cache: a parent it does not know counts as not age-restricted, the
    cautious side). A DM has no flag: not age-restricted."""
    if isinstance(channel, discord.Thread):
        parent = channel.parent
        return parent is not None and age_restricted(parent)
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


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


async def answer_with_file(
    interaction: discord.Interaction[Any], text: str, data: bytes | None, filename: str
) -> None:
    """`answer`, with `data` attached as `filename` (just the text when there is none)."""
    if data is None:
        await answer(interaction, text)
        return
    file = discord.File(io.BytesIO(data), filename=filename)
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, file=file, ephemeral=True)
        else:
            await interaction.response.send_message(text, file=file, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not answer interaction %s", interaction.id, exc_info=True)


def member_names(interaction: discord.Interaction[Any]) -> NameLookup:
    """Members' display names in the interaction's server, from the cache or else asked of
    Discord one by one (the callers ask for a handful); a member who left is skipped."""

    async def lookup(user_ids: Sequence[int]) -> Mapping[int, str]:
        guild = interaction.guild
        if guild is None:
            return {}
        found: dict[int, str] = {}
        for user_id in user_ids:
            member = guild.get_member(user_id)
            if member is None:
                try:
                    member = await guild.fetch_member(user_id)
                except (discord.NotFound, discord.Forbidden):
                    continue
            found[user_id] = member.display_name
        return found

    return lookup


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
