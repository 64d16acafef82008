"""Stable names, uids, hashes and timestamps for the objects the Kubernetes API emulator serves.

Why this module exists: the emulator rebuilds its pods after every publish and re-synthesises nodes and
events from the world; a client (or a test) must see the same uid and name for the same object every
time. These helpers derive them from the object's path, so every module of :mod:`opsconsole.sandbox.kube`
names things the same way.
"""

from __future__ import annotations

import functools
import uuid
import zlib
from datetime import UTC, datetime

__all__ = ["now_iso", "pod_suffix", "short_hash", "uid"]

_POD_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now_iso() -> str:
    """The current time as Kubernetes writes timestamps (``2025-01-01T00:00:00Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def uid(*parts: str) -> str:
    """A stable uid for the object at this path (a UUID5 of the joined parts)."""
    return _uid_of("/".join(parts))


@functools.lru_cache(maxsize=16384)
def _uid_of(path: str) -> str:
    # Cached: the pods are rebuilt after every publish with the same names, hence the same uids.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "opsconsole-sandbox/" + path))


def short_hash(text: str, n: int = 8) -> str:
    """The first ``n`` hex digits of the CRC-32 of ``text`` (node names, template hashes...)."""
    return f"{zlib.crc32(text.encode()):08x}"[:n]


def pod_suffix(seed: str, i: int) -> str:
    """The random-looking but stable suffix of the ``i``-th pod of a ReplicaSet (``-x7k2q``)."""
    x = zlib.crc32(f"{seed}/{i}".encode())
    chars = []
    for _ in range(5):
        x, r = divmod(x, len(_POD_ALPHABET))
        chars.append(_POD_ALPHABET[r])
    return "".join(chars) + (f"{i:x}" if i >= 1 else "")
