"""The saved form of a sandbox world: its JSON layout, versioned and tied to the fleet's shape.

Why this module exists: :mod:`opsconsole.sandbox.state` keeps the world in a file shared between
processes (locking, atomic writes, wall-clock anchors); what goes *into* that file is defined here, next
to the state it mirrors, so a new field of :class:`~opsconsole.sandbox.world.entities.SimState` and its saved
form change together. The round trip is exact: a restored world continues bit for bit like the original.

How to use it (what :meth:`World.to_dict` / :meth:`World.from_dict` do)::

    data = dump(state)                      # JSON-serialisable
    check_header(fleet, data)               # SandboxError for another fleet or layout version
    state = build_state(fleet, data["seed"], data["now_us"])
    load(state, data)                       # then re-evaluate the current tick
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from opsconsole.core.errors import SandboxError
from opsconsole.core.fleet.model import ClusterSpec, DbRole, Environment, Fleet
from opsconsole.sandbox.incidents import Incident
from opsconsole.sandbox.world.entities import ERR_1H, HPA_WINDOW, NODE_WINDOW, SimState
from opsconsole.sandbox.world.ticks import TICK_US

__all__ = ["STATE_VERSION", "check_header", "dump", "fleet_fingerprint", "load"]

#: Version of the saved layout.
STATE_VERSION = 1


def fleet_fingerprint(fleet: Fleet) -> str:
    """A short hash of the fleet's shape (region, cluster and service names and placements).

    A saved world is only valid for the fleet it was built from; :mod:`opsconsole.sandbox.state`
    compares fingerprints to refuse a stale state file.
    """
    parts = [f"r:{r}" for r in sorted(fleet.regions)]
    parts += [
        f"c:{c.name}:{c.region}:{c.environment.value}" for c in sorted(fleet.clusters.values(), key=_name)
    ]
    parts += [
        f"s:{s.name}:{','.join(e.value for e in s.environments)}"
        for s in sorted(fleet.services.values(), key=lambda s: s.name)
    ]
    return zlib.crc32("\n".join(parts).encode()).to_bytes(4, "big").hex()


def _name(c: ClusterSpec) -> str:
    return c.name


def dump(s: SimState) -> dict[str, Any]:
    """The full state as JSON-serialisable data (the figures are not saved: they are re-evaluated)."""
    return {
        "version": STATE_VERSION,
        "fingerprint": fleet_fingerprint(s.fleet),
        "seed": s.seed,
        "now_us": s.now_us,
        "tick": s.tick,
        "stopped": sorted(e.value for e in s.stopped_environments()),
        "stopped_clusters": sorted(s.stopped),
        "incident_seq": s.incident_seq,
        "incidents": [i.to_dict() for i in s.incidents],
        "client_objects": {api: dict(objects) for api, objects in s.client_objects.items()},
        "regions": {
            rid: {
                "dns": dict(rg.dns),
                "db_role": rg.db_role.value,
                "replicates_from": rg.replicates_from,
                "read_replicas": rg.read_replicas,
                "cache_nodes": rg.cache_nodes,
                "req": list(rg.req),
                "err": list(rg.err),
            }
            for rid, rg in s.regions.items()
        },
        "clusters": {
            name: {
                "nodes": cl.nodes,
                "nodes_min": cl.nodes_min,
                "nodes_max": cl.nodes_max,
                "needs": list(cl.needs),
                "remembered": cl.remembered,
            }
            for name, cl in s.clusters.items()
        },
        "workloads": {
            key: {
                "replicas": wl.replicas,
                "hpa_min": wl.hpa_min,
                "hpa_max": wl.hpa_max,
                "recs": list(wl.recs),
                "remembered": wl.remembered,
            }
            for key, wl in s.workloads.items()
        },
    }


def check_header(fleet: Fleet, data: Mapping[str, Any]) -> None:
    """Refuse data of another layout version or built for another fleet.

    Raises:
        SandboxError: missing header, version mismatch, or fingerprint mismatch.
    """
    try:
        version = data["version"]
        fingerprint = data["fingerprint"]
    except (KeyError, TypeError) as exc:
        raise SandboxError(f"sandbox state is malformed: missing {exc}") from None
    if version != STATE_VERSION:
        raise SandboxError(f"sandbox state has layout version {version!r}, expected {STATE_VERSION}")
    if fingerprint != fleet_fingerprint(fleet):
        raise SandboxError(
            "sandbox state was built for a different fleet (the inventory's regions, clusters or "
            "services changed)"
        )


def load(s: SimState, data: Mapping[str, Any]) -> None:
    """Overwrite every dynamic field of ``s`` (built for the same fleet) from :func:`dump`'s data.

    Raises KeyError, TypeError or ValueError on malformed data; the caller turns them into a
    :class:`SandboxError`. The figures are left for the caller to re-evaluate.
    """
    s.now_us = int(data["now_us"])
    s.tick = int(data["tick"])
    if s.tick != s.now_us // TICK_US:
        raise ValueError("tick does not match now_us")
    if "stopped_clusters" in data:
        s.stopped = {str(c) for c in data["stopped_clusters"]}
    else:  # saved before clusters could be stopped one by one: whole environments
        envs = {Environment(e) for e in data["stopped"]}
        s.stopped = {n for n, c in s.clusters.items() if c.spec.environment in envs}
    if not s.stopped <= set(s.clusters):
        raise ValueError("stopped clusters differ from the fleet")
    s.incident_seq = int(data["incident_seq"])
    s.incidents = [Incident.from_dict(i) for i in data["incidents"]]
    # Saved since env stop / start kept their sizes across commands; older files have none.
    s.client_objects = {str(api): {str(k): v for k, v in _items(objects)}
                        for api, objects in _items(data.get("client_objects", {}))}
    regions = data["regions"]
    clusters = data["clusters"]
    workloads = data["workloads"]
    if set(regions) != set(s.regions) or set(clusters) != set(s.clusters):
        raise ValueError("regions or clusters differ from the fleet")
    if set(workloads) != set(s.workloads):
        raise ValueError("workloads differ from the fleet")
    for rid, rg in s.regions.items():
        r = regions[rid]
        rg.dns = {str(t): int(w) for t, w in _items(r["dns"])}
        rg.db_role = DbRole(r["db_role"])
        rg.replicates_from = None if r["replicates_from"] is None else str(r["replicates_from"])
        rg.read_replicas = int(r["read_replicas"])
        rg.cache_nodes = int(r["cache_nodes"])
        rg.req = _floats(r["req"], ERR_1H)
        rg.err = _floats(r["err"], ERR_1H)
    for name, cl in s.clusters.items():
        c = clusters[name]
        cl.nodes = int(c["nodes"])
        cl.nodes_min = int(c["nodes_min"])
        cl.nodes_max = int(c["nodes_max"])
        cl.needs = _ints(c["needs"], NODE_WINDOW)
        cl.remembered = None if c["remembered"] is None else int(c["remembered"])
    for key, wl in s.workloads.items():
        w = workloads[key]
        wl.replicas = int(w["replicas"])
        wl.hpa_min = int(w["hpa_min"])
        wl.hpa_max = int(w["hpa_max"])
        wl.recs = _ints(w["recs"], HPA_WINDOW)
        wl.remembered = None if w["remembered"] is None else int(w["remembered"])


def _items(value: Any) -> Iterable[tuple[Any, Any]]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a mapping, got {type(value).__name__}")
    return value.items()


def _floats(value: Any, length: int) -> list[float]:
    if not isinstance(value, list) or len(value) != length:
        raise ValueError(f"expected a list of {length} numbers")
    return [float(v) for v in value]


def _ints(value: Any, length: int) -> list[int]:
    if not isinstance(value, list) or len(value) != length:
        raise ValueError(f"expected a list of {length} integers")
    return [int(v) for v in value]
