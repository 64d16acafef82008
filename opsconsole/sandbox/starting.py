"""Sources and settings that exist only once a slow part of the local cloud has started.

Why it exists: the console's first data should not wait for the slowest emulators. On a progressive start
(``wiring.sandbox_core(progressive=True)``) the Kubernetes emulator starts first and the AWS, Cloud
Monitoring and Azure Monitor emulators (moto and grpc: seconds of CPU) start once the console has its
first data. Their adapters cannot be built before their endpoints exist, so each stands behind a
:class:`StartingSource`: a :class:`~opsconsole.core.fleet.engine.FleetSource` with ``startup_s`` (the
engine serves the other sources' data at once and shows this one as ``starting``) whose first read
waits to be :meth:`~StartingSource.release`-d (the embedded server does it just after a client got the
first view, so the slow start does not compete for the one interpreter lock with the first refresh and
the first screen), builds the real
adapter (which waits for its emulator) and then reads through it. :class:`LazyMapping` does the same for
the playbooks' connection variables: resolved when a run first needs them.

Use::

    source = StartingSource("aws", lambda: AwsSource.from_endpoints(fleet, endpoints["aws"], ...),
                            cadence_s=60.0)
    ...                       # the engine reads it: "starting" until the build and first read end
    source.release()          # let the build begin now (else it begins after ``hold_s``)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from opsconsole.core.fleet.deferred import DeferredSource
from opsconsole.core.fleet.engine import FleetSource, SourceReading

#: How long a starting source may take to give its first answer (the engine's ``startup_s``): the
#: emulator's start, the adapter's imports and its first read, on a loaded machine.
DEFAULT_STARTUP_S = 60.0
#: How long a first read waits to be released before building anyway (nobody released it: no client
#: asked for the fleet).
DEFAULT_HOLD_S = 10.0


class StartingSource:
    """A fleet source built on its first read (see the module docstring).

    Args:
        name: the real source's name.
        build: makes the real source; may block until its far side is up; may raise (the read then
            fails with that error, and the next read builds again).
        cadence_s: the real source's cadence (the engine reads it before the source exists).
        startup_s: see :data:`DEFAULT_STARTUP_S`.
        hold_s: see :data:`DEFAULT_HOLD_S`.
    """

    def __init__(self, name: str, build: Callable[[], FleetSource], *, cadence_s: float = 0.0,
                 startup_s: float = DEFAULT_STARTUP_S, hold_s: float = DEFAULT_HOLD_S) -> None:
        self.name = name
        self.cadence_s = cadence_s
        self.startup_s = startup_s
        self.hold_s = hold_s
        self._released = threading.Event()
        # The build itself (once, concurrent readers waiting) is a deferred source's; held, not exposed:
        # a ``prepare()`` here would make the engine wait for this source, which is the opposite of its
        # purpose.
        self._deferred = DeferredSource(name, build, cadence_s=cadence_s)

    @property
    def source(self) -> FleetSource | None:
        """The real source, once built."""
        return self._deferred.built_source

    #: The name :func:`opsconsole.core.fleet.engine.underlying` looks for.
    built_source = source

    def release(self) -> None:
        """Let the first read build the real source now."""
        self._released.set()

    def read(self) -> SourceReading:
        if self._deferred.built_source is None:
            self._released.wait(self.hold_s)
        return self._deferred.read()

    def touch(self, kinds: Any = None) -> None:
        """Passed on to the real source (nothing to do before it exists: its first read is fresh)."""
        self._deferred.touch(kinds)


def release_starting(sources: Iterable[object]) -> int:
    """Release every :class:`StartingSource` among ``sources``; returns how many."""
    released = 0
    for source in sources:
        if isinstance(source, StartingSource):
            source.release()
            released += 1
    return released


class LazyMapping(Mapping[str, Any]):
    """A mapping made by ``make()`` on first use (then kept): connection variables naming an emulator
    that is still starting. Using it waits for ``make``."""

    def __init__(self, make: Callable[[], Mapping[str, Any]]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._made: dict[str, Any] | None = None

    def _data(self) -> dict[str, Any]:
        with self._lock:
            if self._made is None:
                self._made = dict(self._make())
            return self._made

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())
