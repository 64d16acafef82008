"""The bot's side of the non-prod schedules: ``/ops env <name> status``, ``/ops keep-awake`` and the
[Keep awake 2h] / [Skip tonight] buttons of a shutdown warning, on :mod:`opsconsole.core.schedule.engine`.

The bot never runs the scheduling engine (the leader among the ``opsconsole schedule run`` / console
instances does): it reads :meth:`Scheduler.status` and sets overrides through :meth:`Scheduler.override`,
which checks the role (an operator or more in the environment), audits, and resolves a shutdown warning
the override cancels. One :class:`Scheduler` per runtime, made on first use (it reads ``schedules.yml``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from opsconsole.core.change.rbac import Identity
from opsconsole.core.errors import UsageError
from opsconsole.core.schedule.engine import EnvironmentStatus, Override, OverrideKind, Scheduler

FACE = "slack"


def status(scheduler: Scheduler, environment: str) -> list[EnvironmentStatus]:
    """The status rows of ``environment`` (one per region).

    Raises:
        UsageError: ``environment`` has no schedule.
    """
    if environment not in scheduler.schedules.environments:
        known = ", ".join(scheduler.schedules.environments) or "none"
        raise UsageError(f"{environment}: no schedule for it; scheduled environments: {known}")
    return [s for s in scheduler.status() if s.environment == environment]


def status_document(row: EnvironmentStatus) -> dict[str, Any]:
    """One status row as plain data for :func:`bot.blocks.env_status_message` (the same fields as
    ``opsconsole schedule show --json``)."""
    return {
        "environment": row.environment,
        "region": row.region,
        "desired": row.desired,
        "scheduled": row.scheduled,
        "applied": row.applied,
        "next_transitions": [{"at": t.at, "state": t.state} for t in row.next_transitions],
        "overrides": [
            {"id": o.id, "kind": o.kind.value, "until": o.until, "by": o.created_by, "region": o.region}
            for o in row.overrides
        ],
        "holds": list(row.holds),
        "warning_at": row.warning_at,
        "clusters": list(row.clusters),
    }


def override(
    scheduler: Scheduler,
    who: Identity,
    kind: OverrideKind,
    environment: str,
    *,
    until: datetime | None = None,
    region: str | None = None,
    reason: str | None = None,
) -> Override:
    """Set an override as ``who`` from Slack (``until`` None: the scheduler's default for ``kind``).

    Raises:
        RequestRefused: ``who`` is not an operator there (audited by the scheduler).
        UsageError: unknown environment or region, ``until`` in the past or too far away.
    """
    return scheduler.override(
        environment, kind, who=who, face=FACE, until=until, region=region, reason=reason
    )
