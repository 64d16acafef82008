"""One fleet refresh loop per server, and the fan-out of what happens to every connected client.

Why it exists: before the server, every console refreshed the fleet itself, so ten open consoles meant
ten times the cloud calls. The server refreshes once (:class:`FleetCache`, one background thread) and
every client reads the latest :class:`~opsconsole.core.fleet.view.FleetView` from it. What happens on
the server — a new view, a request that moved, a job's progress — is published as a
:class:`~opsconsole.core.api.StreamEvent` to a :class:`Hub`, which hands it to every SSE subscriber
through a bounded queue: a subscriber too slow to keep up is dropped (its stream ends and the client
reconnects), never allowed to block the publisher.

Use::

    hub = Hub()
    cache = FleetCache(core, hub, refresh_s=2.0)
    cache.start()
    view = cache.latest(wait_s=10)        # the newest view (waits for the first one)
    watcher = CoreEvents(core, hub)       # request and job events from the core's bus
    ...
    watcher.close(); cache.stop(); hub.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from opsconsole.core import wire
from opsconsole.core.api import StreamEvent
from opsconsole.core.change.pipeline import RequestChanged
from opsconsole.core.clock import Clock, SystemClock
from opsconsole.core.errors import OpsError
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.report import findings_document, status_document
from opsconsole.core.fleet.view import FleetView
from opsconsole.core.runs.events import EventKind, JobEvent

log = logging.getLogger(__name__)

#: Events a subscriber may have waiting before it counts as too slow and is dropped.
DEFAULT_QUEUE = 256


class FleetUnavailable(OpsError):
    """No fleet view yet: the first refresh failed or has not finished (HTTP 503)."""

    title = "fleet unavailable"


class Subscription:
    """One subscriber's bounded queue, filled from any thread, drained by one asyncio task."""

    def __init__(self, hub: Hub, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self._hub = hub
        self._loop = loop
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._items: deque[StreamEvent] = deque()
        self._ready = asyncio.Event()
        #: Set when the subscriber fell too far behind or the hub closed: the stream must end.
        self.closed = False

    def _offer(self, event: StreamEvent) -> bool:
        with self._lock:
            if self.closed:
                return False
            if len(self._items) >= self._maxsize:
                self.closed = True
                accepted = False
            else:
                self._items.append(event)
                accepted = True
        self._wake()
        return accepted

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is reading any more
            self._loop.call_soon_threadsafe(self._ready.set)

    def close(self) -> None:
        with self._lock:
            self.closed = True
        self._wake()

    async def next_batch(self, timeout_s: float) -> list[StreamEvent] | None:
        """The events waiting (an empty list after ``timeout_s`` of silence); ``None`` once closed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        self._ready.clear()
        with self._lock:
            items = list(self._items)
            self._items.clear()
            closed = self.closed
        if closed and not items:
            return None
        return items

    def unsubscribe(self) -> None:
        self._hub._remove(self)


class Hub:
    """Fan-out of :class:`StreamEvent` s to subscribers; ``publish`` is thread-safe and never blocks."""

    def __init__(self, *, maxsize: int = DEFAULT_QUEUE) -> None:
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        self._listeners: list[Callable[[StreamEvent], None]] = []
        self.dropped = 0

    def subscribe(self, loop: asyncio.AbstractEventLoop | None = None) -> Subscription:
        """A new subscription drained on ``loop`` (default: the running loop)."""
        sub = Subscription(self, loop or asyncio.get_running_loop(), self._maxsize)
        with self._lock:
            self._subscribers.append(sub)
        return sub

    def listen(self, callback: Callable[[StreamEvent], None]) -> Callable[[], None]:
        """Call ``callback`` synchronously for every event (tests, metrics); returns the remover."""
        with self._lock:
            self._listeners.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return remove

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def publish(self, event: StreamEvent) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
            listeners = list(self._listeners)
        for sub in subscribers:
            if not sub._offer(event):
                self._remove(sub)
                self.dropped += 1
                log.info("stream subscriber dropped: more than %d events behind", self._maxsize)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("hub listener failed")

    def close(self) -> None:
        """End every subscriber's stream (at shutdown)."""
        with self._lock:
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        for sub in subscribers:
            sub.close()


class FleetCache:
    """The server's one fleet refresh loop: a background thread refreshing ``core`` every ``refresh_s``.

    Every client reads :meth:`latest`; each refresh is published as a ``fleet`` :class:`StreamEvent`.
    """

    def __init__(
        self, core: OpsCore, hub: Hub, *, refresh_s: float = 2.0, clock: Clock | None = None
    ) -> None:
        self.core = core
        self.hub = hub
        self.refresh_s = refresh_s
        self.clock: Clock = clock or SystemClock()
        self._view: FleetView | None = None
        self._error: str | None = None
        self._have = threading.Condition()
        self._encode_lock = threading.Lock()
        #: The start-up wait of :meth:`complete` is over (a whole view came, or it waited once in vain).
        self._settled = False
        self._encoded: tuple[FleetView, bytes] | None = None
        self._documents: tuple[FleetView, dict[tuple[str, str | None], dict[str, Any]]] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Seconds the last refresh took, and the monotonic time it finished (for /metrics).
        self.last_duration_s: float | None = None
        self.last_finished: float | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="opsconsole-fleet-cache", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(self.refresh_s, 10.0))
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh_once()
            self._stop.wait(self.refresh_s)

    def refresh_once(self) -> FleetView | None:
        """Refresh now (the loop does this; tests may too) and publish the result."""
        started = time.monotonic()
        try:
            view = self.core.refresh()
        except OpsError as exc:
            self._set(None, exc.message)
            return None
        except Exception as exc:  # a bug in a source must not kill the loop every client depends on
            log.exception("fleet refresh failed")
            self._set(None, f"{type(exc).__name__}")
            return None
        finally:
            self.last_duration_s = time.monotonic() - started
            self.last_finished = time.monotonic()
        self._set(view, None)
        changes = view.changes
        self.hub.publish(StreamEvent("fleet", self.clock.now(), {
            "taken_at": view.snapshot.taken_at,
            "added": sorted(changes.added),
            "removed": sorted(changes.removed),
            "changed": sorted(changes.changed),
            "sources_changed": changes.sources_changed,
        }))
        return view

    def _set(self, view: FleetView | None, error: str | None) -> None:
        with self._have:
            if view is not None:
                self._view = view
                self._settled = self._settled or not view.snapshot.partial
            self._error = error
            self._have.notify_all()

    @property
    def error(self) -> str | None:
        """Why the last refresh failed as a whole (``None`` after a good one)."""
        return self._error

    def peek(self) -> FleetView | None:
        """The latest view, without waiting."""
        return self._view

    def latest(self, *, wait_s: float = 30.0) -> FleetView:
        """The newest view; waits up to ``wait_s`` for the first refresh.

        Raises:
            FleetUnavailable: no view yet (the first refresh failed or is still running).
        """
        with self._have:
            if self._view is None:
                self._have.wait_for(lambda: self._view is not None or self._error is not None, wait_s)
            if self._view is None:
                reason = self._error or f"no refresh finished within {wait_s:.0f} s"
                raise FleetUnavailable(f"the fleet cannot be read yet: {reason}")
            return self._view

    def complete(self, *, wait_s: float = 15.0) -> FleetView:
        """The view to plan a change on: while the server is starting, the first one in which every
        source answered (waiting up to ``wait_s``); once it has had one, or waited once in vain, simply
        the newest (a source that stays down must not make every plan wait).

        A server that has just started often finds a slow source past its deadline on its first refresh,
        and a plan on that partial view would refuse a healthy target for "no figures".
        """
        view = self.latest(wait_s=wait_s)
        deadline = time.monotonic() + wait_s
        with self._have:
            while not self._settled and self._view is not None and self._view.snapshot.partial:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:  # no refresh loop: nothing newer will come
                    break
                seen = self._view
                self._have.wait_for(lambda seen=seen: self._view is not seen, left)  # type: ignore[misc]
            self._settled = True
            return self._view if self._view is not None else view

    def latest_encoded(self, *, wait_s: float = 30.0) -> bytes:
        """:meth:`latest` as the wire's JSON, encoded once per view however many clients ask.

        Encoding the whole fleet takes tens of milliseconds of one core; twenty consoles asking at once
        would otherwise queue twenty encodings of the same view behind the GIL.
        """
        view = self.latest(wait_s=wait_s)
        with self._encode_lock:
            if self._encoded is None or self._encoded[0] is not view:
                self._encoded = (view, wire.dumps(view).encode())
            return self._encoded[1]

    def document(self, kind: str, region: str | None) -> dict[str, Any]:
        """The latest view's ``status`` or ``findings`` document (a region's, or all), made once a view."""
        view = self.latest()
        with self._encode_lock:
            if self._documents is None or self._documents[0] is not view:
                self._documents = (view, {})
            made = self._documents[1]
            if (kind, region) not in made:
                make = status_document if kind == "status" else findings_document
                made[(kind, region)] = make(view, region)
            return made[(kind, region)]

    def age_s(self) -> float | None:
        """Seconds since the last refresh finished."""
        return None if self.last_finished is None else time.monotonic() - self.last_finished


class CoreEvents:
    """Publishes the core's request and job events (its pipeline's event bus) to the hub."""

    def __init__(self, core: OpsCore, hub: Hub, *, clock: Clock | None = None) -> None:
        self.hub = hub
        self.clock: Clock = clock or SystemClock()
        self._unsubscribe = core.pipeline.bus.subscribe(self._on_event)

    def _on_event(self, event: Any) -> None:
        now = self.clock.now()
        if isinstance(event, RequestChanged):
            request = event.request
            self.hub.publish(StreamEvent("request", now, {
                "id": request.id, "status": request.status.value, "change": str(event.kind),
            }))
        elif isinstance(event, JobEvent):
            data: dict[str, Any] = {"job_id": event.job_id, "event": event}
            if event.kind is EventKind.JOB_STATUS:
                data["status"] = event.data.get("status")
            self.hub.publish(StreamEvent("job", now, data))

    def close(self) -> None:
        self._unsubscribe()
