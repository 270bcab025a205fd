"""A two-button confirmation for something that cannot be undone (deleting a tune)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from bot.ui.base import SafeView, answer, answer_error

TIMED_OUT = "No answer in time; nothing was changed."
Action = Callable[[discord.Interaction[Any]], Awaitable[str]]


class Confirm(SafeView):
    """Only `owner_id` may press; `action` runs once and its words replace the question."""

    def __init__(
        self, owner_id: int, action: Action, *, confirm_label: str, timeout: float = 300.0
    ) -> None:
        super().__init__(timeout=timeout)
        self.owner_id = owner_id
        self._action = action
        self.done = False
        self.confirm.label = confirm_label
        # The question's message, so a timeout can take the buttons away: a button whose
        # view has expired would show "This interaction failed".
        self.message: discord.Message | discord.WebhookMessage | None = None

    async def on_timeout(self) -> None:
        if self.message is not None and not self.done:
            with contextlib.suppress(discord.HTTPException):
                await self.message.edit(
                    content="No answer in time; nothing was changed.", view=None
                )

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        if interaction.user.id != self.owner_id:
            await answer(interaction, "This question is for the member who asked.")
            return False
        return True

    @discord.ui.button(label="Confirm", style=discord.ButtonStyle.danger)
    async def confirm(
        self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]
    ) -> None:
        if self.done:
            await answer(interaction, "Already done.")
            return
        self.done = True
        self.stop()
        await interaction.response.edit_message(content="Working on it…", view=None)
        try:
            result = await self._action(interaction)
        except Exception as exc:
            await interaction.edit_original_response(content="Not done.")
            await answer_error(interaction, exc)
            return
        await interaction.edit_original_response(content=result)

    @discord.ui.button(label="Keep it", style=discord.ButtonStyle.secondary)
    async def keep(
        self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]
    ) -> None:
        self.stop()
        await interaction.response.edit_message(content="Nothing was changed.", view=None)
