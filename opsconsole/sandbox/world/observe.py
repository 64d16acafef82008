"""What the sandbox world looks like from outside: the records the sim source and the emulators publish.

Why this module exists: the rest of opsconsole never sees the world's state, only the same observed
records the real sources return (:mod:`opsconsole.core.fleet.model`). This module builds them from a
:class:`~opsconsole.sandbox.world.entities.SimState` and its current figures, one named step per record kind,
and derives the few figures that only exist as observations (error-rate windows, replica lag, query
latency, cache hit ratio). It changes nothing in the state.

How to use it::

    records = observe(state, at=from_us(state.now_us))   # what World.observe returns
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

from opsconsole.core.fleet.model import (
    CacheState,
    ClusterState,
    DatabaseState,
    DbRole,
    DnsRecordSet,
    FleetRecord,
    RegionTraffic,
    RoutingPolicy,
    WorkloadState,
)
from opsconsole.sandbox.world.entities import (
    DNS_TOTAL,
    ERR_1H,
    ERR_5M,
    RegionOut,
    SimCluster,
    SimRegion,
    SimState,
)
from opsconsole.sandbox.world.ticks import TICK_S

__all__ = ["SOURCE_NAME", "observe"]

#: The ``source`` of every record the sandbox world publishes.
SOURCE_NAME = "sim"
_USERS_PER_RPS = 10


def observe(s: SimState, at: datetime) -> list[FleetRecord]:
    """Every record of the fleet at the current tick, stamped ``at`` and source ``"sim"``.

    Per region: RegionTraffic, DnsRecordSet, DatabaseState, CacheState; per cluster: ClusterState
    followed by one WorkloadState per service of the cluster's environment.
    """
    records: list[FleetRecord] = []
    for rg in s.regions.values():
        records += _region_records(s, rg, at)
    for cl in s.clusters.values():
        records += _cluster_records(s, cl, at)
    return records


def _region_records(s: SimState, rg: SimRegion, at: datetime) -> list[FleetRecord]:
    ro = s.out.regions[rg.spec.id]
    return [
        _region_traffic(s, rg, ro, at),
        _dns_record(s, rg, ro, at),
        _database_record(s, rg, ro, at),
        _cache_record(s, rg, ro, at),
    ]


#: A front door's mean latency as a share of its p95: a long-tailed (log-normal, sigma ~1) request
#: latency, as web services show. The calm seed fleet (p95 115-160 ms through the day) then averages
#: 35-48 ms, inside the seed's 50 ms regional target, as the fleet was designed to; a latency incident
#: pushes both over.
_AVG_OF_P95 = 0.30


def _region_traffic(s: SimState, rg: SimRegion, ro: RegionOut, at: datetime) -> RegionTraffic:
    """The front door: rps, latency percentiles, error-rate windows, and the region's active incidents."""
    tick = s.out.tick
    rid = rg.spec.id
    e5, e1h = _error_rates(rg, tick)
    return RegionTraffic(
        source=SOURCE_NAME,
        observed_at=at,
        region=rid,
        rps=ro.front,
        avg_latency_ms=_AVG_OF_P95 * ro.p95_ms,
        p95_ms=ro.p95_ms,
        p99_ms=1.6 * ro.p95_ms,
        error_rate=e5,
        error_rate_1h=e1h,
        concurrent_users=int(ro.front * _USERS_PER_RPS),
        health_check_ok=not ro.down,
        extra={
            "demand_rps": ro.demand,
            "gateway_utilisation": min(ro.utilisation, 99.0),
            "incidents": [i.id for i in s.incidents if i.active_at(tick) and i.region == rid],
        },
    )


def _dns_record(s: SimState, rg: SimRegion, ro: RegionOut, at: datetime) -> DnsRecordSet:
    """The record set as written, plus where it effectively sends users (after DNS failover)."""
    rid = rg.spec.id
    down = s.out.loads.effects.down_since
    failed_over = {t: d for t, d in ((t, _failover_dest(s, rid, t, down)) for t in rg.dns) if d}
    return DnsRecordSet(
        source=SOURCE_NAME,
        observed_at=at,
        region=rid,
        routing=rg.spec.traffic.routing,
        weights=dict(rg.dns),
        extra={
            "total": DNS_TOTAL,
            "effective": {t: int(w) for t, w in sorted(ro.effective.items())},
            "failed_over": failed_over,
        },
    )


def _database_record(s: SimState, rg: SimRegion, ro: RegionOut, at: datetime) -> DatabaseState:
    """Replica lag: 0.2–3 s of noise, plus runaway incidents on the region or its primary, plus the
    time since the primary went down. Query p95 ~20–45 ms at peak, rising with load and falling
    with more read replicas. tps ∝ front-door load (≈ Targets.db_tps at the global peak).
    """
    tick = s.out.tick
    eff = s.out.loads.effects
    rid = rg.spec.id
    down = eff.down_since
    primary = rg.replicates_from
    lag = 0.0
    primary_down = False
    if rg.db_role is DbRole.READ_REPLICA:
        lag = 0.2 + 2.8 * s.noise(tick, rg.key_h ^ 0x1A6)
        lag += eff.lag_add_s.get(rid, 0.0)
        if primary is not None:
            lag += eff.lag_add_s.get(primary, 0.0)
            if primary in down:
                primary_down = True
                lag += (tick - down[primary]) * TICK_S
    available = rid not in down
    targets = s.fleet.targets
    tps = ro.front * targets.db_tps / targets.api_rps if available and targets.api_rps > 0 else 0.0
    load_ratio = _load_ratio(s, rg, ro)
    p95 = (20.0 + 25.0 * min(load_ratio, 4.0)) * math.sqrt(
        (rg.spec.database.read_replicas + 1) / (rg.read_replicas + 1)
    )
    p95 *= 0.95 + 0.1 * s.noise(tick, rg.key_h ^ 0xDB95)
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


def _cache_record(s: SimState, rg: SimRegion, ro: RegionOut, at: datetime) -> CacheState:
    """Redis: hit ratio ~93 %, up a point per node above the spec, down under overload (0.85–0.97)."""
    hit = 0.93 + 0.01 * (rg.cache_nodes - rg.spec.cache.nodes)
    hit += 0.03 * (s.noise(s.out.tick, rg.key_h ^ 0xCAC4E) - 0.5)
    hit -= 0.03 * min(1.0, max(0.0, _load_ratio(s, rg, ro) - 1.0))
    return CacheState(
        source=SOURCE_NAME,
        observed_at=at,
        region=rg.spec.id,
        nodes=rg.cache_nodes,
        healthy_nodes=0 if ro.down else rg.cache_nodes,
        hit_ratio=round(max(0.85, min(0.97, hit)), 4),
    )


def _cluster_records(s: SimState, cl: SimCluster, at: datetime) -> list[FleetRecord]:
    """A ClusterState (nodes split reserved / spot / on-demand, pods) then one WorkloadState per service."""
    cspec = cl.spec
    is_down = cspec.region in s.out.loads.effects.down_since
    stopped = cspec.name in s.stopped
    rest = max(0, cl.nodes - cspec.reserved_nodes)
    spot = int(rest * cspec.spot_ratio + 0.5)
    wos = [s.out.workloads[wl.key] for wl in cl.workloads]
    records: list[FleetRecord] = [
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
    ]
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


def _failover_dest(s: SimState, rid: str, target: str, down: Mapping[str, int]) -> str | None:
    """Where a FAILOVER record set sends ``target``'s share while ``target`` is down (None: nowhere else)."""
    rg = s.regions[rid]
    if rg.spec.traffic.routing is not RoutingPolicy.FAILOVER or target not in down:
        return None
    partner = s.regions[target].spec.failover_partner
    return partner if partner in s.regions and partner not in down else None


def _error_rates(rg: SimRegion, tick: int) -> tuple[float, float]:
    """Request-weighted error rates over the last 5 min and the last hour of ticks."""
    slots = [(tick - i) % ERR_1H for i in range(ERR_5M)]
    req5 = sum(rg.req[s] for s in slots)
    err5 = sum(rg.err[s] for s in slots)
    req1h = sum(rg.req)
    err1h = sum(rg.err)
    e5 = min(1.0, err5 / req5) if req5 > 0 else 0.0
    e1h = min(1.0, err1h / req1h) if req1h > 0 else 0.0
    return e5, e1h


def _load_ratio(s: SimState, rg: SimRegion, ro: RegionOut) -> float:
    """Front-door rps relative to the region's nominal peak."""
    nominal = s.global_peak * rg.spec.traffic.demand_share
    return ro.front / nominal if nominal > 0 else 0.0
