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

Where things are: :mod:`~opsconsole.core.schedule.config` reads ``schedules.yml`` into
:class:`Schedules`; :mod:`~opsconsole.core.schedule.calendar` is the pure part (desired state,
transitions, timelines; instants are arguments); :mod:`~opsconsole.core.schedule.records` holds the
records the faces show. This module is the :class:`Scheduler`, which does the I/O around them; it
re-exports the names of the other three, so ``from opsconsole.core.schedule.engine import ...`` works
for all of them.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from opsconsole.core.audit.log import AuditLog
from opsconsole.core.audit.records import AuditKind
from opsconsole.core.change.actions import plan_environment
from opsconsole.core.change.gate import Act, Forbidden, refusal
from opsconsole.core.change.rbac import Grant, Identity, Role, Scope
from opsconsole.core.change.requests import RequestRefused
from opsconsole.core.clock import Clock, utc
from opsconsole.core.errors import OpsError, UsageError
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.model import Severity
from opsconsole.core.fleet.view import FleetView
from opsconsole.core.runs.records import JobStatus

# The calendar, the config and the records are re-exported: ``from opsconsole.core.schedule.engine
# import ...`` keeps working for every name that lived here before the split.
from opsconsole.core.schedule.calendar import (
    UnitSchedule,
    ceil_minute,
    desired_state,
    notice_key,
    timeline,
    transitions,
)
from opsconsole.core.schedule.config import DEFAULT_LEAD, SCHEDULES_FILE, Schedules, load_schedules
from opsconsole.core.schedule.records import (
    DOWN,
    UP,
    EnvironmentStatus,
    Override,
    OverrideKind,
    TickReport,
    Transition,
)
from opsconsole.core.schedule.timespec import ScheduleSpecError, evaluate
from opsconsole.core.store.db import (
    StoreUnavailable,
    leaders_table,
    schedule_overrides_table,
    schedule_state_table,
    write_transaction,
)
from opsconsole.core.store.dbtime import StoreTime, store_time_for
from opsconsole.core.store.outbox import Outbox

__all__ = [
    "DEFAULT_KEEP_AWAKE",
    "DEFAULT_LEAD",
    "DOWN",
    "NOTICE_KIND",
    "SCHEDULER_IDENTITY",
    "SCHEDULES_FILE",
    "UP",
    "EnvironmentStatus",
    "Override",
    "OverrideKind",
    "ScheduleSpecError",
    "Scheduler",
    "Schedules",
    "TickReport",
    "Transition",
    "UnitSchedule",
    "desired_state",
    "evaluate",
    "load_schedules",
    "notice_key",
    "timeline",
    "transitions",
]

log = logging.getLogger(__name__)

FACE = "scheduler"
LEADER_ROLE = "scheduler"
NOTICE_KIND = "shutdown_warning"
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


#: How many schedule units one pass works on at once (each may wait for its run).
DEFAULT_PARALLEL_UNITS = 4


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
        max_parallel: how many schedule units a pass works on at once (a slow stop holds only its own).
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
        max_parallel: int = DEFAULT_PARALLEL_UNITS,
    ) -> None:
        self.core = core
        self.clock: Clock = clock or core.clock
        #: Leadership is taken and judged in the store's time (see :func:`store_time_for`).
        self.store_time: StoreTime = store_time_for(self.clock)
        self.instance_id = instance_id or f"scheduler-{uuid.uuid4().hex[:12]}"
        self.tick_s = tick_s
        self.lease_s = lease_s
        #: How many units a pass works on at once (their runs included).
        self.max_parallel = max(1, max_parallel)
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
        """Take or renew the scheduler's leadership; True if this instance holds it now.

        Judged in the store's time (:mod:`opsconsole.core.store.dbtime`): a replica whose clock is off
        neither takes a live leadership nor keeps an expired one.
        """
        table = leaders_table
        try:
            with write_transaction(self._engine) as conn:
                now = self.store_time.now(conn)
                expires = now + timedelta(seconds=self.lease_s)
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
        try:
            with write_transaction(self._engine) as conn:
                now = self.store_time.now(conn)
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
        view_lock = threading.Lock()

        def fleet_view() -> FleetView:
            with view_lock:  # one refresh per pass, whichever unit asks first
                if not view:
                    view.append(self.core.refresh())
                return view[0]

        def one(unit: UnitSchedule) -> None:
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

        # The units are independent (each its own environment / region and its own memory): they go at
        # once, at most max_parallel together, so one slow stop does not hold the others.
        units = list(self.schedules.units)
        if self.max_parallel <= 1 or len(units) <= 1:
            for unit in units:
                one(unit)
        else:
            with ThreadPoolExecutor(max_workers=min(self.max_parallel, len(units)),
                                    thread_name_prefix="opsconsole-schedule") as pool:
                for done in [pool.submit(one, unit) for unit in units]:
                    done.result()
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
            due = now if forced else ceil_minute(now + unit.lead)
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
