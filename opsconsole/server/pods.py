"""``/api/v1/clusters/{cluster}/pods``: pods, a pod's log, events and description, for every face.

Why this module exists: a crash-looping pod is found from the console or the CLI (``opsconsole pods``,
``logs``, ``events``), but only the server holds the cluster credentials, so these reads go through it
like everything else. They change nothing, so any authenticated person may make them (viewers too); the
:class:`~opsconsole.server.app.Guard` has already authenticated the request before a route runs.

The routes read through the first fleet source that is a :class:`~opsconsole.core.fleet.pods.PodReader`
(the ``k8s`` source: its informer cache for the pod list, one API call for a log or the events). A
server without one (the sandbox's ``sim`` reader, which reads the world in-process and has no Kubernetes
API) answers 503 with a problem saying so. An unknown cluster or pod is a 404; a log the API refuses
(``previous terminated container … not found``) a 400 carrying the API server's words.

Routes (records as :mod:`opsconsole.core.wire` JSON)::

    GET /api/v1/clusters/{cluster}/pods?workload=&namespace=        → list[PodInfo]
    GET /api/v1/clusters/{cluster}/pods/{namespace}/{pod}/log?previous=&tail=&container=  → PodLog
    GET /api/v1/clusters/{cluster}/pods/{namespace}/{pod}/events    → list[EventInfo]
    GET /api/v1/clusters/{cluster}/pods/{namespace}/{pod}/describe  → PodDescription

Include it with ``app.include_router(router)`` (``opsconsole.server.app.create_app`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from opsconsole.core import wire
from opsconsole.core.errors import OpsError
from opsconsole.core.fleet.engine import underlying
from opsconsole.core.fleet.pods import PodDescription, PodLog, PodNotFound, PodReader, PodsUnavailable
from opsconsole.server.auth import AuthResult, Unauthenticated
from opsconsole.server.problems import problem

__all__ = ["MAX_TAIL", "find_reader", "router"]

API = "/api/v1"
#: The most log lines one request may ask for.
MAX_TAIL = 10_000
#: opsconsole.server.app.AUTH_SCOPE_KEY (app imports this module, so it is not imported from there).
AUTH_SCOPE_KEY = "opsconsole.auth"

T = TypeVar("T")

router = APIRouter(tags=["pods"])

_NO_READER = (
    "pods, logs and events are read from each cluster's Kubernetes API, and this server has no Kubernetes "
    "source: the sandbox's in-process reader (OPSCONSOLE_SANDBOX_READER=sim) has no API to ask. Start the "
    "server on the local cloud (OPSCONSOLE_SANDBOX_READER=cloud, the default) or, live, configure the "
    "kubeconfig in inventory/group_vars/all.yml (opsconsole_clouds.kubernetes)"
)


def find_reader(core: Any) -> PodReader:
    """The server's pod reader: ``core.pod_reader`` when wired, else the first fleet source that is one.

    Raises:
        PodsUnavailable: no source can read pods (the ``sim`` reader).
    """
    wired = getattr(core, "pod_reader", None)
    if isinstance(wired, PodReader):
        return wired
    prepare = getattr(core, "prepare_fleet", None)
    if callable(prepare):  # a one-shot command's sources are built on first need: this is one
        prepare()
    for source in getattr(core, "fleet_sources", ()):
        real = underlying(source)
        if isinstance(real, PodReader):
            return real
    raise PodsUnavailable(_NO_READER)


def _problem(status: int, title: str, detail: str, *, user_error: bool) -> Response:
    return problem(status, title, detail, user_error=user_error)


def _answer(request: Request, cluster: str, read: Callable[[PodReader], T]) -> Response:
    """Check the caller and the cluster, find the reader, read, and answer the record or the problem."""
    who = request.scope.get(AUTH_SCOPE_KEY)
    if not isinstance(who, AuthResult):  # the Guard authenticates every /api/v1 route first
        raise Unauthenticated("no credential")
    core = request.app.state.runtime.core
    if cluster not in core.fleet.clusters:
        known = ", ".join(sorted(core.fleet.clusters))
        return _problem(404, "not found", f"unknown cluster {cluster!r}; known clusters: {known}",
                        user_error=True)
    try:
        value = read(find_reader(core))
    except PodsUnavailable as exc:
        return _problem(503, exc.title, exc.message, user_error=False)
    except PodNotFound as exc:
        return _problem(404, exc.title, exc.message, user_error=True)
    except OpsError:
        raise  # the app's handler: 400 for a refusal, 500 for a source error
    return Response(wire.dumps(value), media_type="application/json")


@router.get(f"{API}/clusters/{{cluster}}/pods")
def list_pods(request: Request, cluster: str, workload: str | None = None,
              namespace: str | None = None) -> Response:
    """The cluster's pods (status, ready, restarts, age, node, node group), of one workload if given."""
    return _answer(request, cluster, lambda r: r.pods(cluster, namespace=namespace or None,
                                                      workload=workload or None))


@router.get(f"{API}/clusters/{{cluster}}/pods/{{namespace}}/{{pod}}/log")
def pod_log(
    request: Request,
    cluster: str,
    namespace: str,
    pod: str,
    previous: bool = False,
    tail: Annotated[int, Query(ge=0, le=MAX_TAIL)] = 200,
    container: str | None = None,
) -> Response:
    """A container's last ``tail`` log lines (0: all); ``previous``: the last terminated container."""

    def read(r: PodReader) -> PodLog:
        text = r.pod_log(cluster, namespace, pod, previous=previous, tail_lines=tail, container=container)
        return PodLog(cluster=cluster, namespace=namespace, pod=pod, container=container or "",
                      previous=previous, text=text)

    return _answer(request, cluster, read)


@router.get(f"{API}/clusters/{{cluster}}/pods/{{namespace}}/{{pod}}/events")
def pod_events(request: Request, cluster: str, namespace: str, pod: str) -> Response:
    """The events about one pod (Normal and Warning), oldest first."""
    return _answer(request, cluster, lambda r: r.pod_events(cluster, namespace, pod))


@router.get(f"{API}/clusters/{{cluster}}/pods/{{namespace}}/{{pod}}/describe")
def describe_pod(request: Request, cluster: str, namespace: str, pod: str) -> Response:
    """``kubectl describe pod``: the pod, a summary of its spec and status, and its events."""

    def read(r: PodReader) -> PodDescription:
        details = dict(r.describe_pod(cluster, namespace, pod))
        info = details.pop("pod")
        events = tuple(r.pod_events(cluster, namespace, pod))
        return PodDescription(pod=info, details=details, events=events)

    return _answer(request, cluster, read)
