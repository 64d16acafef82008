"""A fleet source that is built only when the fleet is first needed.

Why it exists: a one-shot command that never looks at the fleet (``opsconsole jobs list``, ``approvals
list``, ``audit verify``) must not pay for it. Building the four adapters imports boto3, the Google and
Azure SDKs and the Kubernetes client (about a second of CPU), and on the sandbox without ``sandbox up``
the local cloud's emulators would be started for them (seconds more). Measured before this module: a
``jobs list`` on the sandbox took 4–8 s, of which well under half a second was the store.

A :class:`DeferredSource` stands where the real source will be. Its name and cadence are known up front
(the engine reads them when it is made); ``build()`` runs on :meth:`prepare`. The engine calls
:meth:`prepare` at the start of a refresh, before any read's deadline runs
(:meth:`~opsconsole.core.fleet.engine.FleetService.prepare`), so a slow start (an emulator coming up, an
SDK's imports) is not mistaken for a slow cloud; :meth:`read` builds too, for a caller that reads it
directly. A build that fails is that source's read error and is tried again at the next refresh.

This differs from :class:`opsconsole.sandbox.starting.StartingSource`, which the console's progressive
start uses: that one is not waited for (it shows ``starting`` while the other sources' data is served);
this one is waited for like any source, only later — the one-shot command asked for the whole fleet.

Use::

    source = DeferredSource("aws", lambda: AwsSource.from_endpoints(...), cadence_s=60.0)
    source.built_source       # None: nothing imported, nothing started
    source.read()             # builds, then reads through the real adapter
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from opsconsole.core.fleet.engine import FleetSource, SourceReading


class DeferredSource:
    """A fleet source built on first need (see the module docstring).

    Args:
        name: the real source's name.
        build: makes the real source; may block (its far side starting) and may raise.
        cadence_s: the real source's cadence (0: the refresh interval), read before it exists.
    """

    def __init__(self, name: str, build: Callable[[], FleetSource], *, cadence_s: float = 0.0) -> None:
        self.name = name
        self.cadence_s = cadence_s
        self._build = build
        self._lock = threading.Lock()
        self._source: FleetSource | None = None

    @property
    def built_source(self) -> FleetSource | None:
        """The real source, once built (``None`` before)."""
        return self._source

    def prepare(self) -> FleetSource:
        """Build the real source if it is not built yet, and return it (once; concurrent callers wait).

        Raises:
            Exception: whatever ``build`` raised (the next call tries again).
        """
        source = self._source
        if source is not None:
            return source
        with self._lock:
            if self._source is None:
                self._source = self._build()
            return self._source

    def read(self) -> SourceReading:
        return self.prepare().read()

    def touch(self, kinds: Any = None) -> None:
        """Passed on to the real source (before it exists there is nothing to tell: its first read is
        fresh)."""
        touch = getattr(self._source, "touch", None)
        if callable(touch):
            touch(kinds)
