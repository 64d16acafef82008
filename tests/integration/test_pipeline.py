"""The change pipeline on both back ends: roles, votes, expiry, drift, leases, break glass, one run.

Real parts throughout: the pipeline, its request store, leases and audit on SQLite and on a throwaway
PostgreSQL; the run engine runs a real ``ansible-playbook``. The one stand-in is which playbook runs:
the executor runs ``tests/integration/playbooks/one_task.yml`` (or ``slow.yml``) for any plan, because
the fleet's playbooks need the local cloud — their runs through the pipeline are covered end to end in
``tests/e2e/test_approvals_cli.py``.
"""

from __future__ import annotations

import multiprocessing
import queue
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from opsconsole.core.audit.records import AuditKind
from opsconsole.core.change.actions import ActionPlan, plan_failover, plan_scale
from opsconsole.core.change.admission import lease_targets
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.pipeline import Executor, Pipeline
from opsconsole.core.change.rbac import Directory
from opsconsole.core.change.requests import RequestRefused
from opsconsole.core.change.risk import load_policy
from opsconsole.core.fleet.engine import Snapshot
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import Fleet, WorkloadState
from opsconsole.core.runs.events import EventBus
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.records import Job, JobStatus
from opsconsole.core.runs.runner import Runner
from opsconsole.core.store.db import Database, StoreUnavailable
from opsconsole.testing import FakeClock, healthy_records, replace_record, snapshot_of

REPO = Path(__file__).resolve().parents[2]
TEST_PLAYBOOKS = REPO / "tests" / "integration" / "playbooks"
T0 = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)

pytestmark = pytest.mark.timeout(180)


@dataclass
class Rig:
    """A pipeline with everything real around it, and the knobs a test turns."""

    pipeline: Pipeline
    database: Database
    jobs: JobStore
    runner: Runner
    clock: FakeClock
    fleet: Fleet
    snapshot: list[Snapshot]
    started: list[str] = field(default_factory=list)
    playbook: list[str] = field(default_factory=lambda: ["one_task.yml"])

    def who(self, name: str):  # type: ignore[no-untyped-def]
        return self.pipeline.directory.cast_member(name)

    def failover(self) -> ActionPlan:
        return plan_failover(self.fleet, self.snapshot[0], from_region="eu-west-1", to_region="eu-central-1")

    def audit_kinds(self, request_id: str) -> list[str]:
        return [e.kind for e in self.pipeline.audit.entries(request_id=request_id)]

    def close(self) -> None:
        self.runner.close()
        self.jobs.close()
        self.database.close()


def build_rig(db_url: str, home: Path, inventory: Path, playbooks: Path) -> Rig:
    fleet = load_inventory(inventory)
    clock = FakeClock(T0)
    database = Database(db_url)
    jobs = JobStore(database, clock=clock)
    runner = Runner(jobs, EventBus(), project_dir=REPO, inventory=TEST_PLAYBOOKS / "inventory", home=home)
    snapshot = [snapshot_of(healthy_records(fleet, at=T0), at=T0)]
    rig: Rig

    def start(plan: ActionPlan, check: bool, actor: str, face: str) -> Job:
        rig.started.append(plan.action.value)
        return runner.start(
            plan.action.value, str(TEST_PLAYBOOKS / rig.playbook[0]), {}, check=check, actor=actor, face=face
        )

    executor = Executor(start=start, wait=runner.wait, cancel=runner.cancel)
    pipeline = Pipeline(
        fleet=fleet,
        database=database,
        directory=Directory.load(inventory, sandbox=True, fleet=fleet),
        policy=load_policy(inventory, fleet),
        snapshot=lambda: rig.snapshot[0],
        executor=executor,
        playbook_dir=playbooks,
        clock=clock,
        lease_ttl_s=30,
    )
    rig = Rig(pipeline, database, jobs, runner, clock, fleet, snapshot)
    return rig


@pytest.fixture
def playbooks(tmp_path: Path) -> Path:
    """A copy of playbooks/ (tests change a playbook after approval)."""
    target = tmp_path / "playbooks"
    shutil.copytree(REPO / "playbooks", target)
    return target


@pytest.fixture
def rig(db_url: str, tmp_path: Path, inventory_copy: Path, playbooks: Path) -> Iterator[Rig]:
    home = tmp_path / "runs"
    home.mkdir()
    built = build_rig(db_url, home, inventory_copy, playbooks)
    yield built
    built.close()


def _filed_failover(rig: Rig) -> str:
    submission = rig.pipeline.submit(rig.failover(), rig.who("alice"), face="cli")
    assert submission.job is None
    assert submission.request.status is RequestStatus.REQUESTED
    assert submission.request.approvals_needed == 2
    return submission.request.id


# -- votes -----------------------------------------------------------------------------------------------


def test_self_approval_is_refused_and_recorded(rig: Rig) -> None:
    request_id = _filed_failover(rig)
    with pytest.raises(RequestRefused, match="someone else"):
        rig.pipeline.approve(request_id, rig.who("alice"), face="cli")
    assert rig.pipeline.requests.get(request_id).approvers == ()
    assert AuditKind.VOTE_REFUSED in rig.audit_kinds(request_id)


def test_viewer_and_operator_votes_are_refused(rig: Rig) -> None:
    submission = rig.pipeline.submit(rig.failover(), rig.who("erin"), face="cli")
    request_id = submission.request.id
    with pytest.raises(RequestRefused, match="viewer"):
        rig.pipeline.approve(request_id, rig.who("victor"), face="slack")
    with pytest.raises(RequestRefused, match="operator"):
        rig.pipeline.approve(request_id, rig.who("alice"), face="cli")
    with pytest.raises(RequestRefused, match="viewer"):
        rig.pipeline.reject(request_id, rig.who("victor"), face="cli", reason="no")
    request = rig.pipeline.requests.get(request_id)
    assert request.status is RequestStatus.REQUESTED and request.votes == ()


def test_the_same_approver_twice_counts_once(rig: Rig) -> None:
    request_id = _filed_failover(rig)
    rig.pipeline.approve(request_id, rig.who("bob"), face="cli")
    with pytest.raises(RequestRefused, match="counts once"):
        rig.pipeline.approve(request_id, rig.who("bob"), face="slack")
    request = rig.pipeline.requests.get(request_id)
    assert request.approvers == ("bob",) and request.status is RequestStatus.REQUESTED


def test_one_reject_wins(rig: Rig) -> None:
    request_id = _filed_failover(rig)
    rig.pipeline.approve(request_id, rig.who("bob"), face="cli")
    rejected = rig.pipeline.reject(request_id, rig.who("carol"), face="slack", reason="peak traffic in EMEA")
    assert rejected.status is RequestStatus.REJECTED and rejected.reason == "peak traffic in EMEA"
    with pytest.raises(RequestRefused, match="rejected"):
        rig.pipeline.approve(request_id, rig.who("erin"), face="cli")
    with pytest.raises(RequestRefused):
        rig.pipeline.execute(request_id, rig.who("erin"), face="cli")
    assert rig.started == []


def test_an_expired_request_cannot_run(rig: Rig) -> None:
    request_id = _filed_failover(rig)
    rig.pipeline.approve(request_id, rig.who("bob"), face="cli")
    rig.pipeline.approve(request_id, rig.who("carol"), face="cli")
    rig.clock.advance(31 * 60)
    with pytest.raises(RequestRefused, match="expired"):
        rig.pipeline.execute(request_id, rig.who("carol"), face="cli")
    request = rig.pipeline.requests.get(request_id)
    assert request.status is RequestStatus.EXPIRED
    assert AuditKind.EXPIRED in rig.audit_kinds(request_id)
    assert rig.started == []


# -- drift -----------------------------------------------------------------------------------------------


def _approved_failover(rig: Rig) -> str:
    request_id = _filed_failover(rig)
    rig.pipeline.approve(request_id, rig.who("bob"), face="cli")
    assert rig.pipeline.approve(request_id, rig.who("carol"), face="cli").status is RequestStatus.APPROVED
    return request_id


def test_a_playbook_changed_after_approval_runs_nothing(rig: Rig, playbooks: Path) -> None:
    request_id = _approved_failover(rig)
    (playbooks / "failover.yml").write_text((playbooks / "failover.yml").read_text() + "\n# edited\n")
    with pytest.raises(RequestRefused, match="playbook") as refused:
        rig.pipeline.execute(request_id, rig.who("carol"), face="cli")
    assert "needs approval again" in refused.value.message
    request = rig.pipeline.requests.get(request_id)
    assert request.status is RequestStatus.REQUESTED and request.approvers == ()
    assert request.drift is not None and any("playbook" in line for line in request.drift["lines"])
    assert rig.started == []
    # Approved again on the new plan, it runs.
    rig.pipeline.approve(request_id, rig.who("bob"), face="cli")
    rig.pipeline.approve(request_id, rig.who("erin"), face="cli")
    job = rig.pipeline.execute(request_id, rig.who("erin"), face="cli")
    assert job.status is JobStatus.SUCCEEDED and rig.started == ["failover"]


def test_parameters_changed_after_approval_run_nothing(rig: Rig) -> None:
    def scale_down(replicas: int) -> ActionPlan:
        return plan_scale(
            rig.fleet, rig.snapshot[0], service="checkout", region="eu-west-1", replicas=replicas
        )

    submission = rig.pipeline.submit(scale_down(3), rig.who("alice"), face="cli")
    assert submission.request.approvals_needed == 1, submission.assessment
    rig.pipeline.approve(submission.request.id, rig.who("bob"), face="cli")
    with pytest.raises(RequestRefused, match="parameters"):
        rig.pipeline.execute(submission.request.id, rig.who("bob"), face="cli", plan=scale_down(4))
    assert rig.started == []


def test_observed_state_drift_runs_nothing_and_shows_the_difference(rig: Rig) -> None:
    request_id = _approved_failover(rig)
    rig.snapshot[0] = replace_record(
        rig.snapshot[0], "dns/eu-west-1", weights={"eu-west-1": 50, "eu-central-1": 50}
    )
    with pytest.raises(RequestRefused) as refused:
        rig.pipeline.execute(request_id, rig.who("carol"), face="cli")
    assert "dns/eu-west-1" in refused.value.message and '"eu-central-1":50' in refused.value.message
    assert rig.pipeline.requests.get(request_id).status is RequestStatus.REQUESTED
    assert AuditKind.DRIFT_DETECTED in rig.audit_kinds(request_id)
    assert rig.started == []


def test_replica_churn_is_not_drift(rig: Rig) -> None:
    """The HPA moves replicas every minute: an approval is not voided by that."""
    plan = plan_scale(rig.fleet, rig.snapshot[0], service="checkout", region="eu-west-1", replicas=3)
    submission = rig.pipeline.submit(plan, rig.who("alice"), face="cli")
    assert submission.request.approvals_needed >= 1, submission.assessment
    rig.pipeline.approve(submission.request.id, rig.who("bob"), face="cli")
    for w in rig.snapshot[0].of_type(WorkloadState):
        if w.service == "checkout" and w.region == "eu-west-1":
            rig.snapshot[0] = replace_record(rig.snapshot[0], w.key, desired=w.desired + 1)
    job = rig.pipeline.execute(submission.request.id, rig.who("bob"), face="cli")
    assert job.status is JobStatus.SUCCEEDED


# -- one run, leases, break glass --------------------------------------------------------------------------


def _approve_and_run(
    url: str,
    home: str,
    inventory: str,
    playbooks: str,
    request_id: str,
    name: str,
    barrier: Any,
    results: Any,
) -> None:
    """A spawned process: approve (maybe completing it) and try to run it, at the same instant as another."""
    try:
        rig = build_rig(url, Path(home), Path(inventory), Path(playbooks))
        rig.clock.set(T0 + timedelta(minutes=1))
        barrier.wait(60)
        outcome = []
        try:
            outcome.append(rig.pipeline.approve(request_id, rig.who(name), face="cli").status.value)
        except RequestRefused as exc:
            outcome.append(f"vote refused: {exc.message}")
        barrier.wait(60)
        try:
            job = rig.pipeline.execute(request_id, rig.who(name), face="cli")
            outcome.append(f"ran {job.status.value}")
        except RequestRefused as exc:
            outcome.append(f"run refused: {exc.message}")
        results.put((name, outcome))
        rig.close()
    except BaseException as exc:
        results.put((name, [f"error {exc!r}"]))
        raise


def test_two_processes_approving_at_once_give_exactly_one_run(
    rig: Rig, db_url: str, tmp_path: Path, inventory_copy: Path, playbooks: Path
) -> None:
    request_id = _filed_failover(rig)
    rig.pipeline.approve(request_id, rig.who("bob"), face="cli")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = []
    for name in ("carol", "erin"):
        home = tmp_path / f"runs-{name}"
        home.mkdir()
        procs.append(
            ctx.Process(
                target=_approve_and_run,
                daemon=True,
                args=(
                    db_url,
                    str(home),
                    str(inventory_copy),
                    str(playbooks),
                    request_id,
                    name,
                    barrier,
                    results,
                ),
            )
        )
    for p in procs:
        p.start()
    try:
        got = dict(results.get(timeout=120) for _ in procs)
    except queue.Empty:
        pytest.fail("the voters stalled")
    finally:
        for p in procs:
            p.join(30)
    ran = [name for name, outcome in got.items() if any(o.startswith("ran") for o in outcome)]
    assert len(ran) == 1, got
    assert got[ran[0]][-1] == "ran succeeded", got
    jobs = [j for j in rig.jobs.list(limit=50) if not j.check_mode]
    assert len(jobs) == 1, jobs
    request = rig.pipeline.requests.get(request_id)
    assert request.status is RequestStatus.SUCCEEDED and request.job_id == jobs[0].id
    assert rig.pipeline.audit.verify().ok


def test_a_conflicting_request_is_refused_naming_the_holder(rig: Rig) -> None:
    rig.playbook[0] = "slow.yml"
    scale = plan_scale(
        rig.fleet,
        rig.snapshot[0],
        service="checkout",
        region="eu-west-1",
        replicas=_replicas(rig, "checkout", "eu-west-1") + 1,
    )
    first = rig.pipeline.submit(scale, rig.who("alice"), face="slack", wait=False)
    assert first.job is not None and first.request.status is RequestStatus.RUNNING
    try:
        with pytest.raises(RequestRefused, match=r"held by alice .*scale") as refused:
            rig.pipeline.submit(rig.failover(), rig.who("erin"), face="cli")
        assert "region/eu-west-1" in refused.value.message
        # A scale of another workload in the same region shares the region: it is not refused.
        other = plan_scale(
            rig.fleet,
            rig.snapshot[0],
            service="search",
            region="eu-west-1",
            replicas=_replicas(rig, "search", "eu-west-1") + 1,
        )
        rig.playbook[0] = "one_task.yml"
        assert rig.pipeline.submit(other, rig.who("erin"), face="cli").job is not None
    finally:
        rig.runner.cancel(first.job.id)
        rig.pipeline.join(30)
    assert rig.pipeline.leases.holders() == []


def _replicas(rig: Rig, service: str, region: str) -> int:
    return max(
        w.desired
        for w in rig.snapshot[0].of_type(WorkloadState)
        if w.service == service and w.region == region
    )


def test_an_open_request_claims_its_targets(rig: Rig) -> None:
    _filed_failover(rig)
    with pytest.raises(RequestRefused, match="claimed by open request"):
        rig.pipeline.submit(rig.failover(), rig.who("erin"), face="slack")


def test_break_glass(rig: Rig) -> None:
    with pytest.raises(RequestRefused, match="only an admin"):
        rig.pipeline.submit(
            rig.failover(), rig.who("bob"), face="cli", break_glass_reason="eu-west-1 is down"
        )
    assert rig.started == []
    submission = rig.pipeline.submit(
        rig.failover(),
        rig.who("erin"),
        face="cli",
        break_glass_reason="eu-west-1 is down, no approver reachable",
    )
    assert submission.job is not None and submission.job.status is JobStatus.SUCCEEDED
    request = rig.pipeline.requests.get(submission.request.id)
    assert request.break_glass and request.status is RequestStatus.SUCCEEDED
    assert request.review_due_at == T0 + timedelta(hours=24)
    kinds = rig.audit_kinds(request.id)
    assert kinds[0] == AuditKind.BREAK_GLASS and AuditKind.RUN_FINISHED in kinds


def test_low_risk_runs_at_once_and_a_viewer_files_nothing(rig: Rig) -> None:
    scale_up = plan_scale(
        rig.fleet,
        rig.snapshot[0],
        service="search",
        region="us-east-1",
        replicas=_replicas(rig, "search", "us-east-1") + 2,
    )
    with pytest.raises(RequestRefused, match="viewer"):
        rig.pipeline.submit(scale_up, rig.who("victor"), face="slack")
    assert rig.pipeline.requests.list() == []
    submission = rig.pipeline.submit(scale_up, rig.who("alice"), face="tui")
    assert submission.assessment.level.value == "low"
    assert submission.job is not None and submission.job.status is JobStatus.SUCCEEDED
    assert rig.pipeline.requests.get(submission.request.id).status is RequestStatus.SUCCEEDED
    assert rig.pipeline.leases.holders() == []


def test_a_request_nobody_may_approve_is_refused_when_filed(
    db_url: str, tmp_path: Path, inventory_copy: Path, playbooks: Path
) -> None:
    rbac = yaml.safe_load((inventory_copy / "rbac.yml").read_text())
    del rbac["sandbox_cast"]["carol"], rbac["sandbox_cast"]["erin"]
    (inventory_copy / "rbac.yml").write_text(yaml.safe_dump(rbac))
    rig = build_rig(db_url, tmp_path, inventory_copy, playbooks)
    try:
        with pytest.raises(RequestRefused, match=r"needs 2 approval\(s\).*only 1 person\(s\) besides alice"):
            rig.pipeline.submit(rig.failover(), rig.who("alice"), face="cli")
        assert rig.pipeline.requests.list() == []
        assert rig.pipeline.audit.entries()[-1].kind == AuditKind.REQUEST_REFUSED
    finally:
        rig.close()


def test_a_change_freeze_refuses_high_risk_unless_glass_is_broken(
    db_url: str, tmp_path: Path, inventory_copy: Path, playbooks: Path
) -> None:
    policy = yaml.safe_load((inventory_copy / "policy.yml").read_text())
    policy["change_freezes"] = [
        {
            "name": "black-friday",
            "start": "2026-11-26T00:00:00+00:00",
            "end": "2026-11-30T23:59:00+00:00",
            "reason": "peak sales",
        }
    ]
    (inventory_copy / "policy.yml").write_text(yaml.safe_dump(policy))
    rig = build_rig(db_url, tmp_path, inventory_copy, playbooks)
    try:
        with pytest.raises(RequestRefused, match="black-friday"):
            rig.pipeline.submit(rig.failover(), rig.who("alice"), face="cli")
        glass = rig.pipeline.submit(rig.failover(), rig.who("erin"), face="cli", break_glass_reason="outage")
        assert glass.job is not None and glass.job.status is JobStatus.SUCCEEDED
    finally:
        rig.close()


# -- the store fails closed ---------------------------------------------------------------------------


def test_store_unreachable_nothing_runs(rig: Rig, db_url: str) -> None:
    request_id = _approved_failover(rig)
    # The database goes away under the pipeline.
    if db_url.startswith("sqlite"):
        rig.database.engine.dispose()
        path = Path(db_url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        path.mkdir()  # a directory where the file was: every connection fails
    else:
        import psycopg  # noqa: PLC0415

        url = rig.database.engine.url
        with psycopg.connect(
            host=url.host, port=url.port, user=url.username, dbname="postgres", autocommit=True
        ) as admin:
            admin.execute(f'DROP DATABASE "{url.database}" WITH (FORCE)')
    with pytest.raises(StoreUnavailable):
        rig.pipeline.execute(request_id, rig.who("carol"), face="cli")
    assert rig.started == []


def test_a_run_at_once_that_cannot_start_is_cancelled_not_left_open(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.playbook[0] = "slow.yml"
    replicas = _replicas(rig, "checkout", "eu-west-1") + 1
    scale = plan_scale(rig.fleet, rig.snapshot[0], service="checkout", region="eu-west-1", replicas=replicas)
    first = rig.pipeline.submit(scale, rig.who("alice"), face="slack", wait=False)
    assert first.job is not None
    try:
        # The race the filing check cannot close: another run takes the targets between check and start.
        monkeypatch.setattr(rig.pipeline, "_check_free", lambda *_args: None)
        with pytest.raises(RequestRefused, match="held by alice"):
            rig.pipeline.submit(scale, rig.who("erin"), face="cli")
        second = next(r for r in rig.pipeline.requests.list() if r.requester == "erin")
        assert second.status is RequestStatus.CANCELLED and "could not start" in (second.reason or "")
    finally:
        rig.runner.cancel(first.job.id)
        rig.pipeline.join(30)


def test_only_an_operator_may_start_an_approved_run(rig: Rig) -> None:
    request_id = _approved_failover(rig)
    with pytest.raises(RequestRefused, match="viewer"):
        rig.pipeline.execute(request_id, rig.who("victor"), face="cli")
    assert rig.started == [] and rig.pipeline.requests.get(request_id).status is RequestStatus.APPROVED
    assert rig.audit_kinds(request_id)[-1] == AuditKind.REQUEST_REFUSED
    job = rig.pipeline.execute(request_id, rig.who("alice"), face="cli")  # the operator who filed it
    assert job.status is JobStatus.SUCCEEDED


def test_a_second_start_of_a_request_being_started_is_told_so(rig: Rig) -> None:
    """The last vote's run holds the request's targets while it is being planned again; a second caller
    (a Run button, a drill) is told that the request is already being started, not that alice holds
    what alice's own request needs."""
    request_id = _approved_failover(rig)
    request = rig.pipeline.requests.get(request_id)
    starting = rig.pipeline.leases.acquire(lease_targets(rig.failover()), holder=request.requester,
                                           purpose="failover", request_id=request_id)
    try:
        with pytest.raises(RequestRefused, match=r"is already being started .*follow its run"):
            rig.pipeline.execute(request_id, rig.who("alice"), face="slack")
    finally:
        rig.pipeline.leases.release(starting)
    assert rig.pipeline.execute(request_id, rig.who("alice"), face="cli").status is JobStatus.SUCCEEDED
