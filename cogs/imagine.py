"""/imagine: a prompt with one of the member's tunes (or one shared with the server)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.actions import prompts
from bot.rules.prompts import HIGH_RESOLUTION, AspectRatio, PromptOptions, Quality, Style
from bot.store import TuneState
from bot.ui.door import actor_of, entry, place_of, reply, services
from cogs.checks import refuse_if_cannot_post

if TYPE_CHECKING:
    from bot.app import AstriaBot


class Imagine(commands.Cog):
    def __init__(self, bot: AstriaBot) -> None:
        self.bot = bot

    @app_commands.command(name="imagine", description="Make images of your tune's subject")
    @app_commands.describe(
        prompt="What to show, e.g. 'on a beach at sunset, film photo'",
        tune="One of your ready tunes (or one shared with this server)",
        count="How many images (1-8)",
        aspect="Shape of the images",
        seed="Repeat a result: the seed from its Details",
        negative="What to keep out of the picture (SD1.5 and FaceID; Flux ignores it)",
        style="One of Astria's styles (e.g. Cinematic, Comic book)",
        quality="standard: the image price; high: 2K; super: super-resolution x4 "
        "(each priced per image, see /help)",
    )
    @app_commands.guild_only()
    @entry("spends")
    async def imagine(
        self,
        interaction: discord.Interaction[AstriaBot],
        prompt: app_commands.Range[str, 1, 600],
        tune: str,
        count: app_commands.Range[int, 1, 8] = 1,
        aspect: AspectRatio = "1:1",
        seed: app_commands.Range[int, 0, 4_294_967_295] | None = None,
        negative: app_commands.Range[str, 0, 300] | None = None,
        style: Style | None = None,
        quality: Quality = "standard",
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        refuse_if_cannot_post(interaction)
        order = prompts.PromptOrder(
            text=prompt,
            tune=tune,
            count=count,
            seed=seed,
            options=PromptOptions(
                aspect_ratio=aspect,
                negative_prompt=negative or None,
                style=style,
                super_resolution=quality == "super",
                resolution=HIGH_RESOLUTION if quality == "high" else None,
            ),
        )
        outcome = await prompts.queue_prompt(
            services(interaction), actor_of(interaction), place_of(interaction), order
        )
        await reply(interaction, outcome)

    @imagine.autocomplete("tune")
    async def tune_names(
        self, interaction: discord.Interaction[AstriaBot], current: str
    ) -> list[app_commands.Choice[str]]:
        tunes = await self.bot.store.tunes.list_usable(
            interaction.user.id, interaction.guild_id or 0, states=[TuneState.READY]
        )
        wanted = current.casefold()
        return [
            app_commands.Choice(name=t.name[:100], value=str(t.id))
            for t in tunes
            if wanted in t.name.casefold()
        ][:25]


async def setup(bot: AstriaBot) -> None:
    await bot.add_cog(Imagine(bot))
