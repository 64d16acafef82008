"""What every face shows of the fleet at one instant, free of the store and the engine's threads.

The server builds one per refresh of its cache and sends it to every client; the faces only render it.
:meth:`FleetView.freshness` says, per source, how old its data is against its cadence, so a face can show
a stale card ("data 3 min old, polled every 60 s") instead of a green one on old data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from opsconsole.core.fleet.engine import STALE_FACTOR, ChangeSet, Snapshot, SourceStatus
from opsconsole.core.fleet.findings import Finding
from opsconsole.core.fleet.metering import CallCount, Price, estimate_monthly_cost
from opsconsole.core.fleet.model import Fleet, Health


@dataclass(frozen=True)
class FleetView:
    """Everything a face needs to show the fleet at one instant."""

    fleet: Fleet
    snapshot: Snapshot
    changes: ChangeSet
    findings: tuple[Finding, ...]
    health: Mapping[str, Health]

    def freshness(self) -> tuple[SourceFreshness, ...]:
        """Per source: age of its data, its cadence, and whether that data is stale."""
        return source_freshness(self.snapshot)


@dataclass(frozen=True)
class SourceFreshness:
    """How fresh one source's data is in a snapshot."""

    name: str
    status: SourceStatus
    #: Seconds since the source's served data was fetched (``None``: it never answered).
    age_s: float | None
    #: How often the source asks its far side (``None``: unknown, an older server).
    cadence_s: float | None
    #: Not OK, or data older than twice the cadence.
    stale: bool
    #: When its last complete read finished.
    last_read: datetime | None
    error: str | None


def source_freshness(snapshot: Snapshot) -> tuple[SourceFreshness, ...]:
    """The freshness of every source of ``snapshot``, in the snapshot's order."""
    out: list[SourceFreshness] = []
    for h in snapshot.sources:
        too_old = h.cadence_s is not None and h.age_s is not None and h.age_s > STALE_FACTOR * h.cadence_s
        out.append(SourceFreshness(
            name=h.name, status=h.status, age_s=h.age_s, cadence_s=h.cadence_s,
            stale=h.status is not SourceStatus.OK or too_old, last_read=h.last_success, error=h.error,
        ))
    return tuple(out)


#: The schema name of :func:`sources_document`.
SOURCES_SCHEMA = "opsconsole.fleet.sources/v1"


def sources_document(
    snapshot: Snapshot | None,
    counts: Sequence[CallCount],
    prices: Mapping[str, Mapping[str, Price]],
    window_s: float,
) -> dict[str, Any]:
    """Per source: cadence, last read, age, status, calls/hour, errors, throttles, est. $/month.

    ``counts`` are the meter's (since ``window_s`` seconds ago); ``prices`` the operator's list prices.
    """
    fresh = {f.name: f for f in (source_freshness(snapshot) if snapshot is not None else ())}
    cost = estimate_monthly_cost(counts, prices, window_s)
    names = list(fresh) + sorted({c.source for c in counts} - set(fresh))
    rows: list[dict[str, Any]] = []
    for name in names:
        f = fresh.get(name)
        mine = [c for c in counts if c.source == name]
        est = cost.get(name)
        rows.append({
            "name": name,
            "status": f.status.value if f is not None else "unknown",
            "stale": bool(f.stale) if f is not None else None,
            "cadence_s": f.cadence_s if f is not None else None,
            "last_read": f.last_read.isoformat() if f is not None and f.last_read is not None else None,
            "age_s": round(f.age_s, 3) if f is not None and f.age_s is not None else None,
            "error": f.error if f is not None else None,
            "calls": sum(c.calls for c in mine),
            "calls_per_hour": round(est.calls_per_hour, 1) if est is not None else 0.0,
            "errors": sum(c.errors for c in mine),
            "throttles": sum(c.throttles for c in mine),
            "usd_per_month": round(est.usd_per_month, 2) if est is not None else 0.0,
            "operations": [
                {"operation": c.operation, "calls": c.calls, "units": c.units, "errors": c.errors,
                 "throttles": c.throttles,
                 "usd_per_month": round(est.by_operation.get(c.operation, 0.0), 2) if est else 0.0}
                for c in mine
            ],
        })
    return {
        "schema": SOURCES_SCHEMA,
        "window_s": round(window_s, 1),
        "sources": rows,
        "total": {
            "calls_per_hour": round(sum(e.calls_per_hour for e in cost.values()), 1),
            "usd_per_month": round(sum(e.usd_per_month for e in cost.values()), 2),
        },
    }
