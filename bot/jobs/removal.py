"""Deleting a member's tune: at Astria first (the model, its photos and the images made
with it), then in the store. No Discord here.

A checkpoint tune's prompts live on the tune and go with it. LoRA and FaceID prompts live
on the shared base tune, so each one made with this tune is deleted on its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.astria import AstriaClient
from bot.store import Store, TuneRecord, TuneState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Removal:
    tune: TuneRecord
    prompts_deleted: int


async def delete_tune(store: Store, astria: AstriaClient, tune: TuneRecord) -> Removal:
    """Delete a ready tune everywhere. Astria errors other than "already gone" propagate
    (the tune stays ready and the member can try again); a repeat is harmless."""
    if tune.state != TuneState.READY:
        raise ValueError(f"only a ready tune can be deleted, not a {tune.state} one")
    deleted = 0
    for prompt in await store.prompts.for_tune(tune.id):
        # Where each prompt went was stored when it was accepted: one posted to the tune
        # itself goes with the tune, one posted to a base tune is deleted on its own.
        if prompt.astria_id is None or prompt.target_tune_id == tune.astria_id:
            continue
        if await astria.delete_prompt(prompt.astria_id):  # False: already gone
            deleted += 1
    if tune.astria_id is not None:
        await astria.delete_tune(tune.astria_id)
    moved = await store.tunes.set_state(tune.id, TuneState.DELETED)
    log.info("tune %s deleted (%s prompts on the base tune)", tune.id, deleted)
    return Removal(moved, deleted)
