"""The ``aws`` fleet source: the fleet's AWS view through boto3 (CloudWatch, Route53, RDS, ElastiCache, ASG).

Why this module exists: every region's front door is an AWS ALB, its users are routed by Route53, and the
AWS-hosted databases, caches and EKS node groups live in RDS, ElastiCache and Auto Scaling. This adapter
reads them and returns domain records only (no boto3 object leaves the module):

* :class:`~opsconsole.core.fleet.model.RegionTraffic` for every region:
  ``AWS/ApplicationELB TargetResponseTime``
  (seconds → ms) ``p95`` / ``p99`` / ``Average`` from the newest 1-minute bucket of the last 5 minutes;
  ``RequestCount`` / ``HTTPCode_Target_5XX_Count`` sums over 5 min (error rate, rps = requests / 300) and
  1 h (error_rate_1h); ``Voltage/Platform ActiveUsers`` (dimension ``Region``); Route53 health check status
  from ``AWS/Route53 HealthCheckStatus`` in us-east-1 (how AWS exposes it to CloudWatch);
* :class:`~opsconsole.core.fleet.model.DnsRecordSet` for every region: the weighted records
  ``api.<region>.<zone>`` (SetIdentifier = target region → Weight; zero weights dropped); ``routing`` is
  the inventory's policy for the region (Route53 holds weighted records for all of them);
* :class:`~opsconsole.core.fleet.model.DatabaseState` for regions whose database is on AWS:
  RDS ``pg-<region>``
  (role and source from ``ReadReplicaSourceDBInstanceIdentifier``, local read replicas ``pg-<region>-rN``,
  ``available`` = status ``available``, storage from AllocatedStorage GiB / 1024, ``extra
  ["backup_retention_days"]`` from BackupRetentionPeriod: the days of point-in-time recovery its automated
  backups keep, 0 = automated backups off; absent when RDS did not say), ``AWS/RDS ReplicaLag``,
  query p95 from the application's ``Voltage/Platform DbQueryLatency`` (ms, ``p95``; RDS has no query
  latency metric of its own) and ``Voltage/Platform DbTransactionsPerSecond``;
* :class:`~opsconsole.core.fleet.model.CacheState` for every region: ElastiCache ``redis-<region>`` (member
  clusters; healthy = all when the group is ``available``, else 0) and ``AWS/ElastiCache CacheHitRate`` of
  its primary ``redis-<region>-001`` (percent → ratio);
* :class:`~opsconsole.core.fleet.model.NodeGroupState` for every EKS cluster: Auto Scaling group
  ``<cluster>-ng`` (desired / min / max / InService instances; spot vs on-demand from its
  MixedInstancesPolicy: on-demand base, then OnDemandPercentageAboveBaseCapacity of the rest);
* :class:`~opsconsole.core.fleet.model.WorkloadMetrics` for every EKS cluster × service of its environment
  (the request figures the Kubernetes API lacks, as the gcp and azure sources report them for GKE / AKS):
  the AWS Load Balancer Controller gives each service's Ingress a target group ``k8s-<ns>-<svc>-<hash>``
  on the cluster's ALB. They are found by the controller's tags with one Resource Groups Tagging API
  ``GetResources`` per AWS region (load balancers and target groups tagged ``elbv2.k8s.aws/cluster`` =
  one of the region's EKS clusters; a target group's ``ingress.k8s.aws/resource`` =
  ``<ns>/<ingress>-<svc>:<port>`` names its service, its ``ingress.k8s.aws/stack`` its ALB;
  describe-cadenced; IAM ``tag:GetResources``), then read per target group (dimensions
  ``LoadBalancer`` + ``TargetGroup``) in the region's GetMetricData batch: ``TargetResponseTime`` ``p95``
  (newest 1-minute bucket, s → ms), ``RequestCount`` and ``HTTPCode_Target_5XX_Count`` sums over 5 min
  (rps = requests / 300, error_rate = 5XX / requests): three metrics per workload and poll. A service
  without a target group, or without requests in the window, has ``p95_ms`` / ``error_rate`` ``None``.

Behaviour: one boto3 Session per region (a profile per region from the constructor, or the default
chain; explicit credentials for the sandbox), ``Config(connect_timeout, read_timeout, retries={"mode":
"standard", "max_attempts": 3})``, optional endpoint URL per service. Regions are read concurrently on
daemon threads and :meth:`AwsSource.read` returns within ``timeout_s``; a region that did not answer in
time, or failed, becomes a ``problems`` entry (a half answer). Throttling is retried with backoff by
botocore's standard mode and reported as a problem even when a retry succeeded. Access denied / expired
or unknown credentials raise :class:`~opsconsole.core.errors.SourceError` naming the profile and region;
when no region can be read at all (connection refused, every call failed) a SourceError names the
endpoint.

Cadence (what the cloud is asked, and how often). CloudWatch's standard metrics change once a minute and
GetMetricData is billed per metric requested, so the source polls metrics on ``metrics_cadence_s``
(aligned to the period: at most one poll per minute at 60 s) and describe-style calls (Auto Scaling,
RDS, ElastiCache, Route53 lists) on ``describe_cadence_s``; between polls :meth:`AwsSource.read`
returns what it holds, stamped with when it was fetched (``SourceReading.as_of``), without any call.
Gauge series (1-minute datapoints over a 5-minute window) keep a per-series window of datapoints and ask
only for the buckets after the newest complete one held (``StartTime`` past it); window sums (5-min and
1-h totals, one datapoint covering the window) are asked whole at each poll. :meth:`AwsSource.touch`
makes both due at the next read (a run changed something). ``0`` = every read (the default of the
constructor; the wiring passes the inventory's ``opsconsole_clouds.aws`` cadences). Every SDK call is
counted in :data:`~opsconsole.core.fleet.metering.METER` (``aws``, operation, metrics requested);
GetMetricData carries at most :data:`MAX_METRICS_PER_CALL` (500, CloudWatch's limit) queries per call.
``resolve_endpoints`` (sandbox): re-read where the local cloud listens before each poll; clients are
rebuilt when it moved (the local cloud restarted on new ports).

How to use it::

    source = AwsSource(fleet, profiles={"us-east-1": "prod-use1"}, timeout_s=5)
    source = AwsSource.from_endpoints(fleet, endpoints)   # the sandbox's AwsCloud
    reading = source.read()
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from opsconsole.core.errors import SourceError
from opsconsole.core.fleet.cadence import Cadence
from opsconsole.core.fleet.engine import SourceReading
from opsconsole.core.fleet.metering import METER
from opsconsole.core.fleet.model import (
    CacheState,
    Cloud,
    ClusterKind,
    ClusterSpec,
    DatabaseState,
    DbRole,
    DnsRecordSet,
    Fleet,
    FleetRecord,
    NodeGroupState,
    RegionTraffic,
    WorkloadMetrics,
)

__all__ = ["AwsSource"]

SOURCE_NAME = "aws"
HOSTED_ZONE = "voltage.internal."
ROUTE53_METRICS_REGION = "us-east-1"
_GIB_PER_TB = 1024

AUTH_ERRORS = frozenset({
    "AccessDenied", "AccessDeniedException", "ExpiredToken", "ExpiredTokenException",
    "UnrecognizedClientException", "InvalidClientTokenId", "AuthFailure", "SignatureDoesNotMatch",
    "UnauthorizedOperation", "InvalidAccessKeyId", "MissingAuthenticationToken",
})
THROTTLE_ERRORS = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "RequestThrottled", "SlowDown",
    "PriorRequestNotComplete", "EC2ThrottledException", "Rate exceeded",
})


#: Describe-style operations: answered from the describe cache between describe polls.
DESCRIBE_OPS = frozenset({
    "describe_replication_groups", "describe_db_instances", "describe_auto_scaling_groups",
    "list_hosted_zones_by_name", "list_resource_record_sets", "list_health_checks",
    "get_resources",
})
#: CloudWatch's limit of metric queries per GetMetricData call.
MAX_METRICS_PER_CALL = 500
#: Tags the AWS Load Balancer Controller puts on the load balancers and target groups of an Ingress.
TAG_CLUSTER = "elbv2.k8s.aws/cluster"
TAG_STACK = "ingress.k8s.aws/stack"
TAG_RESOURCE = "ingress.k8s.aws/resource"
#: The namespace of the fleet's services in every cluster.
K8S_NAMESPACE = "voltage"

_Query = tuple[str, str, str, dict[str, str], str, int, int]


def load_balancer_dimension(region: str) -> str:
    """The ALB ``LoadBalancer`` dimension of a region (must match the load balancer's name and id)."""
    return f"app/api-{region}/{zlib.crc32(region.encode()):016x}"


def arn_dimension(arn: str) -> str:
    """CloudWatch's dimension value of an ELBv2 ARN: ``app/<name>/<id>`` or ``targetgroup/<name>/<id>``."""
    return arn.split(":loadbalancer/", 1)[-1] if ":loadbalancer/" in arn else arn.rsplit(":", 1)[-1]


def _service_of(resource: str, namespace: str, services: set[str]) -> str | None:
    """The service of an ``ingress.k8s.aws/resource`` tag ``<ns>/<ingress>-<svc>:<port>`` (longest match)."""
    ns, _, rest = resource.partition("/")
    if ns != namespace or not rest:
        return None
    backend = rest.rsplit(":", 1)[0]
    found = [s for s in services if backend == s or backend.endswith(f"-{s}")]
    return max(found, key=len) if found else None


def _backup_retention(instance: Mapping[str, Any]) -> dict[str, int]:
    """``{"backup_retention_days": N}`` from a DescribeDBInstances entry's BackupRetentionPeriod (already
    in the describe: no extra call), or nothing when RDS did not report it (not observed is not "met")."""
    days = instance.get("BackupRetentionPeriod")
    if isinstance(days, bool) or not isinstance(days, int):
        return {}
    return {"backup_retention_days": days}


def _endpoint_urls(endpoints: Any) -> dict[str, str]:
    """Service → endpoint URL from the sandbox's AWS :class:`Endpoints`."""
    urls: Mapping[str, str] = endpoints.urls
    out = {"*": urls["aws"]}
    if "cloudwatch" in urls:
        out["cloudwatch"] = urls["cloudwatch"]
    return out


class _AuthFailure(Exception):
    """An authentication / permission error, raised out of read() as a SourceError."""


@dataclass
class _Outcome:
    records: list[FleetRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    auth: str | None = None
    done: bool = False
    health: dict[str, bool] = field(default_factory=dict)


class _RetryWatch(threading.local):
    """Per-thread notes of the throttling errors botocore retried (its standard mode backs off)."""

    def __init__(self) -> None:
        self.codes: list[str] = []


class AwsSource:
    """A :class:`~opsconsole.core.fleet.engine.FleetSource` over the fleet's AWS accounts
    (see module docstring).

    Args:
        fleet: the fleet (regions, AWS cloud regions, EKS clusters, database placement).
        profiles: region id → AWS profile name; regions not listed use ``default_profile``.
        default_profile: the profile of unlisted regions; ``None``: boto3's default credential chain.
        credentials: explicit ``aws_access_key_id`` / ``aws_secret_access_key`` / ``aws_session_token``
            (the sandbox's dummy ones); they go to the Session only, never to ``os.environ``.
        endpoint_urls: service name (``cloudwatch``, ``route53``, ``rds``, ``elasticache``,
            ``autoscaling``) → endpoint URL; key ``"*"`` is the default for unlisted services.
        timeout_s: the longest a :meth:`read` takes.
        connect_timeout_s / read_timeout_s: per-attempt socket timeouts (read: ``timeout_s`` by default).
        hosted_zone: the Route53 zone holding the ``api.<region>`` records.
        name: the source name.
    """

    def __init__(
        self,
        fleet: Fleet,
        *,
        profiles: Mapping[str, str] | None = None,
        default_profile: str | None = None,
        credentials: Mapping[str, str] | None = None,
        endpoint_urls: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
        connect_timeout_s: float = 1.0,
        read_timeout_s: float | None = None,
        hosted_zone: str = HOSTED_ZONE,
        name: str = SOURCE_NAME,
        metrics_cadence_s: float = 0.0,
        describe_cadence_s: float = 0.0,
        clock: Callable[[], float] | None = None,
        resolve_endpoints: Callable[[], Any] | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self.name = name
        self.cadence_s = float(metrics_cadence_s)
        self.describe_cadence_s = float(describe_cadence_s)
        self._clock: Callable[[], float] = clock or time.time
        self._metrics_cadence = Cadence(metrics_cadence_s, clock=self._clock)
        self._describe_cadence = Cadence(describe_cadence_s, clock=self._clock)
        self._resolve = resolve_endpoints
        self._poll_metrics = True
        self._poll_describes = True
        self._describes: dict[tuple[Any, ...], Any] = {}
        #: Gauge series → {bucket start (epoch s): value}, and the end of the last fetch that filled it.
        self._series: dict[tuple[Any, ...], dict[float, float]] = {}
        self._series_end: dict[tuple[Any, ...], float] = {}
        self._cached: SourceReading | None = None
        self._metrics_at: float | None = None
        self._fleet = fleet
        self._profiles = dict(profiles or {})
        self._default_profile = default_profile
        self._credentials = dict(credentials or {})
        self._endpoints = dict(endpoint_urls or {})
        self._timeout_s = timeout_s
        self._zone = hosted_zone if hosted_zone.endswith(".") else hosted_zone + "."
        self._config = Config(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s if read_timeout_s is not None else timeout_s,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=20,
        )
        self._regions = {r.id: r.cloud_regions[Cloud.AWS] for r in fleet.regions.values()
                         if Cloud.AWS in r.cloud_regions}
        self._eks: dict[str, list[ClusterSpec]] = {}
        for c in sorted(fleet.clusters.values(), key=lambda c: c.name):
            if c.kind is ClusterKind.EKS:
                self._eks.setdefault(c.region, []).append(c)
        self._lock = threading.Lock()
        self._sessions: dict[str | None, boto3.Session] = {}
        self._clients: dict[tuple[str | None, str, str], Any] = {}
        self._retries = _RetryWatch()
        self._zone_id: str | None = None

    @classmethod
    def from_endpoints(cls, fleet: Fleet, endpoints: Any, *, timeout_s: float = 5.0,
                       name: str = SOURCE_NAME, metrics_cadence_s: float = 0.0,
                       describe_cadence_s: float = 0.0, clock: Callable[[], float] | None = None,
                       resolve_endpoints: Callable[[], Any] | None = None) -> AwsSource:
        """Build the source for the sandbox's :class:`~opsconsole.sandbox.aws.AwsCloud` endpoints."""
        settings: Mapping[str, str] = endpoints.settings
        credentials = {k: settings[k] for k in ("aws_access_key_id", "aws_secret_access_key",
                                                  "aws_session_token") if k in settings}
        return cls(fleet, credentials=credentials, endpoint_urls=_endpoint_urls(endpoints),
                   timeout_s=timeout_s, hosted_zone=settings.get("hosted_zone", HOSTED_ZONE), name=name,
                   metrics_cadence_s=metrics_cadence_s, describe_cadence_s=describe_cadence_s, clock=clock,
                   resolve_endpoints=resolve_endpoints)

    # -- cadence, endpoints ---------------------------------------------------------------------

    def touch(self, kinds: Any = None) -> None:
        """Something changed (a run ended): describes — and metrics — are asked again at the next read."""
        self._describe_cadence.invalidate()
        self._metrics_cadence.invalidate()

    invalidate = touch

    def _reresolve(self) -> None:
        """Re-read where the far side listens; rebuild the clients if it moved."""
        if self._resolve is None:
            return
        try:
            endpoints = self._resolve()
        except Exception:  # a resolver that cannot say keeps the endpoints we have
            return
        if endpoints is None:
            return
        urls = _endpoint_urls(endpoints)
        if urls != self._endpoints:
            with self._lock:
                self._endpoints = urls
                self._clients.clear()
                self._sessions.clear()
                self._zone_id = None
            self._describes.clear()

    # -- plumbing -------------------------------------------------------------------------------

    def _profile(self, region_id: str | None) -> str | None:
        if region_id is None:
            return self._default_profile
        return self._profiles.get(region_id, self._default_profile)

    def _profile_text(self, region_id: str | None) -> str:
        if self._credentials:
            return "explicit credentials (sandbox)"
        profile = self._profile(region_id)
        return f"profile {profile!r}" if profile else "the default credential chain"

    def _endpoint(self, service: str) -> str | None:
        return self._endpoints.get(service, self._endpoints.get("*"))

    def _client(self, service: str, aws_region: str, region_id: str | None) -> Any:
        """A client of ``service`` (built once per profile, service and region)."""
        profile = self._profile(region_id)
        key = (profile, service, aws_region)
        with self._lock:  # boto3 Sessions are not thread-safe: create clients under a lock
            client = self._clients.get(key)
            if client is None:
                session = self._sessions.get(profile)
                if session is None:
                    if self._credentials:
                        session = boto3.Session(**self._credentials)
                    else:
                        session = boto3.Session(profile_name=profile)
                    self._sessions[profile] = session
                client = session.client(service, region_name=aws_region,
                                        endpoint_url=self._endpoint(service), config=self._config)
                client.meta.events.register("needs-retry", self._note_retry)
                self._clients[key] = client
            return client

    def _note_retry(self, response: Any = None, event_name: str = "", attempts: int = 0,
                    **_: Any) -> None:
        if response is None:
            return
        parsed = response[1] if isinstance(response, tuple) and len(response) > 1 else None
        code = parsed.get("Error", {}).get("Code") if isinstance(parsed, dict) else None
        if code in THROTTLE_ERRORS:
            self._retries.codes.append(str(code))
            # The throttled attempt was a call too (the final one is counted by _call).
            METER.count(self.name, event_name.rsplit(".", 1)[-1] or "unknown", units=0, throttled=True)

    # -- read -----------------------------------------------------------------------------------

    def read(self) -> SourceReading:
        """Between polls, what the source holds (no call); else poll what is due (see the module docstring).

        Raises:
            SourceError: authentication / permission failure (names profile and region), or no part
                could be read at all (names the endpoint / reason).
        """
        now = self._clock()
        metrics_due = self._metrics_cadence.due(now)
        describes_due = self._describe_cadence.due(now)
        if self._cached is not None and not metrics_due and not describes_due:
            return self._cached
        self._reresolve()
        self._poll_metrics = metrics_due or self._metrics_at is None
        self._poll_describes = describes_due or self._cached is None
        try:
            reading = self._read_now()
        except Exception:
            self._metrics_cadence.failed()
            self._describe_cadence.failed()
            raise
        if self._poll_metrics:
            self._metrics_at = now
            (self._metrics_cadence.done if reading.complete else self._metrics_cadence.partial)(now)
        if self._poll_describes:
            (self._describe_cadence.done if reading.complete else self._describe_cadence.partial)(now)
        assert self._metrics_at is not None
        reading = dataclasses.replace(reading, as_of=datetime.fromtimestamp(self._metrics_at, UTC))
        self._cached = reading
        return reading

    def _read_now(self) -> SourceReading:
        """Read every region concurrently; returns within ``timeout_s``."""
        deadline = time.monotonic() + self._timeout_s
        tasks: dict[str, Callable[[], _Outcome]] = {"route53": self._read_dns}
        for rid in self._fleet.regions:
            tasks[rid] = lambda rid=rid: self._read_region(rid)  # type: ignore[misc]
        outcomes: dict[str, _Outcome] = {}
        threads: list[threading.Thread] = []
        for label, fn in tasks.items():
            box = _Outcome()
            outcomes[label] = box
            t = threading.Thread(target=self._run, args=(label, fn, box), name=f"aws-read-{label}",
                                 daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        records: list[FleetRecord] = []
        problems: list[str] = []
        notes: list[str] = []
        errors: list[str] = []
        for label, box in outcomes.items():
            if box.auth is not None:
                raise SourceError(box.auth, title="AWS credentials refused")
            if not box.done:
                problems.append(f"{label}: no answer within {self._timeout_s:g} s")
                errors.append(f"{label}: no answer within {self._timeout_s:g} s")
                continue
            if box.error is not None:
                problems.append(box.error)
                errors.append(box.error)
                continue
            records.extend(box.records)
            problems.extend(box.problems)
            notes.extend(box.notes)
        health = outcomes["route53"].health
        for i, rec in enumerate(records):
            if isinstance(rec, RegionTraffic):
                known = rec.region in health
                records[i] = dataclasses.replace(
                    rec, health_check_ok=health.get(rec.region, False),
                    extra={**rec.extra, "health_check_known": known},
                )
        if len(errors) == len(outcomes):
            first = errors[0]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise SourceError(f"AWS could not be read: {first}{more}")
        return SourceReading(records=tuple(records), problems=tuple(problems), notes=tuple(notes))

    def _run(self, label: str, fn: Callable[[], _Outcome], box: _Outcome) -> None:
        self._retries.codes = []
        try:
            result = fn()
            box.records, box.problems, box.health = result.records, result.problems, result.health
        except _AuthFailure as exc:
            box.auth = str(exc)
        except Exception as exc:
            box.error = f"{label}: {exc}"
        throttled = list(self._retries.codes)
        if throttled:
            box.notes.append(
                f"{label}: throttled by AWS ({throttled[0]}), backed off and retried {len(throttled)} time(s)"
            )
        box.done = True

    def _call(self, region_id: str | None, aws_region: str, service: str, op: str, **kwargs: Any) -> Any:
        """One API call with errors translated (auth → _AuthFailure, others → RuntimeError text).

        Describe-style operations are answered from the describe cache between describe polls; every
        call that goes out is counted in METER.
        """
        cache_key: tuple[Any, ...] | None = None
        if op in DESCRIBE_OPS:
            cache_key = (region_id, aws_region, service, op, repr(sorted(kwargs.items())))
            if not self._poll_describes and cache_key in self._describes:
                return self._describes[cache_key]
        client = self._client(service, aws_region, region_id)
        operation = client.meta.method_to_api_mapping.get(op, op)
        units = len(kwargs.get("MetricDataQueries", ())) or 1
        try:
            result = getattr(client, op)(**kwargs)
            METER.count(self.name, operation, units=units)
            if cache_key is not None:
                self._describes[cache_key] = result
            return result
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            message = str(exc.response.get("Error", {}).get("Message", ""))
            METER.count(self.name, operation, units=units, error=True, throttled=code in THROTTLE_ERRORS)
            if code in AUTH_ERRORS:
                raise _AuthFailure(
                    f"AWS refused the credentials of {self._profile_text(region_id)} in {aws_region} "
                    f"({service} {op}): {code}: {message}"
                ) from None
            if code in THROTTLE_ERRORS:
                raise RuntimeError(f"throttled by {service} ({code}) after 3 attempts with backoff") from None
            raise RuntimeError(f"{service} {op} failed: {code}: {message}") from None
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            METER.count(self.name, operation, units=0, error=True)
            raise RuntimeError(f"cannot connect to the {service} endpoint {self._url_of(client)}: {exc}") \
                from None
        except ReadTimeoutError:
            METER.count(self.name, operation, units=units, error=True)
            raise RuntimeError(f"{service} endpoint {self._url_of(client)} did not answer in time") from None
        except ResponseParserError as exc:
            METER.count(self.name, operation, units=units, error=True)
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RuntimeError(f"malformed answer from {service} at {self._url_of(client)}: {first}") \
                from None
        except (NoCredentialsError, ProfileNotFound) as exc:
            raise _AuthFailure(
                f"no usable AWS credentials for {self._profile_text(region_id)} in {aws_region}: {exc}"
            ) from None
        except BotoCoreError as exc:
            raise RuntimeError(f"{service} {op} failed at {self._url_of(client)}: {exc}") from None
        except (UnicodeDecodeError, ValueError) as exc:  # an undecodable body the parser did not wrap
            raise RuntimeError(f"malformed answer from {service} at {self._url_of(client)}: {exc}") from None

    @staticmethod
    def _url_of(client: Any) -> str:
        return str(client.meta.endpoint_url)

    # -- CloudWatch -----------------------------------------------------------------------------

    def _metrics(
        self, region_id: str | None, aws_region: str, queries: list[_Query]
    ) -> dict[str, float | None]:
        """Newest value per query id. A query is (id, namespace, metric, dims, stat, period, window_s).

        Gauges (period < window) keep a window of datapoints per series and ask only from the bucket
        after the newest complete one held; sums over their whole window (period == window) are asked
        whole. Between metric polls nothing is asked: the values come from what is held.
        """
        now = self._clock()
        end = datetime.fromtimestamp(now, UTC) + timedelta(seconds=1)
        end_s = end.timestamp()
        out: dict[str, float | None] = {}
        by_start: dict[float, list[dict[str, Any]]] = {}
        keys: dict[str, tuple[Any, ...]] = {}
        for qid, ns, metric, dims, stat, period, window in queries:
            key = (aws_region, ns, metric, tuple(sorted(dims.items())), stat, period, window)
            keys[qid] = key
            out[qid] = self._held_value(key, end_s)
            if not self._poll_metrics and key in self._series:
                continue
            by_start.setdefault(self._start_of(key, end_s), []).append({
                "Id": qid,
                "MetricStat": {
                    "Metric": {"Namespace": ns, "MetricName": metric,
                               "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]},
                    "Period": period, "Stat": stat,
                },
                "ReturnData": True,
            })
        batches = [(start_s, mdq[i:i + MAX_METRICS_PER_CALL]) for start_s, mdq in by_start.items()
                   for i in range(0, len(mdq), MAX_METRICS_PER_CALL)]
        for start_s, mdq in batches:
            kwargs: dict[str, Any] = {"MetricDataQueries": mdq,
                                      "StartTime": datetime.fromtimestamp(start_s, UTC),
                                      "EndTime": end, "ScanBy": "TimestampDescending"}
            fresh: dict[str, dict[float, float]] = {q["Id"]: {} for q in mdq}
            while True:
                page = self._call(region_id, aws_region, "cloudwatch", "get_metric_data", **kwargs)
                if not isinstance(page.get("MetricDataResults"), list):
                    # botocore turns an unparsable JSON body into {"message": <body>}: not data.
                    url = self._url_of(self._client("cloudwatch", aws_region, region_id))
                    raise RuntimeError(f"malformed answer from cloudwatch at {url}: no MetricDataResults")
                for res in page.get("MetricDataResults", []):
                    values = res.get("Values") or []
                    stamps = res.get("Timestamps") or []
                    points = fresh.setdefault(res["Id"], {})
                    for i, value in enumerate(values):
                        ts = stamps[i].timestamp() if i < len(stamps) else end_s - i
                        points.setdefault(ts, float(value))
                token = page.get("NextToken")
                if not token:
                    break
                kwargs["NextToken"] = token
            for qid, points in fresh.items():
                key = keys[qid]
                period, window = key[5], key[6]
                if period < window:
                    held = {ts: v for ts, v in self._series.get(key, {}).items()
                            if ts >= end_s - window - period and ts < start_s}
                    held.update(points)
                else:
                    held = dict(points)  # a window sum is asked whole: replace what was held
                self._series[key] = held
                self._series_end[key] = end_s
                out[qid] = self._held_value(key, end_s)
        return out

    def _start_of(self, key: tuple[Any, ...], end_s: float) -> float:
        """Where a series' next request starts: its window, or (a gauge) after its newest complete bucket."""
        period, window = key[5], key[6]
        start_s: float = end_s - window
        if period < window:
            held = self._series.get(key, {})
            fetched_end = self._series_end.get(key, 0.0)
            complete = [ts for ts in held if ts + period <= fetched_end]
            if complete:
                start_s = max(start_s, max(complete) + period)
            start_s = math.floor(start_s / period) * period
        return start_s

    def _held_value(self, key: tuple[Any, ...], end_s: float) -> float | None:
        """The newest datapoint held for a series, if it is inside the series' window."""
        held = self._series.get(key)
        if not held:
            return None
        window, period = key[6], key[5]
        newest = max(held)
        if newest < end_s - window - period:
            return None
        return held[newest]

    # -- per region -----------------------------------------------------------------------------

    def _read_region(self, rid: str) -> _Outcome:
        spec = self._fleet.regions[rid]
        out = _Outcome()
        cr = self._regions.get(rid)
        if cr is None:
            out.problems.append(f"{rid}: no AWS cloud region in the inventory")
            return out
        lb = {"LoadBalancer": load_balancer_dimension(rid)}
        queries: list[_Query] = [
            ("p95", "AWS/ApplicationELB", "TargetResponseTime", lb, "p95", 60, 300),
            ("p99", "AWS/ApplicationELB", "TargetResponseTime", lb, "p99", 60, 300),
            ("avg", "AWS/ApplicationELB", "TargetResponseTime", lb, "Average", 60, 300),
            ("req5", "AWS/ApplicationELB", "RequestCount", lb, "Sum", 300, 300),
            ("err5", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", lb, "Sum", 300, 300),
            ("req1h", "AWS/ApplicationELB", "RequestCount", lb, "Sum", 3600, 3600),
            ("err1h", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", lb, "Sum", 3600, 3600),
            ("users", "Voltage/Platform", "ActiveUsers", {"Region": rid}, "Maximum", 60, 300),
            ("hit", "AWS/ElastiCache", "CacheHitRate", {"CacheClusterId": f"redis-{rid}-001"}, "Average",
             60, 300),
        ]
        workloads = self._workload_queries(rid, cr, out)
        queries += workloads.get(cr, ([], []))[0]
        aws_db = spec.database.cloud is Cloud.AWS
        if aws_db:
            db = {"DBInstanceIdentifier": f"pg-{rid}"}
            queries += [
                ("lag", "AWS/RDS", "ReplicaLag", db, "Maximum", 60, 300),
                ("qp95", "Voltage/Platform", "DbQueryLatency", db, "p95", 60, 300),
                ("tps", "Voltage/Platform", "DbTransactionsPerSecond", db, "Average", 60, 300),
            ]
        m = self._metrics(rid, cr, queries)
        now = datetime.now(UTC)
        if m["p95"] is None or m["req5"] is None:
            out.problems.append(f"{rid}: no recent ALB metrics in CloudWatch")
        else:
            req5, err5 = m["req5"] or 0.0, m["err5"] or 0.0
            req1h, err1h = m["req1h"] or 0.0, m["err1h"] or 0.0
            out.records.append(RegionTraffic(
                source=self.name, observed_at=now, region=rid,
                rps=req5 / 300.0,
                avg_latency_ms=(m["avg"] or 0.0) * 1000.0,
                p95_ms=(m["p95"] or 0.0) * 1000.0,
                p99_ms=(m["p99"] or 0.0) * 1000.0,
                error_rate=min(1.0, err5 / req5) if req5 > 0 else 0.0,
                error_rate_1h=min(1.0, err1h / req1h) if req1h > 0 else 0.0,
                concurrent_users=round(m["users"] or 0.0),
                health_check_ok=False,  # filled in from Route53's health checks by read()
                extra={"load_balancer": lb["LoadBalancer"], "aws_region": cr},
            ))
        out.records.extend(self._read_cache(rid, cr, m["hit"], now, out))
        if aws_db:
            out.records.extend(self._read_database(rid, cr, m, now, out))
        out.records.extend(self._read_node_groups(rid, now))
        for wcr, (wqueries, targets) in workloads.items():
            values = m if wcr == cr else self._metrics(rid, wcr, wqueries)
            out.records.extend(self._workload_records(rid, wcr, targets, values, now))
        return out

    # -- EKS workloads behind the AWS Load Balancer Controller's target groups ------------------------

    def _workload_queries(
        self, rid: str, cr: str, out: _Outcome
    ) -> dict[str, tuple[list[_Query], list[tuple[ClusterSpec, str, dict[str, str] | None]]]]:
        """Per AWS region of the region's EKS clusters: the target groups' queries and (cluster, service,
        dimensions or None) per workload of the clusters' environments, in order (query ids ``w<i>…``).

        A failed discovery leaves the workloads out and says so in ``problems`` (the region's other
        records still count); refused credentials end the read as everywhere else.
        """
        by_region: dict[str, list[ClusterSpec]] = {}
        for c in self._eks.get(rid, []):
            by_region.setdefault(c.cloud_region, []).append(c)
        result: dict[str, tuple[list[_Query], list[tuple[ClusterSpec, str, dict[str, str] | None]]]] = {}
        for wcr, clusters in by_region.items():
            try:
                found = self._target_groups(rid, wcr, clusters)
            except RuntimeError as exc:
                out.problems.append(f"{rid}: EKS target groups in {wcr} could not be listed: {exc}")
                continue
            queries: list[_Query] = []
            targets: list[tuple[ClusterSpec, str, dict[str, str] | None]] = []
            for c in clusters:
                for svc in sorted(s.name for s in self._fleet.services_in(c.environment)):
                    dims = found.get((c.name, svc))
                    i = len(targets)
                    targets.append((c, svc, dims))
                    if dims is None:
                        continue
                    alb = "AWS/ApplicationELB"
                    queries += [
                        (f"w{i}p95", alb, "TargetResponseTime", dims, "p95", 60, 300),
                        (f"w{i}req", alb, "RequestCount", dims, "Sum", 300, 300),
                        (f"w{i}err", alb, "HTTPCode_Target_5XX_Count", dims, "Sum", 300, 300),
                    ]
            result[wcr] = (queries, targets)
        return result

    def _target_groups(
        self, rid: str, cr: str, clusters: list[ClusterSpec]
    ) -> dict[tuple[str, str], dict[str, str]]:
        """(cluster, service) → ``{"LoadBalancer": …, "TargetGroup": …}`` of the target groups the AWS Load
        Balancer Controller of ``clusters`` created, found by its tags (see the module docstring)."""
        services = {c.name: {s.name for s in self._fleet.services_in(c.environment)} for c in clusters}
        kwargs: dict[str, Any] = {
            "ResourceTypeFilters": ["elasticloadbalancing:loadbalancer", "elasticloadbalancing:targetgroup"],
            "TagFilters": [{"Key": TAG_CLUSTER, "Values": sorted(services)}],
            "ResourcesPerPage": 100,
        }
        balancers: dict[tuple[str, str], str] = {}  # (cluster, stack) → load balancer ARN
        groups: list[tuple[str, dict[str, str]]] = []
        while True:
            page = self._call(rid, cr, "resourcegroupstaggingapi", "get_resources", **kwargs)
            for item in page.get("ResourceTagMappingList", []):
                arn = str(item.get("ResourceARN", ""))
                tags = {str(t["Key"]): str(t.get("Value", "")) for t in item.get("Tags", [])}
                if ":loadbalancer/app/" in arn:
                    balancers.setdefault((tags.get(TAG_CLUSTER, ""), tags.get(TAG_STACK, "")), arn)
                elif ":targetgroup/" in arn:
                    groups.append((arn, tags))
            if not page.get("PaginationToken"):
                break
            kwargs["PaginationToken"] = page["PaginationToken"]
        found: dict[tuple[str, str], dict[str, str]] = {}
        for arn, tags in sorted(groups):
            cluster = tags.get(TAG_CLUSTER, "")
            lb = balancers.get((cluster, tags.get(TAG_STACK, "")))
            svc = _service_of(tags.get(TAG_RESOURCE, ""), K8S_NAMESPACE, services.get(cluster, set()))
            if lb is None or svc is None:
                continue
            found.setdefault((cluster, svc), {"LoadBalancer": arn_dimension(lb),
                                              "TargetGroup": arn_dimension(arn)})
        return found

    def _workload_records(
        self, rid: str, cr: str, targets: list[tuple[ClusterSpec, str, dict[str, str] | None]],
        m: Mapping[str, float | None], now: datetime,
    ) -> list[FleetRecord]:
        records: list[FleetRecord] = []
        for i, (c, svc, dims) in enumerate(targets):
            req, err, p95 = m.get(f"w{i}req"), m.get(f"w{i}err"), m.get(f"w{i}p95")
            rps = None if req is None else req / 300.0
            busy = req is not None and req > 0
            records.append(WorkloadMetrics(
                source=self.name, observed_at=now, cluster=c.name, region=rid, service=svc,
                p95_ms=p95 * 1000.0 if busy and p95 is not None else None,
                error_rate=min(1.0, (err or 0.0) / req) if busy and req is not None else None,
                rps=rps,
                extra={"aws_region": cr, "load_balancer": (dims or {}).get("LoadBalancer"),
                       "target_group": (dims or {}).get("TargetGroup"), "window_s": 300},
            ))
        return records

    def _read_cache(self, rid: str, cr: str, hit: float | None, now: datetime,
                    out: _Outcome) -> list[FleetRecord]:
        try:
            groups = self._call(rid, cr, "elasticache", "describe_replication_groups",
                                ReplicationGroupId=f"redis-{rid}")["ReplicationGroups"]
        except RuntimeError as exc:
            if "ReplicationGroupNotFound" in str(exc):
                out.problems.append(f"{rid}: ElastiCache group redis-{rid} not found")
                return []
            raise
        if not groups:
            return []
        g = groups[0]
        nodes = len(g.get("MemberClusters", []))
        if hit is None:
            out.problems.append(f"{rid}: no CacheHitRate for redis-{rid}")
        return [CacheState(
            source=self.name, observed_at=now, region=rid, nodes=nodes,
            healthy_nodes=nodes if g.get("Status") == "available" else 0,
            hit_ratio=round((hit or 0.0) / 100.0, 4),
            extra={"status": g.get("Status"), "node_type": g.get("CacheNodeType")},
        )]

    def _read_database(self, rid: str, cr: str, m: Mapping[str, float | None], now: datetime,
                       out: _Outcome) -> list[FleetRecord]:
        name = f"pg-{rid}"
        instances: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = self._call(rid, cr, "rds", "describe_db_instances", **kwargs)
            instances.extend(page.get("DBInstances", []))
            if not page.get("Marker"):
                break
            kwargs["Marker"] = page["Marker"]
        main = next((i for i in instances if i.get("DBInstanceIdentifier") == name), None)
        if main is None:
            out.problems.append(f"{rid}: RDS instance {name} not found")
            return []
        source = main.get("ReadReplicaSourceDBInstanceIdentifier")
        replicates_from: str | None = None
        if source:
            match = re.search(r"(?:^|:)pg-([a-z0-9-]+)$", str(source))
            replicates_from = match.group(1) if match else str(source)
        local = [i for i in instances
                 if re.fullmatch(rf"{re.escape(name)}-r\d+", str(i.get("DBInstanceIdentifier", "")))]
        available = main.get("DBInstanceStatus") == "available"
        return [DatabaseState(
            source=self.name, observed_at=now, region=rid,
            role=DbRole.READ_REPLICA if source else DbRole.WRITE_PRIMARY,
            replicates_from=replicates_from,
            read_replicas=len(local),
            replica_lag_s=round(m.get("lag") or 0.0, 3),
            query_p95_ms=round(m.get("qp95") or 0.0, 3) if available else 0.0,
            tps=(m.get("tps") or 0.0) if available else 0.0,
            available=available,
            storage_tb=float(main.get("AllocatedStorage", 0)) / _GIB_PER_TB,
            extra={"status": main.get("DBInstanceStatus"), "engine": main.get("Engine"),
                   "instance_class": main.get("DBInstanceClass"), **_backup_retention(main)},
        )]

    def _read_node_groups(self, rid: str, now: datetime) -> list[FleetRecord]:
        records: list[FleetRecord] = []
        by_region: dict[str, list[ClusterSpec]] = {}
        for c in self._eks.get(rid, []):
            by_region.setdefault(c.cloud_region, []).append(c)
        for cr, clusters in by_region.items():
            names = [f"{c.name}-ng" for c in clusters]
            groups: dict[str, dict[str, Any]] = {}
            kwargs: dict[str, Any] = {"AutoScalingGroupNames": names}
            while True:
                page = self._call(rid, cr, "autoscaling", "describe_auto_scaling_groups", **kwargs)
                for g in page.get("AutoScalingGroups", []):
                    groups[g["AutoScalingGroupName"]] = g
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
            for c in clusters:
                g = groups.get(f"{c.name}-ng")
                if g is None:
                    continue
                in_service = sum(1 for i in g.get("Instances", []) if i.get("LifecycleState") == "InService")
                dist = (g.get("MixedInstancesPolicy") or {}).get("InstancesDistribution") or {}
                base = int(dist.get("OnDemandBaseCapacity", in_service))
                od_pct = float(dist.get("OnDemandPercentageAboveBaseCapacity", 100))
                rest = max(0, in_service - base)
                spot = int(rest * (100.0 - od_pct) / 100.0 + 0.5)
                records.append(NodeGroupState(
                    source=self.name, observed_at=now, cluster=c.name, region=rid, cloud=Cloud.AWS,
                    name=f"{c.name}-ng", desired=int(g["DesiredCapacity"]), min=int(g["MinSize"]),
                    max=int(g["MaxSize"]), in_service=in_service, spot=spot, on_demand=in_service - spot,
                    extra={"aws_region": cr, "on_demand_base": base, "on_demand_pct_above_base": od_pct},
                ))
        return records

    # -- Route53 (global) -------------------------------------------------------------------------

    def _read_health(self) -> dict[str, bool]:
        """Region → its health check is healthy, from ``AWS/Route53 HealthCheckStatus`` (us-east-1).

        Health checks are matched to regions by their FQDN ``health.<region>.<zone>``; GetHealthCheckStatus
        answers per checker and needs one call per check, the CloudWatch metric is one call for all.
        """
        checks: dict[str, str] = {}
        kwargs: dict[str, Any] = {}
        pattern = re.compile(rf"health\.([a-z0-9-]+)\.{re.escape(self._zone.rstrip('.'))}\.?")
        while True:
            page = self._call(None, ROUTE53_METRICS_REGION, "route53", "list_health_checks", **kwargs)
            for hc in page.get("HealthChecks", []):
                fqdn = str(hc.get("HealthCheckConfig", {}).get("FullyQualifiedDomainName", ""))
                match = pattern.fullmatch(fqdn)
                if match:
                    checks[match.group(1)] = str(hc["Id"])
            if not page.get("IsTruncated"):
                break
            kwargs["Marker"] = page["NextMarker"]
        if not checks:
            return {}
        queries = [(f"hc{i}", "AWS/Route53", "HealthCheckStatus", {"HealthCheckId": hc_id}, "Minimum", 60,
                    300)
                   for i, hc_id in enumerate(checks.values())]
        values = self._metrics(None, ROUTE53_METRICS_REGION, queries)
        return {rid: (values[f"hc{i}"] or 0.0) >= 1.0 for i, rid in enumerate(checks)
                if values[f"hc{i}"] is not None}

    def _read_dns(self) -> _Outcome:
        out = _Outcome()
        if self._zone_id is None:
            zones = self._call(None, ROUTE53_METRICS_REGION, "route53", "list_hosted_zones_by_name",
                               DNSName=self._zone, MaxItems="1")["HostedZones"]
            if not zones or zones[0]["Name"] != self._zone:
                raise RuntimeError(f"Route53 hosted zone {self._zone} not found")
            self._zone_id = str(zones[0]["Id"]).rsplit("/", 1)[-1]
        weights: dict[str, dict[str, int]] = {}
        kwargs: dict[str, Any] = {"HostedZoneId": self._zone_id}
        pattern = re.compile(rf"api\.([a-z0-9-]+)\.{re.escape(self._zone)}")
        while True:
            page = self._call(None, ROUTE53_METRICS_REGION, "route53", "list_resource_record_sets", **kwargs)
            for rrs in page.get("ResourceRecordSets", []):
                match = pattern.fullmatch(str(rrs.get("Name", "")))
                if match and "SetIdentifier" in rrs and "Weight" in rrs:
                    weights.setdefault(match.group(1), {})[str(rrs["SetIdentifier"])] = int(rrs["Weight"])
            if not page.get("IsTruncated"):
                break
            kwargs.update(StartRecordName=page["NextRecordName"], StartRecordType=page["NextRecordType"])
            if page.get("NextRecordIdentifier"):
                kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]
        out.health = self._read_health()
        now = datetime.now(UTC)
        for rid, spec in self._fleet.regions.items():
            w = {t: v for t, v in sorted(weights.get(rid, {}).items()) if v > 0}
            if not w:
                out.problems.append(f"route53: no weighted records for api.{rid}.{self._zone}")
                continue
            out.records.append(DnsRecordSet(
                source=self.name, observed_at=now, region=rid, routing=spec.traffic.routing, weights=w,
                extra={"total": sum(w.values()), "zone_id": self._zone_id,
                       "record": f"api.{rid}.{self._zone}"},
            ))
        return out
