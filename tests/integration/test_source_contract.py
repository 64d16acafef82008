"""Every FleetSource adapter honours the same fault contract against its sandbox emulator.

Why this file exists: the aws, gcp, azure and k8s adapters each read a different cloud API, but the
console relies on them failing the same way. Each case below runs every adapter, built against its
emulator exactly as the per-provider tests build it, through one fault of the emulator's shared
:class:`~opsconsole.sandbox.emulator.Faults`:

* down → the read raises a :class:`SourceError` naming the endpoint, and reads again once cleared;
* slow → the engine's deadline and the adapter's own ``timeout_s`` both cut the read;
* forbidden → a :class:`SourceError` naming what was refused (project, subscription, context...);
* throttled → the adapter backs off, answers completely and says so in its notes;
* malformed → a :class:`SourceError`, never a crash or made-up data.

And every cloud adapter (aws, gcp, azure) reports the request figures of its cloud's workloads (EKS, GKE,
AKS) as :class:`WorkloadMetrics` that agree with the world within one shared tolerance
(:data:`WORKLOAD_TOLERANCE`): the console shows p95 and errors for every workload, whatever its cloud.

Faults are scoped to the test's own client: AWS (one emulator per module, seeding moto costs seconds)
signs with a key id of its own and ``match=client_is(key)``; the others get an emulator per test. A
``slow`` fault stalls until cleared, so every bound measured here is the adapter's, not the fault's.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from opsconsole.core.errors import SourceError
from opsconsole.core.fleet.engine import FleetService, SourceStatus
from opsconsole.core.fleet.model import Cloud, Fleet, WorkloadMetrics, WorkloadState
from opsconsole.providers.aws import AwsSource
from opsconsole.providers.azure import AzureSource
from opsconsole.providers.gcp import GcpSource
from opsconsole.providers.k8s import KubernetesSource
from opsconsole.sandbox.aws import AwsCloud
from opsconsole.sandbox.azure_monitor import AzureMonitorEmulator
from opsconsole.sandbox.emulator import Endpoints, Fault, Faults, Match, client_is
from opsconsole.sandbox.gcp_monitoring import GcpMonitoringEmulator
from opsconsole.sandbox.kube import KubeApiEmulator
from opsconsole.sandbox.world import World

START = datetime(2025, 1, 15, 18, tzinfo=UTC)
ADAPTERS = ["aws", "gcp", "azure", "k8s"]
#: A stalled answer outlasts every bound below; clearing the fault releases it at once.
STALL_S = 60.0
#: Slack for a loaded 2-core machine on top of a bound the adapter promises (a stalled call lasts
#: STALL_S, so any time well under it still proves the bound cut it).
SLACK_S = 2.0
#: The adapter's time budget in tests of what it answers (not of its bounds): a fresh adapter's first
#: read is cold, and beside CPU burners AWS's took over 5 s.
READ_S = 30.0
#: How close a cloud's workload figures must be to the world's (the loosest monitoring back end, Cloud
#: Monitoring's distributions, sets it): rps relative / absolute, p95 relative, error rate absolute.
WORKLOAD_TOLERANCE = {"rps_rel": 0.02, "rps_abs": 0.05, "p95_rel": 0.03, "error_abs": 2e-3}
CLOUD_OF = {"aws": Cloud.AWS, "gcp": Cloud.GCP, "azure": Cloud.AZURE}


@dataclass
class Rig:
    """One adapter wired to its emulator, with what the contract expects of it."""

    name: str
    faults: Faults
    endpoints: Endpoints
    build: Callable[[float], Any]
    #: Text a connection error must name (the endpoint).
    endpoint_text: str
    #: Each forbidden variant: the fault's params and a text the error must name.
    forbidden: list[tuple[dict[str, Any], str]]
    #: Extra params of a throttled fault (a short Retry-After where the API has one).
    throttled: dict[str, Any] = field(default_factory=dict)
    #: Scopes the test's faults to this test's client (None: the emulator is the test's own).
    match: Match | None = None

    def source(self, timeout_s: float = READ_S) -> Any:
        """A fresh adapter (its first read is cold), with ``READ_S`` unless a test of slowness says."""
        return self.build(timeout_s)

    def inject(self, kind: str, **params: Any) -> Fault:
        return self.faults.inject(kind, match=None if kind == "down" else self.match, **params)


@pytest.fixture(scope="module")
def aws_cloud(seed_fleet: Fleet) -> Iterator[tuple[AwsCloud, Endpoints]]:
    emulator = AwsCloud(seed_fleet)
    endpoints = emulator.start()
    emulator.publish(World(seed_fleet, seed=42, start=START))
    yield emulator, endpoints
    emulator.stop()


def _aws(request: pytest.FixtureRequest, fleet: Fleet) -> Iterator[Rig]:
    emulator, shared = request.getfixturevalue("aws_cloud")
    key = f"SANDBOXCONTRACT{uuid.uuid4().hex[:12].upper()}"  # this test's own client
    endpoints = dataclasses.replace(shared, settings={**shared.settings, "aws_access_key_id": key})
    yield Rig(
        "aws", emulator.faults, endpoints,
        lambda t: AwsSource.from_endpoints(fleet, endpoints, timeout_s=t),
        endpoint_text="127.0.0.1",
        forbidden=[({"code": "AccessDenied"}, "AccessDenied"), ({"code": "ExpiredToken"}, "ExpiredToken")],
        match=client_is(key),
    )


def _gcp(request: pytest.FixtureRequest, fleet: Fleet) -> Iterator[Rig]:
    emulator = GcpMonitoringEmulator(fleet)
    endpoints = emulator.start()
    emulator.publish(World(fleet, seed=42, start=START))
    try:
        yield Rig(
            "gcp", emulator.faults, endpoints,
            lambda t: GcpSource.from_endpoints(fleet, endpoints, timeout_s=t),
            endpoint_text=endpoints.urls["gcp"],
            forbidden=[({"mode": m}, endpoints.settings["project"]) for m in ("denied", "expired")],
        )
    finally:
        emulator.faults.clear()
        emulator.stop()


def _azure(request: pytest.FixtureRequest, fleet: Fleet) -> Iterator[Rig]:
    emulator = AzureMonitorEmulator(fleet)
    endpoints = emulator.start()
    emulator.publish(World(fleet, seed=42, start=START))
    try:
        yield Rig(
            "azure", emulator.faults, endpoints,
            lambda t: AzureSource.from_endpoints(fleet, endpoints, timeout_s=t),
            endpoint_text=endpoints.urls["azure_metrics"],
            forbidden=[({"mode": m}, endpoints.settings["subscription"]) for m in ("denied", "expired")],
        )
    finally:
        emulator.faults.clear()
        emulator.stop()


def _k8s(request: pytest.FixtureRequest, fleet: Fleet) -> Iterator[Rig]:
    emulator = KubeApiEmulator(fleet)
    endpoints = emulator.start()
    emulator.publish(World(fleet, seed=42, start=START))
    clusters = ["eks-use1-prod", "gke-euw1-prod"]
    try:
        yield Rig(
            "k8s", emulator.faults, endpoints,
            lambda t: KubernetesSource.from_endpoints(fleet, endpoints, timeout_s=t, clusters=clusters),
            endpoint_text=endpoints.urls["k8s"],
            forbidden=[({"code": 403}, "context '"), ({"code": 401}, "context '")],
            throttled={"retry_after": 0.2},
        )
    finally:
        emulator.faults.clear()
        emulator.stop()


_RIGS = {"aws": _aws, "gcp": _gcp, "azure": _azure, "k8s": _k8s}


@pytest.fixture(params=ADAPTERS)
def rig(request: pytest.FixtureRequest, seed_fleet: Fleet) -> Iterator[Rig]:
    rigs = _RIGS[request.param](request, seed_fleet)
    built = next(rigs)
    try:
        yield built
    finally:
        built.faults.clear()  # AWS's emulator is shared by the module: leave it serving
        rigs.close()


def test_down_raises_naming_the_endpoint_and_recovers(rig: Rig) -> None:
    assert rig.source().read().records
    fault = rig.inject("down")
    with pytest.raises(SourceError) as err:
        rig.source().read()
    assert rig.endpoint_text in err.value.message
    rig.faults.clear(fault)
    assert rig.source().read().records


def test_slow_is_cut_by_the_deadline_and_the_timeout(rig: Rig) -> None:
    source = rig.source(5.0)
    rig.inject("slow", seconds=STALL_S)
    with FleetService([source], deadline_s=1.0) as service:
        t0 = time.monotonic()
        snapshot, _ = service.refresh()
        assert time.monotonic() - t0 < 1.0 + SLACK_S
    health = snapshot.source(rig.name)
    assert health is not None and health.status in (SourceStatus.ERROR, SourceStatus.STALE)
    t0 = time.monotonic()
    with pytest.raises(SourceError):
        rig.source(1.0).read()  # the adapter's own bound
    assert time.monotonic() - t0 < 1.0 * 1.1 + SLACK_S


def test_forbidden_is_a_clear_permission_error(rig: Rig) -> None:
    for params, named in rig.forbidden:
        with rig.faults.injected("forbidden", match=rig.match, **params), pytest.raises(SourceError) as err:
            rig.source().read()
        assert named in err.value.message, (params, err.value.message)


def test_throttling_backs_off_and_is_reported(rig: Rig) -> None:
    fault = rig.inject("throttled", count=2, **rig.throttled)
    reading = rig.source().read()
    assert fault.left == 0 and fault.hits == 2  # this test's client met both throttled answers
    assert reading.problems == () and reading.records
    # Complete data after backing off: reported as a note, not as a half answer.
    assert any("throttled" in n.lower() for n in reading.notes), reading.notes


def test_malformed_answer_is_an_error_not_a_crash(rig: Rig) -> None:
    rig.inject("malformed")
    with pytest.raises(SourceError) as err:
        rig.source().read()
    assert err.value.message


@pytest.fixture(params=sorted(CLOUD_OF))
def cloud_rig(request: pytest.FixtureRequest, seed_fleet: Fleet) -> Iterator[Rig]:
    rigs = _RIGS[request.param](request, seed_fleet)
    built = next(rigs)
    try:
        yield built
    finally:
        built.faults.clear()
        rigs.close()


def test_workload_figures_agree_with_the_world(cloud_rig: Rig, seed_fleet: Fleet) -> None:
    """p95, error rate and rps of every workload of the adapter's cloud, as the world has them."""
    reading = cloud_rig.source().read()
    assert reading.complete, reading.problems
    cloud = CLOUD_OF[cloud_rig.name]
    # Every rig published World(seed=42, start=START); a world so built observes the same figures.
    truth = {r.key.replace("workload/", "metrics/", 1): r
             for r in World(seed_fleet, seed=42, start=START).observe() if isinstance(r, WorkloadState)}
    expected = {f"metrics/{c.name}/{s.name}" for c in seed_fleet.clusters.values() if c.cloud is cloud
                for s in seed_fleet.services_in(c.environment)}
    got = {r.key: r for r in reading.records if isinstance(r, WorkloadMetrics)}
    assert expected and set(got) == expected, sorted(expected ^ set(got))[:5]
    tol = WORKLOAD_TOLERANCE
    for key, rec in got.items():
        w = truth[key]
        assert w.rps and w.p95_ms is not None and w.error_rate is not None, key
        assert rec.source == cloud_rig.name
        assert rec.rps == pytest.approx(w.rps, rel=tol["rps_rel"], abs=tol["rps_abs"]), key
        assert rec.p95_ms == pytest.approx(w.p95_ms, rel=tol["p95_rel"]), key
        assert rec.error_rate == pytest.approx(w.error_rate, abs=tol["error_abs"]), key
