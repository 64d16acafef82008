"""The `opsconsole` command as a user runs it: a real process, a real state directory, real output.

The world is read in-process here (fast); test_localcloud_cli.py reads it through the local cloud.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

OPSCONSOLE = str(Path(sys.executable).parent / "opsconsole")


def run(
    *args: str, home: Path, ok: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "OPSCONSOLE_INVENTORY"}
    # The in-process reader keeps these tests fast; test_localcloud_cli.py runs the same commands
    # through the four real adapters and the local cloud.
    environment.update({"OPSCONSOLE_HOME": str(home), "OPSCONSOLE_SANDBOX_READER": "sim", **(env or {})})
    result = subprocess.run(
        [OPSCONSOLE, *args], capture_output=True, text=True, timeout=60, env=environment, check=False
    )
    if ok:
        assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def status(home: Path, *extra: str) -> dict:
    return json.loads(run("fleet", "status", "--json", *extra, home=home).stdout)


def test_no_arguments_prints_the_fleet_status(_isolated_home: Path) -> None:
    out = run(home=_isolated_home).stdout
    assert "Fleet status" in out
    for region in ("us-east-1", "eu-west-1", "ap-south-1"):
        assert region in out
    assert "sources: sim ok" in out


def test_status_json_schema(_isolated_home: Path) -> None:
    doc = status(_isolated_home)
    assert doc["schema"] == "opsconsole.fleet.status/v1"
    assert len(doc["regions"]) == 10
    for region in doc["regions"]:
        assert {"id", "name", "tier", "health", "p95_ms", "availability"} <= set(region)
        assert region["health"] in {"ok", "degraded", "down", "unknown"}
        assert 0 < region["p95_ms"] < 1000 and 0.5 < region["availability"] <= 1
    assert doc["sources"] == [
        {"name": "sim", "status": "ok", "age_s": doc["sources"][0]["age_s"], "error": None,
         "records": doc["sources"][0]["records"], "notes": []}
    ]
    assert isinstance(doc["findings_count"], int)
    assert doc["totals"]["regions_reporting"] == 10 and doc["partial"] is False


def test_region_filter(_isolated_home: Path) -> None:
    doc = status(_isolated_home, "--region", "eu-west-1")
    assert [r["id"] for r in doc["regions"]] == ["eu-west-1"]
    assert doc["regions"][0]["tier"] == 1 and doc["regions"][0]["db_role"] == "write_primary"


def test_an_incident_shows_up_in_status_and_findings(_isolated_home: Path) -> None:
    before = status(_isolated_home, "--region", "eu-central-1")["regions"][0]
    assert before["health"] == "ok"
    started = run("sandbox", "incident", "region_outage", "--region", "eu-central-1", home=_isolated_home)
    assert "region_outage" in started.stdout
    after = status(_isolated_home, "--region", "eu-central-1")["regions"][0]
    assert after["health"] == "down"
    findings = json.loads(run("fleet", "findings", "--json", home=_isolated_home).stdout)
    assert findings["schema"] == "opsconsole.fleet.findings/v1"
    down = [f for f in findings["findings"] if f["kind"] == "region_down"]
    assert down and down[0]["region"] == "eu-central-1" and down[0]["severity"] == "critical"
    # Its failover partner now has nowhere safe to go.
    assert any(f["kind"] == "partner_unhealthy" and f["region"] == "eu-west-1" for f in findings["findings"])
    table = run("fleet", "findings", home=_isolated_home).stdout
    assert "critical" in table and "eu-central-1" in table
    run("sandbox", "clear", home=_isolated_home)
    assert status(_isolated_home, "--region", "eu-central-1")["regions"][0]["health"] != "down"


def test_traffic_spike_raises_latency_findings(_isolated_home: Path) -> None:
    run("sandbox", "incident", "traffic_spike", "--region", "eu-west-1", home=_isolated_home)
    region = status(_isolated_home, "--region", "eu-west-1")["regions"][0]
    assert region["p95_ms"] > 200
    kinds = {f["kind"] for f in json.loads(run("fleet", "findings", "--json", home=_isolated_home).stdout)
             ["findings"] if f["region"] == "eu-west-1"}
    assert "latency_p95" in kinds


def test_reset_starts_a_new_world(_isolated_home: Path) -> None:
    run("sandbox", "incident", "latency_spike", "--region", "us-east-1", home=_isolated_home)
    assert status(_isolated_home, "--region", "us-east-1")["regions"][0]["p95_ms"] > 200
    run("sandbox", "reset", home=_isolated_home)
    assert status(_isolated_home, "--region", "us-east-1")["regions"][0]["p95_ms"] < 200


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("sandbox", "incident", "meteor_strike"), "valid kinds: region_outage"),
        (("sandbox", "incident", "region_outage", "--region", "mars-1"), "expected one of: ap-northeast-1"),
        (("fleet", "status", "--region", "mars-1"), "unknown region"),
        (("fleet", "findings", "--region", "mars-1"), "unknown region"),
        (("--as", "mallory", "fleet", "status"), "expected one of: alice, bob, carol, erin, victor"),
        (("fleet", "status", "--bogus"), "No such option"),
        (("sandbox", "incident", "latency_spike", "--minutes", "-5"), "--minutes"),
    ],
)
def test_user_mistakes_exit_2_with_a_clear_message(
    _isolated_home: Path, args: tuple[str, ...], needle: str
) -> None:
    result = run(*args, home=_isolated_home, ok=False)
    assert result.returncode == 2
    assert needle in result.stderr


def test_as_a_cast_member_is_accepted(_isolated_home: Path) -> None:
    assert "Fleet status" in run("--as", "alice", "fleet", "status", home=_isolated_home).stdout


def test_inventory_check_ok_and_bad(_isolated_home: Path, inventory_copy: Path) -> None:
    assert "10 regions" in run("inventory", "check", str(inventory_copy), home=_isolated_home).stdout
    region_file = inventory_copy / "group_vars" / "region_eu_west_1.yml"
    region_file.write_text(region_file.read_text().replace("read_replicas: 3", "read_replicas: three"))
    result = run("inventory", "check", str(inventory_copy), home=_isolated_home, ok=False)
    assert result.returncode == 2
    assert "region_eu_west_1.yml" in result.stderr and "database.read_replicas" in result.stderr
    # The same mistake through OPSCONSOLE_INVENTORY stops every command the same way.
    bad = run("fleet", "status", home=_isolated_home, ok=False,
              env={"OPSCONSOLE_INVENTORY": str(inventory_copy)})
    assert bad.returncode == 2 and "database.read_replicas" in bad.stderr


def test_a_corrupt_world_is_reported_not_discarded(_isolated_home: Path) -> None:
    run("fleet", "status", home=_isolated_home)
    world_file = _isolated_home / "sandbox" / "world.json"
    assert world_file.exists()
    world_file.write_text("{ not json")
    # The fleet engine keeps going and marks the source failed, saying how to recover; with no region
    # reporting, the command prints what it has and exits 1 (a fleet nobody can read is not a quiet one).
    unreadable = run("fleet", "status", "--json", home=_isolated_home, ok=False)
    assert unreadable.returncode == 1 and "fleet unreadable: 0 of 10 regions reporting" in unreadable.stderr
    doc = json.loads(unreadable.stdout)
    assert doc["sources"][0]["status"] == "error" and "sandbox reset" in doc["sources"][0]["error"]
    assert doc["partial"] is True and doc["regions"][0]["health"] == "unknown"
    assert "sandbox reset" in run("fleet", "status", home=_isolated_home, ok=False).stdout
    assert world_file.read_text() == "{ not json"
    run("sandbox", "reset", home=_isolated_home)
    assert status(_isolated_home)["sources"][0]["status"] == "ok"


def test_version(_isolated_home: Path) -> None:
    assert run("--version", home=_isolated_home).stdout.startswith("opsconsole ")


def test_state_is_shared_between_commands(_isolated_home: Path, tmp_path: Path) -> None:
    run("sandbox", "incident", "replica_lag_runaway", "--region", "us-west-2", home=_isolated_home)
    other_home = tmp_path / "other"
    other_home.mkdir()
    assert status(other_home, "--region", "us-west-2")["regions"][0]["replica_lag_s"] < 60
    shutil.rmtree(other_home)
    incidents = json.loads((_isolated_home / "sandbox" / "world.json").read_text())
    assert "replica_lag_runaway" in json.dumps(incidents)


def test_live_without_credentials_names_each_identity(_isolated_home: Path, tmp_path: Path) -> None:
    """--live on a machine with no cloud credentials: every source fails, each naming what it tried, and
    the command still answers. Metadata services are pointed at closed loopback ports or disabled so that
    nothing leaves this machine."""
    no_cloud = {
        "HOME": str(tmp_path),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
        "NO_GCE_CHECK": "True",
        "MSI_ENDPOINT": "http://127.0.0.1:9/msi",
        "IDENTITY_ENDPOINT": "http://127.0.0.1:9/msi",
        "IDENTITY_HEADER": "x",
        "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing-adc.json"),
    }
    result = run("--live", "fleet", "status", "--json", home=_isolated_home, env=no_cloud, ok=False)
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    errors = {s["name"]: s["error"] for s in doc["sources"]}
    assert [s["status"] for s in doc["sources"]] == ["error"] * 4
    assert "kubeconfig" in errors["k8s"]
    assert "voltage-readonly" in errors["aws"]
    assert "voltage-platform-prod" in errors["gcp"]
    assert "6f1f3c52-4a8e-4c1e-9d7a-0b7c2f9e5a11" in errors["azure"]
    assert doc["partial"] is True and {r["health"] for r in doc["regions"]} == {"unknown"}
    # One line on stderr says why (0 regions reporting), naming each source's error.
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: fleet unreadable: 0 of 10")
    # Without a team server, --live reads and changes nothing: the embedded server refuses, saying why.
    refused = run("--live", "schedule", "override", "staging", "keep-awake", home=_isolated_home, ok=False,
                  env=no_cloud)
    assert refused.returncode == 2 and "read-only" in refused.stderr and "opsconsole login" in refused.stderr


def test_live_refuses_sandbox_only_options(_isolated_home: Path) -> None:
    for args in (("--live", "--as", "alice", "fleet", "status"), ("--live", "sandbox", "reset")):
        result = run(*args, home=_isolated_home, ok=False)
        assert result.returncode == 2 and "--live" in result.stderr
