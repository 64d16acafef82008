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

**A progressive start** (``running_or_ephemeral(..., first=...)``): the emulators ``first()`` makes (the
Kubernetes one: our own code, quick to import and start) start at once; the others (moto, grpc: seconds
of CPU) start in a background thread on the first demand for one of their endpoints
(:meth:`LocalCloud.endpoint`, or ``endpoints[name]`` of the :class:`PendingEndpoints` yielded), so the
console can show the Kubernetes data while they start.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from opsconsole.sandbox.world import World

log = logging.getLogger(__name__)

ENDPOINTS_FILE = "endpoints.json"
ENDPOINTS_FORMAT = 1
#: How often the driver syncs world and emulators. A change in the world (a pod crash-looping) reaches
#: the emulators within this, and the console's screen (watch event → early refresh) within ~0.5 s more:
#: 1 s p95 in all. A sync costs ~45 ms of CPU on the seed fleet (measured: 2.6 % of one core at 2 s,
#: 11 % at 0.5 s); the Kubernetes emulator emits watch events only for the objects that changed.
DEFAULT_SYNC_S = 0.5
#: How long a demand for the endpoints of an emulator started later waits for it.
LATER_START_TIMEOUT_S = 120.0


class LocalCloud:
    """A set of started emulators kept in step with one world.

    Args:
        store: the persistent world.
        emulators: the API emulators to serve.
        sync_s: how often :meth:`start_driver`'s thread syncs.
        later: makes more emulators to start after :meth:`start`, in a background thread, on the first
            :meth:`endpoint` asked of one of them or :meth:`start_later` (those of a name already started
            are dropped). Building them is part of that start (it imports moto and grpc).
    """

    def __init__(self, store: WorldStore, emulators: Sequence[Emulator], *, sync_s: float = DEFAULT_SYNC_S,
                 later: Callable[[], Sequence[Emulator]] | None = None):
        self.store = store
        self.emulators = list(emulators)
        self.sync_s = sync_s
        self.endpoints: dict[str, Endpoints] = {}
        self._later = later
        self._later_thread: threading.Thread | None = None
        self._later_done = threading.Event()
        self._later_error: str | None = None
        if later is None:
            self._later_done.set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._driver: threading.Thread | None = None
        #: :meth:`start_driver` was asked for before any emulator ran: start it when they do.
        self._driver_wanted = False
        self.last_sync_s: float | None = None

    def start(self) -> dict[str, Endpoints]:
        """Start every emulator, give back what clients wrote into them under an earlier local cloud
        (:func:`restore_client_objects`), and publish the world once. Stops what it started if one fails."""
        if not self.emulators:  # all of them later (a one-shot command's): nothing to publish yet
            return self.endpoints
        try:
            for emulator in self.emulators:
                self.endpoints[emulator.name] = emulator.start()
            with self._lock, self.store.open() as world:
                for emulator in self.emulators:
                    restore_client_objects(emulator, world)
            self.sync()
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def start_later(self) -> None:
        """Start the ``later`` emulators in a background thread (once; a no-op without them)."""
        with self._lock:
            if self._later is None or self._later_thread is not None:
                return
            self._later_thread = threading.Thread(target=self._start_later, name="localcloud-later",
                                                  daemon=True)
            self._later_thread.start()

    def _start_later(self) -> None:
        started: list[Emulator] = []
        pending: dict[str, Endpoints] = {}
        try:
            assert self._later is not None
            for emulator in self._later():
                if emulator.name in self.endpoints or emulator.name in pending or self._stop.is_set():
                    continue
                pending[emulator.name] = emulator.start()
                started.append(emulator)
            with self._lock:
                if self._stop.is_set():
                    raise SandboxError("the local cloud stopped while its emulators were starting")
                with self.store.open() as world:
                    for emulator in started:
                        restore_client_objects(emulator, world)
                self.emulators.extend(started)
                drive = self._driver_wanted
            self.sync()  # published before anyone learns where they listen
            self.endpoints.update(pending)
            if drive:
                self.start_driver()
        except BaseException as exc:
            self._later_error = str(exc) or type(exc).__name__
            log.warning("starting the local cloud's other emulators failed: %s", self._later_error,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            for emulator in started:
                if emulator not in self.emulators:
                    with suppress(Exception):
                        emulator.stop()
        finally:
            self._later_done.set()

    def endpoint(self, name: str, *, timeout_s: float = LATER_START_TIMEOUT_S) -> Endpoints:
        """Where emulator ``name`` listens; an emulator started later is started now and waited for.

        Raises:
            SandboxError: no such emulator, it failed to start, or not within ``timeout_s``.
        """
        found = self.endpoints.get(name)
        if found is not None:
            return found
        self.start_later()
        if not self._later_done.wait(timeout_s):
            raise SandboxError(f"the local cloud's {name} emulator did not start within {timeout_s:.0f} s")
        found = self.endpoints.get(name)
        if found is None:
            why = f": {self._later_error}" if self._later_error else ""
            raise SandboxError(f"the local cloud has no {name} emulator{why}")
        return found

    def started(self, name: str) -> bool:
        """Emulator ``name`` is up (its endpoints known)."""
        return name in self.endpoints

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
                    keep_client_objects(emulator, world)
                for emulator in self.emulators:
                    try:
                        emulator.publish(world)
                    except Exception:
                        log.exception("publishing the world to the %s emulator failed", emulator.name)
            self.last_sync_s = monotonic() - started

    def start_driver(self) -> None:
        """Sync every ``sync_s`` seconds in a daemon thread until :meth:`stop`; with no emulator
        started yet (all of them later), from when the later ones are up (nothing to keep in step
        before: a command that never needs the local cloud must not advance and save the world twice
        a second)."""
        with self._lock:
            if not self.emulators:
                self._driver_wanted = True
                return
        if self._driver is not None or self._stop.is_set():
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


# -- what clients wrote that the world does not model -------------------------------------------------
#
# env_schedule.yml remembers an environment's sizes in a ConfigMap (voltage/opsconsole-sleep) of each
# cluster before stopping it, and starts only clusters whose ConfigMap says "stopped". The emulators keep
# their objects in memory, so with the local cloud of one command (no `sandbox up`) that ConfigMap died
# with it and a later `act env start` found nothing to start. The world keeps such objects instead: each
# sync copies them into the world (saved with it), and a new local cloud serves them again at start. The
# Kubernetes emulator has no public accessor for its objects: this adapter reads its store, under its lock.

#: ConfigMaps the emulator synthesises itself (never kept: the next publish writes them).
_SYNTHESISED_CONFIGMAPS = frozenset({("kube-system", "cluster-autoscaler-status")})
KUBE_API = "k8s"


def _kube_store(emulator: Emulator) -> Any:
    """The Kubernetes emulator's object store, or None for any other emulator."""
    if getattr(emulator, "name", None) != KUBE_API:
        return None
    store = getattr(emulator, "_store", None)
    return store if store is not None and hasattr(store, "clusters") else None


def keep_client_objects(emulator: Emulator, world: World) -> None:
    """Copy the ConfigMaps clients created in the Kubernetes emulator into the world (a no-op for the
    other emulators)."""
    store = _kube_store(emulator)
    if store is None:
        return
    kept: dict[str, Any] = {}
    with store.lock:
        for cluster_name, cluster in store.clusters.items():
            for (namespace, name), obj in cluster.objects.get("configmaps", {}).items():
                if (namespace, name) not in _SYNTHESISED_CONFIGMAPS:
                    kept[f"{cluster_name}/{namespace}/{name}"] = json.loads(json.dumps(obj))
    if kept != world.client_objects(KUBE_API):
        world.keep_client_objects(KUBE_API, kept)


def restore_client_objects(emulator: Emulator, world: World) -> None:
    """Serve again the ConfigMaps the world kept (a no-op for the other emulators)."""
    store = _kube_store(emulator)
    kept = world.client_objects(KUBE_API) if store is not None else {}
    if not kept:
        return
    with store.lock:
        for key, obj in kept.items():
            cluster_name, namespace, name = key.split("/", 2)
            cluster = store.clusters.get(cluster_name)
            if cluster is None or not isinstance(obj, dict):
                continue  # a cluster no longer in the fleet
            restored = json.loads(json.dumps(obj))
            restored.setdefault("metadata", {})["resourceVersion"] = store.next_rv()
            cluster.store("configmaps")[(namespace, name)] = restored
        store.commit()


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


class PendingEndpoints(Mapping[str, Endpoints]):
    """The endpoints of a progressively started :class:`LocalCloud`: ``[name]`` waits for an emulator
    still starting (:meth:`LocalCloud.endpoint`); iterating gives those started so far."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud

    def __getitem__(self, name: str) -> Endpoints:
        try:
            return self.cloud.endpoint(name)
        except SandboxError as exc:
            raise KeyError(name) from exc

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self.cloud.endpoints))

    def __len__(self) -> int:
        return len(self.cloud.endpoints)

    def started(self, name: str) -> bool:
        """Emulator ``name`` is up (``[name]`` answers at once)."""
        return self.cloud.started(name)


def started_now(endpoints: Mapping[str, Endpoints], name: str) -> bool:
    """``endpoints[name]`` answers at once (always, except for an emulator of a progressive start that
    is still starting)."""
    if isinstance(endpoints, PendingEndpoints):
        return endpoints.started(name)
    return True


@contextmanager
def running_or_ephemeral(
    home: Path, store: WorldStore, emulators: Callable[[], Sequence[Emulator]],
    *, first: Callable[[], Sequence[Emulator]] | None = None,
) -> Iterator[tuple[Mapping[str, Endpoints], LocalCloud | None]]:
    """Endpoints of the shared local cloud if one runs, else of one started for this block.

    ``emulators`` is a factory, called only when no shared local cloud runs (building them imports
    moto and grpc, which a command using a running local cloud does not need). ``first``: a progressive
    start (see the module docstring): only ``first()``'s emulators start before this yields, the rest of
    ``emulators()`` on the first demand for one of their endpoints; the endpoints yielded are then a
    :class:`PendingEndpoints`.
    """
    shared = read_running(home)
    if shared is not None:
        yield shared, None
        return
    if first is not None:
        cloud = LocalCloud(store, first(), later=emulators)
        try:
            cloud.start()
            cloud.start_driver()
            yield PendingEndpoints(cloud), cloud
            if cloud.emulators:  # what clients changed reaches the world (nothing if none ever ran)
                cloud.sync()
        finally:
            cloud.stop()
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
