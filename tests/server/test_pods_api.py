"""``/api/v1/clusters/{cluster}/pods``: a real server over a socket, reading a Kubernetes API emulator whose
world has a bad deploy (crash-looping pods), and the ``sim`` reader's clear refusal.

The server's core has two sources, as on the local cloud: the world in-process (for the fleet view) and the
``k8s`` adapter over the emulator (for the pods). Tokens are the sandbox cast's; victor is a viewer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsconsole import wiring
from opsconsole.cli import app as cli_app
from opsconsole.client.remote import RemoteClient
from opsconsole.core import wire
from opsconsole.core.errors import UsageError
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.pods import EventInfo, PodDescription, PodInfo, PodLog
from opsconsole.providers.k8s import KubernetesSource
from opsconsole.providers.sim import SimSource
from opsconsole.sandbox.kube import NAMESPACE, KubeApiEmulator
from opsconsole.sandbox.world import World
from opsconsole.server.app import create_app
from opsconsole.server.embedded import ServedApp
from opsconsole.server.main import server_runtime
from opsconsole.server.settings import ServerSettings

from .conftest import CAST, REPO, Served

CLUSTER = "eks-use1-prod"


@pytest.fixture
def k8s_server(sim: None, _isolated_home: Path) -> Iterator[Served]:
    fleet = load_inventory(REPO / "inventory")
    world = World(fleet, seed=42, start=datetime(2025, 1, 15, 20, tzinfo=UTC))
    world.trigger_incident("bad_deploy", "us-east-1", duration=4 * 3600)
    world.advance_by(600)
    with ExitStack() as stack:
        emulator = KubeApiEmulator(fleet)
        endpoints = emulator.start()
        stack.callback(emulator.stop)
        emulator.publish(world)
        k8s = KubernetesSource.from_endpoints(fleet, endpoints, clusters=[CLUSTER], timeout_s=10)
        stack.callback(k8s.close)
        store = wiring.world_store(fleet, home=_isolated_home)
        core = stack.enter_context(OpsCore(fleet, [SimSource(store), k8s], deadline_s=10.0, sandbox=True))
        runtime = stack.enter_context(
            server_runtime(ServerSettings(refresh_s=0.5), core=core, scheduler=False, slack=False)
        )
        served = ServedApp(create_app(runtime), host="127.0.0.1", port=0)
        served.start()
        stack.callback(served.stop)
        result = Served(f"http://127.0.0.1:{served.port}", core, runtime, served)
        tokens = runtime.auth.tokens
        assert tokens is not None
        for person in CAST:
            _, text = tokens.create(person, created_by="test", label=f"{person}'s test token")
            result.tokens[person] = text
        yield result


def test_a_viewer_lists_a_workloads_pods_reads_the_crash_and_its_events(k8s_server: Served) -> None:
    base = f"/api/v1/clusters/{CLUSTER}/pods"
    with k8s_server.http("victor") as http:  # a viewer: reads are open to everyone authenticated
        answer = http.get(base, params={"workload": "checkout"})
        assert answer.status_code == 200, answer.text
        pods = wire.loads(answer.content)
        assert pods and all(isinstance(p, PodInfo) and p.workload == "checkout" for p in pods)
        crashing = [p for p in pods if p.status == "CrashLoopBackOff"]
        assert len(crashing) == 2 and all(p.restarts >= 5 and p.node_group for p in crashing)
        pod = crashing[0].name
        log = wire.loads(http.get(f"{base}/{NAMESPACE}/{pod}/log", params={"previous": "true", "tail": 50})
                         .content)
        assert isinstance(log, PodLog) and log.previous
        assert "Traceback (most recent call last):" in log.text and "exiting with status 1" in log.text
        events = wire.loads(http.get(f"{base}/{NAMESPACE}/{pod}/events").content)
        assert all(isinstance(e, EventInfo) for e in events)
        assert {"BackOff", "Unhealthy"} <= {e.reason for e in events if e.type == "Warning"}
        described = wire.loads(http.get(f"{base}/{NAMESPACE}/{pod}/describe").content)
        assert isinstance(described, PodDescription) and described.pod.name == pod
        assert described.details["containers"][0]["state"] == "Waiting: CrashLoopBackOff"
        healthy = next(p.name for p in pods if p.status == "Running")
        refused = http.get(f"{base}/{NAMESPACE}/{healthy}/log", params={"previous": "true"})
        assert refused.status_code == 400
        assert "previous terminated container" in refused.json()["detail"]
        missing = http.get(f"{base}/{NAMESPACE}/nope/events")
        assert missing.status_code == 200 and wire.loads(missing.content) == []  # no events about it
        assert http.get(f"{base}/{NAMESPACE}/nope/describe").status_code == 404
        assert http.get("/api/v1/clusters/nowhere/pods").status_code == 404
        assert http.get(f"{base}/{NAMESPACE}/{pod}/log", params={"tail": -1}).status_code == 400


def test_the_remote_client_carries_the_records(k8s_server: Served) -> None:
    with RemoteClient(k8s_server.url, k8s_server.tokens["alice"]) as client:
        pods = client.pods(CLUSTER, workload="checkout")
        pod = next(p for p in pods if p.status == "CrashLoopBackOff")
        log = client.pod_log(CLUSTER, pod.namespace, pod.name, tail=3)
        assert log.lines[-1] == "FATAL checkout exiting with status 1"
        assert any(e.reason == "BackOff" for e in client.pod_events(CLUSTER, pod.namespace, pod.name))
        assert client.describe_pod(CLUSTER, pod.namespace, pod.name).pod.restarts == pod.restarts
        with pytest.raises(UsageError, match="not found"):
            client.pod_log(CLUSTER, pod.namespace, "nope")


def test_unauthenticated_is_401(k8s_server: Served) -> None:
    with k8s_server.http() as http:
        assert http.get(f"/api/v1/clusters/{CLUSTER}/pods").status_code == 401
    with k8s_server.http(token="opc_not-a-token") as http:
        assert http.get(f"/api/v1/clusters/{CLUSTER}/pods/{NAMESPACE}/x/log").status_code == 401


def test_the_sim_reader_says_pods_need_the_local_cloud(server: Served) -> None:
    with server.http("alice") as http:
        answer = http.get(f"/api/v1/clusters/{CLUSTER}/pods")
    assert answer.status_code == 503
    problem = answer.json()
    assert problem["title"] == "pods unavailable"
    assert "OPSCONSOLE_SANDBOX_READER=cloud" in problem["detail"]
    with RemoteClient(server.url, server.tokens["alice"]) as client, pytest.raises(Exception) as caught:
        client.pods(CLUSTER)
    assert "OPSCONSOLE_SANDBOX_READER=cloud" in str(caught.value)


def test_cli_pods_logs_events_describe(k8s_server: Served, monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    monkeypatch.setenv("OPSCONSOLE_SERVER", k8s_server.url)
    monkeypatch.setenv("OPSCONSOLE_TOKEN", k8s_server.tokens["victor"])
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("OPSCONSOLE_CA_FILE", raising=False)
    # The CLI's console took its width when it was imported; widen it for the table under test.
    from opsconsole.cli.context import out  # noqa: PLC0415
    monkeypatch.setattr(out, "width", 220)
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["pods", CLUSTER, "--workload", "checkout"], env={"COLUMNS": "220"})
    assert listed.exit_code == 0, listed.output
    for words in ("CrashLoopBackOff", "RESTARTS", "NODE GROUP", "Error (exit 1)"):
        assert words in listed.output, listed.output
    as_json = runner.invoke(cli_app, ["pods", CLUSTER, "--workload", "checkout", "--json"])
    pod = next(p["name"] for p in json.loads(as_json.output) if p["status"] == "CrashLoopBackOff")
    logs = runner.invoke(cli_app, ["logs", CLUSTER, pod, "--previous", "--tail", "3"])
    assert logs.exit_code == 0, logs.output
    assert logs.output.splitlines()[-1] == "FATAL checkout exiting with status 1"
    events = runner.invoke(cli_app, ["events", CLUSTER, pod], env={"COLUMNS": "220"})
    assert events.exit_code == 0 and "BackOff" in events.output and "Back-off restarting" in events.output
    described = runner.invoke(cli_app, ["describe", CLUSTER, pod], env={"COLUMNS": "220"})
    assert described.exit_code == 0 and "Waiting: CrashLoopBackOff" in described.output
    assert "node group eks-use1-prod-ng" in described.output
    missing = runner.invoke(cli_app, ["logs", CLUSTER, "nope"])
    assert missing.exit_code == 2 and "no pod 'nope'" in missing.output
