"""The AWS adapter against the sandbox's AWS emulator (moto + its own CloudWatch), over real sockets.

The fault cases (down, slow, forbidden, throttled, malformed) are in test_source_contract.py.
EKS workloads' request figures come from per-target-group ALB metrics: the emulator makes the target
groups the AWS Load Balancer Controller would (``k8s-<ns>-<svc>-<hash>``), the adapter finds them by their
tags and reads them in the same GetMetricData batches as the region's other metrics.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest

from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.metering import METER
from opsconsole.core.fleet.model import (
    CacheState,
    Cloud,
    DatabaseState,
    DbRole,
    DnsRecordSet,
    Fleet,
    NodeGroupState,
    RegionTraffic,
    WorkloadMetrics,
    WorkloadState,
)
from opsconsole.providers.aws import MAX_METRICS_PER_CALL, AwsSource
from opsconsole.sandbox.aws import HOSTED_ZONE, AwsCloud, load_balancer_dimension
from opsconsole.sandbox.emulator import Endpoints
from opsconsole.sandbox.world import World

START = datetime(2025, 1, 15, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_inventory()


@pytest.fixture(scope="module")
def cloud(fleet: Fleet) -> Iterator[tuple[AwsCloud, Endpoints]]:
    emulator = AwsCloud(fleet)
    endpoints = emulator.start()
    yield emulator, endpoints
    emulator.stop()


@pytest.fixture
def env(cloud: tuple[AwsCloud, Endpoints], fleet: Fleet) -> Iterator[tuple[AwsCloud, Endpoints, World]]:
    """A fresh world published into the (shared) emulator; faults cleared afterwards."""
    emulator, endpoints = cloud
    world = World(fleet, seed=42, start=START)
    emulator.collect(world)  # forget any client change a previous test left behind ...
    world = World(fleet, seed=42, start=START)  # ... and start from the pristine world again
    emulator.publish(world)
    yield emulator, endpoints, world
    emulator.faults.clear()


#: The adapter's time budget in tests of what it reads: a fresh source's first read (its clients built,
#: eleven regions asked at once) took over 5 s beside CPU burners. Tests of slowness pass their own.
READ_S = 30.0


def _source(fleet: Fleet, endpoints: Endpoints, timeout_s: float = READ_S) -> AwsSource:
    return AwsSource.from_endpoints(fleet, endpoints, timeout_s=timeout_s)


def _client(endpoints: Endpoints, service: str, region: str) -> object:
    s = endpoints.settings
    session = boto3.Session(aws_access_key_id=s["aws_access_key_id"],
                            aws_secret_access_key=s["aws_secret_access_key"],
                            aws_session_token=s["aws_session_token"])
    url = endpoints.urls["cloudwatch" if service == "cloudwatch" else "aws"]
    return session.client(service, region_name=region, endpoint_url=url)


def test_emulator_start_is_timed(cloud: tuple[AwsCloud, Endpoints]) -> None:
    emulator, endpoints = cloud
    assert emulator.start_seconds is not None
    # Seeding goes straight into moto's backends (~0.5 s on a 2-core machine); slack for a busy one.
    assert emulator.start_seconds < 4.0
    assert endpoints.urls["aws"].startswith("http://127.0.0.1:")
    assert endpoints.urls["cloudwatch"].startswith("http://127.0.0.1:")


def test_records_match_the_world(env: tuple[AwsCloud, Endpoints, World], fleet: Fleet) -> None:
    emulator, endpoints, world = env
    source = _source(fleet, endpoints)
    source.read()  # first read builds the clients
    t0 = time.perf_counter()
    reading = source.read()
    warm = time.perf_counter() - t0
    assert reading.complete, reading.problems
    assert warm < 2.0
    got = {r.key: r for r in reading.records}
    sim = {r.key: r for r in world.observe()}
    assert all(r.source == "aws" for r in reading.records)
    for rid, spec in fleet.regions.items():
        t, s = got[f"traffic/{rid}"], sim[f"traffic/{rid}"]
        assert isinstance(t, RegionTraffic) and isinstance(s, RegionTraffic)
        assert t.p95_ms == pytest.approx(s.p95_ms, rel=0.02)
        assert t.p99_ms == pytest.approx(s.p99_ms, rel=0.02)
        assert t.avg_latency_ms == pytest.approx(s.avg_latency_ms, rel=0.02)
        assert t.rps == pytest.approx(s.rps, rel=1e-6)
        assert t.error_rate == pytest.approx(s.error_rate, rel=1e-6, abs=1e-12)
        assert t.error_rate_1h == pytest.approx(s.error_rate_1h, rel=1e-6, abs=1e-12)
        assert t.concurrent_users == s.concurrent_users
        assert t.health_check_ok is s.health_check_ok
        d, sd = got[f"dns/{rid}"], sim[f"dns/{rid}"]
        assert isinstance(d, DnsRecordSet) and isinstance(sd, DnsRecordSet)
        assert d.weights == sd.weights and d.routing is sd.routing
        c, sc = got[f"cache/{rid}"], sim[f"cache/{rid}"]
        assert isinstance(c, CacheState) and isinstance(sc, CacheState)
        assert (c.nodes, c.healthy_nodes) == (sc.nodes, sc.healthy_nodes)
        assert c.hit_ratio == pytest.approx(sc.hit_ratio, abs=1e-4)
        key = f"database/{rid}"
        if spec.database.cloud is Cloud.AWS:
            db, sdb = got[key], sim[key]
            assert isinstance(db, DatabaseState) and isinstance(sdb, DatabaseState)
            assert (db.role, db.replicates_from, db.read_replicas, db.available) == (
                sdb.role, sdb.replicates_from, sdb.read_replicas, sdb.available)
            assert db.replica_lag_s == pytest.approx(sdb.replica_lag_s, abs=1e-3)
            assert db.query_p95_ms == pytest.approx(sdb.query_p95_ms, abs=1e-3)
            assert db.tps == pytest.approx(sdb.tps, rel=1e-6)
            assert db.storage_tb == sdb.storage_tb
        else:
            assert key not in got
    for c in fleet.clusters.values():
        key = f"nodegroup/{c.name}/{c.name}-ng"
        if c.cloud is not Cloud.AWS:
            assert key not in got
            continue
        ng = got[key]
        assert isinstance(ng, NodeGroupState)
        lo, hi = world.node_bounds(c.name)
        assert (ng.desired, ng.in_service, ng.min, ng.max) == (world.nodes(c.name),) * 2 + (lo, hi)
        assert ng.spot + ng.on_demand == ng.in_service
    # Every EKS workload has its request figures (the Kubernetes API has none), read from its target group.
    eks = {f"metrics/{c.name}/{s.name}" for c in fleet.clusters.values() if c.cloud is Cloud.AWS
           for s in fleet.services_in(c.environment)}
    metrics = {k: r for k, r in got.items() if isinstance(r, WorkloadMetrics)}
    assert set(metrics) == eks and len(eks) == 140
    for key, rec in metrics.items():
        w = sim[key.replace("metrics/", "workload/", 1)]
        assert isinstance(w, WorkloadState) and isinstance(rec, WorkloadMetrics)
        assert w.rps is not None and w.p95_ms is not None and w.error_rate is not None
        assert rec.rps == pytest.approx(w.rps, rel=1e-6), key
        assert rec.p95_ms == pytest.approx(w.p95_ms, rel=1e-6), key
        assert rec.error_rate == pytest.approx(w.error_rate, rel=1e-6, abs=1e-12), key
        dims = emulator.target_group_dimensions(rec.cluster, rec.service)
        assert dims is not None
        assert rec.extra["load_balancer"] == dims["LoadBalancer"]
        assert rec.extra["target_group"] == dims["TargetGroup"]


_CONTROLLER_NAME = re.compile(r"^k8s-[a-z0-9]+(?:-[a-z0-9]+)*-[0-9a-f]{10}$")


def test_eks_target_groups_are_the_load_balancer_controllers(
    env: tuple[AwsCloud, Endpoints, World], fleet: Fleet
) -> None:
    """One ALB per EKS cluster, one tagged target group per service, named in the controller's style."""
    emulator, endpoints, _ = env
    for c in (c for c in fleet.clusters.values() if c.cloud is Cloud.AWS):
        elbv2 = _client(endpoints, "elbv2", c.cloud_region)
        groups = elbv2.describe_target_groups()["TargetGroups"]  # type: ignore[attr-defined]
        arns = [g["TargetGroupArn"] for g in groups]
        tags = {d["ResourceArn"]: {t["Key"]: t["Value"] for t in d["Tags"]}
                for i in range(0, len(arns), 20)
                for d in elbv2.describe_tags(ResourceArns=arns[i:i + 20])["TagDescriptions"]}  # type: ignore[attr-defined]
        mine = [g for g in groups if tags[g["TargetGroupArn"]].get("elbv2.k8s.aws/cluster") == c.name]
        services = {s.name for s in fleet.services_in(c.environment)}
        assert len(mine) == len(services)
        assert len({lb for g in mine for lb in g["LoadBalancerArns"]}) == 1
        for g in mine:
            assert len(g["TargetGroupName"]) <= 32 and _CONTROLLER_NAME.match(g["TargetGroupName"])
            resource = tags[g["TargetGroupArn"]]["ingress.k8s.aws/resource"]
            svc = resource.removeprefix("voltage/").rsplit(":", 1)[0].split("-", 1)[0]
            assert any(s.startswith(svc) for s in services), resource
        dims = emulator.target_group_dimensions(c.name, sorted(services)[0])
        assert dims is not None and dims["TargetGroup"].startswith("targetgroup/k8s-voltage-")


def _get_metric_data() -> tuple[int, int]:
    calls = units = 0
    for row in METER.snapshot():
        if row.source == "aws" and row.operation == "GetMetricData":
            calls, units = calls + row.calls, units + row.units
    return calls, units


def test_eks_metrics_ride_in_the_regions_batches(
    env: tuple[AwsCloud, Endpoints, World], fleet: Fleet
) -> None:
    """Three metrics per EKS workload, in the regions' GetMetricData calls, never more than 500 a call."""
    _, endpoints, _ = env
    source = _source(fleet, endpoints)
    source.read()
    calls0, units0 = _get_metric_data()
    reading = source.read()
    calls1, units1 = _get_metric_data()
    assert reading.complete, reading.problems
    workloads = sum(len(fleet.services_in(c.environment)) for c in fleet.clusters.values()
                    if c.cloud is Cloud.AWS)
    per_region = 9 * len(fleet.regions) + 3 * sum(
        1 for r in fleet.regions.values() if r.database.cloud is Cloud.AWS)
    health = len(fleet.regions)
    assert units1 - units0 == per_region + health + 3 * workloads
    # No call of its own: per region one call per start time (gauges, 5-min sums, 1-h sums), plus one
    # for the health checks.
    assert calls1 - calls0 == 3 * len(fleet.regions) + 1
    # A batch larger than CloudWatch's limit is split.
    dims = {"LoadBalancer": "app/none/0", "TargetGroup": "targetgroup/none/0"}
    queries = [(f"q{i}", "AWS/ApplicationELB", "RequestCount", {**dims, "N": str(i)}, "Sum", 300, 300)
               for i in range(MAX_METRICS_PER_CALL * 2 + 1)]
    values = source._metrics("us-east-1", "us-east-1", queries)
    calls2, units2 = _get_metric_data()
    assert (calls2 - calls1, units2 - units1) == (3, len(queries))
    assert set(values) == {q[0] for q in queries}


def test_a_query_fixed_just_before_a_publish_still_finds_the_regions_alb_metrics(
    env: tuple[AwsCloud, Endpoints, World], fleet: Fleet
) -> None:
    """A reader fixes its query's EndTime, then the local cloud publishes (on a loaded machine, seconds
    can pass between the two): the 5-minute sums are one point rewritten at every publish, so stamped at
    the publish itself they fell past that EndTime and the region read "no recent ALB metrics"."""
    emulator, endpoints, world = env
    end = datetime.now(UTC)
    emulator.publish(world)  # after the reader fixed its window
    cw = _client(endpoints, "cloudwatch", "us-east-1")
    lb = [{"Name": "LoadBalancer", "Value": load_balancer_dimension("us-east-1")}]
    answer = cw.get_metric_data(  # type: ignore[attr-defined]
        MetricDataQueries=[{"Id": "req5", "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount", "Dimensions": lb},
            "Period": 300, "Stat": "Sum"}}],
        StartTime=datetime.fromtimestamp(end.timestamp() - 300, UTC), EndTime=end)
    values = answer["MetricDataResults"][0]["Values"]
    traffic = next(r for r in world.observe() if isinstance(r, RegionTraffic) and r.region == "us-east-1")
    assert values and values[0] == pytest.approx(traffic.rps * 300.0), answer["MetricDataResults"]


def test_route53_weight_change_reaches_the_world(
    env: tuple[AwsCloud, Endpoints, World], fleet: Fleet
) -> None:
    emulator, endpoints, world = env
    r53 = _client(endpoints, "route53", "us-east-1")
    zone = r53.list_hosted_zones_by_name(DNSName=HOSTED_ZONE)["HostedZones"][0]["Id"]  # type: ignore[attr-defined]
    name = "api.ca-central-1.voltage.internal."
    changes = [
        {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": name, "Type": "CNAME", "SetIdentifier": target, "Weight": weight, "TTL": 60,
            "ResourceRecords": [{"Value": f"api-{target}.example"}]}}
        for target, weight in (("ca-central-1", 70), ("us-east-1", 30))
    ]
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})  # type: ignore[attr-defined]
    emulator.collect(world)
    assert world.dns_weights("ca-central-1") == {"ca-central-1": 70, "us-east-1": 30}
    emulator.publish(world)
    dns = {r.key: r for r in _source(fleet, endpoints).read().records}["dns/ca-central-1"]
    assert isinstance(dns, DnsRecordSet)
    assert dns.weights == {"ca-central-1": 70, "us-east-1": 30}
    # Route53 weights are relative: a record set summing to 169 sends 41 % / 59 %, and the records a
    # client wrote stay as written (a playbook writes one record per call, passing through such sums).
    relative = [{"Action": "UPSERT", "ResourceRecordSet": {**changes[1]["ResourceRecordSet"], "Weight": 99}}]
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": relative})  # type: ignore[attr-defined]
    emulator.collect(world)
    assert world.dns_weights("ca-central-1") == {"ca-central-1": 41, "us-east-1": 59}
    emulator.publish(world)
    dns = {r.key: r for r in _source(fleet, endpoints).read().records}["dns/ca-central-1"]
    assert isinstance(dns, DnsRecordSet) and dns.weights == {"ca-central-1": 70, "us-east-1": 99}
    # An invalid change (a target that is no region) is ignored and overwritten by the next publish.
    mars = {**changes[1]["ResourceRecordSet"], "SetIdentifier": "mars-1"}
    bad = [{"Action": "UPSERT", "ResourceRecordSet": mars}]
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": bad})  # type: ignore[attr-defined]
    emulator.collect(world)
    assert world.dns_weights("ca-central-1") == {"ca-central-1": 41, "us-east-1": 59}
    # Restore for the other tests.
    world.set_dns_weights("ca-central-1", {"ca-central-1": 100})
    emulator.publish(world)


def test_asg_max_change_reaches_the_world(env: tuple[AwsCloud, Endpoints, World], fleet: Fleet) -> None:
    emulator, endpoints, world = env
    lo, hi = world.node_bounds("eks-usw2-prod")
    asg = _client(endpoints, "autoscaling", "us-west-2")
    asg.update_auto_scaling_group(AutoScalingGroupName="eks-usw2-prod-ng", MaxSize=hi - 5)  # type: ignore[attr-defined]
    emulator.collect(world)
    assert world.node_bounds("eks-usw2-prod") == (lo, hi - 5)
    emulator.publish(world)
    records = {r.key: r for r in _source(fleet, endpoints).read().records}
    ng = records["nodegroup/eks-usw2-prod/eks-usw2-prod-ng"]
    assert isinstance(ng, NodeGroupState) and ng.max == hi - 5
    world.set_cluster_node_bounds("eks-usw2-prod", lo, hi)
    emulator.publish(world)


def test_rds_promote_and_replicas_reach_the_world(
    env: tuple[AwsCloud, Endpoints, World], fleet: Fleet
) -> None:
    emulator, endpoints, world = env
    rds = _client(endpoints, "rds", "us-west-2")
    rds.promote_read_replica(DBInstanceIdentifier="pg-us-west-2")  # type: ignore[attr-defined]
    rds.create_db_instance_read_replica(  # type: ignore[attr-defined]
        DBInstanceIdentifier="pg-us-west-2-r9", SourceDBInstanceIdentifier="pg-us-west-2",
        DBInstanceClass="db.r6g.xlarge", DBSubnetGroupName="voltage-db")
    emulator.collect(world)
    db = {r.key: r for r in world.observe()}["database/us-west-2"]
    assert isinstance(db, DatabaseState)
    assert db.role is DbRole.WRITE_PRIMARY and db.replicates_from is None
    assert db.read_replicas == 3
    emulator.publish(world)
    got = {r.key: r for r in _source(fleet, endpoints).read().records}["database/us-west-2"]
    assert isinstance(got, DatabaseState)
    assert (got.role, got.replicates_from, got.read_replicas) == (DbRole.WRITE_PRIMARY, None, 3)
    # The world goes back to the seed's shape: a replica of us-east-1 with 2 read replicas.
    fresh = World(fleet, seed=42, start=START)
    emulator.publish(fresh)
    got = {r.key: r for r in _source(fleet, endpoints).read().records}["database/us-west-2"]
    assert isinstance(got, DatabaseState)
    assert (got.role, got.replicates_from, got.read_replicas) == (DbRole.READ_REPLICA, "us-east-1", 2)


def test_cache_replica_count_reaches_the_world(env: tuple[AwsCloud, Endpoints, World], fleet: Fleet) -> None:
    emulator, endpoints, world = env
    ec = _client(endpoints, "elasticache", "ca-central-1")
    ec.increase_replica_count(ReplicationGroupId="redis-ca-central-1", NewReplicaCount=3,  # type: ignore[attr-defined]
                              ApplyImmediately=True)
    emulator.collect(world)
    cache = {r.key: r for r in world.observe()}["cache/ca-central-1"]
    assert isinstance(cache, CacheState) and cache.nodes == 4
    emulator.publish(world)
    got = {r.key: r for r in _source(fleet, endpoints).read().records}["cache/ca-central-1"]
    assert isinstance(got, CacheState) and got.nodes == 4
    emulator.publish(World(fleet, seed=42, start=START))


def test_writes_between_collect_and_publish_are_not_lost(
    env: tuple[AwsCloud, Endpoints, World], fleet: Fleet
) -> None:
    """The local cloud collects, advances the world, then publishes, while moto keeps serving clients."""
    emulator, endpoints, world = env
    lo, hi = world.node_bounds("eks-usw2-prod")
    emulator.collect(world)
    _client(endpoints, "autoscaling", "us-west-2").update_auto_scaling_group(  # type: ignore[attr-defined]
        AutoScalingGroupName="eks-usw2-prod-ng", MaxSize=hi - 4)
    _client(endpoints, "elasticache", "ca-central-1").increase_replica_count(  # type: ignore[attr-defined]
        ReplicationGroupId="redis-ca-central-1", NewReplicaCount=3, ApplyImmediately=True)
    r53 = _client(endpoints, "route53", "us-east-1")
    zone = r53.list_hosted_zones_by_name(DNSName=HOSTED_ZONE)["HostedZones"][0]["Id"]  # type: ignore[attr-defined]
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [  # type: ignore[attr-defined]
        {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": "api.ca-central-1.voltage.internal.", "Type": "CNAME", "SetIdentifier": target,
            "Weight": weight, "TTL": 60, "ResourceRecords": [{"Value": f"api-{target}.example"}]}}
        for target, weight in (("ca-central-1", 60), ("us-east-1", 40))]})
    emulator.publish(world)  # the world still holds the old values: they must not overwrite the writes
    emulator.collect(world)
    assert world.node_bounds("eks-usw2-prod") == (lo, hi - 4)
    cache = {r.key: r for r in world.observe()}["cache/ca-central-1"]
    assert isinstance(cache, CacheState) and cache.nodes == 4
    assert world.dns_weights("ca-central-1") == {"ca-central-1": 60, "us-east-1": 40}
    emulator.publish(world)
    records = {r.key: r for r in _source(fleet, endpoints).read().records}
    ng = records["nodegroup/eks-usw2-prod/eks-usw2-prod-ng"]
    assert isinstance(ng, NodeGroupState) and ng.max == hi - 4
    # Restore for the other tests.
    world.set_cluster_node_bounds("eks-usw2-prod", lo, hi)
    world.set_dns_weights("ca-central-1", {"ca-central-1": 100})
    emulator.publish(World(fleet, seed=42, start=START))


def test_region_down_shows_as_failed_health_and_database(
    env: tuple[AwsCloud, Endpoints, World], fleet: Fleet
) -> None:
    emulator, endpoints, world = env
    world.trigger_incident("region_outage", "eu-central-1")
    emulator.publish(world)
    got = {r.key: r for r in _source(fleet, endpoints).read().records}
    sim = {r.key: r for r in world.observe()}
    for key in ("traffic/eu-central-1", "database/eu-central-1", "cache/eu-central-1"):
        assert got[key].__dict__.keys() == sim[key].__dict__.keys()
    t = got["traffic/eu-central-1"]
    assert isinstance(t, RegionTraffic) and t.health_check_ok is False
    db = got["database/eu-central-1"]
    assert isinstance(db, DatabaseState) and db.available is False
    cache = got["cache/eu-central-1"]
    assert isinstance(cache, CacheState) and cache.healthy_nodes == 0
    # No requests reach the region's EKS workloads: no latency and no error rate to speak of (as on GCP).
    down = [r for r in got.values() if isinstance(r, WorkloadMetrics) and r.cluster == "eks-euc1-prod"]
    assert down and all((r.rps, r.p95_ms, r.error_rate) == (0.0, None, None) for r in down)
    emulator.publish(World(fleet, seed=42, start=START))
