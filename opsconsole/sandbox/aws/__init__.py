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
per region (FQDN ``health.<region>.voltage.internal``). Per EKS cluster, in ELBv2, what the AWS Load
Balancer Controller makes of its services' Ingresses (one IngressGroup ``voltage``): an ALB
``k8s-voltage-<hash>``, an HTTP:80 listener (default: fixed 404) and per service of the cluster's
environment an ``ip`` target group ``k8s-<ns:8>-<svc:8>-<hash:10>`` behind a path rule, tagged as the
controller tags them (``elbv2.k8s.aws/cluster``, ``ingress.k8s.aws/stack``, ``ingress.k8s.aws/resource =
voltage/<svc>-<svc>:80``); readers find them with ELBv2 or the Resource Groups Tagging API (moto serves
both).

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
* per EKS workload (``LoadBalancer`` + ``TargetGroup`` of its target group, see
  :meth:`AwsCloud.target_group_dimensions`): ``TargetResponseTime`` as a ``{p95/2: 94, p95: 1, 1.3·p95: 5}``
  histogram (none while the workload has no requests), and ``RequestCount`` / ``HTTPCode_Target_5XX_Count``
  rewritten as one point holding the last 5 minutes (rps × 300, error_rate of them failed);
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

Faults (``AwsCloud.faults``, the sandbox's one :class:`~opsconsole.sandbox.emulator.Faults`): ``down``
closes both listening sockets (connection refused; clearing restarts them on the same ports, state
kept); ``slow`` delays every CloudWatch answer by ``seconds``; ``forbidden`` answers CloudWatch with 403
``AccessDenied`` (or ``code=``, e.g. ``ExpiredToken``); ``throttled`` answers ``ThrottlingException``;
``malformed`` answers 200 with a truncated body. A CloudWatch request's
:class:`~opsconsole.sandbox.emulator.FaultRequest` has the access key id it was signed with as
``client`` and the region as ``scope``: a test signing with its own key id
(``client_is(key_id)``) gets faults nobody else can use up.

Limits: moto keeps its state per process, so one :class:`AwsCloud` runs per process at a time
(``start`` resets moto's state). The EKS nodegroups' scaling config is seeded but not kept in sync; the
Auto Scaling group is the node group's truth.

The package, one concept per file: :mod:`.naming` (the account's names), :mod:`.cbor` (the CBOR
codec), :mod:`.metrics` (the metric store), :mod:`.cloudwatch` (the CloudWatch endpoint),
:mod:`.moto_front` (moto and its front) and :mod:`.cloud` (:class:`AwsCloud`, the emulator).
"""

from __future__ import annotations

from opsconsole.sandbox.aws.cloud import AwsCloud
from opsconsole.sandbox.aws.naming import (
    ACCOUNT_ID,
    CW_TARGET_PREFIX,
    HOSTED_ZONE,
    ROUTE53_METRICS_REGION,
    cache_cluster_id,
    load_balancer_dimension,
)

__all__ = [
    "ACCOUNT_ID",
    "CW_TARGET_PREFIX",
    "HOSTED_ZONE",
    "ROUTE53_METRICS_REGION",
    "AwsCloud",
    "cache_cluster_id",
    "load_balancer_dimension",
]
