"""When a fleet source should ask its cloud again: a cadence aligned to the data's period.

Cloud metrics change once per period (60 s for CloudWatch, Cloud Monitoring and Azure Monitor standard
metrics), and describe-style answers (Auto Scaling groups, RDS instances...) change only when someone
changes them. Asking on every refresh of every console (every 2 s) costs money and API quota for nothing.
A source keeps one :class:`Cadence` per kind of call and asks only when it is :meth:`~Cadence.due`;
between polls it serves what it holds (the engine ages that data from when it was fetched, so
"served from the cache within the cadence" is fresh, and data older than twice the cadence is stale).

Usage::

    metrics = Cadence(60.0)                 # aligned: polls at most once per 60-s period
    if metrics.due():
        try:
            poll()
            metrics.done()
        except Exception:
            metrics.failed()                # due again at the next read (the next refresh retries)
    describes.invalidate()                  # a run touched the resources: ask at the next read

``every_s = 0`` means "every read" (today's behaviour). ``clock`` gives wall seconds; tests and benchmarks
pass a simulated clock. Pure core: thread-safe, no I/O.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from opsconsole.core.fleet.engine import SourceReading

__all__ = ["Cadence", "Clock", "PollCache"]

Clock = Callable[[], float]

#: How soon a poll that answered in part is retried (at most; the cadence if shorter).
PARTIAL_RETRY_S = 15.0


class Cadence:
    """A poll schedule: due at the first read, then at each ``every_s`` boundary (aligned), or when
    invalidated, or right after a failed poll.

    Args:
        every_s: the period; ``0``: due at every read.
        align: poll on multiples of ``every_s`` (wall clock) rather than ``every_s`` after the last poll,
            so a poll never straddles a period (at most one poll per period of the data).
        clock: wall seconds (``time.time`` by default).
    """

    def __init__(self, every_s: float, *, align: bool = True, clock: Clock | None = None) -> None:
        if every_s < 0 or math.isnan(every_s):
            raise ValueError(f"a cadence must be >= 0 s, got {every_s}")
        self.every_s = float(every_s)
        self.align = align
        self._clock: Clock = clock or time.time
        self._lock = threading.Lock()
        self._next_at: float | None = None  # None: due now
        self.last_at: float | None = None  # when the last successful poll happened

    def now(self) -> float:
        return self._clock()

    def due(self, now: float | None = None) -> bool:
        """True if a poll should happen now."""
        if self.every_s <= 0:
            return True
        with self._lock:
            if self._next_at is None:
                return True
            return (self._clock() if now is None else now) >= self._next_at

    def done(self, at: float | None = None) -> None:
        """A poll succeeded at ``at`` (now by default): the next is due at the next period boundary."""
        at = self._clock() if at is None else at
        with self._lock:
            self.last_at = at
            if self.every_s <= 0:
                self._next_at = at
            elif self.align:
                self._next_at = (math.floor(at / self.every_s) + 1) * self.every_s
            else:
                self._next_at = at + self.every_s

    def failed(self, at: float | None = None) -> None:
        """A poll failed (at ``at``): due again at the next read."""
        with self._lock:
            self._next_at = None

    def partial(self, at: float | None = None) -> None:
        """A poll answered in part: ask again soon (:data:`PARTIAL_RETRY_S`, or the cadence if shorter),
        not at every read: a part that stays missing (a region down) must not cost every refresh."""
        at = self._clock() if at is None else at
        with self._lock:
            self.last_at = at
            self._next_at = at + min(self.every_s, PARTIAL_RETRY_S)

    def invalidate(self) -> None:
        """Forget the schedule: due at the next read (a run touched what this cadence covers)."""
        with self._lock:
            self._next_at = None

    def next_at(self) -> float | None:
        with self._lock:
            return self._next_at


class PollCache:
    """One source's whole read on a cadence: poll when due, else serve the last reading unchanged.

    For sources whose every call is a metric query (Cloud Monitoring, Azure Monitor)::

        self._poll = PollCache(Cadence(60.0))
        def read(self) -> SourceReading:
            return self._poll.read(self._read_now, before=self._reresolve)

    The reading served between polls carries ``as_of`` = when it was fetched, so the engine ages it
    from then. A failed or incomplete poll is retried at the next read.
    """

    def __init__(self, cadence: Cadence) -> None:
        self.cadence = cadence
        self._cached: SourceReading | None = None

    def read(
        self, poll: Callable[[], SourceReading], before: Callable[[], None] | None = None
    ) -> SourceReading:
        now = self.cadence.now()
        if self._cached is not None and not self.cadence.due(now):
            return self._cached
        if before is not None:
            before()
        try:
            reading = poll()
        except Exception:
            self.cadence.failed()
            raise
        (self.cadence.done if reading.complete else self.cadence.partial)(now)
        reading = dataclasses.replace(reading, as_of=datetime.fromtimestamp(now, UTC))
        self._cached = reading
        return reading

    def invalidate(self) -> None:
        self.cadence.invalidate()
