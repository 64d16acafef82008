"""The RTO clock and verdict (opsconsole/core/change/rto.py) and the drill report (core/change/drill.py):
the target a move is held to, the RTO measured from a job's timings, the verdict recorded on the job, and
the Markdown / JSON report a drill writes."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsconsole.core.change.drill import (
    DrillReport,
    DrillStep,
    drill_passed,
    render_markdown,
    rpo_measure,
    write_primaries,
    write_report,
)
from opsconsole.core.change.rto import (
    RtoVerdict,
    clock,
    clock_text,
    job_clock,
    measure,
    record_verdict,
    rto_target,
    strictest_rto_s,
    verdict_of,
)
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import Environment, Fleet
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.records import Job, JobStatus

T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)
FAILOVER = {"from_region": "eu-west-1", "to_region": "eu-central-1"}


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_inventory()


def failover_job(*, duration_s: float = 30.0, status: JobStatus = JobStatus.SUCCEEDED,
                 timings: list[dict[str, object]] | None = None, action: str = "failover") -> Job:
    steps = timings if timings is not None else [
        {"step": "pre_checks", "seconds": "5.0"},
        {"step": "dns_weights_100", "seconds": "10.0"},
        {"step": "promote_database", "seconds": "2.0"},
        {"step": "verify", "seconds": "4.0"},
        {"step": "total", "seconds": "21.0"},
    ]
    return Job(id="j1", action=action, params=FAILOVER if action == "failover" else {"region": "eu-west-1"},
               playbook="failover.yml", check_mode=False, status=status, actor="erin", face="cli",
               created_at=T0, started_at=T0, finished_at=T0 + timedelta(seconds=duration_s), timings=steps)


def test_the_target_is_the_most_critical_tier_the_region_runs(fleet: Fleet) -> None:
    target = rto_target(fleet, "failover", FAILOVER)
    assert target is not None
    assert (target.tier, target.target_s, target.region) == ("critical", 900.0, "eu-west-1")
    assert "checkout" in target.services and "catalog" not in target.services
    assert rto_target(fleet, "failback", {"region": "eu-west-1"}) == target
    assert rto_target(fleet, "scale", {"region": "eu-west-1"}) is None
    assert rto_target(fleet, "failover", {"from_region": "mars-1"}) is None
    assert strictest_rto_s(fleet) == 900.0


def test_a_region_with_only_standard_services_gets_the_standard_rto(fleet: Fleet) -> None:
    # Only the standard tier deployed in prod: the move is held to 4 h, not 15 min.
    standard = {n: s for n, s in fleet.services.items() if s.criticality.value == "standard"}
    others = {n: replace(s, environments=(Environment.DEV,)) for n, s in fleet.services.items()
              if n not in standard}
    reduced = replace(fleet, services={**standard, **others},
                      clusters={n: c for n, c in fleet.clusters.items()
                                if c.environment is Environment.PROD})
    target = rto_target(reduced, "failover", FAILOVER)
    assert target is not None and (target.tier, target.target_s) == ("standard", 14400.0)


def test_clock_reads_minutes_and_hours() -> None:
    assert clock_text(151, 900) == "RTO 2:31 / 15:00"
    assert clock(3600) == "1:00:00" and clock(59.9) == "0:59" and clock(-3) == "0:00"


def test_rto_runs_from_the_run_start_to_the_verified_end(fleet: Fleet) -> None:
    target = rto_target(fleet, "failover", FAILOVER)
    assert target is not None
    # 30 s job; the playbook spent 21 s of it, ending with verify: nothing after verify to take off.
    verdict = measure(failover_job(duration_s=30.0), target)
    assert verdict.rto_s == pytest.approx(30.0) and verdict.completed and verdict.end_step == "verify"
    assert verdict.verdict == "met" and verdict.margin_s == pytest.approx(870.0)
    assert verdict.sentence() == "RTO 0:30 / 15:00: met, 14:30 to spare (critical tier)"
    # Steps after verify (a demotion, say) do not count: the clock stopped at the verified end.
    after = failover_job(duration_s=40.0, timings=[
        {"step": "dns_weights_100", "seconds": 10}, {"step": "verify", "seconds": 5},
        {"step": "demote", "seconds": 10}, {"step": "total", "seconds": 25}])
    assert measure(after, target).rto_s == pytest.approx(30.0)


def test_a_slow_move_misses_by_how_much(fleet: Fleet) -> None:
    target = rto_target(fleet, "failover", FAILOVER)
    assert target is not None
    verdict = measure(failover_job(duration_s=1023.0), target)
    assert verdict.verdict == "missed" and verdict.margin_s == pytest.approx(-123.0)
    assert verdict.sentence() == "RTO 17:03 / 15:00: missed by 2:03 (critical tier)"


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT])
def test_a_run_that_did_not_complete_missed(fleet: Fleet, status: JobStatus) -> None:
    target = rto_target(fleet, "failover", FAILOVER)
    assert target is not None
    job = failover_job(duration_s=12.0, status=status, timings=[{"step": "pre_checks", "seconds": 5},
                                                                {"step": "total", "seconds": 6}])
    verdict = measure(job, target)
    assert (verdict.verdict, verdict.completed, verdict.rto_s) == ("missed", False, 12.0)
    assert "did not complete" in verdict.sentence()
    # A succeeded run that never verified did not reach the verified end either.
    unverified = failover_job(timings=[{"step": "dns_weights_100", "seconds": 3}])
    assert measure(unverified, target).verdict == "missed"


def test_the_verdict_is_recorded_on_the_job_and_read_back(fleet: Fleet, tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        created = store.create_job(action="failover", params=FAILOVER, playbook="failover.yml",
                                   check_mode=False, actor="erin", face="cli")
        store.update_job(created.id, status=JobStatus.SUCCEEDED, started_at=T0,
                         finished_at=T0 + timedelta(seconds=25), stats={"totals": {"changed": 4}},
                         timings=list(failover_job().timings))
        job = store.get(created.id)
        assert job is not None and verdict_of(job) is None
        judged, verdict = record_verdict(store.database, fleet, job)
        assert verdict is not None and verdict.verdict == "met"
        again = store.get(created.id)
        assert again is not None
        assert verdict_of(again) == verdict == verdict_of(judged)
        assert again.stats["totals"] == {"changed": 4}  # the run's counts stay
        assert job_clock(again, 900.0, T0) == verdict.sentence()
        # A preview or another action is not judged.
        preview = replace(job, check_mode=True)
        assert record_verdict(store.database, fleet, preview) == (preview, None)
        assert job_clock(preview, 900.0, T0) is None
    finally:
        store.close()


def test_the_live_clock_of_a_running_move() -> None:
    running = replace(failover_job(), status=JobStatus.RUNNING, finished_at=None)
    assert job_clock(running, 900.0, T0 + timedelta(seconds=151)) == "RTO 2:31 / 15:00"
    assert job_clock(replace(running, started_at=None), 900.0, T0) == "RTO clock not started / 15:00"


def test_a_verdict_document_round_trips() -> None:
    verdict = RtoVerdict(action="failover", region="eu-west-1", tier="critical", target_s=900.0,
                         rto_s=21.4, verdict="met", margin_s=878.6, completed=True, end_step="verify")
    assert RtoVerdict.from_document(json.loads(json.dumps(verdict.document()))) == verdict


def drill_report(rto_s: float = 21.4, lag: float = 1.2) -> DrillReport:
    report = DrillReport(from_region="eu-west-1", to_region="eu-central-1", started_at=T0,
                         finished_at=T0 + timedelta(seconds=60))
    verdict = RtoVerdict(action="failover", region="eu-west-1", tier="critical", target_s=900.0,
                         rto_s=rto_s, verdict="met" if rto_s <= 900 else "missed", margin_s=900.0 - rto_s,
                         completed=True, end_step="verify")
    report.rto, report.rto_target_s, report.rto_tier = verdict.document(), 900.0, "critical"
    report.verdict = verdict.verdict
    report.rpo = {**rpo_measure(lag, 300.0), "promoted": True, "region": "eu-central-1"}
    report.steps = [DrillStep("failover", T0, 25.0, True, "job succeeded", "r1", "j1"),
                    DrillStep("verify_failover", T0, 2.0, True, "verified"),
                    DrillStep("failback", T0, 8.0, True, "job succeeded", "r2", "j2")]
    report.jobs = {"failover": {"id": "j1", "timings": [{"step": "verify", "seconds": 4.5}]}}
    report.observed = {"before": {"at": "t", "regions": {"eu-west-1": {"dns_weights": {"eu-west-1": 100},
                                                                       "db_role": "write_primary"}},
                                  "findings": [{"severity": "high", "region": "eu-west-1", "title": "hot"}]}}
    report.write_primaries_after = ["eu-west-1", "us-east-1"]
    report.passed = drill_passed(report)
    return report


def test_a_drill_passes_only_with_rto_rpo_and_every_step() -> None:
    assert drill_passed(drill_report())
    assert not drill_passed(drill_report(rto_s=1000.0))
    assert not drill_passed(drill_report(lag=400.0))
    failed_step = drill_report()
    failed_step.steps[2].ok = False
    assert not drill_passed(failed_step)
    assert rpo_measure(None, 300.0)["verdict"] is None
    assert write_primaries({"regions": [{"id": "b", "db_role": "write_primary"},
                                        {"id": "a", "db_role": "write_primary"},
                                        {"id": "c", "db_role": "read_replica"}]}) == ["a", "b"]


def test_the_report_is_written_as_markdown_and_json_under_the_home(tmp_path: Path) -> None:
    report = drill_report()
    md, js = write_report(report, tmp_path)
    assert md.parent == tmp_path / "drills" and md.name == "20260302T100000Z-eu-west-1-eu-central-1.md"
    assert js.with_suffix(".md") == md
    document = json.loads(js.read_text())
    assert document["schema"] == "opsconsole.drill/v1" and document["verdict"] == "met"
    assert (document["rto_s"], document["rto_target_s"], document["report"]) == (21.4, 900.0, str(md))
    assert document["rpo"]["verdict"] == "met" and document["steps"][0]["job_id"] == "j1"
    assert document["write_primaries_after_failback"] == ["eu-west-1", "us-east-1"]
    text = md.read_text()
    assert "**RTO verdict: met** — RTO 0:21 / 15:00: met, 14:38 to spare (critical tier)" in text
    assert "| RTO (critical tier) | 21.4 s | 900.0 s | met |" in text
    assert "| RPO (replica lag of eu-central-1 at the promotion) | 1.2 s | 300.0 s | met |" in text
    assert "| failback | 8.0 | yes | r2 | j2 | job succeeded |" in text
    assert "- verify: 4.5 s" in text and "[high] eu-west-1: hot" in text
    assert "eu-west-1, us-east-1" in text and "drill passed" in text
    missed = drill_report(rto_s=1023.0)
    assert "missed by 2:03" in render_markdown(missed) and "drill FAILED" in render_markdown(missed)
