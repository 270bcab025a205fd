"""/imagine: a prompt with one of the member's tunes (or one shared with the server),
optionally from a picture (`image:`), and the message menu "Imagine from this image"."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.actions import prompts
from bot.rules.prompts import HIGH_RESOLUTION, AspectRatio, PromptOptions, Quality, Style
from bot.rules.tools import FROM_IMAGE_STRENGTH, MAX_STRENGTH, MIN_STRENGTH
from bot.ui.base import UserError
from bot.ui.door import actor_of, done, entry, place_of, reply, services
from bot.ui.forms import ImagineForm, image_source, open_form
from cogs.checks import ready_tune_choices, refuse_if_cannot_post, server_menu

if TYPE_CHECKING:
    from bot.app import AstriaBot


MENU_NAME = "Imagine from this image"
# What the menu takes for a picture when the message says what its files are; the bytes
# are what is checked, at submit.
_IMAGE_NAMES = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".avif", ".gif")
NO_IMAGE = "That message has no image to start from."


def first_image(message: discord.Message) -> discord.Attachment | None:
    """The message's first picture: by its type, else by its name."""
    for attachment in message.attachments:
        kind = (attachment.content_type or "").lower()
        if kind.startswith("image/") or attachment.filename.lower().endswith(_IMAGE_NAMES):
            return attachment
    return None


class Imagine(commands.Cog):
    def __init__(self, bot: AstriaBot) -> None:
        self.bot = bot
        self.menu = server_menu(MENU_NAME, self.imagine_from_message)

    async def cog_load(self) -> None:
        # The decorator form does not work inside a cog: a menu is added to the tree.
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

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
        image="Start from this picture (JPEG, PNG or WebP, 512 px at least)",
        strength=f"How far from the image: {MIN_STRENGTH} keeps it, 1 ignores it "
        f"(default {FROM_IMAGE_STRENGTH})",
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
        image: discord.Attachment | None = None,
        strength: app_commands.Range[float, MIN_STRENGTH, MAX_STRENGTH] | None = None,
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
            image=image_source(image) if image is not None else None,
            strength=strength,
        )
        outcome = await prompts.queue_prompt(
            services(interaction), actor_of(interaction), place_of(interaction), order
        )
        await reply(interaction, outcome)

    @entry("spends")
    async def imagine_from_message(
        self, interaction: discord.Interaction[AstriaBot], message: discord.Message
    ) -> None:
        """Any message's picture, anyone's: the form opens (its first answer) once the
        server's rules and the member's tune allow it; the picture is read at submit."""
        image = first_image(message)
        if image is None:
            raise UserError(NO_IMAGE)
        refuse_if_cannot_post(interaction)
        quote = done(
            await prompts.quote_from_image(
                services(interaction), actor_of(interaction), place_of(interaction)
            )
        ).value
        await open_form(interaction, ImagineForm(self.bot.forms, image, quote))

    @imagine.autocomplete("tune")
    async def tune_names(
        self, interaction: discord.Interaction[AstriaBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return await ready_tune_choices(interaction, current, own_only=False)


async def setup(bot: AstriaBot) -> None:
    await bot.add_cog(Imagine(bot))
