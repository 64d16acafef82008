"""The contract between the sandbox world and the local cloud API emulators in front of it.

On the sandbox, opsconsole reads the fleet only through the real adapters (boto3, kubernetes,
google-cloud-monitoring, azure-monitor-query), talking over sockets to emulators on 127.0.0.1. The
world plays the clouds' physics and the clusters' controllers; each emulator is a passive API server
that the world writes into and reads back from, through this protocol:

* :meth:`Emulator.publish` writes the world's current state into the emulator: deployment and HPA
  status, pods, nodes, metrics, instance states, DNS records... everything an adapter reads;
* :meth:`Emulator.collect` reads back the *desired state* that clients (playbooks, SDK calls) wrote
  since the last publish — replicas, HPA bounds, DNS weights, promoted replicas, stopped instances —
  and applies it to the world through its ``set_*`` methods. An emulator tells a client's change from
  its own publish by remembering what it last published.

The local cloud driver (:mod:`opsconsole.sandbox.localcloud`) calls, on every tick and under the
world store's lock: ``collect`` on every emulator, then ``publish`` on every emulator.

Every emulator also carries one :class:`Faults` (``emulator.faults``), the single fault-injection
mechanism of the sandbox, for tests and demos::

    me = client_is("SANDBOXTESTKEY1")                      # only requests from this client ...
    fault = emulator.faults.inject("throttled", count=2, match=me)
    ...                                                    # ... use up the two throttled answers
    emulator.faults.clear(fault)                           # or clear() for all; or ``with injected(...)``

A fault is scoped by its ``match`` (a predicate on the :class:`FaultRequest` the emulator describes:
the client's credential, the emulator's sub-scope such as a cluster, the path), and a ``count`` is
used up only by requests that match: another reader (the world's sync, another test's client) cannot
spend it. Kinds: ``down`` (the listening socket closes: connection refused; global, takes no match),
``slow`` (``seconds=``: each answer waits that long, or until the fault is cleared), ``forbidden``
(a permission error; ``code=``/``mode=`` pick the emulator's variant), ``throttled`` (the service's
rate-limit answer, ``count`` defaults to 3; ``retry_after=`` where the API has one), ``malformed``
(a truncated or garbled body, ``mode=``), and ``gone`` (Kubernetes only: 410 on list continuations).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol

from opsconsole.core.errors import SandboxError

if TYPE_CHECKING:  # adapters import Endpoints; they must not pull in the simulation
    from opsconsole.sandbox.world import World


@dataclass(frozen=True)
class Endpoints:
    """Where one emulator listens, and what a client needs to reach it (no secrets: sandbox only)."""

    #: Service name → base URL or ``host:port`` (e.g. ``{"aws": "http://127.0.0.1:5123"}``).
    urls: dict[str, str]
    #: Anything else a client needs: a kubeconfig path, a project id, a subscription id...
    settings: dict[str, str] = field(default_factory=dict)


FAULT_KINDS = ("down", "slow", "forbidden", "throttled", "malformed", "gone")
#: How many requests a fault answers when ``inject`` gets no ``count`` (absent: every request).
DEFAULT_COUNTS = {"throttled": 3, "gone": 1}


@dataclass(frozen=True)
class FaultRequest:
    """What an emulator tells its :class:`Faults` about one request, for the faults' ``match``."""

    #: Who asks, as the emulator can tell: an AWS access key id, a bearer token ("" if unknown).
    client: str = ""
    #: The emulator's sub-scope of the request: a Kubernetes cluster, an AWS region, a GCP project.
    scope: str = ""
    #: The request path (HTTP) or method (gRPC).
    path: str = ""
    #: A list continuation (a Kubernetes ``continue`` token): only these can be ``gone``.
    continued: bool = False


Match = Callable[[FaultRequest], bool]


def client_is(client: str) -> Match:
    """A ``match`` for the requests of one client only (its credential, see :attr:`FaultRequest.client`)."""
    return lambda request: request.client == client


def scope_in(*scopes: str) -> Match:
    """A ``match`` for the requests to some sub-scopes only (e.g. Kubernetes clusters)."""
    wanted = frozenset(scopes)
    return lambda request: request.scope in wanted


@dataclass(eq=False)
class Fault:
    """One injected fault; :meth:`Faults.inject` returns it as the handle to clear it with."""

    kind: str
    params: Mapping[str, Any]
    #: Requests left to answer with the fault (None: every matching request until cleared).
    left: int | None
    match: Match | None
    #: How many requests the fault has answered so far.
    hits: int = 0
    #: Set when the fault is cleared: a ``slow`` answer stops waiting then.
    cleared: threading.Event = field(default_factory=threading.Event)

    def param(self, name: str, default: Any) -> Any:
        """One of the kind's parameters (``seconds``, ``code``, ``mode``, ``retry_after``)."""
        return self.params.get(name, default)

    def stall(self) -> None:
        """What ``slow`` does before answering: wait ``seconds`` (default 5), or until cleared."""
        self.cleared.wait(float(self.param("seconds", 5.0)))


class Faults:
    """The faults of one emulator: injected by tests, taken by the emulator on every request.

    Args:
        owner: the emulator's name, for messages.
        on_down: called with True when a ``down`` fault starts, False when the last one is cleared;
            the emulator closes (and later rebinds, same port) its listening sockets there.
        kinds: the kinds this emulator can play (``gone`` is Kubernetes only).
    """

    def __init__(
        self,
        owner: str,
        *,
        on_down: Callable[[bool], None] | None = None,
        kinds: tuple[str, ...] = FAULT_KINDS,
    ) -> None:
        self._owner = owner
        self._on_down = on_down
        self._kinds = kinds
        self._lock = threading.Lock()
        self._active: list[Fault] = []

    def inject(
        self, kind: str, *, count: int | None = None, match: Match | None = None, **params: Any
    ) -> Fault:
        """Start a fault; newer faults win over older ones for a request both match.

        Args:
            kind: one of the emulator's kinds (see the module docstring).
            count: answer only this many matching requests (default: 3 for ``throttled``, 1 for
                ``gone``, else every one until cleared).
            match: only requests it accepts get the fault (and use up its count); default all.
            params: the kind's parameters (``seconds``, ``code``, ``mode``, ``retry_after``).
        Returns:
            The fault, to pass to :meth:`clear`.
        Raises:
            SandboxError: an unknown kind, or a ``down`` with a count or a match.
        """
        if kind not in self._kinds:
            raise SandboxError(f"unknown {self._owner} fault {kind!r}; valid: {', '.join(self._kinds)}")
        if kind == "down" and (count is not None or match is not None):
            raise SandboxError("a 'down' fault closes the listening socket: it takes no count or match")
        fault = Fault(kind, dict(params), count if count is not None else DEFAULT_COUNTS.get(kind), match)
        with self._lock:
            was_down = self._down_locked()
            self._active.insert(0, fault)
        if kind == "down" and not was_down and self._on_down is not None:
            self._on_down(True)
        return fault

    def clear(self, fault: Fault | None = None) -> None:
        """End one fault (its handle), or every fault; a ``down`` emulator serves again."""
        with self._lock:
            was_down = self._down_locked()
            gone = [f for f in self._active if fault is None or f is fault]
            self._active = [f for f in self._active if f not in gone]
            down = self._down_locked()
        for f in gone:
            f.cleared.set()
        if was_down and not down and self._on_down is not None:
            self._on_down(False)

    @contextmanager
    def injected(
        self, kind: str, *, count: int | None = None, match: Match | None = None, **params: Any
    ) -> Iterator[Fault]:
        """:meth:`inject` for the duration of a ``with`` block."""
        fault = self.inject(kind, count=count, match=match, **params)
        try:
            yield fault
        finally:
            self.clear(fault)

    def take(self, request: FaultRequest) -> Fault | None:
        """The fault to play on this request, if any (using up one of its count)."""
        with self._lock:
            for fault in self._active:
                if fault.kind == "gone" and not request.continued:
                    continue
                if fault.match is not None and not fault.match(request):
                    continue
                if fault.left is not None:
                    if fault.left <= 0:
                        continue
                    fault.left -= 1
                fault.hits += 1
                return fault
        return None

    @property
    def down(self) -> bool:
        """Whether a ``down`` fault is active."""
        with self._lock:
            return self._down_locked()

    def _down_locked(self) -> bool:
        return any(f.kind == "down" for f in self._active)


class Emulator(Protocol):
    """One local cloud API server. Binds 127.0.0.1 only, on a free port."""

    name: str
    #: Its fault injection (see the module docstring).
    faults: Faults

    def start(self) -> Endpoints:
        """Start serving (in background threads) and seed the resources of the fleet.

        Returns:
            Where the emulator listens.
        Raises:
            SandboxError: the server could not be started.
        """
        ...

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        ...

    def publish(self, world: World) -> None:
        """Write the world's current state into the emulator."""
        ...

    def collect(self, world: World) -> None:
        """Apply to the world the desired state that clients wrote since the last publish."""
        ...


class QuietHTTPServer(ThreadingHTTPServer):
    """The emulators' HTTP server: one thread per connection, and quiet about clients that hang up.

    A client that goes away mid-answer (a timeout, the "down" fault, a console closing) is routine for an
    emulator; socketserver's default would print a traceback to stderr for each, burying real failures
    in the logs of the tests and of ``sandbox up``. They are logged at debug level instead.
    """

    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        logging.getLogger(type(self).__module__).debug(
            "connection from %s ended with an error", client_address, exc_info=True
        )


def serve_http(
    what: str,
    port: int,
    handle: Callable[[BaseHTTPRequestHandler], None],
    *,
    methods: tuple[str, ...],
    thread_name: str,
) -> tuple[QuietHTTPServer, threading.Thread]:
    """Serve ``methods`` on 127.0.0.1:``port`` (0: any free port), every request answered by ``handle``,
    from a daemon thread; the started server and its thread. HTTP/1.1 keep-alive, no Nagle delay (headers
    and body go in two writes: no 40 ms delayed-ACK stall), no access log.

    Raises:
        SandboxError: the port cannot be bound (``what`` names the emulator).
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return None

    for method in methods:
        # A function (not the bound ``handle`` itself) so that the request handler is passed as ``self``.
        setattr(Handler, f"do_{method}", lambda request: handle(request))  # noqa: PLW0108
    try:
        server = QuietHTTPServer(("127.0.0.1", port), Handler)
    except OSError as exc:
        raise SandboxError(f"the {what} emulator could not bind 127.0.0.1:{port}: {exc}") from None
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=thread_name, daemon=True
    )
    thread.start()
    return server, thread
