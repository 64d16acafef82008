"""The Node objects of a cluster and the cluster autoscaler's status ConfigMap, synthesised from counts.

Why this module exists: the ``k8s`` source reads node capacity (spot / on-demand labels as each managed
offering writes them), node readiness and the autoscaler's bounds from these objects; the world only has
counts. :func:`set_nodes` and :func:`set_autoscaler_status` make the objects match the counts, keeping
the names, uids and resourceVersions of what did not change.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from opsconsole.core.fleet.model import ClusterKind, ClusterSpec
from opsconsole.sandbox.kube.naming import now_iso, short_hash, uid
from opsconsole.sandbox.kube.resources import AUTOSCALER_STATUS, CAPACITY_LABELS, VERSIONS, JsonObj
from opsconsole.sandbox.kube.store import Cluster

__all__ = ["node_name", "set_autoscaler_status", "set_nodes"]

#: Hands out the next resourceVersion (:meth:`opsconsole.sandbox.kube.store.Store.next_rv`).
NextRv = Callable[[], str]


def node_name(spec: ClusterSpec, pool: str, i: int) -> str:
    """The name of the ``i``-th node of a pool (``ondemand`` / ``spot``), as the offering names nodes."""
    h = short_hash(spec.name + pool)
    if spec.kind is ClusterKind.EKS:
        octet = 1 if pool == "ondemand" else 2
        return f"ip-10-{octet}-{i // 250}-{i % 250 + 4}.{spec.cloud_region}.compute.internal"
    if spec.kind is ClusterKind.GKE:
        return f"gke-{spec.name}-{pool}-{h}-{i:04x}"
    return f"aks-{pool}-{int(h, 16) % 10**8:08d}-vmss{i:06x}"


def _zones(spec: ClusterSpec) -> list[str]:
    if spec.kind is ClusterKind.AKS:
        return [f"{spec.cloud_region}-{n}" for n in (1, 2, 3)]
    return [f"{spec.cloud_region}{z}" for z in "abc"]


def _labels(spec: ClusterSpec, name: str, pool: str, i: int) -> dict[str, str]:
    label, spot_value, od_value = CAPACITY_LABELS[spec.kind]
    zones = _zones(spec)
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": spec.instance_type,
        "topology.kubernetes.io/region": spec.cloud_region,
        "topology.kubernetes.io/zone": zones[i % len(zones)],
    }
    value = spot_value if pool == "spot" else od_value
    if value is not None:
        labels[label] = value
    if spec.kind is ClusterKind.EKS:
        labels["eks.amazonaws.com/nodegroup"] = f"{spec.name}-ng"
    elif spec.kind is ClusterKind.GKE:
        labels["cloud.google.com/gke-nodepool"] = pool
    else:
        labels["kubernetes.azure.com/agentpool"] = pool
    return labels


def _ready_condition(ready: bool, now: str) -> JsonObj:
    return {
        "type": "Ready",
        "status": "True" if ready else "Unknown",
        "reason": "KubeletReady" if ready else "NodeStatusUnknown",
        "message": "kubelet is posting ready status" if ready else "Kubelet stopped posting node status.",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }


def _node(
    spec: ClusterSpec, name: str, pool: str, i: int, *, ready: bool, created: str, next_rv: NextRv
) -> JsonObj:
    labels = _labels(spec, name, pool, i)
    taints = []
    if pool == "spot" and spec.kind is ClusterKind.AKS:
        taints.append(
            {"key": "kubernetes.azure.com/scalesetpriority", "value": "spot", "effect": "NoSchedule"}
        )
    now = now_iso()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": uid(spec.name, "nodes", name),
            "resourceVersion": next_rv(),
            "generation": 1,
            "creationTimestamp": created,
            "labels": labels,
        },
        "spec": {"providerID": f"{spec.cloud.value}://{spec.cloud_region}/{name}", "taints": taints},
        "status": {
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": str(spec.pods_per_node)},
            "allocatable": {"cpu": "7910m", "memory": "29Gi", "pods": str(spec.pods_per_node)},
            "conditions": [_ready_condition(ready, now)],
            "nodeInfo": {
                "bootID": uid(spec.name, "boot", name),
                "machineID": short_hash(name) * 4,
                "systemUUID": uid(spec.name, "system", name),
                "kernelVersion": "6.1.119",
                "kubeProxyVersion": VERSIONS[spec.kind],
                "kubeletVersion": VERSIONS[spec.kind],
                "containerRuntimeVersion": "containerd://1.7.23",
                "osImage": "Linux",
                "architecture": "amd64",
                "operatingSystem": "linux",
            },
        },
    }


def set_nodes(cl: Cluster, on_demand: int, spot: int, ready: int, next_rv: NextRv) -> None:
    """Make the cluster's Node objects match the counts, keeping the nodes that stay."""
    spec = cl.spec
    store = cl.objects["nodes"]
    wanted: list[tuple[str, str, int]] = [
        (node_name(spec, "ondemand", i), "ondemand", i) for i in range(on_demand)
    ] + [(node_name(spec, "spot", i), "spot", i) for i in range(spot)]
    names = {n for n, _, _ in wanted}
    for key in [k for k in store if k[1] not in names]:
        del store[key]
    created = now_iso()
    for idx, (name, pool, i) in enumerate(wanted):
        is_ready = idx < ready
        node = store.get(("", name))
        if node is None:
            store[("", name)] = _node(spec, name, pool, i, ready=is_ready, created=created, next_rv=next_rv)
            continue
        cond = node["status"]["conditions"][0]
        if (cond["status"] == "True") != is_ready:
            node["status"]["conditions"][0] = _ready_condition(is_ready, created)
            node["metadata"]["resourceVersion"] = next_rv()


def _autoscaler_text(spec: ClusterSpec, now: datetime, lo: int, hi: int, nodes: int, ready: int) -> str:
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " +0000 UTC"
    iso = now.strftime("%Y-%m-%d %H:%M:%S +0000 UTC")
    health = "Healthy" if ready == nodes else "Unhealthy"
    counts = (
        f"ready={ready} unready={nodes - ready} notStarted=0 longNotStarted=0 registered={nodes} "
        "longUnregistered=0"
    )
    group = {
        ClusterKind.EKS: f"eks-{spec.name}-ng",
        ClusterKind.GKE: f"https://www.googleapis.com/compute/v1/projects/voltage/zones/{spec.cloud_region}-a/"
        f"instanceGroups/gke-{spec.name}-pool",
        ClusterKind.AKS: f"aks-nodepool-{short_hash(spec.name)}-vmss",
    }[spec.kind]
    return (
        f"Cluster-autoscaler status at {stamp}:\n"
        "Cluster-wide:\n"
        f"  Health:      {health} ({counts})\n"
        f"               LastProbeTime:      {iso}\n"
        f"               LastTransitionTime: {iso}\n"
        f"  ScaleUp:     NoActivity (ready={ready} registered={nodes})\n"
        f"               LastProbeTime:      {iso}\n"
        f"               LastTransitionTime: {iso}\n"
        "  ScaleDown:   NoCandidates (candidates=0)\n"
        f"               LastProbeTime:      {iso}\n"
        f"               LastTransitionTime: {iso}\n"
        "\n"
        "NodeGroups:\n"
        f"  Name:        {group}\n"
        f"  Health:      {health} ({counts} cloudProviderTarget={nodes} (minSize={lo}, maxSize={hi}))\n"
        f"               LastProbeTime:      {iso}\n"
        f"               LastTransitionTime: {iso}\n"
    )


def set_autoscaler_status(cl: Cluster, lo: int, hi: int, nodes: int, ready: int, next_rv: NextRv) -> None:
    """Write the cluster autoscaler's status ConfigMap (node group bounds ``lo``-``hi``, node counts)."""
    spec = cl.spec
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " +0000 UTC"
    status = _autoscaler_text(spec, now, lo, hi, nodes, ready)
    store = cl.objects["configmaps"]
    key = AUTOSCALER_STATUS
    existing = store.get(key)
    if existing is None:
        store[key] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": key[1],
                "namespace": key[0],
                "uid": uid(spec.name, "configmaps", *key),
                "resourceVersion": next_rv(),
                "creationTimestamp": now_iso(),
                "annotations": {"cluster-autoscaler.kubernetes.io/last-updated": stamp},
            },
            "data": {"status": status},
        }
    else:
        existing["data"] = {"status": status}
        existing["metadata"]["annotations"] = {"cluster-autoscaler.kubernetes.io/last-updated": stamp}
        existing["metadata"]["resourceVersion"] = next_rv()
