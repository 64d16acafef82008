"""The ``k8s`` source against the local Kubernetes API emulator, over real sockets.

Each test starts its own :class:`KubeApiEmulator` (≈ 20 ms), publishes a world built from the seed
inventory, and reads it through :class:`KubernetesSource` (the official ``kubernetes`` client) or writes
to it with the plain client, as a playbook would.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from opsconsole.core.errors import SourceError
from opsconsole.core.fleet.model import ClusterState, Fleet, FleetRecord, WorkloadState
from opsconsole.providers.k8s import KubernetesSource
from opsconsole.sandbox.emulator import Endpoints, scope_in
from opsconsole.sandbox.kube import NAMESPACE, KubeApiEmulator
from opsconsole.sandbox.world import World

START = datetime(2025, 1, 15, 20, tzinfo=UTC)  # evening in Europe: busy, some scaling
CLUSTER = "eks-use1-prod"
SKIP_FIELDS = {"source", "observed_at", "extra", "p95_ms", "error_rate", "rps"}


@pytest.fixture
def world(seed_fleet: Fleet) -> World:
    return World(seed_fleet, seed=42, start=START)


@pytest.fixture
def emulator(seed_fleet: Fleet) -> Iterator[KubeApiEmulator]:
    emu = KubeApiEmulator(seed_fleet)
    try:
        yield emu
    finally:
        emu.faults.clear()
        emu.stop()


@pytest.fixture
def endpoints(emulator: KubeApiEmulator, world: World) -> Endpoints:
    ep = emulator.start()
    emulator.publish(world)
    return ep


def _api(endpoints: Endpoints, cluster: str = CLUSTER) -> client.ApiClient:
    return config.new_client_from_config(endpoints.settings["kubeconfig"], context=cluster)


def _compare(records: tuple[FleetRecord, ...] | list[FleetRecord], world: World) -> list[str]:
    """Differences between the adapter's records and the world's for the k8s slice."""
    expected = {r.key: r for r in world.observe() if isinstance(r, WorkloadState | ClusterState)}
    got = {r.key: r for r in records}
    diffs = [f"missing {k}" for k in sorted(expected.keys() - got.keys())]
    diffs += [f"unexpected {k}" for k in sorted(got.keys() - expected.keys())]
    for key in sorted(expected.keys() & got.keys()):
        want, have = expected[key], got[key]
        for f in dataclasses.fields(want):
            if f.name in SKIP_FIELDS:
                continue
            a, b = getattr(have, f.name), getattr(want, f.name)
            if f.name == "cpu_utilisation":
                if abs(a - b) > 0.0051:  # whole percent on the wire
                    diffs.append(f"{key}.{f.name}: {a} != {b}")
            elif a != b:
                diffs.append(f"{key}.{f.name}: {a!r} != {b!r}")
    return diffs


def _service_of(world: World, cluster: str = CLUSTER) -> tuple[str, int, int, int]:
    """A service of the cluster with room to scale: (name, replicas, hpa_min, hpa_max)."""
    for rec in world.observe():
        if isinstance(rec, WorkloadState) and rec.cluster == cluster and rec.hpa_max - rec.hpa_min >= 4:
            return rec.service, rec.desired, rec.hpa_min, rec.hpa_max
    raise AssertionError("no scalable service")


# --------------------------------------------------------------------------------------------------
# Serving and reading
# --------------------------------------------------------------------------------------------------


def test_start_writes_a_kubeconfig_per_cluster(seed_fleet: Fleet, emulator: KubeApiEmulator) -> None:
    ep = emulator.start()
    contexts, _ = config.list_kube_config_contexts(ep.settings["kubeconfig"])
    assert {c["name"] for c in contexts} == set(seed_fleet.clusters)
    assert ep.urls[f"k8s/{CLUSTER}"] == ep.urls["k8s"] + f"/clusters/{CLUSTER}"
    assert ep.urls["k8s"].startswith("http://127.0.0.1:")
    assert ep.settings["namespace"] == NAMESPACE


def test_discovery_serves_kinds_verbs_and_subresources(endpoints: Endpoints) -> None:
    api = _api(endpoints)
    assert client.VersionApi(api).get_code().git_version.startswith("v1.31")
    apps = {r.name: r for r in client.AppsV1Api(api).get_api_resources().resources}
    assert apps["deployments"].kind == "Deployment" and apps["deployments"].namespaced
    assert {"get", "list", "patch", "update", "create"} <= set(apps["deployments"].verbs)
    assert apps["deployments/scale"].kind == "Scale" and "patch" in apps["deployments/scale"].verbs
    assert "deployments/status" in apps
    core = {r.name: r for r in client.CoreV1Api(api).get_api_resources().resources}
    assert not core["nodes"].namespaced and core["configmaps"].kind == "ConfigMap"
    hpa = {r.name: r for r in client.AutoscalingV2Api(api).get_api_resources().resources}
    assert hpa["horizontalpodautoscalers"].kind == "HorizontalPodAutoscaler"
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "autoscaling"} <= groups
    # The dynamic client (what kubernetes.core modules use) discovers and lists through it.
    dyn = DynamicClient(api)
    resource = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    listed = resource.get(namespace=NAMESPACE)
    assert listed.kind == "DeploymentList" and len(listed.items) > 0
    name = listed.items[0].metadata.name
    patched = resource.patch(
        name=name,
        namespace=NAMESPACE,
        body={"spec": {"replicas": 5}},
        content_type="application/merge-patch+json",
    )
    assert patched.spec.replicas == 5
    assert client.AppsV1Api(api).read_namespaced_deployment_scale(name, NAMESPACE).spec.replicas == 5


def test_read_matches_the_world(seed_fleet: Fleet, endpoints: Endpoints, world: World) -> None:
    # How long a read takes is measured by bench/ (bench_sources.py, bench_watch.py), not here.
    source = KubernetesSource.from_endpoints(seed_fleet, endpoints, timeout_s=30)  # cold: generous
    reading = source.read()
    assert reading.complete, reading.problems
    assert _compare(reading.records, world) == []
    assert all(r.source == "k8s" for r in reading.records)
    again = KubernetesSource.from_endpoints(seed_fleet, endpoints, timeout_s=30).read()
    assert again.complete and _compare(again.records, world) == []
    wl = next(r for r in reading.records if isinstance(r, WorkloadState))
    assert wl.p95_ms is None and wl.error_rate is None and wl.rps is None


def test_read_matches_a_troubled_world(seed_fleet: Fleet, emulator: KubeApiEmulator, world: World) -> None:
    """Pending pods, a region down (NotReady nodes), a stopped environment (no nodes, no replicas)."""
    world.trigger_incident("traffic_spike", "eu-west-1")
    world.trigger_incident("node_pool_loss", "eu-west-1")
    world.trigger_incident("region_outage", "us-west-2")
    world.set_environment_stopped("staging", True)
    world.advance_by(30)
    ep = emulator.start()
    emulator.publish(world)
    reading = KubernetesSource.from_endpoints(seed_fleet, ep, timeout_s=30).read()
    assert reading.complete, reading.problems
    assert _compare(reading.records, world) == []
    workloads = [r for r in reading.records if isinstance(r, WorkloadState)]
    clusters = {r.cluster: r for r in reading.records if isinstance(r, ClusterState)}
    assert sum(w.pending_pods for w in workloads) > 0
    assert clusters["eks-euw1-prod"].extra["warning_events"] > 0
    assert clusters["eks-usw2-prod"].ready_nodes == 0 < clusters["eks-usw2-prod"].nodes
    assert clusters["eks-use1-staging"].nodes == 0


def test_pagination_across_pages_gives_the_same_answer(
    seed_fleet: Fleet, endpoints: Endpoints, world: World
) -> None:
    api = _api(endpoints)
    core = client.CoreV1Api(api)
    everything = core.list_namespaced_pod(NAMESPACE)
    names: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_pod(NAMESPACE, limit=7, _continue=token)
        pages += 1
        assert page.kind == "PodList" and page.metadata.resource_version
        names += [p.metadata.name for p in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == len(everything.items) - len(names)
    assert pages > 2
    assert names == [p.metadata.name for p in everything.items]
    assert len(set(names)) == len(names)
    small = KubernetesSource.from_endpoints(seed_fleet, endpoints, page_size=5, timeout_s=20).read()
    assert small.complete and _compare(small.records, world) == []


def test_gone_relists_from_scratch_without_duplicates(
    seed_fleet: Fleet, emulator: KubeApiEmulator, endpoints: Endpoints, world: World
) -> None:
    source = KubernetesSource.from_endpoints(seed_fleet, endpoints, page_size=5, clusters=[CLUSTER])
    baseline = {r.key: r for r in source.read().records}
    source.close()
    gone = emulator.faults.inject("gone", count=2)
    # A watching source lists only once: the 410s meet a new source's first (paginated) lists.
    fresh = KubernetesSource.from_endpoints(seed_fleet, endpoints, page_size=5, clusters=[CLUSTER])
    reading = fresh.read()
    fresh.close()
    assert reading.complete, reading.problems
    assert _compare(reading.records, world) == [f"missing {k}" for k in sorted(_keys(world) - {*baseline})]
    cluster = next(r for r in reading.records if isinstance(r, ClusterState))
    assert cluster.extra["relists"] == 2
    assert cluster.extra["pods"] == baseline[f"cluster/{CLUSTER}"].extra["pods"]  # no page counted twice
    # The raw API answers a Status with reason Expired.
    emulator.faults.clear(gone)
    emulator.faults.inject("gone")
    core = client.CoreV1Api(_api(endpoints))
    token = core.list_namespaced_pod(NAMESPACE, limit=3).metadata._continue
    with pytest.raises(ApiException) as info:
        core.list_namespaced_pod(NAMESPACE, limit=3, _continue=token)
    assert info.value.status == 410 and '"reason":"Expired"' in info.value.body.replace(" ", "")


def _keys(world: World) -> set[str]:
    return {r.key for r in world.observe() if isinstance(r, WorkloadState | ClusterState)}


def test_api_semantics_selectors_conflicts_patches_and_statuses(endpoints: Endpoints) -> None:
    api = _api(endpoints)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    deps = apps.list_namespaced_deployment(NAMESPACE).items
    first, second = deps[0].metadata.name, deps[1].metadata.name
    assert all(d.metadata.uid and d.metadata.resource_version and d.metadata.generation for d in deps)
    pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"app in ({first},{second})").items
    assert pods and {p.metadata.labels["app"] for p in pods} <= {first, second}
    other = core.list_namespaced_pod(NAMESPACE, label_selector=f"app!={first},app")
    assert all(p.metadata.labels["app"] != first for p in other.items)
    running = core.list_namespaced_pod(NAMESPACE, field_selector="status.phase=Running").items
    assert all(p.status.phase == "Running" for p in running)
    # Namespaces: list, create, get, duplicate create is 409 AlreadyExists.
    assert NAMESPACE in {n.metadata.name for n in core.list_namespace().items}
    core.create_namespace({"metadata": {"name": "drill"}})
    assert core.read_namespace("drill").status.phase == "Active"
    with pytest.raises(ApiException) as info:
        core.create_namespace({"metadata": {"name": "drill"}})
    assert info.value.status == 409 and "AlreadyExists" in info.value.body
    # PUT with a stale resourceVersion is a 409 Conflict; with the current one it works.
    dep = apps.read_namespaced_deployment(first, NAMESPACE)
    stale = dep.metadata.resource_version
    apps.patch_namespaced_deployment(first, NAMESPACE, {"metadata": {"labels": {"tier": "x", "app": first}}})
    dep.spec.replicas = dep.spec.replicas + 1
    with pytest.raises(ApiException) as info:
        apps.replace_namespaced_deployment(first, NAMESPACE, dep)
    assert info.value.status == 409 and "Conflict" in info.value.body
    fresh = apps.read_namespaced_deployment(first, NAMESPACE)
    fresh.spec.replicas += 1
    replaced = apps.replace_namespaced_deployment(first, NAMESPACE, fresh)
    assert replaced.metadata.generation == fresh.metadata.generation + 1
    assert int(replaced.metadata.resource_version) > int(stale)
    # JSON patch and merge patch.
    patched = apps.patch_namespaced_deployment(
        first, NAMESPACE, [{"op": "replace", "path": "/spec/replicas", "value": 3}]
    )
    assert patched.spec.replicas == 3
    merged = apps.patch_namespaced_deployment(
        first, NAMESPACE, {"spec": {"replicas": 4}}, _content_type="application/merge-patch+json"
    )
    assert merged.spec.replicas == 4
    # 422 on an invalid value, 404 with a NotFound Status.
    with pytest.raises(ApiException) as info:
        apps.patch_namespaced_deployment_scale(first, NAMESPACE, {"spec": {"replicas": -1}})
    assert info.value.status == 422
    with pytest.raises(ApiException) as info:
        apps.read_namespaced_deployment("nope", NAMESPACE)
    assert info.value.status == 404 and '"kind":"Status"' in info.value.body.replace(" ", "")
    cm = core.read_namespaced_config_map("cluster-autoscaler-status", "kube-system")
    assert "minSize=" in cm.data["status"]
    nodes = core.list_node().items
    assert nodes and all("node.kubernetes.io/instance-type" in n.metadata.labels for n in nodes)
    assert all("topology.kubernetes.io/zone" in n.metadata.labels for n in nodes)
    assert {n.metadata.labels["eks.amazonaws.com/capacityType"] for n in nodes} <= {"SPOT", "ON_DEMAND"}
    events = core.list_event_for_all_namespaces(field_selector="type=Warning")
    assert events.kind == "EventList"


# --------------------------------------------------------------------------------------------------
# Changes written by clients reach the world
# --------------------------------------------------------------------------------------------------


def test_scale_subresource_patch_reaches_the_world(
    seed_fleet: Fleet, emulator: KubeApiEmulator, endpoints: Endpoints, world: World
) -> None:
    service, replicas, _lo, hi = _service_of(world)
    target = min(hi, replicas + 3)
    apps = client.AppsV1Api(_api(endpoints))
    scale = apps.patch_namespaced_deployment_scale(service, NAMESPACE, {"spec": {"replicas": target}})
    assert scale.spec.replicas == target
    assert apps.read_namespaced_deployment_scale(service, NAMESPACE).spec.replicas == target
    emulator.collect(world)
    assert world.replicas(CLUSTER, service) == target
    emulator.publish(world)
    reading = KubernetesSource.from_endpoints(seed_fleet, endpoints, clusters=[CLUSTER]).read()
    wl = next(r for r in reading.records if isinstance(r, WorkloadState) and r.service == service)
    assert wl.desired == target


def test_hpa_patch_changes_the_bounds_in_the_world(
    seed_fleet: Fleet, emulator: KubeApiEmulator, endpoints: Endpoints, world: World
) -> None:
    service, _replicas, lo, hi = _service_of(world)
    hpa = client.AutoscalingV2Api(_api(endpoints))
    hpa.patch_namespaced_horizontal_pod_autoscaler(
        service, NAMESPACE, {"spec": {"minReplicas": lo + 1, "maxReplicas": hi - 1}}
    )
    emulator.collect(world)
    assert world.hpa_bounds(CLUSTER, service) == (lo + 1, hi - 1)
    emulator.publish(world)
    reading = KubernetesSource.from_endpoints(seed_fleet, endpoints, clusters=[CLUSTER]).read()
    wl = next(r for r in reading.records if isinstance(r, WorkloadState) and r.service == service)
    assert (wl.hpa_min, wl.hpa_max) == (lo + 1, hi - 1)


def test_a_write_between_collect_and_publish_is_not_lost(
    emulator: KubeApiEmulator, endpoints: Endpoints, world: World
) -> None:
    """The local cloud collects, advances the world, then publishes; a client can write in between."""
    service, replicas, lo, hi = _service_of(world)
    apps = client.AppsV1Api(_api(endpoints))
    hpa = client.AutoscalingV2Api(_api(endpoints))
    target = lo + 2 if lo + 2 != replicas else lo + 3  # differs from the world's value
    emulator.collect(world)
    hpa.patch_namespaced_horizontal_pod_autoscaler(
        service, NAMESPACE, {"spec": {"minReplicas": lo + 1, "maxReplicas": hi - 1}}
    )
    apps.patch_namespaced_deployment_scale(service, NAMESPACE, {"spec": {"replicas": target}})
    emulator.publish(world)  # the world still has the old values: they must not overwrite the writes
    got = hpa.read_namespaced_horizontal_pod_autoscaler(service, NAMESPACE).spec
    assert (got.min_replicas, got.max_replicas) == (lo + 1, hi - 1)
    assert apps.read_namespaced_deployment_scale(service, NAMESPACE).spec.replicas == target
    emulator.collect(world)
    assert world.hpa_bounds(CLUSTER, service) == (lo + 1, hi - 1)
    assert world.replicas(CLUSTER, service) == target


def test_a_change_the_world_refuses_is_noted_and_undone(
    emulator: KubeApiEmulator, endpoints: Endpoints, world: World
) -> None:
    service, replicas, _lo, hi = _service_of(world)
    apps = client.AppsV1Api(_api(endpoints))
    apps.patch_namespaced_deployment_scale(service, NAMESPACE, {"spec": {"replicas": hi + 50}})
    emulator.collect(world)  # must not raise
    assert world.replicas(CLUSTER, service) == replicas
    assert any(service in note and "not applied" in note for note in emulator.notes)
    emulator.publish(world)
    assert apps.read_namespaced_deployment_scale(service, NAMESPACE).spec.replicas == replicas


# --------------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------------


# The cases every adapter shares (down, slow, forbidden, throttled, malformed) are in
# test_source_contract.py; these are the Kubernetes specific ones.


def test_down_drops_open_keep_alive_connections(
    seed_fleet: Fleet, emulator: KubeApiEmulator, endpoints: Endpoints
) -> None:
    source = KubernetesSource.from_endpoints(seed_fleet, endpoints, timeout_s=1)

    def read_completely(within_s: float, why: str) -> None:
        # timeout_s=1 makes the outage a problem quickly; on a loaded machine a cold read of 31 clusters
        # can take longer than that, and the lists go on in the background: read until it is whole.
        deadline = time.monotonic() + within_s
        while True:
            try:
                if source.read().complete:
                    return
            except SourceError:
                pass  # not answered within 1 s yet, or still reconnecting (back-off)
            assert time.monotonic() < deadline, why
            time.sleep(0.1)

    read_completely(60, "the first read never completed")  # keep-alive connections and watch streams exist
    emulator.faults.inject("down")
    # The watches fail at once; the cached data is served until they are down longer than timeout_s,
    # then every cluster is a problem and the read fails naming the server.
    deadline = time.monotonic() + 30
    message = ""
    while time.monotonic() < deadline and not message:
        try:
            source.read()
        except SourceError as exc:
            message = exc.message
        time.sleep(0.1)
    assert "connection refused" in message
    assert endpoints.urls["k8s"] in message
    emulator.faults.clear()
    read_completely(60, "the watches did not come back")
    source.close()


def test_clusters_queued_past_the_deadline_are_no_answer_not_an_error(
    seed_fleet: Fleet, emulator: KubeApiEmulator, endpoints: Endpoints, caplog: pytest.LogCaptureFixture
) -> None:
    """One reader thread and every answer stalled: the first cluster is still being listed at the
    deadline and the other 30 never started (the pool cancels them). All 31 are "no answer"; none is
    logged as a failure with a traceback (CI's log showed 13 ``CancelledError`` tracebacks)."""
    source = KubernetesSource.from_endpoints(seed_fleet, endpoints, timeout_s=0.5, max_workers=1)
    with emulator.faults.injected("slow", seconds=30), pytest.raises(SourceError) as err:
        source.read()
    source.close()
    assert "no answer from" in err.value.message and "Cancelled" not in err.value.message
    assert "(and 28 more cluster(s))" in err.value.message  # all 31 named, three in full
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_one_forbidden_cluster_is_a_half_answer(
    seed_fleet: Fleet, emulator: KubeApiEmulator, endpoints: Endpoints, world: World
) -> None:
    emulator.faults.inject("forbidden", match=scope_in("gke-euw1-prod"))
    reading = KubernetesSource.from_endpoints(seed_fleet, endpoints).read()
    assert len(reading.problems) == 1
    assert "gke-euw1-prod" in reading.problems[0] and "403" in reading.problems[0]
    assert not any(getattr(r, "cluster", None) == "gke-euw1-prod" for r in reading.records)
    missing = {k for k in _keys(world) if k.split("/")[1] == "gke-euw1-prod"}
    assert sorted(_compare(reading.records, world)) == sorted(f"missing {k}" for k in missing)


def test_throttling_counts_every_retry_and_a_spent_budget_fails_one_cluster(
    seed_fleet: Fleet, emulator: KubeApiEmulator, endpoints: Endpoints, world: World
) -> None:
    with emulator.faults.injected("throttled", count=3, retry_after=0.2):
        reading = KubernetesSource.from_endpoints(seed_fleet, endpoints).read()
    assert _compare(reading.records, world) == [] and reading.problems == ()
    assert reading.notes and all("throttled (HTTP 429)" in n for n in reading.notes)
    assert sum(int(n.split(") ")[1].split(" ")[0]) for n in reading.notes) == 3
    # Throttled beyond the retry budget: that cluster fails, the others answer.
    emulator.faults.inject("throttled", count=1000, retry_after=0.05, match=scope_in(CLUSTER))
    reading = KubernetesSource.from_endpoints(seed_fleet, endpoints, max_throttle_retries=2).read()
    assert any(CLUSTER in p and "still throttled" in p for p in reading.problems)
    assert any(isinstance(r, ClusterState) for r in reading.records)


@pytest.mark.parametrize(("mode", "text"), [("truncated", "truncated"), ("garbled", "malformed")])
def test_malformed_answers_are_errors_not_data(
    seed_fleet: Fleet, emulator: KubeApiEmulator, endpoints: Endpoints, mode: str, text: str
) -> None:
    # A generous time budget: on a loaded machine listing 31 clusters can pass the default 5 s, and only
    # the malformed cluster may be a problem here.
    source = KubernetesSource.from_endpoints(seed_fleet, endpoints, timeout_s=60)
    try:
        with emulator.faults.injected("malformed", mode=mode, match=scope_in(CLUSTER)):
            reading = source.read()
    finally:
        source.close()
    assert len(reading.problems) == 1 and CLUSTER in reading.problems[0] and text in reading.problems[0]
    emulator.faults.inject("malformed", mode=mode)
    one = KubernetesSource.from_endpoints(seed_fleet, endpoints, clusters=[CLUSTER], timeout_s=60)
    try:
        with pytest.raises(SourceError, match=text):
            one.read()
    finally:
        one.close()


# --------------------------------------------------------------------------------------------------
# kubernetes.core through ansible-playbook
# --------------------------------------------------------------------------------------------------


def _has_kubernetes_core() -> bool:
    galaxy = Path(sys.executable).with_name("ansible-galaxy")
    if not galaxy.exists():
        return False
    out = subprocess.run(
        [str(galaxy), "collection", "list", "kubernetes.core"], capture_output=True, text=True, check=False
    )
    return "kubernetes.core" in out.stdout


@pytest.mark.slow
def test_kubernetes_core_k8s_scale_reaches_the_world(
    tmp_path: Path, emulator: KubeApiEmulator, endpoints: Endpoints, world: World
) -> None:
    # The collection comes with the `ansible` package of the test extras (Galaxy is unreachable here).
    assert _has_kubernetes_core(), "kubernetes.core is missing: `make test` installs the ansible package"
    playbook = Path(sys.executable).with_name("ansible-playbook")
    assert shutil.which(str(playbook))
    service, replicas, _lo, hi = _service_of(world)
    target = min(hi, replicas + 2)
    book = tmp_path / "scale.yml"
    book.write_text(
        "- hosts: localhost\n"
        "  gather_facts: false\n"
        "  vars:\n"
        '    ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
        "  tasks:\n"
        "    - kubernetes.core.k8s_scale:\n"
        f"        kubeconfig: {endpoints.settings['kubeconfig']}\n"
        f"        context: {CLUSTER}\n"
        "        api_version: apps/v1\n"
        "        kind: Deployment\n"
        f"        namespace: {NAMESPACE}\n"
        f"        name: {service}\n"
        f"        replicas: {target}\n"
        "        wait: false\n",
        encoding="utf-8",
    )
    env: dict[str, Any] = {
        "PATH": f"{playbook.parent}:/usr/bin:/bin", "HOME": str(tmp_path), "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote"),
    }
    done = subprocess.run(
        [str(playbook), "-i", "localhost,", "-c", "local", str(book)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    emulator.collect(world)
    assert world.replicas(CLUSTER, service) == target
