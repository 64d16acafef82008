"""The core's authority rules on a real store (SQLite): one gate decides, at the moment of each change, and
a run counts only approvals the audit log backs — a status or a vote written into the database by hand
runs nothing, is audited as a discrepancy and is named by the store's verification.

Real parts: the pipeline, its request store, leases and keyed audit log on SQLite. The stand-in is the
executor: it records what would start (no playbook runs) and keeps its jobs in a real JobStore.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from opsconsole.core.audit.log import verify_store
from opsconsole.core.audit.records import AuditKind
from opsconsole.core.change.actions import ActionPlan, plan_failover
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.gate import Forbidden
from opsconsole.core.change.pipeline import ApprovalDiscrepancy, Executor, Pipeline
from opsconsole.core.change.rbac import Directory, Grant, Role
from opsconsole.core.change.requests import NewRequest, RequestRefused
from opsconsole.core.change.risk import load_policy
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import Fleet
from opsconsole.core.paths import world_home
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.records import Job, JobStatus
from opsconsole.core.store.db import Database, requests_table, votes_table
from opsconsole.testing import FakeClock, healthy_records, snapshot_of

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
KEY = bytes(range(32))

pytestmark = pytest.mark.timeout(60)


@dataclass
class FakeRuns:
    """An executor that starts nothing: it records starts and keeps its jobs in a real JobStore."""

    jobs: JobStore
    started: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    def start(self, plan: ActionPlan, check: bool, actor: str, face: str) -> Job:
        job = self.jobs.create_job(action=plan.action.value, params=dict(plan.extravars),
                                   playbook=plan.playbook, check_mode=check, actor=actor, face=face,
                                   status=JobStatus.RUNNING)
        self.started.append(job.id)
        return job

    def wait(self, job_id: str) -> Job:
        self.jobs.update_job(job_id, only_if_status=JobStatus.RUNNING, status=JobStatus.SUCCEEDED)
        job = self.jobs.get(job_id)
        assert job is not None
        return job

    def cancel(self, job_id: str) -> bool:
        self.cancelled.append(job_id)
        return self.jobs.update_job(job_id, only_if_status=JobStatus.RUNNING, status=JobStatus.CANCELLED)


@dataclass
class Rig:
    pipeline: Pipeline
    database: Database
    runs: FakeRuns
    fleet: Fleet

    def who(self, name: str):  # type: ignore[no-untyped-def]
        return self.pipeline.directory.cast_member(name)

    def failover(self) -> ActionPlan:
        snapshot = snapshot_of(healthy_records(self.fleet, at=T0), at=T0)
        return plan_failover(self.fleet, snapshot, from_region="eu-west-1", to_region="eu-central-1")

    def kinds(self, request_id: str) -> list[str]:
        return [e.kind for e in self.pipeline.audit.entries(request_id=request_id)]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    fleet = load_inventory(REPO / "inventory")
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    clock = FakeClock(T0)
    jobs = JobStore(database, clock=clock)
    runs = FakeRuns(jobs)
    snapshot = snapshot_of(healthy_records(fleet, at=T0), at=T0)
    pipeline = Pipeline(
        fleet=fleet, database=database,
        directory=Directory.load(REPO / "inventory", sandbox=True, fleet=fleet),
        policy=load_policy(REPO / "inventory", fleet), snapshot=lambda: snapshot,
        executor=Executor(start=runs.start, wait=runs.wait, cancel=runs.cancel, get=jobs.get),
        playbook_dir=REPO / "playbooks", clock=clock, audit_key=KEY, audit_head_file=tmp_path / "head.json",
    )
    yield Rig(pipeline, database, runs, fleet)
    database.close()


def _filed(rig: Rig) -> str:
    submission = rig.pipeline.submit(rig.failover(), rig.who("alice"), face="cli")
    assert submission.request.status is RequestStatus.REQUESTED and submission.request.approvals_needed == 2
    return submission.request.id


def _sql(rig: Rig, statement) -> None:  # type: ignore[no-untyped-def]
    with rig.database.engine.begin() as conn:
        conn.execute(statement)


def test_a_status_set_to_approved_by_hand_runs_nothing(rig: Rig) -> None:
    request_id = _filed(rig)
    _sql(rig, update(requests_table).where(requests_table.c.id == request_id).values(status="approved"))
    with pytest.raises(ApprovalDiscrepancy, match="disagree with the audit log"):
        rig.pipeline.execute(request_id, rig.who("erin"), face="cli")
    assert rig.runs.started == []
    assert rig.pipeline.requests.get(request_id).status is RequestStatus.APPROVED  # not moved to running
    discrepancy = [e for e in rig.pipeline.audit.entries(request_id=request_id)
                   if e.kind == AuditKind.APPROVAL_DISCREPANCY]
    assert len(discrepancy) == 1 and discrepancy[0].actor == "erin"
    assert any("status approved" in p for p in discrepancy[0].data["problems"])
    assert rig.pipeline.leases.holders() == []
    # The store's verification names it; the chain itself is intact.
    result = rig.pipeline.verify_consistency()
    assert result.chain.ok and not result.ok
    assert any(line.startswith(f"request {request_id[:8]}") for line in result.discrepancies)


def test_a_vote_inserted_by_hand_is_not_counted(rig: Rig) -> None:
    request_id = _filed(rig)
    # A forged vote first: the next real approval then completes the request in the state machine.
    plan_hash = rig.pipeline.requests.get(request_id).plan_hash
    _sql(rig, insert(votes_table).values(request_id=request_id, voter="carol", decision="approve",
                                         role="approver", face="cli", at=T0, plan_hash=plan_hash))
    after = rig.pipeline.approve(request_id, rig.who("bob"), face="cli")
    assert after.status is RequestStatus.APPROVED and set(after.approvers) == {"bob", "carol"}
    assert rig.pipeline.evidence(request_id).approvers == ("bob",)
    with pytest.raises(ApprovalDiscrepancy, match="carol's approve vote has no audited"):
        rig.pipeline.execute(request_id, rig.who("bob"), face="cli")
    assert rig.runs.started == []
    assert AuditKind.APPROVAL_DISCREPANCY in rig.kinds(request_id)
    found = verify_store(rig.database, key=KEY)
    assert any("carol's approve vote" in line for line in found.discrepancies)


def test_properly_approved_requests_still_run(rig: Rig) -> None:
    request_id = _filed(rig)
    rig.pipeline.approve(request_id, rig.who("bob"), face="cli")
    rig.pipeline.approve(request_id, rig.who("carol"), face="slack")
    job = rig.pipeline.execute(request_id, rig.who("alice"), face="cli")
    assert job.status is JobStatus.SUCCEEDED and rig.runs.started == [job.id]
    entries = rig.pipeline.audit.entries(request_id=request_id)
    vote = next(e for e in entries if e.kind == AuditKind.VOTE_APPROVE)
    assert vote.data["plan_hash"] == rig.pipeline.requests.get(request_id).plan_hash and vote.mac
    assert rig.pipeline.verify_consistency().ok


def test_approvals_needed_lowered_by_hand_runs_nothing(rig: Rig) -> None:
    request_id = _filed(rig)
    _sql(rig, update(requests_table).where(requests_table.c.id == request_id)
         .values(approvals_needed=0, status="approved"))
    with pytest.raises(ApprovalDiscrepancy, match="needs 2 approval"):
        rig.pipeline.execute(request_id, rig.who("erin"), face="cli")
    assert rig.runs.started == []


def test_the_gate_refuses_with_forbidden_and_records_it(rig: Rig) -> None:
    with pytest.raises(Forbidden, match="victor is a viewer") as refused:
        rig.pipeline.submit(rig.failover(), rig.who("victor"), face="cli")
    assert refused.value.title == "not allowed"
    request_id = _filed(rig)
    with pytest.raises(Forbidden, match="someone else"):
        rig.pipeline.approve(request_id, rig.who("alice"), face="cli")
    with pytest.raises(Forbidden, match="viewer"):
        rig.pipeline.reject(request_id, rig.who("victor"), face="cli", reason="no")
    with pytest.raises(Forbidden, match="admin"):
        rig.pipeline.cancel(request_id, rig.who("bob"), face="cli")
    assert AuditKind.VOTE_REFUSED in rig.kinds(request_id)
    cancelled = rig.pipeline.cancel(request_id, rig.who("erin"), face="cli", reason="wrong region")
    assert cancelled.status is RequestStatus.CANCELLED
    entry = rig.pipeline.audit.entries(request_id=request_id)[-1]
    assert entry.kind == AuditKind.CANCELLED and entry.actor == "erin"


def _glass_request(rig: Rig) -> str:
    """A break-glass request filed and audited as the pipeline files one, left approved (its first run
    failed to start)."""
    plan = rig.failover()
    plan_hash, inputs = rig.pipeline.binding(plan)
    request = rig.pipeline.requests.create(
        NewRequest(action=plan.action.value, params=plan.params, playbook=plan.playbook,
                   extravars=plan.extravars, targets=plan.targets, summary=plan.summary,
                   observed=plan.observed,
                   plan_hash=plan_hash, hash_inputs=inputs, risk="high", risk_reasons=(), approvals_needed=0,
                   approver_scope={"environments": ["prod"], "regions": ["eu-central-1", "eu-west-1"]},
                   requester="erin", face="cli", created_at=T0, expires_at=T0 + timedelta(hours=1),
                   status=RequestStatus.APPROVED, break_glass=True, review_due_at=T0 + timedelta(hours=24)),
        audit_kind=AuditKind.BREAK_GLASS, audit_data={"reason": "eu-west-1 down"},
    )
    return request.id


def test_a_break_glass_request_runs_only_for_an_admin_checked_now(rig: Rig) -> None:
    request_id = _glass_request(rig)
    with pytest.raises(Forbidden, match="only an admin may break glass"):
        rig.pipeline.execute(request_id, rig.who("alice"), face="cli")
    demoted = dataclasses.replace(rig.who("erin"), grants=(Grant(Role.OPERATOR),))
    with pytest.raises(Forbidden, match="erin is an operator"):
        rig.pipeline.execute(request_id, demoted, face="cli")
    assert rig.runs.started == []
    job = rig.pipeline.execute(request_id, rig.who("erin"), face="cli")
    assert job.status is JobStatus.SUCCEEDED


def test_a_break_glass_flag_set_by_hand_is_a_discrepancy(rig: Rig) -> None:
    request_id = _filed(rig)
    _sql(rig, update(requests_table).where(requests_table.c.id == request_id)
         .values(break_glass=True, approvals_needed=0, status="approved"))
    with pytest.raises(ApprovalDiscrepancy, match="not filed so in the audit"):
        rig.pipeline.execute(request_id, rig.who("erin"), face="cli")
    assert rig.runs.started == []


def test_cancel_job(rig: Rig) -> None:
    request_id = _filed(rig)
    rig.pipeline.approve(request_id, rig.who("bob"), face="cli")
    rig.pipeline.approve(request_id, rig.who("carol"), face="cli")
    # A run in progress (the fake executor's job stays running until waited for).
    job = rig.runs.start(rig.failover(), False, "alice", "cli")
    rig.pipeline.requests.update(request_id, job_id=job.id)
    with pytest.raises(Forbidden, match="victor is a viewer"):
        rig.pipeline.cancel_job(job.id, rig.who("victor"), face="slack")
    assert rig.runs.cancelled == []
    refused = rig.pipeline.audit.entries(request_id=request_id)[-1]
    assert refused.kind == AuditKind.REQUEST_REFUSED and refused.job_id == job.id
    cancelled = rig.pipeline.cancel_job(job.id, rig.who("bob"), face="tui")
    assert cancelled.status is JobStatus.CANCELLED and rig.runs.cancelled == [job.id]
    entry = rig.pipeline.audit.entries(kinds=[AuditKind.JOB_CANCELLED])[-1]
    assert entry.actor == "bob" and entry.job_id == job.id and entry.request_id == request_id
    with pytest.raises(RequestRefused, match="already ended"):
        rig.pipeline.cancel_job(job.id, rig.who("alice"), face="cli")


def test_cancel_a_preview_job_takes_its_starter_or_an_operator_of_its_region(rig: Rig) -> None:
    preview = rig.runs.start(rig.failover(), True, "carol", "cli")  # params name both regions
    with pytest.raises(Forbidden, match=r"victor is a viewer in .*eu-west-1"):
        rig.pipeline.cancel_job(preview.id, rig.who("victor"), face="cli")
    assert rig.pipeline.cancel_job(preview.id, rig.who("alice"), face="cli").status is JobStatus.CANCELLED
    own = rig.runs.start(rig.failover(), True, "victor", "cli")
    assert rig.pipeline.cancel_job(own.id, rig.who("victor"), face="cli").status is JobStatus.CANCELLED


# -- worlds never mix ---------------------------------------------------------------------------------------


def test_a_store_belongs_to_one_world(tmp_path: Path) -> None:
    from sqlalchemy import select  # noqa: PLC0415

    from opsconsole.core.store.db import WrongWorld, store_meta_table  # noqa: PLC0415

    url = f"sqlite:///{tmp_path / 'store.db'}"
    first = Database(url, world="sandbox")
    assert first.world == "sandbox" and first.store_id
    with first.engine.connect() as conn:
        meta = dict(conn.execute(select(store_meta_table.c.key, store_meta_table.c.value)).all())
    assert meta["world"] == "sandbox" and meta["store_id"] == first.store_id
    first.close()
    again = Database(url, world="sandbox")
    assert again.store_id == first.store_id
    again.close()
    with pytest.raises(WrongWorld, match="belongs to the sandbox world; a live console must not use it"):
        Database(url, world="live")
    plain = Database(url)  # callers that name no world keep working (and claim nothing)
    with pytest.raises(WrongWorld):
        plain.claim_world("live")
    plain.close()


def test_requests_and_votes_record_their_world(tmp_path: Path) -> None:
    fleet = load_inventory(REPO / "inventory")
    database = Database(f"sqlite:///{tmp_path / 'store.db'}", world="live")
    snapshot = snapshot_of(healthy_records(fleet, at=T0), at=T0)
    pipeline = Pipeline(
        fleet=fleet, database=database,
        directory=Directory.load(REPO / "inventory", sandbox=True, fleet=fleet),
        policy=load_policy(REPO / "inventory", fleet), snapshot=lambda: snapshot, executor=None,
        playbook_dir=REPO / "playbooks", clock=FakeClock(T0),
    )
    plan = plan_failover(fleet, snapshot, from_region="eu-west-1", to_region="eu-central-1")
    request = pipeline.submit(plan, pipeline.directory.cast_member("alice"), face="cli").request
    pipeline.approve(request.id, pipeline.directory.cast_member("bob"), face="cli")
    assert pipeline.requests.get(request.id).world == "live"
    with database.engine.connect() as conn:
        assert conn.execute(select_world(votes_table)).scalars().all() == ["live"]
    database.close()


def select_world(table):  # type: ignore[no-untyped-def]
    from sqlalchemy import select  # noqa: PLC0415

    return select(table.c.world)


def test_a_core_claims_its_store_for_its_world(tmp_path: Path) -> None:
    from opsconsole.core.facade import OpsCore  # noqa: PLC0415
    from opsconsole.core.store.db import WrongWorld  # noqa: PLC0415

    fleet = load_inventory(REPO / "inventory")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with OpsCore(fleet, [], sandbox=True, database=Database(url)) as core:
        assert core.database.world == "sandbox"
    with OpsCore(fleet, [], sandbox=False, database=Database(url)) as live, pytest.raises(WrongWorld):
        _ = live.database


# -- files ---------------------------------------------------------------------------------------------------


def test_the_home_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stat  # noqa: PLC0415

    from opsconsole.core.paths import opsconsole_home  # noqa: PLC0415

    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    monkeypatch.setenv("OPSCONSOLE_HOME", str(loose))
    assert stat.S_IMODE(opsconsole_home().stat().st_mode) == 0o700
    monkeypatch.setenv("OPSCONSOLE_HOME", str(tmp_path / "new" / "home"))
    assert stat.S_IMODE(opsconsole_home().stat().st_mode) == 0o700


def test_the_sqlite_file_is_private(tmp_path: Path) -> None:
    import stat  # noqa: PLC0415

    path = tmp_path / "store.db"
    Database(f"sqlite:///{path}").close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    Database(f"sqlite:///{path}").close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_job_ids_are_validated_and_recovery_stays_in_runs(tmp_path: Path) -> None:
    from opsconsole.core.errors import UsageError  # noqa: PLC0415
    from opsconsole.core.runs.events import EventBus  # noqa: PLC0415
    from opsconsole.core.runs.runner import Runner  # noqa: PLC0415
    from opsconsole.core.store.db import jobs_table  # noqa: PLC0415

    home = tmp_path / "runner-home"
    home.mkdir()
    victim = tmp_path / "x"
    victim.mkdir()
    (victim / "keep.txt").write_text("password=hunter2\n")
    before = {p: p.stat().st_mtime_ns for p in victim.rglob("*")}
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    jobs = JobStore(database)
    runner = Runner(jobs, EventBus(), project_dir=REPO, inventory=REPO / "inventory" / "hosts.yml", home=home,
                    secrets=["hunter2"])
    try:
        with database.engine.begin() as conn:
            conn.execute(insert(jobs_table).values(
                id="../../x", action="scale", params={}, playbook="scale.yml", check_mode=False,
                status="running", actor="mallory", face="cli", created_at=T0, stats={}, timings=[],
            ))
        for bad in ("../../x", "ABCDEF" * 6, "0" * 31, "/etc", ""):
            with pytest.raises(UsageError, match="not a job id"):
                runner.run_dir(bad)
        assert runner.run_dir("0" * 32) == home / "runs" / ("0" * 32)
        assert runner.recover() == []
        assert runner.skipped == ["../../x"]
        assert {p: p.stat().st_mtime_ns for p in victim.rglob("*")} == before
        assert (victim / "keep.txt").read_text() == "password=hunter2\n"
        assert jobs.get("../../x").status is JobStatus.RUNNING  # type: ignore[union-attr]
    finally:
        runner.close()
        database.close()


def test_run_directories_are_private(tmp_path: Path) -> None:
    import stat  # noqa: PLC0415

    from opsconsole.core.runs.events import EventBus  # noqa: PLC0415
    from opsconsole.core.runs.runner import Runner  # noqa: PLC0415

    home = tmp_path / "runner-home"
    home.mkdir()
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    jobs = JobStore(database)
    playbooks = REPO / "tests" / "integration" / "playbooks"
    runner = Runner(jobs, EventBus(), project_dir=REPO, inventory=playbooks / "inventory", home=home,
                    keep_runs=0)
    try:
        job = runner.run("scale", str(playbooks / "one_task.yml"), {}, actor="alice", face="cli")
        assert job.status is JobStatus.SUCCEEDED
        assert stat.S_IMODE((home / "runs").stat().st_mode) == 0o700
        assert stat.S_IMODE(runner.run_dir(job.id).stat().st_mode) == 0o700
    finally:
        runner.close()
        database.close()


def test_the_live_fleet_keeps_its_store_apart_from_the_sandbox(tmp_path: Path) -> None:
    sandbox = Database(world_home("sandbox", tmp_path), world="sandbox")
    live = Database(world_home("live", tmp_path), world="live")  # the sandbox's store is not touched
    try:
        assert (sandbox.world, live.world) == ("sandbox", "live")
        assert world_home("live", tmp_path) == tmp_path / "live"
        assert oct(world_home("live", tmp_path).stat().st_mode & 0o777) == "0o700"
    finally:
        sandbox.close()
        live.close()
