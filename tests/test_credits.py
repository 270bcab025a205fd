"""Prices, the budget decision and budget periods: pure functions, tested without SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config import Settings
from bot.rules.credits import (
    Allowance,
    BudgetLimit,
    BudgetPolicy,
    BudgetSnapshot,
    Refusal,
    day_bounds,
    decide,
    format_mc,
    images_price,
    month_bounds,
    tune_price,
)

# Zones with DST on either side of the equator, half-hour offsets, and DST jumps that skip
# midnight itself (Santiago, Havana), where "the start of the day" is not 00:00.
ZONES = [
    "UTC",
    "America/Los_Angeles",
    "Pacific/Auckland",
    "Europe/Paris",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/Santiago",
    "America/Havana",
    "Pacific/Chatham",
]


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def snapshot(
    account: tuple[int, int] | None = (1_000_000, 0),
    guild: tuple[int, int] = (1_000_000, 0),
    month: tuple[int, int] = (1_000_000, 0),
    day: tuple[int, int] = (1_000_000, 0),
) -> BudgetSnapshot:
    return BudgetSnapshot(
        account=None if account is None else Allowance(BudgetLimit.ACCOUNT, *account),
        guild_month=Allowance(BudgetLimit.GUILD_MONTH, *guild),
        user_month=Allowance(BudgetLimit.USER_MONTH, *month),
        user_day=Allowance(BudgetLimit.USER_DAY, *day),
    )


# --- prices ------------------------------------------------------------------------------


def test_fast_branch_costs_nothing_whatever_the_table_says():
    s = settings(astria_branch="fast", tune_price_mc={"fast": 999, "flux1": 120_000})
    assert tune_price(s) == 0
    assert images_price(s, 8) == 0
    assert tune_price(s, "flux1") == 120_000


def test_paid_branch_prices_come_from_the_settings_table():
    s = settings(
        astria_branch="sd15",
        model_profile="sd15-checkpoint",
        tune_price_mc={"sd15": 140_000},
        image_price_mc={"sd15": 2_500},
    )
    assert tune_price(s) == 140_000
    assert images_price(s, 4) == 10_000
    assert images_price(s, 1, "flux1") == 3_000  # the default flux1 image price


def test_a_prompt_of_no_images_has_no_price():
    with pytest.raises(ValueError, match="at least one image"):
        images_price(settings(astria_branch="flux1"), 0)


@pytest.mark.parametrize(
    ("mc", "text"),
    [
        (150_000, "$1.50"),
        (2_500, "$0.025"),
        (0, "$0.00"),
        (-3_000, "-$0.03"),
        (12_345_678, "$123.46"),
        (4_826_123, "$48.26"),
        (99_950, "$1.00"),
        (1_234, "$0.012"),
        (2_001, "$0.02"),
    ],
)
def test_millicents_read_as_dollars(mc: int, text: str):
    assert format_mc(mc) == text


def test_policy_takes_defaults_margin_and_zone_from_settings():
    s = settings(
        guild_monthly_budget_mc=5,
        user_daily_limit_mc=6,
        user_monthly_limit_mc=7,
        balance_safety_margin_mc=8,
        budget_timezone="Pacific/Auckland",
    )
    policy = BudgetPolicy.from_settings(s)
    assert (policy.guild_monthly_budget_mc, policy.user_daily_limit_mc) == (5, 6)
    assert (policy.user_monthly_limit_mc, policy.safety_margin_mc) == (7, 8)
    assert policy.zone == ZoneInfo("Pacific/Auckland")


# --- the decision ------------------------------------------------------------------------


def test_an_amount_that_exactly_fills_every_budget_is_allowed():
    full = snapshot((100, 40), (100, 40), (100, 40), (100, 40))
    assert decide(60, full) is None
    assert decide(61, full) is not None


@pytest.mark.parametrize(
    ("limit", "kwargs"),
    [
        (BudgetLimit.ACCOUNT, {"account": (500_000, 450_000)}),
        (BudgetLimit.GUILD_MONTH, {"guild": (500_000, 450_000)}),
        (BudgetLimit.USER_MONTH, {"month": (500_000, 450_000)}),
        (BudgetLimit.USER_DAY, {"day": (500_000, 450_000)}),
    ],
)
def test_refusal_names_the_limit_and_the_shortfall(
    limit: BudgetLimit, kwargs: dict[str, tuple[int, int]]
):
    refusal = decide(80_000, snapshot(**kwargs))
    assert refusal is not None and refusal == Refusal(limit, 500_000, 450_000, 80_000)
    assert refusal.shortfall_mc == 30_000
    # The arithmetic a member can check: needs $0.80, has $0.50 left, $0.30 short.
    words = refusal.reason()
    assert "This needs $0.80" in words and "($5.00) has $0.50 left: $0.30 short" in words


def test_a_shortfall_is_rounded_up_never_to_nothing():
    refusal = Refusal(BudgetLimit.USER_DAY, 500, 450, 80)
    assert "$0.001 short" in refusal.reason()
    assert format_mc(1_000_001, up=True) == "$10.01" and format_mc(1_000_001) == "$10.00"


def test_the_account_is_checked_first_and_the_month_before_the_day():
    everything_spent = snapshot((10, 10), (10, 10), (10, 10), (10, 10))
    refusal = decide(1, everything_spent)
    assert refusal is not None and refusal.limit is BudgetLimit.ACCOUNT
    # "try tomorrow" would mislead a member whose month is spent too
    member_spent = snapshot(guild=(10, 0), month=(10, 10), day=(10, 10))
    refusal = decide(1, member_spent)
    assert refusal is not None and refusal.limit is BudgetLimit.USER_MONTH


def test_unknown_balance_refuses_paid_actions_but_not_free_ones():
    refusal = decide(1, snapshot(account=None))
    assert refusal is not None and refusal.limit is BudgetLimit.BALANCE_UNKNOWN
    assert "has not been read" in refusal.reason()
    assert decide(0, snapshot(account=None), paid=False) is None
    # A price of 0 on a paid branch is a misconfiguration, not a free pass.
    zero = decide(0, snapshot(account=None))
    assert zero is not None and zero.limit is BudgetLimit.BALANCE_UNKNOWN


def test_a_price_of_0_turns_no_limit_off():
    # The account has nothing left: Astria will bill the prompt whatever we priced it at.
    refusal = decide(0, snapshot(account=(100, 100)))
    assert refusal is not None and refusal.limit is BudgetLimit.ACCOUNT
    assert "has nothing left" in refusal.reason() and "$0.00 short" not in refusal.reason()
    exhausted_day = decide(0, snapshot(day=(10, 10)))
    assert exhausted_day is not None and exhausted_day.limit is BudgetLimit.USER_DAY
    assert decide(0, snapshot(day=(10, 9))) is None
    # On the free branch the account is never charged; an overspent budget still refuses.
    assert decide(0, snapshot(account=(100, 100)), paid=False) is None
    assert decide(0, snapshot(day=(10, 10)), paid=False) is None
    overspent = decide(0, snapshot(day=(10, 50)), paid=False)
    assert overspent is not None and overspent.limit is BudgetLimit.USER_DAY


def test_negative_reservations_are_a_bug():
    with pytest.raises(ValueError, match="negative"):
        decide(-1, snapshot())


def test_member_remaining_is_the_tightest_budget_never_below_zero():
    assert snapshot(guild=(100, 30), day=(100, 90)).member_remaining_mc == 10
    assert snapshot(day=(100, 130)).member_remaining_mc == 0


limits = st.tuples(st.integers(0, 10_000), st.integers(-5_000, 15_000))


@given(
    amount=st.integers(0, 10_000),
    account=st.none() | limits,
    guild=limits,
    month=limits,
    day=limits,
)
def test_decision_allows_exactly_what_fits_every_budget(
    amount: int,
    account: tuple[int, int] | None,
    guild: tuple[int, int],
    month: tuple[int, int],
    day: tuple[int, int],
):
    snap = snapshot(account, guild, month, day)
    refusal = decide(amount, snap)
    # On a paid branch a price of 0 is checked as 1 mc: it turns no limit off.
    checked = max(amount, 1)
    failing = [a for a in snap.checks() if a.used_mc + checked > a.allowance_mc]
    if account is None:
        assert refusal is not None and refusal.limit is BudgetLimit.BALANCE_UNKNOWN
    elif not failing:
        assert refusal is None
    else:
        assert refusal is not None
        assert refusal.limit is failing[0].limit
        assert refusal.shortfall_mc > 0 or amount == 0


# --- periods -----------------------------------------------------------------------------


def local(
    zone: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(zone))


def test_los_angeles_day_runs_from_local_midnight_to_local_midnight():
    la = ZoneInfo("America/Los_Angeles")
    start, end = day_bounds(local("America/Los_Angeles", 2025, 7, 4, 23, 59, 59), la)
    assert start == datetime(2025, 7, 4, 7, tzinfo=UTC)  # PDT is UTC-7
    assert end == datetime(2025, 7, 5, 7, tzinfo=UTC)


def test_dst_days_are_23_and_25_hours_long():
    la = ZoneInfo("America/Los_Angeles")
    spring = day_bounds(local("America/Los_Angeles", 2024, 3, 10, 12), la)
    autumn = day_bounds(local("America/Los_Angeles", 2024, 11, 3, 12), la)
    assert spring[1] - spring[0] == timedelta(hours=23)
    assert autumn[1] - autumn[0] == timedelta(hours=25)


def test_a_day_whose_midnight_was_skipped_starts_at_the_jump():
    santiago = ZoneInfo("America/Santiago")
    start, _ = day_bounds(local("America/Santiago", 2023, 9, 3, 12), santiago)
    assert start == datetime(2023, 9, 3, 4, tzinfo=UTC)
    assert start.astimezone(santiago).hour == 1  # 00:00 never happened that day


def test_auckland_month_starts_on_the_previous_utc_day():
    auckland = ZoneInfo("Pacific/Auckland")
    start, end = month_bounds(datetime(2025, 1, 31, 11, 30, tzinfo=UTC), auckland)
    # 11:30 UTC on 31 January is 00:30 on 1 February in Auckland (NZDT, UTC+13).
    assert start == datetime(2025, 1, 31, 11, tzinfo=UTC)
    assert end == datetime(2025, 2, 28, 11, tzinfo=UTC)


def test_december_rolls_into_the_next_year():
    start, end = month_bounds(datetime(2024, 12, 31, 23, 59, tzinfo=UTC), UTC)
    assert (start, end) == (datetime(2024, 12, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="naive"):
        day_bounds(datetime(2025, 1, 1), UTC)


instants = st.datetimes(
    min_value=datetime(1995, 1, 1), max_value=datetime(2040, 12, 31), timezones=st.just(UTC)
)


@given(at=instants, zone_name=st.sampled_from(ZONES))
def test_day_holds_the_instant_and_starts_when_the_local_date_changes(at: datetime, zone_name: str):
    zone = ZoneInfo(zone_name)
    start, end = day_bounds(at, zone)
    assert start <= at < end
    today = at.astimezone(zone).date()
    assert start.astimezone(zone).date() == today
    assert (start - timedelta(seconds=1)).astimezone(zone).date() < today
    assert (end - timedelta(seconds=1)).astimezone(zone).date() == today
    assert end.astimezone(zone).date() > today
    assert timedelta(hours=22) <= end - start <= timedelta(hours=26)


@given(at=instants, zone_name=st.sampled_from(ZONES))
def test_month_holds_the_instant_and_tiles_with_its_neighbours(at: datetime, zone_name: str):
    zone = ZoneInfo(zone_name)
    start, end = month_bounds(at, zone)
    assert start <= at < end
    assert start.astimezone(zone).day == 1 and end.astimezone(zone).day == 1
    assert start == day_bounds(start, zone)[0]
    assert month_bounds(end, zone)[0] == end  # the next month starts where this one ends
    assert month_bounds(start - timedelta(seconds=1), zone)[1] == start


def test_an_earlier_overage_is_named_rather_than_hidden_in_the_shortfall():
    # $1.60 a day, $1.74 already spent (a job cost more than its quote), $0.24 asked.
    refusal = Refusal(BudgetLimit.USER_DAY, 160_000, 174_000, 24_000)
    words = refusal.reason()
    assert "This needs $0.24" in words and "($1.60) is already $0.14 over" in words, words
    assert "$0.00 left" not in words
