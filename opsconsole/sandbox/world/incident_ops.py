"""Starting and ending incidents in the sandbox world (the drills).

Why this module exists: :mod:`opsconsole.sandbox.incidents` says what an incident *is* and what it does
to the figures (pure functions of ``(incidents, tick)``); this module is the other half, the operations a
drill runner calls on a live world: validate a request, pick the node pool to lose, draw a latency
spike's size, record the incident in the :class:`~opsconsole.sandbox.world.entities.SimState`, end it early.
Like :mod:`.desired` it leaves re-evaluating the current tick to the caller.
"""

from __future__ import annotations

import math
from datetime import timedelta

from opsconsole.core.errors import UsageError
from opsconsole.sandbox.incidents import (
    LATENCY_SPIKE_MS,
    NODE_POOL_LOSS_FRACTION,
    Incident,
    IncidentKind,
    parse_kind,
)
from opsconsole.sandbox.world.entities import SimCluster, SimState
from opsconsole.sandbox.world.ticks import TICK_S, key_hash

__all__ = ["active", "clear", "regional", "trigger"]


def active(s: SimState) -> list[Incident]:
    """The incidents active at the current tick."""
    return [i for i in s.incidents if i.active_at(s.tick)]


def regional(s: SimState, region: str | None) -> list[str]:
    """Ids of the active incidents, of ``region`` only when given (validated)."""
    if region is not None:
        s.region(region)
    return [i.id for i in active(s) if region is None or i.region == region]


def trigger(
    s: SimState,
    kind: str | IncidentKind,
    region: str,
    *,
    duration: float | timedelta,
    cluster: str | None,
) -> Incident:
    """Start an incident at the current tick (see :meth:`opsconsole.sandbox.world.World.trigger_incident`).

    A node pool loss takes its nodes away at once (down to the fleet's 1-node floor); its magnitude is
    the number of nodes lost. A latency spike's magnitude is drawn from the seeded noise.
    """
    k = parse_kind(kind)
    s.region(region)
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"incident duration must be a positive number of seconds, got {duration!r}")
    target = _node_pool_target(s, k, region, cluster)
    s.incident_seq += 1
    inc_id = f"inc-{s.incident_seq}"
    magnitude = 0.0
    if k is IncidentKind.LATENCY_SPIKE:
        lo, hi = LATENCY_SPIKE_MS
        magnitude = lo + (hi - lo) * s.noise(s.tick, key_hash("incident/" + inc_id))
    if target is not None and target.spec.name not in s.stopped:
        lost = round(target.nodes * NODE_POOL_LOSS_FRACTION)
        # The fleet-wide 1-node floor holds; the cluster may dip below its own minimum until the
        # autoscaler (which always wants at least nodes_min) rebuilds it.
        remaining = max(s.fleet.bounds.cluster_nodes.min, target.nodes - lost)
        magnitude = float(target.nodes - remaining)
        target.nodes = remaining
    inc = Incident(
        id=inc_id,
        kind=k,
        region=region,
        start_tick=s.tick,
        end_tick=s.tick + max(1, math.ceil(seconds / TICK_S)),
        cluster=None if target is None else target.spec.name,
        magnitude=magnitude,
    )
    s.incidents.append(inc)
    return inc


def _node_pool_target(s: SimState, k: IncidentKind, region: str, cluster: str | None) -> SimCluster | None:
    """The cluster a node pool loss hits (default: the region's largest prod cluster); None otherwise."""
    if k is not IncidentKind.NODE_POOL_LOSS:
        if cluster is not None:
            raise UsageError(f"a cluster can only be given for node_pool_loss, not for {k.value}")
        return None
    if cluster is None:
        prod = s.regions[region].prod_clusters
        if not prod:
            raise UsageError(f"region {region!r} has no prod cluster to lose a node pool in")
        return max(prod, key=lambda c: (c.spec.capacity_weight, c.spec.name))
    target = s.cluster(cluster)
    if target.spec.region != region:
        raise UsageError(f"cluster {cluster!r} is in region {target.spec.region!r}, not {region!r}")
    return target


def clear(s: SimState, incident_id: str) -> Incident:
    """End an active incident at the current tick; :class:`UsageError` if it is unknown or already over."""
    for i, inc in enumerate(s.incidents):
        if inc.id == incident_id:
            if not inc.active_at(s.tick):
                raise UsageError(f"incident {incident_id} is already over")
            ended = Incident(
                id=inc.id,
                kind=inc.kind,
                region=inc.region,
                start_tick=inc.start_tick,
                end_tick=s.tick,
                cluster=inc.cluster,
                magnitude=inc.magnitude,
                cleared=True,
            )
            s.incidents[i] = ended
            return ended
    ids = ", ".join(i.id for i in active(s)) or "none"
    raise UsageError(f"unknown incident {incident_id!r}; active incidents: {ids}")
