"""``OpsCore``: the one facade every face (CLI, TUI, Slack bot, scheduler) calls.

A face never assembles the core's parts itself; it asks the facade for a :class:`FleetView` — the
snapshot, what changed since the last one, the findings and each region's health — and renders it;
it asks the facade to *plan* a change (the action catalogue validates and previews it) and to
*execute* the plan (the run engine runs its playbook, in check mode for a preview). Which sources feed
the core, and how playbooks reach the clouds, is decided once, outside the core, by
:mod:`opsconsole.wiring`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from opsconsole.core.actions import ActionPlan
from opsconsole.core.clock import Clock
from opsconsole.core.errors import OpsError
from opsconsole.core.fleet import ChangeSet, FleetService, FleetSource, Snapshot
from opsconsole.core.model import Fleet, Health
from opsconsole.core.policy import Finding, evaluate, region_health
from opsconsole.core.runner import Runner
from opsconsole.core.store import Job, JobStore


@dataclass(frozen=True)
class FleetView:
    """Everything a face needs to show the fleet at one instant."""

    fleet: Fleet
    snapshot: Snapshot
    changes: ChangeSet
    findings: tuple[Finding, ...]
    health: Mapping[str, Health]


class ExecutionUnavailable(OpsError):
    """This core was built to read only: it has no run engine."""

    title = "changes unavailable"


@dataclass(frozen=True)
class Connection:
    """How playbooks reach the fleet: the connection variables every playbook receives."""

    extravars: Mapping[str, Any] = field(default_factory=dict)


class OpsCore:
    """The ops core behind every face.

    Args:
        fleet: the validated inventory.
        sources: where the fleet's live state comes from.
        deadline_s: how long a refresh waits for any one source.
        clock: the time source for stamps (a fake one in tests).
        runner: the run engine; ``None`` for a core that only reads.
        connection: the connection variables for the playbooks.
        after_run: called after every run that was not a preview (the sandbox uses it to let the
            world take in what the playbook changed before the next refresh).
    """

    def __init__(
        self,
        fleet: Fleet,
        sources: Sequence[FleetSource],
        *,
        deadline_s: float = 2.0,
        clock: Clock | None = None,
        runner: Runner | None = None,
        connection: Connection | None = None,
        after_run: Callable[[Job], None] | None = None,
    ) -> None:
        self.fleet = fleet
        self._fleet_service = FleetService(sources, deadline_s=deadline_s, clock=clock)
        self._runner = runner
        self._connection = connection or Connection()
        self._after_run = after_run

    @property
    def snapshot(self) -> Snapshot | None:
        """The latest snapshot, if any refresh happened."""
        return self._fleet_service.snapshot

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            raise ExecutionUnavailable("this console was started read-only: it cannot run playbooks")
        return self._runner

    @property
    def jobs(self) -> JobStore:
        return self.runner.store

    def execute(
        self, plan: ActionPlan, *, check: bool, actor: str, face: str, wait: bool = True
    ) -> Job:
        """Run ``plan``'s playbook (``check``: as a preview that changes nothing, with diffs).

        With ``wait`` the call returns the finished job; otherwise the queued one, and progress
        arrives on the run engine's event bus.
        """
        extravars = {**self._connection.extravars, **plan.extravars}
        runner = self.runner
        arguments: dict[str, Any] = {
            "check": check, "diff": True, "actor": actor, "face": face,
            "idle_timeout_s": plan.idle_timeout_s, "job_timeout_s": plan.job_timeout_s,
        }
        if not wait:
            return runner.start(plan.action.value, plan.playbook, extravars, **arguments)
        job = runner.run(plan.action.value, plan.playbook, extravars, **arguments)
        if not check and self._after_run is not None:
            self._after_run(job)
        return job

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
        if self._runner is not None:
            self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
