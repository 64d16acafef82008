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
