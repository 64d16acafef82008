"""Pods, their events and their logs, as the faces show them: the records of ``opsconsole pods``.

Why this module exists: an SRE following a bad deploy goes from a workload to its pods (status, restarts,
age, node), to a pod's log (``--previous`` for the container that crashed) and to its events, and from a
pod to its node, node group and region. Only the Kubernetes API knows these, and only the ``k8s``
provider speaks it; the server, the wire codec, the CLI and the console need them as plain records. So
the records live here, in the core (pure: no SDK), and :class:`PodReader` is what the server asks of a
source that can read them (:class:`opsconsole.providers.k8s.KubernetesSource` is one).

Use::

    reader: PodReader = ...                      # the server finds it among the fleet sources
    pods = reader.pods("eks-use1-prod", workload="checkout")
    text = reader.pod_log("eks-use1-prod", "voltage", pods[0].name, previous=True, tail_lines=100)
    events = reader.pod_events("eks-use1-prod", "voltage", pods[0].name)

Every record crosses the wire through :mod:`opsconsole.core.wire` (this module is in its
``RECORD_MODULES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from opsconsole.core.errors import OpsError, UsageError

__all__ = [
    "EventInfo", "PodDescription", "PodInfo", "PodLog", "PodNotFound", "PodReader", "PodsUnavailable",
    "kube_age",
]


class PodsUnavailable(OpsError):
    """No source of this server can read pods (the ``sim`` reader, or no Kubernetes source)."""

    title = "pods unavailable"


class PodNotFound(UsageError):
    """The cluster has no such pod (the server answers 404)."""

    title = "pod not found"


@dataclass(frozen=True)
class PodInfo:
    """One pod as ``kubectl get pods -o wide`` shows it, with the path to its node group and region."""

    cluster: str
    namespace: str
    name: str
    #: The workload (Deployment) it belongs to: its ``app`` label ("" when none).
    workload: str
    #: ``Running``, ``Pending``, ``Succeeded``, ``Failed``, ``Unknown``.
    phase: str
    #: What ``kubectl`` shows in STATUS: a waiting / terminated reason (``CrashLoopBackOff``), else phase.
    status: str
    ready: int
    containers: int
    restarts: int
    #: Seconds since the pod was created (0 when unknown or in the future).
    age_s: float
    node: str | None
    #: The node's group / pool (EKS node group, GKE node pool, AKS agent pool) from its labels.
    node_group: str | None
    region: str
    image: str = ""
    #: The last terminated container's reason and exit code, e.g. ``Error (exit 1)``; "" when none.
    last_exit: str = ""
    created: datetime | None = None

    @property
    def ready_text(self) -> str:
        return f"{self.ready}/{self.containers}"

    @property
    def unhealthy(self) -> bool:
        """Not serving: not every container ready, or the pod stuck in a waiting reason."""
        return self.ready < self.containers or self.status not in ("Running", "Succeeded")


@dataclass(frozen=True)
class EventInfo:
    """One Kubernetes event about an object (a pod's ``kubectl describe`` tail)."""

    type: str
    reason: str
    message: str
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    source: str
    object_kind: str
    object_name: str


@dataclass(frozen=True)
class PodLog:
    """A container's log as read from the API (the last ``tail_lines`` lines)."""

    cluster: str
    namespace: str
    pod: str
    container: str
    previous: bool
    text: str

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()


@dataclass(frozen=True)
class PodDescription:
    """``kubectl describe pod`` as data: a summary of the spec and status, and the pod's events."""

    pod: PodInfo
    #: Labels, annotations, IP, QoS, conditions, containers (image, state, last state, probes, requests).
    details: dict[str, Any]
    events: tuple[EventInfo, ...] = ()


@runtime_checkable
class PodReader(Protocol):
    """What the server asks of a source that can read pods (see the module docstring).

    Each method raises :class:`~opsconsole.core.errors.UsageError` for an unknown cluster, and
    :class:`~opsconsole.core.errors.SourceError` when the cluster cannot be read; a missing pod is a
    ``UsageError`` naming it.
    """

    def pods(
        self, cluster: str, *, namespace: str | None = None, workload: str | None = None
    ) -> list[PodInfo]:
        ...

    def pod_log(
        self,
        cluster: str,
        namespace: str,
        pod: str,
        *,
        previous: bool = False,
        tail_lines: int = 200,
        container: str | None = None,
    ) -> str:
        ...

    def pod_events(self, cluster: str, namespace: str, pod: str) -> list[EventInfo]:
        ...

    def describe_pod(self, cluster: str, namespace: str, pod: str) -> dict[str, Any]:
        ...


def kube_age(seconds: float) -> str:
    """An age as kubectl's AGE column writes it: ``45s``, ``12m``, ``3h``, ``5d``."""
    s = int(max(0.0, seconds))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"
