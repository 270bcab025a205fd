"""/balance: what a member has spent and has left, and what the server has; admins also see
the Astria account."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.actions import reports
from bot.jobs.delivery import EventKind, event_key
from bot.rules.credits import (
    Allowance,
    can_still_spend,
    format_mc,
    high_resolution_price,
    upscale_price,
)
from bot.rules.prompts import display_text
from bot.rules.tools import VARY_IMAGES
from bot.store import (
    UNFINISHED_PROMPTS,
    UNFINISHED_TUNES,
    JobRef,
    PromptRecord,
    PromptState,
    Store,
    TuneRecord,
)
from bot.ui.door import actor_of, answer_with_file, done, entry, place_of, services
from bot.ui.text import timestamp

if TYPE_CHECKING:
    from bot.app import AstriaBot
    from bot.jobs import Tracker

CHART_FILE = "my-spend-last-30-days.png"


def _line(label: str, allowance: Allowance) -> str:
    left = max(0, allowance.remaining_mc)
    return (
        f"**{label}:** {format_mc(allowance.used_mc)} of {format_mc(allowance.allowance_mc)} "
        f"used, {format_mc(left)} left"
    )


class Account(commands.Cog):
    def __init__(self, bot: AstriaBot) -> None:
        self.bot = bot

    @app_commands.command(name="balance", description="Your spend and what is left")
    @app_commands.describe(chart="Attach a chart of your spend here over the last 30 days")
    @app_commands.guild_only()
    @entry("reads")
    async def balance(
        self, interaction: discord.Interaction[AstriaBot], chart: bool = False
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        store = self.bot.store
        guild_id = interaction.guild_id or 0
        snapshot = await store.ledger.budget(guild_id, interaction.user.id)
        paid = self.bot.settings.astria_branch != "fast"
        in_flight = await store.prompts.list_for(
            interaction.user.id, guild_id=guild_id, states=UNFINISHED_PROMPTS, limit=100
        )
        training = await store.tunes.list_for(
            interaction.user.id, guild_id=guild_id, states=UNFINISHED_TUNES
        )
        lines = [
            _line("You today", snapshot.user_day),
            _line("You this month", snapshot.user_month),
            _line("This server this month", snapshot.guild_month),
            f"**You can still spend:** {can_still_spend(snapshot, paid=paid)}",
            f"**In progress:** {await _in_progress(store, training, in_flight)}",
        ]
        if interaction.permissions.manage_guild:
            known = await store.account.last_known()
            if known is None:
                lines.append("**Astria balance:** not read yet")
            else:
                lines.append(
                    f"**Astria balance:** {format_mc(known.balance_mc)} "
                    f"(read {timestamp(known.read_at)})"
                )
                finding = await store.meta.refund_finding()
                if finding is not None and finding.contradicts:
                    lines.append(
                        "**Check the settings:** the Astria balance shows failed prompts' "
                        f"costs {'given back' if finding.found == 'refunded' else 'kept'} "
                        f"({timestamp(finding.at)}), but `ASTRIA_REFUNDS_FAILED_PROMPTS` says "
                        "otherwise; the bot's owner should change it so the ledger matches "
                        "Astria's bill."
                    )
                if known.short_since is not None:
                    lines.append(
                        f"**Paid commands paused** since {timestamp(known.short_since)}: "
                        "Astria refused a job for lack of credit. Top up the account; "
                        "`/admin refresh-balance` resumes at once when it covers "
                        f"{format_mc(known.short_need_mc or 0)} above the safety margin."
                    )
        text = "\n".join(lines)
        if not chart:
            await interaction.followup.send(text, ephemeral=True)
            return
        drawn = done(
            await reports.member_spend_chart(
                services(interaction), actor_of(interaction), place_of(interaction)
            )
        )
        text = f"{text[: 1990 - len(drawn.text)]}\n\n{drawn.text}"
        await answer_with_file(interaction, text, drawn.value, CHART_FILE)

    @app_commands.command(name="jobs", description="Your jobs in progress and your last ten")
    @app_commands.guild_only()
    @entry("reads")
    async def jobs(self, interaction: discord.Interaction[AstriaBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        store = self.bot.store
        tracker = self.bot.tracker
        guild_id = interaction.guild_id or 0
        lines: list[str] = []
        for tune in await store.tunes.list_for(
            interaction.user.id, guild_id=guild_id, states=UNFINISHED_TUNES
        ):
            name = display_text(tune.name, 40)
            lines.append(
                f"🧠 tune **{name}**: {_state(tune.state, tune.job, tracker)} `{tune.job}`"
            )
        recent = await store.prompts.list_for(interaction.user.id, guild_id=guild_id, limit=10)
        posting = await _posting(store, recent)
        for prompt in recent:
            what = display_text(prompt.user_text, 60)
            state = (
                "done, being posted"
                if prompt.job in posting
                else _state(prompt.state, prompt.job, tracker)
            )
            line = f"🖼️ {what} ({prompt.num_images}): {state} `{prompt.job}`"
            if prompt.state == PromptState.UNDELIVERABLE:
                # Discord refused the post: the result is here instead.
                line += "\n" + "\n".join(prompt.image_urls)
            lines.append(line)
        text = "\n".join(lines) if lines else "No jobs yet: try `/imagine`."
        await interaction.followup.send(text[:2000], ephemeral=True)

    @app_commands.command(name="help", description="What this bot does, its commands and prices")
    @app_commands.guild_only()
    @entry("reads")
    async def help(self, interaction: discord.Interaction[AstriaBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        settings = self.bot.settings
        guild = await self.bot.store.guilds.get(interaction.guild_id or 0)
        branch = settings.astria_branch
        free = " (free test mode: the images are placeholders)" if branch == "fast" else ""
        text = "\n".join(
            [
                "**Train an AI model of yourself (or your pet) and make images with it.**",
                "1. `/tune create`: upload 4-20 photos of the subject (only you, or someone "
                "who agreed), or right-click your own message with photos > Apps > "
                "*Train a tune from these photos*. You are told when it is ready.",
                "2. `/imagine`: describe a picture and pick your tune; the images are posted "
                "here with Reroll, Edit, Details and Delete buttons, and for each image "
                "Upscale (4x the size, posted as a reply) and Vary, subtle or strong "
                f"({VARY_IMAGES} new images). Add `style:` or `quality:` (high resolution, "
                "super-resolution), or start from a picture with `image:` (or right-click "
                "any message with a picture > Apps > *Imagine from this image*).",
                "3. `/pack list`: Astria's photo packs, priced for your tune; `/pack run` "
                "makes a whole pack with it, each prompt posted here as it finishes.",
                "`/jobs` shows what is in progress, `/balance` what you have spent and left, "
                "`/tune list` your tunes.",
                "",
                f"**Prices**{free}: a tune {format_mc(settings.tune_price())}, "
                f"an image {format_mc(settings.image_price())}, "
                f"an upscale {format_mc(upscale_price(settings))}; with `/imagine quality:` "
                f"an image at high resolution (2K) {format_mc(high_resolution_price(settings))}"
                f", with super-resolution (x4) {format_mc(upscale_price(settings))}.",
                f"**Limits here:** you {format_mc(guild.user_daily_limit_mc)} a day and "
                f"{format_mc(guild.user_monthly_limit_mc)} a month; the server "
                f"{format_mc(guild.monthly_budget_mc)} a month.",
                "Astria deletes tunes and images 30 days after training; the images posted "
                "here stay.",
            ]
        )
        await interaction.followup.send(text, ephemeral=True)


async def _posting(store: Store, prompts: Sequence[PromptRecord]) -> set[JobRef]:
    """Prompts Astria has finished whose images are being posted (their end is recorded):
    the channel may show them already, so they are no longer "generating"."""
    unfinished = [p for p in prompts if p.state in UNFINISHED_PROMPTS]
    keys = {event_key(str(p.job), EventKind.DONE): p.job for p in unfinished}
    found = await store.events.existing(list(keys))
    return {keys[k] for k in found}


async def _in_progress(
    store: Store, training: Sequence[TuneRecord], prompts: Sequence[PromptRecord]
) -> str:
    """The member's jobs by where they are, in the words the channel uses."""
    posting = await _posting(store, prompts)
    waiting = sum(1 for p in prompts if p.state in (PromptState.QUEUED, PromptState.SUBMITTING))
    generating = len(prompts) - waiting - len(posting)
    parts = [f"{len(training)} training", f"{waiting} waiting", f"{generating} generating"]
    if posting:
        parts.append(f"{len(posting)} being posted")
    return ", ".join(parts)


def _state(state: str, job: JobRef, tracker: Tracker) -> str:
    position = tracker.queue_position(job)
    if state == "queued" and position:
        return f"queued (position {position})"
    return str(state)


async def setup(bot: AstriaBot) -> None:
    await bot.add_cog(Account(bot))
