"""``OpsCore``: the one facade every face (CLI, TUI, Slack bot, scheduler) calls.

A face never assembles the core's parts itself; it asks the facade for a :class:`FleetView` — the
snapshot, what changed since the last one, the findings and each region's health — and renders it.
Which sources feed the core is decided once, outside the core, by :mod:`opsconsole.wiring`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from opsconsole.core.clock import Clock
from opsconsole.core.fleet import ChangeSet, FleetService, FleetSource, Snapshot
from opsconsole.core.model import Fleet, Health
from opsconsole.core.policy import Finding, evaluate, region_health


@dataclass(frozen=True)
class FleetView:
    """Everything a face needs to show the fleet at one instant."""

    fleet: Fleet
    snapshot: Snapshot
    changes: ChangeSet
    findings: tuple[Finding, ...]
    health: Mapping[str, Health]


class OpsCore:
    """The ops core behind every face.

    Args:
        fleet: the validated inventory.
        sources: where the fleet's live state comes from.
        deadline_s: how long a refresh waits for any one source.
        clock: the time source for stamps (a fake one in tests).
    """

    def __init__(
        self,
        fleet: Fleet,
        sources: Sequence[FleetSource],
        *,
        deadline_s: float = 2.0,
        clock: Clock | None = None,
    ) -> None:
        self.fleet = fleet
        self._fleet_service = FleetService(sources, deadline_s=deadline_s, clock=clock)

    def refresh(self) -> FleetView:
        """Read every source (concurrently, within the deadline) and judge the result."""
        snapshot, changes = self._fleet_service.refresh()
        findings = tuple(evaluate(self.fleet, snapshot))
        return FleetView(
            fleet=self.fleet,
            snapshot=snapshot,
            changes=changes,
            findings=findings,
            health=region_health(self.fleet, snapshot, findings),
        )

    def close(self) -> None:
        self._fleet_service.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
