"""Where the Kubernetes API emulator keeps its objects: per cluster, with one resourceVersion counter and
a cache of encoded answers.

Why this module exists: the REST verbs, the synthesis of objects from the world and the world sync all
read and write the same state under the same lock; this module is that state and nothing else.

* :class:`Cluster` holds one cluster's objects (``plural → (namespace, name) → object``, cluster-scoped
  objects under namespace ``""``), the pod counts last published, and what the sync needs to tell a
  client's write from the world's.
* :class:`Store` holds the clusters, the lock, the ``resourceVersion`` counter shared by all clusters, and
  the answer cache: a GET answer is a pure function of the stored state, which only changes on a write, a
  publish or a collect, so the encoded answer is kept (keyed by the raw path and query) until the next
  change. Refreshes come several times per publish, and encoding the pod lists again for each was most of
  the emulator's CPU, which it shares with the other emulators of ``opsconsole sandbox up``.
* :meth:`Store.commit` turns what changed since the last commit into watch events
  (:class:`~opsconsole.sandbox.kube.watch.WatchHub`): every path that changes objects (publish, collect,
  a client's write) commits before it releases the lock, so the event logs stay in resourceVersion order.
* :attr:`Store.calls` counts the requests served by verb and resource (``"list:pods"``,
  ``"watch:pods"``, ``"get:configmaps"``...): tests and benchmarks check that a watching client stops
  listing.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from opsconsole.core.fleet.model import ClusterSpec
from opsconsole.sandbox.kube.resources import JsonObj
from opsconsole.sandbox.kube.watch import WatchHub

__all__ = ["ANSWERS_KEPT", "Cluster", "PodCounts", "Store"]

#: Most GET answers kept between two changes of the stored state.
ANSWERS_KEPT = 2000


@dataclass
class PodCounts:
    """How many pods of one deployment are ready, pending (no node fits) and unreachable (node lost)."""

    ready: int = 0
    pending: int = 0
    unreachable: int = 0


@dataclass
class Cluster:
    """One cluster's objects and sync bookkeeping."""

    spec: ClusterSpec
    services: list[str]
    #: plural → (namespace, name) → object. Cluster-scoped objects use namespace "".
    objects: dict[str, dict[tuple[str, str], JsonObj]] = field(default_factory=dict)
    pod_counts: dict[str, PodCounts] = field(default_factory=dict)
    #: Per deployment, what its pods were last built from (counts, image, ready nodes): unchanged → kept.
    pods_built: dict[str, tuple[object, ...]] = field(default_factory=dict)
    #: Round-robin slot of the next pod placed on a ready node.
    pod_slot: int = 0
    #: (replicas, hpa_min, hpa_max) per service as last published (or seeded).
    published: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    #: Deployments of a non-prod cluster that a client scaled to 0 while the world still runs the cluster
    #: (one tier of an environment being stopped, or the tiers not yet started): served at 0 replicas
    #: until the whole cluster is stopped in the world (every deployment at 0) or a client scales them up.
    held_zero: set[str] = field(default_factory=set)

    def store(self, plural: str) -> dict[tuple[str, str], JsonObj]:
        """The objects of one resource type (created empty on first use)."""
        return self.objects.setdefault(plural, {})


class Store:
    """Every cluster's state, the lock that guards it, the resourceVersion counter and the answer cache."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        #: The last resourceVersion handed out (shared by every cluster, as one etcd would).
        self.rv = 1
        #: Bumped on every change of the stored state; GET answers encoded at that state, by raw path.
        self.epoch = 0
        self._answers: dict[str, bytes] = {}
        self.clusters: dict[str, Cluster] = {}
        #: Watch event logs and open streams.
        self.watches = WatchHub(self.lock)
        #: Requests served, by ``verb:plural`` (verbs: list, watch, get, create, update, patch, log).
        self.calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()

    def count(self, key: str) -> None:
        """Count one request (see :attr:`calls`)."""
        with self._calls_lock:
            self.calls[key] += 1

    def commit(self) -> int:
        """Record a watch event per object changed since the last commit; wake the streams. How many.

        Call it under :attr:`lock`, in the same hold as the change.
        """
        with self.lock:
            floor = self.rv
            found = 0
            for name, cl in self.clusters.items():
                for plural, objects in cl.objects.items():
                    found += self.watches.diff(name, plural, objects, self.next_rv, floor)
            if found:
                self.watches.notify()
            return found

    def next_rv(self) -> str:
        """A new resourceVersion for an object that changes (which also forgets the cached answers)."""
        self.rv += 1
        self.changed()
        return str(self.rv)

    def changed(self) -> None:
        """The stored state changed: forget every cached answer."""
        with self.lock:
            self.epoch += 1
            self._answers.clear()

    def cached(self, raw_path: str) -> bytes | None:
        """The encoded answer to a GET of ``raw_path`` at the current state, if kept."""
        with self.lock:
            return self._answers.get(raw_path)

    def remember(self, raw_path: str, data: bytes, epoch: int) -> None:
        """Keep a GET answer encoded at ``epoch``, unless the state changed since."""
        with self.lock:
            if self.epoch == epoch and len(self._answers) < ANSWERS_KEPT:
                self._answers[raw_path] = data
