"""Every target of the seed is judged (issue 14): throughput, average latencies, DB availability, storage,
the per-region node bound, drained regions and one write primary per write region.

Built like tests/unit/test_policy.py: the kit's healthy records of the seed fleet, one record pushed over
a target, and the finding checked for its kind, severity, region and suggested action.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

import opsconsole.testing as testing_kit
from opsconsole.core.fleet.engine import Snapshot
from opsconsole.core.fleet.findings import Finding, FindingKind, evaluate
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import (
    ClusterState,
    DatabaseState,
    DbRole,
    Environment,
    Fleet,
    RegionTraffic,
    Severity,
    WorkloadState,
)
from opsconsole.testing import healthy_records, replace_record, snapshot_of


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_inventory()


@pytest.fixture
def healthy(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Snapshot:
    # Prod nodes at the low end of the kit's feasible range: within the seed's 50 nodes per region.
    monkeypatch.setattr(testing_kit, "_NODE_FILL", 0.0)
    snap = snapshot_of(healthy_records(fleet))
    assert evaluate(fleet, snap) == []
    return snap


def of_kind(findings: Sequence[Finding], kind: FindingKind) -> list[Finding]:
    return [f for f in findings if f.kind is kind]


def one(findings: Sequence[Finding], kind: FindingKind) -> Finding:
    found = of_kind(findings, kind)
    assert len(found) == 1, [f.id for f in findings]
    return found[0]


def traffic(snap: Snapshot, region: str) -> RegionTraffic:
    r = snap.get(f"traffic/{region}")
    assert isinstance(r, RegionTraffic)
    return r


def database(snap: Snapshot, region: str) -> DatabaseState:
    r = snap.get(f"database/{region}")
    assert isinstance(r, DatabaseState)
    return r


def _spike(fleet: Fleet, snap: Snapshot, region: str, total_factor: float) -> Snapshot:
    """The sandbox's traffic_spike seen fleet-wide: ``region`` takes the extra demand so that the fleet's
    rps, users and tps reach ``total_factor`` times the seed's targets (1.42: 142k rps, 14.2k tps, 1.42M)."""
    extra = total_factor - 1.0
    t = traffic(snap, region)
    db = database(snap, region)
    targets = fleet.targets
    snap = replace_record(
        snap,
        f"traffic/{region}",
        rps=t.rps + extra * targets.api_rps,
        concurrent_users=t.concurrent_users + int(extra * targets.concurrent_users),
    )
    return replace_record(snap, f"database/{region}", tps=db.tps + extra * targets.db_tps)


# --------------------------------------------------------------------------------------------------
# Capacity against the throughput targets
# --------------------------------------------------------------------------------------------------


def test_ten_times_traffic_in_a_region_raises_the_three_capacity_findings(
    fleet: Fleet, healthy: Snapshot
) -> None:
    snap = _spike(fleet, healthy, "ap-south-1", 1.42)
    found = {f.object: f for f in of_kind(evaluate(fleet, snap), FindingKind.CAPACITY)}
    assert set(found) == {"capacity/api_rps", "capacity/db_tps", "capacity/concurrent_users"}
    rps = found["capacity/api_rps"]
    assert (rps.severity, rps.region) == (Severity.HIGH, None)
    assert rps.measured == pytest.approx(142_000)
    assert rps.target == 100_000
    assert rps.evidence["region_most_over_share"] == "ap-south-1"
    assert "ap-south-1" in rps.evidence["what_to_do"]
    assert rps.suggested_action is not None and rps.suggested_action.action == "scale"
    assert fleet.clusters[rps.suggested_action.params["cluster"]].region == "ap-south-1"
    tps = found["capacity/db_tps"]
    assert tps.measured == pytest.approx(14_200)
    assert tps.suggested_action is not None
    assert tps.suggested_action.action == "replicas"
    assert tps.suggested_action.params["region"] == "ap-south-1"
    assert found["capacity/concurrent_users"].measured == pytest.approx(1_420_000)


def test_throughput_exactly_on_target_is_not_a_capacity_finding(fleet: Fleet, healthy: Snapshot) -> None:
    total = sum(traffic(healthy, r).rps for r in fleet.regions)
    assert total == pytest.approx(fleet.targets.api_rps)
    assert of_kind(evaluate(fleet, _spike(fleet, healthy, "ap-south-1", 1.0)), FindingKind.CAPACITY) == []


# --------------------------------------------------------------------------------------------------
# Average latency: regional and global
# --------------------------------------------------------------------------------------------------


def test_regional_average_latency_over_target_is_medium(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "traffic/eu-west-1", avg_latency_ms=57.0)
    f = one(evaluate(fleet, snap), FindingKind.REGIONAL_AVG_LATENCY)
    assert (f.severity, f.region, f.measured, f.target) == (Severity.MEDIUM, "eu-west-1", 57.0, 50.0)


def test_global_average_latency_is_weighted_by_requests(fleet: Fleet, healthy: Snapshot) -> None:
    snap = healthy
    for region in fleet.regions:
        snap = replace_record(snap, f"traffic/{region}", avg_latency_ms=120.0)
    findings = evaluate(fleet, snap)
    f = one(findings, FindingKind.GLOBAL_AVG_LATENCY)
    assert (f.severity, f.region, f.target) == (Severity.MEDIUM, None, 100.0)
    assert f.measured == pytest.approx(120.0)
    assert len(of_kind(findings, FindingKind.REGIONAL_AVG_LATENCY)) == len(fleet.regions)
    # A slow region that serves little does not move the global average past its target.
    snap = replace_record(healthy, "traffic/ap-south-1", avg_latency_ms=120.0)
    assert of_kind(evaluate(fleet, snap), FindingKind.GLOBAL_AVG_LATENCY) == []


# --------------------------------------------------------------------------------------------------
# Database availability and storage
# --------------------------------------------------------------------------------------------------


def test_unavailable_database_is_critical_against_the_db_availability_target(
    fleet: Fleet, healthy: Snapshot
) -> None:
    snap = replace_record(healthy, "database/us-west-2", available=False)
    f = one(evaluate(fleet, snap), FindingKind.DB_UNAVAILABLE)
    assert (f.severity, f.region, f.target) == (Severity.CRITICAL, "us-west-2", 0.9995)


def test_storage_outside_the_seed_bounds(fleet: Fleet, healthy: Snapshot) -> None:
    over = one(
        evaluate(fleet, replace_record(healthy, "database/eu-west-1", storage_tb=120.0)),
        FindingKind.STORAGE_BOUNDS,
    )
    assert (over.severity, over.region, over.measured) == (Severity.HIGH, "eu-west-1", 120.0)
    under = one(
        evaluate(fleet, replace_record(healthy, "database/ap-south-1", storage_tb=0.5)),
        FindingKind.STORAGE_BOUNDS,
    )
    assert (under.severity, under.region) == (Severity.LOW, "ap-south-1")
    assert (
        of_kind(
            evaluate(fleet, replace_record(healthy, "database/eu-west-1", storage_tb=100.0)),
            FindingKind.STORAGE_BOUNDS,
        )
        == []
    )


# --------------------------------------------------------------------------------------------------
# Node bound per region
# --------------------------------------------------------------------------------------------------


def test_node_bound_is_judged_per_region_not_per_cluster(fleet: Fleet, healthy: Snapshot) -> None:
    snap = healthy
    prod = [c for c in fleet.clusters_in("eu-west-1", Environment.PROD)]
    assert len(prod) >= 2
    for spec in prod:  # every cluster well inside its own bounds, the region over 50 in total
        state = snap.get(f"cluster/{spec.name}")
        assert isinstance(state, ClusterState)
        n = min(spec.nodes.max - 1, 30)
        snap = replace_record(snap, f"cluster/{spec.name}", nodes=n, ready_nodes=n)
    findings = evaluate(fleet, snap)
    assert of_kind(findings, FindingKind.NODES_AT_MAX) == []
    f = one(findings, FindingKind.REGION_NODES_BOUND)
    assert (f.region, f.target) == ("eu-west-1", 50)
    assert isinstance(f.measured, int) and f.measured > 50
    assert sorted(f.evidence["clusters"]) == sorted(c.name for c in prod)


# --------------------------------------------------------------------------------------------------
# Drained regions
# --------------------------------------------------------------------------------------------------


def test_drained_region_gets_no_load_findings_and_no_scale_suggestion(
    fleet: Fleet, healthy: Snapshot
) -> None:
    snap = replace_record(healthy, "dns/eu-west-1", weights={"eu-central-1": 100})
    snap = replace_record(snap, "traffic/eu-west-1", rps=0.0, p95_ms=900.0, avg_latency_ms=400.0)
    findings = evaluate(fleet, snap)
    assert [f.id for f in findings if f.region == "eu-west-1"] == []
    # ... while the same figures in a serving region do raise the latency finding with its scale fix.
    serving = replace_record(healthy, "traffic/eu-west-1", p95_ms=900.0)
    f = one(evaluate(fleet, serving), FindingKind.LATENCY_P95)
    assert f.suggested_action is not None and f.suggested_action.action == "scale"


def test_drained_region_at_zero_rps_after_a_failover_is_not_told_to_scale(
    fleet: Fleet, healthy: Snapshot
) -> None:
    # After a failover of a region that is down: its users are on the partner, the front door serves 0 rps.
    snap = replace_record(healthy, "dns/eu-west-1", weights={"eu-central-1": 100})
    snap = replace_record(snap, "traffic/eu-west-1", rps=0.0, p95_ms=900.0, health_check_ok=False)
    findings = evaluate(fleet, snap)
    assert of_kind(findings, FindingKind.LATENCY_P95) == []
    down = one(findings, FindingKind.REGION_DOWN)
    assert down.evidence["drained"] is True
    assert down.suggested_action is None  # already failed over
    for f in findings:
        if f.region == "eu-west-1" and f.suggested_action is not None:
            assert f.suggested_action.action != "scale", f.id


# --------------------------------------------------------------------------------------------------
# One write primary per write region
# --------------------------------------------------------------------------------------------------


def test_two_write_primaries_in_the_eu_after_failback_are_critical(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(healthy, "database/eu-central-1", role=DbRole.WRITE_PRIMARY, replicates_from=None)
    f = one(evaluate(fleet, snap), FindingKind.WRITE_PRIMARIES)
    assert (f.severity, f.region, f.object) == (Severity.CRITICAL, "eu-west-1", "write-primaries/eu")
    assert f.evidence["primaries"] == ["eu-central-1", "eu-west-1"]
    assert f.evidence["unplanned"] == ["eu-central-1"]
    assert f.suggested_action is not None
    assert (f.suggested_action.action, f.suggested_action.params) == (
        "database", {"region": "eu-central-1", "change": "demote", "source_region": "eu-west-1"})
    assert "demote eu-central-1" in f.suggested_action.summary
    assert f.suggested_action.summary.endswith(
        "opsconsole act replicas --region eu-central-1 --demote --source eu-west-1")


def test_promoted_replica_while_the_primary_is_down_is_only_a_role_drift(
    fleet: Fleet, healthy: Snapshot
) -> None:
    snap = replace_record(healthy, "database/eu-central-1", role=DbRole.WRITE_PRIMARY, replicates_from=None)
    snap = replace_record(snap, "database/eu-west-1", available=False)
    findings = evaluate(fleet, snap)
    f = one(findings, FindingKind.WRITE_PRIMARIES)
    assert (f.severity, f.region, f.object) == (Severity.MEDIUM, "eu-central-1", "db-role/eu-central-1")
    assert one(findings, FindingKind.DB_UNAVAILABLE).region == "eu-west-1"


def test_demoted_primary_disagrees_with_the_inventory(fleet: Fleet, healthy: Snapshot) -> None:
    snap = replace_record(
        healthy, "database/us-east-1", role=DbRole.READ_REPLICA, replicates_from="us-west-2"
    )
    f = one(evaluate(fleet, snap), FindingKind.WRITE_PRIMARIES)
    assert (f.region, f.measured, f.target) == ("us-east-1", "read_replica", "write_primary")


def _prod_workloads(snap: Snapshot, region: str | None = None) -> list[WorkloadState]:
    return [w for w in snap.of_type(WorkloadState)
            if w.environment is Environment.PROD and (region is None or w.region == region)]


def test_a_region_that_cannot_absorb_a_150_percent_burst_is_high_and_says_what_binds(
    fleet: Fleet, healthy: Snapshot
) -> None:
    assert of_kind(evaluate(fleet, healthy), FindingKind.HEADROOM) == []
    snap = healthy
    for w in _prod_workloads(healthy, "eu-west-1"):
        snap = replace_record(snap, w.key, desired=w.hpa_max * 4 // 5, ready=w.hpa_max * 4 // 5)
    found = [f for f in of_kind(evaluate(fleet, snap), FindingKind.HEADROOM) if f.region == "eu-west-1"]
    assert len(found) == 1
    f = found[0]
    assert f.severity is Severity.HIGH and f.target == 1.5 and float(f.measured) < 1.5
    assert f.evidence["by_hpa"] <= f.evidence["by_nodes"] or f.evidence["by_nodes"] < 1.5
    assert f.suggested_action is not None


def test_the_fleet_under_ten_times_growth_is_low_and_a_drained_region_is_not_judged(
    fleet: Fleet, healthy: Snapshot
) -> None:
    snap = healthy
    for w in _prod_workloads(healthy):
        snap = replace_record(snap, w.key, desired=max(w.hpa_min, w.hpa_max // 5),
                              ready=max(w.hpa_min, w.hpa_max // 5))
    fleet_wide = [f for f in of_kind(evaluate(fleet, snap), FindingKind.HEADROOM) if f.region is None]
    assert len(fleet_wide) == 1 and fleet_wide[0].severity is Severity.LOW
    assert float(fleet_wide[0].measured) < 10 and fleet_wide[0].target == 10
    # A region whose users went elsewhere (DNS weight 0) is not told it lacks burst room.
    drained = snap
    for w in _prod_workloads(snap, "eu-central-1"):
        drained = replace_record(drained, w.key, desired=w.hpa_max, ready=w.hpa_max)
    drained = replace_record(drained, "dns/eu-central-1", weights={"eu-west-1": 100})
    drained = replace_record(drained, "traffic/eu-central-1", rps=0.0)
    assert not [f for f in of_kind(evaluate(fleet, drained), FindingKind.HEADROOM)
                if f.region == "eu-central-1"]
