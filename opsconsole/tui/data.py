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
from opsconsole.core.fleet.report import RegionSummary, region_summaries
from opsconsole.core.fleet.view import FleetView
from opsconsole.styles import SEVERITY_STYLE

Cell = str | Text
Row = tuple[Cell, ...]


@dataclass(frozen=True)
class Column:
    """A column: ``short`` is the header used when space is short; ``drop`` > 0 may be hidden on a narrow
    terminal (the highest first); ``flex`` columns (names) are the ones cut when nothing else helps."""

    key: str
    label: str
    short: str | None = None
    drop: int = 0
    flex: bool = False
    max_width: int = 40


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


#: How the engine says a read is still under way (see core/fleet/engine.py FleetService.refresh).
_STILL_READING = ("no answer within", "previous read still running")


def starting(source: SourceHealth) -> bool:
    """True while a source has not answered yet since the server started: its first read is still
    running (past the refresh's deadline). It is neither OK (no data) nor failed (nothing refused):
    the console says "starting" until it answers or fails. A source that answered once and then went
    quiet is STALE; one that refused is FAILED."""
    if source.status.value == "starting":  # an engine that says so itself
        return True
    return (
        source.status is not SourceStatus.OK
        and source.last_success is None
        and source.age_s is None
        and (source.error or "").startswith(_STILL_READING)
    )


def badge(source: SourceHealth) -> Text:
    """A freshness badge: the source's name, its age, and STALE / FAILED when it is not fresh
    (``starting`` while its first read is still running)."""
    if starting(source):
        return Text(f" {source.name} starting… ", style="black on grey70")
    if source.status is SourceStatus.OK:
        return Text(f" {source.name} {age_text(source.age_s)} ", style="black on green")
    if source.status is SourceStatus.STALE:
        return Text(f" {source.name} STALE {age_text(source.age_s)} ", style="black on yellow")
    return Text(f" {source.name} FAILED ", style="bold white on red")


# -- table rows ----------------------------------------------------------------------------------------

#: At 80 columns the table keeps the name, replicas, CPU, p95 and errors: Cloud, HPA, Env and Cluster
#: are dropped in that order when even the short headers do not fit (see FleetTable.compute_layout).
WORKLOAD_COLUMNS = (
    Column("service", "Service", flex=True),
    Column("env", "Env", drop=2),
    Column("cluster", "Cluster", drop=1, flex=True),
    Column("cloud", "Cloud", drop=4),
    Column("ready", "Ready/Desired", short="Ready"),
    Column("hpa", "HPA min/max", short="HPA", drop=3),
    Column("cpu", "CPU"),
    Column("p95", "p95 ms", short="p95"),
    Column("errors", "Errors", short="Err"),
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
    """p95 and rps per region over the last hour, one point per refresh, from the snapshots seen.

    The charts put the points on a time axis (:meth:`buckets`): the right-hand end is now and the left the
    hour before, so one point just after start-up is one bar at the right, not a bar filling the chart,
    and a spike ten minutes ago is drawn ten minutes from the right edge until it ages out."""

    points: dict[str, deque[tuple[datetime, float, float]]] = field(default_factory=dict)
    latest: datetime | None = None

    def add(self, snapshot: Snapshot) -> None:
        now = snapshot.taken_at
        self.latest = now if self.latest is None or now > self.latest else self.latest
        for t in snapshot.of_type(RegionTraffic):
            series = self.points.setdefault(t.region, deque())
            if series and series[-1][0] >= now:
                continue
            series.append((now, t.p95_ms, t.rps))
            while series and now - series[0][0] > HISTORY:
                series.popleft()

    def p95(self, region: str) -> list[float]:
        return [p for _, p, _ in self.points.get(region, ())]

    def rps(self, region: str) -> list[float]:
        return [r for _, _, r in self.points.get(region, ())]

    def buckets(
        self, region: str, count: int, now: datetime | None = None, *, which: int = 1
    ) -> list[float | None]:
        """The last hour cut into ``count`` equal slices, oldest first: the highest p95 (``which=1``) or
        rps (``which=2``) seen in each slice, ``None`` where nothing was seen."""
        now = now or self.latest
        out: list[float | None] = [None] * max(1, count)
        if now is None:
            return out
        width = HISTORY / len(out)
        start = now - HISTORY
        for at, p95, rps in self.points.get(region, ()):
            if at < start or at > now:
                continue
            index = min(len(out) - 1, int((at - start) / width))
            value = p95 if which == 1 else rps
            current = out[index]
            out[index] = value if current is None else max(current, value)
        return out


SPARK_BLOCKS = "▁▂▃▄▅▆▇█"


def spark_cells(values: list[float | None], target: float) -> Text:
    """One block per time slice, scaled from 0 to the target (full height = at target), red above it, a
    dim dot where there is no data."""
    out = Text()
    for value in values:
        if value is None:
            out.append("·", style="dim")
            continue
        share = max(0.0, min(1.0, value / target)) if target > 0 else 0.0
        block = SPARK_BLOCKS[min(len(SPARK_BLOCKS) - 1, int(share * (len(SPARK_BLOCKS) - 1) + 0.5))]
        out.append(block, style="red" if value > target else ("yellow" if value > 0.9 * target else "green"))
    return out


def chart_text(  # noqa: PLR0912 - one loop per axis; splitting it would hide the layout
    values: list[float | None], *, height: int, unit: str, target: float | None = None
) -> Text:
    """A bar chart of ``values`` (one column per time slice over the last hour) with a value axis on the
    left (max, half, 0) and a time axis below (−60m … now)."""
    known = [v for v in values if v is not None]
    top = max([*known, target or 0.0, 1e-9])
    label_width = max(len(f"{top:,.0f}{unit}"), 4)
    rows: list[Text] = []
    for line in range(height, 0, -1):
        if line == height:
            value_label = f"{top:,.0f}{unit}"
        elif line == (height + 1) // 2:
            value_label = f"{top / 2:,.0f}{unit}"
        else:
            value_label = ""
        row = Text(f"{value_label:>{label_width}} ┤", style="dim")
        for value in values:
            if value is None:
                row.append(" ")
                continue
            filled = value / top * height
            if filled >= line:
                char = "█"
            elif filled > line - 1:
                char = SPARK_BLOCKS[max(0, min(7, int((filled - (line - 1)) * 8)))]
            else:
                char = " "
            style = "red" if target is not None and value > target else "green"
            row.append(char, style=style)
        rows.append(row)
    width = len(values)
    axis = Text(" " * label_width + " └" + "─" * width, style="dim")
    marks = [" "] * (width + 1)
    for minutes, position in ((60, 0), (45, width // 4), (30, width // 2), (15, 3 * width // 4)):
        label = f"-{minutes}m"
        for i, ch in enumerate(label):
            if position + i < len(marks):
                marks[position + i] = ch
    for i, ch in enumerate("now"):
        spot = width - 3 + i
        if 0 <= spot < len(marks):
            marks[spot] = ch
    times = Text(" " * (label_width + 2) + "".join(marks).rstrip(), style="dim")
    return Text("\n").join([*rows, axis, times])


# -- freshness per region ------------------------------------------------------------------------------


def region_freshness(view: FleetView, view_age_s: float = 0.0) -> dict[str, str | None]:
    """Per region: ``None`` when every source behind it is fresh, else what to show instead of its health:
    ``"stale 45s"`` (data older than twice its source's cadence, or a source in error serving old data),
    ``"unknown"`` (a source behind it never answered).

    ``view_age_s`` is how long ago the console last got a view at all (the server or the connection to it
    failing): past a few seconds every region is stale by at least that much, whatever its sources said.
    """
    freshness = {f.name: f for f in view.freshness()}
    sources: dict[str, set[str]] = {region: set() for region in view.fleet.regions}
    for record in view.snapshot.records.values():
        region = getattr(record, "region", None)
        name = getattr(record, "source", None)
        if isinstance(region, str) and isinstance(name, str) and region in sources:
            sources[region].add(name)
    out: dict[str, str | None] = {}
    for region, names in sources.items():
        worst: float | None = None
        unknown = not names  # nothing at all read about this region
        for name in names:
            f = freshness.get(name)
            if f is None or not f.stale:
                continue
            if f.age_s is None:
                unknown = True
            else:
                worst = max(worst or 0.0, f.age_s)
        if view_age_s > 0:
            worst = max(worst or 0.0, view_age_s)
        if unknown and worst is None:
            out[region] = "unknown"
        elif worst is not None:
            out[region] = f"stale {age_text(worst)}"
        else:
            out[region] = None
    return out


# -- the compact overview: one line per region ------------------------------------------------------------

REGION_COLUMNS = (
    Column("region", "Region", flex=True),
    Column("tier", "Tier", short="T", drop=3),
    Column("health", "Health"),
    Column("p95", "p95/target", short="p95"),
    Column("avail", "Avail", drop=2),
    Column("lag", "DB lag", short="lag", drop=4),
    Column("pods", "Pods"),
    Column("findings", "Findings", short="Fnd"),
    Column("trend", "p95, last hour", short="trend", drop=1, max_width=24),
)


def health_cell(health: str, stale: str | None) -> Text:
    """The health word, or the staleness that replaces it: never a green OK on old data."""
    if stale is not None:
        return Text(stale.upper(), style="bold yellow" if stale != "unknown" else "dim")
    style = {"ok": "green", "degraded": "bold yellow", "down": "bold red"}.get(health, "dim")
    return Text(health.upper(), style=style)


def pods_cell(s: RegionSummary, *, short_style: str = "yellow") -> Text:
    """A region's ready/desired pods; ``?`` when Kubernetes did not report them (never ``0/0``)."""
    if not s.pods_known:
        return Text("?", style="dim")
    short = s.pods_ready < s.pods_desired
    return Text(f"{s.pods_ready}/{s.pods_desired}", style=short_style if short else "")


def nodes_cell(s: RegionSummary) -> Text:
    """A region's nodes against its maximum; ``?`` when Kubernetes did not report them."""
    if not s.nodes_known:
        return Text("?", style="dim")
    return Text(f"{s.nodes}/{s.nodes_max}")


def region_rows(
    view: FleetView, history: RegionHistory, stale: dict[str, str | None], now: datetime | None = None
) -> dict[str, Row]:
    target = view.fleet.targets.api_p95_ms
    rows: dict[str, Row] = {}
    for s in region_summaries(view):
        worst = f" {s.worst_severity.value}" if s.worst_severity else ""
        rows[s.id] = (
            s.id,
            str(s.tier),
            health_cell(s.health.value, stale.get(s.id)),
            Text(
                f"{fmt(s.p95_ms, '.0f')}/{target:.0f}", style="bold red" if (s.p95_ms or 0) > target else ""
            ),
            pct(s.availability, 2),
            fmt(s.replica_lag_s, ".1f", "s"),
            pods_cell(s),
            Text(
                f"{s.findings}{worst}",
                style=SEVERITY_STYLE[s.worst_severity] if s.worst_severity else "dim",
            ),
            spark_cells(history.buckets(s.id, 12, now), target),
        )
    return rows
