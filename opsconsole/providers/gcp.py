"""The ``gcp`` fleet source: GKE workloads and Cloud SQL, read from Cloud Monitoring.

Why this module exists: request figures (p95, errors, rps) of GKE workloads are not in the Kubernetes
API; Cloud Monitoring has them (the HTTPS load balancer's ``total_latencies`` / ``request_count``) next
to the containers' CPU, memory and restarts and Cloud SQL's replica lag. :class:`GcpSource` reads them
with the official ``google-cloud-monitoring`` client and returns domain records only:

* one :class:`~opsconsole.core.fleet.model.WorkloadMetrics` per GKE cluster × service of its environment;
* one :class:`~opsconsole.core.fleet.model.DatabaseState` per region whose database is hosted on GCP.

How to use it::

    source = GcpSource(fleet, project="voltage-prod")                 # production: ADC, TLS
    source = GcpSource.from_endpoints(fleet, emulator.start())        # sandbox: insecure local gRPC
    reading = source.read()

Queries (one project; each metric is queried **once for every cluster / database** of the project, with
the cluster's / database's labels in ``group_by``, and split locally; the nine queries run concurrently.
A failed workload query makes every GKE cluster a problem, a failed Cloud SQL query every database):

* CPU / memory: ``kubernetes.io/container/{cpu,memory}/limit_utilization`` on ``k8s_container``
  filtered by project; ALIGN_MEAN over 60 s, REDUCE_MEAN by location, cluster_name and container_name
  (the container is named after the service);
* restarts: ``kubernetes.io/container/restart_count``, ALIGN_DELTA over one hour, REDUCE_SUM: the
  number of restarts **in the last hour** (not the lifetime count the Kubernetes API shows);
* p95: ``loadbalancing.googleapis.com/https/total_latencies`` on ``https_lb_rule``; ALIGN_PERCENTILE_95
  over 60 s, REDUCE_MAX by url_map_name (the cluster's ``um-<cluster>``) and backend_target_name
  (``bs-<cluster>-<service>``, the naming convention of the fleet's load balancers);
* rps / error rate: ``.../https/request_count``, ALIGN_RATE over 60 s, REDUCE_SUM by URL map, backend
  and ``response_code_class``; errors are the ``500`` class. A workload with no requests in the window has
  ``rps=0`` and ``p95_ms`` / ``error_rate`` ``None``.
* Cloud SQL (by ``database_id``, ``<project>:pg-<region>``): ``database/up`` (→ ``available``),
  ``database/replication/replica_lag`` (ALIGN_MAX; absent on a write primary → 0),
  ``database/postgresql/transaction_count`` (ALIGN_RATE → ``tps``) and
  ``database/postgresql/insights/aggregate/latencies`` (ALIGN_PERCENTILE_95, µs → ``query_p95_ms``).
  ``role``, ``replicates_from``, ``read_replicas`` and ``storage_tb`` are **not** in Cloud Monitoring:
  they come from the inventory spec (a promotion or a replica count change made elsewhere is not seen
  here; the AWS / Kubernetes side or the Cloud SQL Admin API would be the place to read them).

Each value is the newest aligned point of the last 5 minutes (1 hour for restarts). The 5-minute queries
keep the newest point of each output series and ask only from the newest window end they hold.

Errors: PERMISSION_DENIED / UNAUTHENTICATED raise :class:`SourceError` naming the project; UNAVAILABLE
(connection refused) and a missed deadline raise :class:`SourceError` naming the endpoint — they are not
retried inside one read, the next refresh is the retry. RESOURCE_EXHAUSTED is retried with exponential
backoff (``google.api_core.retry.Retry``) within the read's deadline and reported in ``problems``.
A query that fails otherwise (bad page token, unparsable answer) makes every cluster / region it covers a
problem.
Total read time is bounded by ``timeout_s``.

Cadence: the standard metrics read here have a 60-s period, so with ``metrics_cadence_s`` (the wiring
passes ``opsconsole_clouds.gcp.metrics_cadence_s``) the nine queries run at most once per period
(aligned) and :meth:`GcpSource.read` serves the last answer in between, stamped with when it was fetched
(``as_of``); ``0`` (the constructor's default) asks at every read. Every ``ListTimeSeries`` page is
counted in :data:`~opsconsole.core.fleet.metering.METER` (units = time series returned).
``resolve_endpoints`` (sandbox): the emulator's endpoint is re-read before each poll and the channel
rebuilt when it moved. :meth:`GcpSource.touch` makes the next read poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport
from google.protobuf import duration_pb2, timestamp_pb2

from opsconsole.core.errors import SourceError
from opsconsole.core.fleet.cadence import Cadence, PollCache
from opsconsole.core.fleet.engine import SourceReading
from opsconsole.core.fleet.metering import METER
from opsconsole.core.fleet.model import (
    Cloud,
    ClusterSpec,
    DatabaseState,
    Fleet,
    FleetRecord,
    RegionSpec,
    WorkloadMetrics,
)

__all__ = ["SOURCE_NAME", "GcpSource"]

log = logging.getLogger(__name__)

SOURCE_NAME = "gcp"
_Aligner = monitoring_v3.Aggregation.Aligner
_Reducer = monitoring_v3.Aggregation.Reducer
_WINDOW_S = 300
_ALIGN_S = 60
_PAGE_SIZE = 500


@dataclass(frozen=True)
class _Query:
    metric: str
    resource_type: str
    labels: tuple[tuple[str, str], ...]
    aligner: int
    reducer: int
    group_by: tuple[str, ...]
    window_s: int = _WINDOW_S
    align_s: int = _ALIGN_S

    def filter(self) -> str:
        parts = [f'metric.type = "{self.metric}"', f'resource.type = "{self.resource_type}"']
        parts += [f'resource.labels.{k} = "{v}"' for k, v in self.labels]
        return " AND ".join(parts)


#: Newest value of each output series of one query, keyed by its (sorted) labels, ``project_id`` left out.
_Answer = dict[tuple[tuple[str, str], ...], float]

_BY_CONTAINER = (
    "resource.labels.location",
    "resource.labels.cluster_name",
    "resource.labels.container_name",
)
_BY_BACKEND = ("resource.labels.url_map_name", "resource.labels.backend_target_name")
#: The workload queries, each across every GKE cluster of the project (split per cluster locally):
#: (metric, resource type, aligner, reducer, group by, window s, alignment s).
_CLUSTER_QUERIES: tuple[tuple[str, str, int, int, tuple[str, ...], int, int], ...] = (
    ("kubernetes.io/container/cpu/limit_utilization", "k8s_container",
     _Aligner.ALIGN_MEAN, _Reducer.REDUCE_MEAN, _BY_CONTAINER, _WINDOW_S, _ALIGN_S),
    ("kubernetes.io/container/memory/limit_utilization", "k8s_container",
     _Aligner.ALIGN_MEAN, _Reducer.REDUCE_MEAN, _BY_CONTAINER, _WINDOW_S, _ALIGN_S),
    ("kubernetes.io/container/restart_count", "k8s_container",
     _Aligner.ALIGN_DELTA, _Reducer.REDUCE_SUM, _BY_CONTAINER, 3600, 3600),
    ("loadbalancing.googleapis.com/https/total_latencies", "https_lb_rule",
     _Aligner.ALIGN_PERCENTILE_95, _Reducer.REDUCE_MAX, _BY_BACKEND, _WINDOW_S, _ALIGN_S),
    ("loadbalancing.googleapis.com/https/request_count", "https_lb_rule",
     _Aligner.ALIGN_RATE, _Reducer.REDUCE_SUM, (*_BY_BACKEND, "metric.labels.response_code_class"),
     _WINDOW_S, _ALIGN_S),
)
#: The Cloud SQL queries, each across every database of the project, grouped by database_id:
#: (metric, aligner, reducer); order: up, replica lag, transactions, query p95.
_DB_QUERIES: tuple[tuple[str, int, int], ...] = (
    ("cloudsql.googleapis.com/database/up", _Aligner.ALIGN_MAX, _Reducer.REDUCE_MAX),
    ("cloudsql.googleapis.com/database/replication/replica_lag", _Aligner.ALIGN_MAX, _Reducer.REDUCE_MAX),
    (
        "cloudsql.googleapis.com/database/postgresql/transaction_count",
        _Aligner.ALIGN_RATE,
        _Reducer.REDUCE_SUM,
    ),
    (
        "cloudsql.googleapis.com/database/postgresql/insights/aggregate/latencies",
        _Aligner.ALIGN_PERCENTILE_95,
        _Reducer.REDUCE_MAX,
    ),
)


def _slice(answer: _Answer, where: tuple[tuple[str, str], ...]) -> _Answer:
    """The series of ``answer`` whose labels include ``where``, keyed by their other labels."""
    out: _Answer = {}
    for key, value in answer.items():
        labels = dict(key)
        if all(labels.pop(k, None) == v for k, v in where):
            out[tuple(sorted(labels.items()))] = value
    return out


class _Fatal(Exception):
    """A failure that ends the whole read (auth, endpoint down, deadline)."""


#: Seconds past now at which every query window ends (see :meth:`GcpSource.read`).
QUERY_LOOKAHEAD_S = 30.0

class GcpSource:
    """Reads GKE workload metrics and Cloud SQL state from Cloud Monitoring (see the module docstring).

    Args:
        fleet: the inventory; its GCP clusters and GCP-hosted databases are read.
        project: the Cloud Monitoring project (scoping project) holding the fleet's metrics.
        endpoint: ``host:port`` of a local emulator, reached over an insecure channel (sandbox only).
            ``None`` (production): the client's default endpoint, TLS, Application Default Credentials.
        timeout_s: upper bound of one :meth:`read`, all calls and backoffs included.
        client: an already-built ``MetricServiceClient`` (tests); overrides ``endpoint``.
    """

    name: str = SOURCE_NAME

    def __init__(
        self,
        fleet: Fleet,
        *,
        project: str,
        endpoint: str | None = None,
        timeout_s: float = 5.0,
        client: Any = None,
        metrics_cadence_s: float = 0.0,
        clock: Callable[[], float] | None = None,
        resolve_endpoints: Callable[[], Any] | None = None,
    ) -> None:
        self.cadence_s = float(metrics_cadence_s)
        self._poll = PollCache(Cadence(metrics_cadence_s, clock=clock))
        self._resolve = resolve_endpoints
        #: Per incremental query: output series → (end time, value) of its newest point held.
        self._held: dict[_Query, dict[tuple[tuple[str, str], ...], tuple[float, float]]] = {}
        self._fleet = fleet
        self._project = project
        self._lock = threading.Lock()
        self._throttled = 0
        self._timeout_s = float(timeout_s)
        self._endpoint = endpoint or "monitoring.googleapis.com:443"
        if client is not None:
            self._client = client
        elif endpoint is not None:
            self._client = _local_client(endpoint)
        else:  # pragma: no cover - needs real Google credentials
            self._client = monitoring_v3.MetricServiceClient()
        self._clusters = sorted(
            (c for c in fleet.clusters.values() if c.cloud is Cloud.GCP), key=lambda c: c.name
        )
        self._db_regions = sorted(
            (r for r in fleet.regions.values() if r.database.cloud is Cloud.GCP), key=lambda r: r.id
        )

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
    ) -> GcpSource:
        """Build the source for the sandbox emulator's :class:`~opsconsole.sandbox.emulator.Endpoints`."""
        return cls(
            fleet,
            project=endpoints.settings.get("project", "voltage-sandbox"),
            endpoint=endpoints.urls["gcp"],
            timeout_s=timeout_s,
            metrics_cadence_s=metrics_cadence_s,
            clock=clock,
            resolve_endpoints=resolve_endpoints,
        )

    # ----------------------------------------------------------------------------------------------

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
        endpoint = None if endpoints is None else endpoints.urls.get("gcp")
        if endpoint and endpoint != self._endpoint:
            self._client = _local_client(endpoint)
            self._endpoint = endpoint
            with self._lock:
                self._held.clear()

    def read(self) -> SourceReading:
        """Between polls, the last answer (no call); else every GKE workload and GCP-hosted database."""
        return self._poll.read(self._read_now, before=self._reresolve)

    def _read_now(self) -> SourceReading:
        """Read every GKE workload and GCP-hosted database. See the module docstring for errors."""
        deadline = time.monotonic() + self._timeout_s
        # The query windows end a little in the future: a point written while this read is in flight
        # (or stamped by a clock slightly ahead of ours) is then still inside "the last N minutes".
        now = time.time() + QUERY_LOOKAHEAD_S
        self._throttled = 0
        queries = (self._cluster_queries() if self._clusters else []) + (
            self._database_queries() if self._db_regions else []
        )
        answers = self._run(queries, now, deadline)
        records: list[FleetRecord] = []
        problems: list[str] = []
        failed = 0
        if self._clusters:
            cluster_answers = answers[: len(_CLUSTER_QUERIES)]
            error = next((a for a in cluster_answers if isinstance(a, gexc.GoogleAPICallError)), None)
            if error is not None:
                failed += len(self._clusters)
                problems += [f"cluster {c.name}: {_short(error)}" for c in self._clusters]
            else:
                values = [a for a in cluster_answers if isinstance(a, dict)]
                for cluster in self._clusters:
                    records.extend(self._cluster_records(cluster, values))
        if self._db_regions:
            db_answers = answers[len(answers) - len(_DB_QUERIES) :]
            error = next((a for a in db_answers if isinstance(a, gexc.GoogleAPICallError)), None)
            if error is not None:
                failed += len(self._db_regions)
                problems += [f"database {r.id}: {_short(error)}" for r in self._db_regions]
            else:
                values = [a for a in db_answers if isinstance(a, dict)]
                for region in self._db_regions:
                    record = self._database_record(region, values)
                    if record is None:
                        problems.append(
                            f"database {region.id}: no cloudsql database/up data in the last 5 min"
                        )
                    else:
                        records.append(record)
        total = len(self._clusters) + len(self._db_regions)
        if total and failed == total:
            raise SourceError(
                f"Cloud Monitoring project {self._project} at {self._endpoint}: every query failed: "
                + "; ".join(problems)
            )
        notes: list[str] = []
        if self._throttled:
            notes.append(
                f"throttled by Cloud Monitoring (RESOURCE_EXHAUSTED x{self._throttled}); "
                "backed off and retried"
            )
        return SourceReading(records=tuple(records), problems=tuple(problems), notes=tuple(notes))

    def _run(self, queries: list[_Query], now: float, deadline: float) -> list[_Answer | Exception]:
        """Run the queries concurrently; each answer is its values or the GoogleAPICallError it failed with.

        Raises:
            SourceError: a query failed in a way that ends the whole read (the first such, in query order).
        """
        answers: list[_Answer | Exception] = []
        if len(queries) <= 1:
            for query in queries:
                try:
                    answers.append(self._latest(query, now, deadline))
                except _Fatal as exc:
                    raise SourceError(str(exc)) from None
                except gexc.GoogleAPICallError as exc:
                    answers.append(exc)
            return answers
        pool = ThreadPoolExecutor(max_workers=len(queries), thread_name_prefix="gcp-read")
        try:
            futures = [pool.submit(self._latest, query, now, deadline) for query in queries]
            wait_futures(futures, timeout=max(0.0, deadline - time.monotonic()) + 0.2)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        for future in futures:
            if not future.done():
                raise SourceError(
                    f"Cloud Monitoring endpoint {self._endpoint} (project {self._project}) did not answer "
                    f"within {self._timeout_s:.1f} s"
                )
            try:
                answers.append(future.result())
            except _Fatal as exc:
                raise SourceError(str(exc)) from None
            except gexc.GoogleAPICallError as exc:
                answers.append(exc)
        return answers

    # -- queries: one per metric, across every cluster / database ------------------------------------

    def _cluster_queries(self) -> list[_Query]:
        where = (("project_id", self._project),)
        return [
            _Query(metric, resource_type, where, aligner, reducer, group_by, window_s=window, align_s=align)
            for metric, resource_type, aligner, reducer, group_by, window, align in _CLUSTER_QUERIES
        ]

    def _database_queries(self) -> list[_Query]:
        where = (("project_id", self._project),)
        return [
            _Query(metric, "cloudsql_database", where, aligner, reducer, ("resource.labels.database_id",))
            for metric, aligner, reducer in _DB_QUERIES
        ]

    # -- per cluster / region ------------------------------------------------------------------------

    def _cluster_records(self, cluster: ClusterSpec, answers: Sequence[_Answer]) -> list[WorkloadMetrics]:
        """One cluster's records from the answers of :data:`_CLUSTER_QUERIES` (in that order)."""
        cpu_all, mem_all, restarts_all, p95_all, rates_all = answers
        container_of = (("location", cluster.cloud_region), ("cluster_name", cluster.name))
        cpu = _slice(cpu_all, container_of)
        mem = _slice(mem_all, container_of)
        restarts = _slice(restarts_all, container_of)
        lb_of = (("url_map_name", f"um-{cluster.name}"),)
        p95 = _slice(p95_all, lb_of)
        rates = _slice(rates_all, lb_of)
        observed = datetime.now(UTC)
        out: list[WorkloadMetrics] = []
        for svc in sorted(self._fleet.services_in(cluster.environment), key=lambda s: s.name):
            backend = f"bs-{cluster.name}-{svc.name}"
            key_c = (("container_name", svc.name),)
            key_b = (("backend_target_name", backend),)
            ok = rates.get((*key_b, ("response_code_class", "200")), 0.0)
            bad = sum(
                v
                for k, v in rates.items()
                if dict(k).get("backend_target_name") == backend
                and dict(k).get("response_code_class", "").startswith("5")
            )
            other = sum(
                v
                for k, v in rates.items()
                if dict(k).get("backend_target_name") == backend
                and dict(k).get("response_code_class") not in ("200",)
                and not dict(k).get("response_code_class", "").startswith("5")
            )
            rps = ok + bad + other
            has_lb = any(dict(k).get("backend_target_name") == backend for k in rates)
            restart_value = restarts.get(key_c)
            out.append(
                WorkloadMetrics(
                    source=SOURCE_NAME,
                    observed_at=observed,
                    cluster=cluster.name,
                    region=cluster.region,
                    service=svc.name,
                    p95_ms=p95.get(key_b) if rps > 0 else None,
                    error_rate=(bad / rps) if rps > 0 else None,
                    rps=rps if has_lb else None,
                    cpu_utilisation=cpu.get(key_c),
                    memory_utilisation=mem.get(key_c),
                    restarts=None if restart_value is None else round(restart_value),
                    extra={
                        "project": self._project,
                        "location": cluster.cloud_region,
                        "backend": backend,
                        "restarts_window_s": 3600,
                    },
                )
            )
        return out

    def _database_record(self, region: RegionSpec, answers: Sequence[_Answer]) -> DatabaseState | None:
        """One region's database from the answers of :data:`_DB_QUERIES` (in that order)."""
        up_all, lag_all, tps_all, p95_all = answers
        of = (("database_id", f"{self._project}:pg-{region.id}"),)
        up = _slice(up_all, of)
        if not up:
            return None
        lag = _slice(lag_all, of)
        tps = _slice(tps_all, of)
        p95 = _slice(p95_all, of)
        spec = region.database
        available = up.get((), 0.0) >= 1.0
        p95_us = p95.get(())
        return DatabaseState(
            source=SOURCE_NAME,
            observed_at=datetime.now(UTC),
            region=region.id,
            role=spec.role,
            replicates_from=spec.replicates_from,
            read_replicas=spec.read_replicas,
            replica_lag_s=round(lag.get((), 0.0), 3),
            query_p95_ms=round(p95_us / 1000.0, 3) if p95_us is not None and available else 0.0,
            tps=tps.get((), 0.0) if available else 0.0,
            available=available,
            storage_tb=float(spec.storage_tb),
            extra={
                "project": self._project,
                "database_id": f"{self._project}:pg-{region.id}",
                "from_inventory": ["role", "replicates_from", "read_replicas", "storage_tb"],
            },
        )

    # -- one query -----------------------------------------------------------------------------------

    def _latest(self, query: _Query, now: float, deadline: float) -> dict[tuple[tuple[str, str], ...], float]:
        """Newest aligned value of each output series, keyed by its (sorted) group-by labels.

        A query whose window spans several alignment periods keeps, per output series, its newest point
        and asks only from the newest window end it holds (the points it does not have yet); a series with
        no new point keeps its held one while that is inside the window.
        """
        incremental = query.window_s > query.align_s
        with self._lock:
            held = dict(self._held.get(query, {})) if incremental else {}
        start = now - query.window_s
        if held:
            start = max(start, *(end for end, _ in held.values()))
        fresh = self._newest(query, start, now, deadline)
        held.update(fresh)
        held = {k: v for k, v in held.items() if v[0] >= now - query.window_s}
        if incremental:
            with self._lock:
                self._held[query] = held
        return {k: v for k, (_, v) in held.items()}

    def _newest(
        self, query: _Query, start: float, now: float, deadline: float
    ) -> dict[tuple[tuple[str, str], ...], tuple[float, float]]:
        """(end time, value) of the newest aligned point of each output series in ``[start, now]``."""
        out: dict[tuple[tuple[str, str], ...], tuple[float, float]] = {}
        for series in self._list(query, start, now, deadline):
            if not series.points:
                continue
            point = max(series.points, key=lambda p: p.interval.end_time.ToNanoseconds())
            value = point.value
            kind = value.WhichOneof("value")
            if kind == "double_value":
                number = float(value.double_value)
            elif kind == "int64_value":
                number = float(value.int64_value)
            elif kind == "bool_value":
                number = 1.0 if value.bool_value else 0.0
            else:
                continue
            labels = {**dict(series.resource.labels), **dict(series.metric.labels)}
            labels.pop("project_id", None)
            out[tuple(sorted(labels.items()))] = (point.interval.end_time.ToNanoseconds() / 1e9, number)
        return out

    def _list(self, query: _Query, start_s: float, now: float, deadline: float) -> Iterator[Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Fatal(
                f"Cloud Monitoring at {self._endpoint} (project {self._project}): no complete answer "
                f"within {self._timeout_s:.1f} s"
            )
        end = timestamp_pb2.Timestamp()
        end.FromNanoseconds(int(now * 1e9))
        start = timestamp_pb2.Timestamp()
        start.FromNanoseconds(int(start_s * 1e9))
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{self._project}",
            filter=query.filter(),
            interval=monitoring_v3.TimeInterval(start_time=start, end_time=end),
            aggregation=monitoring_v3.Aggregation(
                alignment_period=duration_pb2.Duration(seconds=query.align_s),
                per_series_aligner=query.aligner,
                cross_series_reducer=query.reducer,
                group_by_fields=list(query.group_by),
            ),
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
            page_size=_PAGE_SIZE,
        )
        retry = gretry.Retry(
            predicate=gretry.if_exception_type(gexc.ResourceExhausted),
            initial=0.05,
            maximum=1.0,
            multiplier=2.0,
            timeout=remaining,
            on_error=self._on_error,
        )
        try:
            yield from self._pages(request, retry, remaining, deadline)
        except (gexc.PermissionDenied, gexc.Unauthenticated) as exc:
            raise _Fatal(
                f"Cloud Monitoring refused project {self._project}: {_short(exc)} (check the credentials "
                "and the monitoring.timeSeries.list permission)"
            ) from None
        except gexc.ServiceUnavailable as exc:
            raise _Fatal(f"Cloud Monitoring endpoint {self._endpoint} unavailable: {_short(exc)}") from None
        except gexc.DeadlineExceeded:
            raise _Fatal(
                f"Cloud Monitoring endpoint {self._endpoint} (project {self._project}) did not answer "
                f"within {self._timeout_s:.1f} s"
            ) from None
        except gexc.RetryError as exc:
            cause = exc.cause
            if isinstance(cause, gexc.ResourceExhausted) or self._throttled:
                raise _Fatal(
                    f"Cloud Monitoring throttled project {self._project} "
                    f"(RESOURCE_EXHAUSTED x{self._throttled}) "
                    f"past the {self._timeout_s:.1f} s deadline"
                ) from None
            raise _Fatal(f"Cloud Monitoring endpoint {self._endpoint}: {_short(exc)}") from None

    def _pages(self, request: Any, retry: Any, remaining: float, deadline: float) -> Iterator[Any]:
        """The time series of every page; each page (one call) and each failed call counted in METER."""
        try:
            pager = self._client.list_time_series(request=request, retry=retry, timeout=remaining)
            for page in pager.pages:
                METER.count(SOURCE_NAME, "ListTimeSeries", units=len(page.time_series))
                for series in page.time_series:
                    yield monitoring_v3.TimeSeries.pb(series)
                if time.monotonic() > deadline:
                    raise gexc.DeadlineExceeded("deadline passed while paging")  # type: ignore[no-untyped-call] # api-core is untyped
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            cause = exc.cause if isinstance(exc, gexc.RetryError) else exc
            METER.count(SOURCE_NAME, "ListTimeSeries", units=0, error=True,
                        throttled=isinstance(cause, gexc.ResourceExhausted))
            raise

    def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, gexc.ResourceExhausted):
            with self._lock:  # the queries run concurrently
                self._throttled += 1
            METER.count(SOURCE_NAME, "ListTimeSeries", units=0, error=True, throttled=True)
            log.warning("Cloud Monitoring throttled project %s; backing off", self._project)


def _short(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    line = str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {line}"[:200]


def _local_client(endpoint: str) -> Any:
    """A client of a local emulator over an insecure channel.

    A private subchannel pool and short reconnect backoff: a restarted local emulator is reached again on
    the next read instead of after gRPC's shared, process-wide backoff (up to 2 min).
    """
    channel = grpc.insecure_channel(
        endpoint,
        options=[
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ],
    )
    transport = MetricServiceGrpcTransport(channel=channel)
    return monitoring_v3.MetricServiceClient(transport=transport)
