"""What clients wrote: the desired-state changes of the sandbox world (scale, bounds, DNS, promotion,
stop/start, read replicas, Redis nodes).

Why this module exists: these are the writes the emulated cloud APIs (kube, AWS, GCP, Azure) and the
sim provider turn into world changes, the sandbox's equivalent of ``kubectl scale`` or a Route 53 change
batch. Each function validates every argument first and raises
:class:`~opsconsole.core.errors.UsageError` changing nothing on a bad one, then changes the
:class:`~opsconsole.sandbox.world.entities.SimState`. None re-evaluates the figures: each returns whether it
changed anything and :class:`~opsconsole.sandbox.world.World` then refreshes the current tick
(:func:`opsconsole.sandbox.world.dynamics.refresh`).
"""

from __future__ import annotations

from collections.abc import Mapping

from opsconsole.core.errors import UsageError
from opsconsole.core.fleet.model import DbRole, Environment
from opsconsole.sandbox.world.entities import DNS_TOTAL, HPA_WINDOW, NODE_WINDOW, SimCluster, SimState

__all__ = [
    "promote_replica",
    "set_cache_nodes",
    "set_cluster_node_bounds",
    "set_cluster_stopped",
    "set_dns_weights",
    "set_environment_stopped",
    "set_hpa_bounds",
    "set_read_replicas",
    "set_replicas",
]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def set_replicas(s: SimState, cluster: str, service: str, replicas: int) -> bool:
    """Scale a workload by hand; the HPA keeps at least this many for its stabilisation window."""
    wl = s.workload(cluster, service)
    if wl.cluster.name in s.stopped:
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
    wl.recs = [replicas] * HPA_WINDOW
    return True


def set_hpa_bounds(s: SimState, cluster: str, service: str, min_replicas: int, max_replicas: int) -> bool:
    """Change a workload's HPA min/max (within the fleet's HPA bounds); replicas are clamped now."""
    wl = s.workload(cluster, service)
    fb = s.fleet.bounds.hpa_pods
    if not (_is_int(min_replicas) and _is_int(max_replicas)):
        raise UsageError(f"HPA bounds must be integers, got {min_replicas!r}-{max_replicas!r}")
    if min_replicas not in fb or max_replicas not in fb or min_replicas > max_replicas:
        raise UsageError(
            f"HPA bounds for {wl.key} must satisfy {fb.min} <= min <= max <= {fb.max}, "
            f"got {min_replicas}-{max_replicas}"
        )
    wl.hpa_min, wl.hpa_max = min_replicas, max_replicas
    if wl.cluster.name in s.stopped:
        if wl.remembered is not None:
            wl.remembered = max(min_replicas, min(max_replicas, wl.remembered))
    else:
        wl.replicas = max(min_replicas, min(max_replicas, wl.replicas))
    return True


def set_cluster_node_bounds(s: SimState, cluster: str, min_nodes: int, max_nodes: int) -> bool:
    """Change a cluster's autoscaler min/max (within the fleet's node bounds); nodes are clamped now."""
    cl = s.cluster(cluster)
    fb = s.fleet.bounds.cluster_nodes
    if not (_is_int(min_nodes) and _is_int(max_nodes)):
        raise UsageError(f"node bounds must be integers, got {min_nodes!r}-{max_nodes!r}")
    if min_nodes not in fb or max_nodes not in fb or min_nodes > max_nodes:
        raise UsageError(
            f"node bounds for {cluster} must satisfy {fb.min} <= min <= max <= {fb.max}, "
            f"got {min_nodes}-{max_nodes}"
        )
    cl.nodes_min, cl.nodes_max = min_nodes, max_nodes
    if cl.spec.name in s.stopped:
        if cl.remembered is not None:
            cl.remembered = max(min_nodes, min(max_nodes, cl.remembered))
    else:
        cl.nodes = max(min_nodes, min(max_nodes, cl.nodes))
    return True


def set_dns_weights(s: SimState, region: str, weights: Mapping[str, int]) -> bool:
    """Replace the record set that routes ``region``'s users: non-negative integer weights over known
    regions summing to exactly :data:`~opsconsole.sandbox.world.entities.DNS_TOTAL`; zero weights are dropped.
    """
    s.region(region)
    unknown = sorted(t for t in weights if t not in s.regions)
    if unknown:
        valid = ", ".join(s.regions)
        raise UsageError(f"unknown target region(s) {', '.join(unknown)} in DNS weights; valid: {valid}")
    bad = sorted(t for t, w in weights.items() if not _is_int(w) or w < 0)
    if bad:
        raise UsageError(f"DNS weights must be non-negative integers; bad weight for {', '.join(bad)}")
    total = sum(weights.values())
    if total != DNS_TOTAL:
        raise UsageError(f"DNS weights of {region} must sum to {DNS_TOTAL}, they sum to {total}")
    s.regions[region].dns = {t: int(w) for t, w in sorted(weights.items()) if w > 0}
    return True


def promote_replica(s: SimState, region: str) -> bool:
    """Make ``region``'s database a write primary; a DR failover when its old primary is down (the old
    primary and its replicas then follow the promoted region), a planned split otherwise."""
    rg = s.region(region)
    if rg.db_role is DbRole.WRITE_PRIMARY:
        raise UsageError(f"the database in {region} is already a write primary")
    if s.is_down(region):
        raise UsageError(f"cannot promote the database in {region}: the region is down")
    old = rg.replicates_from
    rg.db_role = DbRole.WRITE_PRIMARY
    rg.replicates_from = None
    if old is not None and old in s.regions and s.is_down(old):
        for other in s.regions.values():
            if other.replicates_from == old:
                other.replicates_from = region
        old_rg = s.regions[old]
        old_rg.db_role = DbRole.READ_REPLICA
        old_rg.replicates_from = region
    return True


def demote_to_replica(s: SimState, region: str, source: str) -> bool:
    """Make ``region``'s database a read replica of ``source``'s write primary again (a failback's
    re-seed: the promoted replica goes back under its old primary); whether anything changed."""
    rg = s.region(region)
    src = s.region(source)
    if source == region:
        raise UsageError(f"the database in {region} cannot replicate from itself")
    if src.db_role is not DbRole.WRITE_PRIMARY:
        raise UsageError(
            f"cannot demote {region} under {source}: the database in {source} is not a write primary"
        )
    if rg.db_role is DbRole.READ_REPLICA and rg.replicates_from == source:
        return False
    rg.db_role = DbRole.READ_REPLICA
    rg.replicates_from = source
    for other in s.regions.values():  # replicas that followed the demoted primary follow its new primary
        if other.replicates_from == region:
            other.replicates_from = source
    return True


def set_cluster_nodes(s: SimState, cluster: str, nodes: int) -> bool:
    """Set a cluster's node count now (a node pool's "set size"), within its autoscaler min/max; the
    autoscaler moves it again on its next decision, as it does on GKE, AKS and EKS."""
    cl = s.cluster(cluster)
    if not _is_int(nodes) or not cl.nodes_min <= nodes <= cl.nodes_max:
        raise UsageError(
            f"nodes for {cluster} must be an integer within its autoscaler bounds "
            f"{cl.nodes_min}-{cl.nodes_max}, got {nodes!r}"
        )
    if cl.spec.name in s.stopped:
        raise UsageError(f"{cluster} is stopped: start its environment first")
    if cl.nodes == nodes:
        return False
    cl.nodes = nodes
    cl.needs = [nodes] * len(cl.needs)
    return True


def set_environment_stopped(s: SimState, environment: Environment | str, stopped: bool) -> bool:
    """Stop or start every cluster of a non-prod environment (idempotent); whether anything changed."""
    try:
        env = Environment(environment)
    except ValueError:
        valid = ", ".join(e.value for e in Environment)
        raise UsageError(f"unknown environment {environment!r}; valid: {valid}") from None
    if env is Environment.PROD:
        raise UsageError("the prod environment cannot be stopped")
    changed = False
    for cl in s.clusters.values():
        if cl.spec.environment is env:
            changed = _stop_cluster(s, cl, stopped) or changed
    return changed


def set_cluster_stopped(s: SimState, cluster: str, stopped: bool) -> bool:
    """Stop or start one non-prod cluster (idempotent); whether anything changed."""
    cl = s.cluster(cluster)
    if cl.spec.environment is Environment.PROD:
        raise UsageError(f"{cluster} is a prod cluster: the prod environment cannot be stopped")
    return _stop_cluster(s, cl, stopped)


def _stop_cluster(s: SimState, cl: SimCluster, stopped: bool) -> bool:
    """Stop (0 replicas, 0 nodes, sizes remembered) or start (back to the remembered sizes, clamped to
    the current bounds) ``cl``; whether anything changed."""
    name = cl.spec.name
    if stopped == (name in s.stopped):
        return False
    if stopped:
        cl.remembered = cl.nodes
        cl.nodes = 0
        for wl in cl.workloads:
            wl.remembered = wl.replicas
            wl.replicas = 0
        s.stopped.add(name)
    else:
        back = cl.nodes_min if cl.remembered is None else cl.remembered
        cl.nodes = max(cl.nodes_min, min(cl.nodes_max, back))
        cl.needs = [cl.nodes] * NODE_WINDOW
        cl.remembered = None
        for wl in cl.workloads:
            rback = wl.hpa_min if wl.remembered is None else wl.remembered
            wl.replicas = max(wl.hpa_min, min(wl.hpa_max, rback))
            wl.recs = [wl.replicas] * HPA_WINDOW
            wl.remembered = None
        s.stopped.discard(name)
    return True


def set_read_replicas(s: SimState, region: str, count: int) -> bool:
    """Set the number of read replicas of ``region``'s database (within the fleet bounds)."""
    rg = s.region(region)
    fb = s.fleet.bounds.read_replicas
    if not _is_int(count) or count not in fb:
        raise UsageError(f"read replicas for {region} must be an integer in {fb.min}-{fb.max}, got {count!r}")
    rg.read_replicas = count
    return True


def set_cache_nodes(s: SimState, region: str, count: int) -> bool:
    """Set the number of Redis nodes of ``region`` (within the fleet bounds)."""
    rg = s.region(region)
    fb = s.fleet.bounds.redis_nodes
    if not _is_int(count) or count not in fb:
        raise UsageError(f"Redis nodes for {region} must be an integer in {fb.min}-{fb.max}, got {count!r}")
    rg.cache_nodes = count
    return True
