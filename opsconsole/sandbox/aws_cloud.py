"""The AWS side of the local cloud: moto for the control planes, a small CloudWatch of our own.

Why this module exists: on the sandbox, opsconsole reads AWS only through boto3 (``providers/aws.py``),
over sockets, exactly as in production. :class:`AwsCloud` is the :class:`~opsconsole.sandbox.emulator.
Emulator` that stands behind it on 127.0.0.1:

* **moto** (``ThreadedMotoServer``, one port) serves EC2, Auto Scaling, EKS, RDS, ElastiCache and
  Route53. A thin WSGI front adds what moto lacks and the console needs: ElastiCache
  ``IncreaseReplicaCount`` / ``DecreaseReplicaCount`` (applied to moto's replication group);
* **CloudWatch** is served by this module (moto computes no percentiles): ``GetMetricData`` and
  ``GetMetricStatistics``. The installed botocore's CloudWatch model lists ``smithy-rpc-v2-cbor``, ``json``
  and ``query``, and botocore picks the first it supports in its own priority order, which today is
  ``json`` (awsJson1_0: ``X-Amz-Target: GraniteServiceVersion20100801.<Op>``); ``smithy-rpc-v2-cbor``
  (``POST /service/GraniteServiceVersion20100801/operation/<Op>``, CBOR both ways) is served too, for
  the botocore that switches. Statistics: ``Sum``, ``SampleCount``, ``Average``, ``Minimum``, ``Maximum``
  and ``pNN[.N]``
  (nearest rank over the stored value/count pairs, as PutMetricData's ``Values``/``Counts`` define them).

Seeded by :meth:`AwsCloud.start` from the inventory, in each region's AWS cloud region: per EKS cluster an
EKS cluster, a nodegroup and an Auto Scaling group ``<cluster>-ng`` (metrics collection enabled, a
MixedInstancesPolicy whose on-demand base is the reserved nodes and whose spot share is the inventory's
spot ratio); for regions whose database is on AWS, RDS PostgreSQL ``pg-<region>`` (write primary, or a
cross-region read replica whose source is the primary's ARN) plus local read replicas ``pg-<region>-rK``,
all in a DB subnet group; ElastiCache ``redis-<region>``; one Route53 zone ``voltage.internal.`` with
weighted records ``api.<region>.voltage.internal.`` (SetIdentifier = target region) and a health check
per region (FQDN ``health.<region>.voltage.internal``).

Seeding and publishing write moto's backends in this process directly (the server in this process serves
the very same objects), with the arguments moto's request handlers would pass: no boto3 client, HTTP
round trip or request parsing, so :meth:`AwsCloud.start` takes ~0.5 s and a first publish ~0.05 s. The
EC2 backends of the fleet's regions hold only the seed's AMI, not moto's catalogue of ~1,300; ``start``
then serves one call per service the adapter reads in-process, so the first read does not pay moto's
lazy loading.

How metrics are published (:meth:`AwsCloud.publish`), with wall-clock timestamps:

* ``AWS/ApplicationELB TargetResponseTime`` (seconds, dimension ``LoadBalancer``): each publish stores a
  value/count histogram ``{L: 94, p95: 1, p99: 5}`` (L chosen so the mean is the world's average); with
  nearest-rank percentiles one publish gives back p95, p99 and the average exactly. Gauges keep one point
  per minute (a newer publish within 60 s replaces the older point), so the newest 1-minute bucket of a
  query is exactly the latest publish;
* ``RequestCount`` / ``HTTPCode_Target_5XX_Count``: the world's 5 min and 1 h error windows are in sim
  time, which runs at its own pace, so each publish *rewrites* these two series as two points: one at
  publish time carrying the last 5 minutes (rps × 300 requests, error_rate of them failed) and one
  30 minutes earlier carrying the rest of the hour such that the 1 h sums give error_rate_1h;
* ``Voltage/Platform ActiveUsers`` (dimension ``Region``), ``AWS/RDS ReplicaLag`` (``DBInstanceIdentifier``),
  ``Voltage/Platform DbQueryLatency`` (ms histogram, read with ``p95``) and ``DbTransactionsPerSecond``,
  ``AWS/ElastiCache CacheHitRate`` (percent, ``CacheClusterId = redis-<region>-001``);
* Route53 health check status: moto's GetHealthCheckStatus cannot be set, so it is reflected the way AWS
  reports it to CloudWatch: ``AWS/Route53 HealthCheckStatus`` (1 / 0, dimension ``HealthCheckId``) in
  us-east-1;
* control-plane state through moto: ASG min/max/desired (moto launches and terminates the instances),
  Route53 weights, RDS read replica count, role and source (replication links are rewired on moto's
  objects, which have no API for it), RDS status ``failed`` while the region is down, ElastiCache member
  count and status ``unavailable`` while the region is down (sandbox-only status, read as 0 healthy nodes).

What :meth:`AwsCloud.collect` applies to the world (a client's change = differs from what was published):
Route53 weights → ``set_dns_weights`` (invalid → logged and ignored; the next publish restores the world's);
ASG min/max → ``set_cluster_node_bounds``; RDS ``PromoteReadReplica`` on ``pg-<region>`` → ``promote_replica``
(moto's promote only clears its private ``is_replica`` flag and leaves
``ReadReplicaSourceDBInstanceIdentifier``
set, so the flag is what is watched; the link is then cleared on moto's object); read replicas created or
deleted → ``set_read_replicas``; ElastiCache member count → ``set_cache_nodes``. A client's change of an
ASG's desired capacity is not applied (the world's autoscaler owns it) and is overwritten by the next publish.

Faults (:meth:`AwsCloud.set_fault`): ``down`` closes both listening sockets (connection refused; ``None``
restarts them on the same ports, state kept); ``slow`` delays every CloudWatch answer by
``params["seconds"]``; ``forbidden`` answers CloudWatch with 403 ``AccessDenied`` (or ``params["code"]``,
e.g. ``ExpiredToken``); ``throttle`` answers ``ThrottlingException`` to the next ``params.get("times", 3)``
CloudWatch calls; ``malformed`` answers 200 with a truncated body.

Limits: moto keeps its state per process, so one :class:`AwsCloud` runs per process at a time
(``start`` resets moto's state). The EKS nodegroups' scaling config is seeded but not kept in sync; the
Auto Scaling group is the node group's truth.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode

from moto.autoscaling.models import autoscaling_backends
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import AMIS, Ami
from moto.eks.models import Cluster as EksCluster
from moto.eks.models import Nodegroup as EksNodegroup
from moto.eks.models import eks_backends
from moto.elasticache.models import elasticache_backends
from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.rds.models import rds_backends
from moto.route53.models import route53_backends
from werkzeug.serving import make_server
from werkzeug.test import Client as WerkzeugClient

from opsconsole.core.errors import SandboxError, UsageError
from opsconsole.core.fleet.model import (
    CacheState,
    Cloud,
    ClusterKind,
    ClusterSpec,
    DatabaseState,
    DbRole,
    Fleet,
    RegionTraffic,
)
from opsconsole.sandbox.emulator import Endpoints, QuietHTTPServer
from opsconsole.sandbox.world import World

__all__ = [
    "ACCOUNT_ID",
    "CW_TARGET_PREFIX",
    "HOSTED_ZONE",
    "ROUTE53_METRICS_REGION",
    "AwsCloud",
    "cache_cluster_id",
    "load_balancer_dimension",
]

log = logging.getLogger(__name__)

ACCOUNT_ID = DEFAULT_ACCOUNT_ID
HOSTED_ZONE = "voltage.internal."
#: AWS publishes Route53 health check metrics in us-east-1 only.
ROUTE53_METRICS_REGION = "us-east-1"
CW_TARGET_PREFIX = "GraniteServiceVersion20100801"
#: Rolling history kept per metric series (so 1 h windows work).
HISTORY_S = 70 * 60
#: Gauges keep at most one point per this many seconds (the newest publish wins).
GAUGE_RESOLUTION_S = 60.0
#: Sandbox credentials: not secrets, they only satisfy SigV4 signing.
SANDBOX_CREDENTIALS = {
    # Distinctive dummies: the run engine redacts secret-looking values wherever they appear, so a
    # common word here would blank it out of every message.
    "aws_access_key_id": "SANDBOXACCESSKEYID",
    "aws_secret_access_key": "sandbox-secret-access-key",
    "aws_session_token": "sandbox-session-token",
}
_SEED_AMI = "ami-12c6146b"
_GIB_PER_TB = 1024
_RDS_ARN = "arn:aws:rds:{region}:{account}:db:{name}"
#: moto's backends this module seeds and edits in-process (the server in this process serves them).
_BACKENDS: dict[str, object] = {
    "autoscaling": autoscaling_backends,
    "ec2": ec2_backends,
    "eks": eks_backends,
    "elasticache": elasticache_backends,
    "rds": rds_backends,
    "route53": route53_backends,
}


def _replication_group_args(group_id: str, description: str, *, replicas: int) -> dict[str, Any]:
    """moto's ``create_replication_group`` arguments, as its CreateReplicationGroup handler passes them."""
    args: dict[str, Any] = dict.fromkeys((
        "global_replication_group_id", "primary_cluster_id", "multi_az_enabled", "num_cache_clusters",
        "num_node_groups", "engine_version", "cache_parameter_group_name", "cache_subnet_group_name",
        "cache_security_group_names", "security_group_ids", "snapshot_arns", "snapshot_name",
        "preferred_maintenance_window", "port", "notification_topic_arn", "auto_minor_version_upgrade",
        "snapshot_retention_limit", "snapshot_window", "auth_token", "transit_encryption_enabled",
        "at_rest_encryption_enabled", "kms_key_id", "user_group_ids", "data_tiering_enabled",
        "network_type", "ip_discovery", "transit_encryption_mode", "cluster_mode",
        "serverless_cache_snapshot_name",
    ))
    args.update(
        replication_group_id=group_id, replication_group_description=description, engine="redis",
        cache_node_type="cache.r7g.large", automatic_failover_enabled=True,
        replicas_per_node_group=replicas, preferred_cache_cluster_azs=[], node_group_configuration=[],
        tags=[], log_delivery_configurations=[],
    )
    return args


def relative_weights(weights: Mapping[str, int]) -> dict[str, int]:
    """Route53's relative weights as the world's shares of 100 (largest remainder; zero weights drop out).

    Route53 sends a record a share of ``weight / sum(weights)``, and splits evenly when every weight is
    0. A client changing one record at a time (``amazon.aws.route53`` writes one record per call) passes
    through states whose sum is not 100; they are still valid DNS, and the world takes them as shares.
    """
    positive = {t: w for t, w in weights.items() if w > 0}
    if not positive:
        positive = {t: 1 for t in weights}
    total = sum(positive.values())
    if total == 0:
        return {}
    exact = {t: w * 100 / total for t, w in positive.items()}
    shares = {t: int(v) for t, v in exact.items()}
    by_remainder = sorted(exact, key=lambda t: (exact[t] - shares[t], t), reverse=True)
    for t in by_remainder[: 100 - sum(shares.values())]:
        shares[t] += 1
    return {t: v for t, v in shares.items() if v > 0}


def load_balancer_dimension(region: str) -> str:
    """The ``LoadBalancer`` dimension value of a region's ALB (``app/<name>/<id>``, as AWS spells it)."""
    return f"app/api-{region}/{zlib.crc32(region.encode()):016x}"


def cache_cluster_id(region: str) -> str:
    """The CacheClusterId whose CacheHitRate stands for ``redis-<region>`` (its primary node)."""
    return f"redis-{region}-001"


# --------------------------------------------------------------------------------------------------
# CBOR (RFC 8949), the subset smithy-rpc-v2-cbor uses
# --------------------------------------------------------------------------------------------------


class _Timestamp(float):
    """Epoch seconds, encoded as CBOR tag 1 (the only tag botocore understands)."""


def _cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([(major << 5) | n])
    if n < 1 << 8:
        return bytes([(major << 5) | 24, n])
    if n < 1 << 16:
        return bytes([(major << 5) | 25]) + n.to_bytes(2, "big")
    if n < 1 << 32:
        return bytes([(major << 5) | 26]) + n.to_bytes(4, "big")
    return bytes([(major << 5) | 27]) + n.to_bytes(8, "big")


def cbor_encode(value: object) -> bytes:
    """Encode None/bool/int/float/str/bytes/list/dict/:class:`_Timestamp` as CBOR."""
    out = io.BytesIO()
    _cbor_write(out, value)
    return out.getvalue()


def _cbor_write(out: io.BytesIO, value: object) -> None:
    if value is None:
        out.write(b"\xf6")
    elif value is True:
        out.write(b"\xf5")
    elif value is False:
        out.write(b"\xf4")
    elif isinstance(value, _Timestamp):
        out.write(b"\xc1")
        out.write(b"\xfb" + struct.pack(">d", float(value)))
    elif isinstance(value, int):
        out.write(_cbor_head(0, value) if value >= 0 else _cbor_head(1, -1 - value))
    elif isinstance(value, float):
        out.write(b"\xfb" + struct.pack(">d", value))
    elif isinstance(value, str):
        data = value.encode()
        out.write(_cbor_head(3, len(data)) + data)
    elif isinstance(value, bytes):
        out.write(_cbor_head(2, len(value)) + value)
    elif isinstance(value, (list, tuple)):
        out.write(_cbor_head(4, len(value)))
        for item in value:
            _cbor_write(out, item)
    elif isinstance(value, dict):
        out.write(_cbor_head(5, len(value)))
        for key, item in value.items():
            _cbor_write(out, str(key))
            _cbor_write(out, item)
    else:
        raise TypeError(f"cannot CBOR-encode {type(value).__name__}")


class _CborError(ValueError):
    pass


def cbor_decode(data: bytes) -> Any:
    """Decode one CBOR data item (definite and indefinite lengths; tag 1 → epoch seconds)."""
    value, pos = _cbor_read(data, 0)
    if pos != len(data):
        raise _CborError("trailing bytes after the CBOR item")
    return value


def _cbor_need(data: bytes, pos: int, n: int) -> None:
    if pos + n > len(data):
        raise _CborError("truncated CBOR")


def _cbor_read(data: bytes, pos: int) -> tuple[Any, int]:
    _cbor_need(data, pos, 1)
    initial = data[pos]
    pos += 1
    major, info = initial >> 5, initial & 0x1F
    if major == 7:
        if info == 20:
            return False, pos
        if info == 21:
            return True, pos
        if info in (22, 23):
            return None, pos
        sizes = {25: (2, ">e"), 26: (4, ">f"), 27: (8, ">d")}
        if info in sizes:
            n, fmt = sizes[info]
            _cbor_need(data, pos, n)
            return struct.unpack(fmt, data[pos : pos + n])[0], pos + n
        raise _CborError(f"unsupported CBOR simple value {info}")
    if info == 31:  # indefinite length
        if major in (2, 3):
            chunks: list[Any] = []
            while True:
                _cbor_need(data, pos, 1)
                if data[pos] == 0xFF:
                    pos += 1
                    break
                chunk, pos = _cbor_read(data, pos)
                chunks.append(chunk)
            return ("" if major == 3 else b"").join(chunks), pos
        if major == 4:
            items: list[Any] = []
            while True:
                _cbor_need(data, pos, 1)
                if data[pos] == 0xFF:
                    return items, pos + 1
                item, pos = _cbor_read(data, pos)
                items.append(item)
        if major == 5:
            mapping: dict[Any, Any] = {}
            while True:
                _cbor_need(data, pos, 1)
                if data[pos] == 0xFF:
                    return mapping, pos + 1
                key, pos = _cbor_read(data, pos)
                mapping[key], pos = _cbor_read(data, pos)
        raise _CborError("indefinite length on a type that has none")
    if info < 24:
        n = info
    elif info <= 27:
        size = 1 << (info - 24)
        _cbor_need(data, pos, size)
        n = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    else:
        raise _CborError(f"reserved CBOR additional information {info}")
    if major == 0:
        return n, pos
    if major == 1:
        return -1 - n, pos
    if major in (2, 3):
        _cbor_need(data, pos, n)
        raw = data[pos : pos + n]
        return (raw.decode() if major == 3 else raw), pos + n
    if major == 4:
        arr = []
        for _ in range(n):
            item, pos = _cbor_read(data, pos)
            arr.append(item)
        return arr, pos
    if major == 5:
        obj: dict[Any, Any] = {}
        for _ in range(n):
            key, pos = _cbor_read(data, pos)
            obj[key], pos = _cbor_read(data, pos)
        return obj, pos
    # major 6: a tag; tag 1 is epoch time, others pass their value through
    value, pos = _cbor_read(data, pos)
    return value, pos


# --------------------------------------------------------------------------------------------------
# The metric store
# --------------------------------------------------------------------------------------------------


@dataclass
class _Point:
    ts: float
    values: list[float]
    counts: list[float]


SeriesKey = tuple[str, str, str, tuple[tuple[str, str], ...]]


def series_key(region: str, namespace: str, name: str, dimensions: Mapping[str, str]) -> SeriesKey:
    return region, namespace, name, tuple(sorted(dimensions.items()))


_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")


def compute_stat(points: Iterable[_Point], stat: str) -> float | None:
    """One CloudWatch statistic over value/count pairs; ``None`` when there is no data."""
    pairs = [(v, c) for p in points for v, c in zip(p.values, p.counts, strict=True) if c > 0]
    if not pairs:
        return None
    total = sum(c for _, c in pairs)
    if stat == "SampleCount":
        return total
    if stat == "Sum":
        return sum(v * c for v, c in pairs)
    if stat == "Average":
        return sum(v * c for v, c in pairs) / total
    if stat == "Minimum":
        return min(v for v, _ in pairs)
    if stat == "Maximum":
        return max(v for v, _ in pairs)
    match = _PERCENTILE.match(stat)
    if match is None:
        raise ValueError(f"unsupported statistic {stat!r}")
    # Nearest rank on exact fractions: the smallest value whose cumulative count reaches p·N.
    rank = Fraction(match.group(1)) / 100 * Fraction(total)  # Fraction(float) is exact
    cumulative = Fraction(0)
    for value, count in sorted(pairs):
        cumulative += Fraction(count)
        if cumulative >= rank:
            return value
    return max(v for v, _ in pairs)


class MetricStore:
    """Thread-safe in-memory CloudWatch data: series key → points, pruned to :data:`HISTORY_S`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[SeriesKey, list[_Point]] = {}

    def put_gauge(self, key: SeriesKey, ts: float, values: list[float], counts: list[float]) -> None:
        """Add a point; points of the same series less than a minute older are replaced."""
        with self._lock:
            points = self._series.setdefault(key, [])
            keep = [p for p in points if p.ts <= ts - GAUGE_RESOLUTION_S and p.ts >= ts - HISTORY_S]
            keep.append(_Point(ts, values, counts))
            self._series[key] = keep

    def replace(self, key: SeriesKey, points: list[_Point]) -> None:
        with self._lock:
            self._series[key] = sorted(points, key=lambda p: p.ts)

    def query(
        self, key: SeriesKey, stat: str, start: float, end: float, period: float
    ) -> list[tuple[float, float]]:
        """(bucket start, value) per non-empty bucket of ``period`` s from ``start``, oldest first."""
        if period <= 0:
            raise ValueError("Period must be positive")
        with self._lock:
            points = [p for p in self._series.get(key, ()) if start <= p.ts <= end]
        buckets: dict[int, list[_Point]] = {}
        for p in points:
            buckets.setdefault(min(int((p.ts - start) // period), max(0, int((end - start) // period))),
                               []).append(p)
        out: list[tuple[float, float]] = []
        for idx in sorted(buckets):
            value = compute_stat(buckets[idx], stat)
            if value is not None:
                out.append((start + idx * period, value))
        return out

    def clear(self) -> None:
        with self._lock:
            self._series.clear()


# --------------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------------

FAULT_KINDS = ("down", "slow", "forbidden", "throttle", "malformed")


@dataclass
class _Faults:
    kind: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    remaining: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> tuple[str | None, dict[str, Any]]:
        """The fault to apply to this call (a ``throttle`` is used up call by call)."""
        with self.lock:
            if self.kind == "throttle":
                if self.remaining <= 0:
                    return None, {}
                self.remaining -= 1
            return self.kind, dict(self.params)


# --------------------------------------------------------------------------------------------------
# The CloudWatch endpoint
# --------------------------------------------------------------------------------------------------

_REGION_OF_AUTH = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")


class _CloudWatchHandler(BaseHTTPRequestHandler):
    """One CloudWatch call: awsJson1_0 (``X-Amz-Target``, what botocore picks today) or rpc-v2-cbor."""

    server: _CloudWatchServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("cloudwatch %s", format % args)

    def _send(self, status: int, body: bytes, cbor: bool, extra: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        if cbor:
            self.send_header("Content-Type", "application/cbor")
            self.send_header("smithy-protocol", "rpc-v2-cbor")
        else:
            self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("x-amzn-requestid", str(uuid.uuid4()))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _encode(self, value: object, cbor: bool) -> bytes:
        return cbor_encode(value) if cbor else json.dumps(value).encode()

    def _error(self, status: int, code: str, message: str, cbor: bool) -> None:
        body = self._encode({"__type": f"com.amazonaws.cloudwatch#{code}", "message": message}, cbor)
        fault = "Sender" if status < 500 else "Receiver"
        self._send(status, body, cbor, {"x-amzn-query-error": f"{code};{fault}"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        target = self.headers.get("X-Amz-Target")
        cbor = target is None
        if target is not None:
            prefix, _, operation = target.partition(".")
        else:
            match = re.match(r"^/service/([^/]+)/operation/([^/?]+)", self.path)
            prefix, operation = (match.group(1), match.group(2)) if match else ("", "")
        kind, params = self.server.faults.take()
        if kind == "slow":
            time.sleep(float(params.get("seconds", 5.0)))
        elif kind == "forbidden":
            code = str(params.get("code", "AccessDenied"))
            self._error(403, code, f"User: arn:aws:iam::{ACCOUNT_ID}:user/sandbox is not authorized to "
                                   f"perform: cloudwatch:{operation} (sandbox fault)", cbor)
            return
        elif kind == "throttle":
            self._error(400, "ThrottlingException", "Rate exceeded (sandbox fault)", cbor)
            return
        if prefix != CW_TARGET_PREFIX:
            self._error(404, "UnknownOperationException", f"unknown operation {target or self.path}", cbor)
            return
        region_match = _REGION_OF_AUTH.search(self.headers.get("Authorization") or "")
        if region_match is None:
            self._error(403, "MissingAuthenticationToken", "request is not signed", cbor)
            return
        region = region_match.group(1)
        try:
            request = (cbor_decode(raw) if cbor else json.loads(raw or b"{}")) if raw else {}
            if not isinstance(request, dict):
                raise _CborError("the body is not a map")
        except (_CborError, struct.error, UnicodeDecodeError, ValueError) as exc:
            self._error(400, "SerializationException", f"cannot decode the request: {exc}", cbor)
            return
        try:
            if operation == "GetMetricData":
                result = self.server.get_metric_data(region, request)
            elif operation == "GetMetricStatistics":
                result = self.server.get_metric_statistics(region, request)
            else:
                self._error(400, "UnknownOperationException", f"{operation} is not served by the sandbox",
                            cbor)
                return
        except (KeyError, TypeError, ValueError) as exc:
            self._error(400, "InvalidParameterValue", f"{type(exc).__name__}: {exc}", cbor)
            return
        body = self._encode(result, cbor)
        if kind == "malformed":
            body = body[: max(1, len(body) // 2)]
        self._send(200, body, cbor)


class _CloudWatchServer(QuietHTTPServer):

    def __init__(self, port: int, store: MetricStore, faults: _Faults) -> None:
        super().__init__(("127.0.0.1", port), _CloudWatchHandler)
        self.store = store
        self.faults = faults

    def get_metric_data(self, region: str, request: Mapping[str, Any]) -> dict[str, Any]:
        start = float(request["StartTime"])
        end = float(request["EndTime"])
        descending = request.get("ScanBy", "TimestampDescending") != "TimestampAscending"
        results: list[dict[str, Any]] = []
        messages: list[dict[str, str]] = []
        for q in request.get("MetricDataQueries", []):
            qid = str(q["Id"])
            if "MetricStat" not in q:
                messages.append({"Code": "Unsupported", "Value": f"{qid}: metric math is not served"})
                results.append({"Id": qid, "Label": qid, "Timestamps": [], "Values": [],
                                "StatusCode": "InternalError"})
                continue
            if q.get("ReturnData") is False:
                continue
            ms = q["MetricStat"]
            metric = ms["Metric"]
            dims = {str(d["Name"]): str(d["Value"]) for d in metric.get("Dimensions", [])}
            key = series_key(region, str(metric["Namespace"]), str(metric["MetricName"]), dims)
            points = self.store.query(key, str(ms["Stat"]), start, end, float(ms["Period"]))
            if descending:
                points.reverse()
            results.append(
                {
                    "Id": qid,
                    "Label": str(q.get("Label") or metric["MetricName"]),
                    "Timestamps": [_Timestamp(ts) for ts, _ in points],
                    "Values": [float(v) for _, v in points],
                    "StatusCode": "Complete",
                }
            )
        return {"MetricDataResults": results, "Messages": messages}

    def get_metric_statistics(self, region: str, request: Mapping[str, Any]) -> dict[str, Any]:
        dims = {str(d["Name"]): str(d["Value"]) for d in request.get("Dimensions", [])}
        key = series_key(region, str(request["Namespace"]), str(request["MetricName"]), dims)
        stats = [str(s) for s in request.get("Statistics", [])]
        stats += [str(s) for s in request.get("ExtendedStatistics", [])]
        start, end, period = float(request["StartTime"]), float(request["EndTime"]), float(request["Period"])
        by_ts: dict[float, dict[str, Any]] = {}
        for stat in stats:
            for ts, value in self.store.query(key, stat, start, end, period):
                dp = by_ts.setdefault(ts, {"Timestamp": _Timestamp(ts)})
                if stat.startswith("p"):
                    dp.setdefault("ExtendedStatistics", {})[stat] = float(value)
                else:
                    dp[stat] = float(value)
        return {"Label": str(request["MetricName"]), "Datapoints": [by_ts[t] for t in sorted(by_ts)]}


# --------------------------------------------------------------------------------------------------
# moto, with a front for what it lacks
# --------------------------------------------------------------------------------------------------


class _QuietMotoHandler(MotoRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class _MotoFront:
    """WSGI middleware before moto: ElastiCache Increase/DecreaseReplicaCount, applied to moto's group."""

    def __init__(self, app: Any, cloud: AwsCloud) -> None:
        self._app = app
        self._cloud = cloud

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        auth = str(environ.get("HTTP_AUTHORIZATION", ""))
        if environ.get("REQUEST_METHOD") != "POST" or "/elasticache/" not in auth:
            return self._app(environ, start_response)  # type: ignore[no-any-return]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        params = parse_qs(body.decode(errors="replace"))
        action = params.get("Action", [""])[0]
        if action not in ("IncreaseReplicaCount", "DecreaseReplicaCount"):
            return self._app(environ, start_response)  # type: ignore[no-any-return]
        group_id = params.get("ReplicationGroupId", [""])[0]
        region_match = _REGION_OF_AUTH.search(auth)
        region = region_match.group(1) if region_match else "us-east-1"
        try:
            replicas = int(params.get("NewReplicaCount", ["-1"])[0])
        except ValueError:
            replicas = -1
        error = self._cloud.change_cache_replicas(region, group_id, replicas, increase=action.startswith("I"))
        if error is not None:
            xml = (
                f'<ErrorResponse><Error><Type>Sender</Type><Code>{error[0]}</Code>'
                f"<Message>{error[1]}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
            ).encode()
            start_response("400 Bad Request",
                           [("Content-Type", "text/xml"), ("Content-Length", str(len(xml)))])
            return [xml]
        # Answer with moto's own serialisation of the group, under this action's result element.
        modify = urlencode({"Action": "ModifyReplicationGroup", "Version": "2015-02-02",
                           "ReplicationGroupId": group_id}).encode()
        environ["wsgi.input"] = io.BytesIO(modify)
        environ["CONTENT_LENGTH"] = str(len(modify))
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        chunks = b"".join(self._app(environ, capture))
        chunks = chunks.replace(b"ModifyReplicationGroup", action.encode())
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(chunks))))
        start_response(captured["status"], headers)
        return [chunks]


class _MotoServer(ThreadedMotoServer):
    """moto's threaded server on 127.0.0.1, with :class:`_MotoFront`, quiet, and a real close on stop."""

    def __init__(self, port: int, cloud: AwsCloud) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self.app = _MotoFront(DomainDispatcherApplication(create_backend_app), cloud)

    def _server_entry(self) -> None:
        self._server = make_server(
            self._ip_address, self._port, self.app, True, request_handler=_QuietMotoHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # moto's stop leaves the socket listening
        if self._thread is not None:
            self._thread.join(timeout=5)


# --------------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------------


@dataclass
class _Published:
    """What the emulator last wrote, to tell a client's change from its own."""

    dns: dict[str, dict[str, int]] = field(default_factory=dict)
    asg: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # cluster → (min, max, desired)
    replicas: dict[str, int] = field(default_factory=dict)
    cache_nodes: dict[str, int] = field(default_factory=dict)
    db_role: dict[str, tuple[DbRole, str | None]] = field(default_factory=dict)
    db_down: dict[str, bool] = field(default_factory=dict)
    cache_down: dict[str, bool] = field(default_factory=dict)


@dataclass
class _Seen:
    """What moto held at the end of the last collect.

    The local cloud collects, advances the world, then publishes, while moto keeps serving clients. A
    value that differs from this at publish time was written by a client in between: publishing the
    world's (older) value over it would lose the write, so publish leaves it for the next collect.
    """

    dns: dict[str, dict[str, int]] = field(default_factory=dict)
    asg: dict[str, tuple[int, int]] = field(default_factory=dict)  # cluster → (min, max)
    replicas: dict[str, int] = field(default_factory=dict)
    cache_nodes: dict[str, int] = field(default_factory=dict)


class AwsCloud:
    """The AWS emulator (see the module docstring).

    Args:
        fleet: the fleet whose AWS resources are seeded.
        moto_port: port of the moto server (0: a free one).
        cloudwatch_port: port of the CloudWatch endpoint (0: a free one).

    Endpoints returned by :meth:`start`: ``urls = {"aws": <moto url>, "cloudwatch": <CloudWatch url>}``;
    ``settings = {"aws_access_key_id": "SANDBOXACCESSKEYID", "aws_secret_access_key": "sandbox-…",
    "aws_session_token": "sandbox-…", "hosted_zone": "voltage.internal.", "account_id": ...}``.
    """

    name = "aws"

    def __init__(self, fleet: Fleet, *, moto_port: int = 0, cloudwatch_port: int = 0) -> None:
        self._fleet = fleet
        self._moto_port = moto_port
        self._cw_port = cloudwatch_port
        self._moto: _MotoServer | None = None
        self._cw: _CloudWatchServer | None = None
        self._cw_thread: threading.Thread | None = None
        self._faults = _Faults()
        self.store = MetricStore()
        self._published = _Published()
        self._seen = _Seen()
        self._lock = threading.RLock()
        self._zone_id = ""
        self._health_checks: dict[str, str] = {}  # region → health check id
        self._moto_url = ""
        self._cw_url = ""
        self.start_seconds: float | None = None
        self._aws_regions = {r.id: r.cloud_regions[Cloud.AWS] for r in fleet.regions.values()
                             if Cloud.AWS in r.cloud_regions}
        self._eks = [c for c in fleet.clusters.values() if c.kind is ClusterKind.EKS]
        self._rds_regions = [r.id for r in fleet.regions.values()
                             if r.database.cloud is Cloud.AWS and r.id in self._aws_regions]

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Endpoints:
        t0 = time.perf_counter()
        try:
            self._start_servers()
            self._reset_moto()
            self._seed()
            self._warm_moto()
        except SandboxError:
            self.stop()
            raise
        except Exception as exc:
            self.stop()
            raise SandboxError(f"the AWS emulator could not start: {type(exc).__name__}: {exc}") from exc
        self.start_seconds = time.perf_counter() - t0
        log.info("AWS emulator up in %.2f s (moto %s, CloudWatch %s)", self.start_seconds,
                 self._moto_url, self._cw_url)
        return self.endpoints

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(
            urls={"aws": self._moto_url, "cloudwatch": self._cw_url},
            settings={**SANDBOX_CREDENTIALS, "hosted_zone": HOSTED_ZONE, "account_id": ACCOUNT_ID},
        )

    def _start_servers(self) -> None:
        try:
            self._moto = _MotoServer(self._moto_port, self)
            self._moto.start()
            host, port = self._moto.get_host_and_port()
            self._moto_port = port
            self._moto_url = f"http://{host}:{port}"
            self._cw = _CloudWatchServer(self._cw_port, self.store, self._faults)
        except OSError as exc:
            raise SandboxError(f"the AWS emulator could not bind 127.0.0.1: {exc}") from exc
        self._cw_port = self._cw.server_address[1]
        self._cw_url = f"http://127.0.0.1:{self._cw_port}"
        self._cw_thread = threading.Thread(target=self._cw.serve_forever, name="sandbox-cloudwatch",
                                           daemon=True)
        self._cw_thread.start()

    def _stop_servers(self) -> None:
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if self._cw is not None:
            self._cw.shutdown()
            self._cw.server_close()
            self._cw = None
        if self._cw_thread is not None:
            self._cw_thread.join(timeout=5)
            self._cw_thread = None

    def stop(self) -> None:
        with self._lock:
            self._stop_servers()

    def set_fault(self, kind: str | None, **params: Any) -> None:
        """Inject a fault (see the module docstring); ``None`` clears it (and restarts after ``down``)."""
        if kind is not None and kind not in FAULT_KINDS:
            raise UsageError(f"unknown AWS fault {kind!r}; valid: {', '.join(FAULT_KINDS)}")
        with self._lock:
            was_down = self._faults.kind == "down"
            with self._faults.lock:
                self._faults.kind = kind
                self._faults.params = dict(params)
                self._faults.remaining = int(params.get("times", 3)) if kind == "throttle" else 0
            if kind == "down" and not was_down:
                self._stop_servers()
            elif kind != "down" and was_down:
                self._start_servers()

    # -- moto's state, in this process ----------------------------------------------------------------

    def _reset_moto(self) -> None:
        """Clear moto's (process-wide) state: a fresh seed every start (what ``/moto-api/reset`` does).

        Then create the EC2 backends of the fleet's regions with only the seed's AMI: moto loads its whole
        AMI catalogue into every EC2 backend (~1,300 images, each with a volume and a snapshot: ~60 ms per
        region, 300 ms for the first; a reset even rebuilds the old backends before dropping them) and
        filters it on every instance launch; nothing here reads it. ``MOTO_EC2_LOAD_DEFAULT_AMIS`` (moto's
        documented switch) is set for this only, unless the process set it itself. EC2 backends of other
        regions, created later by a client's call, load the catalogue as usual.
        """
        switch = "MOTO_EC2_LOAD_DEFAULT_AMIS"
        own = switch not in os.environ
        if own:
            os.environ[switch] = "false"
        try:
            moto_api_backend.reset()
            seed_ami = next((a for a in AMIS if a["ami_id"] == _SEED_AMI), None)
            for cr in sorted(set(self._aws_regions.values())):
                ec2 = self._backend("ec2", cr)
                if seed_ami is not None:
                    ec2.amis[_SEED_AMI] = Ami(ec2, **{**seed_ami, "owner_alias": "amazon"})
        finally:
            if own:
                os.environ.pop(switch, None)
        self.store.clear()
        self._published = _Published()
        self._seen = _Seen()

    def _warm_moto(self) -> None:
        """Serve, in-process, one of each kind of call the adapter makes (no socket).

        moto builds a service's app and loads its botocore model on the service's first request (~50 ms
        each, more when a reader's threads all arrive at once): pay it here, not in the first read.
        """
        if self._moto is None:
            return
        region = min(self._aws_regions.values(), default=ROUTE53_METRICS_REGION)
        form = "application/x-www-form-urlencoded; charset=utf-8"
        calls = [
            ("autoscaling", region, "POST", "/", "Action=DescribeAutoScalingGroups&Version=2011-01-01"),
            ("rds", region, "POST", "/", "Action=DescribeDBInstances&Version=2014-10-31"),
            ("elasticache", region, "POST", "/", "Action=DescribeReplicationGroups&Version=2015-02-02"),
            ("route53", ROUTE53_METRICS_REGION, "GET", "/2013-04-01/healthcheck", None),
        ]
        client = WerkzeugClient(self._moto.app)
        for service, cr, method, path, body in calls:
            headers = {"Authorization": f"AWS4-HMAC-SHA256 Credential=testing/20250101/{cr}/{service}/"
                                        "aws4_request, SignedHeaders=host, Signature=0"}
            if body is not None:
                headers["Content-Type"] = form
            try:
                status = client.open(path, method=method, data=body, headers=headers).status_code
            except Exception as exc:  # an optimisation only: the first real call would just be slower
                log.debug("warming moto's %s failed: %s", service, exc)
                continue
            if status != 200:
                log.debug("warming moto's %s: HTTP %s", service, status)

    # -- seed -----------------------------------------------------------------------------------

    def _seed(self) -> None:
        """Create the inventory's resources on moto's backends directly (the server serves the same state).

        Same arguments, same objects as the equivalent API calls, without boto3 clients, HTTP round trips
        or moto's request parsing: seeding is CPU-bound in this process, so it runs on one thread.
        """
        for cr in sorted(set(self._aws_regions.values())):
            self._seed_region(cr)
        for rid in self._rds_regions:
            self._seed_database(rid, primary_pass=False)
        self._seed_route53()

    def _subnets(self, cr: str) -> list[str]:
        subnets = self._backend("ec2", cr).describe_subnets(filters={"default-for-az": ["true"]})
        return [str(s.id) for s in subnets][:2]

    def _seed_region(self, cr: str) -> None:
        """EKS clusters, node groups' ASGs, caches, and the databases that need no other region's."""
        region_ids = [r for r, c in self._aws_regions.items() if c == cr]
        subnets = self._subnets(cr)
        clusters = [c for c in self._eks if c.cloud_region == cr]
        if clusters:
            self._backend("ec2", cr).create_launch_template(
                "eks-nodes", None, {"ImageId": _SEED_AMI, "InstanceType": clusters[0].instance_type,
                                    "UserData": None}, {},
            )
        eks = self._backend("eks", cr)
        asg = self._backend("autoscaling", cr)
        for c in clusters:
            # What moto's create_cluster / create_nodegroup do, less their role ARN check, which builds a
            # boto3 Session (and parses botocore's endpoint data) per call: ~50 ms each.
            where = {"account_id": ACCOUNT_ID, "region_name": cr, "aws_partition": eks.partition}
            cluster = EksCluster(
                name=c.name, role_arn=f"arn:aws:iam::{ACCOUNT_ID}:role/eks-cluster",
                resources_vpc_config={"subnetIds": subnets}, version="1.31",
                client_request_token=str(uuid.uuid4()), **where,  # boto3 fills the token in
            )
            eks.clusters[c.name] = cluster
            eks.cluster_count += 1
            cluster.nodegroups[f"{c.name}-ng"] = EksNodegroup(
                cluster_name=c.name, nodegroup_name=f"{c.name}-ng", subnets=subnets,
                node_role=f"arn:aws:iam::{ACCOUNT_ID}:role/eks-node", instance_types=[c.instance_type],
                scaling_config={"minSize": c.nodes.min, "maxSize": c.nodes.max, "desiredSize": c.nodes.min},
                capacity_type="ON_DEMAND", client_request_token=str(uuid.uuid4()), **where,
            )
            cluster.nodegroup_count += 1
            asg.create_auto_scaling_group(
                name=f"{c.name}-ng", availability_zones=[], desired_capacity=0, max_size=c.nodes.max,
                min_size=0, launch_config_name=None, launch_template={},
                vpc_zone_identifier=",".join(subnets), default_cooldown=None, health_check_period=None,
                health_check_type=None, load_balancers=[], target_group_arns=[], placement_group=None,
                termination_policies=[],
                tags=[
                    {"Key": "eks:cluster-name", "Value": c.name, "PropagateAtLaunch": True},
                    {"Key": "eks:nodegroup-name", "Value": f"{c.name}-ng", "PropagateAtLaunch": True},
                ],
                mixed_instances_policy=self._mixed_policy(c),
            )
            # amazon.aws.autoscaling_group needs metrics collection on (moto lacks DisableMetricsCollection).
            asg.enable_metrics_collection(f"{c.name}-ng", None)
            self._published.asg[c.name] = (0, c.nodes.max, 0)
        elasticache = self._backend("elasticache", cr)
        for rid in region_ids:
            spec = self._fleet.regions[rid]
            elasticache.create_replication_group(**_replication_group_args(
                f"redis-{rid}", f"Redis of {rid}", replicas=max(0, spec.cache.nodes - 1)))
            self._published.cache_nodes[rid] = spec.cache.nodes
            if rid in self._rds_regions:
                ec2 = self._backend("ec2", cr)
                self._backend("rds", cr).create_subnet_group(
                    "voltage-db", "opsconsole sandbox", [ec2.get_subnet(s) for s in subnets], [],
                )
                self._seed_database(rid, primary_pass=True)

    @staticmethod
    def _mixed_policy(c: ClusterSpec) -> dict[str, Any]:
        """On-demand base = reserved nodes; above it, the inventory's spot ratio runs on spot."""
        return {
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateName": "eks-nodes", "Version": "$Latest"},
                "Overrides": [{"InstanceType": c.instance_type}],
            },
            "InstancesDistribution": {
                "OnDemandBaseCapacity": c.reserved_nodes,
                "OnDemandPercentageAboveBaseCapacity": round((1.0 - c.spot_ratio) * 100),
                "SpotAllocationStrategy": "price-capacity-optimized",
            },
        }

    def _seed_database(self, rid: str, *, primary_pass: bool) -> None:
        spec = self._fleet.regions[rid]
        cr = self._aws_regions[rid]
        rds = self._backend("rds", cr)
        name = f"pg-{rid}"
        is_primary = spec.database.role is DbRole.WRITE_PRIMARY
        source = spec.database.replicates_from
        source_is_rds = source is not None and source in self._rds_regions
        if primary_pass and (is_primary or not source_is_rds):
            db = rds.create_db_instance({
                "db_instance_identifier": name, "engine": "postgres", "engine_version": "16.4",
                "db_instance_class": "db.r6g.2xlarge",
                "allocated_storage": spec.database.storage_tb * _GIB_PER_TB,
                "master_username": "voltage", "master_user_password": "sandbox-only-password",
                "db_subnet_group_name": "voltage-db", "multi_az": True,
            })
        elif not primary_pass and not is_primary and source_is_rds and source is not None:
            source_arn = _RDS_ARN.format(region=self._aws_regions[source], account=ACCOUNT_ID,
                                         name=f"pg-{source}")
            db = rds.create_db_instance_read_replica({
                "db_instance_identifier": name, "source_db_instance_identifier": source_arn,
                "db_instance_class": "db.r6g.2xlarge", "db_subnet_group_name": "voltage-db",
            })
        else:
            return
        # A read replica copies its source's size; this region's is in the inventory.
        db.allocated_storage = spec.database.storage_tb * _GIB_PER_TB
        if not is_primary and not source_is_rds:
            self._relink(rid, source)
        for k in range(1, spec.database.read_replicas + 1):
            self._create_read_replica(rds, name, k)
        self._published.replicas[rid] = spec.database.read_replicas
        self._published.db_role[rid] = (spec.database.role, source)

    @staticmethod
    def _create_read_replica(rds: Any, name: str, k: int) -> None:
        rds.create_db_instance_read_replica({
            "db_instance_identifier": f"{name}-r{k}", "source_db_instance_identifier": name,
            "db_instance_class": "db.r6g.xlarge", "db_subnet_group_name": "voltage-db",
        })

    def _seed_route53(self) -> None:
        r53 = self._backend("route53", "global")
        zone = r53.create_hosted_zone(
            HOSTED_ZONE, comment=None, private_zone=False, caller_reference=f"opsconsole-{uuid.uuid4()}",
            vpcid=None, vpcregion=None, delegation_set_id=None,
        )
        self._zone_id = str(zone.id).rsplit("/", 1)[-1]
        for rid in self._fleet.regions:
            hc = r53.create_health_check(f"health-{rid}-{uuid.uuid4()}", {
                "ip_address": None, "port": 443, "type": "HTTPS", "resource_path": "/healthz",
                "fqdn": f"health.{rid}.voltage.internal", "search_string": None, "request_interval": 10,
                "failure_threshold": 3, "health_threshold": None, "measure_latency": None,
                "inverted": None, "disabled": None, "enable_sni": None, "children": [], "regions": [],
            })
            self._health_checks[rid] = str(hc.id)
        # Records are written by the first publish (from the world's weights).

    # -- moto objects without an API ----------------------------------------------------------------

    @staticmethod
    def _backend(service: str, region: str) -> Any:
        """moto's backend of ``service`` in ``region`` (Route53: ``"global"``), as the server uses it."""
        backends: Any = _BACKENDS[service]
        return backends[ACCOUNT_ID][region]

    def _relink(self, rid: str, source: str | None) -> None:
        """Point ``pg-<rid>`` at ``pg-<source>`` (or make it a primary): moto has no API for this."""
        cr = self._aws_regions[rid]
        db = self._backend("rds", cr).databases.get(f"pg-{rid}")
        if db is None:
            return
        old = getattr(db, "source_db_instance_identifier", None)
        if old:
            self._unlist_replica(old, db)
        if source is None:
            db.is_replica = False
            db.source_db_instance_identifier = None
            return
        source_cr = self._aws_regions.get(source, cr)
        arn = _RDS_ARN.format(region=source_cr, account=ACCOUNT_ID, name=f"pg-{source}")
        db.is_replica = True
        db.source_db_instance_identifier = arn
        src = self._backend("rds", source_cr).databases.get(f"pg-{source}") if source in self._rds_regions \
            else None
        if src is not None and db.db_instance_arn not in src.replicas:
            src.replicas.append(db.db_instance_arn)

    def _unlist_replica(self, source_id: str, db: Any) -> None:
        match = re.match(r"^arn:aws:rds:([a-z0-9-]+):\d+:db:(.+)$", source_id)
        region, name = (match.group(1), match.group(2)) if match else (db.region, source_id)
        src = self._backend("rds", region).databases.get(name)
        if src is None:
            return
        for ident in (db.db_instance_arn, db.db_instance_identifier):
            if ident in src.replicas:
                src.replicas.remove(ident)

    def change_cache_replicas(
        self, region: str, group_id: str, new_replicas: int, *, increase: bool
    ) -> tuple[str, str] | None:
        """Apply IncreaseReplicaCount / DecreaseReplicaCount to moto's group; an (code, message) error."""
        groups = self._backend("elasticache", region).replication_groups
        group = groups.get(group_id)
        if group is None:
            return "ReplicationGroupNotFoundFault", f"Replication group {group_id} not found."
        current = len(group.member_clusters) - 1
        if new_replicas < 0 or new_replicas > 5 or (increase and new_replicas <= current) or (
            not increase and new_replicas >= current
        ):
            return "InvalidParameterValue", (
                f"NewReplicaCount {new_replicas} is not valid for "
                f"{'increasing' if increase else 'decreasing'} "
                f"from {current} replicas (0-5)"
            )
        self._set_cache_members(group, new_replicas + 1)
        return None

    @staticmethod
    def _set_cache_members(group: Any, nodes: int) -> None:
        members = group.node_groups[0]["node_group_members"]
        primary = members[0]
        rebuilt = [primary]
        for i in range(2, nodes + 1):
            node = dict(primary)
            node["cache_cluster_id"] = f"{group.replication_group_id}-{i:0>3}"
            node["read_endpoint"] = {"address": f"{node['cache_cluster_id']}.cache.sandbox",
                                     "port": group.port}
            node["current_role"] = "replica"
            rebuilt.append(node)
        group.node_groups[0]["node_group_members"] = rebuilt
        group.member_clusters[:] = [n["cache_cluster_id"] for n in rebuilt]

    # -- publish --------------------------------------------------------------------------------

    def publish(self, world: World) -> None:
        """Write the world's current state: metrics, DNS, node groups, databases, caches."""
        with self._lock:
            if self._moto is None:
                log.warning("AWS emulator is down: publish skipped")
                return
            now = time.time()
            records = world.observe()
            traffic = {r.region: r for r in records if isinstance(r, RegionTraffic)}
            databases = {r.region: r for r in records if isinstance(r, DatabaseState)}
            caches = {r.region: r for r in records if isinstance(r, CacheState)}
            for rid, cr in self._aws_regions.items():
                if rid in traffic:
                    self._publish_traffic(cr, traffic[rid], now)
                if rid in caches:
                    self._publish_cache(rid, cr, caches[rid], now)
                if rid in databases and rid in self._rds_regions:
                    self._publish_database(rid, cr, databases[rid], now)
            self._publish_node_groups(world)
            self._publish_dns(world)
            self._seen = self._moto_now()  # what it wrote is not a client's write

    def _publish_traffic(self, cr: str, t: RegionTraffic, now: float) -> None:
        lb = {"LoadBalancer": load_balancer_dimension(t.region)}
        p95, p99, avg = t.p95_ms / 1000.0, t.p99_ms / 1000.0, t.avg_latency_ms / 1000.0
        # {low: 94, p95: 1, p99: 5}: nearest rank 95 → p95, 99 → p99; low makes the mean the average.
        low = max(0.0, (avg - 0.01 * p95 - 0.05 * p99) / 0.94)
        weight = max(1, round(t.rps))  # integer counts keep the nearest-rank arithmetic exact
        self.store.put_gauge(series_key(cr, "AWS/ApplicationELB", "TargetResponseTime", lb), now,
                             [low, p95, p99], [94 * weight, 1 * weight, 5 * weight])
        r5 = t.rps * 300.0
        e5 = t.error_rate * r5
        if r5 > 0:
            rest = t.rps * 3300.0
            if t.error_rate_1h > 0:
                rest = max(rest, e5 / t.error_rate_1h - r5)
            e_rest = max(0.0, t.error_rate_1h * (r5 + rest) - e5)
        else:
            rest, e_rest = 1.0, t.error_rate_1h
        self.store.replace(series_key(cr, "AWS/ApplicationELB", "RequestCount", lb),
                           [_Point(now - 1800, [rest], [1]), _Point(now, [r5], [1])])
        self.store.replace(series_key(cr, "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", lb),
                           [_Point(now - 1800, [e_rest], [1]), _Point(now, [e5], [1])])
        self.store.put_gauge(series_key(cr, "Voltage/Platform", "ActiveUsers", {"Region": t.region}), now,
                             [float(t.concurrent_users)], [1])
        hc = self._health_checks.get(t.region)
        if hc:
            self.store.put_gauge(
                series_key(ROUTE53_METRICS_REGION, "AWS/Route53", "HealthCheckStatus", {"HealthCheckId": hc}),
                now, [1.0 if t.health_check_ok else 0.0], [1],
            )

    def _publish_cache(self, rid: str, cr: str, c: CacheState, now: float) -> None:
        self.store.put_gauge(
            series_key(cr, "AWS/ElastiCache", "CacheHitRate", {"CacheClusterId": cache_cluster_id(rid)}),
            now, [c.hit_ratio * 100.0], [1],
        )
        group = self._backend("elasticache", cr).replication_groups.get(f"redis-{rid}")
        if group is None:
            return
        seen = self._seen.cache_nodes.get(rid)
        if seen is not None and len(group.member_clusters) != seen:
            self._published.cache_nodes[rid] = seen  # a client's write since collect: the next collect's
        else:
            if len(group.member_clusters) != c.nodes:
                self._set_cache_members(group, c.nodes)
            self._published.cache_nodes[rid] = c.nodes
        down = c.healthy_nodes == 0 and c.nodes > 0
        if down != self._published.cache_down.get(rid, False):
            group.status = "unavailable" if down else "available"
            self._published.cache_down[rid] = down

    def _publish_database(self, rid: str, cr: str, d: DatabaseState, now: float) -> None:
        name = f"pg-{rid}"
        dims = {"DBInstanceIdentifier": name}
        self.store.put_gauge(series_key(cr, "AWS/RDS", "ReplicaLag", dims), now, [d.replica_lag_s], [1])
        q = d.query_p95_ms
        self.store.put_gauge(series_key(cr, "Voltage/Platform", "DbQueryLatency", dims), now,
                             [0.5 * q, q, 1.3 * q], [94, 5, 1])
        self.store.put_gauge(series_key(cr, "Voltage/Platform", "DbTransactionsPerSecond", dims), now,
                             [d.tps], [1])
        databases = self._backend("rds", cr).databases
        db = databases.get(name)
        if db is None:
            return
        role = (d.role, d.replicates_from)
        if self._published.db_role.get(rid) != role:
            self._relink(rid, d.replicates_from if d.role is DbRole.READ_REPLICA else None)
            self._published.db_role[rid] = role
        down = not d.available
        if down != self._published.db_down.get(rid, False):
            for ident, inst in list(databases.items()):
                if ident == name or ident.startswith(f"{name}-r"):
                    inst.status = "failed" if down else "available"
            self._published.db_down[rid] = down
        local = sorted(
            (i for i in list(databases) if re.fullmatch(rf"{re.escape(name)}-r\d+", i)),
            key=lambda i: int(i.rsplit("-r", 1)[1]),
        )
        rds = self._backend("rds", cr)
        seen = self._seen.replicas.get(rid)
        if seen is not None and len(local) != seen:
            self._published.replicas[rid] = seen  # a client's write since collect: the next collect's
            return
        if len(local) < d.read_replicas:
            used = {int(i.rsplit("-r", 1)[1]) for i in local}
            k = 1
            for _ in range(d.read_replicas - len(local)):
                while k in used:
                    k += 1
                used.add(k)
                self._create_read_replica(rds, name, k)
        elif len(local) > d.read_replicas:
            for ident in local[d.read_replicas:][::-1]:
                rds.delete_db_instance(ident, skip_final_snapshot=True)
        self._published.replicas[rid] = d.read_replicas

    def _publish_node_groups(self, world: World) -> None:
        for c in self._eks:
            nodes = world.nodes(c.name)
            lo, hi = world.node_bounds(c.name)
            want = (min(lo, nodes), hi, nodes)
            if self._published.asg.get(c.name) == want:
                continue
            seen = self._seen.asg.get(c.name)
            group = self._backend("autoscaling", c.cloud_region).autoscaling_groups.get(f"{c.name}-ng")
            if seen is not None and group is not None and (int(group.min_size), int(group.max_size)) != seen:
                # a client's write since collect: the next collect's
                self._published.asg[c.name] = (*seen, int(group.desired_capacity or 0))
                continue
            # As UpdateAutoScalingGroup without a policy: moto then launches exactly the desired count
            # (its mixed-instances arithmetic can fall short by one); the policy is put back after.
            self._backend("autoscaling", c.cloud_region).update_auto_scaling_group(
                name=f"{c.name}-ng", availability_zones=[], desired_capacity=want[2], max_size=want[1],
                min_size=want[0], launch_config_name=None, launch_template={}, vpc_zone_identifier=None,
                health_check_period=None, health_check_type=None,
            ).mixed_instances_policy = self._mixed_policy(c)
            self._published.asg[c.name] = want

    def _record_sets(self, region: str, weights: Mapping[str, int]) -> Iterator[dict[str, Any]]:
        for target, weight in sorted(weights.items()):
            record: dict[str, Any] = {
                "Name": f"api.{region}.voltage.internal.", "Type": "CNAME", "SetIdentifier": target,
                "Weight": int(weight), "TTL": 60,
                "ResourceRecords": [{"Value": f"api-{target}.elb.{self._aws_regions.get(target, target)}"
                                              ".amazonaws.com"}],
            }
            if target in self._health_checks:
                record["HealthCheckId"] = self._health_checks[target]
            yield record

    def _publish_dns(self, world: World) -> None:
        changes: list[dict[str, Any]] = []
        current = self._dns_in_moto()
        for rid in self._fleet.regions:
            want = world.dns_weights(rid)
            have = current.get(rid, {})
            seen = self._seen.dns.get(rid)
            if seen is not None and have != seen:
                self._published.dns[rid] = dict(seen)  # a client's write since collect: the next collect's
                continue
            if relative_weights(have) == want:
                # Route53 weights are relative: the records already say what the world does (e.g. a
                # playbook's {A: 75, B: 25} written one record at a time). Leave the client's records be.
                self._published.dns[rid] = dict(have)
                continue
            for target in sorted(t for t in have if t not in want):
                # Route53 deletes only a record given exactly as it was created (a client's value, TTL…).
                stored = self._stored_record(rid, target)
                if stored is not None:
                    changes.append({"Action": "DELETE", "ResourceRecordSet": stored})
            for record in self._record_sets(rid, {t: w for t, w in want.items() if have.get(t) != w}):
                changes.append({"Action": "UPSERT", "ResourceRecordSet": record})
            self._published.dns[rid] = dict(want)
        if changes:
            self._backend("route53", "global").change_resource_record_sets(self._zone_id, changes)

    def _stored_record(self, region: str, target: str) -> dict[str, Any] | None:
        """The weighted record ``target`` of ``region``'s set exactly as moto holds it."""
        zone = self._backend("route53", "global").zones.get(self._zone_id)
        name = f"api.{region}.voltage.internal."
        for rrs in list(zone.rrsets) if zone is not None else []:
            if str(rrs.name) == name and str(rrs.set_identifier) == target:
                record: dict[str, Any] = {
                    "Name": rrs.name, "Type": rrs.type, "SetIdentifier": rrs.set_identifier,
                    "Weight": rrs.weight, "TTL": rrs.ttl,
                    "ResourceRecords": [v if isinstance(v, dict) else {"Value": v} for v in rrs.records],
                }
                if rrs.health_check_id:
                    record["HealthCheckId"] = rrs.health_check_id
                return record
        return None

    def _dns_in_moto(self) -> dict[str, dict[str, int]]:
        """Weights per region as moto holds them now."""
        out: dict[str, dict[str, int]] = {}
        zone = self._backend("route53", "global").zones.get(self._zone_id)
        for rrs in list(zone.rrsets) if zone is not None else []:
            m = re.fullmatch(r"api\.([a-z0-9-]+)\.voltage\.internal\.", str(rrs.name))
            if m and rrs.set_identifier is not None and rrs.weight is not None:
                out.setdefault(m.group(1), {})[str(rrs.set_identifier)] = int(rrs.weight)
        return out

    # -- collect --------------------------------------------------------------------------------

    def collect(self, world: World) -> None:
        """Apply to the world what clients changed since the last publish (invalid changes are logged)."""
        with self._lock:
            if self._moto is None:
                return
            self._collect_dns(world)
            self._collect_node_groups(world)
            self._collect_databases(world)
            self._collect_caches(world)
            self._seen = self._moto_now()

    def _moto_now(self) -> _Seen:
        """The client-writable values moto holds now (see :class:`_Seen`)."""
        seen = _Seen(dns=self._dns_in_moto())
        for c in self._eks:
            group = self._backend("autoscaling", c.cloud_region).autoscaling_groups.get(f"{c.name}-ng")
            if group is not None:
                seen.asg[c.name] = (int(group.min_size), int(group.max_size))
        for rid in self._rds_regions:
            seen.replicas[rid] = self._replica_count(rid)
        for rid, cr in self._aws_regions.items():
            group = self._backend("elasticache", cr).replication_groups.get(f"redis-{rid}")
            if group is not None:
                seen.cache_nodes[rid] = len(group.member_clusters)
        return seen

    def _replica_count(self, rid: str) -> int:
        databases = self._backend("rds", self._aws_regions[rid]).databases
        return sum(1 for i in list(databases) if re.fullmatch(rf"pg-{re.escape(rid)}-r\d+", i))

    def _apply(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except UsageError as exc:
            log.warning("ignored a client's AWS change (%s): %s", what, exc)

    def _collect_dns(self, world: World) -> None:
        current = self._dns_in_moto()
        for rid in self._fleet.regions:
            have = current.get(rid, {})
            if rid in self._published.dns and have != self._published.dns[rid]:
                weights = relative_weights(have)
                if weights and weights != world.dns_weights(rid):
                    self._apply(f"Route53 weights of {rid}", partial(world.set_dns_weights, rid, weights))
                self._published.dns[rid] = dict(have)

    def _collect_node_groups(self, world: World) -> None:
        for c in self._eks:
            group = self._backend("autoscaling", c.cloud_region).autoscaling_groups.get(f"{c.name}-ng")
            published = self._published.asg.get(c.name)
            if group is None or published is None:
                continue
            lo, hi = int(group.min_size), int(group.max_size)
            if (lo, hi) == published[:2]:
                continue
            world_lo, _ = world.node_bounds(c.name)
            new_lo = world_lo if lo == published[0] else lo
            self._apply(f"ASG {c.name}-ng bounds", partial(world.set_cluster_node_bounds, c.name, new_lo, hi))
            self._published.asg.pop(c.name, None)

    def _collect_databases(self, world: World) -> None:
        for rid in self._rds_regions:
            cr = self._aws_regions[rid]
            databases = self._backend("rds", cr).databases
            db = databases.get(f"pg-{rid}")
            if db is None:
                continue
            role = self._published.db_role.get(rid)
            if role is not None and role[0] is DbRole.READ_REPLICA and not db.is_replica:
                # moto's promote only clears is_replica: finish it, then tell the world.
                self._relink(rid, None)
                self._apply(f"promote pg-{rid}", partial(world.promote_replica, rid))
                self._published.db_role.pop(rid, None)
            count = self._replica_count(rid)
            if rid in self._published.replicas and count != self._published.replicas[rid]:
                self._apply(f"read replicas of pg-{rid}", partial(world.set_read_replicas, rid, count))
                self._published.replicas.pop(rid, None)

    def _collect_caches(self, world: World) -> None:
        for rid, cr in self._aws_regions.items():
            group = self._backend("elasticache", cr).replication_groups.get(f"redis-{rid}")
            if group is None or rid not in self._published.cache_nodes:
                continue
            nodes = len(group.member_clusters)
            if nodes != self._published.cache_nodes[rid]:
                self._apply(f"ElastiCache redis-{rid}", partial(world.set_cache_nodes, rid, nodes))
                self._published.cache_nodes.pop(rid, None)
