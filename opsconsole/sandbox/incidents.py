"""Incidents the sandbox world can be made to suffer, and what each one does at a given tick.

Why this module exists: drills, demos and tests need to break the simulated fleet on purpose (a region
outage for a failover drill, a traffic spike for an autoscaling check...). Keeping the incident kinds and
their *effects* here, as pure functions of ``(incidents, tick)``, keeps :mod:`opsconsole.sandbox.world`
about dynamics and makes every effect deterministic: nothing here has state or randomness of its own.

How to use it: the world owns the list of :class:`Incident` records (``World.trigger_incident`` /
``World.clear_incident``); on every tick it calls :func:`effects_at` and reads the resulting
:class:`IncidentEffects`. Names given by users are parsed with :func:`parse_kind`, which raises
:class:`~opsconsole.core.errors.UsageError` listing the valid kinds.

Kinds (all time in *sim* time, all scoped to one region):

``region_outage``
    The region is down: its health check fails, every request it receives fails, its clusters are
    unreachable and its database is unavailable. Traffic of record sets whose routing policy is
    ``FAILOVER`` moves to the down region's failover partner by itself; other policies keep sending
    traffic there (and failing) until someone changes the DNS weights.
``latency_spike``
    Adds 250–400 ms (drawn once per incident from the world's seed) to the region's p95 latencies.
``replica_lag_runaway``
    Replication lag of the region's read replica (or, when the region is a write primary, of every
    replica replicating from it) grows by 30 s per sim minute while the incident lasts, and recovers at
    300 s per sim minute afterwards.
``node_pool_loss``
    One prod cluster of the region (the largest by capacity weight, or a named one) loses 60 % of its
    nodes at once. This is a one-off state change applied by the world when the incident starts; the
    cluster autoscaler then rebuilds within bounds.
``traffic_spike``
    Demand originating in the region is multiplied by 10.
``bad_deploy``
    A new version of one workload (:data:`BAD_DEPLOY_SERVICE` in every prod cluster of the region) fails
    at start-up: the rollout's first :data:`CRASH_LOOP_PODS` surge pods crash and restart with the
    kubelet's back-off (:func:`crash_loop_at`: 10 s doubling to 5 min), so they sit in
    ``CrashLoopBackOff`` with a growing ``restartCount`` while the old pods keep serving. The world's
    figures do not change (the rollout is stalled, not serving); the Kubernetes API emulator shows the
    pods, their logs (start-up, stack trace, exit 1) and their events (``BackOff``, ``Unhealthy``)
    (:mod:`opsconsole.sandbox.kube.crashloop`). Ending the incident rolls the deployment back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from opsconsole.core.errors import UsageError

__all__ = [
    "BAD_DEPLOY_SERVICE",
    "CRASH_LOOP_PODS",
    "CRASH_RUN_S",
    "DEFAULT_DURATION_S",
    "LAG_GROWTH_S_PER_S",
    "LAG_RECOVERY_S_PER_S",
    "LATENCY_SPIKE_MS",
    "NODE_POOL_LOSS_FRACTION",
    "TRAFFIC_SPIKE_FACTOR",
    "CrashLoop",
    "Incident",
    "IncidentEffects",
    "IncidentKind",
    "bad_deploy_service",
    "crash_loop_at",
    "effects_at",
    "lingering_ticks",
    "parse_kind",
]

#: Default duration of an incident, in sim seconds.
DEFAULT_DURATION_S = 30 * 60
#: ``replica_lag_runaway``: lag added per sim second while active (30 s per sim minute).
LAG_GROWTH_S_PER_S = 0.5
#: ``replica_lag_runaway``: lag removed per sim second once over (300 s per sim minute).
LAG_RECOVERY_S_PER_S = 5.0
#: ``node_pool_loss``: fraction of the cluster's nodes lost at once.
NODE_POOL_LOSS_FRACTION = 0.6
#: ``traffic_spike``: demand multiplier.
TRAFFIC_SPIKE_FACTOR = 10.0
#: ``latency_spike``: range of the added p95 latency, in ms.
LATENCY_SPIKE_MS = (250.0, 400.0)
#: ``bad_deploy``: the workload whose new version crashes (the first service in name order when the
#: cluster's environment does not run it).
BAD_DEPLOY_SERVICE = "checkout"
#: ``bad_deploy``: how many pods of the new version crash-loop per cluster (the rollout's surge).
CRASH_LOOP_PODS = 2
#: ``bad_deploy``: how long (sim seconds) one run of the crashing container lasts before it exits.
CRASH_RUN_S = 3
#: The kubelet's crash-loop back-off: first delay, cap (seconds).
_BACKOFF_FIRST_S = 10
_BACKOFF_CAP_S = 300


class IncidentKind(StrEnum):
    REGION_OUTAGE = "region_outage"
    LATENCY_SPIKE = "latency_spike"
    REPLICA_LAG_RUNAWAY = "replica_lag_runaway"
    NODE_POOL_LOSS = "node_pool_loss"
    TRAFFIC_SPIKE = "traffic_spike"
    BAD_DEPLOY = "bad_deploy"


def parse_kind(name: str | IncidentKind) -> IncidentKind:
    """The kind called ``name``; raises :class:`UsageError` listing the valid names otherwise."""
    if isinstance(name, IncidentKind):
        return name
    try:
        return IncidentKind(name)
    except ValueError:
        valid = ", ".join(k.value for k in IncidentKind)
        raise UsageError(f"unknown incident kind {name!r}; valid kinds: {valid}") from None


@dataclass(frozen=True)
class Incident:
    """One incident, active on ticks ``start_tick <= tick < end_tick``.

    ``magnitude`` is kind-specific: the added p95 in ms for ``latency_spike``, the number of nodes
    lost for ``node_pool_loss``, 0 otherwise. ``cluster`` is set for ``node_pool_loss`` only.
    """

    id: str
    kind: IncidentKind
    region: str
    start_tick: int
    end_tick: int
    cluster: str | None = None
    magnitude: float = 0.0
    cleared: bool = False

    def active_at(self, tick: int) -> bool:
        return self.start_tick <= tick < self.end_tick

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "region": self.region,
            "start_tick": self.start_tick,
            "end_tick": self.end_tick,
            "cluster": self.cluster,
            "magnitude": self.magnitude,
            "cleared": self.cleared,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Incident:
        cluster = data["cluster"]
        return cls(
            id=str(data["id"]),
            kind=IncidentKind(data["kind"]),
            region=str(data["region"]),
            start_tick=int(data["start_tick"]),
            end_tick=int(data["end_tick"]),
            cluster=None if cluster is None else str(cluster),
            magnitude=float(data["magnitude"]),
            cleared=bool(data["cleared"]),
        )


@dataclass
class IncidentEffects:
    """What the incidents do to the world at one tick, by region."""

    #: Down regions → tick their outage started (earliest, when several overlap).
    down_since: dict[str, int] = field(default_factory=dict)
    #: Demand multiplier by region of origin (absent = 1).
    demand_factor: dict[str, float] = field(default_factory=dict)
    #: Added p95 latency, ms, by region (absent = 0).
    latency_add_ms: dict[str, float] = field(default_factory=dict)
    #: Extra replication lag, s, caused by ``replica_lag_runaway`` incidents on the region.
    lag_add_s: dict[str, float] = field(default_factory=dict)


def effects_at(incidents: Iterable[Incident], tick: int, tick_s: float) -> IncidentEffects:
    """The combined effects of ``incidents`` at ``tick`` (ticks are ``tick_s`` sim seconds long).

    Pure: depends only on its arguments. ``replica_lag_runaway`` still has an effect after it ended
    (the lag takes a while to recover); the other kinds stop at ``end_tick``.
    """
    eff = IncidentEffects()
    for inc in incidents:
        if inc.kind is IncidentKind.REPLICA_LAG_RUNAWAY:
            if tick < inc.start_tick:
                continue
            if tick < inc.end_tick:
                lag = LAG_GROWTH_S_PER_S * (tick - inc.start_tick) * tick_s
            else:
                peak = LAG_GROWTH_S_PER_S * (inc.end_tick - inc.start_tick) * tick_s
                lag = peak - LAG_RECOVERY_S_PER_S * (tick - inc.end_tick) * tick_s
            if lag > 0:
                eff.lag_add_s[inc.region] = eff.lag_add_s.get(inc.region, 0.0) + lag
            continue
        if not inc.active_at(tick):
            continue
        if inc.kind is IncidentKind.REGION_OUTAGE:
            prev = eff.down_since.get(inc.region)
            eff.down_since[inc.region] = inc.start_tick if prev is None else min(prev, inc.start_tick)
        elif inc.kind is IncidentKind.TRAFFIC_SPIKE:
            eff.demand_factor[inc.region] = eff.demand_factor.get(inc.region, 1.0) * TRAFFIC_SPIKE_FACTOR
        elif inc.kind is IncidentKind.LATENCY_SPIKE:
            eff.latency_add_ms[inc.region] = eff.latency_add_ms.get(inc.region, 0.0) + inc.magnitude
        # NODE_POOL_LOSS has no per-tick effect: the world removes the nodes when it starts.
        # BAD_DEPLOY has none on the figures either: only the Kubernetes API shows it (crash_loop_at).
    return eff


def lingering_ticks(inc: Incident, tick_s: float) -> int:
    """Ticks after ``end_tick`` during which ``inc`` still has an effect (for pruning old incidents)."""
    if inc.kind is IncidentKind.REPLICA_LAG_RUNAWAY:
        peak = LAG_GROWTH_S_PER_S * (inc.end_tick - inc.start_tick) * tick_s
        return int(peak / (LAG_RECOVERY_S_PER_S * tick_s)) + 1
    return 0


@dataclass(frozen=True)
class CrashLoop:
    """Where a crash-looping container is ``elapsed`` sim seconds after its pod started (all times in
    seconds since the pod started).

    ``restarts`` is how many runs have ended (the ``restartCount``); ``running`` says whether run
    number ``restarts`` is up now (started at ``started_s``), else the container waits in
    ``CrashLoopBackOff`` until ``next_start_s``. ``last_started_s`` / ``last_finished_s`` are the last
    ended run's (``None`` before the first crash).
    """

    restarts: int
    running: bool
    started_s: float
    next_start_s: float
    last_started_s: float | None
    last_finished_s: float | None


def crash_loop_at(elapsed: float) -> CrashLoop:
    """The state of a container that crashes :data:`CRASH_RUN_S` s after every start, restarted with
    the kubelet's back-off (10 s, doubling, capped at 5 min). Pure and deterministic."""
    elapsed = max(0.0, float(elapsed))
    start = 0.0
    restarts = 0
    last: tuple[float, float] | None = None
    while True:
        finish = start + CRASH_RUN_S
        if elapsed < finish:
            return CrashLoop(restarts, True, start, start, *(last or (None, None)))
        backoff = min(_BACKOFF_CAP_S, _BACKOFF_FIRST_S * 2 ** min(restarts, 10))
        restarts += 1
        last = (start, finish)
        if elapsed < finish + backoff:
            return CrashLoop(restarts, False, start, finish + backoff, start, finish)
        start = finish + backoff


def bad_deploy_service(services: Iterable[str]) -> str | None:
    """The workload a ``bad_deploy`` hits among a cluster's ``services`` (None: it runs none)."""
    names = sorted(services)
    if BAD_DEPLOY_SERVICE in names:
        return BAD_DEPLOY_SERVICE
    return names[0] if names else None
