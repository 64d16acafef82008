"""Unit tests of :mod:`opsconsole.core.fleet.findings`
(and the parts of :mod:`opsconsole.testing` it relies on).

Every check is proven twice: silent on the seed fleet's healthy state, and firing with the right kind,
severity, region, object and suggested action when one record is pushed over its target.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import timedelta

import pytest

import opsconsole.testing as testing_kit
from opsconsole.core.fleet.engine import Snapshot, SourceHealth, SourceStatus
from opsconsole.core.fleet.findings import (
    BURN_RATE_CRITICAL,
    BURN_RATE_HIGH,
    Finding,
    FindingKind,
    evaluate,
    region_health,
)
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import (
    CacheState,
    Cloud,
    ClusterSpec,
    ClusterState,
    DatabaseState,
    DbRole,
    DnsRecordSet,
    Environment,
    Fleet,
    FleetRecord,
    Geography,
    Health,
    RegionSpec,
    RegionTraffic,
    Severity,
    WorkloadState,
)
from opsconsole.testing import (
    DEFAULT_NOW,
    FakeClock,
    drop_record,
    healthy_records,
    records_of,
    replace_record,
    snapshot_of,
)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_inventory()


@pytest.fixture
def healthy(fleet: Fleet) -> Snapshot:
    # The kit puts prod node counts at the low end of the feasible scale (eu-west-1 at 43): a healthy
    # state under every bound, the seed's 50 nodes per region included.
    return snapshot_of(healthy_records(fleet))


def of_kind(findings: Sequence[Finding], kind: FindingKind) -> list[Finding]:
    return [f for f in findings if f.kind is kind]


def one(findings: Sequence[Finding], kind: FindingKind) -> Finding:
    found = of_kind(findings, kind)
    assert len(found) == 1, [f.id for f in findings]
    return found[0]


def record(snap: Snapshot, key: str) -> FleetRecord:
    r = snap.get(key)
    assert r is not None, key
    return r


def workload(snap: Snapshot, key: str) -> WorkloadState:
    r = record(snap, key)
    assert isinstance(r, WorkloadState)
    return r


def cluster(snap: Snapshot, key: str) -> ClusterState:
    r = record(snap, key)
    assert isinstance(r, ClusterState)
    return r


# --------------------------------------------------------------------------------------------------
# The healthy baseline
# --------------------------------------------------------------------------------------------------


def test_healthy_snapshot_has_no_findings_at_all(fleet: Fleet, healthy: Snapshot) -> None:
    assert evaluate(fleet, healthy) == []


def test_healthy_snapshot_all_regions_ok(fleet: Fleet, healthy: Snapshot) -> None:
    assert region_health(fleet, healthy, evaluate(fleet, healthy)) == dict.fromkeys(fleet.regions, Health.OK)


def test_healthy_records_cover_every_object_of_the_fleet(fleet: Fleet, healthy: Snapshot) -> None:
    for region in fleet.regions:
        for prefix in ("traffic", "dns", "database", "cache"):
            assert f"{prefix}/{region}" in healthy.records
    for c in fleet.clusters.values():
        state = cluster(healthy, f"cluster/{c.name}")
        assert c.nodes.min <= state.nodes < c.nodes.max
        assert state.reserved_nodes + state.spot_nodes + state.on_demand_nodes == state.nodes
        for s in fleet.services_in(c.environment):
            w = workload(healthy, f"workload/{c.name}/{s.name}")
            assert w.hpa_min < w.desired < w.hpa_max
            assert w.p95_ms < fleet.targets.api_p95_ms / 2
    expected_workloads = sum(len(fleet.services_in(c.environment)) for c in fleet.clusters.values())
    assert len(healthy.of_type(WorkloadState)) == expected_workloads
    for dns in healthy.of_type(DnsRecordSet):
        assert dns.weights == {dns.region: 100}
    for db in healthy.of_type(DatabaseState):
        assert db.replica_lag_s <= 1.0


def test_healthy_mixes_would_fail_with_zero_tolerance(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mix checks do look at the healthy data: it is on plan within rounding, not by accident."""
    strict = dataclasses.replace(
        fleet, targets=dataclasses.replace(fleet.targets, provider_mix_tolerance=0.0, cost_mix_tolerance=0.0)
    )
    # Node counts mid-way between the lowest and highest feasible scale: their rounding is what the zero
    # tolerance must see (at the low end the minimums land exactly on plan). At that fill some regions
    # run over the seed's per-region node bound, which is not what this test is about.
    monkeypatch.setattr(testing_kit, "_NODE_FILL", 0.5)
    found = [
        f
        for f in evaluate(strict, snapshot_of(healthy_records(fleet)))
        if f.kind is not FindingKind.REGION_NODES_BOUND
    ]
    # Capacity per cloud is on plan only within rounding, so a zero tolerance sees the drift; the
    # cost split may land exactly on target, so it is not required to fire here.
    assert FindingKind.PROVIDER_MIX_DRIFT in {f.kind for f in found}
    assert {f.kind for f in found} <= {FindingKind.PROVIDER_MIX_DRIFT, FindingKind.COST_MIX_OFF_TARGET}
    for f in found:
        assert f.evidence["max_drift"] < 0.02


# --------------------------------------------------------------------------------------------------
# LATENCY_P95
# --------------------------------------------------------------------------------------------------


def test_latency_over_target_is_high_and_suggests_scaling_the_hottest_workload(
    fleet: Fleet, healthy: Snapshot
) -> None:
    target = fleet.targets.api_p95_ms
    snap = replace_record(healthy, "traffic/us-east-1", p95_ms=target * 1.2)
    snap = replace_record(snap, "workload/eks-use1-prod/checkout", cpu_utilisation=0.97)
    f = one(evaluate(fleet, snap), FindingKind.LATENCY_P95)
    assert (f.severity, f.region, f.object) == (Severity.HIGH, "us-east-1", "traffic/us-east-1")
    assert f.id == "latency_p95:traffic/us-east-1"
    assert f.measured == pytest.approx(target * 1.2)
    assert f.target == target
    assert f.evidence["p95_ms"] == pytest.approx(target * 1.2)
    assert f.suggested_action is not None
    w = workload(snap, "workload/eks-use1-prod/checkout")
    assert f.suggested_action.action == "scale"
    params = f.suggested_action.params
    assert (params["cluster"], params["service"]) == ("eks-use1-prod", "checkout")
    assert params["hpa_min"] > w.desired
    assert params["hpa_max"] >= params["hpa_min"]
    assert params["hpa_max"] <= fleet.bounds.hpa_pods.max


def test_latency_over_one_and_a_half_times_target_is_critical(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "traffic/ap-south-1", p95_ms=fleet.targets.api_p95_ms * 1.6)
    f = one(evaluate(fleet, snap), FindingKind.LATENCY_P95)
    assert (f.severity, f.region) == (Severity.CRITICAL, "ap-south-1")


def test_latency_exactly_on_target_is_not_a_finding(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "traffic/ap-south-1", p95_ms=fleet.targets.api_p95_ms)
    assert evaluate(fleet, snap) == []


# --------------------------------------------------------------------------------------------------
# ERROR_BUDGET_BURN
# --------------------------------------------------------------------------------------------------


def _burn(healthy: Snapshot, fleet: Fleet, region: str, burn_1h: float, burn_5m: float) -> list[Finding]:
    budget = fleet.targets.error_budget
    snap = replace_record(
        healthy, f"traffic/{region}", error_rate_1h=budget * burn_1h, error_rate=budget * burn_5m
    )
    return of_kind(evaluate(fleet, snap), FindingKind.ERROR_BUDGET_BURN)


def test_fast_burn_on_both_windows_is_critical(fleet: Fleet, healthy: Snapshot) -> None:
    [f] = _burn(healthy, fleet, "eu-west-1", 20.0, 20.0)
    assert (f.severity, f.region, f.object) == (Severity.CRITICAL, "eu-west-1", "traffic/eu-west-1")
    assert f.evidence["burn_rate_1h"] == pytest.approx(20.0)
    assert f.evidence["burn_rate_5m"] == pytest.approx(20.0)
    assert f.target == BURN_RATE_CRITICAL


def test_slow_burn_is_high(fleet: Fleet, healthy: Snapshot) -> None:
    [f] = _burn(healthy, fleet, "eu-west-1", 7.0, 7.0)
    assert f.severity is Severity.HIGH
    assert f.target == BURN_RATE_HIGH


def test_fast_1h_burn_with_a_cooling_5m_rate_is_only_high(fleet: Fleet, healthy: Snapshot) -> None:
    [f] = _burn(healthy, fleet, "eu-west-1", 20.0, 8.0)
    assert f.severity is Severity.HIGH


def test_burn_that_has_stopped_in_the_5m_window_is_not_reported(fleet: Fleet, healthy: Snapshot) -> None:
    """Multiwindow: a 1 h burn whose 5 m rate is back to normal is over; don't page for it."""
    assert _burn(healthy, fleet, "eu-west-1", 20.0, 1.0) == []


def test_burn_below_six_is_not_reported(fleet: Fleet, healthy: Snapshot) -> None:
    assert _burn(healthy, fleet, "eu-west-1", 5.5, 5.5) == []


# --------------------------------------------------------------------------------------------------
# REPLICA_LAG and DB_QUERY_P95
# --------------------------------------------------------------------------------------------------


def test_replica_lag_over_rpo_is_critical(fleet: Fleet, healthy: Snapshot) -> None:
    rpo = fleet.targets.rpo_db_s
    snap = replace_record(healthy, "database/eu-central-1", replica_lag_s=rpo + 100)
    f = one(evaluate(fleet, snap), FindingKind.REPLICA_LAG)
    assert (f.severity, f.region, f.object) == (Severity.CRITICAL, "eu-central-1", "database/eu-central-1")
    assert f.measured == rpo + 100
    assert f.target == rpo
    assert f.evidence["replica_lag_s"] == rpo + 100


def test_replica_lag_over_half_the_rpo_is_medium(fleet: Fleet, healthy: Snapshot) -> None:
    rpo = fleet.targets.rpo_db_s
    snap = replace_record(healthy, "database/us-west-2", replica_lag_s=rpo * 0.6)
    f = one(evaluate(fleet, snap), FindingKind.REPLICA_LAG)
    assert (f.severity, f.region) == (Severity.MEDIUM, "us-west-2")


def test_replica_lag_at_half_the_rpo_is_fine(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "database/us-west-2", replica_lag_s=fleet.targets.rpo_db_s * 0.5)
    assert evaluate(fleet, snap) == []


def test_slow_queries_are_medium_and_suggest_a_read_replica(fleet: Fleet, healthy: Snapshot) -> None:
    db = record(healthy, "database/ap-northeast-1")
    assert isinstance(db, DatabaseState)
    snap = replace_record(
        healthy, "database/ap-northeast-1", query_p95_ms=fleet.targets.db_query_p95_ms * 1.5
    )
    f = one(evaluate(fleet, snap), FindingKind.DB_QUERY_P95)
    assert (f.severity, f.region, f.object) == (Severity.MEDIUM, "ap-northeast-1", "database/ap-northeast-1")
    assert f.suggested_action is not None
    assert f.suggested_action.action == "replicas"
    assert f.suggested_action.params == {"region": "ap-northeast-1", "read_replicas": db.read_replicas + 1}


def test_slow_queries_at_the_replica_bound_suggest_nothing(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(
        healthy,
        "database/ap-northeast-1",
        query_p95_ms=fleet.targets.db_query_p95_ms * 1.5,
        read_replicas=fleet.bounds.read_replicas.max,
    )
    assert one(evaluate(fleet, snap), FindingKind.DB_QUERY_P95).suggested_action is None


# --------------------------------------------------------------------------------------------------
# HPA_AT_MAX, NODES_AT_MAX, PENDING_PODS, REDIS_BELOW_MIN
# --------------------------------------------------------------------------------------------------


def test_critical_prod_service_at_hpa_max_is_high_and_suggests_a_higher_max(
    fleet: Fleet, healthy: Snapshot
) -> None:
    key = "workload/eks-use1-prod/checkout"
    w = workload(healthy, key)
    snap = replace_record(healthy, key, desired=w.hpa_max, ready=w.hpa_max, cpu_utilisation=0.9)
    f = one(evaluate(fleet, snap), FindingKind.HPA_AT_MAX)
    assert (f.severity, f.region, f.object) == (Severity.HIGH, "us-east-1", key)
    assert f.evidence["desired"] == w.hpa_max
    action = f.suggested_action
    assert action is not None
    assert action.action == "scale"
    assert action.params["cluster"] == "eks-use1-prod"
    assert action.params["service"] == "checkout"
    assert w.hpa_max < action.params["hpa_max"] <= fleet.bounds.hpa_pods.max
    assert action.params["hpa_min"] == w.hpa_min
    assert f"from {w.hpa_max} to {action.params['hpa_max']}" in action.summary


def test_important_service_or_non_prod_at_hpa_max_is_medium(fleet: Fleet, healthy: Snapshot) -> None:
    snap = healthy
    for key in ("workload/eks-use1-prod/catalog", "workload/eks-use1-staging/checkout"):
        w = workload(snap, key)
        snap = replace_record(snap, key, desired=w.hpa_max)
    found = {f.object: f.severity for f in of_kind(evaluate(fleet, snap), FindingKind.HPA_AT_MAX)}
    assert found == {
        "workload/eks-use1-prod/catalog": Severity.MEDIUM,
        "workload/eks-use1-staging/checkout": Severity.MEDIUM,
    }


def test_hpa_max_at_the_fleet_bound_has_no_scale_suggestion(fleet: Fleet, healthy: Snapshot) -> None:
    bound = fleet.bounds.hpa_pods.max
    key = "workload/eks-use1-prod/gateway"
    snap = replace_record(healthy, key, desired=bound, hpa_max=bound)
    f = one(evaluate(fleet, snap), FindingKind.HPA_AT_MAX)
    assert f.suggested_action is None


def test_fixed_size_deployment_is_not_at_hpa_max(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "workload/eks-use1-prod/checkout", desired=5, hpa_min=5, hpa_max=5)
    assert of_kind(evaluate(fleet, snap), FindingKind.HPA_AT_MAX) == []


def test_prod_cluster_at_node_max_is_high_and_suggests_a_higher_max(fleet: Fleet, healthy: Snapshot) -> None:
    key = "cluster/aks-use1-prod"
    c = cluster(healthy, key)
    snap = replace_record(healthy, key, nodes=c.nodes_max, ready_nodes=c.nodes_max)
    f = one(evaluate(fleet, snap), FindingKind.NODES_AT_MAX)
    assert (f.severity, f.region, f.object) == (Severity.HIGH, "us-east-1", key)
    assert f.suggested_action is not None
    assert f.suggested_action.action == "nodes"
    params = f.suggested_action.params
    assert params["cluster"] == "aks-use1-prod"
    assert c.nodes_max < params["nodes_max"] <= fleet.bounds.cluster_nodes.max


def test_cluster_at_the_fleet_node_bound_suggests_failover_to_partner(
    fleet: Fleet, healthy: Snapshot
) -> None:
    bound = fleet.bounds.cluster_nodes.max
    snap = replace_record(healthy, "cluster/eks-use1-prod", nodes=bound, ready_nodes=bound, nodes_max=bound)
    f = one(evaluate(fleet, snap), FindingKind.NODES_AT_MAX)
    assert f.suggested_action is not None
    assert f.suggested_action.action == "failover"
    assert f.suggested_action.params == {
        "from_region": "us-east-1",
        "to_region": fleet.regions["us-east-1"].failover_partner,
    }


def test_staging_cluster_at_node_max_is_medium(fleet: Fleet, healthy: Snapshot) -> None:
    c = cluster(healthy, "cluster/eks-use1-staging")
    snap = replace_record(healthy, "cluster/eks-use1-staging", nodes=c.nodes_max, ready_nodes=c.nodes_max)
    f = one(evaluate(fleet, snap), FindingKind.NODES_AT_MAX)
    assert (f.severity, f.region) == (Severity.MEDIUM, "us-east-1")


def test_pending_pods_are_medium_and_high_when_the_cluster_cannot_grow(
    fleet: Fleet, healthy: Snapshot
) -> None:
    key = "workload/gke-euw1-prod/search"
    w = workload(healthy, key)
    snap = replace_record(healthy, key, pending_pods=4, ready=w.desired - 4)
    f = one(evaluate(fleet, snap), FindingKind.PENDING_PODS)
    assert (f.severity, f.region, f.object) == (Severity.MEDIUM, "eu-west-1", key)
    assert f.measured == 4

    c = cluster(snap, "cluster/gke-euw1-prod")
    snap = replace_record(snap, "cluster/gke-euw1-prod", nodes=c.nodes_max)
    assert one(evaluate(fleet, snap), FindingKind.PENDING_PODS).severity is Severity.HIGH


def test_pending_pods_with_every_replica_ready_are_ignored(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "workload/gke-euw1-prod/search", pending_pods=2)
    assert evaluate(fleet, snap) == []


def test_redis_below_minimum_is_high_and_suggests_more_nodes(fleet: Fleet, healthy: Snapshot) -> None:
    minimum = fleet.bounds.redis_nodes.min
    cache = record(healthy, "cache/ap-south-1")
    assert isinstance(cache, CacheState)
    snap = replace_record(healthy, "cache/ap-south-1", healthy_nodes=minimum - 1)
    f = one(evaluate(fleet, snap), FindingKind.REDIS_BELOW_MIN)
    assert (f.severity, f.region, f.object) == (Severity.HIGH, "ap-south-1", "cache/ap-south-1")
    assert (f.measured, f.target) == (minimum - 1, minimum)
    assert f.suggested_action is not None
    assert f.suggested_action.action == "cache"
    assert f.suggested_action.params["region"] == "ap-south-1"
    assert cache.nodes < f.suggested_action.params["nodes"] <= fleet.bounds.redis_nodes.max


def test_redis_at_minimum_is_fine(fleet: Fleet, healthy: Snapshot) -> None:
    minimum = fleet.bounds.redis_nodes.min
    snap = replace_record(healthy, "cache/us-east-1", healthy_nodes=minimum)
    assert evaluate(fleet, snap) == []


# --------------------------------------------------------------------------------------------------
# PROVIDER_MIX_DRIFT and COST_MIX_OFF_TARGET
# --------------------------------------------------------------------------------------------------


def test_provider_mix_drift_in_a_geography_is_medium_and_suggests_growing_the_short_cloud(
    fleet: Fleet, healthy: Snapshot
) -> None:
    # Half of EMEA's AWS capacity loses its nodes: AWS falls well below its 70 % plan.
    snap = replace_record(healthy, "cluster/eks-euw1-prod", ready_nodes=3)
    f = one(evaluate(fleet, snap), FindingKind.PROVIDER_MIX_DRIFT)
    assert (f.severity, f.region, f.object) == (Severity.MEDIUM, None, "geography/emea")
    assert f.evidence["plan"]["aws"] == fleet.provider_plan[Geography.EMEA][Cloud.AWS]
    assert f.evidence["observed"]["aws"] < f.evidence["plan"]["aws"] - fleet.targets.provider_mix_tolerance
    assert f.evidence["basis"].startswith("ready_nodes x pods_per_node")
    action = f.suggested_action
    assert action is not None
    assert action.action == "nodes"
    grown = fleet.clusters[action.params["cluster"]]
    assert grown.cloud is Cloud.AWS
    assert fleet.regions[grown.region].geography is Geography.EMEA
    assert action.params["nodes_min"] <= fleet.bounds.cluster_nodes.max


def test_non_prod_clusters_do_not_count_toward_the_provider_mix(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "cluster/gke-euw1-staging", nodes=9, ready_nodes=9)
    assert evaluate(fleet, snap) == []


def test_cost_mix_off_target_is_low_and_fleet_wide(fleet: Fleet, healthy: Snapshot) -> None:
    snap = healthy
    for c in healthy.of_type(ClusterState):  # every reserved node becomes on-demand
        snap = replace_record(
            snap, c.key, reserved_nodes=0, on_demand_nodes=c.on_demand_nodes + c.reserved_nodes
        )
    f = one(evaluate(fleet, snap), FindingKind.COST_MIX_OFF_TARGET)
    assert (f.severity, f.region, f.object) == (Severity.LOW, None, "cost-mix/fleet")
    assert f.evidence["observed"]["reserved"] == 0.0
    assert f.evidence["target"] == fleet.targets.cost_mix
    assert f.id == "cost_mix_off_target:cost-mix/fleet"


# --------------------------------------------------------------------------------------------------
# DATA_RESIDENCY
# --------------------------------------------------------------------------------------------------


def test_eu_dns_sending_users_outside_the_eu_is_critical(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "dns/eu-west-1", weights={"eu-west-1": 70, "us-east-1": 30})
    f = one(evaluate(fleet, snap), FindingKind.DATA_RESIDENCY)
    assert (f.severity, f.region, f.object) == (Severity.CRITICAL, "eu-west-1", "dns/eu-west-1")
    assert f.evidence["outside_zone"] == {"us-east-1": 30}
    assert f.measured == pytest.approx(0.3)
    assert f.suggested_action is not None
    assert f.suggested_action.action == "failback"
    assert f.suggested_action.params == {"region": "eu-west-1"}


def test_drained_eu_region_sent_outside_the_eu_should_go_to_its_eu_partner(
    fleet: Fleet, healthy: Snapshot
) -> None:
    snap = replace_record(healthy, "dns/eu-central-1", weights={"us-east-1": 100})
    f = one(evaluate(fleet, snap), FindingKind.DATA_RESIDENCY)
    assert f.suggested_action is not None
    assert f.suggested_action.action == "failover"
    assert f.suggested_action.params == {"from_region": "eu-central-1", "to_region": "eu-west-1"}


def test_eu_failover_inside_the_eu_and_us_failover_to_europe_are_allowed(
    fleet: Fleet, healthy: Snapshot
) -> None:
    snap = replace_record(healthy, "dns/eu-west-1", weights={"eu-central-1": 100})
    snap = replace_record(snap, "dns/us-east-1", weights={"us-east-1": 50, "eu-west-1": 50})
    assert evaluate(fleet, snap) == []


def test_eu_database_replicating_from_outside_the_eu_is_critical(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "database/eu-central-1", replicates_from="us-east-1")
    f = one(evaluate(fleet, snap), FindingKind.DATA_RESIDENCY)
    assert (f.severity, f.region, f.object) == (Severity.CRITICAL, "eu-central-1", "database/eu-central-1")
    assert f.evidence["replicates_from_zone"] == fleet.regions["us-east-1"].residency_zone


def test_eu_data_replicated_to_a_region_outside_the_eu_is_critical(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "database/us-west-2", replicates_from="eu-west-1")
    f = one(evaluate(fleet, snap), FindingKind.DATA_RESIDENCY)
    assert (f.severity, f.region, f.object) == (Severity.CRITICAL, "us-west-2", "database/us-west-2")
    assert f.evidence["data_zone"] == "eu"


def test_eu_replica_promoted_outside_the_eu_is_critical(fleet: Fleet, healthy: Snapshot) -> None:
    # A fleet where us-west-2 holds a replica of EU data (against the rules, but the plan says so),
    # and that replica has been promoted to a write primary.
    us_west = fleet.regions["us-west-2"]
    moved = dataclasses.replace(
        us_west, database=dataclasses.replace(us_west.database, replicates_from="eu-west-1")
    )
    odd = dataclasses.replace(fleet, regions={**fleet.regions, "us-west-2": moved})
    snap = replace_record(healthy, "database/us-west-2", role=DbRole.WRITE_PRIMARY, replicates_from=None)
    f = one(evaluate(odd, snap), FindingKind.DATA_RESIDENCY)
    assert (f.region, f.object) == ("us-west-2", "database/us-west-2")


def test_eu_replica_promoted_inside_the_eu_is_allowed(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "database/eu-central-1", role=DbRole.WRITE_PRIMARY, replicates_from=None)
    # Residency-wise fine (the two primaries side by side are a WRITE_PRIMARIES finding of their own).
    assert of_kind(evaluate(fleet, snap), FindingKind.DATA_RESIDENCY) == []


# --------------------------------------------------------------------------------------------------
# REGION_DOWN and PARTNER_UNHEALTHY
# --------------------------------------------------------------------------------------------------


def test_failing_health_check_is_region_down_with_failover_to_partner(
    fleet: Fleet, healthy: Snapshot
) -> None:
    snap = replace_record(healthy, "traffic/us-west-2", health_check_ok=False)
    f = one(evaluate(fleet, snap), FindingKind.REGION_DOWN)
    assert (f.severity, f.region, f.object) == (Severity.CRITICAL, "us-west-2", "traffic/us-west-2")
    assert f.suggested_action is not None
    assert f.suggested_action.action == "failover"
    assert f.suggested_action.params == {"from_region": "us-west-2", "to_region": "us-east-1"}


def test_availability_collapse_is_region_down(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "traffic/sa-east-1", error_rate=0.8, error_rate_1h=0.3)
    f = one(evaluate(fleet, snap), FindingKind.REGION_DOWN)
    assert (f.severity, f.region) == (Severity.CRITICAL, "sa-east-1")
    assert f.evidence["error_rate_5m"] == 0.8


def test_no_failover_is_suggested_into_a_partner_that_is_down(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "traffic/eu-west-1", health_check_ok=False)
    snap = replace_record(snap, "traffic/eu-central-1", health_check_ok=False)
    downs = of_kind(evaluate(fleet, snap), FindingKind.REGION_DOWN)
    assert {f.region for f in downs} == {"eu-west-1", "eu-central-1"}
    assert all(f.suggested_action is None for f in downs)


def test_region_whose_partner_is_down_has_partner_unhealthy(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "traffic/us-west-2", health_check_ok=False)
    found = of_kind(evaluate(fleet, snap), FindingKind.PARTNER_UNHEALTHY)
    partners_of_usw2 = {r.id for r in fleet.regions.values() if r.failover_partner == "us-west-2"}
    assert partners_of_usw2 == {"us-east-1"}
    assert [(f.region, f.severity, f.object) for f in found] == [
        ("us-east-1", Severity.HIGH, "region/us-east-1")
    ]
    assert found[0].evidence["partner_down"] is True


def test_region_whose_partner_has_a_critical_finding_has_partner_unhealthy(
    fleet: Fleet, healthy: Snapshot
) -> None:
    snap = replace_record(healthy, "database/eu-central-1", replica_lag_s=fleet.targets.rpo_db_s * 2)
    f = one(evaluate(fleet, snap), FindingKind.PARTNER_UNHEALTHY)
    assert (f.region, f.severity) == ("eu-west-1", Severity.HIGH)
    assert f.evidence["partner_critical"] == ["replica_lag:database/eu-central-1"]


def test_partner_with_only_a_high_finding_is_still_a_safe_failover(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "traffic/eu-central-1", p95_ms=fleet.targets.api_p95_ms * 1.2)
    assert of_kind(evaluate(fleet, snap), FindingKind.PARTNER_UNHEALTHY) == []


# --------------------------------------------------------------------------------------------------
# STALE_DATA
# --------------------------------------------------------------------------------------------------


def test_stale_and_failed_sources_are_reported(fleet: Fleet) -> None:
    sources = [
        SourceHealth("test", SourceStatus.OK, 0.0, None, DEFAULT_NOW, 0.1, 10),
        SourceHealth("aws", SourceStatus.STALE, 95.0, "timed out after 2 s", DEFAULT_NOW, None, 3),
        SourceHealth("gcp", SourceStatus.ERROR, None, "permission denied", None, None, 0),
    ]
    snap = snapshot_of(healthy_records(fleet), sources=sources)
    found = of_kind(evaluate(fleet, snap), FindingKind.STALE_DATA)
    assert [(f.object, f.severity, f.region) for f in found] == [
        ("source/aws", Severity.MEDIUM, None),
        ("source/gcp", Severity.MEDIUM, None),
    ]
    assert found[0].evidence["age_s"] == 95.0
    assert "timed out" in found[0].title
    assert found[1].measured == "error"


# --------------------------------------------------------------------------------------------------
# Ordering, identity, speed
# --------------------------------------------------------------------------------------------------


def test_findings_are_sorted_by_severity_then_region_then_id(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "traffic/us-west-2", health_check_ok=False)  # critical + high
    snap = replace_record(snap, "database/ap-northeast-1", query_p95_ms=500.0)  # medium
    snap = replace_record(snap, "cache/ap-south-1", healthy_nodes=1)  # high
    snap = replace_record(snap, "cluster/eks-euw1-prod", ready_nodes=3)  # medium, fleet-wide
    findings = evaluate(fleet, snap)
    ranks = [f.severity.rank for f in findings]
    assert ranks == sorted(ranks, reverse=True)
    assert [f.id for f in findings] == [
        "region_down:traffic/us-west-2",
        "redis_below_min:cache/ap-south-1",
        "partner_unhealthy:region/us-east-1",
        "db_query_p95:database/ap-northeast-1",
        "provider_mix_drift:geography/emea",
    ]


def test_ids_are_stable_across_refreshes(fleet: Fleet) -> None:
    clock = FakeClock()
    first = snapshot_of(healthy_records(fleet, clock.now()))
    clock.advance(30)
    second = snapshot_of(healthy_records(fleet, clock.now()))
    assert second.taken_at - first.taken_at == timedelta(seconds=30)
    broken = [replace_record(s, "cache/us-east-1", healthy_nodes=0) for s in (first, second)]
    assert [f.id for f in evaluate(fleet, broken[0])] == [f.id for f in evaluate(fleet, broken[1])]


def _synthetic_fleet(seed: Fleet, regions: int, clusters_per_region: int, services: int) -> Fleet:
    """``regions`` regions in failover pairs, each with prod clusters on all three clouds, on plan."""
    template = next(iter(seed.regions.values()))
    cluster_template = next(c for c in seed.clusters.values() if c.environment is Environment.PROD)
    geos = list(Geography)
    clouds = [Cloud.AWS, Cloud.AWS, Cloud.GCP, Cloud.AZURE, Cloud.AWS]
    region_specs: dict[str, RegionSpec] = {}
    cluster_specs: dict[str, ClusterSpec] = {}
    for i in range(regions):
        rid = f"r{i:03d}"
        # One residency zone and an even share of the demand per region, so that the synthetic fleet is
        # a consistent one: one write primary per zone, demand shares summing to 1.
        region_specs[rid] = dataclasses.replace(
            template,
            id=rid,
            failover_partner=f"r{i ^ 1:03d}",
            geography=geos[i % len(geos)],
            residency_zone=f"zone-{rid}",
            traffic=dataclasses.replace(template.traffic, demand_share=1.0 / regions),
        )
        region_clouds = [clouds[j % len(clouds)] for j in range(clusters_per_region)]
        plan = seed.provider_plan[region_specs[rid].geography]
        for j, cloud in enumerate(region_clouds):
            name = f"k-{rid}-{j}"
            weight = 100 * plan[cloud] / region_clouds.count(cloud)  # the plan, as the seed's weights do
            cluster_specs[name] = dataclasses.replace(
                cluster_template, name=name, region=rid, cloud=cloud, capacity_weight=weight
            )
    service_specs = dict(list(seed.services.items())[:services])
    # Five full-size prod clusters per region: the per-region node bound grows with them.
    bounds = dataclasses.replace(
        seed.bounds,
        cluster_nodes=dataclasses.replace(
            seed.bounds.cluster_nodes, max=seed.bounds.cluster_nodes.max * clusters_per_region
        ),
    )
    return dataclasses.replace(
        seed, regions=region_specs, clusters=cluster_specs, services=service_specs, bounds=bounds
    )


def test_evaluate_is_fast_on_a_large_fleet(fleet: Fleet) -> None:
    big = _synthetic_fleet(fleet, regions=100, clusters_per_region=5, services=10)
    snap = snapshot_of(healthy_records(big))
    assert len(snap.of_type(WorkloadState)) == 5000
    assert evaluate(big, snap) == []  # the kit's healthy state holds on any fleet, not just the seed
    # Something to report in every region, so the per-finding paths are timed too.
    for i in range(0, 100, 2):
        snap = replace_record(snap, f"traffic/r{i:03d}", health_check_ok=False, p95_ms=900.0)
    start = time.perf_counter()
    findings = evaluate(big, snap)
    elapsed = time.perf_counter() - start
    assert len(of_kind(findings, FindingKind.REGION_DOWN)) == 50
    assert {f.region for f in of_kind(findings, FindingKind.PARTNER_UNHEALTHY)} == {
        f"r{i:03d}" for i in range(1, 100, 2)
    }
    assert elapsed < 0.25, f"evaluate took {elapsed:.3f} s"


# --------------------------------------------------------------------------------------------------
# region_health
# --------------------------------------------------------------------------------------------------


def test_region_health_down_degraded_unknown_ok(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "traffic/sa-east-1", health_check_ok=False)
    snap = replace_record(snap, "cache/ap-south-1", healthy_nodes=1)  # high
    snap = replace_record(snap, "database/ap-northeast-1", query_p95_ms=500.0)  # medium only
    snap = drop_record(snap, "traffic/ca-central-1")
    health = region_health(fleet, snap, evaluate(fleet, snap))
    assert health["sa-east-1"] is Health.DOWN
    assert health["ap-south-1"] is Health.DEGRADED
    assert health["ap-northeast-1"] is Health.OK
    assert health["ca-central-1"] is Health.UNKNOWN
    assert health["eu-west-1"] is Health.OK
    assert set(health) == set(fleet.regions)


def test_region_health_down_from_health_check_even_without_findings(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "traffic/sa-east-1", health_check_ok=False)
    assert region_health(fleet, snap, [])["sa-east-1"] is Health.DOWN


def test_region_with_a_down_partner_is_degraded(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "traffic/us-west-2", health_check_ok=False)
    health = region_health(fleet, snap, evaluate(fleet, snap))
    assert (health["us-west-2"], health["us-east-1"], health["ca-central-1"]) == (
        Health.DOWN,
        Health.DEGRADED,
        Health.OK,
    )


def test_region_without_traffic_but_with_a_high_finding_is_degraded(fleet: Fleet, healthy: Snapshot) -> None:
    snap = drop_record(healthy, "traffic/ap-south-1")
    snap = replace_record(snap, "cache/ap-south-1", healthy_nodes=0)
    assert region_health(fleet, snap, evaluate(fleet, snap))["ap-south-1"] is Health.DEGRADED


# --------------------------------------------------------------------------------------------------
# The test kit itself (what the tests above rely on)
# --------------------------------------------------------------------------------------------------


def test_replace_record_refuses_unknown_keys_and_fields(healthy: Snapshot) -> None:
    with pytest.raises(KeyError):
        replace_record(healthy, "traffic/mars-1", p95_ms=1.0)
    with pytest.raises(TypeError):
        replace_record(healthy, "traffic/us-east-1", p95=1.0)


def test_replace_record_on_a_list_leaves_the_original_alone(fleet: Fleet) -> None:
    records = healthy_records(fleet)
    changed = replace_record(records, "cache/us-east-1", healthy_nodes=0)
    assert len(records_of(changed, CacheState)) == len(fleet.regions)
    before = {r.key: r for r in records}["cache/us-east-1"]
    after = {r.key: r for r in changed}["cache/us-east-1"]
    assert isinstance(before, CacheState) and isinstance(after, CacheState)
    assert before.healthy_nodes > 0 and after.healthy_nodes == 0


def test_snapshot_of_reports_one_ok_source_per_record_source(fleet: Fleet) -> None:
    clock = FakeClock()
    a = healthy_records(fleet, clock.now(), source="aws")
    clock.advance(10)
    snap = snapshot_of(
        [r for r in a if isinstance(r, RegionTraffic)]
        + [r for r in healthy_records(fleet, clock.now(), source="k8s") if isinstance(r, WorkloadState)]
    )
    assert snap.taken_at == clock.now()
    assert [(s.name, s.status, s.age_s) for s in snap.sources] == [
        ("aws", SourceStatus.OK, 10.0),
        ("k8s", SourceStatus.OK, 0.0),
    ]
    assert not snap.partial
    with pytest.raises(ValueError, match="two records"):
        snapshot_of(a + a)


def test_fake_clock_is_utc_and_moves_only_forward() -> None:
    clock = FakeClock()
    assert clock.now() == DEFAULT_NOW
    assert clock.advance(1.5) == DEFAULT_NOW + timedelta(seconds=1.5)
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        FakeClock(DEFAULT_NOW.replace(tzinfo=None))
