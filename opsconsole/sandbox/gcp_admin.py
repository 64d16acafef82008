"""A local GCP management plane (GKE node pools, Cloud SQL Admin) in front of the sandbox world.

Why this module exists: on the sandbox, the playbooks change GKE node pools and Cloud SQL instances
through the official clients (``google-cloud-container``'s ``ClusterManagerClient`` over its REST
transport, ``google-api-python-client``'s ``sqladmin`` v1 with its static discovery document), from the
project's own modules in ``playbooks/library/``. This module answers the REST calls they make, on one
127.0.0.1 port (``Endpoints.urls["gcp_admin"]``, project ``Endpoints.settings["project"]``), and turns
what they wrote into world changes::

    emu = GcpAdminEmulator(fleet)
    endpoints = emu.start()              # {"gcp_admin": "http://127.0.0.1:PORT"}, {"project": ...}
    emu.publish(world)                   # world → node pools and instances
    ...                                  # a playbook calls setAutoscaling / promoteReplica ...
    emu.collect(world)                   # client changes → world.set_cluster_node_bounds(...) ...

Served (container v1, paths as the REST transport builds them):

* ``GET /v1/projects/{p}/locations/{loc}/clusters/{c}/nodePools[/{np}]`` — one node pool
  ``default-pool`` per GKE cluster of the fleet (location = the cluster's ``cloud_region``): autoscaling
  ``{enabled: true, minNodeCount, maxNodeCount}`` = ``world.node_bounds(c)``, and the current node count
  in ``initialNodeCount`` (see the limitations);
* ``POST .../nodePools/{np}:setAutoscaling`` (``{autoscaling: {enabled, minNodeCount, maxNodeCount}}``)
  and ``POST .../nodePools/{np}:setSize`` (``{nodeCount}``) → an Operation, already ``DONE``;
* ``GET /v1/projects/{p}/locations/{loc}/operations/{op}``.

Served (sqladmin v1, the paths of the static discovery document):

* ``GET /v1/projects/{p}/instances`` and ``.../instances/{i}``: ``pg-<region>`` for every region whose
  database cloud is GCP, and its read replicas ``pg-<region>-r<K>`` (``READ_REPLICA_INSTANCE``,
  ``masterInstanceName: pg-<region>``). A write primary is a ``CLOUD_SQL_INSTANCE``; a replica of a
  Cloud SQL primary names it in ``masterInstanceName``; a replica of another cloud's primary replicates
  from an external server, which Cloud SQL models as a *source representation instance*
  (``ON_PREMISES_INSTANCE`` with ``onPremisesConfiguration.hostPort``): the emulator publishes one,
  ``src-pg-<source region>``, and the replica names it in ``masterInstanceName``;
* ``POST .../instances`` (insert): a read replica (``masterInstanceName`` set) or a source
  representation instance (``instanceType: ON_PREMISES_INSTANCE``); ``DELETE .../instances/{i}``;
* ``POST .../instances/{i}/promoteReplica``: the replica becomes a standalone primary;
* ``POST .../instances/{i}/demote`` with ``{demoteContext: {sourceRepresentativeInstanceName}}``: the real
  ``instances.demote``, which "demotes an existing standalone instance to be a Cloud SQL read replica
  for an external database server" — the failback of a region whose source is on another cloud.
  (``demoteMaster`` is the MySQL-only variant; ``switchover`` swaps a primary with its own cross-region
  DR replica and cannot name a new source, so neither fits.) The source representation instance must
  exist (insert it first);
* ``GET /v1/projects/{p}/operations/{op}``: every operation is ``DONE`` at once.

``collect`` applies what clients wrote since the last publish: autoscaling bounds →
``set_cluster_node_bounds``, a node count → ``set_cluster_nodes``, the number of replicas of
``pg-<region>`` → ``set_read_replicas``, a promoted replica → ``promote_replica``, a demoted primary →
``demote_to_replica(region, source)`` (the source region read from the source instance's name
``src-pg-<region>`` / ``pg-<region>``, or its ``hostPort`` ``pg-<region>.…``). A world refusal
(:class:`~opsconsole.core.errors.UsageError`) is logged and the next publish writes the world's state
back: the client sees its change undone. A resource a client wrote since the last collect is left alone
by publish (the next collect takes it).

Faults (``emulator.faults``; a request's ``FaultRequest`` has the ``Authorization`` header as ``client``
and the project as ``scope``): ``"down"`` closes the listening socket until cleared; ``"slow"`` delays
each answer by ``seconds``; ``"forbidden"`` answers 403 ``PERMISSION_DENIED``; ``"throttled"`` answers
429 ``RESOURCE_EXHAUSTED`` (Google's error JSON; a ``Retry-After`` header with ``retry_after=``) to the
next ``count`` calls (default 3); ``"malformed"`` returns the first half of the real JSON body.

Limitations (what the emulator cannot do; listed in the README):

* a node pool is modelled in one zone, so per-zone counts are the cluster's totals; the current node
  count is reported in ``initialNodeCount`` (the real API has it only on the pool's instance groups);
* autoscaling cannot be turned off (the world's clusters always autoscale): ``enabled: false`` is undone;
* operations are ``DONE`` at once (no ``PENDING`` / ``RUNNING``), and no other container or sqladmin
  methods (create / delete clusters or pools, patch instance settings, backups...) are served;
* a new standalone Cloud SQL primary cannot be inserted, and a region's ``pg-<region>`` cannot be deleted;
* the world models a region's replica *count*: a replica's tier, settings and name beyond
  ``pg-<region>-r<K>`` are kept but mean nothing to the world.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from opsconsole.core.errors import UsageError
from opsconsole.core.fleet.model import Cloud, DatabaseState, DbRole, Fleet
from opsconsole.sandbox.emulator import (
    FAULT_KINDS,
    Endpoints,
    FaultRequest,
    Faults,
    QuietHTTPServer,
    serve_http,
)
from opsconsole.sandbox.world import World

__all__ = ["DEFAULT_PROJECT", "NODE_POOL", "GcpAdminEmulator", "instance_name", "source_instance_name"]

log = logging.getLogger(__name__)

DEFAULT_PROJECT = "voltage-sandbox"
#: The one node pool of every GKE cluster (naming convention of the fleet).
NODE_POOL = "default-pool"
_GKE_VERSION = "1.30.5-gke.1014001"
_PG_VERSION = "POSTGRES_16"

_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    412: "FAILED_PRECONDITION",
}
_REASON = {
    400: "invalid",
    403: "forbidden",
    404: "notFound",
    409: "alreadyExists",
    429: "rateLimitExceeded",
    412: "conditionNotMet",
}

_POOL = re.compile(
    r"/v1/projects/([^/]+)/locations/([^/]+)/clusters/([^/]+)/nodePools(?:/([^/:]+))?(?::(\w+))?"
)
_GKE_OP = re.compile(r"/v1/projects/([^/]+)/locations/([^/]+)/operations/([^/]+)")
_SQL = re.compile(r"/v1/projects/([^/]+)/instances(?:/([^/]+))?(?:/(\w+))?")
_SQL_OP = re.compile(r"/v1/projects/([^/]+)/operations/([^/]+)")


def instance_name(region: str) -> str:
    """The Cloud SQL instance of a region's database: ``pg-<region>``."""
    return f"pg-{region}"


def source_instance_name(region: str) -> str:
    """The source representation instance of a database on another cloud: ``src-pg-<region>``."""
    return f"src-pg-{region}"


class _Error(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Pool:
    cluster: str
    location: str
    machine_type: str
    min_nodes: int
    max_nodes: int
    nodes: int
    enabled: bool = True


@dataclass
class _Published:
    """What the emulator last wrote, to tell a client's change from its own."""

    pools: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # cluster → (min, max, nodes)
    replicas: dict[str, int] = field(default_factory=dict)  # region → replicas of pg-<region>
    role: dict[str, tuple[DbRole, str | None]] = field(default_factory=dict)  # region → (role, source)


class GcpAdminEmulator:
    """GKE node pools and Cloud SQL Admin on 127.0.0.1 (see the module docstring).

    Args:
        fleet: the fleet whose GKE clusters and GCP-hosted databases are served.
        project: the project of every resource.
    """

    name = "gcp_admin"

    def __init__(self, fleet: Fleet, *, project: str = DEFAULT_PROJECT) -> None:
        self._fleet = fleet
        self._project = project
        self._lock = threading.RLock()
        self._gke = {c.name: c for c in fleet.clusters.values() if c.cloud is Cloud.GCP}
        self._sql_regions = [r.id for r in fleet.regions.values() if r.database.cloud is Cloud.GCP]
        self._pools: dict[str, _Pool] = {}
        self._instances: dict[str, dict[str, Any]] = {}
        self._gke_ops: dict[str, dict[str, Any]] = {}
        self._sql_ops: dict[str, dict[str, Any]] = {}
        self._published = _Published()
        #: Resources a client wrote since the last collect: ("pool", cluster), ("replicas" | "role", region).
        self._dirty: set[tuple[str, str]] = set()
        #: Fault injection (see the module docstring).
        self.faults = Faults("GCP admin", on_down=self._set_down, kinds=FAULT_KINDS[:-1])
        self._server: QuietHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self.calls = 0
        self._seed()

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Endpoints:
        if self._server is None:
            self._serve(0)
        return Endpoints(
            urls={"gcp_admin": f"http://127.0.0.1:{self._port}"}, settings={"project": self._project}
        )

    def _serve(self, port: int) -> None:
        self._server, self._thread = serve_http(
            "GCP admin", port, self._handle, methods=("GET", "POST", "DELETE", "PATCH"),
            thread_name="gcp-admin",
        )
        self._port = self._server.server_address[1]

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def _set_down(self, down: bool) -> None:
        if down:
            self.stop()
        elif self._server is None and self._port:
            self._serve(self._port)

    # -- the fleet's resources --------------------------------------------------------------------

    def _seed(self) -> None:
        for c in self._gke.values():
            self._pools[c.name] = _Pool(
                c.name, c.cloud_region, c.instance_type, c.nodes.min, c.nodes.max, c.nodes.min
            )
        for rid in self._sql_regions:
            db = self._fleet.regions[rid].database
            self._set_role_locked(rid, db.role, db.replicates_from)
            self._set_replicas_locked(rid, db.read_replicas)

    def _sql_region(self, rid: str) -> str:
        return self._fleet.regions[rid].cloud_regions.get(Cloud.GCP, rid)

    def _base_instance(self, name: str, rid: str) -> dict[str, Any]:
        region = self._sql_region(rid)
        return {
            "kind": "sql#instance",
            "name": name,
            "project": self._project,
            "region": region,
            "databaseVersion": _PG_VERSION,
            "backendType": "SECOND_GEN",
            "state": "RUNNABLE",
            "connectionName": f"{self._project}:{region}:{name}",
            "gceZone": f"{region}-a",
            "selfLink": f"https://sqladmin.googleapis.com/v1/projects/{self._project}/instances/{name}",
            "settings": {
                "kind": "sql#settings",
                "tier": "db-custom-8-32768",
                "availabilityType": "REGIONAL",
                "dataDiskSizeGb": str(self._fleet.regions[rid].database.storage_tb * 1024),
            },
            "createTime": _now_iso(),
        }

    def _source_name(self, source: str) -> str:
        """The ``masterInstanceName`` of a replica of ``source``'s database."""
        if self._fleet.regions[source].database.cloud is Cloud.GCP:
            return instance_name(source)
        return source_instance_name(source)

    def _set_role_locked(self, rid: str, role: DbRole, source: str | None) -> None:
        name = instance_name(rid)
        inst = self._instances.get(name) or self._base_instance(name, rid)
        self._instances[name] = inst
        for key in ("masterInstanceName", "replicaConfiguration"):
            inst.pop(key, None)
        if role is DbRole.WRITE_PRIMARY or source is None:
            inst["instanceType"] = "CLOUD_SQL_INSTANCE"
        else:
            master = self._source_name(source)
            if master not in self._instances and source not in self._sql_regions:
                db_cloud = self._fleet.regions[source].database.cloud
                self._instances[master] = {
                    "kind": "sql#instance",
                    "name": master,
                    "project": self._project,
                    "region": self._sql_region(source),
                    "databaseVersion": _PG_VERSION,
                    "instanceType": "ON_PREMISES_INSTANCE",
                    "state": "RUNNABLE",
                    "onPremisesConfiguration": {
                        "kind": "sql#onPremisesConfiguration",
                        "hostPort": f"pg-{source}.{db_cloud.value}.voltage.internal:5432",
                    },
                    "selfLink": f"https://sqladmin.googleapis.com/v1/projects/{self._project}/instances/{master}",
                }
            inst["instanceType"] = "READ_REPLICA_INSTANCE"
            inst["masterInstanceName"] = master
            inst["replicaConfiguration"] = {"kind": "sql#replicaConfiguration", "failoverTarget": False}
        self._published.role[rid] = (role, source if role is DbRole.READ_REPLICA else None)

    def _replica_names(self, rid: str) -> list[str]:
        master = instance_name(rid)
        names = [n for n, i in self._instances.items() if i.get("masterInstanceName") == master]
        return sorted(
            names,
            key=lambda n: (
                (0, int(n.rsplit("-r", 1)[1])) if re.fullmatch(rf"{re.escape(master)}-r\d+", n) else (1, 0)
            ),
        )

    def _set_replicas_locked(self, rid: str, count: int) -> None:
        master = instance_name(rid)
        have = self._replica_names(rid)
        if len(have) < count:
            k = 1
            for _ in range(count - len(have)):
                while f"{master}-r{k}" in self._instances:
                    k += 1
                self._instances[f"{master}-r{k}"] = self._replica(f"{master}-r{k}", rid, master)
        elif len(have) > count:
            for name in reversed(have[count:]):
                del self._instances[name]
        self._published.replicas[rid] = count

    def _replica(
        self, name: str, rid: str, master: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        inst = self._base_instance(name, rid)
        if body and isinstance(body.get("settings"), dict):
            inst["settings"] = {**inst["settings"], **body["settings"]}
        inst.update(
            {
                "instanceType": "READ_REPLICA_INSTANCE",
                "masterInstanceName": master,
                "replicaConfiguration": {"kind": "sql#replicaConfiguration", "failoverTarget": False},
            }
        )
        return inst

    def _region_of(self, inst: dict[str, Any]) -> str | None:
        """The region whose database an instance is (or represents), if any."""
        name = str(inst.get("name", ""))
        for prefix in ("src-pg-", "pg-"):
            if name.startswith(prefix) and name[len(prefix) :] in self._fleet.regions:
                return name[len(prefix) :]
        host = str((inst.get("onPremisesConfiguration") or {}).get("hostPort", "")).split(".", 1)[0]
        if host.startswith("pg-") and host[3:].split(":", 1)[0] in self._fleet.regions:
            return host[3:].split(":", 1)[0]
        return None

    # -- publish / collect ------------------------------------------------------------------------

    def publish(self, world: World) -> None:
        """Write the world's node pools, database roles, states and replica counts into the emulator."""
        dbs = {r.region: r for r in world.observe() if isinstance(r, DatabaseState)}
        with self._lock:
            for name, pool in self._pools.items():
                if ("pool", name) in self._dirty:
                    continue  # a client's write since collect: the next collect's
                lo, hi = world.node_bounds(name)
                pool.min_nodes, pool.max_nodes, pool.nodes, pool.enabled = lo, hi, world.nodes(name), True
                self._published.pools[name] = (lo, hi, pool.nodes)
            for rid in self._sql_regions:
                d = dbs.get(rid)
                if d is None:
                    continue
                if ("role", rid) not in self._dirty and self._published.role.get(rid) != (
                    d.role,
                    d.replicates_from if d.role is DbRole.READ_REPLICA else None,
                ):
                    self._set_role_locked(rid, d.role, d.replicates_from)
                if ("replicas", rid) not in self._dirty:
                    self._set_replicas_locked(rid, d.read_replicas)
                state = "RUNNABLE" if d.available else "FAILED"
                for name in [instance_name(rid), *self._replica_names(rid)]:
                    self._instances[name]["state"] = state

    def collect(self, world: World) -> None:
        """Apply to the world what clients changed since the last publish (refusals are logged)."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            for kind, key in sorted(dirty):
                if kind == "pool":
                    self._collect_pool(world, key)
                elif kind == "role":
                    self._collect_role(world, key)
            for kind, key in sorted(dirty):
                if kind == "replicas":
                    count = len(self._replica_names(key))
                    if count != self._published.replicas.get(key):
                        self._apply(
                            f"read replicas of pg-{key}", partial(world.set_read_replicas, key, count)
                        )
                    self._published.replicas.pop(key, None)

    def _apply(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except UsageError as exc:
            log.warning("ignored a client's GCP change (%s): %s", what, exc)

    def _collect_pool(self, world: World, cluster: str) -> None:
        pool = self._pools[cluster]
        published = self._published.pools.pop(cluster, None)
        if published is None:
            return
        if not pool.enabled:
            log.warning(
                "ignored a client's GCP change (autoscaling of %s/%s turned off): the sandbox's "
                "clusters always autoscale",
                cluster,
                NODE_POOL,
            )
        if (pool.min_nodes, pool.max_nodes) != published[:2]:
            lo, hi = pool.min_nodes, pool.max_nodes
            self._apply(
                f"node pool bounds of {cluster}", partial(world.set_cluster_node_bounds, cluster, lo, hi)
            )
        if pool.nodes != published[2]:
            n = pool.nodes
            self._apply(f"node pool size of {cluster}", partial(world.set_cluster_nodes, cluster, n))

    def _collect_role(self, world: World, rid: str) -> None:
        inst = self._instances.get(instance_name(rid))
        published = self._published.role.pop(rid, None)
        if inst is None or published is None:
            return
        if inst["instanceType"] == "CLOUD_SQL_INSTANCE" and published[0] is DbRole.READ_REPLICA:
            self._apply(f"promote pg-{rid}", partial(world.promote_replica, rid))
        elif inst["instanceType"] == "READ_REPLICA_INSTANCE":
            master = self._instances.get(str(inst.get("masterInstanceName")))
            source = self._region_of(master) if master is not None else None
            if source is None:
                log.warning(
                    "ignored a client's GCP change (demote pg-%s): its source %s is no region's database",
                    rid,
                    inst.get("masterInstanceName"),
                )
            elif published != (DbRole.READ_REPLICA, source):
                self._apply(f"demote pg-{rid}", partial(world.demote_to_replica, rid, source))

    # -- HTTP -------------------------------------------------------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        self.calls += 1
        path = urlsplit(req.path).path
        m = re.match(r"/v1/projects/([^/]+)/", path)
        fault = self.faults.take(
            FaultRequest(
                client=req.headers.get("Authorization", "") or "", scope=m.group(1) if m else "", path=path
            )
        )
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        headers: dict[str, str] = {}
        malformed = False
        if fault is not None and fault.kind == "slow":
            fault.stall()
            fault = None
        try:
            if fault is not None and fault.kind == "throttled":
                if fault.param("retry_after", None) is not None:
                    headers["Retry-After"] = str(fault.param("retry_after", 1))
                raise _Error(
                    429,
                    f"Quota exceeded for quota metric 'Requests' of service for consumer "
                    f"'project_number:{self._project}'.",
                )
            if fault is not None and fault.kind == "forbidden":
                raise _Error(403, "The caller does not have permission")
            malformed = fault is not None and fault.kind == "malformed"
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                raise _Error(400, "Invalid JSON payload received.") from None
            if not isinstance(body, dict):
                raise _Error(400, "Invalid JSON payload received: the body must be an object.")
            status, answer = self._route(req.command, path, body)
        except _Error as err:
            status = err.status
            answer = {
                "error": {
                    "code": err.status,
                    "message": err.message,
                    "status": _STATUS.get(err.status, "UNKNOWN"),
                    "errors": [
                        {
                            "message": err.message,
                            "domain": "global",
                            "reason": _REASON.get(err.status, "backendError"),
                        }
                    ],
                }
            }
        data = json.dumps(answer).encode()
        if malformed:
            data = data[: len(data) // 2]
        req.send_response(status)
        req.send_header("Content-Type", "application/json; charset=UTF-8")
        req.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            req.send_header(key, value)
        req.end_headers()
        req.wfile.write(data)

    def _route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if m := _POOL.fullmatch(path):
                project, location, cluster, pool_id, verb = m.groups()
                return 200, self._node_pools(method, project, location, cluster, pool_id, verb, body)
            if m := _GKE_OP.fullmatch(path):
                self._check_project(m.group(1))
                op = self._gke_ops.get(m.group(3))
                if method != "GET" or op is None:
                    raise _Error(404, f'Operation "{m.group(3)}" not found.')
                return 200, op
            if m := _SQL_OP.fullmatch(path):
                self._check_project(m.group(1))
                op = self._sql_ops.get(m.group(2))
                if method != "GET" or op is None:
                    raise _Error(404, f"The operation {m.group(2)} does not exist.")
                return 200, op
            if m := _SQL.fullmatch(path):
                return 200, self._sql(method, m.group(1), m.group(2), m.group(3), body)
        raise _Error(404, f"The requested URL {path} was not found on this server (method {method}).")

    def _check_project(self, project: str) -> None:
        if project != self._project:
            raise _Error(403, f"Permission denied on resource project {project}.")

    # -- GKE --------------------------------------------------------------------------------------

    def _node_pools(
        self,
        method: str,
        project: str,
        location: str,
        cluster: str,
        pool_id: str | None,
        verb: str | None,
        body: dict[str, Any],
    ) -> dict[str, Any]:
        self._check_project(project)
        pool = self._pools.get(cluster)
        if pool is None or pool.location != location:
            raise _Error(404, f"Not found: projects/{project}/locations/{location}/clusters/{cluster}.")
        if pool_id is None:
            if method != "GET" or verb is not None:
                raise _Error(400, "Only listing the node pools of a cluster is served.")
            return {"nodePools": [self._pool_json(pool)]}
        if pool_id != NODE_POOL:
            raise _Error(
                404,
                f"Not found: projects/{project}/locations/{location}/clusters/{cluster}/nodePools/{pool_id}.",
            )
        if method == "GET" and verb is None:
            return self._pool_json(pool)
        if method != "POST" or verb not in ("setAutoscaling", "setSize"):
            raise _Error(400, f"Method {method} {verb or ''} is not served for node pools by the sandbox.")
        if verb == "setAutoscaling":
            spec = body.get("autoscaling")
            if not isinstance(spec, dict):
                raise _Error(400, "autoscaling is required.")
            enabled = bool(spec.get("enabled", False))
            lo = _int(spec.get("totalMinNodeCount", spec.get("minNodeCount", 0)), "minNodeCount")
            hi = _int(spec.get("totalMaxNodeCount", spec.get("maxNodeCount", 0)), "maxNodeCount")
            if enabled and (lo < 0 or hi < 1 or lo > hi or hi > 1000):
                raise _Error(
                    400,
                    f"Invalid autoscaling limits: minNodeCount={lo}, maxNodeCount={hi} "
                    "(need 0 <= min <= max, 1 <= max <= 1000).",
                )
            pool.enabled = enabled
            if enabled:
                pool.min_nodes, pool.max_nodes = lo, hi
            op_type = "UPDATE_CLUSTER"
        else:
            n = _int(body.get("nodeCount", 0), "nodeCount")
            if n < 0:
                raise _Error(400, f"nodeCount must be non-negative, got {n}.")
            pool.nodes = n
            op_type = "SET_NODE_POOL_SIZE"
        self._dirty.add(("pool", cluster))
        return self._gke_operation(op_type, project, location, cluster)

    def _pool_json(self, pool: _Pool) -> dict[str, Any]:
        base = (
            f"https://container.googleapis.com/v1/projects/{self._project}/locations/{pool.location}"
            f"/clusters/{pool.cluster}"
        )
        return {
            "name": NODE_POOL,
            "config": {"machineType": pool.machine_type, "diskSizeGb": 100, "imageType": "COS_CONTAINERD"},
            "initialNodeCount": pool.nodes,
            "locations": [f"{pool.location}-a"],
            "selfLink": f"{base}/nodePools/{NODE_POOL}",
            "version": _GKE_VERSION,
            "status": "RUNNING",
            "autoscaling": {
                "enabled": pool.enabled,
                "minNodeCount": pool.min_nodes,
                "maxNodeCount": pool.max_nodes,
                "locationPolicy": "BALANCED",
            },
            "management": {"autoUpgrade": True, "autoRepair": True},
            "etag": f"{pool.min_nodes}-{pool.max_nodes}-{pool.nodes}-{int(pool.enabled)}",
        }

    def _gke_operation(self, op_type: str, project: str, location: str, cluster: str) -> dict[str, Any]:
        name = f"operation-{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}"
        now = _now_iso()
        op = {
            "name": name,
            "zone": location,
            "location": location,
            "operationType": op_type,
            "status": "DONE",
            "selfLink": f"https://container.googleapis.com/v1/projects/{project}/locations/{location}/operations/{name}",
            "targetLink": f"https://container.googleapis.com/v1/projects/{project}/locations/{location}/clusters/"
            f"{cluster}/nodePools/{NODE_POOL}",
            "startTime": now,
            "endTime": now,
        }
        self._gke_ops[name] = op
        return op

    # -- Cloud SQL --------------------------------------------------------------------------------

    def _sql(
        self, method: str, project: str, name: str | None, verb: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        self._check_project(project)
        if name is None:
            if method == "GET":
                return {
                    "kind": "sql#instancesList",
                    "items": [self._instance_json(n) for n in sorted(self._instances)],
                }
            if method == "POST":
                return self._insert(body)
            raise _Error(400, f"Method {method} is not served on instances by the sandbox.")
        inst = self._instances.get(name)
        if inst is None:
            raise _Error(404, f"The Cloud SQL instance {name} does not exist.")
        if verb is None and method == "GET":
            return self._instance_json(name)
        if verb is None and method == "DELETE":
            return self._delete(inst)
        if method == "POST" and verb == "promoteReplica":
            return self._promote(inst)
        if method == "POST" and verb == "demote":
            return self._demote(inst, body)
        raise _Error(400, f"Method {method} {verb or ''} is not served on instances by the sandbox.")

    def _instance_json(self, name: str) -> dict[str, Any]:
        inst = json.loads(json.dumps(self._instances[name]))
        replicas = sorted(n for n, i in self._instances.items() if i.get("masterInstanceName") == name)
        if replicas:
            inst["replicaNames"] = replicas
        return dict(inst)

    def _insert(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9-]{0,97}", name):
            raise _Error(
                400,
                "Invalid request: instance name must start with a letter and contain only "
                "lowercase letters, digits and hyphens.",
            )
        if name in self._instances:
            raise _Error(409, f"The Cloud SQL instance {name} already exists.")
        if body.get("instanceType") == "ON_PREMISES_INSTANCE" or "onPremisesConfiguration" in body:
            conf = body.get("onPremisesConfiguration")
            if not isinstance(conf, dict) or not conf.get("hostPort"):
                raise _Error(
                    400,
                    "Invalid request: onPremisesConfiguration.hostPort is required for a "
                    "source representation instance.",
                )
            self._instances[name] = {
                "kind": "sql#instance",
                "name": name,
                "project": self._project,
                "region": str(body.get("region", "")),
                "databaseVersion": str(body.get("databaseVersion", _PG_VERSION)),
                "instanceType": "ON_PREMISES_INSTANCE",
                "state": "RUNNABLE",
                "onPremisesConfiguration": {
                    "kind": "sql#onPremisesConfiguration",
                    "hostPort": str(conf["hostPort"]),
                },
                "selfLink": f"https://sqladmin.googleapis.com/v1/projects/{self._project}/instances/{name}",
            }
            return self._sql_operation("CREATE", name)
        master_name = body.get("masterInstanceName")
        if not master_name:
            raise _Error(
                400,
                "The sandbox can only create read replicas (masterInstanceName) and source "
                "representation instances, not new primary instances.",
            )
        master = self._instances.get(str(master_name))
        if master is None:
            raise _Error(404, f"The Cloud SQL instance {master_name} does not exist.")
        rid = self._region_of(master)
        if master.get("instanceType") == "ON_PREMISES_INSTANCE" or rid not in self._sql_regions:
            raise _Error(
                400,
                f"Invalid request: {master_name} cannot have Cloud SQL read replicas in the "
                "sandbox (only a region's pg-<region> can).",
            )
        self._instances[name] = self._replica(name, rid, str(master_name), body)
        self._instances[name]["state"] = master.get("state", "RUNNABLE")
        self._dirty.add(("replicas", rid))
        return self._sql_operation("CREATE_REPLICA", name)

    def _delete(self, inst: dict[str, Any]) -> dict[str, Any]:
        name = str(inst["name"])
        if any(i.get("masterInstanceName") == name for i in self._instances.values()):
            raise _Error(400, f"The instance {name} has read replicas: delete or promote them first.")
        regional = {instance_name(r) for r in self._sql_regions}
        if inst.get("instanceType") == "CLOUD_SQL_INSTANCE" or name in regional:
            raise _Error(400, f"The sandbox cannot delete a region's database {name}.")
        del self._instances[name]
        rid = self._region_of(self._instances.get(str(inst.get("masterInstanceName")), {}))
        if inst.get("instanceType") == "READ_REPLICA_INSTANCE" and rid is not None:
            self._dirty.add(("replicas", rid))
        return self._sql_operation("DELETE", name)

    def _promote(self, inst: dict[str, Any]) -> dict[str, Any]:
        name = str(inst["name"])
        if inst.get("instanceType") != "READ_REPLICA_INSTANCE":
            raise _Error(400, f"The instance {name} is not a read replica.")
        rid = self._region_of(inst)
        if rid is None or instance_name(rid) != name:
            raise _Error(
                400,
                f"The sandbox promotes only a region's database pg-<region>, not {name} "
                "(its replicas are counted, not modelled one by one).",
            )
        inst["instanceType"] = "CLOUD_SQL_INSTANCE"
        inst.pop("masterInstanceName", None)
        inst.pop("replicaConfiguration", None)
        self._dirty.add(("role", rid))
        return self._sql_operation("PROMOTE_REPLICA", name)

    def _demote(self, inst: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        name = str(inst["name"])
        ctx = body.get("demoteContext")
        source_name = ctx.get("sourceRepresentativeInstanceName") if isinstance(ctx, dict) else None
        if not source_name:
            raise _Error(400, "Invalid request: demoteContext.sourceRepresentativeInstanceName is required.")
        if inst.get("instanceType") != "CLOUD_SQL_INSTANCE":
            raise _Error(400, f"The instance {name} is not a standalone primary instance.")
        source = self._instances.get(str(source_name))
        if source is None:
            raise _Error(404, f"The Cloud SQL instance {source_name} does not exist.")
        if source.get("instanceType") != "ON_PREMISES_INSTANCE":
            raise _Error(
                400,
                f"Invalid request: {source_name} is not a source representation instance "
                "(instanceType ON_PREMISES_INSTANCE).",
            )
        rid = self._region_of(inst)
        if rid is None or instance_name(rid) != name:
            raise _Error(400, f"The sandbox demotes only a region's database pg-<region>, not {name}.")
        inst["instanceType"] = "READ_REPLICA_INSTANCE"
        inst["masterInstanceName"] = str(source_name)
        inst["replicaConfiguration"] = {"kind": "sql#replicaConfiguration", "failoverTarget": False}
        self._dirty.add(("role", rid))
        return self._sql_operation("DEMOTE", name)

    def _sql_operation(self, op_type: str, target: str) -> dict[str, Any]:
        name = str(uuid.uuid4())
        now = _now_iso()
        op = {
            "kind": "sql#operation",
            "name": name,
            "operationType": op_type,
            "status": "DONE",
            "targetId": target,
            "targetProject": self._project,
            "user": "sandbox@voltage.internal",
            "insertTime": now,
            "startTime": now,
            "endTime": now,
            "selfLink": f"https://sqladmin.googleapis.com/v1/projects/{self._project}/operations/{name}",
            "targetLink": f"https://sqladmin.googleapis.com/v1/projects/{self._project}/instances/{target}",
        }
        self._sql_ops[name] = op
        return op


def _int(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _Error(400, f"Invalid value for {what}: {value!r}.") from None
