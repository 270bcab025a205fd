"""The door every member action passes, in this order: the server's rules (a server at
all, paused, banned, the channel rule with a thread following its parent, the role rule;
for actions that make images, the server's NSFW mode), then whose the thing acted on is.
Prices and the reservation come after, in the store's transaction (see
`bot.actions.prompts` and `bot.actions.tunes`).
"""

from __future__ import annotations

import re
from typing import Final

from bot.actions.context import Actor, Place, Refused, Services
from bot.rules.credits import BudgetLimit, QueueFull, Refusal
from bot.rules.nsfw import refuses

# The alert kind the tracker raises when Astria refuses for lack of credit
# (bot/jobs/alerts.py, AlertKind.OUT_OF_CREDIT).
OUT_OF_CREDIT_ALERT: Final = "out-of-credit"
ADMINS_TOLD: Final = " The admins have been told in their alert channel."

IN_A_SERVER: Final = "Use this in a server's channel: the bot's commands do not work in DMs."
PAUSED: Final = "The bot is paused on this server; an admin can resume it."
BANNED: Final = "You can't use the bot on this server."
NOT_HERE: Final = "The bot isn't used in this channel; try one the admins allowed."
NO_ROLE: Final = "Your roles don't include one allowed to use the bot here."
ADMINS_ONLY: Final = "Only members with Manage Server can do that."
NOT_YOURS: Final = "Only the member who made this can do that."
AGE_RESTRICTED_ONLY: Final = (
    "This server makes images only in age-restricted channels: ask again in a channel "
    "marked age-restricted (or a thread in one)."
)

# Discord snowflakes and our own row ids are unsigned 64-bit numbers at most: 20 digits.
_ID: Final = re.compile(r"[0-9]{1,20}")
_ID_MAX: Final = 2**63 - 1  # what SQLite can hold


async def admit(svc: Services, actor: Actor, place: Place) -> Refused | None:
    """None when the server's rules let `actor` act (and spend) in `place`."""
    if not place.guild_id:
        return Refused(IN_A_SERVER)
    rules = await svc.store.guilds.get(place.guild_id)
    if rules.paused:
        return Refused(PAUSED)
    if actor.user_id in rules.banned_user_ids:
        return Refused(BANNED)
    if rules.allowed_channel_ids and not any(
        channel is not None and rules.allows_channel(channel)
        for channel in (place.channel_id, place.parent_id)
    ):
        return Refused(NOT_HERE)
    if not rules.allows_roles(actor.role_ids):
        return Refused(NO_ROLE)
    return None


async def admit_images(svc: Services, actor: Actor, place: Place) -> Refused | None:
    """`admit`, for an action that makes images: in refuse mode (`/admin nsfw`) only in an
    age-restricted channel. Results of jobs already queued are not refused here: delivery
    posts them as spoilers."""
    refused = await admit(svc, actor, place)
    if refused is not None:
        return refused
    assert place.guild_id is not None
    rules = await svc.store.guilds.get(place.guild_id)
    if refuses(rules.nsfw_mode, place.age_restricted):
        return Refused(_where_to_go(rules.allowed_channel_ids))
    return None


def _where_to_go(allowed: frozenset[int]) -> str:
    if not allowed:
        return AGE_RESTRICTED_ONLY
    # The channel rule names where the bot works; the member can tell which are marked.
    named = ", ".join(f"<#{i}>" for i in sorted(allowed)[:10])
    return f"{AGE_RESTRICTED_ONLY} The bot is used in {named}."


def require_admin(actor: Actor, place: Place) -> Refused | None:
    """Admin actions: in a server, by a member with Manage Server. Discord hides /admin
    from others by default, but a server owner can change who sees it."""
    if not place.guild_id:
        return Refused(IN_A_SERVER)
    if not actor.manages_guild:
        return Refused(ADMINS_ONLY)
    return None


def in_server(place: Place) -> Refused | None:
    """Actions on a member's own things need a server too (the /tune group is guild-only;
    a button may sit in a DM)."""
    return None if place.guild_id else Refused(IN_A_SERVER)


def parse_id(text: str, what: str) -> int | Refused:
    """An id typed or picked in an option: ASCII digits that fit a snowflake, else a
    reason (never an exception: "²" and 25 digits are just wrong input)."""
    cleaned = text.strip()
    if _ID.fullmatch(cleaned) is None or int(cleaned) > _ID_MAX or int(cleaned) == 0:
        return Refused(f"Pick {what} from the list (start typing its name).")
    return int(cleaned)


async def budget_refusal(
    svc: Services, guild_id: int, lead: str, refusal: Refusal | QueueFull
) -> Refused:
    """A reservation refused by a budget, in words; when the account is out of credit
    and this server's admins were sent the alert about it, the member is told so."""
    text = f"{lead}{refusal.reason()}"
    if isinstance(refusal, Refusal) and refusal.limit is BudgetLimit.ACCOUNT_SHORT:
        known = await svc.store.account.last_known()
        since = None if known is None else known.short_since
        if since is not None and await svc.store.alerts.told_since(
            guild_id, OUT_OF_CREDIT_ALERT, since
        ):
            text += ADMINS_TOLD
    return Refused(text)
