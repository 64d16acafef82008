"""The scheduling engine on a fake clock, on SQLite and on a throwaway PostgreSQL.

Real parts throughout: an :class:`OpsCore` whose pipeline files, leases, audits and runs requests with a
real ``ansible-playbook``; the outbox, the overrides and the leader election in the database. The one
stand-in is the playbook: the project directory's ``playbooks/env_schedule.yml`` is
``tests/integration/playbooks/one_task.yml`` (the real one needs the local cloud), and one schedule —
staging in eu-west-1, Mon-Fri 07:00-20:00 Europe/Dublin, 30-minute warning — keeps each test to a few runs.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from opsconsole.core.audit.records import AuditKind
from opsconsole.core.change.requests import RequestRefused
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.engine import SourceReading
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import Fleet, RegionTraffic
from opsconsole.core.runs.events import EventBus
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.runner import Runner
from opsconsole.core.schedule.engine import (
    DEFAULT_LEAD,
    NOTICE_KIND,
    OverrideKind,
    Scheduler,
    Schedules,
    UnitSchedule,
)
from opsconsole.core.schedule.timespec import parse_spec
from opsconsole.core.store.db import Database
from opsconsole.core.store.outbox import Outbox
from opsconsole.testing import FakeClock, healthy_records

REPO = Path(__file__).resolve().parents[2]
TEST_PLAYBOOKS = REPO / "tests" / "integration" / "playbooks"
#: Wednesday 25 November 2026, 12:00 UTC = 12:00 in Dublin: staging is scheduled up.
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SHUTDOWN = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)

pytestmark = pytest.mark.timeout(120)


class FleetStub:
    """A fleet source answering a healthy fleet, stamped now; ``p95_ms`` puts a region over target."""

    name = "test"

    def __init__(self, fleet: Fleet, clock: FakeClock) -> None:
        self.fleet = fleet
        self.clock = clock
        self.p95_ms: dict[str, float] = {}

    def read(self) -> SourceReading:
        records = healthy_records(self.fleet, at=self.clock.now(), source=self.name)
        records = [
            dataclasses.replace(r, p95_ms=self.p95_ms[r.region])
            if isinstance(r, RegionTraffic) and r.region in self.p95_ms else r
            for r in records
        ]
        return SourceReading(tuple(records))


@dataclass
class Rig:
    core: OpsCore
    clock: FakeClock
    source: FleetStub
    schedules: Schedules
    database: Database
    jobs: JobStore

    def scheduler(self, name: str, *, lease_s: float = 20.0) -> Scheduler:
        return Scheduler(self.core, clock=self.clock, instance_id=name, lease_s=lease_s,
                         schedules=self.schedules)

    def actions(self) -> list[str]:
        entries = self.core.pipeline.audit.entries(kinds=[AuditKind.SCHEDULE_ACTION])
        return [f"{e.data['state']}:{e.data['outcome']}" for e in entries]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.core.pipeline.audit.entries()]

    def at(self, when: datetime) -> None:
        self.clock.set(when)


@pytest.fixture
def rig(db_url: str, tmp_path: Path, inventory_copy: Path) -> Iterator[Rig]:
    project = tmp_path / "project"
    (project / "playbooks").mkdir(parents=True)
    shutil.copy(TEST_PLAYBOOKS / "one_task.yml", project / "playbooks" / "env_schedule.yml")
    fleet = load_inventory(inventory_copy)
    clock = FakeClock(T0)
    database = Database(db_url)
    jobs = JobStore(database, clock=clock)
    runner = Runner(jobs, EventBus(), project_dir=project, inventory=TEST_PLAYBOOKS / "inventory",
                    home=tmp_path / "runs", clock=clock)
    source = FleetStub(fleet, clock)
    core = OpsCore(fleet, [source], clock=clock, runner=runner, database=database, sandbox=True,
                   playbook_dir=project / "playbooks")
    unit = UnitSchedule(
        environment="staging", region="eu-west-1", timezone="Europe/Dublin",
        uptime=parse_spec("Mon-Fri 07:00-20:00", tz="Europe/Dublin"), downtime=None, periods=None,
        holiday_countries=(), lead=DEFAULT_LEAD, clusters=("gke-euw1-staging",),
    )
    schedules = Schedules((unit,), (), inventory_copy / "schedules.yml")
    built = Rig(core, clock, source, schedules, database, jobs)
    yield built
    core.close()
    jobs.close()
    database.close()


def test_a_transition_files_exactly_one_action_and_the_warning_goes_out_once(rig: Rig) -> None:
    scheduler = rig.scheduler("a")
    first = scheduler.tick()
    assert first.leader and len(first.filed) == 1  # reconcile: staging is scheduled up now
    assert rig.actions() == ["up:succeeded"]

    rig.at(SHUTDOWN - timedelta(minutes=31))
    assert scheduler.tick().warnings == ()
    rig.at(SHUTDOWN - DEFAULT_LEAD)
    warned = scheduler.tick()
    assert warned.warnings == ("shutdown:staging:eu-west-1:20261125T2000Z",)
    notice = Outbox(rig.database, clock=rig.clock).get(warned.warnings[0])
    assert notice is not None and notice.kind == NOTICE_KIND and notice.subject == "staging"
    assert notice.data["at"] == SHUTDOWN.isoformat() and notice.data["clusters"] == ["gke-euw1-staging"]
    assert notice.data["lead_s"] == 1800
    (status,) = scheduler.status()
    assert status.warning_at == SHUTDOWN - DEFAULT_LEAD and status.desired == "up"

    rig.at(SHUTDOWN - timedelta(minutes=10))
    assert scheduler.tick().warnings == ()
    assert rig.actions() == ["up:succeeded"]  # nothing before the transition
    rig.at(SHUTDOWN)
    assert len(scheduler.tick().filed) == 1
    rig.at(SHUTDOWN + timedelta(minutes=1))
    assert scheduler.tick().filed == ()
    assert rig.actions() == ["up:succeeded", "down:succeeded"]
    requests = rig.core.pipeline.requests.list(limit=10)
    assert sorted(r.action for r in requests) == ["env_start", "env_stop"]
    assert {r.requester for r in requests} == {"scheduler"} and {r.face for r in requests} == {"scheduler"}
    (status,) = scheduler.status()
    assert status.applied == "down" and status.next_transitions[0].state == "up"


def test_an_override_cancels_the_warning_and_expires_by_itself(rig: Rig) -> None:
    scheduler = rig.scheduler("a")
    scheduler.tick()
    rig.at(SHUTDOWN - DEFAULT_LEAD)
    key = scheduler.tick().warnings[0]
    alice = rig.core.directory.cast_member("alice")
    override = scheduler.override("staging", OverrideKind.KEEP_AWAKE, who=alice, face="slack",
                                  until=SHUTDOWN + timedelta(hours=1))
    notice = Outbox(rig.database, clock=rig.clock).get(key)
    assert notice is not None and notice.resolved_at is not None  # the shutdown was cancelled
    rig.at(SHUTDOWN)
    assert scheduler.tick().filed == ()
    (status,) = scheduler.status()
    assert status.desired == "up" and status.scheduled == "down" and status.overrides == (override,)

    rig.at(SHUTDOWN + timedelta(hours=1))
    report = scheduler.tick()
    assert report.expired == (override.id,)
    assert report.filed == ()  # down now, but the warning lead runs first
    assert report.warnings == ("shutdown:staging:eu-west-1:20261125T2130Z",)
    rig.at(SHUTDOWN + timedelta(hours=1, minutes=30))
    assert len(scheduler.tick().filed) == 1
    assert rig.actions() == ["up:succeeded", "down:succeeded"]
    kinds = rig.kinds()
    assert kinds.count(AuditKind.OVERRIDE_SET) == 1 and kinds.count(AuditKind.OVERRIDE_EXPIRED) == 1
    expired = rig.core.pipeline.audit.entries(kinds=[AuditKind.OVERRIDE_EXPIRED])[0]
    assert expired.actor == "scheduler" and expired.data["created_by"] == "alice"


def test_overrides_need_an_operator_and_skip_tonight_ends_at_the_next_wake_up(rig: Rig) -> None:
    scheduler = rig.scheduler("a")
    victor = rig.core.directory.cast_member("victor")
    with pytest.raises(RequestRefused, match="victor is a viewer"):
        scheduler.override("staging", OverrideKind.FORCE_DOWN, who=victor, face="tui")
    assert AuditKind.REQUEST_REFUSED in rig.kinds()
    alice = rig.core.directory.cast_member("alice")
    skip = scheduler.override("staging", OverrideKind.SKIP_TONIGHT, who=alice, face="tui")
    assert skip.until == datetime(2026, 11, 26, 7, 0, tzinfo=UTC)  # Thursday 07:00 in Dublin
    scheduler.end_override(skip.id[:8], who=alice, face="tui")
    assert scheduler.overrides(rig.clock.now()) == []


def test_a_restart_reconciles_to_the_desired_state_without_replaying(rig: Rig) -> None:
    first = rig.scheduler("first")
    first.tick()
    first.stop()  # hands the leadership back
    # Back on Saturday morning: two nights and a day were missed; only the current state is applied.
    rig.at(datetime(2026, 11, 28, 10, 0, tzinfo=UTC))
    second = rig.scheduler("second")
    report = second.tick()
    assert report.leader and report.filed == () and len(report.warnings) == 1  # warned first
    rig.at(datetime(2026, 11, 28, 10, 30, tzinfo=UTC))
    assert len(second.tick().filed) == 1
    rig.at(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    assert second.tick().filed == ()
    assert rig.actions() == ["up:succeeded", "down:succeeded"]


def test_two_instances_one_acts_and_the_other_takes_over(rig: Rig) -> None:
    a = rig.scheduler("a", lease_s=5)
    b = rig.scheduler("b", lease_s=5)
    assert a.tick().leader
    assert not b.tick().leader and not b.is_leader()
    rig.clock.advance(3)
    assert a.is_leader()  # renewed
    rig.clock.advance(3)
    assert not b.is_leader()  # a's renewal still holds
    rig.clock.advance(6)  # a stops renewing (it died)
    assert b.is_leader()
    assert not a.is_leader() and not a.tick().leader
    rig.at(SHUTDOWN - DEFAULT_LEAD)
    b.tick()
    rig.at(SHUTDOWN)
    assert len(b.tick().filed) == 1
    assert rig.actions() == ["up:succeeded", "down:succeeded"]  # one start (a), one stop (b)


def test_a_high_finding_in_the_region_holds_the_shutdown(rig: Rig) -> None:
    scheduler = rig.scheduler("a")
    scheduler.tick()
    rig.source.p95_ms["eu-west-1"] = 250.0  # over the 200 ms target: a high finding in eu-west-1
    rig.at(SHUTDOWN - DEFAULT_LEAD)
    scheduler.tick()
    rig.at(SHUTDOWN)
    report = scheduler.tick()
    assert report.filed == () and len(report.held) == 1 and "eu-west-1" in report.held[0]
    (status,) = scheduler.status()
    assert status.desired == "down" and status.applied == "up" and any("finding" in h for h in status.holds)
    rig.source.p95_ms.clear()
    rig.clock.advance(60)
    assert len(scheduler.tick().filed) == 1
    assert rig.actions() == ["up:succeeded", "down:succeeded"]


def test_units_go_at_once_within_the_bound(rig: Rig) -> None:
    """Independent units (two environments) are worked on at once, so one slow stop does not hold the other:
    each one's filing waits at a barrier only the other can lift. With a bound of one they would queue."""
    other = dataclasses.replace(rig.schedules.units[0], environment="dev", region="us-east-1",
                                clusters=("eks-use1-dev",))
    schedules = Schedules((rig.schedules.units[0], other), (), rig.schedules.source)
    pipeline = rig.core.pipeline
    original = pipeline.submit
    both_in = threading.Barrier(2, timeout=30)

    def slow_submit(*args: Any, **kwargs: Any) -> Any:
        both_in.wait()  # returns only once the other unit is filing too
        return original(*args, **kwargs)

    pipeline.submit = slow_submit  # type: ignore[method-assign]
    scheduler = Scheduler(rig.core, clock=rig.clock, instance_id="a", schedules=schedules, max_parallel=2)
    report = scheduler.tick()
    assert report.errors == () and len(report.filed) == 2
    assert sorted(rig.actions()) == ["up:succeeded", "up:succeeded"]

    # The bound holds: one at a time, the barrier is never lifted (two other, not yet applied units).
    fresh = Schedules((dataclasses.replace(rig.schedules.units[0], region="us-east-1",
                                           clusters=("eks-use1-staging",)),
                       dataclasses.replace(other, region="eu-west-1", clusters=("gke-euw1-dev",))),
                      (), rig.schedules.source)
    one_at_a_time = threading.Barrier(2, timeout=1)

    def lonely_submit(*args: Any, **kwargs: Any) -> Any:
        one_at_a_time.wait()
        return original(*args, **kwargs)

    pipeline.submit = lonely_submit  # type: ignore[method-assign]
    serial = Scheduler(rig.core, clock=rig.clock, instance_id="a", schedules=fresh, max_parallel=1)
    with pytest.raises(threading.BrokenBarrierError):
        serial.tick()
