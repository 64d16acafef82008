"""The sandbox world: a deterministic, time-scalable simulation of the whole fleet.

Why this module exists: opsconsole must be usable (and testable, and rehearsable) with no cloud at all.
:class:`World` plays diurnal traffic, DNS routing and failover, HPA, the cluster autoscaler, latency,
errors, replica lag, Redis and incidents for every region, cluster and workload of a
:class:`~opsconsole.core.fleet.model.Fleet`, and reports them as the same observed records the real sources
return (:meth:`World.observe`). It is pure: no file I/O, no wall clock (persistence and the mapping from
wall time to sim time live in :mod:`opsconsole.sandbox.state`).

:class:`World` is the one public face; it composes one module per concept, each working on the same
plain :class:`~opsconsole.sandbox.world.entities.SimState`:

========================================  ===========================================================
:mod:`.ticks`          sim time in ticks, and the seeded noise (determinism)
:mod:`.entities`       the mutable state: regions, clusters, workloads, figures
:mod:`.dynamics`       the model: demand, DNS, HPA, autoscaler, latency, errors
:mod:`.desired`        what clients wrote: scale, bounds, DNS weights, promotion...
:mod:`.incident_ops`   starting and ending incidents (their effects:
                                          :mod:`~opsconsole.sandbox.incidents`)
:mod:`.observe`        the records the sim source and the emulators publish
:mod:`.snapshot`       the saved JSON layout (files and locks:
                                          :mod:`~opsconsole.sandbox.state`)
========================================  ===========================================================

How to use it::

    world = World(fleet, seed=42, start=datetime(2025, 1, 15, 12, tzinfo=UTC))
    world.advance(world.now + timedelta(minutes=10))
    world.trigger_incident("traffic_spike", "eu-west-1")
    world.advance_by(300)
    records = world.observe()
    data = world.to_dict()                    # JSON-serialisable; World.from_dict(fleet, data) restores it

Determinism. Sim time is cut into fixed ticks of :data:`TICK_S` seconds on absolute boundaries (tick
``k`` is the instant ``k * TICK_S`` s after the Unix epoch). :meth:`World.advance` steps tick by tick;
every random figure is a pure hash of ``(seed, tick, entity key)``, never a shared RNG stream. So the
state at sim time ``t`` depends only on the fleet, the seed, which changes/incidents were applied at
which sim times, and ``t`` — not on how often the world was advanced. One bounded exception: an advance
of more than :data:`CATCHUP_S` (1 h) jumps to ``t - 1 h`` and resets the dynamic state (replicas, nodes,
HPA / autoscaler windows, error windows) to its steady value for the load at that tick before stepping the
last hour. Every dynamic variable forgets its past within that hour under ordinary conditions, so the
result matches step-by-step advancing; it is always deterministic either way.

A change or an incident applied at sim time ``t`` takes effect from the tick containing ``t``: the
current tick's figures are re-evaluated at once (so ``observe()`` right after ``trigger_incident`` shows
it) while the scalers react from the next tick on.

Model (formulas in :mod:`opsconsole.sandbox.world.dynamics`):

* demand per region follows the local time of day (trough 0.3 at 04:00, peak 1.0 at 20:00) times its
  ``demand_share`` times a global peak chosen so that the fleet-wide sum peaks at 85 % of
  ``Targets.api_rps``, with ±5 % noise per tick;
* each region's DNS record set sends its users to target regions by integer weights summing to 100;
  a record set whose routing policy is ``FAILOVER`` sends the share of a down target to that target's
  failover partner by itself, other policies keep sending it to the down region, where it fails;
* each prod cluster serves its region's traffic by ``capacity_weight``; the HPA targets 70 % CPU, scales
  up at most ×2 (or +4 pods) per tick and down at most 10 % per tick after a 5 min stabilisation window;
  the cluster autoscaler adds at most 3 nodes per tick and removes 1 per tick after 10 min of lower need;
  pods that do not fit on the nodes are pending;
* non-prod clusters run their services at a small synthetic load; a stopped environment (or one stopped
  cluster of it: :meth:`World.set_cluster_stopped`) has 0 replicas and **0 nodes** (below the 1-node
  floor of the bounds, on purpose: that is what stopping is for) and comes back to the remembered sizes
  when started.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from opsconsole.core.errors import SandboxError
from opsconsole.core.fleet.model import Environment, Fleet, FleetRecord
from opsconsole.sandbox.incidents import DEFAULT_DURATION_S, Incident, IncidentKind
from opsconsole.sandbox.world import desired, dynamics, incident_ops, snapshot
from opsconsole.sandbox.world import observe as observation
from opsconsole.sandbox.world.dynamics import diurnal
from opsconsole.sandbox.world.entities import DNS_TOTAL, SimState, build_state
from opsconsole.sandbox.world.observe import SOURCE_NAME
from opsconsole.sandbox.world.snapshot import STATE_VERSION, fleet_fingerprint
from opsconsole.sandbox.world.ticks import CATCHUP_S, TICK_S, from_us, to_us

__all__ = [
    "CATCHUP_S",
    "DNS_TOTAL",
    "SOURCE_NAME",
    "STATE_VERSION",
    "TICK_S",
    "World",
    "diurnal",
    "fleet_fingerprint",
]


def _new_state(fleet: Fleet, seed: int, now_us: int) -> SimState:
    """The world's entities at their minimum sizes with the demand scale set (figures not yet evaluated)."""
    state = build_state(fleet, seed, now_us)
    state.global_peak = dynamics.global_peak(state)
    return state


class World:
    """The simulated fleet. See the module docstring for the model and the determinism contract.

    Args:
        fleet: the fleet to simulate (its regions, clusters and services fix the world's shape).
        seed: the noise seed; two worlds differ only by their seed and what was done to them.
        start: the initial sim time (timezone-aware); the world starts in its steady state there.

    Every mutating method validates all its arguments first and raises
    :class:`~opsconsole.core.errors.UsageError` (changing nothing) on a bad one.
    """

    def __init__(self, fleet: Fleet, *, seed: int = 42, start: datetime) -> None:
        self._s = _new_state(fleet, seed, to_us(start))
        dynamics.reset_steady(self._s, self._s.tick)

    # -- read-only views ------------------------------------------------------------------------

    @property
    def fleet(self) -> Fleet:
        return self._s.fleet

    @property
    def seed(self) -> int:
        return self._s.seed

    @property
    def now(self) -> datetime:
        """The current sim time (UTC)."""
        return from_us(self._s.now_us)

    @property
    def tick(self) -> int:
        """Index of the current tick (its start is ``tick * TICK_S`` s after the epoch)."""
        return self._s.tick

    @property
    def global_peak_rps(self) -> float:
        return self._s.global_peak

    @property
    def stopped_environments(self) -> frozenset[Environment]:
        """Non-prod environments whose every cluster is stopped."""
        return self._s.stopped_environments()

    @property
    def stopped_clusters(self) -> frozenset[str]:
        """Names of the stopped clusters (all non-prod)."""
        return frozenset(self._s.stopped)

    def is_stopped(self, cluster: str) -> bool:
        return self._s.cluster(cluster).spec.name in self._s.stopped

    def incidents(self, *, include_ended: bool = False) -> list[Incident]:
        """Incidents active now (or, with ``include_ended``, also those that ended in the last hour)."""
        if include_ended:
            return list(self._s.incidents)
        return incident_ops.active(self._s)

    def replicas(self, cluster: str, service: str) -> int:
        return self._s.workload(cluster, service).replicas

    def hpa_bounds(self, cluster: str, service: str) -> tuple[int, int]:
        wl = self._s.workload(cluster, service)
        return wl.hpa_min, wl.hpa_max

    def nodes(self, cluster: str) -> int:
        return self._s.cluster(cluster).nodes

    def node_bounds(self, cluster: str) -> tuple[int, int]:
        cl = self._s.cluster(cluster)
        return cl.nodes_min, cl.nodes_max

    def dns_weights(self, region: str) -> dict[str, int]:
        return dict(self._s.region(region).dns)

    def is_down(self, region: str) -> bool:
        self._s.region(region)
        return self._s.is_down(region)

    # -- time -----------------------------------------------------------------------------------

    def advance(self, to: datetime) -> None:
        """Move sim time forward to ``to``, stepping every tick boundary on the way.

        Raises:
            SandboxError: ``to`` is naive or earlier than :attr:`now`.
        """
        target_us = to_us(to)
        if target_us < self._s.now_us:
            raise SandboxError(
                f"the sandbox cannot go back in time: it is at {self.now.isoformat()}, asked for "
                f"{to.isoformat()}"
            )
        dynamics.advance(self._s, target_us)

    def advance_by(self, seconds: float) -> None:
        """Move sim time forward by ``seconds`` (convenience for tests and the CLI)."""
        self.advance(self.now + timedelta(seconds=seconds))

    def _refresh_if(self, changed: bool) -> None:
        """Re-evaluate the current tick after a change, without moving the scalers."""
        if changed:
            dynamics.refresh(self._s)

    # -- incidents (opsconsole.sandbox.world.incident_ops) --------------------------------------------

    def trigger_incident(
        self,
        kind: str | IncidentKind,
        region: str,
        *,
        duration: float | timedelta = DEFAULT_DURATION_S,
        cluster: str | None = None,
    ) -> Incident:
        """Start an incident now, for ``duration`` (sim seconds or a timedelta; default 30 min).

        ``cluster`` is for ``node_pool_loss`` only (default: the region's largest prod cluster).

        Raises:
            UsageError: unknown kind (lists the valid ones), unknown region or cluster, a cluster
                outside the region, a cluster given for another kind, or a non-positive duration.
        """
        inc = incident_ops.trigger(self._s, kind, region, duration=duration, cluster=cluster)
        self._refresh_if(True)
        return inc

    def clear_incident(self, incident_id: str) -> Incident:
        """End an active incident now. Raises :class:`UsageError` if it is unknown or already over."""
        ended = incident_ops.clear(self._s, incident_id)
        self._refresh_if(True)
        return ended

    def clear_incidents(self, region: str | None = None) -> int:
        """End every active incident (or only ``region``'s) now; returns how many were ended."""
        ids = incident_ops.regional(self._s, region)
        for inc_id in ids:
            self.clear_incident(inc_id)
        return len(ids)

    # -- desired-state changes (opsconsole.sandbox.world.desired) -------------------------------------

    def set_replicas(self, cluster: str, service: str, replicas: int) -> None:
        """Scale a workload by hand. The HPA keeps at least this many for its 5 min stabilisation
        window, then follows the load again (as a manual scale of an HPA-managed deployment does).
        """
        self._refresh_if(desired.set_replicas(self._s, cluster, service, replicas))

    def set_hpa_bounds(self, cluster: str, service: str, min_replicas: int, max_replicas: int) -> None:
        """Change a workload's HPA min/max (within the fleet's HPA bounds); replicas are clamped now."""
        self._refresh_if(desired.set_hpa_bounds(self._s, cluster, service, min_replicas, max_replicas))

    def set_cluster_node_bounds(self, cluster: str, min_nodes: int, max_nodes: int) -> None:
        """Change a cluster's autoscaler min/max (within the fleet's node bounds); nodes are clamped now."""
        self._refresh_if(desired.set_cluster_node_bounds(self._s, cluster, min_nodes, max_nodes))

    def set_dns_weights(self, region: str, weights: Mapping[str, int]) -> None:
        """Replace the record set that routes ``region``'s users: target region → integer weight.

        Weights must be non-negative integers over known regions summing to exactly 100; zero
        weights are dropped.
        """
        self._refresh_if(desired.set_dns_weights(self._s, region, weights))

    def promote_replica(self, region: str) -> None:
        """Make ``region``'s database a write primary (no upstream, no lag).

        If the primary it replicated from is down, that old primary and every region that replicated
        from it now replicate from the promoted region (a DR failover). If the old primary is up, it and
        its other replicas are left as they are (a planned split, e.g. adding a write region).

        Raises:
            UsageError: unknown region, already a write primary, or the region itself is down.
        """
        self._refresh_if(desired.promote_replica(self._s, region))

    def demote_to_replica(self, region: str, source: str) -> None:
        """Make ``region``'s database a read replica of ``source`` (a write primary) again: what a
        failback does to the replica a failover promoted, so that one write primary per write region
        remains. Regions that replicated from ``region`` follow ``source``.

        Raises:
            UsageError: unknown regions, ``source`` not a write primary, or the same region.
        """
        self._refresh_if(desired.demote_to_replica(self._s, region, source))

    def set_cluster_nodes(self, cluster: str, nodes: int) -> None:
        """Set a cluster's node count now, within its autoscaler bounds (the autoscaler decides again
        on its next tick)."""
        self._refresh_if(desired.set_cluster_nodes(self._s, cluster, nodes))

    def set_environment_stopped(self, environment: Environment | str, stopped: bool) -> None:
        """Stop (0 replicas, 0 nodes) or start (back to the remembered sizes) a non-prod environment:
        :meth:`set_cluster_stopped` on each of its clusters.

        Idempotent (a partly stopped environment is completed). Raises :class:`UsageError` for prod or an
        unknown environment.
        """
        self._refresh_if(desired.set_environment_stopped(self._s, environment, stopped))

    def set_cluster_stopped(self, cluster: str, stopped: bool) -> None:
        """Stop (0 replicas, 0 nodes: below the 1-node floor on purpose) or start (back to the sizes it had
        when stopped, clamped to its current bounds) one non-prod cluster, e.g. one region's share of an
        environment.

        Idempotent. Raises :class:`UsageError` for an unknown or a prod cluster.
        """
        self._refresh_if(desired.set_cluster_stopped(self._s, cluster, stopped))

    def set_read_replicas(self, region: str, count: int) -> None:
        """Set the number of read replicas of ``region``'s database (within the fleet bounds)."""
        self._refresh_if(desired.set_read_replicas(self._s, region, count))

    def set_cache_nodes(self, region: str, count: int) -> None:
        """Set the number of Redis nodes of ``region`` (within the fleet bounds)."""
        self._refresh_if(desired.set_cache_nodes(self._s, region, count))

    # -- observation (opsconsole.sandbox.world.observe) -----------------------------------------------

    def observe(self) -> list[FleetRecord]:
        """Every record of the fleet at the current sim time, stamped source ``"sim"``.

        Per region: RegionTraffic, DnsRecordSet, DatabaseState, CacheState; per cluster: ClusterState
        followed by one WorkloadState per service of the cluster's environment.
        """
        return observation.observe(self._s, self.now)

    # -- what clients wrote that the world does not model ----------------------------------------------

    def client_objects(self, api: str) -> dict[str, Any]:
        """Objects clients wrote into ``api``'s emulator that the world keeps for them (a copy), by key."""
        return dict(self._s.client_objects.get(api, {}))

    def keep_client_objects(self, api: str, objects: Mapping[str, Any]) -> None:
        """Keep ``objects`` (all of ``api``'s, replacing what was kept) with the world: the local cloud of
        a later command serves them again (env_schedule.yml's remembered sizes survive its end)."""
        if objects:
            self._s.client_objects[api] = dict(objects)
        else:
            self._s.client_objects.pop(api, None)

    # -- persistence (opsconsole.sandbox.world.snapshot; files: opsconsole.sandbox.state) -------------

    def to_dict(self) -> dict[str, Any]:
        """The full state as JSON-serialisable data (exact round trip through :meth:`from_dict`)."""
        return snapshot.dump(self._s)

    @classmethod
    def from_dict(cls, fleet: Fleet, data: Mapping[str, Any]) -> World:
        """Restore a world saved by :meth:`to_dict` for the same fleet.

        Raises:
            SandboxError: the data is for another fleet (fingerprint mismatch), another layout
                version, or is malformed.
        """
        snapshot.check_header(fleet, data)
        try:
            state = _new_state(fleet, int(data["seed"]), int(data["now_us"]))
            snapshot.load(state, data)
            dynamics.refresh(state)
        except SandboxError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise SandboxError(f"sandbox state is malformed: {type(exc).__name__}: {exc}") from None
        world = cls.__new__(cls)  # no steady-state warm-up: the loaded state is the world
        world._s = state
        return world
