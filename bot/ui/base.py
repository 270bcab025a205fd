"""The one error path for buttons and modals. discord.py sends errors raised in component
and modal callbacks to the view's `on_error`, not to the app-command error handler, so
every component here goes through these bases: whatever fails, the member gets a short
ephemeral answer, never "This interaction failed"."""

from __future__ import annotations

import logging
from typing import Any

import discord

from bot.astria.errors import (
    AstriaAuthError,
    AstriaConnectionLost,
    AstriaPaymentRefused,
    AstriaRateLimited,
    AstriaServerError,
    AstriaValidationError,
)

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


ASTRIA_DOWN = "Astria is not answering right now; nothing was charged. Try again in a minute."


def words_for(error: BaseException) -> str | None:
    """What to tell the member about an error, or None for a bug (logged, then SORRY)."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, AstriaValidationError):
        return f"Astria refused that: {error.plain()}"
    if isinstance(error, AstriaRateLimited | AstriaServerError | AstriaConnectionLost):
        return ASTRIA_DOWN
    if isinstance(error, AstriaAuthError):
        return "The bot's Astria key was refused; the bot's owner has to fix it."
    if isinstance(error, AstriaPaymentRefused):
        return "The Astria account cannot pay for this; the bot's owner has to top it up."
    return None


async def answer_error(interaction: discord.Interaction[Any], error: BaseException) -> None:
    text = words_for(error)
    if text is None:
        log.error("interaction failed", exc_info=error)
        text = SORRY
    elif not isinstance(error, UserError):
        log.warning("interaction refused by Astria: %s", error)
    await answer(interaction, text)


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
