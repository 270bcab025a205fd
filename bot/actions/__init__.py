"""The use cases: every way a member or admin acts goes through one of these, Discord-free.

Each takes plain values (`Place`, `Actor`, the request) and returns an `Outcome`: `Done`
with what to tell the member, or `Refused` with the reason. Each checks, in this order and
nowhere else: the server's rules (`door.admit`; `door.admit_images` adds the NSFW mode
for actions that make images), whose the thing is, the price by the
tune's own branch, and the reservation with the job row in one store transaction. Nothing
outside this package and `bot.store` creates a job or a ledger row.
"""

from bot.actions import admin, privacy, prompts, reports, tools, tunes
from bot.actions.context import Actor, Done, Outcome, Place, Refused, Services

__all__ = [
    "Actor",
    "Done",
    "Outcome",
    "Place",
    "Refused",
    "Services",
    "admin",
    "privacy",
    "prompts",
    "reports",
    "tools",
    "tunes",
]
