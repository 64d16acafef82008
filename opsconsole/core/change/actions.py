"""The action catalogue: every change opsconsole can make, with typed parameters, checks and a preview.

Nothing in the fleet changes except through a playbook; this module decides, before anything runs,
*whether* a request makes sense and *what* it would do. A face turns a user's request into a call of
one of the ``plan_*`` functions; the result is an :class:`ActionPlan` — the validated parameters, the
playbook and its variables, the targets a run must hold a lease on, the timeouts, and the preview in
words ("eu-west-1 eks-euw1-prod checkout: replicas 12 → 4 (HPA 3–60)"). A bad request raises
:class:`~opsconsole.core.errors.UsageError` saying what was wrong, and nothing runs.

The checks use the inventory (bounds, residency zones, partners) and the latest snapshot (what runs
now, which regions are healthy). The playbooks check the same gates again at run time: the plan is
the fast, friendly refusal; the playbook is the last line.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from opsconsole.core.errors import UsageError
from opsconsole.core.fleet.engine import Snapshot
from opsconsole.core.fleet.model import (
    CacheState,
    ClusterSpec,
    ClusterState,
    DatabaseState,
    DbRole,
    Environment,
    Fleet,
    IntRange,
    RegionTraffic,
    WorkloadState,
)


class ActionName(StrEnum):
    SCALE = "scale"
    FAILOVER = "failover"
    FAILBACK = "failback"
    ENV_STOP = "env_stop"
    ENV_START = "env_start"
    #: A node group's (EKS) / node pool's (GKE, AKS) bounds and desired count.
    NODES = "nodes"
    #: A region database's read replicas.
    REPLICAS = "replicas"
    #: A region database's role: promote a replica to write primary, or demote it back (failback).
    DATABASE = "database"
    #: A region's Redis nodes.
    CACHE = "cache"


@dataclass(frozen=True)
class ActionSpec:
    """What the catalogue knows of one action: its playbook and how long a run may take."""

    name: ActionName
    playbook: str
    description: str
    #: Kill a run that prints nothing for this long.
    idle_timeout_s: float
    #: Kill a run that takes longer than this in all.
    job_timeout_s: float


CATALOGUE: dict[ActionName, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec(ActionName.SCALE, "scale.yml", "change replicas, HPA bounds, nodes, read replicas or "
                   "Redis nodes", idle_timeout_s=120, job_timeout_s=600),
        ActionSpec(ActionName.FAILOVER, "failover.yml", "move a region's users to another region, in "
                   "steps, promoting its database replica where needed",
                   idle_timeout_s=300, job_timeout_s=1800),
        ActionSpec(ActionName.FAILBACK, "failback.yml", "send a region's users back to it",
                   idle_timeout_s=300, job_timeout_s=1800),
        ActionSpec(ActionName.ENV_STOP, "env_schedule.yml", "stop a non-prod environment in dependency "
                   "order, remembering its sizes", idle_timeout_s=300, job_timeout_s=1800),
        ActionSpec(ActionName.ENV_START, "env_schedule.yml", "start a stopped non-prod environment at "
                   "its old sizes", idle_timeout_s=300, job_timeout_s=1800),
        ActionSpec(ActionName.NODES, "scale.yml", "change a cluster's node group / node pool bounds (min, "
                   "max) or its desired nodes", idle_timeout_s=300, job_timeout_s=1200),
        ActionSpec(ActionName.REPLICAS, "scale.yml", "change the number of a region database's read "
                   "replicas", idle_timeout_s=600, job_timeout_s=3600),
        ActionSpec(ActionName.DATABASE, "database.yml", "promote a region's database to write primary, or "
                   "demote it back to a read replica of another region", idle_timeout_s=600,
                   job_timeout_s=3600),
        ActionSpec(ActionName.CACHE, "scale.yml", "change the number of a region's Redis nodes",
                   idle_timeout_s=600, job_timeout_s=3600),
    )
}


@dataclass(frozen=True)
class ActionPlan:
    """A validated request, ready to preview (check mode) or run."""

    action: ActionName
    params: Mapping[str, Any]
    playbook: str
    #: The playbook's action variables (the runner adds the connection variables).
    extravars: Mapping[str, Any]
    #: What a run must hold a lease on: ``region/<id>``, ``cluster/<name>``, ``workload/<cluster>/<svc>``,
    #: ``database/<region>``, ``environment/<env>``.
    targets: tuple[str, ...]
    #: The preview in words, one line per change.
    summary: tuple[str, ...]
    idle_timeout_s: float
    job_timeout_s: float
    #: True when the plan touches production.
    production: bool = True
    #: Observed state of the targets the preview was made from (compared again before a run).
    observed: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return "\n".join(self.summary)


def _spec(name: ActionName) -> ActionSpec:
    return CATALOGUE[name]


def _closest(word: str, choices: Sequence[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {match[0]}?)" if match else ""


def _region(fleet: Fleet, region: str, what: str = "region") -> str:
    if region not in fleet.regions:
        known = sorted(fleet.regions)
        raise UsageError(
            f"{what} {region!r}: unknown region{_closest(region, known)}; expected one of: {', '.join(known)}"
        )
    return region


def _healthy(snapshot: Snapshot | None, region: str) -> tuple[bool, str]:
    """Whether a region can take traffic now, by its front door's figures in the snapshot."""
    if snapshot is None:
        return True, "no snapshot to judge from"
    traffic = snapshot.get(f"traffic/{region}")
    if not isinstance(traffic, RegionTraffic):
        return False, "no figures for it in the latest snapshot"
    if not traffic.health_check_ok:
        return False, "its health check is failing"
    if traffic.error_rate > 0.05:
        return False, f"{traffic.error_rate:.1%} of its requests are failing"
    return True, "healthy"


# -- scale -----------------------------------------------------------------------------------------------


def plan_scale(
    fleet: Fleet,
    snapshot: Snapshot | None,
    *,
    service: str,
    region: str,
    replicas: int | None = None,
    hpa_min: int | None = None,
    hpa_max: int | None = None,
    environment: Environment = Environment.PROD,
    cluster: str | None = None,
) -> ActionPlan:
    """Scale a workload's replicas, or its HPA bounds, in one cluster or across a region.

    Raises:
        UsageError: unknown service, region or cluster; values outside the inventory's bounds; no change.
    """
    _region(fleet, region)
    if service not in fleet.services:
        known = sorted(fleet.services)
        raise UsageError(f"workload {service!r}: unknown service{_closest(service, known)}; "
                         f"expected one of: {', '.join(known)}")
    spec = fleet.services[service]
    if environment not in spec.environments:
        raise UsageError(f"{service} does not run in {environment.value}")
    clusters = [c for c in fleet.clusters_in(region, environment)]
    if cluster is not None:
        if cluster not in {c.name for c in clusters}:
            names = ", ".join(c.name for c in clusters) or "none"
            raise UsageError(f"--cluster {cluster}: not a {environment.value} cluster of {region}; "
                             f"expected one of: {names}")
        clusters = [c for c in clusters if c.name == cluster]
    if not clusters:
        raise UsageError(f"{region} has no {environment.value} cluster")
    if replicas is None and hpa_min is None and hpa_max is None:
        raise UsageError("nothing to change: give --replicas, or --hpa-min / --hpa-max")
    if replicas is not None and (hpa_min is not None or hpa_max is not None):
        raise UsageError("give either --replicas or HPA bounds, not both (one playbook run changes one)")
    bound = fleet.bounds.hpa_pods
    summary: list[str] = []
    observed: dict[str, Any] = {}
    targets: list[str] = [f"region/{region}"]
    #: Per cluster, the change as "before → after" when it changes nothing (a no-op is refused below).
    unchanged: list[str] = []
    for c in clusters:
        current = snapshot.get(f"workload/{c.name}/{service}") if snapshot else None
        now = current if isinstance(current, WorkloadState) else None
        lo = now.hpa_min if now else spec.hpa.min
        hi = now.hpa_max if now else spec.hpa.max
        targets.append(f"workload/{c.name}/{service}")
        observed[f"workload/{c.name}/{service}"] = (
            {"desired": now.desired, "hpa_min": now.hpa_min, "hpa_max": now.hpa_max} if now else None
        )
        if replicas is not None:
            if not lo <= replicas <= hi:
                raise UsageError(
                    f"--replicas {replicas}: outside {service}'s HPA bounds {lo}–{hi} in {c.name}; "
                    f"change the bounds first (--hpa-min / --hpa-max)"
                )
            before = now.desired if now else None
            if before == replicas:
                unchanged.append(f"{c.name} {before} → {replicas}")
                summary.append(f"{region} {c.name} {service}: replicas no change ({before} → {replicas})")
                continue
            summary.append(
                f"{region} {c.name} {service}: replicas {_arrow(before, replicas)} "
                f"(capacity {_share(before, hi)} → {_share(replicas, hi)} of HPA max {hi})"
            )
        else:
            new_min = hpa_min if hpa_min is not None else lo
            new_max = hpa_max if hpa_max is not None else hi
            for label, value in (("--hpa-min", new_min), ("--hpa-max", new_max)):
                if value not in bound:
                    raise UsageError(
                        f"{label} {value}: outside the fleet's HPA bounds {bound.min}–{bound.max}"
                    )
            if new_min > new_max:
                raise UsageError(f"HPA min {new_min} > max {new_max} in {c.name}")
            if now is not None and (new_min, new_max) == (lo, hi):
                unchanged.append(f"{c.name} HPA {lo}–{hi} → {new_min}–{new_max}")
                summary.append(
                    f"{region} {c.name} {service}: HPA no change ({lo}–{hi} → {new_min}–{new_max})"
                )
                continue
            summary.append(f"{region} {c.name} {service}: HPA {lo}–{hi} → {new_min}–{new_max}")
    if unchanged and len(unchanged) == len(clusters):
        raise UsageError(f"no change: {service} in {region} is already there ({'; '.join(unchanged)})")
    if replicas is not None:
        extravars: dict[str, Any] = {"scale_target": "workload", "replicas": replicas}
    else:
        # The playbook sets both bounds; the one not given keeps its current value, which must then be
        # the same in every cluster the request covers.
        extravars = {"scale_target": "hpa", "hpa_min": hpa_min, "hpa_max": hpa_max}
        for key, given in (("hpa_min", hpa_min), ("hpa_max", hpa_max)):
            if given is None:
                bound_now: set[int] = {v for o in observed.values() if (v := (o or {}).get(key)) is not None}
                if not bound_now:  # no live figures: the inventory's bound is the current one
                    bound_now = {spec.hpa.min if key == "hpa_min" else spec.hpa.max}
                if len(bound_now) != 1:
                    flag = "--" + key.replace("_", "-")
                    raise UsageError(
                        f"give {flag} too: the clusters of {region} differ in their current value"
                    )
                extravars[key] = bound_now.pop()
    extravars.update({"region": region, "service": service})
    if cluster is None and environment is not Environment.PROD:
        # The playbook's default is every *prod* cluster of the region: a non-prod one is named.
        if len(clusters) > 1:
            names = ", ".join(c.name for c in clusters)
            raise UsageError(f"{region} has several {environment.value} clusters ({names}): give --cluster")
        cluster = clusters[0].name
    if cluster is not None:
        extravars["cluster"] = cluster
    params = {"service": service, "region": region, "replicas": replicas, "hpa_min": hpa_min,
              "hpa_max": hpa_max, "environment": environment.value, "cluster": cluster}
    spec_ = _spec(ActionName.SCALE)
    return ActionPlan(
        action=ActionName.SCALE,
        params={k: v for k, v in params.items() if v is not None},
        playbook=spec_.playbook,
        extravars=extravars,
        targets=tuple(targets),
        summary=tuple(summary),
        idle_timeout_s=spec_.idle_timeout_s,
        job_timeout_s=spec_.job_timeout_s,
        production=environment is Environment.PROD,
        observed=observed,
    )


def _arrow(before: int | None, after: int) -> str:
    return f"{before} → {after}" if before is not None else f"? → {after}"


def _share(value: int | None, of: int) -> str:
    return "?" if value is None or of <= 0 else f"{value / of:.0%}"


# -- failover / failback ---------------------------------------------------------------------------------


def plan_failover(
    fleet: Fleet, snapshot: Snapshot | None, *, from_region: str, to_region: str
) -> ActionPlan:
    """Move ``from_region``'s users to ``to_region``, promoting its replica if ``from_region`` writes.

    Raises:
        UsageError: unknown regions, failover to itself, to an unhealthy region, or across residency zones.
    """
    _region(fleet, from_region, "--from")
    _region(fleet, to_region, "--to")
    if from_region == to_region:
        raise UsageError(f"--to {to_region}: a region cannot fail over to itself")
    source, target = fleet.regions[from_region], fleet.regions[to_region]
    zones = {source.residency_zone, target.residency_zone}
    if "eu" in zones and len(zones) > 1:
        raise UsageError(
            f"failover {from_region} → {to_region} crosses residency zones "
            f"({source.residency_zone} → {target.residency_zone}): EU-resident data must stay in the EU; "
            f"{from_region}'s partner is {source.failover_partner}"
        )
    healthy, why = _healthy(snapshot, to_region)
    if not healthy:
        raise UsageError(f"--to {to_region}: not healthy enough to take traffic ({why})")
    summary = [f"DNS api.{from_region}: {from_region} 100 → 0, {to_region} 0 → 100 (in steps 25 / 50 / 100, "
               f"health-checked between steps)"]
    targets = [f"region/{from_region}", f"region/{to_region}", f"dns/{from_region}"]
    # The facts the decision rests on, as an approver saw them; figures that move every minute (the
    # lag itself) are kept as the judgement they support (within the RPO or not), so that an approval
    # is not voided by noise but is by a change that matters.
    observed: dict[str, Any] = {}
    if snapshot is not None:
        dns_now = snapshot.get(f"dns/{from_region}")
        observed[f"dns/{from_region}"] = getattr(dns_now, "weights", None)
        observed[f"traffic/{to_region}"] = {"healthy": _healthy(snapshot, to_region)[0]}
        db_now = snapshot.get(f"database/{to_region}")
        lag_now = db_now.replica_lag_s if isinstance(db_now, DatabaseState) else None
        observed[f"database/{to_region}"] = {
            "within_rpo": None if lag_now is None else lag_now <= fleet.targets.rpo_db_s,
            "role": db_now.role.value if isinstance(db_now, DatabaseState) else None,
        }
    if source.database.role is DbRole.WRITE_PRIMARY:
        lag = snapshot.get(f"database/{to_region}") if snapshot else None
        lag_s = lag.replica_lag_s if isinstance(lag, DatabaseState) else None
        if lag_s is not None and lag_s > fleet.targets.rpo_db_s:
            raise UsageError(
                f"--to {to_region}: its database replica is {lag_s:.0f} s behind, over the "
                f"{fleet.targets.rpo_db_s:.0f} s RPO; promoting it now would lose data"
            )
        summary.append(f"database: promote pg-{to_region} to write primary ({from_region} writes today"
                       + (f"; replica lag {lag_s:.1f} s" if lag_s is not None else "") + ")")
        targets.append(f"database/{to_region}")
    summary.append(_headroom_line(fleet, snapshot, from_region, to_region))
    spec = _spec(ActionName.FAILOVER)
    return ActionPlan(
        action=ActionName.FAILOVER,
        params={"from_region": from_region, "to_region": to_region},
        playbook=spec.playbook,
        extravars={"from_region": from_region, "to_region": to_region},
        targets=tuple(targets),
        summary=tuple(summary),
        idle_timeout_s=spec.idle_timeout_s,
        job_timeout_s=spec.job_timeout_s,
        observed=observed,
    )


def _headroom_line(fleet: Fleet, snapshot: Snapshot | None, from_region: str, to_region: str) -> str:
    if snapshot is None:
        return f"headroom in {to_region}: checked by the playbook"
    pods = {r: 0 for r in (from_region, to_region)}
    hpa_max = 0
    for w in snapshot.of_type(WorkloadState):
        if w.environment is Environment.PROD and w.region in pods:
            pods[w.region] += w.desired
            if w.region == to_region:
                hpa_max += w.hpa_max
    nodes = sum(c.nodes for c in snapshot.of_type(ClusterState)
                if c.region == to_region and c.environment is Environment.PROD)
    nodes_max = sum(c.nodes_max for c in snapshot.of_type(ClusterState)
                    if c.region == to_region and c.environment is Environment.PROD)
    need = pods[from_region] + pods[to_region]
    return (f"headroom in {to_region}: {need} pods needed of {hpa_max} HPA max; "
            f"nodes {nodes} of {nodes_max} max")


def plan_failback(fleet: Fleet, snapshot: Snapshot | None, *, region: str) -> ActionPlan:
    """Send ``region``'s users back to it. Raises UsageError if it is unknown or unhealthy."""
    _region(fleet, region)
    healthy, why = _healthy(snapshot, region)
    if not healthy:
        raise UsageError(f"{region}: not healthy enough to take its users back ({why})")
    dns = snapshot.get(f"dns/{region}") if snapshot else None
    weights = getattr(dns, "weights", None)
    if weights == {region: 100}:
        raise UsageError(f"{region}: its users already go to it (DNS {region} 100); nothing to fail back")
    before = ", ".join(f"{r} {w}" for r, w in (weights or {}).items()) or "?"
    spec = _spec(ActionName.FAILBACK)
    return ActionPlan(
        action=ActionName.FAILBACK,
        params={"region": region},
        playbook=spec.playbook,
        extravars={"region": region},
        targets=(f"region/{region}", f"dns/{region}"),
        summary=(f"DNS api.{region}: {before} → {region} 100",
                 "a database replica promoted by the failover stays primary (demote it by hand)"),
        idle_timeout_s=spec.idle_timeout_s,
        job_timeout_s=spec.job_timeout_s,
        observed={f"dns/{region}": weights},
    )


# -- capacity below the workloads: nodes, read replicas, database role, Redis ------------------------------


def _cluster(fleet: Fleet, cluster: str) -> ClusterSpec:
    if cluster not in fleet.clusters:
        known = sorted(fleet.clusters)
        raise UsageError(f"--cluster {cluster}: unknown cluster{_closest(cluster, known)}; "
                         f"expected a cluster of the inventory (opsconsole fleet status lists them)")
    return fleet.clusters[cluster]


def _count(flag: str, value: object) -> int:
    """A whole number given for ``flag`` (a face may send text; the planners take ints)."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        raise UsageError(f"{flag} {value!r}: expected a whole number")
    return value


def _within(flag: str, value: int, bound: IntRange, what: str) -> None:
    if value not in bound:
        raise UsageError(f"{flag} {value}: outside the seed's bounds of {bound.min}–{bound.max} {what}")


def _region_prod_nodes(fleet: Fleet, snapshot: Snapshot | None, region: str, *, skip: str) -> int | None:
    """The nodes the region's other prod clusters run now (``None`` when one is not in the snapshot)."""
    if snapshot is None:
        return None
    total = 0
    for c in fleet.clusters_in(region, Environment.PROD):
        if c.name == skip:
            continue
        state = snapshot.get(f"cluster/{c.name}")
        if not isinstance(state, ClusterState):
            return None
        total += state.nodes
    return total


def plan_nodes(
    fleet: Fleet,
    snapshot: Snapshot | None,
    *,
    cluster: str,
    nodes_min: int | None = None,
    nodes_max: int | None = None,
    nodes_desired: int | None = None,
) -> ActionPlan:
    """Set a cluster's node group (EKS) / node pool (GKE, AKS) bounds, and optionally its desired nodes.

    The bound not given keeps its live value. Each bound is checked against the seed's node bounds
    (``fleet.bounds.cluster_nodes``, per cluster, as the inventory validates ``nodes``); the seed states
    its node bound per region (findings judge a region's prod nodes summed, see
    ``opsconsole.core.fleet.findings.NODE_BOUND_PER_REGION``), so a change that would make a prod region
    run more nodes than that bound (a desired count, or a min above the nodes now) is refused too. A
    max raise adds no node by itself (the cluster autoscaler decides) and is allowed.

    Raises:
        UsageError: unknown cluster, a value outside the bounds, min over max, desired outside the new
            range, nothing given or nothing changed.
    """
    spec = _cluster(fleet, cluster)
    if nodes_min is None and nodes_max is None and nodes_desired is None:
        raise UsageError("nothing to change: give --min, --max or --desired")
    given = {flag: _count(flag, v) for flag, v in
             (("--min", nodes_min), ("--max", nodes_max), ("--desired", nodes_desired)) if v is not None}
    bound = fleet.bounds.cluster_nodes
    for flag, value in given.items():
        _within(flag, value, bound, "nodes per cluster")
    state = snapshot.get(f"cluster/{cluster}") if snapshot is not None else None
    now = state if isinstance(state, ClusterState) else None
    lo = now.nodes_min if now else spec.nodes.min
    hi = now.nodes_max if now else spec.nodes.max
    nodes = now.nodes if now else None
    new_min = given.get("--min", lo)
    new_max = given.get("--max", hi)
    desired = given.get("--desired")
    if new_min > new_max:
        which = "--min" if "--min" in given else "--max"
        raise UsageError(f"{which}: node min {new_min} would be over max {new_max} in {cluster} "
                         f"(now {lo}–{hi}); give both --min and --max")
    if desired is not None and not new_min <= desired <= new_max:
        raise UsageError(f"--desired {desired}: outside {cluster}'s node range {new_min}–{new_max}; "
                         f"change --min / --max too")
    if (new_min, new_max) == (lo, hi) and (desired is None or desired == nodes):
        now_text = f"{lo}–{hi}" + (f", {nodes} nodes" if nodes is not None else "")
        raise UsageError(f"no change: {cluster} is already there (nodes {now_text})")
    after = desired if desired is not None else (max(new_min, min(new_max, nodes)) if nodes is not None
                                                 else None)
    summary = [f"{spec.region} {cluster} ({spec.kind.value} {spec.cloud_region}): nodes min–max "
               f"{lo}–{hi} → {new_min}–{new_max}"
               + (f", desired {_arrow(nodes, desired)}" if desired is not None else
                  f" (now {nodes} nodes" + (f", clamped to {after})" if after != nodes else
                                            "; the autoscaler decides within the range)")
                  if nodes is not None else "")]
    if spec.environment is Environment.PROD:
        others = _region_prod_nodes(fleet, snapshot, spec.region, skip=cluster)
        if others is not None and after is not None and nodes is not None:
            total, before_total = others + after, others + nodes
            if total > bound.max and total > before_total:
                partner = fleet.regions[spec.region].failover_partner
                raise UsageError(
                    f"{spec.region} would run {total} prod nodes ({before_total} now), over the seed's bound "
                    f"of {bound.max} nodes per region; move load to {partner} or lower another cluster of "
                    f"the region first"
                )
            ceiling = others + new_max
            moves = f"{before_total} → {total}" if total != before_total else f"{before_total} now"
            summary.append(f"{spec.region} prod nodes {moves}, up to {ceiling} if {cluster} reaches its "
                           f"new max (seed bound {bound.max} per region"
                           + ("; the region's node finding fires past it)" if ceiling > bound.max else ")"))
    extravars: dict[str, Any] = {"scale_target": "nodes", "region": spec.region, "cluster": cluster,
                                 "nodes_min": new_min, "nodes_max": new_max}
    if desired is not None:
        extravars["nodes_desired"] = desired
    params = {"cluster": cluster, "nodes_min": given.get("--min"), "nodes_max": given.get("--max"),
              "nodes_desired": desired}
    spec_ = _spec(ActionName.NODES)
    return ActionPlan(
        action=ActionName.NODES,
        params={k: v for k, v in params.items() if v is not None},
        playbook=spec_.playbook,
        extravars=extravars,
        targets=(f"region/{spec.region}", f"cluster/{cluster}"),
        summary=tuple(summary),
        idle_timeout_s=spec_.idle_timeout_s,
        job_timeout_s=spec_.job_timeout_s,
        production=spec.environment is Environment.PROD,
        # ``desired`` (the node count) moves with the autoscaler: volatile, not pinned for an approval.
        observed={f"cluster/{cluster}": {"min": lo, "max": hi, "desired": nodes} if now else None},
    )


def _database_now(fleet: Fleet, snapshot: Snapshot | None, region: str) -> tuple[DatabaseState | None, DbRole,
                                                                                    str | None, int]:
    """The region's database as observed (or as the inventory plans it): record, role, source, replicas."""
    record = snapshot.get(f"database/{region}") if snapshot is not None else None
    spec = fleet.regions[region].database
    if isinstance(record, DatabaseState):
        return record, record.role, record.replicates_from, record.read_replicas
    return None, spec.role, spec.replicates_from, spec.read_replicas


def plan_replicas(fleet: Fleet, snapshot: Snapshot | None, *, region: str, read_replicas: int) -> ActionPlan:
    """Set the number of read replicas of a region's database (``pg-<region>-r1..n``).

    Raises:
        UsageError: unknown region, a count outside ``fleet.bounds.read_replicas``, no change.
    """
    _region(fleet, region, "--region")
    count = _count("--count", read_replicas)
    _within("--count", count, fleet.bounds.read_replicas, "read replicas per region")
    record, role, _, before = _database_now(fleet, snapshot, region)
    if before == count:
        raise UsageError(f"no change: pg-{region} already has {count} read replicas")
    cloud = fleet.regions[region].database.cloud.value
    summary = (f"{region} database pg-{region} ({cloud}, {role.value}): read replicas {before} → {count}"
               + ("" if record is not None else " (current count from the inventory: not in the snapshot)"),)
    spec = _spec(ActionName.REPLICAS)
    return ActionPlan(
        action=ActionName.REPLICAS,
        params={"region": region, "read_replicas": count},
        playbook=spec.playbook,
        extravars={"scale_target": "read_replicas", "region": region, "read_replicas": count},
        targets=(f"region/{region}", f"database/{region}"),
        summary=summary,
        idle_timeout_s=spec.idle_timeout_s,
        job_timeout_s=spec.job_timeout_s,
        observed={f"database/{region}": {"read_replicas": before, "role": role.value}
                  if record is not None else None},
    )


DB_CHANGES = ("promote", "demote")


def plan_database(
    fleet: Fleet, snapshot: Snapshot | None, *, region: str, change: str, source_region: str | None = None
) -> ActionPlan:
    """Promote a region's database to a standalone write primary, or demote it back to a read replica of
    ``source_region`` (by default the primary the inventory plans for it): the failback of a database.

    Raises:
        UsageError: unknown region or change; promoting a primary or demoting a replica; a promotion
            that would lose more than the RPO; a source that is not a write primary now, is the region
            itself, or is outside an EU region's residency zone.
    """
    _region(fleet, region, "--region")
    if change not in DB_CHANGES:
        raise UsageError(f"database change {change!r}: expected --promote or --demote")
    record, role, source_now, _ = _database_now(fleet, snapshot, region)
    spec = fleet.regions[region]
    name = f"pg-{region}"
    targets = [f"region/{region}", f"database/{region}"]
    observed: dict[str, Any] = {}
    lag = record.replica_lag_s if record is not None else None
    within_rpo = None if lag is None else lag <= fleet.targets.rpo_db_s
    observed[f"database/{region}"] = {"role": role.value, "replicates_from": source_now,
                                      "within_rpo": within_rpo} if record is not None else None
    extravars: dict[str, Any] = {"db_change": change, "region": region}
    if change == "promote":
        if source_region is not None:
            raise UsageError("--source: only with --demote (a promoted database replicates from nobody)")
        if role is DbRole.WRITE_PRIMARY:
            raise UsageError(f"no change: {name} is already a write primary")
        if lag is not None and not within_rpo:
            raise UsageError(f"--promote: {name} is {lag:.0f} s behind {source_now}, over the "
                             f"{fleet.targets.rpo_db_s:.0f} s RPO; promoting it now would lose data")
        summary = [f"{name} ({spec.database.cloud.value}): read replica of {source_now or '?'} → standalone "
                   f"write primary" + (f" (replica lag {lag:.1f} s)" if lag is not None else "")]
        if source_now in fleet.regions and _primary_now(fleet, snapshot, str(source_now)):
            summary.append(f"pg-{source_now} stays a write primary: two primaries in the "
                           f"{spec.residency_zone} zone until one is demoted (use a failover to move users)")
        params: dict[str, Any] = {"region": region, "change": change}
    else:
        if role is DbRole.READ_REPLICA:
            raise UsageError(f"no change: {name} is already a read replica (of {source_now or '?'})")
        source = source_region or spec.database.replicates_from or _other_primary(fleet, snapshot, region)
        if source is None:
            raise UsageError(f"--source: {region} is a planned write primary; name the write primary "
                             f"{name} should replicate from (--source REGION)")
        _region(fleet, source, "--source")
        if source == region:
            raise UsageError(f"--source {source}: a database cannot replicate from itself")
        zones = {spec.residency_zone, fleet.regions[source].residency_zone}
        if "eu" in zones and len(zones) > 1:
            raise UsageError(f"--source {source}: outside {region}'s residency zone "
                             f"({spec.residency_zone}); EU-resident data must stay in the EU")
        if not _primary_now(fleet, snapshot, source):
            raise UsageError(f"--source {source}: pg-{source} is not an available write primary now; "
                             f"demoting {name} would leave no primary to replicate from")
        summary = [f"{name} ({spec.database.cloud.value}): write primary → read replica of pg-{source} "
                   f"(re-seeded from it; writes made on {name} since its promotion are dropped)"]
        extravars["source_region"] = source
        targets.append(f"database/{source}")
        params = {"region": region, "change": change, "source_region": source}
    spec_ = _spec(ActionName.DATABASE)
    return ActionPlan(
        action=ActionName.DATABASE,
        params=params,
        playbook=spec_.playbook,
        extravars=extravars,
        targets=tuple(targets),
        summary=tuple(summary),
        idle_timeout_s=spec_.idle_timeout_s,
        job_timeout_s=spec_.job_timeout_s,
        observed=observed,
    )


def _primary_now(fleet: Fleet, snapshot: Snapshot | None, region: str) -> bool:
    """Whether ``region``'s database is an available write primary (by the inventory without a snapshot)."""
    record = snapshot.get(f"database/{region}") if snapshot is not None else None
    if isinstance(record, DatabaseState):
        return record.role is DbRole.WRITE_PRIMARY and record.available
    return fleet.regions[region].database.role is DbRole.WRITE_PRIMARY


def _other_primary(fleet: Fleet, snapshot: Snapshot | None, region: str) -> str | None:
    """The planned write primary of ``region``'s residency zone other than itself, if one is up."""
    zone = fleet.regions[region].residency_zone
    for other in sorted(fleet.regions):
        spec = fleet.regions[other]
        if (other != region and spec.residency_zone == zone and spec.database.role is DbRole.WRITE_PRIMARY
                and _primary_now(fleet, snapshot, other)):
            return other
    return None


def plan_cache(fleet: Fleet, snapshot: Snapshot | None, *, region: str, nodes: int) -> ActionPlan:
    """Set the number of nodes of a region's Redis (ElastiCache / Memorystore / Azure Cache).

    Raises:
        UsageError: unknown region, a count outside ``fleet.bounds.redis_nodes``, no change.
    """
    _region(fleet, region, "--region")
    count = _count("--nodes", nodes)
    _within("--nodes", count, fleet.bounds.redis_nodes, "Redis nodes per region")
    record = snapshot.get(f"cache/{region}") if snapshot is not None else None
    now = record if isinstance(record, CacheState) else None
    before = now.nodes if now else fleet.regions[region].cache.nodes
    if before == count:
        raise UsageError(f"no change: redis-{region} already has {count} nodes")
    health = f" ({now.healthy_nodes} healthy now)" if now else " (current count from the inventory)"
    spec = _spec(ActionName.CACHE)
    return ActionPlan(
        action=ActionName.CACHE,
        params={"region": region, "nodes": count},
        playbook=spec.playbook,
        extravars={"scale_target": "cache", "region": region, "cache_nodes": count},
        targets=(f"region/{region}", f"cache/{region}"),
        summary=(f"{region} Redis redis-{region}: nodes {before} → {count}{health}",),
        idle_timeout_s=spec.idle_timeout_s,
        job_timeout_s=spec.job_timeout_s,
        observed={f"cache/{region}": {"nodes": before} if now else None},
    )


# -- re-planning ------------------------------------------------------------------------------------------

#: Observed figures that move on their own (the HPA moves replicas every minute): kept in a plan for the
#: preview and the risk, left out of what an approval is bound to.
VOLATILE_OBSERVATIONS = frozenset({"desired"})


def pinned_observations(plan: ActionPlan) -> dict[str, Any]:
    """The plan's observed state without the volatile figures: what an approval is bound to."""
    pinned: dict[str, Any] = {}
    for key, value in sorted(plan.observed.items()):
        if isinstance(value, Mapping):
            pinned[key] = {k: v for k, v in sorted(value.items()) if k not in VOLATILE_OBSERVATIONS}
        else:
            pinned[key] = value
    return pinned


def replan(fleet: Fleet, snapshot: Snapshot | None, action: str, params: Mapping[str, Any]) -> ActionPlan:
    """The plan for a stored request's ``action`` and ``params``, made again on ``snapshot``.

    Raises:
        UsageError: the request no longer makes sense on this fleet (e.g. the target became unhealthy).
    """
    p = dict(params)
    try:
        name = ActionName(action)
    except ValueError:
        raise UsageError(f"unknown action {action!r}; expected one of: "
                         f"{', '.join(a.value for a in ActionName)}") from None
    plan: ActionPlan
    match name:
        case ActionName.SCALE:
            plan = plan_scale(
                fleet, snapshot, service=p["service"], region=p["region"], replicas=p.get("replicas"),
                hpa_min=p.get("hpa_min"), hpa_max=p.get("hpa_max"),
                environment=Environment(p.get("environment", "prod")), cluster=p.get("cluster"),
            )
        case ActionName.FAILOVER:
            plan = plan_failover(fleet, snapshot, from_region=p["from_region"], to_region=p["to_region"])
        case ActionName.FAILBACK:
            plan = plan_failback(fleet, snapshot, region=p["region"])
        case ActionName.ENV_STOP | ActionName.ENV_START:
            plan = plan_environment(fleet, snapshot, environment=p["environment"], state=p["state"],
                                    region=p.get("region"))
        case ActionName.NODES:
            plan = plan_nodes(fleet, snapshot, cluster=p["cluster"], nodes_min=p.get("nodes_min"),
                              nodes_max=p.get("nodes_max"), nodes_desired=p.get("nodes_desired"))
        case ActionName.REPLICAS:
            plan = plan_replicas(fleet, snapshot, region=p["region"], read_replicas=p["read_replicas"])
        case ActionName.DATABASE:
            plan = plan_database(fleet, snapshot, region=p["region"], change=p["change"],
                                 source_region=p.get("source_region"))
        case ActionName.CACHE:
            plan = plan_cache(fleet, snapshot, region=p["region"], nodes=p["nodes"])
    return plan


# -- non-prod environments -----------------------------------------------------------------------------


def plan_environment(
    fleet: Fleet, snapshot: Snapshot | None, *, environment: str, state: str, region: str | None = None
) -> ActionPlan:
    """Stop or start a non-prod environment (all its clusters, or one region's)."""
    try:
        env = Environment(environment)
    except ValueError:
        raise UsageError(f"environment {environment!r}: expected staging or dev") from None
    if env is Environment.PROD:
        raise UsageError("production cannot be stopped by a schedule action")
    if state not in ("stopped", "started"):
        raise UsageError(f"state {state!r}: expected stop or start")
    if region is not None:
        _region(fleet, region)
    clusters = [c for c in fleet.clusters.values()
                if c.environment is env and (region is None or c.region == region)]
    if not clusters:
        where = f" in {region}" if region else ""
        raise UsageError(f"{env.value} has no cluster{where}")
    name = ActionName.ENV_STOP if state == "stopped" else ActionName.ENV_START
    verb = "stop" if state == "stopped" else "start"
    summary = []
    for c in clusters:
        pods = sum(w.desired for w in (snapshot.of_type(WorkloadState) if snapshot else [])
                   if w.cluster == c.name)
        summary.append(f"{c.region} {c.name}: {verb} ({pods} pods now)" if snapshot else f"{c.name}: {verb}")
    # `environment` is a reserved word in Ansible (a play keyword): the playbook takes `env_name`.
    extravars: dict[str, Any] = {"env_name": env.value, "env_state": state}
    if region is not None:
        extravars["region"] = region
    spec = _spec(name)
    return ActionPlan(
        action=name,
        params={"environment": env.value, "state": state, **({"region": region} if region else {})},
        playbook=spec.playbook,
        extravars=extravars,
        targets=(f"environment/{env.value}", *(f"cluster/{c.name}" for c in clusters)),
        summary=tuple(summary),
        idle_timeout_s=spec.idle_timeout_s,
        job_timeout_s=spec.job_timeout_s,
        production=False,
    )


__all__ = [
    "CATALOGUE",
    "ActionName",
    "ActionPlan",
    "ActionSpec",
    "pinned_observations",
    "plan_cache",
    "plan_database",
    "plan_environment",
    "plan_failback",
    "plan_failover",
    "plan_nodes",
    "plan_replicas",
    "plan_scale",
    "replan",
]
