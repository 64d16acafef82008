"""Crash-looping pods of a bad deploy, and their events, in the Kubernetes API emulator.

Why this module exists: the ``bad_deploy`` incident (:mod:`opsconsole.sandbox.incidents`) is only visible
in Kubernetes: the new version of one workload fails at start-up, so the rollout's surge pods crash and
restart with the kubelet's back-off while the old pods keep serving. An SRE finds it as in production:
pods in ``CrashLoopBackOff`` with a growing ``restartCount`` and a ``lastState.terminated`` (exit code 1,
reason ``Error``), ``BackOff`` / ``Unhealthy`` warning events, and the stack trace in the container's log
(:mod:`opsconsole.sandbox.kube.logs`).

:func:`sync_crash_loops` runs at every publish, after the ordinary pods (:mod:`.pods`): for each active
``bad_deploy`` incident of the cluster's region (prod clusters only, not stopped) it writes
:data:`~opsconsole.sandbox.incidents.CRASH_LOOP_PODS` pods of a second ReplicaSet of the workload, and
their events; everything derives from the world's sim time and the incident (deterministic: the same
world gives the same pods, restart counts, timestamps and events). A pod or event whose content did not
change keeps its resourceVersion (no watch event); when the incident ends, the pods and their events go
(the deployment was rolled back).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from opsconsole.core.fleet.model import Environment
from opsconsole.sandbox.incidents import (
    CRASH_LOOP_PODS,
    CRASH_RUN_S,
    Incident,
    IncidentKind,
    bad_deploy_service,
    crash_loop_at,
)
from opsconsole.sandbox.kube.naming import pod_suffix, short_hash, uid
from opsconsole.sandbox.kube.pods import CPU_REQUEST_M, NextRv
from opsconsole.sandbox.kube.resources import NAMESPACE, JsonObj
from opsconsole.sandbox.kube.store import Cluster
from opsconsole.sandbox.world.ticks import TICK_S

__all__ = ["CRASH_STATE", "OWNER_ANNOTATION", "STATE_ANNOTATION", "bad_version", "sync_crash_loops"]

#: The annotation that says what a sandbox pod was built as, and its value for a crash-looping pod.
STATE_ANNOTATION = "sandbox.opsconsole/state"
CRASH_STATE = "crashloop"
#: The annotation on the events this module owns (their lifetime follows the pod, not the event TTL).
OWNER_ANNOTATION = "sandbox.opsconsole/owner"
#: Seconds between the starts of two crash-looping pods of one incident (they do not crash in step).
_STAGGER_S = 4
_FMT = "%Y-%m-%dT%H:%M:%SZ"


def bad_version(incident_id: str) -> str:
    """The image tag of the bad release an incident deployed (``1.1.0-rc3``-like, stable)."""
    return f"1.1.{int(short_hash(incident_id, 4), 16) % 7}"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime(_FMT)


def sync_crash_loops(cl: Cluster, incidents: list[Incident], now: datetime, stopped: bool,
                     next_rv: NextRv) -> None:
    """Make the cluster's crash-looping pods and their events match the active ``bad_deploy`` incidents
    at sim time ``now`` (see the module docstring)."""
    pods = cl.store("pods")
    events = cl.store("events")
    wanted_pods: dict[tuple[str, str], JsonObj] = {}
    wanted_events: dict[tuple[str, str], JsonObj] = {}
    svc = bad_deploy_service(cl.services)
    if cl.spec.environment is Environment.PROD and not stopped and svc is not None:
        ready_nodes = [
            n["metadata"]["name"] for _, n in sorted(cl.store("nodes").items())
            if n["status"]["conditions"][0]["status"] == "True"
        ]
        for inc in incidents:
            if inc.kind is not IncidentKind.BAD_DEPLOY or inc.region != cl.spec.region:
                continue
            for i in range(CRASH_LOOP_PODS):
                pod = _crash_pod(cl, inc, svc, i, ready_nodes, now)
                key = (NAMESPACE, pod["metadata"]["name"])
                wanted_pods[key] = pod
                for ev in _pod_events(cl, inc, pod, now):
                    wanted_events[(NAMESPACE, ev["metadata"]["name"])] = ev
    _apply(pods, wanted_pods, next_rv, lambda o: _annotation(o) == CRASH_STATE)
    _apply(events, wanted_events, next_rv, lambda o: _annotation(o, OWNER_ANNOTATION) == CRASH_STATE)


def _annotation(obj: JsonObj, key: str = STATE_ANNOTATION) -> str:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(key, ""))


def _apply(store: dict[tuple[str, str], JsonObj], wanted: dict[tuple[str, str], JsonObj], next_rv: NextRv,
           ours: Callable[[JsonObj], bool]) -> None:
    """Write ``wanted`` into ``store`` (a new resourceVersion only where the content changed) and remove
    the objects of ours that are no longer wanted."""
    for key, obj in wanted.items():
        old = store.get(key)
        if old is not None:
            old_rv = old["metadata"].get("resourceVersion")
            obj["metadata"]["resourceVersion"] = old_rv
            if old == obj:
                continue
        obj["metadata"]["resourceVersion"] = next_rv()
        store[key] = obj
    for key in [k for k, o in store.items() if k not in wanted and ours(o)]:
        del store[key]


def _crash_pod(
    cl: Cluster, inc: Incident, svc: str, i: int, ready_nodes: list[str], now: datetime
) -> JsonObj:
    spec = cl.spec
    version = bad_version(inc.id)
    template_hash = short_hash(f"{spec.name}/{svc}/{inc.id}", 10)
    name = f"{svc}-{template_hash}-{pod_suffix(spec.name + svc + inc.id, i)}"
    image = f"registry.voltage.internal/{svc}:{version}"
    started = datetime.fromtimestamp(inc.start_tick * TICK_S, UTC) + timedelta(seconds=_STAGGER_S * i)
    loop = crash_loop_at((now - started).total_seconds())
    node = ready_nodes[(int(short_hash(name, 4), 16)) % len(ready_nodes)] if ready_nodes else None
    pod_uid = uid(spec.name, "pods", name)
    container_id = f"containerd://{short_hash(name + str(loop.restarts), 8) * 8}"
    status: JsonObj = {
        "name": svc,
        "image": image,
        "imageID": f"{image}@sha256:{short_hash(image) * 8}",
        "ready": False,
        "started": loop.running,
        "restartCount": loop.restarts,
    }
    at = started + timedelta(seconds=loop.started_s)
    if loop.running:
        status["state"] = {"running": {"startedAt": _iso(at)}}
        status["containerID"] = container_id
    else:
        backoff = int(loop.next_start_s - (loop.last_finished_s or 0))
        status["state"] = {"waiting": {
            "reason": "CrashLoopBackOff",
            "message": f"back-off {_duration(backoff)} restarting failed container={svc} "
                       f"pod={name}_{NAMESPACE}({pod_uid})",
        }}
    if loop.last_started_s is not None and loop.last_finished_s is not None:
        status["lastState"] = {"terminated": {
            "exitCode": 1,
            "reason": "Error",
            "startedAt": _iso(started + timedelta(seconds=loop.last_started_s)),
            "finishedAt": _iso(started + timedelta(seconds=loop.last_finished_s)),
            "containerID": f"containerd://{short_hash(name + str(loop.restarts - 1), 8) * 8}",
        }}
    else:
        status["lastState"] = {}
    start_iso = _iso(started)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": pod_uid,
            "resourceVersion": "",
            "generation": 1,
            "creationTimestamp": start_iso,
            "labels": {
                "app": svc,
                "app.kubernetes.io/name": svc,
                "app.kubernetes.io/part-of": "voltage",
                "app.kubernetes.io/version": version,
                "pod-template-hash": template_hash,
            },
            "annotations": {STATE_ANNOTATION: CRASH_STATE, "sandbox.opsconsole/incident": inc.id},
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": f"{svc}-{template_hash}",
                "uid": uid(spec.name, "replicasets", svc, inc.id),
                "controller": True,
                "blockOwnerDeletion": True,
            }],
        },
        "spec": {
            "containers": [{
                "name": svc,
                "image": image,
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": f"{CPU_REQUEST_M}m", "memory": "512Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
                "livenessProbe": {"httpGet": {"path": "/livez", "port": 8080}, "periodSeconds": 10,
                                  "failureThreshold": 3},
            }],
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            **({"nodeName": node} if node is not None else {}),
        },
        "status": {
            "phase": "Running",
            "qosClass": "Burstable",
            "podIP": _pod_ip(name),
            "startTime": start_iso,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": start_iso},
                {"type": "Initialized", "status": "True", "lastTransitionTime": start_iso},
                {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                 "message": f"containers with unready status: [{svc}]", "lastTransitionTime": start_iso},
                {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady",
                 "message": f"containers with unready status: [{svc}]", "lastTransitionTime": start_iso},
            ],
            "containerStatuses": [status],
        },
    }


def _pod_ip(name: str) -> str:
    h = int(short_hash(name), 16)
    return f"10.{(h >> 16) % 200 + 20}.{(h >> 8) % 256}.{h % 250 + 2}"


def _duration(seconds: int) -> str:
    """Go's duration text as the kubelet writes it (``40s``, ``2m40s``, ``5m0s``)."""
    if seconds < 60:
        return f"{seconds}s"
    return f"{seconds // 60}m{seconds % 60}s"


def _pod_events(cl: Cluster, inc: Incident, pod: JsonObj, now: datetime) -> list[JsonObj]:
    """The pod's events as the scheduler and the kubelet record them (repeats counted)."""
    meta = pod["metadata"]
    name = meta["name"]
    svc = pod["spec"]["containers"][0]["name"]
    image = pod["spec"]["containers"][0]["image"]
    node = pod["spec"].get("nodeName", "")
    started = datetime.strptime(meta["creationTimestamp"], _FMT).replace(tzinfo=UTC)
    cs = pod["status"]["containerStatuses"][0]
    restarts = int(cs["restartCount"])
    runs = restarts + (1 if cs["state"].get("running") else 0)
    loop = crash_loop_at((now - started).total_seconds())
    last_run = started + timedelta(seconds=loop.started_s)
    last_crash = started + timedelta(seconds=loop.last_finished_s or 0)
    involved = {"kind": "Pod", "namespace": NAMESPACE, "name": name, "uid": meta["uid"], "apiVersion": "v1",
                "fieldPath": f"spec.containers{{{svc}}}"}
    ip = pod["status"]["podIP"]
    out = [
        _event(cl, name, "Scheduled", "Normal", f"Successfully assigned {NAMESPACE}/{name} to {node}",
               "default-scheduler", 1, started, started, {**involved, "fieldPath": ""}),
        _event(cl, name, "Pulled", "Normal",
               f'Container image "{image}" already present on machine', "kubelet", runs, started, last_run,
               involved, node),
        _event(cl, name, "Created", "Normal", f"Created container {svc}", "kubelet", runs, started,
               last_run, involved, node),
        _event(cl, name, "Started", "Normal", f"Started container {svc}", "kubelet", runs, started,
               last_run, involved, node),
        _event(cl, name, "Unhealthy", "Warning",
               f'Readiness probe failed: Get "http://{ip}:8080/healthz": dial tcp {ip}:8080: connect: '
               "connection refused", "kubelet", runs, started + timedelta(seconds=1),
               last_run + timedelta(seconds=min(1, CRASH_RUN_S)), involved, node),
    ]
    if restarts:
        out.append(_event(
            cl, name, "BackOff", "Warning",
            f"Back-off restarting failed container {svc} in pod {name}_{NAMESPACE}({meta['uid']})",
            "kubelet", restarts, started + timedelta(seconds=CRASH_RUN_S), last_crash, involved, node))
    del inc
    return out


def _event(cl: Cluster, pod: str, reason: str, kind: str, message: str, source: str, count: int,
           first: datetime, last: datetime, involved: JsonObj, host: str = "") -> JsonObj:
    name = f"{pod}.{short_hash(pod + reason, 8)}{short_hash(reason + pod, 8)}"
    source_obj: JsonObj = {"component": source}
    if host:
        source_obj["host"] = host
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": uid(cl.spec.name, "events", NAMESPACE, name),
            "resourceVersion": "",
            "creationTimestamp": _iso(first),
            "annotations": {OWNER_ANNOTATION: CRASH_STATE},
        },
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": kind,
        "count": max(1, count),
        "firstTimestamp": _iso(first),
        "lastTimestamp": _iso(max(first, last)),
        "source": source_obj,
        "reportingComponent": source,
        "reportingInstance": host,
    }
