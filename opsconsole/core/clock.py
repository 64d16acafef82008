"""Time, injectable.

Everything that stamps, schedules or simulates asks a :class:`Clock` for the time instead of calling
``datetime.now`` so that tests can run time-dependent logic on a fake clock
(:class:`opsconsole.testing.FakeClock`) and the sandbox can run faster than real time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def monotonic() -> float:
    """Seconds on a clock that never goes back; for deadlines and durations only."""
    return time.monotonic()


def utc(value: datetime | None) -> datetime | None:
    """A datetime in UTC: SQLite hands back naive datetimes (everything stored is UTC), so say so."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
