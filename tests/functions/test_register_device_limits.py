"""The in-memory per-user registration limiter (functions/register_device/limits.py)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.register_device.limits import UserRegistrationLimiter, minute_window, next_utc_day
from shared.errors import TooManyRequests

T0 = datetime(2026, 12, 1, 10, 30, 15, tzinfo=UTC)
ALICE, BOB = b"a" * 16, b"b" * 16


def test_a_user_is_refused_past_the_limit_until_the_window_passes():
    limiter = UserRegistrationLimiter(2, timedelta(minutes=10))
    limiter.record(ALICE, T0)
    limiter.record(ALICE, T0 + timedelta(minutes=1))
    with pytest.raises(TooManyRequests) as refused:
        limiter.check(ALICE, T0 + timedelta(minutes=2))
    assert refused.value.slug == "registration-rate"
    assert refused.value.headers["Retry-After"] == str(8 * 60)  # until the oldest entry leaves the window
    limiter.check(BOB, T0 + timedelta(minutes=2))
    limiter.check(ALICE, T0 + timedelta(minutes=10, seconds=1))


def test_users_are_forgotten_when_their_window_has_passed_and_the_table_is_bounded():
    limiter = UserRegistrationLimiter(5, timedelta(minutes=10), max_users=3)
    for index in range(5):
        limiter.record(bytes([index]) * 16, T0)
    assert len(limiter) == 3
    limiter.check(ALICE, T0 + timedelta(minutes=11))
    assert len(limiter) == 0


def test_windows_are_utc_minutes_and_days():
    assert minute_window(T0) == ("202612011030", datetime(2026, 12, 1, 10, 31, tzinfo=UTC))
    assert next_utc_day(T0) == datetime(2026, 12, 2, tzinfo=UTC)
