"""The ``azure`` fleet source: AKS workloads and Azure Database for PostgreSQL, from Azure Monitor.

Why this module exists: request figures of AKS workloads (behind an Application Gateway) and the
replication state of the Azure-hosted databases live in Azure Monitor, not in the Kubernetes API.
:class:`AzureSource` reads them with the official clients — ``azure-monitor-querymetrics``
``MetricsClient.query_resources`` (the metrics batch API) for platform metrics and ``azure-monitor-query``
``LogsQueryClient.query_workspace`` for what only Log Analytics has (Container Insights, access logs,
Query Store) — and returns domain records only:

* one :class:`~opsconsole.core.fleet.model.WorkloadMetrics` per AKS cluster × service of its environment;
* one :class:`~opsconsole.core.fleet.model.DatabaseState` per region whose database is hosted on Azure.

How to use it::

    source = AzureSource(fleet, subscription_id=SUB, workspace_id=WS)          # DefaultAzureCredential
    source = AzureSource.from_endpoints(fleet, emulator.start())               # sandbox emulator
    reading = source.read()

Naming conventions (the inventory has no Azure resource ids; they are derived from it): resource group
``rg-voltage-<region>`` per fleet region; one Application Gateway ``agw-<cluster>`` per AKS cluster with a
backend pool ``pool-<service>`` per service; one PostgreSQL flexible server ``pg-<region>``; Container
Insights of every cluster in one Log Analytics workspace (``workspace_id``); workloads in namespace
``voltage``, controller named after the service.

What is read:

* rps / error rate: ``Microsoft.Network/applicationGateways`` ``BackendResponseStatus`` (Total per
  minute, split by ``BackendPool`` and ``HttpStatusGroup``), one batch call per Azure region (the batch
  API takes resources of one subscription, region and namespace); the newest minute's Total / 60 s
  (over the last 3 minutes) is the rate, ``5XX`` / all is the error rate;
* p95: KQL over ``AGWAccessLogs`` (``percentile(TimeTaken, 95)`` by pool, last 5 min) — Azure platform
  metrics have no percentiles;
* CPU / memory: KQL over Container Insights ``Perf`` (usage / limit, mean over the pods);
* restarts: KQL over ``KubePodInventory`` (latest ``ContainerRestartCount`` per pod, summed per
  controller: the lifetime count of the live pods, as the Kubernetes API shows it);
* database: ``Microsoft.DBforPostgreSQL/flexibleServers`` ``is_db_alive`` (→ ``available``),
  ``physical_replication_delay_in_seconds`` (Maximum; none on a primary → 0), ``xact_total`` (Total / 60 s
  → ``tps``) and KQL over ``PGSQLQueryStoreRuntime`` for ``query_p95_ms``. ``role``, ``replicates_from``,
  ``read_replicas`` and ``storage_tb`` are not in Azure Monitor: they come from the inventory spec.

Retries, timeouts, errors. Both APIs are POSTs, but read-only queries: retrying them is safe, so the
azure-core ``RetryPolicy`` used here allows POST (azure-core does not retry a POST by default) with a
bounded number of retries (3, exponential backoff from 0.1 s, at most 1 s) and the read's time budget as
its total timeout; read timeouts are not retried (a slow service would only be asked again). 429 is
retried with that backoff and reported in ``problems``. 401 / 403 raise :class:`SourceError` naming the
subscription (or the workspace); connection refused / a missed deadline raise :class:`SourceError` naming
the endpoint. A part that fails otherwise (e.g. a truncated answer) is a problem of a half answer.
Bearer tokens over plain http are allowed (``enforce_https=False``) only for a loopback endpoint.

Cadence: the platform metrics and the Log Analytics tables read here move once a minute, so with
``metrics_cadence_s`` (the wiring passes ``opsconsole_clouds.azure.metrics_cadence_s``) the source asks at
most once per period (aligned) and :meth:`AzureSource.read` serves the last answer in between, stamped
with when it was fetched (``as_of``); ``0`` (the constructor's default) asks at every read. Every call is
counted in :data:`~opsconsole.core.fleet.metering.METER`: ``MetricsBatch`` (units = resources queried)
and ``LogsQuery``. ``resolve_endpoints`` (sandbox): endpoints re-read before each poll, clients rebuilt
when they moved. :meth:`AzureSource.touch` makes the next read poll.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import RetryPolicy
from azure.monitor.query import LogsQueryClient, LogsQueryStatus
from azure.monitor.querymetrics import MetricsClient

from opsconsole.core.errors import SourceError
from opsconsole.core.fleet.cadence import Cadence, PollCache
from opsconsole.core.fleet.engine import SourceReading
from opsconsole.core.fleet.metering import METER
from opsconsole.core.fleet.model import Cloud, ClusterSpec, DatabaseState, Fleet, FleetRecord, WorkloadMetrics

__all__ = [
    "KQL_LATENCY",
    "KQL_PG_LATENCY",
    "KQL_RESTARTS",
    "KQL_USAGE",
    "SOURCE_NAME",
    "AzureSource",
    "SandboxCredential",
]

log = logging.getLogger(__name__)
# The SDK's HTTP logging policy writes every request and response, headers and all, at INFO: ~40 lines
# per metrics batch, dozens a minute, drowning what opsconsole says in its own log. Its warnings stay.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)

SOURCE_NAME = "azure"
NAMESPACE = "voltage"
_AGW_NS = "Microsoft.Network/applicationGateways"
_PG_NS = "Microsoft.DBforPostgreSQL/flexibleServers"
_WINDOW = timedelta(minutes=5)
#: Platform metrics are read over a shorter span: only the newest minute is used, and the SDK's
#: per-point deserialisation is the main cost of a read.
_METRICS_WINDOW = timedelta(minutes=3)

KQL_RESTARTS = f"""KubePodInventory
| where TimeGenerated > ago(5m)
| where Namespace == "{NAMESPACE}"
| summarize arg_max(TimeGenerated, ContainerRestartCount) by ClusterName, ControllerName, Name
| summarize Restarts = sum(ContainerRestartCount) by ClusterName, ControllerName"""

KQL_USAGE = """Perf
| where TimeGenerated > ago(5m) and ObjectName == "K8SContainer"
| where CounterName in ("cpuUsageNanoCores", "cpuLimitNanoCores", "memoryWorkingSetBytes", "memoryLimitBytes")
| extend ClusterName = tostring(split(InstanceName, "/")[8]),
         ControllerName = tostring(split(InstanceName, "/")[10])
| summarize Value = avg(CounterValue) by ClusterName, ControllerName, InstanceName, CounterName
| evaluate pivot(CounterName, any(Value))
| summarize CpuRatio = avg(cpuUsageNanoCores / cpuLimitNanoCores),
            MemoryRatio = avg(memoryWorkingSetBytes / memoryLimitBytes) by ClusterName, ControllerName"""

KQL_LATENCY = """AGWAccessLogs
| where TimeGenerated > ago(5m)
| summarize P95 = percentile(TimeTaken, 95) by _ResourceId, BackendPoolName"""

KQL_PG_LATENCY = """PGSQLQueryStoreRuntime
| where TimeGenerated > ago(5m)
| summarize P95 = percentile(MeanExecTime, 95) by LogicalServerName"""


class SandboxCredential:
    """A token credential for the sandbox emulator: a fixed dummy token, no secret anywhere."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("sandbox-token", int(time.time()) + 3600)


class _ReadOnlyPostRetryPolicy(RetryPolicy):  # type: ignore[type-arg] # its request/response type parameters are any here
    """azure-core's RetryPolicy, also retrying POST: the metrics batch and logs query POSTs are read-only."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._method_whitelist = frozenset(["HEAD", "GET", "PUT", "DELETE", "OPTIONS", "TRACE", "POST"])


class _AuthFailed(Exception):
    pass


class _Unreachable(Exception):
    pass


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


class _Attempts:
    """One read's queries: each is counted; a failure of the whole source raises :class:`SourceError`,
    a failure of one part is kept in :attr:`problems` (the read is then a half answer)."""

    def __init__(self, source: AzureSource) -> None:
        self._source = source
        self.sub_scope = f"subscription {source._sub}"
        self.ws_scope = f"workspace {source._workspace} (subscription {source._sub})"
        self.parts = 0
        self.failed = 0
        self.problems: list[str] = []

    def __call__(self, label: str, endpoint: str, scope: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, or ``None`` when this part failed (recorded as a problem)."""
        self.parts += 1
        timeout_s = self._source._timeout_s
        try:
            return fn()
        except ClientAuthenticationError as exc:
            raise SourceError(f"Azure Monitor refused {scope}: {_short(exc)}") from None
        except HttpResponseError as exc:
            if exc.status_code in (401, 403):
                raise SourceError(f"Azure Monitor refused {scope}: {_short(exc)}") from None
            if exc.status_code == 429:
                raise SourceError(
                    f"Azure Monitor throttled {scope} (429 x{self._source._throttled}) past the "
                    f"{timeout_s:.1f} s deadline"
                ) from None
            self._fail(label, exc)
        except ServiceRequestError as exc:
            raise SourceError(f"Azure Monitor endpoint {endpoint} unreachable: {_short(exc)}") from None
        except ServiceResponseError as exc:
            raise SourceError(
                f"Azure Monitor endpoint {endpoint} did not answer within {timeout_s:.1f} s: "
                f"{_short(exc)}"
            ) from None
        except _Unreachable as exc:
            raise SourceError(str(exc)) from None
        except (AzureError, ValueError, KeyError, TypeError) as exc:
            self._fail(label, exc)
        return None

    def _fail(self, label: str, exc: BaseException) -> None:
        self.failed += 1
        self.problems.append(f"{label}: {_short(exc)}")


class AzureSource:
    """Reads AKS workload metrics and Azure PostgreSQL state from Azure Monitor (see the module docstring).

    Args:
        fleet: the inventory; its Azure clusters and Azure-hosted databases are read.
        subscription_id: the subscription holding the fleet's resources.
        workspace_id: the Log Analytics workspace of Container Insights and diagnostics.
        credential: a token credential; ``None``: ``DefaultAzureCredential`` (production).
        metrics_endpoint: the metrics batch endpoint; ``{location}`` is replaced by the Azure region
            (production default ``https://{location}.metrics.monitor.azure.com``).
        logs_endpoint: the Log Analytics endpoint (production default ``https://api.loganalytics.io``).
        timeout_s: upper bound of one :meth:`read`, all calls and backoffs included.
        resource_group: region id → resource group name (default ``rg-voltage-<region>``).
    """

    name: str = SOURCE_NAME

    def __init__(
        self,
        fleet: Fleet,
        *,
        subscription_id: str,
        workspace_id: str,
        credential: Any = None,
        metrics_endpoint: str = "https://{location}.metrics.monitor.azure.com",
        logs_endpoint: str = "https://api.loganalytics.io",
        timeout_s: float = 5.0,
        resource_group: Callable[[str], str] | None = None,
        metrics_cadence_s: float = 0.0,
        clock: Callable[[], float] | None = None,
        resolve_endpoints: Callable[[], Any] | None = None,
    ) -> None:
        self.cadence_s = float(metrics_cadence_s)
        self._poll = PollCache(Cadence(metrics_cadence_s, clock=clock))
        self._resolve = resolve_endpoints
        self._fleet = fleet
        self._sub = subscription_id
        self._workspace = workspace_id
        if credential is None:  # pragma: no cover - needs a real Azure environment
            from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - only production needs it

            credential = DefaultAzureCredential()
        self._credential = credential
        self._metrics_endpoint = metrics_endpoint
        self._logs_endpoint = logs_endpoint
        self._timeout_s = float(timeout_s)
        self._rg = resource_group or (lambda region: f"rg-voltage-{region}")
        self._metrics_clients: dict[str, MetricsClient] = {}
        self._logs_client = LogsQueryClient(credential, endpoint=logs_endpoint, retry_policy=self._retry())
        self._clusters = sorted(
            (c for c in fleet.clusters.values() if c.cloud is Cloud.AZURE), key=lambda c: c.name
        )
        self._db_regions = sorted(
            (r for r in fleet.regions.values() if r.database.cloud is Cloud.AZURE), key=lambda r: r.id
        )
        self._throttled = 0

    @classmethod
    def from_endpoints(
        cls,
        fleet: Fleet,
        endpoints: Any,
        *,
        timeout_s: float = 5.0,
        metrics_cadence_s: float = 0.0,
        clock: Callable[[], float] | None = None,
        resolve_endpoints: Callable[[], Any] | None = None,
    ) -> AzureSource:
        """Build the source for the sandbox emulator's :class:`~opsconsole.sandbox.emulator.Endpoints`."""
        return cls(
            fleet,
            subscription_id=endpoints.settings["subscription"],
            workspace_id=endpoints.settings["workspace"],
            credential=SandboxCredential(),
            metrics_endpoint=endpoints.urls["azure_metrics"],
            logs_endpoint=endpoints.urls["azure_logs"],
            timeout_s=timeout_s,
            metrics_cadence_s=metrics_cadence_s,
            clock=clock,
            resolve_endpoints=resolve_endpoints,
        )

    def touch(self, kinds: Any = None) -> None:
        """Something changed (a run ended): poll at the next read."""
        self._poll.invalidate()

    invalidate = touch

    def _reresolve(self) -> None:
        if self._resolve is None:
            return
        try:
            endpoints = self._resolve()
        except Exception:
            return
        if endpoints is None:
            return
        metrics = endpoints.urls.get("azure_metrics", self._metrics_endpoint)
        logs = endpoints.urls.get("azure_logs", self._logs_endpoint)
        if metrics != self._metrics_endpoint or logs != self._logs_endpoint:
            self._metrics_endpoint = metrics
            self._logs_endpoint = logs
            self._metrics_clients = {}
            self._logs_client = LogsQueryClient(self._credential, endpoint=logs, retry_policy=self._retry())

    def _retry(self) -> _ReadOnlyPostRetryPolicy:
        return _ReadOnlyPostRetryPolicy(
            retry_total=3,
            retry_connect=1,
            retry_read=0,
            retry_status=3,
            retry_backoff_factor=0.1,
            retry_backoff_max=1,
            timeout=max(1, int(self._timeout_s)),
        )

    def _metrics_client(self, location: str) -> tuple[MetricsClient, str]:
        endpoint = self._metrics_endpoint.replace("{location}", location)
        client = self._metrics_clients.get(endpoint)
        if client is None:
            client = MetricsClient(endpoint, self._credential, retry_policy=self._retry())
            self._metrics_clients[endpoint] = client
        return client, endpoint

    def _call_kwargs(self, endpoint: str, deadline: float) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Unreachable(
                f"Azure Monitor at {endpoint}: no complete answer within {self._timeout_s:.1f} s"
            )
        kwargs: dict[str, Any] = {
            "connection_timeout": min(2.0, remaining),
            "read_timeout": remaining,
            "raw_response_hook": self._on_response,
        }
        if _is_loopback(endpoint):
            kwargs["enforce_https"] = False  # local emulator over http only; never for a real endpoint
        return kwargs

    def _on_response(self, response: Any) -> None:
        status = getattr(response.http_response, "status_code", 0)
        url = str(getattr(response.http_request, "url", ""))
        operation = "LogsQuery" if "/query" in url and "metrics:getBatch" not in url else "MetricsBatch"
        units = 1
        if operation == "MetricsBatch":
            body = getattr(response.http_request, "body", None) or b""
            units = max(1, (body.decode() if isinstance(body, bytes) else str(body)).count("/subscriptions/"))
        METER.count(SOURCE_NAME, operation, units=units, error=status >= 400, throttled=status == 429)
        if status == 429:
            self._throttled += 1
            log.warning("Azure Monitor throttled a query (429); backing off")

    # ----------------------------------------------------------------------------------------------

    def read(self) -> SourceReading:
        """Between polls, the last answer (no call); else every AKS workload and Azure-hosted database."""
        return self._poll.read(self._read_now, before=self._reresolve)

    def _read_now(self) -> SourceReading:
        """Read every AKS workload and Azure-hosted database. See the module docstring for errors."""
        deadline = time.monotonic() + self._timeout_s
        self._throttled = 0
        attempt = _Attempts(self)
        rates, rate_failed = self._read_rates(attempt, deadline)
        logs_ep = self._logs_endpoint
        ws_scope = attempt.ws_scope
        restarts = attempt("KubePodInventory", logs_ep, ws_scope, lambda: self._kql(KQL_RESTARTS, deadline))
        usage = attempt("Perf", logs_ep, ws_scope, lambda: self._kql(KQL_USAGE, deadline))
        latency = attempt("AGWAccessLogs", logs_ep, ws_scope, lambda: self._kql(KQL_LATENCY, deadline))
        observed = datetime.now(UTC)
        records: list[FleetRecord] = list(
            self._workload_records(observed, rates, rate_failed, restarts, usage, latency)
        )
        if self._db_regions:
            records.extend(self._database_records(attempt, deadline, observed))
        if attempt.parts and attempt.failed == attempt.parts:
            raise SourceError(
                f"Azure Monitor (subscription {self._sub}): every query failed: "
                + "; ".join(attempt.problems)
            )
        notes: list[str] = []
        if self._throttled:
            notes.append(f"throttled by Azure Monitor (429 x{self._throttled}); backed off and retried")
        return SourceReading(records=tuple(records), problems=tuple(attempt.problems), notes=tuple(notes))

    def _read_rates(
        self, attempt: _Attempts, deadline: float
    ) -> tuple[dict[tuple[str, str], tuple[float, float]], set[str]]:
        """App Gateway rates per (cluster, service), one batch per Azure region; and the clusters whose
        batch failed (their rps is unknown, not zero)."""
        rates: dict[tuple[str, str], tuple[float, float]] = {}
        by_location: dict[str, list[ClusterSpec]] = {}
        for c in self._clusters:
            by_location.setdefault(c.cloud_region, []).append(c)
        rate_failed: set[str] = set()
        for location, clusters in sorted(by_location.items()):
            client, endpoint = self._metrics_client(location)
            got = attempt(
                f"App Gateway metrics in {location}",
                endpoint,
                attempt.sub_scope,
                partial(self._gateway_rates, client, endpoint, clusters, deadline),
            )
            if got is None:
                rate_failed.update(c.name for c in clusters)
            else:
                rates.update(got)
        return rates, rate_failed

    def _workload_records(
        self,
        observed: datetime,
        rates: dict[tuple[str, str], tuple[float, float]],
        rate_failed: set[str],
        restarts: Any,
        usage: Any,
        latency: Any,
    ) -> Iterator[WorkloadMetrics]:
        """One record per AKS cluster × service; a query that failed (``None``) leaves its fields unknown."""
        restart_of = {(r[0], r[1]): int(r[2]) for r in restarts or []}
        usage_of = {(r[0], r[1]): (float(r[2]), float(r[3])) for r in usage or []}
        p95_of = {(str(r[0]).lower(), str(r[1])): float(r[2]) * 1000.0 for r in latency or []}
        for c in self._clusters:
            agw = self._agw_id(c).lower()
            for svc in sorted(self._fleet.services_in(c.environment), key=lambda s: s.name):
                ok, bad = rates.get((c.name, svc.name), (0.0, 0.0))
                rps: float | None = None if c.name in rate_failed else ok + bad
                cpu_mem = usage_of.get((c.name, svc.name))
                restart_value = restart_of.get((c.name, svc.name))
                p95 = p95_of.get((agw, f"pool-{svc.name}"))
                yield WorkloadMetrics(
                    source=SOURCE_NAME,
                    observed_at=observed,
                    cluster=c.name,
                    region=c.region,
                    service=svc.name,
                    p95_ms=p95 if rps else None,
                    error_rate=(bad / rps) if rps else None,
                    rps=rps,
                    cpu_utilisation=None if cpu_mem is None else cpu_mem[0],
                    memory_utilisation=None if cpu_mem is None else cpu_mem[1],
                    restarts=restart_value if restarts is not None else None,
                    extra={
                        "app_gateway": agw,
                        "backend_pool": f"pool-{svc.name}",
                        "location": c.cloud_region,
                    },
                )

    def _database_records(
        self, attempt: _Attempts, deadline: float, observed: datetime
    ) -> list[DatabaseState]:
        """One record per region whose database is on Azure (a server with no liveness data is a problem)."""
        pg_p95 = attempt(
            "PGSQLQueryStoreRuntime",
            self._logs_endpoint,
            attempt.ws_scope,
            lambda: self._kql(KQL_PG_LATENCY, deadline),
        )
        pg_p95_of = {str(r[0]): float(r[1]) for r in pg_p95 or []}
        records: list[DatabaseState] = []
        for region in self._db_regions:
            location = region.cloud_regions.get(Cloud.AZURE, region.id)
            client, endpoint = self._metrics_client(location)
            values = attempt(
                f"database {region.id}",
                endpoint,
                attempt.sub_scope,
                partial(self._pg_metrics, client, endpoint, region.id, deadline),
            )
            if values is None:
                continue
            if "is_db_alive" not in values:
                attempt.problems.append(f"database {region.id}: no is_db_alive data in the last 5 min")
                continue
            available = values["is_db_alive"] >= 1.0
            spec = region.database
            records.append(
                DatabaseState(
                    source=SOURCE_NAME,
                    observed_at=observed,
                    region=region.id,
                    role=spec.role,
                    replicates_from=spec.replicates_from,
                    read_replicas=spec.read_replicas,
                    replica_lag_s=round(values.get("physical_replication_delay_in_seconds", 0.0), 3),
                    query_p95_ms=round(pg_p95_of.get(f"pg-{region.id}", 0.0), 3) if available else 0.0,
                    tps=values.get("xact_total", 0.0) / 60.0 if available else 0.0,
                    available=available,
                    storage_tb=float(spec.storage_tb),
                    extra={
                        "server": self._pg_id(region.id),
                        "from_inventory": ["role", "replicates_from", "read_replicas", "storage_tb"],
                    },
                )
            )
        return records

    # -- calls -----------------------------------------------------------------------------------------

    def _agw_id(self, c: ClusterSpec) -> str:
        return (
            f"/subscriptions/{self._sub}/resourceGroups/{self._rg(c.region)}/providers/{_AGW_NS}/agw-{c.name}"
        )

    def _pg_id(self, region: str) -> str:
        return f"/subscriptions/{self._sub}/resourceGroups/{self._rg(region)}/providers/{_PG_NS}/pg-{region}"

    def _gateway_rates(
        self, client: MetricsClient, endpoint: str, clusters: list[ClusterSpec], deadline: float
    ) -> dict[tuple[str, str], tuple[float, float]]:
        ids = {self._agw_id(c).lower(): c for c in clusters}
        end = datetime.now(UTC)
        results = client.query_resources(
            resource_ids=[self._agw_id(c) for c in clusters],
            metric_namespace=_AGW_NS,
            metric_names=["BackendResponseStatus"],
            timespan=(end - _METRICS_WINDOW, end),
            granularity=timedelta(minutes=1),
            aggregations=["Total"],
            filter="BackendPool eq '*' and HttpStatusGroup eq '*'",
            max_results=1000,
            **self._call_kwargs(endpoint, deadline),
        )
        out: dict[tuple[str, str], tuple[float, float]] = {}
        for result in results:
            for metric in result.metrics:
                # The batch answer names each resource only in its metric ids: "<resource id>/providers/...".
                rid = str(metric.id or "").lower().split("/providers/microsoft.insights/metrics/")[0]
                cluster = ids.get(rid)
                if cluster is None:
                    continue
                for ts in metric.timeseries:
                    points = [p for p in ts.data if p.total is not None]
                    if not points:
                        continue
                    rate = float(max(points, key=lambda p: p.timestamp).total or 0.0) / 60.0
                    pool = str(ts.metadata_values.get("BackendPool", ""))
                    service = pool.removeprefix("pool-")
                    group = str(ts.metadata_values.get("HttpStatusGroup", ""))
                    ok, bad = out.get((cluster.name, service), (0.0, 0.0))
                    if group.upper().startswith("5"):
                        bad += rate
                    else:
                        ok += rate
                    out[(cluster.name, service)] = (ok, bad)
        return out

    def _pg_metrics(
        self, client: MetricsClient, endpoint: str, region: str, deadline: float
    ) -> dict[str, float]:
        end = datetime.now(UTC)
        results = client.query_resources(
            resource_ids=[self._pg_id(region)],
            metric_namespace=_PG_NS,
            metric_names=["is_db_alive", "physical_replication_delay_in_seconds", "xact_total"],
            timespan=(end - _METRICS_WINDOW, end),
            granularity=timedelta(minutes=1),
            aggregations=["Maximum", "Total"],
            **self._call_kwargs(endpoint, deadline),
        )
        out: dict[str, float] = {}
        for result in results:
            for metric in result.metrics:
                field = "total" if metric.name == "xact_total" else "maximum"
                for ts in metric.timeseries:
                    points = [p for p in ts.data if getattr(p, field) is not None]
                    if points:
                        out[metric.name] = float(getattr(max(points, key=lambda p: p.timestamp), field))
        return out

    def _kql(self, query: str, deadline: float) -> list[list[Any]]:
        response = self._logs_client.query_workspace(
            self._workspace,
            query,
            timespan=_WINDOW,
            **self._call_kwargs(self._logs_endpoint, deadline),
        )
        if response.status != LogsQueryStatus.SUCCESS:
            error = getattr(response, "partial_error", None)
            raise ValueError(f"partial Log Analytics answer: {error}")
        rows: list[list[Any]] = []
        for table in response.tables:
            rows.extend(list(row) for row in _rows(table.rows))
        return rows


def _rows(rows: Iterable[Any]) -> Iterable[Any]:
    return rows


def _short(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    text = str(text).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {line}"[:240]
