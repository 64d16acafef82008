"""The Kubernetes API emulator: every cluster of the fleet behind one 127.0.0.1 port.

Why this module exists: it is the one class the rest of the sandbox uses
(:class:`KubeApiEmulator`, an :class:`~opsconsole.sandbox.emulator.Emulator`); it composes the parts of
:mod:`opsconsole.sandbox.kube` and plays the injected faults. Read it first, then the part you need:

* ``store.py``: the per-cluster objects, the resourceVersion counter, the answer cache;
* ``rest.py``: routing and the REST verbs (list / get / create / PUT / PATCH, dry run, watch);
* ``watch.py``: the event logs and the watch streams (bookmarks, 410 Expired, selectors);
* ``semantics.py``: selectors, patches, continue tokens, PUT / scale rules (pure functions);
* ``resources.py``: the resource table and the discovery documents;
* ``status.py``: error answers (``Status`` objects), including the faults' errors;
* ``objects.py``: namespaces, deployments, HPAs: seeding, and their status from the world;
* ``nodes.py``, ``pods.py``, ``events.py``: nodes and the autoscaler status, pods, warning events;
* ``sync.py``: publish the world into the objects, collect clients' writes;
* ``server.py``: the HTTP server and handler; ``kubeconfig.py``: the kubeconfig clients use;
* ``naming.py``: stable uids, names and timestamps.

Faults (``emulator.faults``, the sandbox's one :class:`~opsconsole.sandbox.emulator.Faults`): ``down``
closes the listening socket and every open connection (clients get *connection refused*); ``slow``
waits ``seconds`` before every answer; ``forbidden`` answers 403 (``code=401``: 401 Unauthorized, as
for expired credentials); ``throttled`` answers 429 with ``Retry-After`` (``retry_after``, default 1 s);
``malformed`` answers a truncated body (``mode="truncated"``, the default: the declared Content-Length
is not delivered) or a garbled one (``mode="garbled"``); ``gone`` answers 410 ``Expired`` to list
requests that carry a continue token. A request's :class:`~opsconsole.sandbox.emulator.FaultRequest`
has the bearer token as ``client`` and the cluster as ``scope``: ``match=scope_in("eks-use1-prod")``
hits only that cluster. A watch stream open when ``down`` starts is dropped; ``malformed`` on a watch
sends a garbled line and drops the connection.

Watches and counting: :meth:`KubeApiEmulator.drop_watches` ends every open stream abruptly (a dropped
connection, for resumption tests); :attr:`KubeApiEmulator.calls` counts the requests served by
``verb:plural`` (``list:pods``, ``watch:deployments``, ``get:pods/log``...).

Pod logs (``GET .../pods/<name>/log``, text/plain; ``follow`` streams) are synthesised from the stored
pods (:mod:`opsconsole.sandbox.kube.logs`); the ``bad_deploy`` incident's crash-looping pods and their
events come from :mod:`opsconsole.sandbox.kube.crashloop`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from opsconsole.core.errors import SandboxError
from opsconsole.core.fleet.model import Fleet
from opsconsole.core.processes import mark_owned
from opsconsole.sandbox.emulator import Endpoints, FaultRequest, Faults
from opsconsole.sandbox.kube.kubeconfig import write_kubeconfig
from opsconsole.sandbox.kube.objects import seed_clusters
from opsconsole.sandbox.kube.resources import NAMESPACE
from opsconsole.sandbox.kube.rest import RestApi
from opsconsole.sandbox.kube.server import Answer, Listener, Payload
from opsconsole.sandbox.kube.status import ApiError, fault_error, not_served
from opsconsole.sandbox.kube.store import Store
from opsconsole.sandbox.kube.sync import WorldSync
from opsconsole.sandbox.world import World

__all__ = ["KubeApiEmulator"]

log = logging.getLogger(__name__)


class KubeApiEmulator:
    """A Kubernetes API server per fleet cluster, all on one 127.0.0.1 port (see the module docstring).

    Args:
        fleet: the fleet whose clusters are served (one Deployment + HPA per service of each cluster's
            environment, in namespace :data:`~opsconsole.sandbox.kube.resources.NAMESPACE`).
        kubeconfig_path: where :meth:`start` writes the kubeconfig; default a fresh temporary
            directory, removed by :meth:`stop`.

    Endpoints returned by :meth:`start`: ``urls["k8s"]`` is the server root, ``urls["k8s/<cluster>"]``
    each cluster's server URL; ``settings["kubeconfig"]`` the kubeconfig path (contexts named like the
    clusters), ``settings["namespace"]`` the workloads' namespace.
    """

    name = "k8s"

    def __init__(self, fleet: Fleet, *, kubeconfig_path: Path | str | None = None) -> None:
        self._fleet = fleet
        self._kubeconfig_path = Path(kubeconfig_path) if kubeconfig_path is not None else None
        self._tmpdir: Path | None = None
        self._store = Store()
        self._listener = Listener(self._respond)
        self._rest = RestApi(self._store, lambda: self._listener.port)
        self._sync = WorldSync(self._store)
        #: Fault injection (see the module docstring).
        self.faults = Faults("Kubernetes API", on_down=self._set_down)
        #: What collect() refused to apply, newest last (also logged).
        self.notes: deque[str] = self._sync.notes
        self._endpoints: Endpoints | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Endpoints:
        """Seed every cluster, bind 127.0.0.1 on a free port, write the kubeconfig, serve."""
        if self._endpoints is not None:
            return self._endpoints
        with self._store.lock:
            self._store.clusters = seed_clusters(self._fleet, self._store.next_rv)
            self._store.commit()  # the baseline of the watch event logs
        try:
            self._listener.bind(0)
        except OSError as exc:
            raise SandboxError(f"the Kubernetes API emulator could not bind 127.0.0.1: {exc}") from None
        base = f"http://127.0.0.1:{self._listener.port}"
        urls = {"k8s": base}
        urls.update({f"k8s/{name}": self.server_url(name) for name in self._store.clusters})
        path = self._kubeconfig_file()
        write_kubeconfig(path, list(self._store.clusters), self.server_url)
        self._endpoints = Endpoints(urls=urls, settings={"kubeconfig": str(path), "namespace": NAMESPACE})
        return self._endpoints

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        self._store.watches.drop_all()
        self._listener.unbind()
        self._endpoints = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def server_url(self, cluster: str) -> str:
        """The API server URL of one cluster (``http://127.0.0.1:PORT/clusters/<cluster>``)."""
        if self._listener.port is None:
            raise SandboxError("the Kubernetes API emulator is not started")
        return f"http://127.0.0.1:{self._listener.port}/clusters/{cluster}"

    @property
    def calls(self) -> Counter[str]:
        """Requests served so far, by ``verb:plural`` (``list:pods``, ``watch:pods``, ``get:configmaps``)."""
        with self._store.lock:
            return Counter(self._store.calls)

    def drop_watches(self) -> None:
        """End every open watch stream abruptly, as a dropped connection would (clients must resume)."""
        self._store.watches.drop_all()

    @property
    def open_watches(self) -> int:
        """How many watch streams are open now."""
        with self._store.lock:
            return self._store.watches.open_streams

    @property
    def bookmark_s(self) -> float:
        """How often a watch that allows bookmarks gets one (seconds)."""
        return self._store.watches.bookmark_s

    @bookmark_s.setter
    def bookmark_s(self, value: float) -> None:
        self._store.watches.bookmark_s = max(0.05, float(value))

    def clusters(self) -> list[str]:
        """Names of the clusters served."""
        return sorted(self._store.clusters)

    def _kubeconfig_file(self) -> Path:
        if self._kubeconfig_path is None:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="opsconsole-kube-"))
            mark_owned(self._tmpdir)  # so that a later recovery can remove it if this process dies
            return self._tmpdir / "kubeconfig"
        path = self._kubeconfig_path
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # -- the world ------------------------------------------------------------------------------

    def publish(self, world: World) -> None:
        """Write the world's current state: nodes, autoscaler status, deployments, HPAs, pods, events."""
        self._sync.publish(world)

    def collect(self, world: World) -> None:
        """Apply HPA bounds and replicas that clients changed since the last publish to the world.

        See :meth:`opsconsole.sandbox.kube.sync.WorldSync.collect` (refusals go to :attr:`notes`).
        """
        self._sync.collect(world)

    # -- requests and faults --------------------------------------------------------------------

    def _set_down(self, down: bool) -> None:
        if down:
            self._store.watches.drop_all()
            self._listener.unbind()
        elif self._listener.port is not None:
            self._listener.bind(self._listener.port)

    def _respond(
        self, method: str, raw_path: str, content_type: str, body: bytes, authorization: str = ""
    ) -> Answer | None:
        """Answer one HTTP request (None: drop the connection), playing the fault it draws, if any."""
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        segments = [s for s in parts.path.split("/") if s]
        cluster = segments[1] if len(segments) >= 2 and segments[0] == "clusters" else ""
        fault = self.faults.take(
            FaultRequest(
                client=authorization.removeprefix("Bearer ").strip(),
                scope=cluster,
                path=parts.path,
                continued=bool(query.get("continue")),
            )
        )
        try:
            if fault is not None:
                if fault.kind == "down":
                    return None
                if fault.kind == "slow":
                    fault.stall()
                elif (err := fault_error(fault, method, segments[2:])) is not None:
                    raise err
            code, data = self._answer(method, raw_path, cluster, segments[2:], query, content_type, body)
            truncate = False
            if fault is not None and fault.kind == "malformed" and isinstance(data, Iterator):
                data.close()  # type: ignore[attr-defined]  # a generator
                data = b'{"type":"ADDED","object":{"metadata":\x00\xff garbled\n'
                truncate = True
            elif fault is not None and fault.kind == "malformed" and isinstance(data, bytes):
                if fault.param("mode", "truncated") == "garbled":
                    data = b'{"kind":"List","items":[{"metadata":' + data[:40] + b"\x00\xff garbled"
                else:
                    truncate = True
            headers = {"Content-Type": "text/plain"} if segments[-1:] == ["log"] and code == 200 else {}
            return code, headers, data, truncate
        except ApiError as err:
            return err.code, err.headers, json.dumps(err.body()).encode(), False
        except Exception as exc:  # a bug here must answer 500, not kill the connection thread
            log.exception("kube-api: internal error on %s %s", method, raw_path)
            internal = ApiError(500, "InternalError", f"internal error: {type(exc).__name__}: {exc}")
            return 500, {}, json.dumps(internal.body()).encode(), False

    def _answer(
        self,
        method: str,
        raw_path: str,
        cluster: str,
        seg: list[str],
        query: dict[str, str],
        content_type: str,
        body: bytes,
    ) -> tuple[int, Payload]:
        """The encoded answer of the REST API, from the answer cache for a GET seen at this state."""
        store = self._store
        if cluster not in store.clusters:
            raise not_served(f"the server could not find the requested resource {urlsplit(raw_path).path}")
        watch = query.get("watch") in ("1", "true")
        cached = store.cached(raw_path) if method == "GET" and not watch else None
        if cached is not None:
            store.count(_verb_of(seg, query))
            return 200, cached
        epoch = store.epoch
        code, payload = self._rest.dispatch(
            method, cl=store.clusters[cluster], seg=seg, query=query, content_type=content_type, body=body
        )
        if not isinstance(payload, dict):
            return code, payload
        data = json.dumps(payload, separators=(",", ":")).encode()
        if method == "GET" and code == 200:
            store.remember(raw_path, data, epoch)
        else:
            store.changed()
        return code, data


def _verb_of(seg: list[str], query: dict[str, str]) -> str:
    """``verb:plural`` of a GET answered from the cache (as :class:`RestApi` counts the others)."""
    rest = seg[2:] if seg[:1] == ["api"] else seg[3:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return "get:discovery"
    if len(rest) == 1:
        return f"list:{rest[0]}"
    return f"get:{rest[0]}" + (f"/{rest[2]}" if len(rest) >= 3 else "")
