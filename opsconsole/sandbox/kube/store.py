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
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from opsconsole.core.fleet.model import ClusterSpec
from opsconsole.sandbox.kube.resources import JsonObj

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
    #: The pods built from ``pod_counts`` (None: build them on the next read).
    pods: list[JsonObj] | None = None
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
