"""The Pod objects of a cluster, kept in step with the pod counts each publish records.

Why this module exists: a publish records per deployment only how many pods are ready, pending (no
node fits them) and unreachable (their node is lost); the ``k8s`` source lists and watches pods to count
the pending ones and the restarts. :func:`sync_pods` makes the stored pods match the counts like a
ReplicaSet controller would: a pod whose state and node still fit is kept as it is (same name, uid,
resourceVersion, creation time: no watch event), a pod whose state changed gets a new resourceVersion,
surplus pods are removed and missing ones created. A deployment whose counts, image and ready nodes did
not change is not looked at, so a publish costs little where nothing moved.
"""

from __future__ import annotations

from collections.abc import Callable

from opsconsole.core.fleet.model import ClusterSpec
from opsconsole.sandbox.kube.naming import now_iso, pod_suffix, short_hash, uid
from opsconsole.sandbox.kube.resources import NAMESPACE, JsonObj
from opsconsole.sandbox.kube.store import Cluster, PodCounts

__all__ = ["CPU_REQUEST_M", "pod_state", "sync_pods"]

#: Every container's CPU request, in millicores (pods, deployment templates, HPA average values).
CPU_REQUEST_M = 500

NextRv = Callable[[], str]


def sync_pods(cl: Cluster, next_rv: NextRv) -> None:
    """Make ``cl.objects["pods"]`` match the published pod counts (see the module docstring)."""
    store = cl.objects.setdefault("pods", {})
    nodes = [n for _, n in sorted(cl.objects["nodes"].items())]
    ready_nodes = [n["metadata"]["name"] for n in nodes if n["status"]["conditions"][0]["status"] == "True"]
    all_nodes = [n["metadata"]["name"] for n in nodes]
    now = now_iso()
    for svc in cl.services:
        counts = cl.pod_counts.get(svc, PodCounts())
        dep = cl.objects["deployments"].get((NAMESPACE, svc))
        image = f"registry.voltage.internal/{svc}:1.0.0"
        if dep is not None:
            containers = dep["spec"]["template"]["spec"].get("containers") or [{}]
            image = str(containers[0].get("image", image))
        built = (counts.ready, counts.pending, counts.unreachable, image, tuple(ready_nodes), len(all_nodes))
        if cl.pods_built.get(svc) == built:
            continue
        cl.pods_built[svc] = built
        _service_pods(cl, svc, counts, image, ready_nodes, all_nodes, next_rv, now, store)


def pod_state(pod: JsonObj) -> str:
    """``ready``, ``pending`` or ``unreachable``: what the pod was built as."""
    return str((pod.get("metadata") or {}).get("annotations", {}).get("sandbox.opsconsole/state", ""))


def _service_pods(
    cl: Cluster,
    svc: str,
    counts: PodCounts,
    image: str,
    ready_nodes: list[str],
    all_nodes: list[str],
    next_rv: NextRv,
    now: str,
    store: dict[tuple[str, str], JsonObj],
) -> None:
    """Create, replace or remove one deployment's pods so they match ``counts``."""
    spec = cl.spec
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
    ready_set = set(ready_nodes)
    states = ["ready"] * counts.ready + ["pending"] * counts.pending + ["unreachable"] * counts.unreachable
    prefix = f"{svc}-{template_hash}-"
    wanted: set[str] = set()
    for n, state in enumerate(states):
        name = prefix + pod_suffix(spec.name + svc, n)
        wanted.add(name)
        old = store.get((NAMESPACE, name))
        if old is not None and pod_state(old) == state:
            node = (old.get("spec") or {}).get("nodeName")
            image_ok = old["spec"]["containers"][0].get("image") == image
            if image_ok and (
                (state == "ready" and node in ready_set)
                or (state == "unreachable" and node in all_nodes)
                or state == "pending"
            ):
                continue
        node_name: str | None = None
        if state == "ready" and ready_nodes:
            node_name = ready_nodes[cl.pod_slot % len(ready_nodes)]
            cl.pod_slot += 1
        elif state == "unreachable" and all_nodes:
            node_name = all_nodes[n % len(all_nodes)]
        created = old["metadata"]["creationTimestamp"] if old is not None else now
        meta = _pod_meta(spec, svc, name, template_hash, owner, next_rv(), created)
        meta["annotations"] = {"sandbox.opsconsole/state": state}
        store[(NAMESPACE, name)] = _pod(svc, meta, image=image, state=state, node=node_name, now=now)
    for key in [k for k in store if k[1].startswith(prefix) and k[1] not in wanted]:
        del store[key]


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
