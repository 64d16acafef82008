"""The Pod objects of a cluster, built lazily from the pod counts the last publish recorded.

Why this module exists: a publish records per deployment only how many pods are ready, pending (no
node fits them) and unreachable (their node is lost); the ``k8s`` source lists pods to count the pending
ones. Building thousands of pod objects at every publish would cost more than the reads, so
:func:`pods_of` builds them on the first read after a publish, with stable names, uids and node
assignment, and keeps them on the :class:`~opsconsole.sandbox.kube.store.Cluster` until the next
publish (so pagination over them is consistent).
"""

from __future__ import annotations

from opsconsole.core.fleet.model import ClusterSpec
from opsconsole.sandbox.kube.naming import now_iso, pod_suffix, short_hash, uid
from opsconsole.sandbox.kube.resources import NAMESPACE, JsonObj
from opsconsole.sandbox.kube.semantics import object_key
from opsconsole.sandbox.kube.store import Cluster, PodCounts

__all__ = ["CPU_REQUEST_M", "pods_of"]

#: Every container's CPU request, in millicores (pods, deployment templates, HPA average values).
CPU_REQUEST_M = 500


def pods_of(cl: Cluster, rv: str) -> list[JsonObj]:
    """The cluster's pods, built from the published counts (cached until the next publish).

    ``rv`` is the resourceVersion the pods carry when they are built (the store's current one).
    """
    if cl.pods is not None:
        return cl.pods
    nodes = [n for _, n in sorted(cl.objects["nodes"].items())]
    ready_nodes = [n["metadata"]["name"] for n in nodes if n["status"]["conditions"][0]["status"] == "True"]
    all_nodes = [n["metadata"]["name"] for n in nodes]
    now = now_iso()
    pods: list[JsonObj] = []
    slot = 0
    for svc in cl.services:
        slot = _service_pods(cl, svc, ready_nodes, all_nodes, slot, rv, now, pods)
    pods.sort(key=object_key)
    cl.pods = pods
    return pods


def _service_pods(
    cl: Cluster,
    svc: str,
    ready_nodes: list[str],
    all_nodes: list[str],
    slot: int,
    rv: str,
    now: str,
    out: list[JsonObj],
) -> int:
    """Append one deployment's pods to ``out``; ready pods go round-robin on the ready nodes from ``slot``.

    Returns the next slot.
    """
    spec = cl.spec
    counts = cl.pod_counts.get(svc, PodCounts())
    dep = cl.objects["deployments"].get((NAMESPACE, svc))
    template_hash = short_hash(f"{spec.name}/{svc}", 10)
    owner = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": f"{svc}-{template_hash}",
            "uid": uid(spec.name, "replicasets", svc),
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    image = f"registry.voltage.internal/{svc}:1.0.0"
    if dep is not None:
        containers = dep["spec"]["template"]["spec"].get("containers") or [{}]
        image = str(containers[0].get("image", image))
    states = ["ready"] * counts.ready + ["pending"] * counts.pending + ["unreachable"] * counts.unreachable
    for n, state in enumerate(states):
        name = f"{svc}-{template_hash}-{pod_suffix(spec.name + svc, n)}"
        node: str | None = None
        if state == "ready" and ready_nodes:
            node = ready_nodes[slot % len(ready_nodes)]
            slot += 1
        elif state == "unreachable" and all_nodes:
            node = all_nodes[n % len(all_nodes)]
        meta = _pod_meta(spec, svc, name, template_hash, owner, rv, now)
        out.append(_pod(svc, meta, image=image, state=state, node=node, now=now))
    return slot


def _pod_meta(
    spec: ClusterSpec, svc: str, name: str, template_hash: str, owner: list[JsonObj], rv: str, now: str
) -> JsonObj:
    return {
        "name": name,
        "namespace": NAMESPACE,
        "uid": uid(spec.name, "pods", name),
        "resourceVersion": rv,
        "generation": 1,
        "creationTimestamp": now,
        "labels": {
            "app": svc,
            "app.kubernetes.io/name": svc,
            "app.kubernetes.io/part-of": "voltage",
            "pod-template-hash": template_hash,
        },
        "ownerReferences": owner,
    }


def _pod(svc: str, meta: JsonObj, *, image: str, state: str, node: str | None, now: str) -> JsonObj:
    pod_spec: JsonObj = {
        "containers": [
            {
                "name": svc,
                "image": image,
                "resources": {"requests": {"cpu": f"{CPU_REQUEST_M}m", "memory": "512Mi"}},
            }
        ],
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
    }
    if node is not None:
        pod_spec["nodeName"] = node
    if state == "pending":
        status = _pending_status(now)
    else:
        status = _running_status(svc, image, state == "ready", now)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec, "status": status}


def _pending_status(now: str) -> JsonObj:
    return {
        "phase": "Pending",
        "qosClass": "Burstable",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient cpu. preemption: not helpful.",
                "lastTransitionTime": now,
            }
        ],
    }


def _running_status(svc: str, image: str, ready: bool, now: str) -> JsonObj:
    status: JsonObj = {
        "phase": "Running",
        "qosClass": "Burstable",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True" if ready else "False", "lastTransitionTime": now},
        ],
        "containerStatuses": [
            {
                "name": svc,
                "image": image,
                "imageID": f"{image}@sha256:{short_hash(image) * 8}",
                "ready": ready,
                "started": ready,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            }
        ],
        "startTime": now,
    }
    if not ready:
        status["reason"] = "NodeLost"
    return status
