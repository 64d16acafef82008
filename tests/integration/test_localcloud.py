"""The sandbox served through the local cloud: the same world read through `sim` and through the four real
adapters agrees; one cloud down leaves the others answering; a change written with a plain SDK client reaches
the world and the next snapshot.

One local cloud (all four emulators) is started for the module: starting moto is the slow part.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.engine import SourceStatus
from opsconsole.core.fleet.findings import FindingKind
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import (
    CacheState,
    ClusterState,
    DatabaseState,
    DnsRecordSet,
    Fleet,
    FleetRecord,
    RegionTraffic,
    WorkloadState,
)
from opsconsole.providers.sim import SimSource
from opsconsole.sandbox.emulator import Emulator
from opsconsole.sandbox.localcloud import LocalCloud, endpoints_path, read_running
from opsconsole.sandbox.state import WorldStore
from opsconsole.testing import FakeClock
from opsconsole.wiring import adapter_sources, sandbox_emulators

AT = datetime(2026, 11, 26, 18, 30, tzinfo=UTC)  # evening in Europe, morning in APAC: varied load


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_inventory()


@pytest.fixture(scope="module")
def local_cloud(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    home = tmp_path_factory.mktemp("localcloud-home")
    store = WorldStore(home, fleet, FakeClock(AT), seed=7)
    cloud = LocalCloud(store, sandbox_emulators(fleet))
    cloud.start()
    yield cloud
    cloud.stop()


def emulator(cloud: LocalCloud, name: str) -> Emulator:
    return next(e for e in cloud.emulators if e.name == name)


def read_adapters(fleet: Fleet, cloud: LocalCloud) -> dict[str, FleetRecord]:
    records: dict[str, FleetRecord] = {}
    for source in adapter_sources(fleet, cloud.endpoints, timeout_s=20.0):  # generous: a loaded machine
        reading = source.read()
        assert reading.problems == (), (source.name, reading.problems)
        for record in reading.records:
            assert record.key not in records, f"{record.key} reported by two adapters"
            records[record.key] = record
    return records


def close(a: float | None, b: float | None, rel: float = 0.02, abs_: float = 1e-6) -> bool:
    assert a is not None and b is not None
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def test_sim_and_the_four_adapters_agree(fleet: Fleet, local_cloud: LocalCloud) -> None:
    simulated = {r.key: r for r in SimSource(local_cloud.store).read().records}
    served = read_adapters(fleet, local_cloud)
    compared = 0
    for key, sim in simulated.items():
        assert key in served, f"{key} is in the world but no adapter reports it"
        got = served[key]
        assert type(got) is type(sim), key
        if isinstance(sim, WorkloadState):
            assert isinstance(got, WorkloadState)
            assert (got.desired, got.ready, got.hpa_min, got.hpa_max, got.pending_pods) == (
                sim.desired, sim.ready, sim.hpa_min, sim.hpa_max, sim.pending_pods), key
            assert abs(got.cpu_utilisation - sim.cpu_utilisation) <= 0.01, key
        elif isinstance(sim, ClusterState):
            assert isinstance(got, ClusterState)
            fields = ("nodes", "ready_nodes", "nodes_min", "nodes_max", "spot_nodes", "on_demand_nodes",
                      "reserved_nodes")
            assert [getattr(got, f) for f in fields] == [getattr(sim, f) for f in fields], key
        elif isinstance(sim, RegionTraffic):
            assert isinstance(got, RegionTraffic)
            assert close(got.p95_ms, sim.p95_ms) and close(got.p99_ms, sim.p99_ms), key
            assert close(got.rps, sim.rps) and close(got.avg_latency_ms, sim.avg_latency_ms), key
            assert abs(got.error_rate - sim.error_rate) < 1e-3 and got.health_check_ok == sim.health_check_ok
        elif isinstance(sim, DnsRecordSet):
            assert isinstance(got, DnsRecordSet) and got.weights == sim.weights, key
        elif isinstance(sim, DatabaseState):
            assert isinstance(got, DatabaseState)
            assert (got.role, got.available) == (sim.role, sim.available), key
            assert abs(got.replica_lag_s - sim.replica_lag_s) <= 0.5, key
        elif isinstance(sim, CacheState):
            assert isinstance(got, CacheState)
            assert (got.nodes, got.healthy_nodes) == (sim.nodes, sim.healthy_nodes), key
        compared += 1
    assert compared == len(simulated) > 400
    # The adapters also report what only the clouds know: node groups and per-workload request metrics.
    kinds = {key.split("/")[0] for key in served}
    assert {"nodegroup", "metrics"} <= kinds


def test_a_kubernetes_scale_reaches_the_world_and_the_next_snapshot(
    fleet: Fleet, local_cloud: LocalCloud
) -> None:
    kubeconfig = local_cloud.endpoints["k8s"].settings["kubeconfig"]
    api = k8s_client.AppsV1Api(k8s_config.new_client_from_config(kubeconfig, context="gke-euw1-prod"))
    api.patch_namespaced_deployment_scale("checkout", "voltage", {"spec": {"replicas": 9}})
    local_cloud.sync()
    with local_cloud.store.open() as world:
        assert world.replicas("gke-euw1-prod", "checkout") == 9
    sources = adapter_sources(fleet, local_cloud.endpoints, timeout_s=20.0)  # generous: a loaded machine
    with OpsCore(fleet, sources, deadline_s=25.0) as core:
        view = core.refresh()
    workload = view.snapshot.get("workload/gke-euw1-prod/checkout")
    assert isinstance(workload, WorkloadState) and workload.desired == 9


def test_a_route53_weight_change_reaches_the_world(fleet: Fleet, local_cloud: LocalCloud) -> None:
    endpoints = local_cloud.endpoints["aws"]
    settings = endpoints.settings
    route53 = boto3.Session(
        aws_access_key_id=settings["aws_access_key_id"],
        aws_secret_access_key=settings["aws_secret_access_key"],
        aws_session_token=settings["aws_session_token"], region_name="us-east-1",
    ).client("route53", endpoint_url=endpoints.urls["aws"])
    zone = route53.list_hosted_zones_by_name(DNSName=settings["hosted_zone"])["HostedZones"][0]["Id"]
    changes = [
        {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": "api.ap-south-1.voltage.internal.", "Type": "CNAME", "SetIdentifier": target,
            "Weight": weight, "TTL": 60, "ResourceRecords": [{"Value": f"api-{target}.example"}]}}
        for target, weight in (("ap-south-1", 50), ("ap-southeast-1", 50))
    ]
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})
    local_cloud.sync()
    with local_cloud.store.open() as world:
        assert world.dns_weights("ap-south-1") == {"ap-south-1": 50, "ap-southeast-1": 50}
    dns = read_adapters(fleet, local_cloud)["dns/ap-south-1"]
    assert isinstance(dns, DnsRecordSet) and dns.weights == {"ap-south-1": 50, "ap-southeast-1": 50}


def test_one_cloud_down_leaves_the_others_answering(fleet: Fleet, local_cloud: LocalCloud) -> None:
    sources = adapter_sources(fleet, local_cloud.endpoints, timeout_s=8.0)
    aws = emulator(local_cloud, "aws")
    with OpsCore(fleet, sources, deadline_s=10.0) as core:
        # Every source answers first (on a loaded machine a cold first read can miss the deadline; a
        # late answer is taken in by the next refresh).
        first = core.refresh()
        deadline = time.monotonic() + 90
        while not all(s.status is SourceStatus.OK for s in first.snapshot.sources):
            assert time.monotonic() < deadline, first.snapshot.sources
            first = core.refresh()
        aws.faults.inject("down")
        try:
            second = core.refresh()
        finally:
            aws.faults.clear()
    status = {s.name: s for s in second.snapshot.sources}
    assert status["aws"].status is SourceStatus.STALE and "127.0.0.1" in (status["aws"].error or "")
    assert {status[n].status for n in ("k8s", "gcp", "azure")} == {SourceStatus.OK}
    assert second.snapshot.partial
    # Last good AWS data is still shown, with its age; the operator is told.
    assert isinstance(second.snapshot.get("traffic/us-east-1"), RegionTraffic)
    assert any(f.kind is FindingKind.STALE_DATA and f.object == "source/aws" for f in second.findings)


def test_endpoints_file_round_trip(local_cloud: LocalCloud, tmp_path: Path) -> None:
    path = endpoints_path(tmp_path)
    local_cloud.write_endpoints(path)
    shared = read_running(tmp_path)
    assert shared is not None and shared["k8s"].settings["kubeconfig"] == local_cloud.endpoints[
        "k8s"].settings["kubeconfig"]
    # A file left by a process that died is ignored.
    path.write_text(path.read_text().replace(f'"pid": {__import__("os").getpid()}', '"pid": 999999'))
    assert read_running(tmp_path) is None
