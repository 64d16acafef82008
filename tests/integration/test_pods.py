"""Pods, logs and events end to end: a ``bad_deploy`` in the sandbox world, the Kubernetes API emulator over
a real socket, and the ``k8s`` source reading them with the official client.

The world runs at a fixed sim start and is advanced by hand, so restart counts and log lines are exact.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from opsconsole.core.errors import UsageError
from opsconsole.core.fleet.metering import METER
from opsconsole.core.fleet.model import Fleet
from opsconsole.core.fleet.pods import PodInfo, PodNotFound
from opsconsole.providers.k8s import KubernetesSource
from opsconsole.sandbox.emulator import Endpoints
from opsconsole.sandbox.incidents import CRASH_LOOP_PODS, CRASH_RUN_S, crash_loop_at
from opsconsole.sandbox.kube import NAMESPACE, KubeApiEmulator
from opsconsole.sandbox.world import World

START = datetime(2025, 1, 15, 20, tzinfo=UTC)
CLUSTER = "eks-use1-prod"
REGION = "us-east-1"


@pytest.fixture
def world(seed_fleet: Fleet) -> World:
    return World(seed_fleet, seed=42, start=START)


@pytest.fixture
def emulator(seed_fleet: Fleet, world: World) -> Iterator[KubeApiEmulator]:
    emu = KubeApiEmulator(seed_fleet)
    emu.start()
    world.trigger_incident("bad_deploy", REGION, duration=4 * 3600)
    world.advance_by(600)
    emu.publish(world)
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def endpoints(emulator: KubeApiEmulator) -> Endpoints:
    return emulator.start()


@pytest.fixture
def source(seed_fleet: Fleet, endpoints: Endpoints) -> Iterator[KubernetesSource]:
    src = KubernetesSource.from_endpoints(seed_fleet, endpoints, clusters=[CLUSTER], timeout_s=10)
    try:
        yield src
    finally:
        src.close()


def _get(endpoints: Endpoints, path: str) -> tuple[int, str, str]:
    url = endpoints.urls[f"k8s/{CLUSTER}"] + path
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def _eventually(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _crashing(source: KubernetesSource) -> list[PodInfo]:
    return [p for p in source.pods(CLUSTER, workload="checkout") if p.status == "CrashLoopBackOff"]


def test_a_bad_deploy_crash_loops_pods_with_growing_restarts(
    source: KubernetesSource, emulator: KubeApiEmulator, world: World
) -> None:
    crashing = _crashing(source)
    assert len(crashing) == CRASH_LOOP_PODS
    expected = crash_loop_at(600).restarts
    assert expected >= 5
    for pod in crashing:
        assert pod.ready_text == "0/1" and pod.phase == "Running"
        assert pod.last_exit == "Error (exit 1)"
        assert pod.node and pod.node_group == f"{CLUSTER}-ng" and pod.region == REGION
        assert expected - 1 <= pod.restarts <= expected  # the second pod starts a few seconds later
    serving = [p for p in source.pods(CLUSTER, workload="checkout") if p.status == "Running"]
    assert serving and all(p.restarts == 0 and p.ready_text == "1/1" for p in serving)
    # Later, more restarts; the same pods (names are stable).
    world.advance_by(1800)
    emulator.publish(world)
    before = {p.name: p.restarts for p in crashing}

    def restarted() -> bool:  # the watch brings the change in a moment
        later = {p.name: p.restarts for p in _crashing(source)}
        return set(later) == set(before) and all(later[n] > before[n] for n in before)

    _eventually(restarted, "more restarts on the same pods")
    # The incident ends: the deployment is rolled back, the crashing pods go.
    world.clear_incidents(REGION)
    emulator.publish(world)
    _eventually(lambda: _crashing(source) == [], "the crashing pods to go")


def test_logs_previous_tail_and_the_400_of_a_pod_that_never_crashed(
    source: KubernetesSource, emulator: KubeApiEmulator
) -> None:
    METER.reset()
    pod = _crashing(source)[0].name
    current = source.pod_log(CLUSTER, NAMESPACE, pod, tail_lines=0)
    assert "starting checkout" in current and "Traceback (most recent call last):" in current
    assert current.rstrip().endswith("FATAL checkout exiting with status 1")
    previous = source.pod_log(CLUSTER, NAMESPACE, pod, previous=True, tail_lines=2)
    assert previous.splitlines() == [
        'voltage.common.migrations.SchemaMismatch: column "orders.currency_code" does not exist',
        "FATAL checkout exiting with status 1",
    ]
    healthy = next(p for p in source.pods(CLUSTER, workload="checkout") if p.status == "Running").name
    assert "starting checkout" in source.pod_log(CLUSTER, NAMESPACE, healthy)
    refused = f'previous terminated container "checkout" in pod "{healthy}" not found'
    with pytest.raises(UsageError, match=refused):
        source.pod_log(CLUSTER, NAMESPACE, healthy, previous=True)
    with pytest.raises(PodNotFound, match="nope"):
        source.pod_log(CLUSTER, NAMESPACE, "nope")
    assert emulator.calls["get:pods/log"] == 5
    assert any(c.source == "k8s" and c.operation == "get:pods/log" and c.calls >= 5 for c in METER.snapshot())


def test_raw_log_api_text_timestamps_since_and_status(endpoints: Endpoints, source: KubernetesSource) -> None:
    pod = _crashing(source)[0].name
    base = f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}/log"
    code, kind, text = _get(endpoints, base + "?timestamps=true&tailLines=1")
    assert code == 200 and kind.startswith("text/plain")
    stamp, line = text.rstrip("\n").split(" ", 1)
    assert stamp.startswith("2025-01-15T20:") and stamp.endswith("Z") and line.startswith("FATAL")
    code, _, text = _get(endpoints, base + "?sinceSeconds=60")  # sim 2025: older than a minute of wall time
    assert code == 200 and text == ""
    code, _, body = _get(endpoints, base + "?tailLines=-1")
    assert code == 400 and json.loads(body)["reason"] == "BadRequest"
    code, _, body = _get(endpoints, base + "?container=sidecar")
    assert code == 400 and "container sidecar is not valid" in json.loads(body)["message"]


def test_follow_streams_new_lines_while_the_pod_lives(
    endpoints: Endpoints, emulator: KubeApiEmulator, world: World, source: KubernetesSource
) -> None:
    pod = _crashing(source)[0].name
    url = endpoints.urls[f"k8s/{CLUSTER}"] + f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}/log?follow=true"
    got: list[str] = []
    first = threading.Event()
    ended = threading.Event()

    def follow() -> None:
        with urllib.request.urlopen(url, timeout=60) as answer:
            for raw in answer:
                got.append(raw.decode())
                first.set()
        ended.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    assert first.wait(30)
    runs_before = sum(1 for line in got if "starting checkout" in line)
    world.advance_by(900)  # the next run comes (back-off 5 min at most) and is streamed
    emulator.publish(world)
    _eventually(lambda: sum(1 for line in list(got) if "starting checkout" in line) > runs_before,
                "the next run's lines on the stream")
    world.clear_incidents(REGION)  # ... then the pod goes: the stream ends
    emulator.publish(world)
    assert ended.wait(30), "the follow stream did not end when the pod went"


def test_pod_events_are_backoff_and_unhealthy_warnings(
    source: KubernetesSource, endpoints: Endpoints
) -> None:
    pod = _crashing(source)[0]
    events = source.pod_events(CLUSTER, NAMESPACE, pod.name)
    by_reason = {e.reason: e for e in events}
    assert {"Scheduled", "Started", "BackOff", "Unhealthy"} <= set(by_reason)
    backoff = by_reason["BackOff"]
    assert backoff.type == "Warning" and backoff.count == pod.restarts
    assert backoff.message.startswith("Back-off restarting failed container checkout in pod")
    assert by_reason["Unhealthy"].message.startswith("Readiness probe failed")
    assert all(e.object_name == pod.name and e.object_kind == "Pod" for e in events)
    # The raw field selector: another pod's events are not in the answer.
    selector = f"involvedObject.name={pod.name},involvedObject.kind=Pod"
    code, _, body = _get(endpoints, f"/api/v1/namespaces/{NAMESPACE}/events?fieldSelector={selector}")
    assert code == 200 and {i["involvedObject"]["name"] for i in json.loads(body)["items"]} == {pod.name}
    described = source.describe_pod(CLUSTER, NAMESPACE, pod.name)
    assert described["pod"].name == pod.name and described["controlled_by"].startswith("ReplicaSet/checkout-")
    assert described["containers"][0]["state"] == "Waiting: CrashLoopBackOff"
    assert described["containers"][0]["last_state"].startswith("Terminated: Error (exit 1)")


def test_a_healthy_world_has_no_crash_loops(seed_fleet: Fleet) -> None:
    world = World(seed_fleet, seed=42, start=START)
    emu = KubeApiEmulator(seed_fleet)
    endpoints = emu.start()
    try:
        emu.publish(world)
        src = KubernetesSource.from_endpoints(seed_fleet, endpoints, clusters=[CLUSTER], timeout_s=10)
        try:
            pods = src.pods(CLUSTER)
            assert pods and all(p.status in ("Running", "Pending") and p.restarts == 0 for p in pods)
            with pytest.raises(UsageError, match="unknown cluster"):
                src.pods("nowhere")
        finally:
            src.close()
    finally:
        emu.stop()


def test_crash_loop_back_off_doubles_to_five_minutes() -> None:
    assert crash_loop_at(0).running and crash_loop_at(0).restarts == 0
    first = crash_loop_at(CRASH_RUN_S)
    assert not first.running and first.restarts == 1 and first.next_start_s == CRASH_RUN_S + 10
    waits = []
    t = 0.0
    for _ in range(8):
        state = crash_loop_at(t)
        while state.running:
            t += 0.5
            state = crash_loop_at(t)
        waits.append(state.next_start_s - (state.last_finished_s or 0))
        t = state.next_start_s
    assert waits == [10, 20, 40, 80, 160, 300, 300, 300]
    assert crash_loop_at(3600).restarts < crash_loop_at(7200).restarts  # still growing, deterministically
    assert crash_loop_at(3600) == crash_loop_at(3600)
