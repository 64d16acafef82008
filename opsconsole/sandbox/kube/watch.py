"""Watches of the Kubernetes API emulator: the bounded event log of each resource, and the event stream.

Why this module exists: the ``k8s`` source follows every cluster with watches (an initial LIST, then a
WATCH from the list's ``resourceVersion``), as informers do against a real API server. The emulator's
objects change in place (a publish of the world, a client's write); :meth:`EventLog.record` turns a
change into a watch event, and :func:`open_watch` serves ``GET <list URL>?watch=1`` the way the real
API server does:

* a chunked JSON stream, one ``{"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR", "object": {...}}`` per
  line;
* ``resourceVersion`` semantics: unset or ``"0"`` starts with a synthetic ``ADDED`` per current object;
  ``N`` sends the events after N; an N older than the events the log still holds answers one ``ERROR``
  event carrying a ``Status`` 410 ``Expired`` and ends the stream (the client must list again);
* ``timeoutSeconds`` ends the stream cleanly (the final chunk); ``allowWatchBookmarks=true`` sends a
  ``BOOKMARK`` (only ``metadata.resourceVersion``) every :data:`BOOKMARK_S` seconds;
* label and field selectors apply to watches as to lists; an object that stops (starts) matching is sent
  as ``DELETED`` (``ADDED``), as the real server does;
* :meth:`WatchHub.drop_all` ends every open stream abruptly (no final chunk), as a dropped connection
  would; ``stop`` of the emulator and the ``down`` fault use it.

Each log keeps the last :data:`EVENTS_KEPT` events of one resource of one cluster. One stream holds one
server thread (``ThreadingHTTPServer``, daemon threads): a console watching 31 clusters × 6 resources
holds ~190 threads, blocked on one condition variable that every change notifies.
"""

from __future__ import annotations

import bisect
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opsconsole.sandbox.kube import semantics
from opsconsole.sandbox.kube.resources import JsonObj, Resource
from opsconsole.sandbox.kube.status import bad_request

__all__ = [
    "BOOKMARK_S",
    "DEFAULT_TIMEOUT_S",
    "EVENTS_KEPT",
    "Event",
    "EventLog",
    "WatchDropped",
    "WatchHub",
    "open_watch",
]

#: Events kept per resource and cluster; a watch from an older resourceVersion gets 410 Expired.
EVENTS_KEPT = 1000
#: How often a watch that asked for bookmarks gets one.
BOOKMARK_S = 5.0
#: A watch without ``timeoutSeconds`` ends after this long (the real server's default is 30-60 min).
DEFAULT_TIMEOUT_S = 1800.0


class WatchDropped(Exception):
    """The stream must end without its final chunk (the connection is dropped)."""


@dataclass
class Event:
    """One change of one object: ``rv`` is the object's new resourceVersion (the deletion's for DELETED)."""

    rv: int
    type: str
    #: The object as it was after the change, JSON-encoded.
    data: str
    #: The object before the change (JSON), for selector transitions; None for ADDED.
    prev: str | None = None
    _obj: JsonObj | None = field(default=None, repr=False)
    _prev_obj: JsonObj | None = field(default=None, repr=False)

    def obj(self) -> JsonObj:
        if self._obj is None:
            self._obj = json.loads(self.data)
        return self._obj

    def prev_obj(self) -> JsonObj | None:
        if self.prev is None:
            return None
        if self._prev_obj is None:
            self._prev_obj = json.loads(self.prev)
        return self._prev_obj


class EventLog:
    """The last :data:`EVENTS_KEPT` events of one resource of one cluster, in resourceVersion order.

    ``floor``: a watch may resume from any resourceVersion ``>= floor``; older ones have lost events.
    """

    def __init__(self, floor: int, kept: int = EVENTS_KEPT) -> None:
        self.floor = floor
        self._kept = kept
        self._events: list[Event] = []
        self._rvs: list[int] = []
        #: key → (resourceVersion, JSON) of the object as last recorded (what DELETED / prev carry).
        self.seen: dict[tuple[str, str], tuple[str, str]] = {}

    def record(self, event: Event) -> None:
        self._events.append(event)
        self._rvs.append(event.rv)
        if len(self._events) > 2 * self._kept:  # trim in chunks: amortised O(1)
            cut = len(self._events) - self._kept
            self.floor = self._rvs[cut - 1]
            del self._events[:cut]
            del self._rvs[:cut]

    def expired(self, rv: int) -> bool:
        """Whether events after ``rv`` are no longer all kept."""
        if len(self._events) > self._kept:
            return rv < self._rvs[len(self._events) - self._kept - 1]
        return rv < self.floor

    def after(self, rv: int) -> list[Event]:
        """The events with a resourceVersion above ``rv``."""
        return self._events[bisect.bisect_right(self._rvs, rv) :]

    def __len__(self) -> int:
        return min(len(self._events), self._kept)


class WatchHub:
    """The event logs of every (cluster, resource), the condition streams wait on, and drops.

    Args:
        lock: the store's lock (logs change only under it).
    """

    def __init__(self, lock: threading.RLock) -> None:
        self.cond = threading.Condition(lock)
        self.logs: dict[tuple[str, str], EventLog] = {}
        #: Bumped by :meth:`drop_all`: streams opened at an older generation end abruptly.
        self.generation = 0
        self.bookmark_s = BOOKMARK_S
        self.open_streams = 0

    def log(self, cluster: str, plural: str, floor: int) -> EventLog:
        """The log of one resource of one cluster (created with ``floor`` on first use)."""
        key = (cluster, plural)
        found = self.logs.get(key)
        if found is None:
            found = self.logs[key] = EventLog(floor)
        return found

    def diff(
        self,
        cluster: str,
        plural: str,
        objects: Mapping[tuple[str, str], JsonObj],
        next_rv: Callable[[], str],
        floor: int,
    ) -> int:
        """Record an event per object added, changed (new resourceVersion) or removed; how many.

        The first diff of a resource is its baseline (no events; watches may start at ``floor``).
        """
        log = self.logs.get((cluster, plural))
        if log is None:
            log = self.log(cluster, plural, floor)
            for key, obj in objects.items():
                log.seen[key] = (str(obj["metadata"].get("resourceVersion", "")), _dump(obj))
            return 0
        found: list[Event] = []
        seen = log.seen
        for key, obj in objects.items():
            rv = str(obj["metadata"].get("resourceVersion", ""))
            before = seen.get(key)
            if before is not None and before[0] == rv:
                continue
            data = _dump(obj)
            seen[key] = (rv, data)
            if before is None:
                found.append(Event(_int(rv), "ADDED", data))
            else:
                found.append(Event(_int(rv), "MODIFIED", data, before[1]))
        for key in [k for k in seen if k not in objects]:
            _, data = seen.pop(key)
            rv = next_rv()
            gone = json.loads(data)
            gone["metadata"]["resourceVersion"] = rv
            found.append(Event(int(rv), "DELETED", json.dumps(gone, separators=(",", ":")), data))
        found.sort(key=lambda e: e.rv)
        for event in found:
            log.record(event)
        return len(found)

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def drop_all(self) -> None:
        """End every open stream abruptly (the client sees the connection drop)."""
        with self.cond:
            self.generation += 1
            self.cond.notify_all()


def _int(rv: str) -> int:
    try:
        return int(rv)
    except ValueError:
        return 0


def _dump(obj: JsonObj) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _expired(rv: int, floor: int) -> JsonObj:
    """The Status of an ERROR event: ``rv`` is older than the events kept."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"too old resource version: {rv} ({floor})",
        "reason": "Expired",
        "code": 410,
    }


def _line(kind: str, data: str) -> bytes:
    return b'{"type":"' + kind.encode() + b'","object":' + data.encode() + b"}\n"


@dataclass
class _Filter:
    namespace: str
    labels: Callable[[Mapping[str, str]], bool] | None
    fields: Callable[[JsonObj], bool] | None

    @property
    def trivial(self) -> bool:
        return self.labels is None and self.fields is None

    def match(self, obj: JsonObj | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace and meta.get("namespace") != self.namespace:
            return False
        if self.labels is not None and not self.labels(meta.get("labels") or {}):
            return False
        return self.fields is None or self.fields(obj)

    def event_type(self, event: Event) -> str | None:
        """The type this watcher sees for ``event`` (None: not its business)."""
        if self.trivial and not self.namespace:
            return event.type
        now = self.match(event.obj())
        if event.type == "DELETED":
            return "DELETED" if now else None
        if event.type == "ADDED":
            return "ADDED" if now else None
        before = self.match(event.prev_obj())
        if now and before:
            return "MODIFIED"
        if now:
            return "ADDED"
        return "DELETED" if before else None


def open_watch(
    hub: WatchHub,
    *,
    cluster: str,
    res: Resource,
    namespace: str,
    query: Mapping[str, str],
    current_rv: Callable[[], int],
    objects: Callable[[], Mapping[tuple[str, str], JsonObj]],
) -> Iterator[bytes]:
    """The event stream of one watch request (validated now: a bad request raises before streaming).

    ``objects`` and ``current_rv`` are read under the hub's lock.
    """
    try:
        timeout_s = float(query.get("timeoutSeconds") or DEFAULT_TIMEOUT_S)
    except ValueError:
        raise bad_request(f"timeoutSeconds must be a number, got {query['timeoutSeconds']!r}") from None
    raw_rv = query.get("resourceVersion") or ""
    start: int | None = None
    if raw_rv not in ("", "0"):
        try:
            start = int(raw_rv)
        except ValueError:
            raise bad_request(f"invalid resourceVersion {raw_rv!r}") from None
    filt = _Filter(
        namespace,
        semantics.label_matcher(query["labelSelector"]) if query.get("labelSelector") else None,
        semantics.field_matcher(query["fieldSelector"]) if query.get("fieldSelector") else None,
    )
    bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
    return _stream(hub, cluster, res, filt, start, timeout_s, bookmarks, current_rv, objects)


def _stream(
    hub: WatchHub,
    cluster: str,
    res: Resource,
    filt: _Filter,
    start: int | None,
    timeout_s: float,
    bookmarks: bool,
    current_rv: Callable[[], int],
    objects: Callable[[], Mapping[tuple[str, str], JsonObj]],
) -> Iterator[bytes]:
    end = time.monotonic() + max(0.0, timeout_s)
    lines: list[bytes] = []
    with hub.cond:
        generation = hub.generation
        log = hub.log(cluster, res.plural, current_rv())
        if start is None:  # "most recent" / "any": the current state as ADDED, then what follows
            for _, obj in sorted(objects().items()):
                if filt.match(obj):
                    lines.append(_line("ADDED", _dump(obj)))
            last = current_rv()
        elif log.expired(start):
            yield _line("ERROR", _dump(_expired(start, log.floor)))
            return
        else:
            last = start
    with hub.cond:
        hub.open_streams += 1
    try:
        if lines:
            yield b"".join(lines)
        next_bookmark = time.monotonic() + hub.bookmark_s
        while True:
            lines = []
            with hub.cond:
                while True:
                    if hub.generation != generation:
                        raise WatchDropped()
                    if log.expired(last):  # this stream fell behind what the log keeps
                        yield _line("ERROR", _dump(_expired(last, log.floor)))
                        return
                    events = log.after(last)
                    now = time.monotonic()
                    if events or now >= end or (bookmarks and now >= next_bookmark):
                        break
                    wake = min(end, next_bookmark) if bookmarks else end
                    hub.cond.wait(max(0.001, wake - now))
                for event in events:
                    kind = filt.event_type(event)
                    if kind is not None:
                        lines.append(_line(kind, event.data))
                    last = event.rv
                if bookmarks and now >= next_bookmark and not events:
                    last = max(last, current_rv())
                    mark: dict[str, Any] = {
                        "kind": res.kind,
                        "apiVersion": res.group_version,
                        "metadata": {"resourceVersion": str(last)},
                    }
                    lines.append(_line("BOOKMARK", _dump(mark)))
            if bookmarks and now >= next_bookmark:
                next_bookmark = now + hub.bookmark_s
            if lines:
                yield b"".join(lines)
            if now >= end:
                return
    finally:
        with hub.cond:
            hub.open_streams -= 1
