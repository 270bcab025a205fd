"""The refund watch alone: what a run of balance readings proves about failed prompts."""

from __future__ import annotations

from bot.jobs.refunds import RefundWatch


def test_a_refund_shows_as_the_failed_cost_coming_back():
    watch = RefundWatch()
    assert watch.reading(1_000, exact=True) is None  # the baseline
    watch.charged(100)
    watch.charged(40)
    watch.failed(40)
    assert watch.reading(900, exact=True) == "refunded"


def test_a_kept_cost_shows_as_the_balance_falling_by_every_charge():
    watch = RefundWatch()
    watch.reading(1_000, exact=True)
    watch.charged(100)
    watch.charged(40)
    watch.failed(40)
    assert watch.reading(860, exact=True) == "kept"


def test_an_inexact_reading_proves_nothing_and_keeps_the_baseline():
    watch = RefundWatch()
    watch.reading(1_000, exact=True)
    watch.charged(40)
    watch.failed(40)
    assert watch.reading(960, exact=False) is None
    assert watch.reading(1_000, exact=True) == "refunded"


def test_a_refund_seen_before_its_failure_is_waited_for():
    watch = RefundWatch()
    watch.reading(1_000, exact=True)
    watch.charged(40)
    # Astria failed and refunded the prompt; the bot has not seen the failure yet.
    assert watch.reading(1_000, exact=True) is None
    watch.failed(40)
    assert watch.reading(1_000, exact=True) == "refunded"


def test_a_top_up_or_foreign_spend_proves_nothing():
    watch = RefundWatch()
    watch.reading(1_000, exact=True)
    watch.charged(40)
    watch.failed(40)
    assert watch.reading(5_000, exact=True) is None  # topped up: waits once
    assert watch.reading(5_000, exact=True) is None  # then a new baseline
    watch.charged(40)
    watch.failed(40)
    assert watch.reading(4_900, exact=True) is None  # 60 mc spent elsewhere
    watch.charged(10)
    watch.failed(10)
    assert watch.reading(4_890, exact=True) == "kept"
