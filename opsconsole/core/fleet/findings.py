"""Policy: judge one snapshot against the fleet's targets, and say what is wrong and what to do about it.

Why this module exists: the snapshot is raw numbers from many sources; the people on call need a short,
ordered list of what breaks a target (p95, error budget, RPO, headroom, provider and cost mix, data
residency, failover safety), with the measured number, the target it breaks, and a concrete action the
console can run. Every face (TUI, bot, CLI) renders the same :class:`Finding` list, so the judgement lives
here, once, and nowhere else.

How to use it::

    findings = evaluate(fleet, snapshot)          # sorted: worst first
    health = region_health(fleet, snapshot, findings)

Design rules:

* Every threshold the inventory has (``fleet.targets``, ``fleet.bounds``, failover partners, residency
  zones, the provider plan) is read from the inventory. The few numbers below that the inventory does not
  carry (burn-rate thresholds of the SRE workbook, the latency "critical" factor...) are named module
  constants with their reason.
* A finding's ``id`` is ``"{kind}:{object}"`` and depends on nothing else, so a face can follow a finding
  across refreshes (new / still open / resolved) by id.
* :func:`evaluate` is one pass over the records plus per-region and per-geography work: it is linear in
  the size of the snapshot (a 100-region, 5,000-workload fleet evaluates in a few milliseconds) because
  faces call it on every refresh.
* Pure: no I/O, no clock, no cloud SDK. The same snapshot always gives the same findings.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from opsconsole.core.fleet.engine import Snapshot, SourceStatus
from opsconsole.core.fleet.model import (
    CacheState,
    Cloud,
    ClusterState,
    Criticality,
    DatabaseState,
    DbRole,
    DnsRecordSet,
    Environment,
    Fleet,
    Geography,
    Health,
    RegionTraffic,
    Severity,
    WorkloadState,
)

__all__ = [
    "Finding",
    "FindingKind",
    "SuggestedAction",
    "evaluate",
    "region_health",
]

# --------------------------------------------------------------------------------------------------
# Constants the inventory does not carry (each with its reason)
# --------------------------------------------------------------------------------------------------

#: Google SRE workbook, multiwindow multi-burn-rate alerts: burning 2 % of a 30-day budget in one hour
#: (burn rate 14.4) pages.
BURN_RATE_CRITICAL = 14.4
#: Burning 5 % of a 30-day budget in six hours (burn rate 6) opens a ticket. We only have 1 h and 5 m
#: windows, so the 6 h rate is approximated by the 1 h one (it fires earlier, never later).
BURN_RATE_HIGH = 6.0
#: A p95 more than this many times the target is no longer "slow", it is an outage in the making.
LATENCY_CRITICAL_FACTOR = 1.5
#: Replica lag above this fraction of the RPO is a warning: one more hiccup and the RPO is broken.
REPLICA_LAG_WARN_FRACTION = 0.5
#: More than half of the front door's requests failing over 5 minutes is an availability collapse.
REGION_DOWN_ERROR_RATE = 0.5
#: Residency zones whose data must not leave the zone (GDPR: EU data is processed in the EU only). US
#: and APAC data may be processed elsewhere under safeguards, so their zones are not restricted.
RESTRICTED_RESIDENCY_ZONES = frozenset({"eu"})
#: A suggested HPA max is the current one times this factor (within Bounds.hpa_pods).
HPA_RAISE_FACTOR = 1.5
#: A suggested node-group max is the current one times this factor (within Bounds.cluster_nodes).
NODES_RAISE_FACTOR = 1.25
#: Tolerance for float comparisons of shares (0.7 + 0.2 + 0.1 is not exactly 1.0).
_EPS = 1e-9
#: The seed (docs/fleet.md, "Bounds") gives "1-50 nodes" among the per-region bounds: the nodes of a
#: region's prod clusters (the platform the seed's targets size; staging and dev are not part of it) are
#: summed and judged against ``Bounds.cluster_nodes.max``. The sandbox's steady state sits at 18-47 per
#: region and the inventory lets eu-west-1 reach 140, so the bound bites on growth, not at rest. (The
#: per-cluster reading still caps the raises the findings suggest: actions validate node groups per
#: cluster.)
NODE_BOUND_PER_REGION = True


class FindingKind(StrEnum):
    """What kind of target a finding breaks; the value prefixes the finding's id."""

    #: A serving region that cannot absorb Targets.burst_headroom x its load now (HPA max over desired,
    #: node max over the pods it runs: the smaller), high; the fleet under Targets.growth_headroom x, low
    #: (a provisioning signal: the seed fleet sits just under 10x at its evening peak).
    HEADROOM = "headroom"

    #: Region front-door p95 over Targets.api_p95_ms (high; critical over 1.5x).
    LATENCY_P95 = "latency_p95"
    #: Error-budget burn rate (error rate / Targets.error_budget) over 14.4 (critical) or 6 (high), on
    #: both the 1 h and the 5 m window.
    ERROR_BUDGET_BURN = "error_budget_burn"
    #: DB replica lag over Targets.rpo_db_s (critical) or over half of it (medium).
    REPLICA_LAG = "replica_lag"
    #: DB query p95 over Targets.db_query_p95_ms (medium).
    DB_QUERY_P95 = "db_query_p95"
    #: A workload's desired replicas at its HPA max (high for critical prod services, else medium).
    HPA_AT_MAX = "hpa_at_max"
    #: A cluster's nodes at its node-group max (high for prod, medium otherwise).
    NODES_AT_MAX = "nodes_at_max"
    #: A workload with pods that cannot be scheduled (medium; high when its cluster is at node max).
    PENDING_PODS = "pending_pods"
    #: Healthy cache nodes below Bounds.redis_nodes.min (high).
    REDIS_BELOW_MIN = "redis_below_min"
    #: A geography's per-cloud share of prod capacity off fleet.provider_plan (medium).
    PROVIDER_MIX_DRIFT = "provider_mix_drift"
    #: Fleet-wide reserved / spot / on-demand node shares off Targets.cost_mix (low).
    COST_MIX_OFF_TARGET = "cost_mix_off_target"
    #: Resident data leaving its residency zone, by DNS or by database replication (critical).
    DATA_RESIDENCY = "data_residency"
    #: The region's failover partner is down or has a critical finding (high).
    PARTNER_UNHEALTHY = "partner_unhealthy"
    #: Health check failing, or more than half of the requests failing (critical).
    REGION_DOWN = "region_down"
    #: A source is stale or failed: some of what the console shows is old or missing (medium).
    STALE_DATA = "stale_data"
    #: Fleet-wide API rps, DB tps or concurrent users over the seed's throughput targets (high): the fleet
    #: serves more than it was sized for.
    CAPACITY = "capacity"
    #: A serving region's front-door average latency over Targets.regional_avg_latency_ms (medium).
    REGIONAL_AVG_LATENCY = "regional_avg_latency"
    #: The request-weighted average latency of the fleet over Targets.global_avg_latency_ms (medium).
    GLOBAL_AVG_LATENCY = "global_avg_latency"
    #: A region's database reports itself unavailable: Targets.availability_db cannot hold (critical).
    DB_UNAVAILABLE = "db_unavailable"
    #: A database's storage outside Bounds.storage_tb (high over the max, low under the min).
    STORAGE_BOUNDS = "storage_bounds"
    #: A region's prod nodes (all its prod clusters) over Bounds.cluster_nodes.max, per region (medium).
    REGION_NODES_BOUND = "region_nodes_bound"
    #: More available write primaries in a residency zone than the inventory plans (split brain after a
    #: failback), critical; a database whose role differs from the inventory otherwise, medium.
    WRITE_PRIMARIES = "write_primaries"
    #: A database whose automated backups keep fewer days than Targets.backup_pitr_days (the seed's
    #: 30-day point-in-time recovery), as its cloud reports the retention: high for a write primary,
    #: medium for a replica. Judged only where the retention is observed (RDS today).
    BACKUP_RETENTION = "backup_retention"


@dataclass(frozen=True)
class SuggestedAction:
    """An action from the action catalogue, with its parameters filled in, ready to be requested.

    ``action`` is the action's name as every face files it (:data:`opsconsole.core.api.ACTIONS`) and
    ``params`` exactly the planner's parameters, so ``replan(fleet, snapshot, action, params)`` plans it
    as shown; ``summary`` ends with the command line that runs it (:func:`command_line`). Actions used
    here and their parameters:

    * ``scale``: ``region``, ``cluster``, ``service``, ``hpa_min``, ``hpa_max`` (the new HPA bounds),
      ``environment`` when not prod;
    * ``nodes``: ``cluster``, ``nodes_max`` and / or ``nodes_min`` (the new node-group bounds);
    * ``cache``: ``region``, ``nodes``;
    * ``replicas``: ``region``, ``read_replicas``;
    * ``database``: ``region``, ``change`` (``demote``), ``source_region`` (the primary to follow);
    * ``failover``: ``from_region``, ``to_region`` (send ``from_region``'s users to ``to_region``);
    * ``failback``: ``region`` (send the region's users back to itself).
    """

    action: str
    params: Mapping[str, Any] = field(hash=False)
    summary: str


@dataclass(frozen=True)
class Finding:
    """One broken target. ``id`` is stable across refreshes: ``"{kind.value}:{object}"``."""

    id: str
    kind: FindingKind
    severity: Severity
    #: The region the finding is about; ``None`` for fleet-wide findings (mixes, sources).
    region: str | None
    #: The record key (``workload/eks-use1-prod/checkout``) or a clear name (``geography/emea``).
    object: str
    title: str
    measured: float | str
    target: float | str
    #: The numbers that led to the finding, by name.
    evidence: Mapping[str, Any] = field(hash=False)
    suggested_action: SuggestedAction | None


#: How each action's parameters are written on the command line: (parameter, flag); a flag of ``""``
#: is a positional argument, ``"--{}"`` the value itself as a flag (``--demote``).
_FLAGS: dict[str, tuple[tuple[str, str], ...]] = {
    "scale": (("service", ""), ("region", "--region"), ("cluster", "--cluster"), ("replicas", "--replicas"),
              ("hpa_min", "--hpa-min"), ("hpa_max", "--hpa-max"), ("environment", "--env")),
    "nodes": (("cluster", "--cluster"), ("nodes_min", "--min"), ("nodes_max", "--max"),
              ("nodes_desired", "--desired")),
    "replicas": (("region", "--region"), ("read_replicas", "--count")),
    "database": (("region", "--region"), ("change", "--{}"), ("source_region", "--source")),
    "cache": (("region", "--region"), ("nodes", "--nodes")),
    "failover": (("from_region", "--from"), ("to_region", "--to")),
    "failback": (("region", ""),),
}


def command_line(action: str, params: Mapping[str, Any]) -> str:
    """The ``opsconsole act`` command that files ``action`` with ``params`` (what a finding suggests);
    a ``database`` change is ``act replicas --promote / --demote``."""
    words = ["opsconsole", "act", "replicas" if action == "database" else action]
    for key, flag in _FLAGS.get(action, tuple((k, f"--{k}") for k in params)):
        value = params.get(key)
        if value is None or (key == "environment" and value == "prod"):
            continue
        if flag == "--{}":
            words.append(f"--{value}")
        else:
            words += [flag, str(value)] if flag else [str(value)]
    return " ".join(words)


def _suggest(action: str, params: Mapping[str, Any], why: str) -> SuggestedAction:
    """A suggestion whose summary says why and ends with the command that runs it."""
    return SuggestedAction(action, dict(params), f"{why}: {command_line(action, params)}")


def _finding(
    kind: FindingKind,
    severity: Severity,
    region: str | None,
    obj: str,
    *,
    title: str,
    measured: float | str,
    target: float | str,
    evidence: Mapping[str, Any],
    action: SuggestedAction | None = None,
) -> Finding:
    return Finding(
        id=f"{kind.value}:{obj}",
        kind=kind,
        severity=severity,
        region=region,
        object=obj,
        title=title,
        measured=measured,
        target=target,
        evidence=evidence,
        suggested_action=action,
    )


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def _mix_text(shares: Mapping[str, float]) -> str:
    return " / ".join(f"{name} {_pct(share)}" for name, share in shares.items())


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


@dataclass
class _Pass:
    """What the single pass over the records collects for the per-region and per-geography checks."""

    traffic: dict[str, RegionTraffic] = field(default_factory=dict)
    #: The prod workload with the highest CPU utilisation of each region (latency suggestions).
    hottest: dict[str, WorkloadState] = field(default_factory=dict)
    #: Prod clusters, for the provider mix: geography -> cloud -> pod slots (ready nodes x pods/node).
    capacity: dict[Geography, dict[Cloud, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    clusters_by_geo_cloud: dict[tuple[Geography, Cloud], list[ClusterState]] = field(
        default_factory=lambda: defaultdict(list)
    )
    #: Cluster key -> at node max, for the pending-pods severity.
    clusters_at_max: set[str] = field(default_factory=set)
    pending: list[WorkloadState] = field(default_factory=list)
    cost: dict[str, int] = field(default_factory=lambda: {"reserved": 0, "spot": 0, "on_demand": 0})
    #: Regions that serve nobody on purpose (see :func:`_drained_regions`): no load findings there.
    drained: frozenset[str] = frozenset()
    #: Region -> its clusters, and the sum of their nodes, for the per-region node bound.
    region_nodes: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    region_node_count: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    databases: list[DatabaseState] = field(default_factory=list)
    #: Region -> its prod workloads and prod clusters, for the headroom (readiness) check.
    prod_workloads: dict[str, list[WorkloadState]] = field(default_factory=lambda: defaultdict(list))
    prod_clusters: dict[str, list[ClusterState]] = field(default_factory=lambda: defaultdict(list))


def evaluate(fleet: Fleet, snapshot: Snapshot) -> list[Finding]:
    """Every target the snapshot breaks, as findings sorted worst first.

    Args:
        fleet: The inventory; all thresholds come from its targets, bounds, partners and zones.
        snapshot: The observed fleet. Records of regions or clusters unknown to the inventory are
            judged where possible and otherwise ignored.

    Returns:
        Findings sorted by severity (critical first), then region (fleet-wide ones last), then id.
        An empty list means every check passed on the data available; stale or failed sources are
        reported as ``STALE_DATA`` findings so silence is never mistaken for health.
    """
    findings: list[Finding] = []
    acc = _Pass()
    acc.drained = _drained_regions(fleet, snapshot)
    for record in snapshot.records.values():
        if isinstance(record, WorkloadState):
            _check_workload(fleet, record, acc, findings)
        elif isinstance(record, ClusterState):
            _check_cluster(fleet, record, acc, findings)
        elif isinstance(record, DatabaseState):
            acc.databases.append(record)
            _check_database(fleet, record, findings)
        elif isinstance(record, CacheState):
            _check_cache(fleet, record, findings)
        elif isinstance(record, RegionTraffic):
            acc.traffic[record.region] = record
            _check_traffic(fleet, record, findings, drained=record.region in acc.drained)
        elif isinstance(record, DnsRecordSet):
            _check_dns(fleet, record, findings)

    down = {region for region, t in acc.traffic.items() if _is_down(t)}
    for region in sorted(down):
        findings.append(_region_down(fleet, acc.traffic[region], down, drained=region in acc.drained))
    _latency_actions(fleet, acc, findings)
    _check_capacity(fleet, acc, findings)
    _check_global_latency(fleet, acc, findings)
    _check_region_nodes(fleet, acc, findings)
    _check_headroom(fleet, acc, findings)
    _check_write_primaries(fleet, acc, findings)
    _check_pending(fleet, acc, findings)
    _check_provider_mix(fleet, acc, findings)
    _check_cost_mix(fleet, acc, findings)
    _check_partners(fleet, down, findings)
    _check_sources(snapshot, findings)

    findings.sort(key=lambda f: (-f.severity.rank, f.region is None, f.region or "", f.id))
    return findings


def region_health(fleet: Fleet, snapshot: Snapshot, findings: Sequence[Finding]) -> dict[str, Health]:
    """The health of every region of the inventory, for maps and headers.

    ``DOWN`` if the region has a ``REGION_DOWN`` finding or its health check fails; else ``DEGRADED`` if
    it has any critical or high finding (a ``PARTNER_UNHEALTHY`` one included: the region serves, but
    has nowhere safe to fail over to); else ``UNKNOWN`` if there is no traffic record for it; else
    ``OK``.
    """
    down: set[str] = set()
    degraded: set[str] = set()
    for f in findings:
        if f.region is None:
            continue
        if f.kind is FindingKind.REGION_DOWN:
            down.add(f.region)
        elif f.severity.rank >= Severity.HIGH.rank:
            degraded.add(f.region)
    health: dict[str, Health] = {}
    for region in fleet.regions:
        traffic = snapshot.get(f"traffic/{region}")
        if region in down or (isinstance(traffic, RegionTraffic) and not traffic.health_check_ok):
            health[region] = Health.DOWN
        elif region in degraded:
            health[region] = Health.DEGRADED
        elif not isinstance(traffic, RegionTraffic):
            health[region] = Health.UNKNOWN
        else:
            health[region] = Health.OK
    return health


# --------------------------------------------------------------------------------------------------
# Per-record checks
# --------------------------------------------------------------------------------------------------


def _is_down(t: RegionTraffic) -> bool:
    return not t.health_check_ok or t.error_rate > REGION_DOWN_ERROR_RATE


def _drained_regions(fleet: Fleet, snapshot: Snapshot) -> frozenset[str]:
    """Regions drained on purpose: their DNS record set gives them no weight (users sent elsewhere), or
    their front door serves 0 rps. Their latency figures describe no user, so they get no load findings
    and no scale suggestions (scaling a workload at 0 rps fixes nothing)."""
    drained: set[str] = set()
    for region in fleet.regions:
        dns = snapshot.get(f"dns/{region}")
        traffic = snapshot.get(f"traffic/{region}")
        if (isinstance(dns, DnsRecordSet) and dns.total > 0 and dns.weights.get(region, 0) == 0) or (
            isinstance(traffic, RegionTraffic) and traffic.rps <= 0
        ):
            drained.add(region)
    return frozenset(drained)


def _check_traffic(fleet: Fleet, t: RegionTraffic, out: list[Finding], *, drained: bool = False) -> None:
    targets = fleet.targets
    if not drained and t.avg_latency_ms > targets.regional_avg_latency_ms:
        out.append(
            _finding(
                FindingKind.REGIONAL_AVG_LATENCY,
                Severity.MEDIUM,
                t.region,
                f"avg-latency/{t.region}",
                title=f"{t.region} average latency {t.avg_latency_ms:.0f} ms over the "
                f"{targets.regional_avg_latency_ms:.0f} ms regional target",
                measured=t.avg_latency_ms,
                target=targets.regional_avg_latency_ms,
                evidence={
                    "avg_latency_ms": t.avg_latency_ms,
                    "p95_ms": t.p95_ms,
                    "rps": t.rps,
                    "target_ms": targets.regional_avg_latency_ms,
                },
            )
        )
    if not drained and t.p95_ms > targets.api_p95_ms:
        critical = t.p95_ms > targets.api_p95_ms * LATENCY_CRITICAL_FACTOR
        out.append(
            _finding(
                FindingKind.LATENCY_P95,
                Severity.CRITICAL if critical else Severity.HIGH,
                t.region,
                t.key,
                title=f"{t.region} API p95 {t.p95_ms:.0f} ms over the {targets.api_p95_ms:.0f} ms target",
                measured=t.p95_ms,
                target=targets.api_p95_ms,
                evidence={
                    "p95_ms": t.p95_ms,
                    "p99_ms": t.p99_ms,
                    "avg_latency_ms": t.avg_latency_ms,
                    "rps": t.rps,
                    "target_ms": targets.api_p95_ms,
                    "critical_above_ms": targets.api_p95_ms * LATENCY_CRITICAL_FACTOR,
                },
            )
        )
    budget = targets.error_budget
    if budget > 0:
        burn_1h = t.error_rate_1h / budget
        burn_5m = t.error_rate / budget
        # Multiwindow: the long window says it matters, the short one that it is still happening.
        severity: Severity | None = None
        if burn_1h >= BURN_RATE_CRITICAL and burn_5m >= BURN_RATE_CRITICAL:
            severity = Severity.CRITICAL
        elif burn_1h >= BURN_RATE_HIGH and burn_5m >= BURN_RATE_HIGH:
            severity = Severity.HIGH
        if severity is not None:
            threshold = BURN_RATE_CRITICAL if severity is Severity.CRITICAL else BURN_RATE_HIGH
            out.append(
                _finding(
                    FindingKind.ERROR_BUDGET_BURN,
                    severity,
                    t.region,
                    t.key,
                    title=f"{t.region} burning its error budget {burn_1h:.1f}x over 1 h "
                    f"({burn_5m:.1f}x over 5 m)",
                    measured=round(burn_1h, 3),
                    target=threshold,
                    evidence={
                        "error_rate_1h": t.error_rate_1h,
                        "error_rate_5m": t.error_rate,
                        "error_budget": budget,
                        "burn_rate_1h": burn_1h,
                        "burn_rate_5m": burn_5m,
                        "availability_1h": t.availability,
                        "availability_target": targets.availability_platform,
                    },
                )
            )


def _region_down(fleet: Fleet, t: RegionTraffic, down: set[str], *, drained: bool = False) -> Finding:
    spec = fleet.regions.get(t.region)
    partner = spec.failover_partner if spec is not None else None
    action = None
    # A drained region's users are already elsewhere: suggesting the failover again would do nothing.
    if partner is not None and partner not in down and not drained:
        action = _suggest(
            "failover",
            {"from_region": t.region, "to_region": partner},
            f"fail {t.region} over to {partner}",
        )
    reason = "health check failing" if not t.health_check_ok else f"{_pct(t.error_rate)} of requests failing"
    return _finding(
        FindingKind.REGION_DOWN,
        Severity.CRITICAL,
        t.region,
        t.key,
        title=f"{t.region} is down: {reason}",
        measured="health check failing" if not t.health_check_ok else t.error_rate,
        target="health check ok" if not t.health_check_ok else REGION_DOWN_ERROR_RATE,
        evidence={
            "health_check_ok": t.health_check_ok,
            "error_rate_5m": t.error_rate,
            "down_above_error_rate": REGION_DOWN_ERROR_RATE,
            "rps": t.rps,
            "failover_partner": partner,
            "partner_down": partner in down if partner is not None else None,
            "drained": drained,
        },
        action=action,
    )


@dataclass(frozen=True)
class _Headroom:
    """How many times its current load a set of prod workloads can take: by their HPA maxima, and by
    their clusters' node maxima (pod slots over the pods they run)."""

    pods: int
    hpa_max: int
    pod_slots: int

    @property
    def by_hpa(self) -> float:
        return self.hpa_max / self.pods if self.pods else math.inf

    @property
    def by_nodes(self) -> float:
        return self.pod_slots / self.pods if self.pods else math.inf

    @property
    def factor(self) -> float:
        return min(self.by_hpa, self.by_nodes)


def _headroom(
    fleet: Fleet, workloads: Sequence[WorkloadState], clusters: Sequence[ClusterState]
) -> _Headroom:
    slots = 0
    for c in clusters:
        spec = fleet.clusters.get(c.cluster)
        slots += c.nodes_max * (spec.pods_per_node if spec is not None else 1)
    return _Headroom(
        pods=sum(w.desired for w in workloads), hpa_max=sum(w.hpa_max for w in workloads), pod_slots=slots
    )


def _check_headroom(fleet: Fleet, acc: _Pass, out: list[Finding]) -> None:
    """Readiness: can each serving region absorb a burst now, and the fleet a growth, from what its HPAs
    and node groups allow? Load is taken to scale pods linearly (what the HPA does at its CPU target).
    Node slots count each prod cluster's node max (the inventory's per-cluster bounds, where capacity is
    pre-provisioned), not the seed's per-region node bound, which has a finding of its own."""
    targets = fleet.targets
    fleet_pods = fleet_hpa = fleet_slots = 0
    for region in sorted(acc.prod_workloads):
        workloads = acc.prod_workloads[region]
        room = _headroom(fleet, workloads, acc.prod_clusters.get(region, []))
        fleet_pods += room.pods
        fleet_hpa += room.hpa_max
        fleet_slots += room.pod_slots
        if region in acc.drained or room.pods == 0 or room.factor >= targets.burst_headroom:
            continue
        action: SuggestedAction | None = None
        if room.by_hpa <= room.by_nodes:
            # The tightest workload: the one closest to its HPA max.
            w = min(workloads, key=lambda x: (x.hpa_max / max(1, x.desired), x.key))
            bound = fleet.bounds.hpa_pods.max
            new_max = min(bound, max(w.hpa_max + 1, math.ceil(w.hpa_max * HPA_RAISE_FACTOR)))
            if new_max > w.hpa_max:
                action = _scale_action(w, hpa_min=w.hpa_min, hpa_max=new_max,
                                       why=f"raise {w.service} HPA max in {w.cluster} from {w.hpa_max} "
                                           f"to {new_max}")
        else:
            clusters = acc.prod_clusters.get(region, [])
            tight = min(clusters, key=lambda c: (c.nodes_max - c.nodes, c.cluster), default=None)
            bound = fleet.bounds.cluster_nodes.max
            if tight is not None:
                raised = math.ceil(tight.nodes_max * NODES_RAISE_FACTOR)
                new_max = min(bound, max(tight.nodes_max + 1, raised))
                if new_max > tight.nodes_max:
                    action = _suggest("nodes", {"cluster": tight.cluster, "nodes_max": new_max},
                                      f"raise {tight.cluster} node max from {tight.nodes_max} to {new_max}")
        out.append(_finding(
            FindingKind.HEADROOM, Severity.HIGH, region, f"headroom/{region}",
            title=f"{region} can absorb {room.factor:.2f}x its load now, under the "
                  f"{targets.burst_headroom:g}x burst target",
            measured=round(room.factor, 2), target=targets.burst_headroom,
            evidence={"pods": room.pods, "hpa_max": room.hpa_max, "pod_slots": room.pod_slots,
                      "by_hpa": round(room.by_hpa, 2), "by_nodes": round(room.by_nodes, 2)},
            action=action,
        ))
    if fleet_pods == 0:
        return
    room = _Headroom(pods=fleet_pods, hpa_max=fleet_hpa, pod_slots=fleet_slots)
    if room.factor < targets.growth_headroom:
        out.append(_finding(
            FindingKind.HEADROOM, Severity.LOW, None, "headroom/fleet",
            title=f"the fleet can absorb {room.factor:.1f}x its load with what is provisioned, under the "
                  f"{targets.growth_headroom:g}x target",
            measured=round(room.factor, 1), target=targets.growth_headroom,
            evidence={"pods": room.pods, "hpa_max": room.hpa_max, "pod_slots": room.pod_slots,
                      "by_hpa": round(room.by_hpa, 1), "by_nodes": round(room.by_nodes, 1),
                      "fix": "raise HPA maxima or node-group maxima where the regions' findings say, or add "
                             "clusters"},
        ))


def _scale_action(w: WorkloadState, *, hpa_min: int, hpa_max: int, why: str) -> SuggestedAction:
    params: dict[str, Any] = {"service": w.service, "region": w.region, "cluster": w.cluster,
                              "hpa_min": hpa_min, "hpa_max": hpa_max}
    if w.environment is not Environment.PROD:
        params["environment"] = w.environment.value
    return _suggest("scale", params, why)


def _check_workload(fleet: Fleet, w: WorkloadState, acc: _Pass, out: list[Finding]) -> None:
    if w.environment is Environment.PROD:
        acc.prod_workloads[w.region].append(w)
        hottest = acc.hottest.get(w.region)
        if hottest is None or w.cpu_utilisation > hottest.cpu_utilisation:
            acc.hottest[w.region] = w
    if w.pending_pods > 0 and w.ready < w.desired:
        acc.pending.append(w)
    # An HPA with min == max is a fixed-size deployment by design, not one that ran out of room.
    if w.desired < w.hpa_max or w.hpa_max <= w.hpa_min:
        return
    service = fleet.services.get(w.service)
    critical = (
        w.environment is Environment.PROD
        and service is not None
        and service.criticality is Criticality.CRITICAL
    )
    bound = fleet.bounds.hpa_pods.max
    new_max = min(bound, max(w.hpa_max + 1, math.ceil(w.hpa_max * HPA_RAISE_FACTOR)))
    action = None
    if new_max > w.hpa_max:
        action = _scale_action(
            w,
            hpa_min=w.hpa_min,
            hpa_max=new_max,
            why=f"raise {w.service} HPA max in {w.cluster} from {w.hpa_max} to {new_max}",
        )
    out.append(
        _finding(
            FindingKind.HPA_AT_MAX,
            Severity.HIGH if critical else Severity.MEDIUM,
            w.region,
            w.key,
            title=f"{w.service} in {w.cluster} is at its HPA max ({w.desired}/{w.hpa_max} replicas)",
            measured=w.desired,
            target=w.hpa_max,
            evidence={
                "desired": w.desired,
                "ready": w.ready,
                "hpa_min": w.hpa_min,
                "hpa_max": w.hpa_max,
                "cpu_utilisation": w.cpu_utilisation,
                "p95_ms": w.p95_ms,
                "rps": w.rps,
                "criticality": service.criticality.value if service is not None else None,
                "bound_hpa_max": bound,
            },
            action=action,
        )
    )


def _check_cluster(fleet: Fleet, c: ClusterState, acc: _Pass, out: list[Finding]) -> None:
    acc.cost["reserved"] += c.reserved_nodes
    acc.cost["spot"] += c.spot_nodes
    acc.cost["on_demand"] += c.on_demand_nodes
    if c.environment is Environment.PROD:
        acc.prod_clusters[c.region].append(c)
        acc.region_node_count[c.region] += c.nodes
        acc.region_nodes[c.region].append(c.cluster)
    region = fleet.regions.get(c.region)
    spec = fleet.clusters.get(c.cluster)
    if c.environment is Environment.PROD and region is not None:
        pods_per_node = spec.pods_per_node if spec is not None else 1
        acc.capacity[region.geography][c.cloud] += c.ready_nodes * pods_per_node
        acc.clusters_by_geo_cloud[(region.geography, c.cloud)].append(c)
    if c.nodes < c.nodes_max:
        return
    acc.clusters_at_max.add(c.cluster)
    bound = fleet.bounds.cluster_nodes.max
    new_max = min(bound, max(c.nodes_max + 1, math.ceil(c.nodes_max * NODES_RAISE_FACTOR)))
    action: SuggestedAction | None = None
    if new_max > c.nodes_max:
        action = _suggest(
            "nodes",
            {"cluster": c.cluster, "nodes_max": new_max},
            f"raise {c.cluster} node max from {c.nodes_max} to {new_max}",
        )
    elif region is not None and c.environment is Environment.PROD:
        action = _suggest(
            "failover",
            {"from_region": c.region, "to_region": region.failover_partner},
            f"{c.cluster} is at the fleet's node bound ({bound}); fail {c.region} over to "
            f"{region.failover_partner}",
        )
    out.append(
        _finding(
            FindingKind.NODES_AT_MAX,
            Severity.HIGH if c.environment is Environment.PROD else Severity.MEDIUM,
            c.region,
            c.key,
            title=f"{c.cluster} is at its node max ({c.nodes}/{c.nodes_max} nodes)",
            measured=c.nodes,
            target=c.nodes_max,
            evidence={
                "nodes": c.nodes,
                "ready_nodes": c.ready_nodes,
                "nodes_min": c.nodes_min,
                "nodes_max": c.nodes_max,
                "bound_nodes_max": bound,
            },
            action=action,
        )
    )


def _check_database(fleet: Fleet, db: DatabaseState, out: list[Finding]) -> None:
    targets = fleet.targets
    rpo = targets.rpo_db_s
    if db.replica_lag_s > rpo * REPLICA_LAG_WARN_FRACTION:
        broken = db.replica_lag_s > rpo
        out.append(
            _finding(
                FindingKind.REPLICA_LAG,
                Severity.CRITICAL if broken else Severity.MEDIUM,
                db.region,
                db.key,
                title=f"{db.region} database replica lag {db.replica_lag_s:.0f} s "
                + (f"breaks the {rpo:.0f} s RPO" if broken else f"over half of the {rpo:.0f} s RPO"),
                measured=db.replica_lag_s,
                target=rpo,
                evidence={
                    "replica_lag_s": db.replica_lag_s,
                    "rpo_s": rpo,
                    "warn_above_s": rpo * REPLICA_LAG_WARN_FRACTION,
                    "role": db.role.value,
                    "replicates_from": db.replicates_from,
                },
            )
        )
    if db.query_p95_ms > targets.db_query_p95_ms:
        bounds = fleet.bounds.read_replicas
        action = None
        if db.read_replicas < bounds.max:
            wanted = bounds.clamp(db.read_replicas + 1)
            action = _suggest(
                "replicas",
                {"region": db.region, "read_replicas": wanted},
                f"add a read replica in {db.region} ({db.read_replicas} → {wanted})",
            )
        out.append(
            _finding(
                FindingKind.DB_QUERY_P95,
                Severity.MEDIUM,
                db.region,
                db.key,
                title=f"{db.region} database query p95 {db.query_p95_ms:.0f} ms over the "
                f"{targets.db_query_p95_ms:.0f} ms target",
                measured=db.query_p95_ms,
                target=targets.db_query_p95_ms,
                evidence={
                    "query_p95_ms": db.query_p95_ms,
                    "target_ms": targets.db_query_p95_ms,
                    "tps": db.tps,
                    "read_replicas": db.read_replicas,
                    "bound_read_replicas_max": bounds.max,
                },
                action=action,
            )
        )
    _check_db_availability(fleet, db, out)
    _check_storage(fleet, db, out)
    _check_backup_retention(fleet, db, out)
    _check_db_residency(fleet, db, out)


def _check_db_availability(fleet: Fleet, db: DatabaseState, out: list[Finding]) -> None:
    """The sources report whether a database answers now, not its availability ratio over a period: an
    unavailable database is judged against Targets.availability_db as "this breaks it"."""
    if db.available:
        return
    spec = fleet.regions.get(db.region)
    out.append(
        _finding(
            FindingKind.DB_UNAVAILABLE,
            Severity.CRITICAL,
            db.region,
            db.key,
            title=f"{db.region} database ({db.role.value}) is unavailable: the "
            f"{_pct(fleet.targets.availability_db)} database availability target is being spent",
            measured="unavailable",
            target=fleet.targets.availability_db,
            evidence={
                "available": False,
                "role": db.role.value,
                "availability_target": fleet.targets.availability_db,
                "failover_partner": spec.failover_partner if spec is not None else None,
            },
        )
    )


def _check_storage(fleet: Fleet, db: DatabaseState, out: list[Finding]) -> None:
    bounds = fleet.bounds.storage_tb
    if bounds.min <= db.storage_tb <= bounds.max:
        return
    over = db.storage_tb > bounds.max
    out.append(
        _finding(
            FindingKind.STORAGE_BOUNDS,
            Severity.HIGH if over else Severity.LOW,
            db.region,
            f"storage/{db.region}",
            title=f"{db.region} database storage {db.storage_tb:g} TB "
            + (
                f"over the {bounds.max} TB bound: archive or move data out of the region"
                if over
                else f"under the {bounds.min} TB minimum"
            ),
            measured=db.storage_tb,
            target=f"{bounds.min}-{bounds.max} TB",
            evidence={"storage_tb": db.storage_tb, "min_tb": bounds.min, "max_tb": bounds.max},
        )
    )


def _check_backup_retention(fleet: Fleet, db: DatabaseState, out: list[Finding]) -> None:
    """The seed's point-in-time recovery window against the backup retention the cloud reports.

    Only a source that reads the retention (``extra["backup_retention_days"]``: the aws source, from RDS
    BackupRetentionPeriod) puts it there; where it is absent nothing is judged, and nothing says it is
    met. No suggested action: raising a retention is a change in the cloud, not one of the playbooks.
    """
    days = db.extra.get("backup_retention_days")
    if isinstance(days, bool) or not isinstance(days, int):
        return
    target = fleet.targets.backup_pitr_days
    if days >= target:
        return
    primary = db.role is DbRole.WRITE_PRIMARY
    state = "automated backups are off" if days <= 0 else f"backups kept {days} days"
    out.append(
        _finding(
            FindingKind.BACKUP_RETENTION,
            Severity.HIGH if primary else Severity.MEDIUM,
            db.region,
            f"backup/{db.region}",
            title=f"{db.region} database ({db.role.value}): {state}, under the {target}-day "
            "point-in-time recovery target",
            measured=days,
            target=target,
            evidence={
                "backup_retention_days": days,
                "pitr_target_days": target,
                "role": db.role.value,
                "source": db.source,
                "fix": f"raise the backup retention of the {db.region} database in its cloud to at least "
                f"{target} days (RDS: modify-db-instance --backup-retention-period {target} "
                "--apply-immediately)",
            },
        )
    )


def _zone(fleet: Fleet, region: str | None) -> str | None:
    spec = fleet.regions.get(region) if region is not None else None
    return spec.residency_zone if spec is not None else None


def _check_db_residency(fleet: Fleet, db: DatabaseState, out: list[Finding]) -> None:
    """Resident data crosses a zone when a restricted-zone DB follows, feeds, or was promoted outside."""
    spec = fleet.regions.get(db.region)
    if spec is None:
        return
    zone = spec.residency_zone
    source_zone = _zone(fleet, db.replicates_from)
    planned_source = spec.database.replicates_from
    reason: str | None = None
    data_zone: str | None = None
    if db.replicates_from is not None and source_zone is not None and source_zone != zone:
        if zone in RESTRICTED_RESIDENCY_ZONES:
            reason = f"{db.region} ({zone}) replicates from {db.replicates_from} ({source_zone})"
            data_zone = zone
        elif source_zone in RESTRICTED_RESIDENCY_ZONES:
            reason = f"{source_zone} data from {db.replicates_from} is replicated to {db.region} ({zone})"
            data_zone = source_zone
    elif db.role is DbRole.WRITE_PRIMARY and planned_source is not None:
        planned_zone = _zone(fleet, planned_source)
        if planned_zone in RESTRICTED_RESIDENCY_ZONES and planned_zone != zone:
            reason = f"{planned_zone} data of {planned_source} was promoted to a write primary in {db.region}"
            data_zone = planned_zone
    if reason is None:
        return
    out.append(
        _finding(
            FindingKind.DATA_RESIDENCY,
            Severity.CRITICAL,
            db.region,
            db.key,
            title=f"{data_zone} data outside its residency zone: {reason}",
            measured=f"{db.role.value} of {db.replicates_from or 'none'} in zone {zone}",
            target=f"{data_zone} data stays in zone {data_zone}",
            evidence={
                "region_zone": zone,
                "data_zone": data_zone,
                "role": db.role.value,
                "replicates_from": db.replicates_from,
                "replicates_from_zone": source_zone,
                "planned_replicates_from": planned_source,
            },
        )
    )


def _check_cache(fleet: Fleet, cache: CacheState, out: list[Finding]) -> None:
    bounds = fleet.bounds.redis_nodes
    if cache.healthy_nodes >= bounds.min:
        return
    wanted = bounds.clamp(max(cache.nodes, bounds.min) + (bounds.min - cache.healthy_nodes))
    action = None
    if wanted > cache.nodes:
        action = _suggest(
            "cache",
            {"region": cache.region, "nodes": wanted},
            f"scale the {cache.region} Redis cluster from {cache.nodes} to {wanted} nodes",
        )
    out.append(
        _finding(
            FindingKind.REDIS_BELOW_MIN,
            Severity.HIGH,
            cache.region,
            cache.key,
            title=f"{cache.region} Redis has {cache.healthy_nodes} healthy nodes, "
            f"below the minimum of {bounds.min}",
            measured=cache.healthy_nodes,
            target=bounds.min,
            evidence={
                "nodes": cache.nodes,
                "healthy_nodes": cache.healthy_nodes,
                "min_nodes": bounds.min,
                "max_nodes": bounds.max,
                "hit_ratio": cache.hit_ratio,
            },
            action=action,
        )
    )


def _check_dns(fleet: Fleet, dns: DnsRecordSet, out: list[Finding]) -> None:
    spec = fleet.regions.get(dns.region)
    if spec is None or spec.residency_zone not in RESTRICTED_RESIDENCY_ZONES:
        return
    zone = spec.residency_zone
    outside = {
        target: weight
        for target, weight in dns.weights.items()
        if weight > 0 and _zone(fleet, target) not in (zone, None)
    }
    if not outside:
        return
    total = dns.total
    share = sum(outside.values()) / total if total > 0 else 0.0
    partner = spec.failover_partner
    # A region drained on purpose (no weight to itself) goes to its in-zone partner; one that still
    # serves but leaks users outside the zone is sent back to itself.
    if _zone(fleet, partner) == zone and dns.weights.get(dns.region, 0) == 0:
        action = _suggest(
            "failover",
            {"from_region": dns.region, "to_region": partner},
            f"send {dns.region}'s users to {partner}, inside the {zone} zone",
        )
    else:
        action = _suggest("failback", {"region": dns.region},
                          f"send {dns.region}'s users back to {dns.region}")
    out.append(
        _finding(
            FindingKind.DATA_RESIDENCY,
            Severity.CRITICAL,
            dns.region,
            dns.key,
            title=f"{dns.region} sends {_pct(share)} of its users outside the {zone} zone "
            f"({', '.join(sorted(outside))})",
            measured=round(share, 4),
            target=0.0,
            evidence={
                "weights": dict(dns.weights),
                "outside_zone": outside,
                "share_outside": share,
                "zone": zone,
            },
            action=action,
        )
    )


# --------------------------------------------------------------------------------------------------
# Aggregate checks
# --------------------------------------------------------------------------------------------------


def _latency_actions(fleet: Fleet, acc: _Pass, out: list[Finding]) -> None:
    """Attach a scale suggestion to each latency finding: the region's most saturated prod workload."""
    bound = fleet.bounds.hpa_pods.max
    for i, f in enumerate(out):
        if f.kind is not FindingKind.LATENCY_P95 or f.region is None or f.region in acc.drained:
            continue
        w = acc.hottest.get(f.region)
        if w is None:
            continue
        hpa_min = min(bound, max(w.hpa_min, math.ceil(w.desired * HPA_RAISE_FACTOR)))
        hpa_max = max(w.hpa_max, hpa_min)
        if hpa_min <= w.desired:
            continue  # already at the fleet's bound: nothing left to scale here
        action = _scale_action(
            w,
            hpa_min=hpa_min,
            hpa_max=hpa_max,
            why=f"scale {w.service} in {w.cluster} (CPU {_pct(w.cpu_utilisation)}) from {w.desired} to "
            f"at least {hpa_min} replicas",
        )
        evidence = {**f.evidence, "hottest_workload": w.key, "hottest_cpu_utilisation": w.cpu_utilisation}
        out[i] = _finding(
            f.kind,
            f.severity,
            f.region,
            f.object,
            title=f.title,
            measured=f.measured,
            target=f.target,
            evidence=evidence,
            action=action,
        )


def _hottest_scale(fleet: Fleet, acc: _Pass, region: str, why: str) -> SuggestedAction | None:
    """Scale the region's most saturated prod workload to 1.5x its replicas (within the HPA bound)."""
    w = acc.hottest.get(region)
    if w is None or region in acc.drained:
        return None
    bound = fleet.bounds.hpa_pods.max
    hpa_min = min(bound, max(w.hpa_min, math.ceil(w.desired * HPA_RAISE_FACTOR)))
    if hpa_min <= w.desired:
        return None
    return _scale_action(
        w,
        hpa_min=hpa_min,
        hpa_max=max(w.hpa_max, hpa_min),
        why=f"{why}: scale {w.service} in {w.cluster} (CPU {_pct(w.cpu_utilisation)}) from {w.desired} "
        f"to at least {hpa_min} replicas",
    )


def _check_capacity(fleet: Fleet, acc: _Pass, out: list[Finding]) -> None:
    """Fleet-wide throughput against the seed's sizing targets (api rps, db tps, concurrent users).

    The targets are what the fleet is sized for; crossing one means the fleet serves more than planned,
    so every region is closer to its limits than its findings alone say. The suggestion goes to the
    region with the largest excess over its planned share (``demand_share`` x target).
    """
    targets = fleet.targets
    traffic = [t for t in acc.traffic.values() if t.region not in acc.drained or t.rps > 0]
    figures: list[tuple[str, float, float, dict[str, float]]] = [
        ("api_rps", sum(t.rps for t in traffic), targets.api_rps, {t.region: t.rps for t in traffic}),
        (
            "concurrent_users",
            float(sum(t.concurrent_users for t in traffic)),
            float(targets.concurrent_users),
            {t.region: float(t.concurrent_users) for t in traffic},
        ),
        (
            "db_tps",
            sum(db.tps for db in acc.databases),
            targets.db_tps,
            {db.region: db.tps for db in acc.databases},
        ),
    ]
    for name, measured, target, by_region in figures:
        if target <= 0 or measured <= target:
            continue

        def excess(region: str, by_region: dict[str, float] = by_region, target: float = target) -> float:
            spec = fleet.regions.get(region)
            share = spec.traffic.demand_share if spec is not None else 0.0
            return by_region[region] - share * target

        worst = max(sorted(by_region), key=excess)
        action: SuggestedAction | None
        if name == "db_tps":
            db = next(d for d in acc.databases if d.region == worst)
            bounds = fleet.bounds.read_replicas
            action = None
            if db.read_replicas < bounds.max:
                wanted = bounds.clamp(db.read_replicas + 1)
                action = _suggest(
                    "replicas",
                    {"region": worst, "read_replicas": wanted},
                    f"fleet at {measured:,.0f} tps over the {target:,.0f} tps target: add a read replica in "
                    f"{worst} ({db.read_replicas} → {wanted}), the region furthest over its share",
                )
        else:
            action = _hottest_scale(
                fleet, acc, worst, f"fleet {name} over target, {worst} furthest over its share"
            )
        unit = {"api_rps": "rps", "db_tps": "tps", "concurrent_users": "users"}[name]
        out.append(
            _finding(
                FindingKind.CAPACITY,
                Severity.HIGH,
                None,
                f"capacity/{name}",
                title=f"fleet at {measured:,.0f} {unit}, over the {target:,.0f} {unit} it is sized for "
                f"({measured / target:.1f}x); most over its share: {worst}",
                measured=measured,
                target=target,
                evidence={
                    "figure": name,
                    "by_region": dict(sorted(by_region.items())),
                    "ratio": measured / target,
                    "region_most_over_share": worst,
                    "what_to_do": f"add capacity where the excess is ({worst}) and raise the fleet's "
                    f"sizing (HPA and node bounds) before the next peak",
                },
                action=action,
            )
        )


def _check_global_latency(fleet: Fleet, acc: _Pass, out: list[Finding]) -> None:
    """The fleet's average latency, weighted by each serving region's requests."""
    serving = [t for t in acc.traffic.values() if t.region not in acc.drained and t.rps > 0]
    total = sum(t.rps for t in serving)
    if total <= 0:
        return
    avg = sum(t.avg_latency_ms * t.rps for t in serving) / total
    target = fleet.targets.global_avg_latency_ms
    if avg <= target:
        return
    worst = max(serving, key=lambda t: (t.avg_latency_ms * t.rps, t.region))
    out.append(
        _finding(
            FindingKind.GLOBAL_AVG_LATENCY,
            Severity.MEDIUM,
            None,
            "avg-latency/global",
            title=f"fleet average latency {avg:.0f} ms over the {target:.0f} ms global target "
            f"(largest contribution: {worst.region})",
            measured=avg,
            target=target,
            evidence={
                "avg_latency_ms": avg,
                "by_region": {t.region: t.avg_latency_ms for t in sorted(serving, key=lambda t: t.region)},
                "weights_rps": {t.region: t.rps for t in sorted(serving, key=lambda t: t.region)},
                "largest_contribution": worst.region,
            },
            action=_hottest_scale(fleet, acc, worst.region, f"{worst.region} weighs most on the average"),
        )
    )


def _check_region_nodes(fleet: Fleet, acc: _Pass, out: list[Finding]) -> None:
    """The seed's node bound, per region (see :data:`NODE_BOUND_PER_REGION`)."""
    if not NODE_BOUND_PER_REGION:
        return
    bound = fleet.bounds.cluster_nodes.max
    for region in sorted(acc.region_node_count):
        nodes = acc.region_node_count[region]
        if nodes <= bound:
            continue
        spec = fleet.regions.get(region)
        action = None
        if spec is not None and spec.failover_partner not in acc.drained:
            partner_nodes = acc.region_node_count.get(spec.failover_partner, 0)
            if partner_nodes < bound:
                action = _suggest(
                    "failover",
                    {"from_region": region, "to_region": spec.failover_partner},
                    f"{region} runs {nodes} nodes, over the seed's {bound} per region; move its users to "
                    f"{spec.failover_partner} ({partner_nodes} nodes) while the region is resized",
                )
        out.append(
            _finding(
                FindingKind.REGION_NODES_BOUND,
                Severity.MEDIUM,
                region,
                f"region-nodes/{region}",
                title=f"{region} runs {nodes} prod nodes in {len(acc.region_nodes[region])} clusters, "
                f"over the seed's bound of {bound} nodes per region",
                measured=nodes,
                target=bound,
                evidence={
                    "nodes": nodes,
                    "clusters": sorted(acc.region_nodes[region]),
                    "bound_nodes_per_region": bound,
                },
                action=action,
            )
        )


def _check_write_primaries(fleet: Fleet, acc: _Pass, out: list[Finding]) -> None:
    """One write primary per write region: more available primaries in a residency zone than the
    inventory plans is a split brain (two databases taking writes for the same users), critical, repaired
    by failing back to the planned primary (the promoted replica is demoted). A database whose role
    differs from the inventory without a split is the normal state during a failover: medium."""
    planned: dict[str, list[str]] = defaultdict(list)
    for region_spec in fleet.regions.values():
        if region_spec.database.role is DbRole.WRITE_PRIMARY:
            planned[region_spec.residency_zone].append(region_spec.id)
    observed: dict[str, list[DatabaseState]] = defaultdict(list)
    for db in acc.databases:
        zone = _zone(fleet, db.region)
        if zone is not None and db.role is DbRole.WRITE_PRIMARY and db.available:
            observed[zone].append(db)
    split: set[str] = set()
    for zone in sorted(observed):
        primaries = sorted(db.region for db in observed[zone])
        if len(primaries) <= max(1, len(planned.get(zone, []))):
            continue
        extra = [r for r in primaries if r not in planned.get(zone, [])]
        split.update(primaries)
        home = planned[zone][0] if planned.get(zone) else primaries[0]
        action = (
            _suggest(
                "database",
                {"region": extra[0], "change": "demote", "source_region": home},
                f"demote {extra[0]} to a read replica of {home} (one write primary per write region)",
            )
            if extra
            else None
        )
        out.append(
            _finding(
                FindingKind.WRITE_PRIMARIES,
                Severity.CRITICAL,
                home,
                f"write-primaries/{zone}",
                title=f"{len(primaries)} write primaries in the {zone} zone ({', '.join(primaries)}); "
                f"the inventory plans {', '.join(planned.get(zone, [])) or 'none'}",
                measured=len(primaries),
                target=max(1, len(planned.get(zone, []))),
                evidence={
                    "zone": zone,
                    "primaries": primaries,
                    "planned": sorted(planned.get(zone, [])),
                    "unplanned": extra,
                },
                action=action,
            )
        )
    for db in sorted(acc.databases, key=lambda d: d.region):
        spec = fleet.regions.get(db.region)
        if spec is None or db.region in split or db.role is spec.database.role:
            continue
        out.append(
            _finding(
                FindingKind.WRITE_PRIMARIES,
                Severity.MEDIUM,
                db.region,
                f"db-role/{db.region}",
                title=f"{db.region} database is a {db.role.value}, the inventory says "
                f"{spec.database.role.value} (fail back once the original primary is healthy)",
                measured=db.role.value,
                target=spec.database.role.value,
                evidence={
                    "role": db.role.value,
                    "planned_role": spec.database.role.value,
                    "replicates_from": db.replicates_from,
                    "planned_replicates_from": spec.database.replicates_from,
                },
            )
        )


def _check_pending(fleet: Fleet, acc: _Pass, out: list[Finding]) -> None:
    for w in acc.pending:
        stuck = w.cluster in acc.clusters_at_max
        out.append(
            _finding(
                FindingKind.PENDING_PODS,
                Severity.HIGH if stuck else Severity.MEDIUM,
                w.region,
                w.key,
                title=f"{w.service} in {w.cluster} has {w.pending_pods} pending pods "
                f"({w.ready}/{w.desired} ready)" + (", cluster at its node max" if stuck else ""),
                measured=w.pending_pods,
                target=0,
                evidence={
                    "pending_pods": w.pending_pods,
                    "desired": w.desired,
                    "ready": w.ready,
                    "cluster_at_node_max": stuck,
                },
            )
        )


def _check_provider_mix(fleet: Fleet, acc: _Pass, out: list[Finding]) -> None:
    """Per geography, each cloud's share of prod pod slots (ready nodes x pods per node) vs the plan.

    Pod slots rather than raw nodes because instance sizes differ between clusters (a 4-vCPU node
    holds half the pods of an 8-vCPU one); ready nodes because a node that is not ready carries nothing.
    """
    tolerance = fleet.targets.provider_mix_tolerance
    for geo in sorted(acc.capacity, key=lambda g: g.value):
        by_cloud = acc.capacity[geo]
        total = sum(by_cloud.values())
        plan = fleet.provider_plan.get(geo)
        if total <= 0 or not plan:
            continue
        clouds = sorted(set(plan) | set(by_cloud), key=lambda c: c.value)
        observed = {c: by_cloud.get(c, 0.0) / total for c in clouds}
        drift = {c: observed[c] - plan.get(c, 0.0) for c in clouds}
        worst = max(clouds, key=lambda c: abs(drift[c]))
        if abs(drift[worst]) <= tolerance + _EPS:
            continue
        under = min(clouds, key=lambda c: drift[c])
        action = _mix_action(
            fleet,
            acc,
            geo,
            under,
            plan_share=plan.get(under, 0.0),
            have=by_cloud.get(under, 0.0),
            total=total,
        )
        out.append(
            _finding(
                FindingKind.PROVIDER_MIX_DRIFT,
                Severity.MEDIUM,
                None,
                f"geography/{geo.value}",
                title=f"{geo.value} provider mix off plan: {worst.value} at {_pct(observed[worst])}, "
                f"plan {_pct(plan.get(worst, 0.0))}",
                measured=_mix_text({c.value: observed[c] for c in clouds}),
                target=_mix_text({c.value: plan.get(c, 0.0) for c in clouds}),
                evidence={
                    "basis": "ready_nodes x pods_per_node of prod clusters",
                    "capacity": {c.value: by_cloud.get(c, 0.0) for c in clouds},
                    "observed": {c.value: observed[c] for c in clouds},
                    "plan": {c.value: plan.get(c, 0.0) for c in clouds},
                    "drift": {c.value: drift[c] for c in clouds},
                    "max_drift": abs(drift[worst]),
                    "tolerance": tolerance,
                },
                action=action,
            )
        )


def _mix_action(
    fleet: Fleet, acc: _Pass, geo: Geography, cloud: Cloud, *, plan_share: float, have: float, total: float
) -> SuggestedAction | None:
    """Grow the under-planned cloud's roomiest prod cluster of the geography back toward the plan."""
    if plan_share >= 1.0:
        return None
    missing = (plan_share * total - have) / (1.0 - plan_share)  # slots to add so that the share is met
    candidates = acc.clusters_by_geo_cloud.get((geo, cloud), [])
    if missing <= 0 or not candidates:
        return None
    bound = fleet.bounds.cluster_nodes.max

    def room(c: ClusterState) -> int:
        """Nodes the cluster may still add: its own bound, and the seed's per-region bound."""
        region_room = bound - acc.region_node_count.get(c.region, 0) if NODE_BOUND_PER_REGION else bound
        return min(bound - c.nodes, region_room)

    best = max(candidates, key=lambda c: (room(c), c.cluster))
    spec = fleet.clusters.get(best.cluster)
    pods_per_node = spec.pods_per_node if spec is not None else 1
    wanted = best.nodes + min(room(best), math.ceil(missing / pods_per_node))
    if wanted <= best.nodes:
        return None
    params: dict[str, Any] = {"cluster": best.cluster, "nodes_min": wanted}
    if wanted > best.nodes_max:
        params["nodes_max"] = wanted
    return _suggest(
        "nodes",
        params,
        f"grow {best.cluster} from {best.nodes} to {wanted} nodes to bring {cloud.value} back to "
        f"{_pct(plan_share)} of {geo.value}",
    )


def _check_cost_mix(fleet: Fleet, acc: _Pass, out: list[Finding]) -> None:
    targets = fleet.targets
    total = sum(acc.cost.values())
    if total <= 0:
        return
    observed = {k: v / total for k, v in acc.cost.items()}
    names = sorted(set(observed) | set(targets.cost_mix))
    drift = {k: observed.get(k, 0.0) - targets.cost_mix.get(k, 0.0) for k in names}
    worst = max(names, key=lambda k: abs(drift[k]))
    if abs(drift[worst]) <= targets.cost_mix_tolerance + _EPS:
        return
    out.append(
        _finding(
            FindingKind.COST_MIX_OFF_TARGET,
            Severity.LOW,
            None,
            "cost-mix/fleet",
            title=f"fleet cost mix off target: {worst} nodes at {_pct(observed.get(worst, 0.0))}, "
            f"target {_pct(targets.cost_mix.get(worst, 0.0))}",
            measured=_mix_text({k: observed.get(k, 0.0) for k in names}),
            target=_mix_text({k: targets.cost_mix.get(k, 0.0) for k in names}),
            evidence={
                "nodes": dict(acc.cost),
                "observed": {k: observed.get(k, 0.0) for k in names},
                "target": dict(targets.cost_mix),
                "drift": drift,
                "max_drift": abs(drift[worst]),
                "tolerance": targets.cost_mix_tolerance,
            },
        )
    )


def _check_partners(fleet: Fleet, down: set[str], out: list[Finding]) -> None:
    """A region whose partner is down or critical has no safe place to fail over to."""
    critical: dict[str, list[str]] = defaultdict(list)
    for f in out:
        if f.region is not None and f.severity is Severity.CRITICAL:
            critical[f.region].append(f.id)
    for region_id, spec in fleet.regions.items():
        partner = spec.failover_partner
        if partner not in down and partner not in critical:
            continue
        reasons = sorted(critical.get(partner, []))
        state = "down" if partner in down else "critical"
        out.append(
            _finding(
                FindingKind.PARTNER_UNHEALTHY,
                Severity.HIGH,
                region_id,
                f"region/{region_id}",
                title=f"{region_id} has no safe failover: its partner {partner} is {state}",
                measured=state,
                target="ok",
                evidence={"partner": partner, "partner_down": partner in down, "partner_critical": reasons},
            )
        )


def _check_sources(snapshot: Snapshot, out: list[Finding]) -> None:
    for s in snapshot.sources:
        if s.status is SourceStatus.OK:
            continue
        severity = Severity.MEDIUM
        if s.status is SourceStatus.STARTING:  # not failed: its first answer is not in yet
            title = f"source {s.name} is starting: its records are not in yet"
            severity = Severity.LOW
        elif s.status is SourceStatus.STALE:
            age = f"{s.age_s:.0f} s old" if s.age_s is not None else "of unknown age"
            title = f"source {s.name} is stale (data {age})"
        else:
            title = f"source {s.name} failed: its records are missing"
        if s.error and s.status is not SourceStatus.STARTING:
            title += f": {s.error}"
        out.append(
            _finding(
                FindingKind.STALE_DATA,
                severity,
                None,
                f"source/{s.name}",
                title=title,
                measured=s.status.value,
                target=SourceStatus.OK.value,
                evidence={
                    "status": s.status.value,
                    "age_s": s.age_s,
                    "error": s.error,
                    "last_success": s.last_success.isoformat() if s.last_success else None,
                    "records": s.records,
                },
            )
        )
