"""The scheduler's records: overrides, transitions, what ``schedule show`` and the faces display.

Why it exists: these are the records that cross the wire (:mod:`opsconsole.core.wire` builds them by
module and name) and that the calendar, the config and the engine all speak of; they live apart from
the code that computes them so that each of those modules can import them without importing the others.

Use::

    from opsconsole.core.schedule.records import DOWN, UP, EnvironmentStatus, Override, OverrideKind
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = ["DOWN", "UP", "EnvironmentStatus", "Override", "OverrideKind", "TickReport", "Transition"]

UP, DOWN = "up", "down"


class OverrideKind(StrEnum):
    KEEP_AWAKE = "keep_awake"
    SKIP_TONIGHT = "skip_tonight"
    FORCE_DOWN = "force_down"


@dataclass(frozen=True)
class Override:
    id: str
    environment: str
    region: str | None
    kind: OverrideKind
    until: datetime
    created_by: str
    face: str
    created_at: datetime
    reason: str | None = None

    def applies(self, environment: str, region: str) -> bool:
        return self.environment == environment and self.region in (None, region)

    def in_force(self, at: datetime) -> bool:
        return self.created_at <= at < self.until


@dataclass(frozen=True)
class Transition:
    at: datetime
    state: str  # "up" | "down"


@dataclass(frozen=True)
class EnvironmentStatus:
    environment: str
    region: str | None
    desired: str
    scheduled: str
    applied: str | None
    next_transitions: tuple[Transition, ...]
    overrides: tuple[Override, ...]
    holds: tuple[str, ...]
    warning_at: datetime | None
    clusters: tuple[str, ...]


@dataclass(frozen=True)
class TickReport:
    """What one pass did (empty lists when this instance is not the leader)."""

    at: datetime
    leader: bool
    filed: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    expired: tuple[str, ...] = ()
    held: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
