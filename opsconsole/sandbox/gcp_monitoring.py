"""A local Cloud Monitoring ``MetricService`` (gRPC) in front of the sandbox world.

Why this module exists: on the sandbox, opsconsole reads GKE workloads and Cloud SQL through the real
``google-cloud-monitoring`` client (:mod:`opsconsole.providers.gcp`). That library only speaks gRPC, so
this module serves ``google.monitoring.v3.MetricService/ListTimeSeries`` on 127.0.0.1 with a plain
``grpc.server`` and the protobuf types of the library, and computes what Cloud Monitoring computes
server-side: filters, aligners, cross-series reducers, pagination.

How to use it::

    emulator = GcpMonitoringEmulator(fleet)
    endpoints = emulator.start()         # {"gcp": "127.0.0.1:PORT"}, settings {"project": ...}
    emulator.publish(world)              # one point per series, stamped with the wall clock
    ...
    emulator.faults.inject("throttled", count=2)
    emulator.stop()

What is published (one project, ``Endpoints.settings["project"]``) for every cluster whose cloud is
GCP, and every region whose database is on GCP:

* ``k8s_container`` (labels project_id, location = the cluster's cloud region, cluster_name,
  namespace_name = ``voltage``, pod_name, container_name = the service), one series per *ready* pod:
  ``kubernetes.io/container/cpu/limit_utilization`` (GAUGE DOUBLE: the world's CPU utilisation, the
  sandbox sets requests = limits), ``kubernetes.io/container/memory/limit_utilization`` (GAUGE DOUBLE;
  the world has no memory model, so this is a synthetic ``0.3 + 0.4 × cpu``) and
  ``kubernetes.io/container/restart_count`` (CUMULATIVE INT64; the world has no restarts: 0);
* ``https_lb_rule`` (one external HTTPS load balancer per cluster: url_map_name ``um-<cluster>``,
  forwarding_rule_name ``fr-<cluster>``, backend_target_name ``bs-<cluster>-<service>``):
  ``loadbalancing.googleapis.com/https/total_latencies`` (DELTA DISTRIBUTION in ms, exponential
  buckets scale 1 ms × 1.05^i, whose interpolated 95th percentile is the world's workload p95) and
  ``loadbalancing.googleapis.com/https/request_count`` (DELTA INT64, metric label
  ``response_code_class`` ``200`` or ``500``, split by the world's error rate; fractional requests are
  carried to the next point so long-run totals are exact);
* ``cloudsql_database`` (database_id ``<project>:pg-<region>``, region = the region's GCP region):
  ``cloudsql.googleapis.com/database/up`` (GAUGE INT64), ``.../database/replication/replica_lag``
  (GAUGE DOUBLE s, read replicas only), ``.../database/postgresql/transaction_count`` (DELTA INT64)
  and ``.../database/postgresql/insights/aggregate/latencies`` (DISTRIBUTION in µs whose p95 is the
  world's query p95; published as DELTA where Cloud SQL publishes CUMULATIVE — a simplification).

A DELTA point covers the time since the previous publish, at most 60 s (a longer gap is "not sampled").
Points closer than :data:`MIN_SPACING_S` to the previous one replace it (gauges) or merge into it
(deltas), and points older than :data:`HISTORY_S` are dropped, so memory stays bounded however fast the
sandbox publishes.

Server-side semantics implemented (a subset of Cloud Monitoring, enough for real queries):

* filter: ``metric.type``, ``resource.type``, ``resource.labels.<k>`` / ``resource.label.<k>``,
  ``metric.labels.<k>`` / ``metric.label.<k>``, ``project``, with ``=`` or ``!=`` and a quoted value,
  joined by ``AND``; exactly one ``metric.type = "..."`` is required (as in Cloud Monitoring);
* aligners ALIGN_NONE, MEAN, MIN, MAX, SUM, COUNT, RATE, DELTA, PERCENTILE_99/95/50/05; alignment windows
  end at ``interval.end_time - k × alignment_period``; RATE on a DELTA series divides the sum by the
  time the points actually cover (equal to the period when sampling is contiguous); DELTA on a
  CUMULATIVE series is the increase over the window; percentiles merge the window's distributions and
  interpolate linearly inside the bucket;
* reducers REDUCE_NONE, SUM, MEAN, MIN, MAX, COUNT, PERCENTILE_99/95/50/05 with ``group_by_fields``
  (numbers, or merged distributions for SUM and percentiles); points are returned newest first;
* ``page_size`` / ``page_token`` (the token is the offset, opaque to clients); view HEADERS omits points.

Faults (``emulator.faults``, the sandbox's one :class:`~opsconsole.sandbox.emulator.Faults`; a
request's ``FaultRequest`` has the gRPC peer as ``client`` and the project as ``scope``):

* ``"down"``: the gRPC server is stopped (connections refused) until the fault is cleared, when it is
  started again on the same port;
* ``"slow"``: every answer is delayed by ``seconds`` (default 5);
* ``"forbidden"``: PERMISSION_DENIED, or UNAUTHENTICATED ("expired credentials") with ``mode="expired"``;
* ``"throttled"``: RESOURCE_EXHAUSTED for the next ``count`` calls (default 3), then normal answers;
* ``"malformed"``: by default a *truncated page*: the first page carries half the series and a
  ``next_page_token`` that the server then rejects with INVALID_ARGUMENT; with ``mode="garbled"`` the
  response bytes are garbage, which the client fails to parse (gRPC INTERNAL on the client side).

``collect`` does nothing: Cloud Monitoring is read-only, no client can change the world through it.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.api import (  # type: ignore[import-untyped] # googleapis-common-protos ships no stubs
    distribution_pb2,
    metric_pb2,
)
from google.cloud import monitoring_v3

from opsconsole.core.errors import SandboxError
from opsconsole.core.fleet.model import Cloud, DatabaseState, DbRole, Fleet, WorkloadState
from opsconsole.sandbox.emulator import FAULT_KINDS, Endpoints, FaultRequest, Faults
from opsconsole.sandbox.world import World

__all__ = [
    "DEFAULT_PROJECT",
    "HISTORY_S",
    "LATENCY_BUCKETS",
    "MIN_SPACING_S",
    "GcpMonitoringEmulator",
    "backend_name",
    "database_id",
    "percentile_of",
    "url_map_name",
]

log = logging.getLogger(__name__)

DEFAULT_PROJECT = "voltage-sandbox"
#: How long points are kept (a 1 h query window plus margin).
HISTORY_S = 70 * 60
#: Points closer than this to the previous point of a series replace / merge into it.
MIN_SPACING_S = 10.0
#: Longest interval one DELTA point covers.
MAX_DELTA_S = 60.0
NAMESPACE = "voltage"
SERVICE_NAME = "google.monitoring.v3.MetricService"

_Aligner = monitoring_v3.Aggregation.Aligner
_Reducer = monitoring_v3.Aggregation.Reducer
_Kind = metric_pb2.MetricDescriptor.MetricKind
_VType = metric_pb2.MetricDescriptor.ValueType

_ListRequest: Any = monitoring_v3.ListTimeSeriesRequest.pb()
_ListResponse: Any = monitoring_v3.ListTimeSeriesResponse.pb()
_TimeSeries: Any = monitoring_v3.TimeSeries.pb()


@dataclass(frozen=True)
class ExponentialBuckets:
    """Cloud Monitoring exponential bucket options: bucket ``i`` (1..n) is [s·g^(i-1), s·g^i)."""

    count: int
    growth: float
    scale: float

    def bounds(self, index: int) -> tuple[float, float]:
        if index <= 0:
            return 0.0, self.scale
        if index > self.count:
            top = self.scale * self.growth**self.count
            return top, top
        return self.scale * self.growth ** (index - 1), self.scale * self.growth**index

    def index_of(self, value: float) -> int:
        if value < self.scale:
            return 0
        i = math.floor(math.log(value / self.scale) / math.log(self.growth)) + 1
        return min(i, self.count + 1)


#: Buckets of every published distribution: 1 ms (or µs) × 1.05^i, 300 finite buckets (~2.3e6).
LATENCY_BUCKETS = ExponentialBuckets(count=300, growth=1.05, scale=1.0)


def url_map_name(cluster: str) -> str:
    """The URL map of the cluster's external HTTPS load balancer (sandbox naming convention)."""
    return f"um-{cluster}"


def backend_name(cluster: str, service: str) -> str:
    """The backend service that fronts one workload of a cluster (sandbox naming convention)."""
    return f"bs-{cluster}-{service}"


def database_id(project: str, region: str) -> str:
    """Cloud SQL ``database_id`` label of a region's PostgreSQL instance: ``<project>:pg-<region>``."""
    return f"{project}:pg-{region}"


# --------------------------------------------------------------------------------------------------
# Distributions (sparse bucket counts over LATENCY_BUCKETS)
# --------------------------------------------------------------------------------------------------

Dist = dict[int, int]  # bucket index -> count


def distribution_with_p95(p95: float, count: int, buckets: ExponentialBuckets = LATENCY_BUCKETS) -> Dist:
    """Bucket counts totalling ``count`` whose interpolated 95th percentile is ``p95`` (up to rounding).

    95 % of the mass lies below ``p95`` (spread down to a third of it), 5 % above (up to three times
    it); inside the bucket holding ``p95`` the counts are placed so that linear interpolation lands on
    it: with ``C`` below the bucket and ``n`` in it, p = lo + (hi − lo)(0.95·count − C)/n.
    """
    if count <= 0:
        return {}
    b = buckets.index_of(max(p95, buckets.scale))
    lo, hi = buckets.bounds(b)
    f = 0.0 if hi <= lo else min(1.0, max(0.0, (p95 - lo) / (hi - lo)))
    rank = 0.95 * count
    limits = [rank / f if f > 0 else math.inf, (count - rank) / (1 - f) if f < 1 else math.inf]
    n_b = max(1, min(count, int(min(limits))))
    below = max(0, min(count - n_b, math.floor(rank - f * n_b + 0.5 - 1e-9)))
    if below >= rank:  # the rank must fall inside bucket b, not on its lower edge
        below = max(0, math.ceil(rank) - 1)
    above = count - below - n_b
    dist: Dist = {b: n_b}
    _spread(dist, below, range(max(0, buckets.index_of(p95 / 3.0)), b))
    _spread(dist, above, range(b + 1, min(buckets.count + 1, buckets.index_of(p95 * 3.0)) + 1))
    return dist


def _spread(dist: Dist, total: int, indices: range) -> None:
    if total <= 0:
        return
    if len(indices) == 0:
        raise ValueError("no bucket to spread counts over")
    each, rest = divmod(total, len(indices))
    for k, i in enumerate(reversed(indices)):  # remainders next to the p95 bucket: no gap below it
        c = each + (1 if k < rest else 0)
        if c:
            dist[i] = dist.get(i, 0) + c


def percentile_of(dist: Dist, q: float, buckets: ExponentialBuckets = LATENCY_BUCKETS) -> float | None:
    """Interpolated percentile ``q`` (0..1) of a bucketed distribution; ``None`` when it is empty."""
    total = sum(dist.values())
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i in sorted(dist):
        c = dist[i]
        if c <= 0:
            continue
        if seen + c >= rank:
            lo, hi = buckets.bounds(i)
            return lo + (hi - lo) * (rank - seen) / c
        seen += c
    lo, hi = buckets.bounds(max(dist))
    return hi


def _merge(dists: Iterable[Dist]) -> Dist:
    out: Dist = {}
    for d in dists:
        for i, c in d.items():
            out[i] = out.get(i, 0) + c
    return out


def _dist_pb(dist: Dist, buckets: ExponentialBuckets = LATENCY_BUCKETS) -> Any:
    total = sum(dist.values())
    pb = distribution_pb2.Distribution(count=total)
    opts = pb.bucket_options.exponential_buckets
    opts.num_finite_buckets = buckets.count
    opts.growth_factor = buckets.growth
    opts.scale = buckets.scale
    if total:
        mean = sum(c * sum(buckets.bounds(i)) / 2.0 for i, c in dist.items()) / total
        pb.mean = mean
        top = max(dist) if dist else 0
        counts = [0] * (top + 1)
        for i, c in dist.items():
            counts[i] = c
        pb.bucket_counts.extend(counts)
    return pb


# --------------------------------------------------------------------------------------------------
# Series store
# --------------------------------------------------------------------------------------------------

Value = float | int | dict[int, int]


@dataclass
class _Point:
    start: float
    end: float
    value: Value


@dataclass
class _Series:
    metric_type: str
    metric_labels: dict[str, str]
    resource_type: str
    resource_labels: dict[str, str]
    kind: int
    value_type: int
    points: deque[_Point] = field(default_factory=deque)
    #: Fractional requests not yet published (DELTA INT64 series only).
    carry: float = 0.0

    def field_value(self, name: str) -> str | None:
        if name == "metric.type":
            return self.metric_type
        if name == "resource.type":
            return self.resource_type
        if name == "project":
            return self.resource_labels.get("project_id")
        for prefix, labels in (
            ("resource.labels.", self.resource_labels),
            ("resource.label.", self.resource_labels),
            ("metric.labels.", self.metric_labels),
            ("metric.label.", self.metric_labels),
        ):
            if name.startswith(prefix):
                return labels.get(name[len(prefix) :])
        return None


class _RpcError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_TERM = re.compile(r'\s*([A-Za-z_][\w.]*)\s*(!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')
_AND = re.compile(r"\s+AND\s+")


def parse_filter(text: str) -> list[tuple[str, str, str]]:
    """``a = "x" AND b != "y"`` → [(a, "=", x), (b, "!=", y)]. Raises _RpcError(INVALID_ARGUMENT)."""
    terms: list[tuple[str, str, str]] = []
    for part in _AND.split(text.strip()):
        m = _TERM.fullmatch(part)
        if m is None:
            raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"Could not parse filter term {part!r}")
        terms.append((m.group(1), m.group(2), m.group(3).replace('\\"', '"')))
    if sum(1 for name, op, _ in terms if name == "metric.type" and op == "=") != 1:
        raise _RpcError(
            grpc.StatusCode.INVALID_ARGUMENT,
            'A filter must specify exactly one metric type with metric.type = "..."',
        )
    return terms


_PERCENTILE_ALIGNERS = {
    int(_Aligner.ALIGN_PERCENTILE_99): 0.99,
    int(_Aligner.ALIGN_PERCENTILE_95): 0.95,
    int(_Aligner.ALIGN_PERCENTILE_50): 0.50,
    int(_Aligner.ALIGN_PERCENTILE_05): 0.05,
}
_PERCENTILE_REDUCERS = {
    int(_Reducer.REDUCE_PERCENTILE_99): 0.99,
    int(_Reducer.REDUCE_PERCENTILE_95): 0.95,
    int(_Reducer.REDUCE_PERCENTILE_50): 0.50,
    int(_Reducer.REDUCE_PERCENTILE_05): 0.05,
}


def _numeric_percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# --------------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------------


class GcpMonitoringEmulator:
    """Cloud Monitoring's ``MetricService.ListTimeSeries`` over gRPC on 127.0.0.1 (see the module doc).

    Args:
        fleet: the fleet whose GCP clusters and Cloud SQL regions are published.
        project: the project every series belongs to (``Endpoints.settings["project"]``).
        clock: wall clock for point timestamps (tests may pass a fake one).
    """

    name = "gcp"

    def __init__(
        self, fleet: Fleet, *, project: str = DEFAULT_PROJECT, clock: Callable[[], float] = time.time
    ) -> None:
        self._fleet = fleet
        self._project = project
        self._clock = clock
        self._lock = threading.Lock()
        self._series: dict[tuple[Any, ...], _Series] = {}
        self._by_type: dict[str, list[_Series]] = {}
        self._last_publish: float | None = None
        #: Fault injection (see the module docstring).
        self.faults = Faults("Cloud Monitoring", on_down=self._set_down, kinds=FAULT_KINDS[:-1])
        self._server: grpc.Server | None = None
        self._port = 0
        self.calls = 0

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Endpoints:
        if self._server is not None:
            return self._endpoints()
        self._serve(0)
        return self._endpoints()

    def _endpoints(self) -> Endpoints:
        return Endpoints(urls={"gcp": f"127.0.0.1:{self._port}"}, settings={"project": self._project})

    def _serve(self, port: int) -> None:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="gcp-monitoring"),
            options=[("grpc.so_reuseport", 0)],
        )
        handler = grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
                    self._list_time_series,
                    request_deserializer=_ListRequest.FromString,
                    response_serializer=self._serialize,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
        if bound == 0:
            raise SandboxError(f"the Cloud Monitoring emulator could not bind 127.0.0.1:{port}")
        server.start()
        self._server = server
        self._port = bound

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=None).wait(2.0)

    # -- faults -----------------------------------------------------------------------------------

    def _set_down(self, down: bool) -> None:
        if down:
            self.stop()
        elif self._server is None and self._port:
            self._serve(self._port)

    # -- publish / collect ------------------------------------------------------------------------

    def collect(self, world: World) -> None:
        """Nothing to collect: Cloud Monitoring is read-only, clients cannot change the world through it."""
        return None

    def publish(self, world: World) -> None:
        """Write one point per series from the world's current figures, stamped with the wall clock."""
        now = self._clock()
        start = (
            now - MAX_DELTA_S if self._last_publish is None else max(self._last_publish, now - MAX_DELTA_S)
        )
        start = min(start, now - 1e-3)
        records = world.observe()
        workloads = {(r.cluster, r.service): r for r in records if isinstance(r, WorkloadState)}
        with self._lock:
            for spec in self._fleet.clusters.values():
                if spec.cloud is not Cloud.GCP:
                    continue
                for svc in self._fleet.services_in(spec.environment):
                    wl = workloads.get((spec.name, svc.name))
                    if wl is not None:
                        self._publish_workload(wl, spec.cloud_region, now, start)
            for record in records:
                if not isinstance(record, DatabaseState):
                    continue
                rspec = self._fleet.regions[record.region]
                if rspec.database.cloud is Cloud.GCP:
                    location = rspec.cloud_regions.get(Cloud.GCP, record.region)
                    self._publish_database(record, location, now, start)
            self._prune(now)
            self._last_publish = now

    def _publish_workload(self, wl: WorkloadState, location: str, now: float, start: float) -> None:
        cluster, service = wl.cluster, wl.service
        salt = zlib.crc32(f"{cluster}/{service}".encode()) & 0xFFFFF
        cpu = float(wl.cpu_utilisation)
        for i in range(max(0, wl.ready)):
            pod = f"{service}-{salt:05x}-{i:03d}"
            res = {
                "project_id": self._project,
                "location": location,
                "cluster_name": cluster,
                "namespace_name": NAMESPACE,
                "pod_name": pod,
                "container_name": service,
            }
            self._gauge(
                "kubernetes.io/container/cpu/limit_utilization",
                {},
                "k8s_container",
                res,
                cpu,
                _VType.DOUBLE,
                now,
            )
            self._gauge(
                "kubernetes.io/container/memory/limit_utilization",
                {"memory_type": "non-evictable"},
                "k8s_container",
                res,
                0.3 + 0.4 * min(cpu, 1.0),
                _VType.DOUBLE,
                now,
            )
            self._cumulative(
                "kubernetes.io/container/restart_count", {}, "k8s_container", res, int(wl.restarts), now
            )
        lb = {
            "project_id": self._project,
            "region": "global",
            "url_map_name": url_map_name(cluster),
            "forwarding_rule_name": f"fr-{cluster}",
            "target_proxy_name": f"tp-{cluster}",
            "matched_url_path_rule": f"/{service}",
            "backend_target_name": backend_name(cluster, service),
            "backend_target_type": "BACKEND_SERVICE",
            "backend_name": f"neg-{cluster}-{service}",
            "backend_type": "NETWORK_ENDPOINT_GROUP",
            "backend_scope": location,
            "backend_scope_type": "REGION",
        }
        rps = max(0.0, float(wl.rps or 0.0))
        err = min(1.0, max(0.0, float(wl.error_rate or 0.0)))
        duration = now - start
        ok = self._delta_int(
            "loadbalancing.googleapis.com/https/request_count",
            {"response_code_class": "200"},
            "https_lb_rule",
            lb,
            rps * (1.0 - err) * duration,
            start,
            now,
        )
        bad = self._delta_int(
            "loadbalancing.googleapis.com/https/request_count",
            {"response_code_class": "500"},
            "https_lb_rule",
            lb,
            rps * err * duration,
            start,
            now,
        )
        total = ok + bad
        if total > 0 and wl.p95_ms is not None:
            dist = distribution_with_p95(float(wl.p95_ms), total)
            self._delta_dist(
                "loadbalancing.googleapis.com/https/total_latencies",
                {},
                "https_lb_rule",
                lb,
                dist,
                start,
                now,
            )

    def _publish_database(self, db: DatabaseState, gcp_region: str, now: float, start: float) -> None:
        res = {
            "project_id": self._project,
            "database_id": database_id(self._project, db.region),
            "region": gcp_region,
        }
        self._gauge(
            "cloudsql.googleapis.com/database/up",
            {},
            "cloudsql_database",
            res,
            1 if db.available else 0,
            _VType.INT64,
            now,
        )
        if db.role is DbRole.READ_REPLICA:
            self._gauge(
                "cloudsql.googleapis.com/database/replication/replica_lag",
                {},
                "cloudsql_database",
                res,
                float(db.replica_lag_s),
                _VType.DOUBLE,
                now,
            )
        tx = self._delta_int(
            "cloudsql.googleapis.com/database/postgresql/transaction_count",
            {"database": "voltage", "transaction_type": "commit"},
            "cloudsql_database",
            res,
            float(db.tps) * (now - start),
            start,
            now,
        )
        if db.available and db.query_p95_ms > 0:
            dist = distribution_with_p95(float(db.query_p95_ms) * 1000.0, max(tx, 1000))
            self._delta_dist(
                "cloudsql.googleapis.com/database/postgresql/insights/aggregate/latencies",
                {"user": "app", "client_addr": ""},
                "cloudsql_database",
                res,
                dist,
                start,
                now,
            )

    def _get(
        self, mtype: str, mlabels: dict[str, str], rtype: str, rlabels: dict[str, str], kind: int, vtype: int
    ) -> _Series:
        key = (mtype, tuple(sorted(mlabels.items())), rtype, tuple(sorted(rlabels.items())))
        series = self._series.get(key)
        if series is None:
            series = _Series(mtype, dict(mlabels), rtype, dict(rlabels), kind, vtype)
            self._series[key] = series
            self._by_type.setdefault(mtype, []).append(series)
        return series

    def _gauge(
        self,
        mtype: str,
        ml: dict[str, str],
        rtype: str,
        rl: dict[str, str],
        value: float | int,
        vtype: int,
        now: float,
    ) -> None:
        s = self._get(mtype, ml, rtype, rl, _Kind.GAUGE, vtype)
        if s.points and now - s.points[-1].end < MIN_SPACING_S:
            s.points[-1] = _Point(now, now, value)
        else:
            s.points.append(_Point(now, now, value))

    def _cumulative(
        self, mtype: str, ml: dict[str, str], rtype: str, rl: dict[str, str], value: int, now: float
    ) -> None:
        s = self._get(mtype, ml, rtype, rl, _Kind.CUMULATIVE, _VType.INT64)
        origin = s.points[0].start if s.points else now
        if s.points and now - s.points[-1].end < MIN_SPACING_S:
            s.points[-1] = _Point(origin, now, value)
        else:
            s.points.append(_Point(origin, now, value))

    def _delta_int(
        self,
        mtype: str,
        ml: dict[str, str],
        rtype: str,
        rl: dict[str, str],
        amount: float,
        start: float,
        now: float,
    ) -> int:
        s = self._get(mtype, ml, rtype, rl, _Kind.DELTA, _VType.INT64)
        exact = amount + s.carry
        value = int(exact)
        s.carry = exact - value
        last = s.points[-1] if s.points else None
        if last is not None and now - last.end < MIN_SPACING_S and abs(last.end - start) < 1e-6:
            assert isinstance(last.value, int)
            s.points[-1] = _Point(last.start, now, last.value + value)
        else:
            s.points.append(_Point(start, now, value))
        return value

    def _delta_dist(
        self,
        mtype: str,
        ml: dict[str, str],
        rtype: str,
        rl: dict[str, str],
        dist: Dist,
        start: float,
        now: float,
    ) -> None:
        s = self._get(mtype, ml, rtype, rl, _Kind.DELTA, _VType.DISTRIBUTION)
        last = s.points[-1] if s.points else None
        if last is not None and now - last.end < MIN_SPACING_S and abs(last.end - start) < 1e-6:
            assert isinstance(last.value, dict)
            s.points[-1] = _Point(last.start, now, _merge([last.value, dist]))
        else:
            s.points.append(_Point(start, now, dist))

    def _prune(self, now: float) -> None:
        horizon = now - HISTORY_S
        for s in self._series.values():
            while s.points and s.points[0].end < horizon:
                s.points.popleft()

    # -- the RPC ----------------------------------------------------------------------------------

    def _serialize(self, response: Any) -> bytes:
        if isinstance(response, bytes):
            return response
        data: bytes = response.SerializeToString()
        return data

    def _list_time_series(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls += 1
        project = request.name.split("/", 2)[1] if request.name.startswith("projects/") else ""
        fault = self.faults.take(FaultRequest(client=context.peer(), scope=project, path="ListTimeSeries"))
        kind = fault.kind if fault is not None else None
        mode = str(fault.param("mode", "")) if fault is not None else ""
        if fault is not None and kind == "slow":
            fault.stall()
        elif kind == "forbidden":
            if mode == "expired":
                context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "Request had invalid authentication credentials (token expired).",
                )
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Permission monitoring.timeSeries.list denied on resource {request.name}",
            )
        elif kind == "throttled":
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "Quota exceeded for quota metric 'Time series queries' (sandbox fault)",
            )
        elif kind == "malformed" and mode == "garbled":
            return b"\xff\xff\xff garbled \x00\x01"
        try:
            return self._answer(request, truncate=kind == "malformed")
        except _RpcError as exc:
            context.abort(exc.code, exc.message)

    def _answer(self, request: Any, *, truncate: bool) -> Any:
        name = request.name
        if not name.startswith("projects/"):
            raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource name {name!r}")
        project = name.split("/", 2)[1]
        if project != self._project:
            raise _RpcError(grpc.StatusCode.NOT_FOUND, f"Project {project!r} not found")
        terms = parse_filter(request.filter)
        mtype = next(v for n, op, v in terms if n == "metric.type" and op == "=")
        if not request.HasField("interval") or not request.interval.HasField("end_time"):
            raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "interval.end_time is required")
        end = request.interval.end_time.ToNanoseconds() / 1e9
        begin = (
            request.interval.start_time.ToNanoseconds() / 1e9
            if request.interval.HasField("start_time")
            else end
        )
        if begin > end:
            raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "interval.start_time is after end_time")
        offset = 0
        if request.page_token:
            if not request.page_token.startswith("o") or not request.page_token[1:].isdigit():
                raise _RpcError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Invalid page token {request.page_token!r}"
                )
            offset = int(request.page_token[1:])
        with self._lock:
            matching = [
                s
                for s in self._by_type.get(mtype, [])
                if all((s.field_value(n) == v) == (op == "=") for n, op, v in terms)
            ]
            out = self._aggregate(matching, request.aggregation, begin, end)
        out.sort(
            key=lambda ts: (
                ts.resource.type,
                sorted(ts.resource.labels.items()),
                sorted(ts.metric.labels.items()),
            )
        )
        size = request.page_size if request.page_size > 0 else 100000
        page = out[offset : offset + size]
        response = _ListResponse()
        if truncate and not request.page_token:
            response.time_series.extend(page[: max(1, len(page) // 2)])
            response.next_page_token = "o#truncated"
            return response
        response.time_series.extend(page)
        if offset + size < len(out):
            response.next_page_token = f"o{offset + size}"
        if request.view == monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.HEADERS:
            for ts in response.time_series:
                del ts.points[:]
        return response

    # -- aggregation ------------------------------------------------------------------------------

    def _aggregate(self, series: list[_Series], agg: Any, begin: float, end: float) -> list[Any]:
        aligner = int(agg.per_series_aligner)
        reducer = int(agg.cross_series_reducer)
        period = agg.alignment_period.ToNanoseconds() / 1e9 if agg.HasField("alignment_period") else 0.0
        if aligner == _Aligner.ALIGN_NONE:
            if reducer != _Reducer.REDUCE_NONE:
                raise _RpcError(
                    grpc.StatusCode.INVALID_ARGUMENT, "A cross-series reducer requires a per-series aligner"
                )
            return [self._raw(s, begin, end) for s in series]
        if period <= 0:
            raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "An aligner requires an alignment_period")
        windows = []
        w_end = end
        while w_end > begin or (w_end == end and begin == end):
            windows.append(w_end)
            w_end -= period
            if len(windows) > 10000:
                raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "Too many alignment periods")
        aligned: list[tuple[_Series, dict[float, Value], int, int]] = []
        for s in series:
            values, vtype = self._align(s, aligner, period, windows)
            kind = (
                _Kind.DELTA
                if aligner in (_Aligner.ALIGN_DELTA, _Aligner.ALIGN_SUM) and s.kind != _Kind.GAUGE
                else _Kind.GAUGE
            )
            if values:
                aligned.append((s, values, kind, vtype))
        if reducer == _Reducer.REDUCE_NONE:
            return [
                self._build(
                    s.metric_type,
                    s.metric_labels,
                    s.resource_type,
                    s.resource_labels,
                    kind,
                    vtype,
                    values,
                    period,
                )
                for s, values, kind, vtype in aligned
            ]
        fields = list(agg.group_by_fields)
        groups: dict[tuple[str | None, ...], list[tuple[_Series, dict[float, Value], int, int]]] = {}
        for item in aligned:
            groups.setdefault(tuple(item[0].field_value(f) for f in fields), []).append(item)
        result = []
        for gkey, items in groups.items():
            first = items[0][0]
            mlabels: dict[str, str] = {}
            rlabels: dict[str, str] = {}
            for f, v in zip(fields, gkey, strict=True):
                if v is None:
                    continue
                if f.startswith(("metric.labels.", "metric.label.")):
                    mlabels[f.split(".", 2)[2]] = v
                elif f.startswith(("resource.labels.", "resource.label.")):
                    rlabels[f.split(".", 2)[2]] = v
            reduced: dict[float, Value] = {}
            vtype = items[0][3]
            kind = items[0][2]
            for t in windows:
                vals = [values[t] for _, values, _, _ in items if t in values]
                if vals:
                    value, vtype = self._reduce(reducer, vals, vtype)
                    reduced[t] = value
            result.append(
                self._build(
                    first.metric_type, mlabels, first.resource_type, rlabels, kind, vtype, reduced, period
                )
            )
        return result

    def _align(
        self, s: _Series, aligner: int, period: float, windows: list[float]
    ) -> tuple[dict[float, Value], int]:
        points = list(s.points)
        ends = [p.end for p in points]
        out: dict[float, Value] = {}
        vtype = s.value_type
        for w_end in windows:
            w_start = w_end - period
            lo = bisect.bisect_right(ends, w_start)
            hi = bisect.bisect_right(ends, w_end)
            pts = points[lo:hi]
            if not pts:
                continue
            value, vtype = self._align_points(s, aligner, pts, lo, period)
            if value is not None:
                out[w_end] = value
        return out, vtype

    def _align_points(
        self, s: _Series, aligner: int, pts: list[_Point], lo: int, period: float
    ) -> tuple[Value | None, int]:
        vt = s.value_type
        dist = vt == _VType.DISTRIBUTION
        if aligner in _PERCENTILE_ALIGNERS:
            if not dist:
                raise _RpcError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{_Aligner(aligner).name} needs a DISTRIBUTION metric, {s.metric_type} is not",
                )
            return percentile_of(
                _merge(p.value for p in pts if isinstance(p.value, dict)), _PERCENTILE_ALIGNERS[aligner]
            ), _VType.DOUBLE
        if aligner in {_Aligner.ALIGN_DELTA, _Aligner.ALIGN_RATE}:
            if s.kind == _Kind.GAUGE:
                raise _RpcError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{_Aligner(aligner).name} is not valid for the GAUGE metric {s.metric_type}",
                )
            if s.kind == _Kind.CUMULATIVE:
                before = s.points[lo - 1].value if lo > 0 else pts[0].value
                assert not isinstance(before, dict) and not isinstance(pts[-1].value, dict)
                delta: Value = pts[-1].value - before
                covered = pts[-1].end - (s.points[lo - 1].end if lo > 0 else pts[0].end)
            elif dist:
                delta = _merge(p.value for p in pts if isinstance(p.value, dict))
                covered = sum(p.end - p.start for p in pts)
            else:
                delta = sum(p.value for p in pts if not isinstance(p.value, dict))
                covered = sum(p.end - p.start for p in pts)
            if aligner == _Aligner.ALIGN_DELTA:
                return delta, vt
            if dist:
                raise _RpcError(
                    grpc.StatusCode.INVALID_ARGUMENT, "ALIGN_RATE is not valid for a distribution"
                )
            assert not isinstance(delta, dict)
            return (float(delta) / covered if covered > 0 else 0.0), _VType.DOUBLE
        if dist:
            if aligner == _Aligner.ALIGN_SUM:
                return _merge(p.value for p in pts if isinstance(p.value, dict)), vt
            if aligner == _Aligner.ALIGN_COUNT:
                return len(pts), _VType.INT64
            raise _RpcError(
                grpc.StatusCode.INVALID_ARGUMENT, f"{_Aligner(aligner).name} is not valid for a distribution"
            )
        nums = [float(p.value) for p in pts if not isinstance(p.value, dict)]
        if aligner == _Aligner.ALIGN_MEAN:
            return sum(nums) / len(nums), _VType.DOUBLE
        if aligner == _Aligner.ALIGN_MAX:
            return (max(nums) if vt == _VType.DOUBLE else int(max(nums))), vt
        if aligner == _Aligner.ALIGN_MIN:
            return (min(nums) if vt == _VType.DOUBLE else int(min(nums))), vt
        if aligner == _Aligner.ALIGN_SUM:
            return (sum(nums) if vt == _VType.DOUBLE else int(sum(nums))), vt
        if aligner == _Aligner.ALIGN_COUNT:
            return len(nums), _VType.INT64
        raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"aligner {aligner} is not supported here")

    @staticmethod
    def _reduce(reducer: int, vals: list[Value], vtype: int) -> tuple[Value, int]:
        if vtype == _VType.DISTRIBUTION:
            merged = _merge(v for v in vals if isinstance(v, dict))
            if reducer == _Reducer.REDUCE_SUM:
                return merged, vtype
            if reducer in _PERCENTILE_REDUCERS:
                return percentile_of(merged, _PERCENTILE_REDUCERS[reducer]) or 0.0, _VType.DOUBLE
            if reducer == _Reducer.REDUCE_COUNT:
                return len(vals), _VType.INT64
            raise _RpcError(
                grpc.StatusCode.INVALID_ARGUMENT, f"reducer {reducer} is not valid for a distribution"
            )
        nums = [float(v) for v in vals if not isinstance(v, dict)]
        if reducer == _Reducer.REDUCE_SUM:
            return (sum(nums) if vtype == _VType.DOUBLE else int(sum(nums))), vtype
        if reducer == _Reducer.REDUCE_MEAN:
            return sum(nums) / len(nums), _VType.DOUBLE
        if reducer == _Reducer.REDUCE_MAX:
            return (max(nums) if vtype == _VType.DOUBLE else int(max(nums))), vtype
        if reducer == _Reducer.REDUCE_MIN:
            return (min(nums) if vtype == _VType.DOUBLE else int(min(nums))), vtype
        if reducer == _Reducer.REDUCE_COUNT:
            return len(nums), _VType.INT64
        if reducer in _PERCENTILE_REDUCERS:
            return _numeric_percentile(nums, _PERCENTILE_REDUCERS[reducer]), _VType.DOUBLE
        raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"reducer {reducer} is not supported here")

    def _raw(self, s: _Series, begin: float, end: float) -> Any:
        ts = _TimeSeries()
        self._header(
            ts, s.metric_type, s.metric_labels, s.resource_type, s.resource_labels, s.kind, s.value_type
        )
        for p in reversed(s.points):
            if begin < p.end <= end or (begin == end == p.end):
                self._point(ts, p.start if s.kind != _Kind.GAUGE else p.end, p.end, p.value, s.value_type)
        return ts

    def _build(
        self,
        mtype: str,
        ml: dict[str, str],
        rtype: str,
        rl: dict[str, str],
        kind: int,
        vtype: int,
        values: dict[float, Value],
        period: float,
    ) -> Any:
        ts = _TimeSeries()
        self._header(ts, mtype, ml, rtype, rl, kind, vtype)
        for t in sorted(values, reverse=True):
            self._point(ts, t - period if kind != _Kind.GAUGE else t, t, values[t], vtype)
        return ts

    @staticmethod
    def _header(
        ts: Any, mtype: str, ml: dict[str, str], rtype: str, rl: dict[str, str], kind: int, vtype: int
    ) -> None:
        ts.metric.type = mtype
        ts.metric.labels.update(ml)
        ts.resource.type = rtype
        ts.resource.labels.update(rl)
        ts.metric_kind = kind
        ts.value_type = vtype

    @staticmethod
    def _point(ts: Any, start: float, end: float, value: Value, vtype: int) -> None:
        p = ts.points.add()
        p.interval.end_time.FromNanoseconds(int(end * 1e9))
        if start != end:
            p.interval.start_time.FromNanoseconds(int(start * 1e9))
        if isinstance(value, dict):
            p.value.distribution_value.CopyFrom(_dist_pb(value))
        elif vtype == _VType.DOUBLE:
            p.value.double_value = float(value)
        elif vtype == _VType.BOOL:
            p.value.bool_value = bool(value)
        else:
            p.value.int64_value = int(value)
