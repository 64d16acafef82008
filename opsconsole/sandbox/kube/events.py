"""The warning Events of a cluster, synthesised from the world at each publish.

Why this module exists: the ``k8s`` source reports ``FailedScheduling`` (pods pending: no node fits) and
``NodeNotReady`` warnings from the Events API. :func:`publish_events` writes one event per condition,
counting repeats as the real event recorder does (``count``, ``lastTimestamp``), and forgets events older
than the API server's event TTL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from opsconsole.core.fleet.model import ClusterState, WorkloadState
from opsconsole.sandbox.kube.naming import now_iso, short_hash, uid
from opsconsole.sandbox.kube.resources import NAMESPACE, JsonObj
from opsconsole.sandbox.kube.store import Cluster

__all__ = ["publish_events"]

NextRv = Callable[[], str]
#: Events older than this are forgotten (the API server's event TTL is 1 h by default).
_EVENT_TTL_S = 70 * 60


def publish_events(
    cl: Cluster, cs: ClusterState, workloads: Mapping[tuple[str, str], WorkloadState], next_rv: NextRv
) -> None:
    """Record the cluster's warnings in the world's state ``cs`` / ``workloads``; expire old events."""
    store = cl.objects["events"]
    now = now_iso()
    name = cl.spec.name
    for svc in cl.services:
        ws = workloads.get((name, svc))
        if ws is None or ws.pending_pods <= 0:
            continue
        nodes = cs.nodes
        _upsert(
            cl,
            NAMESPACE,
            f"{svc}.pending.{short_hash(name + svc)}",
            {"kind": "Deployment", "namespace": NAMESPACE, "name": svc, "apiVersion": "apps/v1"},
            reason="FailedScheduling",
            message=f"{ws.pending_pods} pod(s) pending: 0/{nodes} nodes are available: {nodes} "
            f"Insufficient cpu. preemption: 0/{nodes} nodes are available: {nodes} No preemption "
            "victims found.",
            source="default-scheduler",
            now=now,
            next_rv=next_rv,
        )
    if cs.nodes and cs.ready_nodes < cs.nodes:
        _upsert(
            cl,
            "default",
            f"nodes.notready.{short_hash(name)}",
            {"kind": "Node", "name": "", "apiVersion": "v1"},
            reason="NodeNotReady",
            message=f"{cs.nodes - cs.ready_nodes} node(s) status is now: NodeNotReady",
            source="node-controller",
            now=now,
            next_rv=next_rv,
        )
    horizon = time.time() - _EVENT_TTL_S
    # A crash-looping pod's events live as long as the pod (opsconsole.sandbox.kube.crashloop owns them).
    for key in [k for k, ev in store.items() if _last_seen(ev) < horizon and not _owned(ev)]:
        del store[key]


def _owned(event: JsonObj) -> bool:
    return bool(((event.get("metadata") or {}).get("annotations") or {}).get("sandbox.opsconsole/owner"))


def _last_seen(event: JsonObj) -> float:
    return datetime.strptime(event["lastTimestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _upsert(
    cl: Cluster,
    ns: str,
    ev_name: str,
    involved: JsonObj,
    *,
    reason: str,
    message: str,
    source: str,
    now: str,
    next_rv: NextRv,
) -> None:
    """Create the event, or count one more occurrence of it."""
    store = cl.objects["events"]
    existing = store.get((ns, ev_name))
    if existing is not None:
        existing["count"] = int(existing.get("count", 1)) + 1
        existing["lastTimestamp"] = now
        existing["message"] = message
        existing["metadata"]["resourceVersion"] = next_rv()
        return
    store[(ns, ev_name)] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": ev_name,
            "namespace": ns,
            "uid": uid(cl.spec.name, "events", ns, ev_name, now),
            "resourceVersion": next_rv(),
            "creationTimestamp": now,
        },
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": "Warning",
        "count": 1,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "source": {"component": source},
        "reportingComponent": source,
    }
