"""Every suggested action runs as shown (issue 14): each finding kind that suggests an action is raised on
the seed fleet, and its suggestion is planned exactly as a face files it — ``replan(fleet, snapshot,
action.action, action.params)`` — and its summary ends with the ``opsconsole act`` command for it.

A finding kind added with a suggestion and no scenario here fails :func:`test_every_kind_is_walked`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import opsconsole.testing as testing_kit
from opsconsole.core.api import ACTIONS
from opsconsole.core.change.actions import replan
from opsconsole.core.fleet.engine import Snapshot
from opsconsole.core.fleet.findings import FindingKind, command_line, evaluate
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import (
    CacheState,
    ClusterState,
    DatabaseState,
    DbRole,
    Environment,
    Fleet,
    RegionTraffic,
    WorkloadState,
)
from opsconsole.testing import healthy_records, replace_record, snapshot_of


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_inventory()


@pytest.fixture
def healthy(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Snapshot:
    monkeypatch.setattr(testing_kit, "_NODE_FILL", 0.0)  # prod regions within the seed's 50 nodes
    snap = snapshot_of(healthy_records(fleet))
    assert evaluate(fleet, snap) == []
    return snap


def _get(snap: Snapshot, key: str) -> object:
    record = snap.get(key)
    assert record is not None, key
    return record


def hpa_at_max(fleet: Fleet, s: Snapshot) -> Snapshot:
    w = _get(s, "workload/eks-use1-prod/checkout")
    assert isinstance(w, WorkloadState)
    return replace_record(s, w.key, desired=w.hpa_max)


def nodes_at_max(fleet: Fleet, s: Snapshot) -> Snapshot:
    c = _get(s, "cluster/gke-usw2-prod")
    assert isinstance(c, ClusterState)
    return replace_record(s, c.key, nodes=c.nodes_max, ready_nodes=c.nodes_max)


def nodes_at_the_bound(fleet: Fleet, s: Snapshot) -> Snapshot:
    bound = fleet.bounds.cluster_nodes.max
    return replace_record(s, "cluster/aks-usw2-prod", nodes=bound, ready_nodes=bound, nodes_max=bound)


def slow_queries(fleet: Fleet, s: Snapshot) -> Snapshot:
    return replace_record(s, "database/ap-northeast-1", query_p95_ms=fleet.targets.db_query_p95_ms * 2)


def redis_below_min(fleet: Fleet, s: Snapshot) -> Snapshot:
    c = _get(s, "cache/ap-south-1")
    assert isinstance(c, CacheState)
    return replace_record(s, c.key, healthy_nodes=fleet.bounds.redis_nodes.min - 1)


def provider_mix(fleet: Fleet, s: Snapshot) -> Snapshot:
    return replace_record(s, "cluster/eks-euw1-prod", ready_nodes=3)


def dns_outside_the_eu(fleet: Fleet, s: Snapshot) -> Snapshot:
    return replace_record(s, "dns/eu-west-1", weights={"eu-west-1": 70, "us-east-1": 30})


def drained_outside_the_eu(fleet: Fleet, s: Snapshot) -> Snapshot:
    return replace_record(s, "dns/eu-central-1", weights={"us-east-1": 100})


def region_down(fleet: Fleet, s: Snapshot) -> Snapshot:
    return replace_record(s, "traffic/us-west-2", health_check_ok=False)


def slow_region(fleet: Fleet, s: Snapshot) -> Snapshot:
    return replace_record(s, "traffic/ap-south-1", p95_ms=fleet.targets.api_p95_ms * 1.2)


def ten_times(fleet: Fleet, s: Snapshot) -> Snapshot:
    t = _get(s, "traffic/ap-south-1")
    db = _get(s, "database/ap-south-1")
    assert isinstance(t, RegionTraffic) and isinstance(db, DatabaseState)
    s = replace_record(s, t.key, rps=t.rps + fleet.targets.api_rps,
                       concurrent_users=t.concurrent_users + fleet.targets.concurrent_users)
    return replace_record(s, db.key, tps=db.tps + fleet.targets.db_tps)


def slow_everywhere(fleet: Fleet, s: Snapshot) -> Snapshot:
    for t in list(s.of_type(RegionTraffic)):
        s = replace_record(s, t.key, avg_latency_ms=fleet.targets.global_avg_latency_ms * 1.5)
    return s


def region_over_its_nodes(fleet: Fleet, s: Snapshot) -> Snapshot:
    c = _get(s, "cluster/eks-euw1-prod")
    assert isinstance(c, ClusterState)
    return replace_record(s, c.key, nodes=fleet.bounds.cluster_nodes.max - 2,
                          ready_nodes=fleet.bounds.cluster_nodes.max - 2)


def split_brain(fleet: Fleet, s: Snapshot) -> Snapshot:
    return replace_record(s, "database/eu-central-1", role=DbRole.WRITE_PRIMARY, replicates_from=None)


def burst_bound_by_hpa(fleet: Fleet, s: Snapshot) -> Snapshot:
    """Every prod workload of us-west-2 near its HPA max: a 1.5x burst does not fit."""
    for w in list(s.of_type(WorkloadState)):
        if w.region == "us-west-2" and w.environment is Environment.PROD:
            s = replace_record(s, w.key, desired=max(w.hpa_min, w.hpa_max * 3 // 4),
                               ready=max(w.hpa_min, w.hpa_max * 3 // 4))
    return s


def burst_bound_by_nodes(fleet: Fleet, s: Snapshot) -> Snapshot:
    """us-west-2's node maxima barely above what its pods need: the nodes bind before the HPAs."""
    pods = sum(w.desired for w in s.of_type(WorkloadState)
               if w.region == "us-west-2" and w.environment is Environment.PROD)
    clusters = [c for c in s.of_type(ClusterState)
                if c.region == "us-west-2" and c.environment is Environment.PROD]
    slots = sum(fleet.clusters[c.cluster].pods_per_node for c in clusters)  # per node of each cluster
    per_cluster_max = max(1, -(-pods * 12 // 10 // slots))  # room for 1.2x, not 1.5x
    for c in clusters:
        s = replace_record(s, c.key, nodes_max=per_cluster_max, nodes=min(c.nodes, per_cluster_max),
                           ready_nodes=min(c.ready_nodes, per_cluster_max), nodes_min=1)
    return s


#: (scenario, the finding kind it raises, the action that kind suggests there)
SCENARIOS: list[tuple[Callable[[Fleet, Snapshot], Snapshot], FindingKind, str]] = [
    (hpa_at_max, FindingKind.HPA_AT_MAX, "scale"),
    (nodes_at_max, FindingKind.NODES_AT_MAX, "nodes"),
    (nodes_at_the_bound, FindingKind.NODES_AT_MAX, "failover"),
    (slow_queries, FindingKind.DB_QUERY_P95, "replicas"),
    (redis_below_min, FindingKind.REDIS_BELOW_MIN, "cache"),
    (provider_mix, FindingKind.PROVIDER_MIX_DRIFT, "nodes"),
    (dns_outside_the_eu, FindingKind.DATA_RESIDENCY, "failback"),
    (drained_outside_the_eu, FindingKind.DATA_RESIDENCY, "failover"),
    (region_down, FindingKind.REGION_DOWN, "failover"),
    (slow_region, FindingKind.LATENCY_P95, "scale"),
    (ten_times, FindingKind.CAPACITY, "scale"),
    (ten_times, FindingKind.CAPACITY, "replicas"),
    (slow_everywhere, FindingKind.GLOBAL_AVG_LATENCY, "scale"),
    (region_over_its_nodes, FindingKind.REGION_NODES_BOUND, "failover"),
    (split_brain, FindingKind.WRITE_PRIMARIES, "database"),
    (burst_bound_by_hpa, FindingKind.HEADROOM, "scale"),
    (burst_bound_by_nodes, FindingKind.HEADROOM, "nodes"),
]

#: Kinds that never suggest an action (what to do is not one playbook run), said here on purpose.
NO_ACTION = {
    FindingKind.ERROR_BUDGET_BURN, FindingKind.REPLICA_LAG, FindingKind.PENDING_PODS,
    FindingKind.COST_MIX_OFF_TARGET, FindingKind.PARTNER_UNHEALTHY, FindingKind.STALE_DATA,
    FindingKind.REGIONAL_AVG_LATENCY, FindingKind.DB_UNAVAILABLE, FindingKind.STORAGE_BOUNDS,
    FindingKind.BACKUP_RETENTION,
}


def test_every_kind_is_walked() -> None:
    walked = {kind for _, kind, _ in SCENARIOS}
    assert walked | NO_ACTION == set(FindingKind), set(FindingKind) - walked - NO_ACTION
    assert not walked & NO_ACTION


@pytest.mark.parametrize(("scenario", "kind", "action"), SCENARIOS,
                         ids=[f"{k.value}-{a}" for _, k, a in SCENARIOS])
def test_a_findings_suggested_action_plans_as_shown(
    fleet: Fleet, healthy: Snapshot, scenario: Callable[[Fleet, Snapshot], Snapshot], kind: FindingKind,
    action: str,
) -> None:
    snap = scenario(fleet, healthy)
    suggested = [f.suggested_action for f in evaluate(fleet, snap)
                 if f.kind is kind and f.suggested_action is not None and f.suggested_action.action == action]
    assert suggested, f"no {kind.value} finding suggesting {action}"
    for s in suggested:
        assert s.action in ACTIONS and set(s.params) <= ACTIONS[s.action], s
        plan = replan(fleet, snap, s.action, s.params)
        assert plan.summary
        assert s.summary.endswith(command_line(s.action, s.params))
        assert command_line(s.action, s.params).startswith(
            f"opsconsole act {'replicas' if s.action == 'database' else s.action} ")


def test_no_finding_kind_suggests_a_name_no_face_runs(fleet: Fleet, healthy: Snapshot) -> None:
    for scenario, _, _ in SCENARIOS:
        for f in evaluate(fleet, scenario(fleet, healthy)):
            if f.suggested_action is not None:
                assert f.suggested_action.action in ACTIONS, f.id
