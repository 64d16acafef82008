"""Tests of the sandbox world: dynamics, incidents, desired-state changes, invariants, determinism.

Two fleets: a small hand-built one (3 regions) for the fast property tests, and the seed fleet from
``inventory/`` (the ``seed_fleet`` fixture) for the behaviour the console is demonstrated with.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsconsole.core.errors import SandboxError, UsageError
from opsconsole.core.fleet.model import (
    Bounds,
    CacheSpec,
    CacheState,
    Cloud,
    ClusterKind,
    ClusterSpec,
    ClusterState,
    Consistency,
    Criticality,
    DatabaseSpec,
    DatabaseState,
    DbRole,
    DnsRecordSet,
    Environment,
    Fleet,
    FleetRecord,
    Geography,
    IntRange,
    RegionRole,
    RegionSpec,
    RegionTraffic,
    RoutingPolicy,
    ServiceSpec,
    Targets,
    TrafficSpec,
    WorkloadState,
)
from opsconsole.sandbox.incidents import IncidentKind, parse_kind
from opsconsole.sandbox.world import TICK_S, World, diurnal, fleet_fingerprint

R = TypeVar("R")

# A Wednesday; 12:00 UTC is the afternoon in Europe, the morning in the Americas.
NOON = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
HYPO = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --------------------------------------------------------------------------------------------------
# A small fleet built by hand
# --------------------------------------------------------------------------------------------------


def _region(
    rid: str,
    tz: str,
    partner: str,
    routing: RoutingPolicy,
    share: float,
    *,
    primary_of: str | None,
    geography: Geography = Geography.EMEA,
) -> RegionSpec:
    role = DbRole.WRITE_PRIMARY if primary_of is None else DbRole.READ_REPLICA
    return RegionSpec(
        id=rid,
        name=rid,
        tier=1,
        role=RegionRole.PRIMARY_HUB,
        geography=geography,
        timezone=tz,
        failover_partner=partner,
        residency_zone="eu" if geography is Geography.EMEA else "us",
        cloud_regions={Cloud.AWS: rid},
        database=DatabaseSpec(
            cloud=Cloud.AWS, role=role, replicates_from=primary_of, read_replicas=2, storage_tb=10),
        cache=CacheSpec(nodes=4),
        traffic=TrafficSpec(routing=routing, demand_share=share, base_latency_ms=80.0),
    )


def _cluster(name: str, region: str, env: Environment, weight: float, nodes: tuple[int, int]) -> ClusterSpec:
    return ClusterSpec(
        name=name,
        region=region,
        cloud=Cloud.AWS,
        kind=ClusterKind.EKS,
        environment=env,
        cloud_region=region,
        capacity_weight=weight,
        nodes=IntRange(*nodes),
        instance_type="m6i.2xlarge",
        pods_per_node=20,
        reserved_nodes=2,
        spot_ratio=0.5,
    )


def _service(
    name: str, share: float, rpp: float, hpa: tuple[int, int], envs: tuple[Environment, ...]
) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        criticality=Criticality.CRITICAL,
        consistency=Consistency.SESSION,
        environments=envs,
        hpa=IntRange(*hpa),
        traffic_share=share,
        rps_per_pod=rpp,
        resident_data=False,
    )


def small_fleet() -> Fleet:
    prod, stg, dev = Environment.PROD, Environment.STAGING, Environment.DEV
    regions = [
        _region("eu-west-1", "Europe/Dublin", "eu-central-1", RoutingPolicy.FAILOVER, 0.5, primary_of=None),
        _region("eu-central-1", "Europe/Berlin", "eu-west-1", RoutingPolicy.GEO, 0.3, primary_of="eu-west-1"),
        _region(
            "us-east-1",
            "America/New_York",
            "eu-west-1",
            RoutingPolicy.LATENCY,
            0.2,
            primary_of="eu-west-1",
            geography=Geography.AMERICAS,
        ),
    ]
    clusters = [
        _cluster("eks-euw1-prod", "eu-west-1", prod, 60, (3, 30)),
        _cluster("gke-euw1-prod", "eu-west-1", prod, 40, (3, 30)),
        _cluster("eks-euc1-prod", "eu-central-1", prod, 100, (3, 30)),
        _cluster("eks-use1-prod", "us-east-1", prod, 100, (3, 30)),
        _cluster("eks-euw1-staging", "eu-west-1", stg, 5, (1, 5)),
        _cluster("eks-euw1-dev", "eu-west-1", dev, 5, (1, 5)),
    ]
    services = [
        _service("gateway", 1.0, 600, (3, 40), (prod, stg, dev)),
        _service("orders", 0.2, 100, (2, 30), (prod, stg)),
        _service("reports", 0.05, 200, (2, 10), (prod,)),
    ]
    return Fleet(
        source=Path("/dev/null"),
        regions={r.id: r for r in regions},
        clusters={c.name: c for c in clusters},
        services={s.name: s for s in services},
        targets=Targets(
            global_avg_latency_ms=100,
            regional_avg_latency_ms=50,
            api_p95_ms=200,
            db_query_p95_ms=100,
            availability_platform=0.9999,
            availability_db=0.9995,
            availability_cdn=0.999,
            rpo_db_s=300,
            api_rps=20_000,
            db_tps=2_000,
            concurrent_users=200_000,
            cost_mix={"reserved": 0.7, "spot": 0.2, "on_demand": 0.1},
            cost_mix_tolerance=0.1,
            provider_mix_tolerance=0.05,
        ),
        bounds=Bounds(
            hpa_pods=IntRange(2, 100),
            cluster_nodes=IntRange(1, 50),
            read_replicas=IntRange(1, 10),
            redis_nodes=IntRange(3, 10),
            storage_tb=IntRange(1, 100),
        ),
        provider_plan={Geography.EMEA: {Cloud.AWS: 1.0}, Geography.AMERICAS: {Cloud.AWS: 1.0}},
        provider_plan_overall={Cloud.AWS: 1.0},
        cdn_split={"cloudfront": 1.0},
    )


SMALL = small_fleet()


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def traffic(world: World, region: str) -> RegionTraffic:
    return _one(world.observe(), RegionTraffic, lambda r: r.region == region)


def dns(world: World, region: str) -> DnsRecordSet:
    return _one(world.observe(), DnsRecordSet, lambda r: r.region == region)


def database(world: World, region: str) -> DatabaseState:
    return _one(world.observe(), DatabaseState, lambda r: r.region == region)


def cluster_state(world: World, name: str) -> ClusterState:
    return _one(world.observe(), ClusterState, lambda r: r.cluster == name)


def workload(world: World, cluster: str, service: str) -> WorkloadState:
    return _one(world.observe(), WorkloadState, lambda r: r.cluster == cluster and r.service == service)


def _one(records: list[FleetRecord], cls: type[R], pred: Callable[[R], bool]) -> R:
    found = [r for r in records if isinstance(r, cls) and pred(r)]
    assert len(found) == 1, found
    return found[0]


def gateway_replicas(world: World, region: str) -> int:
    return sum(world.replicas(c.name, "gateway") for c in world.fleet.clusters_in(region, Environment.PROD))


def check_invariants(world: World) -> None:
    fleet = world.fleet
    records = world.observe()
    for rec in records:
        assert rec.source == "sim"
        assert rec.observed_at == world.now
        if isinstance(rec, WorkloadState):
            stopped = rec.environment in world.stopped_environments
            if stopped:
                assert rec.desired == 0 and rec.ready == 0
            else:
                assert rec.hpa_min <= rec.desired <= rec.hpa_max
                assert rec.hpa_min in fleet.bounds.hpa_pods and rec.hpa_max in fleet.bounds.hpa_pods
            assert 0 <= rec.ready <= rec.desired
            assert rec.pending_pods >= 0
            assert 0.0 <= rec.cpu_utilisation <= 1.0
            assert 0.0 <= rec.error_rate <= 1.0
            assert math.isfinite(rec.p95_ms) and rec.p95_ms >= 0
        elif isinstance(rec, ClusterState):
            if rec.environment in world.stopped_environments:
                assert rec.nodes == 0
            else:
                assert rec.nodes in fleet.bounds.cluster_nodes
                assert rec.nodes <= rec.nodes_max
            assert rec.reserved_nodes + rec.spot_nodes + rec.on_demand_nodes == rec.nodes
            assert min(rec.reserved_nodes, rec.spot_nodes, rec.on_demand_nodes) >= 0
            if rec.extra["reachable"]:
                assert rec.extra["pods"] - rec.extra["pending_pods"] <= rec.extra["capacity_pods"]
            ready = sum(w.ready for w in records if isinstance(w, WorkloadState) and w.cluster == rec.cluster)
            assert ready <= rec.ready_nodes * fleet.clusters[rec.cluster].pods_per_node
        elif isinstance(rec, DnsRecordSet):
            assert rec.total == 100 == rec.extra["total"]
            assert all(isinstance(w, int) and w > 0 for w in rec.weights.values())
            assert set(rec.weights) <= set(fleet.regions)
        elif isinstance(rec, RegionTraffic):
            assert 0.0 <= rec.error_rate <= 1.0 and 0.0 <= rec.error_rate_1h <= 1.0
            assert rec.rps >= 0 and math.isfinite(rec.p95_ms)
            assert rec.avg_latency_ms < rec.p95_ms < rec.p99_ms
        elif isinstance(rec, DatabaseState):
            assert rec.read_replicas in fleet.bounds.read_replicas
            assert rec.replica_lag_s >= 0
        elif isinstance(rec, CacheState):
            assert rec.nodes in fleet.bounds.redis_nodes
            assert 0.85 <= rec.hit_ratio <= 0.97


# --------------------------------------------------------------------------------------------------
# Shape of the output
# --------------------------------------------------------------------------------------------------


def test_observe_has_one_record_per_entity(seed_fleet: Fleet) -> None:
    world = World(seed_fleet, seed=1, start=NOON)
    recs = world.observe()
    for cls in (RegionTraffic, DnsRecordSet, DatabaseState, CacheState):
        assert sorted(r.region for r in recs if isinstance(r, cls)) == sorted(seed_fleet.regions)
    assert sorted(r.cluster for r in recs if isinstance(r, ClusterState)) == sorted(seed_fleet.clusters)
    expected = {
        (c.name, s.name) for c in seed_fleet.clusters.values() for s in seed_fleet.services_in(c.environment)
    }
    got = [(r.cluster, r.service) for r in recs if isinstance(r, WorkloadState)]
    assert len(got) == len(expected) and set(got) == expected
    assert all(r.source == "sim" and r.observed_at == NOON and r.observed_at.tzinfo for r in recs)
    assert len({r.key for r in recs}) == len(recs)
    check_invariants(world)


def test_diurnal_curve() -> None:
    assert diurnal(4.0) == pytest.approx(0.3)
    assert diurnal(20.0) == pytest.approx(1.0)
    assert diurnal(12.0) == pytest.approx(0.65)
    values = [diurnal(h / 4) for h in range(96)]
    assert min(values) == pytest.approx(0.3) and max(values) == pytest.approx(1.0)
    assert diurnal(28.0) == diurnal(4.0)


def test_global_demand_peaks_near_but_below_the_rps_target(seed_fleet: Fleet) -> None:
    totals = []
    for hour in range(0, 24, 2):
        world = World(seed_fleet, seed=3, start=NOON + timedelta(hours=hour))
        recs = world.observe()
        totals.append(sum(r.rps for r in recs if isinstance(r, RegionTraffic)))
    target = seed_fleet.targets.api_rps
    assert 0.75 * target < max(totals) < target
    assert min(totals) < 0.85 * max(totals)  # the day has a shape


def test_normal_diurnal_load_keeps_p95_well_below_target(seed_fleet: Fleet) -> None:
    worst = 0.0
    for hour in range(24):
        world = World(seed_fleet, seed=5, start=NOON + timedelta(hours=hour))
        for rec in world.observe():
            if isinstance(rec, RegionTraffic):
                worst = max(worst, rec.p95_ms)
                assert rec.error_rate < seed_fleet.targets.error_budget
            if isinstance(rec, WorkloadState):
                assert rec.pending_pods == 0
    assert worst < 0.85 * seed_fleet.targets.api_p95_ms
    # And stepped through an evening peak rather than started in it.
    world = World(seed_fleet, seed=5, start=datetime(2025, 1, 15, 17, tzinfo=UTC))
    world.advance_by(3 * 3600)
    assert max(traffic(world, r).p95_ms for r in seed_fleet.regions) < 0.85 * 200


def test_users_and_tps_scale_with_rps(seed_fleet: Fleet) -> None:
    world = World(seed_fleet, seed=5, start=NOON)
    recs = world.observe()
    rps = sum(r.rps for r in recs if isinstance(r, RegionTraffic))
    users = sum(r.concurrent_users for r in recs if isinstance(r, RegionTraffic))
    tps = sum(r.tps for r in recs if isinstance(r, DatabaseState))
    assert users == pytest.approx(rps * 10, rel=0.01)
    assert tps == pytest.approx(rps * 0.1, rel=0.01)


def test_cost_split_of_nodes(seed_fleet: Fleet) -> None:
    world = World(seed_fleet, seed=5, start=NOON)
    spec = seed_fleet.clusters["eks-use1-prod"]
    world.set_cluster_node_bounds(spec.name, 20, 50)
    cs = cluster_state(world, spec.name)
    assert cs.nodes == 20
    assert cs.reserved_nodes == spec.reserved_nodes
    rest = 20 - spec.reserved_nodes
    assert cs.spot_nodes == round(rest * spec.spot_ratio)
    assert cs.on_demand_nodes == rest - cs.spot_nodes


# --------------------------------------------------------------------------------------------------
# Incidents
# --------------------------------------------------------------------------------------------------


def test_traffic_spike_breaks_p95_and_the_hpa_reacts(seed_fleet: Fleet) -> None:
    world = World(seed_fleet, seed=42, start=NOON)
    before = traffic(world, "eu-west-1")
    replicas_before = gateway_replicas(world, "eu-west-1")
    nodes_before = world.nodes("eks-euw1-prod")
    assert before.p95_ms < 200
    inc = world.trigger_incident("traffic_spike", "eu-west-1")
    assert inc.kind is IncidentKind.TRAFFIC_SPIKE
    world.advance_by(60)
    during = traffic(world, "eu-west-1")
    assert during.rps > 8 * before.rps
    assert during.p95_ms > 200
    assert during.error_rate > before.error_rate
    world.advance_by(5 * 60)
    assert gateway_replicas(world, "eu-west-1") > 3 * replicas_before
    assert world.nodes("eks-euw1-prod") > nodes_before
    assert traffic(world, "eu-central-1").p95_ms < 200  # other regions unaffected
    # The spike ends after its 30 min; the region recovers and the HPA scales back down.
    world.advance(NOON + timedelta(minutes=50))
    after = traffic(world, "eu-west-1")
    assert after.p95_ms < 200
    assert gateway_replicas(world, "eu-west-1") < 2 * replicas_before
    assert world.incidents() == []


def test_outage_with_failover_routing_moves_traffic_to_the_partner(seed_fleet: Fleet) -> None:
    region = "ca-central-1"
    assert seed_fleet.regions[region].traffic.routing is RoutingPolicy.FAILOVER
    partner = seed_fleet.regions[region].failover_partner
    world = World(seed_fleet, seed=42, start=NOON)
    ca_before, partner_before = traffic(world, region), traffic(world, partner)
    world.trigger_incident("region_outage", region, duration=timedelta(minutes=20))
    world.advance_by(5 * 60)
    ca, p = traffic(world, region), traffic(world, partner)
    assert not ca.health_check_ok
    assert ca.rps == 0 and ca.error_rate == 0.0
    assert p.rps > partner_before.rps + 0.7 * ca_before.rps
    assert p.health_check_ok and p.error_rate < 0.001
    record = dns(world, region)
    assert record.weights == {region: 100}  # configuration unchanged...
    assert record.extra["effective"] == {partner: 100}  # ...but the health check moved the traffic
    assert record.extra["failed_over"] == {region: partner}
    db = database(world, region)
    assert not db.available
    assert cluster_state(world, "eks-cac1-prod").ready_nodes == 0
    # After the incident the region takes its own traffic back.
    world.advance_by(20 * 60)
    assert traffic(world, region).health_check_ok
    assert traffic(world, region).rps > 0.5 * ca_before.rps
    assert dns(world, region).extra["effective"] == {region: 100}


def test_outage_without_failover_fails_until_dns_is_changed(seed_fleet: Fleet) -> None:
    region = "eu-west-1"
    assert seed_fleet.regions[region].traffic.routing is not RoutingPolicy.FAILOVER
    partner = seed_fleet.regions[region].failover_partner
    world = World(seed_fleet, seed=42, start=NOON)
    world.trigger_incident("region_outage", region, duration=timedelta(hours=2))
    world.advance_by(5 * 60)
    down = traffic(world, region)
    assert not down.health_check_ok
    assert down.rps > 0 and down.error_rate == pytest.approx(1.0)
    assert down.error_rate_1h > 0.05
    # The replicas of the down primary fall behind by the outage's age.
    assert database(world, partner).replica_lag_s >= 5 * 60
    # An operator points the region's users at the partner.
    world.set_dns_weights(region, {partner: 100})
    world.advance_by(6 * 60)
    assert traffic(world, region).rps == 0
    assert traffic(world, region).error_rate == 0.0
    assert traffic(world, partner).error_rate < 0.001
    # And promotes the partner's database: the old primary's replicas follow it.
    world.promote_replica(partner)
    new = database(world, partner)
    assert new.role is DbRole.WRITE_PRIMARY and new.replicates_from is None and new.replica_lag_s == 0
    old = database(world, region)
    assert old.role is DbRole.READ_REPLICA and old.replicates_from == partner
    assert all(r.replicates_from != region for r in world.observe() if isinstance(r, DatabaseState))


def test_latency_spike_adds_250_to_400_ms(seed_fleet: Fleet) -> None:
    world = World(seed_fleet, seed=42, start=NOON)
    before = traffic(world, "us-east-1").p95_ms
    inc = world.trigger_incident(IncidentKind.LATENCY_SPIKE, "us-east-1")
    assert 250 <= inc.magnitude <= 400
    during = traffic(world, "us-east-1").p95_ms  # visible at once, without advancing
    assert during - before == pytest.approx(inc.magnitude, abs=15)
    assert world.clear_incidents("us-east-1") == 1
    assert traffic(world, "us-east-1").p95_ms < 200


def test_replica_lag_runaway_grows_and_recovers(seed_fleet: Fleet) -> None:
    world = World(seed_fleet, seed=42, start=NOON)
    assert database(world, "us-west-2").replica_lag_s <= 3.0
    world.trigger_incident("replica_lag_runaway", "us-west-2", duration=600)
    world.advance_by(5 * 60)
    assert 150 - 1 <= database(world, "us-west-2").replica_lag_s <= 150 + 3
    world.advance_by(5 * 60)
    peak = database(world, "us-west-2").replica_lag_s
    assert peak >= 290
    world.advance_by(2 * 60)  # recovering at 300 s per minute
    assert database(world, "us-west-2").replica_lag_s < peak
    world.advance_by(2 * 60)
    assert database(world, "us-west-2").replica_lag_s <= 3.0
    assert database(world, "eu-central-1").replica_lag_s <= 3.0


def test_replica_lag_runaway_on_a_primary_hits_its_replicas(seed_fleet: Fleet) -> None:
    world = World(seed_fleet, seed=42, start=NOON)
    world.trigger_incident("replica_lag_runaway", "eu-west-1")
    world.advance_by(4 * 60)
    assert database(world, "eu-central-1").replica_lag_s > 100
    assert database(world, "eu-west-1").replica_lag_s == 0


def test_node_pool_loss_then_the_autoscaler_rebuilds(seed_fleet: Fleet) -> None:
    world = World(seed_fleet, seed=42, start=datetime(2025, 1, 15, 19, tzinfo=UTC))
    world.set_cluster_node_bounds("eks-use1-prod", 10, 50)
    before = world.nodes("eks-use1-prod")
    inc = world.trigger_incident("node_pool_loss", "us-east-1")
    assert inc.cluster == "eks-use1-prod"  # the largest prod cluster of the region
    after = world.nodes("eks-use1-prod")
    assert after == before - round(before * 0.6)
    assert cluster_state(world, "eks-use1-prod").extra["pending_pods"] > 0
    world.advance_by(5 * 60)
    assert world.nodes("eks-use1-prod") >= 10
    assert cluster_state(world, "eks-use1-prod").extra["pending_pods"] == 0


def test_node_pool_loss_in_a_named_cluster(seed_fleet: Fleet) -> None:
    world = World(seed_fleet, seed=42, start=NOON)
    inc = world.trigger_incident("node_pool_loss", "us-east-1", cluster="aks-use1-prod")
    assert inc.cluster == "aks-use1-prod"
    with pytest.raises(UsageError, match="is in region"):
        world.trigger_incident("node_pool_loss", "us-east-1", cluster="eks-euw1-prod")
    with pytest.raises(UsageError, match="only be given for node_pool_loss"):
        world.trigger_incident("traffic_spike", "us-east-1", cluster="aks-use1-prod")


def test_incident_names_and_errors() -> None:
    assert [k.value for k in IncidentKind] == [
        "region_outage",
        "latency_spike",
        "replica_lag_runaway",
        "node_pool_loss",
        "traffic_spike",
        "bad_deploy",
    ]
    assert parse_kind("traffic_spike") is IncidentKind.TRAFFIC_SPIKE
    world = World(SMALL, seed=1, start=NOON)
    before = world.to_dict()
    with pytest.raises(UsageError) as exc:
        world.trigger_incident("meteor_strike", "eu-west-1")
    assert "region_outage" in str(exc.value) and "traffic_spike" in str(exc.value)
    with pytest.raises(UsageError, match="valid regions: eu-central-1, eu-west-1, us-east-1"):
        world.trigger_incident("region_outage", "mars-north-1")
    with pytest.raises(UsageError, match="positive"):
        world.trigger_incident("region_outage", "eu-west-1", duration=0)
    with pytest.raises(UsageError, match="active incidents: none"):
        world.clear_incident("inc-99")
    assert world.to_dict() == before


def test_incident_lifecycle() -> None:
    world = World(SMALL, seed=1, start=NOON)
    inc = world.trigger_incident("traffic_spike", "us-east-1", duration=timedelta(minutes=10))
    assert world.incidents() == [inc]
    assert inc.end_tick - inc.start_tick == 10 * 60 // TICK_S
    cleared = world.clear_incident(inc.id)
    assert cleared.cleared and world.incidents() == []
    assert world.incidents(include_ended=True) == [cleared]
    with pytest.raises(UsageError, match="already over"):
        world.clear_incident(inc.id)
    # Ended incidents are forgotten after an hour.
    world.advance_by(2 * 3600)
    assert world.incidents(include_ended=True) == []


# --------------------------------------------------------------------------------------------------
# Desired-state changes
# --------------------------------------------------------------------------------------------------


def test_stopped_environment_goes_to_zero_and_start_restores_sizes() -> None:
    world = World(SMALL, seed=1, start=NOON)
    world.set_hpa_bounds("eks-euw1-staging", "gateway", 5, 20)
    world.set_cluster_node_bounds("eks-euw1-staging", 2, 5)
    world.advance_by(120)
    sizes = {
        (c, s): world.replicas(c, s)
        for c, s in [("eks-euw1-staging", "gateway"), ("eks-euw1-staging", "orders")]
    }
    nodes = world.nodes("eks-euw1-staging")
    assert sizes[("eks-euw1-staging", "gateway")] == 5 and nodes >= 2
    world.set_environment_stopped("staging", True)
    world.advance_by(600)
    cs = cluster_state(world, "eks-euw1-staging")
    assert cs.nodes == 0 and cs.ready_nodes == 0 and cs.extra["stopped"]
    wl = workload(world, "eks-euw1-staging", "gateway")
    assert wl.desired == 0 and wl.ready == 0 and wl.rps == 0
    assert world.nodes("eks-euw1-dev") >= 1  # dev untouched
    assert world.replicas("eks-euw1-prod", "gateway") >= 3  # prod untouched
    with pytest.raises(UsageError, match="stopped"):
        world.set_replicas("eks-euw1-staging", "gateway", 6)
    world.set_environment_stopped(Environment.STAGING, True)  # idempotent
    world.set_environment_stopped("staging", False)
    assert {k: world.replicas(*k) for k in sizes} == sizes
    assert world.nodes("eks-euw1-staging") == nodes
    world.advance_by(600)
    check_invariants(world)
    with pytest.raises(UsageError, match="prod environment cannot be stopped"):
        world.set_environment_stopped("prod", True)
    with pytest.raises(UsageError, match="unknown environment"):
        world.set_environment_stopped("qa", True)


def test_set_replicas_holds_for_the_stabilisation_window() -> None:
    world = World(SMALL, seed=1, start=NOON)
    base = world.replicas("eks-euc1-prod", "orders")
    world.set_replicas("eks-euc1-prod", "orders", 25)
    assert workload(world, "eks-euc1-prod", "orders").desired == 25
    world.advance_by(4 * 60)
    assert world.replicas("eks-euc1-prod", "orders") == 25
    world.advance_by(20 * 60)
    assert world.replicas("eks-euc1-prod", "orders") <= base + 2


def test_hpa_bounds_clamp_replicas_now() -> None:
    world = World(SMALL, seed=1, start=NOON)
    world.set_hpa_bounds("eks-euw1-prod", "gateway", 30, 35)
    assert world.replicas("eks-euw1-prod", "gateway") == 30
    assert world.hpa_bounds("eks-euw1-prod", "gateway") == (30, 35)
    world.advance_by(600)
    assert 30 <= world.replicas("eks-euw1-prod", "gateway") <= 35


def test_dns_weights_split_the_load() -> None:
    world = World(SMALL, seed=1, start=NOON)
    us = traffic(world, "us-east-1").rps
    world.set_dns_weights("us-east-1", {"us-east-1": 50, "eu-west-1": 50, "eu-central-1": 0})
    assert world.dns_weights("us-east-1") == {"eu-west-1": 50, "us-east-1": 50}
    assert traffic(world, "us-east-1").rps == pytest.approx(us / 2, rel=0.001)


def test_cache_and_read_replicas_change() -> None:
    world = World(SMALL, seed=1, start=NOON)
    p95 = database(world, "eu-central-1").query_p95_ms
    world.set_read_replicas("eu-central-1", 8)
    assert database(world, "eu-central-1").read_replicas == 8
    assert database(world, "eu-central-1").query_p95_ms < p95
    world.set_cache_nodes("eu-central-1", 10)
    cache = _one(world.observe(), CacheState, lambda r: r.region == "eu-central-1")
    assert cache.nodes == cache.healthy_nodes == 10


BAD_CALLS: list[tuple[str, tuple[Any, ...], str]] = [
    ("set_replicas", ("nope", "gateway", 5), "unknown cluster"),
    ("set_replicas", ("eks-euw1-prod", "nope", 5), "does not run in cluster"),
    ("set_replicas", ("eks-euw1-dev", "reports", 5), "does not run in cluster"),
    ("set_replicas", ("eks-euw1-prod", "gateway", 1), "within its HPA bounds 3-40"),
    ("set_replicas", ("eks-euw1-prod", "gateway", 41), "within its HPA bounds"),
    ("set_replicas", ("eks-euw1-prod", "gateway", 5.0), "integer"),
    ("set_replicas", ("eks-euw1-prod", "gateway", True), "integer"),
    ("set_hpa_bounds", ("eks-euw1-prod", "gateway", 1, 10), "2 <= min <= max <= 100"),
    ("set_hpa_bounds", ("eks-euw1-prod", "gateway", 10, 101), "2 <= min <= max <= 100"),
    ("set_hpa_bounds", ("eks-euw1-prod", "gateway", 10, 5), "min <= max"),
    ("set_hpa_bounds", ("eks-euw1-prod", "gateway", "3", 5), "integers"),
    ("set_cluster_node_bounds", ("eks-euw1-prod", 0, 10), "1 <= min <= max <= 50"),
    ("set_cluster_node_bounds", ("eks-euw1-prod", 5, 51), "1 <= min <= max <= 50"),
    ("set_cluster_node_bounds", ("eks-euw1-prod", 9, 8), "min <= max"),
    ("set_cluster_node_bounds", ("nope", 1, 8), "valid clusters"),
    ("set_dns_weights", ("eu-west-1", {"eu-west-1": 60, "eu-central-1": 30}), "sum to 100, they sum to 90"),
    ("set_dns_weights", ("eu-west-1", {"eu-west-1": 110, "eu-central-1": -10}), "non-negative"),
    ("set_dns_weights", ("eu-west-1", {"eu-west-1": 50.0, "eu-central-1": 50}), "integers"),
    ("set_dns_weights", ("eu-west-1", {"mars-1": 100}), "unknown target region"),
    ("set_dns_weights", ("mars-1", {"eu-west-1": 100}), "unknown region"),
    ("promote_replica", ("eu-west-1",), "already a write primary"),
    ("promote_replica", ("mars-1",), "unknown region"),
    ("set_read_replicas", ("eu-west-1", 0), "in 1-10"),
    ("set_read_replicas", ("eu-west-1", 11), "in 1-10"),
    ("set_cache_nodes", ("eu-west-1", 2), "in 3-10"),
    ("set_cache_nodes", ("eu-west-1", 11), "in 3-10"),
    ("set_environment_stopped", ("prod", True), "cannot be stopped"),
]


@pytest.mark.parametrize(("method", "args", "message"), BAD_CALLS)
def test_bad_input_raises_usage_error_and_changes_nothing(
    method: str, args: tuple[Any, ...], message: str
) -> None:
    world = World(SMALL, seed=1, start=NOON)
    world.advance_by(90)
    before, seen = world.to_dict(), world.observe()
    with pytest.raises(UsageError, match=message):
        getattr(world, method)(*args)
    assert world.to_dict() == before
    assert world.observe() == seen


def test_promote_replica_in_a_down_region_is_refused() -> None:
    world = World(SMALL, seed=1, start=NOON)
    world.trigger_incident("region_outage", "eu-central-1")
    with pytest.raises(UsageError, match="region is down"):
        world.promote_replica("eu-central-1")


def test_promote_replica_with_a_healthy_primary_leaves_it_alone() -> None:
    world = World(SMALL, seed=1, start=NOON)
    world.promote_replica("us-east-1")
    assert database(world, "us-east-1").role is DbRole.WRITE_PRIMARY
    assert database(world, "eu-west-1").role is DbRole.WRITE_PRIMARY
    assert database(world, "eu-central-1").replicates_from == "eu-west-1"


def test_a_promoted_replica_demoted_again_leaves_one_write_primary() -> None:
    world = World(SMALL, seed=1, start=NOON)
    world.promote_replica("eu-central-1")
    assert database(world, "eu-central-1").role is DbRole.WRITE_PRIMARY
    world.demote_to_replica("eu-central-1", "eu-west-1")
    db = database(world, "eu-central-1")
    assert db.role is DbRole.READ_REPLICA and db.replicates_from == "eu-west-1"
    assert database(world, "eu-west-1").role is DbRole.WRITE_PRIMARY
    with pytest.raises(UsageError, match="not a write primary"):
        world.demote_to_replica("eu-west-1", "eu-central-1")


def test_set_cluster_nodes_within_the_autoscaler_bounds() -> None:
    world = World(SMALL, seed=1, start=NOON)
    cluster = next(iter(SMALL.clusters))
    _lo, hi = world.node_bounds(cluster)
    world.set_cluster_nodes(cluster, hi)
    assert world.nodes(cluster) == hi
    with pytest.raises(UsageError, match="autoscaler bounds"):
        world.set_cluster_nodes(cluster, hi + 1)
    assert world.nodes(cluster) == hi


# --------------------------------------------------------------------------------------------------
# Time, determinism and persistence
# --------------------------------------------------------------------------------------------------


def test_time_does_not_go_back_and_must_be_aware() -> None:
    world = World(SMALL, seed=1, start=NOON)
    with pytest.raises(SandboxError, match="back in time"):
        world.advance(NOON - timedelta(seconds=1))
    with pytest.raises(SandboxError, match="timezone-aware"):
        world.advance(datetime(2025, 1, 15, 13))
    world.advance(NOON)  # no-op
    assert world.now == NOON


def test_state_changes_only_on_tick_boundaries() -> None:
    world = World(SMALL, seed=1, start=NOON)
    world.advance_by(TICK_S - 1)
    a = world.observe()
    world2 = World(SMALL, seed=1, start=NOON)
    assert [r for r in a if not isinstance(r, RegionTraffic)] != []
    assert [(type(r), r.key, _strip(r)) for r in a] == [(type(r), r.key, _strip(r)) for r in world2.observe()]


def _strip(rec: FleetRecord) -> dict[str, Any]:
    d = dict(rec.__dict__)
    d.pop("observed_at")
    return d


@pytest.mark.parametrize("steps", [[3601], [5, 7200], [4000, 4000]])
def test_long_jumps_catch_up_the_same_way(steps: list[int]) -> None:
    """Every path whose last jump is longer than an hour lands on the same world."""
    a = World(SMALL, seed=7, start=NOON)
    b = World(SMALL, seed=7, start=NOON)
    _scenario(a)
    _scenario(b)
    for s in steps:
        a.advance_by(s)
    b.advance(NOON + timedelta(seconds=100 + sum(steps)))
    assert a.observe() == b.observe()
    assert a.to_dict() == b.to_dict()


def _scenario(world: World) -> None:
    world.advance_by(100)
    world.trigger_incident("traffic_spike", "eu-west-1", duration=600)
    world.trigger_incident("node_pool_loss", "eu-central-1")
    world.trigger_incident("replica_lag_runaway", "us-east-1", duration=900)
    world.set_environment_stopped("dev", True)
    world.set_dns_weights("us-east-1", {"us-east-1": 70, "eu-west-1": 30})


@HYPO
@given(
    # Within an hour (the catch-up horizon): a jump of more than an hour resets to the steady state an
    # hour before the target, which a world stepped tick by tick through that moment does not match
    # exactly (HPA stabilisation has memory); ``test_long_jumps_catch_up_the_same_way`` covers those.
    steps=st.lists(st.integers(min_value=1, max_value=600), min_size=1, max_size=6),
    seed=st.integers(min_value=0, max_value=2**40),
)
def test_same_seed_same_time_same_world_whatever_the_step_pattern(steps: list[int], seed: int) -> None:
    a = World(SMALL, seed=seed, start=NOON)
    b = World(SMALL, seed=seed, start=NOON)
    _scenario(a)
    _scenario(b)
    for s in steps:
        a.advance_by(s)
    b.advance(NOON + timedelta(seconds=100 + sum(steps)))
    assert a.now == b.now
    assert a.observe() == b.observe()
    assert a.to_dict() == b.to_dict()


def test_long_catch_up_matches_stepping(seed_fleet: Fleet) -> None:
    start = datetime(2025, 3, 1, 15, 7, tzinfo=UTC)
    a = World(seed_fleet, seed=7, start=start)
    b = World(seed_fleet, seed=7, start=start)
    for w in (a, b):
        w.trigger_incident("traffic_spike", "eu-west-1", duration=600)
        w.trigger_incident("node_pool_loss", "us-east-1")
    end = start + timedelta(hours=3, seconds=33)
    a.advance(end)  # jumps to end - 1 h, then steps
    while b.now < end:  # never jumps
        b.advance(min(b.now + timedelta(minutes=20), end))
    assert a.observe() == b.observe()


def test_different_seeds_differ() -> None:
    a = World(SMALL, seed=1, start=NOON)
    b = World(SMALL, seed=2, start=NOON)
    a.advance_by(600)
    b.advance_by(600)
    assert traffic(a, "eu-west-1").rps != traffic(b, "eu-west-1").rps
    assert a.observe() != b.observe()


def test_round_trip_through_json_is_exact(seed_fleet: Fleet) -> None:
    world = World(seed_fleet, seed=9, start=NOON)
    world.trigger_incident("latency_spike", "ap-south-1")
    world.set_environment_stopped("staging", True)
    world.set_hpa_bounds("eks-use1-prod", "search", 4, 90)
    world.advance_by(777)
    data = json.loads(json.dumps(world.to_dict(), allow_nan=False))
    copy = World.from_dict(seed_fleet, data)
    assert copy.observe() == world.observe()
    assert copy.to_dict() == world.to_dict()
    world.advance_by(1800)
    copy.advance_by(1800)
    assert copy.observe() == world.observe()
    assert copy.to_dict() == world.to_dict()


def test_from_dict_refuses_another_fleet_and_garbage(seed_fleet: Fleet) -> None:
    data = World(SMALL, seed=1, start=NOON).to_dict()
    assert fleet_fingerprint(SMALL) != fleet_fingerprint(seed_fleet)
    with pytest.raises(SandboxError, match="different fleet"):
        World.from_dict(seed_fleet, data)
    with pytest.raises(SandboxError, match="malformed"):
        World.from_dict(SMALL, {**data, "workloads": {"x": 1}})
    with pytest.raises(SandboxError, match="malformed"):
        World.from_dict(SMALL, {"version": 1})
    with pytest.raises(SandboxError, match="version"):
        World.from_dict(SMALL, {**data, "version": 99})


def test_from_dict_refuses_state_that_only_fails_when_re_evaluated() -> None:
    """A DNS target outside the fleet passes the layout checks and breaks the tick's re-evaluation
    (dynamics); that is still a malformed state file, never a traceback."""
    data = World(SMALL, seed=1, start=NOON).to_dict()
    data["regions"][sorted(SMALL.regions)[0]]["dns"] = {"nowhere-1": 100}
    with pytest.raises(SandboxError, match="malformed"):
        World.from_dict(SMALL, data)


# --------------------------------------------------------------------------------------------------
# Invariants under random operations
# --------------------------------------------------------------------------------------------------

_CLUSTERS = sorted(SMALL.clusters)
_REGIONS = sorted(SMALL.regions)


def _workload_keys() -> list[tuple[str, str]]:
    return [(c.name, s.name) for c in SMALL.clusters.values() for s in SMALL.services_in(c.environment)]


@st.composite
def _weights(draw: st.DrawFn) -> dict[str, int]:
    cut = sorted(draw(st.lists(st.integers(0, 100), min_size=2, max_size=2)))
    parts = [cut[0], cut[1] - cut[0], 100 - cut[1]]
    return dict(zip(_REGIONS, parts, strict=True))


_OPS = st.one_of(
    st.tuples(st.just("advance"), st.integers(1, 2400)),
    st.tuples(st.just("replicas"), st.sampled_from(_workload_keys()), st.integers(0, 110)),
    st.tuples(st.just("hpa"), st.sampled_from(_workload_keys()), st.integers(0, 110), st.integers(0, 110)),
    st.tuples(st.just("nodes"), st.sampled_from(_CLUSTERS), st.integers(0, 55), st.integers(0, 55)),
    st.tuples(st.just("dns"), st.sampled_from(_REGIONS), _weights()),
    st.tuples(st.just("stop"), st.sampled_from(["staging", "dev"]), st.booleans()),
    st.tuples(
        st.just("incident"),
        st.sampled_from([k.value for k in IncidentKind]),
        st.sampled_from(_REGIONS),
        st.integers(60, 3600),
    ),
    st.tuples(st.just("promote"), st.sampled_from(_REGIONS)),
    st.tuples(
        st.just("clear"),
    ),
)


@settings(HYPO, max_examples=60)
@given(ops=st.lists(_OPS, min_size=1, max_size=12), seed=st.integers(0, 1000))
def test_invariants_hold_under_any_operations(ops: list[tuple[Any, ...]], seed: int) -> None:
    world = World(SMALL, seed=seed, start=NOON)
    for op in ops:
        before = world.to_dict()
        try:
            _apply_strict(world, op)
        except UsageError:
            assert world.to_dict() == before  # a refused change changes nothing
        check_invariants(world)
    json.dumps(world.to_dict(), allow_nan=False)


def _apply_strict(world: World, op: tuple[Any, ...]) -> None:
    match op:
        case ("advance", seconds):
            world.advance_by(seconds)
        case ("replicas", (cluster, service), n):
            world.set_replicas(cluster, service, n)
        case ("hpa", (cluster, service), lo, hi):
            world.set_hpa_bounds(cluster, service, lo, hi)
        case ("nodes", cluster, lo, hi):
            world.set_cluster_node_bounds(cluster, lo, hi)
        case ("dns", region, weights):
            world.set_dns_weights(region, weights)
        case ("stop", env, stopped):
            world.set_environment_stopped(env, stopped)
        case ("incident", kind, region, seconds):
            world.trigger_incident(kind, region, duration=seconds)
        case ("promote", region):
            world.promote_replica(region)
        case ("clear",):
            world.clear_incidents()


def _apply(world: World, op: tuple[Any, ...]) -> None:
    with contextlib.suppress(UsageError):
        _apply_strict(world, op)


@HYPO
@given(
    plan=st.lists(
        st.tuples(_OPS.filter(lambda op: op[0] != "advance"), st.integers(1, 3 * 3600), st.integers(1, 4)),
        max_size=5,
    ),
    seed=st.integers(0, 1000),
)
def test_determinism_with_changes_applied_at_the_same_sim_times(
    plan: list[tuple[tuple[Any, ...], int, int]], seed: int
) -> None:
    """World a advances in one call per gap (jumping when a gap exceeds an hour); world b in `parts`
    smaller calls. The same changes are applied at the same sim times. They must agree exactly."""
    a = World(SMALL, seed=seed, start=NOON)
    b = World(SMALL, seed=seed, start=NOON)
    for op, gap, parts in plan:
        target = a.now + timedelta(seconds=gap)
        a.advance(target)
        while b.now < target:
            b.advance(min(target, b.now + timedelta(seconds=gap / parts + 1)))
        _apply(a, op)
        _apply(b, op)
        assert a.to_dict() == b.to_dict()
    a.advance_by(4000)
    b.advance_by(600)
    b.advance_by(3400)
    assert a.observe() == b.observe()
