"""The sandbox AWS account's names: account id, hosted zone, dummy credentials, resource naming.

Why this file exists: the CloudWatch endpoint, the moto front and the emulator all name the same
resources; the names live once, here. Import them from :mod:`opsconsole.sandbox.aws`.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Mapping
from typing import Any

from moto.autoscaling.models import autoscaling_backends
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.eks.models import eks_backends
from moto.elasticache.models import elasticache_backends
from moto.elbv2.models import elbv2_backends
from moto.rds.models import rds_backends
from moto.route53.models import route53_backends

ACCOUNT_ID = DEFAULT_ACCOUNT_ID
HOSTED_ZONE = "voltage.internal."
#: AWS publishes Route53 health check metrics in us-east-1 only.
ROUTE53_METRICS_REGION = "us-east-1"
CW_TARGET_PREFIX = "GraniteServiceVersion20100801"
#: Rolling history kept per metric series (so 1 h windows work).
HISTORY_S = 70 * 60
#: Gauges keep at most one point per this many seconds (the newest publish wins).
GAUGE_RESOLUTION_S = 60.0
#: A publish stamps its datapoints this many seconds before it runs, as CloudWatch's own datapoints are
#: older than the moment they become readable. Stamped at the publish itself, the newest point could lie
#: past the end of a query fixed just before that publish (on a loaded machine, seconds pass between
#: the two); a fresh local cloud has no older gauge point and the 5-minute sums are one rewritten point,
#: so the region read "no recent ALB metrics in CloudWatch" though the world had them.
INGESTION_DELAY_S = 15.0
#: Sandbox credentials: not secrets, they only satisfy SigV4 signing.
SANDBOX_CREDENTIALS = {
    # Distinctive dummies: the run engine redacts secret-looking values wherever they appear, so a
    # common word here would blank it out of every message.
    "aws_access_key_id": "SANDBOXACCESSKEYID",
    "aws_secret_access_key": "sandbox-secret-access-key",
    "aws_session_token": "sandbox-session-token",
}
_SEED_AMI = "ami-12c6146b"
#: The Kubernetes namespace of the fleet's services (the kube emulator's ``NAMESPACE``).
K8S_NAMESPACE = "voltage"
#: The IngressGroup (``alb.ingress.kubernetes.io/group.name``) under which the AWS Load Balancer
#: Controller of each EKS cluster puts every service's Ingress: one ALB per cluster.
INGRESS_GROUP = "voltage"
#: The port of every service behind the ALB (the target group's port).
SERVICE_PORT = 80
#: Tags the AWS Load Balancer Controller puts on the target groups it creates for an Ingress.
TAG_CLUSTER = "elbv2.k8s.aws/cluster"
TAG_STACK = "ingress.k8s.aws/stack"
TAG_RESOURCE = "ingress.k8s.aws/resource"
_GIB_PER_TB = 1024
_RDS_ARN = "arn:aws:rds:{region}:{account}:db:{name}"
#: moto's backends this module seeds and edits in-process (the server in this process serves them).
_BACKENDS: dict[str, object] = {
    "autoscaling": autoscaling_backends,
    "ec2": ec2_backends,
    "eks": eks_backends,
    "elasticache": elasticache_backends,
    "elbv2": elbv2_backends,
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


def _controller_hash(*parts: str) -> str:
    """The 10 hex digits the AWS Load Balancer Controller appends to the names it makes up."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:10]


def _name_part(text: str, limit: int) -> str:
    """A name fragment as the controller cuts it (``limit`` characters), without a dangling ``-``."""
    return re.sub(r"[^a-z0-9-]", "", text.lower())[:limit].strip("-")


def eks_load_balancer_name(cluster: str) -> str:
    """The ALB the controller of ``cluster`` creates for the IngressGroup: ``k8s-<group>-<hash>``."""
    return f"k8s-{_name_part(INGRESS_GROUP, 17)}-{_controller_hash(cluster, INGRESS_GROUP)}"


def eks_target_group_name(cluster: str, service: str, namespace: str = K8S_NAMESPACE) -> str:
    """A service's target group as the controller names it: ``k8s-<ns:8>-<svc:8>-<hash:10>`` (≤ 32)."""
    digest = _controller_hash(cluster, namespace, service, str(SERVICE_PORT), "HTTP", "ip")
    return f"k8s-{_name_part(namespace, 8)}-{_name_part(service, 8)}-{digest}"


def eks_ingress_resource(service: str, namespace: str = K8S_NAMESPACE) -> str:
    """The ``ingress.k8s.aws/resource`` tag of a service's target group: ``<ns>/<ingress>-<svc>:<port>``.

    Each service has its own Ingress, named after it, in the cluster's IngressGroup.
    """
    return f"{namespace}/{service}-{service}:{SERVICE_PORT}"


def arn_dimension(arn: str) -> str:
    """CloudWatch's dimension value of an ELBv2 ARN: ``app/<name>/<id>`` or ``targetgroup/<name>/<id>``."""
    return arn.split(":loadbalancer/", 1)[-1] if ":loadbalancer/" in arn else arn.rsplit(":", 1)[-1]
