"""The two-way sync between the sandbox world and the Kubernetes API emulator's objects.

Why this module exists: the world (:class:`~opsconsole.sandbox.world.World`) is the truth of the sandbox;
the emulator's objects are how clients see and change it. :meth:`WorldSync.publish` writes the world's
state into the objects (nodes, autoscaler status, deployments, HPAs, pod counts, events, the
crash-looping pods of a bad deploy);
:meth:`WorldSync.collect` applies to the world what clients changed since (HPA bounds, replicas, and
stopping / starting non-prod clusters by scaling every deployment to 0 and back). Both run under the
store's lock, between requests, and end with :meth:`~opsconsole.sandbox.kube.store.Store.commit`, which
turns what changed into watch events.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from opsconsole.core.errors import OpsError
from opsconsole.core.fleet.model import ClusterState, Environment, WorkloadState
from opsconsole.sandbox.kube.crashloop import sync_crash_loops
from opsconsole.sandbox.kube.events import publish_events
from opsconsole.sandbox.kube.nodes import set_autoscaler_status, set_nodes
from opsconsole.sandbox.kube.objects import deployment_status, hpa_status
from opsconsole.sandbox.kube.pods import sync_pods
from opsconsole.sandbox.kube.resources import NAMESPACE
from opsconsole.sandbox.kube.store import Cluster, PodCounts, Store
from opsconsole.sandbox.world import World

__all__ = ["WorldSync"]

log = logging.getLogger(__name__)

_NOTES_KEPT = 200


class WorldSync:
    """Publishes the world into a :class:`~opsconsole.sandbox.kube.store.Store` and collects clients' writes.

    Args:
        store: the emulator's state.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        #: What collect() refused to apply, newest last (also logged).
        self.notes: deque[str] = deque(maxlen=_NOTES_KEPT)

    # -- world → objects ------------------------------------------------------------------------

    def publish(self, world: World) -> None:
        """Write the world's current state: nodes, autoscaler status, deployments, HPAs, pods, events."""
        clusters: dict[str, ClusterState] = {}
        workloads: dict[tuple[str, str], WorkloadState] = {}
        for rec in world.observe():
            if isinstance(rec, ClusterState):
                clusters[rec.cluster] = rec
            elif isinstance(rec, WorkloadState):
                workloads[(rec.cluster, rec.service)] = rec
        store = self._store
        with store.lock:
            store.changed()
            for name, cl in store.clusters.items():
                cs = clusters.get(name)
                if cs is not None:
                    self._publish_cluster(world, cl, cs, workloads)
            store.commit()

    def _publish_cluster(
        self, world: World, cl: Cluster, cs: ClusterState, workloads: Mapping[tuple[str, str], WorkloadState]
    ) -> None:
        name = cl.spec.name
        next_rv = self._store.next_rv
        set_nodes(cl, cs.reserved_nodes + cs.on_demand_nodes, cs.spot_nodes, cs.ready_nodes, next_rv)
        lo, hi = world.node_bounds(name)
        set_autoscaler_status(cl, lo, hi, cs.nodes, cs.ready_nodes, next_rv)
        if cs.extra.get("stopped"):
            cl.held_zero.clear()  # the world holds the whole cluster at zero now
        for svc in cl.services:
            ws = workloads.get((name, svc))
            if ws is None:
                continue
            if svc in cl.held_zero:
                ws = dataclasses.replace(
                    ws, desired=0, ready=0, pending_pods=0, extra={**ws.extra, "utilisation": 0.0}
                )
            self._publish_workload(cl, ws)
        publish_events(cl, cs, workloads, next_rv)
        sync_pods(cl, next_rv)
        sync_crash_loops(cl, world.incidents(), world.now, bool(cs.extra.get("stopped")), next_rv)

    def _publish_workload(self, cl: Cluster, ws: WorkloadState) -> None:
        svc = ws.service
        dep = cl.objects["deployments"].get((NAMESPACE, svc))
        hpa = cl.objects["horizontalpodautoscalers"].get((NAMESPACE, svc))
        if dep is None or hpa is None:  # a client cannot delete them (no DELETE), but be safe
            return
        # A client may have written between this cycle's collect and this publish (the emulator
        # serves requests while the world advances). Its value differs from what collect recorded;
        # overwriting it would lose the write, so it is left for the next collect to apply.
        seen = cl.published.get(svc)
        client_bounds = (hpa["spec"].get("minReplicas"), hpa["spec"].get("maxReplicas"))
        rep_pending = seen is not None and dep["spec"].get("replicas") != seen[0]
        bounds_pending = seen is not None and client_bounds != seen[1:]
        desired = ws.desired
        unreachable = max(0, desired - ws.ready - ws.pending_pods)
        cl.pod_counts[svc] = PodCounts(ws.ready, ws.pending_pods, unreachable)
        meta = dep["metadata"]
        changed = False
        if not rep_pending and dep["spec"].get("replicas") != desired:
            dep["spec"]["replicas"] = desired
            meta["generation"] = int(meta.get("generation", 1)) + 1
            changed = True
        status = deployment_status(meta["generation"], desired, ws.ready)
        if dep.get("status") != status:
            dep["status"] = status
            changed = True
        if changed:
            meta["resourceVersion"] = self._store.next_rv()
        self._publish_hpa(hpa, ws, client_bounds, bounds_pending)
        rep, lo, hi = seen if seen is not None else (desired, ws.hpa_min, ws.hpa_max)
        cl.published[svc] = (
            rep if rep_pending else desired,
            lo if bounds_pending else ws.hpa_min,
            hi if bounds_pending else ws.hpa_max,
        )

    def _publish_hpa(
        self, hpa: dict[str, Any], ws: WorkloadState, client_bounds: tuple[Any, Any], bounds_pending: bool
    ) -> None:
        hmeta = hpa["metadata"]
        hchanged = False
        if not bounds_pending and client_bounds != (ws.hpa_min, ws.hpa_max):
            hpa["spec"]["minReplicas"] = ws.hpa_min
            hpa["spec"]["maxReplicas"] = ws.hpa_max
            hmeta["generation"] = int(hmeta.get("generation", 1)) + 1
            hchanged = True
        hstatus = hpa_status(hmeta["generation"], ws.desired, ws)
        if hpa.get("status") != hstatus:
            hpa["status"] = hstatus
            hchanged = True
        if hchanged:
            hmeta["resourceVersion"] = self._store.next_rv()

    # -- objects → world ------------------------------------------------------------------------

    def collect(self, world: World) -> None:
        """Apply HPA bounds and replicas that clients changed since the last publish to the world.

        A value the world refuses (e.g. replicas outside the HPA bounds) is logged, kept in
        :attr:`notes`, and left alone: the next publish writes the world's value back.

        Scaling to zero is how an environment is stopped (``playbooks/env_schedule.yml``), tier by tier:
        in a non-prod cluster a deployment scaled to 0 is held at 0 here (see ``Cluster.held_zero``; the
        world has no per-deployment stop), and once every deployment of the cluster is at 0 the world
        stops the cluster (:meth:`World.set_cluster_stopped`: 0 replicas, 0 nodes, sizes remembered). A
        deployment of a stopped cluster scaled above 0 starts the cluster (remembered sizes come back),
        the others stay held at 0 until they are scaled up too, and a requested size that differs from
        the remembered one is then applied as an ordinary scale.
        """
        store = self._store
        with store.lock:
            store.changed()
            for name, cl in store.clusters.items():
                wanted = self._collect_cluster(world, name, cl)
                if wanted:
                    self._collect_nonprod(world, name, cl, wanted)
            store.commit()

    def _collect_cluster(self, world: World, name: str, cl: Cluster) -> dict[str, object]:
        """Apply one cluster's changed HPA bounds (and prod replicas); the non-prod replicas wanted."""
        nonprod = cl.spec.environment is not Environment.PROD
        wanted: dict[str, object] = {}
        for svc, (rep, lo, hi) in list(cl.published.items()):
            dep = cl.objects["deployments"].get((NAMESPACE, svc))
            hpa = cl.objects["horizontalpodautoscalers"].get((NAMESPACE, svc))
            if dep is None or hpa is None:
                continue
            new_lo = hpa["spec"].get("minReplicas", 1)
            new_hi = hpa["spec"].get("maxReplicas")
            new_rep = dep["spec"].get("replicas")
            if (new_lo, new_hi) != (lo, hi):
                self._apply(
                    f"HPA {name}/{NAMESPACE}/{svc} bounds {new_lo}-{new_hi}",
                    world.set_hpa_bounds,
                    (name, svc, new_lo, new_hi),
                )
            if new_rep != rep:
                if nonprod:
                    wanted[svc] = new_rep
                else:
                    self._apply(
                        f"deployment {name}/{NAMESPACE}/{svc} replicas {new_rep}",
                        world.set_replicas,
                        (name, svc, new_rep),
                    )
            cl.published[svc] = (
                new_rep if isinstance(new_rep, int) else rep,
                new_lo if isinstance(new_lo, int) else lo,
                new_hi if isinstance(new_hi, int) else hi,
            )
        return wanted

    def _collect_nonprod(self, world: World, name: str, cl: Cluster, wanted: Mapping[str, object]) -> None:
        """Replicas a client changed in a non-prod cluster: stop / start the cluster, or scale."""
        replicas = {
            svc: dep["spec"].get("replicas")
            for (ns, svc), dep in cl.objects["deployments"].items()
            if ns == NAMESPACE and svc in cl.services
        }
        zero = {svc for svc, n in replicas.items() if n == 0}
        if not world.is_stopped(name):
            if zero and zero == set(replicas):
                self._apply(
                    f"cluster {name} stopped (every deployment at 0)", world.set_cluster_stopped, (name, True)
                )
                cl.held_zero.clear()
                return
            cl.held_zero = (cl.held_zero | {s for s in wanted if s in zero}) - (set(replicas) - zero)
            for svc, n in wanted.items():
                if svc not in zero:
                    self._apply(
                        f"deployment {name}/{NAMESPACE}/{svc} replicas {n}",
                        world.set_replicas,
                        (name, svc, n),
                    )
            return
        if zero == set(replicas):
            return  # still stopped
        self._apply(f"cluster {name} started", world.set_cluster_stopped, (name, False))
        cl.held_zero = set(zero)
        for svc, n in wanted.items():
            if svc not in zero and n != world.replicas(name, svc):
                self._apply(
                    f"deployment {name}/{NAMESPACE}/{svc} replicas {n}", world.set_replicas, (name, svc, n)
                )

    def _apply(self, what: str, change: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            change(*args)
        except (OpsError, TypeError, ValueError) as exc:
            note = f"{what} not applied: {exc}"
            log.warning("kube-api: %s", note)
            self.notes.append(note)
        else:
            log.info("kube-api: applied %s", what)
