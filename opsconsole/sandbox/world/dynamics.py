"""How the sandbox world moves on its own: traffic, DNS routing, HPA, autoscaler, latency and errors.

Why this module exists: this is the model, and only the model. Given a
:class:`~opsconsole.sandbox.world.entities.SimState` it computes the demand of each region, where DNS sends
it, how the HPA and the cluster autoscaler react tick by tick, and the resulting figures (ready pods,
utilisation, p95, error rates) that :mod:`.observe` publishes. It never applies a
client's change (:mod:`.desired`) nor starts an incident
(:mod:`.incident_ops`); it reads their effects from the state.

How to use it (what :class:`~opsconsole.sandbox.world.World` does)::

    state.global_peak = global_peak(state)
    reset_steady(state, state.tick)           # a new world starts in its steady state
    advance(state, to_us(later))              # step every tick boundary up to ``later``
    refresh(state)                            # re-evaluate the current tick after a change

The formulas are in :func:`loads`, :func:`step` and :func:`evaluate`; the determinism contract in
:mod:`opsconsole.sandbox.world`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from opsconsole.core.fleet.model import Environment, RoutingPolicy
from opsconsole.sandbox.incidents import IncidentEffects, effects_at, lingering_ticks
from opsconsole.sandbox.world.entities import (
    DNS_TOTAL,
    ERR_1H,
    HPA_WINDOW,
    NODE_WINDOW,
    Figures,
    Loads,
    RegionOut,
    SimCluster,
    SimRegion,
    SimState,
    SimWorkload,
    WorkloadOut,
)
from opsconsole.sandbox.world.ticks import CATCHUP_TICKS, TICK_S, TICK_US

__all__ = [
    "advance",
    "diurnal",
    "global_peak",
    "loads",
    "refresh",
    "reset_steady",
    "step",
]

_HPA_TARGET = 0.7
_HPA_UP_PODS = 4  # k8s default: up to max(×2, +4 pods) per period
_NODE_STEP_UP = 3
_NODE_STEP_DOWN = 1
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
_NONPROD_LOAD = 0.1  # synthetic load of a non-prod workload, as a fraction of hpa_min pods' capacity
_REFERENCE_DAYS = (datetime(2025, 1, 15, tzinfo=UTC), datetime(2025, 7, 15, tzinfo=UTC))


# --------------------------------------------------------------------------------------------------
# Demand
# --------------------------------------------------------------------------------------------------


def diurnal(local_hour: float) -> float:
    """Relative demand at a local hour of day: 0.3 at 04:00 rising to 1.0 at 20:00, smooth (cosine)."""
    h = local_hour % 24.0
    if h < 4.0:
        h += 24.0
    if h <= 20.0:  # 04:00 → 20:00, rising over 16 h
        return 0.3 + 0.7 * (1.0 - math.cos(math.pi * (h - 4.0) / 16.0)) / 2.0
    return 0.3 + 0.7 * (1.0 + math.cos(math.pi * (h - 20.0) / 8.0)) / 2.0  # 20:00 → 04:00, falling


def global_peak(s: SimState) -> float:
    """Global demand scale so that the fleet-wide diurnal sum peaks at 85 % of the rps target.

    Scanned in 15 min steps over a January and a July day (both sides of daylight saving time);
    each region's UTC offset is taken once per day, at noon UTC.
    """
    best = 0.0
    for day in _REFERENCE_DAYS:
        offsets = []
        for rg in s.regions.values():
            offset = (day + timedelta(hours=12)).astimezone(rg.tz).utcoffset() or timedelta()
            offsets.append((rg.spec.traffic.demand_share, offset.total_seconds() / 3600.0))
        for quarter in range(96):
            hour = quarter / 4.0
            total = sum(share * diurnal(hour + off) for share, off in offsets)
            best = max(best, total)
    if best <= 0:
        return 0.0
    return _PEAK_HEADROOM * s.fleet.targets.api_rps / best


def loads(s: SimState, tick: int) -> Loads:
    """Demand by region of origin, and where DNS sends it, at ``tick``."""
    eff = effects_at(s.incidents, tick, TICK_S)
    down = eff.down_since
    epoch_s = tick * TICK_S
    demand: dict[str, float] = {}
    front: dict[str, float] = dict.fromkeys(s.regions, 0.0)
    effective: dict[str, dict[str, float]] = {}
    for rid, rg in s.regions.items():
        local = datetime.fromtimestamp(epoch_s, rg.tz)
        d = s.global_peak * rg.spec.traffic.demand_share
        d *= diurnal(local.hour + local.minute / 60.0 + local.second / 3600.0)
        d *= 1.0 + _DEMAND_NOISE * (2.0 * s.noise(tick, rg.key_h) - 1.0)
        d *= eff.demand_factor.get(rid, 1.0)
        demand[rid] = d
        failover = rg.spec.traffic.routing is RoutingPolicy.FAILOVER
        eff_w: dict[str, float] = {}
        for target, weight in rg.dns.items():
            dest = target
            if failover and target in down:
                partner = s.regions[target].spec.failover_partner
                if partner in s.regions and partner not in down:
                    dest = partner
            eff_w[dest] = eff_w.get(dest, 0.0) + weight
        for dest, share in eff_w.items():
            front[dest] += d * share / DNS_TOTAL
        effective[rid] = eff_w
    return Loads(effects=eff, demand=demand, front=front, effective=effective)


def _offered(s: SimState, wl: SimWorkload, ld: Loads) -> float:
    """Requests per second offered to a workload (0 in a down region or a stopped environment)."""
    spec = wl.cluster
    if spec.environment is Environment.PROD:
        if spec.region in ld.effects.down_since:
            return 0.0
        return ld.front[spec.region] * wl.share
    if spec.name in s.stopped:
        return 0.0
    return wl.hpa_min * wl.service.rps_per_pod * _NONPROD_LOAD


def _recommend(wl: SimWorkload, rps: float) -> int:
    want = math.ceil(rps / (wl.service.rps_per_pod * _HPA_TARGET)) if rps > 0 else 0
    return max(wl.hpa_min, min(wl.hpa_max, want))


# --------------------------------------------------------------------------------------------------
# Time: stepping, catching up, re-evaluating
# --------------------------------------------------------------------------------------------------


def advance(s: SimState, to_us: int) -> None:
    """Move sim time forward to ``to_us`` (not before the state's now: the caller checks), stepping
    every tick boundary on the way, and jumping first when more than an hour of ticks lies ahead.
    """
    target = to_us // TICK_US
    if target - s.tick > CATCHUP_TICKS:
        reset_steady(s, target - CATCHUP_TICKS)
    while s.tick < target:
        step(s, s.tick + 1)
    s.now_us = to_us


def step(s: SimState, tick: int) -> None:
    """Advance the dynamic state to ``tick``: HPA, then the cluster autoscaler, then the figures."""
    ld = loads(s, tick)
    down = ld.effects.down_since
    for cl in s.clusters.values():
        if cl.spec.region in down:
            continue  # unreachable: its controllers are frozen with it
        if cl.spec.name in s.stopped:
            continue  # held at zero by set_cluster_stopped
        pods = sum(_scale_workload(wl, _recommend(wl, _offered(s, wl, ld)), tick) for wl in cl.workloads)
        _scale_nodes(cl, pods, tick)
    s.tick = tick
    _prune(s, tick)
    s.out = evaluate(s, tick, ld)


def _scale_workload(wl: SimWorkload, rec: int, tick: int) -> int:
    """One HPA period: up at most ×2 (or +4 pods), down at most 10 % to the window's highest
    recommendation; returns the new replica count."""
    wl.recs[tick % HPA_WINDOW] = rec
    target = max(wl.recs)
    r = wl.replicas
    if target > r:
        r = min(target, max(2 * r, r + _HPA_UP_PODS))
    elif target < r:
        r = max(target, r - max(1, r // 10))
    r = max(wl.hpa_min, min(wl.hpa_max, r))
    wl.replicas = r
    return r


def _scale_nodes(cl: SimCluster, pods: int, tick: int) -> None:
    """One autoscaler period: up at most 3 nodes, down 1 after the window's need has fallen."""
    need = max(cl.nodes_min, min(cl.nodes_max, -(-pods // cl.spec.pods_per_node)))
    cl.needs[tick % NODE_WINDOW] = need
    target = max(cl.needs)
    n = cl.nodes
    if target > n:
        n = min(target, n + _NODE_STEP_UP)
    elif target < n:
        n = max(target, n - _NODE_STEP_DOWN)
    cl.nodes = max(cl.nodes_min, min(cl.nodes_max, n))


def reset_steady(s: SimState, tick: int) -> None:
    """Put the dynamic state in its steady value for the load at ``tick`` (start and catch-up)."""
    s.tick = tick
    _prune(s, tick)
    ld = loads(s, tick)
    down = ld.effects.down_since
    for cl in s.clusters.values():
        if cl.spec.region in down or cl.spec.name in s.stopped:
            continue
        pods = 0
        for wl in cl.workloads:
            rec = _recommend(wl, _offered(s, wl, ld))
            wl.replicas = rec
            wl.recs = [rec] * HPA_WINDOW
            pods += rec
        need = max(cl.nodes_min, min(cl.nodes_max, -(-pods // cl.spec.pods_per_node)))
        cl.nodes = need
        cl.needs = [need] * NODE_WINDOW
    out = evaluate(s, tick, ld)
    for rg in s.regions.values():
        slot = tick % ERR_1H
        rg.req = [rg.req[slot]] * ERR_1H
        rg.err = [rg.err[slot]] * ERR_1H
    s.out = out


def _prune(s: SimState, tick: int) -> None:
    """Forget incidents whose effects ended more than an hour ago (keeps the state small)."""
    keep = [i for i in s.incidents if i.end_tick + lingering_ticks(i, TICK_S) + CATCHUP_TICKS >= tick]
    if len(keep) != len(s.incidents):
        s.incidents = keep


def refresh(s: SimState) -> None:
    """Re-evaluate the current tick after a change, without moving the scalers."""
    s.out = evaluate(s, s.tick, loads(s, s.tick))


# --------------------------------------------------------------------------------------------------
# Figures of one tick
# --------------------------------------------------------------------------------------------------


def evaluate(s: SimState, tick: int, ld: Loads) -> Figures:
    """Figures of ``tick`` from the state: ready pods, utilisation, latency, errors.

    Workload (:func:`_cluster_figures`): utilisation u = rps / (ready × rps_per_pod);
    p95 = base × (1 + k·u'/(1−u')) with u' = min(u, 0.97), plus a penalty proportional to the pending
    fraction, plus any latency spike; errors = base rate + the share of requests above capacity + a
    little above 90 % CPU. Region (:func:`_region_figures`, front door): the same on the aggregated
    gateway pool, errors over all its services. Also records the tick's requests and failures in each
    region's error-rate ring.
    """
    wouts: dict[str, WorkloadOut] = {}
    for cl in s.clusters.values():
        wouts.update(_cluster_figures(s, cl, tick, ld))
    routs: dict[str, RegionOut] = {}
    slot = tick % ERR_1H
    for rid, rg in s.regions.items():
        ro = _region_figures(s, rg, tick, ld, wouts)
        rg.req[slot] = ro.front
        rg.err[slot] = ro.front * ro.error_frac
        routs[rid] = ro
    return Figures(tick=tick, loads=ld, regions=routs, workloads=wouts)


def _worst_p95(base: float, add: float) -> float:
    """The p95 of a pool at the utilisation cap (a down region's figure)."""
    return base * (1.0 + _LATENCY_K * _U_CAP / (1.0 - _U_CAP)) + add


def _cluster_figures(s: SimState, cl: SimCluster, tick: int, ld: Loads) -> dict[str, WorkloadOut]:
    """The figures of every workload of one cluster (see :func:`evaluate`)."""
    eff: IncidentEffects = ld.effects
    spec = cl.spec
    base = s.regions[spec.region].spec.traffic.base_latency_ms
    add = eff.latency_add_ms.get(spec.region, 0.0)
    if spec.region in eff.down_since:
        worst = _worst_p95(base, add)
        return {wl.key: WorkloadOut(p95_ms=worst, error_rate=1.0, utilisation=0.0) for wl in cl.workloads}
    if spec.name in s.stopped:
        return {wl.key: WorkloadOut() for wl in cl.workloads}
    capacity = cl.nodes * spec.pods_per_node
    total = sum(wl.replicas for wl in cl.workloads)
    readies = _fit(cl, capacity, total)
    out: dict[str, WorkloadOut] = {}
    for wl, ready in zip(cl.workloads, readies, strict=True):
        rps = _offered(s, wl, ld)
        cap_rps = ready * wl.service.rps_per_pod
        u = rps / cap_rps if cap_rps > 0 else (math.inf if rps > 0 else 0.0)
        uc = min(u, _U_CAP)
        wbase = base if wl.gateway else base * _NON_GATEWAY_LATENCY
        pending = wl.replicas - ready
        jitter = 1.0 + 0.06 * (s.noise(tick, wl.key_h) - 0.5)
        p95 = wbase * (1.0 + _LATENCY_K * uc / (1.0 - uc)) * jitter
        p95 += wbase * _PENDING_PENALTY * pending / wl.replicas if wl.replicas else 0.0
        overflow = max(0.0, 1.0 - cap_rps / rps) if rps > 0 else 0.0
        err = _BASE_ERROR + overflow + 0.01 * max(0.0, (uc - 0.9) / (_U_CAP - 0.9))
        out[wl.key] = WorkloadOut(
            rps=rps,
            ready=ready,
            pending=pending,
            utilisation=u,
            p95_ms=p95 + add,
            error_rate=min(1.0, err),
        )
    return out


def _region_figures(
    s: SimState, rg: SimRegion, tick: int, ld: Loads, wouts: dict[str, WorkloadOut]
) -> RegionOut:
    """The front-door figures of one region from its prod workloads' figures (see :func:`evaluate`)."""
    rid = rg.spec.id
    eff = ld.effects
    front = ld.front[rid]
    base = rg.spec.traffic.base_latency_ms
    add = eff.latency_add_ms.get(rid, 0.0)
    ro = RegionOut(demand=ld.demand[rid], front=front, effective=ld.effective[rid])
    if rid in eff.down_since:
        ro.down = True
        ro.utilisation = 0.0
        ro.p95_ms = _worst_p95(base, add)
        ro.error_frac = 1.0 if front > 0 else 0.0
        return ro
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
    jitter = 1.0 + 0.06 * (s.noise(tick, rg.key_h ^ 0x5A5A) - 0.5)
    p95 = base * (1.0 + _LATENCY_K * uc / (1.0 - uc)) * jitter
    if replicas:
        p95 += base * _PENDING_PENALTY * pending / replicas
    overflow = max((max(0.0, 1.0 - svc_cap[n] / r) for n, r in svc_rps.items() if r > 0), default=0.0)
    base_err = _BASE_ERROR * (0.5 + s.noise(tick, rg.key_h ^ 0xE4E4))
    err = base_err + overflow + 0.01 * max(0.0, (uc - 0.9) / (_U_CAP - 0.9))
    ro.utilisation = u
    ro.p95_ms = p95 + add
    ro.error_frac = min(1.0, err)
    return ro


def _fit(cl: SimCluster, capacity: int, total: int) -> list[int]:
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
