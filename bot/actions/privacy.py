"""A member's right to erase: their tunes and prompts at Astria and here, their photos,
and every row that links their Discord id to a name or a text. The ledger keeps its
amounts (the operator's accounts) with the member's id replaced; bans stay (the admins'
rule). Discord messages are deleted by the caller with the ids this returns.

A member erases themselves everywhere; an admin erases a member (present or gone) in
their own server only. While one of the member's jobs is at Astria the erase is refused:
its result would arrive for a member who is no longer there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bot.actions.context import Actor, Done, Outcome, Place, Refused, Services, acting
from bot.actions.door import NOT_YOURS, parse_id, require_admin
from bot.jobs.removal import delete_tune as remove_everywhere
from bot.store import ERASED, PromptRecord, PromptState, TuneRecord, TuneState

log = logging.getLogger(__name__)

EVERYWHERE: Final = 0  # the scope of a member's own erase: every server
_RUNNING_TUNES = frozenset({TuneState.SUBMITTING, TuneState.TRAINING, TuneState.STUCK})
_RUNNING_PROMPTS = frozenset({PromptState.SUBMITTING, PromptState.GENERATING, PromptState.STUCK})


@dataclass(frozen=True)
class EraseRequest:
    """Whose data, and where (`guild_id` EVERYWHERE: every server)."""

    user_id: int
    guild_id: int


@dataclass(frozen=True)
class Erased:
    tunes: int
    prompts: int
    messages: tuple[tuple[int, int], ...]  # (channel id, message id) for the caller


def _question(self_erase: bool, who: str) -> str:
    whose = "your" if self_erase else f"{who}'s"
    where = "in every server" if self_erase else "in this server"
    return (
        f"Erase {whose} data {where}? The tunes and images are deleted at Astria, the "
        "photos and the result posts here, and nothing the bot keeps names "
        f"{'you' if self_erase else 'them'} any more. What was spent stays in the server's "
        "accounts without a name; bans stay. This cannot be undone."
    )


@acting
async def ask_erase(svc: Services, actor: Actor, place: Place) -> Outcome[EraseRequest]:
    """`/privacy erase`: the question, and what the confirmation button will carry."""
    return Done(_question(True, ""), EraseRequest(actor.user_id, EVERYWHERE))


@acting
async def ask_admin_erase(
    svc: Services,
    actor: Actor,
    place: Place,
    member_id: int | None,
    typed_id: str | None,
    who: str = "",
) -> Outcome[EraseRequest]:
    """`/admin erase`: a member picked, or the id of one who left, erased in this server."""
    refused = require_admin(actor, place)
    if refused is not None:
        return refused
    assert place.guild_id is not None
    target: int | Refused | None = member_id
    if target is None and typed_id is not None:
        target = parse_id(typed_id, "a member")
        who = ""
    if isinstance(target, Refused):
        return Refused("Type the member's numeric id (Developer Mode: Copy User ID).")
    if target is None or target == ERASED:
        return Refused("Pick a member, or type the id of one who left in `user_id`.")
    return Done(_question(False, who or f"<@{target}>"), EraseRequest(target, place.guild_id))


def may_erase(actor: Actor, place: Place, request: EraseRequest) -> Refused | None:
    """The member themselves (everywhere), or an admin of the server the scope names,
    acting in that server."""
    if request.guild_id == EVERYWHERE:
        return None if request.user_id == actor.user_id else Refused(NOT_YOURS)
    if actor.manages_guild and place.guild_id == request.guild_id:
        return None
    return Refused(NOT_YOURS)


@acting
async def erase(
    svc: Services, actor: Actor, place: Place, request: EraseRequest
) -> Outcome[Erased]:
    """Confirmed: cancel what waits, refuse while something runs, delete at Astria, then
    unlink here and delete the photo files."""
    refused = may_erase(actor, place, request)
    if refused is not None:
        return refused
    store, user = svc.store, request.user_id
    scope = None if request.guild_id == EVERYWHERE else request.guild_id
    tunes = await store.tunes.list_for(user, guild_id=scope)
    prompts = await store.prompts.list_for(user, guild_id=scope, limit=1_000_000)
    busy = _running(tunes, prompts)
    if busy is not None:
        return Refused(busy)
    for job in [t.job for t in tunes if t.state == TuneState.QUEUED] + [
        p.job for p in prompts if p.state == PromptState.QUEUED
    ]:
        if not await svc.tracker.cancel_queued(job, user):
            return Refused(_RUNNING_NOW)
    removed: set[int] = set()
    for tune in tunes:
        if tune.state == TuneState.READY:
            await remove_everywhere(store, svc.astria, tune)  # with its prompts at Astria
            removed.add(tune.id)
    for prompt in prompts:
        if prompt.astria_id is None or prompt.tune_id in removed:
            continue
        # With idempotency on, another member's identical prompt may share the Astria id:
        # their images are theirs.
        shared = await store.prompts.by_astria_id(prompt.astria_id)
        if any(p.owner_id not in (user, ERASED) for p in shared):
            continue
        await svc.astria.delete_prompt(prompt.astria_id)  # False: already gone
    scrubbed = await store.erasure.scrub(user, guild_id=scope)
    await asyncio.to_thread(_unlink, scrubbed.photo_paths)
    log.info(
        "erased member data (%s tunes, %s prompts, %s ledger rows unnamed, scope %s)",
        scrubbed.tunes,
        scrubbed.prompts,
        scrubbed.ledger_rows,
        scope or "everywhere",
    )
    text = (
        f"🧹 Erased: {scrubbed.tunes} tunes and {scrubbed.prompts} prompts, at Astria and "
        "here, with their photos. Posts the bot could reach are being deleted."
    )
    return Done(text, Erased(scrubbed.tunes, scrubbed.prompts, scrubbed.messages))


_RUNNING_NOW: Final = (
    "Not erased: a job has just started at Astria. Wait until it finishes (or cancel it "
    "with the Cancel button on its status, or ask an admin for a stuck one), then erase again."
)


def _running(tunes: list[TuneRecord], prompts: list[PromptRecord]) -> str | None:
    for tune in tunes:
        if tune.state in _RUNNING_TUNES:
            return (
                f"Not erased: a tune is {tune.state} at Astria. Wait until it finishes (an "
                "admin can cancel a stuck one with `/admin cancel`), then erase again."
            )
    for prompt in prompts:
        if prompt.state in _RUNNING_PROMPTS:
            return (
                f"Not erased: a prompt is {prompt.state} at Astria. Wait until it finishes "
                "(or cancel it with the Cancel button on its status), then erase again."
            )
    return None


def _unlink(paths: tuple[str, ...]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            Path(path).unlink(missing_ok=True)
