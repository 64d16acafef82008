"""The scheduler on the sandbox, for real: staging in eu-west-1 goes down at night in Dublin's local time
and comes back in the morning at its old sizes, through the real ``env_schedule.yml`` against the local
cloud; a keep-awake holds it up until it expires.

The clock is a fake one driving both the world and the scheduler (so "tonight" takes seconds), and the
scheduler is limited to the one (environment, region) of the seed's schedules.yml under test, to keep the
playbook runs to two.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsconsole.core.audit.records import AuditKind
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import WorkloadState
from opsconsole.core.schedule.engine import OverrideKind, Scheduler, load_schedules
from opsconsole.testing import FakeClock
from opsconsole.wiring import sandbox_core

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
#: Wednesday 25 November 2026, 19:00 in Dublin (UTC+0): staging is up, its 20:00 shutdown an hour away.
EVENING = datetime(2026, 11, 25, 19, 0, tzinfo=UTC)
CLUSTER = "gke-euw1-staging"


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[OpsCore, FakeClock, Scheduler]]:
    monkeypatch.setenv("OPSCONSOLE_HOME", str(tmp_path / "home"))
    clock = FakeClock(EVENING)
    fleet = load_inventory(REPO / "inventory")
    schedules = load_schedules(fleet.source, fleet)
    one = dataclasses.replace(schedules, units=tuple(schedules.of("staging", "eu-west-1")))
    assert [u.clusters for u in one.units] == [(CLUSTER,)]
    with sandbox_core(clock=clock, reader="cloud") as core:
        yield core, clock, Scheduler(core, clock=clock, instance_id="e2e", schedules=one)


def _staging(core: OpsCore) -> dict[str, int]:
    """Staging's desired replicas, from the first refresh in which every source answered (on a loaded
    machine the first refresh of a fresh local cloud can miss a source's 5 s deadline; the next one
    takes that late answer in)."""
    deadline = time.monotonic() + 60
    snapshot = core.refresh().snapshot
    while snapshot.partial and time.monotonic() < deadline:
        snapshot = core.refresh().snapshot
    return {w.service: w.desired for w in snapshot.of_type(WorkloadState) if w.cluster == CLUSTER}


def test_staging_sleeps_at_night_and_wakes_at_its_old_sizes(
    rig: tuple[OpsCore, FakeClock, Scheduler],
) -> None:
    core, clock, scheduler = rig
    before = _staging(core)
    assert before and all(n > 0 for n in before.values())

    # The first pass reconciles to what the schedule says now (up: a start that changes nothing).
    assert [f.split(":")[1].split()[0] for f in scheduler.tick().filed] == ["start"]
    assert _staging(core) == before

    # A keep-awake until 21:00 holds tonight's shutdown.
    alice = core.directory.cast_member("alice")
    scheduler.override("staging", OverrideKind.KEEP_AWAKE, who=alice, face="tui",
                       until=EVENING + timedelta(hours=2), region="eu-west-1")
    clock.set(EVENING + timedelta(hours=1, minutes=5))  # 20:05: scheduled down, held up
    report = scheduler.tick()
    assert not report.filed
    assert _staging(core) == before
    [status] = scheduler.status()
    assert (status.scheduled, status.desired) == ("down", "up")

    # It expires by itself; the shutdown then comes after a fresh warning lead.
    clock.set(EVENING + timedelta(hours=2, minutes=1))
    scheduler.tick()
    kinds = [e.kind for e in core.pipeline.audit.entries()]
    assert AuditKind.OVERRIDE_EXPIRED in kinds
    assert set(_staging(core).values()) != {0}, "stopped without the warning lead"
    clock.advance(31 * 60)
    stop = scheduler.tick()
    jobs = [(j.action, j.status.value, j.error) for j in core.jobs.list(limit=5)]
    assert set(_staging(core).values()) == {0}, (stop, jobs)

    # Thursday 07:01 in Dublin: back, at the sizes it had.
    clock.set(datetime(2026, 11, 26, 7, 1, tzinfo=UTC))
    scheduler.tick()
    assert _staging(core) == before
    actions = [e for e in core.pipeline.audit.entries(kinds=[AuditKind.SCHEDULE_ACTION])]
    assert [(e.data["state"], e.data["outcome"]) for e in actions][-2:] == [("down", "succeeded"),
                                                                            ("up", "succeeded")]
