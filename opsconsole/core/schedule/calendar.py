"""When each scheduled unit (an environment in a region) is up or down: holidays, transitions, timelines.

Why it exists: the schedule's arithmetic — a unit's time specs and periods in its zone, its public
holidays, the overrides in force — is pure and is what most tests and the benchmark exercise; it lives
apart from reading ``schedules.yml`` (:mod:`opsconsole.core.schedule.config`) and from acting on it
(:mod:`opsconsole.core.schedule.engine`). Every function takes its instants as arguments.

Use::

    desired_state(unit, now, overrides)                 # "up" | "down"
    transitions(unit, now, now + timedelta(days=8), overrides, limit=4)
    timeline(unit, start, 14 * 24 * 60)                 # one byte per minute: 1 up, 0 down
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holidays_lib

from opsconsole.core.schedule.records import DOWN, UP, Override, OverrideKind, Transition
from opsconsole.core.schedule.timespec import AbsoluteRange, PeriodSchedule, RecurringWindow, TimeSpec, zone

__all__ = ["UnitSchedule", "ceil_minute", "desired_state", "notice_key", "timeline", "transitions"]


@lru_cache(maxsize=64)
def _holiday_calendar(country: str) -> holidays_lib.HolidayBase:
    return holidays_lib.country_holidays(country)


@dataclass(frozen=True)
class UnitSchedule:
    """The schedule of one environment in one region."""

    environment: str
    region: str
    timezone: str
    uptime: TimeSpec | None
    downtime: TimeSpec | None
    periods: PeriodSchedule | None
    holiday_countries: tuple[str, ...]
    lead: timedelta
    clusters: tuple[str, ...]
    #: What the clusters cost per hour while up (the preview's saving estimate), in USD.
    hourly_cost: float = 0.0
    tz: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tz", zone(self.timezone))

    @property
    def key(self) -> str:
        return f"{self.environment}:{self.region}"

    def holiday(self, day: date) -> str | None:
        for country in self.holiday_countries:
            name = _holiday_calendar(country).get(day)
            if name:
                return f"{name} ({country})"
        return None

    def up(self, at: datetime) -> bool:
        """Whether the schedule alone (no overrides) says up at ``at``."""
        if self.holiday_countries and self.holiday(at.astimezone(self.tz).date()) is not None:
            return False
        if self.downtime is not None and self.downtime.matches(at):
            return False
        if self.periods is not None:
            return self.periods.matches(at)
        return self.uptime.matches(at) if self.uptime is not None else True

    def change_points(self, start: datetime, end: datetime) -> list[datetime]:
        """Instants in ``[start, end]`` where the schedule may change (window edges, local midnights)."""
        points: list[datetime] = []
        zones: dict[str, tuple[ZoneInfo, set[time]]] = {}

        def add(tz: ZoneInfo, t: time) -> None:
            zones.setdefault(tz.key, (tz, set()))[1].add(t)

        add(self.tz, time(0, 0))
        for spec in (self.uptime, self.downtime):
            for part in spec.parts if spec is not None else ():
                if isinstance(part, RecurringWindow):
                    for minute in (part.minute_from, part.minute_to):
                        add(part.tz, time(0, 0) if minute >= 1440 else time(minute // 60, minute % 60))
                    add(part.tz, time(0, 0))
                elif isinstance(part, AbsoluteRange):
                    points.extend((part.start, part.end + timedelta(microseconds=1)))
        if self.periods is not None:
            for period in self.periods.periods:
                for t in period.boundaries():
                    add(self.periods.tz, t)
            add(self.periods.tz, time(0, 0))
        for tz, times in zones.values():
            first = start.astimezone(tz).date() - timedelta(days=1)
            last = end.astimezone(tz).date() + timedelta(days=1)
            day = first
            while day <= last:
                for t in times:
                    points.append(datetime.combine(day, t, tzinfo=tz))
                day += timedelta(days=1)
        return [p for p in points if start <= p <= end]


def ceil_minute(at: datetime) -> datetime:
    if not (at.second or at.microsecond):
        return at
    floor = at.replace(second=0, microsecond=0)
    return floor if floor == at else floor + timedelta(minutes=1)


def desired_state(unit: UnitSchedule, at: datetime, overrides: Sequence[Override] = ()) -> str:
    """The state ``unit`` should be in at ``at``: the newest override in force, else the schedule."""
    active = [o for o in overrides if o.applies(unit.environment, unit.region) and o.in_force(at)]
    if active:
        newest = max(active, key=lambda o: o.created_at)
        return DOWN if newest.kind is OverrideKind.FORCE_DOWN else UP
    return UP if unit.up(at) else DOWN


def _points(
    unit: UnitSchedule, start: datetime, end: datetime, overrides: Sequence[Override]
) -> list[datetime]:
    points = unit.change_points(start, end)
    for o in overrides:
        if o.applies(unit.environment, unit.region):
            points.extend(p for p in (o.created_at, o.until) if start <= p <= end)
    return sorted({ceil_minute(p.astimezone(UTC)) for p in points})


def transitions(
    unit: UnitSchedule, start: datetime, end: datetime, overrides: Sequence[Override] = (), *,
    limit: int | None = None, schedule_only: bool = False,
) -> list[Transition]:
    """The changes of desired state in ``(start, end]``, at one-minute resolution, in order."""
    chosen = () if schedule_only else overrides
    state = desired_state(unit, start, chosen)
    out: list[Transition] = []
    for point in _points(unit, start, end, chosen):
        if point <= start:
            continue
        now = desired_state(unit, point, chosen)
        if now != state:
            out.append(Transition(point, now))
            state = now
            if limit is not None and len(out) >= limit:
                break
    return out


def timeline(
    unit: UnitSchedule, start: datetime, minutes: int, overrides: Sequence[Override] = ()
) -> bytearray:
    """One byte per minute from ``start`` (aligned to a minute): 1 while up, 0 while down.

    Evaluates the schedule only where it can change (window edges, local midnights, overrides), so a
    14-day timeline costs a few dozen evaluations, not 20,160.
    """
    start = ceil_minute(start)
    end = start + timedelta(minutes=minutes)
    out = bytearray(minutes)
    marks = [0] + [int((p - start).total_seconds() // 60) for p in _points(unit, start, end, overrides)]
    marks = sorted({m for m in marks if 0 <= m < minutes})
    for i, mark in enumerate(marks):
        stop = marks[i + 1] if i + 1 < len(marks) else minutes
        if desired_state(unit, start + timedelta(minutes=mark), overrides) == UP:
            out[mark:stop] = b"\x01" * (stop - mark)
    return out


def notice_key(unit: UnitSchedule, at: datetime) -> str:
    return f"shutdown:{unit.environment}:{unit.region or '*'}:{at.astimezone(UTC):%Y%m%dT%H%MZ}"
