"""The composition root: which sources feed the core, decided in one place.

The core knows nothing about where fleet state comes from; faces know nothing about how to build the
core. This module connects them. Today the only world is the embedded sandbox, read in-process by the
``sim`` source; the Local cloud issue adds the real cloud adapters in front of it.

Sandbox settings come from the environment so that every command sees the same world:

* ``OPSCONSOLE_SANDBOX_SEED`` (default 42): the world's random seed;
* ``OPSCONSOLE_SANDBOX_SPEED`` (default 1): simulated seconds per wall-clock second.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from opsconsole.core.clock import Clock, SystemClock
from opsconsole.core.errors import UsageError
from opsconsole.core.inventory import load_inventory
from opsconsole.core.model import Fleet
from opsconsole.core.paths import opsconsole_home
from opsconsole.core.service import OpsCore
from opsconsole.providers.sim import SimSource
from opsconsole.sandbox.state import WorldStore


@dataclass(frozen=True)
class SandboxSettings:
    seed: int = 42
    speed: float = 1.0

    @classmethod
    def from_environment(cls) -> SandboxSettings:
        seed_text = os.environ.get("OPSCONSOLE_SANDBOX_SEED", "42")
        speed_text = os.environ.get("OPSCONSOLE_SANDBOX_SPEED", "1")
        try:
            seed = int(seed_text)
        except ValueError:
            raise UsageError(f"OPSCONSOLE_SANDBOX_SEED: expected an integer, found {seed_text!r}") from None
        try:
            speed = float(speed_text)
        except ValueError:
            speed = -1.0
        if not 0 < speed <= 10_000:
            raise UsageError(
                f"OPSCONSOLE_SANDBOX_SPEED: expected a number > 0 and <= 10000, found {speed_text!r}"
            )
        return cls(seed=seed, speed=speed)


def world_store(
    fleet: Fleet,
    *,
    home: Path | None = None,
    clock: Clock | None = None,
    settings: SandboxSettings | None = None,
) -> WorldStore:
    """The persistent sandbox world under ``OPSCONSOLE_HOME``."""
    settings = settings or SandboxSettings.from_environment()
    return WorldStore(
        home or opsconsole_home(), fleet, clock or SystemClock(), seed=settings.seed, speed=settings.speed
    )


def sandbox_core(
    inventory: Path | None = None,
    *,
    home: Path | None = None,
    clock: Clock | None = None,
    deadline_s: float = 5.0,
) -> OpsCore:
    """An :class:`OpsCore` reading the embedded sandbox world for the given inventory."""
    fleet = load_inventory(inventory)
    store = world_store(fleet, home=home, clock=clock)
    return OpsCore(fleet, [SimSource(store)], deadline_s=deadline_s, clock=clock)
