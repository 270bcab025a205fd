"""The one error path for buttons and modals. discord.py sends errors raised in component
and modal callbacks to the view's `on_error`, not to the app-command error handler, so
every component here goes through these bases: whatever fails, the member gets a short
ephemeral answer, never "This interaction failed"."""

from __future__ import annotations

import logging
from typing import Any

import discord

log = logging.getLogger(__name__)

SORRY = "Something went wrong on our side; nothing was charged for this click. Please try again."


async def answer(interaction: discord.Interaction[Any], text: str) -> None:
    """Reply ephemerally, whether or not the interaction was already answered."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not answer interaction %s", interaction.id, exc_info=True)


class UserError(Exception):
    """A refusal with words for the member (not a bug): shown as it is."""


async def answer_error(interaction: discord.Interaction[Any], error: BaseException) -> None:
    if isinstance(error, UserError):
        await answer(interaction, str(error))
        return
    log.error("component failed", exc_info=error)
    await answer(interaction, SORRY)


class SafeView(discord.ui.View):
    async def on_error(
        self,
        interaction: discord.Interaction[Any],
        error: Exception,
        item: discord.ui.Item[Any],
    ) -> None:
        await answer_error(interaction, error)


class SafeModal(discord.ui.Modal):
    async def on_error(  # type: ignore[override]  # discord.py's Modal drops the item
        self, interaction: discord.Interaction[Any], error: Exception, /
    ) -> None:
        await answer_error(interaction, error)
