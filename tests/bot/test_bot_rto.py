"""The RTO clock on a failover request's message (issue 14, "DR drills"): while the run goes on the
message in the approvals channel shows ``RTO m:ss / 15:00 (critical tier)`` from the same computation as
the CLI and the console (``opsconsole/core/change/rto.py``), and at the end the verdict the pipeline
recorded on the job. Pure rendering on the sandbox inventory, plus the runtime's follower marking a
running failover's message dirty so the clock ticks."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from test_blocks import T0, request

from bot import blocks
from bot.blocks import RunProgress
from bot.rtoclock import rto_line, ticking
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.rto import RtoVerdict, rto_target
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import Fleet
from opsconsole.core.runs.records import Job, JobStatus

INVENTORY = Path(__file__).resolve().parents[2] / "inventory"
PARAMS = {"from_region": "eu-west-1", "to_region": "eu-central-1"}


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_inventory(INVENTORY)


def job(status: JobStatus = JobStatus.RUNNING, *, started: bool = True, **extra: object) -> Job:
    values: dict[str, object] = dict(
        id="feedfacefeedfacefeedface", action="failover", params=PARAMS, playbook="failover.yml",
        check_mode=False, status=status, actor="alice", face="slack", created_at=T0,
        started_at=T0 if started else None,
    )
    values.update(extra)
    return Job(**values)  # type: ignore[arg-type]


def test_the_running_clock_is_the_shared_computation(fleet: Fleet) -> None:
    target = rto_target(fleet, "failover", PARAMS)
    assert target is not None and target.tier == "critical" and target.target_s == 900.0
    running = request(RequestStatus.RUNNING, job_id="feedfacefeedfacefeedface")
    assert ticking(running)
    line = rto_line(fleet, running, job(), T0 + timedelta(seconds=151))
    assert line == ":stopwatch: RTO 2:31 / 15:00 (critical tier)"
    assert rto_line(fleet, running, job(started=False), T0) == (
        ":stopwatch: RTO clock starts with the run (target 15:00, critical tier)")
    # not a move, a preview, or no job yet: no line
    assert rto_line(fleet, request(RequestStatus.RUNNING, action="scale"), job(), T0) is None
    assert rto_line(fleet, running, job(check_mode=True), T0) is None
    assert rto_line(fleet, running, None, T0) is None
    assert not ticking(request(RequestStatus.SUCCEEDED))


def verdict_job(rto_s: float, *, completed: bool = True) -> Job:
    verdict = RtoVerdict(action="failover", region="eu-west-1", tier="critical", target_s=900.0, rto_s=rto_s,
                         verdict="met" if completed and rto_s <= 900 else "missed", margin_s=900.0 - rto_s,
                         completed=completed, end_step="verify" if completed else None)
    status = JobStatus.SUCCEEDED if completed else JobStatus.FAILED
    return job(status, finished_at=T0 + timedelta(seconds=rto_s), stats={"rto": verdict.document()})


def test_the_verdict_replaces_the_clock_at_the_end(fleet: Fleet) -> None:
    done = request(RequestStatus.SUCCEEDED, job_id="feedfacefeedfacefeedface")
    later = T0 + timedelta(hours=1)  # the clock no longer moves: the recorded verdict is what shows
    assert rto_line(fleet, done, verdict_job(28.0), later) == (
        ":stopwatch: *RTO met, 14:32 to spare* — RTO 0:28 / 15:00 (critical tier)")
    assert rto_line(fleet, done, verdict_job(965.0), later) == (
        ":stopwatch: *RTO missed by 1:05* — RTO 16:05 / 15:00 (critical tier)")
    failed = rto_line(fleet, done, verdict_job(40.0, completed=False), later)
    assert failed is not None and "missed: the failover did not complete" in failed


def test_the_request_message_carries_the_line_under_its_state(fleet: Fleet) -> None:
    running = request(RequestStatus.RUNNING, job_id="feedfacefeedfacefeedface")
    line = rto_line(fleet, running, job(), T0 + timedelta(seconds=151))
    progress = RunProgress(job_id="feedfacefeedfacefeedface", current_task="move DNS", ok=3)
    with_clock = blocks.request_message(running, may_approve=[], progress=progress, rto=line)
    without = blocks.request_message(running, may_approve=[], progress=progress)
    texts = [json.dumps(b) for b in with_clock["blocks"]]
    at = next(i for i, t in enumerate(texts) if "RTO 2:31 / 15:00 (critical tier)" in t)
    assert "move DNS" in texts[at - 1]  # right under the run's state line
    assert with_clock["blocks"][:at] + with_clock["blocks"][at + 1:] == without["blocks"]
