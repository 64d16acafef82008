"""The drill's orchestration (opsconsole/core/change/drill.py) against a scripted ops server: a move that
needs approval is waited for (and the person told how to approve), a rejected one aborts the drill with a
report, a break-glass drill runs both moves at once, and what the view shows decides "verified"."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.drill import run_drill
from opsconsole.core.change.rto import measure, rto_target
from opsconsole.core.errors import OpsError, UsageError
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import Fleet
from opsconsole.core.runs.records import Job, JobStatus

T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_inventory()


@dataclass
class FakeOps:
    """The server's side of a drill: requests, runs that change a tiny world, and its status."""

    fleet_spec: Fleet
    #: How many looks at a waiting request before its approvers approve it (None: they reject it).
    approve_after: int | None = 2
    dns: dict[str, int] = field(default_factory=lambda: {"eu-west-1": 100})
    roles: dict[str, str] = field(default_factory=lambda: {"eu-west-1": "write_primary",
                                                           "eu-central-1": "read_replica"})
    requests_: dict[str, Any] = field(default_factory=dict)
    jobs_: dict[str, Job] = field(default_factory=dict)
    looks: int = 0

    def assess(self, action: str, params: Mapping[str, Any]) -> None:
        if params.get("to_region") == "us-east-1":
            raise UsageError("failover eu-west-1 -> us-east-1: residency: EU data stays in the EU")

    def fleet(self) -> Any:
        return SimpleNamespace(fleet=self.fleet_spec)

    def status(self, region: str | None = None) -> dict[str, Any]:
        regions = [{"id": r, "dns_weights": dict(self.dns) if r == "eu-west-1" else {r: 100},
                    "db_role": role, "replica_lag_s": 1.5 if role == "read_replica" else 0.0, "health": "ok"}
                   for r, role in self.roles.items()]
        return {"regions": regions, "totals": {"rpo_target_s": 300.0}}

    def findings(self, region: str | None = None) -> dict[str, Any]:
        return {"findings": []}

    def preview(self, action: str, params: Mapping[str, Any]) -> Job:
        return self._run(action, params, check=True)

    def _run(self, action: str, params: Mapping[str, Any], *, check: bool = False) -> Job:
        job = Job(id=f"job{len(self.jobs_)}", action=action, params=dict(params), playbook=f"{action}.yml",
                  check_mode=check, status=JobStatus.SUCCEEDED, actor="erin", face="cli", created_at=T0,
                  started_at=T0, finished_at=T0 + timedelta(seconds=20),
                  timings=[{"step": "verify", "seconds": 3}, {"step": "total", "seconds": 3}])
        if not check:
            target = rto_target(self.fleet_spec, action, params)
            assert target is not None
            job = replace(job, stats={"rto": measure(job, target).document()})
            if action == "failover":
                self.dns = {"eu-central-1": 100}
                self.roles["eu-central-1"] = "write_primary"
            else:
                self.dns = {"eu-west-1": 100}
        self.jobs_[job.id] = job
        return job

    def submit(self, action: str, params: Mapping[str, Any], *,
               break_glass_reason: str | None = None) -> Any:
        rid = f"req{len(self.requests_)}0000000"
        request = SimpleNamespace(id=rid, short_id=rid[:8], action=action, params=dict(params),
                                  approvals_missing=2, expires_at=T0 + timedelta(hours=1), reason=None,
                                  status=RequestStatus.REQUESTED, job_id=None)
        self.requests_[rid] = request
        if break_glass_reason:
            job = self._run(action, params)
            request.status, request.job_id = RequestStatus.SUCCEEDED, job.id
            return SimpleNamespace(request=request, job=job, may_still_vote=())
        return SimpleNamespace(request=request, job=None, may_still_vote=("bob", "carol"))

    def request(self, request_id: str) -> Any:
        request = self.requests_[request_id]
        if request.status is RequestStatus.REQUESTED:
            self.looks += 1
            if self.approve_after is None:
                request.status, request.reason = RequestStatus.REJECTED, "not today"
            elif self.looks >= self.approve_after:
                job = self._run(request.action, request.params)
                request.status, request.job_id = RequestStatus.SUCCEEDED, job.id
        return SimpleNamespace(request=request)

    def run_request(self, request_id: str) -> Job:
        raise AssertionError("not approved without a run here")

    def job(self, job_id: str) -> Job:
        return self.jobs_[job_id]

    def job_events(self, job_id: str, *, after_seq: int = 0, wait_s: float = 0.0) -> list[Any]:
        return []


def test_a_drill_waits_for_each_approval_and_says_how(fleet: Fleet, tmp_path: Path) -> None:
    ops = FakeOps(fleet)
    said: list[str] = []
    report = run_drill(ops, from_region="eu-west-1", to_region="eu-central-1", say=said.append,
                       home=tmp_path, poll_s=0.0, verify_deadline_s=5.0)
    waits = [s for s in said if "waits for 2 approval(s) from bob, carol" in s]
    assert len(waits) == 2 and "opsconsole approvals approve req00000" in waits[0]
    assert report.verdict == "met" and report.passed and report.rto_s == 20.0
    assert [s.name for s in report.steps] == ["failover", "verify_failover", "failback", "verify_failback"]
    assert report.rpo is not None and (report.rpo["replica_lag_s"], report.rpo["verdict"]) == (1.5, "met")
    # The promoted replica was not demoted by this failback: both EU regions write, and the report says so.
    assert report.write_primaries_after == ["eu-central-1", "eu-west-1"]
    assert any("both write primaries" in p for p in report.problems)
    document = json.loads(Path(report.paths["json"]).read_text())
    assert document["jobs"]["failover"]["rto"]["verdict"] == "met"


def test_a_rejected_failover_aborts_the_drill_with_a_report(fleet: Fleet, tmp_path: Path) -> None:
    ops = FakeOps(fleet, approve_after=None)
    report = run_drill(ops, from_region="eu-west-1", to_region="eu-central-1", home=tmp_path, poll_s=0.0)
    assert report.verdict == "aborted" and not report.passed and report.rto_s is None
    assert "was rejected: not today; nothing ran" in report.problems[0]
    assert Path(report.paths["md"]).is_file() and ops.dns == {"eu-west-1": 100}


def test_a_view_that_never_shows_the_move_is_not_verified(fleet: Fleet, tmp_path: Path) -> None:
    class Stuck(FakeOps):
        def status(self, region: str | None = None) -> dict[str, Any]:
            document = super().status(region)
            document["regions"][0]["dns_weights"] = {"eu-west-1": 50, "eu-central-1": 50}
            return document

    report = run_drill(Stuck(fleet), from_region="eu-west-1", to_region="eu-central-1", home=tmp_path,
                       break_glass="drill", poll_s=0.0, verify_deadline_s=0.0)
    assert report.verdict == "met" and not report.passed  # the RTO was met, the drill was not verified
    assert report.steps[1].name == "verify_failover" and not report.steps[1].ok
    assert "expected {'eu-central-1': 100}" in report.problems[0]


def test_a_bad_pair_is_refused_before_anything(fleet: Fleet, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="residency"):
        run_drill(FakeOps(fleet), from_region="eu-west-1", to_region="us-east-1", home=tmp_path)
    with pytest.raises(UsageError, match="itself"):
        run_drill(FakeOps(fleet), from_region="eu-west-1", to_region="eu-west-1", home=tmp_path)
    assert not (tmp_path / "drills").exists()


def test_a_dry_run_previews_only(fleet: Fleet, tmp_path: Path) -> None:
    ops = FakeOps(fleet)
    report = run_drill(ops, from_region="eu-west-1", to_region="eu-central-1", dry_run=True, home=tmp_path)
    assert report.verdict is None and report.passed and [s.name for s in report.steps] == ["preview_failover"]
    assert ops.dns == {"eu-west-1": 100} and report.paths["md"].endswith("-dry-run.md")


def test_a_refusal_mid_way_ends_the_drill_with_a_report_that_says_where(fleet: Fleet, tmp_path: Path) -> None:
    class StoreAway(FakeOps):
        def job(self, job_id: str) -> Job:
            if self.jobs_[job_id].action == "failback":
                raise OpsError("the store is unreachable", title="store unavailable")
            return super().job(job_id)

    said: list[str] = []
    report = run_drill(StoreAway(fleet), from_region="eu-west-1", to_region="eu-central-1", say=said.append,
                       home=tmp_path, break_glass="drill", poll_s=0.0, verify_deadline_s=1.0)
    # the failover ran and met its RTO; the drill did not pass, and the report says where it stopped
    assert report.verdict == "met" and not report.passed
    assert report.problems[-1] == "stopped at failback: store unavailable: the store is unreachable"
    assert [s.name for s in report.steps][-1] == "failback" and not report.steps[-1].ok
    assert "stopped at failback" in Path(report.paths["md"]).read_text()


def test_a_request_sent_back_for_approval_after_drift_is_said_once(fleet: Fleet, tmp_path: Path) -> None:
    class Drifting(FakeOps):
        def request(self, request_id: str) -> Any:
            request = self.requests_[request_id]
            if request.status is RequestStatus.REQUESTED and self.looks == 1:
                request.drift = {"lines": ["dns/eu-west-1: {...} → {...}"], "at": "t"}
            return super().request(request_id)

    said: list[str] = []
    report = run_drill(Drifting(fleet, approve_after=3), from_region="eu-west-1", to_region="eu-central-1",
                       say=said.append, home=tmp_path, poll_s=0.0, verify_deadline_s=1.0)
    told = [s for s in said if "changed since it was approved" in s]
    assert len(told) == 1 and "dns/eu-west-1" in told[0] and "votes start over" in told[0], said
    assert report.verdict == "met"


class ApprovedFirst(FakeOps):
    """The last vote's run is prepared for a few looks: the request is approved, without a job yet."""

    preparing_looks: int = 3
    runs_asked: int = 0

    def request(self, request_id: str) -> Any:
        request = self.requests_[request_id]
        if request.status is RequestStatus.REQUESTED:
            request.status, request.preparing = RequestStatus.APPROVED, self.preparing_looks
        elif request.status is RequestStatus.APPROVED and self.preparing_looks is not None:
            request.preparing -= 1
            if request.preparing <= 0:  # the vote's run started
                job = self._run(request.action, request.params)
                request.status, request.job_id = RequestStatus.SUCCEEDED, job.id
        return SimpleNamespace(request=request)

    def run_request(self, request_id: str) -> Job:
        self.runs_asked += 1
        request = self.requests_[request_id]
        job = self._run(request.action, request.params)
        request.status, request.job_id = RequestStatus.SUCCEEDED, job.id
        return job


def test_an_approved_request_whose_run_is_being_prepared_is_not_run_twice(
    fleet: Fleet, tmp_path: Path
) -> None:
    ops = ApprovedFirst(fleet)
    report = run_drill(ops, from_region="eu-west-1", to_region="eu-central-1", home=tmp_path, poll_s=0.0,
                       verify_deadline_s=1.0)
    assert ops.runs_asked == 0 and report.verdict == "met", report.problems
    assert [s.name for s in report.steps] == ["failover", "verify_failover", "failback", "verify_failback"]


def test_an_approved_request_left_without_a_run_is_run_by_the_drill_after_the_grace(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("opsconsole.core.change.drill.APPROVED_RUN_GRACE_S", 0.0)
    ops = ApprovedFirst(fleet)
    ops.preparing_looks = None  # type: ignore[assignment]  # approved from a face that does not run it
    report = run_drill(ops, from_region="eu-west-1", to_region="eu-central-1", home=tmp_path, poll_s=0.0,
                       verify_deadline_s=1.0)
    assert ops.runs_asked == 2 and report.verdict == "met", report.problems
