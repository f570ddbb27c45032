"""Abuse limits of device registration (docs/operations.md, "Abuse limits"; docs/security.md).

Per tenant, new devices per UTC minute are counted in Firestore across all instances
(`DeviceRepository.registrations_in_window`). Per user, new devices are counted here, in this instance's
memory only, keyed by `Caller.user_key` (a per-process keyed hash of the user's `oid`); an entry is
forgotten once its window has passed, and the table is bounded.
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque
from datetime import datetime, timedelta

from shared.errors import TooManyRequests

MINUTE = timedelta(minutes=1)


def minute_window(now: datetime) -> tuple[str, datetime]:
    """The UTC minute `now` falls in, as the window's document ID (YYYYMMDDHHMM), and when it ends."""
    start = now.replace(second=0, microsecond=0)
    return start.strftime("%Y%m%d%H%M"), start + MINUTE


def next_utc_day(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


def seconds_until(now: datetime, then: datetime) -> float:
    return max(1.0, (then - now).total_seconds())


class UserRegistrationLimiter:
    """At most `per_window` new devices per user per `window`, in this instance (in memory only)."""

    def __init__(self, per_window: int, window: timedelta, max_users: int = 50_000):
        self._per_window = per_window
        self._window = window
        self._max_users = max_users
        self._recent: OrderedDict[bytes, deque[datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, user_key: bytes, now: datetime) -> None:
        """Raises 429 `registration-rate` if the user already registered `per_window` new devices."""
        with self._lock:
            times = self._current(user_key, now)
            if times is not None and len(times) >= self._per_window:
                raise TooManyRequests("too many new devices registered by this user; try again later",
                                      slug="registration-rate",
                                      retry_after=seconds_until(now, times[0] + self._window))

    def record(self, user_key: bytes, now: datetime) -> None:
        with self._lock:
            times = self._current(user_key, now)
            if times is None:
                times = self._recent[user_key] = deque()
            times.append(now)
            self._recent.move_to_end(user_key)
            while len(self._recent) > self._max_users:  # bounded: the least recently active user goes
                self._recent.popitem(last=False)

    def __len__(self) -> int:
        return len(self._recent)

    def _current(self, user_key: bytes, now: datetime) -> deque[datetime] | None:
        """The user's registrations still inside the window; forgets users (and, on the way, the oldest
        entries of others) whose window has passed."""
        self._forget_expired(now)
        times = self._recent.get(user_key)
        if times is None:
            return None
        while times and times[0] <= now - self._window:
            times.popleft()
        return times

    def _forget_expired(self, now: datetime) -> None:
        horizon = now - self._window
        while self._recent:
            key, times = next(iter(self._recent.items()))
            if times and times[-1] > horizon:
                return
            del self._recent[key]
