"""How a server shows results outside age-restricted channels (Discord's channel `nsfw`
flag; a thread follows its parent). Astria flags no image as NSFW, so the mode applies to
every result posted outside such a channel. Pure: the Discord side says whether a place
is age-restricted."""

from __future__ import annotations

from enum import StrEnum


class NsfwMode(StrEnum):
    SHOW = "show"  # results as they are, everywhere
    SPOILER = "spoiler"  # outside age-restricted channels, every result image a spoiler
    REFUSE = "refuse"  # outside them, new prompts are refused (queued ones: spoilers)


def as_spoiler(mode: NsfwMode, age_restricted: bool) -> bool:
    """Whether a result posted where `age_restricted` says is posted as spoilers. In refuse
    mode a result can still arrive outside (a job queued before the admin switched): it is
    posted as spoilers rather than lost."""
    return not age_restricted and mode is not NsfwMode.SHOW


def refuses(mode: NsfwMode, age_restricted: bool) -> bool:
    """Whether a new prompt asked there is refused."""
    return not age_restricted and mode is NsfwMode.REFUSE
