"""Time, passed in as a collaborator so tests and the sweeper can control it."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def timestamp(value: object) -> str | None:
    """A stored time as RFC 3339 UTC text ("…Z"), as the HTTP views show it."""
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else None
