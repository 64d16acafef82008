"""In-process publish / subscribe of domain events (job progress today, approvals next).

The run engine publishes what happens in a playbook run as :class:`JobEvent` records while it happens;
the faces (TUI, bot, CLI ``--follow``) subscribe and render them. Events are plain frozen dataclasses, so a
subscriber never sees an ansible-runner dict and never needs to know where an event came from.

Use::

    bus = EventBus()
    unsubscribe = bus.subscribe(on_event, kinds={EventKind.TASK_START, EventKind.JOB_STATUS})
    ...
    unsubscribe()

Delivery is synchronous, in the publisher's thread, in publish order; a subscriber that needs to do slow
work (repaint a screen, call Slack) hands the event to its own worker. A subscriber that raises is logged
and skipped: it never breaks the publisher, nor the other subscribers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)


class EventKind(StrEnum):
    """What a :class:`JobEvent` reports. The values are stored as they are in the job store."""

    PLAYBOOK_START = "playbook_start"
    PLAY_START = "play_start"
    TASK_START = "task_start"
    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNREACHABLE = "unreachable"
    STATS = "stats"
    JOB_STATUS = "job_status"  # the job itself changed state (running, then its final status)


@dataclass(frozen=True)
class JobEvent:
    """One step of a job, as faces show it and as the store keeps it.

    ``seq`` numbers a job's events from 1 without gaps, in the order they happened. ``data`` holds the
    details a face may want (the module result, the diff, the recap, the final status); secrets are already
    redacted from every field by the time an event is published.
    """

    job_id: str
    seq: int
    at: datetime
    kind: EventKind
    host: str | None = None
    play: str | None = None
    task: str | None = None
    message: str = ""
    changed: bool = False
    data: Mapping[str, Any] = field(default_factory=dict)


Callback = Callable[[Any], None]


@dataclass(frozen=True)
class _Subscription:
    callback: Callback
    kinds: frozenset[str] | None


class EventBus:
    """Thread-safe, synchronous fan-out of events to subscribers.

    Any object can be published; ``kinds`` filters on the event's ``kind`` attribute (events without one
    reach only unfiltered subscribers).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: tuple[_Subscription, ...] = ()

    def subscribe(self, callback: Callback, *, kinds: Collection[str] | None = None) -> Callable[[], None]:
        """Call ``callback(event)`` for every published event (of ``kinds`` only, if given).

        Returns a function that removes this subscription; calling it twice is harmless.
        """
        wanted = frozenset(str(k) for k in kinds) if kinds is not None else None
        subscription = _Subscription(callback, wanted)
        with self._lock:
            self._subscriptions = (*self._subscriptions, subscription)

        def unsubscribe() -> None:
            with self._lock:
                self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)

        return unsubscribe

    def publish(self, event: object) -> None:
        """Deliver ``event`` to the current subscribers, in subscription order."""
        # Copy-on-write tuple: subscribers may (un)subscribe from inside a callback without deadlock.
        subscriptions = self._subscriptions
        kind = getattr(event, "kind", None)
        for subscription in subscriptions:
            if subscription.kinds is not None and (kind is None or str(kind) not in subscription.kinds):
                continue
            try:
                subscription.callback(event)
            except Exception:
                log.exception("event subscriber %r failed; the event is still delivered to the others",
                              subscription.callback)

    def subscriber_count(self) -> int:
        return len(self._subscriptions)


class EventCapture:
    """Collects published events in a list; for tests and for faces that poll.

    ``bus.subscribe(capture)`` works because a capture is callable.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Any] = []

    def __call__(self, event: object) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[Any]:
        with self._lock:
            return list(self._events)
