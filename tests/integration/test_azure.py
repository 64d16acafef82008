"""The ``azure`` source against the local Azure Monitor emulator, over real HTTP.

Checks that what :class:`AzureSource` reads through ``MetricsClient`` and ``LogsQueryClient`` matches the
world (``World.observe()``) for its slice — AKS workloads and Azure-hosted databases — and that every
fault of the emulator ends as the documented error or problem (the faults every adapter shares are in
test_source_contract.py; this file keeps the Azure specific ones).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import HttpResponseError
from azure.monitor.query import LogsQueryClient
from azure.monitor.querymetrics import MetricsClient

from opsconsole.core.errors import SourceError
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import Cloud, DatabaseState, Fleet, WorkloadMetrics, WorkloadState
from opsconsole.providers.azure import KQL_RESTARTS, AzureSource, SandboxCredential
from opsconsole.sandbox.azure_monitor import AzureMonitorEmulator, app_gateway_id
from opsconsole.sandbox.emulator import Endpoints
from opsconsole.sandbox.world import World

START = datetime(2025, 1, 15, 18, tzinfo=UTC)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_inventory()


@pytest.fixture
def world(fleet: Fleet) -> World:
    return World(fleet, seed=42, start=START)


@pytest.fixture
def emulator(fleet: Fleet, world: World) -> Iterator[tuple[AzureMonitorEmulator, Endpoints]]:
    emu = AzureMonitorEmulator(fleet)
    t0 = time.perf_counter()
    endpoints = emu.start()
    assert time.perf_counter() - t0 < 0.5
    emu.publish(world)
    yield emu, endpoints
    emu.stop()


def _aks_keys(fleet: Fleet) -> set[str]:
    return {
        f"metrics/{c.name}/{s.name}"
        for c in fleet.clusters.values()
        if c.cloud is Cloud.AZURE
        for s in fleet.services_in(c.environment)
    }


def test_records_match_the_world(
    fleet: Fleet, world: World, emulator: tuple[AzureMonitorEmulator, Endpoints]
) -> None:
    _, endpoints = emulator
    source = AzureSource.from_endpoints(fleet, endpoints)
    t0 = time.perf_counter()
    reading = source.read()
    assert time.perf_counter() - t0 < 1.0
    assert reading.problems == ()
    truth = {
        r.key.replace("workload/", "metrics/"): r for r in world.observe() if isinstance(r, WorkloadState)
    }
    dbs = {r.region: r for r in world.observe() if isinstance(r, DatabaseState)}
    metrics = {r.key: r for r in reading.records if isinstance(r, WorkloadMetrics)}
    assert set(metrics) == _aks_keys(fleet)
    for key, rec in metrics.items():
        w = truth[key]
        assert rec.source == "azure"
        assert rec.rps == pytest.approx(w.rps, rel=1e-6), key
        assert rec.p95_ms == pytest.approx(w.p95_ms, rel=1e-6), key
        assert rec.error_rate == pytest.approx(w.error_rate, rel=1e-6), key
        assert rec.cpu_utilisation == pytest.approx(w.cpu_utilisation, abs=1e-9), key
        assert rec.memory_utilisation is not None
        assert rec.restarts == 0
    databases = [r for r in reading.records if isinstance(r, DatabaseState)]
    assert {d.region for d in databases} == {
        r.id for r in fleet.regions.values() if r.database.cloud is Cloud.AZURE
    }
    for db in databases:
        w_db = dbs[db.region]
        assert db.replica_lag_s == pytest.approx(w_db.replica_lag_s, abs=0.001)
        assert db.query_p95_ms == pytest.approx(w_db.query_p95_ms, rel=1e-6)
        assert db.tps == pytest.approx(w_db.tps, rel=1e-6)
        assert db.available is w_db.available


def test_a_later_tick_is_seen(
    fleet: Fleet, world: World, emulator: tuple[AzureMonitorEmulator, Endpoints]
) -> None:
    emu, endpoints = emulator
    world.trigger_incident("traffic_spike", "sa-east-1")
    world.advance_by(60)
    emu.publish(world)
    reading = AzureSource.from_endpoints(fleet, endpoints).read()
    truth = {
        r.key.replace("workload/", "metrics/"): r for r in world.observe() if isinstance(r, WorkloadState)
    }
    rec = next(r for r in reading.records if r.key == "metrics/aks-sae1-prod/gateway")
    assert isinstance(rec, WorkloadMetrics)
    assert rec.rps == pytest.approx(truth[rec.key].rps, rel=1e-6)
    assert rec.p95_ms == pytest.approx(truth[rec.key].p95_ms, rel=1e-6)


def test_plain_sdk_calls_get_real_shapes(
    fleet: Fleet, emulator: tuple[AzureMonitorEmulator, Endpoints]
) -> None:
    _, endpoints = emulator
    sub = endpoints.settings["subscription"]
    metrics = MetricsClient(endpoints.urls["azure_metrics"], SandboxCredential())
    end = datetime.now(UTC)
    rid = app_gateway_id(sub, "us-east-1", "aks-use1-prod")
    results = metrics.query_resources(
        resource_ids=[rid],
        metric_namespace="Microsoft.Network/applicationGateways",
        metric_names=["BackendResponseStatus"],
        timespan=(end - timedelta(minutes=5), end),
        granularity=timedelta(minutes=1),
        aggregations=["Total"],
        enforce_https=False,
    )
    series = results[0].metrics[0].timeseries
    assert len(series) == 1 and series[0].data[-1].total > 0  # no filter: dimensions rolled up
    logs = LogsQueryClient(SandboxCredential(), endpoint=endpoints.urls["azure_logs"])
    table = logs.query_workspace(
        endpoints.settings["workspace"], KQL_RESTARTS, timespan=timedelta(minutes=5), enforce_https=False
    ).tables[0]
    assert table.columns == ["ClusterName", "ControllerName", "Restarts"] and len(table.rows) == 131
    with pytest.raises(HttpResponseError) as err:
        logs.query_workspace(
            endpoints.settings["workspace"], "Heartbeat | take 1", timespan=None, enforce_https=False
        )
    assert err.value.status_code == 400


def test_endless_throttling_is_an_error(
    fleet: Fleet, emulator: tuple[AzureMonitorEmulator, Endpoints]
) -> None:
    emu, endpoints = emulator
    emu.faults.inject("throttled", count=10_000)
    t0 = time.perf_counter()
    with pytest.raises(SourceError) as err:
        AzureSource.from_endpoints(fleet, endpoints, timeout_s=2).read()
    assert time.perf_counter() - t0 < 2.5
    assert "throttled" in err.value.message


def test_collect_changes_nothing(
    fleet: Fleet, world: World, emulator: tuple[AzureMonitorEmulator, Endpoints]
) -> None:
    emu, _ = emulator
    before = world.to_dict()
    emu.collect(world)
    assert world.to_dict() == before
