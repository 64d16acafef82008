"""`opsconsole act`, `approvals`, `audit` and `jobs` as a user runs them, against a shared local cloud
(sandbox up): a preview changes nothing; a low-risk change runs at once; a prod failover waits for two
approvers, runs once, and the audit log proves it — and catches a hand edit; every run is a job."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_process import OPSCONSOLE, cli, environment, sandbox_up


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("act")
    with sandbox_up(home):
        yield home


def hpa_max(home: Path, cluster: str, service: str) -> int:
    """Read one workload's HPA max through the k8s adapter (the JSON status has only region totals)."""
    script = (
        "import json,sys\n"
        "from opsconsole.wiring import sandbox_core\n"
        "with sandbox_core() as core:\n"
        f"    w = core.refresh().snapshot.get('workload/{cluster}/{service}')\n"
        "    print(json.dumps({'hpa_max': w.hpa_max, 'source': w.source}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env=environment(home), check=True).stdout
    data = json.loads(out.strip().splitlines()[-1])
    assert data["source"] == "k8s"
    return int(data["hpa_max"])


def test_preview_changes_nothing_and_is_a_job(home: Path) -> None:
    before = hpa_max(home, "gke-euw1-prod", "search")
    result = cli(home, "act", "scale", "search", "--region", "eu-west-1", "--cluster", "gke-euw1-prod",
                 "--hpa-max", "70", "--dry-run")
    assert "preview (check mode, nothing changes)" in result.stdout
    assert f"HPA 2–{before} → 2–70" in result.stdout and "succeeded" in result.stdout
    assert hpa_max(home, "gke-euw1-prod", "search") == before
    jobs = json.loads(cli(home, "jobs", "list", "--json").stdout)
    assert jobs[0]["check_mode"] is True and jobs[0]["action"] == "scale"
    assert jobs[0]["params"]["hpa_max"] == 70 and "opsconsole_kubeconfig" not in jobs[0]["params"]


def test_a_run_changes_the_fleet_and_is_recorded(home: Path) -> None:
    result = cli(home, "--as", "alice", "act", "scale", "search", "--region", "eu-west-1", "--cluster",
                 "gke-euw1-prod", "--hpa-max", "70", "--json")
    document = json.loads(result.stdout)
    assert document["risk"] == "low" and document["status"] == "succeeded", document
    job = document["job"]
    assert job["status"] == "succeeded" and job["actor"] == "alice" and not job["check_mode"]
    assert job["stats"]["totals"]["changed"] >= 1
    assert hpa_max(home, "gke-euw1-prod", "search") == 70
    shown = json.loads(cli(home, "jobs", "show", job["id"][:10], "--json").stdout)
    assert shown["id"] == job["id"]
    logs = cli(home, "jobs", "logs", job["id"]).stdout
    assert "changed" in logs and "succeeded" in logs
    # The same change again is refused before anything runs: there is nothing to change.
    again = cli(home, "--as", "alice", "act", "scale", "search", "--region", "eu-west-1",
                "--cluster", "gke-euw1-prod", "--hpa-max", "70", "--json", ok=False)
    assert again.returncode == 2 and "no change" in again.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("act", "scale", "chekout", "--region", "eu-west-1", "--replicas", "4"), "did you mean checkout?"),
        (("act", "scale", "checkout", "--region", "eu-west-1", "--replicas", "500"), "HPA bounds"),
        (("act", "failover", "--from", "eu-west-1", "--to", "us-east-1"), "residency"),
        (("act", "failover", "--from", "eu-west-1", "--to", "eu-west-1"), "itself"),
        (("act", "env", "stop", "prod"), "production cannot be stopped"),
        (("jobs", "show", "nope"), "no such job"),
        # Who may: an unknown OS user is a viewer; --as names only the sandbox cast.
        (("act", "scale", "search", "--region", "eu-west-1", "--hpa-max", "70"), "viewer"),
        (("--as", "victor", "act", "scale", "search", "--region", "eu-west-1", "--hpa-max", "70"), "viewer"),
        (("--as", "mallory", "act", "failback", "eu-west-1"), "not in the sandbox cast"),
        (("--as", "bob", "act", "failover", "--from", "eu-west-1", "--to", "eu-central-1", "--break-glass",
          "why not"), "only an admin"),
        (("approvals", "show", "ffffffff"), "no such request"),
    ],
)
def test_bad_requests_exit_2_and_file_nothing(home: Path, args: tuple[str, ...], needle: str) -> None:
    def counts() -> tuple[int, int]:
        jobs = json.loads(cli(home, "jobs", "list", "--json", "-n", "1000").stdout)
        requests = json.loads(cli(home, "approvals", "list", "--all", "--json", "-n", "1000").stdout)
        return len(jobs), len(requests)

    before = counts()
    result = cli(home, *args, ok=False)
    assert result.returncode == 2 and needle in result.stderr
    assert counts() == before


def status(home: Path, region: str | None = None) -> dict:  # type: ignore[type-arg]
    """The status document: a one-shot `fleet status` on a loaded machine can find every source past its
    deadline on its first read (no region reports: it says so, exit 1); ask again then."""
    args = ["fleet", "status", "--json"] + (["--region", region] if region else [])
    deadline = time.monotonic() + 120
    while True:
        result = cli(home, *args, ok=False)
        if result.returncode == 0:
            return dict(json.loads(result.stdout))
        assert time.monotonic() < deadline, result.stdout + result.stderr


# Several real runs one after the other: more than the default 120 s on a loaded 2-core machine.
@pytest.mark.timeout(420)
def test_a_prod_failover_needs_two_approvers_runs_once_and_the_audit_proves_it(home: Path) -> None:
    preview = cli(home, "--as", "alice", "act", "failover", "--from", "eu-west-1", "--to", "eu-central-1",
                  "--dry-run")
    assert "promote pg-eu-central-1" in preview.stdout and "succeeded" in preview.stdout
    assert "risk: high" in preview.stdout
    assert status(home, "eu-west-1")["regions"][0]["dns_weights"] == {"eu-west-1": 100}
    filed = json.loads(cli(home, "--as", "alice", "act", "failover", "--from", "eu-west-1", "--to",
                           "eu-central-1", "--json").stdout)
    assert (filed["status"], filed["risk"], filed["needs"]["approvals"]) == ("requested", "high", 2), filed
    assert set(filed["eligible_approvers"]) == {"bob", "carol", "erin"}
    rid = filed["request_id"]
    listed = cli(home, "approvals", "list").stdout
    assert rid[:8] in listed and "failover" in listed
    # alice may not approve her own request; victor may not approve at all.
    own = cli(home, "--as", "alice", "approvals", "approve", rid[:8], ok=False)
    assert own.returncode == 2 and "someone else must approve" in own.stderr
    viewer = cli(home, "--as", "victor", "approvals", "approve", rid[:8], ok=False)
    assert viewer.returncode == 2 and "viewer" in viewer.stderr
    assert status(home, "eu-west-1")["regions"][0]["dns_weights"] == {"eu-west-1": 100}
    bob = json.loads(cli(home, "--as", "bob", "approvals", "approve", rid, "--json").stdout)
    assert (bob["status"], bob["needs"]["approvals"], bob["approvers"]) == ("requested", 1, ["bob"])
    carol = cli(home, "--as", "carol", "approvals", "approve", rid[:8], timeout=300)
    assert "approved by carol" in carol.stdout and "succeeded" in carol.stdout, carol.stdout
    shown = json.loads(cli(home, "approvals", "show", rid, "--json").stdout)
    assert shown["status"] == "succeeded" and shown["approvers"] == ["bob", "carol"]
    regions = {r["id"]: r for r in status(home)["regions"]}
    assert regions["eu-west-1"]["dns_weights"] == {"eu-central-1": 100}
    assert regions["eu-central-1"]["db_role"] == "write_primary"
    runs = [j for j in json.loads(cli(home, "jobs", "list", "--json", "-n", "1000").stdout)
            if j["action"] == "failover" and not j["check_mode"]]
    assert [j["id"] for j in runs] == [shown["job_id"]]
    assert {t["step"] for t in runs[0]["timings"]} >= {"pre_checks", "promote_database"}
    again = cli(home, "--as", "erin", "approvals", "approve", rid[:8], ok=False)
    assert again.returncode == 2 and "succeeded" in again.stderr
    # The record: every step, in a chain that verifies.
    kinds = [e["kind"] for e in json.loads(cli(home, "audit", "log", "--request", rid, "--json").stdout)]
    assert kinds[0] == "request_filed" and kinds.count("vote_refused") == 3  # alice, victor, erin too late
    assert kinds.count("vote_approve") == 2
    assert "approved" in kinds and kinds[-2:] == ["run_finished", "vote_refused"], kinds  # erin: too late
    assert "intact" in cli(home, "audit", "verify").stdout
    # Failback by an admin breaking glass: runs at once, flagged for review.
    back = json.loads(cli(home, "--as", "erin", "act", "failback", "eu-west-1", "--break-glass",
                          "drill over: send EMEA home", "--json").stdout)
    assert back["job"]["status"] == "succeeded" and back["status"] == "succeeded"
    assert status(home, "eu-west-1")["regions"][0]["dns_weights"] == {"eu-west-1": 100}
    # A hand edit of the audit table is caught, naming the entry.
    with sqlite3.connect(home / "opsconsole.db") as db:
        seq = db.execute(
            "SELECT seq FROM audit_log WHERE kind = 'vote_approve' ORDER BY seq LIMIT 1").fetchone()[0]
        db.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = ?", (seq,))
    broken = cli(home, "audit", "verify", ok=False)
    assert broken.returncode == 1 and f"entry {seq}" in broken.stdout + broken.stderr


# Several real runs one after the other: more than the default 120 s on a loaded 2-core machine.
@pytest.mark.timeout(420)
def test_environment_stop_start_and_cancel(home: Path) -> None:
    # A stop cancelled mid-run: the job says so and no ansible process is left.
    process = subprocess.Popen([OPSCONSOLE, "--as", "alice", "act", "env", "stop", "staging"],
                               env=environment(home),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job_id = None
    deadline = time.monotonic() + 120
    while job_id is None and time.monotonic() < deadline:
        running = [j for j in json.loads(cli(home, "jobs", "list", "--json").stdout)
                   if j["status"] == "running" and j["action"] == "env_stop"]
        job_id = running[0]["id"] if running else None
        time.sleep(0.5)
    assert job_id is not None, "the stop never started"
    # Another process (another embedded server on the same store) cancels it at once, before the stop
    # can finish. (That a viewer may not cancel is tests/server/test_api.py's: here a second command
    # first would race the stop's end.)
    assert "cancelled" in cli(home, "--as", "alice", "jobs", "cancel", job_id, "--yes").stdout
    process.communicate(timeout=60)
    assert process.returncode == 1
    assert json.loads(cli(home, "jobs", "show", job_id, "--json").stdout)["status"] == "cancelled"
    leftovers = subprocess.run(["pgrep", "-f", f"OPSCONSOLE_JOB_ID={job_id}|runs/{job_id}"],
                               capture_output=True, text=True, check=False).stdout
    assert leftovers.strip() == ""
    # The whole stop, then start at the old sizes (a cancelled stop may have held a tier at 0: start
    # first, so that "before" is the environment at its remembered sizes).
    cli(home, "--as", "alice", "act", "env", "start", "staging", ok=False)
    before = staging_replicas(home)
    stop = json.loads(cli(home, "--as", "alice", "act", "env", "stop", "staging", "--json").stdout)
    assert stop["job"]["status"] == "succeeded" and stop["risk"] == "low"
    assert set(staging_replicas(home).values()) == {0}
    start = json.loads(cli(home, "--as", "alice", "act", "env", "start", "staging", "--json").stdout)
    assert start["job"]["status"] == "succeeded"
    assert staging_replicas(home) == before


def staging_replicas(home: Path) -> dict[str, int]:
    """Desired replicas of every staging workload, read through the k8s adapter."""
    script = (
        "import json\n"
        "from opsconsole.core.fleet.model import WorkloadState\n"
        "from opsconsole.wiring import sandbox_core\n"
        "with sandbox_core() as core:\n"
        "    snap = core.refresh().snapshot\n"
        "    print(json.dumps({w.key: w.desired for w in snap.of_type(WorkloadState)"
        " if w.environment.value == 'staging'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env=environment(home), check=True).stdout
    replicas: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    assert replicas, "no staging workloads read"
    return replicas
