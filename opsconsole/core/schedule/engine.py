"""Non-prod schedules: staging and dev sleep at night and on weekends, wake on time, safely.

Why this module exists: non-production clusters cost money while nobody uses them. ``schedules.yml``
says when each environment is up in each region (in the region's local time, with its public holidays);
this module computes, for any instant, the state each (environment, region) should be in, and a
:class:`Scheduler` makes it so — always through the change pipeline (an ``env_stop`` / ``env_start``
request, low risk, actor ``scheduler``, audited), never by itself.

How it is meant to be used::

    scheduler = Scheduler(core)                 # one per process; several processes may share a database
    scheduler.status()                          # what the TUI, the bot and ``schedule show`` display
    scheduler.override("staging", OverrideKind.KEEP_AWAKE, who=me, face="tui", until=t)
    scheduler.start()                           # a daemon thread: tick every tick_s while leader
    scheduler.tick()                            # or one pass, by hand (tests, ``schedule run``)

The engine's rules:

* **desired** = the schedule (``scheduled``) unless an override is in force: keep-awake and skip-tonight
  hold it up, force-down holds it down, each until its ``until``; the newest override wins. Overrides end
  by themselves (audited as ``override_expired``).
* **warnings** go out ``warning_lead_min`` before a shutdown, once (an Outbox notice of kind
  ``shutdown_warning``, which the Slack bot and the TUI show with keep-awake / skip-tonight buttons); a
  warning whose shutdown an override cancels is resolved. A shutdown never happens before its warning
  lead has run, except a force-down, which someone asked for.
* **reconcile, never replay**: the state last applied is kept in ``schedule_state``; each tick applies
  the *current* desired state if it differs — after a restart, the nights missed are not replayed.
* **holds**: a scheduled shutdown waits while a high or critical finding is open in the region (someone
  may be using staging to reproduce it) and while a change freeze of ``schedules.yml`` is in force; a
  start waits for a freeze only.
* **one actor**: only the leader acts — a lease in the ``leaders`` table, renewed every third of its
  length; when the leader dies another instance takes over once the lease has lapsed (20 s by default).

Pure parts (schedules, desired state, transitions, timelines) take their instants as arguments; the
:class:`Scheduler` does the I/O around them.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays as holidays_lib
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from opsconsole.core.audit.log import AuditLog
from opsconsole.core.audit.records import AuditKind
from opsconsole.core.change.actions import plan_environment
from opsconsole.core.change.gate import Act, Forbidden, refusal
from opsconsole.core.change.rbac import Grant, Identity, Role, Scope, _only_keys
from opsconsole.core.change.requests import RequestRefused
from opsconsole.core.change.risk import ChangeFreeze, _freeze
from opsconsole.core.clock import Clock, utc
from opsconsole.core.errors import OpsError, UsageError
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.inventory import _Node, _read_yaml
from opsconsole.core.fleet.model import Environment, Fleet, Severity
from opsconsole.core.fleet.view import FleetView
from opsconsole.core.runs.records import JobStatus
from opsconsole.core.schedule.timespec import (
    AbsoluteRange,
    PeriodSchedule,
    RecurringWindow,
    ScheduleSpecError,
    TimeSpec,
    evaluate,
    parse_period,
    parse_spec,
    period_schedule,
    zone,
)
from opsconsole.core.store.db import (
    StoreUnavailable,
    leaders_table,
    schedule_overrides_table,
    schedule_state_table,
    write_transaction,
)
from opsconsole.core.store.outbox import Outbox

__all__ = [
    "SCHEDULER_IDENTITY",
    "EnvironmentStatus",
    "Override",
    "OverrideKind",
    "ScheduleSpecError",
    "Scheduler",
    "Schedules",
    "TickReport",
    "Transition",
    "UnitSchedule",
    "evaluate",
    "load_schedules",
]

log = logging.getLogger(__name__)

SCHEDULES_FILE = "schedules.yml"
UP, DOWN = "up", "down"
FACE = "scheduler"
LEADER_ROLE = "scheduler"
NOTICE_KIND = "shutdown_warning"
DEFAULT_LEAD = timedelta(minutes=30)
DEFAULT_KEEP_AWAKE = timedelta(hours=2)
#: The longest an override may last: a forgotten keep-awake must not cost a month of nights.
MAX_OVERRIDE = timedelta(days=14)
#: How far ahead transitions are looked for (a week and a day covers any weekly schedule).
HORIZON = timedelta(days=8)
#: After a failed or refused action, the next try waits this long (no storm of requests every tick).
RETRY_AFTER = timedelta(minutes=10)

#: Who the scheduler acts as: an operator of staging and dev, and nothing else.
SCHEDULER_IDENTITY = Identity(
    person="scheduler",
    principal="system:scheduler",
    grants=(Grant(Role.OPERATOR, environments=frozenset({"staging", "dev"})),),
    known=True,
)


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


# --------------------------------------------------------------------------------------------------
# Schedules: schedules.yml, validated
# --------------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Schedules:
    """schedules.yml: one :class:`UnitSchedule` per (environment, region) with clusters, and freezes."""

    units: tuple[UnitSchedule, ...]
    freezes: tuple[ChangeFreeze, ...]
    source: Path

    @property
    def environments(self) -> tuple[str, ...]:
        return tuple(sorted({u.environment for u in self.units}))

    def of(self, environment: str, region: str | None = None) -> list[UnitSchedule]:
        return [u for u in self.units if u.environment == environment and region in (None, u.region)]

    def freezes_at(self, at: datetime, environment: str, region: str) -> list[ChangeFreeze]:
        scope = Scope.of(environments=[environment], regions=[region])
        return [f for f in self.freezes if f.in_force(at) and f.applies_to(scope)]


def load_schedules(inventory_dir: Path, fleet: Fleet) -> Schedules:
    """Read and validate ``schedules.yml`` next to ``hosts.yml``.

    Raises:
        InventoryError: a key is wrong (names the file, the key path and what was expected).
        ScheduleSpecError: a time spec or period cannot be read (names the file and key, the part, why).
    """
    root = inventory_dir if inventory_dir.is_dir() else inventory_dir.parent
    path = root / SCHEDULES_FILE
    display = str(path)
    data = _read_yaml(path, display)
    top = _Node(display, "", data, getattr(data, "line", 1))
    _only_keys(top, {"version", "countries", "freezes", "costs", "environments"})
    version = top.get("version")
    if version.as_int() != 1:
        raise version.fail("1", str(version.value))

    countries: dict[str, str] = {}
    countries_node = top.opt("countries")
    if countries_node is not None and countries_node.value is not None:
        for region, node in countries_node.items():
            if region not in fleet.regions:
                raise node.fail(f"a region of the fleet ({', '.join(sorted(fleet.regions))})", region)
            countries[region] = _country(node)

    prices: dict[str, float] = {}
    costs_node = top.opt("costs")
    if costs_node is not None and costs_node.value is not None:
        _only_keys(costs_node, {"instance_hourly_usd"})
        price_node = costs_node.opt("instance_hourly_usd")
        if price_node is not None and price_node.value is not None:
            prices = {name: node.as_float(0.0, 10_000.0) for name, node in price_node.items()}

    freezes: list[ChangeFreeze] = []
    freezes_node = top.opt("freezes")
    if freezes_node is not None and freezes_node.value is not None:
        for item in freezes_node.as_list():
            freezes.append(_freeze(item, fleet))

    units: list[UnitSchedule] = []
    envs = top.get("environments")
    for env_name, env_node in envs.items():
        env = _Node(display, env_node.path, env_name, env_node.line).as_enum(Environment)
        if env is Environment.PROD:
            raise env_node.fail("staging or dev (production is never put to sleep)", env_name)
        regions_with_clusters = sorted({c.region for c in fleet.clusters.values() if c.environment is env})
        if env_node.value is None or env_node.mapping() == {}:
            continue  # listed without a schedule: not scheduled
        _only_keys(env_node, {*_UNIT_KEYS, "regions"})
        per_region: dict[str, _Node] = {}
        regions_node = env_node.opt("regions")
        if regions_node is not None and regions_node.value is not None:
            for region, node in regions_node.items():
                if region not in regions_with_clusters:
                    raise node.fail(
                        f"a region where {env_name} has clusters ({', '.join(regions_with_clusters)})", region
                    )
                _only_keys(node, set(_UNIT_KEYS))
                per_region[region] = node
        for region in regions_with_clusters:
            clusters = tuple(sorted(c.name for c in fleet.clusters.values()
                                    if c.environment is env and c.region == region))
            cost = 0.0
            for name in clusters:
                spec = fleet.clusters[name]
                cost += math.ceil((spec.nodes.min + spec.nodes.max) / 2) * prices.get(spec.instance_type, 0.0)
            units.append(_unit(env.value, region, env_node, per_region.get(region), fleet,
                               countries, clusters, cost))
    return Schedules(tuple(units), tuple(freezes), path)


_UNIT_KEYS = ("uptime", "downtime", "periods", "timezone", "holidays", "warning_lead_min")


def _country(node: _Node) -> str:
    code = node.as_str().upper()
    try:
        holidays_lib.country_holidays(code)
    except NotImplementedError:
        raise node.fail("a country code the holidays package knows (US, DE, IE, SG...)", code) from None
    return code


def _unit(
    environment: str, region: str, env_node: _Node, region_node: _Node | None, fleet: Fleet,
    countries: Mapping[str, str], clusters: tuple[str, ...], cost: float,
) -> UnitSchedule:
    def pick(key: str) -> _Node | None:
        if region_node is not None and region_node.has(key):
            return region_node.get(key)
        return env_node.opt(key)

    tz_node = pick("timezone")
    timezone = fleet.regions[region].timezone
    if tz_node is not None and tz_node.value is not None:
        timezone = tz_node.as_str()
        try:
            zone(timezone)
        except KeyError:
            raise tz_node.fail("an IANA time zone such as Europe/Berlin", timezone) from None

    def spec(key: str) -> TimeSpec | None:
        node = pick(key)
        if node is None or node.value is None:
            return None
        return parse_spec(node.as_str(), schedule=f"{node.file}: {node.path}", tz=timezone)

    uptime, downtime = spec("uptime"), spec("downtime")
    periods_node = pick("periods")
    periods = None
    if periods_node is not None and periods_node.value is not None:
        if uptime is not None:
            raise periods_node.fail("either uptime or periods, not both")
        name = f"{periods_node.file}: {periods_node.path}"
        items = []
        for i, item in enumerate(periods_node.as_list()):
            raw = {str(k): v for k, v in item.mapping().items()}
            items.append(parse_period(raw, schedule=f"{name}[{i}]"))
        periods = period_schedule(items, timezone, schedule=name)

    holidays_node = pick("holidays")
    holiday_countries: tuple[str, ...] = ()
    if holidays_node is not None and holidays_node.value is not None:
        if isinstance(holidays_node.value, bool):
            if holidays_node.value:
                if region not in countries:
                    raise holidays_node.fail(f"a country for {region} under the top-level countries key")
                holiday_countries = (countries[region],)
        else:
            holiday_countries = tuple(_country(n) for n in holidays_node.as_list())

    lead_node = pick("warning_lead_min")
    lead = DEFAULT_LEAD if lead_node is None else timedelta(minutes=lead_node.as_float(0, 24 * 60))
    return UnitSchedule(
        environment=environment, region=region, timezone=timezone, uptime=uptime, downtime=downtime,
        periods=periods, holiday_countries=holiday_countries, lead=lead, clusters=clusters, hourly_cost=cost,
    )


# --------------------------------------------------------------------------------------------------
# Pure: desired state, transitions, timelines
# --------------------------------------------------------------------------------------------------


def _ceil_minute(at: datetime) -> datetime:
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
    return sorted({_ceil_minute(p.astimezone(UTC)) for p in points})


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
    start = _ceil_minute(start)
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


# --------------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------------


@dataclass
class _Memory:
    """A unit's row in ``schedule_state``."""

    applied: str | None
    data: dict[str, Any]


class Scheduler:
    """The scheduling engine over one :class:`OpsCore` (see the module docstring).

    Args:
        core: the ops core (its fleet, database, pipeline, findings).
        clock: the time source (default: the core's).
        instance_id: this instance's name in the leader election (default: a fresh one).
        tick_s: seconds between passes in the background thread.
        lease_s: how long a leadership lasts without renewal (renewed every third of it).
        schedules: the schedules (default: ``schedules.yml`` of the core's inventory).
    """

    def __init__(
        self,
        core: OpsCore,
        *,
        clock: Clock | None = None,
        instance_id: str | None = None,
        tick_s: float = 30.0,
        lease_s: float = 20.0,
        schedules: Schedules | None = None,
    ) -> None:
        self.core = core
        self.clock: Clock = clock or core.clock
        self.instance_id = instance_id or f"scheduler-{uuid.uuid4().hex[:12]}"
        self.tick_s = tick_s
        self.lease_s = lease_s
        self.schedules = schedules or load_schedules(core.fleet.source, core.fleet)
        self.outbox = Outbox(core.database, clock=self.clock)
        self.audit = AuditLog(core.database, clock=self.clock, key=core.audit_key,
                              head_file=core.audit_head_file)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._leader = False

    @property
    def _engine(self) -> Any:
        return self.core.database.engine

    def _unavailable(self, exc: SQLAlchemyError) -> StoreUnavailable:
        return self.core.database.unavailable(exc)

    # -- reading -------------------------------------------------------------------------------------

    def overrides(self, at: datetime | None = None) -> list[Override]:
        """Overrides not ended by hand or by expiry (at ``at``: those still in force then)."""
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(schedule_overrides_table).where(schedule_overrides_table.c.ended_at.is_(None))
                ).mappings().all()
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        found = [_override(r) for r in rows]
        if at is not None:
            found = [o for o in found if o.until > at]
        return sorted(found, key=lambda o: o.created_at)

    def _memory(self, key: str) -> _Memory:
        try:
            with self._engine.connect() as conn:
                row = conn.execute(
                    select(schedule_state_table).where(schedule_state_table.c.key == key)
                ).mappings().first()
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        if row is None:
            return _Memory(None, {})
        applied = row["state"] if row["state"] in (UP, DOWN) else None
        return _Memory(applied, dict(row["data"] or {}))

    def _remember(self, key: str, memory: _Memory) -> None:
        values = {"state": memory.applied or "unknown", "data": memory.data, "updated_at": self.clock.now()}
        try:
            with write_transaction(self._engine) as conn:
                moved = conn.execute(
                    update(schedule_state_table).where(schedule_state_table.c.key == key).values(**values)
                ).rowcount
                if not moved:
                    conn.execute(insert(schedule_state_table).values(key=key, **values))
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    def status(self, at: datetime | None = None) -> list[EnvironmentStatus]:
        """Each (environment, region): desired / scheduled / applied state, next transitions, holds."""
        now = at or self.clock.now()
        overrides = self.overrides(now)
        out: list[EnvironmentStatus] = []
        for unit in self.schedules.units:
            memory = self._memory(unit.key)
            mine = tuple(o for o in overrides if o.applies(unit.environment, unit.region))
            upcoming = tuple(transitions(unit, now, now + HORIZON, overrides, limit=4))
            next_down = next((t.at for t in upcoming if t.state == DOWN), None)
            holds = [f"change freeze {f.describe()}" for f in self.schedules.freezes_at(now, unit.environment,
                                                                                     unit.region)]
            holds.extend(str(h) for h in memory.data.get("held", []) if str(h) not in holds)
            warned = memory.data.get("warned")
            warning_at = (datetime.fromisoformat(warned) - unit.lead) if warned else (
                next_down - unit.lead if next_down is not None else None
            )
            out.append(EnvironmentStatus(
                environment=unit.environment, region=unit.region,
                desired=desired_state(unit, now, overrides), scheduled=UP if unit.up(now) else DOWN,
                applied=memory.applied, next_transitions=upcoming, overrides=mine, holds=tuple(holds),
                warning_at=warning_at, clusters=unit.clusters,
            ))
        return out

    # -- overrides -----------------------------------------------------------------------------------

    def _units_for(self, environment: str, region: str | None) -> list[UnitSchedule]:
        units = self.schedules.of(environment, region)
        if not units:
            known = ", ".join(sorted({f"{u.environment}" + (f" in {u.region}" if region else "")
                                      for u in self.schedules.units})) or "none"
            where = f" in {region}" if region else ""
            raise UsageError(f"{environment}{where} has no schedule in {self.schedules.source}; "
                             f"scheduled: {known}")
        return units

    def _check_role(self, who: Identity, face: str, environment: str, units: Sequence[UnitSchedule],
                    what: str) -> None:
        scope = Scope.of(environments=[environment], regions=[u.region for u in units])
        reason = refusal(Act.OVERRIDE, who, scope=scope)
        if reason is not None:
            reason = reason.replace("a schedule override", what)
            self.audit.append(AuditKind.REQUEST_REFUSED, actor=who.person, face=face,
                              data={"action": "schedule_override", "environment": environment,
                                    "reason": reason, "principal": who.principal})
            raise Forbidden(reason)

    def override(
        self,
        environment: str,
        kind: OverrideKind,
        *,
        who: Identity,
        face: str,
        until: datetime | None = None,
        region: str | None = None,
        reason: str | None = None,
    ) -> Override:
        """Hold ``environment`` (one region, or all) up or down until ``until``; audited.

        Defaults for ``until``: keep-awake 2 h; skip-tonight the next scheduled wake-up after the coming
        shutdown; force-down the next scheduled wake-up.

        Raises:
            RequestRefused: ``who`` is not an operator (or more) there (audited).
            UsageError: unknown environment or region, ``until`` in the past or more than 14 days away.
        """
        kind = OverrideKind(kind)
        units = self._units_for(environment, region)
        self._check_role(who, face, environment, units, f"a {kind.value.replace('_', '-')} override")
        now = self.clock.now()
        if until is None:
            until = max(self._default_until(u, kind, now) for u in units)
        if until.tzinfo is None or until.utcoffset() is None:
            raise UsageError(f"--until {until.isoformat()}: give a zone (e.g. +00:00 or Z)")
        until = until.astimezone(UTC)
        if until <= now:
            raise UsageError(f"until {until:%Y-%m-%d %H:%M} UTC is not in the future (now {now:%H:%M} UTC)")
        if until - now > MAX_OVERRIDE:
            raise UsageError(f"until {until:%Y-%m-%d %H:%M} UTC: an override lasts at most 14 days")
        created = Override(
            id=uuid.uuid4().hex, environment=environment, region=region, kind=kind, until=until,
            created_by=who.person, face=face, created_at=now, reason=reason,
        )
        try:
            with write_transaction(self._engine) as conn:
                conn.execute(insert(schedule_overrides_table).values(
                    id=created.id, environment=environment, region=region, kind=kind.value, until=until,
                    created_by=who.person, face=face, created_at=now, reason=reason,
                ))
                self.audit.append_in(conn, AuditKind.OVERRIDE_SET, actor=who.person, face=face, data={
                    "override": created.id, "environment": environment, "region": region,
                    "kind": kind.value, "until": until.isoformat(), "reason": reason,
                    "principal": who.principal,
                })
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        self._settle_warnings(units, now)
        return created

    def _default_until(self, unit: UnitSchedule, kind: OverrideKind, now: datetime) -> datetime:
        if kind is OverrideKind.KEEP_AWAKE:
            return now + DEFAULT_KEEP_AWAKE
        upcoming = transitions(unit, now, now + HORIZON, schedule_only=True)
        ups = [t.at for t in upcoming if t.state == UP]
        if kind is OverrideKind.SKIP_TONIGHT and unit.up(now):
            downs = [t.at for t in upcoming if t.state == DOWN]
            ups = [u for u in ups if downs and u > downs[0]]
        if not ups:
            raise UsageError(f"{unit.environment} in {unit.region} has no scheduled wake-up in the next "
                             "8 days: give --until")
        return ups[0]

    def end_override(self, override_id: str, *, who: Identity, face: str) -> None:
        """End an override now (``who`` must be an operator there); audited.

        Raises:
            UsageError: no override in force with that id (or a unique prefix of it).
            RequestRefused: ``who`` may not.
        """
        now = self.clock.now()
        matches = [o for o in self.overrides(now) if o.id.startswith(override_id)]
        if len(matches) != 1:
            raise UsageError(f"override {override_id}: " + ("no such override in force" if not matches
                                                            else "ambiguous; give more of the id"))
        found = matches[0]
        units = self._units_for(found.environment, found.region)
        self._check_role(who, face, found.environment, units, "ending an override")
        try:
            with write_transaction(self._engine) as conn:
                moved = conn.execute(
                    update(schedule_overrides_table)
                    .where(schedule_overrides_table.c.id == found.id,
                           schedule_overrides_table.c.ended_at.is_(None))
                    .values(ended_at=now)
                ).rowcount
                if moved:
                    self.audit.append_in(conn, "override_ended", actor=who.person, face=face, data={
                        "override": found.id, "environment": found.environment, "region": found.region,
                        "kind": found.kind.value, "principal": who.principal,
                    })
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    def _expire(self, now: datetime) -> list[str]:
        expired: list[str] = []
        for o in self.overrides():
            if o.until > now:
                continue
            try:
                with write_transaction(self._engine) as conn:
                    moved = conn.execute(
                        update(schedule_overrides_table)
                        .where(schedule_overrides_table.c.id == o.id,
                               schedule_overrides_table.c.ended_at.is_(None))
                        .values(ended_at=o.until)
                    ).rowcount
                    if moved:
                        self.audit.append_in(conn, AuditKind.OVERRIDE_EXPIRED, actor="scheduler", face=FACE,
                                             data={"override": o.id, "environment": o.environment,
                                                   "region": o.region, "kind": o.kind.value,
                                                   "until": o.until.isoformat(), "created_by": o.created_by})
            except SQLAlchemyError as exc:
                raise self._unavailable(exc) from exc
            if moved:
                expired.append(o.id)
        return expired

    # -- leadership ----------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """Take or renew the scheduler's leadership; True if this instance holds it now."""
        now = self.clock.now()
        expires = now + timedelta(seconds=self.lease_s)
        table = leaders_table
        try:
            with write_transaction(self._engine) as conn:
                row = conn.execute(select(table).where(table.c.role == LEADER_ROLE)).mappings().first()
                if row is None:
                    conn.execute(insert(table).values(role=LEADER_ROLE, holder=self.instance_id,
                                                      renewed_at=now, expires_at=expires, term=1.0))
                    won = True
                elif row["holder"] == self.instance_id or (utc(row["expires_at"]) or now) <= now:
                    term = float(row["term"]) + (0.0 if row["holder"] == self.instance_id else 1.0)
                    won = bool(conn.execute(
                        update(table)
                        .where(table.c.role == LEADER_ROLE, table.c.holder == row["holder"],
                               table.c.expires_at == row["expires_at"])
                        .values(holder=self.instance_id, renewed_at=now, expires_at=expires, term=term)
                    ).rowcount)
                else:
                    won = False
        except IntegrityError:
            won = False  # another instance inserted the row at the same instant
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        if won != self._leader:
            log.info("scheduler %s %s leadership", self.instance_id, "took" if won else "lost")
        self._leader = won
        return won

    def _release(self) -> None:
        now = self.clock.now()
        try:
            with write_transaction(self._engine) as conn:
                conn.execute(update(leaders_table)
                             .where(leaders_table.c.role == LEADER_ROLE,
                                    leaders_table.c.holder == self.instance_id)
                             .values(expires_at=now))
        except SQLAlchemyError:
            log.warning("scheduler %s could not release its leadership", self.instance_id)
        self._leader = False

    # -- one pass ------------------------------------------------------------------------------------

    def tick(self) -> TickReport:
        """One pass (see the module docstring); does nothing unless this instance is the leader."""
        now = self.clock.now()
        if not self.is_leader():
            return TickReport(now, leader=False)
        expired = self._expire(now)
        overrides = self.overrides(now)
        filed: list[str] = []
        warnings: list[str] = []
        held: list[str] = []
        errors: list[str] = []
        view: list[FleetView] = []

        def fleet_view() -> FleetView:
            if not view:
                view.append(self.core.refresh())
            return view[0]

        for unit in self.schedules.units:
            memory = self._memory(unit.key)
            before = (memory.applied, dict(memory.data))
            where = f"{unit.environment}/{unit.region}"
            try:
                self._step(unit, now, overrides, memory, fleet_view, filed, warnings, held)
            except OpsError as exc:
                errors.append(f"{where}: {exc.message}")
                memory.data["error"] = {"at": now.isoformat(), "message": exc.message}
            if (memory.applied, memory.data) != before:
                self._remember(unit.key, memory)
        return TickReport(now, True, tuple(filed), tuple(warnings), tuple(expired), tuple(held),
                          tuple(errors))

    def _step(
        self, unit: UnitSchedule, now: datetime, overrides: Sequence[Override], memory: _Memory,
        fleet_view: Callable[[], FleetView], filed: list[str], warnings: list[str], held: list[str],
    ) -> None:
        desired = desired_state(unit, now, overrides)
        data = memory.data
        retry_at = data.get("retry_at")
        waiting = retry_at is not None and datetime.fromisoformat(retry_at) > now
        if desired == UP:
            data.pop("held", None)
            self._settle_warning(unit, now, overrides, memory, warnings)
            if memory.applied != UP and not waiting and not self._frozen(unit, now, memory, held):
                self._apply(unit, UP, now, memory, fleet_view, filed)
            return
        if memory.applied == DOWN:
            data.pop("held", None)
            return
        forced = any(o.kind is OverrideKind.FORCE_DOWN for o in overrides
                     if o.applies(unit.environment, unit.region) and o.in_force(now))
        warned = data.get("warned")
        if warned is None:
            # Down now with no warning out (a restart, a missed lead): warn now, stop after the lead.
            due = now if forced else _ceil_minute(now + unit.lead)
            self._warn(unit, due, memory, warnings)
        else:
            due = datetime.fromisoformat(warned)
            if forced:
                due = min(due, now)
        if now < due or waiting:
            return
        holds = [f"change freeze {f.describe()}" for f in self.schedules.freezes_at(now, unit.environment,
                                                                                 unit.region)]
        if not holds:
            findings = [f for f in fleet_view().findings
                        if f.region == unit.region and f.severity.rank >= Severity.HIGH.rank]
            holds = [f"{f.severity.value} finding open in {unit.region}: {f.title}" for f in findings]
        if holds:
            if data.get("held") != holds:
                held.append(f"{unit.environment}/{unit.region}: " + "; ".join(holds))
            data["held"] = holds
            return
        data.pop("held", None)
        self._apply(unit, DOWN, now, memory, fleet_view, filed)

    def _frozen(self, unit: UnitSchedule, now: datetime, memory: _Memory, held: list[str]) -> bool:
        holds = [f"change freeze {f.describe()}" for f in self.schedules.freezes_at(now, unit.environment,
                                                                                 unit.region)]
        if holds:
            if memory.data.get("held") != holds:
                held.append(f"{unit.environment}/{unit.region}: " + "; ".join(holds))
            memory.data["held"] = holds
        return bool(holds)

    def _next_down(self, unit: UnitSchedule, now: datetime, overrides: Sequence[Override]) -> datetime | None:
        """The shutdown coming within the warning lead, if any (overrides counted)."""
        coming = transitions(unit, now, now + unit.lead, overrides, limit=1)
        return coming[0].at if coming and coming[0].state == DOWN else None

    def _warn(self, unit: UnitSchedule, at: datetime, memory: _Memory, warnings: list[str]) -> None:
        key = notice_key(unit, at)
        lead_s = max(0.0, (at - self.clock.now()).total_seconds())
        self.outbox.raise_notice(key, kind=NOTICE_KIND, subject=unit.environment, data={
            "environment": unit.environment, "region": unit.region, "at": at.isoformat(),
            "lead_s": round(lead_s), "clusters": list(unit.clusters),
        })
        memory.data["warned"] = at.isoformat()
        warnings.append(key)

    def _settle_warning(
        self, unit: UnitSchedule, now: datetime, overrides: Sequence[Override], memory: _Memory,
        warnings: list[str],
    ) -> None:
        """While up: warn once for a shutdown within the lead; resolve a warning an override cancelled."""
        next_down = self._next_down(unit, now, overrides)
        warned = memory.data.get("warned")
        if warned is not None and (next_down is None or warned != next_down.isoformat()):
            self.outbox.resolve(notice_key(unit, datetime.fromisoformat(warned)),
                                data={"environment": unit.environment, "region": unit.region, "at": warned,
                                      "cancelled": True, "clusters": list(unit.clusters)})
            memory.data.pop("warned", None)
        if next_down is not None and memory.data.get("warned") != next_down.isoformat():
            self._warn(unit, next_down, memory, warnings)

    def _settle_warnings(self, units: Iterable[UnitSchedule], now: datetime) -> None:
        """After an override: resolve the warnings it cancelled at once (not at the next tick)."""
        overrides = self.overrides(now)
        for unit in units:
            memory = self._memory(unit.key)
            warned = memory.data.get("warned")
            if warned is None or desired_state(unit, datetime.fromisoformat(warned), overrides) == DOWN:
                continue
            before = dict(memory.data)
            if desired_state(unit, now, overrides) == UP:
                self._settle_warning(unit, now, overrides, memory, [])
            if memory.data != before:
                self._remember(unit.key, memory)

    def _apply(
        self, unit: UnitSchedule, state: str, now: datetime, memory: _Memory,
        fleet_view: Callable[[], FleetView], filed: list[str],
    ) -> None:
        reason = "reconcile" if memory.applied is None else "transition"
        where = f"{unit.environment}/{unit.region}"
        view = fleet_view()
        plan = plan_environment(self.core.fleet, view.snapshot, environment=unit.environment,
                                state="stopped" if state == DOWN else "started", region=unit.region)
        audit = {"environment": unit.environment, "region": unit.region, "state": state, "reason": reason,
                 "clusters": list(unit.clusters)}
        try:
            submission = self.core.pipeline.submit(plan, SCHEDULER_IDENTITY, face=FACE,
                                                   snapshot=view.snapshot)
        except RequestRefused as exc:
            memory.data["retry_at"] = (now + RETRY_AFTER).isoformat()
            memory.data["error"] = {"at": now.isoformat(), "message": exc.message}
            self.audit.append(AuditKind.SCHEDULE_ACTION, actor="scheduler", face=FACE,
                              data={**audit, "outcome": "refused", "message": exc.message})
            raise
        job = submission.job
        status = job.status if job is not None else None
        self.audit.append(AuditKind.SCHEDULE_ACTION, actor="scheduler", face=FACE,
                          request_id=submission.request.id, job_id=job.id if job else None,
                          data={**audit, "outcome": status.value if status else "filed"})
        if status is JobStatus.SUCCEEDED:
            memory.applied = state
            for key in ("warned", "retry_at", "error", "held"):
                memory.data.pop(key, None)
            memory.data["applied_at"] = now.isoformat()
            filed.append(f"{where}: {'stop' if state == DOWN else 'start'} ({submission.request.short_id})")
            return
        memory.data["retry_at"] = (now + RETRY_AFTER).isoformat()
        raise OpsError(f"{where}: {plan.action.value} did not succeed "
                       f"({status.value if status else 'not run'}); next try in 10 min",
                       title="scheduled action failed")

    # -- the background thread -----------------------------------------------------------------------

    def start(self) -> None:
        """Tick every ``tick_s`` in a daemon thread, renewing the leadership every third of the lease."""
        if self._threads:
            return
        self._stop.clear()

        def renew() -> None:
            while not self._stop.wait(self.lease_s / 3):
                try:
                    self.is_leader()
                except OpsError as exc:
                    log.warning("scheduler leadership: %s", exc)

        def run() -> None:
            while not self._stop.is_set():
                try:
                    report = self.tick()
                    for line in (*report.filed, *report.held, *report.errors):
                        log.info("scheduler: %s", line)
                except OpsError as exc:
                    log.warning("scheduler tick: %s", exc)
                except Exception:  # a bug must not kill the thread that wakes staging up
                    log.exception("scheduler tick failed")
                self._stop.wait(self.tick_s)

        for name, target in (("renew", renew), ("tick", run)):
            thread = threading.Thread(target=target, name=f"opsconsole-scheduler-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the thread (after the pass in progress) and hand the leadership back."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=max(self.tick_s, 5.0))
        self._threads.clear()
        self._release()


def _override(row: Mapping[str, Any]) -> Override:
    until, created = utc(row["until"]), utc(row["created_at"])
    assert until is not None and created is not None
    return Override(
        id=row["id"], environment=row["environment"], region=row["region"], kind=OverrideKind(row["kind"]),
        until=until, created_by=row["created_by"], face=row["face"], created_at=created, reason=row["reason"],
    )
