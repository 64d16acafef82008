"""The local cloud: the sandbox world served through real cloud API emulators on 127.0.0.1.

:class:`LocalCloud` starts every emulator (AWS, Kubernetes, Cloud Monitoring, Azure Monitor), then
keeps them in step with the world: on each cycle, under the world store's lock, it first *collects*
the desired state that clients wrote into the emulators (a playbook scaled a deployment, moved a DNS
weight) into the world, lets the world advance to now, and *publishes* the world's state back. The
console then reads the fleet only through the real adapters, exactly as it would read production.

Two ways to run it:

* ``opsconsole sandbox up`` runs one in the foreground for several processes (TUI, bot, CLI) to share
  and writes where it listens to ``$OPSCONSOLE_HOME/sandbox/endpoints.json``;
* any other command that finds no running one starts one for its own lifetime
  (:func:`running_or_ephemeral`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from opsconsole.core.clock import monotonic
from opsconsole.core.errors import SandboxError
from opsconsole.core.processes import pid_alive
from opsconsole.sandbox.emulator import Emulator, Endpoints
from opsconsole.sandbox.state import WorldStore

log = logging.getLogger(__name__)

ENDPOINTS_FILE = "endpoints.json"
ENDPOINTS_FORMAT = 1
#: How often the driver syncs world and emulators. The world ticks every 15 simulated seconds, so at
#: speed 1 a sync every 2 s shows a client's change within one refresh of the console.
DEFAULT_SYNC_S = 2.0


class LocalCloud:
    """A set of started emulators kept in step with one world.

    Args:
        store: the persistent world.
        emulators: the API emulators to serve.
        sync_s: how often :meth:`start_driver`'s thread syncs.
    """

    def __init__(self, store: WorldStore, emulators: Sequence[Emulator], *, sync_s: float = DEFAULT_SYNC_S):
        self.store = store
        self.emulators = list(emulators)
        self.sync_s = sync_s
        self.endpoints: dict[str, Endpoints] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._driver: threading.Thread | None = None
        self.last_sync_s: float | None = None

    def start(self) -> dict[str, Endpoints]:
        """Start every emulator and publish the world once. Stops what it started if one fails."""
        try:
            for emulator in self.emulators:
                self.endpoints[emulator.name] = emulator.start()
            self.sync()
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def sync(self) -> None:
        """One cycle: collect clients' changes into the world, advance it, publish it."""
        with self._lock:
            started = monotonic()
            with self.store.open() as world:
                for emulator in self.emulators:
                    try:
                        emulator.collect(world)
                    except SandboxError:
                        raise
                    except Exception:  # an emulator's bug must not stop the others from syncing
                        log.exception("collecting desired state from the %s emulator failed", emulator.name)
                for emulator in self.emulators:
                    try:
                        emulator.publish(world)
                    except Exception:
                        log.exception("publishing the world to the %s emulator failed", emulator.name)
            self.last_sync_s = monotonic() - started

    def start_driver(self) -> None:
        """Sync every ``sync_s`` seconds in a daemon thread until :meth:`stop`."""
        if self._driver is not None:
            return
        self._driver = threading.Thread(target=self._drive, name="localcloud-driver", daemon=True)
        self._driver.start()

    def _drive(self) -> None:
        while not self._stop.wait(self.sync_s):
            try:
                self.sync()
            except Exception:
                log.exception("local cloud sync failed; retrying at the next cycle")

    def stop(self) -> None:
        self._stop.set()
        if self._driver is not None:
            self._driver.join(timeout=self.sync_s + 5)
            self._driver = None
        for emulator in reversed(self.emulators):
            with suppress(Exception):
                emulator.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- sharing one local cloud between processes ------------------------------------------------------

    def write_endpoints(self, path: Path) -> None:
        """Record where this local cloud listens, for other processes (atomic write)."""
        data: dict[str, Any] = {
            "format": ENDPOINTS_FORMAT,
            "pid": os.getpid(),
            "endpoints": {name: asdict(endpoints) for name, endpoints in self.endpoints.items()},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, path)


def endpoints_path(home: Path) -> Path:
    return home / "sandbox" / ENDPOINTS_FILE


def read_running(home: Path) -> dict[str, Endpoints] | None:
    """The endpoints of a running ``opsconsole sandbox up``, or None if there is none (or it died)."""
    path = endpoints_path(home)
    try:
        data = json.loads(path.read_text())
        pid = int(data["pid"])
        if data.get("format") != ENDPOINTS_FORMAT:
            return None
        endpoints = {
            name: Endpoints(urls=dict(value["urls"]), settings=dict(value.get("settings", {})))
            for name, value in data["endpoints"].items()
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not pid_alive(pid):
        return None
    return endpoints


@contextmanager
def running_or_ephemeral(
    home: Path, store: WorldStore, emulators: Callable[[], Sequence[Emulator]]
) -> Iterator[tuple[dict[str, Endpoints], LocalCloud | None]]:
    """Endpoints of the shared local cloud if one runs, else of one started for this block.

    ``emulators`` is a factory, called only when no shared local cloud runs (building them imports
    moto and grpc, which a command using a running local cloud does not need).
    """
    shared = read_running(home)
    if shared is not None:
        yield shared, None
        return
    cloud = LocalCloud(store, emulators())
    try:
        endpoints = cloud.start()
        # Synced on its clock as `sandbox up` does: a playbook that waits for what it changed to settle
        # (env_schedule.yml's readiness between tiers) sees it only after a sync publishes it.
        cloud.start_driver()
        yield endpoints, cloud
        cloud.sync()  # what clients changed during the block reaches the world before it goes
    finally:
        cloud.stop()
