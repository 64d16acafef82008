"""failover.yml and failback.yml, run for real (ansible-playbook in a subprocess) against a local cloud.

One local cloud (all four emulators, a world on a fake clock) is started for the module; each test runs
the playbooks the way the runner does (``-i inventory/hosts.yml``, the contract's extravars, a minimal
environment, cwd = a private directory) and then syncs the local cloud and asserts on the world and
through the AWS adapter. Tests run in file order and share the world: the refusals come first, the
failover before the failback, the incidents last (each clears its own).

No driver thread syncs the local cloud while a playbook runs: a sync that lands between the two Route53
writes of one DNS step would see a half-written set (the world accepts only sums of 100) and refuse it.
So the health status the playbook reads between steps is the one published before the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import DatabaseState, DbRole, DnsRecordSet, Fleet
from opsconsole.providers.aws import AwsSource
from opsconsole.sandbox.localcloud import LocalCloud
from opsconsole.sandbox.state import WorldStore
from opsconsole.testing import FakeClock
from opsconsole.wiring import sandbox_emulators

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
INVENTORY = REPO / "inventory" / "hosts.yml"
BIN = Path(sys.executable).parent
AT = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)  # night in Europe: the failover drill's usual hour
PLAYBOOK_TIMEOUT_S = 110


@dataclass
class Sandbox:
    fleet: Fleet
    cloud: LocalCloud
    store: WorldStore
    clock: FakeClock
    tmp: Path

    def state(self) -> dict[str, Any]:
        """Sync (collect what clients changed, publish), then every DNS set and database role."""
        self.cloud.sync()
        with self.store.open() as world:
            dns = {rid: world.dns_weights(rid) for rid in self.fleet.regions}
            dbs = {r.region: (r.role, r.replicates_from) for r in world.observe()
                   if isinstance(r, DatabaseState)}
        return {"dns": dns, "db": dbs}


@dataclass
class Run:
    rc: int
    result: dict[str, Any]
    stderr: str
    seconds: float

    @property
    def stats(self) -> dict[str, int]:
        return dict(self.result["stats"]["localhost"])

    @property
    def timings(self) -> list[dict[str, Any]]:
        return list(self.result["global_custom_stats"]["opsconsole_timings"])

    def task_results(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for play in self.result["plays"]:
            for task in play["tasks"]:
                out.append((task["task"]["name"], task["hosts"].get("localhost", {})))
        return out

    def failure(self) -> str:
        failed = [r.get("msg", "") for _, r in self.task_results() if r.get("failed")]
        return " | ".join(str(m) for m in failed)

    def messages(self) -> str:
        return " | ".join(str(r.get("msg", "")) for _, r in self.task_results())


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    fleet = load_inventory()
    tmp = tmp_path_factory.mktemp("failover")
    clock = FakeClock(AT)
    store = WorldStore(tmp / "home", fleet, clock, seed=7)
    cloud = LocalCloud(store, sandbox_emulators(fleet))
    cloud.start()
    try:
        yield Sandbox(fleet, cloud, store, clock, tmp)
    finally:
        cloud.stop()


def _env(sb: Sandbox) -> dict[str, str]:
    home = sb.tmp / "ansible-home"
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    settings = sb.cloud.endpoints["aws"].settings
    return {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp" / "local"),
        "ANSIBLE_REMOTE_TEMP": str(home / "tmp" / "remote"),
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_SHOW_CUSTOM_STATS": "true",
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
        "ANSIBLE_NOCOLOR": "1",
        "AWS_ACCESS_KEY_ID": settings["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": settings["aws_secret_access_key"],
        "AWS_SESSION_TOKEN": settings["aws_session_token"],
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def run_playbook(sb: Sandbox, name: str, extravars: dict[str, Any], *, check: bool = False) -> Run:
    endpoints = sb.cloud.endpoints
    data = {
        "opsconsole_kubeconfig": endpoints["k8s"].settings["kubeconfig"],
        "opsconsole_aws_endpoint_url": endpoints["aws"].urls["aws"],
        "opsconsole_cloudwatch_endpoint_url": endpoints["aws"].urls["cloudwatch"],
        "opsconsole_sandbox": True,
        **extravars,
    }
    workdir = sb.tmp / "run"
    workdir.mkdir(exist_ok=True)
    (workdir / "extravars.json").write_text(json.dumps(data))
    cmd = [str(BIN / "ansible-playbook"), "-i", str(INVENTORY), str(PLAYBOOKS / name),
           "-e", "@extravars.json"]
    if check:
        cmd += ["--check", "--diff"]
    started = datetime.now(UTC)
    proc = subprocess.run(cmd, cwd=workdir, env=_env(sb), capture_output=True, text=True,
                          timeout=PLAYBOOK_TIMEOUT_S, check=False)
    seconds = (datetime.now(UTC) - started).total_seconds()
    # The json callback prints one document at the end; pause prints its countdown lines before it.
    start = proc.stdout.find("\n{")
    body = proc.stdout if proc.stdout.startswith("{") else proc.stdout[start + 1:]
    try:
        result = json.loads(body)
    except ValueError:
        pytest.fail(f"{name}: no JSON result (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-3000:]}")
    run = Run(proc.returncode, result, proc.stderr, seconds)
    sys.stderr.write(f"{name} {extravars} check={check}: rc {run.rc}, {seconds:.1f} s, {run.stats}\n")
    return run


def adapter_view(sb: Sandbox) -> dict[str, Any]:
    # A fresh adapter's first read is cold (clients built, eleven regions asked at once): generous, as
    # beside CPU burners and the other worker's playbooks it can take several seconds.
    reading = AwsSource.from_endpoints(sb.fleet, sb.cloud.endpoints["aws"], timeout_s=30.0).read()
    assert reading.complete, reading.problems
    return {r.key: r for r in reading.records if isinstance(r, DnsRecordSet | DatabaseState)}


# -- lint ----------------------------------------------------------------------------------------------


def test_playbooks_pass_ansible_lint_production(tmp_path: Path) -> None:
    # ansible-lint 26 reads `-p` as the deprecated alias of `--format=pep8`: the profile is `--profile`.
    files = ["playbooks/failover.yml", "playbooks/failback.yml", "playbooks/tasks/failover_step.yml",
             "playbooks/database.yml", "playbooks/tasks/db_promote_aws.yml",
             "playbooks/tasks/db_demote_aws.yml"]
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "NO_COLOR": "1"}
    proc = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--profile", "production", *files],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=100, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr


# -- refusals before any change ------------------------------------------------------------------------


def test_residency_gate_refuses_eu_to_us_and_changes_nothing(sandbox: Sandbox) -> None:
    before = sandbox.state()
    run = run_playbook(sandbox, "failover.yml", {"from_region": "eu-west-1", "to_region": "us-east-1"})
    assert run.rc != 0
    assert "gate residency refused" in run.failure()
    assert "eu-west-1 is in residency zone eu" in run.failure() and "us-east-1 in us" in run.failure()
    assert run.stats["changed"] == 0
    assert sandbox.state() == before


def test_check_mode_previews_the_failover_and_changes_nothing(sandbox: Sandbox) -> None:
    before = sandbox.state()
    # Two steps keep the preview short; the runner's preview uses the default three.
    run = run_playbook(sandbox, "failover.yml", {"from_region": "eu-west-1", "to_region": "eu-central-1",
                                                 "weight_steps": [50, 100]}, check=True)
    assert run.rc == 0, run.failure() or run.stderr[-2000:]
    diffs = [(name, r["diff"]) for name, r in run.task_results() if r.get("diff")]
    diffs += [(name, item["diff"]) for name, r in run.task_results() for item in r.get("results", [])
              if isinstance(item, dict) and item.get("diff")]
    shown = json.dumps(diffs)
    assert "api.eu-west-1.voltage.internal." in shown and '"weight": 0' in shown
    assert '"role": "standalone"' in shown  # the promotion of pg-eu-central-1, previewed
    assert run.stats["changed"] > 0  # what would change
    assert sandbox.state() == before
    assert before["dns"]["eu-west-1"] == {"eu-west-1": 100}


# -- failover, then failback ------------------------------------------------------------------------------


@pytest.mark.timeout(360)  # two or three playbook runs on a loaded 2-core machine
def test_failover_moves_the_weights_promotes_the_replica_and_records_timings(sandbox: Sandbox) -> None:
    before = sandbox.state()
    assert before["db"]["eu-central-1"] == (DbRole.READ_REPLICA, "eu-west-1")
    run = run_playbook(sandbox, "failover.yml", {
        "from_region": "eu-west-1", "to_region": "eu-central-1", "weight_steps": [25, 50, 100],
        "step_wait_s": 1,
    })
    assert run.rc == 0, run.failure() or run.stderr[-2000:]
    assert run.stats["failures"] == 0 and run.stats["changed"] > 0
    after = sandbox.state()
    assert after["dns"]["eu-west-1"] == {"eu-central-1": 100}
    assert after["db"]["eu-central-1"] == (DbRole.WRITE_PRIMARY, None)
    assert {r: w for r, w in after["dns"].items() if r != "eu-west-1"} == {
        r: w for r, w in before["dns"].items() if r != "eu-west-1"}
    seen = adapter_view(sandbox)
    dns = seen["dns/eu-west-1"]
    assert isinstance(dns, DnsRecordSet) and dns.weights == {"eu-central-1": 100}
    db = seen["database/eu-central-1"]
    assert isinstance(db, DatabaseState) and db.role is DbRole.WRITE_PRIMARY and db.replicates_from is None

    timings = run.timings
    steps = [t["step"] for t in timings]
    assert steps == [
        "pre_checks",
        "dns_weights_25", "wait_and_health_check_25",
        "dns_weights_50", "wait_and_health_check_50",
        "dns_weights_100", "wait_and_health_check_100",
        "promote_database", "verify", "total",
    ]
    for t in timings:
        assert t["started"] <= t["finished"] and float(t["seconds"]) >= 0, t
    total = timings[-1]
    assert float(total["seconds"]) >= sum(float(t["seconds"]) for t in timings[:-1]) - 0.5
    assert all(float(t["seconds"]) >= 1.0 for t in timings if t["step"].startswith("wait_and_health"))
    sys.stderr.write("failover timings: " + ", ".join(f"{t['step']}={t['seconds']}" for t in timings) + "\n")


def _write_primaries(sb: Sandbox, zone: str) -> list[str]:
    """The available write primaries of a residency zone, as the world and the AWS adapter see them."""
    sb.cloud.sync()
    def primaries(records: Iterable[object]) -> list[str]:
        return sorted(r.region for r in records if isinstance(r, DatabaseState)
                      and r.role is DbRole.WRITE_PRIMARY
                      and sb.fleet.regions[r.region].residency_zone == zone)

    with sb.store.open() as world:
        in_world = primaries(world.observe())
    by_adapter = primaries(adapter_view(sb).values())
    assert in_world == by_adapter, (in_world, by_adapter)
    return in_world


def test_failback_preview_shows_the_demotion_and_changes_nothing(sandbox: Sandbox) -> None:
    before = sandbox.state()
    assert _write_primaries(sandbox, "eu") == ["eu-central-1", "eu-west-1"]  # the failover's split
    run = run_playbook(sandbox, "failback.yml", {"region": "eu-west-1"}, check=True)
    assert run.rc == 0, run.failure() or run.stderr[-2000:]
    shown = json.dumps([r.get("diff") for _, r in run.task_results() if r.get("diff")])
    assert '"role": "read_replica"' in shown and ":db:pg-eu-west-1" in shown
    assert sandbox.state() == before


@pytest.mark.timeout(360)  # two or three playbook runs on a loaded 2-core machine
def test_failback_returns_the_users_and_restores_one_write_primary(sandbox: Sandbox) -> None:
    replicas = {r.region: r.read_replicas for r in adapter_view(sandbox).values()
                if isinstance(r, DatabaseState)}
    run = run_playbook(sandbox, "failback.yml", {"region": "eu-west-1"})
    assert run.rc == 0, run.failure() or run.stderr[-2000:]
    assert run.stats["changed"] > 0
    verified = "verified: pg-eu-west-1 is a standalone write primary and pg-eu-central-1 replicate"
    assert verified in run.messages()
    after = sandbox.state()
    assert after["dns"]["eu-west-1"] == {"eu-west-1": 100}
    assert after["db"]["eu-central-1"] == (DbRole.READ_REPLICA, "eu-west-1")
    assert after["db"]["eu-west-1"] == (DbRole.WRITE_PRIMARY, None)
    assert _write_primaries(sandbox, "eu") == ["eu-west-1"]
    assert [t["step"] for t in run.timings] == [
        "health_check", "dns_weights", "restore_databases", "verify", "total"]
    seen = adapter_view(sandbox)
    dns = seen["dns/eu-west-1"]
    assert isinstance(dns, DnsRecordSet) and dns.weights == {"eu-west-1": 100}
    db = seen["database/eu-central-1"]
    assert isinstance(db, DatabaseState) and db.replicates_from == "eu-west-1"
    assert db.read_replicas == replicas["eu-central-1"]  # its own read replicas came back under it

    again = run_playbook(sandbox, "failback.yml", {"region": "eu-west-1"})
    assert again.rc == 0, again.failure()
    assert again.stats["changed"] == 0
    assert sandbox.state() == after


@pytest.mark.timeout(360)  # two or three playbook runs on a loaded 2-core machine
def test_dr_failover_then_failback_promotes_the_old_primary_back(sandbox: Sandbox) -> None:
    """A failover away from a region that is down: the world makes the old primary a replica of the
    promoted one (DR); failback promotes it back first, then demotes the promoted replica."""
    with sandbox.store.open() as world:
        incident = world.trigger_incident("region_outage", "eu-west-1")
    try:
        sandbox.cloud.sync()
        run = run_playbook(sandbox, "failover.yml", {
            "from_region": "eu-west-1", "to_region": "eu-central-1", "weight_steps": [100], "step_wait_s": 0})
        assert run.rc == 0, run.failure() or run.stderr[-2000:]
        during = sandbox.state()
        assert during["db"]["eu-central-1"] == (DbRole.WRITE_PRIMARY, None)
        assert during["db"]["eu-west-1"] == (DbRole.READ_REPLICA, "eu-central-1")
    finally:
        with sandbox.store.open() as world:
            world.clear_incident(incident.id)
        sandbox.cloud.sync()
    run = run_playbook(sandbox, "failback.yml", {"region": "eu-west-1"})
    assert run.rc == 0, run.failure() or run.stderr[-2000:]
    after = sandbox.state()
    assert after["dns"]["eu-west-1"] == {"eu-west-1": 100}
    assert after["db"]["eu-west-1"] == (DbRole.WRITE_PRIMARY, None)
    assert after["db"]["eu-central-1"] == (DbRole.READ_REPLICA, "eu-west-1")
    assert _write_primaries(sandbox, "eu") == ["eu-west-1"]


# -- refusals under incidents --------------------------------------------------------------------------


def test_health_gate_refuses_a_region_under_outage_and_changes_nothing(sandbox: Sandbox) -> None:
    with sandbox.store.open() as world:
        incident = world.trigger_incident("region_outage", "us-west-2")
    try:
        before = sandbox.state()
        run = run_playbook(sandbox, "failover.yml", {"from_region": "us-east-1", "to_region": "us-west-2"})
        assert run.rc != 0
        assert "gate health refused" in run.failure() and "us-west-2 reports 0.0" in run.failure()
        assert run.stats["changed"] == 0
        assert sandbox.state() == before
    finally:
        with sandbox.store.open() as world:
            world.clear_incident(incident.id)
        sandbox.cloud.sync()


def test_replica_lag_gate_refuses_lag_over_the_rpo_and_changes_nothing(sandbox: Sandbox) -> None:
    with sandbox.store.open() as world:
        incident = world.trigger_incident("replica_lag_runaway", "ap-northeast-1")
    try:
        sandbox.clock.advance(12 * 60)  # 30 s of lag per sim minute: ~360 s, past the 300 s RPO
        before = sandbox.state()
        with sandbox.store.open() as world:
            lag = next(r.replica_lag_s for r in world.observe()
                       if isinstance(r, DatabaseState) and r.region == "ap-northeast-1")
        assert lag > 300
        run = run_playbook(sandbox, "failover.yml",
                           {"from_region": "ap-southeast-1", "to_region": "ap-northeast-1"})
        assert run.rc != 0
        message = run.failure()
        assert "gate replica_lag refused" in message and "the RPO is 300 s" in message
        assert "the replica lag of pg-ap-northeast-1 is 3" in message  # ~360 s
        assert "gate health passed" in run.messages()
        assert run.stats["changed"] == 0
        assert sandbox.state() == before
    finally:
        with sandbox.store.open() as world:
            world.clear_incident(incident.id)
        sandbox.cloud.sync()
