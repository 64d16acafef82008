"""The public test kit of opsconsole: a fake clock, a healthy fleet state, snapshot builders, and a
throwaway PostgreSQL (:mod:`opsconsole.testing.postgres`).

Why it exists: almost every test of the core (policy, actions, faces, the bot) needs "the fleet as it
looks on a good day" and then one thing broken. Building that by hand in each test is long and drifts
from the model; building it here, from the inventory, keeps every test on the same nominal state and
makes a test read as the one tweak it is about::

    fleet = load_inventory()
    snap = snapshot_of(healthy_records(fleet))
    snap = replace_record(snap, "traffic/us-east-1", p95_ms=450.0)
    assert evaluate(fleet, snap)[0].kind is FindingKind.LATENCY_P95

:func:`healthy_records` is built so that :func:`opsconsole.core.fleet.findings.evaluate` finds *nothing* on it
(a unit test holds it to that): p95 well under target, replica lag about 1 s, replicas mid-range, nodes
inside their bounds, provider and cost mixes on plan, every region's DNS pointing at itself.

It is a public module (plugins and other packages may use it), so it must not import pytest.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, overload

from opsconsole.core.fleet.engine import Snapshot, SourceHealth, SourceStatus
from opsconsole.core.fleet.model import (
    CacheState,
    ClusterSpec,
    ClusterState,
    DatabaseState,
    DnsRecordSet,
    Environment,
    Fleet,
    FleetRecord,
    Geography,
    IntRange,
    RegionTraffic,
    WorkloadState,
)

__all__ = [
    "DEFAULT_NOW",
    "FakeClock",
    "drop_record",
    "healthy_records",
    "replace_record",
    "snapshot_of",
]

#: The instant fake clocks and builders start at unless told otherwise (a Monday, midday UTC).
DEFAULT_NOW = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)

R = TypeVar("R", bound=FleetRecord)


class FakeClock:
    """A :class:`~opsconsole.core.clock.Clock` that only moves when told to."""

    def __init__(self, start: datetime = DEFAULT_NOW) -> None:
        self._now = _utc(start)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        """Move forward (never back) by ``seconds``; returns the new now."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back: advance({seconds})")
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, at: datetime) -> None:
        """Jump to ``at`` (a timezone-aware instant, either way)."""
        self._now = _utc(at)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"a naive datetime has no place in opsconsole: {at!r}")
    return at.astimezone(UTC)


# --------------------------------------------------------------------------------------------------
# A healthy fleet
# --------------------------------------------------------------------------------------------------

#: Nominal figures, as fractions of the targets they are judged against.
_P95_OF_TARGET = 0.5  # region and workload p95: half the API target
_DB_P95_OF_TARGET = 0.4
_BURN_RATE = 0.2  # error rate as a multiple of the error budget: comfortably inside it
_REPLICA_LAG_S = 1.0
_CPU = 0.5
_CACHE_HIT_RATIO = 0.95
#: Where, between the lowest and the highest feasible scale, prod node counts sit (0 = low end, which
#: keeps every region within the seed's 50 nodes per region; eu-west-1 sits at 43).
_NODE_FILL = 0.0


def healthy_records(fleet: Fleet, at: datetime = DEFAULT_NOW, source: str = "test") -> list[FleetRecord]:
    """A nominal, healthy observed state of every region, cluster and workload of ``fleet``.

    Args:
        fleet: The inventory (the seed one, or a synthetic one built in a test).
        at: Stamped as every record's ``observed_at``.
        source: Stamped as every record's ``source``.

    Returns:
        Per region a :class:`RegionTraffic`, :class:`DnsRecordSet` (all weight to itself),
        :class:`DatabaseState` and :class:`CacheState`; per cluster a :class:`ClusterState`; per cluster
        and service deployed to the cluster's environment a :class:`WorkloadState`. Ordered by region,
        then cluster, then service, so that the output is deterministic.
    """
    at = _utc(at)
    targets = fleet.targets
    records: list[FleetRecord] = []
    budget = targets.error_budget
    for region in fleet.regions.values():
        share = region.traffic.demand_share
        records.append(
            RegionTraffic(
                source=source,
                observed_at=at,
                region=region.id,
                rps=targets.api_rps * share,
                avg_latency_ms=min(region.traffic.base_latency_ms, targets.regional_avg_latency_ms * 0.8),
                p95_ms=targets.api_p95_ms * _P95_OF_TARGET,
                p99_ms=targets.api_p95_ms * 0.8,
                error_rate=budget * _BURN_RATE,
                error_rate_1h=budget * _BURN_RATE,
                concurrent_users=int(targets.concurrent_users * share),
                health_check_ok=True,
            )
        )
        records.append(
            DnsRecordSet(
                source=source,
                observed_at=at,
                region=region.id,
                routing=region.traffic.routing,
                weights={region.id: 100},
            )
        )
        db = region.database
        records.append(
            DatabaseState(
                source=source,
                observed_at=at,
                region=region.id,
                role=db.role,
                replicates_from=db.replicates_from,
                read_replicas=fleet.bounds.read_replicas.clamp(db.read_replicas),
                replica_lag_s=_REPLICA_LAG_S,
                query_p95_ms=targets.db_query_p95_ms * _DB_P95_OF_TARGET,
                tps=targets.db_tps * share,
                available=True,
                storage_tb=float(db.storage_tb),
            )
        )
        cache_nodes = fleet.bounds.redis_nodes.clamp(region.cache.nodes)
        records.append(
            CacheState(
                source=source,
                observed_at=at,
                region=region.id,
                nodes=cache_nodes,
                healthy_nodes=cache_nodes,
                hit_ratio=_CACHE_HIT_RATIO,
            )
        )

    nodes = _nominal_nodes(fleet)
    cost = _cost_split(fleet, nodes)
    for cluster in sorted(fleet.clusters.values(), key=lambda c: (c.region, c.name)):
        n = nodes[cluster.name]
        reserved, spot, on_demand = cost[cluster.name]
        records.append(
            ClusterState(
                source=source,
                observed_at=at,
                cluster=cluster.name,
                region=cluster.region,
                cloud=cluster.cloud,
                environment=cluster.environment,
                nodes=n,
                ready_nodes=n,
                nodes_min=cluster.nodes.min,
                nodes_max=cluster.nodes.max,
                reserved_nodes=reserved,
                spot_nodes=spot,
                on_demand_nodes=on_demand,
            )
        )
        for service in sorted(fleet.services_in(cluster.environment), key=lambda s: s.name):
            hpa = _hpa_range(service.hpa, fleet.bounds.hpa_pods)
            desired = _nominal_desired(hpa)
            records.append(
                WorkloadState(
                    source=source,
                    observed_at=at,
                    cluster=cluster.name,
                    region=cluster.region,
                    service=service.name,
                    environment=cluster.environment,
                    desired=desired,
                    ready=desired,
                    hpa_min=hpa.min,
                    hpa_max=hpa.max,
                    cpu_utilisation=_CPU,
                    p95_ms=targets.api_p95_ms * _P95_OF_TARGET * 0.6,
                    error_rate=budget * _BURN_RATE,
                    rps=desired * service.rps_per_pod * _CPU,
                )
            )
    return records


def _nominal_desired(hpa: IntRange) -> int:
    """A calm workload's replicas: a tenth of the way up its HPA range, so that the nominal fleet has the
    seed's headroom (10x growth by its HPA maxima and node maxima, 1.5x bursts in every region)."""
    return hpa.min + (hpa.max - hpa.min) // 20


def _hpa_range(service: IntRange, bound: IntRange) -> IntRange:
    low = bound.clamp(service.min)
    return IntRange(low, max(low, bound.clamp(service.max)))


def _nominal_nodes(fleet: Fleet) -> dict[str, int]:
    """Node counts inside every cluster's bounds (and below its max) that put each geography on plan.

    Policy measures a cloud's share as pod slots (nodes x pods per node). The inventory's
    ``capacity_weight`` already reproduces the plan, so prod clusters get nodes proportional to
    ``capacity_weight / pods_per_node``, with one scale factor per geography chosen inside the range
    where every cluster of the geography stays within ``[nodes.min, nodes.max - 1]``. Non-prod
    clusters sit mid-range.
    """
    nodes: dict[str, int] = {}
    by_geo: dict[Geography, list[ClusterSpec]] = defaultdict(list)
    for c in fleet.clusters.values():
        region = fleet.regions.get(c.region)
        if c.environment is Environment.PROD and region is not None and c.capacity_weight > 0:
            by_geo[region.geography].append(c)
        else:
            nodes[c.name] = _mid_nodes(c)
    for clusters in by_geo.values():
        low = max(c.nodes.min * c.pods_per_node / c.capacity_weight for c in clusters)
        high = min(max(c.nodes.min, c.nodes.max - 1) * c.pods_per_node / c.capacity_weight for c in clusters)
        scale = low + (high - low) * _NODE_FILL if high >= low else (low + high) / 2
        for c in clusters:
            wanted = round(scale * c.capacity_weight / c.pods_per_node)
            nodes[c.name] = max(c.nodes.min, min(max(c.nodes.min, c.nodes.max - 1), wanted))
    return nodes


def _mid_nodes(c: ClusterSpec) -> int:
    return (c.nodes.min + c.nodes.max) // 2


def _cost_split(fleet: Fleet, nodes: dict[str, int]) -> dict[str, tuple[int, int, int]]:
    """Reserved / spot / on-demand nodes per cluster, on the fleet's cost-mix target in total.

    Rounded cumulatively across clusters so that rounding errors do not pile up on small clusters.
    """
    mix = fleet.targets.cost_mix
    reserved_share = mix.get("reserved", 0.0)
    spot_share = mix.get("spot", 0.0)
    split: dict[str, tuple[int, int, int]] = {}
    seen = reserved_seen = spot_seen = 0
    for name in sorted(nodes):
        n = nodes[name]
        seen += n
        reserved = max(0, min(n, round(seen * reserved_share) - reserved_seen))
        spot = max(0, min(n - reserved, round(seen * spot_share) - spot_seen))
        reserved_seen += reserved
        spot_seen += spot
        split[name] = (reserved, spot, n - reserved - spot)
    return split


# --------------------------------------------------------------------------------------------------
# Snapshots
# --------------------------------------------------------------------------------------------------


def snapshot_of(
    records: Iterable[FleetRecord],
    *,
    at: datetime | None = None,
    sources: Sequence[SourceHealth] | None = None,
) -> Snapshot:
    """A :class:`Snapshot` of ``records``, as a refresh with every source OK would give it.

    Args:
        records: The records; keys must be unique.
        at: ``taken_at``; by default the latest ``observed_at`` of the records (or :data:`DEFAULT_NOW`).
        sources: The source health to report; by default one OK :class:`SourceHealth` per distinct
            ``source`` of the records, aged from that source's oldest record.

    Raises:
        ValueError: two records share a key.
    """
    by_key: dict[str, FleetRecord] = {}
    for record in records:
        if record.key in by_key:
            raise ValueError(f"two records with key {record.key}")
        by_key[record.key] = record
    taken_at = (
        _utc(at) if at is not None else max((r.observed_at for r in by_key.values()), default=DEFAULT_NOW)
    )
    if sources is None:
        oldest: dict[str, datetime] = {}
        newest: dict[str, datetime] = {}
        counts: dict[str, int] = defaultdict(int)
        for r in by_key.values():
            counts[r.source] += 1
            oldest[r.source] = min(oldest.get(r.source, r.observed_at), r.observed_at)
            newest[r.source] = max(newest.get(r.source, r.observed_at), r.observed_at)
        sources = [
            SourceHealth(
                name=name,
                status=SourceStatus.OK,
                age_s=max(0.0, (taken_at - oldest[name]).total_seconds()),
                error=None,
                last_success=newest[name],
                duration_s=0.0,
                records=counts[name],
            )
            for name in sorted(counts)
        ]
    return Snapshot(taken_at=taken_at, records=by_key, sources=tuple(sources))


@overload
def replace_record(target: Snapshot, key: str, **changes: Any) -> Snapshot: ...
@overload
def replace_record(target: Sequence[FleetRecord], key: str, **changes: Any) -> list[FleetRecord]: ...
def replace_record(
    target: Snapshot | Sequence[FleetRecord], key: str, **changes: Any
) -> Snapshot | list[FleetRecord]:
    """A copy of a snapshot (or a record list) with the record ``key`` changed by ``dataclasses.replace``.

    A snapshot keeps its ``taken_at`` and source health. Raises ``KeyError`` if there is no such record
    and ``TypeError`` if a field name is wrong, so that a typo cannot make a test pass vacuously.
    """
    if isinstance(target, Snapshot):
        record = target.records.get(key)
        if record is None:
            raise KeyError(key)
        records = dict(target.records)
        records[key] = dataclasses.replace(record, **changes)
        return Snapshot(taken_at=target.taken_at, records=records, sources=target.sources)
    out = list(target)
    for i, record in enumerate(out):
        if record.key == key:
            out[i] = dataclasses.replace(record, **changes)
            return out
    raise KeyError(key)


@overload
def drop_record(target: Snapshot, key: str) -> Snapshot: ...
@overload
def drop_record(target: Sequence[FleetRecord], key: str) -> list[FleetRecord]: ...
def drop_record(target: Snapshot | Sequence[FleetRecord], key: str) -> Snapshot | list[FleetRecord]:
    """A copy without the record ``key`` (``KeyError`` if there is none), e.g. for a region gone dark."""
    if isinstance(target, Snapshot):
        if key not in target.records:
            raise KeyError(key)
        records = {k: v for k, v in target.records.items() if k != key}
        return Snapshot(taken_at=target.taken_at, records=records, sources=target.sources)
    out = [r for r in target if r.key != key]
    if len(out) == len(target):
        raise KeyError(key)
    return out


def records_of(target: Snapshot | Sequence[FleetRecord], cls: type[R]) -> list[R]:
    """The records of one type, in key order, from a snapshot or a record list."""
    items = target.records.values() if isinstance(target, Snapshot) else target
    return sorted((r for r in items if isinstance(r, cls)), key=lambda r: r.key)
