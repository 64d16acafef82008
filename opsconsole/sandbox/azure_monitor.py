"""A local Azure Monitor (metrics batch API + Log Analytics query API) in front of the sandbox world.

Why this module exists: on the sandbox, opsconsole reads AKS workloads and Azure Database for
PostgreSQL through the real ``azure-monitor-querymetrics`` ``MetricsClient`` and ``azure-monitor-query``
``LogsQueryClient`` (:mod:`opsconsole.providers.azure`). This module answers the two HTTP APIs they
call, on 127.0.0.1, from what :meth:`AzureMonitorEmulator.publish` wrote:

* ``POST /subscriptions/{sub}/metrics:getBatch?api-version=2024-02-01&metricnamespace=..&metricnames=..
  &starttime=..&endtime=..&interval=PT1M&aggregation=..&filter=..`` with body ``{"resourceids": [...]}``
  → ``{"values": [{"resourceid", "namespace", "resourceregion", "starttime", "endtime", "interval",
  "value": [{"id", "type", "name": {"value", "localizedValue"}, "unit", "timeseries": [{"metadatavalues",
  "data": [{"timeStamp", "total", "average", "maximum", "minimum", "count"}]}], "errorCode"}]}]}``;
  ``filter`` supports ``Dim eq 'value'`` / ``Dim eq '*'`` joined by ``and`` (dimensions not named in the
  filter are rolled up, as Azure does);
* ``POST /v1/workspaces/{id}/query`` with body ``{"query": KQL, "timespan": ...}`` →
  ``{"tables": [{"name": "PrimaryResult", "columns": [{"name", "type"}], "rows": [[...]]}]}``. It is not a
  KQL engine: it recognises the queries of :mod:`opsconsole.providers.azure` by their source table
  (:data:`KQL_TABLES`) and the ``ago(Nm)`` window, and computes their result from the published rows; any
  other query gets the real service's ``400 BadArgumentError``.

What is published (subscription ``Endpoints.settings["subscription"]``, resource group per region
``rg-voltage-<region>``), for every cluster whose cloud is Azure and every region whose database is:

* App Gateway ``agw-<cluster>`` (``Microsoft.Network/applicationGateways``): ``BackendResponseStatus``
  (Count; dimensions ``BackendPool`` = ``pool-<service>``, ``HttpStatusGroup`` ``2XX`` / ``5XX``, split by
  the world's error rate). Azure metrics have a one-minute grain; each publish **sets the current
  minute's value to the current rate × 60 s** (a whole-minute aggregate, not a partial one), so
  ``Total / 60`` of the newest minute is the world's rps;
* Container Insights rows in the workspace: ``KubePodInventory`` (one row per ready pod: ClusterName,
  Namespace, ControllerName, Name, PodStatus, ContainerRestartCount — the world has no restarts: 0) and
  ``Perf`` (ObjectName ``K8SContainer``: cpuUsageNanoCores / cpuLimitNanoCores = the world's CPU
  utilisation; memoryWorkingSetBytes / memoryLimitBytes = a synthetic ``0.3 + 0.4 × cpu``, the world has
  no memory model);
* ``AGWAccessLogs`` (the App Gateway access log, ``TimeTaken`` in seconds): the emulator keeps, per
  backend pool and publish, the p95 the world reports and answers the percentile query with the newest
  one in the window (it does not keep every request);
* PostgreSQL flexible server ``pg-<region>`` (``Microsoft.DBforPostgreSQL/flexibleServers``):
  ``is_db_alive`` (Maximum 1/0), ``physical_replication_delay_in_seconds`` (Maximum, read replicas only),
  ``xact_total`` (Total per minute = tps × 60), and ``PGSQLQueryStoreRuntime`` rows for the query p95.

Faults (``emulator.faults``, the sandbox's one :class:`~opsconsole.sandbox.emulator.Faults`; a request's
``FaultRequest`` has the bearer token as ``client``): ``"down"`` closes the listening socket (connection
refused) until cleared; ``"slow"`` delays every answer by ``seconds``; ``"forbidden"`` answers 403
``AuthorizationFailed`` (``mode="expired"``: 401 ``ExpiredAuthenticationToken``); ``"throttled"`` answers
429 ``TooManyRequests`` to the next ``count`` calls (default 3; ``retry_after`` seconds in a Retry-After
header when given); ``"malformed"`` returns a truncated JSON body (the first half of the real answer).

``collect`` does nothing: Azure Monitor is read-only, no client can change the world through it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from opsconsole.core.fleet.model import Cloud, DatabaseState, DbRole, Fleet, WorkloadState
from opsconsole.sandbox.emulator import (
    FAULT_KINDS,
    Endpoints,
    FaultRequest,
    Faults,
    serve_http,
)
from opsconsole.sandbox.world import World

__all__ = [
    "DEFAULT_SUBSCRIPTION",
    "DEFAULT_WORKSPACE",
    "KQL_TABLES",
    "AzureMonitorEmulator",
    "app_gateway_id",
    "postgres_server_id",
    "resource_group",
]

log = logging.getLogger(__name__)

DEFAULT_SUBSCRIPTION = "00000000-0000-4000-8000-00000000a2e0"
DEFAULT_WORKSPACE = "11111111-1111-4111-8111-1111111a2e01"
HISTORY_S = 70 * 60
NAMESPACE = "voltage"
#: The Log Analytics tables whose (provider) queries the emulator can answer.
KQL_TABLES = ("KubePodInventory", "Perf", "AGWAccessLogs", "PGSQLQueryStoreRuntime")
_AGW_NS = "microsoft.network/applicationgateways"
_PG_NS = "microsoft.dbforpostgresql/flexibleservers"


def resource_group(region: str) -> str:
    """The fleet's resource group of a region (naming convention): ``rg-voltage-<region>``."""
    return f"rg-voltage-{region}"


def app_gateway_id(subscription: str, region: str, cluster: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group(region)}"
        f"/providers/Microsoft.Network/applicationGateways/agw-{cluster}"
    )


def postgres_server_id(subscription: str, region: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group(region)}"
        f"/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg-{region}"
    )


@dataclass
class _Metric:
    unit: str
    #: dims (sorted tuple of (name, value)) -> minute start (epoch s) -> aggregates
    series: dict[tuple[tuple[str, str], ...], dict[int, dict[str, float]]] = field(default_factory=dict)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> float:
    value = text.strip().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


_AGO = re.compile(r"ago\((\d+)([smhd])\)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class _Served(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class AzureMonitorEmulator:
    """Azure Monitor's metrics batch and Log Analytics query APIs on 127.0.0.1 (see the module doc).

    Args:
        fleet: the fleet whose Azure clusters and Azure-hosted databases are published.
        subscription: the subscription of every resource id.
        workspace: the Log Analytics workspace id.
        clock: wall clock for timestamps.
    """

    name = "azure"

    def __init__(
        self,
        fleet: Fleet,
        *,
        subscription: str = DEFAULT_SUBSCRIPTION,
        workspace: str = DEFAULT_WORKSPACE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fleet = fleet
        self._sub = subscription
        self._workspace = workspace
        self._clock = clock
        self._lock = threading.Lock()
        #: lowercased resource id -> (namespace, region, metric name -> _Metric)
        self._metrics: dict[str, tuple[str, str, dict[str, _Metric]]] = {}
        #: (cluster, pod) -> row of KubePodInventory / Perf
        #: (time, namespace, controller, restarts,
        #: cpu ratio, memory ratio)
        self._pods: dict[tuple[str, str], tuple[float, str, str, int, float, float]] = {}
        self._pod_names: dict[tuple[str, str], set[str]] = {}
        #: (cluster, service) -> [(time, p95 ms)]
        self._access: dict[tuple[str, str], list[tuple[float, float]]] = {}
        #: region -> [(time, query p95 ms)]
        self._query_store: dict[str, list[tuple[float, float]]] = {}
        #: Fault injection (see the module docstring).
        self.faults = Faults("Azure Monitor", on_down=self._set_down, kinds=FAULT_KINDS[:-1])
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self.calls = 0

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Endpoints:
        if self._server is None:
            self._serve(0)
        base = f"http://127.0.0.1:{self._port}"
        return Endpoints(
            urls={"azure_metrics": base, "azure_logs": base},
            settings={"subscription": self._sub, "workspace": self._workspace},
        )

    def _serve(self, port: int) -> None:
        self._server, self._thread = serve_http(
            "Azure Monitor", port, self._handle, methods=("POST", "GET"), thread_name="azure-monitor"
        )
        self._port = self._server.server_address[1]

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    # -- faults -----------------------------------------------------------------------------------

    def _set_down(self, down: bool) -> None:
        if down:
            self.stop()
        elif self._server is None and self._port:
            self._serve(self._port)

    # -- publish / collect ------------------------------------------------------------------------

    def collect(self, world: World) -> None:
        """Nothing to collect: Azure Monitor is read-only, clients cannot change the world through it."""
        return None

    def publish(self, world: World) -> None:
        """Write the world's current figures (see the module docstring), stamped with the wall clock."""
        now = self._clock()
        minute = int(now // 60 * 60)
        records = world.observe()
        with self._lock:
            for r in records:
                if isinstance(r, WorkloadState):
                    spec = self._fleet.clusters.get(r.cluster)
                    if spec is not None and spec.cloud is Cloud.AZURE:
                        self._publish_workload(r, spec.cloud_region, now, minute)
                elif isinstance(r, DatabaseState):
                    rspec = self._fleet.regions[r.region]
                    if rspec.database.cloud is Cloud.AZURE:
                        self._publish_database(r, rspec.cloud_regions.get(Cloud.AZURE, r.region), now, minute)
            self._prune(now)

    def _metric(self, rid: str, namespace: str, region: str, name: str, unit: str) -> _Metric:
        entry = self._metrics.setdefault(rid.lower(), (namespace, region, {}))
        return entry[2].setdefault(name, _Metric(unit))

    def _publish_workload(self, wl: WorkloadState, location: str, now: float, minute: int) -> None:
        agw = app_gateway_id(self._sub, wl.region, wl.cluster)
        metric = self._metric(
            agw, "Microsoft.Network/applicationGateways", location, "BackendResponseStatus", "Count"
        )
        rps = max(0.0, float(wl.rps or 0.0))
        err = min(1.0, max(0.0, float(wl.error_rate or 0.0)))
        pool = f"pool-{wl.service}"
        for group, rate in (("2XX", rps * (1.0 - err)), ("5XX", rps * err)):
            dims = (("BackendPool", pool), ("HttpStatusGroup", group))
            total = rate * 60.0
            metric.series.setdefault(dims, {})[minute] = {
                "total": total,
                "count": 1.0,
                "average": total,
                "maximum": total,
                "minimum": total,
            }
        if rps > 0 and wl.p95_ms is not None:
            self._access.setdefault((wl.cluster, wl.service), []).append((now, float(wl.p95_ms)))
        cpu = float(wl.cpu_utilisation)
        salt = zlib.crc32(f"{wl.cluster}/{wl.service}".encode()) & 0xFFFFF
        live: set[str] = set()
        for i in range(max(0, wl.ready)):
            pod = f"{wl.service}-{salt:05x}-{i:03d}"
            live.add(pod)
            self._pods[(wl.cluster, pod)] = (
                now,
                NAMESPACE,
                wl.service,
                int(wl.restarts),
                cpu,
                0.3 + 0.4 * min(cpu, 1.0),
            )
        for gone in self._pod_names.get((wl.cluster, wl.service), set()) - live:
            self._pods.pop((wl.cluster, gone), None)
        self._pod_names[(wl.cluster, wl.service)] = live

    def _publish_database(self, db: DatabaseState, location: str, now: float, minute: int) -> None:
        rid = postgres_server_id(self._sub, db.region)
        ns = "Microsoft.DBforPostgreSQL/flexibleServers"

        def put(name: str, unit: str, value: float) -> None:
            m = self._metric(rid, ns, location, name, unit)
            m.series.setdefault((), {})[minute] = {
                "total": value,
                "count": 1.0,
                "average": value,
                "maximum": value,
                "minimum": value,
            }

        put("is_db_alive", "Count", 1.0 if db.available else 0.0)
        if db.role is DbRole.READ_REPLICA:
            put("physical_replication_delay_in_seconds", "Seconds", float(db.replica_lag_s))
        put("xact_total", "Count", float(db.tps) * 60.0)
        if db.available and db.query_p95_ms > 0:
            self._query_store.setdefault(db.region, []).append((now, float(db.query_p95_ms)))

    def _prune(self, now: float) -> None:
        horizon = now - HISTORY_S
        for _, _, metrics in self._metrics.values():
            for m in metrics.values():
                for points in m.series.values():
                    for t in [t for t in points if t < horizon - 60]:
                        del points[t]
        for key in [k for k, row in self._pods.items() if row[0] < horizon]:
            del self._pods[key]
        for samples in (*self._access.values(), *self._query_store.values()):
            while samples and samples[0][0] < horizon:
                samples.pop(0)

    # -- HTTP -------------------------------------------------------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        self.calls += 1
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        auth = req.headers.get("Authorization", "")
        fault = self.faults.take(
            FaultRequest(client=auth.removeprefix("Bearer ").strip(), scope=self._sub, path=req.path)
        )
        kind = fault.kind if fault is not None else None
        try:
            if fault is not None and kind == "slow":
                fault.stall()
            if fault is not None and kind == "forbidden":
                if fault.param("mode", "") == "expired":
                    raise _Served(
                        401,
                        "ExpiredAuthenticationToken",
                        "The access token expiry UTC time is earlier than current UTC time.",
                    )
                raise _Served(
                    403,
                    "AuthorizationFailed",
                    f"The client does not have authorization to perform action "
                    f"'Microsoft.Insights/Metrics/Read' over scope '/subscriptions/{self._sub}'.",
                )
            if fault is not None and kind == "throttled":
                after = fault.param("retry_after", None)
                headers = {"Retry-After": str(after)} if after is not None else {}
                raise _Served(429, "TooManyRequests", "Rate limit exceeded (sandbox fault).", headers)
            if not req.headers.get("Authorization", "").startswith("Bearer "):
                raise _Served(401, "AuthenticationFailed", "Authentication failed: no bearer token.")
            body = self._route(req.command, req.path, raw)
        except _Served as exc:
            payload = json.dumps({"error": {"code": exc.code, "message": exc.message}}).encode()
            self._send(req, exc.status, payload, exc.headers)
            return
        except Exception as exc:  # a bug must answer 500, not hang the client
            log.exception("azure monitor emulator failed")
            payload = json.dumps({"error": {"code": "InternalServerError", "message": str(exc)}}).encode()
            self._send(req, 500, payload, {})
            return
        payload = json.dumps(body).encode()
        if kind == "malformed":
            payload = payload[: max(1, len(payload) // 2)]
        self._send(req, 200, payload, {})

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, payload: bytes, headers: dict[str, str]) -> None:
        try:
            req.send_response(status)
            req.send_header("Content-Type", "application/json; charset=utf-8")
            req.send_header("Content-Length", str(len(payload)))
            for k, v in headers.items():
                req.send_header(k, v)
            req.end_headers()
            req.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            return

    def _route(self, method: str, path: str, raw: bytes) -> dict[str, Any]:
        parts = urlsplit(path)
        segments = [unquote(s) for s in parts.path.split("/") if s]
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if method != "POST":
            raise _Served(405, "MethodNotAllowed", f"{method} is not supported")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise _Served(400, "BadRequest", "The request body is not valid JSON.") from None
        if len(segments) == 3 and segments[0] == "subscriptions" and segments[2] == "metrics:getBatch":
            if segments[1] != self._sub:
                raise _Served(403, "AuthorizationFailed", f"No access to subscription {segments[1]}")
            return self._metrics_batch(query, body)
        if len(segments) >= 3 and segments[-1] == "query" and segments[-3] == "workspaces":
            if segments[-2] != self._workspace:
                raise _Served(404, "WorkspaceNotFoundError", f"Workspace {segments[-2]} not found")
            return self._logs_query(body)
        raise _Served(404, "NotFound", f"No route for {parts.path}")

    # -- metrics batch ----------------------------------------------------------------------------

    def _metrics_batch(self, q: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if "api-version" not in q:
            raise _Served(400, "MissingApiVersionParameter", "The api-version query parameter is required.")
        namespace = q.get("metricnamespace", "")
        names = [n.replace("%2", ",") for n in q.get("metricnames", "").split(",") if n]
        if not namespace or not names:
            raise _Served(400, "BadRequest", "metricnamespace and metricnames are required.")
        aggregations = [a.strip().lower() for a in q.get("aggregation", "average").split(",") if a.strip()]
        now = self._clock()
        try:
            end = _parse_iso(q["endtime"]) if "endtime" in q else now
            start = _parse_iso(q["starttime"]) if "starttime" in q else end - 3600
        except ValueError:
            raise _Served(400, "BadRequest", "starttime / endtime are not ISO 8601 times.") from None
        interval = q.get("interval", "PT1M")
        if interval.upper() != "PT1M":
            raise _Served(400, "BadRequest", "This emulator serves the PT1M grain only.")
        dim_filter = self._parse_metric_filter(q.get("filter", ""))
        ids = body.get("resourceids")
        if not isinstance(ids, list) or not ids:
            raise _Served(400, "BadRequest", "resourceids must be a non-empty list.")
        values = []
        with self._lock:
            for rid in ids:
                entry = self._metrics.get(str(rid).lower())
                if entry is None or entry[0].lower() != namespace.lower():
                    raise _Served(
                        400, "ResourceNotFound", f"Resource {rid} not found in namespace {namespace}."
                    )
                ns, region, metrics = entry
                out_metrics = []
                for name in names:
                    m = metrics.get(name)
                    if m is None:
                        if ns.lower() == _PG_NS and name == "physical_replication_delay_in_seconds":
                            m = _Metric("Seconds")  # defined on every server; no data on a primary
                        else:
                            raise _Served(400, "BadRequest", f"Metric {name} is not defined for {ns}.")
                    out_metrics.append(
                        {
                            "id": f"{rid}/providers/Microsoft.Insights/metrics/{name}",
                            "type": "Microsoft.Insights/metrics",
                            "name": {"value": name, "localizedValue": name},
                            "displayDescription": "",
                            "unit": m.unit,
                            "timeseries": self._timeseries(m, dim_filter, aggregations, start, end),
                            "errorCode": "Success",
                        }
                    )
                values.append(
                    {
                        "starttime": _iso(start),
                        "endtime": _iso(end),
                        "interval": "PT1M",
                        "namespace": ns,
                        "resourceregion": region,
                        "resourceid": rid,
                        "value": out_metrics,
                    }
                )
        return {"values": values}

    @staticmethod
    def _parse_metric_filter(text: str) -> dict[str, str]:
        dims: dict[str, str] = {}
        if not text.strip():
            return dims
        for term in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
            m = re.fullmatch(r"\s*([\w ]+?)\s+eq\s+'([^']*)'\s*", term)
            if m is None:
                raise _Served(400, "BadRequest", f"Invalid filter term {term!r}.")
            dims[m.group(1)] = m.group(2)
        return dims

    @staticmethod
    def _timeseries(
        m: _Metric, dims: dict[str, str], aggs: list[str], start: float, end: float
    ) -> list[dict[str, Any]]:
        groups: dict[tuple[tuple[str, str], ...], dict[int, list[dict[str, float]]]] = {}
        for key, points in m.series.items():
            labels = dict(key)
            if any(v != "*" and labels.get(d) != v for d, v in dims.items()):
                continue
            gkey = tuple((d, labels.get(d, "")) for d in dims)
            bucket = groups.setdefault(gkey, {})
            for t, agg in points.items():
                if start - 60 < t <= end:  # minute bins overlapping the timespan
                    bucket.setdefault(t, []).append(agg)
        out = []
        for gkey, buckets in sorted(groups.items()):
            data = []
            for t in sorted(buckets):
                parts = buckets[t]
                point: dict[str, Any] = {"timeStamp": _iso(t)}
                for a in aggs:
                    if a == "total":
                        point["total"] = sum(p["total"] for p in parts)
                    elif a == "average":
                        point["average"] = sum(p["average"] for p in parts) / len(parts)
                    elif a == "maximum":
                        point["maximum"] = max(p["maximum"] for p in parts)
                    elif a == "minimum":
                        point["minimum"] = min(p["minimum"] for p in parts)
                    elif a == "count":
                        point["count"] = sum(p["count"] for p in parts)
                data.append(point)
            out.append(
                {
                    "metadatavalues": [
                        {"name": {"value": d, "localizedValue": d}, "value": v} for d, v in gkey
                    ],
                    "data": data,
                }
            )
        return out

    # -- Log Analytics ----------------------------------------------------------------------------

    def _logs_query(self, body: dict[str, Any]) -> dict[str, Any]:
        kql = body.get("query")
        if not isinstance(kql, str) or not kql.strip():
            raise _Served(400, "BadArgumentError", "The request had some invalid properties: query")
        table = kql.strip().split(None, 1)[0].split("|")[0].strip()
        m = _AGO.search(kql)
        window = int(m.group(1)) * _UNITS[m.group(2)] if m else 3600
        since = self._clock() - window
        with self._lock:
            if table == "KubePodInventory":
                columns = [("ClusterName", "string"), ("ControllerName", "string"), ("Restarts", "long")]
                sums: dict[tuple[str, str], int] = {}
                for (cluster, _), row in self._pods.items():
                    if row[0] >= since:
                        k = (cluster, row[2])
                        sums[k] = sums.get(k, 0) + row[3]
                rows: list[list[Any]] = [[c, s, n] for (c, s), n in sorted(sums.items())]
            elif table == "Perf":
                columns = [
                    ("ClusterName", "string"),
                    ("ControllerName", "string"),
                    ("CpuRatio", "real"),
                    ("MemoryRatio", "real"),
                ]
                acc: dict[tuple[str, str], list[tuple[float, float]]] = {}
                for (cluster, _), row in self._pods.items():
                    if row[0] >= since:
                        acc.setdefault((cluster, row[2]), []).append((row[4], row[5]))
                rows = [
                    [c, s, sum(v[0] for v in vs) / len(vs), sum(v[1] for v in vs) / len(vs)]
                    for (c, s), vs in sorted(acc.items())
                ]
            elif table == "AGWAccessLogs":
                columns = [("_ResourceId", "string"), ("BackendPoolName", "string"), ("P95", "real")]
                rows = []
                for (cluster, service), samples in sorted(self._access.items()):
                    recent = [p for t, p in samples if t >= since]
                    if recent:
                        spec = self._fleet.clusters[cluster]
                        rid = app_gateway_id(self._sub, spec.region, cluster).lower()
                        rows.append([rid, f"pool-{service}", recent[-1] / 1000.0])
            elif table == "PGSQLQueryStoreRuntime":
                columns = [("LogicalServerName", "string"), ("P95", "real")]
                rows = []
                for region, samples in sorted(self._query_store.items()):
                    recent = [p for t, p in samples if t >= since]
                    if recent:
                        rows.append([f"pg-{region}", recent[-1]])
            else:
                raise _Served(
                    400,
                    "BadArgumentError",
                    f"The request had some invalid properties: unknown table or query {table!r} "
                    f"(the sandbox answers {', '.join(KQL_TABLES)})",
                )
        return {
            "tables": [
                {
                    "name": "PrimaryResult",
                    "columns": [{"name": n, "type": t} for n, t in columns],
                    "rows": rows,
                }
            ]
        }
