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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # adapters import Endpoints; they must not pull in the simulation
    from opsconsole.sandbox.world import World


@dataclass(frozen=True)
class Endpoints:
    """Where one emulator listens, and what a client needs to reach it (no secrets: sandbox only)."""

    #: Service name → base URL or ``host:port`` (e.g. ``{"aws": "http://127.0.0.1:5123"}``).
    urls: dict[str, str]
    #: Anything else a client needs: a kubeconfig path, a project id, a subscription id...
    settings: dict[str, str] = field(default_factory=dict)


class Emulator(Protocol):
    """One local cloud API server. Binds 127.0.0.1 only, on a free port."""

    name: str

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
