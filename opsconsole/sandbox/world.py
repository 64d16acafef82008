"""The sandbox world: a deterministic, time-scalable simulation of the whole fleet.

Why this module exists: opsconsole must be usable (and testable, and rehearsable) with no cloud at all.
:class:`World` plays diurnal traffic, DNS routing and failover, HPA, the cluster autoscaler, latency,
errors, replica lag, Redis and incidents for every region, cluster and workload of a
:class:`~opsconsole.core.fleet.model.Fleet`, and reports them as the same observed records the real sources
return (:meth:`World.observe`). It is pure: no file I/O, no wall clock (persistence and the mapping from
wall time to sim time live in :mod:`opsconsole.sandbox.state`).

How to use it::

    world = World(fleet, seed=42, start=datetime(2025, 1, 15, 12, tzinfo=UTC))
    world.advance(world.now + timedelta(minutes=10))
    world.trigger_incident("traffic_spike", "eu-west-1")
    world.advance_by(300)
    records = world.observe()
    data = world.to_dict()                    # JSON-serialisable; World.from_dict(fleet, data) restores it

Determinism. Sim time is cut into fixed ticks of :data:`TICK_S` seconds on absolute boundaries (tick
``k`` is the instant ``k * TICK_S`` s after the Unix epoch). :meth:`World.advance` steps tick by tick;
every random figure is a pure hash of ``(seed, tick, entity key)``, never a shared RNG stream. So the
state at sim time ``t`` depends only on the fleet, the seed, which changes/incidents were applied at
which sim times, and ``t`` — not on how often the world was advanced. One bounded exception: an advance
of more than :data:`CATCHUP_S` (1 h) jumps to ``t - 1 h`` and resets the dynamic state (replicas, nodes,
HPA / autoscaler windows, error windows) to its steady value for the load at that tick before stepping the
last hour. Every dynamic variable forgets its past within that hour under ordinary conditions, so the
result matches step-by-step advancing; it is always deterministic either way.

A change or an incident applied at sim time ``t`` takes effect from the tick containing ``t``: the
current tick's figures are re-evaluated at once (so ``observe()`` right after ``trigger_incident`` shows
it) while the scalers react from the next tick on.

Model (see the method docstrings for the formulas):

* demand per region follows the local time of day (trough 0.3 at 04:00, peak 1.0 at 20:00) times its
  ``demand_share`` times a global peak chosen so that the fleet-wide sum peaks at 85 % of
  ``Targets.api_rps``, with ±5 % noise per tick;
* each region's DNS record set sends its users to target regions by integer weights summing to 100;
  a record set whose routing policy is ``FAILOVER`` sends the share of a down target to that target's
  failover partner by itself, other policies keep sending it to the down region, where it fails;
* each prod cluster serves its region's traffic by ``capacity_weight``; the HPA targets 70 % CPU, scales
  up at most ×2 (or +4 pods) per tick and down at most 10 % per tick after a 5 min stabilisation window;
  the cluster autoscaler adds at most 3 nodes per tick and removes 1 per tick after 10 min of lower need;
  pods that do not fit on the nodes are pending;
* non-prod clusters run their services at a small synthetic load; a stopped environment (or one stopped
  cluster of it: :meth:`World.set_cluster_stopped`) has 0 replicas and **0 nodes** (below the 1-node
  floor of the bounds, on purpose: that is what stopping is for) and comes back to the remembered sizes
  when started.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from opsconsole.core.errors import SandboxError, UsageError
from opsconsole.core.fleet.model import (
    CacheState,
    ClusterSpec,
    ClusterState,
    DatabaseState,
    DbRole,
    DnsRecordSet,
    Environment,
    Fleet,
    FleetRecord,
    RegionSpec,
    RegionTraffic,
    RoutingPolicy,
    ServiceSpec,
    WorkloadState,
)
from opsconsole.sandbox.incidents import (
    DEFAULT_DURATION_S,
    LATENCY_SPIKE_MS,
    NODE_POOL_LOSS_FRACTION,
    Incident,
    IncidentEffects,
    IncidentKind,
    effects_at,
    lingering_ticks,
    parse_kind,
)

__all__ = [
    "CATCHUP_S",
    "DNS_TOTAL",
    "SOURCE_NAME",
    "STATE_VERSION",
    "TICK_S",
    "World",
    "diurnal",
    "fleet_fingerprint",
]

SOURCE_NAME = "sim"
#: Version of the :meth:`World.to_dict` layout.
STATE_VERSION = 1
#: Length of one simulation tick, in sim seconds.
TICK_S = 15
_TICK_US = TICK_S * 1_000_000
#: Longest stretch of sim time that is stepped tick by tick; longer advances jump first.
CATCHUP_S = 3600
_CATCHUP_TICKS = CATCHUP_S // TICK_S
#: Every DNS record set's weights sum to this.
DNS_TOTAL = 100

_HPA_TARGET = 0.7
_HPA_WINDOW = 20  # ticks: 5 min scale-down stabilisation
_HPA_UP_PODS = 4  # k8s default: up to max(×2, +4 pods) per period
_NODE_WINDOW = 40  # ticks: 10 min before unneeded nodes go
_NODE_STEP_UP = 3
_NODE_STEP_DOWN = 1
_ERR_5M = 300 // TICK_S
_ERR_1H = 3600 // TICK_S
_PEAK_HEADROOM = 0.85
_DEMAND_NOISE = 0.05
_BASE_ERROR = 0.00002
_U_CAP = 0.97
#: Queueing coefficient of the latency curve p95 = base × (1 + k·u/(1−u)). 0.25 rather than a textbook
#: 0.6 because the seed regions' base latencies are 80–95 ms: with 0.6 a pool held at the HPA's 70 % CPU
#: target would already sit at 190–220 ms, i.e. the fleet would breach its 200 ms p95 target every evening.
_LATENCY_K = 0.25
_PENDING_PENALTY = 1.5  # × base latency, at 100 % of pods pending
_NON_GATEWAY_LATENCY = 0.5  # a service's own p95 base, as a fraction of the region's front-door base
_USERS_PER_RPS = 10
_NONPROD_LOAD = 0.1  # synthetic load of a non-prod workload, as a fraction of hpa_min pods' capacity
_M64 = (1 << 64) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_REFERENCE_DAYS = (datetime(2025, 1, 15, tzinfo=UTC), datetime(2025, 7, 15, tzinfo=UTC))


# --------------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------------


def _mix(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _key_hash(key: str) -> int:
    return _mix(zlib.crc32(key.encode()))


def diurnal(local_hour: float) -> float:
    """Relative demand at a local hour of day: 0.3 at 04:00 rising to 1.0 at 20:00, smooth (cosine)."""
    h = local_hour % 24.0
    if h < 4.0:
        h += 24.0
    if h <= 20.0:  # 04:00 → 20:00, rising over 16 h
        return 0.3 + 0.7 * (1.0 - math.cos(math.pi * (h - 4.0) / 16.0)) / 2.0
    return 0.3 + 0.7 * (1.0 + math.cos(math.pi * (h - 20.0) / 8.0)) / 2.0  # 20:00 → 04:00, falling


def fleet_fingerprint(fleet: Fleet) -> str:
    """A short hash of the fleet's shape (region, cluster and service names and placements).

    A saved world is only valid for the fleet it was built from; :mod:`opsconsole.sandbox.state`
    compares fingerprints to refuse a stale state file.
    """
    parts = [f"r:{r}" for r in sorted(fleet.regions)]
    parts += [
        f"c:{c.name}:{c.region}:{c.environment.value}" for c in sorted(fleet.clusters.values(), key=_name)
    ]
    parts += [
        f"s:{s.name}:{','.join(e.value for e in s.environments)}"
        for s in sorted(fleet.services.values(), key=lambda s: s.name)
    ]
    return zlib.crc32("\n".join(parts).encode()).to_bytes(4, "big").hex()


def _name(c: ClusterSpec) -> str:
    return c.name


def _to_us(at: datetime) -> int:
    if at.tzinfo is None or at.utcoffset() is None:
        raise SandboxError(f"sim time must be timezone-aware, got naive {at.isoformat()}")
    return (at - _EPOCH) // timedelta(microseconds=1)


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------------
# Mutable internal state
# --------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Workload:
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
    remembered: int | None = None


@dataclass(eq=False)
class _Cluster:
    spec: ClusterSpec
    workloads: list[_Workload]
    nodes: int
    nodes_min: int
    nodes_max: int
    needs: list[int]
    remembered: int | None = None


@dataclass(eq=False)
class _Region:
    spec: RegionSpec
    tz: ZoneInfo
    key_h: int
    prod_clusters: list[_Cluster]
    dns: dict[str, int]
    db_role: DbRole
    replicates_from: str | None
    read_replicas: int
    cache_nodes: int
    req: list[float]  # front-door rps per tick, ring of _ERR_1H indexed by tick % _ERR_1H
    err: list[float]  # failed rps per tick, same ring


@dataclass
class _WorkloadOut:
    rps: float = 0.0
    ready: int = 0
    pending: int = 0
    utilisation: float = 0.0
    p95_ms: float = 0.0
    error_rate: float = 0.0


@dataclass
class _RegionOut:
    demand: float = 0.0
    front: float = 0.0
    utilisation: float = 0.0
    p95_ms: float = 0.0
    error_frac: float = 0.0
    down: bool = False
    effective: dict[str, float] = field(default_factory=dict)


@dataclass
class _Loads:
    effects: IncidentEffects
    demand: dict[str, float]
    front: dict[str, float]
    effective: dict[str, dict[str, float]]


@dataclass
class _Out:
    tick: int
    loads: _Loads
    regions: dict[str, _RegionOut]
    workloads: dict[str, _WorkloadOut]


# --------------------------------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------------------------------


class World:
    """The simulated fleet. See the module docstring for the model and the determinism contract.

    Args:
        fleet: the fleet to simulate (its regions, clusters and services fix the world's shape).
        seed: the noise seed; two worlds differ only by their seed and what was done to them.
        start: the initial sim time (timezone-aware); the world starts in its steady state there.

    Every mutating method validates all its arguments first and raises
    :class:`~opsconsole.core.errors.UsageError` (changing nothing) on a bad one.
    """

    def __init__(self, fleet: Fleet, *, seed: int = 42, start: datetime) -> None:
        self._setup(fleet, seed, start)
        self._out = self._reset_steady(self._tick)

    def _setup(self, fleet: Fleet, seed: int, start: datetime) -> None:
        self._fleet = fleet
        self._seed = int(seed)
        self._seed_h = _mix(self._seed & _M64)
        self._now_us = _to_us(start)
        self._tick = self._now_us // _TICK_US
        #: Names of the non-prod clusters that are stopped (an environment is stopped when all its are).
        self._stopped: set[str] = set()
        self._incidents: list[Incident] = []
        self._incident_seq = 0
        self._gateway = self._pick_gateway(fleet)
        self._build(fleet)
        self._global_peak = self._compute_global_peak()

    # -- construction ---------------------------------------------------------------------------

    @staticmethod
    def _pick_gateway(fleet: Fleet) -> str:
        named = sorted(s for s in fleet.services if "gateway" in s)
        if named:
            return named[0]
        if not fleet.services:
            return ""
        return max(sorted(fleet.services.values(), key=lambda s: s.name), key=lambda s: s.traffic_share).name

    def _build(self, fleet: Fleet) -> None:
        self._clusters: dict[str, _Cluster] = {}
        self._workloads: dict[str, _Workload] = {}
        for spec in sorted(fleet.clusters.values(), key=_name):
            weights = sum(c.capacity_weight for c in fleet.clusters_in(spec.region, Environment.PROD))
            wls: list[_Workload] = []
            for svc in sorted(fleet.services_in(spec.environment), key=lambda s: s.name):
                key = f"{spec.name}/{svc.name}"
                share = 0.0
                if spec.environment is Environment.PROD and weights > 0:
                    share = svc.traffic_share * spec.capacity_weight / weights
                wl = _Workload(
                    cluster=spec,
                    service=svc,
                    key=key,
                    key_h=_key_hash("wl/" + key),
                    gateway=svc.name == self._gateway,
                    share=share,
                    replicas=svc.hpa.min,
                    hpa_min=svc.hpa.min,
                    hpa_max=svc.hpa.max,
                    recs=[svc.hpa.min] * _HPA_WINDOW,
                )
                wls.append(wl)
                self._workloads[key] = wl
            self._clusters[spec.name] = _Cluster(
                spec=spec,
                workloads=wls,
                nodes=spec.nodes.min,
                nodes_min=spec.nodes.min,
                nodes_max=spec.nodes.max,
                needs=[spec.nodes.min] * _NODE_WINDOW,
            )
        self._regions: dict[str, _Region] = {}
        for rid in sorted(fleet.regions):
            rs = fleet.regions[rid]
            self._regions[rid] = _Region(
                spec=rs,
                tz=ZoneInfo(rs.timezone),
                key_h=_key_hash("region/" + rid),
                prod_clusters=[
                    self._clusters[c.name]
                    for c in sorted(fleet.clusters_in(rid, Environment.PROD), key=_name)
                ],
                dns={rid: DNS_TOTAL},
                db_role=rs.database.role,
                replicates_from=rs.database.replicates_from,
                read_replicas=rs.database.read_replicas,
                cache_nodes=rs.cache.nodes,
                req=[0.0] * _ERR_1H,
                err=[0.0] * _ERR_1H,
            )

    def _compute_global_peak(self) -> float:
        """Global demand scale so that the fleet-wide diurnal sum peaks at 85 % of the rps target.

        Scanned in 15 min steps over a January and a July day (both sides of daylight saving time);
        each region's UTC offset is taken once per day, at noon UTC.
        """
        best = 0.0
        for day in _REFERENCE_DAYS:
            offsets = []
            for rg in self._regions.values():
                offset = (day + timedelta(hours=12)).astimezone(rg.tz).utcoffset() or timedelta()
                offsets.append((rg.spec.traffic.demand_share, offset.total_seconds() / 3600.0))
            for quarter in range(96):
                hour = quarter / 4.0
                total = sum(share * diurnal(hour + off) for share, off in offsets)
                best = max(best, total)
        if best <= 0:
            return 0.0
        return _PEAK_HEADROOM * self._fleet.targets.api_rps / best

    # -- read-only views ------------------------------------------------------------------------

    @property
    def fleet(self) -> Fleet:
        return self._fleet

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def now(self) -> datetime:
        """The current sim time (UTC)."""
        return _from_us(self._now_us)

    @property
    def tick(self) -> int:
        """Index of the current tick (its start is ``tick * TICK_S`` s after the epoch)."""
        return self._tick

    @property
    def global_peak_rps(self) -> float:
        return self._global_peak

    @property
    def stopped_environments(self) -> frozenset[Environment]:
        """Non-prod environments whose every cluster is stopped."""
        return frozenset(
            env
            for env in Environment
            if env is not Environment.PROD
            and (names := [c.spec.name for c in self._clusters.values() if c.spec.environment is env])
            and all(n in self._stopped for n in names)
        )

    @property
    def stopped_clusters(self) -> frozenset[str]:
        """Names of the stopped clusters (all non-prod)."""
        return frozenset(self._stopped)

    def is_stopped(self, cluster: str) -> bool:
        return self._cluster(cluster).spec.name in self._stopped

    def incidents(self, *, include_ended: bool = False) -> list[Incident]:
        """Incidents active now (or, with ``include_ended``, also those that ended in the last hour)."""
        if include_ended:
            return list(self._incidents)
        return [i for i in self._incidents if i.active_at(self._tick)]

    def replicas(self, cluster: str, service: str) -> int:
        return self._workload(cluster, service).replicas

    def hpa_bounds(self, cluster: str, service: str) -> tuple[int, int]:
        wl = self._workload(cluster, service)
        return wl.hpa_min, wl.hpa_max

    def nodes(self, cluster: str) -> int:
        return self._cluster(cluster).nodes

    def node_bounds(self, cluster: str) -> tuple[int, int]:
        cl = self._cluster(cluster)
        return cl.nodes_min, cl.nodes_max

    def dns_weights(self, region: str) -> dict[str, int]:
        return dict(self._region(region).dns)

    def is_down(self, region: str) -> bool:
        self._region(region)
        return region in self._out.loads.effects.down_since

    # -- time -----------------------------------------------------------------------------------

    def advance(self, to: datetime) -> None:
        """Move sim time forward to ``to``, stepping every tick boundary on the way.

        Raises:
            SandboxError: ``to`` is naive or earlier than :attr:`now`.
        """
        to_us = _to_us(to)
        if to_us < self._now_us:
            raise SandboxError(
                f"the sandbox cannot go back in time: it is at {self.now.isoformat()}, asked for "
                f"{to.isoformat()}"
            )
        target = to_us // _TICK_US
        if target - self._tick > _CATCHUP_TICKS:
            self._out = self._reset_steady(target - _CATCHUP_TICKS)
        while self._tick < target:
            self._step(self._tick + 1)
        self._now_us = to_us

    def advance_by(self, seconds: float) -> None:
        """Move sim time forward by ``seconds`` (convenience for tests and the CLI)."""
        self.advance(self.now + timedelta(seconds=seconds))

    # -- dynamics -------------------------------------------------------------------------------

    def _noise(self, tick: int, key_h: int) -> float:
        """A uniform number in [0, 1) that depends only on (seed, tick, key)."""
        x = _mix(self._seed_h ^ _mix(((tick & _M64) * 0x100000001B3 + key_h) & _M64))
        return (x >> 11) * (1.0 / (1 << 53))

    def _loads(self, tick: int) -> _Loads:
        """Demand by region of origin, and where DNS sends it, at ``tick``."""
        eff = effects_at(self._incidents, tick, TICK_S)
        down = eff.down_since
        epoch_s = tick * TICK_S
        demand: dict[str, float] = {}
        front: dict[str, float] = dict.fromkeys(self._regions, 0.0)
        effective: dict[str, dict[str, float]] = {}
        for rid, rg in self._regions.items():
            local = datetime.fromtimestamp(epoch_s, rg.tz)
            d = self._global_peak * rg.spec.traffic.demand_share
            d *= diurnal(local.hour + local.minute / 60.0 + local.second / 3600.0)
            d *= 1.0 + _DEMAND_NOISE * (2.0 * self._noise(tick, rg.key_h) - 1.0)
            d *= eff.demand_factor.get(rid, 1.0)
            demand[rid] = d
            failover = rg.spec.traffic.routing is RoutingPolicy.FAILOVER
            eff_w: dict[str, float] = {}
            for target, weight in rg.dns.items():
                dest = target
                if failover and target in down:
                    partner = self._regions[target].spec.failover_partner
                    if partner in self._regions and partner not in down:
                        dest = partner
                eff_w[dest] = eff_w.get(dest, 0.0) + weight
            for dest, share in eff_w.items():
                front[dest] += d * share / DNS_TOTAL
            effective[rid] = eff_w
        return _Loads(effects=eff, demand=demand, front=front, effective=effective)

    def _offered(self, wl: _Workload, loads: _Loads) -> float:
        """Requests per second offered to a workload (0 in a down region or a stopped environment)."""
        spec = wl.cluster
        if spec.environment is Environment.PROD:
            if spec.region in loads.effects.down_since:
                return 0.0
            return loads.front[spec.region] * wl.share
        if spec.name in self._stopped:
            return 0.0
        return wl.hpa_min * wl.service.rps_per_pod * _NONPROD_LOAD

    def _recommend(self, wl: _Workload, rps: float) -> int:
        want = math.ceil(rps / (wl.service.rps_per_pod * _HPA_TARGET)) if rps > 0 else 0
        return max(wl.hpa_min, min(wl.hpa_max, want))

    def _step(self, tick: int) -> None:
        """Advance the dynamic state to ``tick``: HPA, then the cluster autoscaler, then the figures."""
        loads = self._loads(tick)
        down = loads.effects.down_since
        hslot = tick % _HPA_WINDOW
        nslot = tick % _NODE_WINDOW
        for cl in self._clusters.values():
            spec = cl.spec
            if spec.region in down:
                continue  # unreachable: its controllers are frozen with it
            if spec.name in self._stopped:
                continue  # held at zero by set_cluster_stopped
            pods = 0
            for wl in cl.workloads:
                rec = self._recommend(wl, self._offered(wl, loads))
                wl.recs[hslot] = rec
                target = max(wl.recs)
                r = wl.replicas
                if target > r:
                    r = min(target, max(2 * r, r + _HPA_UP_PODS))
                elif target < r:
                    r = max(target, r - max(1, r // 10))
                r = max(wl.hpa_min, min(wl.hpa_max, r))
                wl.replicas = r
                pods += r
            need = max(cl.nodes_min, min(cl.nodes_max, -(-pods // spec.pods_per_node)))
            cl.needs[nslot] = need
            target = max(cl.needs)
            n = cl.nodes
            if target > n:
                n = min(target, n + _NODE_STEP_UP)
            elif target < n:
                n = max(target, n - _NODE_STEP_DOWN)
            cl.nodes = max(cl.nodes_min, min(cl.nodes_max, n))
        self._tick = tick
        self._prune(tick)
        self._out = self._evaluate(tick, loads)

    def _reset_steady(self, tick: int) -> _Out:
        """Put the dynamic state in its steady value for the load at ``tick`` (start and catch-up)."""
        self._tick = tick
        self._prune(tick)
        loads = self._loads(tick)
        down = loads.effects.down_since
        for cl in self._clusters.values():
            if cl.spec.region in down or cl.spec.name in self._stopped:
                continue
            pods = 0
            for wl in cl.workloads:
                rec = self._recommend(wl, self._offered(wl, loads))
                wl.replicas = rec
                wl.recs = [rec] * _HPA_WINDOW
                pods += rec
            need = max(cl.nodes_min, min(cl.nodes_max, -(-pods // cl.spec.pods_per_node)))
            cl.nodes = need
            cl.needs = [need] * _NODE_WINDOW
        out = self._evaluate(tick, loads)
        for rg in self._regions.values():
            slot = tick % _ERR_1H
            rg.req = [rg.req[slot]] * _ERR_1H
            rg.err = [rg.err[slot]] * _ERR_1H
        return out

    def _prune(self, tick: int) -> None:
        """Forget incidents whose effects ended more than an hour ago (keeps the state small)."""
        keep = [
            i for i in self._incidents if i.end_tick + lingering_ticks(i, TICK_S) + _CATCHUP_TICKS >= tick
        ]
        if len(keep) != len(self._incidents):
            self._incidents = keep

    def _refresh(self) -> None:
        """Re-evaluate the current tick after a change, without moving the scalers."""
        self._out = self._evaluate(self._tick, self._loads(self._tick))

    def _evaluate(self, tick: int, loads: _Loads) -> _Out:
        """Figures of ``tick`` from the state: ready pods, utilisation, latency, errors.

        Workload: utilisation u = rps / (ready × rps_per_pod); p95 = base × (1 + k·u'/(1−u')) with
        u' = min(u, 0.97), plus a penalty proportional to the pending fraction, plus any latency
        spike; errors = base rate + the share of requests above capacity + a little above 90 % CPU.
        Region (front door): the same on the aggregated gateway pool, errors over all its services.
        """
        eff = loads.effects
        down = eff.down_since
        wouts: dict[str, _WorkloadOut] = {}
        for cl in self._clusters.values():
            spec = cl.spec
            region = self._regions[spec.region]
            base = region.spec.traffic.base_latency_ms
            add = eff.latency_add_ms.get(spec.region, 0.0)
            if spec.region in down:
                worst = base * (1.0 + _LATENCY_K * _U_CAP / (1.0 - _U_CAP)) + add
                for wl in cl.workloads:
                    wouts[wl.key] = _WorkloadOut(p95_ms=worst, error_rate=1.0, utilisation=0.0)
                continue
            if spec.name in self._stopped:
                for wl in cl.workloads:
                    wouts[wl.key] = _WorkloadOut()
                continue
            capacity = cl.nodes * spec.pods_per_node
            total = sum(wl.replicas for wl in cl.workloads)
            readies = self._fit(cl, capacity, total)
            for wl, ready in zip(cl.workloads, readies, strict=True):
                rps = self._offered(wl, loads)
                cap_rps = ready * wl.service.rps_per_pod
                u = rps / cap_rps if cap_rps > 0 else (math.inf if rps > 0 else 0.0)
                uc = min(u, _U_CAP)
                wbase = base if wl.gateway else base * _NON_GATEWAY_LATENCY
                pending = wl.replicas - ready
                jitter = 1.0 + 0.06 * (self._noise(tick, wl.key_h) - 0.5)
                p95 = wbase * (1.0 + _LATENCY_K * uc / (1.0 - uc)) * jitter
                p95 += wbase * _PENDING_PENALTY * pending / wl.replicas if wl.replicas else 0.0
                overflow = max(0.0, 1.0 - cap_rps / rps) if rps > 0 else 0.0
                err = _BASE_ERROR + overflow + 0.01 * max(0.0, (uc - 0.9) / (_U_CAP - 0.9))
                wouts[wl.key] = _WorkloadOut(
                    rps=rps,
                    ready=ready,
                    pending=pending,
                    utilisation=u,
                    p95_ms=p95 + add,
                    error_rate=min(1.0, err),
                )
        routs: dict[str, _RegionOut] = {}
        slot = tick % _ERR_1H
        for rid, rg in self._regions.items():
            front = loads.front[rid]
            base = rg.spec.traffic.base_latency_ms
            add = eff.latency_add_ms.get(rid, 0.0)
            ro = _RegionOut(demand=loads.demand[rid], front=front, effective=loads.effective[rid])
            if rid in down:
                ro.down = True
                ro.utilisation = 0.0
                ro.p95_ms = base * (1.0 + _LATENCY_K * _U_CAP / (1.0 - _U_CAP)) + add
                ro.error_frac = 1.0 if front > 0 else 0.0
            else:
                g_rps = g_cap = 0.0
                pending = replicas = 0
                svc_rps: dict[str, float] = {}
                svc_cap: dict[str, float] = {}
                for cl in rg.prod_clusters:
                    for wl in cl.workloads:
                        wo = wouts[wl.key]
                        cap = wo.ready * wl.service.rps_per_pod
                        name = wl.service.name
                        svc_rps[name] = svc_rps.get(name, 0.0) + wo.rps
                        svc_cap[name] = svc_cap.get(name, 0.0) + cap
                        pending += wo.pending
                        replicas += wl.replicas
                        if wl.gateway:
                            g_rps += wo.rps
                            g_cap += cap
                u = g_rps / g_cap if g_cap > 0 else (math.inf if g_rps > 0 else 0.0)
                uc = min(u, _U_CAP)
                jitter = 1.0 + 0.06 * (self._noise(tick, rg.key_h ^ 0x5A5A) - 0.5)
                p95 = base * (1.0 + _LATENCY_K * uc / (1.0 - uc)) * jitter
                if replicas:
                    p95 += base * _PENDING_PENALTY * pending / replicas
                overflow = max(
                    (max(0.0, 1.0 - svc_cap[s] / r) for s, r in svc_rps.items() if r > 0), default=0.0
                )
                base_err = _BASE_ERROR * (0.5 + self._noise(tick, rg.key_h ^ 0xE4E4))
                err = base_err + overflow + 0.01 * max(0.0, (uc - 0.9) / (_U_CAP - 0.9))
                ro.utilisation = u
                ro.p95_ms = p95 + add
                ro.error_frac = min(1.0, err)
            rg.req[slot] = front
            rg.err[slot] = front * ro.error_frac
            routs[rid] = ro
        return _Out(tick=tick, loads=loads, regions=routs, workloads=wouts)

    @staticmethod
    def _fit(cl: _Cluster, capacity: int, total: int) -> list[int]:
        """Ready pods per workload when ``total`` pods compete for ``capacity`` slots (proportional)."""
        if total <= capacity:
            return [wl.replicas for wl in cl.workloads]
        readies = [wl.replicas * capacity // total for wl in cl.workloads]
        left = capacity - sum(readies)
        for i, wl in enumerate(cl.workloads):
            if left <= 0:
                break
            if readies[i] < wl.replicas:
                readies[i] += 1
                left -= 1
        return readies

    # -- lookups with clear errors ----------------------------------------------------------------

    def _region(self, region: str) -> _Region:
        try:
            return self._regions[region]
        except KeyError:
            valid = ", ".join(self._regions)
            raise UsageError(f"unknown region {region!r}; valid regions: {valid}") from None

    def _cluster(self, cluster: str) -> _Cluster:
        try:
            return self._clusters[cluster]
        except KeyError:
            valid = ", ".join(self._clusters)
            raise UsageError(f"unknown cluster {cluster!r}; valid clusters: {valid}") from None

    def _workload(self, cluster: str, service: str) -> _Workload:
        cl = self._cluster(cluster)
        wl = self._workloads.get(f"{cluster}/{service}")
        if wl is None:
            valid = ", ".join(w.service.name for w in cl.workloads)
            raise UsageError(
                f"service {service!r} does not run in cluster {cluster!r} "
                f"({cl.spec.environment.value}); services there: {valid}"
            )
        return wl

    # -- incidents --------------------------------------------------------------------------------

    def trigger_incident(
        self,
        kind: str | IncidentKind,
        region: str,
        *,
        duration: float | timedelta = DEFAULT_DURATION_S,
        cluster: str | None = None,
    ) -> Incident:
        """Start an incident now, for ``duration`` (sim seconds or a timedelta; default 30 min).

        ``cluster`` is for ``node_pool_loss`` only (default: the region's largest prod cluster).

        Raises:
            UsageError: unknown kind (lists the valid ones), unknown region or cluster, a cluster
                outside the region, a cluster given for another kind, or a non-positive duration.
        """
        k = parse_kind(kind)
        self._region(region)
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
        if not math.isfinite(seconds) or seconds <= 0:
            raise UsageError(f"incident duration must be a positive number of seconds, got {duration!r}")
        target: _Cluster | None = None
        if k is IncidentKind.NODE_POOL_LOSS:
            if cluster is None:
                prod = self._regions[region].prod_clusters
                if not prod:
                    raise UsageError(f"region {region!r} has no prod cluster to lose a node pool in")
                target = max(prod, key=lambda c: (c.spec.capacity_weight, c.spec.name))
            else:
                target = self._cluster(cluster)
                if target.spec.region != region:
                    raise UsageError(
                        f"cluster {cluster!r} is in region {target.spec.region!r}, not {region!r}"
                    )
        elif cluster is not None:
            raise UsageError(f"a cluster can only be given for node_pool_loss, not for {k.value}")
        self._incident_seq += 1
        inc_id = f"inc-{self._incident_seq}"
        magnitude = 0.0
        if k is IncidentKind.LATENCY_SPIKE:
            lo, hi = LATENCY_SPIKE_MS
            magnitude = lo + (hi - lo) * self._noise(self._tick, _key_hash("incident/" + inc_id))
        if target is not None and target.spec.name not in self._stopped:
            lost = round(target.nodes * NODE_POOL_LOSS_FRACTION)
            # The fleet-wide 1-node floor holds; the cluster may dip below its own minimum until the
            # autoscaler (which always wants at least nodes_min) rebuilds it.
            remaining = max(self._fleet.bounds.cluster_nodes.min, target.nodes - lost)
            magnitude = float(target.nodes - remaining)
            target.nodes = remaining
        inc = Incident(
            id=inc_id,
            kind=k,
            region=region,
            start_tick=self._tick,
            end_tick=self._tick + max(1, math.ceil(seconds / TICK_S)),
            cluster=None if target is None else target.spec.name,
            magnitude=magnitude,
        )
        self._incidents.append(inc)
        self._refresh()
        return inc

    def clear_incident(self, incident_id: str) -> Incident:
        """End an active incident now. Raises :class:`UsageError` if it is unknown or already over."""
        for i, inc in enumerate(self._incidents):
            if inc.id == incident_id:
                if not inc.active_at(self._tick):
                    raise UsageError(f"incident {incident_id} is already over")
                ended = Incident(
                    id=inc.id,
                    kind=inc.kind,
                    region=inc.region,
                    start_tick=inc.start_tick,
                    end_tick=self._tick,
                    cluster=inc.cluster,
                    magnitude=inc.magnitude,
                    cleared=True,
                )
                self._incidents[i] = ended
                self._refresh()
                return ended
        active = ", ".join(i.id for i in self.incidents()) or "none"
        raise UsageError(f"unknown incident {incident_id!r}; active incidents: {active}")

    def clear_incidents(self, region: str | None = None) -> int:
        """End every active incident (or only ``region``'s) now; returns how many were ended."""
        if region is not None:
            self._region(region)
        ids = [i.id for i in self.incidents() if region is None or i.region == region]
        for inc_id in ids:
            self.clear_incident(inc_id)
        return len(ids)

    # -- desired-state changes ------------------------------------------------------------------

    def set_replicas(self, cluster: str, service: str, replicas: int) -> None:
        """Scale a workload by hand. The HPA keeps at least this many for its 5 min stabilisation
        window, then follows the load again (as a manual scale of an HPA-managed deployment does).
        """
        wl = self._workload(cluster, service)
        if wl.cluster.name in self._stopped:
            raise UsageError(
                f"environment {wl.cluster.environment.value} is stopped in {wl.cluster.name}; "
                f"start it before scaling {wl.key}"
            )
        if not _is_int(replicas) or not wl.hpa_min <= replicas <= wl.hpa_max:
            raise UsageError(
                f"replicas for {wl.key} must be an integer within its HPA bounds "
                f"{wl.hpa_min}-{wl.hpa_max}, got {replicas!r}"
            )
        wl.replicas = replicas
        wl.recs = [replicas] * _HPA_WINDOW
        self._refresh()

    def set_hpa_bounds(self, cluster: str, service: str, min_replicas: int, max_replicas: int) -> None:
        """Change a workload's HPA min/max (within the fleet's HPA bounds); replicas are clamped now."""
        wl = self._workload(cluster, service)
        fb = self._fleet.bounds.hpa_pods
        if not (_is_int(min_replicas) and _is_int(max_replicas)):
            raise UsageError(f"HPA bounds must be integers, got {min_replicas!r}-{max_replicas!r}")
        if min_replicas not in fb or max_replicas not in fb or min_replicas > max_replicas:
            raise UsageError(
                f"HPA bounds for {wl.key} must satisfy {fb.min} <= min <= max <= {fb.max}, "
                f"got {min_replicas}-{max_replicas}"
            )
        wl.hpa_min, wl.hpa_max = min_replicas, max_replicas
        if wl.cluster.name in self._stopped:
            if wl.remembered is not None:
                wl.remembered = max(min_replicas, min(max_replicas, wl.remembered))
        else:
            wl.replicas = max(min_replicas, min(max_replicas, wl.replicas))
        self._refresh()

    def set_cluster_node_bounds(self, cluster: str, min_nodes: int, max_nodes: int) -> None:
        """Change a cluster's autoscaler min/max (within the fleet's node bounds); nodes are clamped now."""
        cl = self._cluster(cluster)
        fb = self._fleet.bounds.cluster_nodes
        if not (_is_int(min_nodes) and _is_int(max_nodes)):
            raise UsageError(f"node bounds must be integers, got {min_nodes!r}-{max_nodes!r}")
        if min_nodes not in fb or max_nodes not in fb or min_nodes > max_nodes:
            raise UsageError(
                f"node bounds for {cluster} must satisfy {fb.min} <= min <= max <= {fb.max}, "
                f"got {min_nodes}-{max_nodes}"
            )
        cl.nodes_min, cl.nodes_max = min_nodes, max_nodes
        if cl.spec.name in self._stopped:
            if cl.remembered is not None:
                cl.remembered = max(min_nodes, min(max_nodes, cl.remembered))
        else:
            cl.nodes = max(min_nodes, min(max_nodes, cl.nodes))
        self._refresh()

    def set_dns_weights(self, region: str, weights: Mapping[str, int]) -> None:
        """Replace the record set that routes ``region``'s users: target region → integer weight.

        Weights must be non-negative integers over known regions summing to exactly 100; zero
        weights are dropped.
        """
        self._region(region)
        unknown = sorted(t for t in weights if t not in self._regions)
        if unknown:
            valid = ", ".join(self._regions)
            raise UsageError(f"unknown target region(s) {', '.join(unknown)} in DNS weights; valid: {valid}")
        bad = sorted(t for t, w in weights.items() if not _is_int(w) or w < 0)
        if bad:
            raise UsageError(f"DNS weights must be non-negative integers; bad weight for {', '.join(bad)}")
        total = sum(weights.values())
        if total != DNS_TOTAL:
            raise UsageError(f"DNS weights of {region} must sum to {DNS_TOTAL}, they sum to {total}")
        self._regions[region].dns = {t: int(w) for t, w in sorted(weights.items()) if w > 0}
        self._refresh()

    def promote_replica(self, region: str) -> None:
        """Make ``region``'s database a write primary (no upstream, no lag).

        If the primary it replicated from is down, that old primary and every region that replicated
        from it now replicate from the promoted region (a DR failover). If the old primary is up, it and
        its other replicas are left as they are (a planned split, e.g. adding a write region).

        Raises:
            UsageError: unknown region, already a write primary, or the region itself is down.
        """
        rg = self._region(region)
        if rg.db_role is DbRole.WRITE_PRIMARY:
            raise UsageError(f"the database in {region} is already a write primary")
        if self.is_down(region):
            raise UsageError(f"cannot promote the database in {region}: the region is down")
        old = rg.replicates_from
        rg.db_role = DbRole.WRITE_PRIMARY
        rg.replicates_from = None
        if old is not None and old in self._regions and self.is_down(old):
            for other in self._regions.values():
                if other.replicates_from == old:
                    other.replicates_from = region
            old_rg = self._regions[old]
            old_rg.db_role = DbRole.READ_REPLICA
            old_rg.replicates_from = region
        self._refresh()

    def set_environment_stopped(self, environment: Environment | str, stopped: bool) -> None:
        """Stop (0 replicas, 0 nodes) or start (back to the remembered sizes) a non-prod environment:
        :meth:`set_cluster_stopped` on each of its clusters.

        Idempotent (a partly stopped environment is completed). Raises :class:`UsageError` for prod or an
        unknown environment.
        """
        try:
            env = Environment(environment)
        except ValueError:
            valid = ", ".join(e.value for e in Environment)
            raise UsageError(f"unknown environment {environment!r}; valid: {valid}") from None
        if env is Environment.PROD:
            raise UsageError("the prod environment cannot be stopped")
        changed = False
        for cl in self._clusters.values():
            if cl.spec.environment is env:
                changed = self._stop_cluster(cl, stopped) or changed
        if changed:
            self._refresh()

    def set_cluster_stopped(self, cluster: str, stopped: bool) -> None:
        """Stop (0 replicas, 0 nodes: below the 1-node floor on purpose) or start (back to the sizes it had
        when stopped, clamped to its current bounds) one non-prod cluster, e.g. one region's share of an
        environment.

        Idempotent. Raises :class:`UsageError` for an unknown or a prod cluster.
        """
        cl = self._cluster(cluster)
        if cl.spec.environment is Environment.PROD:
            raise UsageError(f"{cluster} is a prod cluster: the prod environment cannot be stopped")
        if self._stop_cluster(cl, stopped):
            self._refresh()

    def _stop_cluster(self, cl: _Cluster, stopped: bool) -> bool:
        """Stop or start ``cl`` (no refresh); whether anything changed."""
        name = cl.spec.name
        if stopped == (name in self._stopped):
            return False
        if stopped:
            cl.remembered = cl.nodes
            cl.nodes = 0
            for wl in cl.workloads:
                wl.remembered = wl.replicas
                wl.replicas = 0
            self._stopped.add(name)
        else:
            back = cl.nodes_min if cl.remembered is None else cl.remembered
            cl.nodes = max(cl.nodes_min, min(cl.nodes_max, back))
            cl.needs = [cl.nodes] * _NODE_WINDOW
            cl.remembered = None
            for wl in cl.workloads:
                rback = wl.hpa_min if wl.remembered is None else wl.remembered
                wl.replicas = max(wl.hpa_min, min(wl.hpa_max, rback))
                wl.recs = [wl.replicas] * _HPA_WINDOW
                wl.remembered = None
            self._stopped.discard(name)
        return True

    def set_read_replicas(self, region: str, count: int) -> None:
        """Set the number of read replicas of ``region``'s database (within the fleet bounds)."""
        rg = self._region(region)
        fb = self._fleet.bounds.read_replicas
        if not _is_int(count) or count not in fb:
            raise UsageError(
                f"read replicas for {region} must be an integer in {fb.min}-{fb.max}, got {count!r}"
            )
        rg.read_replicas = count
        self._refresh()

    def set_cache_nodes(self, region: str, count: int) -> None:
        """Set the number of Redis nodes of ``region`` (within the fleet bounds)."""
        rg = self._region(region)
        fb = self._fleet.bounds.redis_nodes
        if not _is_int(count) or count not in fb:
            raise UsageError(
                f"Redis nodes for {region} must be an integer in {fb.min}-{fb.max}, got {count!r}"
            )
        rg.cache_nodes = count
        self._refresh()

    # -- observation ------------------------------------------------------------------------------

    def observe(self) -> list[FleetRecord]:
        """Every record of the fleet at the current sim time, stamped source ``"sim"``.

        Per region: RegionTraffic, DnsRecordSet, DatabaseState, CacheState; per cluster: ClusterState
        followed by one WorkloadState per service of the cluster's environment.
        """
        at = self.now
        out = self._out
        tick = out.tick
        eff = out.loads.effects
        down = eff.down_since
        records: list[FleetRecord] = []
        active = [i for i in self._incidents if i.active_at(tick)]
        for rid, rg in self._regions.items():
            ro = out.regions[rid]
            rspec = rg.spec
            e5, e1h = self._error_rates(rg, tick)
            region_incidents = [i.id for i in active if i.region == rid]
            records.append(
                RegionTraffic(
                    source=SOURCE_NAME,
                    observed_at=at,
                    region=rid,
                    rps=ro.front,
                    avg_latency_ms=0.45 * ro.p95_ms,
                    p95_ms=ro.p95_ms,
                    p99_ms=1.6 * ro.p95_ms,
                    error_rate=e5,
                    error_rate_1h=e1h,
                    concurrent_users=int(ro.front * _USERS_PER_RPS),
                    health_check_ok=not ro.down,
                    extra={
                        "demand_rps": ro.demand,
                        "gateway_utilisation": min(ro.utilisation, 99.0),
                        "incidents": region_incidents,
                    },
                )
            )
            failed_over = {t: d for t, d in ((t, self._failover_dest(rid, t, down)) for t in rg.dns) if d}
            records.append(
                DnsRecordSet(
                    source=SOURCE_NAME,
                    observed_at=at,
                    region=rid,
                    routing=rspec.traffic.routing,
                    weights=dict(rg.dns),
                    extra={
                        "total": DNS_TOTAL,
                        "effective": {t: int(w) for t, w in sorted(ro.effective.items())},
                        "failed_over": failed_over,
                    },
                )
            )
            records.append(self._database_record(rg, ro, tick, eff, at))
            load_ratio = self._load_ratio(rg, ro)
            hit = 0.93 + 0.01 * (rg.cache_nodes - rspec.cache.nodes)
            hit += 0.03 * (self._noise(tick, rg.key_h ^ 0xCAC4E) - 0.5)
            hit -= 0.03 * min(1.0, max(0.0, load_ratio - 1.0))
            records.append(
                CacheState(
                    source=SOURCE_NAME,
                    observed_at=at,
                    region=rid,
                    nodes=rg.cache_nodes,
                    healthy_nodes=0 if ro.down else rg.cache_nodes,
                    hit_ratio=round(max(0.85, min(0.97, hit)), 4),
                )
            )
        for cl in self._clusters.values():
            cspec = cl.spec
            is_down = cspec.region in down
            stopped = cspec.name in self._stopped
            rest = max(0, cl.nodes - cspec.reserved_nodes)
            spot = int(rest * cspec.spot_ratio + 0.5)
            wos = [out.workloads[wl.key] for wl in cl.workloads]
            records.append(
                ClusterState(
                    source=SOURCE_NAME,
                    observed_at=at,
                    cluster=cspec.name,
                    region=cspec.region,
                    cloud=cspec.cloud,
                    environment=cspec.environment,
                    nodes=cl.nodes,
                    ready_nodes=0 if is_down else cl.nodes,
                    nodes_min=cl.nodes_min,
                    nodes_max=cl.nodes_max,
                    reserved_nodes=min(cl.nodes, cspec.reserved_nodes),
                    spot_nodes=spot,
                    on_demand_nodes=rest - spot,
                    extra={
                        "pods": sum(wl.replicas for wl in cl.workloads),
                        "pending_pods": sum(w.pending for w in wos),
                        "capacity_pods": cl.nodes * cspec.pods_per_node,
                        "stopped": stopped,
                        "reachable": not is_down,
                    },
                )
            )
            for wl, wo in zip(cl.workloads, wos, strict=True):
                records.append(
                    WorkloadState(
                        source=SOURCE_NAME,
                        observed_at=at,
                        cluster=cspec.name,
                        region=cspec.region,
                        service=wl.service.name,
                        environment=cspec.environment,
                        desired=wl.replicas,
                        ready=wo.ready,
                        hpa_min=wl.hpa_min,
                        hpa_max=wl.hpa_max,
                        cpu_utilisation=min(1.0, wo.utilisation),
                        p95_ms=wo.p95_ms,
                        error_rate=wo.error_rate,
                        rps=wo.rps,
                        pending_pods=wo.pending,
                        extra={"utilisation": min(wo.utilisation, 99.0), "stopped": stopped},
                    )
                )
        return records

    def _failover_dest(self, rid: str, target: str, down: Mapping[str, int]) -> str | None:
        rg = self._regions[rid]
        if rg.spec.traffic.routing is not RoutingPolicy.FAILOVER or target not in down:
            return None
        partner = self._regions[target].spec.failover_partner
        return partner if partner in self._regions and partner not in down else None

    @staticmethod
    def _error_rates(rg: _Region, tick: int) -> tuple[float, float]:
        """Request-weighted error rates over the last 5 min and the last hour of ticks."""
        slots = [(tick - i) % _ERR_1H for i in range(_ERR_5M)]
        req5 = sum(rg.req[s] for s in slots)
        err5 = sum(rg.err[s] for s in slots)
        req1h = sum(rg.req)
        err1h = sum(rg.err)
        e5 = min(1.0, err5 / req5) if req5 > 0 else 0.0
        e1h = min(1.0, err1h / req1h) if req1h > 0 else 0.0
        return e5, e1h

    def _load_ratio(self, rg: _Region, ro: _RegionOut) -> float:
        nominal = self._global_peak * rg.spec.traffic.demand_share
        return ro.front / nominal if nominal > 0 else 0.0

    def _database_record(
        self, rg: _Region, ro: _RegionOut, tick: int, eff: IncidentEffects, at: datetime
    ) -> DatabaseState:
        """Replica lag: 0.2–3 s of noise, plus runaway incidents on the region or its primary, plus the
        time since the primary went down. Query p95 ~20–45 ms at peak, rising with load and falling
        with more read replicas. tps ∝ front-door load (≈ Targets.db_tps at the global peak).
        """
        rid = rg.spec.id
        down = eff.down_since
        primary = rg.replicates_from
        lag = 0.0
        primary_down = False
        if rg.db_role is DbRole.READ_REPLICA:
            lag = 0.2 + 2.8 * self._noise(tick, rg.key_h ^ 0x1A6)
            lag += eff.lag_add_s.get(rid, 0.0)
            if primary is not None:
                lag += eff.lag_add_s.get(primary, 0.0)
                if primary in down:
                    primary_down = True
                    lag += (tick - down[primary]) * TICK_S
        available = rid not in down
        targets = self._fleet.targets
        tps = ro.front * targets.db_tps / targets.api_rps if available and targets.api_rps > 0 else 0.0
        load_ratio = self._load_ratio(rg, ro)
        p95 = (20.0 + 25.0 * min(load_ratio, 4.0)) * math.sqrt(
            (rg.spec.database.read_replicas + 1) / (rg.read_replicas + 1)
        )
        p95 *= 0.95 + 0.1 * self._noise(tick, rg.key_h ^ 0xDB95)
        return DatabaseState(
            source=SOURCE_NAME,
            observed_at=at,
            region=rid,
            role=rg.db_role,
            replicates_from=primary,
            read_replicas=rg.read_replicas,
            replica_lag_s=round(lag, 3),
            query_p95_ms=round(p95, 3) if available else 0.0,
            tps=tps,
            available=available,
            storage_tb=float(rg.spec.database.storage_tb),
            extra={"primary_down": primary_down, "spec_role": rg.spec.database.role.value},
        )

    # -- persistence ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The full state as JSON-serialisable data (exact round trip through :meth:`from_dict`)."""
        return {
            "version": STATE_VERSION,
            "fingerprint": fleet_fingerprint(self._fleet),
            "seed": self._seed,
            "now_us": self._now_us,
            "tick": self._tick,
            "stopped": sorted(e.value for e in self.stopped_environments),
            "stopped_clusters": sorted(self._stopped),
            "incident_seq": self._incident_seq,
            "incidents": [i.to_dict() for i in self._incidents],
            "regions": {
                rid: {
                    "dns": dict(rg.dns),
                    "db_role": rg.db_role.value,
                    "replicates_from": rg.replicates_from,
                    "read_replicas": rg.read_replicas,
                    "cache_nodes": rg.cache_nodes,
                    "req": list(rg.req),
                    "err": list(rg.err),
                }
                for rid, rg in self._regions.items()
            },
            "clusters": {
                name: {
                    "nodes": cl.nodes,
                    "nodes_min": cl.nodes_min,
                    "nodes_max": cl.nodes_max,
                    "needs": list(cl.needs),
                    "remembered": cl.remembered,
                }
                for name, cl in self._clusters.items()
            },
            "workloads": {
                key: {
                    "replicas": wl.replicas,
                    "hpa_min": wl.hpa_min,
                    "hpa_max": wl.hpa_max,
                    "recs": list(wl.recs),
                    "remembered": wl.remembered,
                }
                for key, wl in self._workloads.items()
            },
        }

    @classmethod
    def from_dict(cls, fleet: Fleet, data: Mapping[str, Any]) -> World:
        """Restore a world saved by :meth:`to_dict` for the same fleet.

        Raises:
            SandboxError: the data is for another fleet (fingerprint mismatch), another layout
                version, or is malformed.
        """
        try:
            version = data["version"]
            fingerprint = data["fingerprint"]
        except (KeyError, TypeError) as exc:
            raise SandboxError(f"sandbox state is malformed: missing {exc}") from None
        if version != STATE_VERSION:
            raise SandboxError(f"sandbox state has layout version {version!r}, expected {STATE_VERSION}")
        if fingerprint != fleet_fingerprint(fleet):
            raise SandboxError(
                "sandbox state was built for a different fleet (the inventory's regions, clusters or "
                "services changed)"
            )
        try:
            world = cls.__new__(cls)  # no steady-state warm-up: _load overwrites every dynamic field
            world._setup(fleet, int(data["seed"]), _from_us(int(data["now_us"])))
            world._load(data)
        except SandboxError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise SandboxError(f"sandbox state is malformed: {type(exc).__name__}: {exc}") from None
        return world

    def _load(self, data: Mapping[str, Any]) -> None:
        self._now_us = int(data["now_us"])
        self._tick = int(data["tick"])
        if self._tick != self._now_us // _TICK_US:
            raise ValueError("tick does not match now_us")
        if "stopped_clusters" in data:
            self._stopped = {str(c) for c in data["stopped_clusters"]}
        else:  # saved before clusters could be stopped one by one: whole environments
            envs = {Environment(e) for e in data["stopped"]}
            self._stopped = {n for n, c in self._clusters.items() if c.spec.environment in envs}
        if not self._stopped <= set(self._clusters):
            raise ValueError("stopped clusters differ from the fleet")
        self._incident_seq = int(data["incident_seq"])
        self._incidents = [Incident.from_dict(i) for i in data["incidents"]]
        regions = data["regions"]
        clusters = data["clusters"]
        workloads = data["workloads"]
        if set(regions) != set(self._regions) or set(clusters) != set(self._clusters):
            raise ValueError("regions or clusters differ from the fleet")
        if set(workloads) != set(self._workloads):
            raise ValueError("workloads differ from the fleet")
        for rid, rg in self._regions.items():
            r = regions[rid]
            rg.dns = {str(t): int(w) for t, w in _items(r["dns"])}
            rg.db_role = DbRole(r["db_role"])
            rg.replicates_from = None if r["replicates_from"] is None else str(r["replicates_from"])
            rg.read_replicas = int(r["read_replicas"])
            rg.cache_nodes = int(r["cache_nodes"])
            rg.req = _floats(r["req"], _ERR_1H)
            rg.err = _floats(r["err"], _ERR_1H)
        for name, cl in self._clusters.items():
            c = clusters[name]
            cl.nodes = int(c["nodes"])
            cl.nodes_min = int(c["nodes_min"])
            cl.nodes_max = int(c["nodes_max"])
            cl.needs = _ints(c["needs"], _NODE_WINDOW)
            cl.remembered = None if c["remembered"] is None else int(c["remembered"])
        for key, wl in self._workloads.items():
            w = workloads[key]
            wl.replicas = int(w["replicas"])
            wl.hpa_min = int(w["hpa_min"])
            wl.hpa_max = int(w["hpa_max"])
            wl.recs = _ints(w["recs"], _HPA_WINDOW)
            wl.remembered = None if w["remembered"] is None else int(w["remembered"])
        self._refresh()


def _items(value: Any) -> Iterable[tuple[Any, Any]]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a mapping, got {type(value).__name__}")
    return value.items()


def _floats(value: Any, length: int) -> list[float]:
    if not isinstance(value, list) or len(value) != length:
        raise ValueError(f"expected a list of {length} numbers")
    return [float(v) for v in value]


def _ints(value: Any, length: int) -> list[int]:
    if not isinstance(value, list) or len(value) != length:
        raise ValueError(f"expected a list of {length} integers")
    return [int(v) for v in value]
