"""A local Kubernetes API server for the sandbox: every cluster of the fleet behind one port.

Why this module exists: on the sandbox, opsconsole reads Kubernetes only through the official client
(:mod:`opsconsole.providers.k8s`) and changes it only through playbooks (``kubernetes.core``), so it needs
an API server that speaks the real wire protocol. None can be had on these machines (no kube-apiserver
binary; kind / k3s / kwok / envtest download binaries at run time) and kmock 0.8 falls short (namespaces,
PUT, selectors, uid / resourceVersion, list ``kind`` and a real ``scale`` subresource are missing or
broken, see ``STACK_NOTES.md``). :class:`KubeApiEmulator` is the small server the project needs itself.

Design choices:

* **stdlib ``ThreadingHTTPServer``, not aiohttp.** Requests are tiny and few (tens of keep-alive
  connections, one thread each); a plain threaded server needs no event loop thread, lets the
  ``slow`` fault block one connection with ``time.sleep`` without touching the others, and lets the
  ``down`` fault really refuse connections by closing the listening socket and rebinding it later.
* **One server, one port, a path prefix per cluster.** A cluster's server URL is
  ``http://127.0.0.1:PORT/clusters/<cluster>``; the official client joins its host and the resource
  path, so a prefix works exactly like Rancher's ``/k8s/clusters/<id>`` proxy does. :meth:`start`
  writes a kubeconfig with one cluster + context (named like the cluster) per fleet cluster and a
  dummy token (``Endpoints.settings["kubeconfig"]``).
* **What is served** (per cluster): discovery (``/version``, ``/api``, ``/apis``, ``/api/v1``,
  ``/apis/apps/v1``, ``/apis/autoscaling/v2`` with kinds, verbs, scope, short names and the
  ``deployments/scale`` and ``*/status`` subresources); namespaces (list / get / create / update /
  patch); deployments and HPAs v2 (list / get / create / PUT / PATCH with merge, strategic-merge (as
  merge: our objects have no keyed lists that matter), JSON patch and apply-patch (as merge)); the
  ``deployments/scale`` subresource (GET / PUT / PATCH really change ``spec.replicas``); nodes, pods and
  events (read only); configmaps (read, create, update, patch). Lists honour ``labelSelector``
  (``=``, ``==``, ``!=``, ``in``, ``notin``, exists, ``!``exists), ``fieldSelector`` on any dotted path
  (``=``, ``==``, ``!=``), ``limit`` / ``continue`` (opaque base64 tokens, ``remainingItemCount``).
  Every object carries ``uid``, ``resourceVersion``, ``generation`` and ``creationTimestamp``; lists
  carry ``kind`` / ``apiVersion`` / ``metadata.resourceVersion``; errors are ``Status`` objects
  (400, 403, 401, 404, 405, 409, 410, 415, 422, 429). PUT honours optimistic concurrency (409 on a
  stale ``resourceVersion``). **Watch is not implemented** (``watch=true`` answers 405): nothing in
  opsconsole or ``k8s_scale`` with ``wait: false`` needs it.
* **Pods are generated lazily.** :meth:`publish` only records per deployment how many pods are ready,
  pending (no node fits them) and unreachable (region down); the pod objects are built from those counts
  on the first list after a publish, with stable names, uids and node assignment, and cached until the
  next publish, so pagination over them is consistent.
* **Server-side dry run** (``dryRun=All`` on create / PUT / PATCH, what ``kubernetes.core`` sends in check
  mode) answers the object as it would be and keeps nothing.
* **Zero counts are omitted** from a deployment's status, as the real API does (``omitempty``);
  ``kubernetes.core``'s waiter needs it to see a deployment at 0 replicas as ready.
* **Continue tokens** resume after the last key of the previous page on the current state (real servers
  serve the snapshot of the first page; objects here only change at publish time, between reads).

Faults (``emulator.faults``, the sandbox's one :class:`~opsconsole.sandbox.emulator.Faults`): ``down``
closes the listening socket and every open connection (clients get *connection refused*); ``slow``
waits ``seconds`` before every answer; ``forbidden`` answers 403 (``code=401``: 401 Unauthorized, as
for expired credentials); ``throttled`` answers 429 with ``Retry-After`` (``retry_after``, default 1 s);
``malformed`` answers a truncated body (``mode="truncated"``, the default: the declared Content-Length
is not delivered) or a garbled one (``mode="garbled"``); ``gone`` answers 410 ``Expired`` to list
requests that carry a continue token. A request's :class:`~opsconsole.sandbox.emulator.FaultRequest`
has the bearer token as ``client`` and the cluster as ``scope``: ``match=scope_in("eks-use1-prod")``
hits only that cluster.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import dataclasses
import functools
import json
import logging
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from opsconsole.core.errors import OpsError, SandboxError
from opsconsole.core.fleet.model import (
    ClusterKind,
    ClusterSpec,
    ClusterState,
    Environment,
    Fleet,
    WorkloadState,
)
from opsconsole.sandbox.emulator import Endpoints, FaultRequest, Faults, QuietHTTPServer
from opsconsole.sandbox.world import World

__all__ = [
    "AUTOSCALER_STATUS",
    "CAPACITY_LABELS",
    "NAMESPACE",
    "KubeApiEmulator",
]

log = logging.getLogger(__name__)

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
_VERSIONS = {
    ClusterKind.EKS: "v1.31.4-eks-2d5f260",
    ClusterKind.GKE: "v1.31.5-gke.1023000",
    ClusterKind.AKS: "v1.31.3",
}
_HPA_TARGET_PCT = 70
_CPU_REQUEST_M = 500
_DUMMY_TOKEN = "sandbox-not-a-secret"
_NOTES_KEPT = 200
#: Most GET answers kept between two changes of the stored state (see KubeApiEmulator._cached).
_ANSWERS_KEPT = 2000

JsonObj = dict[str, Any]


# --------------------------------------------------------------------------------------------------
# Resources served
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Resource:
    group_version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    #: Pods are built from counts at list time; they cannot be written.
    virtual: bool = False

    @property
    def writable(self) -> bool:
        return "update" in self.verbs

    @property
    def group(self) -> str:
        return self.group_version.split("/")[0] if "/" in self.group_version else ""


_RW = ("create", "get", "list", "patch", "update")
_RO = ("get", "list")
_RESOURCES: tuple[_Resource, ...] = (
    _Resource("v1", "namespaces", "Namespace", False, _RW, ("ns",)),
    _Resource("v1", "nodes", "Node", False, _RO, ("no",)),
    _Resource("v1", "pods", "Pod", True, _RO, ("po",), virtual=True),
    _Resource("v1", "events", "Event", True, _RO, ("ev",)),
    _Resource("v1", "configmaps", "ConfigMap", True, _RW, ("cm",)),
    _Resource("apps/v1", "deployments", "Deployment", True, _RW, ("deploy",), ("scale", "status")),
    _Resource(
        "autoscaling/v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        True,
        _RW,
        ("hpa",),
        ("status",),
    ),
)
_BY_PATH = {(r.group_version, r.plural): r for r in _RESOURCES}
_GROUPS = {"apps": "v1", "autoscaling": "v2"}
_SUB_VERBS = {"scale": ("get", "patch", "update"), "status": ("get", "patch", "update")}


class _ApiError(Exception):
    """An answer other than 2xx, rendered as a ``Status`` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: JsonObj | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def body(self) -> JsonObj:
        status: JsonObj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            status["details"] = self.details
        return status


def _not_found(res: _Resource, name: str) -> _ApiError:
    return _ApiError(
        404,
        "NotFound",
        f'{_qualified(res)} "{name}" not found',
        details={"name": name, "group": res.group, "kind": res.plural},
    )


def _invalid(res: _Resource, name: str, message: str) -> _ApiError:
    return _ApiError(
        422,
        "Invalid",
        f'{res.kind}.{res.group or "core"} "{name}" is invalid: {message}',
        details={"name": name, "group": res.group, "kind": res.kind},
    )


def _qualified(res: _Resource) -> str:
    return f"{res.plural}.{res.group}" if res.group else res.plural


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _uid(*parts: str) -> str:
    return _uid_of("/".join(parts))


@functools.lru_cache(maxsize=16384)
def _uid_of(path: str) -> str:
    # Cached: the pods are rebuilt after every publish with the same names, hence the same uids.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "opsconsole-sandbox/" + path))


def _short_hash(text: str, n: int = 8) -> str:
    return f"{zlib.crc32(text.encode()):08x}"[:n]


_POD_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _pod_suffix(seed: str, i: int) -> str:
    x = zlib.crc32(f"{seed}/{i}".encode())
    chars = []
    for _ in range(5):
        x, r = divmod(x, len(_POD_ALPHABET))
        chars.append(_POD_ALPHABET[r])
    return "".join(chars) + (f"{i:x}" if i >= 1 else "")


# --------------------------------------------------------------------------------------------------
# Selectors, patches, continue tokens
# --------------------------------------------------------------------------------------------------


def _split_selector(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if current:
        parts.append("".join(current).strip())
    return [p for p in parts if p]


_SET_RE = re.compile(r"^([A-Za-z0-9._/-]+)\s+(in|notin)\s+\(([^)]*)\)$")
_EQ_RE = re.compile(r"^([A-Za-z0-9._/-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)$")
_KEY_RE = re.compile(r"^(!?)([A-Za-z0-9._/-]+)$")


def _label_matcher(text: str) -> Callable[[Mapping[str, str]], bool]:
    """A predicate on labels for a Kubernetes label selector; raises 400 on a bad one."""
    reqs: list[tuple[str, str, frozenset[str]]] = []  # (key, op, values)
    for req in _split_selector(text):
        if m := _SET_RE.match(req):
            reqs.append((m.group(1), m.group(2), frozenset(v.strip() for v in m.group(3).split(","))))
        elif m := _EQ_RE.match(req):
            reqs.append((m.group(1), "notin" if m.group(2) == "!=" else "in", frozenset([m.group(3)])))
        elif m := _KEY_RE.match(req):
            reqs.append((m.group(2), "!exists" if m.group(1) else "exists", frozenset()))
        else:
            raise _ApiError(400, "BadRequest", f"unable to parse requirement: {req!r}")

    def matches(labels: Mapping[str, str]) -> bool:
        for key, op, values in reqs:
            value = labels.get(key)
            ok = {
                "in": value in values,
                "notin": value not in values,
                "exists": key in labels,
                "!exists": key not in labels,
            }[op]
            if not ok:
                return False
        return True

    return matches


def _path_value(obj: JsonObj, dotted: str) -> str:
    value: Any = obj
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return ""
        value = value.get(part)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _field_matcher(text: str) -> Callable[[JsonObj], bool]:
    """A predicate on objects for a field selector (``path=value``, ``==``, ``!=`` on dotted paths)."""
    reqs: list[tuple[str, bool, str]] = []  # (path, equal, value)
    for req in _split_selector(text):
        m = re.match(r"^([A-Za-z0-9._]+)\s*(==|=|!=)\s*(.*)$", req)
        if not m:
            raise _ApiError(400, "BadRequest", f"invalid field selector: {req!r}")
        reqs.append((m.group(1), m.group(2) != "!=", m.group(3)))

    def matches(obj: JsonObj) -> bool:
        return all((_path_value(obj, path) == value) == equal for path, equal, value in reqs)

    return matches


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    if not isinstance(ops, list):
        raise ValueError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)

    def parent(path: str) -> tuple[Any, str]:
        parts = _pointer(path)
        if not parts:
            raise ValueError("cannot address the document root here")
        node = doc
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        return node, parts[-1]

    def get(path: str) -> Any:
        node = doc
        for p in _pointer(path):
            node = node[int(p)] if isinstance(node, list) else node[p]
        return node

    def add(path: str, value: Any) -> None:
        node, last = parent(path)
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), value)
        else:
            node[last] = value

    def remove(path: str) -> Any:
        node, last = parent(path)
        return node.pop(int(last)) if isinstance(node, list) else node.pop(last)

    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ValueError(f"invalid JSON patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        try:
            if kind == "add":
                add(path, copy.deepcopy(op["value"]))
            elif kind == "remove":
                remove(path)
            elif kind == "replace":
                node, last = parent(path)
                if isinstance(node, list):
                    node[int(last)] = copy.deepcopy(op["value"])
                else:
                    if last not in node:
                        raise KeyError(last)
                    node[last] = copy.deepcopy(op["value"])
            elif kind == "move":
                add(path, remove(op["from"]))
            elif kind == "copy":
                add(path, copy.deepcopy(get(op["from"])))
            elif kind == "test":
                if get(path) != op["value"]:
                    raise ValueError(f"test failed at {path}")
            else:
                raise ValueError(f"unknown JSON patch op {kind!r}")
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"JSON patch {kind} at {path}: no such location ({exc})") from None
    return doc


def _encode_token(rv: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str) -> str:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        start = data["start"]
        if data.get("v") != "meta.k8s.io/v1" or not isinstance(start, str):
            raise ValueError("unknown token version")
        return start
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise _ApiError(400, "BadRequest", f"continue key is not valid: {token!r}") from None


# --------------------------------------------------------------------------------------------------
# Per-cluster state
# --------------------------------------------------------------------------------------------------


@dataclass
class _PodCounts:
    ready: int = 0
    pending: int = 0
    unreachable: int = 0


@dataclass
class _Cluster:
    spec: ClusterSpec
    services: list[str]
    #: plural → (namespace, name) → object. Cluster-scoped objects use namespace "".
    objects: dict[str, dict[tuple[str, str], JsonObj]] = field(default_factory=dict)
    pod_counts: dict[str, _PodCounts] = field(default_factory=dict)
    pods: list[JsonObj] | None = None
    #: (replicas, hpa_min, hpa_max) per service as last published (or seeded).
    published: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    #: Deployments of a non-prod cluster that a client scaled to 0 while the world still runs the cluster
    #: (one tier of an environment being stopped, or the tiers not yet started): served at 0 replicas
    #: until the whole cluster is stopped in the world (every deployment at 0) or a client scales them up.
    held_zero: set[str] = field(default_factory=set)


# --------------------------------------------------------------------------------------------------
# The HTTP layer
# --------------------------------------------------------------------------------------------------


class _Server(QuietHTTPServer):
    emulator: KubeApiEmulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "opsconsole-kube-api/1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle + the client's delayed ACK
        # add ~40 ms to every keep-alive answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.emulator._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.emulator._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("kube-api %s: " + format, self.address_string(), *args)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        result = self.server.emulator._respond(
            self.command, self.path, self.headers.get("Content-Type", ""), body,
            self.headers.get("Authorization", ""),
        )
        if result is None:  # down: drop the connection without an answer
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        code, headers, payload, truncate = result
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            self.send_header(key, value)
        if truncate:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload[: len(payload) // 2] if truncate else payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


# --------------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------------


class KubeApiEmulator:
    """A Kubernetes API server per fleet cluster, all on one 127.0.0.1 port (see the module docstring).

    Args:
        fleet: the fleet whose clusters are served (one Deployment + HPA per service of each cluster's
            environment, in namespace :data:`NAMESPACE`).
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
        self._lock = threading.RLock()
        self._rv = 1
        #: Bumped on every change of the stored state; GET answers encoded at that state, by raw path.
        self._epoch = 0
        self._answers: dict[str, bytes] = {}
        self._clusters: dict[str, _Cluster] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._conns: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        #: Fault injection (see the module docstring).
        self.faults = Faults("Kubernetes API", on_down=self._set_down)
        #: What collect() refused to apply, newest last (also logged).
        self.notes: deque[str] = deque(maxlen=_NOTES_KEPT)
        self._endpoints: Endpoints | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Endpoints:
        """Seed every cluster, bind 127.0.0.1 on a free port, write the kubeconfig, serve."""
        if self._endpoints is not None:
            return self._endpoints
        with self._lock:
            self._seed()
        try:
            self._bind(0)
        except OSError as exc:
            raise SandboxError(f"the Kubernetes API emulator could not bind 127.0.0.1: {exc}") from None
        assert self._port is not None
        base = f"http://127.0.0.1:{self._port}"
        urls = {"k8s": base}
        urls.update({f"k8s/{name}": self.server_url(name) for name in self._clusters})
        path = self._write_kubeconfig()
        self._endpoints = Endpoints(urls=urls, settings={"kubeconfig": str(path), "namespace": NAMESPACE})
        return self._endpoints

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        self._unbind()
        self._endpoints = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def server_url(self, cluster: str) -> str:
        """The API server URL of one cluster (``http://127.0.0.1:PORT/clusters/<cluster>``)."""
        if self._port is None:
            raise SandboxError("the Kubernetes API emulator is not started")
        return f"http://127.0.0.1:{self._port}/clusters/{cluster}"

    def _bind(self, port: int) -> None:
        server = _Server(("127.0.0.1", port), _Handler)
        server.emulator = self
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="kube-api", daemon=True
        )
        self._thread.start()

    def _unbind(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._conn_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._conn_lock:
            if opened:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _write_kubeconfig(self) -> Path:
        if self._kubeconfig_path is None:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="opsconsole-kube-"))
            path = self._tmpdir / "kubeconfig"
        else:
            path = self._kubeconfig_path
            path.parent.mkdir(parents=True, exist_ok=True)
        names = sorted(self._clusters)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": n, "cluster": {"server": self.server_url(n)}} for n in names],
            "users": [{"name": "sandbox", "user": {"token": _DUMMY_TOKEN}}],
            "contexts": [
                {"name": n, "context": {"cluster": n, "user": "sandbox", "namespace": NAMESPACE}}
                for n in names
            ],
            "current-context": names[0] if names else "",
        }
        path.write_text(json.dumps(config, indent=1), encoding="utf-8")  # JSON is YAML
        return path

    # -- faults ---------------------------------------------------------------------------------

    def _set_down(self, down: bool) -> None:
        if down:
            self._unbind()
        elif self._port is not None:
            self._bind(self._port)

    # -- request handling -------------------------------------------------------------------------

    def _respond(
        self, method: str, raw_path: str, content_type: str, body: bytes, authorization: str = ""
    ) -> tuple[int, dict[str, str], bytes, bool] | None:
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
        truncate = False
        headers: dict[str, str] = {}
        try:
            if fault is not None:
                if fault.kind == "down":
                    return None
                if fault.kind == "slow":
                    fault.stall()
                elif fault.kind == "forbidden":
                    if int(fault.param("code", 403)) == 401:
                        raise _ApiError(401, "Unauthorized", "Unauthorized")
                    raise _ApiError(
                        403,
                        "Forbidden",
                        f'/{"/".join(segments[2:])} is forbidden: User "system:anonymous" cannot '
                        f"{method.lower()} this resource: the sandbox credentials were revoked",
                    )
                elif fault.kind == "throttled":
                    after = str(fault.param("retry_after", 1))
                    raise _ApiError(
                        429,
                        "TooManyRequests",
                        "Too many requests, please try again later.",
                        details={"retryAfterSeconds": int(float(after))},
                        headers={"Retry-After": after},
                    )
                elif fault.kind == "gone":
                    raise _ApiError(
                        410,
                        "Expired",
                        "The provided continue parameter is too old to display a consistent list result. "
                        "You can start a new list without the continue parameter.",
                    )
            if cluster not in self._clusters:
                raise _ApiError(
                    404, "NotFound", f"the server could not find the requested resource {parts.path}"
                )
            cached = self._cached(raw_path) if method == "GET" else None
            if cached is not None:
                code, data = 200, cached
            else:
                epoch = self._epoch
                code, payload = self._dispatch(
                    method,
                    cl=self._clusters[cluster],
                    seg=segments[2:],
                    query=query,
                    content_type=content_type,
                    body=body,
                )
                data = json.dumps(payload, separators=(",", ":")).encode()
                if method == "GET" and code == 200:
                    self._remember(raw_path, data, epoch)
                else:
                    self._changed()
            if fault is not None and fault.kind == "malformed":
                if fault.param("mode", "truncated") == "garbled":
                    data = b'{"kind":"List","items":[{"metadata":' + data[:40] + b"\x00\xff garbled"
                else:
                    truncate = True
            return code, headers, data, truncate
        except _ApiError as err:
            return err.code, err.headers, json.dumps(err.body()).encode(), False
        except Exception as exc:  # a bug here must answer 500, not kill the connection thread
            log.exception("kube-api: internal error on %s %s", method, raw_path)
            internal = _ApiError(500, "InternalError", f"internal error: {type(exc).__name__}: {exc}")
            return 500, {}, json.dumps(internal.body()).encode(), False

    def _dispatch(
        self,
        method: str,
        *,
        cl: _Cluster,
        seg: list[str],
        query: dict[str, str],
        content_type: str,
        body: bytes,
    ) -> tuple[int, JsonObj]:
        if method == "GET":
            if seg == ["version"]:
                return 200, self._version(cl)
            if seg == ["api"]:
                return 200, {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self._port}"}
                    ],
                }
            if seg == ["apis"]:
                return 200, {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [self._group(g) for g in _GROUPS],
                }
            if seg == ["api", "v1"]:
                return 200, self._resource_list("v1")
            if len(seg) == 2 and seg[0] == "apis" and seg[1] in _GROUPS:
                return 200, {"kind": "APIGroup", "apiVersion": "v1", **self._group(seg[1])}
            if len(seg) == 3 and seg[0] == "apis" and _GROUPS.get(seg[1]) == seg[2]:
                return 200, self._resource_list(f"{seg[1]}/{seg[2]}")
        if seg[:2] == ["api", "v1"]:
            gv, rest = "v1", seg[2:]
        elif len(seg) >= 3 and seg[0] == "apis" and _GROUPS.get(seg[1]) == seg[2]:
            gv, rest = f"{seg[1]}/{seg[2]}", seg[3:]
        else:
            raise _ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces" and (gv, rest[2]) in _BY_PATH:
            namespace, rest = rest[1], rest[2:]
        if not rest or (gv, rest[0]) not in _BY_PATH or len(rest) > 3:
            raise _ApiError(404, "NotFound", "the server could not find the requested resource")
        res = _BY_PATH[(gv, rest[0])]
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) == 3 else None
        if sub is not None and sub not in res.subresources:
            raise _ApiError(404, "NotFound", f"{_qualified(res)} has no subresource {sub!r}")
        if res.namespaced and name is not None and not namespace:
            raise _ApiError(404, "NotFound", "the server could not find the requested resource")
        dry_run = query.get("dryRun")
        if dry_run not in (None, "", "All"):
            raise _ApiError(400, "BadRequest", f'dryRun: Unsupported value: {dry_run!r}: supported: "All"')
        with self._lock:
            if name is None:
                if method == "GET":
                    if query.get("watch") in ("1", "true"):
                        raise _ApiError(405, "MethodNotAllowed", "watch is not supported by this emulator")
                    return 200, self._list(cl, res, namespace, query)
                if method == "POST":
                    if not res.writable:
                        raise self._not_allowed(method, res)
                    obj = self._decode(body, content_type, res)
                    return 201, self._create(cl, res, namespace, obj, dry_run=bool(dry_run))
                raise self._not_allowed(method, res)
            if method == "GET":
                obj = self._get(cl, res, namespace, name)
                return 200, self._scale_of(obj) if sub == "scale" else obj
            if method in ("PUT", "PATCH"):
                if not res.writable:
                    raise self._not_allowed(method, res)
                current = self._get(cl, res, namespace, name)
                if dry_run:  # server-side dry run (kubernetes.core's check mode): answer, keep nothing
                    current = copy.deepcopy(current)
                if method == "PUT":
                    new = self._decode(body, content_type, res)
                    if not isinstance(new, dict):
                        raise _ApiError(400, "BadRequest", "the body of a PUT must be an object")
                else:
                    base = self._scale_of(current) if sub == "scale" else current
                    new = self._patch(base, body, content_type, res)
                return 200, self._write(cl, res, current, new, sub)
            raise self._not_allowed(method, res)

    @staticmethod
    def _not_allowed(method: str, res: _Resource) -> _ApiError:
        return _ApiError(
            405, "MethodNotAllowed", f"the server does not allow this method ({method}) on {_qualified(res)}"
        )

    @staticmethod
    def _decode(body: bytes, content_type: str, res: _Resource) -> Any:
        try:
            if "yaml" in content_type:
                return yaml.safe_load(body.decode())
            return json.loads(body or b"null")
        except (ValueError, yaml.YAMLError) as exc:
            raise _ApiError(
                400, "BadRequest", f"the body of the request could not be decoded: {exc}"
            ) from None

    def _patch(self, base: JsonObj, body: bytes, content_type: str, res: _Resource) -> JsonObj:
        kind = content_type.split(";", maxsplit=1)[0].strip()
        doc = self._decode(body, content_type, res)
        try:
            if kind == "application/json-patch+json":
                patched = _json_patch(base, doc)
            elif kind in (
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/apply-patch+yaml",
                "application/apply-patch+json",
            ):
                if not isinstance(doc, dict):
                    raise ValueError("a merge patch must be an object")
                patched = _merge_patch(base, doc)
            else:
                raise _ApiError(
                    415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {kind!r}"
                )
        except ValueError as exc:
            raise _ApiError(422, "Invalid", f"the patch could not be applied: {exc}") from None
        if not isinstance(patched, dict):
            raise _ApiError(422, "Invalid", "the patch did not produce an object")
        return patched

    # -- discovery ------------------------------------------------------------------------------

    def _version(self, cl: _Cluster) -> JsonObj:
        git = _VERSIONS[cl.spec.kind]
        return {
            "major": "1",
            "minor": "31",
            "gitVersion": git,
            "gitCommit": _short_hash(git, 8) * 5,
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.22.9",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    @staticmethod
    def _group(name: str) -> JsonObj:
        gv = {"groupVersion": f"{name}/{_GROUPS[name]}", "version": _GROUPS[name]}
        return {"name": name, "versions": [gv], "preferredVersion": gv}

    @staticmethod
    def _resource_list(group_version: str) -> JsonObj:
        resources: list[JsonObj] = []
        for res in _RESOURCES:
            if res.group_version != group_version:
                continue
            entry: JsonObj = {
                "name": res.plural,
                "singularName": res.kind.lower(),
                "namespaced": res.namespaced,
                "kind": res.kind,
                "verbs": list(res.verbs),
                "shortNames": list(res.short_names),
                "storageVersionHash": _short_hash(res.plural, 8) + "AAA=",
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
                resources.append(sub_entry)
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }

    # -- storage --------------------------------------------------------------------------------

    def _next_rv(self) -> str:
        self._rv += 1
        self._changed()
        return str(self._rv)

    # -- answer cache ---------------------------------------------------------------------------
    # A GET answer is a pure function of the stored state, which only changes on a write, a publish or
    # a collect: the encoded answer is kept (keyed by the raw path and query) until the next change.
    # Refreshes come several times per publish, and encoding the pod lists again for each was most of
    # this emulator's CPU, which it shares with the other emulators of `opsconsole sandbox up`.

    def _changed(self) -> None:
        with self._lock:
            self._epoch += 1
            self._answers.clear()

    def _cached(self, raw_path: str) -> bytes | None:
        with self._lock:
            return self._answers.get(raw_path)

    def _remember(self, raw_path: str, data: bytes, epoch: int) -> None:
        with self._lock:
            if self._epoch == epoch and len(self._answers) < _ANSWERS_KEPT:
                self._answers[raw_path] = data

    def _store(self, cl: _Cluster, res: _Resource) -> dict[tuple[str, str], JsonObj]:
        return cl.objects.setdefault(res.plural, {})

    def _get(self, cl: _Cluster, res: _Resource, namespace: str, name: str) -> JsonObj:
        if res.virtual:
            for pod in self._pods(cl):
                if pod["metadata"]["namespace"] == namespace and pod["metadata"]["name"] == name:
                    return pod
            raise _not_found(res, name)
        obj = self._store(cl, res).get((namespace, name))
        if obj is None:
            raise _not_found(res, name)
        return obj

    def _list(self, cl: _Cluster, res: _Resource, namespace: str, query: Mapping[str, str]) -> JsonObj:
        if res.virtual:
            items: Iterable[JsonObj] = self._pods(cl)
        else:
            items = (o for _, o in sorted(self._store(cl, res).items()))
        if namespace:
            items = (o for o in items if o["metadata"].get("namespace") == namespace)
        if query.get("labelSelector"):
            match = _label_matcher(query["labelSelector"])
            items = (o for o in items if match(o["metadata"].get("labels") or {}))
        if query.get("fieldSelector"):
            fmatch = _field_matcher(query["fieldSelector"])
            items = (o for o in items if fmatch(o))
        start = _decode_token(query["continue"]) if query.get("continue") else None
        selected = [o for o in items if start is None or self._key(o) > start]
        metadata: JsonObj = {"resourceVersion": str(self._rv)}
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise _ApiError(400, "BadRequest", f"limit must be an integer, got {query['limit']!r}") from None
        if limit > 0 and len(selected) > limit:
            metadata["continue"] = _encode_token(self._rv, self._key(selected[limit - 1]))
            metadata["remainingItemCount"] = len(selected) - limit
            selected = selected[:limit]
        return {
            "kind": f"{res.kind}List",
            "apiVersion": res.group_version,
            "metadata": metadata,
            "items": selected,
        }

    @staticmethod
    def _key(obj: JsonObj) -> str:
        meta = obj["metadata"]
        return f"{meta.get('namespace', '')}/{meta['name']}"

    def _create(
        self, cl: _Cluster, res: _Resource, namespace: str, obj: Any, *, dry_run: bool = False
    ) -> JsonObj:
        if not isinstance(obj, dict):
            raise _ApiError(400, "BadRequest", "the body of a create must be an object")
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name):
            raise _invalid(res, str(name), "metadata.name: Required value: a DNS-1123 name is required")
        if res.namespaced:
            if meta.get("namespace") not in (None, namespace):
                raise _ApiError(400, "BadRequest", "the namespace of the object does not match the URL")
            if ("", namespace) not in self._store(cl, _BY_PATH[("v1", "namespaces")]):
                raise _ApiError(404, "NotFound", f'namespaces "{namespace}" not found')
        store = self._store(cl, res)
        key = (namespace if res.namespaced else "", name)
        if key in store:
            raise _ApiError(
                409,
                "AlreadyExists",
                f'{_qualified(res)} "{name}" already exists',
                details={"name": name, "group": res.group, "kind": res.plural},
            )
        new = self._stamp(cl, res, obj, key)
        self._validate(res, new)
        if not dry_run:
            store[key] = new
        return new

    def _stamp(self, cl: _Cluster, res: _Resource, obj: JsonObj, key: tuple[str, str]) -> JsonObj:
        new = copy.deepcopy(obj)
        new["apiVersion"] = res.group_version
        new["kind"] = res.kind
        meta = new.setdefault("metadata", {})
        meta["name"] = key[1]
        if res.namespaced:
            meta["namespace"] = key[0]
        meta["uid"] = _uid(cl.spec.name, res.plural, key[0], key[1], str(self._rv))
        meta["resourceVersion"] = self._next_rv()
        meta["generation"] = 1
        meta["creationTimestamp"] = _now_iso()
        if res.plural == "namespaces":
            new["spec"] = {"finalizers": ["kubernetes"]}
            new["status"] = {"phase": "Active"}
        return new

    def _write(
        self, cl: _Cluster, res: _Resource, current: JsonObj, new: JsonObj, sub: str | None
    ) -> JsonObj:
        """Apply a PUT or a patched object to ``current`` (in place), keeping server-owned fields."""
        cur_meta = current["metadata"]
        name = cur_meta["name"]
        if sub == "scale":
            spec: JsonObj = new["spec"] if isinstance(new.get("spec"), dict) else {}
            replicas = spec.get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise _invalid(res, name, f"spec.replicas: Invalid value: {replicas!r}: must be >= 0")
            rv = (new.get("metadata") or {}).get("resourceVersion")
            if rv and rv != cur_meta["resourceVersion"]:
                raise self._conflict(res, name)
            if current["spec"].get("replicas") != replicas:
                current["spec"]["replicas"] = replicas
                cur_meta["generation"] = int(cur_meta.get("generation", 1)) + 1
                cur_meta["resourceVersion"] = self._next_rv()
            return self._scale_of(current)
        new_meta: JsonObj = new["metadata"] if isinstance(new.get("metadata"), dict) else {}
        if new_meta.get("name", name) != name:
            raise _ApiError(400, "BadRequest", "the name of the object does not match the URL")
        if new_meta.get("resourceVersion") and new_meta["resourceVersion"] != cur_meta["resourceVersion"]:
            raise self._conflict(res, name)
        candidate = copy.deepcopy(current)
        if sub == "status":
            candidate["status"] = copy.deepcopy(new.get("status") or {})
        else:
            for key, value in new.items():
                if key in ("metadata", "status", "kind", "apiVersion"):
                    continue
                candidate[key] = copy.deepcopy(value)
            for key in list(candidate):
                if key not in new and key not in ("metadata", "status", "kind", "apiVersion"):
                    del candidate[key]
            for key in ("labels", "annotations"):
                value = new_meta.get(key)
                if value:
                    candidate["metadata"][key] = copy.deepcopy(value)
                else:
                    candidate["metadata"].pop(key, None)
        self._validate(res, candidate)
        if candidate == current:
            return current
        if candidate.get("spec") != current.get("spec") or candidate.get("data") != current.get("data"):
            candidate["metadata"]["generation"] = int(cur_meta.get("generation", 1)) + 1
        candidate["metadata"]["resourceVersion"] = self._next_rv()
        current.clear()
        current.update(candidate)
        return current

    @staticmethod
    def _conflict(res: _Resource, name: str) -> _ApiError:
        return _ApiError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {_qualified(res)} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            details={"name": name, "group": res.group, "kind": res.plural},
        )

    @staticmethod
    def _validate(res: _Resource, obj: JsonObj) -> None:
        name = str(obj["metadata"].get("name"))
        spec = obj.get("spec")
        if res.plural == "deployments":
            if not isinstance(spec, dict):
                raise _invalid(res, name, "spec: Required value")
            replicas = spec.get("replicas", 1)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise _invalid(res, name, f"spec.replicas: Invalid value: {replicas!r}: must be >= 0")
        elif res.plural == "horizontalpodautoscalers":
            if not isinstance(spec, dict):
                raise _invalid(res, name, "spec: Required value")
            lo, hi = spec.get("minReplicas", 1), spec.get("maxReplicas")
            for label, value in (("minReplicas", lo), ("maxReplicas", hi)):
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise _invalid(res, name, f"spec.{label}: Invalid value: {value!r}: must be >= 1")
            if lo > hi:
                raise _invalid(
                    res,
                    name,
                    f"spec.maxReplicas: Invalid value: {hi}: must be greater than or equal to minReplicas",
                )

    @staticmethod
    def _scale_of(dep: JsonObj) -> JsonObj:
        meta = dep["metadata"]
        labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
                "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": (dep.get("spec") or {}).get("replicas", 0)},
            "status": {
                "replicas": (dep.get("status") or {}).get("replicas", 0),
                "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            },
        }

    # -- seeding --------------------------------------------------------------------------------

    def _seed(self) -> None:
        self._clusters = {}
        created = _now_iso()
        for spec in sorted(self._fleet.clusters.values(), key=lambda c: c.name):
            services = sorted(s.name for s in self._fleet.services_in(spec.environment))
            cl = _Cluster(spec=spec, services=services)
            self._clusters[spec.name] = cl
            ns_store = cl.objects.setdefault("namespaces", {})
            for ns in ("default", "kube-system", NAMESPACE):
                ns_store[("", ns)] = {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": ns,
                        "uid": _uid(spec.name, "namespaces", ns),
                        "resourceVersion": self._next_rv(),
                        "creationTimestamp": created,
                        "labels": {"kubernetes.io/metadata.name": ns},
                    },
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                }
            deps = cl.objects.setdefault("deployments", {})
            hpas = cl.objects.setdefault("horizontalpodautoscalers", {})
            for svc_name in services:
                svc = self._fleet.services[svc_name]
                deps[(NAMESPACE, svc_name)] = self._deployment(spec, svc_name, svc.hpa.min, created)
                hpas[(NAMESPACE, svc_name)] = self._hpa(spec, svc_name, svc.hpa.min, svc.hpa.max, created)
                cl.published[svc_name] = (svc.hpa.min, svc.hpa.min, svc.hpa.max)
                cl.pod_counts[svc_name] = _PodCounts()
            cl.objects["nodes"] = {}
            cl.objects["events"] = {}
            cl.objects["configmaps"] = {}
            rest = max(0, spec.nodes.min - spec.reserved_nodes)
            spot = int(rest * spec.spot_ratio + 0.5)
            self._set_nodes(cl, spec.nodes.min - spot, spot, spec.nodes.min)
            self._set_autoscaler_status(cl, spec.nodes.min, spec.nodes.max, spec.nodes.min, spec.nodes.min)

    def _deployment(self, spec: ClusterSpec, svc: str, replicas: int, created: str) -> JsonObj:
        labels = {"app": svc, "app.kubernetes.io/name": svc, "app.kubernetes.io/part-of": "voltage"}
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": svc,
                "namespace": NAMESPACE,
                "uid": _uid(spec.name, "deployments", NAMESPACE, svc),
                "resourceVersion": self._next_rv(),
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
                                    "requests": {"cpu": f"{_CPU_REQUEST_M}m", "memory": "512Mi"},
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

    def _hpa(self, spec: ClusterSpec, svc: str, lo: int, hi: int, created: str) -> JsonObj:
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {
                "name": svc,
                "namespace": NAMESPACE,
                "uid": _uid(spec.name, "hpa", NAMESPACE, svc),
                "resourceVersion": self._next_rv(),
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
                            "target": {"type": "Utilization", "averageUtilization": _HPA_TARGET_PCT},
                        },
                    }
                ],
            },
            "status": {"currentReplicas": 0, "desiredReplicas": lo},
        }

    # -- nodes ----------------------------------------------------------------------------------

    @staticmethod
    def _node_name(spec: ClusterSpec, pool: str, i: int) -> str:
        h = _short_hash(spec.name + pool)
        if spec.kind is ClusterKind.EKS:
            octet = 1 if pool == "ondemand" else 2
            return f"ip-10-{octet}-{i // 250}-{i % 250 + 4}.{spec.cloud_region}.compute.internal"
        if spec.kind is ClusterKind.GKE:
            return f"gke-{spec.name}-{pool}-{h}-{i:04x}"
        return f"aks-{pool}-{int(h, 16) % 10**8:08d}-vmss{i:06x}"

    def _node(self, spec: ClusterSpec, name: str, pool: str, i: int, *, ready: bool, created: str) -> JsonObj:
        label, spot_value, od_value = CAPACITY_LABELS[spec.kind]
        zones = self._zones(spec)
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
        taints = []
        if pool == "spot" and spec.kind is ClusterKind.AKS:
            taints.append(
                {"key": "kubernetes.azure.com/scalesetpriority", "value": "spot", "effect": "NoSchedule"}
            )
        now = _now_iso()
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "uid": _uid(spec.name, "nodes", name),
                "resourceVersion": self._next_rv(),
                "generation": 1,
                "creationTimestamp": created,
                "labels": labels,
            },
            "spec": {"providerID": f"{spec.cloud.value}://{spec.cloud_region}/{name}", "taints": taints},
            "status": {
                "capacity": {"cpu": "8", "memory": "32Gi", "pods": str(spec.pods_per_node)},
                "allocatable": {"cpu": "7910m", "memory": "29Gi", "pods": str(spec.pods_per_node)},
                "conditions": [self._ready_condition(ready, now)],
                "nodeInfo": {
                    "bootID": _uid(spec.name, "boot", name),
                    "machineID": _short_hash(name) * 4,
                    "systemUUID": _uid(spec.name, "system", name),
                    "kernelVersion": "6.1.119",
                    "kubeProxyVersion": _VERSIONS[spec.kind],
                    "kubeletVersion": _VERSIONS[spec.kind],
                    "containerRuntimeVersion": "containerd://1.7.23",
                    "osImage": "Linux",
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                },
            },
        }

    @staticmethod
    def _ready_condition(ready: bool, now: str) -> JsonObj:
        return {
            "type": "Ready",
            "status": "True" if ready else "Unknown",
            "reason": "KubeletReady" if ready else "NodeStatusUnknown",
            "message": "kubelet is posting ready status" if ready else "Kubelet stopped posting node status.",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    @staticmethod
    def _zones(spec: ClusterSpec) -> list[str]:
        if spec.kind is ClusterKind.AKS:
            return [f"{spec.cloud_region}-{n}" for n in (1, 2, 3)]
        return [f"{spec.cloud_region}{z}" for z in "abc"]

    def _set_nodes(self, cl: _Cluster, on_demand: int, spot: int, ready: int) -> None:
        """Make the cluster's Node objects match the counts, keeping the nodes that stay."""
        spec = cl.spec
        store = cl.objects["nodes"]
        wanted: list[tuple[str, str, int]] = [
            (self._node_name(spec, "ondemand", i), "ondemand", i) for i in range(on_demand)
        ] + [(self._node_name(spec, "spot", i), "spot", i) for i in range(spot)]
        names = {n for n, _, _ in wanted}
        for key in [k for k in store if k[1] not in names]:
            del store[key]
        created = _now_iso()
        for idx, (name, pool, i) in enumerate(wanted):
            is_ready = idx < ready
            node = store.get(("", name))
            if node is None:
                store[("", name)] = self._node(spec, name, pool, i, ready=is_ready, created=created)
                continue
            cond = node["status"]["conditions"][0]
            if (cond["status"] == "True") != is_ready:
                node["status"]["conditions"][0] = self._ready_condition(is_ready, created)
                node["metadata"]["resourceVersion"] = self._next_rv()

    def _set_autoscaler_status(self, cl: _Cluster, lo: int, hi: int, nodes: int, ready: int) -> None:
        spec = cl.spec
        now = datetime.now(UTC)
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
            ClusterKind.AKS: f"aks-nodepool-{_short_hash(spec.name)}-vmss",
        }[spec.kind]
        status = (
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
                    "uid": _uid(spec.name, "configmaps", *key),
                    "resourceVersion": self._next_rv(),
                    "creationTimestamp": _now_iso(),
                    "annotations": {"cluster-autoscaler.kubernetes.io/last-updated": stamp},
                },
                "data": {"status": status},
            }
        else:
            existing["data"] = {"status": status}
            existing["metadata"]["annotations"] = {"cluster-autoscaler.kubernetes.io/last-updated": stamp}
            existing["metadata"]["resourceVersion"] = self._next_rv()

    # -- pods -----------------------------------------------------------------------------------

    def _pods(self, cl: _Cluster) -> list[JsonObj]:
        """The cluster's pods, built from the published counts (cached until the next publish)."""
        if cl.pods is not None:
            return cl.pods
        spec = cl.spec
        nodes = [n for _, n in sorted(cl.objects["nodes"].items())]
        ready_nodes = [
            n["metadata"]["name"] for n in nodes if n["status"]["conditions"][0]["status"] == "True"
        ]
        all_nodes = [n["metadata"]["name"] for n in nodes]
        rv = str(self._rv)
        now = _now_iso()
        pods: list[JsonObj] = []
        slot = 0
        for svc in cl.services:
            counts = cl.pod_counts.get(svc, _PodCounts())
            dep = cl.objects["deployments"].get((NAMESPACE, svc))
            template_hash = _short_hash(f"{spec.name}/{svc}", 10)
            owner = [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{svc}-{template_hash}",
                    "uid": _uid(spec.name, "replicasets", svc),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
            image = f"registry.voltage.internal/{svc}:1.0.0"
            if dep is not None:
                containers = dep["spec"]["template"]["spec"].get("containers") or [{}]
                image = str(containers[0].get("image", image))
            phases = (
                [("ready", i) for i in range(counts.ready)]
                + [("pending", i) for i in range(counts.pending)]
                + [("unreachable", i) for i in range(counts.unreachable)]
            )
            for n, (state, _) in enumerate(phases):
                name = f"{svc}-{template_hash}-{_pod_suffix(spec.name + svc, n)}"
                node: str | None = None
                if state == "ready" and ready_nodes:
                    node = ready_nodes[slot % len(ready_nodes)]
                    slot += 1
                elif state == "unreachable" and all_nodes:
                    node = all_nodes[n % len(all_nodes)]
                pods.append(
                    self._pod(
                        spec,
                        svc,
                        name=name,
                        template_hash=template_hash,
                        owner=owner,
                        image=image,
                        state=state,
                        node=node,
                        rv=rv,
                        now=now,
                    )
                )
        pods.sort(key=self._key)
        cl.pods = pods
        return pods

    @staticmethod
    def _pod(
        spec: ClusterSpec,
        svc: str,
        *,
        name: str,
        template_hash: str,
        owner: list[JsonObj],
        image: str,
        state: str,
        node: str | None,
        rv: str,
        now: str,
    ) -> JsonObj:
        pod_spec: JsonObj = {
            "containers": [
                {
                    "name": svc,
                    "image": image,
                    "resources": {"requests": {"cpu": f"{_CPU_REQUEST_M}m", "memory": "512Mi"}},
                }
            ],
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
        }
        if node is not None:
            pod_spec["nodeName"] = node
        if state == "pending":
            status: JsonObj = {
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
        else:
            ready = state == "ready"
            status = {
                "phase": "Running",
                "qosClass": "Burstable",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                    {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now},
                    {
                        "type": "ContainersReady",
                        "status": "True" if ready else "False",
                        "lastTransitionTime": now,
                    },
                ],
                "containerStatuses": [
                    {
                        "name": svc,
                        "image": image,
                        "imageID": f"{image}@sha256:{_short_hash(image) * 8}",
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
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "uid": _uid(spec.name, "pods", name),
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
            },
            "spec": pod_spec,
            "status": status,
        }

    # -- the world ------------------------------------------------------------------------------

    def publish(self, world: World) -> None:
        """Write the world's current state: nodes, autoscaler status, deployments, HPAs, pods, events."""
        clusters: dict[str, ClusterState] = {}
        workloads: dict[tuple[str, str], WorkloadState] = {}
        for rec in world.observe():
            if isinstance(rec, ClusterState):
                clusters[rec.cluster] = rec
            elif isinstance(rec, WorkloadState):
                workloads[(rec.cluster, rec.service)] = rec
        with self._lock:
            self._changed()
            for name, cl in self._clusters.items():
                cs = clusters.get(name)
                if cs is None:
                    continue
                self._set_nodes(cl, cs.reserved_nodes + cs.on_demand_nodes, cs.spot_nodes, cs.ready_nodes)
                lo, hi = world.node_bounds(name)
                self._set_autoscaler_status(cl, lo, hi, cs.nodes, cs.ready_nodes)
                if cs.extra.get("stopped"):
                    cl.held_zero.clear()  # the world holds the whole cluster at zero now
                for svc in cl.services:
                    ws = workloads.get((name, svc))
                    if ws is None:
                        continue
                    if svc in cl.held_zero:
                        ws = dataclasses.replace(
                            ws, desired=0, ready=0, pending_pods=0, extra={**ws.extra, "utilisation": 0.0}
                        )
                    self._publish_workload(cl, ws)
                self._publish_events(cl, cs, workloads)
                cl.pods = None

    def _publish_workload(self, cl: _Cluster, ws: WorkloadState) -> None:
        svc = ws.service
        dep = cl.objects["deployments"].get((NAMESPACE, svc))
        hpa = cl.objects["horizontalpodautoscalers"].get((NAMESPACE, svc))
        if dep is None or hpa is None:  # a client cannot delete them (no DELETE), but be safe
            return
        # A client may have written between this cycle's collect and this publish (the emulator
        # serves requests while the world advances). Its value differs from what collect recorded;
        # overwriting it would lose the write, so it is left for the next collect to apply.
        seen = cl.published.get(svc)
        client_bounds = (hpa["spec"].get("minReplicas"), hpa["spec"].get("maxReplicas"))
        rep_pending = seen is not None and dep["spec"].get("replicas") != seen[0]
        bounds_pending = seen is not None and client_bounds != seen[1:]
        desired = ws.desired
        unreachable = max(0, desired - ws.ready - ws.pending_pods)
        cl.pod_counts[svc] = _PodCounts(ws.ready, ws.pending_pods, unreachable)
        meta = dep["metadata"]
        changed = False
        if not rep_pending and dep["spec"].get("replicas") != desired:
            dep["spec"]["replicas"] = desired
            meta["generation"] = int(meta.get("generation", 1)) + 1
            changed = True
        # Zero counts are omitted, as the real API server does (omitempty): kubernetes.core's waiter
        # relies on it (a deployment at 0 is ready when replicas and availableReplicas are both absent).
        status: JsonObj = {"observedGeneration": meta["generation"]}
        if desired:
            status["replicas"] = desired
            status["updatedReplicas"] = desired
        if ws.ready:
            status["readyReplicas"] = ws.ready
            status["availableReplicas"] = ws.ready
        if desired - ws.ready > 0:
            status["unavailableReplicas"] = desired - ws.ready
        status["conditions"] = [
            {
                "type": "Available",
                "status": "True" if ws.ready >= min(desired, 1) else "False",
                "reason": "MinimumReplicasAvailable"
                if ws.ready >= min(desired, 1)
                else "MinimumReplicasUnavailable",
            },
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        ]
        if dep.get("status") != status:
            dep["status"] = status
            changed = True
        if changed:
            meta["resourceVersion"] = self._next_rv()
        hmeta = hpa["metadata"]
        hchanged = False
        if not bounds_pending and client_bounds != (ws.hpa_min, ws.hpa_max):
            hpa["spec"]["minReplicas"] = ws.hpa_min
            hpa["spec"]["maxReplicas"] = ws.hpa_max
            hmeta["generation"] = int(hmeta.get("generation", 1)) + 1
            hchanged = True
        utilisation = float(ws.extra.get("utilisation", ws.cpu_utilisation))
        pct = round(min(utilisation, 99.0) * 100)
        hstatus: JsonObj = {
            "observedGeneration": hmeta["generation"],
            "currentReplicas": desired,
            "desiredReplicas": desired,
            "currentMetrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "current": {
                            "averageUtilization": pct,
                            "averageValue": f"{round(min(utilisation, 99.0) * _CPU_REQUEST_M)}m",
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
        if hpa.get("status") != hstatus:
            hpa["status"] = hstatus
            hchanged = True
        if hchanged:
            hmeta["resourceVersion"] = self._next_rv()
        rep, lo, hi = seen if seen is not None else (desired, ws.hpa_min, ws.hpa_max)
        cl.published[svc] = (
            rep if rep_pending else desired,
            lo if bounds_pending else ws.hpa_min,
            hi if bounds_pending else ws.hpa_max,
        )

    def _publish_events(
        self, cl: _Cluster, cs: ClusterState, workloads: Mapping[tuple[str, str], WorkloadState]
    ) -> None:
        store = cl.objects["events"]
        now = _now_iso()
        name = cl.spec.name

        def upsert(
            ns: str, ev_name: str, involved: JsonObj, *, reason: str, message: str, source: str
        ) -> None:
            existing = store.get((ns, ev_name))
            if existing is not None:
                existing["count"] = int(existing.get("count", 1)) + 1
                existing["lastTimestamp"] = now
                existing["message"] = message
                existing["metadata"]["resourceVersion"] = self._next_rv()
                return
            store[(ns, ev_name)] = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": ev_name,
                    "namespace": ns,
                    "uid": _uid(name, "events", ns, ev_name, now),
                    "resourceVersion": self._next_rv(),
                    "creationTimestamp": now,
                },
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "type": "Warning",
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": source},
                "reportingComponent": source,
            }

        for svc in cl.services:
            ws = workloads.get((name, svc))
            if ws is None or ws.pending_pods <= 0:
                continue
            nodes = cs.nodes
            upsert(
                NAMESPACE,
                f"{svc}.pending.{_short_hash(name + svc)}",
                {"kind": "Deployment", "namespace": NAMESPACE, "name": svc, "apiVersion": "apps/v1"},
                reason="FailedScheduling",
                message=f"{ws.pending_pods} pod(s) pending: 0/{nodes} nodes are available: {nodes} "
                f"Insufficient cpu. preemption: 0/{nodes} nodes are available: {nodes} No preemption "
                "victims found.",
                source="default-scheduler",
            )
        if cs.nodes and cs.ready_nodes < cs.nodes:
            upsert(
                "default",
                f"nodes.notready.{_short_hash(name)}",
                {"kind": "Node", "name": "", "apiVersion": "v1"},
                reason="NodeNotReady",
                message=f"{cs.nodes - cs.ready_nodes} node(s) status is now: NodeNotReady",
                source="node-controller",
            )
        # Forget events older than 70 minutes, as the API server's event TTL does (1 h by default).
        horizon = time.time() - 70 * 60
        for key in [
            k
            for k, ev in store.items()
            if datetime.strptime(ev["lastTimestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
            < horizon
        ]:
            del store[key]

    def collect(self, world: World) -> None:
        """Apply HPA bounds and replicas that clients changed since the last publish to the world.

        A value the world refuses (e.g. replicas outside the HPA bounds) is logged, kept in
        :attr:`notes`, and left alone: the next publish writes the world's value back.

        Scaling to zero is how an environment is stopped (``playbooks/env_schedule.yml``), tier by tier:
        in a non-prod cluster a deployment scaled to 0 is held at 0 here (see ``_Cluster.held_zero``; the
        world has no per-deployment stop), and once every deployment of the cluster is at 0 the world
        stops the cluster (:meth:`World.set_cluster_stopped`: 0 replicas, 0 nodes, sizes remembered). A
        deployment of a stopped cluster scaled above 0 starts the cluster (remembered sizes come back),
        the others stay held at 0 until they are scaled up too, and a requested size that differs from
        the remembered one is then applied as an ordinary scale.
        """
        with self._lock:
            self._changed()
            for name, cl in self._clusters.items():
                nonprod = cl.spec.environment is not Environment.PROD
                wanted: dict[str, object] = {}
                for svc, (rep, lo, hi) in list(cl.published.items()):
                    dep = cl.objects["deployments"].get((NAMESPACE, svc))
                    hpa = cl.objects["horizontalpodautoscalers"].get((NAMESPACE, svc))
                    if dep is None or hpa is None:
                        continue
                    new_lo = hpa["spec"].get("minReplicas", 1)
                    new_hi = hpa["spec"].get("maxReplicas")
                    new_rep = dep["spec"].get("replicas")
                    if (new_lo, new_hi) != (lo, hi):
                        self._apply(
                            f"HPA {name}/{NAMESPACE}/{svc} bounds {new_lo}-{new_hi}",
                            world.set_hpa_bounds,
                            (name, svc, new_lo, new_hi),
                        )
                    if new_rep != rep:
                        if nonprod:
                            wanted[svc] = new_rep
                        else:
                            self._apply(
                                f"deployment {name}/{NAMESPACE}/{svc} replicas {new_rep}",
                                world.set_replicas,
                                (name, svc, new_rep),
                            )
                    cl.published[svc] = (
                        new_rep if isinstance(new_rep, int) else rep,
                        new_lo if isinstance(new_lo, int) else lo,
                        new_hi if isinstance(new_hi, int) else hi,
                    )
                if wanted:
                    self._collect_nonprod(world, name, cl, wanted)

    def _collect_nonprod(self, world: World, name: str, cl: _Cluster, wanted: Mapping[str, object]) -> None:
        """Replicas a client changed in a non-prod cluster: stop / start the cluster, or scale."""
        replicas = {
            svc: dep["spec"].get("replicas")
            for (ns, svc), dep in cl.objects["deployments"].items()
            if ns == NAMESPACE and svc in cl.services
        }
        zero = {svc for svc, n in replicas.items() if n == 0}
        if not world.is_stopped(name):
            if zero and zero == set(replicas):
                self._apply(f"cluster {name} stopped (every deployment at 0)", world.set_cluster_stopped,
                            (name, True))
                cl.held_zero.clear()
                return
            cl.held_zero = (cl.held_zero | {s for s in wanted if s in zero}) - (set(replicas) - zero)
            for svc, n in wanted.items():
                if svc not in zero:
                    self._apply(f"deployment {name}/{NAMESPACE}/{svc} replicas {n}", world.set_replicas,
                                (name, svc, n))
            return
        if zero == set(replicas):
            return  # still stopped
        self._apply(f"cluster {name} started", world.set_cluster_stopped, (name, False))
        cl.held_zero = set(zero)
        for svc, n in wanted.items():
            if svc not in zero and n != world.replicas(name, svc):
                self._apply(f"deployment {name}/{NAMESPACE}/{svc} replicas {n}", world.set_replicas,
                            (name, svc, n))

    def _apply(self, what: str, change: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            change(*args)
        except (OpsError, TypeError, ValueError) as exc:
            note = f"{what} not applied: {exc}"
            log.warning("kube-api: %s", note)
            self.notes.append(note)
        else:
            log.info("kube-api: applied %s", what)

    def clusters(self) -> list[str]:
        """Names of the clusters served."""
        return sorted(self._clusters)
