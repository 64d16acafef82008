"""The ``k8s`` fleet source: workloads and clusters as the Kubernetes API of each cluster reports them.

Why this module exists: replicas, HPA bounds and CPU, pending pods, restarts, nodes, the spot /
on-demand split and the cluster autoscaler's bounds are only known to each cluster's API server.
:class:`KubernetesSource` follows them with the official ``kubernetes`` client, one ``ApiClient`` per
cluster from a kubeconfig context, and translates them into
:class:`~opsconsole.core.fleet.model.WorkloadState` (one per cluster × service of the cluster's environment;
``p95_ms`` / ``error_rate`` / ``rps`` are ``None``: the Kubernetes API does not measure requests) and
:class:`~opsconsole.core.fleet.model.ClusterState` (one per cluster).

How to use it::

    source = KubernetesSource(fleet, "~/.kube/config", contexts={"eks-use1-prod": "arn:aws:eks:..."})
    source = KubernetesSource.from_endpoints(fleet, emulator.start())     # the sandbox
    reading = source.read()       # SourceReading(records, problems=("cluster x: ...",) for a half answer)
    source.close()                # stops the watches

**List once, then watch (informers).** Per cluster it follows six resources: deployments, HPAs
(autoscaling/v2) and pods of the workloads' namespace, all nodes, Warning events of all namespaces and
the ``kube-system/cluster-autoscaler-status`` ConfigMap (a list with a ``metadata.name`` field
selector). The first :meth:`read` lists them all (paginated, ``limit`` + ``continue``; a 410 Gone on a
continue token restarts that list), within ``timeout_s``, and reports failures exactly as a polling read
would (401 / 403 raise :class:`SourceError` naming the context, a refused connection names the server,
429 backs off and is noted). Then one daemon thread per cluster and resource WATCHes from the list's
``resourceVersion`` with ``allowWatchBookmarks``, applying ``ADDED`` / ``MODIFIED`` / ``DELETED`` to an
in-memory cache and moving the resourceVersion on with every event and ``BOOKMARK``. Every later
:meth:`read` builds its records from the caches: **no API call at all in steady state**.

* A stream that ends (``timeoutSeconds``) is re-opened from the last resourceVersion; one that drops is
  re-opened with exponential back-off and jitter; one quiet past its timeout (no event nor bookmark
  for ``watch_timeout_s`` + ``quiet_margin_s``) is restarted. An ``ERROR`` 410 (the resourceVersion is
  older than what the server keeps) lists again.
* A refused connection calls ``resolve_endpoints`` (when given): if the cluster's URL changed (the
  sandbox restarted on new ports) the cluster's ``ApiClient`` is rebuilt and its resources listed again.
* A cluster whose watches are down: its cached records are still served, and ``as_of`` says how old
  they are; once down longer than ``timeout_s`` it is a problem (the engine marks the source stale), and
  when every cluster is, :meth:`read` raises :class:`SourceError`.
* Watches nobody reads stop after ``idle_stop_s`` without a :meth:`read` (the next read lists again).
* Every API request is counted in :data:`~opsconsole.core.fleet.metering.METER` as ``k8s`` /
  ``list:<resource>``, ``watch:<resource>``, ``get:<resource>``, with ``error`` / ``throttled``.

Requests go through the ``ApiClient``'s REST client (its connection pool, TLS, proxy, retries and
kubeconfig auth), decoded with ``json.loads`` into plain dicts (no generated API methods, no model
objects); watch bodies are streamed (the REST client answers with ``preload_content=False``) and split
into lines with :func:`kubernetes.watch.watch.iter_resp_lines`.

For the console, :meth:`KubernetesSource.pods`, :meth:`~KubernetesSource.pod_log` and
:meth:`~KubernetesSource.pod_events` read one cluster's pods (from the cache), a pod's log and its events.

Values: ``cpu_utilisation`` is the HPA's ``currentMetrics`` CPU ``averageUtilization`` / 100 (capped at
1.0; the API reports whole percent, so it agrees with the world within 0.005); ``reserved_nodes`` is
``min(on-demand nodes, ClusterSpec.reserved_nodes)`` because reserved capacity is a billing construct;
spot nodes are told by the clouds' real labels (:data:`SPOT_LABELS`); ``nodes_min`` / ``nodes_max`` come
from the autoscaler status text (``minSize=…, maxSize=…``, summed over node groups), or from the
inventory when the ConfigMap is missing (``extra["nodes_bounds_from"] = "inventory"``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
from kubernetes.watch.watch import iter_resp_lines

from opsconsole.core.errors import SourceError, UsageError
from opsconsole.core.fleet.engine import SourceReading
from opsconsole.core.fleet.metering import METER
from opsconsole.core.fleet.model import ClusterSpec, ClusterState, Fleet, FleetRecord, WorkloadState
from opsconsole.core.fleet.pods import EventInfo, PodInfo, PodNotFound
from opsconsole.sandbox.emulator import Endpoints

__all__ = ["NODE_GROUP_LABELS", "SOURCE_NAME", "SPOT_LABELS", "KubernetesSource"]

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
#: Node labels that name a node's group / pool: EKS, Karpenter, GKE, AKS.
NODE_GROUP_LABELS = (
    "eks.amazonaws.com/nodegroup",
    "karpenter.sh/nodepool",
    "cloud.google.com/gke-nodepool",
    "kubernetes.azure.com/agentpool",
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_PROBLEMS_IN_ERROR = 3
#: Longest pause between two attempts to re-open a failing watch.
_BACKOFF_CAP_S = 10.0
#: A watch request is not retried by urllib3 (its loop reconnects): the first failure is raised.
_WATCH_RETRIES = urllib3.Retry(total=0, connect=0, read=0, status=0, redirect=0, raise_on_status=False)


class _Gone(Exception):
    """A continue token or a watch's resourceVersion expired (HTTP 410): the list must start again."""


class _ClusterFailed(Exception):
    """One cluster could not be read; the message names the cluster and the reason."""


class _Refused(_ClusterFailed):
    """The API server refused the connection (it may have moved: re-resolve the endpoints)."""


class _BadRequest(_ClusterFailed):
    """HTTP 400: the API server refused the request itself (``message`` is its reason)."""

    def __init__(self, text: str, message: str) -> None:
        super().__init__(text)
        self.message = message


@dataclass
class _Informer:
    """One watched resource of one cluster: its cache, resourceVersion and how its watch is doing."""

    resource: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    #: (namespace, name) → object.
    items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    rv: str = ""
    synced: bool = False
    #: When the watch started failing (None: connected, or between two clean re-opens).
    failing_since: float | None = None
    error: str = ""
    lists: int = 0
    watches: int = 0
    events: int = 0
    bookmarks: int = 0
    expired: int = 0
    #: Events at or below the cached resourceVersion (a resumed stream sending an event twice).
    duplicates: int = 0
    response: Any = None


@dataclass
class _Context:
    """One cluster's connection, its informers, and what happened on it during the current read."""

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
    informers: dict[str, _Informer] = field(default_factory=dict)
    #: Bumped when the ApiClient is rebuilt (moved server): informers list again.
    api_generation: int = 0
    #: Bumped to stop this cluster's watch threads (close, idle).
    run_generation: int = 0
    threads: list[threading.Thread] = field(default_factory=list)
    synced_at: float = 0.0
    watch_throttled: int = 0


class KubernetesSource:
    """A :class:`~opsconsole.core.fleet.engine.FleetSource` over the Kubernetes API of every fleet cluster.

    Args:
        fleet: the fleet (which clusters to read, their environment's services, reserved nodes).
        kubeconfig: a kubeconfig path, or an already loaded kubeconfig mapping.
        contexts: cluster name → kubeconfig context; a cluster not listed uses the context named like
            the cluster.
        timeout_s: upper bound of the first :meth:`read` (the lists), all clusters included; a cluster
            whose watches are down longer than this is reported as a problem.
        namespace: the namespace the fleet's workloads run in.
        clusters: read only these clusters (default: every cluster of the fleet).
        connect_timeout_s: TCP connect timeout of each call.
        page_size: ``limit`` of every list call.
        max_throttle_retries: how many times one call is retried after a 429.
        backoff_cap_s: longest single back-off after a 429 (``Retry-After`` is honoured up to it).
        event_window_s: Warning events whose last occurrence is older than this are not counted.
        max_workers: clusters listed in parallel.
        name: the source name.
        watch: follow the clusters with watches (False: list everything on every read, as before).
        watch_timeout_s: ``timeoutSeconds`` of each watch request (jittered by up to +25 %).
        quiet_margin_s: a watch silent for ``watch_timeout_s`` plus this is restarted.
        idle_stop_s: stop watching after this long without a :meth:`read`.
        resolve_endpoints: called when a cluster's API server refuses connections; if the cluster's URL
            in the endpoints it returns changed (``urls["k8s/<cluster>"]``, ``settings["kubeconfig"]``),
            the cluster's client is rebuilt on them and its resources listed again.
    """

    name: str
    #: Called (no arguments, from a watch thread) when a watch event changed a cache: see :meth:`on_change`.
    _change_listeners: tuple[Callable[[], None], ...] = ()

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
        watch: bool = True,
        watch_timeout_s: float = 300.0,
        quiet_margin_s: float = 30.0,
        idle_stop_s: float = 120.0,
        resolve_endpoints: Callable[[], Endpoints] | None = None,
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
        self._watch = watch
        self._watch_timeout_s = max(1.0, watch_timeout_s)
        self._quiet_margin_s = max(0.5, quiet_margin_s)
        self._idle_stop_s = idle_stop_s
        self._resolve = resolve_endpoints
        self._resolved_at = 0.0
        #: Guards every informer cache (watch threads write, reads copy).
        self._cache_lock = threading.Lock()
        #: Serializes starting a cluster's watch threads (a read and a deferred start may race).
        self._start_lock = threading.Lock()
        self._last_read = time.monotonic()
        self._closed = False
        names = sorted(fleet.clusters) if clusters is None else list(clusters)
        unknown = [c for c in names if c not in fleet.clusters]
        if unknown:
            raise ValueError(f"unknown cluster(s): {', '.join(unknown)}")
        mapping = dict(contexts or {})
        self._contexts = {c: _Context(fleet.clusters[c], mapping.get(c, c)) for c in names}
        for ctx in self._contexts.values():
            ctx.informers = self._informers()

    @classmethod
    def from_endpoints(
        cls,
        fleet: Fleet,
        endpoints: Endpoints,
        *,
        resolve_endpoints: Callable[[], Endpoints] | None = None,
        **kwargs: Any,
    ) -> KubernetesSource:
        """Build the source for the sandbox emulator (:class:`opsconsole.sandbox.kube.KubeApiEmulator`).

        Uses ``endpoints.settings["kubeconfig"]`` (contexts named like the clusters) and
        ``settings["namespace"]``; ``resolve_endpoints`` gives the emulator's current endpoints after a
        restart (see the class); ``kwargs`` go to the constructor.
        """
        try:
            kubeconfig = endpoints.settings["kubeconfig"]
        except KeyError:
            raise SourceError("the Kubernetes endpoints carry no kubeconfig setting") from None
        kwargs.setdefault("namespace", endpoints.settings.get("namespace", "voltage"))
        # The emulator answers from this process: more reader threads only fight it for the GIL
        # (measured on 2 cores: 4 workers ≈ 0.4 s per full read, 16 workers ≈ 1.2 s).
        kwargs.setdefault("max_workers", 4)
        return cls(fleet, kubeconfig, resolve_endpoints=resolve_endpoints, **kwargs)

    def _informers(self) -> dict[str, _Informer]:
        ns = quote(self._namespace, safe="")
        return {
            "deployments": _Informer("deployments", f"/apis/apps/v1/namespaces/{ns}/deployments"),
            "horizontalpodautoscalers": _Informer(
                "horizontalpodautoscalers", f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"
            ),
            "pods": _Informer("pods", f"/api/v1/namespaces/{ns}/pods"),
            "nodes": _Informer("nodes", "/api/v1/nodes"),
            "events": _Informer("events", "/api/v1/events", {"fieldSelector": "type=Warning"}),
            "configmaps": _Informer(
                "configmaps",
                f"/api/v1/namespaces/{quote(AUTOSCALER_STATUS[0], safe='')}/configmaps",
                {"fieldSelector": f"metadata.name={AUTOSCALER_STATUS[1]}"},
            ),
        }

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
            # Six watch streams per cluster hold a connection each, plus a list or a log at a time.
            configuration.connection_pool_maxsize = 10
            ctx.server = str(configuration.host)
            api = ApiClient(configuration)
            # One set of request headers per client: its default headers and its auth.
            ctx.host = str(api.configuration.host)
            ctx.headers, ctx.auth_query = _request_headers(api)
            ctx.api = api
            return api

    def _re_resolve(self, ctx: _Context) -> bool:
        """After a refused connection: ask ``resolve_endpoints``; rebuild the client if the URL moved."""
        if self._resolve is None:
            return False
        with self._client_lock:
            now = time.monotonic()
            if now - self._resolved_at < 0.2:  # many threads see the refusal at once: ask once
                endpoints = None
            else:
                self._resolved_at = now
                try:
                    endpoints = self._resolve()
                except Exception as exc:  # the resolver is the caller's: never kill a watch thread
                    log.info("k8s: resolving endpoints failed: %s", exc)
                    return False
            if endpoints is not None:
                kubeconfig = endpoints.settings.get("kubeconfig")
                if kubeconfig and kubeconfig != self._kubeconfig_source:
                    self._kubeconfig_source = kubeconfig
                    self._kubeconfig = None
                moved = False
                for other in self._contexts.values():
                    url = endpoints.urls.get(f"k8s/{other.spec.name}")
                    if other.api is not None and url and url.rstrip("/") != other.server.rstrip("/"):
                        log.info("k8s: cluster %s moved %s → %s", other.spec.name, other.server, url)
                        old, other.api = other.api, None
                        other.api_generation += 1
                        moved = True
                        with contextlib.suppress(Exception):  # best effort on a dead server
                            old.close()
                return moved
            return ctx.api is None

    # -- reading ----------------------------------------------------------------------------------

    def read(self) -> SourceReading:  # noqa: PLR0912  # one pass over the clusters, each case named
        """The fleet as the clusters' caches hold it; the first read (and a re-sync) lists them.

        Returns:
            WorkloadState and ClusterState records; ``problems`` names clusters that failed or timed
            out, or whose watches are down longer than ``timeout_s``; ``notes`` throttling that was
            backed off from.
        Raises:
            SourceError: no cluster could be read (the message names contexts / servers).
        """
        self._last_read = time.monotonic()
        if self._closed:
            raise SourceError("the Kubernetes source is closed")
        if not self._watch:
            for ctx in self._contexts.values():
                for inf in ctx.informers.values():
                    inf.synced = False
        to_list = [c for c in self._contexts.values() if not all(i.synced for i in c.informers.values())]
        failures: dict[str, str] = {}
        notes: list[str] = []
        if to_list:
            failures = self._sync(to_list, notes)
        records: list[FleetRecord] = []
        now = time.monotonic()
        wall = datetime.now(UTC)
        oldest: datetime | None = None
        down: list[str] = []
        start_later: list[_Context] = []
        for ctx in self._contexts.values():
            name = ctx.spec.name
            if name in failures:
                continue
            if self._watch and not self._watching_now(ctx):
                start_later.append(ctx)
            since = self._down_since(ctx)
            at = wall
            if since is not None:
                at = wall - timedelta(seconds=now - since)
                oldest = at if oldest is None else min(oldest, at)
                if now - since > self._timeout_s:
                    reason = self._down_reason(ctx)
                    failures[name] = f"watch down for {now - since:.0f} s: {reason}"
                    down.append(name)
            if ctx.watch_throttled:
                ctx.throttled += ctx.watch_throttled
                ctx.watch_throttled = 0
            records.extend(self._cluster_records(ctx, at))
            if ctx.throttled:
                notes.append(
                    f"cluster {name}: throttled (HTTP 429) {ctx.throttled} time(s) by {ctx.server}, "
                    f"backed off {ctx.backoff_s:.1f} s"
                )
                ctx.throttled, ctx.backoff_s = 0, 0.0
        if start_later:
            # Watches start from the lists' resourceVersions, so starting them a moment after this read
            # misses nothing; starting ~190 threads (and their first requests) inline made the first
            # read, which a console's first screen waits for, ~0.2 s slower.
            threading.Thread(
                target=self._start_watches, args=(start_later,), name="k8s-watch-start", daemon=True
            ).start()
        problems = [f"cluster {n}: {r}" for n, r in sorted(failures.items())]
        if self._contexts and (not records or len(down) + len(failures.keys() - set(down)) == len(
            self._contexts
        )):
            shown = "; ".join(problems[:_MAX_PROBLEMS_IN_ERROR])
            more = len(problems) - _MAX_PROBLEMS_IN_ERROR
            suffix = f" (and {more} more cluster(s))" if more > 0 else ""
            raise SourceError(f"no Kubernetes cluster could be read: {shown}{suffix}")
        return SourceReading(
            records=tuple(records), problems=tuple(problems), notes=tuple(notes), as_of=oldest
        )

    def _sync(self, contexts: list[_Context], notes: list[str]) -> dict[str, str]:
        """List every resource of ``contexts`` within ``timeout_s``; failures by cluster name."""
        deadline = time.monotonic() + self._timeout_s
        pool = ThreadPoolExecutor(
            max_workers=min(self._max_workers, max(1, len(contexts))), thread_name_prefix="k8s-read"
        )
        futures: dict[Future[None], _Context] = {}
        try:
            for ctx in contexts:
                ctx.throttled, ctx.backoff_s, ctx.relists, ctx.notes = 0, 0.0, 0, []
                futures[pool.submit(self._list_cluster, ctx, deadline)] = ctx
            wait_futures(futures, timeout=max(0.0, deadline - time.monotonic()))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        failures: dict[str, str] = {}
        for future, ctx in futures.items():
            name = ctx.spec.name
            # Still running, or never started: a cluster queued behind slow ones is cancelled at the
            # deadline (the pool's shutdown), which is the same "no answer", not a failure of its own.
            if not future.done() or future.cancelled():
                failures[name] = f"no answer from {ctx.server} within {self._timeout_s:g} s"
                continue
            try:
                future.result()
            except _Refused as exc:
                failures[name] = str(exc)
                self._re_resolve(ctx)
            except (_ClusterFailed, SourceError, _NotFound, _Gone) as exc:
                if isinstance(exc, SourceError):
                    # Permission errors name the context: raise them when they are the only answer.
                    failures[name] = exc.message
                else:
                    failures[name] = str(exc)
            except Exception as exc:  # a bug or an SDK surprise must not hide the other clusters
                log.exception("k8s: reading cluster %s failed", name)
                failures[name] = f"{type(exc).__name__}: {exc}"
        return failures

    def _list_cluster(self, ctx: _Context, deadline: float) -> None:
        """The initial LIST of every resource of one cluster, installed in its informers at once."""
        self._api(ctx)
        lists: dict[str, tuple[list[dict[str, Any]], str]] = {}
        for key, inf in ctx.informers.items():
            lists[key] = self._list(ctx, deadline, inf.path, resource=inf.resource, **inf.query)
        with self._cache_lock:
            for key, (items, rv) in lists.items():
                inf = ctx.informers[key]
                inf.items = {_key_of(o): o for o in items}
                inf.rv, inf.synced, inf.failing_since, inf.error = rv, True, None, ""
                inf.lists += 1
            ctx.synced_at = time.monotonic()

    def _down_since(self, ctx: _Context) -> float | None:
        with self._cache_lock:
            times = [i.failing_since for i in ctx.informers.values() if i.failing_since is not None]
        return min(times) if times else None

    def _down_reason(self, ctx: _Context) -> str:
        with self._cache_lock:
            for inf in ctx.informers.values():
                if inf.failing_since is not None and inf.error:
                    return inf.error
        return "reconnecting"

    def _cluster_records(self, ctx: _Context, at: datetime) -> list[FleetRecord]:
        with self._cache_lock:
            lists = {k: list(i.items.values()) for k, i in ctx.informers.items()}
        status_cm = next(
            (c for c in lists["configmaps"] if _meta(c, "name") == AUTOSCALER_STATUS[1]), None
        )
        return self._records(
            ctx,
            at,
            deployments=lists["deployments"],
            hpas=lists["horizontalpodautoscalers"],
            pods=lists["pods"],
            nodes=lists["nodes"],
            events=lists["events"],
            status_cm=status_cm,
        )

    # -- watching ---------------------------------------------------------------------------------

    @staticmethod
    def _watching_now(ctx: _Context) -> bool:
        return bool(ctx.threads) and all(t.is_alive() for t in ctx.threads)

    def _start_watches(self, contexts: list[_Context]) -> None:
        for ctx in contexts:
            if self._closed:
                return
            self._ensure_watching(ctx)

    def _ensure_watching(self, ctx: _Context) -> None:
        """Start the cluster's watch threads if they are not running."""
        with self._start_lock:
            self._ensure_watching_locked(ctx)

    def _ensure_watching_locked(self, ctx: _Context) -> None:
        if self._watching_now(ctx):
            return
        ctx.run_generation += 1
        generation = ctx.run_generation
        ctx.threads = []
        for inf in ctx.informers.values():
            thread = threading.Thread(
                target=_watch_thread,
                args=(weakref.ref(self), ctx, inf, generation),
                name=f"k8s-watch-{ctx.spec.name}-{inf.resource}",
                daemon=True,
            )
            ctx.threads.append(thread)
            thread.start()

    def _running(self, ctx: _Context, generation: int) -> bool:
        if self._closed or ctx.run_generation != generation:
            return False
        if time.monotonic() - self._last_read > self._idle_stop_s:
            with self._cache_lock:  # nobody reads: stop; the next read lists again
                for inf in ctx.informers.values():
                    inf.synced = False
            return False
        return True

    def _watch_step(self, ctx: _Context, inf: _Informer, generation: int, state: dict[str, int]) -> float:
        """One attempt to keep an informer in step (re-list if needed, then watch until the stream
        ends); how long to wait before the next one (back-off with jitter after a failure)."""
        try:
            if ctx.api_generation != state["api"] or not inf.synced:
                state["api"] = ctx.api_generation
                self._relist(ctx, inf)
            self._watch_once(ctx, inf, generation)
            state["failures"] = 0
            return 0.0
        except _Gone:
            inf.expired += 1
            with self._cache_lock:
                inf.synced = False
            return 0.0
        except Exception as exc:  # every failure: note it, back off, try again
            state["failures"] += 1
            reason = str(exc) if isinstance(exc, _ClusterFailed | SourceError) else repr(exc)
            with self._cache_lock:
                if inf.failing_since is None:
                    inf.failing_since = time.monotonic()
                inf.error = reason
            if isinstance(exc, _Refused) and self._re_resolve(ctx):
                state["failures"] = 0
                return 0.0
            delay = min(_BACKOFF_CAP_S, 0.1 * 2 ** min(state["failures"], 10))
            log.debug("k8s: watch %s/%s failed (%s)", ctx.spec.name, inf.resource, reason)
            return float(delay) * random.uniform(0.5, 1.5)  # jitter: 186 watches must not reconnect in step

    def _relist(self, ctx: _Context, inf: _Informer) -> None:
        deadline = time.monotonic() + max(self._timeout_s, 5.0)
        self._api(ctx)
        items, rv = self._list(ctx, deadline, inf.path, resource=inf.resource, **inf.query)
        with self._cache_lock:
            inf.items = {_key_of(o): o for o in items}
            inf.rv, inf.synced = rv, True
            inf.lists += 1
        ctx.relists += 1
        self._notify_change()

    def _watch_once(self, ctx: _Context, inf: _Informer, generation: int) -> bool:
        """One watch request, applied until it ends: True when it ended cleanly (re-open at once)."""
        api = self._api(ctx)
        timeout = int(self._watch_timeout_s * random.uniform(1.0, 1.25))
        params: dict[str, str] = {
            **inf.query,
            "watch": "1",
            "resourceVersion": inf.rv,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout),
        }
        pairs = [*params.items(), *ctx.auth_query]
        url = ctx.host + inf.path + "?" + "&".join(f"{k}={quote(str(v))}" for k, v in pairs)
        op = f"watch:{inf.resource}"
        try:
            # Straight to the pool, with no urllib3 retries: this loop reconnects itself (with back-off
            # and re-resolution); urllib3's own retry would add a warning per watch per attempt, ~190
            # lines each time a local cloud restarts.
            raw = api.rest_client.pool_manager.request(
                "GET", url, headers=dict(ctx.headers), preload_content=False, retries=_WATCH_RETRIES,
                timeout=urllib3.Timeout(connect=self._connect_s, read=timeout + self._quiet_margin_s),
            )
        except urllib3.exceptions.HTTPError as exc:
            METER.count(SOURCE_NAME, op, error=True)
            raise _transport_failure(ctx, exc) from None
        if not 200 <= raw.status <= 299:
            status = raw.status
            METER.count(SOURCE_NAME, op, error=True, throttled=status == 429)
            body = raw.data
            raw.release_conn()
            error = ApiException(status=status, reason=raw.reason)
            error.body = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            error.headers = raw.headers
            if status == 429:
                ctx.watch_throttled += 1
                wait = self._backoff(error, 1)
                ctx.backoff_s += wait
                time.sleep(wait)
                return False
            raise self._translate(ctx, error)
        METER.count(SOURCE_NAME, op)
        with self._cache_lock:
            inf.watches += 1
            inf.failing_since, inf.error = None, ""
            inf.response = raw
        try:
            for line in iter_resp_lines(raw):  # type: ignore[no-untyped-call]  # untyped module
                if not line:
                    continue
                self._apply_event(ctx, inf, line)
                if not self._running(ctx, generation):
                    return False
        except urllib3.exceptions.ReadTimeoutError:
            log.info("k8s: watch %s/%s quiet past its timeout: restarting", ctx.spec.name, inf.resource)
            return False
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _ClusterFailed(f"watch stream from {ctx.server} dropped: {exc}") from None
        finally:
            with self._cache_lock:
                inf.response = None
            raw.release_conn()
        return True

    def _apply_event(self, ctx: _Context, inf: _Informer, line: str) -> None:
        try:
            event = json.loads(line)
            kind = event["type"]
            obj = event["object"]
        except (ValueError, KeyError, TypeError):
            raise _ClusterFailed(f"malformed watch event from API server {ctx.server}") from None
        if kind == "ERROR":
            if isinstance(obj, dict) and obj.get("code") == 410:
                raise _Gone(str(obj.get("message", "resourceVersion expired")))
            raise _ClusterFailed(f"watch error from {ctx.server}: {_dig(obj, 'message') or obj}")
        rv = str(_meta(obj, "resourceVersion") or "")
        with self._cache_lock:
            if kind == "BOOKMARK":
                inf.bookmarks += 1
            else:
                inf.events += 1
                if _newer_or_equal(inf.rv, rv) and kind != "DELETED":
                    inf.duplicates += 1
                key = _key_of(obj)
                if kind == "DELETED":
                    inf.items.pop(key, None)
                elif kind in ("ADDED", "MODIFIED"):
                    inf.items[key] = obj
            if rv:
                inf.rv = rv
        if kind != "BOOKMARK":
            self._notify_change()

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` whenever a watch event (or a re-list) changed a cluster's cache, so a
        listener (the server's fleet cache) can read again at once; returns the unsubscribe function.
        (:class:`~opsconsole.core.fleet.engine.ChangeNotifying`.) Called from the watch threads, outside
        every lock of this source: it must return at once."""
        with self._cache_lock:
            self._change_listeners = (*self._change_listeners, callback)

        def unsubscribe() -> None:
            with self._cache_lock:
                self._change_listeners = tuple(c for c in self._change_listeners if c is not callback)

        return unsubscribe

    def _notify_change(self) -> None:
        for callback in self._change_listeners:
            try:
                callback()
            except Exception:  # a listener's bug must not stop the watch
                log.exception("k8s: a change listener failed")

    def close(self) -> None:
        """Stop every watch (their threads end within a moment); the source cannot read after."""
        self._closed = True
        with self._cache_lock:
            responses = [i.response for c in self._contexts.values() for i in c.informers.values()]
        for response in responses:
            if response is not None:
                with contextlib.suppress(Exception):  # already closed
                    response.shutdown()

    def watch_stats(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per cluster and resource: resourceVersion, lists, watches, events, bookmarks, 410s, state."""
        now = time.monotonic()
        with self._cache_lock:
            return {
                name: {
                    key: {
                        "rv": inf.rv,
                        "items": len(inf.items),
                        "lists": inf.lists,
                        "watches": inf.watches,
                        "events": inf.events,
                        "bookmarks": inf.bookmarks,
                        "expired": inf.expired,
                        "duplicates": inf.duplicates,
                        "down_s": None if inf.failing_since is None else now - inf.failing_since,
                        "error": inf.error,
                    }
                    for key, inf in ctx.informers.items()
                }
                for name, ctx in self._contexts.items()
            }

    def _list(
        self, ctx: _Context, deadline: float, path: str, *, resource: str, **query: str
    ) -> tuple[list[dict[str, Any]], str]:
        """All items of a paginated list and its resourceVersion; a 410 Gone restarts it (bounded)."""
        for _attempt in range(3):
            items: list[dict[str, Any]] = []
            token: str | None = None
            try:
                while True:
                    params: dict[str, str | int] = {**query, "limit": self._page_size}
                    if token:
                        params["continue"] = token
                    page = self._call(ctx, deadline, path, params, op=f"list:{resource}")
                    items.extend(page.get("items") or [])
                    meta = page.get("metadata") or {}
                    token = meta.get("continue") or None
                    if not token:
                        return items, str(meta.get("resourceVersion") or "")
            except _Gone:
                ctx.relists += 1
                log.info("k8s: continue token expired on %s; listing again from scratch", ctx.server)
        raise _ClusterFailed(f"continue tokens keep expiring on {ctx.server} (410 Gone 3 times)")

    def _call(
        self,
        ctx: _Context,
        deadline: float,
        path: str,
        params: Mapping[str, str | int],
        *,
        op: str,
        raw: bool = False,
    ) -> Any:
        """GET ``path`` with the ApiClient's REST client (its pool, TLS, proxy and retries) → the JSON object.

        The generated API methods are bypassed: they validate every argument with pydantic and rebuild
        the headers (re-running the kubeconfig's auth hook) on every call, which cost more CPU than the
        request itself. Errors are the same :class:`ApiException` those methods raise. Each attempt is
        counted in the meter as ``op``; ``raw`` answers the body as text (pod logs).
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
                METER.count(SOURCE_NAME, op, error=True, throttled=status == 429)
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
                METER.count(SOURCE_NAME, op, error=True)
                raise _transport_failure(ctx, exc) from None
            METER.count(SOURCE_NAME, op)
            if raw:
                return body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
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
        if status == 400:
            return _BadRequest(f"HTTP 400 from API server {ctx.server}: {reason}", reason)
        if status == 429:
            return _ClusterFailed(
                f"throttled (HTTP 429) by {ctx.server}, still throttled after {self._max_throttle} back-offs"
            )
        return _ClusterFailed(f"HTTP {status} from API server {ctx.server}: {reason}")

    # -- pods, logs, events (the console's pod views) ------------------------------------------------

    def _context_of(self, cluster: str) -> _Context:
        ctx = self._contexts.get(cluster)
        if ctx is None:
            known = ", ".join(sorted(self._contexts)) or "none"
            raise UsageError(f"unknown cluster {cluster!r}; this server reads: {known}")
        return ctx

    def _cached(self, ctx: _Context, *keys: str) -> dict[str, list[dict[str, Any]]]:
        """The informer caches of ``keys`` (listed now if not in step; watched from then on)."""
        if self._closed:
            raise SourceError("the Kubernetes source is closed")
        self._last_read = time.monotonic()  # someone is looking: keep the watches up
        try:
            for key in keys:
                inf = ctx.informers[key]
                if not self._watch or not inf.synced:
                    self._relist(ctx, inf)
        except (_ClusterFailed, _NotFound, _Gone) as exc:
            raise SourceError(f"cluster {ctx.spec.name}: {exc}") from None
        if self._watch:
            self._ensure_watching(ctx)
        with self._cache_lock:
            return {key: list(ctx.informers[key].items.values()) for key in keys}

    def pods(
        self, cluster: str, *, namespace: str | None = None, workload: str | None = None
    ) -> list[PodInfo]:
        """The pods of one cluster from the informer cache (no API call in steady state), sorted by
        workload then name; ``namespace`` / ``workload`` (the ``app`` label) filter them.

        Only the workloads' namespace is watched: another ``namespace`` is listed with one call.
        """
        ctx = self._context_of(cluster)
        cached = self._cached(ctx, "pods", "nodes")
        items = cached["pods"]
        if namespace not in (None, "", self._namespace):
            assert namespace is not None
            items, _ = self._guarded(ctx, lambda deadline: self._list(
                ctx, deadline, f"/api/v1/namespaces/{quote(namespace, safe='')}/pods", resource="pods"))
        nodes = {_meta(n, "name"): n for n in cached["nodes"]}
        now = datetime.now(UTC)
        out = [_pod_info(ctx.spec, pod, nodes, now) for pod in items]
        if workload:
            out = [p for p in out if p.workload == workload]
        return sorted(out, key=lambda p: (p.workload, p.name))

    def _guarded(self, ctx: _Context, call: Callable[[float], Any]) -> Any:
        """Run one request function with a deadline; the cluster's failures as SourceError, a 404 or a
        400 as :class:`UsageError` / :class:`PodNotFound` carrying the API server's message."""
        if self._closed:
            raise SourceError("the Kubernetes source is closed")
        try:
            self._api(ctx)
            return call(time.monotonic() + max(self._timeout_s, 5.0))
        except _NotFound as exc:
            raise PodNotFound(f"cluster {ctx.spec.name}: {exc}") from None
        except _BadRequest as exc:
            raise UsageError(f"cluster {ctx.spec.name}: {exc.message}") from None
        except (_ClusterFailed, _Gone) as exc:
            raise SourceError(f"cluster {ctx.spec.name}: {exc}") from None

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
        """A container's log (``GET .../pods/<pod>/log``, counted as ``k8s`` / ``get:pods/log``): its last
        ``tail_lines`` lines (0: all), of the previous (crashed) container when ``previous``.

        Raises:
            PodNotFound: no such pod. UsageError: the API refused (e.g. ``previous terminated container
            … not found``). SourceError: the cluster cannot be read.
        """
        ctx = self._context_of(cluster)
        if tail_lines < 0:
            raise UsageError(f"tail must be >= 0, got {tail_lines}")
        params: dict[str, str | int] = {}
        if tail_lines:
            params["tailLines"] = tail_lines
        if previous:
            params["previous"] = "true"
        if container:
            params["container"] = container
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}/log"
        text: str = self._guarded(ctx, lambda deadline: self._call(
            ctx, deadline, path, params, op="get:pods/log", raw=True))
        return text

    def pod_events(self, cluster: str, namespace: str, pod: str) -> list[EventInfo]:
        """The events about one pod, oldest last occurrence first (one list call with a field selector,
        counted as ``list:events``: Normal events are not in the watched cache)."""
        ctx = self._context_of(cluster)
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/events"
        selector = f"involvedObject.name={pod},involvedObject.kind=Pod"
        items, _ = self._guarded(ctx, lambda deadline: self._list(
            ctx, deadline, path, resource="events", fieldSelector=selector))
        events = [_event_info(ev) for ev in items]
        return sorted(events, key=lambda e: (e.last_seen or _EPOCH, e.reason))

    def describe_pod(self, cluster: str, namespace: str, pod: str) -> dict[str, Any]:
        """``kubectl describe pod`` as a dict: ``pod`` (a :class:`PodInfo`), labels, annotations, IP, QoS,
        conditions and containers (image, ports, requests, probes, state, last state, restarts)."""
        ctx = self._context_of(cluster)
        cached = self._cached(ctx, "pods", "nodes")
        obj = next((p for p in cached["pods"] if _key_of(p) == (namespace, pod)), None)
        if obj is None:
            path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}"
            obj = self._guarded(ctx, lambda deadline: self._call(ctx, deadline, path, {}, op="get:pods"))
        assert obj is not None
        nodes = {_meta(n, "name"): n for n in cached["nodes"]}
        info = _pod_info(ctx.spec, obj, nodes, datetime.now(UTC))
        return _describe(info, obj)

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
            return _Refused(f"cannot connect to API server {ctx.server}: connection refused")
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


def _watch_thread(
    ref: weakref.ref[KubernetesSource], ctx: _Context, inf: _Informer, generation: int
) -> None:
    """A watch thread: steps until the source is closed, idle, or gone (holding it only weakly, so a
    source dropped without :meth:`KubernetesSource.close` stops its watches once its streams end).

    A back-off ends early when another thread rebuilt the cluster's client (``resolve_endpoints`` found
    it on a new port): after a long outage the back-off is up to 15 s, and every watch of the cluster
    would otherwise wait it out before finding the restarted server."""
    state = {"failures": 0, "api": ctx.api_generation}
    while True:
        source = ref()
        if source is None or not source._running(ctx, generation):
            return
        delay = source._watch_step(ctx, inf, generation, state)
        del source
        end = time.monotonic() + delay
        while time.monotonic() < end:
            time.sleep(min(0.1, delay))
            source = ref()
            if source is None or not source._running(ctx, generation):
                return
            del source
            if ctx.api_generation != state["api"]:
                break  # the cluster's client was rebuilt (its server moved): try the new one now


def _key_of(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _newer_or_equal(current: str, incoming: str) -> bool:
    """Whether the cache at ``current`` already has what an event at ``incoming`` carries."""
    try:
        return int(incoming) <= int(current)
    except ValueError:
        return False


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


# -- pods --------------------------------------------------------------------------------------------


def _pod_status_text(pod: Mapping[str, Any]) -> str:
    """STATUS as ``kubectl get pods`` derives it: a container's waiting / terminated reason, else the
    pod's reason, else its phase; ``Terminating`` once deleted."""
    status = pod.get("status") or {}
    text = str(status.get("reason") or status.get("phase") or "Unknown")
    for cs in status.get("containerStatuses") or ():
        state = cs.get("state") or {}
        waiting = (state.get("waiting") or {}).get("reason")
        terminated = state.get("terminated") or {}
        if waiting:
            text = str(waiting)
        elif terminated:
            text = str(terminated.get("reason") or f"ExitCode:{terminated.get('exitCode')}")
    if _meta(pod, "deletionTimestamp"):
        text = "Terminating"
    return text


def _pod_info(spec: ClusterSpec, pod: Mapping[str, Any], nodes: Mapping[str, Any], now: datetime) -> PodInfo:
    status = pod.get("status") or {}
    containers = (pod.get("spec") or {}).get("containers") or []
    statuses = status.get("containerStatuses") or []
    node = _dig(pod, "spec", "nodeName")
    labels = _dig(nodes.get(node) or {}, "metadata", "labels") or {}
    group = next((str(labels[k]) for k in NODE_GROUP_LABELS if labels.get(k)), None)
    created = _parse_time(_meta(pod, "creationTimestamp"))
    last_exit = ""
    for cs in statuses:
        term = _dig(cs, "lastState", "terminated")
        if term:
            last_exit = f"{term.get('reason') or 'Terminated'} (exit {term.get('exitCode')})"
    pod_labels = _meta(pod, "labels") or {}
    return PodInfo(
        cluster=spec.name,
        namespace=str(_meta(pod, "namespace") or ""),
        name=str(_meta(pod, "name") or ""),
        workload=str(pod_labels.get("app") or pod_labels.get("app.kubernetes.io/name") or ""),
        phase=str(status.get("phase") or "Unknown"),
        status=_pod_status_text(pod),
        ready=sum(1 for cs in statuses if cs.get("ready")),
        containers=len(containers),
        restarts=sum(int(cs.get("restartCount") or 0) for cs in statuses),
        age_s=max(0.0, (now - created).total_seconds()) if created else 0.0,
        node=str(node) if node else None,
        node_group=group,
        region=spec.region,
        image=str(containers[0].get("image") or "") if containers else "",
        last_exit=last_exit,
        created=created,
    )


def _event_info(ev: Mapping[str, Any]) -> EventInfo:
    last = ev.get("lastTimestamp") or ev.get("eventTime") or _meta(ev, "creationTimestamp")
    return EventInfo(
        type=str(ev.get("type") or "Normal"),
        reason=str(ev.get("reason") or ""),
        message=str(ev.get("message") or ""),
        count=int(ev.get("count") or 1),
        first_seen=_parse_time(ev.get("firstTimestamp") or last),
        last_seen=_parse_time(last),
        source=str(_dig(ev, "source", "component") or ev.get("reportingComponent") or ""),
        object_kind=str(_dig(ev, "involvedObject", "kind") or ""),
        object_name=str(_dig(ev, "involvedObject", "name") or ""),
    )


def _describe(info: PodInfo, pod: Mapping[str, Any]) -> dict[str, Any]:
    status = pod.get("status") or {}
    statuses = {cs.get("name"): cs for cs in status.get("containerStatuses") or ()}
    containers = []
    for c in (pod.get("spec") or {}).get("containers") or ():
        cs = statuses.get(c.get("name")) or {}
        containers.append({
            "name": c.get("name"),
            "image": c.get("image"),
            "ports": [f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}" for p in c.get("ports") or ()],
            "requests": dict(_dig(c, "resources", "requests") or {}),
            "readiness": _probe(c.get("readinessProbe")),
            "liveness": _probe(c.get("livenessProbe")),
            "state": _state_text(cs.get("state")),
            "last_state": _state_text(cs.get("lastState")),
            "ready": bool(cs.get("ready")),
            "restarts": int(cs.get("restartCount") or 0),
        })
    return {
        "pod": info,
        "labels": dict(_meta(pod, "labels") or {}),
        "annotations": dict(_meta(pod, "annotations") or {}),
        "controlled_by": next((f"{o.get('kind')}/{o.get('name')}" for o in _meta(pod, "ownerReferences") or ()
                               if o.get("controller")), ""),
        "ip": str(status.get("podIP") or ""),
        "qos": str(status.get("qosClass") or ""),
        "start_time": str(status.get("startTime") or ""),
        "conditions": {str(c.get("type")): str(c.get("status")) for c in status.get("conditions") or ()},
        "containers": containers,
    }


def _probe(probe: Any) -> str:
    if not isinstance(probe, Mapping):
        return ""
    get = probe.get("httpGet") or {}
    return f"http-get :{get.get('port')}{get.get('path', '/')} period={probe.get('periodSeconds', 10)}s"


def _state_text(state: Any) -> str:
    if not isinstance(state, Mapping) or not state:
        return ""
    kind, detail = next(iter(state.items()))
    detail = detail if isinstance(detail, Mapping) else {}
    if kind == "waiting":
        return f"Waiting: {detail.get('reason', '')}"
    if kind == "running":
        return f"Running since {detail.get('startedAt', '?')}"
    return (f"Terminated: {detail.get('reason', '')} (exit {detail.get('exitCode')}) "
            f"{detail.get('startedAt', '?')} → {detail.get('finishedAt', '?')}")
