"""The ``sim`` fleet source: reads the embedded sandbox world in-process.

Why this module exists: the sandbox world is normally served through the real adapters (via local API
emulators), which is slow to stand up. Unit tests, the scale benchmarks and a quick ``opsconsole fleet``
want the same world without sockets; :class:`SimSource` is a
:class:`~opsconsole.core.fleet.engine.FleetSource` that asks the world directly.

How to use it::

    source = SimSource(WorldStore(home, fleet, SystemClock()))   # the persisted world at sim-now
    source = SimSource(world.observe)                            # any callable returning records
    reading = source.read()                                      # SourceReading(records=(...))

Every record is stamped ``source="sim"`` and ``observed_at`` = the world's sim time. A world file that
cannot be used raises :class:`~opsconsole.core.errors.SandboxError`, whose message (which says to run
``opsconsole sandbox reset``) the fleet engine shows as the source's error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opsconsole.core.fleet.engine import SourceReading
from opsconsole.core.fleet.model import FleetRecord
from opsconsole.sandbox.state import WorldStore
from opsconsole.sandbox.world import SOURCE_NAME

__all__ = ["SimSource"]


class SimSource:
    """A :class:`~opsconsole.core.fleet.engine.FleetSource` over the sandbox world.

    Args:
        world: a :class:`WorldStore` (read under its lock, advanced to sim-now and saved on every
            call), or a callable returning the records (e.g. ``world.observe`` of an in-memory world).
        name: the source name; ``"sim"`` unless several simulated sources are combined.
    """

    name: str

    def __init__(
        self,
        world: WorldStore | Callable[[], Iterable[FleetRecord]],
        *,
        name: str = SOURCE_NAME,
    ) -> None:
        self.name = name
        self._read: Callable[[], Iterable[FleetRecord]] = (
            world.read if isinstance(world, WorldStore) else world
        )

    def read(self) -> SourceReading:
        """All records of the world now. Raises SandboxError when the world cannot be loaded."""
        return SourceReading(records=tuple(self._read()))
