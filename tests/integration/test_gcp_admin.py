"""The GCP management emulator (GKE node pools, Cloud SQL Admin) with the official clients, and the project's
GCP Ansible modules run for real through ansible-runner against it.

The SDK tests drive ``google-cloud-container``'s ClusterManagerClient (REST transport) and
``google-api-python-client``'s sqladmin v1 (static discovery) over a real socket, then check that
``collect`` changed the world and ``publish`` wrote it back. The playbook tests write a small playbook to
tmp_path that includes playbooks/tasks/*_gcp.yml with the connection extravars, run it with ansible-runner
on the real inventory, sync the emulator with the world by hand (collect, publish) and check the world,
idempotence (second run changed=0), check mode (a diff, nothing changed) and clear failures.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import container_v1
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import DatabaseState, DbRole, Fleet
from opsconsole.sandbox.emulator import Endpoints
from opsconsole.sandbox.gcp_admin import GcpAdminEmulator
from opsconsole.sandbox.world import World

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
START = datetime(2025, 1, 15, 18, tzinfo=UTC)
GKE = "gke-usw2-prod"
GKE_LOCATION = "us-west1"
DB_REGION = "ap-south-1"
DB_SOURCE = "ap-southeast-1"


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_inventory()


@pytest.fixture
def world(fleet: Fleet) -> World:
    return World(fleet, seed=42, start=START)


@pytest.fixture
def emulator(fleet: Fleet, world: World) -> Iterator[tuple[GcpAdminEmulator, Endpoints]]:
    emu = GcpAdminEmulator(fleet)
    endpoints = emu.start()
    emu.publish(world)
    yield emu, endpoints
    emu.stop()


def _gke(endpoints: Endpoints) -> container_v1.ClusterManagerClient:
    return container_v1.ClusterManagerClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=endpoints.urls["gcp_admin"]),
    )


def _sql(endpoints: Endpoints) -> Any:
    return discovery.build(
        "sqladmin",
        "v1",
        static_discovery=True,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": endpoints.urls["gcp_admin"] + "/"},
    )


def _pool_name(endpoints: Endpoints, cluster: str = GKE, location: str = GKE_LOCATION) -> str:
    project = endpoints.settings["project"]
    return f"projects/{project}/locations/{location}/clusters/{cluster}/nodePools/default-pool"


def _db(world: World, region: str = DB_REGION) -> DatabaseState:
    return next(r for r in world.observe() if isinstance(r, DatabaseState) and r.region == region)


def _sync(emu: GcpAdminEmulator, world: World) -> None:
    emu.collect(world)
    emu.publish(world)


# -- the emulator with the SDK clients ----------------------------------------------------------------------


def test_node_pools_publish_the_world(
    fleet: Fleet, world: World, emulator: tuple[GcpAdminEmulator, Endpoints]
) -> None:
    _, endpoints = emulator
    client = _gke(endpoints)
    gke = [c for c in fleet.clusters.values() if c.cloud.value == "gcp"]
    assert gke
    for c in gke:
        pool = client.get_node_pool(name=_pool_name(endpoints, c.name, c.cloud_region))
        assert pool.autoscaling.enabled
        assert (pool.autoscaling.min_node_count, pool.autoscaling.max_node_count) == world.node_bounds(c.name)
        assert pool.initial_node_count == world.nodes(c.name)
    parent = f"projects/{endpoints.settings['project']}/locations/{GKE_LOCATION}/clusters/{GKE}"
    assert [p.name for p in client.list_node_pools(parent=parent).node_pools] == ["default-pool"]
    with pytest.raises(gexc.NotFound):
        client.get_node_pool(name=_pool_name(endpoints, GKE, "europe-west1"))
    with pytest.raises(gexc.NotFound):
        client.get_node_pool(name=_pool_name(endpoints).replace("default-pool", "other-pool"))


def test_set_autoscaling_and_size_change_the_world(
    world: World, emulator: tuple[GcpAdminEmulator, Endpoints]
) -> None:
    emu, endpoints = emulator
    client = _gke(endpoints)
    name = _pool_name(endpoints)
    lo, hi = world.node_bounds(GKE)
    op = client.set_node_pool_autoscaling(
        request=container_v1.SetNodePoolAutoscalingRequest(
            name=name,
            autoscaling=container_v1.NodePoolAutoscaling(
                enabled=True, min_node_count=lo + 1, max_node_count=hi + 5
            ),
        )
    )
    assert op.status == container_v1.Operation.Status.DONE
    got = client.get_operation(
        name=f"projects/{endpoints.settings['project']}/locations/{GKE_LOCATION}/operations/{op.name}"
    )
    assert got.status == container_v1.Operation.Status.DONE
    assert world.node_bounds(GKE) == (lo, hi)  # nothing happens before collect
    _sync(emu, world)
    assert world.node_bounds(GKE) == (lo + 1, hi + 5)
    client.set_node_pool_size(request=container_v1.SetNodePoolSizeRequest(name=name, node_count=lo + 3))
    _sync(emu, world)
    assert world.nodes(GKE) == lo + 3
    assert client.get_node_pool(name=name).initial_node_count == lo + 3


def test_a_change_the_world_refuses_is_undone(
    fleet: Fleet, world: World, emulator: tuple[GcpAdminEmulator, Endpoints]
) -> None:
    emu, endpoints = emulator
    client = _gke(endpoints)
    name = _pool_name(endpoints)
    before = world.node_bounds(GKE)
    too_many = fleet.bounds.cluster_nodes.max + 10
    client.set_node_pool_autoscaling(
        request=container_v1.SetNodePoolAutoscalingRequest(
            name=name,
            autoscaling=container_v1.NodePoolAutoscaling(
                enabled=True, min_node_count=1, max_node_count=too_many
            ),
        )
    )
    assert client.get_node_pool(name=name).autoscaling.max_node_count == too_many
    _sync(emu, world)
    assert world.node_bounds(GKE) == before
    assert client.get_node_pool(name=name).autoscaling.max_node_count == before[1]
    with pytest.raises(gexc.BadRequest, match="minNodeCount=9"):
        client.set_node_pool_autoscaling(
            request=container_v1.SetNodePoolAutoscalingRequest(
                name=name,
                autoscaling=container_v1.NodePoolAutoscaling(
                    enabled=True, min_node_count=9, max_node_count=3
                ),
            )
        )


def test_a_client_write_between_collect_and_publish_is_kept(
    world: World, emulator: tuple[GcpAdminEmulator, Endpoints]
) -> None:
    emu, endpoints = emulator
    client = _gke(endpoints)
    lo, hi = world.node_bounds(GKE)
    emu.collect(world)
    client.set_node_pool_autoscaling(
        request=container_v1.SetNodePoolAutoscalingRequest(
            name=_pool_name(endpoints),
            autoscaling=container_v1.NodePoolAutoscaling(
                enabled=True, min_node_count=lo, max_node_count=hi - 1
            ),
        )
    )
    emu.publish(world)  # must not write the world's older bounds over the client's
    assert client.get_node_pool(name=_pool_name(endpoints)).autoscaling.max_node_count == hi - 1
    _sync(emu, world)
    assert world.node_bounds(GKE) == (lo, hi - 1)


def test_cloud_sql_instances_reflect_the_world(
    world: World, emulator: tuple[GcpAdminEmulator, Endpoints]
) -> None:
    _, endpoints = emulator
    sql = _sql(endpoints)
    project = endpoints.settings["project"]
    items = {i["name"]: i for i in sql.instances().list(project=project).execute()["items"]}
    db = _db(world)
    assert db.role is DbRole.READ_REPLICA and db.replicates_from == DB_SOURCE
    primary = items[f"pg-{DB_REGION}"]
    # A replica of another cloud's primary replicates from a source representation instance.
    assert primary["instanceType"] == "READ_REPLICA_INSTANCE"
    assert primary["masterInstanceName"] == f"src-pg-{DB_SOURCE}"
    assert items[f"src-pg-{DB_SOURCE}"]["instanceType"] == "ON_PREMISES_INSTANCE"
    replicas = sorted(n for n, i in items.items() if i.get("masterInstanceName") == f"pg-{DB_REGION}")
    assert replicas == [f"pg-{DB_REGION}-r{k}" for k in range(1, db.read_replicas + 1)]
    assert primary["replicaNames"] == replicas
    with pytest.raises(HttpError) as info:
        sql.instances().get(project=project, instance="pg-nowhere").execute()
    assert info.value.status_code == 404


def test_cloud_sql_replicas_add_and_remove_change_the_world(
    world: World, emulator: tuple[GcpAdminEmulator, Endpoints]
) -> None:
    emu, endpoints = emulator
    sql = _sql(endpoints)
    project = endpoints.settings["project"]
    n = _db(world).read_replicas
    name = f"pg-{DB_REGION}-r{n + 1}"
    op = (
        sql.instances()
        .insert(project=project, body={"name": name, "masterInstanceName": f"pg-{DB_REGION}"})
        .execute()
    )
    assert sql.operations().get(project=project, operation=op["name"]).execute()["status"] == "DONE"
    _sync(emu, world)
    assert _db(world).read_replicas == n + 1
    sql.instances().delete(project=project, instance=name).execute()
    _sync(emu, world)
    assert _db(world).read_replicas == n

    def replicas() -> list[str]:
        items = sql.instances().list(project=project).execute()["items"]
        return sorted(i["name"] for i in items if i.get("masterInstanceName") == f"pg-{DB_REGION}")

    # Below the fleet's bound (1): the world refuses, and publish puts the replicas back.
    for gone in replicas():
        sql.instances().delete(project=project, instance=gone).execute()
    assert replicas() == []
    _sync(emu, world)
    assert _db(world).read_replicas == n
    assert len(replicas()) == n
    with pytest.raises(HttpError) as info:
        sql.instances().delete(project=project, instance=f"pg-{DB_REGION}").execute()
    assert info.value.status_code == 400


def test_promote_and_demote_change_the_world(
    world: World, emulator: tuple[GcpAdminEmulator, Endpoints]
) -> None:
    emu, endpoints = emulator
    sql = _sql(endpoints)
    project = endpoints.settings["project"]
    instance = f"pg-{DB_REGION}"
    sql.instances().promoteReplica(project=project, instance=instance).execute()
    _sync(emu, world)
    assert _db(world).role is DbRole.WRITE_PRIMARY
    got = sql.instances().get(project=project, instance=instance).execute()
    assert got["instanceType"] == "CLOUD_SQL_INSTANCE" and "masterInstanceName" not in got
    with pytest.raises(HttpError, match="not a read replica"):
        sql.instances().promoteReplica(project=project, instance=instance).execute()
    with pytest.raises(HttpError, match="not a source representation"):
        sql.instances().demote(
            project=project,
            instance=instance,
            body={"demoteContext": {"sourceRepresentativeInstanceName": f"{instance}-r1"}},
        ).execute()
    sql.instances().demote(
        project=project,
        instance=instance,
        body={"demoteContext": {"sourceRepresentativeInstanceName": f"src-pg-{DB_SOURCE}"}},
    ).execute()
    _sync(emu, world)
    db = _db(world)
    assert (db.role, db.replicates_from) == (DbRole.READ_REPLICA, DB_SOURCE)


@pytest.mark.parametrize(
    "kind,status,code", [("throttled", 429, "RESOURCE_EXHAUSTED"), ("forbidden", 403, "PERMISSION_DENIED")]
)
def test_faults_answer_google_errors(
    kind: str, status: int, code: str, emulator: tuple[GcpAdminEmulator, Endpoints]
) -> None:
    emu, endpoints = emulator
    sql = _sql(endpoints)
    with emu.faults.injected(kind, count=2):
        with pytest.raises(HttpError) as info:
            sql.instances().list(project=endpoints.settings["project"]).execute()
        assert info.value.status_code == status
        assert json.loads(info.value.content)["error"]["status"] == code
        with pytest.raises(gexc.GoogleAPICallError) as gke_info:
            _gke(endpoints).get_node_pool(name=_pool_name(endpoints))
        assert gke_info.value.code == status
    assert _gke(endpoints).get_node_pool(name=_pool_name(endpoints)).name == "default-pool"


def test_down_refuses_connections_until_cleared(emulator: tuple[GcpAdminEmulator, Endpoints]) -> None:
    emu, endpoints = emulator
    sql = _sql(endpoints)
    project = endpoints.settings["project"]
    with emu.faults.injected("down"), pytest.raises(OSError):
        sql.instances().list(project=project).execute()
    assert sql.instances().list(project=project).execute()["items"]


# -- the modules, through ansible-runner ------------------------------------------------------------------


@dataclass
class Run:
    status: str
    rc: int
    changed: int
    failed: int
    diffs: list[Any]
    messages: list[str]


@dataclass
class Playground:
    emu: GcpAdminEmulator
    world: World
    endpoints: Endpoints
    tmp: Path
    runs: int = 0

    def play(self, tasks: list[dict[str, Any]], extravars: dict[str, Any], *, check: bool = False) -> Run:
        self.runs += 1
        data = self.tmp / f"run{self.runs}"
        data.mkdir()
        (data / "project").mkdir()
        playbook = data / "project" / "play.yml"
        playbook.write_text(
            json.dumps([{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}])
        )
        result = ansible_runner.run(
            private_data_dir=str(data),
            playbook=str(playbook),
            inventory=str(REPO / "inventory" / "hosts.yml"),
            extravars={
                "opsconsole_gcp_endpoint_url": self.endpoints.urls["gcp_admin"],
                "opsconsole_gcp_project": self.endpoints.settings["project"],
                "opsconsole_sandbox": True,
                **extravars,
            },
            envvars={
                "ANSIBLE_LIBRARY": str(REPO / "playbooks" / "library"),
                "ANSIBLE_MODULE_UTILS": str(REPO / "playbooks" / "module_utils"),
                "ANSIBLE_NOCOLOR": "1",
                "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            },
            cmdline="--check --diff" if check else "--diff",
            quiet=True,
            settings={"suppress_ansible_output": True},
        )
        diffs: list[Any] = []
        messages: list[str] = []
        for event in result.events:
            res = event.get("event_data", {}).get("res") or {}
            if event.get("event") == "runner_on_ok" and res.get("diff"):
                diffs.append(res["diff"])
            if event.get("event") == "runner_on_failed":
                messages.append(str(res.get("msg", "")))
        stats = result.stats or {}
        self.emu.collect(self.world)
        self.emu.publish(self.world)
        return Run(
            str(result.status),
            int(result.rc),
            sum((stats.get("changed") or {}).values()),
            sum((stats.get("failures") or {}).values()),
            diffs,
            messages,
        )


def _include(name: str) -> dict[str, Any]:
    return {
        "name": f"include {name}",
        "ansible.builtin.include_tasks": str(REPO / "playbooks" / "tasks" / name),
    }


@pytest.fixture
def playground(world: World, emulator: tuple[GcpAdminEmulator, Endpoints], tmp_path: Path) -> Playground:
    emu, endpoints = emulator
    return Playground(emu, world, endpoints, tmp_path)


def _nodes_vars(cluster: str, lo: int, hi: int, desired: int | str = "") -> dict[str, Any]:
    return {"cluster": cluster, "nodes_min": lo, "nodes_max": hi, "nodes_desired": desired}


NODES_TASKS = [_include("scale_nodes_gcp.yml") | {"vars": {"scale_cluster_vars": "{{ hostvars[cluster] }}"}}]


@pytest.mark.slow
def test_scale_nodes_gcp_playbook(playground: Playground) -> None:
    world = playground.world
    lo, hi = world.node_bounds(GKE)
    preview = playground.play(NODES_TASKS, _nodes_vars(GKE, lo, hi + 4), check=True)
    assert (preview.rc, preview.changed) == (0, 1)
    assert any(
        f"max={hi + 4}" in d.get("after", "") and f"max={hi}" in d.get("before", "") for d in preview.diffs
    ), preview.diffs
    assert world.node_bounds(GKE) == (lo, hi)  # check mode changed nothing

    first = playground.play(NODES_TASKS, _nodes_vars(GKE, lo, hi + 4, lo + 2))
    assert (first.rc, first.changed) == (0, 1), first.messages
    assert world.node_bounds(GKE) == (lo, hi + 4)
    assert world.nodes(GKE) == lo + 2
    again = playground.play(NODES_TASKS, _nodes_vars(GKE, lo, hi + 4, lo + 2))
    assert (again.rc, again.changed) == (0, 0)

    bad = playground.play(NODES_TASKS, _nodes_vars(GKE, hi, lo))
    assert bad.rc != 0 and bad.failed == 1
    assert any("nodes_min" in m and "opsconsole_bounds.cluster_nodes" in m for m in bad.messages), (
        bad.messages
    )
    not_gke = playground.play(NODES_TASKS, _nodes_vars("eks-usw2-prod", lo, hi))
    assert not_gke.rc != 0 and any("GKE cluster" in m for m in not_gke.messages), not_gke.messages


@pytest.mark.slow
def test_scale_replicas_gcp_playbook(playground: Playground) -> None:
    world = playground.world
    n = _db(world).read_replicas
    group = "region_" + DB_REGION.replace("-", "_")
    tasks = [
        _include("scale_replicas_gcp.yml")
        | {"vars": {"scale_region_vars": "{{ hostvars[groups['" + group + "'] | first] }}"}}
    ]
    preview = playground.play(tasks, {"region": DB_REGION, "read_replicas": n + 2}, check=True)
    assert (preview.rc, preview.changed) == (0, 1)
    assert any(f"pg-{DB_REGION}-r{n + 2}" in d.get("after", "") for d in preview.diffs), preview.diffs
    assert _db(world).read_replicas == n

    assert playground.play(tasks, {"region": DB_REGION, "read_replicas": n + 2}).changed == 1
    assert _db(world).read_replicas == n + 2
    assert playground.play(tasks, {"region": DB_REGION, "read_replicas": n + 2}).changed == 0
    assert playground.play(tasks, {"region": DB_REGION, "read_replicas": n + 1}).changed == 1
    assert _db(world).read_replicas == n + 1

    bad = playground.play(tasks, {"region": DB_REGION, "read_replicas": 99})
    assert bad.rc != 0 and any("opsconsole_bounds.read_replicas" in m for m in bad.messages), bad.messages
    aws_db = playground.play(
        [
            _include("scale_replicas_gcp.yml")
            | {"vars": {"scale_region_vars": "{{ hostvars[groups['region_eu_west_1'] | first] }}"}}
        ],
        {"region": "eu-west-1", "read_replicas": 2},
    )
    assert aws_db.rc != 0 and any("Cloud SQL" in m for m in aws_db.messages), aws_db.messages


@pytest.mark.slow
def test_db_promote_and_demote_gcp_playbooks(playground: Playground) -> None:
    world = playground.world
    promote = [_include("db_promote_gcp.yml")]
    demote = [_include("db_demote_gcp.yml")]
    preview = playground.play(promote, {"db_region": DB_REGION}, check=True)
    assert (preview.rc, preview.changed) == (0, 1)
    assert any("standalone primary" in d.get("after", "") for d in preview.diffs), preview.diffs
    assert _db(world).role is DbRole.READ_REPLICA

    assert playground.play(promote, {"db_region": DB_REGION}).changed == 1
    assert _db(world).role is DbRole.WRITE_PRIMARY
    assert playground.play(promote, {"db_region": DB_REGION}).changed == 0

    preview = playground.play(demote, {"db_region": DB_REGION, "db_source_region": DB_SOURCE}, check=True)
    assert (preview.rc, preview.changed) == (0, 1)
    assert _db(world).role is DbRole.WRITE_PRIMARY
    assert playground.play(demote, {"db_region": DB_REGION, "db_source_region": DB_SOURCE}).changed == 1
    db = _db(world)
    assert (db.role, db.replicates_from) == (DbRole.READ_REPLICA, DB_SOURCE)
    assert playground.play(demote, {"db_region": DB_REGION, "db_source_region": DB_SOURCE}).changed == 0

    wrong = playground.play(demote, {"db_region": DB_REGION, "db_source_region": DB_REGION})
    assert wrong.rc != 0 and any("external server" in m for m in wrong.messages), wrong.messages


@pytest.mark.slow
def test_demote_creates_a_missing_source_representation(playground: Playground) -> None:
    """Without a source representation instance for the source (e.g. deleted after a failover), the module
    creates src-pg-<source> from db_source_host's default before demoting."""
    world = playground.world
    sql = _sql(playground.endpoints)
    project = playground.endpoints.settings["project"]
    assert playground.play([_include("db_promote_gcp.yml")], {"db_region": DB_REGION}).changed == 1
    sql.instances().delete(project=project, instance=f"src-pg-{DB_SOURCE}").execute()
    run = playground.play(
        [_include("db_demote_gcp.yml")], {"db_region": DB_REGION, "db_source_region": DB_SOURCE}
    )
    assert (run.rc, run.changed) == (0, 1), run.messages
    src = sql.instances().get(project=project, instance=f"src-pg-{DB_SOURCE}").execute()
    assert src["onPremisesConfiguration"]["hostPort"] == f"pg-{DB_SOURCE}.aws.voltage.internal:5432"
    db = _db(world)
    assert (db.role, db.replicates_from) == (DbRole.READ_REPLICA, DB_SOURCE)


@pytest.mark.slow
def test_modules_fail_clearly_when_throttled(playground: Playground) -> None:
    with playground.emu.faults.injected("throttled", count=1):
        run = playground.play([_include("db_promote_gcp.yml")], {"db_region": DB_REGION})
    assert run.rc != 0
    assert any("HTTP 429" in m and f"pg-{DB_REGION}" in m for m in run.messages), run.messages
