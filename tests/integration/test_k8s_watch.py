"""Watches end to end: the Kubernetes API emulator's event streams and the ``k8s`` source's informers.

Each test starts its own :class:`KubeApiEmulator` over a real socket and follows it with the official
``kubernetes`` client (the source, or ``kubernetes.watch.Watch`` for the raw protocol). Waits poll with
generous deadlines (a loaded 2-core machine); nothing sleeps a fixed time to let something happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client, config, watch

from opsconsole.core.fleet.model import Fleet, WorkloadState
from opsconsole.providers.k8s import KubernetesSource
from opsconsole.sandbox.emulator import Endpoints
from opsconsole.sandbox.kube import NAMESPACE, KubeApiEmulator
from opsconsole.sandbox.kube.watch import EVENTS_KEPT
from opsconsole.sandbox.world import World

START = datetime(2025, 1, 15, 20, tzinfo=UTC)
CLUSTER = "eks-use1-prod"
LISTS = ("deployments", "horizontalpodautoscalers", "pods", "nodes", "events", "configmaps")


@pytest.fixture
def world(seed_fleet: Fleet) -> World:
    return World(seed_fleet, seed=42, start=START)


@pytest.fixture
def emulator(seed_fleet: Fleet, world: World) -> Iterator[KubeApiEmulator]:
    emu = KubeApiEmulator(seed_fleet)
    emu.start()
    emu.publish(world)
    try:
        yield emu
    finally:
        emu.faults.clear()
        emu.stop()


@pytest.fixture
def endpoints(emulator: KubeApiEmulator) -> Endpoints:
    return emulator.start()


def _eventually(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:  # still converging
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _lists(emulator: KubeApiEmulator) -> int:
    return sum(n for key, n in emulator.calls.items() if key.startswith("list:"))


def _source(fleet: Fleet, endpoints: Endpoints, **kwargs: Any) -> KubernetesSource:
    kwargs.setdefault("clusters", [CLUSTER])
    kwargs.setdefault("timeout_s", 10)
    return KubernetesSource.from_endpoints(fleet, endpoints, **kwargs)


def _watching(source: KubernetesSource, n: int = 1) -> bool:
    stats = source.watch_stats()
    return all(s["watches"] >= n and s["down_s"] is None for c in stats.values() for s in c.values())


def _scalable(source: KubernetesSource) -> WorkloadState:
    for rec in source.read().records:
        if isinstance(rec, WorkloadState) and rec.hpa_max - rec.desired >= 2:
            return rec
    raise AssertionError("no scalable workload")


def _scale(endpoints: Endpoints, service: str, replicas: int) -> None:
    api = config.new_client_from_config(endpoints.settings["kubeconfig"], context=CLUSTER)
    body = {"spec": {"replicas": replicas}}
    client.AppsV1Api(api).patch_namespaced_deployment_scale(service, NAMESPACE, body)


def _desired(source: KubernetesSource, service: str) -> int:
    for rec in source.read().records:
        if isinstance(rec, WorkloadState) and rec.service == service:
            return rec.desired
    return -1


# --------------------------------------------------------------------------------------------------
# The emulator's watch protocol, through the official client's Watch
# --------------------------------------------------------------------------------------------------


def test_watch_protocol_events_bookmarks_selectors_and_410(
    emulator: KubeApiEmulator, endpoints: Endpoints
) -> None:
    emulator.bookmark_s = 0.2
    api = config.new_client_from_config(endpoints.settings["kubeconfig"], context=CLUSTER)
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    listed = apps.list_namespaced_deployment(NAMESPACE)
    rv = listed.metadata.resource_version
    name = listed.items[0].metadata.name
    for item in listed.items[:2]:  # one more replica each: a change
        body = {"spec": {"replicas": item.spec.replicas + 1}}
        apps.patch_namespaced_deployment_scale(item.metadata.name, NAMESPACE, body)
    seen: list[tuple[str, str, str]] = []
    stream = watch.Watch().stream(
        apps.list_namespaced_deployment, NAMESPACE, resource_version=rv, allow_watch_bookmarks=True,
        field_selector=f"metadata.name={name}", timeout_seconds=2,
    )
    t0 = time.monotonic()
    for event in stream:
        obj = event["raw_object"]
        seen.append((event["type"], obj["metadata"].get("name", ""), obj["metadata"]["resourceVersion"]))
    assert time.monotonic() - t0 < 10  # timeoutSeconds ended the stream cleanly
    modified = [s for s in seen if s[0] == "MODIFIED"]
    assert [m[1] for m in modified] == [name]  # the field selector kept the other deployment out
    bookmarks = [s for s in seen if s[0] == "BOOKMARK"]
    assert bookmarks and int(bookmarks[-1][2]) >= int(modified[0][2])
    # Label selectors on pods.
    pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"app={name}")
    added = [
        e["object"].metadata.labels["app"]
        for e in watch.Watch().stream(
            core.list_namespaced_pod, NAMESPACE, label_selector=f"app={name}", timeout_seconds=1
        )
    ]
    assert added and set(added) == {name} and len(added) == len(pods.items)  # rv unset: current as ADDED
    # A resourceVersion older than the kept window: ERROR 410 Expired, then the stream ends.
    _churn(emulator, name, EVENTS_KEPT + 10)
    resp = apps.list_namespaced_deployment(
        NAMESPACE, watch=True, resource_version=rv, label_selector=f"app={name}", timeout_seconds=2,
        _preload_content=False,
    )
    lines = [line for line in resp.read().decode().splitlines() if line]
    assert len(lines) == 1 and '"type":"ERROR"' in lines[0] and '"code":410' in lines[0]
    assert '"reason":"Expired"' in lines[0]
    assert emulator.calls["watch:deployments"] >= 1 and emulator.calls["watch:pods"] >= 1


# --------------------------------------------------------------------------------------------------
# The source's informers
# --------------------------------------------------------------------------------------------------


def test_after_the_first_list_reads_make_no_list_calls(
    seed_fleet: Fleet, emulator: KubeApiEmulator, endpoints: Endpoints, world: World
) -> None:
    source = _source(seed_fleet, endpoints, clusters=None)
    try:
        assert source.read().complete
        first = _lists(emulator)
        assert first == len(seed_fleet.clusters) * len(LISTS)  # one LIST per cluster and resource
        _eventually(lambda: _watching(source), "every watch open", timeout=60)
        for _ in range(20):
            world.advance_by(15)
            emulator.publish(world)
            reading = source.read()
            assert reading.complete, reading.problems
        assert _lists(emulator) == first  # 0 LIST calls in steady state
        assert emulator.open_watches >= len(seed_fleet.clusters) * len(LISTS)
    finally:
        source.close()


def test_a_scaled_deployment_reaches_read_within_a_second(
    seed_fleet: Fleet, emulator: KubeApiEmulator, endpoints: Endpoints
) -> None:
    source = _source(seed_fleet, endpoints)
    try:
        wl = _scalable(source)
        _eventually(lambda: _watching(source), "the watches")
        target = wl.desired + 1
        t0 = time.monotonic()
        _scale(endpoints, wl.service, target)  # as a playbook does
        _eventually(lambda: _desired(source, wl.service) == target, "the scale in read()", timeout=10)
        latency = time.monotonic() - t0
        # 1 s is the goal; allow a loaded machine some slack but still fail on polling-like delays.
        assert latency < 1.5, f"change took {latency:.2f} s to reach read()"
    finally:
        source.close()


def test_a_dropped_stream_resumes_from_the_last_resource_version(
    seed_fleet: Fleet, emulator: KubeApiEmulator, endpoints: Endpoints, world: World
) -> None:
    source = _source(seed_fleet, endpoints)
    try:
        wl = _scalable(source)
        _eventually(lambda: _watching(source), "the watches")
        lists = _lists(emulator)
        emulator.drop_watches()
        _scale(endpoints, wl.service, wl.desired + 1)  # while the streams are down
        world.advance_by(60)
        emulator.publish(world)
        _eventually(lambda: _watching(source, 2), "the watches re-opened")
        _eventually(lambda: _desired(source, wl.service) == wl.desired + 1, "the missed change")
        assert _lists(emulator) == lists  # resumed, not re-listed
        stats = source.watch_stats()[CLUSTER]
        assert all(s["duplicates"] == 0 for s in stats.values()), stats
        # The cache equals a fresh list: nothing missed, nothing counted twice.
        fresh = _source(seed_fleet, endpoints)
        try:
            want = {r.key: (r.desired, r.ready, r.pending_pods) for r in fresh.read().records
                    if isinstance(r, WorkloadState)}
            have = {r.key: (r.desired, r.ready, r.pending_pods) for r in source.read().records
                    if isinstance(r, WorkloadState)}
            assert have == want
        finally:
            fresh.close()
    finally:
        source.close()


def _churn(emulator: KubeApiEmulator, service: str, n: int) -> None:
    """``n`` changes of one deployment in one hold of the store's lock: a watch cannot keep up."""
    store = emulator._store  # the emulator's internals: no client can write this fast
    with store.lock:
        dep = store.clusters[CLUSTER].objects["deployments"][(NAMESPACE, service)]
        for i in range(n):
            dep["metadata"].setdefault("annotations", {})["churn"] = str(i)
            dep["metadata"]["resourceVersion"] = store.next_rv()
            store.commit()


def test_an_expired_resource_version_relists(
    seed_fleet: Fleet, emulator: KubeApiEmulator, endpoints: Endpoints
) -> None:
    source = _source(seed_fleet, endpoints)
    try:
        wl = _scalable(source)
        _eventually(lambda: _watching(source), "the watches")
        _churn(emulator, wl.service, EVENTS_KEPT + 10)  # the open stream falls behind: ERROR 410
        _scale(endpoints, wl.service, wl.desired + 1)
        stats = _eventually(
            lambda: (s := source.watch_stats()[CLUSTER]["deployments"])["expired"] >= 1 and s,
            "a 410 on the deployments watch",
        )
        assert stats["lists"] >= 1
        _eventually(lambda: source.watch_stats()[CLUSTER]["deployments"]["lists"] >= 2, "the re-list")
        _eventually(lambda: _desired(source, wl.service) == wl.desired + 1, "the change after the re-list")
    finally:
        source.close()


def test_bookmarks_advance_the_resource_version(
    seed_fleet: Fleet, emulator: KubeApiEmulator, endpoints: Endpoints
) -> None:
    emulator.bookmark_s = 0.1
    source = _source(seed_fleet, endpoints)
    try:
        source.read()
        _eventually(lambda: _watching(source), "the watches")
        before = int(source.watch_stats()[CLUSTER]["nodes"]["rv"])
        # Changes elsewhere move the store's resourceVersion; the nodes watch sees only bookmarks.
        api = config.new_client_from_config(endpoints.settings["kubeconfig"], context=CLUSTER)
        name = client.AppsV1Api(api).list_namespaced_deployment(NAMESPACE).items[0].metadata.name
        client.AppsV1Api(api).patch_namespaced_deployment(
            name, NAMESPACE, {"metadata": {"labels": {"touched": "yes", "app": name}}}
        )
        stats = _eventually(
            lambda: (s := source.watch_stats()[CLUSTER]["nodes"])["bookmarks"] >= 1
            and int(s["rv"]) > before and s,
            "a bookmark",
        )
        assert stats["events"] == 0
    finally:
        source.close()


@pytest.mark.slow
def test_a_restart_on_a_new_port_is_followed_through_resolve_endpoints(
    seed_fleet: Fleet, emulator: KubeApiEmulator, endpoints: Endpoints, world: World
) -> None:
    current = {"endpoints": endpoints}
    source = _source(seed_fleet, endpoints, timeout_s=2, resolve_endpoints=lambda: current["endpoints"])
    second = KubeApiEmulator(seed_fleet)
    try:
        # timeout_s=2 makes the moved cluster's outage a problem quickly; on a loaded machine the first
        # list can take longer than that, so the first read is awaited rather than assumed.
        wl = _eventually(lambda: _scalable(source), "a first complete read", 60)
        _eventually(lambda: _watching(source), "the watches", 60)
        emulator.stop()
        moved = second.start()
        world.advance_by(30)
        second.publish(world)
        assert moved.urls["k8s"] != endpoints.urls["k8s"]
        current["endpoints"] = moved
        _scale(moved, wl.service, wl.desired + 2)
        _eventually(lambda: _desired(source, wl.service) == wl.desired + 2, "the moved server's data", 60)
        _eventually(lambda: source.read().complete, "a complete read", 60)
        # The data above can come from the re-list that precedes the new watch; the watch on the moved
        # server is opened right after it, which on a loaded machine is not the same instant.
        _eventually(lambda: second.calls["watch:deployments"] >= 1, "a watch on the moved server", 60)
    finally:
        source.close()
        second.stop()
