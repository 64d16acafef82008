"""`opsconsole drill failover` as an SRE runs it on the sandbox (a shared local cloud, `sandbox up`):
failover, verify, failback through the approval pipeline (break glass: an admin's drill runs at once),
a report under the home with the RTO and RPO against the targets, and the RTO verdict on the failover's
job and in the audit log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_process import cli, sandbox_up


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("drill")
    with sandbox_up(home):
        yield home


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_drill_writes_a_report_and_records_the_rto_verdict(home: Path) -> None:
    result = cli(home, "--as", "erin", "drill", "failover", "--from", "eu-west-1", "--to", "eu-central-1",
                 "--json", "--break-glass", "quarterly DR drill", ok=False, timeout=480)
    # 0: passed; 1: ran but did not pass (the failback's own problems are in the report); never refused.
    assert result.returncode in (0, 1), result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["verdict"] in ("met", "missed"), summary
    assert summary["rto_s"] > 0 and summary["rto_target_s"] == 900.0
    md, js = Path(summary["report"]), Path(summary["json_report"])
    assert md.is_file() and js.is_file() and md.parent == home / "drills"
    assert md.name.endswith("-eu-west-1-eu-central-1.md")
    report = json.loads(js.read_text())
    assert report["verdict"] == summary["verdict"] and report["rto_s"] == summary["rto_s"]
    assert report["rpo"]["target_s"] == 300.0 and report["rpo"]["promoted"] is True
    assert report["rpo"]["replica_lag_s"] is not None
    assert [s["name"] for s in report["steps"]][:3] == ["failover", "verify_failover", "failback"]
    assert report["steps"][1]["ok"], report["steps"]  # the server's view showed the move
    assert "before" in report["observed"] and "after_failover" in report["observed"]
    after = report["observed"]["after_failover"]["regions"]
    assert after["eu-west-1"]["dns_weights"] == {"eu-central-1": 100}
    assert after["eu-central-1"]["db_role"] == "write_primary"
    if report["steps"][2]["ok"]:
        assert report["write_primaries_after_failback"], report
    text = md.read_text()
    assert f"**RTO verdict: {summary['verdict']}**" in text and "| RTO (critical tier) |" in text

    # The verdict is on the failover's job and in the audit log's run_finished entry.
    job_id = report["jobs"]["failover"]["id"]
    job = json.loads(cli(home, "jobs", "show", job_id, "--json").stdout)
    assert job["rto"]["verdict"] == summary["verdict"] and job["rto"]["rto_s"] == summary["rto_s"]
    assert job["stats"]["rto"]["target_s"] == 900.0
    shown = cli(home, "jobs", "show", job_id).stdout
    assert "RTO " in shown and "/ 15:00" in shown
    entries = json.loads(cli(home, "audit", "log", "--kind", "run_finished", "--json", "-n", "1000").stdout)
    judged = [e for e in entries if e["job_id"] == job_id]
    assert len(judged) == 1 and judged[0]["data"]["rto"]["verdict"] == summary["verdict"]
    assert cli(home, "audit", "verify").returncode == 0


@pytest.mark.slow
def test_a_bad_drill_is_refused_and_writes_nothing(home: Path) -> None:
    result = cli(home, "--as", "erin", "drill", "failover", "--from", "eu-west-1", "--to", "us-east-1",
                 "--json", "--break-glass", "drill", ok=False)
    assert result.returncode == 2 and "residency" in result.stderr
    assert not list(home.glob("drills/*-eu-west-1-us-east-1.*"))
