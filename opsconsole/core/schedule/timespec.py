"""Time specs: when a non-prod environment should be up, in two syntaxes people already know.

Why this module exists: schedules are written by SREs who have used kube-downscaler annotations or AWS
Instance Scheduler periods before. Rather than invent a third syntax, opsconsole reads both — and reads
them *the way those projects do*, so that a schedule copied from one of them means the same thing here.
Everything is pure: a spec is parsed once into frozen objects, and evaluating one at an instant is a
function of that instant (converted to the spec's zone with :mod:`zoneinfo`, which makes DST days
right: local wall-clock rules are applied to the local time of each UTC instant).

**kube-downscaler** (hjacobs/kube-downscaler ``helper.matches_time_spec``)::

    Mon-Fri 07:30-20:30 Europe/Berlin
    Sat-Sun 00:00-24:00 UTC, Fri-Fri 20:00-24:00 UTC      (a comma-separated list: any part matches)
    2026-12-24T00:00:00+00:00-2026-12-27T00:00:00+00:00   (an absolute range, both ends included)
    always | never                                        (the whole spec, case-insensitive)

Read as kube-downscaler reads them: the weekday is the weekday of the *local* time; ``Fri-Mon`` wraps
the week end; the local minute must be in ``[from, to)``, so ``24:00`` ends a day. A time range whose end
is before its start (``22:00-06:00``) never matches in kube-downscaler; rather than silently keep a spec
that can never be true, it is refused here with the two-part spelling that does what was meant. One
extension: the zone may be left out when the caller supplies one (``schedules.yml`` fills in the
region's zone), e.g. ``Mon-Fri 07:00-20:00``.

**Instance Scheduler periods** (aws-solutions/instance-scheduler-on-aws ``RunningPeriod``): a period has
optional ``begintime`` / ``endtime`` (HH:MM), ``weekdays`` (``mon-fri``, ``0-4``, ``sat-mon`` wraps,
``mon#1`` the first Monday, ``friL`` the last Friday), ``monthdays`` (``1-15``, ``L`` the last day,
``15W`` the weekday nearest the 15th in the same month, ``1/7`` every 7th day from the 1st) and
``months`` (``jan-mar``, ``1-3``, ``nov-feb`` wraps). As there: every day condition must hold; then with
both times the period runs in ``[begintime, endtime)`` (an end before the begin never runs), with only a
begin time it runs from it and says nothing before, with only an end time it stops from it and says
nothing before, and with neither it runs all day. A schedule of periods is up if any period runs; when
none runs and one "says nothing", the state carries over from before (that is how Instance Scheduler
writes an overnight window: one period begins at 22:00, another ends at 06:00); otherwise down.

A spec that cannot be read raises :class:`ScheduleSpecError` naming the schedule, the part and why.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from opsconsole.core.errors import UsageError

__all__ = [
    "AbsoluteRange",
    "Period",
    "PeriodSchedule",
    "PeriodState",
    "RecurringWindow",
    "ScheduleSpecError",
    "TimeSpec",
    "evaluate",
    "parse_period",
    "parse_spec",
    "zone",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
SPEC_EXAMPLE = '"Mon-Fri 07:30-20:30 Europe/Berlin" or "2026-12-24T00:00:00+00:00-2026-12-27T00:00:00+00:00"'

# The patterns are kube-downscaler's (its zone is letters, "/" and "_" only); the zone is optional here.
_RECURRING = re.compile(
    r"^([a-zA-Z]{3})-([a-zA-Z]{3}) (\d\d):(\d\d)-(\d\d):(\d\d)(?: (?P<tz>[a-zA-Z/_]+))?$"
)
_ISO = r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[-+]\d{2}:\d{2})"
_ABSOLUTE = re.compile(rf"^{_ISO}-{_ISO}$")
_HHMM = re.compile(r"^(\d{1,2}):(\d\d)$")


class ScheduleSpecError(UsageError):
    """A schedule's time spec or period cannot be read: names the schedule, the part and why."""

    title = "invalid schedule"

    def __init__(self, schedule: str, part: str, why: str) -> None:
        self.schedule = schedule
        self.part = part
        self.why = why
        super().__init__(f"{schedule}: {part!r}: {why}")


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``. Raises KeyError (caught by callers, who know which schedule it was)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise KeyError(name) from None


def _zone_for(schedule: str, part: str, name: str) -> ZoneInfo:
    try:
        return zone(name)
    except KeyError:
        raise ScheduleSpecError(
            schedule, part, f"unknown time zone {name!r} (expected e.g. Europe/Berlin)"
        ) from None


# --------------------------------------------------------------------------------------------------
# kube-downscaler specs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecurringWindow:
    """``Mon-Fri 07:30-20:30 Europe/Berlin``: weekdays (0 = Monday) and local minutes ``[start, end)``."""

    day_from: int
    day_to: int
    minute_from: int
    minute_to: int
    tz: ZoneInfo

    def matches(self, at: datetime) -> bool:
        local = at.astimezone(self.tz)
        return self.matches_local(local.weekday(), local.hour * 60 + local.minute)

    def matches_local(self, weekday: int, minute: int) -> bool:
        if self.day_from > self.day_to:  # wraps the week end, e.g. Fri-Mon (or Sun-Thu)
            day_ok = weekday >= self.day_from or weekday <= self.day_to
        else:
            day_ok = self.day_from <= weekday <= self.day_to
        return day_ok and self.minute_from <= minute < self.minute_to


@dataclass(frozen=True)
class AbsoluteRange:
    """``2026-12-24T00:00:00+00:00-2026-12-27T00:00:00+00:00``: both ends included, as kube-downscaler."""

    start: datetime
    end: datetime

    def matches(self, at: datetime) -> bool:
        return self.start <= at <= self.end


@dataclass(frozen=True)
class TimeSpec:
    """A parsed kube-downscaler spec: ``always``, ``never``, or a list of windows (any one matches)."""

    text: str
    constant: bool | None
    parts: tuple[RecurringWindow | AbsoluteRange, ...]

    def matches(self, at: datetime) -> bool:
        if self.constant is not None:
            return self.constant
        return any(part.matches(at) for part in self.parts)


def _weekday(schedule: str, part: str, name: str) -> int:
    try:
        return WEEKDAYS.index(name.lower())
    except ValueError:
        raise ScheduleSpecError(
            schedule, part, f"{name!r} is not a weekday (expected Mon, Tue, Wed, Thu, Fri, Sat or Sun)"
        ) from None


def parse_spec(text: str, *, schedule: str = "spec", tz: str | None = None) -> TimeSpec:
    """Parse a kube-downscaler time spec.

    Args:
        text: the spec (see the module docstring).
        schedule: what to call it in errors (``schedules.yml: environments.staging.uptime``).
        tz: the zone for recurring parts written without one.

    Raises:
        ScheduleSpecError: naming ``schedule``, the part that failed and why.
    """
    stripped = text.strip()
    if stripped.lower() == "always":
        return TimeSpec(text, True, ())
    if stripped.lower() == "never":
        return TimeSpec(text, False, ())
    if not stripped:
        raise ScheduleSpecError(schedule, text, f"an empty spec (expected {SPEC_EXAMPLE}, always or never)")
    parts: list[RecurringWindow | AbsoluteRange] = []
    for raw in stripped.split(","):
        part = raw.strip()
        if part.lower() in ("always", "never"):
            raise ScheduleSpecError(schedule, part, "always / never stand alone, not in a list")
        recurring = _RECURRING.match(part)
        if recurring is not None:
            parts.append(_recurring(schedule, part, recurring, tz))
            continue
        absolute = _ABSOLUTE.match(part)
        if absolute is not None:
            start = datetime.fromisoformat(absolute.group(1))
            end = datetime.fromisoformat(absolute.group(2))
            if end < start:
                raise ScheduleSpecError(schedule, part, "the range ends before it starts")
            parts.append(AbsoluteRange(start, end))
            continue
        raise ScheduleSpecError(schedule, part, f"does not match the format {SPEC_EXAMPLE}")
    return TimeSpec(text, None, tuple(parts))


def _recurring(schedule: str, part: str, match: re.Match[str], tz: str | None) -> RecurringWindow:
    day_from = _weekday(schedule, part, match.group(1))
    day_to = _weekday(schedule, part, match.group(2))
    h1, m1, h2, m2 = (int(match.group(i)) for i in range(3, 7))
    for hour, minute in ((h1, m1), (h2, m2)):
        if hour > 24 or minute > 59 or (hour == 24 and minute != 0):
            raise ScheduleSpecError(
                schedule, part, f"{hour:02d}:{minute:02d} is not a time of day (00:00-24:00)"
            )
    minute_from, minute_to = h1 * 60 + m1, h2 * 60 + m2
    if minute_to <= minute_from:
        raise ScheduleSpecError(
            schedule, part,
            f"the window ends ({h2:02d}:{m2:02d}) at or before it starts ({h1:02d}:{m1:02d}); "
            f"kube-downscaler never matches such a window — for an overnight window write two, e.g. "
            f'"{match.group(1)}-{match.group(2)} {h1:02d}:{m1:02d}-24:00, ... 00:00-{h2:02d}:{m2:02d}"',
        )
    zone_name = match.group("tz") or tz
    if zone_name is None:
        raise ScheduleSpecError(schedule, part, "no time zone (expected e.g. Europe/Berlin at the end)")
    return RecurringWindow(day_from, day_to, minute_from, minute_to, _zone_for(schedule, part, zone_name))


# --------------------------------------------------------------------------------------------------
# Instance Scheduler periods
# --------------------------------------------------------------------------------------------------


class PeriodState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    #: The period says nothing at this time (only a begin or only an end time, before it).
    ANY = "any"


@dataclass(frozen=True)
class Period:
    """One Instance Scheduler period, parsed (``None`` = no condition)."""

    name: str
    begintime: time | None
    endtime: time | None
    weekdays: frozenset[int] | None
    #: ``mon#2`` → (0, 2)
    nth_weekdays: frozenset[tuple[int, int]]
    #: ``friL`` → 4
    last_weekdays: frozenset[int]
    monthdays: frozenset[int] | None
    last_monthday: bool
    #: ``15W`` → 15
    nearest_weekdays: frozenset[int]
    months: frozenset[int] | None

    @property
    def has_weekday_condition(self) -> bool:
        return self.weekdays is not None or bool(self.nth_weekdays) or bool(self.last_weekdays)

    @property
    def has_monthday_condition(self) -> bool:
        return self.monthdays is not None or self.last_monthday or bool(self.nearest_weekdays)

    def day_matches(self, day: date) -> bool:
        if self.months is not None and day.month not in self.months:
            return False
        if self.has_weekday_condition:
            wd = day.weekday()
            days_in_month = calendar.monthrange(day.year, day.month)[1]
            ok = (self.weekdays is not None and wd in self.weekdays) or (
                (wd, (day.day - 1) // 7 + 1) in self.nth_weekdays
            ) or (wd in self.last_weekdays and day.day + 7 > days_in_month)
            if not ok:
                return False
        if self.has_monthday_condition:
            days_in_month = calendar.monthrange(day.year, day.month)[1]
            ok = (self.monthdays is not None and day.day in self.monthdays) or (
                self.last_monthday and day.day == days_in_month
            ) or any(_nearest_weekday(day.year, day.month, n) == day.day for n in self.nearest_weekdays)
            if not ok:
                return False
        return True

    def state(self, local: datetime) -> PeriodState:
        """The period's verdict at a local wall-clock time (Instance Scheduler's ``get_desired_state``)."""
        if not self.day_matches(local.date()):
            return PeriodState.STOPPED
        t = local.time().replace(microsecond=0, tzinfo=None)
        begin, end = self.begintime, self.endtime
        if begin is None and end is None:
            return PeriodState.RUNNING
        if begin is None:
            assert end is not None
            return PeriodState.STOPPED if t >= end else PeriodState.ANY
        if end is None:
            return PeriodState.RUNNING if t >= begin else PeriodState.ANY
        return PeriodState.RUNNING if begin <= t < end else PeriodState.STOPPED

    def boundaries(self) -> tuple[time, ...]:
        return tuple(t for t in (self.begintime, self.endtime) if t is not None)


def _nearest_weekday(year: int, month: int, n: int) -> int:
    """``nW``: the weekday (Mon-Fri) nearest day ``n`` without leaving the month (cron's W)."""
    days = calendar.monthrange(year, month)[1]
    n = min(n, days)
    wd = date(year, month, n).weekday()
    if wd == 5:  # Saturday → Friday, unless that leaves the month
        return n - 1 if n > 1 else n + 2
    if wd == 6:  # Sunday → Monday, unless that leaves the month
        return n + 1 if n < days else n - 2
    return n


@dataclass(frozen=True)
class PeriodSchedule:
    """Periods in one zone: up if any period runs; carried over while the others say nothing."""

    periods: tuple[Period, ...]
    tz: ZoneInfo

    def state(self, at: datetime) -> PeriodState:
        local = at.astimezone(self.tz)
        states = [p.state(local) for p in self.periods]
        if PeriodState.RUNNING in states:
            return PeriodState.RUNNING
        if PeriodState.ANY in states:
            return PeriodState.ANY
        return PeriodState.STOPPED

    def matches(self, at: datetime) -> bool:
        state = self.state(at)
        if state is not PeriodState.ANY:
            return state is PeriodState.RUNNING
        # "Any" keeps the state from before: the latest earlier boundary (a begin / end time, or a
        # midnight, where day conditions change) with a definite verdict decides.
        local = at.astimezone(self.tz)
        times = sorted({t for p in self.periods for t in p.boundaries()} | {time(0, 0)}, reverse=True)
        for back in range(0, 9):
            day = local.date() - timedelta(days=back)
            for t in times:
                candidate = datetime.combine(day, t, tzinfo=self.tz)
                if candidate.astimezone(self.tz).time() != t:
                    continue  # a time skipped by a DST change
                if candidate > local:
                    continue
                verdict = self.state(candidate)
                if verdict is not PeriodState.ANY:
                    return verdict is PeriodState.RUNNING
        return False


_RANGE = re.compile(r"^([^-/]+)(?:-([^-/]+))?(?:/(\d+))?$")


def _items(text: str | int | Sequence[str | int]) -> list[str]:
    if isinstance(text, int):
        return [str(text)]
    if isinstance(text, str):
        return [t.strip() for t in text.split(",") if t.strip()] or [text]
    out: list[str] = []
    for item in text:
        out.extend(_items(item))
    return out


def _cyclic(
    schedule: str, field: str, text: str | int | Sequence[str | int], names: Sequence[str], *, first: int,
    wrap: bool,
) -> frozenset[int]:
    """Instance Scheduler's set builders for weekdays (0-6) and months (1-12): names, numbers, ranges
    (wrapping when ``wrap``), ``/step``."""
    size = len(names)
    last = first + size - 1

    def value(token: str, item: str) -> int:
        low = token.lower()
        if low in names:
            return names.index(low) + first
        if low.isdigit() and first <= int(low) <= last:
            return int(low)
        raise ScheduleSpecError(
            schedule, f"{field}: {item}",
            f"{token!r} is not one of {', '.join(names)} or a number {first}-{last}",
        )

    result: set[int] = set()
    for item in _items(text):
        match = _RANGE.match(item)
        if match is None:
            raise ScheduleSpecError(
                schedule, f"{field}: {item}", "expected a name, a number or a range a-b[/step]"
            )
        start = value(match.group(1), item)
        end = value(match.group(2), item) if match.group(2) else (last if match.group(3) else start)
        step = int(match.group(3) or 1)
        if step < 1:
            raise ScheduleSpecError(schedule, f"{field}: {item}", "a step must be 1 or more")
        if end < start and not wrap:
            raise ScheduleSpecError(schedule, f"{field}: {item}", "the range ends before it starts")
        span = (end - start) % size + 1
        for i in range(0, span, step):
            result.add((start - first + i) % size + first)
    return frozenset(result)


def _weekday_field(
    schedule: str, text: str | int | Sequence[str | int]
) -> tuple[frozenset[int] | None, frozenset[tuple[int, int]], frozenset[int]]:
    plain: list[str] = []
    nth: set[tuple[int, int]] = set()
    last: set[int] = set()
    for item in _items(text):
        hashed = re.match(r"^([A-Za-z]{3}|\d)#(\d)$", item)
        lasted = re.match(r"^([A-Za-z]{3}|\d)L$", item)
        if hashed is not None:
            (wd,) = _cyclic(schedule, "weekdays", hashed.group(1), WEEKDAYS, first=0, wrap=True)
            n = int(hashed.group(2))
            if not 1 <= n <= 5:
                raise ScheduleSpecError(schedule, f"weekdays: {item}", "the n of day#n must be 1 to 5")
            nth.add((wd, n))
        elif lasted is not None:
            (wd,) = _cyclic(schedule, "weekdays", lasted.group(1), WEEKDAYS, first=0, wrap=True)
            last.add(wd)
        else:
            plain.append(item)
    weekdays = _cyclic(schedule, "weekdays", plain, WEEKDAYS, first=0, wrap=True) if plain else None
    return weekdays, frozenset(nth), frozenset(last)


def _monthday_field(
    schedule: str, text: str | int | Sequence[str | int]
) -> tuple[frozenset[int] | None, bool, frozenset[int]]:
    plain: set[int] = set()
    last = False
    nearest: set[int] = set()

    def day(token: str, item: str) -> int:
        if token.isdigit() and 1 <= int(token) <= 31:
            return int(token)
        raise ScheduleSpecError(
            schedule, f"monthdays: {item}", f"{token!r} is not a day of the month (1-31, L)"
        )

    for item in _items(text):
        if item.upper() == "L":
            last = True
            continue
        w = re.match(r"^(\d{1,2})W$", item, re.IGNORECASE)
        if w is not None:
            nearest.add(day(w.group(1), item))
            continue
        match = _RANGE.match(item)
        if match is None:
            raise ScheduleSpecError(
                schedule, f"monthdays: {item}", "expected a day, a range a-b[/step], L or nW"
            )
        start = day(match.group(1), item)
        if match.group(2) and match.group(2).upper() == "L":
            end = 31
        else:
            end = day(match.group(2), item) if match.group(2) else (31 if match.group(3) else start)
        if end < start:
            raise ScheduleSpecError(schedule, f"monthdays: {item}", "the range ends before it starts")
        plain.update(range(start, end + 1, int(match.group(3) or 1)))
    return (frozenset(plain) if plain else None), last, frozenset(nearest)


def _clock_time(schedule: str, field: str, value: object) -> time:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 07:30 as the sexagesimal 450: take it back to 07:30.
        value = f"{value // 60:02d}:{value % 60:02d}"
    match = _HHMM.match(str(value).strip())
    if match is None:
        raise ScheduleSpecError(schedule, f"{field}: {value}", "expected a time of day HH:MM")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        raise ScheduleSpecError(schedule, f"{field}: {value}", "expected a time of day from 00:00 to 23:59")
    return time(hour, minute)


PERIOD_KEYS = ("name", "begintime", "endtime", "weekdays", "monthdays", "months")


def parse_period(data: dict[str, object], *, schedule: str = "period") -> Period:
    """Parse one Instance Scheduler period from a mapping with the keys of :data:`PERIOD_KEYS`.

    Raises:
        ScheduleSpecError: naming ``schedule``, the field and why.
    """
    unknown = sorted(set(data) - set(PERIOD_KEYS))
    if unknown:
        raise ScheduleSpecError(
            schedule, unknown[0], f"unknown period key (expected {', '.join(PERIOD_KEYS)})"
        )
    begin = end = None
    if data.get("begintime") is not None:
        begin = _clock_time(schedule, "begintime", data["begintime"])
    if data.get("endtime") is not None:
        end = _clock_time(schedule, "endtime", data["endtime"])
    weekdays: frozenset[int] | None = None
    nth: frozenset[tuple[int, int]] = frozenset()
    last_wd: frozenset[int] = frozenset()
    if data.get("weekdays") is not None:
        raw_weekdays = _field_value(schedule, "weekdays", data["weekdays"])
        weekdays, nth, last_wd = _weekday_field(schedule, raw_weekdays)
    monthdays: frozenset[int] | None = None
    last_day = False
    nearest: frozenset[int] = frozenset()
    if data.get("monthdays") is not None:
        monthdays, last_day, nearest = _monthday_field(
            schedule, _field_value(schedule, "monthdays", data["monthdays"])
        )
    months = None
    if data.get("months") is not None:
        months = _cyclic(schedule, "months", _field_value(schedule, "months", data["months"]), MONTHS,
                         first=1, wrap=True)
    return Period(
        name=str(data.get("name") or schedule), begintime=begin, endtime=end, weekdays=weekdays,
        nth_weekdays=nth, last_weekdays=last_wd, monthdays=monthdays, last_monthday=last_day,
        nearest_weekdays=nearest, months=months,
    )


def _field_value(schedule: str, field: str, value: object) -> str | int | list[str | int]:
    if isinstance(value, bool):
        raise ScheduleSpecError(schedule, f"{field}: {value}", "expected text such as mon-fri, or a list")
    if isinstance(value, str | int):
        return value
    if isinstance(value, list) and all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
        return list(value)
    raise ScheduleSpecError(schedule, f"{field}: {value}", "expected text such as mon-fri, or a list")


def period_schedule(periods: Iterable[Period], tz: str, *, schedule: str = "periods") -> PeriodSchedule:
    items = tuple(periods)
    if not items:
        raise ScheduleSpecError(schedule, "periods", "at least one period")
    return PeriodSchedule(items, _zone_for(schedule, "timezone", tz))


# --------------------------------------------------------------------------------------------------
# One call for the command line
# --------------------------------------------------------------------------------------------------


def evaluate(spec: str, at: datetime, *, tz: str | None = None) -> bool:
    """Whether the kube-downscaler ``spec`` matches (is "up") at ``at``.

    Args:
        spec: a kube-downscaler spec.
        at: the instant; a naive one is read in ``tz`` (UTC when no ``tz``).
        tz: the zone for naive instants and for recurring parts written without a zone.

    Raises:
        ScheduleSpecError: the spec or the zone cannot be read.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        local_zone: tzinfo = _zone_for("--tz", tz, tz) if tz else ZoneInfo("UTC")
        at = at.replace(tzinfo=local_zone)
    return parse_spec(spec, tz=tz).matches(at)


def evaluate_periods(periods: Sequence[Mapping[str, object]], at: datetime, *, tz: str | None = None) -> bool:
    """Whether Instance Scheduler ``periods`` (``begintime``, ``endtime``, ``weekdays``, ``monthdays``,
    ``months``) run at ``at``, in the zone ``tz`` (UTC when none, as Instance Scheduler's default).

    A naive ``at`` is read in ``tz``.

    Raises:
        ScheduleSpecError: a period or the zone cannot be read.
    """
    zone_name = tz or "UTC"
    if at.tzinfo is None or at.utcoffset() is None:
        at = at.replace(tzinfo=_zone_for("--tz", zone_name, zone_name))
    parsed = [parse_period(dict(p), schedule=f"--period {i + 1}") for i, p in enumerate(periods)]
    return period_schedule(parsed, zone_name, schedule="--period").matches(at)
