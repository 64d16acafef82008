"""`opsconsole act` and `opsconsole jobs` as a user runs them, against a shared local cloud (sandbox up):
a preview changes nothing, a run changes the fleet as the adapters then read it, every run is a job."""

from __future__ import annotations

import json
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
    result = cli(home, "act", "scale", "search", "--region", "eu-west-1", "--cluster", "gke-euw1-prod",
                 "--hpa-max", "70", "--json")
    job = json.loads(result.stdout)
    assert job["status"] == "succeeded" and job["stats"]["totals"]["changed"] >= 1 and not job["check_mode"]
    assert hpa_max(home, "gke-euw1-prod", "search") == 70
    shown = json.loads(cli(home, "jobs", "show", job["id"][:10], "--json").stdout)
    assert shown["id"] == job["id"]
    logs = cli(home, "jobs", "logs", job["id"]).stdout
    assert "changed" in logs and "succeeded" in logs
    # The same run again changes nothing (idempotent playbook).
    again = json.loads(cli(home, "act", "scale", "search", "--region", "eu-west-1", "--cluster",
                           "gke-euw1-prod", "--hpa-max", "70", "--json").stdout)
    assert again["status"] == "succeeded" and again["stats"]["totals"]["changed"] == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("act", "scale", "chekout", "--region", "eu-west-1", "--replicas", "4"), "did you mean checkout?"),
        (("act", "scale", "checkout", "--region", "eu-west-1", "--replicas", "500"), "HPA bounds"),
        (("act", "failover", "--from", "eu-west-1", "--to", "us-east-1"), "residency"),
        (("act", "failover", "--from", "eu-west-1", "--to", "eu-west-1"), "itself"),
        (("act", "env", "stop", "prod"), "production cannot be stopped"),
        (("jobs", "show", "nope"), "no such job"),
    ],
)
def test_bad_requests_exit_2_and_file_nothing(home: Path, args: tuple[str, ...], needle: str) -> None:
    before = len(json.loads(cli(home, "jobs", "list", "--json", "-n", "1000").stdout))
    result = cli(home, *args, ok=False)
    assert result.returncode == 2 and needle in result.stderr
    assert len(json.loads(cli(home, "jobs", "list", "--json", "-n", "1000").stdout)) == before


def status(home: Path, region: str | None = None) -> dict:  # type: ignore[type-arg]
    args = ["fleet", "status", "--json"] + (["--region", region] if region else [])
    return json.loads(cli(home, *args).stdout)


def test_failover_and_failback_through_the_run_engine(home: Path) -> None:
    preview = cli(home, "act", "failover", "--from", "eu-west-1", "--to", "eu-central-1", "--dry-run")
    assert "promote pg-eu-central-1" in preview.stdout and "succeeded" in preview.stdout
    assert status(home, "eu-west-1")["regions"][0]["dns_weights"] == {"eu-west-1": 100}
    job = json.loads(
        cli(home, "act", "failover", "--from", "eu-west-1", "--to", "eu-central-1", "--json").stdout
    )
    assert job["status"] == "succeeded" and job["timings"], job
    assert {t["step"] for t in job["timings"]} >= {"pre_checks", "promote_database"}
    after = status(home)
    regions = {r["id"]: r for r in after["regions"]}
    assert regions["eu-west-1"]["dns_weights"] == {"eu-central-1": 100}
    assert regions["eu-central-1"]["db_role"] == "write_primary"
    back = json.loads(cli(home, "act", "failback", "eu-west-1", "--json").stdout)
    assert back["status"] == "succeeded"
    assert status(home, "eu-west-1")["regions"][0]["dns_weights"] == {"eu-west-1": 100}


def test_environment_stop_start_and_cancel(home: Path) -> None:
    # A stop cancelled mid-run: the job says so and no ansible process is left.
    process = subprocess.Popen([OPSCONSOLE, "act", "env", "stop", "staging"], env=environment(home),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job_id = None
    deadline = time.monotonic() + 120
    while job_id is None and time.monotonic() < deadline:
        running = [j for j in json.loads(cli(home, "jobs", "list", "--json").stdout)
                   if j["status"] == "running" and j["action"] == "env_stop"]
        job_id = running[0]["id"] if running else None
        time.sleep(0.5)
    assert job_id is not None, "the stop never started"
    time.sleep(2)
    assert "cancelled" in cli(home, "jobs", "cancel", job_id, "--yes").stdout
    process.communicate(timeout=60)
    assert process.returncode == 1
    assert json.loads(cli(home, "jobs", "show", job_id, "--json").stdout)["status"] == "cancelled"
    leftovers = subprocess.run(["pgrep", "-f", f"OPSCONSOLE_JOB_ID={job_id}|runs/{job_id}"],
                               capture_output=True, text=True, check=False).stdout
    assert leftovers.strip() == ""
    # The whole stop, then start at the old sizes (a cancelled stop may have held a tier at 0: start
    # first, so that "before" is the environment at its remembered sizes).
    cli(home, "act", "env", "start", "staging", ok=False)
    before = staging_replicas(home)
    stop = json.loads(cli(home, "act", "env", "stop", "staging", "--json").stdout)
    assert stop["status"] == "succeeded"
    assert set(staging_replicas(home).values()) == {0}
    start = json.loads(cli(home, "act", "env", "start", "staging", "--json").stdout)
    assert start["status"] == "succeeded"
    assert staging_replicas(home) == before


def staging_replicas(home: Path) -> dict[str, int]:
    """Desired replicas of every staging workload, read through the k8s adapter."""
    script = (
        "import json\n"
        "from opsconsole.core.model import WorkloadState\n"
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
