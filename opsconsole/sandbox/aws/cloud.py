"""The AWS emulator (:class:`AwsCloud`): seeds moto from the fleet, publishes the world, collects writes.

Why this file exists: it is the :class:`~opsconsole.sandbox.emulator.Emulator` of AWS, tying the moto
front (:mod:`.moto_front`), the CloudWatch endpoint (:mod:`.cloudwatch`) and the metric store together.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from moto.ec2.models.amis import AMIS, Ami
from moto.eks.models import Cluster as EksCluster
from moto.eks.models import Nodegroup as EksNodegroup
from moto.moto_api._internal.models import moto_api_backend
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
    WorkloadState,
)
from opsconsole.sandbox.aws.cloudwatch import _CloudWatchServer
from opsconsole.sandbox.aws.metrics import MetricStore, _Point, series_key
from opsconsole.sandbox.aws.moto_front import _MotoServer
from opsconsole.sandbox.aws.naming import (
    _BACKENDS,
    _GIB_PER_TB,
    _RDS_ARN,
    _SEED_AMI,
    ACCOUNT_ID,
    HOSTED_ZONE,
    INGESTION_DELAY_S,
    INGRESS_GROUP,
    ROUTE53_METRICS_REGION,
    SANDBOX_CREDENTIALS,
    SERVICE_PORT,
    TAG_CLUSTER,
    TAG_RESOURCE,
    TAG_STACK,
    _replication_group_args,
    arn_dimension,
    cache_cluster_id,
    eks_ingress_resource,
    eks_load_balancer_name,
    eks_target_group_name,
    load_balancer_dimension,
    relative_weights,
)
from opsconsole.sandbox.emulator import Endpoints, Faults
from opsconsole.sandbox.world import World

log = logging.getLogger(__name__)

#: Days of point-in-time recovery the seed fleet's RDS automated backups keep (BackupRetentionPeriod).
SEED_BACKUP_RETENTION_DAYS = 30


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
        #: Fault injection (see the module docstring).
        self.faults = Faults("AWS", on_down=self._set_down)
        self.store = MetricStore()
        self._published = _Published()
        self._seen = _Seen()
        self._lock = threading.RLock()
        self._zone_id = ""
        self._health_checks: dict[str, str] = {}  # region → health check id
        #: (EKS cluster, service) → the CloudWatch dimensions of its target group (LoadBalancer, TargetGroup).
        self._target_groups: dict[tuple[str, str], dict[str, str]] = {}
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
            self._cw = _CloudWatchServer(self._cw_port, self.store, self.faults)
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

    def _set_down(self, down: bool) -> None:
        with self._lock:
            if down:
                self._stop_servers()
            else:
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
        self._target_groups.clear()
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
        # The Resource Groups Tagging API (awsJson1_1) finds the EKS target groups.
        calls.append(("tagging", region, "POST", "/", json.dumps({"ResourceTypeFilters": [
            "elasticloadbalancing:targetgroup"], "TagFilters": [{"Key": TAG_CLUSTER, "Values": ["-"]}]})))
        client = WerkzeugClient(self._moto.app)
        for service, cr, method, path, body in calls:
            headers = {"Authorization": f"AWS4-HMAC-SHA256 Credential=testing/20250101/{cr}/{service}/"
                                        "aws4_request, SignedHeaders=host, Signature=0"}
            if service == "tagging":
                headers["Content-Type"] = "application/x-amz-json-1.1"
                headers["X-Amz-Target"] = "ResourceGroupsTaggingAPI_20170126.GetResources"
            elif body is not None:
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
            self._seed_ingress(c, subnets)
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

    def _seed_ingress(self, c: ClusterSpec, subnets: list[str]) -> None:
        """What the AWS Load Balancer Controller of an EKS cluster makes of its services' Ingresses.

        One internet-facing ALB per cluster (the IngressGroup), an HTTP listener whose default action is
        a fixed 404, and per service of the cluster's environment an ``ip`` target group
        ``k8s-<ns>-<svc>-<hash>`` forwarded to by a path rule, tagged as the controller tags it
        (``elbv2.k8s.aws/cluster``, ``ingress.k8s.aws/stack``, ``ingress.k8s.aws/resource``).
        """
        elbv2 = self._backend("elbv2", c.cloud_region)
        vpc_id = self._backend("ec2", c.cloud_region).get_subnet(subnets[0]).vpc_id
        stack = [{"Key": TAG_CLUSTER, "Value": c.name}, {"Key": TAG_STACK, "Value": INGRESS_GROUP}]
        lb = elbv2.create_load_balancer(
            name=eks_load_balancer_name(c.name), security_groups=[], subnet_ids=subnets,
            scheme="internet-facing", loadbalancer_type="application", tags=list(stack),
        )
        listener = elbv2.create_listener(
            load_balancer_arn=lb.arn, protocol="HTTP", port=SERVICE_PORT, ssl_policy=None, certificate=None,
            actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404",
                                                                        "ContentType": "text/plain"}}],
        )
        services = sorted(s.name for s in self._fleet.services_in(c.environment))
        for priority, service in enumerate(services, start=1):
            tg = elbv2.create_target_group(
                eks_target_group_name(c.name, service), vpc_id=vpc_id, protocol="HTTP",
                port=str(SERVICE_PORT), target_type="ip", healthcheck_path="/healthz",
            )
            elbv2.add_tags([tg.arn], [*stack, {"Key": TAG_RESOURCE, "Value": eks_ingress_resource(service)}])
            elbv2.create_rule(
                listener_arn=listener.arn, priority=priority,
                conditions=[{"Field": "path-pattern", "Values": [f"/{service}/*"]}],
                actions=[{"Type": "forward", "TargetGroupArn": tg.arn}],
            )
            self._target_groups[(c.name, service)] = {
                "LoadBalancer": arn_dimension(lb.arn), "TargetGroup": arn_dimension(tg.arn),
            }

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
                # The seed fleet's automated backups (30 days of point-in-time recovery): a cloud fact,
                # not read from the targets, so a stricter target shows up as a finding. Read replicas
                # created from it copy it; a client's ModifyDBInstance changes it; publish never does.
                "backup_retention_period": SEED_BACKUP_RETENTION_DAYS,
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
            now = time.time() - INGESTION_DELAY_S  # the datapoints' stamp (see INGESTION_DELAY_S)
            records = world.observe()
            traffic = {r.region: r for r in records if isinstance(r, RegionTraffic)}
            databases = {r.region: r for r in records if isinstance(r, DatabaseState)}
            caches = {r.region: r for r in records if isinstance(r, CacheState)}
            for r in records:
                if isinstance(r, WorkloadState) and (r.cluster, r.service) in self._target_groups:
                    self._publish_workload(r, now)
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

    def _publish_workload(self, w: WorkloadState, now: float) -> None:
        """An EKS workload's target group: ``TargetResponseTime`` (p95), 5-min request and 5XX counts.

        Like the region's ALB: the latency gauge is a value/count histogram ``{p95/2: 94, p95: 1,
        1.3·p95: 5}`` (nearest rank 95 gives p95 back exactly; none while there are no requests, as ALB
        publishes none); ``RequestCount`` / ``HTTPCode_Target_5XX_Count`` are rewritten at each publish as
        one point holding the last 5 minutes (rps × 300 requests, error_rate of them failed).
        """
        spec = self._fleet.clusters.get(w.cluster)
        if spec is None:
            return
        cr = spec.cloud_region
        dims = self._target_groups[(w.cluster, w.service)]
        rps = max(0.0, float(w.rps or 0.0))
        err = min(1.0, max(0.0, float(w.error_rate or 0.0)))
        if rps > 0 and w.p95_ms is not None:
            p95 = w.p95_ms / 1000.0
            weight = max(1, round(rps))
            self.store.put_gauge(series_key(cr, "AWS/ApplicationELB", "TargetResponseTime", dims), now,
                                 [0.5 * p95, p95, 1.3 * p95], [94 * weight, 1 * weight, 5 * weight])
        r5 = rps * 300.0
        self.store.replace(series_key(cr, "AWS/ApplicationELB", "RequestCount", dims),
                           [_Point(now, [r5], [1])])
        self.store.replace(series_key(cr, "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", dims),
                           [_Point(now, [err * r5], [1])])

    def target_group_dimensions(self, cluster: str, service: str) -> dict[str, str] | None:
        """The CloudWatch dimensions (``LoadBalancer``, ``TargetGroup``) of an EKS service's target group."""
        dims = self._target_groups.get((cluster, service))
        return dict(dims) if dims is not None else None

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
            desired = int(group.desired_capacity or 0)
            if (lo, hi, desired) == tuple(published[:3]):
                continue
            if (lo, hi) != published[:2]:
                world_lo, _ = world.node_bounds(c.name)
                new_lo = world_lo if lo == published[0] else lo
                self._apply(
                    f"ASG {c.name}-ng bounds", partial(world.set_cluster_node_bounds, c.name, new_lo, hi)
                )
            if desired != published[2] and desired != world.nodes(c.name):
                # A desired capacity set by a client (scale.yml's nodes_desired): the node count now,
                # until the cluster autoscaler decides again.
                self._apply(f"ASG {c.name}-ng desired", partial(world.set_cluster_nodes, c.name, desired))
            self._published.asg.pop(c.name, None)

    def _collect_databases(self, world: World) -> None:
        """Apply clients' RDS changes: promotions first (a failback may promote its old primary back),
        then re-seeded replicas (demotions to a source that is by then a write primary), then counts."""
        demoted: list[tuple[str, str]] = []
        for rid in self._rds_regions:
            db = self._backend("rds", self._aws_regions[rid]).databases.get(f"pg-{rid}")
            role = self._published.db_role.get(rid)
            if db is None or role is None:
                continue
            if role[0] is DbRole.READ_REPLICA and not db.is_replica:
                # moto's promote only clears is_replica: finish it, then tell the world.
                self._relink(rid, None)
                self._apply(f"promote pg-{rid}", partial(world.promote_replica, rid))
                self._published.db_role.pop(rid, None)
            elif db.is_replica:
                # RDS has no demotion: a client re-seeds (deletes pg-<rid>, creates it again with
                # CreateDBInstanceReadReplica). A replica of another source than published is that.
                source = self._source_region(getattr(db, "source_db_instance_identifier", None))
                if source is not None and source != rid and (
                        role[0] is DbRole.WRITE_PRIMARY or role[1] != source):
                    demoted.append((rid, source))
        for rid, source in demoted:
            self._apply(f"demote pg-{rid} to a replica of pg-{source}",
                        partial(world.demote_to_replica, rid, source))
            self._published.db_role.pop(rid, None)
        for rid in self._rds_regions:
            if self._backend("rds", self._aws_regions[rid]).databases.get(f"pg-{rid}") is None:
                continue
            count = self._replica_count(rid)
            if rid in self._published.replicas and count != self._published.replicas[rid]:
                self._apply(f"read replicas of pg-{rid}", partial(world.set_read_replicas, rid, count))
                self._published.replicas.pop(rid, None)

    def _source_region(self, source_id: str | None) -> str | None:
        """The region id of a replication source (``pg-<rid>``, by name or ARN); None if not the fleet's."""
        if not source_id:
            return None
        match = re.match(r"^arn:aws:rds:[a-z0-9-]+:\d+:db:(.+)$", source_id)
        name = match.group(1) if match else source_id
        rid = name[3:] if name.startswith("pg-") else ""
        return rid if rid in self._fleet.regions else None

    def _collect_caches(self, world: World) -> None:
        for rid, cr in self._aws_regions.items():
            group = self._backend("elasticache", cr).replication_groups.get(f"redis-{rid}")
            if group is None or rid not in self._published.cache_nodes:
                continue
            nodes = len(group.member_clusters)
            if nodes != self._published.cache_nodes[rid]:
                self._apply(f"ElastiCache redis-{rid}", partial(world.set_cache_nodes, rid, nodes))
                self._published.cache_nodes.pop(rid, None)
