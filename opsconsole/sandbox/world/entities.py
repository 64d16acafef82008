"""The sandbox world's mutable state: its regions, clusters and workloads, and the figures of one tick.

Why this module exists: the world is split by concept (:mod:`.dynamics` moves it,
:mod:`.desired` applies what clients wrote, :mod:`.incident_ops`
starts and ends incidents, :mod:`.observe` publishes records,
:mod:`.snapshot` saves it). They all work on one plain :class:`SimState`, defined
here with the lookups that turn an unknown name into a clear :class:`~opsconsole.core.errors.UsageError`.
This module holds data and its shape only: no model, no formulas.

How to use it::

    state = build_state(fleet, seed=42, now_us=to_us(start))   # every entity at its spec's minimum
    state.region("eu-west-1").dns                                # target region -> weight
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from opsconsole.core.errors import UsageError
from opsconsole.core.fleet.model import (
    ClusterSpec,
    DbRole,
    Environment,
    Fleet,
    RegionSpec,
    ServiceSpec,
)
from opsconsole.sandbox.incidents import Incident, IncidentEffects
from opsconsole.sandbox.world.ticks import M64, TICK_S, TICK_US, key_hash, mix, noise

__all__ = [
    "DNS_TOTAL",
    "ERR_1H",
    "ERR_5M",
    "HPA_WINDOW",
    "NODE_WINDOW",
    "Figures",
    "Loads",
    "RegionOut",
    "SimCluster",
    "SimRegion",
    "SimState",
    "SimWorkload",
    "WorkloadOut",
    "build_state",
]

#: Every DNS record set's weights sum to this.
DNS_TOTAL = 100
HPA_WINDOW = 20  # ticks: 5 min scale-down stabilisation
NODE_WINDOW = 40  # ticks: 10 min before unneeded nodes go
ERR_5M = 300 // TICK_S  # ticks in the 5 min error window
ERR_1H = 3600 // TICK_S  # ticks in the 1 h error window


@dataclass(eq=False)
class SimWorkload:
    """One service in one cluster: its replicas, HPA bounds and recommendation window."""

    cluster: ClusterSpec
    service: ServiceSpec
    key: str
    key_h: int
    gateway: bool
    #: Fraction of the region's front-door rps this workload receives (prod only).
    share: float
    replicas: int
    hpa_min: int
    hpa_max: int
    recs: list[int]
    #: Replicas before the cluster was stopped (restored on start).
    remembered: int | None = None


@dataclass(eq=False)
class SimCluster:
    """One cluster: its nodes, autoscaler bounds and need window."""

    spec: ClusterSpec
    workloads: list[SimWorkload]
    nodes: int
    nodes_min: int
    nodes_max: int
    needs: list[int]
    #: Nodes before the cluster was stopped (restored on start).
    remembered: int | None = None


@dataclass(eq=False)
class SimRegion:
    """One region: its DNS record set, database, cache and request/error history."""

    spec: RegionSpec
    tz: ZoneInfo
    key_h: int
    prod_clusters: list[SimCluster]
    dns: dict[str, int]
    db_role: DbRole
    replicates_from: str | None
    read_replicas: int
    cache_nodes: int
    req: list[float]  # front-door rps per tick, ring of ERR_1H indexed by tick % ERR_1H
    err: list[float]  # failed rps per tick, same ring


@dataclass
class WorkloadOut:
    """A workload's figures at one tick."""

    rps: float = 0.0
    ready: int = 0
    pending: int = 0
    utilisation: float = 0.0
    p95_ms: float = 0.0
    error_rate: float = 0.0


@dataclass
class RegionOut:
    """A region's front-door figures at one tick."""

    demand: float = 0.0
    front: float = 0.0
    utilisation: float = 0.0
    p95_ms: float = 0.0
    error_frac: float = 0.0
    down: bool = False
    effective: dict[str, float] = field(default_factory=dict)


@dataclass
class Loads:
    """Demand by region of origin and where DNS sends it, with the incidents' effects, at one tick."""

    effects: IncidentEffects
    demand: dict[str, float]
    front: dict[str, float]
    effective: dict[str, dict[str, float]]


@dataclass
class Figures:
    """Everything computed for one tick: what :mod:`.observe` publishes."""

    tick: int
    loads: Loads
    regions: dict[str, RegionOut]
    workloads: dict[str, WorkloadOut]


@dataclass(eq=False)
class SimState:
    """The whole mutable world. ``out`` holds the current tick's figures (set by the dynamics)."""

    fleet: Fleet
    seed: int
    seed_h: int
    now_us: int
    tick: int
    gateway: str
    regions: dict[str, SimRegion]
    clusters: dict[str, SimCluster]
    workloads: dict[str, SimWorkload]
    #: Names of the non-prod clusters that are stopped (an environment is stopped when all its are).
    stopped: set[str] = field(default_factory=set)
    incidents: list[Incident] = field(default_factory=list)
    incident_seq: int = 0
    global_peak: float = 0.0
    #: Objects clients wrote into the local cloud's APIs that the world does not model, by API and key
    #: (``"k8s"`` → ``"<cluster>/<namespace>/<name>"`` → a ConfigMap): env_schedule.yml remembers an
    #: environment's sizes in one. Kept here so that the local cloud of a later command serves them again.
    client_objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    out: Figures = field(init=False)

    def noise(self, tick: int, key_h: int) -> float:
        """A uniform number in [0, 1) that depends only on (seed, tick, key)."""
        return noise(self.seed_h, tick, key_h)

    def is_down(self, region: str) -> bool:
        """Whether a (known) region is down at the current tick."""
        return region in self.out.loads.effects.down_since

    def stopped_environments(self) -> frozenset[Environment]:
        """Non-prod environments whose every cluster is stopped."""
        return frozenset(
            env
            for env in Environment
            if env is not Environment.PROD
            and (names := [c.spec.name for c in self.clusters.values() if c.spec.environment is env])
            and all(n in self.stopped for n in names)
        )

    # -- lookups with clear errors ----------------------------------------------------------------

    def region(self, region: str) -> SimRegion:
        try:
            return self.regions[region]
        except KeyError:
            valid = ", ".join(self.regions)
            raise UsageError(f"unknown region {region!r}; valid regions: {valid}") from None

    def cluster(self, cluster: str) -> SimCluster:
        try:
            return self.clusters[cluster]
        except KeyError:
            valid = ", ".join(self.clusters)
            raise UsageError(f"unknown cluster {cluster!r}; valid clusters: {valid}") from None

    def workload(self, cluster: str, service: str) -> SimWorkload:
        cl = self.cluster(cluster)
        wl = self.workloads.get(f"{cluster}/{service}")
        if wl is None:
            valid = ", ".join(w.service.name for w in cl.workloads)
            raise UsageError(
                f"service {service!r} does not run in cluster {cluster!r} "
                f"({cl.spec.environment.value}); services there: {valid}"
            )
        return wl


# --------------------------------------------------------------------------------------------------
# Construction
# --------------------------------------------------------------------------------------------------


def build_state(fleet: Fleet, seed: int, now_us: int) -> SimState:
    """Every region, cluster and workload of ``fleet`` at its spec's minimum sizes (not yet steady:
    ``global_peak`` and ``out`` are for the dynamics to fill)."""
    seed = int(seed)
    gateway = _pick_gateway(fleet)
    specs = sorted(fleet.clusters.values(), key=_name)
    clusters = {spec.name: _build_cluster(fleet, spec, gateway) for spec in specs}
    return SimState(
        fleet=fleet,
        seed=seed,
        seed_h=mix(seed & M64),
        now_us=now_us,
        tick=now_us // TICK_US,
        gateway=gateway,
        regions={rid: _build_region(fleet, rid, clusters) for rid in sorted(fleet.regions)},
        clusters=clusters,
        workloads={wl.key: wl for cl in clusters.values() for wl in cl.workloads},
    )


def _build_cluster(fleet: Fleet, spec: ClusterSpec, gateway: str) -> SimCluster:
    """A cluster at its minimum nodes, running every service of its environment at its HPA minimum;
    a prod workload's traffic share is the service's share times the cluster's capacity weight."""
    weights = sum(c.capacity_weight for c in fleet.clusters_in(spec.region, Environment.PROD))
    wls: list[SimWorkload] = []
    for svc in sorted(fleet.services_in(spec.environment), key=lambda s: s.name):
        key = f"{spec.name}/{svc.name}"
        share = 0.0
        if spec.environment is Environment.PROD and weights > 0:
            share = svc.traffic_share * spec.capacity_weight / weights
        wls.append(
            SimWorkload(
                cluster=spec,
                service=svc,
                key=key,
                key_h=key_hash("wl/" + key),
                gateway=svc.name == gateway,
                share=share,
                replicas=svc.hpa.min,
                hpa_min=svc.hpa.min,
                hpa_max=svc.hpa.max,
                recs=[svc.hpa.min] * HPA_WINDOW,
            )
        )
    return SimCluster(
        spec=spec,
        workloads=wls,
        nodes=spec.nodes.min,
        nodes_min=spec.nodes.min,
        nodes_max=spec.nodes.max,
        needs=[spec.nodes.min] * NODE_WINDOW,
    )


def _build_region(fleet: Fleet, rid: str, clusters: dict[str, SimCluster]) -> SimRegion:
    """A region as its spec describes it, its users all sent to itself, with an empty error history."""
    rs = fleet.regions[rid]
    return SimRegion(
        spec=rs,
        tz=ZoneInfo(rs.timezone),
        key_h=key_hash("region/" + rid),
        prod_clusters=[clusters[c.name] for c in sorted(fleet.clusters_in(rid, Environment.PROD), key=_name)],
        dns={rid: DNS_TOTAL},
        db_role=rs.database.role,
        replicates_from=rs.database.replicates_from,
        read_replicas=rs.database.read_replicas,
        cache_nodes=rs.cache.nodes,
        req=[0.0] * ERR_1H,
        err=[0.0] * ERR_1H,
    )


def _pick_gateway(fleet: Fleet) -> str:
    """The front-door service: one named like a gateway, else the one with the largest traffic share."""
    named = sorted(s for s in fleet.services if "gateway" in s)
    if named:
        return named[0]
    if not fleet.services:
        return ""
    return max(sorted(fleet.services.values(), key=lambda s: s.name), key=lambda s: s.traffic_share).name


def _name(c: ClusterSpec) -> str:
    return c.name
