"""What the console shows, as plain data: table rows and region history.

The screens only lay these out. Keeping the computing here (pure functions of a :class:`FleetView`) lets
the tests and the benchmark check what a table will show without a terminal, and lets the tables redraw
only the cells whose text changed (see :class:`opsconsole.tui.widgets.table.FleetTable`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rich.text import Text

from opsconsole.core.fleet.engine import Snapshot, SourceHealth, SourceStatus
from opsconsole.core.fleet.findings import Finding
from opsconsole.core.fleet.model import (
    CacheState,
    ClusterState,
    DatabaseState,
    DnsRecordSet,
    Environment,
    Fleet,
    NodeGroupState,
    RegionTraffic,
    WorkloadMetrics,
    WorkloadState,
)
from opsconsole.core.fleet.view import FleetView
from opsconsole.styles import SEVERITY_STYLE

Cell = str | Text
Row = tuple[Cell, ...]

#: How much history the region charts keep (the issue asks for the last hour).
HISTORY = timedelta(hours=1)


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def pct(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 finding``, ``2 findings``, ``0 findings``."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def env_cell(environment: Environment) -> Text:
    """Production is always bold red-on-nothing so it never looks like staging."""
    if environment is Environment.PROD:
        return Text("PROD", style="bold red")
    return Text(environment.value, style="dim")


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def badge(source: SourceHealth) -> Text:
    """A freshness badge: the source's name, its age, and STALE / FAILED when it is not fresh."""
    if source.status is SourceStatus.OK:
        return Text(f" {source.name} {age_text(source.age_s)} ", style="black on green")
    if source.status is SourceStatus.STALE:
        return Text(f" {source.name} STALE {age_text(source.age_s)} ", style="black on yellow")
    return Text(f" {source.name} FAILED ", style="bold white on red")


# -- table rows ----------------------------------------------------------------------------------------

WORKLOAD_COLUMNS = (
    ("service", "Service"),
    ("env", "Env"),
    ("cluster", "Cluster"),
    ("cloud", "Cloud"),
    ("ready", "Ready/Desired"),
    ("hpa", "HPA min/max"),
    ("cpu", "CPU"),
    ("p95", "p95 ms"),
    ("errors", "Errors"),
)


def workload_row(fleet: Fleet, w: WorkloadState, metrics: WorkloadMetrics | None) -> Row:
    cluster = fleet.clusters.get(w.cluster)
    p95 = w.p95_ms if w.p95_ms is not None else (metrics.p95_ms if metrics else None)
    errors = w.error_rate if w.error_rate is not None else (metrics.error_rate if metrics else None)
    ready = Text(f"{w.ready}/{w.desired}", style="" if w.ready >= w.desired else "yellow")
    return (
        w.service,
        env_cell(w.environment),
        w.cluster,
        cluster.cloud.value if cluster else "?",
        ready,
        f"{w.hpa_min}/{w.hpa_max}",
        pct(w.cpu_utilisation),
        fmt(p95, ".0f"),
        pct(errors, 2),
    )


def workload_rows(view: FleetView, region: str, keys: Iterable[str] | None = None) -> dict[str, Row]:
    """Rows of the region's workloads by record key; with ``keys``, only those (the changed ones)."""
    snap = view.snapshot
    records: Iterable[Any] = (snap.get(k) for k in keys) if keys is not None else snap.records.values()
    rows: dict[str, Row] = {}
    for record in records:
        if isinstance(record, WorkloadState) and record.region == region:
            metrics = snap.get(f"metrics/{record.cluster}/{record.service}")
            rows[record.key] = workload_row(
                view.fleet, record, metrics if isinstance(metrics, WorkloadMetrics) else None
            )
    return rows


NODE_COLUMNS = (
    ("cluster", "Cluster"),
    ("env", "Env"),
    ("cloud", "Cloud"),
    ("nodes", "Ready/Nodes"),
    ("bounds", "Min/Max"),
    ("mix", "Reserved/Spot/OD"),
    ("headroom", "Headroom"),
)


def node_rows(view: FleetView, region: str) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    for c in view.snapshot.of_type(ClusterState):
        if c.region != region:
            continue
        headroom = 1 - c.nodes / c.nodes_max if c.nodes_max else None
        rows[c.key] = (
            c.cluster,
            env_cell(c.environment),
            c.cloud.value,
            f"{c.ready_nodes}/{c.nodes}",
            f"{c.nodes_min}/{c.nodes_max}",
            f"{c.reserved_nodes}/{c.spot_nodes}/{c.on_demand_nodes}",
            pct(headroom),
        )
    for g in view.snapshot.of_type(NodeGroupState):
        if g.region == region:
            rows[g.key] = (
                f"  └ {g.name}",
                "",
                g.cloud.value,
                f"{g.in_service}/{g.desired}",
                f"{g.min}/{g.max}",
                f"—/{g.spot}/{g.on_demand}",
                "",
            )
    return dict(sorted(rows.items()))


DATABASE_COLUMNS = (
    ("region", "Region"),
    ("role", "Role"),
    ("primary", "Replicates from"),
    ("replicas", "Read replicas"),
    ("lag", "Lag"),
    ("p95", "Query p95"),
    ("tps", "TPS"),
    ("up", "Available"),
)


def database_rows(view: FleetView, region: str) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    for d in view.snapshot.of_type(DatabaseState):
        if region in (d.region, d.replicates_from):
            lag_style = "red" if d.replica_lag_s > view.fleet.targets.rpo_db_s else ""
            rows[d.key] = (
                d.region,
                d.role.value,
                d.replicates_from or "— (write primary)",
                str(d.read_replicas),
                Text(f"{d.replica_lag_s:.1f}s", style=lag_style),
                f"{d.query_p95_ms:.0f}ms",
                f"{d.tps:,.0f}",
                Text("yes", style="green") if d.available else Text("NO", style="bold red"),
            )
    return rows


CACHE_COLUMNS = (("region", "Region"), ("nodes", "Healthy/Nodes"), ("hit", "Hit ratio"))


def cache_rows(view: FleetView, region: str) -> dict[str, Row]:
    return {
        c.key: (c.region, f"{c.healthy_nodes}/{c.nodes}", pct(c.hit_ratio, 1))
        for c in view.snapshot.of_type(CacheState)
        if c.region == region
    }


TRAFFIC_COLUMNS = (("what", "What"), ("value", "Value"))


def traffic_rows(view: FleetView, region: str) -> dict[str, Row]:
    snap = view.snapshot
    rows: dict[str, Row] = {}
    t = snap.get(f"traffic/{region}")
    if isinstance(t, RegionTraffic):
        target = view.fleet.targets.api_p95_ms
        rows["rps"] = ("requests / s", f"{t.rps:,.0f}")
        rows["p95"] = (
            "p95 / p99",
            Text(
                f"{t.p95_ms:.0f} / {t.p99_ms:.0f} ms (target {target:.0f})",
                style="red" if t.p95_ms > target else "",
            ),
        )
        rows["avg"] = ("average latency", f"{t.avg_latency_ms:.0f} ms")
        rows["err"] = ("errors 5 min / 1 h", f"{pct(t.error_rate, 3)} / {pct(t.error_rate_1h, 3)}")
        rows["users"] = ("concurrent users", f"{t.concurrent_users:,}")
        rows["hc"] = ("health check", "ok" if t.health_check_ok else "FAILING")
    dns = snap.get(f"dns/{region}")
    if isinstance(dns, DnsRecordSet):
        weights = ", ".join(f"{target} {weight}" for target, weight in sorted(dns.weights.items()))
        rows["dns"] = (f"DNS ({dns.routing.value})", weights)
    split = ", ".join(f"{name} {share * 100:.0f}%" for name, share in view.fleet.cdn_split.items())
    rows["cdn"] = ("CDN split (fleet)", split)
    return rows


FINDING_COLUMNS = (
    ("severity", "Severity"),
    ("region", "Region"),
    ("title", "Finding"),
    ("action", "Suggested action"),
)


def finding_rows(findings: Iterable[Finding]) -> dict[str, Row]:
    ordered = sorted(findings, key=lambda f: (-f.severity.rank, f.region or "", f.id))
    return {
        f.id: (
            Text(f.severity.value.upper(), style=SEVERITY_STYLE[f.severity]),
            f.region or "fleet",
            f.title,
            f.suggested_action.summary if f.suggested_action else "—",
        )
        for f in ordered
    }


def cross_layer_path(view: FleetView, workload_key: str) -> str:
    """pod → node → node group / ASG → region, for one workload, from the snapshot."""
    w = view.snapshot.get(workload_key)
    if not isinstance(w, WorkloadState):
        return "select a workload to see its path"
    cluster = view.snapshot.get(f"cluster/{w.cluster}")
    groups = [g for g in view.snapshot.of_type(NodeGroupState) if g.cluster == w.cluster]
    spec = view.fleet.clusters.get(w.cluster)
    nodes = (
        f"{cluster.ready_nodes}/{cluster.nodes} nodes ({spec.instance_type if spec else '?'})"
        if isinstance(cluster, ClusterState)
        else "nodes: no data"
    )
    group = (
        ", ".join(f"{g.name} {g.in_service}/{g.desired} [{g.min}–{g.max}]" for g in groups)
        or "node group: no data"
    )
    region = view.fleet.regions[w.region]
    return (
        f"pods {w.service} {w.ready}/{w.desired} → {w.cluster}: {nodes} → {group} → "
        f"{region.id} ({region.name}, tier {region.tier})"
    )


# -- history for sparklines and charts ------------------------------------------------------------------


@dataclass
class RegionHistory:
    """p95 and rps per region over the last hour, one point per refresh, from the snapshots seen."""

    points: dict[str, deque[tuple[datetime, float, float]]] = field(default_factory=dict)

    def add(self, snapshot: Snapshot) -> None:
        now = snapshot.taken_at
        for t in snapshot.of_type(RegionTraffic):
            series = self.points.setdefault(t.region, deque())
            if series and series[-1][0] == now:
                continue
            series.append((now, t.p95_ms, t.rps))
            while series and now - series[0][0] > HISTORY:
                series.popleft()

    def p95(self, region: str) -> list[float]:
        return [p for _, p, _ in self.points.get(region, ())]

    def rps(self, region: str) -> list[float]:
        return [r for _, _, r in self.points.get(region, ())]
