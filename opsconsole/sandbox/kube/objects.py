"""The namespaces, Deployments and HPAs of each cluster: seeded from the fleet, their status from the world.

Why this module exists: the ``k8s`` source reads workloads (replicas, readiness, HPA bounds and CPU
utilisation) from these objects, and playbooks scale them; their shape must be what the real API
serves. :func:`seed_clusters` builds every cluster at start (one Deployment + HPA per service of the
cluster's environment, in namespace :data:`~opsconsole.sandbox.kube.resources.NAMESPACE`, plus nodes and
the autoscaler status from :mod:`opsconsole.sandbox.kube.nodes`); :func:`deployment_status` and
:func:`hpa_status` render a world workload as the status the controllers would write.
"""

from __future__ import annotations

from collections.abc import Callable

from opsconsole.core.fleet.model import ClusterSpec, Fleet, WorkloadState
from opsconsole.sandbox.kube.naming import now_iso, uid
from opsconsole.sandbox.kube.nodes import set_autoscaler_status, set_nodes
from opsconsole.sandbox.kube.pods import CPU_REQUEST_M
from opsconsole.sandbox.kube.resources import NAMESPACE, JsonObj
from opsconsole.sandbox.kube.store import Cluster, PodCounts

__all__ = ["deployment_status", "hpa_status", "seed_clusters"]

#: The HPAs' CPU utilisation target, in percent.
HPA_TARGET_PCT = 70

NextRv = Callable[[], str]


def seed_clusters(fleet: Fleet, next_rv: NextRv) -> dict[str, Cluster]:
    """Every cluster of the fleet at its minimum size: namespaces, workloads, nodes, autoscaler status."""
    clusters: dict[str, Cluster] = {}
    created = now_iso()
    for spec in sorted(fleet.clusters.values(), key=lambda c: c.name):
        services = sorted(s.name for s in fleet.services_in(spec.environment))
        cl = Cluster(spec=spec, services=services)
        clusters[spec.name] = cl
        ns_store = cl.objects.setdefault("namespaces", {})
        for ns in ("default", "kube-system", NAMESPACE):
            ns_store[("", ns)] = _namespace(spec, ns, created, next_rv)
        deps = cl.objects.setdefault("deployments", {})
        hpas = cl.objects.setdefault("horizontalpodautoscalers", {})
        for svc_name in services:
            svc = fleet.services[svc_name]
            deps[(NAMESPACE, svc_name)] = _deployment(spec, svc_name, svc.hpa.min, created, next_rv)
            hpas[(NAMESPACE, svc_name)] = _hpa(spec, svc_name, svc.hpa.min, svc.hpa.max, created, next_rv)
            cl.published[svc_name] = (svc.hpa.min, svc.hpa.min, svc.hpa.max)
            cl.pod_counts[svc_name] = PodCounts()
        cl.objects["nodes"] = {}
        cl.objects["events"] = {}
        cl.objects["configmaps"] = {}
        rest = max(0, spec.nodes.min - spec.reserved_nodes)
        spot = int(rest * spec.spot_ratio + 0.5)
        set_nodes(cl, spec.nodes.min - spot, spot, spec.nodes.min, next_rv)
        set_autoscaler_status(cl, spec.nodes.min, spec.nodes.max, spec.nodes.min, spec.nodes.min, next_rv)
    return clusters


def _namespace(spec: ClusterSpec, ns: str, created: str, next_rv: NextRv) -> JsonObj:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": ns,
            "uid": uid(spec.name, "namespaces", ns),
            "resourceVersion": next_rv(),
            "creationTimestamp": created,
            "labels": {"kubernetes.io/metadata.name": ns},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def _deployment(spec: ClusterSpec, svc: str, replicas: int, created: str, next_rv: NextRv) -> JsonObj:
    labels = {"app": svc, "app.kubernetes.io/name": svc, "app.kubernetes.io/part-of": "voltage"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": svc,
            "namespace": NAMESPACE,
            "uid": uid(spec.name, "deployments", NAMESPACE, svc),
            "resourceVersion": next_rv(),
            "generation": 1,
            "creationTimestamp": created,
            "labels": labels,
            "annotations": {"deployment.kubernetes.io/revision": "1"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": svc}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": [
                        {
                            "name": svc,
                            "image": f"registry.voltage.internal/{svc}:1.0.0",
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                            "resources": {
                                "requests": {"cpu": f"{CPU_REQUEST_M}m", "memory": "512Mi"},
                                "limits": {"cpu": "1", "memory": "1Gi"},
                            },
                        }
                    ],
                    "restartPolicy": "Always",
                },
            },
        },
        "status": {"observedGeneration": 1},
    }


def _hpa(spec: ClusterSpec, svc: str, lo: int, hi: int, created: str, next_rv: NextRv) -> JsonObj:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": svc,
            "namespace": NAMESPACE,
            "uid": uid(spec.name, "hpa", NAMESPACE, svc),
            "resourceVersion": next_rv(),
            "generation": 1,
            "creationTimestamp": created,
            "labels": {"app": svc},
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": svc},
            "minReplicas": lo,
            "maxReplicas": hi,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": HPA_TARGET_PCT},
                    },
                }
            ],
        },
        "status": {"currentReplicas": 0, "desiredReplicas": lo},
    }


def deployment_status(generation: int, desired: int, ready: int) -> JsonObj:
    """A deployment's status as the controller writes it for ``desired`` replicas, ``ready`` of them ready.

    Zero counts are omitted, as the real API server does (omitempty): kubernetes.core's waiter relies on
    it (a deployment at 0 is ready when replicas and availableReplicas are both absent).
    """
    status: JsonObj = {"observedGeneration": generation}
    if desired:
        status["replicas"] = desired
        status["updatedReplicas"] = desired
    if ready:
        status["readyReplicas"] = ready
        status["availableReplicas"] = ready
    if desired - ready > 0:
        status["unavailableReplicas"] = desired - ready
    available = ready >= min(desired, 1)
    status["conditions"] = [
        {
            "type": "Available",
            "status": "True" if available else "False",
            "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
        },
        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
    ]
    return status


def hpa_status(generation: int, desired: int, ws: WorkloadState) -> JsonObj:
    """An HPA's status as the controller writes it for the world's workload ``ws`` at ``desired`` replicas."""
    utilisation = float(ws.extra.get("utilisation", ws.cpu_utilisation))
    pct = round(min(utilisation, 99.0) * 100)
    return {
        "observedGeneration": generation,
        "currentReplicas": desired,
        "desiredReplicas": desired,
        "currentMetrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "current": {
                        "averageUtilization": pct,
                        "averageValue": f"{round(min(utilisation, 99.0) * CPU_REQUEST_M)}m",
                    },
                },
            }
        ],
        "conditions": [
            {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"},
            # A deployment scaled to 0 disables its HPA (real behaviour without HPAScaleToZero).
            {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound"}
            if desired
            else {"type": "ScalingActive", "status": "False", "reason": "ScalingDisabled"},
            {
                "type": "ScalingLimited",
                "status": "True" if desired in (ws.hpa_min, ws.hpa_max) else "False",
                "reason": "TooFewReplicas" if desired == ws.hpa_min else "DesiredWithinRange",
            },
        ],
    }
