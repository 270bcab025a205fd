"""What admins (Manage Server) do: budgets and limits, grants, refunds, cancelling a stuck
job, pausing, where and by whom the bot may be used, bans, how results are shown outside
age-restricted channels, sharing tunes, spend and the Astria balance. Every one refuses
outside a server and without Manage Server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, Literal

from bot.actions.context import Actor, Done, Outcome, Place, Refused, Services, acting
from bot.actions.door import parse_id, require_admin
from bot.rules.credits import (
    AmountError,
    format_mc,
    high_resolution_price,
    parse_usd,
    upscale_price,
)
from bot.rules.nsfw import NsfwMode
from bot.rules.prompts import clean_name, display_text
from bot.store import GuildSettings, JobKind, JobRef, RefundOutcome, TuneRecord, TuneState

Switch = Literal["allow", "disallow", "list"]
RuleKind = Literal["channels", "roles"]
JOB_HELP: Final = "use its reference from `/jobs`, like `prompt:12`"


def _guild(actor: Actor, place: Place) -> int | Refused:
    """The server an admin acts on, or why they may not."""
    refused = require_admin(actor, place)
    if refused is not None:
        return refused
    assert place.guild_id is not None
    return place.guild_id


def _amount(text: str) -> int | Refused:
    try:
        return parse_usd(text)
    except AmountError as exc:
        return Refused(str(exc))


def parse_job(text: str) -> JobRef | Refused:
    """A job reference as typed: `prompt:12`, `prompt 12`, `Prompt-12`."""
    cleaned = text.strip().lower().replace("-", ":").replace(" ", "")
    try:
        return JobRef.parse(cleaned)
    except ValueError:
        shown = text.replace("`", "'")[:30]
        return Refused(f"`{shown}` is not a job; {JOB_HELP}.")


@acting
async def set_server_budget(
    svc: Services, actor: Actor, place: Place, amount: str
) -> Outcome[GuildSettings]:
    guild = _guild(actor, place)
    if isinstance(guild, Refused):
        return guild
    value = _amount(amount)
    if isinstance(value, Refused):
        return value
    settings = await svc.store.guilds.set_monthly_budget(guild, value)
    return Done(f"Monthly budget set to {format_mc(settings.monthly_budget_mc)}.", settings)


@acting
async def set_member_limits(
    svc: Services, actor: Actor, place: Place, daily: str, monthly: str
) -> Outcome[GuildSettings]:
    guild = _guild(actor, place)
    if isinstance(guild, Refused):
        return guild
    day, month = _amount(daily), _amount(monthly)
    if isinstance(day, Refused):
        return day
    if isinstance(month, Refused):
        return month
    if day > month:
        return Refused("The daily limit cannot be above the monthly one.")
    guilds = svc.store.guilds
    await guilds.set_user_daily_limit(guild, day)
    settings = await guilds.set_user_monthly_limit(guild, month)
    return Done(
        f"Each member may now spend {format_mc(settings.user_daily_limit_mc)} a day and "
        f"{format_mc(settings.user_monthly_limit_mc)} a month.",
        settings,
    )


@acting
async def grant(
    svc: Services, actor: Actor, place: Place, member_id: int, mention: str, amount: str
) -> Outcome[int]:
    """Extra allowance for a member this month (and today)."""
    guild = _guild(actor, place)
    if isinstance(guild, Refused):
        return guild
    value = _amount(amount)
    if isinstance(value, Refused):
        return value
    if value <= 0:
        return Refused("A grant must be more than $0.")
    await svc.store.ledger.grant(
        guild_id=guild,
        user_id=member_id,
        amount_mc=value,
        actor_id=actor.user_id,
        note="granted with /admin grant",
    )
    return Done(f"Granted {format_mc(value)} to {mention} this month.", value)


@acting
async def refund(svc: Services, actor: Actor, place: Place, job: str) -> Outcome[int]:
    """Give a settled job's cost back to its member's and the server's budgets, once."""
    guild = _guild(actor, place)
    if isinstance(guild, Refused):
        return guild
    ref = parse_job(job)
    if isinstance(ref, Refused):
        return ref
    done = await svc.store.ledger.refund(
        ref, guild_id=guild, actor_id=actor.user_id, note="refund with /admin refund"
    )
    if done.outcome is RefundOutcome.UNKNOWN:
        return Refused(f"There is no job `{ref}` on this server.")
    if done.outcome is RefundOutcome.NOT_SETTLED:
        return Refused(
            f"`{ref}` has not finished (or it failed, and cost nothing): nothing to refund."
        )
    if done.outcome is RefundOutcome.NOTHING_LEFT:
        return Refused(f"`{ref}` cost nothing, or was refunded already.")
    return Done(
        f"Refunded {format_mc(done.amount_mc)} for `{ref}` to <@{done.user_id}>'s and the "
        "server's budgets, in the month it was charged. (Astria's charge to the account "
        "stands.)",
        done.amount_mc,
    )


@acting
async def cancel_stuck(svc: Services, actor: Actor, place: Place, job: str) -> Outcome[None]:
    guild = _guild(actor, place)
    if isinstance(guild, Refused):
        return guild
    ref = parse_job(job)
    if isinstance(ref, Refused):
        return ref
    store = svc.store
    record = (
        await store.tunes.get_in_guild(guild, ref.id)
        if ref.kind == JobKind.TUNE
        else await store.prompts.get_in_guild(guild, ref.id)
    )
    if record is None:
        return Refused(f"There is no job `{ref}` on this server.")
    if not await svc.tracker.cancel_stuck(ref, actor.user_id):
        return Refused(
            f"`{ref}` is {record.state}: only a stuck job can be cancelled here "
            "(its owner can cancel a queued one from its status message)."
        )
    return Done(f"Cancelled `{ref}`: deleted at Astria and settled at what it cost.", None)


@acting
async def set_paused(svc: Services, actor: Actor, place: Place, paused: bool) -> Outcome[None]:
    guild = _guild(actor, place)
    if isinstance(guild, Refused):
        return guild
    await svc.store.guilds.set_paused(guild, paused)
    if paused:
        return Done("Paused: new jobs are refused; running ones finish.", None)
    return Done("Resumed: members can start jobs again.", None)


NSFW_WORDS: Final = {
    NsfwMode.SHOW: "results are posted as they are",
    NsfwMode.SPOILER: "every result image is posted as a spoiler",
    NsfwMode.REFUSE: (
        "new prompts are refused, naming where to go (results of jobs queued before are "
        "posted as spoilers)"
    ),
}


def _nsfw_line(mode: NsfwMode) -> str:
    return f"outside age-restricted channels {NSFW_WORDS[mode]}; inside them, as they are"


@acting
async def set_nsfw_mode(
    svc: Services, actor: Actor, place: Place, mode: NsfwMode
) -> Outcome[NsfwMode]:
    """How results are shown outside age-restricted channels (Discord's channel `nsfw`
    flag; threads follow their parent). Astria flags no image, so it applies to all."""
    guild = _guild(actor, place)
    if isinstance(guild, Refused):
        return guild
    rules = await svc.store.guilds.set_nsfw_mode(guild, mode)
    return Done(f"NSFW mode `{mode}`: {_nsfw_line(rules.nsfw_mode)}.", rules.nsfw_mode)


@acting
async def switch_rule(
    svc: Services,
    actor: Actor,
    place: Place,
    kind: RuleKind,
    action: Switch,
    target: int | None,
) -> Outcome[GuildSettings]:
    """Allow or disallow a channel (or role), or list the rule."""
    guild = _guild(actor, place)
    if isinstance(guild, Refused):
        return guild
    guilds = svc.store.guilds
    if action != "list":
        if target is None:
            return Refused(f"Say which {kind[:-1]} to {action}.")
        change: Callable[[int, int], Awaitable[GuildSettings]]
        if kind == "channels":
            change = guilds.allow_channel if action == "allow" else guilds.disallow_channel
        else:
            change = guilds.allow_role if action == "allow" else guilds.disallow_role
        await change(guild, target)
    settings = await guilds.get(guild)
    ids = settings.allowed_channel_ids if kind == "channels" else settings.allowed_role_ids
    if not ids:
        return Done(f"No {kind} rule: every {kind[:-1]} may use the bot.", settings)
    if kind == "channels":
        shown = ", ".join(f"<#{i}>" for i in sorted(ids))
        return Done(
            f"The bot may be used in: {shown} (and the threads and posts in them).", settings
        )
    shown = ", ".join(f"<@&{i}>" for i in sorted(ids))
    return Done(f"Only members with one of these roles may use the bot: {shown}.", settings)


@acting
async def ban(
    svc: Services,
    actor: Actor,
    place: Place,
    member_id: int,
    mention: str,
    reason: str | None,
) -> Outcome[None]:
    guild = _guild(actor, place)
    if isinstance(guild, Refused):
        return guild
    await svc.store.guilds.ban(guild, member_id, actor_id=actor.user_id, reason=reason)
    return Done(f"{mention} can no longer use the bot here; running jobs finish.", None)


@acting
async def unban(
    svc: Services, actor: Actor, place: Place, member_id: int, mention: str
) -> Outcome[None]:
    guild = _guild(actor, place)
    if isinstance(guild, Refused):
        return guild
    await svc.store.guilds.unban(guild, member_id)
    return Done(f"{mention} may use the bot here again.", None)


@acting
async def share(
    svc: Services, actor: Actor, place: Place, tune: str, shared: bool
) -> Outcome[TuneRecord]:
    """Let every member of the server use a tune made here (or stop)."""
    guild = _guild(actor, place)
    if isinstance(guild, Refused):
        return guild
    tune_id = parse_id(tune, "a tune of this server")
    if isinstance(tune_id, Refused):
        return tune_id
    store = svc.store
    record = await store.tunes.get_in_guild(guild, tune_id)
    if record is None:
        return Refused("Pick a tune of this server from the list.")
    shown = display_text(record.name, 32)
    if shared and record.state != TuneState.READY:
        return Refused(f"**{shown}** is {record.state}; share it once it is ready.")
    changed = await store.tunes.set_shared(record.id, shared)
    if shared:
        text = f"**{shown}** is shared: every member here may use it in `/imagine`."
    else:
        text = f"**{shown}** is no longer shared; only <@{record.owner_id}> may use it."
    return Done(text, changed)


def tune_choice_label(tune: TuneRecord) -> str:
    """How a tune is shown in an admin's picker: its name and its owner's display name
    (both cleaned of invisible and direction-changing characters), never a raw id."""
    owner = clean_name(tune.owner_name) or "a member"
    return f"{clean_name(tune.name)} (by {owner})"[:100]


@acting
async def spend_report(svc: Services, actor: Actor, place: Place) -> Outcome[dict[int, int]]:
    guild = _guild(actor, place)
    if isinstance(guild, Refused):
        return guild
    spend = await svc.store.ledger.spend_by_member(guild)
    lines = [
        f"<@{user}>: {format_mc(mc)}" for user, mc in sorted(spend.items(), key=lambda i: -i[1])
    ]
    return Done("\n".join(lines)[:2000] or "Nothing spent this month.", spend)


@acting
async def refresh_balance(svc: Services, actor: Actor, place: Place) -> Outcome[int]:
    refused = require_admin(actor, place)
    if refused is not None:
        return refused
    before = await svc.store.account.last_known()
    mark = await svc.store.ledger.last_id()  # before the request: see record_balance
    user = await svc.astria.get_user()
    known = await svc.store.account.record_balance(user.usd_balance_mc, ledger_mark=mark)
    if svc.alerts is not None:  # a fall below a threshold is told, whoever read it
        previous = None if before is None else before.balance_mc
        await svc.alerts.balance_read(previous, user.usd_balance_mc)
    text = f"The Astria account has {format_mc(user.usd_balance_mc)} left."
    if known.short:
        need = format_mc(known.short_need_mc or 0)
        text += (
            f" Paid commands stay paused: Astria refused a job for lack of credit, and the "
            f"balance must cover {need} above the safety margin before they start again."
        )
    elif before is not None and before.short:
        text += " Paid commands are going again, and the jobs that waited start now."
        svc.tracker.nudge()
    return Done(text, user.usd_balance_mc)


ALERT_KINDS: Final = (
    "stuck jobs, Astria running out of credit or the balance falling below the threshold, "
    "balance drift, jobs that cost more than their price, results that could not be "
    "delivered, and Astria or Discord failing again and again"
)


def _window_words(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return "an hour" if hours == 1 else f"{hours} hours"
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return "a minute" if minutes == 1 else f"{minutes} minutes"
    return f"{seconds:g} seconds"


def _alerts_line(svc: Services, rules: GuildSettings) -> str:
    """Where this server's alerts go and below which balance it is told."""
    if rules.alert_channel_id is None:
        return "off: admins are told nothing here"
    own = rules.low_balance_alert_mc
    threshold = svc.settings.low_balance_alert_mc if own is None else own
    low = "never" if threshold == 0 else f"below {format_mc(threshold)}"
    whose = " (the operator's default)" if own is None else ""
    return (
        f"to <#{rules.alert_channel_id}>; a low balance is told {low}{whose}; one alert of "
        f"a kind per {_window_words(svc.settings.alert_window_seconds)}, with a count"
    )


@acting
async def set_alerts(
    svc: Services,
    actor: Actor,
    place: Place,
    *,
    channel_id: int | None = None,
    can_post: bool = True,
    off: bool = False,
    low_balance: str | None = None,
) -> Outcome[GuildSettings]:
    """Where the server's admins are told about faults (`channel_id`), turn that off, or
    set the balance below which they hear of it; with nothing given, what is set."""
    guild = _guild(actor, place)
    if isinstance(guild, Refused):
        return guild
    if off and channel_id is not None:
        return Refused("Pick a channel or turn alerts off, not both.")
    threshold: int | None = None
    if low_balance is not None:
        if low_balance.strip().lower() == "default":
            threshold = None
        else:
            value = _amount(low_balance)
            if isinstance(value, Refused):
                return value
            threshold = value
    if channel_id is not None and not can_post:
        return Refused(
            f"The bot cannot post in <#{channel_id}>: let it view the channel and send "
            "messages there, then pick it again."
        )
    guilds = svc.store.guilds
    rules = await guilds.get(guild)
    if off:
        rules = await guilds.set_alert_channel(guild, None)
    elif channel_id is not None:
        rules = await guilds.set_alert_channel(guild, channel_id)
    if low_balance is not None:
        rules = await guilds.set_low_balance_alert(guild, threshold)
    if rules.alert_channel_id is None:
        return Done(
            "Alerts are off: admins are told nothing here. Turn them on with "
            "`/admin alerts channel:`.",
            rules,
        )
    text = f"Alerts go {_alerts_line(svc, rules)}. They tell about {ALERT_KINDS}."
    known = await svc.store.account.last_known()
    own = rules.low_balance_alert_mc
    limit = svc.settings.low_balance_alert_mc if own is None else own
    if known is not None and limit > 0 and known.balance_mc < limit:
        text += f" The balance is already below it: {format_mc(known.balance_mc)}."
    return Done(text, rules)


SHOWN: Final = 5  # ids listed per section before "and N more"


def _listed(ids: list[str]) -> str:
    shown = ", ".join(ids[:SHOWN])
    return shown if len(ids) <= SHOWN else f"{shown} and {len(ids) - SHOWN} more"


@acting
async def settings_report(svc: Services, actor: Actor, place: Place) -> Outcome[GuildSettings]:
    """Everything that governs this server in one view, each part with the command that
    changes it."""
    guild = _guild(actor, place)
    if isinstance(guild, Refused):
        return guild
    store = svc.store
    rules = await store.guilds.get(guild)
    snapshot = await store.ledger.budget(guild, actor.user_id)
    grants = await store.ledger.grants_by_member(guild)
    shared = [t for t in await store.tunes.list_in_guild(guild) if t.shared]
    known = await store.account.last_known()
    cfg = svc.settings
    server = snapshot.guild_month
    lines = [
        "**Settings of this server**",
        f"**Server budget:** {format_mc(rules.monthly_budget_mc)} a month; "
        f"{format_mc(server.used_mc)} used this month. Change with `/admin budget server`.",
        f"**Member limits:** {format_mc(rules.user_daily_limit_mc)} a day, "
        f"{format_mc(rules.user_monthly_limit_mc)} a month. Change with `/admin budget user`.",
    ]
    if grants:
        given = [
            f"{'the server' if user is None else f'<@{user}>'} {format_mc(mc)}"
            for user, mc in sorted(grants.items(), key=lambda i: -i[1])
        ]
        lines.append(f"**Grants this month:** {_listed(given)}. Add with `/admin grant`.")
    else:
        lines.append("**Grants this month:** none. Add with `/admin grant`.")
    channels = [f"<#{i}>" for i in sorted(rules.allowed_channel_ids)]
    lines.append(
        f"**Channels:** {_listed(channels) if channels else 'every channel'}. "
        "Change with `/admin channels`."
    )
    roles = [f"<@&{i}>" for i in sorted(rules.allowed_role_ids)]
    lines.append(
        f"**Roles:** {_listed(roles) if roles else 'every role'}. Change with `/admin roles`."
    )
    banned = [f"<@{i}>" for i in sorted(rules.banned_user_ids)]
    lines.append(
        f"**Banned:** {len(banned)}{': ' + _listed(banned) if banned else ''}. "
        "Change with `/admin ban` and `/admin unban`."
    )
    lines.append(
        f"**Paused:** {'yes, new jobs are refused' if rules.paused else 'no'}. "
        "Change with `/admin pause` and `/admin resume`."
    )
    names = [f"**{display_text(t.name, 32)}** (<@{t.owner_id}>)" for t in shared]
    lines.append(
        f"**Shared tunes:** {_listed(names) if names else 'none'}. "
        "Change with `/admin share` and `/admin unshare`."
    )
    lines.append(
        f"**Branch:** `{cfg.astria_branch}`; a tune {format_mc(cfg.tune_price())}, an image "
        f"{format_mc(cfg.image_price())}, an upscale {format_mc(upscale_price(cfg))}, a 2K "
        f"image {format_mc(high_resolution_price(cfg))}. Set by the operator (ASTRIA_BRANCH, "
        "TUNE_PRICE_MC, IMAGE_PRICE_MC, UPSCALE_PRICE_MC, HIGH_RESOLUTION_PRICE_MC)."
    )
    if known is None:
        account = "not read yet."
    else:
        account = f"{format_mc(known.balance_mc)} when last read."
        if known.short_since is not None:
            account += (
                f" Paid commands are paused for lack of credit since "
                f"<t:{int(known.short_since.timestamp())}:R>."
            )
    lines.append(f"**Astria balance:** {account} Re-read with `/admin refresh-balance`.")
    lines.append(f"**Alerts:** {_alerts_line(svc, rules)}. Change with `/admin alerts`.")
    lines.append(
        f"**NSFW:** `{rules.nsfw_mode}`: {_nsfw_line(rules.nsfw_mode)}. Change with `/admin nsfw`."
    )
    return Done("\n".join(lines)[:2000], rules)
