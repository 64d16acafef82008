"""What the Kubernetes API emulator serves: the resource table, and the discovery documents built from it.

Why this module exists: the official client and ``kubernetes.core`` find resources through discovery
(``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>/<version>``) before they call them, and the router
(:mod:`opsconsole.sandbox.kube.rest`) resolves a URL to a resource with the same table. Adding a
resource is one line in :data:`RESOURCES`; discovery follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opsconsole.core.fleet.model import ClusterKind
from opsconsole.sandbox.kube.naming import short_hash

__all__ = [
    "AUTOSCALER_STATUS",
    "BY_PATH",
    "CAPACITY_LABELS",
    "GROUPS",
    "NAMESPACE",
    "RESOURCES",
    "VERSIONS",
    "JsonObj",
    "Resource",
    "api_group",
    "api_group_list",
    "api_versions",
    "qualified",
    "resource_list",
    "version_info",
]

JsonObj = dict[str, Any]

#: The namespace the fleet's workloads run in, on every cluster (each cluster serves one environment).
NAMESPACE = "voltage"
#: Namespace and name of the cluster autoscaler's status ConfigMap.
AUTOSCALER_STATUS = ("kube-system", "cluster-autoscaler-status")
#: Label that marks a node as spot, and its value, per managed Kubernetes offering (the real ones).
CAPACITY_LABELS: dict[ClusterKind, tuple[str, str | None, str | None]] = {
    # kind: (label, value on spot nodes, value on on-demand nodes; None: label absent)
    ClusterKind.EKS: ("eks.amazonaws.com/capacityType", "SPOT", "ON_DEMAND"),
    ClusterKind.GKE: ("cloud.google.com/gke-spot", "true", None),
    ClusterKind.AKS: ("kubernetes.azure.com/scalesetpriority", "spot", None),
}
#: The server version each managed offering reports (``/version``, kubelet versions).
VERSIONS = {
    ClusterKind.EKS: "v1.31.4-eks-2d5f260",
    ClusterKind.GKE: "v1.31.5-gke.1023000",
    ClusterKind.AKS: "v1.31.3",
}


@dataclass(frozen=True)
class Resource:
    """One resource type served, as discovery describes it."""

    group_version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()

    @property
    def writable(self) -> bool:
        return "update" in self.verbs

    @property
    def group(self) -> str:
        return self.group_version.split("/")[0] if "/" in self.group_version else ""


_RW = ("create", "get", "list", "patch", "update", "watch")
_RO = ("get", "list", "watch")
RESOURCES: tuple[Resource, ...] = (
    Resource("v1", "namespaces", "Namespace", False, _RW, ("ns",)),
    Resource("v1", "nodes", "Node", False, _RO, ("no",)),
    Resource("v1", "pods", "Pod", True, _RO, ("po",), ("log",)),
    Resource("v1", "events", "Event", True, _RO, ("ev",)),
    Resource("v1", "configmaps", "ConfigMap", True, _RW, ("cm",)),
    Resource("apps/v1", "deployments", "Deployment", True, _RW, ("deploy",), ("scale", "status")),
    Resource(
        "autoscaling/v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        True,
        _RW,
        ("hpa",),
        ("status",),
    ),
)
#: (group/version, plural) → resource.
BY_PATH = {(r.group_version, r.plural): r for r in RESOURCES}
#: API group → its one served version.
GROUPS = {"apps": "v1", "autoscaling": "v2"}
_SUB_VERBS = {
    "scale": ("get", "patch", "update"),
    "status": ("get", "patch", "update"),
    "log": ("get",),
}


def qualified(res: Resource) -> str:
    """``deployments.apps``, ``pods``: how the API names a resource in messages."""
    return f"{res.plural}.{res.group}" if res.group else res.plural


def version_info(kind: ClusterKind) -> JsonObj:
    """``/version`` of a cluster of this kind."""
    git = VERSIONS[kind]
    return {
        "major": "1",
        "minor": "31",
        "gitVersion": git,
        "gitCommit": short_hash(git, 8) * 5,
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.22.9",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(port: int | None) -> JsonObj:
    """``/api``: the core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{port}"}],
    }


def api_group_list() -> JsonObj:
    """``/apis``: the named groups."""
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g) for g in GROUPS]}


def api_group(name: str) -> JsonObj:
    """``/apis/<group>``."""
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name)}


def _group(name: str) -> JsonObj:
    gv = {"groupVersion": f"{name}/{GROUPS[name]}", "version": GROUPS[name]}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


def resource_list(group_version: str) -> JsonObj:
    """``/api/v1`` or ``/apis/<group>/<version>``: the resources and subresources of one group version."""
    resources: list[JsonObj] = []
    for res in RESOURCES:
        if res.group_version != group_version:
            continue
        entry: JsonObj = {
            "name": res.plural,
            "singularName": res.kind.lower(),
            "namespaced": res.namespaced,
            "kind": res.kind,
            "verbs": list(res.verbs),
            "shortNames": list(res.short_names),
            "storageVersionHash": short_hash(res.plural, 8) + "AAA=",
        }
        if res.plural in ("pods", "deployments", "horizontalpodautoscalers"):
            entry["categories"] = ["all"]
        resources.append(entry)
        for sub in res.subresources:
            sub_entry: JsonObj = {
                "name": f"{res.plural}/{sub}",
                "singularName": "",
                "namespaced": res.namespaced,
                "kind": res.kind,
                "verbs": list(_SUB_VERBS[sub]),
            }
            if sub == "scale":
                sub_entry.update({"kind": "Scale", "group": "autoscaling", "version": "v1"})
            elif sub == "log":
                sub_entry["kind"] = "Pod"
            resources.append(sub_entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }
