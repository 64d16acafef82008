"""The local ARM emulator (opsconsole/sandbox/azure_admin.py) with the real Azure SDKs, and the project's
Azure modules (playbooks/library/opsconsole_aks_agentpool.py, opsconsole_azure_pg_replicas.py,
opsconsole_azure_pg_role.py) run for real through ansible-runner, via the task files the playbooks include.

The world is a plain :class:`World`; after each client call or playbook run the test does what the local
cloud's sync does (``collect`` then ``publish``) and asserts on the world.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.postgresqlflexibleservers import PostgreSQLManagementClient

from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import DatabaseState, DbRole, Fleet
from opsconsole.sandbox.azure_admin import AzureAdminEmulator
from opsconsole.sandbox.emulator import Endpoints, client_is
from opsconsole.sandbox.world import World

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
START = datetime(2025, 1, 15, 18, tzinfo=UTC)
AKS = "aks-usw2-prod"
AKS_RG = "rg-voltage-us-west-2"
DB_REGION = "sa-east-1"  # the seed's Azure database: a replica of RDS pg-us-east-1
DB_SOURCE = "us-east-1"
PG_RG = f"rg-voltage-{DB_REGION}"
PG = f"pg-{DB_REGION}"


class _Token:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("test-token", int(time.time()) + 3600)


class _Bearer(SansIOHTTPPolicy):  # type: ignore[type-arg]
    def __init__(self, token: str = "test-token") -> None:
        self.token = token

    def on_request(self, request: Any) -> None:
        request.http_request.headers["Authorization"] = f"Bearer {self.token}"


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_inventory()


@pytest.fixture
def world(fleet: Fleet) -> World:
    return World(fleet, seed=42, start=START)


@pytest.fixture
def emulator(fleet: Fleet, world: World) -> Iterator[tuple[AzureAdminEmulator, Endpoints]]:
    emu = AzureAdminEmulator(fleet)
    endpoints = emu.start()
    emu.publish(world)
    yield emu, endpoints
    emu.stop()


def _sync(emu: AzureAdminEmulator, world: World) -> None:
    emu.collect(world)
    emu.publish(world)


def _client(cls: Any, endpoints: Endpoints, **kwargs: Any) -> Any:
    kwargs.setdefault("authentication_policy", _Bearer())
    return cls(
        _Token(),
        endpoints.settings["subscription"],
        base_url=endpoints.urls["azure_admin"],
        polling_interval=0,
        **kwargs,
    )


def _db(world: World, region: str = DB_REGION) -> DatabaseState:
    return next(r for r in world.observe() if isinstance(r, DatabaseState) and r.region == region)


def test_endpoints_and_seed(
    fleet: Fleet, emulator: tuple[AzureAdminEmulator, Endpoints], world: World
) -> None:
    emu, endpoints = emulator
    assert emu.name == "azure_admin"
    assert endpoints.urls["azure_admin"].startswith("http://127.0.0.1:")
    aks = _client(ContainerServiceClient, endpoints)
    for c in fleet.clusters.values():
        if c.cloud.value != "azure":
            continue
        pools = list(aks.agent_pools.list(f"rg-voltage-{c.region}", c.name))
        assert [p.name for p in pools] == ["nodepool1"]
        assert (pools[0].count, pools[0].min_count, pools[0].max_count) == (
            world.nodes(c.name),
            *world.node_bounds(c.name),
        )
        assert pools[0].enable_auto_scaling is True and pools[0].provisioning_state == "Succeeded"
    pg = _client(PostgreSQLManagementClient, endpoints)
    names = sorted(s.name for s in pg.servers.list_by_resource_group(PG_RG))
    assert names == [PG, f"{PG}-r1"]
    server = pg.servers.get(PG_RG, PG)
    assert server.location == "brazilsouth"
    assert server.properties.replication_role == "GeoAsyncReplica"
    assert server.properties.source_server_resource_id.endswith(
        f"/resourceGroups/rg-voltage-{DB_SOURCE}/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg-{DB_SOURCE}"
    )
    replicas = list(pg.replicas.list_by_server(PG_RG, PG))
    assert [(r.name, r.properties.replication_role) for r in replicas] == [(f"{PG}-r1", "AsyncReplica")]
    # another cloud's source is modelled by its ARM-shaped id, not served
    with pytest.raises(ResourceNotFoundError):
        pg.servers.get(f"rg-voltage-{DB_SOURCE}", f"pg-{DB_SOURCE}")


def test_agent_pool_put_changes_the_world(
    emulator: tuple[AzureAdminEmulator, Endpoints], world: World
) -> None:
    emu, endpoints = emulator
    aks = _client(ContainerServiceClient, endpoints)
    lo, hi = world.node_bounds(AKS)
    pool = aks.agent_pools.get(AKS_RG, AKS, "nodepool1")
    pool.min_count, pool.max_count, pool.count = lo + 1, hi + 5, lo + 3
    done = aks.agent_pools.begin_create_or_update(AKS_RG, AKS, "nodepool1", pool).result()
    assert (done.min_count, done.max_count, done.provisioning_state) == (lo + 1, hi + 5, "Succeeded")
    assert world.node_bounds(AKS) == (lo, hi)  # not before the sync
    _sync(emu, world)
    assert world.node_bounds(AKS) == (lo + 1, hi + 5)
    assert world.nodes(AKS) == lo + 3
    # a bound the fleet forbids (max 50): Azure accepts it, the world refuses, the publish undoes it
    pool = aks.agent_pools.get(AKS_RG, AKS, "nodepool1")
    pool.max_count = 60
    aks.agent_pools.begin_create_or_update(AKS_RG, AKS, "nodepool1", pool).result()
    _sync(emu, world)
    assert world.node_bounds(AKS) == (lo + 1, hi + 5)
    assert aks.agent_pools.get(AKS_RG, AKS, "nodepool1").max_count == hi + 5
    # ARM's validation
    pool.min_count, pool.max_count = 9, 3
    with pytest.raises(HttpResponseError) as err:
        aks.agent_pools.begin_create_or_update(AKS_RG, AKS, "nodepool1", pool).result()
    assert err.value.status_code == 400 and "minCount (9)" in str(err.value)
    with pytest.raises(ResourceNotFoundError):
        aks.agent_pools.get(AKS_RG, "aks-nowhere", "nodepool1")


def test_postgres_replicas_promote_and_recreate(
    emulator: tuple[AzureAdminEmulator, Endpoints], world: World
) -> None:
    emu, endpoints = emulator
    pg = _client(PostgreSQLManagementClient, endpoints)
    server = pg.servers.get(PG_RG, PG)
    body = {
        "location": server.location,
        "properties": {"createMode": "Replica", "sourceServerResourceId": server.id},
    }
    made = pg.servers.begin_create_or_update(PG_RG, f"{PG}-r2", body).result()
    assert made.properties.replication_role == "AsyncReplica"
    _sync(emu, world)
    assert _db(world).read_replicas == 2
    pg.servers.begin_delete(PG_RG, f"{PG}-r2").result()
    _sync(emu, world)
    assert _db(world).read_replicas == 1
    # promote (failover): PATCH replica.promoteMode
    patch = {"properties": {"replica": {"promoteMode": "Standalone", "promoteOption": "Forced"}}}
    promoted = pg.servers.begin_update(PG_RG, PG, patch).result()
    assert promoted.properties.replication_role == "Primary"
    assert promoted.properties.source_server_resource_id is None
    _sync(emu, world)
    assert (_db(world).role, _db(world).replicates_from) == (DbRole.WRITE_PRIMARY, None)
    with pytest.raises(HttpResponseError) as err:
        pg.servers.begin_update(PG_RG, PG, patch).result()
    assert err.value.status_code == 400 and "not a read replica" in str(err.value)
    # the way back (failback): no in-place demote, delete and create again as a replica
    source = server.properties.source_server_resource_id
    pg.servers.begin_delete(PG_RG, PG).result()
    _sync(emu, world)
    with pytest.raises(ResourceNotFoundError):
        pg.servers.get(PG_RG, PG)  # a deleted server is not published back
    again = {
        "location": server.location,
        "properties": {"createMode": "Replica", "sourceServerResourceId": source},
    }
    recreated = pg.servers.begin_create_or_update(PG_RG, PG, again).result()
    assert recreated.properties.replication_role == "GeoAsyncReplica"
    _sync(emu, world)
    assert (_db(world).role, _db(world).replicates_from) == (DbRole.READ_REPLICA, DB_SOURCE)
    assert pg.servers.get(PG_RG, PG).properties.source_server_resource_id == source


def test_postgres_refusals(emulator: tuple[AzureAdminEmulator, Endpoints], world: World) -> None:
    emu, endpoints = emulator
    pg = _client(PostgreSQLManagementClient, endpoints)
    server = pg.servers.get(PG_RG, PG)
    body = {
        "location": server.location,
        "properties": {"createMode": "Replica", "sourceServerResourceId": server.id},
    }
    for k in range(2, 6):
        pg.servers.begin_create_or_update(PG_RG, f"{PG}-r{k}", body).result()
    with pytest.raises(HttpResponseError) as err:
        pg.servers.begin_create_or_update(PG_RG, f"{PG}-r6", body).result()
    assert err.value.status_code == 400 and err.value.error.code == "ReplicaCountExceeded"
    with pytest.raises(HttpResponseError) as err:
        pg.servers.begin_create_or_update(
            PG_RG, "my-own-db", {"location": "brazilsouth", "properties": {"createMode": "Create"}}
        ).result()
    assert err.value.status_code == 400 and "read replicas only" in str(err.value)
    _sync(emu, world)
    assert _db(world).read_replicas == 5


def test_auth_api_version_and_faults(emulator: tuple[AzureAdminEmulator, Endpoints], world: World) -> None:
    import httpx  # noqa: PLC0415

    emu, endpoints = emulator
    base = endpoints.urls["azure_admin"]
    sub = endpoints.settings["subscription"]
    path = (
        f"{base}/subscriptions/{sub}/resourceGroups/{PG_RG}/providers/Microsoft.DBforPostgreSQL"
        f"/flexibleServers/{PG}"
    )
    assert httpx.get(path, params={"api-version": "2026-10-01"}).status_code == 401
    bad = httpx.get(path, headers={"Authorization": "Bearer x"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "MissingApiVersionParameter"

    pg = _client(
        PostgreSQLManagementClient,
        endpoints,
        retry_total=0,
        authentication_policy=_Bearer("throttled-client"),
    )
    other = _client(PostgreSQLManagementClient, endpoints, retry_total=0)
    with emu.faults.injected("throttled", count=1, match=client_is("throttled-client"), retry_after=7):
        assert other.servers.get(PG_RG, PG).name == PG  # another client cannot use up the fault
        with pytest.raises(HttpResponseError) as err:
            pg.servers.get(PG_RG, PG)
        assert err.value.status_code == 429 and err.value.error.code == "TooManyRequests"
        assert err.value.response.headers["Retry-After"] == "7"
    # the SDK's own retry honours Retry-After and gets through
    patient = _client(PostgreSQLManagementClient, endpoints, retry_total=3)
    with emu.faults.injected("throttled", count=1, retry_after=0):
        assert patient.servers.get(PG_RG, PG).name == PG
    with emu.faults.injected("forbidden"):
        with pytest.raises(HttpResponseError) as err:
            _client(ContainerServiceClient, endpoints, retry_total=0).agent_pools.get(
                AKS_RG, AKS, "nodepool1"
            )
        assert err.value.status_code == 403 and err.value.error.code == "AuthorizationFailed"
        assert "Microsoft.ContainerService/managedClusters/agentPools/read" in str(err.value)
    with emu.faults.injected("down"), pytest.raises(ServiceRequestError):
        _client(PostgreSQLManagementClient, endpoints, retry_total=0).servers.get(PG_RG, PG)
    assert other.servers.get(PG_RG, PG).name == PG  # serves again on the same port


# -- the modules, through ansible-runner ---------------------------------------------------------------


@dataclass
class Run:
    status: str
    rc: int
    changed: int
    failed: int
    diffs: list[Any]
    messages: list[str]
    results: list[dict[str, Any]]


@dataclass
class Playground:
    emu: AzureAdminEmulator
    world: World
    endpoints: Endpoints
    tmp: Path
    runs: int = 0

    def play(self, tasks: list[dict[str, Any]], extravars: dict[str, Any], *, check: bool = False) -> Run:
        self.runs += 1
        data = self.tmp / f"run{self.runs}"
        (data / "project").mkdir(parents=True)
        playbook = data / "project" / "play.yml"
        playbook.write_text(
            json.dumps([{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}])
        )
        result = ansible_runner.run(
            private_data_dir=str(data),
            playbook=str(playbook),
            inventory=str(REPO / "inventory" / "hosts.yml"),
            extravars={
                "opsconsole_azure_endpoint_url": self.endpoints.urls["azure_admin"],
                "opsconsole_azure_subscription": self.endpoints.settings["subscription"],
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
        results: list[dict[str, Any]] = []
        for event in result.events:
            res = event.get("event_data", {}).get("res") or {}
            if event.get("event") == "runner_on_ok":
                results.append(res)
                if res.get("diff"):
                    diffs.append(res["diff"])
            if event.get("event") == "runner_on_failed":
                messages.append(str(res.get("msg", "")))
        stats = result.stats or {}
        _sync(self.emu, self.world)
        return Run(
            str(result.status),
            int(result.rc),
            sum((stats.get("changed") or {}).values()),
            sum((stats.get("failures") or {}).values()),
            diffs,
            messages,
            results,
        )


def _include(name: str, **vars_: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "name": f"include {name}",
        "ansible.builtin.include_tasks": str(REPO / "playbooks" / "tasks" / name),
    }
    if vars_:
        task["vars"] = vars_
    return task


@pytest.fixture
def playground(world: World, emulator: tuple[AzureAdminEmulator, Endpoints], tmp_path: Path) -> Playground:
    emu, endpoints = emulator
    return Playground(emu, world, endpoints, tmp_path)


NODES = [_include("scale_nodes_azure.yml", scale_cluster_vars="{{ hostvars[cluster] }}")]
REPLICAS = [
    _include(
        "scale_replicas_azure.yml",
        scale_region_vars="{{ hostvars[groups['region_' ~ region | replace('-', '_')] | first] }}",
    )
]
PROMOTE = [_include("db_promote_azure.yml")]
DEMOTE = [_include("db_demote_azure.yml")]


def _nodes(lo: int, hi: int, desired: int | str = "") -> dict[str, Any]:
    return {"cluster": AKS, "nodes_min": lo, "nodes_max": hi, "nodes_desired": desired}


@pytest.mark.slow
def test_scale_nodes_azure(playground: Playground) -> None:
    world = playground.world
    lo, hi = world.node_bounds(AKS)
    preview = playground.play(NODES, _nodes(lo, hi + 4), check=True)
    assert (preview.rc, preview.changed) == (0, 1), preview.messages
    assert any(d["before"]["max_count"] == hi and d["after"]["max_count"] == hi + 4 for d in preview.diffs)
    assert world.node_bounds(AKS) == (lo, hi)  # check mode changed nothing

    first = playground.play(NODES, _nodes(lo, hi + 4, lo + 2))
    assert (first.rc, first.changed) == (0, 1), first.messages
    assert world.node_bounds(AKS) == (lo, hi + 4)
    assert world.nodes(AKS) == lo + 2

    again = playground.play(NODES, _nodes(lo, hi + 4, lo + 2))
    assert (again.rc, again.changed) == (0, 0), again.messages

    bad = playground.play(NODES, _nodes(hi, lo))
    assert bad.rc != 0 and any("nodes_min <= nodes_max" in m for m in bad.messages), bad.messages
    outside = playground.play(NODES, _nodes(lo, hi, hi + 10))
    assert outside.rc != 0 and any("nodes_desired empty or within them" in m for m in outside.messages)
    assert world.node_bounds(AKS) == (lo, hi + 4)


@pytest.mark.slow
def test_scale_replicas_azure(playground: Playground) -> None:
    world = playground.world
    assert _db(world).read_replicas == 1
    preview = playground.play(REPLICAS, {"region": DB_REGION, "read_replicas": 3}, check=True)
    assert (preview.rc, preview.changed) == (0, 1), preview.messages
    assert any(d["after"]["names"] == [f"{PG}-r1", f"{PG}-r2", f"{PG}-r3"] for d in preview.diffs)
    assert _db(world).read_replicas == 1

    first = playground.play(REPLICAS, {"region": DB_REGION, "read_replicas": 3})
    assert (first.rc, first.changed) == (0, 1), first.messages
    assert _db(world).read_replicas == 3
    assert playground.play(REPLICAS, {"region": DB_REGION, "read_replicas": 3}).changed == 0
    down = playground.play(REPLICAS, {"region": DB_REGION, "read_replicas": 2})
    assert (down.rc, down.changed, _db(world).read_replicas) == (0, 1, 2)

    too_many = playground.play(REPLICAS, {"region": DB_REGION, "read_replicas": 6})
    assert too_many.rc != 0 and any("ReplicaCountExceeded" in m for m in too_many.messages), too_many.messages
    assert _db(world).read_replicas == 5  # the replicas Azure created before refusing the sixth

    not_azure = playground.play(REPLICAS, {"region": "eu-west-1", "read_replicas": 2})
    assert not_azure.rc != 0 and any("runs\non Azure" in m or "on Azure" in m for m in not_azure.messages)


@pytest.mark.slow
def test_db_promote_then_demote_azure(playground: Playground) -> None:
    world = playground.world
    assert (_db(world).role, _db(world).replicates_from) == (DbRole.READ_REPLICA, DB_SOURCE)
    preview = playground.play(PROMOTE, {"db_region": DB_REGION}, check=True)
    assert (preview.rc, preview.changed) == (0, 1), preview.messages
    assert any(d["before"]["role"] == "replica" and d["after"]["role"] == "primary" for d in preview.diffs)
    assert _db(world).role is DbRole.READ_REPLICA

    promoted = playground.play(PROMOTE, {"db_region": DB_REGION})
    assert (promoted.rc, promoted.changed) == (0, 1), promoted.messages
    assert (_db(world).role, _db(world).replicates_from) == (DbRole.WRITE_PRIMARY, None)
    assert playground.play(PROMOTE, {"db_region": DB_REGION}).changed == 0

    back = {"db_region": DB_REGION, "db_source_region": DB_SOURCE}
    preview = playground.play(DEMOTE, back, check=True)
    assert (preview.rc, preview.changed) == (0, 1), preview.messages
    assert _db(world).role is DbRole.WRITE_PRIMARY
    demoted = playground.play(DEMOTE, back)
    assert (demoted.rc, demoted.changed) == (0, 1), demoted.messages
    assert any(r.get("recreated") is True for r in demoted.results)
    assert (_db(world).role, _db(world).replicates_from) == (DbRole.READ_REPLICA, DB_SOURCE)
    assert playground.play(DEMOTE, back).changed == 0

    same = playground.play(DEMOTE, {"db_region": DB_REGION, "db_source_region": DB_REGION})
    assert same.rc != 0 and any("another region db_source_region" in m for m in same.messages), same.messages


# -- with the local cloud's driver syncing while the client works ------------------------------------------


def _wait_for(what: str, predicate: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_failback_under_a_syncing_local_cloud(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opsconsole.sandbox.localcloud import LocalCloud  # noqa: PLC0415
    from opsconsole.sandbox.state import WorldStore  # noqa: PLC0415
    from opsconsole.testing import FakeClock  # noqa: PLC0415

    monkeypatch.setenv("OPSCONSOLE_HOME", str(tmp_path))
    store = WorldStore(tmp_path, fleet, FakeClock(START), seed=7)
    cloud = LocalCloud(store, [AzureAdminEmulator(fleet)], sync_s=0.05)
    endpoints = cloud.start()["azure_admin"]
    cloud.start_driver()
    try:

        def db() -> DatabaseState:
            with store.open() as world:
                return _db(world)

        def synced() -> None:  # two whole sync cycles after this point
            for _ in range(2):
                done = cloud.last_sync_s
                _wait_for("a sync", lambda d=done: cloud.last_sync_s is not d)

        pg = _client(PostgreSQLManagementClient, endpoints)
        server = pg.servers.get(PG_RG, PG)
        source = server.properties.source_server_resource_id
        patch = {"properties": {"replica": {"promoteMode": "Standalone", "promoteOption": "Forced"}}}
        pg.servers.begin_update(PG_RG, PG, patch).result()
        _wait_for("the promotion in the world", lambda: db().role is DbRole.WRITE_PRIMARY)
        pg.servers.begin_delete(PG_RG, PG).result()
        synced()
        with pytest.raises(ResourceNotFoundError):
            pg.servers.get(PG_RG, PG)  # syncs do not bring a deleted server back
        assert db().role is DbRole.WRITE_PRIMARY
        body = {
            "location": server.location,
            "properties": {"createMode": "Replica", "sourceServerResourceId": source},
        }
        pg.servers.begin_create_or_update(PG_RG, PG, body).result()
        _wait_for("the demotion in the world", lambda: db().role is DbRole.READ_REPLICA)
        assert db().replicates_from == DB_SOURCE
        synced()
        assert pg.servers.get(PG_RG, PG).properties.replication_role == "GeoAsyncReplica"
    finally:
        cloud.stop()
