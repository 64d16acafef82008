"""A local Azure Resource Manager (AKS agent pools, PostgreSQL flexible servers) in front of the world.

Why this module exists: the playbooks change AKS node pools and Azure Database for PostgreSQL through
the official management SDKs (``azure-mgmt-containerservice``, ``azure-mgmt-postgresqlflexibleservers``;
the project's modules in ``playbooks/library/``). On the sandbox they talk to this emulator instead of
``https://management.azure.com``: it serves the ARM REST paths those SDKs call, on 127.0.0.1 over plain
http, seeded and kept up to date from the world; what clients write is applied to the world by
:meth:`AzureAdminEmulator.collect` (the :class:`~opsconsole.sandbox.emulator.Emulator` protocol).

How to use it (the local cloud does this; a test can too)::

    emulator = AzureAdminEmulator(fleet)
    ep = emulator.start()            # Endpoints(urls={"azure_admin": "http://127.0.0.1:PORT"},
                                     #           settings={"subscription": "..."})
    client = ContainerServiceClient(credential, ep.settings["subscription"], base_url=ep.urls["azure_admin"],
                                    authentication_policy=<a policy that sets "Authorization: Bearer ...">)
    emulator.collect(world); emulator.publish(world)

Every request needs ``Authorization: Bearer <anything>`` (401 ``AuthenticationFailed`` otherwise) and an
``api-version`` query parameter (400 ``MissingApiVersionParameter``); any dated version is accepted, the
shapes served are those of the installed SDKs' defaults (AKS ``2026-08-01``, PostgreSQL ``2026-10-01``).
Paths are ``/subscriptions/{sub}/resourceGroups/rg-voltage-<region>/providers/...``; another subscription
is 404 ``SubscriptionNotFound``, an unknown resource group 404 ``ResourceGroupNotFound``, an unknown
resource 404 ``ResourceNotFound``; errors are ARM's ``{"error": {"code", "message"}}``.

AKS (``Microsoft.ContainerService/managedClusters/{cluster}/agentPools/{pool}``), for every cluster of the
fleet whose cloud is Azure, in the resource group of its region: one agent pool ``nodepool1``
(VirtualMachineScaleSets, mode System, autoscaling on). ``GET`` one, ``GET`` the list, ``PUT``
(create_or_update of ``count``, ``minCount``, ``maxCount``, ``enableAutoScaling``) answered 200 with
``provisioningState: Succeeded``, so the SDK's ``begin_create_or_update(...).result()`` completes at once.
``count`` / ``minCount`` / ``maxCount`` are published from ``world.nodes`` / ``world.node_bounds``; a
client's new min/max become ``world.set_cluster_node_bounds``, a new count ``world.set_cluster_nodes``.

PostgreSQL flexible servers (``Microsoft.DBforPostgreSQL/flexibleServers``): ``pg-<region>`` for every
region whose inventory database runs on Azure, and its read replicas ``pg-<region>-r<K>`` (K = 1..n, same
resource group and location). ``GET`` one, ``GET`` the resource group's list, ``GET .../replicas``
(servers whose ``sourceServerResourceId`` is this server), ``PUT`` with ``createMode: Replica`` and
``sourceServerResourceId`` (create a read replica), ``DELETE``, ``PATCH`` with ``replica.promoteMode:
Standalone`` (the promote of API 2023-06-01 and later; ``replicationRole: None`` is accepted too). These
are long-running in ARM: 202 with ``Azure-AsyncOperation`` (and ``Location``) headers, whose operation
answers ``Succeeded`` at once; the SDK's poller then reads the resource. The emulator publishes:

* ``replicationRole``: ``Primary`` for the world's write primary (it always has read replicas),
  ``GeoAsyncReplica`` for a region's database that replicates from another region, ``AsyncReplica`` for
  ``pg-<region>-r<K>``; ``sourceServerResourceId`` for replicas;
* a replica of **another cloud's** primary (e.g. ``pg-sa-east-1`` of RDS ``pg-us-east-1``) is modelled as
  a geo replica whose ``sourceServerResourceId`` is the ARM-shaped id the source would have
  (``.../rg-voltage-<source>/.../flexibleServers/pg-<source>``); that server is not served (404) unless the
  source region's database is Azure too. Azure itself cannot replicate from RDS or Cloud SQL.
* ``state``: ``Ready``, or ``Disabled`` while the world says the database is unavailable.

Client changes → world: a count of ``pg-<region>-r<K>`` different from the published one →
``world.set_read_replicas``; a ``pg-<region>`` promoted from replica → ``world.promote_replica``; a
``pg-<region>`` **re-created** as a replica of ``pg-<source>`` → ``world.demote_to_replica(region,
source)``. Azure has no in-place demote: a failback deletes the promoted server and creates it again with
``createMode: Replica`` from the source (a full re-seed), which is what the emulator accepts; while it is
deleted, the emulator does not publish it back (the world has no "deleted database" state).

A change the world refuses (a :class:`~opsconsole.core.errors.UsageError`, e.g. node bounds outside the
fleet's) is logged and the world's state is published back: the client sees its change undone. A
resource written by a client is not overwritten by a publish until the next collect has taken it.

Faults (``emulator.faults``; a request's ``FaultRequest`` has the bearer token as ``client`` and the
resource group as ``scope``): ``"down"`` closes the listening socket until cleared; ``"slow"`` delays
answers by ``seconds``; ``"forbidden"`` answers 403 ``AuthorizationFailed`` naming the action and scope;
``"throttled"`` answers 429 ``TooManyRequests`` with ``Retry-After`` (``retry_after=``, default 1 s) to the
next ``count`` requests (default 3; the SDKs' retry policy honours it); ``"malformed"`` truncates the body.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from opsconsole.core.errors import UsageError
from opsconsole.core.fleet.model import Cloud, ClusterSpec, DatabaseState, DbRole, Fleet
from opsconsole.sandbox.azure_monitor import DEFAULT_SUBSCRIPTION, resource_group
from opsconsole.sandbox.emulator import (
    FAULT_KINDS,
    Endpoints,
    FaultRequest,
    Faults,
    QuietHTTPServer,
    serve_http,
)
from opsconsole.sandbox.world import World

__all__ = ["AGENT_POOL", "MAX_REPLICAS", "AzureAdminEmulator", "agent_pool_id", "server_id"]

log = logging.getLogger(__name__)

#: The one agent pool of every AKS cluster of the fleet.
AGENT_POOL = "nodepool1"
#: Read replicas Azure allows per flexible server (``replicaCapacity``).
MAX_REPLICAS = 5
_PG = "Microsoft.DBforPostgreSQL/flexibleServers"
_AKS = "Microsoft.ContainerService/managedClusters"
_REPLICA_ROLES = ("asyncreplica", "geoasyncreplica")
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")


def agent_pool_id(subscription: str, region: str, cluster: str, pool: str = AGENT_POOL) -> str:
    """The ARM id of an AKS cluster's agent pool."""
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group(region)}/providers/{_AKS}/{cluster}"
        f"/agentPools/{pool}"
    )


def server_id(subscription: str, region: str, name: str) -> str:
    """The ARM id of a flexible server ``name`` in the resource group of ``region``."""
    return f"/subscriptions/{subscription}/resourceGroups/{resource_group(region)}/providers/{_PG}/{name}"


class _Served(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _not_found(kind: str, name: str, group: str) -> _Served:
    return _Served(
        404,
        "ResourceNotFound",
        f"The Resource '{kind}/{name}' under resource group '{group}' was not found. For more details "
        "please go to https://aka.ms/ARMResourceNotFoundFix",
    )


@dataclass
class _Pool:
    cluster: ClusterSpec
    count: int
    min_count: int
    max_count: int
    #: What the last publish wrote (count, min, max): a client's change differs from it.
    published: tuple[int, int, int] = (0, 0, 0)
    #: Written by a client since the last collect (a publish leaves it alone until then).
    dirty: bool = False


@dataclass
class _Server:
    name: str
    region: str  # the fleet region whose resource group holds it
    location: str
    role: str  # Primary | None | AsyncReplica | GeoAsyncReplica
    source: str | None  # sourceServerResourceId
    storage_gb: int
    available: bool = True
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class _Db:
    """One region's Azure database: its server and read replicas, as clients and publishes wrote them."""

    region: str
    location: str
    storage_gb: int
    #: What the last publish wrote: (role, source region) and the read replica count.
    published_role: tuple[DbRole, str | None] | None = None
    published_replicas: int | None = None
    #: Client writes since the last collect.
    role_dirty: bool = False
    replicas_dirty: bool = False
    #: The client deleted pg-<region> and has not created it again (a failback in progress).
    deleted: bool = False


class AzureAdminEmulator:
    """ARM for AKS agent pools and PostgreSQL flexible servers on 127.0.0.1 (see the module docstring).

    Args:
        fleet: the fleet whose Azure clusters and Azure-hosted databases are served.
        subscription: the subscription of every resource (the Azure Monitor emulator's by default).
    """

    name = "azure_admin"

    def __init__(self, fleet: Fleet, *, subscription: str = DEFAULT_SUBSCRIPTION) -> None:
        self._fleet = fleet
        self._sub = subscription
        self._lock = threading.RLock()
        self.faults = Faults("Azure Resource Manager", on_down=self._set_down, kinds=FAULT_KINDS[:-1])
        self._server: QuietHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self.calls = 0
        #: cluster → its agent pool
        self._pools: dict[str, _Pool] = {}
        #: region → its database's bookkeeping
        self._dbs: dict[str, _Db] = {}
        #: (resource group lower, server name lower) → server
        self._servers: dict[tuple[str, str], _Server] = {}
        self._regions_by_group = {resource_group(r).lower(): r for r in fleet.regions}
        self._seed()

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Endpoints:
        if self._server is None:
            self._serve(self._port)
        return Endpoints(
            urls={"azure_admin": f"http://127.0.0.1:{self._port}"}, settings={"subscription": self._sub}
        )

    def _serve(self, port: int) -> None:
        self._server, self._thread = serve_http(
            "Azure admin", port, self._handle, methods=("GET", "PUT", "PATCH", "DELETE", "POST"),
            thread_name="azure-admin",
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

    # -- seed, publish, collect -------------------------------------------------------------------

    def _azure_db_regions(self) -> list[str]:
        return [r.id for r in self._fleet.regions.values() if r.database.cloud is Cloud.AZURE]

    def _seed(self) -> None:
        for c in self._fleet.clusters.values():
            if c.cloud is Cloud.AZURE:
                self._pools[c.name] = _Pool(c, c.nodes.min, c.nodes.min, c.nodes.max)
        for rid in self._azure_db_regions():
            spec = self._fleet.regions[rid]
            location = spec.cloud_regions.get(Cloud.AZURE, rid)
            db = _Db(rid, location, spec.database.storage_tb * 1024)
            self._dbs[rid] = db
            role = spec.database.role
            self._put_main(db, role, spec.database.replicates_from, available=True)
            self._sync_replicas(db, spec.database.read_replicas, available=True)

    def _key(self, region: str, name: str) -> tuple[str, str]:
        return (resource_group(region).lower(), name.lower())

    def _put_main(self, db: _Db, role: DbRole, source: str | None, *, available: bool) -> None:
        name = f"pg-{db.region}"
        replica = role is DbRole.READ_REPLICA and source is not None
        self._servers[self._key(db.region, name)] = _Server(
            name=name,
            region=db.region,
            location=db.location,
            role="GeoAsyncReplica" if replica else "Primary",
            source=server_id(self._sub, source, f"pg-{source}") if replica and source else None,
            storage_gb=db.storage_gb,
            available=available,
        )

    def _replica_names(self, region: str) -> list[str]:
        """``pg-<region>-r<K>`` servers that exist, by K."""
        pattern = re.compile(rf"pg-{re.escape(region)}-r(\d+)")
        found = [
            (int(m.group(1)), s.name)
            for s in self._servers.values()
            if s.region == region and (m := pattern.fullmatch(s.name))
        ]
        return [name for _, name in sorted(found)]

    def _sync_replicas(self, db: _Db, count: int, *, available: bool) -> None:
        names = self._replica_names(db.region)
        main = server_id(self._sub, db.region, f"pg-{db.region}")
        used = {int(n.rsplit("-r", 1)[1]) for n in names}
        k = 1
        for _ in range(max(0, count - len(names))):
            while k in used:
                k += 1
            used.add(k)
            name = f"pg-{db.region}-r{k}"
            self._servers[self._key(db.region, name)] = _Server(
                name, db.region, db.location, "AsyncReplica", main, db.storage_gb, available
            )
        for name in names[count:][::-1] if len(names) > count else []:
            self._servers.pop(self._key(db.region, name), None)
        for name in self._replica_names(db.region):
            self._servers[self._key(db.region, name)].available = available

    def publish(self, world: World) -> None:
        """Write the world's node pools and databases (resources a client wrote since the last collect
        are left for that collect)."""
        dbs = {r.region: r for r in world.observe() if isinstance(r, DatabaseState)}
        with self._lock:
            for pool in self._pools.values():
                if pool.dirty:
                    continue
                lo, hi = world.node_bounds(pool.cluster.name)
                pool.count, pool.min_count, pool.max_count = world.nodes(pool.cluster.name), lo, hi
                pool.published = (pool.count, lo, hi)
            for rid, db in self._dbs.items():
                state = dbs.get(rid)
                if state is None:
                    continue
                role = (state.role, state.replicates_from if state.role is DbRole.READ_REPLICA else None)
                if not db.role_dirty and not db.deleted:
                    main = self._servers.get(self._key(rid, f"pg-{rid}"))
                    if main is None or db.published_role != role or main.available != state.available:
                        self._put_main(db, role[0], role[1], available=state.available)
                    db.published_role = role
                if not db.replicas_dirty:
                    self._sync_replicas(db, state.read_replicas, available=state.available)
                    db.published_replicas = state.read_replicas

    def collect(self, world: World) -> None:
        """Apply to the world what clients changed since the last publish (refusals are logged)."""
        with self._lock:
            for pool in self._pools.values():
                if pool.dirty:
                    self._collect_pool(world, pool)
                    pool.dirty = False
            for db in self._dbs.values():
                if db.role_dirty:
                    self._collect_role(world, db)
                    db.role_dirty = False
                if db.replicas_dirty:
                    count = len(self._replica_names(db.region))
                    if count != db.published_replicas:
                        self._apply(
                            f"read replicas of pg-{db.region}",
                            partial(world.set_read_replicas, db.region, count),
                        )
                    db.replicas_dirty = False

    @staticmethod
    def _apply(what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except UsageError as exc:
            log.warning("ignored a client's Azure change (%s): %s", what, exc)

    def _collect_pool(self, world: World, pool: _Pool) -> None:
        name = pool.cluster.name
        count, lo, hi = pool.published
        if (pool.min_count, pool.max_count) != (lo, hi):
            self._apply(
                f"AKS {name}/{AGENT_POOL} bounds",
                lambda: world.set_cluster_node_bounds(name, pool.min_count, pool.max_count),
            )
        if pool.count != count and pool.count != world.nodes(name):
            self._apply(f"AKS {name}/{AGENT_POOL} count", lambda: world.set_cluster_nodes(name, pool.count))

    def _collect_role(self, world: World, db: _Db) -> None:
        main = self._servers.get(self._key(db.region, f"pg-{db.region}"))
        if main is None or db.published_role is None:
            return
        was_replica = db.published_role[0] is DbRole.READ_REPLICA
        if main.role.lower() in _REPLICA_ROLES and main.source is not None:
            source = self._region_of(main.source)
            if source is not None and (not was_replica or db.published_role[1] != source):
                self._apply(
                    f"demote pg-{db.region} under pg-{source}",
                    lambda: world.demote_to_replica(db.region, source),
                )
        elif was_replica:
            self._apply(f"promote pg-{db.region}", lambda: world.promote_replica(db.region))

    def _region_of(self, source_id: str) -> str | None:
        """The fleet region of a ``pg-<region>`` server id (None if it is not one)."""
        m = re.fullmatch(
            r"/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.DBforPostgreSQL/"
            r"flexibleServers/([^/]+)",
            source_id.strip(),
            flags=re.IGNORECASE,
        )
        if m is None or m.group(1).lower() != self._sub.lower():
            return None
        region = self._regions_by_group.get(m.group(2).lower())
        if region is None or m.group(3).lower() != f"pg-{region}":
            return None
        return region

    # -- HTTP -------------------------------------------------------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        self.calls += 1
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        auth = req.headers.get("Authorization", "")
        parts = urlsplit(req.path)
        segments = [unquote(s) for s in parts.path.split("/") if s]
        group = segments[3] if len(segments) > 3 and segments[2].lower() == "resourcegroups" else ""
        fault = self.faults.take(
            FaultRequest(client=auth.removeprefix("Bearer ").strip(), scope=group, path=req.path)
        )
        kind = fault.kind if fault is not None else None
        try:
            if fault is not None and kind == "slow":
                fault.stall()
            if fault is not None and kind == "forbidden":
                action = "/".join(s for i, s in enumerate(segments[5:]) if i == 0 or i % 2 == 1)
                verb = {"GET": "read", "DELETE": "delete"}.get(req.command, "write")
                raise _Served(
                    403,
                    "AuthorizationFailed",
                    "The client does not have authorization to perform action "
                    f"'{action or 'Microsoft.Resources'}/{verb}' over scope '{parts.path}' "
                    "or the scope is invalid.",
                )
            if fault is not None and kind == "throttled":
                after = fault.param("retry_after", 1)
                raise _Served(
                    429,
                    "TooManyRequests",
                    "The request is being throttled as the limit has been reached for operation type "
                    f"'{req.command}' (sandbox fault).",
                    {"Retry-After": str(after)},
                )
            if not auth.startswith("Bearer ") or not auth.removeprefix("Bearer ").strip():
                raise _Served(
                    401,
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing or not a bearer token.",
                )
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            version = query.get("api-version", "")
            if not version:
                raise _Served(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            if not _API_VERSION.fullmatch(version):
                raise _Served(400, "InvalidApiVersionParameter", f"The api-version '{version}' is invalid.")
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                raise _Served(
                    400, "InvalidRequestContent", "The request content is not valid JSON."
                ) from None
            if not isinstance(body, dict):
                raise _Served(400, "InvalidRequestContent", "The request content must be a JSON object.")
            host = req.headers.get("Host") or f"127.0.0.1:{self._port}"
            with self._lock:
                status, answer, headers = self._route(req.command, segments, body, f"http://{host}", version)
        except _Served as exc:
            payload = json.dumps({"error": {"code": exc.code, "message": exc.message}}).encode()
            self._send(req, exc.status, payload, exc.headers)
            return
        except Exception as exc:  # a bug must answer 500, not hang the client
            log.exception("azure admin emulator failed")
            payload = json.dumps({"error": {"code": "InternalServerError", "message": str(exc)}}).encode()
            self._send(req, 500, payload, {})
            return
        payload = json.dumps(answer).encode() if answer is not None else b""
        if kind == "malformed" and payload:
            payload = payload[: max(1, len(payload) // 2)]
        self._send(req, status, payload, headers)

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, payload: bytes, headers: dict[str, str]) -> None:
        try:
            req.send_response(status)
            if payload:
                req.send_header("Content-Type", "application/json; charset=utf-8")
            req.send_header("Content-Length", str(len(payload)))
            req.send_header("x-ms-request-id", str(uuid.uuid4()))
            for k, v in headers.items():
                req.send_header(k, v)
            req.end_headers()
            req.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            return

    def _route(
        self, method: str, seg: list[str], body: dict[str, Any], base: str, version: str
    ) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        low = [s.lower() for s in seg]
        if len(seg) < 2 or low[0] != "subscriptions":
            raise _Served(404, "NotFound", f"No route for /{'/'.join(seg)}")
        if seg[1].lower() != self._sub.lower():
            raise _Served(404, "SubscriptionNotFound", f"The subscription '{seg[1]}' could not be found.")
        # the status of a long-running operation (answered Succeeded: every change is applied at once)
        if len(seg) == 8 and low[6] == "azureasyncoperation" and low[2] == "providers" and method == "GET":
            return 200, {"name": seg[7], "status": "Succeeded"}, {}
        if len(seg) < 7 or low[2] != "resourcegroups" or low[4] != "providers":
            raise _Served(404, "NotFound", f"No route for /{'/'.join(seg)}")
        group = seg[3]
        region = self._regions_by_group.get(group.lower())
        if region is None:
            raise _Served(404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found.")
        provider = f"{low[5]}/{low[6]}"
        if len(seg) == 7 and not (provider == _PG.lower() and method == "GET"):
            raise _Served(404, "NotFound", f"The sandbox does not serve {method} /{'/'.join(seg)}.")
        if provider == _AKS.lower():
            return self._route_aks(method, seg[7:], region, group, body)
        if provider == _PG.lower() and len(seg) == 7 and method == "GET":
            servers = [s for s in self._servers.values() if s.region == region]
            return 200, {"value": [self._server_json(s) for s in sorted(servers, key=lambda s: s.name)]}, {}
        if provider == _PG.lower():
            return self._route_pg(method, seg[7:], region, group, body, base, version)
        raise _Served(
            400,
            "NoRegisteredProviderFound",
            f"No registered resource provider found for location and API version '{version}' and type "
            f"'{seg[6]}' (the sandbox serves {_AKS} and {_PG}).",
        )

    # -- AKS --------------------------------------------------------------------------------------

    def _route_aks(
        self, method: str, rest: list[str], region: str, group: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        cluster = rest[0]
        pool = self._pools.get(cluster)
        if pool is None or pool.cluster.region != region:
            raise _not_found(_AKS, cluster, group)
        if len(rest) == 2 and rest[1].lower() == "agentpools" and method == "GET":
            return 200, {"value": [self._pool_json(pool)]}, {}
        if len(rest) != 3 or rest[1].lower() != "agentpools":
            raise _Served(404, "NotFound", f"The sandbox serves only {_AKS}/{{cluster}}/agentPools.")
        if rest[2] != AGENT_POOL:
            if method == "GET":
                raise _not_found(f"{_AKS}/{cluster}/agentPools", rest[2], group)
            raise _Served(
                400,
                "InvalidParameter",
                f"The sandbox models one agent pool '{AGENT_POOL}' per AKS cluster, not '{rest[2]}'.",
            )
        if method == "GET":
            return 200, self._pool_json(pool), {}
        if method != "PUT":
            raise _Served(405, "MethodNotAllowed", f"{method} is not supported on an agent pool here.")
        return 200, self._put_pool(pool, self._body_properties(body)), {}

    @staticmethod
    def _body_properties(body: dict[str, Any]) -> dict[str, Any]:
        props = body.get("properties", {})
        if not isinstance(props, dict):
            raise _Served(400, "InvalidRequestContent", "'properties' must be an object.")
        return props

    def _put_pool(self, pool: _Pool, props: dict[str, Any]) -> dict[str, Any]:
        def number(key: str, current: int) -> int:
            value = props.get(key, current)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise _Served(
                    400, "InvalidParameter", f"'{key}' must be a non-negative integer, got {value!r}."
                )
            return value

        count = number("count", pool.count)
        lo = number("minCount", pool.min_count)
        hi = number("maxCount", pool.max_count)
        if props.get("enableAutoScaling", True) is not True:
            raise _Served(
                400,
                "InvalidParameter",
                "The sandbox's agent pools always autoscale (the world's cluster autoscaler): "
                "enableAutoScaling must be true.",
            )
        if lo > hi:
            raise _Served(
                400,
                "InvalidParameter",
                f"The value of parameter agentPoolProfile.minCount ({lo}) must be less than or equal "
                f"to agentPoolProfile.maxCount ({hi}).",
            )
        if count != pool.count and not lo <= count <= hi:
            raise _Served(
                400,
                "InvalidParameter",
                f"The value of parameter agentPoolProfile.count ({count}) must be within "
                f"minCount ({lo}) and maxCount ({hi}) when enableAutoScaling is true.",
            )
        if (count, lo, hi) != (pool.count, pool.min_count, pool.max_count):
            pool.count, pool.min_count, pool.max_count = count, lo, hi
            pool.dirty = True
        return self._pool_json(pool)

    def _pool_json(self, pool: _Pool) -> dict[str, Any]:
        c = pool.cluster
        return {
            "id": agent_pool_id(self._sub, c.region, c.name),
            "name": AGENT_POOL,
            "type": f"{_AKS}/agentPools",
            "properties": {
                "count": pool.count,
                "vmSize": c.instance_type,
                "maxPods": c.pods_per_node,
                "osType": "Linux",
                "osSKU": "Ubuntu",
                "type": "VirtualMachineScaleSets",
                "mode": "System",
                "enableAutoScaling": True,
                "minCount": pool.min_count,
                "maxCount": pool.max_count,
                "orchestratorVersion": "1.31.2",
                "currentOrchestratorVersion": "1.31.2",
                "provisioningState": "Succeeded",
                "powerState": {"code": "Running" if pool.count > 0 else "Stopped"},
                "scaleSetPriority": "Regular",
            },
        }

    # -- PostgreSQL flexible servers --------------------------------------------------------------

    def _route_pg(
        self,
        method: str,
        rest: list[str],
        region: str,
        group: str,
        body: dict[str, Any],
        base: str,
        version: str,
    ) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        name = rest[0]
        server = self._servers.get(self._key(region, name))
        if len(rest) == 2 and rest[1].lower() == "replicas" and method == "GET":
            if server is None:
                raise _not_found(_PG, name, group)
            sid = server_id(self._sub, region, server.name).lower()
            replicas = [s for s in self._servers.values() if (s.source or "").lower() == sid]
            return 200, {"value": [self._server_json(s) for s in sorted(replicas, key=lambda s: s.name)]}, {}
        if len(rest) != 1:
            raise _Served(404, "NotFound", f"The sandbox serves only {_PG}/{{name}} and its /replicas.")
        if method == "GET":
            if server is None:
                raise _not_found(_PG, name, group)
            return 200, self._server_json(server), {}
        db = self._dbs.get(region)
        if method == "DELETE":
            if server is None:
                return 204, None, {}
            self._delete_server(server, db)
            return 202, None, self._accepted(base, server.location, version)
        if method == "PATCH":
            if server is None:
                raise _not_found(_PG, name, group)
            self._patch_server(server, db, self._body_properties(body))
            return 202, None, self._accepted(base, server.location, version)
        if method == "PUT":
            created = self._put_server(server, name, region, db, body)
            return 202, None, self._accepted(base, created.location, version)
        raise _Served(405, "MethodNotAllowed", f"{method} is not supported on a flexible server.")

    def _accepted(self, base: str, location: str, version: str) -> dict[str, str]:
        op = str(uuid.uuid4())
        url = (
            f"{base}/subscriptions/{self._sub}/providers/Microsoft.DBforPostgreSQL/locations/{location}"
            f"/azureAsyncOperation/{op}?api-version={version}"
        )
        return {
            "Azure-AsyncOperation": url,
            "Location": url.replace("azureAsyncOperation", "operationResults"),
        }

    def _delete_server(self, server: _Server, db: _Db | None) -> None:
        del self._servers[self._key(server.region, server.name)]
        if db is None:
            return
        if server.name.lower() == f"pg-{db.region}":
            db.deleted = True
        else:
            db.replicas_dirty = True

    def _patch_server(self, server: _Server, db: _Db | None, props: dict[str, Any]) -> None:
        replica = props.get("replica")
        promote = isinstance(replica, dict) and str(replica.get("promoteMode", "")).lower() in (
            "standalone",
            "switchover",
        )
        if isinstance(replica, dict) and not promote and replica.get("promoteMode") is not None:
            raise _Served(
                400,
                "InvalidParameterValue",
                f"Invalid value '{replica.get('promoteMode')}' for replica.promoteMode.",
            )
        role_none = str(props.get("replicationRole", "")).lower() == "none"
        if not (promote or role_none):
            return  # other properties (tags, maintenance...) are not modelled: accepted, unchanged
        if server.role.lower() not in _REPLICA_ROLES:
            raise _Served(
                400,
                "ServerIsNotReplica",
                f"Server '{server.name}' is not a read replica: only a replica can be promoted.",
            )
        server.role, server.source = "Primary", None
        if db is not None and server.name.lower() == f"pg-{db.region}":
            db.role_dirty = True
        elif db is not None:
            db.replicas_dirty = (
                True  # a promoted pg-<region>-rK stands alone: no longer a replica of pg-<region>
            )
            self._servers.pop(self._key(server.region, server.name), None)
            server.name = f"{server.name}-standalone"
            self._servers[self._key(server.region, server.name)] = server

    def _put_server(
        self, server: _Server | None, name: str, region: str, db: _Db | None, body: dict[str, Any]
    ) -> _Server:
        props = self._body_properties(body)
        mode = str(props.get("createMode", "Default"))
        if server is not None:
            if mode.lower() in ("default", "update"):
                tags = body.get("tags")
                if isinstance(tags, dict):
                    server.tags = {str(k): str(v) for k, v in tags.items()}
                return server
            raise _Served(409, "ServerAlreadyExists", f"Server '{name}' already exists (createMode {mode}).")
        if mode.lower() != "replica":
            raise _Served(
                400,
                "InvalidParameterValue",
                f"The sandbox creates read replicas only (createMode Replica), not createMode {mode!r}.",
            )
        if db is None:
            raise _Served(
                400,
                "InvalidParameterValue",
                f"The region of resource group '{resource_group(region)}' has no Azure database.",
            )
        source = str(props.get("sourceServerResourceId") or "")
        source_region = self._region_of(source)
        location = str(body.get("location") or db.location)
        main = f"pg-{region}"
        if name.lower() == main:
            if source_region is None or source_region == region:
                raise _Served(
                    400,
                    "InvalidParameterValue",
                    f"sourceServerResourceId '{source}' is not the server pg-<region> of another "
                    "region of the fleet (resource group rg-voltage-<region>).",
                )
            created = _Server(
                main,
                region,
                location,
                "GeoAsyncReplica",
                server_id(self._sub, source_region, f"pg-{source_region}"),
                db.storage_gb,
            )
            db.deleted = False
            db.role_dirty = True
        elif re.fullmatch(rf"pg-{re.escape(region)}-r\d+", name, flags=re.IGNORECASE):
            if source_region != region:
                raise _Served(
                    400,
                    "InvalidParameterValue",
                    f"The sandbox's read replica '{name}' must replicate from {main} "
                    f"(sourceServerResourceId '{source}').",
                )
            if self._key(region, main) not in self._servers:
                raise _not_found(_PG, main, resource_group(region))
            if len(self._replica_names(region)) >= MAX_REPLICAS:
                raise _Served(
                    400,
                    "ReplicaCountExceeded",
                    f"Server '{main}' already has the maximum of {MAX_REPLICAS} read replicas.",
                )
            created = _Server(
                name.lower(),
                region,
                location,
                "AsyncReplica",
                server_id(self._sub, region, main),
                db.storage_gb,
            )
            db.replicas_dirty = True
        else:
            raise _Served(
                400,
                "InvalidParameterValue",
                f"The sandbox models read replicas named {main}-r<K> (and {main} itself), not '{name}'.",
            )
        self._servers[self._key(region, created.name)] = created
        return created

    def _server_json(self, s: _Server) -> dict[str, Any]:
        replica = s.role.lower() in _REPLICA_ROLES
        props: dict[str, Any] = {
            "administratorLogin": "voltage",
            "version": "16",
            "minorVersion": "4",
            "state": "Ready" if s.available else "Disabled",
            "fullyQualifiedDomainName": f"{s.name}.postgres.database.azure.com",
            "storage": {"storageSizeGB": s.storage_gb, "autoGrow": "Enabled", "tier": "P50"},
            "backup": {"backupRetentionDays": 30, "geoRedundantBackup": "Enabled"},
            "highAvailability": {
                "mode": "Disabled" if replica else "ZoneRedundant",
                "state": "NotEnabled" if replica else "Healthy",
            },
            "network": {"publicNetworkAccess": "Disabled"},
            "replicationRole": s.role,
            "replicaCapacity": MAX_REPLICAS,
            "replica": {
                "role": s.role,
                "capacity": MAX_REPLICAS,
                **({"replicationState": "Active"} if replica else {}),
            },
            "availabilityZone": "1",
        }
        if s.source is not None:
            props["sourceServerResourceId"] = s.source
        return {
            "id": server_id(self._sub, s.region, s.name),
            "name": s.name,
            "type": _PG,
            "location": s.location,
            "tags": dict(s.tags),
            "sku": {"name": "Standard_D8ds_v5", "tier": "GeneralPurpose"},
            "properties": props,
        }
