"""/tune: a member's fine-tunes. `/tune create` and the message menu "Train a tune from
these photos" open the tune form; list, show and delete work on the member's own tunes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.credits import Refusal, decide, format_mc, tune_price
from bot.intake import PhotoSource, forget, refused_list
from bot.jobs.removal import delete_tune
from bot.photos import photo_label
from bot.prompts import display_text, subject_classes
from bot.store import NameTaken, TuneRecord, TuneState
from bot.ui.base import UserError
from bot.ui.confirm import Confirm
from bot.ui.forms import TuneForm, TuneFormValues, clean_name
from bot.ui.text import timestamp
from cogs.checks import refuse_if_cannot_post, refuse_if_not_allowed

if TYPE_CHECKING:
    from bot.app import AstriaBot

MENU_NAME = "Train a tune from these photos"
CONSENT_NEEDED = (
    "Not started: a tune may only be trained on photos of you, or of someone who agreed to it."
)


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


class Tunes(commands.GroupCog, group_name="tune", group_description="Your fine-tunes"):
    def __init__(self, bot: AstriaBot) -> None:
        self.bot = bot
        super().__init__()
        self.menu = app_commands.ContextMenu(name=MENU_NAME, callback=self.train_from_message)
        self.menu.guild_only = True

    async def cog_load(self) -> None:
        # The decorator form does not work inside a cog: a menu is added to the tree.
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    # ------------------------------------------------------------------ create

    async def _price_or_refuse(
        self, interaction: discord.Interaction[AstriaBot]
    ) -> tuple[int, int]:
        """The fast checks a form must pass before it opens (it is the first response, so
        nothing slow): rules, the bot's permissions here, and the budget. Returns the price
        and what the member may still spend after it."""
        bot = self.bot
        await refuse_if_not_allowed(interaction)
        refuse_if_cannot_post(interaction)
        price = tune_price(bot.settings)
        snapshot = await bot.store.ledger.budget(interaction.guild_id or 0, interaction.user.id)
        refusal = decide(price, snapshot)
        if refusal is not None:
            raise UserError(f"Not started: {refusal.reason()}")
        return price, max(0, snapshot.member_remaining_mc - price)

    def _form(self, price: int, left: int, *, uploads: bool, **kw: Any) -> TuneForm:
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
    @app_commands.guild_only()
    async def create(self, interaction: discord.Interaction[AstriaBot]) -> None:
        price, left = await self._price_or_refuse(interaction)
        await interaction.response.send_modal(self._form(price, left, uploads=True))

    async def train_from_message(
        self, interaction: discord.Interaction[AstriaBot], message: discord.Message
    ) -> None:
        if message.author.id != interaction.user.id:
            raise UserError(
                "You can only train from your own message: training on someone else's "
                "photos needs their consent. They can use this menu on their own message."
            )
        photos = list(message.attachments)
        rules = self.bot.intake.rules
        if len(photos) < rules.min_photos:
            raise UserError(
                f"This message has {len(photos)} photo{'s' if len(photos) != 1 else ''}; "
                f"a tune needs {rules.min_photos} at least. Post them in one message, "
                "or use `/tune create` to upload them in a form."
            )
        photos = photos[: rules.max_photos]
        price, left = await self._price_or_refuse(interaction)
        note = f"Uses the {len(photos)} photos of your message; they are of you or agreed"
        form = self._form(price, left, uploads=False, photos_note=note, given_photos=photos)
        await interaction.response.send_modal(form)

    async def _train(self, interaction: discord.Interaction[Any], values: TuneFormValues) -> None:
        """The form was submitted: read and check the photos, then reserve and queue."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        bot = self.bot
        user_id, guild_id = interaction.user.id, interaction.guild_id or 0
        if not values.consent:
            raise UserError(CONSENT_NEEDED)
        name = clean_name(values.name)
        if values.subject_class not in subject_classes(bot.settings.model_profile):
            raise UserError("Pick who or what is in the photos from the list.")
        await refuse_if_not_allowed(interaction)
        if await bot.store.tunes.by_name(user_id, name) is not None:
            raise UserError(
                f"You already have a tune named **{display_text(name, 32)}**; pick another name."
            )
        price = tune_price(bot.settings)
        refusal = decide(price, await bot.store.ledger.budget(guild_id, user_id))
        if refusal is not None:
            raise UserError(f"Not started: {refusal.reason()}")
        sources = [
            PhotoSource(label=photo_label(i, a.filename), size=a.size, read=a.read)
            for i, a in enumerate(values.photos, start=1)
        ]
        taken = await bot.intake.take(sources)
        if taken.problem is not None:
            listing = refused_list(taken.problems)
            raise UserError(f"Not started: {taken.problem.reason}.\n{listing}".strip()[:1900])
        try:
            created = await bot.store.tunes.create(
                owner_id=user_id,
                guild_id=guild_id,
                channel_id=interaction.channel_id or 0,
                name=name,
                subject_class=values.subject_class,
                profile=bot.settings.model_profile,
                branch=bot.settings.astria_branch,
                photo_paths=[str(p) for p in taken.paths],
                price_mc=price,
            )
        except NameTaken:
            forget(taken.paths)
            raise UserError(
                f"You already have a tune named **{display_text(name, 32)}**."
            ) from None
        except BaseException:
            forget(taken.paths)
            raise
        if isinstance(created, Refusal):
            forget(taken.paths)
            raise UserError(f"Not started: {created.reason()}")
        bot.tracker.nudge()
        cost = "free" if price == 0 else format_mc(price)
        text = (
            f"🧠 Training **{display_text(name, 32)}** ({values.subject_class}) from "
            f"{len(taken.paths)} photos ({cost}). Its progress shows in this channel, and "
            "you will be told there when it is ready."
        )
        if taken.problems:
            text += f"\nLeft out:\n{refused_list(taken.problems)}"
        await interaction.followup.send(text[:2000], ephemeral=True)

    @app_commands.command(name="list", description="Your tunes and how long they last")
    @app_commands.guild_only()
    async def list_tunes(self, interaction: discord.Interaction[AstriaBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        now = self.bot.now()
        tunes = await self.bot.store.tunes.list_for(interaction.user.id)
        live = [t for t in tunes if t.state not in (TuneState.DELETED, TuneState.CANCELLED)]
        text = "\n".join(describe(t, now) for t in live) or "No tunes yet: `/tune create`."
        await interaction.followup.send(text[:2000], ephemeral=True)

    @app_commands.command(name="show", description="One of your tunes in detail")
    @app_commands.describe(name="The tune's name")
    @app_commands.guild_only()
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
    @app_commands.guild_only()
    async def delete(self, interaction: discord.Interaction[AstriaBot], name: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        bot = self.bot
        tune = await bot.store.tunes.by_name(interaction.user.id, name)
        if tune is None:
            raise UserError("You have no tune by that name (see `/tune list`).")
        shown = display_text(tune.name, 32)
        if tune.state == TuneState.QUEUED:
            if await bot.tracker.cancel_queued(tune.job, interaction.user.id):
                await interaction.followup.send(
                    f"🚫 **{shown}** was still waiting: cancelled, and your credit was given back.",
                    ephemeral=True,
                )
                return
            raise UserError(f"**{shown}** has just started training; delete it once it is ready.")
        if tune.state != TuneState.READY:
            raise UserError(
                f"**{shown}** is {tune.state}; it can be deleted once it is ready "
                "(an admin can cancel a stuck one)."
            )

        async def remove(_: discord.Interaction[Any]) -> str:
            current = await bot.store.tunes.get(tune.id)
            if current is None or current.state != TuneState.READY:
                return f"**{shown}** is already gone."
            removed = await delete_tune(bot.store, bot.astria, bot.settings, current)
            extra = f" and {removed.prompts_deleted} prompts" if removed.prompts_deleted else ""
            return f"🗑️ Deleted **{shown}**{extra} at Astria. Images already posted stay in Discord."

        confirm = Confirm(interaction.user.id, remove, confirm_label="Delete")
        confirm.message = await interaction.followup.send(
            f"Delete **{shown}**? The model, its training photos and the images made with it "
            "are deleted at Astria. This cannot be undone.",
            view=confirm,
            ephemeral=True,
            wait=True,
        )

    @delete.autocomplete("name")
    @show.autocomplete("name")
    async def own_names(
        self, interaction: discord.Interaction[AstriaBot], current: str
    ) -> list[app_commands.Choice[str]]:
        tunes = await self.bot.store.tunes.list_for(interaction.user.id)
        wanted = current.casefold()
        return [
            app_commands.Choice(name=t.name[:100], value=t.name[:100])
            for t in tunes
            if wanted in t.name.casefold() and t.state != TuneState.DELETED
        ][:25]


async def setup(bot: AstriaBot) -> None:
    await bot.add_cog(Tunes(bot))
