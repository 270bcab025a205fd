"""/tune: a member's fine-tunes. `/tune create` and the message menu "Train a tune from
these photos" open the tune form; list, show and delete work on the member's own tunes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.actions import tunes
from bot.rules.credits import format_mc
from bot.rules.intake import PhotoSource
from bot.rules.photos import photo_label
from bot.rules.prompts import display_text, subject_classes
from bot.store import TuneRecord, TuneState
from bot.ui.base import UserError
from bot.ui.buttons import delete_question_view
from bot.ui.door import actor_of, done, entry, place_of, reply, services
from bot.ui.forms import TuneForm, TuneFormValues, open_form
from bot.ui.text import timestamp
from cogs.checks import refuse_if_cannot_post, server_menu

DELETABLE = frozenset({TuneState.QUEUED, TuneState.READY})

if TYPE_CHECKING:
    from bot.app import AstriaBot

MENU_NAME = "Train a tune from these photos"


def days_left(tune: TuneRecord, now: datetime) -> int | None:
    """Whole days before Astria deletes the tune (None while it has no expiry yet)."""
    if tune.expires_at is None:
        return None
    return max(0, (tune.expires_at - now).days)


def describe(tune: TuneRecord, now: datetime) -> str:
    name = display_text(tune.name, 40)
    state = str(tune.state)
    if tune.state in (TuneState.TRAINING, TuneState.QUEUED) and tune.eta is not None:
        state += f", ready {timestamp(tune.eta)}"
    left = days_left(tune, now)
    if tune.state == TuneState.READY and left is not None:
        state += f", {left} days before Astria deletes it"
    shared = " (shared with the server)" if tune.shared else ""
    return f"**{name}** ({tune.subject_class}): {state}{shared}"


@app_commands.guild_only()
@app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
@app_commands.allowed_installs(guilds=True, users=False)
class Tunes(commands.GroupCog, group_name="tune", group_description="Your fine-tunes"):
    def __init__(self, bot: AstriaBot) -> None:
        self.bot = bot
        super().__init__()
        self.menu = server_menu(MENU_NAME, self.train_from_message)

    async def cog_load(self) -> None:
        # The decorator form does not work inside a cog: a menu is added to the tree.
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    # ------------------------------------------------------------------ create

    def _form(self, quote: tunes.TuneQuote, *, uploads: bool, **kw: Any) -> TuneForm:
        price, left = quote.price_mc, quote.left_mc
        cost = "free" if price == 0 else format_mc(price)
        title = f"New tune ({cost})" if price == 0 else f"New tune ({cost}; {format_mc(left)} left)"
        return TuneForm(
            self.bot.forms,
            self._train,
            title=title,
            classes=subject_classes(self.bot.settings.model_profile),
            uploads=uploads,
            price_note=f"Training costs {cost}.",
            **kw,
        )

    @app_commands.command(name="create", description="Train a tune from 4-20 photos")
    @entry("spends")
    async def create(self, interaction: discord.Interaction[AstriaBot]) -> None:
        # The form is the first response: only the fast checks run before it.
        refuse_if_cannot_post(interaction)
        quote = done(
            await tunes.quote_tune(
                services(interaction), actor_of(interaction), place_of(interaction)
            )
        )
        await open_form(interaction, self._form(quote.value, uploads=True))

    @entry("spends")
    async def train_from_message(
        self, interaction: discord.Interaction[AstriaBot], message: discord.Message
    ) -> None:
        posted = tunes.PostedPhotos(message.author.id, len(message.attachments))
        refuse_if_cannot_post(interaction)
        quote = done(
            await tunes.quote_tune(
                services(interaction), actor_of(interaction), place_of(interaction), posted
            )
        ).value
        photos = list(message.attachments)[: quote.photos]
        note = f"Uses the {len(photos)} photos of your message; they are of you or agreed"
        form = self._form(quote, uploads=False, photos_note=note, given_photos=photos)
        await open_form(interaction, form)

    async def _train(self, interaction: discord.Interaction[Any], values: TuneFormValues) -> None:
        """The form was submitted: the action reads and checks the photos, then reserves
        and queues."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        order = tunes.TuneOrder(
            name=values.name,
            subject_class=values.subject_class,
            consent=values.consent,
            photos=[
                PhotoSource(label=photo_label(i, a.filename), size=a.size, read=a.read)
                for i, a in enumerate(values.photos, start=1)
            ],
        )
        outcome = await tunes.start_tune(
            services(interaction), actor_of(interaction), place_of(interaction), order
        )
        await reply(interaction, outcome)

    @app_commands.command(name="list", description="Your tunes and how long they last")
    @entry("reads")
    async def list_tunes(self, interaction: discord.Interaction[AstriaBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        now = self.bot.now()
        tunes = await self.bot.store.tunes.list_for(interaction.user.id)
        live = [t for t in tunes if t.state not in (TuneState.DELETED, TuneState.CANCELLED)]
        text = "\n".join(describe(t, now) for t in live) or "No tunes yet: `/tune create`."
        await interaction.followup.send(text[:2000], ephemeral=True)

    @app_commands.command(name="show", description="One of your tunes in detail")
    @app_commands.describe(name="The tune's name")
    @entry("reads")
    async def show(self, interaction: discord.Interaction[AstriaBot], name: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        tune = await self.bot.store.tunes.by_name(interaction.user.id, name)
        if tune is None:
            raise UserError("You have no tune by that name (see `/tune list`).")
        prompts = await self.bot.store.prompts.list_for(interaction.user.id, limit=100)
        used = len([p for p in prompts if p.tune_id == tune.id])
        lines = [describe(tune, self.bot.now()), f"Prompts made with it: {used}"]
        if tune.trained_at is not None:
            lines.append(f"Trained {timestamp(tune.trained_at, 'f')}")
        await interaction.followup.send("\n".join(lines), ephemeral=True)

    @app_commands.command(name="delete", description="Delete one of your tunes and its images")
    @app_commands.describe(name="The tune's name")
    @entry("removes")
    async def delete(self, interaction: discord.Interaction[AstriaBot], name: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        svc, actor, place = services(interaction), actor_of(interaction), place_of(interaction)
        asked = done(await tunes.ask_delete_tune(svc, actor, place, name))
        tune = asked.value
        if tune is None:  # it was only waiting: cancelled at once
            await interaction.followup.send(asked.text, ephemeral=True)
            return

        # Buttons that carry the tune's id: the question still works after a restart.
        await interaction.followup.send(
            asked.text, view=delete_question_view(tune.id), ephemeral=True
        )

    @show.autocomplete("name")
    async def own_names(
        self, interaction: discord.Interaction[AstriaBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return await self._names(interaction, current, lambda t: t.state != TuneState.DELETED)

    @delete.autocomplete("name")
    async def deletable_names(
        self, interaction: discord.Interaction[AstriaBot], current: str
    ) -> list[app_commands.Choice[str]]:
        # Only what `/tune delete` can act on: a waiting tune (cancelled) or a ready one.
        return await self._names(interaction, current, lambda t: t.state in DELETABLE)

    async def _names(
        self,
        interaction: discord.Interaction[AstriaBot],
        current: str,
        keep: Callable[[TuneRecord], bool],
    ) -> list[app_commands.Choice[str]]:
        mine = await self.bot.store.tunes.list_for(interaction.user.id)
        wanted = current.casefold()
        return [
            app_commands.Choice(name=t.name[:100], value=t.name[:100])
            for t in mine
            if wanted in t.name.casefold() and keep(t)
        ][:25]


async def setup(bot: AstriaBot) -> None:
    await bot.add_cog(Tunes(bot))
