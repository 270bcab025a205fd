"""/imagine: a prompt with one of the member's tunes (or one shared with the server)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.credits import Refusal, format_mc, images_price
from bot.prompts import PromptRefusal, TuneRef, build_prompt, clean_negative, rules_from
from bot.store import TuneState
from bot.ui.base import UserError
from cogs.checks import refuse_if_cannot_post, refuse_if_not_allowed

if TYPE_CHECKING:
    from bot.app import AstriaBot

Aspect = Literal["1:1", "3:2", "2:3", "16:9", "9:16"]


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
        negative="What to keep out of the picture",
    )
    @app_commands.guild_only()
    async def imagine(
        self,
        interaction: discord.Interaction[AstriaBot],
        prompt: app_commands.Range[str, 1, 600],
        tune: str,
        count: app_commands.Range[int, 1, 8] = 1,
        aspect: Aspect = "1:1",
        seed: app_commands.Range[int, 0, 4_294_967_295] | None = None,
        negative: app_commands.Range[str, 0, 300] | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        bot = self.bot
        guild_id = interaction.guild_id or 0
        user_id = interaction.user.id
        await refuse_if_not_allowed(interaction)
        refuse_if_cannot_post(interaction)
        if not tune.isdigit():
            raise UserError("Pick a tune from the list (start typing its name).")
        chosen = await bot.store.tunes.get_usable(user_id, guild_id, int(tune))
        if chosen is None:
            raise UserError("That tune is not yours and not shared with this server.")
        if chosen.state != TuneState.READY or chosen.astria_id is None:
            raise UserError(f"**{chosen.name}** is not ready yet ({chosen.state}).")
        usable = await bot.store.tunes.list_usable(user_id, guild_id, states=[TuneState.READY])
        rules = rules_from(bot.settings)
        built = build_prompt(
            prompt,
            TuneRef(
                id=chosen.id,
                astria_id=chosen.astria_id,
                subject_class=chosen.subject_class,
                profile=chosen.profile,  # type: ignore[arg-type]
                branch=chosen.branch,  # type: ignore[arg-type]
                token=bot.settings.profile_named(chosen.profile).token,  # type: ignore[arg-type]
            ),
            bot.settings.profile,
            rules,
            usable_astria_ids=[t.astria_id for t in usable if t.astria_id is not None],
        )
        if isinstance(built, PromptRefusal):
            raise UserError(built.reason)
        params: dict[str, str | int | float | bool | None] = {"aspect_ratio": aspect}
        if negative:
            cleaned = clean_negative(negative, rules)
            if isinstance(cleaned, PromptRefusal):
                raise UserError(cleaned.reason)
            params["negative_prompt"] = cleaned or None
        price = images_price(bot.settings, count, chosen.branch)
        created = await bot.store.prompts.create(
            owner_id=user_id,
            guild_id=guild_id,
            channel_id=interaction.channel_id or 0,
            tune_id=chosen.id,
            user_text=built.user_text,
            final_text=built.final_text,
            num_images=count,
            price_mc=price,
            params=params,
            seed=seed,
        )
        if isinstance(created, Refusal):
            raise UserError(f"Not queued: {created.reason()}")
        bot.tracker.nudge()
        await interaction.followup.send(
            f"🎨 Queued {count} image{'s' if count > 1 else ''} with **{chosen.name}** "
            f"({format_mc(price)}). They will be posted in this channel.",
            ephemeral=True,
        )

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
