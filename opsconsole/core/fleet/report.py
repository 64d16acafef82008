"""The fleet in figures: per-region summaries and fleet-wide totals, as plain data.

One place computes what "the status of the fleet" means so that every face shows the same numbers:
the CLI prints it as a table or as JSON, the TUI and the bot render the same summaries. The JSON
documents built here are a public, versioned interface (``schema`` field); fields may be added, but
existing ones keep their name, type and meaning within a schema version. README documents them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from opsconsole.core.fleet.findings import Finding
from opsconsole.core.fleet.model import (
    CacheState,
    Cloud,
    ClusterState,
    DatabaseState,
    DnsRecordSet,
    Environment,
    Fleet,
    Health,
    RegionTraffic,
    Severity,
    WorkloadState,
)
from opsconsole.core.fleet.view import FleetView

T = TypeVar("T")

STATUS_SCHEMA = "opsconsole.fleet.status/v1"
FINDINGS_SCHEMA = "opsconsole.fleet.findings/v1"


@dataclass(frozen=True)
class RegionSummary:
    """One region at a glance. Figures are ``None`` when no source reported them."""

    id: str
    name: str
    tier: int
    role: str
    geography: str
    cloud_mix: dict[str, float]  # planned prod capacity share per cloud
    health: Health
    p95_ms: float | None
    avg_latency_ms: float | None
    availability: float | None  # over the last hour
    error_rate: float | None  # over the last 5 minutes
    rps: float | None
    concurrent_users: int | None
    db_role: str | None
    replica_lag_s: float | None
    pods_ready: int
    pods_desired: int
    nodes_ready: int
    nodes: int
    nodes_max: int
    cache_nodes: str | None  # "healthy/total"
    dns_weights: dict[str, int] | None
    findings: int
    worst_severity: Severity | None
    #: Whether any of the region's prod workloads / clusters was reported: when Kubernetes does not
    #: answer, pods and nodes are unknown (never ``0/0``) and so is the region's health.
    pods_known: bool = True
    nodes_known: bool = True


@dataclass(frozen=True)
class Totals:
    """Fleet-wide figures against their targets; ``partial`` when some source is stale or failed."""

    rps: float
    api_rps_target: float
    global_avg_latency_ms: float | None
    global_avg_latency_target_ms: float
    api_p95_ms: float | None  # traffic-weighted across regions
    worst_p95_ms: float | None
    api_p95_target_ms: float
    availability: float | None  # traffic-weighted, last hour
    availability_target: float
    error_budget_burn: float | None  # last-hour error rate / error budget; 1.0 spends it exactly
    concurrent_users: int
    concurrent_users_target: int
    db_tps: float
    worst_replica_lag_s: float | None
    rpo_target_s: float
    regions_reporting: int
    regions_total: int
    partial: bool


def cloud_mix(fleet: Fleet, region: str) -> dict[str, float]:
    """Planned share of the region's prod capacity per cloud (from the clusters' capacity weights)."""
    weights: dict[str, float] = defaultdict(float)
    for cluster in fleet.clusters_in(region, Environment.PROD):
        weights[cluster.cloud.value] += cluster.capacity_weight
    total = sum(weights.values()) or 1.0
    return {cloud.value: round(weights[cloud.value] / total, 3) for cloud in Cloud if weights[cloud.value]}


def region_summaries(view: FleetView) -> list[RegionSummary]:
    fleet, snap = view.fleet, view.snapshot
    pods: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for workload in snap.of_type(WorkloadState):
        if workload.environment is Environment.PROD:
            pods[workload.region][0] += workload.ready
            pods[workload.region][1] += workload.desired
    nodes: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for cluster in snap.of_type(ClusterState):
        if cluster.environment is Environment.PROD:
            nodes[cluster.region][0] += cluster.ready_nodes
            nodes[cluster.region][1] += cluster.nodes
            nodes[cluster.region][2] += cluster.nodes_max
    findings: dict[str, list[Finding]] = defaultdict(list)
    for finding in view.findings:
        if finding.region is not None:
            findings[finding.region].append(finding)

    summaries = []
    for region in fleet.regions.values():
        traffic = _get(snap.get(f"traffic/{region.id}"), RegionTraffic)
        db = _get(snap.get(f"database/{region.id}"), DatabaseState)
        cache = _get(snap.get(f"cache/{region.id}"), CacheState)
        dns = _get(snap.get(f"dns/{region.id}"), DnsRecordSet)
        region_findings = findings[region.id]
        pods_known, nodes_known = region.id in pods, region.id in nodes
        health = view.health.get(region.id, Health.UNKNOWN)
        if health is Health.OK and not (pods_known and nodes_known):
            health = Health.UNKNOWN  # traffic looks fine, but its capacity could not be read
        summaries.append(
            RegionSummary(
                id=region.id,
                name=region.name,
                tier=region.tier,
                role=region.role.value,
                geography=region.geography.value,
                cloud_mix=cloud_mix(fleet, region.id),
                health=health,
                p95_ms=traffic.p95_ms if traffic else None,
                avg_latency_ms=traffic.avg_latency_ms if traffic else None,
                availability=traffic.availability if traffic else None,
                error_rate=traffic.error_rate if traffic else None,
                rps=traffic.rps if traffic else None,
                concurrent_users=traffic.concurrent_users if traffic else None,
                db_role=db.role.value if db else None,
                replica_lag_s=db.replica_lag_s if db else None,
                pods_ready=pods[region.id][0],
                pods_desired=pods[region.id][1],
                nodes_ready=nodes[region.id][0],
                nodes=nodes[region.id][1],
                nodes_max=nodes[region.id][2],
                cache_nodes=f"{cache.healthy_nodes}/{cache.nodes}" if cache else None,
                dns_weights=dict(dns.weights) if dns else None,
                findings=len(region_findings),
                worst_severity=max((f.severity for f in region_findings), key=lambda s: s.rank, default=None),
                pods_known=pods_known,
                nodes_known=nodes_known,
            )
        )
    return summaries


def totals(view: FleetView) -> Totals:
    fleet, snap = view.fleet, view.snapshot
    targets = fleet.targets
    traffic = [t for t in snap.of_type(RegionTraffic) if t.region in fleet.regions]
    rps = sum(t.rps for t in traffic)

    def weighted(values: list[tuple[float, float]]) -> float | None:
        weight = sum(w for _, w in values)
        if not values:
            return None
        if weight <= 0:
            return sum(v for v, _ in values) / len(values)
        return sum(v * w for v, w in values) / weight

    availability = weighted([(t.availability, t.rps) for t in traffic])
    error_rate_1h = weighted([(t.error_rate_1h, t.rps) for t in traffic])
    lags = [d.replica_lag_s for d in snap.of_type(DatabaseState) if d.replicates_from is not None]
    return Totals(
        rps=rps,
        api_rps_target=targets.api_rps,
        global_avg_latency_ms=weighted([(t.avg_latency_ms, t.rps) for t in traffic]),
        global_avg_latency_target_ms=targets.global_avg_latency_ms,
        api_p95_ms=weighted([(t.p95_ms, t.rps) for t in traffic]),
        worst_p95_ms=max((t.p95_ms for t in traffic), default=None),
        api_p95_target_ms=targets.api_p95_ms,
        availability=availability,
        availability_target=targets.availability_platform,
        error_budget_burn=None if error_rate_1h is None else error_rate_1h / targets.error_budget,
        concurrent_users=sum(t.concurrent_users for t in traffic),
        concurrent_users_target=targets.concurrent_users,
        db_tps=sum(d.tps for d in snap.of_type(DatabaseState)),
        worst_replica_lag_s=max(lags, default=None),
        rpo_target_s=targets.rpo_db_s,
        regions_reporting=len(traffic),
        regions_total=len(fleet.regions),
        partial=snap.partial or len(traffic) < len(fleet.regions),
    )


def status_document(view: FleetView, region: str | None = None) -> dict[str, Any]:
    """The ``opsconsole fleet status --json`` document (schema ``opsconsole.fleet.status/v1``)."""
    regions = [s for s in region_summaries(view) if region is None or s.id == region]
    findings = [f for f in view.findings if region is None or f.region == region]
    total = totals(view)
    return {
        "schema": STATUS_SCHEMA,
        "taken_at": _iso(view.snapshot.taken_at),
        "partial": total.partial,
        "totals": {key: _plain(value) for key, value in total.__dict__.items()},
        "regions": [{key: _plain(value) for key, value in s.__dict__.items()} for s in regions],
        "sources": [
            {
                "name": source.name,
                "status": source.status.value,
                "age_s": None if source.age_s is None else round(source.age_s, 3),
                "error": source.error,
                "records": source.records,
                "notes": list(source.notes),
            }
            for source in view.snapshot.sources
        ],
        "findings_count": len(findings),
        "findings_by_severity": {
            severity.value: sum(1 for f in findings if f.severity is severity) for severity in Severity
        },
    }


def finding_document(finding: Finding) -> dict[str, Any]:
    action = finding.suggested_action
    return {
        "id": finding.id,
        "kind": finding.kind.value,
        "severity": finding.severity.value,
        "region": finding.region,
        "object": finding.object,
        "title": finding.title,
        "measured": finding.measured,
        "target": finding.target,
        "evidence": {key: _plain(value) for key, value in finding.evidence.items()},
        "suggested_action": None
        if action is None
        else {"action": action.action, "params": dict(action.params), "summary": action.summary},
    }


def findings_document(view: FleetView, region: str | None = None) -> dict[str, Any]:
    """The ``opsconsole fleet findings --json`` document (schema ``opsconsole.fleet.findings/v1``)."""
    findings = [finding_document(f) for f in view.findings if region is None or f.region == region]
    return {
        "schema": FINDINGS_SCHEMA,
        "taken_at": _iso(view.snapshot.taken_at),
        "partial": view.snapshot.partial,
        "findings_count": len(findings),
        "findings": findings,
    }


def _get(record: object, cls: type[T]) -> T | None:
    return record if isinstance(record, cls) else None


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """JSON-ready: enums to their value, floats rounded for humans, containers recursively."""
    if isinstance(value, Health | Severity):
        return value.value
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
