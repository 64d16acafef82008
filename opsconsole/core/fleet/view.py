"""What every face shows of the fleet at one instant, free of the store and the engine's threads.

The server builds one per refresh of its cache and sends it to every client; the faces only render it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from opsconsole.core.fleet.engine import ChangeSet, Snapshot
from opsconsole.core.fleet.findings import Finding
from opsconsole.core.fleet.model import Fleet, Health


@dataclass(frozen=True)
class FleetView:
    """Everything a face needs to show the fleet at one instant."""

    fleet: Fleet
    snapshot: Snapshot
    changes: ChangeSet
    findings: tuple[Finding, ...]
    health: Mapping[str, Health]
