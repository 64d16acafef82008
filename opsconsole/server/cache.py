"""One fleet refresh loop per server, and the fan-out of what happens to every connected client.

Why it exists: before the server, every console refreshed the fleet itself, so ten open consoles meant
ten times the cloud calls. The server refreshes once (:class:`FleetCache`, one background thread) and
every client reads the latest :class:`~opsconsole.core.fleet.view.FleetView` from it. What happens on
the server — a new view, a request that moved, a job's progress — is published as a
:class:`~opsconsole.core.api.StreamEvent` to a :class:`Hub`, which hands it to every SSE subscriber
through a bounded queue: a subscriber too slow to keep up is dropped (its stream ends and the client
reconnects), never allowed to block the publisher.

**Event-driven refreshes.** Sources that know when their data changed (the Kubernetes source's watch
threads: :class:`~opsconsole.core.fleet.engine.ChangeNotifying`) wake the cache: it refreshes
``debounce_s`` (100 ms) after the first change of a burst — a world tick changes hundreds of objects
within milliseconds, one refresh takes them all — and never sooner than ``min_interval_s`` (200 ms) after
the previous refresh started (at most 5 refreshes a second however busy the clusters are). The periodic
refresh every ``refresh_s`` stays as the floor (the clouds' cadences, sources that cannot tell). A
scaled deployment thus reaches every screen in a few hundred milliseconds, not a refresh interval later.

**Sources still starting.** A source of a progressive start (``startup_s``, see
:mod:`opsconsole.core.fleet.engine`) is ``starting`` until its first read ends, and the engine tells the
cache when it does (an early refresh takes it in). A ``progressive`` cache serves the first views with
such sources as they are (the console shows the Kubernetes data while the clouds start); otherwise
:meth:`FleetCache.latest` waits for the first view in which no source is starting, so a one-shot command
prints the whole fleet, as before.

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
from typing import Any, cast

from opsconsole.core import wire
from opsconsole.core.api import StreamEvent
from opsconsole.core.change.pipeline import RequestChanged
from opsconsole.core.clock import Clock, SystemClock
from opsconsole.core.errors import OpsError
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.engine import SourceStatus
from opsconsole.core.fleet.report import findings_document, status_document
from opsconsole.core.fleet.view import FleetView
from opsconsole.core.runs.events import EventKind, JobEvent

log = logging.getLogger(__name__)

#: Events a subscriber may have waiting before it counts as too slow and is dropped.
DEFAULT_QUEUE = 256
#: After a source says its data changed, wait this long for the rest of the burst before refreshing.
DEFAULT_DEBOUNCE_S = 0.1
#: Least time between the starts of two refreshes (5 a second at most).
DEFAULT_MIN_INTERVAL_S = 0.2

#: ``on_change(callback) -> unsubscribe`` of a core's fleet service (see :func:`_change_hook`).
ChangeHook = Callable[[Callable[[str], None]], Callable[[], None]]


def _change_hook(core: object) -> ChangeHook | None:
    """How to hear of a core's source changes: its ``on_fleet_change``
    (:meth:`~opsconsole.core.facade.OpsCore.on_fleet_change`), else none (a stand-in core in tests:
    periodic refreshes only)."""
    hook: Any = getattr(core, "on_fleet_change", None)
    return cast(ChangeHook, hook) if callable(hook) else None


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
    """The server's one fleet refresh loop: a background thread refreshing ``core`` every ``refresh_s``,
    and sooner when a source says its data changed (``debounce_s`` after the first change, at most once
    per ``min_interval_s``; ``follow_changes=False``: periodic only).

    Every client reads :meth:`latest`; each refresh is published as a ``fleet`` :class:`StreamEvent`.
    ``progressive``: :meth:`latest` serves views with sources still starting (else it waits past them).
    ``on_demand`` (a one-shot command's embedded server): :meth:`start` only arms the loop; the first
    :meth:`latest` / :meth:`complete` builds the core's sources (``prepare_fleet``) and starts it, so a
    command that never asks for the fleet never reads it.
    """

    def __init__(
        self,
        core: OpsCore,
        hub: Hub,
        *,
        refresh_s: float = 2.0,
        clock: Clock | None = None,
        debounce_s: float = DEFAULT_DEBOUNCE_S,
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
        follow_changes: bool = True,
        progressive: bool = False,
        on_demand: bool = False,
    ) -> None:
        self.core = core
        self.progressive = progressive
        self.on_demand = on_demand
        #: :meth:`start` was called (an on-demand cache starts on its first demand after that).
        self._armed = False
        self._start_lock = threading.Lock()
        self.hub = hub
        self.refresh_s = refresh_s
        self.debounce_s = max(0.0, debounce_s)
        self.min_interval_s = max(0.0, min_interval_s)
        self._follow = follow_changes
        self._changed = threading.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self._last_started: float | None = None
        #: Refreshes made because a source said its data changed (not by the periodic floor).
        self.early_refreshes = 0
        #: Change notifications received (many per refresh: they are coalesced).
        self.notifications = 0
        #: Monotonic time of the first notification not yet taken in by a refresh.
        self._first_pending: float | None = None
        #: Seconds from the first notification of a burst to the end of the refresh that took it in
        #: (the last few hundred, for /metrics and benchmarks).
        self.notify_to_view_s: deque[float] = deque(maxlen=512)
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
        #: Called once, with the first view published; set before :meth:`start`.
        self.on_first_view: Callable[[FleetView], None] | None = None
        #: Called once, from the caller's thread, when :meth:`latest` first hands a view out (the
        #: embedded server starts the clouds' emulators then: the console has its first data).
        self.on_first_served: Callable[[FleetView], None] | None = None
        self._served = False
        #: Seconds the last refresh took, and the monotonic time it finished (for /metrics).
        self.last_duration_s: float | None = None
        self.last_finished: float | None = None

    def start(self) -> None:
        """Start the refresh loop (``on_demand``: let the first demand start it)."""
        with self._start_lock:
            self._armed = True
            if not self.on_demand:
                self._start_loop()

    def _start_on_demand(self) -> None:
        """The first demand of an on-demand cache: build the sources, then start the loop (callers
        wait: they asked for the fleet). Their change hooks exist only once they are built."""
        if self._thread is not None or not self.on_demand:
            return
        with self._start_lock:
            if self._thread is not None or not self._armed or self._stop.is_set():
                return
            prepare = getattr(self.core, "prepare_fleet", None)
            if callable(prepare):
                prepare()
            if not self._stop.is_set():  # stopped while the sources were being built
                self._start_loop()

    def _start_loop(self) -> None:
        if self._thread is not None:
            return
        if self._follow and self._unsubscribe is None:
            hook = _change_hook(self.core)
            if hook is not None:
                try:
                    self._unsubscribe = hook(self._on_source_change)
                except Exception:  # periodic refreshes still work
                    log.exception("could not follow the sources' changes")
        self._thread = threading.Thread(target=self._run, name="opsconsole-fleet-cache", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()  # wake the loop
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._thread is not None:
            self._thread.join(timeout=max(self.refresh_s, 10.0))
            self._thread = None

    def _on_source_change(self, _source: str) -> None:
        """A source's data changed (called from its thread): refresh soon. Returns at once."""
        self.notifications += 1
        if self._first_pending is None:
            self._first_pending = time.monotonic()
        self._changed.set()

    def notify(self) -> None:
        """Ask for an early refresh (as a changed source does), e.g. after a run changed the world."""
        self._on_source_change("")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh_once()
            self._wait_for_next()

    def _wait_for_next(self) -> None:
        """Until the periodic refresh is due, or a change (debounced, rate-limited) asks for one sooner."""
        due = time.monotonic() + self.refresh_s
        if not self._changed.wait(max(0.0, due - time.monotonic())) or self._stop.is_set():
            return  # the periodic refresh, or stopping
        # Take the rest of the burst in, and keep to the rate limit (never past the periodic refresh).
        started = self._last_started if self._last_started is not None else 0.0
        delay = max(self.debounce_s, started + self.min_interval_s - time.monotonic())
        delay = min(delay, max(0.0, due - time.monotonic()))
        if delay > 0 and self._stop.wait(delay):
            return
        self.early_refreshes += 1

    def refresh_once(self) -> FleetView | None:
        """Refresh now (the loop does this; tests may too) and publish the result."""
        started = time.monotonic()
        self._last_started = started
        self._changed.clear()  # what changed before this refresh started is in it
        pending, self._first_pending = self._first_pending, None
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
        first = self._view is None
        self._set(view, None)
        if first and self.on_first_view is not None:
            try:
                self.on_first_view(view)
            except Exception:
                log.exception("on_first_view failed")
        if pending is not None:
            self.notify_to_view_s.append(time.monotonic() - pending)
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

    def _usable(self) -> bool:
        """There is a view to serve: any view if progressive, else one with no source starting."""
        view = self._view
        if view is None:
            return False
        return self.progressive or not any(
            s.status is SourceStatus.STARTING for s in view.snapshot.sources)

    def latest(self, *, wait_s: float = 30.0) -> FleetView:
        """The newest view; waits up to ``wait_s`` for the first refresh (not ``progressive``: for the
        first in which no source is starting; after ``wait_s``, the newest even so).

        Raises:
            FleetUnavailable: no view yet (the first refresh failed or is still running).
        """
        self._start_on_demand()
        with self._have:
            if not self._usable():
                self._have.wait_for(lambda: self._usable() or self._error is not None, wait_s)
            if self._view is None:
                reason = self._error or f"no refresh finished within {wait_s:.0f} s"
                raise FleetUnavailable(f"the fleet cannot be read yet: {reason}")
            view, first_served = self._view, not self._served
            self._served = True
        if first_served and self.on_first_served is not None:
            try:
                self.on_first_served(view)
            except Exception:
                log.exception("on_first_served failed")
        return view

    def complete(self, *, wait_s: float = 45.0) -> FleetView:
        """The view to plan a change on: while the server is starting, the first one in which every
        source answered (waiting up to ``wait_s``); once it has had one, or waited once in vain, simply
        the newest (a source that stays down must not make every plan wait).

        A server that has just started often finds a slow source past its deadline on its first refresh,
        and a plan on that partial view would refuse a healthy target for "no figures". On a loaded
        2-core machine the AWS adapter's first read through moto took longer than 15 s (a one-shot
        `act failover` then refused a healthy region): the wait is generous, and paid once.
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
