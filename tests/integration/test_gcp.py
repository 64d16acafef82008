"""The ``gcp`` source against the local Cloud Monitoring emulator, over a real gRPC socket.

Checks that what :class:`GcpSource` reads through ``google-cloud-monitoring`` matches the world
(``World.observe()``) for its slice — GKE workloads and GCP-hosted databases — and that every fault of
the emulator ends as the documented error or problem (the faults every adapter shares are in
test_source_contract.py; this file keeps the Cloud Monitoring specific ones).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport
from google.protobuf import duration_pb2, timestamp_pb2

from opsconsole.core.errors import SourceError
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import Cloud, DatabaseState, Fleet, WorkloadMetrics, WorkloadState
from opsconsole.providers.gcp import GcpSource
from opsconsole.sandbox.emulator import Endpoints
from opsconsole.sandbox.gcp_monitoring import GcpMonitoringEmulator, distribution_with_p95, percentile_of
from opsconsole.sandbox.world import World

START = datetime(2025, 1, 15, 18, tzinfo=UTC)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_inventory()


@pytest.fixture
def world(fleet: Fleet) -> World:
    return World(fleet, seed=42, start=START)


@pytest.fixture
def emulator(fleet: Fleet, world: World) -> Iterator[tuple[GcpMonitoringEmulator, Endpoints]]:
    emu = GcpMonitoringEmulator(fleet)
    t0 = time.perf_counter()
    endpoints = emu.start()
    assert time.perf_counter() - t0 < 0.5
    emu.publish(world)
    yield emu, endpoints
    emu.stop()


def _client(endpoints: Endpoints) -> monitoring_v3.MetricServiceClient:
    channel = grpc.insecure_channel(endpoints.urls["gcp"])
    return monitoring_v3.MetricServiceClient(transport=MetricServiceGrpcTransport(channel=channel))


def test_records_match_the_world(
    fleet: Fleet, world: World, emulator: tuple[GcpMonitoringEmulator, Endpoints]
) -> None:
    _, endpoints = emulator
    source = GcpSource.from_endpoints(fleet, endpoints)
    t0 = time.perf_counter()
    reading = source.read()
    assert time.perf_counter() - t0 < 1.0
    assert reading.problems == ()
    truth = {
        r.key.replace("workload/", "metrics/"): r for r in world.observe() if isinstance(r, WorkloadState)
    }
    dbs = {r.region: r for r in world.observe() if isinstance(r, DatabaseState)}
    gke = {
        f"metrics/{c.name}/{s.name}"
        for c in fleet.clusters.values()
        if c.cloud is Cloud.GCP
        for s in fleet.services_in(c.environment)
    }
    metrics = {r.key: r for r in reading.records if isinstance(r, WorkloadMetrics)}
    assert set(metrics) == gke
    for key, rec in metrics.items():
        w = truth[key]
        assert rec.source == "gcp"
        assert w.rps is not None and w.p95_ms is not None and w.error_rate is not None
        assert rec.rps == pytest.approx(w.rps, rel=0.02, abs=0.05), key
        assert rec.p95_ms == pytest.approx(w.p95_ms, rel=0.03), key
        assert rec.error_rate == pytest.approx(w.error_rate, abs=2e-3), key
        assert rec.cpu_utilisation == pytest.approx(w.cpu_utilisation, abs=1e-6), key
        assert rec.memory_utilisation is not None
        assert rec.restarts == 0
    databases = [r for r in reading.records if isinstance(r, DatabaseState)]
    assert {d.region for d in databases} == {
        r.id for r in fleet.regions.values() if r.database.cloud is Cloud.GCP
    }
    for db in databases:
        w_db = dbs[db.region]
        assert db.replica_lag_s == pytest.approx(w_db.replica_lag_s, abs=0.01)
        assert db.query_p95_ms == pytest.approx(w_db.query_p95_ms, rel=0.03)
        assert db.tps == pytest.approx(w_db.tps, rel=0.01)
        assert db.available is w_db.available
        assert (db.role, db.replicates_from, db.read_replicas) == (
            w_db.role,
            w_db.replicates_from,
            w_db.read_replicas,
        )


def test_a_later_tick_is_seen(
    fleet: Fleet, world: World, emulator: tuple[GcpMonitoringEmulator, Endpoints]
) -> None:
    emu, endpoints = emulator
    world.trigger_incident("latency_spike", "ap-south-1")
    emu.publish(world)  # within the min spacing: gauges replaced, deltas merged into the last point
    reading = GcpSource.from_endpoints(fleet, endpoints).read()
    truth = {
        r.key.replace("workload/", "metrics/"): r for r in world.observe() if isinstance(r, WorkloadState)
    }
    rec = next(r for r in reading.records if r.key == "metrics/gke-aps1-prod/gateway")
    assert isinstance(rec, WorkloadMetrics)
    assert rec.cpu_utilisation == pytest.approx(truth[rec.key].cpu_utilisation, abs=1e-6)


def test_distribution_p95_is_exact_within_a_bucket() -> None:
    for p95 in (3.3, 41.0, 87.2, 199.9, 1234.5):
        for count in (20, 1000, 100000):
            got = percentile_of(distribution_with_p95(p95, count), 0.95)
            assert got is not None and got == pytest.approx(p95, rel=0.05 if count < 100 else 0.005)


def test_server_side_aggregation_and_paging(emulator: tuple[GcpMonitoringEmulator, Endpoints]) -> None:
    _, endpoints = emulator
    client = _client(endpoints)
    now = time.time()
    end = timestamp_pb2.Timestamp()
    end.FromNanoseconds(int(now * 1e9))
    start = timestamp_pb2.Timestamp()
    start.FromNanoseconds(int((now - 300) * 1e9))
    base = dict(
        name="projects/voltage-sandbox",
        filter='metric.type = "kubernetes.io/container/cpu/limit_utilization" AND '
        'resource.labels.cluster_name = "gke-euw1-prod"',
        interval=monitoring_v3.TimeInterval(start_time=start, end_time=end),
    )
    raw = list(client.list_time_series(request={**base, "page_size": 5}))
    assert len(raw) > 12  # one series per ready pod, over several pages
    assert len({s.resource.labels["pod_name"] for s in raw}) == len(raw)
    reduced = list(
        client.list_time_series(
            request={
                **base,
                "aggregation": monitoring_v3.Aggregation(
                    alignment_period=duration_pb2.Duration(seconds=60),
                    per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_MEAN,
                    cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_PERCENTILE_95,
                    group_by_fields=["resource.labels.container_name"],
                ),
            }
        )
    )
    assert len(reduced) == 12
    lat = list(
        client.list_time_series(
            request={
                **base,
                "filter": 'metric.type = "loadbalancing.googleapis.com/https/total_latencies" AND '
                'resource.labels.url_map_name = "um-gke-euw1-prod"',
                "aggregation": monitoring_v3.Aggregation(
                    alignment_period=duration_pb2.Duration(seconds=60),
                    per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_DELTA,
                    cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_PERCENTILE_95,
                ),
            }
        )
    )
    assert len(lat) == 1 and lat[0].points[0].value.double_value > 0
    with pytest.raises(gexc.InvalidArgument):
        list(client.list_time_series(request={**base, "filter": 'resource.type = "k8s_container"'}))
    with pytest.raises(gexc.InvalidArgument):
        list(client.list_time_series(request={**base, "page_token": "bogus"}))


def test_endless_throttling_fails_within_the_deadline(
    fleet: Fleet, emulator: tuple[GcpMonitoringEmulator, Endpoints]
) -> None:
    emu, endpoints = emulator
    emu.faults.inject("throttled", count=10_000)
    t0 = time.perf_counter()
    with pytest.raises(SourceError) as err:
        GcpSource.from_endpoints(fleet, endpoints, timeout_s=1.0).read()
    assert time.perf_counter() - t0 < 1.5
    assert "throttled" in err.value.message


@pytest.mark.parametrize("mode", ["truncated", "garbled"])
def test_malformed_answers_are_errors_not_data(
    fleet: Fleet, emulator: tuple[GcpMonitoringEmulator, Endpoints], mode: str
) -> None:
    emu, endpoints = emulator
    emu.faults.inject("malformed", mode=mode)
    with pytest.raises(SourceError) as err:
        GcpSource.from_endpoints(fleet, endpoints).read()
    assert "every query failed" in err.value.message
    assert ("InvalidArgument" in err.value.message) if mode == "truncated" else True


def test_collect_changes_nothing(
    fleet: Fleet, world: World, emulator: tuple[GcpMonitoringEmulator, Endpoints]
) -> None:
    emu, _ = emulator
    before = world.to_dict()
    emu.collect(world)
    assert world.to_dict() == before
