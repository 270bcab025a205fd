"""Prices and the budget rule, as pure functions: what an action costs, which limit refuses
it and by how much, and where days and months start in the configured time zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from enum import StrEnum

from bot.config import Settings

MC_PER_DOLLAR = 100_000
# The largest amount anyone may type or set ($100,000): with every amount bounded, no sum
# of ledger rows can come near SQLite's 64-bit integer limit (9.2e18 mc would take 92
# million maximum grants).
MAX_AMOUNT_MC = 100_000 * MC_PER_DOLLAR


def tune_price(settings: Settings, branch: str | None = None) -> int:
    """Millicents reserved for one fine-tune (the `fast` branch is always 0)."""
    return settings.tune_price_mc[branch or settings.astria_branch]


def images_price(settings: Settings, count: int, branch: str | None = None) -> int:
    """Millicents reserved for a prompt of `count` images."""
    if count < 1:
        raise ValueError("a prompt makes at least one image")
    return count * settings.image_price_mc[branch or settings.astria_branch]


def upscale_price(settings: Settings, branch: str | None = None) -> int:
    """Millicents reserved for one Upscale: one image with super-resolution
    (`UPSCALE_PRICE_MC`; the `fast` branch is always 0)."""
    return settings.upscale_price_mc[branch or settings.astria_branch]


def high_resolution_price(settings: Settings, branch: str | None = None) -> int:
    """Millicents reserved for one image at Astria's `resolution=2K`
    (`HIGH_RESOLUTION_PRICE_MC`; the `fast` branch is always 0)."""
    return settings.high_resolution_price_mc[branch or settings.astria_branch]


def prompt_price(
    settings: Settings,
    count: int,
    branch: str | None = None,
    *,
    super_resolution: bool = False,
    high_resolution: bool = False,
) -> int:
    """Millicents reserved for a prompt: an upscale's price per image when it asks for
    super-resolution, a 2K image's when it asks for `resolution=2K`, else the image price.
    (The bot never asks for both: `quality` is one choice.)"""
    if super_resolution or high_resolution:
        if count < 1:
            raise ValueError("a prompt makes at least one image")
        if super_resolution:
            return count * upscale_price(settings, branch)
        return count * high_resolution_price(settings, branch)
    return images_price(settings, count, branch)


def format_mc(amount_mc: int, *, up: bool = False) -> str:
    """Millicents as dollars a member can read, to the cent: 150000 -> "$1.50",
    4826123 -> "$48.26". Below a dollar a price finer than a cent keeps a tenth of a cent
    (2500 -> "$0.025": an image's price is not rounded into a different one). `up` rounds
    up instead of half up, for a shortfall: never "$0.00 short"."""
    sign = "-" if amount_mc < 0 else ""
    size = abs(amount_mc)
    per_cent = MC_PER_DOLLAR // 100
    tenth = per_cent // 10

    def rounded(unit: int) -> int:
        return -(-size // unit) if up else (size + unit // 2) // unit

    if size < MC_PER_DOLLAR and size % per_cent:
        tenths = rounded(tenth)
        if tenths % 10 and tenths < 1000:
            return f"{sign}$0.{tenths:03d}"
    dollars, rest = divmod(rounded(per_cent), 100)
    return f"{sign}${dollars:,}.{rest:02d}"


@dataclass(frozen=True)
class BudgetPolicy:
    """The operator's defaults; a server's own settings override the three limits."""

    guild_monthly_budget_mc: int
    user_daily_limit_mc: int
    user_monthly_limit_mc: int
    safety_margin_mc: int
    zone: tzinfo

    @classmethod
    def from_settings(cls, settings: Settings) -> BudgetPolicy:
        return cls(
            guild_monthly_budget_mc=settings.guild_monthly_budget_mc,
            user_daily_limit_mc=settings.user_daily_limit_mc,
            user_monthly_limit_mc=settings.user_monthly_limit_mc,
            safety_margin_mc=settings.balance_safety_margin_mc,
            zone=settings.timezone,
        )


class BudgetLimit(StrEnum):
    """The budgets a reservation must fit, in the order they are checked."""

    BALANCE_UNKNOWN = "balance_unknown"
    ACCOUNT_SHORT = "account_short"
    ACCOUNT = "account"
    GUILD_MONTH = "guild_month"
    USER_MONTH = "user_month"
    USER_DAY = "user_day"


_LIMIT_WORDS = {
    BudgetLimit.BALANCE_UNKNOWN: "the Astria account balance has not been read yet",
    BudgetLimit.ACCOUNT_SHORT: "the bot's Astria credit has run out",
    BudgetLimit.ACCOUNT: "the Astria account's balance",
    BudgetLimit.GUILD_MONTH: "this server's budget for the month",
    BudgetLimit.USER_MONTH: "your limit for the month",
    BudgetLimit.USER_DAY: "your limit for today",
}

_WHO_CAN_RAISE = {
    BudgetLimit.BALANCE_UNKNOWN: "an admin can read it with `/admin refresh-balance`",
    BudgetLimit.ACCOUNT_SHORT: "paid commands start again by themselves once the bot's owner "
    "adds credit",
    BudgetLimit.ACCOUNT: "the bot's owner can top up the Astria account",
    BudgetLimit.GUILD_MONTH: "an admin can raise it with `/admin budget server`",
    BudgetLimit.USER_MONTH: "an admin can raise it with `/admin budget user` or `/admin grant`",
    BudgetLimit.USER_DAY: "it starts again tomorrow, or an admin can raise it with "
    "`/admin budget user`",
}


@dataclass(frozen=True)
class Allowance:
    """One budget in one period: how much it allows and how much is already used.

    For the account, `allowance_mc` is the last known balance minus the safety margin and
    `used_mc` what is held plus what was settled since that balance was read.
    """

    limit: BudgetLimit
    allowance_mc: int
    used_mc: int

    @property
    def remaining_mc(self) -> int:
        """Negative when a job cost more than its reservation (an overage)."""
        return self.allowance_mc - self.used_mc


@dataclass(frozen=True)
class BudgetSnapshot:
    """Every budget a member's next reservation must fit, read in one transaction."""

    account: Allowance | None  # None: no Astria balance has been read yet
    guild_month: Allowance
    user_month: Allowance
    user_day: Allowance
    # Astria refused a paid create for lack of credit and no reading has covered it since.
    account_short: bool = False

    def checks(self) -> tuple[Allowance, ...]:
        # The account first (nothing a member waits for fixes it), then the limit that
        # lasts longest: "try tomorrow" would mislead when the month is spent too.
        known = () if self.account is None else (self.account,)
        return (*known, self.guild_month, self.user_month, self.user_day)

    @property
    def member_remaining_mc(self) -> int:
        """What the member may still reserve under the server's and their own limits."""
        return max(0, min(a.remaining_mc for a in self.checks()))


_BINDING_WORDS = {
    BudgetLimit.ACCOUNT: "what is left of the bot's Astria credit",
    BudgetLimit.GUILD_MONTH: "what is left of this server's budget for the month",
    BudgetLimit.USER_MONTH: "what is left of your limit for the month",
    BudgetLimit.USER_DAY: "what is left of your limit for today",
}


def can_still_spend(snapshot: BudgetSnapshot, *, paid: bool = True) -> str:
    """What a member may still spend and which limit sets it, in words."""
    if paid and snapshot.account_short:
        return (
            "nothing on paid commands for now: the bot's Astria credit has run out. "
            f"{_WHO_CAN_RAISE[BudgetLimit.ACCOUNT_SHORT][0].upper()}"
            f"{_WHO_CAN_RAISE[BudgetLimit.ACCOUNT_SHORT][1:]}."
        )
    checks = (
        snapshot.checks()
        if paid
        else (snapshot.guild_month, snapshot.user_month, snapshot.user_day)
    )
    binding = min(checks, key=lambda a: a.remaining_mc)
    left = max(0, binding.remaining_mc)
    return f"{format_mc(left)}: {_BINDING_WORDS[binding.limit]}"


@dataclass(frozen=True)
class Refusal:
    """A reservation that would pass a budget: which one, and by how much."""

    limit: BudgetLimit
    allowance_mc: int
    used_mc: int
    requested_mc: int

    @property
    def shortfall_mc(self) -> int:
        return self.used_mc + self.requested_mc - self.allowance_mc

    def reason(self) -> str:
        """The refusal in words a member can read."""
        who = _WHO_CAN_RAISE[self.limit]
        if self.limit is BudgetLimit.ACCOUNT_SHORT:
            return (
                f"Paid commands are paused: {_LIMIT_WORDS[self.limit]}. They start again "
                "by themselves once the bot's owner adds credit; nothing was charged."
            )
        if self.limit is BudgetLimit.BALANCE_UNKNOWN:
            return (
                f"This needs {format_mc(self.requested_mc)}, but {_LIMIT_WORDS[self.limit]}: {who}."
            )
        left = max(0, self.allowance_mc - self.used_mc)
        if self.requested_mc == 0:
            return (
                f"{_LIMIT_WORDS[self.limit][0].upper()}{_LIMIT_WORDS[self.limit][1:]} "
                f"({format_mc(self.allowance_mc)}) has nothing left. {who[0].upper()}{who[1:]}."
            )
        over = self.used_mc - self.allowance_mc
        if over > 0:
            # A job cost more than it was quoted: say so, or the shortfall cannot add up.
            return (
                f"This needs {format_mc(self.requested_mc)}, but {_LIMIT_WORDS[self.limit]} "
                f"({format_mc(self.allowance_mc)}) is already {format_mc(over, up=True)} over "
                f"(a job cost more than its quote). {who[0].upper()}{who[1:]}."
            )
        return (
            f"This needs {format_mc(self.requested_mc)}, but {_LIMIT_WORDS[self.limit]} "
            f"({format_mc(self.allowance_mc)}) has {format_mc(left)} left: "
            f"{format_mc(self.shortfall_mc, up=True)} short. {who[0].upper()}{who[1:]}."
        )


@dataclass(frozen=True)
class QueueFull:
    """A member already has as many jobs waiting or running as a server allows at once: a
    cap that holds whatever the price (a free or mispriced job cannot flood the queue)."""

    waiting: int
    cap: int

    def reason(self) -> str:
        return (
            f"You already have {self.waiting} jobs waiting or running, the most at once; "
            "try again when one has finished."
        )


Denial = Refusal | QueueFull


def decide(amount_mc: int, snapshot: BudgetSnapshot, *, paid: bool = True) -> Refusal | None:
    """None when `amount_mc` fits every budget, else the first budget it would pass.

    `paid` is False only on Astria's free `fast` branch, where the account is never
    charged: there the account guard has nothing to guard. A price of 0 on a paid branch
    (a misconfigured price table) turns nothing off: it is checked as if it cost 1 mc, so
    an exhausted account or budget still refuses it. On the free branch a price of 0 is
    still refused by a budget that is already overspent.
    """
    if amount_mc < 0:
        raise ValueError("a reservation cannot be negative")
    if amount_mc > MAX_AMOUNT_MC:
        raise ValueError("a reservation above the maximum amount")
    if paid and snapshot.account_short:
        return Refusal(BudgetLimit.ACCOUNT_SHORT, 0, 0, amount_mc)
    if paid and snapshot.account is None:
        return Refusal(BudgetLimit.BALANCE_UNKNOWN, 0, 0, amount_mc)
    checked = max(amount_mc, 1) if paid else amount_mc
    budgets = (snapshot.guild_month, snapshot.user_month, snapshot.user_day)
    allowances = snapshot.checks() if paid else budgets
    for allowance in allowances:
        if allowance.used_mc + checked > allowance.allowance_mc:
            return Refusal(allowance.limit, allowance.allowance_mc, allowance.used_mc, amount_mc)
    return None


def _local_midnight(day: date, zone: tzinfo) -> datetime:
    """The first instant of the local `day`, in UTC."""
    wall = datetime(day.year, day.month, day.day)
    # fold=0: the earlier of two midnights when clocks went back over it.
    start = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if start.astimezone(zone).replace(tzinfo=None) == wall:
        return start
    # A DST jump skipped midnight (America/Santiago, America/Havana): the day begins at the
    # jump, which lies between midnight read with the offset after it and the one before.
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    low, high = (int(t.timestamp()) for t in sorted((start, other)))
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).date() >= day:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _local_date(at: datetime, zone: tzinfo) -> date:
    if at.utcoffset() is None:
        raise ValueError("budget periods need an aware datetime, got a naive one")
    return at.astimezone(zone).date()


def day_bounds(at: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    """The local day holding `at`, as a half-open [start, end) range of UTC instants."""
    today = _local_date(at, zone)
    return _local_midnight(today, zone), _local_midnight(today + timedelta(days=1), zone)


def month_bounds(at: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    """The local month holding `at`, as a half-open [start, end) range of UTC instants."""
    first = _local_date(at, zone).replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return _local_midnight(first, zone), _local_midnight(following, zone)


class AmountError(ValueError):
    """An amount that cannot be read; the message says why in words an admin can act on."""


_AMOUNT = re.compile(r"\$?[ ]?(?P<whole>[0-9]{1,9})?(?:\.(?P<fraction>[0-9]{1,5}))?")


def parse_usd(text: str, *, maximum_mc: int = MAX_AMOUNT_MC) -> int:
    """Dollars as an admin types them ("20", "$12.50", "0.5") in millicents.

    Strict: ASCII digits, a dot for cents and at most 5 decimals (a millicent), no sign,
    no separators, at most `maximum_mc`. Raises `AmountError` with the reason otherwise.
    """
    cleaned = text.strip()
    example = "like `20` or `12.50`"
    if "," in cleaned:
        raise AmountError(
            f"`{_shown(cleaned)}` has a comma: use a dot for cents and no thousands "
            f"separators, {example}."
        )
    if cleaned.startswith("-"):
        raise AmountError(f"`{_shown(cleaned)}` is negative: give an amount of $0 or more.")
    match = _AMOUNT.fullmatch(cleaned)
    if match is None or (match["whole"] is None and match["fraction"] is None):
        raise AmountError(f"`{_shown(cleaned)}` is not an amount in dollars, {example}.")
    whole, fraction = match["whole"] or "0", match["fraction"] or ""
    amount = int(whole) * MC_PER_DOLLAR + int(fraction.ljust(5, "0"))
    if amount > maximum_mc:
        raise AmountError(
            f"`{_shown(cleaned)}` is more than the most allowed, {format_mc(maximum_mc)}."
        )
    return amount


def _shown(text: str) -> str:
    # Echoed inside backticks: cut, and without backticks that would end the code span.
    return text.replace("`", "'")[:20]
