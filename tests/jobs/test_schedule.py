"""The polling schedule: first look at the expected finish, the minimum interval for the
first two misses, then doubling to the cap; callbacks stretch it; stuck jobs go slow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.jobs.schedule import PollPolicy, expected_done, first_check, next_check

T0 = datetime(2026, 11, 25, tzinfo=UTC)


def gaps(misses: int, policy: PollPolicy, kind: str = "prompt") -> float:
    return (next_check(kind, T0, misses, policy) - T0).total_seconds()


def test_the_interval_stays_at_the_minimum_for_two_misses_then_doubles_to_the_cap():
    policy = PollPolicy(prompt_min=5.0, cap=30.0)
    assert [gaps(m, policy) for m in range(1, 7)] == [5.0, 5.0, 10.0, 20.0, 30.0, 30.0]


def test_first_look_is_at_the_expected_finish_and_callbacks_stretch_polling():
    policy = PollPolicy(prompt_min=5.0)
    expected = expected_done("prompt", T0, None, 30.0)
    assert expected == T0 + timedelta(seconds=30)
    assert first_check("prompt", T0, expected, policy) == expected
    slow = PollPolicy(prompt_min=5.0, slowdown=4.0)
    assert first_check("prompt", T0, expected, slow) == expected + timedelta(seconds=15)
    assert gaps(1, slow) == 20.0


def test_stuck_jobs_are_looked_at_slowly():
    policy = PollPolicy(stuck_interval=1800.0)
    assert (next_check("tune", T0, 9, policy, stuck=True) - T0).total_seconds() == 1800.0
