"""A synthetic fleet of any size, cloned from the seed fleet's shapes, for scale benchmarks."""

from __future__ import annotations

import dataclasses

from opsconsole.core.fleet.model import (
    Cloud,
    ClusterSpec,
    DatabaseSpec,
    DbRole,
    Environment,
    Fleet,
    RegionSpec,
    ServiceSpec,
    TrafficSpec,
)

CLOUDS = (Cloud.AWS, Cloud.GCP, Cloud.AZURE)


def synthetic_fleet(seed: Fleet, *, regions: int, clusters_per_region: int, services: int) -> Fleet:
    """``regions`` regions × ``clusters_per_region`` prod clusters × ``services`` services.

    Workloads = regions × clusters_per_region × services. Region shapes cycle through the seed's
    regions (so geographies, time zones and DB roles stay realistic); every third region of a
    geography is a write primary.
    """
    seed_regions = list(seed.regions.values())
    seed_services = list(seed.services.values())
    seed_cluster = next(iter(seed.clusters.values()))
    new_services = {}
    for i in range(services):
        base = seed_services[i % len(seed_services)]
        name = f"{base.name}-{i:03d}"
        new_services[name] = dataclasses.replace(
            base, name=name, traffic_share=base.traffic_share / max(1, services // len(seed_services)),
            environments=(Environment.PROD,),
        )
    ids = [f"r{i:03d}" for i in range(regions)]
    primaries: dict[str, str] = {}
    new_regions: dict[str, RegionSpec] = {}
    for i, region_id in enumerate(ids):
        base = seed_regions[i % len(seed_regions)]
        primary = primaries.setdefault(base.geography.value, region_id)
        role = DbRole.WRITE_PRIMARY if primary == region_id else DbRole.READ_REPLICA
        new_regions[region_id] = dataclasses.replace(
            base,
            id=region_id,
            name=f"{base.name} #{i}",
            failover_partner=ids[(i + 1) % regions],
            residency_zone="global",
            database=DatabaseSpec(cloud=base.database.cloud, role=role,
                                  replicates_from=None if role is DbRole.WRITE_PRIMARY else primary,
                                  read_replicas=2, storage_tb=10),
            traffic=TrafficSpec(base.traffic.routing, 1.0 / regions, base.traffic.base_latency_ms),
        )
    new_clusters: dict[str, ClusterSpec] = {}
    for region_id in ids:
        for j in range(clusters_per_region):
            cloud = CLOUDS[j % 3]
            name = f"k8s-{region_id}-{j}"
            new_clusters[name] = dataclasses.replace(
                seed_cluster, name=name, region=region_id, cloud=cloud, environment=Environment.PROD,
                capacity_weight=10.0,
            )
    return dataclasses.replace(
        seed, regions=new_regions, clusters=new_clusters, services=new_services,
        provider_plan={geo: dict(plan) for geo, plan in seed.provider_plan.items()},
    )


__all__ = ["ServiceSpec", "synthetic_fleet"]
