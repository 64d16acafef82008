"""PostgreSQL stopped mid-run: the run goes on, the truth is written when the store returns.

Issue 17 item 5 (the run side). A real playbook changes one thing, waits while the test stops its
PostgreSQL, then changes two more. Nothing of the run is lost: its events are kept in memory and written
when the store returns, in order and without gaps; the job is recorded as what happened ("succeeded",
changed 3), not "interrupted — outcome unknown"; through the pipeline, the request ends ``succeeded`` and
the audit gets its ``run_finished`` entry (with the changed count and the job) once the store is back.
The log says each problem in one line — no traceback anywhere.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsconsole.core.audit.records import AuditKind
from opsconsole.core.change.actions import ActionPlan, plan_scale
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.pipeline import Executor, Pipeline
from opsconsole.core.change.rbac import Directory
from opsconsole.core.change.risk import load_policy
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.runs.events import EventBus, EventKind, JobEvent
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.records import Job, JobStatus
from opsconsole.core.runs.runner import Runner
from opsconsole.core.store.db import Database
from opsconsole.testing import healthy_records, snapshot_of
from opsconsole.testing.postgres import ThrowawayPostgres

from .conftest import INVENTORY, PLAYBOOKS, REPO, eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def server() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL of this module's own: these tests stop and start it."""
    with ThrowawayPostgres() as pg:
        yield pg


class Gate:
    """Holds the playbook in its wait until the test has stopped the store."""

    def __init__(self, tmp_path: Path, bus: EventBus) -> None:
        self.path = tmp_path / "gate"
        self.waiting = threading.Event()
        bus.subscribe(self._seen, kinds={EventKind.TASK_START})

    def _seen(self, event: JobEvent) -> None:
        if event.task == "Wait for the outage":
            self.waiting.set()

    def open(self) -> None:
        self.path.write_text("go")


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    with_trace = [r for r in caplog.records if r.exc_info or r.exc_text or "Traceback" in r.getMessage()]
    assert not with_trace, [r.getMessage() for r in with_trace]
    for record in caplog.records:
        assert "\n" not in record.getMessage(), record.getMessage()


def _check_record(store: JobStore, job_id: str) -> Job:
    job = store.get(job_id)
    assert job is not None
    assert job.status is JobStatus.SUCCEEDED, job
    assert job.stats["totals"]["changed"] == 3
    events = store.events(job_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "events lost or duplicated"
    assert sum(1 for e in events if e.kind is EventKind.CHANGED) == 3
    assert events[-1].kind is EventKind.JOB_STATUS and events[-1].data["status"] == "succeeded"
    return job


def test_a_run_outlives_a_store_outage_and_records_the_truth_when_it_returns(
    server: ThrowawayPostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url = server.create_database("runner_outage")
    store = JobStore(url)
    bus = EventBus()
    gate = Gate(tmp_path, bus)
    runner = Runner(store, bus, project_dir=PLAYBOOKS, inventory=INVENTORY, home=tmp_path / "home",
                    heartbeat_s=0.5)
    try:
        job = runner.start("outage", str(PLAYBOOKS / "outage.yml"), {"gate": str(gate.path)}, actor="a",
                           face="cli")
        assert gate.waiting.wait(60)
        server.halt()
        try:
            gate.open()
            # The run ends while the store is away: its owner knows what happened.
            ended = runner.wait(job.id, timeout=90)
            assert ended.status is JobStatus.SUCCEEDED
            assert ended.stats["totals"]["changed"] == 3
        finally:
            server.resume()
        eventually(lambda: store.get(job.id).status is JobStatus.SUCCEEDED,  # type: ignore[union-attr]
                   within_s=60, what="the outcome written once the store is back")
        _check_record(store, job.id)
    finally:
        runner.close()
        store.close()
    _no_tracebacks(caplog)
    # What the runner and the store said (caplog hears every thread of this worker, and an earlier
    # test's sources may still be winding down).
    told = [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith("opsconsole.core.")]
    assert any("unreachable" in m for m in told), told
    assert len(told) <= 8, told  # one line per problem, not one per event


def test_through_the_pipeline_the_request_and_its_audit_get_the_result_when_the_store_returns(
    server: ThrowawayPostgres, tmp_path: Path, inventory_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url = server.create_database("pipeline_outage")
    database = Database(url)
    jobs = JobStore(database)
    bus = EventBus()
    gate = Gate(tmp_path, bus)
    runner = Runner(jobs, bus, project_dir=PLAYBOOKS, inventory=INVENTORY, home=tmp_path / "home",
                    heartbeat_s=0.5)
    fleet = load_inventory(inventory_copy)
    snapshot = snapshot_of(healthy_records(fleet))

    def start(plan: ActionPlan, check: bool, actor: str, face: str) -> Job:
        return runner.start(plan.action.value, str(PLAYBOOKS / "outage.yml"), {"gate": str(gate.path)},
                            check=check, actor=actor, face=face)

    pipeline = Pipeline(
        fleet=fleet, database=database, directory=Directory.load(inventory_copy, sandbox=True, fleet=fleet),
        policy=load_policy(inventory_copy, fleet), snapshot=lambda: snapshot,
        executor=Executor(start=start, wait=runner.wait, cancel=runner.cancel, get=jobs.get),
        playbook_dir=REPO / "playbooks", lease_ttl_s=60,
    )
    try:
        plan = plan_scale(fleet, snapshot, service="checkout", region="eu-west-1", replicas=3)
        filed = pipeline.submit(plan, pipeline.directory.cast_member("alice"), face="cli").request
        if filed.status is RequestStatus.REQUESTED:
            pipeline.approve(filed.id, pipeline.directory.cast_member("bob"), face="cli")
        job = pipeline.execute(filed.id, pipeline.directory.cast_member("alice"), face="cli", wait=False)
        assert gate.waiting.wait(60)
        server.halt()
        try:
            gate.open()
            assert runner.wait(job.id, timeout=90).status is JobStatus.SUCCEEDED
        finally:
            server.resume()
        pipeline.join(90)
        request = pipeline.requests.get(filed.id)
        assert request.status is RequestStatus.SUCCEEDED
        entries = pipeline.audit.entries(request_id=filed.id)
        finished = [e for e in entries if e.kind == AuditKind.RUN_FINISHED]
        assert len(finished) == 1
        assert finished[0].data["changed"] == 3 and finished[0].data["job_id"] == job.id
        started = [e for e in entries if e.kind == AuditKind.RUN_STARTED]
        assert len(started) == 1, "one run_started entry per run"
        eventually(lambda: jobs.get(job.id).status is JobStatus.SUCCEEDED,  # type: ignore[union-attr]
                   within_s=60, what="the job's record")
        _check_record(jobs, job.id)
    finally:
        pipeline.close()
        runner.close()
        database.close()
    _no_tracebacks(caplog)
