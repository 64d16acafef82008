"""Sim time and seeded noise: the two primitives that make the sandbox world deterministic.

Why this module exists: every other part of the world (:mod:`.dynamics`,
:mod:`.observe`, :mod:`.incident_ops`) must agree on how sim time
is cut into ticks and on how a "random" figure is drawn, or the world stops being a pure function of
``(fleet, seed, what was done when, t)``. Both rules live here, once.

* Sim time is an integer count of microseconds since the Unix epoch; tick ``k`` is the instant
  ``k * TICK_S`` s after the epoch (:func:`to_us`, :func:`from_us`).
* Noise is a pure hash of ``(seed, tick, entity key)`` (:func:`noise`), never a shared RNG stream, so
  advancing in one step or in many gives the same figures.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

from opsconsole.core.errors import SandboxError

__all__ = [
    "CATCHUP_S",
    "CATCHUP_TICKS",
    "M64",
    "TICK_S",
    "TICK_US",
    "from_us",
    "key_hash",
    "mix",
    "noise",
    "to_us",
]

#: Length of one simulation tick, in sim seconds.
TICK_S = 15
TICK_US = TICK_S * 1_000_000
#: Longest stretch of sim time that is stepped tick by tick; longer advances jump first.
CATCHUP_S = 3600
CATCHUP_TICKS = CATCHUP_S // TICK_S
M64 = (1 << 64) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def mix(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def key_hash(key: str) -> int:
    """The 64-bit hash of an entity key (``"region/eu-west-1"``, ``"wl/<cluster>/<service>"``...)."""
    return mix(zlib.crc32(key.encode()))


def noise(seed_h: int, tick: int, key_h: int) -> float:
    """A uniform number in [0, 1) that depends only on (seed, tick, key); ``seed_h`` is ``mix(seed)``."""
    x = mix(seed_h ^ mix(((tick & M64) * 0x100000001B3 + key_h) & M64))
    return (x >> 11) * (1.0 / (1 << 53))


def to_us(at: datetime) -> int:
    """Microseconds since the epoch of a timezone-aware instant (a naive one is refused)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise SandboxError(f"sim time must be timezone-aware, got naive {at.isoformat()}")
    return (at - _EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    """The UTC instant ``us`` microseconds after the epoch."""
    return _EPOCH + timedelta(microseconds=us)
