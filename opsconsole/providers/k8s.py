"""The ``k8s`` fleet source: workloads and clusters as the Kubernetes API of each cluster reports them.

Why this module exists: replicas, HPA bounds and CPU, pending pods, restarts, nodes, the spot /
on-demand split and the cluster autoscaler's bounds are only known to each cluster's API server.
:class:`KubernetesSource` reads them with the official ``kubernetes`` client, one ``ApiClient`` per
cluster from a kubeconfig context, all clusters concurrently, and translates them into
:class:`~opsconsole.core.fleet.model.WorkloadState` (one per cluster × service of the cluster's environment;
``p95_ms`` / ``error_rate`` / ``rps`` are ``None``: the Kubernetes API does not measure requests) and
:class:`~opsconsole.core.fleet.model.ClusterState` (one per cluster).

How to use it::

    source = KubernetesSource(fleet, "~/.kube/config", contexts={"eks-use1-prod": "arn:aws:eks:..."})
    source = KubernetesSource.from_endpoints(fleet, emulator.start())     # the sandbox
    reading = source.read()       # SourceReading(records, problems=("cluster x: ...",) for a half answer)

Per cluster it lists deployments, HPAs (autoscaling/v2) and pods of the workloads' namespace, all nodes,
Warning events of all namespaces and reads ``kube-system/cluster-autoscaler-status``: plain GETs through
the ``ApiClient``'s REST client (its connection pool, TLS, proxy, retries and kubeconfig auth), decoded
with ``json.loads`` into plain dicts (no generated API methods, no model objects). Every list is
paginated (``limit`` + ``continue``); a 410 Gone (expired continue token) restarts that list from scratch
and keeps only the new pages, so nothing is counted twice. Every call carries
``_request_timeout=(connect, read)`` cut to what is left of ``timeout_s``, the whole read returns within
``timeout_s`` (clusters still running then are reported as problems), and urllib3 retries are bounded
(one connect and one read retry, no status retries). HTTP 429 backs off (``Retry-After``, capped,
bounded attempts) and is reported in ``problems``. 401 / 403 raise :class:`SourceError` naming the
kubeconfig context; a refused connection names the server. When some clusters fail and others answer,
the reading carries the others' records and one problem per failed cluster; when every cluster fails,
:meth:`read` raises :class:`SourceError` with the first reasons.

Values: ``cpu_utilisation`` is the HPA's ``currentMetrics`` CPU ``averageUtilization`` / 100 (capped at
1.0; the API reports whole percent, so it agrees with the world within 0.005); ``reserved_nodes`` is
``min(on-demand nodes, ClusterSpec.reserved_nodes)`` because reserved capacity is a billing construct;
spot nodes are told by the clouds' real labels (:data:`SPOT_LABELS`); ``nodes_min`` / ``nodes_max`` come
from the autoscaler status text (``minSize=…, maxSize=…``, summed over node groups), or from the
inventory when the ConfigMap is missing (``extra["nodes_bounds_from"] = "inventory"``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import urllib3
import yaml
from kubernetes import config as k8s_config

# Resolved at import (the client loads its modules lazily). The generated, pydantic-validated API classes
# (~0.9 s to load) are not used: lists and reads go through the ApiClient's REST client (see _call).
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from opsconsole.core.errors import SourceError
from opsconsole.core.fleet.engine import SourceReading
from opsconsole.core.fleet.model import ClusterSpec, ClusterState, Fleet, FleetRecord, WorkloadState
from opsconsole.sandbox.emulator import Endpoints

__all__ = ["SOURCE_NAME", "SPOT_LABELS", "KubernetesSource"]

log = logging.getLogger(__name__)

SOURCE_NAME = "k8s"
#: (label, value) pairs that mark a spot node: EKS managed node groups, Karpenter, GKE, AKS.
SPOT_LABELS: tuple[tuple[str, str], ...] = (
    ("eks.amazonaws.com/capacityType", "SPOT"),
    ("karpenter.sh/capacity-type", "spot"),
    ("cloud.google.com/gke-spot", "true"),
    ("cloud.google.com/gke-preemptible", "true"),
    ("kubernetes.azure.com/scalesetpriority", "spot"),
)
AUTOSCALER_STATUS = ("kube-system", "cluster-autoscaler-status")
_BOUNDS_RE = re.compile(r"minSize=(\d+),\s*maxSize=(\d+)")
_MAX_PROBLEMS_IN_ERROR = 3


class _Gone(Exception):
    """A continue token expired (HTTP 410): the list must start again."""


class _ClusterFailed(Exception):
    """One cluster could not be read; the message names the cluster and the reason."""


@dataclass
class _Context:
    """One cluster's connection and what happened on it during the current read."""

    spec: ClusterSpec
    context: str
    server: str = "?"
    api: Any = None
    throttled: int = 0
    backoff_s: float = 0.0
    relists: int = 0
    notes: list[str] = field(default_factory=list)
    host: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    auth_query: list[tuple[str, str]] = field(default_factory=list)


class KubernetesSource:
    """A :class:`~opsconsole.core.fleet.engine.FleetSource` over the Kubernetes API of every fleet cluster.

    Args:
        fleet: the fleet (which clusters to read, their environment's services, reserved nodes).
        kubeconfig: a kubeconfig path, or an already loaded kubeconfig mapping.
        contexts: cluster name → kubeconfig context; a cluster not listed uses the context named like
            the cluster.
        timeout_s: upper bound of one :meth:`read`, all clusters included.
        namespace: the namespace the fleet's workloads run in.
        clusters: read only these clusters (default: every cluster of the fleet).
        connect_timeout_s: TCP connect timeout of each call.
        page_size: ``limit`` of every list call.
        max_throttle_retries: how many times one call is retried after a 429.
        backoff_cap_s: longest single back-off after a 429 (``Retry-After`` is honoured up to it).
        event_window_s: Warning events whose last occurrence is older than this are not counted.
        max_workers: clusters read in parallel.
        name: the source name.
    """

    name: str

    def __init__(
        self,
        fleet: Fleet,
        kubeconfig: str | Path | Mapping[str, Any],
        *,
        contexts: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
        namespace: str = "voltage",
        clusters: list[str] | None = None,
        connect_timeout_s: float = 1.0,
        page_size: int = 500,
        max_throttle_retries: int = 3,
        backoff_cap_s: float = 1.0,
        event_window_s: float = 900.0,
        max_workers: int = 16,
        name: str = SOURCE_NAME,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        self.name = name
        self._fleet = fleet
        self._timeout_s = timeout_s
        self._namespace = namespace
        self._connect_s = connect_timeout_s
        self._page_size = page_size
        self._max_throttle = max_throttle_retries
        self._backoff_cap_s = backoff_cap_s
        self._event_window_s = event_window_s
        self._max_workers = max(1, max_workers)
        self._kubeconfig_source = kubeconfig
        self._kubeconfig: dict[str, Any] | None = None
        self._client_lock = threading.Lock()
        names = sorted(fleet.clusters) if clusters is None else list(clusters)
        unknown = [c for c in names if c not in fleet.clusters]
        if unknown:
            raise ValueError(f"unknown cluster(s): {', '.join(unknown)}")
        mapping = dict(contexts or {})
        self._contexts = {c: _Context(fleet.clusters[c], mapping.get(c, c)) for c in names}

    @classmethod
    def from_endpoints(cls, fleet: Fleet, endpoints: Endpoints, **kwargs: Any) -> KubernetesSource:
        """Build the source for the sandbox emulator (:class:`opsconsole.sandbox.kube.KubeApiEmulator`).

        Uses ``endpoints.settings["kubeconfig"]`` (contexts named like the clusters) and
        ``settings["namespace"]``; ``kwargs`` go to the constructor.
        """
        try:
            kubeconfig = endpoints.settings["kubeconfig"]
        except KeyError:
            raise SourceError("the Kubernetes endpoints carry no kubeconfig setting") from None
        kwargs.setdefault("namespace", endpoints.settings.get("namespace", "voltage"))
        # The emulator answers from this process: more reader threads only fight it for the GIL
        # (measured on 2 cores: 4 workers ≈ 0.4 s per full read, 16 workers ≈ 1.2 s).
        kwargs.setdefault("max_workers", 4)
        return cls(fleet, kubeconfig, **kwargs)

    # -- clients ----------------------------------------------------------------------------------

    def _config_dict(self) -> dict[str, Any]:
        if self._kubeconfig is None:
            source = self._kubeconfig_source
            if isinstance(source, Mapping):
                self._kubeconfig = dict(source)
            else:
                path = Path(source).expanduser()
                try:
                    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
                except (OSError, yaml.YAMLError) as exc:
                    raise SourceError(f"cannot read kubeconfig {path}: {exc}") from None
                if not isinstance(loaded, dict):
                    raise SourceError(f"kubeconfig {path} is not a mapping")
                self._kubeconfig = loaded
        return self._kubeconfig

    def _api(self, ctx: _Context) -> Any:
        """The cluster's ApiClient, built once from its kubeconfig context."""
        with self._client_lock:
            if ctx.api is not None:
                return ctx.api
            configuration = Configuration()
            try:
                k8s_config.load_kube_config_from_dict(  # type: ignore[no-untyped-call]  # untyped module
                    config_dict=self._config_dict(),
                    context=ctx.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
            except (ConfigException, KeyError, TypeError, ValueError) as exc:
                raise _ClusterFailed(f"kubeconfig context {ctx.context!r}: {exc}") from None
            # Bounded transport retries: one reconnect, one re-read of an idempotent call, no status
            # retries (429 is handled here, with back-off and a report).
            configuration.retries = urllib3.Retry(
                total=2, connect=1, read=1, status=0, redirect=0, raise_on_status=False
            )
            configuration.connection_pool_maxsize = 4
            ctx.server = str(configuration.host)
            ctx.api = ApiClient(configuration)
            return ctx.api

    # -- reading ----------------------------------------------------------------------------------

    def read(self) -> SourceReading:
        """Read every cluster concurrently within ``timeout_s``.

        Returns:
            WorkloadState and ClusterState records; ``problems`` names clusters that failed or timed
            out and throttling that was backed off from.
        Raises:
            SourceError: no cluster could be read (the message names contexts / servers).
        """
        deadline = time.monotonic() + self._timeout_s
        contexts = list(self._contexts.values())
        pool = ThreadPoolExecutor(
            max_workers=min(self._max_workers, max(1, len(contexts))), thread_name_prefix="k8s-read"
        )
        futures: dict[Future[list[FleetRecord]], _Context] = {}
        try:
            for ctx in contexts:
                ctx.throttled, ctx.backoff_s, ctx.relists, ctx.notes = 0, 0.0, 0, []
                futures[pool.submit(self._read_cluster, ctx, deadline)] = ctx
            wait_futures(futures, timeout=max(0.0, deadline - time.monotonic()))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        records: list[FleetRecord] = []
        notes: list[str] = []
        failures: list[str] = []
        for future, ctx in futures.items():
            name = ctx.spec.name
            if not future.done():
                failures.append(f"cluster {name}: no answer from {ctx.server} within {self._timeout_s:g} s")
                continue
            try:
                records.extend(future.result())
            except (_ClusterFailed, SourceError, _NotFound, _Gone) as exc:
                failures.append(f"cluster {name}: {exc}")
            except Exception as exc:  # a bug or an SDK surprise must not hide the other clusters
                log.exception("k8s: reading cluster %s failed", name)
                failures.append(f"cluster {name}: {type(exc).__name__}: {exc}")
            if ctx.throttled:
                notes.append(
                    f"cluster {name}: throttled (HTTP 429) {ctx.throttled} time(s) by {ctx.server}, "
                    f"backed off {ctx.backoff_s:.1f} s"
                )
        if contexts and not records:
            shown = "; ".join(failures[:_MAX_PROBLEMS_IN_ERROR])
            more = len(failures) - _MAX_PROBLEMS_IN_ERROR
            suffix = f" (and {more} more cluster(s))" if more > 0 else ""
            raise SourceError(f"no Kubernetes cluster could be read: {shown}{suffix}")
        return SourceReading(records=tuple(records), problems=tuple(failures), notes=tuple(notes))

    def _read_cluster(self, ctx: _Context, deadline: float) -> list[FleetRecord]:
        api = self._api(ctx)
        # One set of request headers per cluster and read: the client's default headers and its auth
        # (a kubeconfig token is refreshed here, once per read, instead of before every call).
        ctx.host = str(api.configuration.host)
        ctx.headers, ctx.auth_query = _request_headers(api)
        ns = quote(self._namespace, safe="")
        deployments = self._list(ctx, deadline, f"/apis/apps/v1/namespaces/{ns}/deployments")
        hpas = self._list(ctx, deadline, f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers")
        pods = self._list(ctx, deadline, f"/api/v1/namespaces/{ns}/pods")
        nodes = self._list(ctx, deadline, "/api/v1/nodes")
        events = self._list(ctx, deadline, "/api/v1/events", fieldSelector="type=Warning")
        try:
            status_cm: dict[str, Any] | None = self._call(
                ctx,
                deadline,
                f"/api/v1/namespaces/{quote(AUTOSCALER_STATUS[0], safe='')}/configmaps/"
                f"{quote(AUTOSCALER_STATUS[1], safe='')}",
                {},
            )
        except _NotFound:
            status_cm = None
        observed_at = datetime.now(UTC)
        return self._records(
            ctx,
            observed_at,
            deployments=deployments,
            hpas=hpas,
            pods=pods,
            nodes=nodes,
            events=events,
            status_cm=status_cm,
        )

    # -- calls ------------------------------------------------------------------------------------

    def _list(self, ctx: _Context, deadline: float, path: str, **query: str) -> list[dict[str, Any]]:
        """All items of a paginated list; a 410 Gone restarts it from the first page (bounded)."""
        for _attempt in range(3):
            items: list[dict[str, Any]] = []
            token: str | None = None
            try:
                while True:
                    params: dict[str, str | int] = {**query, "limit": self._page_size}
                    if token:
                        params["continue"] = token
                    page = self._call(ctx, deadline, path, params)
                    items.extend(page.get("items") or [])
                    token = (page.get("metadata") or {}).get("continue") or None
                    if not token:
                        return items
            except _Gone:
                ctx.relists += 1
                log.info("k8s: continue token expired on %s; listing again from scratch", ctx.server)
        raise _ClusterFailed(f"continue tokens keep expiring on {ctx.server} (410 Gone 3 times)")

    def _call(
        self, ctx: _Context, deadline: float, path: str, params: Mapping[str, str | int]
    ) -> dict[str, Any]:
        """GET ``path`` with the ApiClient's REST client (its pool, TLS, proxy and retries) → the JSON object.

        The generated API methods are bypassed: they validate every argument with pydantic and rebuild
        the headers (re-running the kubeconfig's auth hook) on every call, which cost more CPU than the
        request itself. Errors are the same :class:`ApiException` those methods raise.
        """
        pairs = [*params.items(), *ctx.auth_query]
        url = ctx.host + path
        if pairs:
            url += "?" + "&".join(f"{k}={quote(str(v))}" for k, v in pairs)
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                raise _ClusterFailed(f"no answer from {ctx.server} within {self._timeout_s:g} s")
            timeout = (min(self._connect_s, remaining), remaining)
            try:
                response = ctx.api.rest_client.request(
                    "GET", url, headers=dict(ctx.headers), _request_timeout=timeout
                )
                body = response.read()
                if not 200 <= response.status <= 299:
                    raise ApiException.from_response(http_resp=response, body=None, data=None)
            except ApiException as exc:
                status = int(exc.status or 0)
                if status == 429 and attempt < self._max_throttle:
                    attempt += 1
                    wait = self._backoff(exc, attempt)
                    wait = min(wait, max(0.0, deadline - time.monotonic() - 0.1))
                    ctx.throttled += 1
                    ctx.backoff_s += wait
                    time.sleep(wait)
                    continue
                raise self._translate(ctx, exc) from None
            except urllib3.exceptions.HTTPError as exc:
                raise _transport_failure(ctx, exc) from None
            return _json_object(ctx, body)

    def _backoff(self, exc: Any, attempt: int) -> float:
        headers = getattr(exc, "headers", None) or {}
        retry_after: float | None = None
        try:
            value = headers.get("Retry-After") if hasattr(headers, "get") else None
            retry_after = float(value) if value is not None else None
        except (TypeError, ValueError):
            retry_after = None
        exponential = 0.1 * 2 ** (attempt - 1)
        return min(self._backoff_cap_s, retry_after if retry_after is not None else exponential)

    def _translate(self, ctx: _Context, exc: Any) -> Exception:
        status = int(exc.status or 0)
        reason = _status_message(exc)
        if status in (401, 403):
            what = "credentials rejected (401 Unauthorized)" if status == 401 else "permission denied (403)"
            return SourceError(
                f"Kubernetes {what} for kubeconfig context {ctx.context!r} ({ctx.server}): {reason}"
            )
        if status == 404:
            return _NotFound(reason)
        if status == 410:
            return _Gone(reason)
        if status == 429:
            return _ClusterFailed(
                f"throttled (HTTP 429) by {ctx.server}, still throttled after {self._max_throttle} back-offs"
            )
        return _ClusterFailed(f"HTTP {status} from API server {ctx.server}: {reason}")

    # -- translation -------------------------------------------------------------------------------

    def _records(
        self,
        ctx: _Context,
        at: datetime,
        *,
        deployments: list[dict[str, Any]],
        hpas: list[dict[str, Any]],
        pods: list[dict[str, Any]],
        nodes: list[dict[str, Any]],
        events: list[dict[str, Any]],
        status_cm: dict[str, Any] | None,
    ) -> list[FleetRecord]:
        """One workload record per service of the cluster's environment, then the cluster's record."""
        pending, restarts = _pod_counts(pods)
        records: list[FleetRecord] = []
        records.extend(self._workload_records(ctx, at, deployments, hpas, pending, restarts))
        records.append(self._cluster_record(ctx, at, pods, nodes, events, status_cm, pending))
        return records

    def _workload_records(
        self,
        ctx: _Context,
        at: datetime,
        deployments: list[dict[str, Any]],
        hpas: list[dict[str, Any]],
        pending: dict[str, int],
        restarts: dict[str, int],
    ) -> list[WorkloadState]:
        """A service without a deployment has no record (a note on the cluster says which)."""
        spec = ctx.spec
        deps = {_meta(d, "name"): d for d in deployments}
        hpa_of = {_dig(h, "spec", "scaleTargetRef", "name") or _meta(h, "name"): h for h in hpas}
        records: list[WorkloadState] = []
        missing: list[str] = []
        for svc in sorted(s.name for s in self._fleet.services_in(spec.environment)):
            dep = deps.get(svc)
            if dep is None:
                missing.append(svc)
                continue
            hpa = hpa_of.get(svc)
            status = dep.get("status") or {}
            hpa_spec = (hpa or {}).get("spec") or {}
            records.append(
                WorkloadState(
                    source=self.name,
                    observed_at=at,
                    cluster=spec.name,
                    region=spec.region,
                    service=svc,
                    environment=spec.environment,
                    desired=int(_dig(dep, "spec", "replicas") or 0),
                    ready=int(status.get("readyReplicas") or 0),
                    hpa_min=int(hpa_spec.get("minReplicas") or 1) if hpa else 0,
                    hpa_max=int(hpa_spec.get("maxReplicas") or 0) if hpa else 0,
                    cpu_utilisation=_cpu(hpa),
                    p95_ms=None,
                    error_rate=None,
                    rps=None,
                    pending_pods=pending.get(svc, 0),
                    restarts=restarts.get(svc, 0),
                    extra={
                        "namespace": self._namespace,
                        "context": ctx.context,
                        "generation": _meta(dep, "generation"),
                        "observed_generation": status.get("observedGeneration"),
                        "available": int(status.get("availableReplicas") or 0),
                        "updated": int(status.get("updatedReplicas") or 0),
                        "hpa": hpa is not None,
                        "hpa_desired": _dig(hpa or {}, "status", "desiredReplicas"),
                    },
                )
            )
        if missing:
            ctx.notes.append(f"deployments missing: {', '.join(missing)}")
        return records

    def _cluster_record(
        self,
        ctx: _Context,
        at: datetime,
        pods: list[dict[str, Any]],
        nodes: list[dict[str, Any]],
        events: list[dict[str, Any]],
        status_cm: dict[str, Any] | None,
        pending: dict[str, int],
    ) -> ClusterState:
        """Nodes (spot / on-demand / reserved, ready), the autoscaler's bounds, and how the read went."""
        spec = ctx.spec
        spot, on_demand_all, ready = _node_counts(nodes)
        reserved = min(on_demand_all, spec.reserved_nodes)
        bounds = _autoscaler_bounds(status_cm)
        extra: dict[str, Any] = {
            "context": ctx.context,
            "server": ctx.server,
            "warning_events": self._recent_warnings(events, at),
            "pods": len(pods),
            "pending_pods": sum(pending.values()),
            "nodes_bounds_from": "cluster-autoscaler-status" if bounds else "inventory",
        }
        if ctx.relists:
            extra["relists"] = ctx.relists
        if ctx.throttled:
            extra["throttled"] = ctx.throttled
        if ctx.notes:
            extra["notes"] = list(ctx.notes)
        lo, hi = bounds or (spec.nodes.min, spec.nodes.max)
        return ClusterState(
            source=self.name,
            observed_at=at,
            cluster=spec.name,
            region=spec.region,
            cloud=spec.cloud,
            environment=spec.environment,
            nodes=len(nodes),
            ready_nodes=ready,
            nodes_min=lo,
            nodes_max=hi,
            reserved_nodes=reserved,
            spot_nodes=spot,
            on_demand_nodes=on_demand_all - reserved,
            extra=extra,
        )

    def _recent_warnings(self, events: list[dict[str, Any]], now: datetime) -> int:
        count = 0
        for ev in events:
            if ev.get("type") != "Warning":
                continue
            stamp = (
                ev.get("lastTimestamp") or ev.get("eventTime") or _dig(ev, "metadata", "creationTimestamp")
            )
            when = _parse_time(stamp)
            if when is None or (now - when).total_seconds() <= self._event_window_s:
                count += 1
        return count


def _pod_counts(pods: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, int]]:
    """Pending pods and container restarts per ``app`` label."""
    pending: dict[str, int] = {}
    restarts: dict[str, int] = {}
    for pod in pods:  # thousands per read: plain lookups, not _dig
        metadata = pod.get("metadata")
        labels = metadata.get("labels") if isinstance(metadata, dict) else None
        app = labels.get("app") if isinstance(labels, dict) else None
        if app is None:
            continue
        pod_status = pod.get("status")
        if not isinstance(pod_status, dict):
            pod_status = {}
        if pod_status.get("phase") == "Pending":
            pending[app] = pending.get(app, 0) + 1
        restarted = 0
        for key in ("containerStatuses", "initContainerStatuses"):
            for container in pod_status.get(key) or ():
                restarted += int(container.get("restartCount") or 0)
        restarts[app] = restarts.get(app, 0) + restarted
    return pending, restarts


def _node_counts(nodes: list[dict[str, Any]]) -> tuple[int, int, int]:
    """``(spot, on_demand, ready)`` node counts (spot by :data:`SPOT_LABELS`)."""
    spot = on_demand = ready = 0
    for node in nodes:
        labels = _dig(node, "metadata", "labels") or {}
        if any(labels.get(k) == v for k, v in SPOT_LABELS):
            spot += 1
        else:
            on_demand += 1
        conditions = _dig(node, "status", "conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            ready += 1
    return spot, on_demand, ready


def _transport_failure(ctx: _Context, exc: urllib3.exceptions.HTTPError) -> _ClusterFailed:
    """What a urllib3 error (after its own retries) says about the API server."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError):
        reason = exc.reason
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            return _ClusterFailed(f"cannot connect to API server {ctx.server}: connection refused")
        if isinstance(reason, urllib3.exceptions.TimeoutError):
            return _ClusterFailed(f"API server {ctx.server} did not answer in time")
        return _ClusterFailed(f"API server {ctx.server} unreachable: {reason}")
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return _ClusterFailed(f"API server {ctx.server} did not answer in time")
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return _ClusterFailed(f"truncated or broken answer from API server {ctx.server}: {exc}")
    return _ClusterFailed(f"HTTP error talking to {ctx.server}: {exc}")


def _json_object(ctx: _Context, body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _ClusterFailed(f"malformed answer (not JSON) from API server {ctx.server}") from None
    if not isinstance(data, dict):
        raise _ClusterFailed(f"malformed answer (not an object) from API server {ctx.server}")
    return data


class _NotFound(Exception):
    """HTTP 404."""


def _request_headers(api: Any) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The headers (and any auth query parameters) the generated API methods would send with a GET."""
    headers: dict[str, str] = {"Accept": "application/json", **api.default_headers}
    if api.cookie:
        headers["Cookie"] = api.cookie
    queries: list[tuple[str, str]] = []
    api.update_params_for_auth(headers, queries, ["BearerToken"], "", "GET", None)
    return {str(k): str(v) for k, v in headers.items()}, [(str(k), str(v)) for k, v in queries]


def _dig(obj: Mapping[str, Any], *path: str) -> Any:
    value: Any = obj
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _meta(obj: Mapping[str, Any], key: str) -> Any:
    return _dig(obj, "metadata", key)


def _cpu(hpa: Mapping[str, Any] | None) -> float:
    """The HPA's current CPU utilisation, 0..1 of requests (0 when the HPA has no CPU figure yet)."""
    if hpa is None:
        return 0.0
    for metric in _dig(hpa, "status", "currentMetrics") or []:
        if metric.get("type") == "Resource" and _dig(metric, "resource", "name") == "cpu":
            pct = _dig(metric, "resource", "current", "averageUtilization")
            if isinstance(pct, int | float):
                return min(1.0, max(0.0, float(pct) / 100.0))
    return 0.0


def _autoscaler_bounds(cm: Mapping[str, Any] | None) -> tuple[int, int] | None:
    """Node bounds from the cluster autoscaler's status text, summed over its node groups."""
    if cm is None:
        return None
    text = str(_dig(cm, "data", "status") or "")
    found = _BOUNDS_RE.findall(text)
    if not found:
        return None
    return sum(int(lo) for lo, _ in found), sum(int(hi) for _, hi in found)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _status_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            data = json.loads(body)
            if isinstance(data, dict) and data.get("message"):
                return str(data["message"])
        except (ValueError, TypeError):
            pass
    return str(getattr(exc, "reason", "") or "no reason given")
