"""The fleet engine: one consistent snapshot of the fleet, assembled from many sources, on time.

Why this module exists: the console reads the fleet from many independent sources (cloud APIs,
Kubernetes, metrics back ends). Those are synchronous SDKs that can be slow, hang, fail or answer
half a question. A face (CLI, TUI, bot) must still get a snapshot within a fixed deadline, with every
degraded source clearly marked, instead of waiting for the slowest source or crashing on the first
error. :class:`FleetService` does exactly that:

* every :meth:`FleetService.refresh` reads all sources concurrently on a bounded pool of *daemon*
  threads (a hung SDK call can never block the interpreter from exiting) and waits at most the
  per-source deadline for each;
* a source that answers in time with a complete :class:`SourceReading` is ``OK`` and its records
  replace all of its previous records;
* a source that hangs, raises, or answers half (``problems``) keeps serving its last good data,
  marked ``STALE`` with the age of that data and the reason; a source that never answered well is
  ``ERROR`` and contributes no records;
* a call that missed its deadline is abandoned, not waited for. While it is still running, no second
  call is started for that source (no pile-up of threads); the source is reported as
  "previous read still running for N s". **Late results are used**: when an abandoned call has
  finished successfully by the next refresh, its records become the source's last good data (aged
  from when that call finished) before a fresh read is started, so a source that is always a bit
  slower than its deadline still serves (stale) data instead of nothing;
* each refresh also yields a :class:`ChangeSet` against the previous snapshot, ignoring
  ``observed_at`` so that re-reading an unchanged record is not a change;
* every source has a **cadence** (its ``cadence_s`` attribute, else the refresh interval
  ``refresh_s``): a source may answer from what it holds between its polls, saying when that data was
  fetched (``SourceReading.as_of``); data younger than twice the cadence is ``OK``, older data is
  ``STALE`` ("data N s old, cadence C s") even when the source answered, so a source that quietly
  serves old data (its far side gone) never shows green. A source that answered in a refresh is aged
  as of its answer, so a slow neighbour in the same refresh does not make it look stale.

**Sources that take a while to start** (an emulator or a client still coming up) may say so with a
``startup_s`` attribute (seconds, > 0). Until such a source has answered once — well or not — a refresh
does not wait for it: it is ``STARTING`` (no data yet, and no failure either), the other sources' data
is served at once, and when its first read ends the service tells its :meth:`FleetService.on_change`
listeners (so the server's cache takes the answer in at once, not a refresh interval later). A first
read still running after ``startup_s`` makes the source ``ERROR`` ("no answer within ..."), as any hung
read does. Sources without ``startup_s`` are waited for as before.

**Sources built on first need** (:class:`opsconsole.core.fleet.deferred.DeferredSource`: a one-shot
command that never reads the fleet must not build four SDK clients or start the local cloud) have a
``prepare()`` method. :meth:`FleetService.prepare` calls it, and every :meth:`FleetService.refresh` calls
that first, before any read's deadline runs: a build that takes seconds (an emulator starting) is not a
source missing its deadline. A build that fails is left for the read, which then fails with the same
error, within its deadline, as that source's error; the next refresh tries the build again.

Records with the same key from different sources: the first source in ``sources`` order wins.

**Sources that know when their data changed** (a Kubernetes watch event landed in the source's cache)
may say so: such a source has an ``on_change(callback) -> unsubscribe`` method (:class:`ChangeNotifying`)
and calls ``callback()`` from its own thread, cheaply and without holding its locks, whenever what its
next :meth:`FleetSource.read` would answer may have changed. :meth:`FleetService.on_change` subscribes to
every such source at once; the server's fleet cache uses it to refresh early instead of waiting for its
next periodic refresh (a change then reaches the screens in well under a second).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import types
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import CancelledError, Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, Self, TypeVar

from opsconsole.core.clock import Clock, SystemClock, monotonic
from opsconsole.core.errors import OpsError
from opsconsole.core.fleet.model import FleetRecord, Observation

__all__ = [
    "ChangeNotifying",
    "ChangeSet",
    "FleetService",
    "FleetSource",
    "Snapshot",
    "SourceHealth",
    "SourceReading",
    "SourceStatus",
    "change_notifier",
]

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Observation)
T = TypeVar("T")

#: Upper bound of the reader thread pool, whatever the number of sources.
MAX_WORKERS = 64
#: Data older than this many cadences is stale.
STALE_FACTOR = 2.0
#: The refresh interval assumed for sources without a cadence of their own (the server's cache loop).
DEFAULT_REFRESH_S = 2.0
#: Longest error text kept from an exception message.
_MAX_ERROR_CHARS = 300
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SourceStatus(StrEnum):
    OK = "ok"
    STALE = "stale"
    ERROR = "error"
    #: Not answered yet since it started (a source with ``startup_s``): no data, and no failure either.
    STARTING = "starting"


@dataclass(frozen=True)
class SourceReading:
    """What one call to :meth:`FleetSource.read` returns.

    ``problems`` names the parts the source could not read (a half answer); empty means the answer
    is complete. ``notes`` are things worth telling the operator about a complete answer (throttling
    that was backed off from, a relist after 410 Gone); they do not make the source stale.
    """

    records: tuple[FleetRecord, ...]
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: When the data was fetched from the far side (a source answering from its cache between polls);
    #: ``None``: just now, by this read.
    as_of: datetime | None = None

    @property
    def complete(self) -> bool:
        return not self.problems


class FleetSource(Protocol):
    """One place the observed fleet is read from (a cloud account, a cluster, a metrics back end).

    Attributes:
        name: Unique among the sources of one :class:`FleetService`; used in health reports and
            in ``source_deadlines``.
        cadence_s: (optional) how often the source asks its far side, in seconds; data older than
            twice this is stale. Absent or ``0``: the service's refresh interval.
        startup_s: (optional) how long its first read may take (the source is still starting): until
            it has answered once, refreshes do not wait for it and report it ``STARTING``.

    ``read`` is called from a worker thread, never concurrently with itself for the same source.
    """

    name: str

    def read(self) -> SourceReading:
        """Read the current state of everything this source knows about.

        Args:
            None.

        Returns:
            A :class:`SourceReading` of domain records only (never SDK objects), each stamped with
            this source's ``name`` as ``source`` and the time it was read as ``observed_at``. Put
            the names of parts that could not be read into ``problems`` (a half answer).

        Raises:
            SourceError: preferred, when the source cannot be read at all; its message is shown.
            Exception: any other exception is tolerated too; only its type name and first line are
                shown. The engine also tolerates a call that never returns.
        """
        ...


class ChangeNotifying(Protocol):
    """An optional side of a :class:`FleetSource`: it can tell when its data changed.

    ``on_change(callback)`` registers ``callback`` and returns the function that unregisters it. The
    source calls ``callback()`` (no arguments) from any of its threads whenever its next ``read`` may
    answer differently; it may call it many times in a burst (the listener debounces). A callback must
    return at once (set a flag, wake a thread) and must not raise; a source ignores what one raises.
    """

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever the data changed; returns the unsubscribe function."""
        ...


def change_notifier(source: object) -> Callable[[Callable[[], None]], Callable[[], None]] | None:
    """The source's ``on_change`` if it is :class:`ChangeNotifying`, else ``None``."""
    on_change = getattr(source, "on_change", None)
    return on_change if callable(on_change) else None


@dataclass(frozen=True)
class SourceHealth:
    """How one source fared in the refresh that produced a snapshot."""

    name: str
    status: SourceStatus
    #: Age in seconds of the oldest data served for this source (``None`` if it never answered).
    age_s: float | None
    #: Why the source is stale or in error (``None`` when OK).
    error: str | None
    #: When the last complete read finished.
    last_success: datetime | None
    #: How long the last read took (``None`` if it is still running or missed its deadline).
    duration_s: float | None
    #: How many records of this source are in the snapshot.
    records: int
    #: What the source said about its last answer that is worth knowing but changes nothing
    #: (``SourceReading.notes``), e.g. throttling it backed off from.
    notes: tuple[str, ...] = ()
    #: How often the source asks its far side (seconds); stale past twice this.
    cadence_s: float | None = None

    @property
    def stale_after_s(self) -> float | None:
        return None if self.cadence_s is None else STALE_FACTOR * self.cadence_s


@dataclass(frozen=True)
class Snapshot:
    """The fleet as observed at ``taken_at``: every record by key, and every source's health."""

    taken_at: datetime
    records: Mapping[str, FleetRecord]
    sources: tuple[SourceHealth, ...]

    @property
    def partial(self) -> bool:
        """True if any source is not OK (some data is stale or missing)."""
        return any(s.status is not SourceStatus.OK for s in self.sources)

    def of_type(self, cls: type[R]) -> list[R]:
        """Records of one type, sorted by key."""
        return [r for _, r in sorted(self.records.items(), key=lambda kv: kv[0]) if isinstance(r, cls)]

    def get(self, key: str) -> FleetRecord | None:
        return self.records.get(key)

    def source(self, name: str) -> SourceHealth | None:
        for health in self.sources:
            if health.name == name:
                return health
        return None


@dataclass(frozen=True)
class ChangeSet:
    """Keys added, removed and changed (ignoring ``observed_at``) since the previous snapshot."""

    added: frozenset[str]
    removed: frozenset[str]
    changed: frozenset[str]
    #: Any source's status or error text changed.
    sources_changed: bool

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.sources_changed)


def _same_record(a: FleetRecord, b: FleetRecord) -> bool:
    """Equal except for ``observed_at`` (``extra`` is already excluded from comparison)."""
    if type(a) is not type(b):
        return False
    return dataclasses.replace(a, observed_at=_EPOCH) == dataclasses.replace(b, observed_at=_EPOCH)


def diff(previous: Snapshot | None, current: Snapshot) -> ChangeSet:
    """The change set from ``previous`` (``None``: nothing before) to ``current``."""
    if previous is None:
        return ChangeSet(frozenset(current.records), frozenset(), frozenset(), sources_changed=True)
    before, after = previous.records, current.records
    common = before.keys() & after.keys()
    health_before = {(s.name, s.status, s.error) for s in previous.sources}
    health_after = {(s.name, s.status, s.error) for s in current.sources}
    return ChangeSet(
        added=frozenset(after.keys() - before.keys()),
        removed=frozenset(before.keys() - after.keys()),
        changed=frozenset(k for k in common if not _same_record(before[k], after[k])),
        sources_changed=health_before != health_after,
    )


# --------------------------------------------------------------------------------------------------
# Thread pool
# --------------------------------------------------------------------------------------------------


class _DaemonPool:
    """A bounded pool of daemon threads.

    ``ThreadPoolExecutor`` joins its (non-daemon) workers at interpreter exit, so one hung SDK call
    would keep the process alive forever. These workers are daemons and are never joined.
    """

    def __init__(self, max_workers: int, name: str) -> None:
        self._max = max_workers
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Future[object], Callable[[], object]] | None] = (
            queue.SimpleQueue()
        )
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the fleet service is closed")
            self._jobs.put((future, fn))  # type: ignore[arg-type]
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn = job
            del job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)
            del future, fn
            self._idle.release()

    def shutdown(self) -> None:
        """Stop idle workers; busy (possibly hung) ones finish on their own or die with the process."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._jobs.put(None)


# --------------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    """What one read produced, measured in the worker thread."""

    reading: SourceReading | None
    error: str | None
    duration_s: float
    finished_at: datetime


@dataclass
class _SourceState:
    source: FleetSource
    deadline_s: float
    cadence_s: float = DEFAULT_REFRESH_S
    #: The data served for this source: key -> (record, when the read that supplied it finished).
    served: dict[str, tuple[FleetRecord, datetime]] = field(default_factory=dict)
    #: When the last read that supplied data (complete or half) finished; ``None``: never.
    last_data_at: datetime | None = None
    last_success: datetime | None = None
    inflight: Future[_Outcome] | None = None
    inflight_started: float = 0.0
    #: ``startup_s`` of the source (0: it is waited for from its first read on).
    startup_s: float = 0.0
    #: A read of this source has ended (well or not): it is no longer starting.
    answered: bool = False
    #: Monotonic time its first read started (``None``: not yet).
    first_started: float | None = None
    #: Its ``prepare()`` (a source built on first need) has succeeded, or it has none.
    prepared: bool = False

    def starting(self, now: float) -> bool:
        """Still starting at monotonic ``now``: never answered, and its first read is younger than
        ``startup_s``."""
        if self.startup_s <= 0 or self.answered:
            return False
        return self.first_started is None or now - self.first_started < self.startup_s


def underlying(source: object) -> object:
    """The real source behind one built late (its ``built_source``, once built), else ``source`` itself:
    what a face asks for more than the fleet (a pod's log) must reach the adapter, not its stand-in."""
    built = getattr(source, "built_source", None)
    return source if built is None else built


def cadence_of(source: object, refresh_s: float = DEFAULT_REFRESH_S) -> float:
    """A source's cadence in seconds: its ``cadence_s`` if > 0, else the refresh interval."""
    value = getattr(source, "cadence_s", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return max(float(value), refresh_s)
    return refresh_s


def startup_of(source: object) -> float:
    """A source's ``startup_s`` if it is a number > 0, else 0 (it is waited for from the start)."""
    value = getattr(source, "startup_s", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return 0.0


#: What a starting source's health says (constant: a changing text would be a change every refresh).
STARTING_TEXT = "starting: its first read is under way"


def _error_text(exc: BaseException) -> str:
    """A one-line reason: the message of an :class:`OpsError`, else the type name and first line."""
    if isinstance(exc, OpsError):
        text = exc.message.strip() or type(exc).__name__
    else:
        lines = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 3] + "..."
    return text


class FleetService:
    """Refreshes a :class:`Snapshot` from many sources, concurrently and within deadlines.

    Args:
        sources: The sources, in priority order (the first wins a duplicate key). Names must be
            unique.
        deadline_s: How long a refresh waits for each source.
        clock: Stamps snapshots and ages data; the wall clock by default.
        source_deadlines: Per-source overrides of ``deadline_s``, by source name.
        refresh_s: How often :meth:`refresh` is called: the cadence of sources without one.

    Use as a context manager, or call :meth:`close`, to release the reader threads.
    """

    def __init__(
        self,
        sources: Sequence[FleetSource],
        *,
        deadline_s: float = 2.0,
        clock: Clock | None = None,
        source_deadlines: Mapping[str, float] | None = None,
        refresh_s: float = DEFAULT_REFRESH_S,
    ) -> None:
        overrides = dict(source_deadlines or {})
        names = [s.name for s in sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate source names: {', '.join(duplicates)}")
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ValueError(f"source_deadlines names unknown sources: {', '.join(unknown)}")
        for name, value in [("deadline_s", deadline_s), *overrides.items()]:
            if not value > 0:
                raise ValueError(f"deadline of {name} must be > 0, got {value}")
        self._clock: Clock = clock or SystemClock()
        self.refresh_s = refresh_s
        self._states = [
            _SourceState(s, overrides.get(s.name, deadline_s), cadence_of(s, refresh_s),
                         startup_s=startup_of(s))
            for s in sources
        ]
        #: ``on_change`` listeners: told when a starting source's first read ends.
        self._listeners: list[Callable[[str], None]] = []
        self._listeners_lock = threading.Lock()
        self._pool = _DaemonPool(min(MAX_WORKERS, max(1, len(sources))), name="fleet-read")
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._warned_duplicates: set[tuple[str, str]] = set()
        self._closed = False

    @property
    def snapshot(self) -> Snapshot | None:
        """The snapshot of the last refresh (``None`` before the first)."""
        return self._snapshot

    def on_change(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(source_name)`` whenever a :class:`ChangeNotifying` source says its data
        changed; returns the function that unsubscribes from every one of them.

        Sources that cannot tell are simply not followed (their changes arrive with the next refresh).
        The end of a starting source's first read (see ``startup_s``) is told too, from the reader
        thread.
        """
        removers: list[Callable[[], None]] = []
        with self._listeners_lock:
            self._listeners.append(callback)

        def stop_listening() -> None:
            with self._listeners_lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        removers.append(stop_listening)
        for state in self._states:
            # A source built late is followed through the adapter it built (subscribe after prepare()).
            subscribe = change_notifier(underlying(state.source))
            if subscribe is None:
                continue
            name = state.source.name

            def changed(name: str = name) -> None:
                callback(name)

            try:
                removers.append(subscribe(changed))
            except Exception:  # a source's hook must never break the service
                log.exception("source %s: on_change failed", name)

        def unsubscribe() -> None:
            for remove in removers:
                try:
                    remove()
                except Exception:
                    log.exception("unsubscribing from a source's changes failed")
            removers.clear()

        return unsubscribe

    @property
    def sources(self) -> tuple[FleetSource, ...]:
        """The sources this service reads, in order (a face may ask one for more, e.g. a pod's log)."""
        return tuple(state.source for state in self._states)

    @property
    def notifying_sources(self) -> tuple[str, ...]:
        """Names of the sources that can tell when their data changed."""
        return tuple(s.source.name for s in self._states
                     if change_notifier(underlying(s.source)) is not None)

    def prepare(self) -> None:
        """Build every source that is built on first need (see the module docstring), outside any
        read's deadline; a no-op once they are built. A build that fails is logged and left for the
        read (which reports it as that source's error)."""
        for state in self._states:
            if state.prepared:
                continue
            prepare = getattr(state.source, "prepare", None)
            if callable(prepare):
                try:
                    prepare()
                except Exception as exc:
                    log.warning("source %s could not be built: %s", state.source.name, _error_text(exc))
                    continue
            state.prepared = True

    def await_late_reads(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for reads still running past their deadline (the next
        :meth:`refresh` takes their answers in); True when none is left running."""
        with self._lock:
            running = [s.inflight for s in self._states if s.inflight is not None and not s.inflight.done()]
        if not running:
            return True
        _done, still = wait_futures(running, timeout=timeout_s)
        return not still

    def close(self) -> None:
        """Release the reader threads. Calls still running are abandoned; they cannot block exit."""
        self._closed = True
        self._pool.shutdown()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------------

    def refresh(self) -> tuple[Snapshot, ChangeSet]:
        """Read every source and build a new snapshot and its change set against the previous one.

        Returns within the longest per-source deadline plus a small overhead, whatever the sources
        do. Never raises because of a source.

        Raises:
            RuntimeError: the service is closed.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the fleet service is closed")
            self.prepare()
            start = monotonic()
            busy, started = self._start_reads(start)

            # Wait for each fresh read until its own deadline, earliest deadline first; a starting
            # source is not waited for (its first answer is taken in by a later refresh).
            for state in sorted(started, key=lambda s: s.deadline_s):
                if state.starting(start):
                    continue
                assert state.inflight is not None
                remaining = start + state.deadline_s - monotonic()
                if remaining > 0:
                    wait_futures([state.inflight], timeout=remaining)

            taken_at = self._clock.now()
            now = monotonic()
            healths = [self._health(state, busy, taken_at, now) for state in self._states]

            records, counts = self._merge()
            healths = [dataclasses.replace(h, records=counts.get(h.name, 0)) for h in healths]
            snapshot = Snapshot(taken_at, types.MappingProxyType(records), tuple(healths))
            changes = diff(self._snapshot, snapshot)
            self._snapshot = snapshot
            return snapshot, changes

    def _start_reads(self, start: float) -> tuple[dict[str, float], list[_SourceState]]:
        """Start a fresh read of every source not still busy with an abandoned one (whose finished
        late results are harvested first). Returns the busy ones (name -> seconds running) and the
        states whose read started now."""
        busy: dict[str, float] = {}
        started: list[_SourceState] = []
        for state in self._states:
            previous = state.inflight
            if previous is not None and not previous.done():
                busy[state.source.name] = start - state.inflight_started
                continue
            if previous is not None:
                self._harvest_late(state, previous)
            first = state.starting(start)
            if first and state.first_started is None:
                state.first_started = start
            state.inflight = self._pool.submit(self._reader(state.source))
            state.inflight_started = start
            if first:  # its end is told once the result is in the future, not before
                name = state.source.name
                state.inflight.add_done_callback(lambda _f, name=name: self._tell(name))  # type: ignore[misc]
            started.append(state)
        return busy, started

    def _health(
        self, state: _SourceState, busy: Mapping[str, float], taken_at: datetime, now: float
    ) -> SourceHealth:
        """How one source fared in this refresh (its finished read's data is stored)."""
        name = state.source.name
        future = state.inflight
        if state.starting(now) and future is not None and not future.done():
            return self._starting(state)
        if name in busy:
            reason = f"previous read still running for {busy[name]:.1f} s"
            return self._degraded(state, reason, None, taken_at)
        assert future is not None
        if not future.done():
            if future.cancel():  # never started (pool saturated): forget it
                state.inflight = None
            reason = f"no answer within {state.deadline_s:.1f} s"
            return self._degraded(state, reason, None, taken_at)
        state.inflight = None
        state.answered = True
        outcome = self._outcome_of(future, taken_at)
        return self._apply(state, outcome, taken_at)

    def _reader(self, source: FleetSource) -> Callable[[], _Outcome]:
        clock = self._clock

        def read() -> _Outcome:
            t0 = monotonic()
            try:
                reading = source.read()
            except Exception as exc:
                return _Outcome(None, _error_text(exc), monotonic() - t0, clock.now())
            if not isinstance(reading, SourceReading):
                error = f"read() returned {type(reading).__name__}, not SourceReading"
                return _Outcome(None, error, monotonic() - t0, clock.now())
            return _Outcome(reading, None, monotonic() - t0, clock.now())

        return read

    def _tell(self, name: str) -> None:
        """A starting source's first read ended (called in its worker thread): tell the listeners."""
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(name)
            except Exception:  # a listener must never break the reader
                log.exception("on_change listener failed for %s", name)

    @staticmethod
    def _starting(state: _SourceState) -> SourceHealth:
        return SourceHealth(
            name=state.source.name,
            status=SourceStatus.STARTING,
            age_s=None,
            error=STARTING_TEXT,
            last_success=None,
            duration_s=None,
            records=0,
            cadence_s=state.cadence_s,
        )

    @staticmethod
    def _outcome_of(future: Future[_Outcome], now: datetime) -> _Outcome:
        try:
            return future.result(timeout=0)
        except CancelledError:
            return _Outcome(None, "read cancelled", 0.0, now)
        except BaseException as exc:
            return _Outcome(None, _error_text(exc), 0.0, now)

    def _harvest_late(self, state: _SourceState, future: Future[_Outcome]) -> None:
        """Adopt the data of an abandoned call that has finished since (see the module docstring)."""
        state.inflight = None
        state.answered = True
        outcome = self._outcome_of(future, self._clock.now())
        if outcome.reading is not None:
            self._store(state, outcome.reading, outcome.finished_at)

    @staticmethod
    def _store(state: _SourceState, reading: SourceReading, at: datetime) -> None:
        if reading.as_of is not None:
            at = min(at, reading.as_of)
        fresh = {r.key: (r, at) for r in reading.records}
        if reading.complete:
            state.served = fresh
            state.last_success = at
        else:
            state.served.update(fresh)
        state.last_data_at = at

    def _apply(self, state: _SourceState, outcome: _Outcome, now: datetime) -> SourceHealth:
        if outcome.reading is None:
            return self._degraded(state, outcome.error or "read failed", outcome.duration_s, now)
        self._store(state, outcome.reading, outcome.finished_at)
        # A source that answered in this refresh is judged by how old its data was when it answered,
        # not by how long the slowest other source of the same refresh took.
        age = self._age(state, min(now, outcome.finished_at))
        cadence = state.cadence_s
        if outcome.reading.complete:
            too_old = age is not None and age > STALE_FACTOR * cadence
            return SourceHealth(
                name=state.source.name,
                status=SourceStatus.STALE if too_old else SourceStatus.OK,
                age_s=age,
                error=f"data {age:.0f} s old (cadence {cadence:g} s)" if too_old else None,
                last_success=state.last_success,
                duration_s=outcome.duration_s,
                records=0,
                notes=outcome.reading.notes,
                cadence_s=cadence,
            )
        reason = "incomplete answer: " + "; ".join(outcome.reading.problems)
        return SourceHealth(
            name=state.source.name,
            status=SourceStatus.STALE,
            age_s=age,
            error=reason,
            last_success=state.last_success,
            duration_s=outcome.duration_s,
            records=0,
            notes=outcome.reading.notes,
            cadence_s=cadence,
        )

    def _degraded(
        self, state: _SourceState, reason: str, duration_s: float | None, now: datetime
    ) -> SourceHealth:
        has_data = state.last_data_at is not None
        return SourceHealth(
            name=state.source.name,
            status=SourceStatus.STALE if has_data else SourceStatus.ERROR,
            age_s=self._age(state, now),
            error=reason,
            last_success=state.last_success,
            duration_s=duration_s,
            records=0,
            cadence_s=state.cadence_s,
        )

    @staticmethod
    def _age(state: _SourceState, now: datetime) -> float | None:
        """Age of the oldest data served for the source."""
        if state.last_data_at is None:
            return None
        oldest = min((at for _, at in state.served.values()), default=state.last_data_at)
        return max(0.0, (now - oldest).total_seconds())

    def _merge(self) -> tuple[dict[str, FleetRecord], dict[str, int]]:
        """All served records by key, the first source winning a duplicate key; records per source."""
        records: dict[str, FleetRecord] = {}
        owner: dict[str, str] = {}
        counts: dict[str, int] = {}
        for state in self._states:
            name = state.source.name
            for key, (record, _) in state.served.items():
                if key in records:
                    if (key, name) not in self._warned_duplicates:
                        self._warned_duplicates.add((key, name))
                        log.warning("record %s from source %s ignored: %s has it", key, name, owner[key])
                    continue
                records[key] = record
                owner[key] = name
                counts[name] = counts.get(name, 0) + 1
        return records, counts
