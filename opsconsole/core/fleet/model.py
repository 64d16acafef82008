"""The domain model: what the fleet is (from the inventory) and what it looks like now (from sources).

Every other module speaks in these types. They are frozen dataclasses and ``str`` enums so that they
can be hashed, compared for change sets, serialised to JSON without adapters, and shared between
threads without locks. Cloud SDK objects never appear here: an adapter translates them into these
records at its boundary and puts anything provider-specific into ``extra``.

Two families live here:

* the *spec* types (``Fleet``, ``RegionSpec``, ``ClusterSpec``, ``ServiceSpec``, ``Targets``,
  ``Bounds``) describe the intended fleet and are built once by :mod:`opsconsole.core.fleet.inventory`;
* the *observed* types (``WorkloadState``, ``ClusterState``, ``DatabaseState``, ``CacheState``,
  ``RegionTraffic``, ``DnsRecordSet``) are what a :class:`~opsconsole.core.fleet.engine.FleetSource` returns,
  each stamped with the source that read it and when.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any


class Cloud(StrEnum):
    AWS = "aws"
    GCP = "gcp"
    AZURE = "azure"


class ClusterKind(StrEnum):
    EKS = "eks"
    GKE = "gke"
    AKS = "aks"


#: The managed Kubernetes offering of each cloud; the inventory must agree with it.
KIND_OF_CLOUD: dict[Cloud, ClusterKind] = {
    Cloud.AWS: ClusterKind.EKS,
    Cloud.GCP: ClusterKind.GKE,
    Cloud.AZURE: ClusterKind.AKS,
}


class Geography(StrEnum):
    AMERICAS = "americas"
    EMEA = "emea"
    APAC = "apac"


class RegionRole(StrEnum):
    PRIMARY_HUB = "primary_hub"
    SECONDARY_HUB = "secondary_hub"
    COVERAGE = "coverage"


class Environment(StrEnum):
    PROD = "prod"
    STAGING = "staging"
    DEV = "dev"


class Criticality(StrEnum):
    CRITICAL = "critical"
    IMPORTANT = "important"
    STANDARD = "standard"

    @property
    def rto_minutes(self) -> int:
        """Recovery time objective of the tier, from the architecture document."""
        return {"critical": 15, "important": 60, "standard": 240}[self.value]


class Consistency(StrEnum):
    STRONG = "strong"
    SESSION = "session"
    EVENTUAL = "eventual"


class RoutingPolicy(StrEnum):
    WEIGHTED = "weighted"
    LATENCY = "latency"
    GEO = "geo"
    FAILOVER = "failover"


class DbRole(StrEnum):
    WRITE_PRIMARY = "write_primary"
    READ_REPLICA = "read_replica"


class Health(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"
    UNKNOWN = "unknown"


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Higher is worse; use it to sort findings."""
        return {"critical": 4, "high": 3, "medium": 2, "low": 1}[self.value]


# --------------------------------------------------------------------------------------------------
# Spec: the fleet as the inventory describes it
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntRange:
    """An inclusive integer range, used for every scaling bound."""

    min: int
    max: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.min <= value <= self.max

    def clamp(self, value: int) -> int:
        return max(self.min, min(self.max, value))


@dataclass(frozen=True)
class Bounds:
    """Fleet-wide scaling bounds (the architecture document's limits)."""

    hpa_pods: IntRange
    cluster_nodes: IntRange
    read_replicas: IntRange
    redis_nodes: IntRange
    storage_tb: IntRange


@dataclass(frozen=True)
class Targets:
    """The performance, availability, throughput and cost targets every finding is judged against."""

    global_avg_latency_ms: float
    regional_avg_latency_ms: float
    api_p95_ms: float
    db_query_p95_ms: float
    availability_platform: float
    availability_db: float
    availability_cdn: float
    rpo_db_s: float
    api_rps: float
    db_tps: float
    concurrent_users: int
    cost_mix: dict[str, float]  # reserved / spot / on_demand, fractions summing to 1
    cost_mix_tolerance: float
    provider_mix_tolerance: float
    #: Point-in-time recovery window every database's automated backups must keep (days; the seed's
    #: 30-day PITR). Judged against the retention the clouds report (``DatabaseState.extra
    #: ["backup_retention_days"]``); the seed's daily / weekly backup cadence is how the managed
    #: databases' automated backups work and is not observed separately.
    backup_pitr_days: int = 30
    #: The load multiple every serving region must absorb now, by its HPA and node headroom (the seed's
    #: "auto-scaling to 150 % normal load").
    burst_headroom: float = 1.5
    #: The load multiple the whole fleet must absorb with what is provisioned (the seed's "10x traffic
    #: capacity: pre-provisioned resources").
    growth_headroom: float = 10.0

    @property
    def error_budget(self) -> float:
        """Fraction of requests allowed to fail (1 - platform availability)."""
        return 1.0 - self.availability_platform


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    criticality: Criticality
    consistency: Consistency
    environments: tuple[Environment, ...]
    hpa: IntRange
    #: Share of a region's API requests this service handles (the gateway sees them all).
    traffic_share: float
    #: Requests per second one pod serves at 100 % CPU.
    rps_per_pod: float
    #: Handles personal data that must stay in its residency zone (EU data in the EU).
    resident_data: bool


@dataclass(frozen=True)
class DatabaseSpec:
    #: The cloud whose managed PostgreSQL hosts the region's database (RDS, Cloud SQL, Azure Database).
    cloud: Cloud
    role: DbRole
    #: The write primary this region replicates from (``None`` for a write primary).
    replicates_from: str | None
    read_replicas: int
    storage_tb: int


@dataclass(frozen=True)
class CacheSpec:
    nodes: int


@dataclass(frozen=True)
class TrafficSpec:
    routing: RoutingPolicy
    #: Share of the global demand that originates in this region (fractions over regions sum to 1).
    demand_share: float
    base_latency_ms: float


@dataclass(frozen=True)
class RegionSpec:
    id: str
    name: str
    tier: int
    role: RegionRole
    geography: Geography
    timezone: str
    failover_partner: str
    residency_zone: str
    cloud_regions: dict[Cloud, str]
    database: DatabaseSpec
    cache: CacheSpec
    traffic: TrafficSpec


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    region: str
    cloud: Cloud
    kind: ClusterKind
    environment: Environment
    cloud_region: str
    capacity_weight: float
    nodes: IntRange
    instance_type: str
    pods_per_node: int
    #: Nodes covered by reserved capacity; nodes above it are spot or on-demand.
    reserved_nodes: int
    #: Fraction of the nodes above ``reserved_nodes`` that run on spot.
    spot_ratio: float


@dataclass(frozen=True)
class CloudAccounts:
    """Where the live fleet's APIs are and which identity reads them: names only, never secrets.

    Credentials themselves come from each SDK's standard chain (AWS profiles / roles, Application
    Default Credentials, ``DefaultAzureCredential``, the kubeconfig).
    """

    aws_default_profile: str | None = None
    #: Region id → AWS profile, where a region's account differs from the default.
    aws_profiles: dict[str, str] = field(default_factory=dict)
    gcp_project: str | None = None
    azure_subscription_id: str | None = None
    azure_workspace_id: str | None = None
    #: ``None``: the kubernetes client's default (``$KUBECONFIG`` or ``~/.kube/config``).
    kubeconfig: str | None = None
    #: Cluster name → kubeconfig context; a cluster not listed uses the context named like it.
    kube_contexts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fleet:
    """The whole intended fleet, validated.

    Built by :func:`opsconsole.core.fleet.inventory.load_inventory`."""

    source: Path
    regions: dict[str, RegionSpec]
    clusters: dict[str, ClusterSpec]
    services: dict[str, ServiceSpec]
    targets: Targets
    bounds: Bounds
    provider_plan: dict[Geography, dict[Cloud, float]]
    provider_plan_overall: dict[Cloud, float]
    cdn_split: dict[str, float]
    accounts: CloudAccounts = field(default_factory=CloudAccounts)

    def clusters_in(self, region: str, environment: Environment | None = None) -> list[ClusterSpec]:
        return [
            c
            for c in self.clusters.values()
            if c.region == region and (environment is None or c.environment is environment)
        ]

    def services_in(self, environment: Environment) -> list[ServiceSpec]:
        return [s for s in self.services.values() if environment in s.environments]

    @property
    def write_primaries(self) -> list[str]:
        return [r.id for r in self.regions.values() if r.database.role is DbRole.WRITE_PRIMARY]


# --------------------------------------------------------------------------------------------------
# Observed state: what sources return
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """Fields every observed record carries: which source read it, and when (UTC)."""

    source: str
    observed_at: datetime


@dataclass(frozen=True)
class WorkloadState(Observation):
    cluster: str
    region: str
    service: str
    environment: Environment
    desired: int
    ready: int
    hpa_min: int
    hpa_max: int
    cpu_utilisation: float  # 0..1 of requested CPU (the HPA's own measurement)
    #: Request figures of the workload. ``None`` when the source that reports the workload does not
    #: measure requests (the Kubernetes API does not); a cloud's monitoring then reports them as
    #: :class:`WorkloadMetrics` under their own key.
    p95_ms: float | None
    error_rate: float | None  # 0..1
    rps: float | None
    pending_pods: int = 0
    restarts: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"workload/{self.cluster}/{self.service}"


@dataclass(frozen=True)
class WorkloadMetrics(Observation):
    """Request and resource figures of one workload from a cloud's monitoring (Cloud Monitoring,
    Azure Monitor, CloudWatch Container Insights), next to the :class:`WorkloadState` that the
    Kubernetes API reports for the same workload."""

    cluster: str
    region: str
    service: str
    p95_ms: float | None
    error_rate: float | None
    rps: float | None
    cpu_utilisation: float | None = None
    memory_utilisation: float | None = None
    restarts: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"metrics/{self.cluster}/{self.service}"


@dataclass(frozen=True)
class NodeGroupState(Observation):
    """A cloud node group behind a cluster (an Auto Scaling group, a GKE node pool, an AKS agent pool)."""

    cluster: str
    region: str
    cloud: Cloud
    name: str
    desired: int
    min: int
    max: int
    in_service: int
    spot: int
    on_demand: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"nodegroup/{self.cluster}/{self.name}"


@dataclass(frozen=True)
class ClusterState(Observation):
    cluster: str
    region: str
    cloud: Cloud
    environment: Environment
    nodes: int
    ready_nodes: int
    nodes_min: int
    nodes_max: int
    reserved_nodes: int
    spot_nodes: int
    on_demand_nodes: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"cluster/{self.cluster}"


@dataclass(frozen=True)
class DatabaseState(Observation):
    region: str
    role: DbRole
    replicates_from: str | None
    read_replicas: int
    replica_lag_s: float  # worst lag of this region's replicas behind its write primary
    query_p95_ms: float
    tps: float
    available: bool
    storage_tb: float
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"database/{self.region}"


@dataclass(frozen=True)
class CacheState(Observation):
    region: str
    nodes: int
    healthy_nodes: int
    hit_ratio: float
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"cache/{self.region}"


@dataclass(frozen=True)
class RegionTraffic(Observation):
    """Front-door figures of one region (load balancer / gateway), for production traffic."""

    region: str
    rps: float
    avg_latency_ms: float
    p95_ms: float
    p99_ms: float
    error_rate: float  # over the last 5 minutes
    error_rate_1h: float  # over the last hour, for error-budget burn
    concurrent_users: int
    health_check_ok: bool
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"traffic/{self.region}"

    @property
    def availability(self) -> float:
        return 1.0 - self.error_rate_1h


@dataclass(frozen=True)
class DnsRecordSet(Observation):
    """The DNS record set that sends a region's users somewhere: target region → weight."""

    region: str
    routing: RoutingPolicy
    weights: dict[str, int]
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __hash__(self) -> int:
        return hash((self.region, self.routing, tuple(sorted(self.weights.items()))))

    @property
    def key(self) -> str:
        return f"dns/{self.region}"

    @property
    def total(self) -> int:
        return sum(self.weights.values())


FleetRecord = (
    WorkloadState
    | WorkloadMetrics
    | ClusterState
    | NodeGroupState
    | DatabaseState
    | CacheState
    | RegionTraffic
    | DnsRecordSet
)
