"""failover.yml / failback.yml to a region whose database is on Cloud SQL or Azure PostgreSQL, run for real.

Why: the replica-lag gate (RPO) reads the lag from the monitoring service of the target database's cloud
(library/opsconsole_gcp_metric_value.py on Cloud Monitoring, library/opsconsole_azure_metric_value.py on
Azure Monitor); before, a failover to ap-south-1 (Cloud SQL) or sa-east-1 (Azure) was always refused.

One local cloud (all six emulators, a world on a fake clock) per module; ansible-playbook in a subprocess
with the connection extravars the lead wires in opsconsole/wiring.py, passed here by hand from the local
cloud's Endpoints. Tests run in file order and share the world: module checks, refusals under
``replica_lag_runaway`` (each clears its incident and lets the lag recover), then each failover and its
failback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from test_playbooks_failover import BIN, PLAYBOOKS, Run, Sandbox, adapter_view, run_playbook

from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import DatabaseState, DbRole
from opsconsole.sandbox.localcloud import LocalCloud
from opsconsole.sandbox.state import WorldStore
from opsconsole.testing import FakeClock
from opsconsole.wiring import sandbox_emulators

pytestmark = pytest.mark.slow

AT = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
RPO_S = 300  # inventory group_vars/all.yml targets.rpo.database_s


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    fleet = load_inventory()
    tmp = tmp_path_factory.mktemp("failover-multicloud")
    clock = FakeClock(AT)
    store = WorldStore(tmp / "home", fleet, clock, seed=7)
    cloud = LocalCloud(store, sandbox_emulators(fleet))
    cloud.start()
    try:
        yield Sandbox(fleet, cloud, store, clock, tmp)
    finally:
        cloud.stop()


def connection(sb: Sandbox) -> dict[str, str]:
    """The GCP / Azure connection extravars, from the local cloud's Endpoints (as wiring.py maps them)."""
    ep = sb.cloud.endpoints
    return {
        "opsconsole_gcp_endpoint_url": ep["gcp_admin"].urls["gcp_admin"],
        "opsconsole_gcp_project": ep["gcp_admin"].settings["project"],
        "opsconsole_gcp_monitoring_endpoint": ep["gcp"].urls["gcp"],
        "opsconsole_azure_endpoint_url": ep["azure_admin"].urls["azure_admin"],
        "opsconsole_azure_subscription": ep["azure_admin"].settings["subscription"],
        "opsconsole_azure_monitor_endpoint_url": ep["azure"].urls["azure_metrics"],
    }


def run(sb: Sandbox, name: str, extravars: dict[str, Any], *, check: bool = False) -> Run:
    return run_playbook(sb, name, {**connection(sb), **extravars}, check=check)


def db_roles(sb: Sandbox) -> dict[str, tuple[DbRole, str | None]]:
    sb.cloud.sync()
    with sb.store.open() as world:
        return {r.region: (r.role, r.replicates_from) for r in world.observe()
                if isinstance(r, DatabaseState)}


def lag_of(sb: Sandbox, region: str) -> float:
    with sb.store.open() as world:
        return next(float(r.replica_lag_s) for r in world.observe()
                    if isinstance(r, DatabaseState) and r.region == region)


def write_primaries(sb: Sandbox, regions: set[str]) -> list[str]:
    """Write primaries among ``regions``, as the world sees them and as the AWS adapter agrees for RDS."""
    roles = db_roles(sb)
    return sorted(r for r in regions if roles[r][0] is DbRole.WRITE_PRIMARY)


def run_module(sb: Sandbox, module: str, args: dict[str, Any]) -> dict[str, Any]:
    """One of our modules, ad hoc (ansible localhost -m), in check mode; its JSON answer."""
    home = sb.tmp / "adhoc-home"
    home.mkdir(exist_ok=True)
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json",
           "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
           "ANSIBLE_MODULE_UTILS": str(PLAYBOOKS / "module_utils")}  # no playbook: not found beside it
    proc = subprocess.run(
        [str(BIN / "ansible"), "localhost", "-M", str(PLAYBOOKS / "library"), "-m", module,
         "-a", json.dumps(args), "-e", f"ansible_python_interpreter={sys.executable}", "--check"],
        env=env, cwd=home, capture_output=True, text=True, timeout=90, check=False)
    body = json.loads(proc.stdout[proc.stdout.index("{"):])
    return dict(body["plays"][0]["tasks"][0]["hosts"]["localhost"])


# -- the two modules, alone ---------------------------------------------------------------------------------


def test_gcp_module_reads_the_cloud_sql_replica_lag_read_only(sandbox: Sandbox) -> None:
    sandbox.cloud.sync()
    ep = connection(sandbox)
    args = {"project": ep["opsconsole_gcp_project"], "endpoint": ep["opsconsole_gcp_monitoring_endpoint"]}
    got = run_module(sandbox, "opsconsole_gcp_metric_value", {**args, "instance": "pg-ap-south-1"})
    assert got["found"] is True and got["changed"] is False, got
    assert got["value"] == pytest.approx(lag_of(sandbox, "ap-south-1"), abs=0.01)
    assert got["age_s"] >= 0 and got["timestamp"]
    # A write primary publishes no lag on Cloud SQL; an unknown instance neither.
    nowhere = run_module(sandbox, "opsconsole_gcp_metric_value", {**args, "instance": "pg-nowhere"})
    assert nowhere["found"] is False and not nowhere.get("failed"), nowhere
    missing = run_module(sandbox, "opsconsole_gcp_metric_value",
                         {**args, "instance": "pg-nowhere", "fail_on_missing": True})
    assert missing.get("failed") and "no data point of cloudsql.googleapis.com/database/replication" \
        "/replica_lag of Cloud SQL voltage-sandbox:pg-nowhere in the last 600 s" in missing["msg"]
    url = run_module(sandbox, "opsconsole_gcp_metric_value",
                     {**args, "instance": "pg-ap-south-1", "endpoint": "http://127.0.0.1:1"})
    assert url.get("failed") and "endpoint must be host:port" in url["msg"]


def test_azure_module_reads_the_replication_delay_read_only(sandbox: Sandbox) -> None:
    sandbox.cloud.sync()
    ep = connection(sandbox)
    args = {"subscription": ep["opsconsole_azure_subscription"], "resource_group": "rg-voltage-sa-east-1",
            "server": "pg-sa-east-1", "endpoint_url": ep["opsconsole_azure_monitor_endpoint_url"]}
    got = run_module(sandbox, "opsconsole_azure_metric_value", args)
    assert got["found"] is True and got["changed"] is False, got
    assert got["value"] == pytest.approx(lag_of(sandbox, "sa-east-1"), abs=0.01)
    bad = run_module(sandbox, "opsconsole_azure_metric_value", {**args, "metric_name": "no_such_metric"})
    assert bad.get("failed") and "HTTP 400" in bad["msg"] and "no_such_metric" in bad["msg"], bad
    live = run_module(sandbox, "opsconsole_azure_metric_value", {**args, "endpoint_url": ""})
    assert live.get("failed") and "location (the server's Azure region" in live["msg"], live


# -- refusals: lag above the RPO, nothing changed --------------------------------------------------------


def _refused_over_rpo(sb: Sandbox, source: str, target: str, where: str) -> None:
    with sb.store.open() as world:
        incident = world.trigger_incident("replica_lag_runaway", source)
    try:
        sb.clock.advance(12 * 60)  # 30 s of lag per sim minute: ~360 s, past the 300 s RPO
        before = sb.state()
        lag = lag_of(sb, target)
        assert lag > RPO_S
        result = run(sb, "failover.yml", {"from_region": source, "to_region": target})
        assert result.rc != 0
        message = result.failure()
        assert "gate replica_lag refused" in message, message
        assert f"the replica lag of pg-{target} is {round(lag, 1)} s on {where}" in message, message
        assert f"the RPO is {RPO_S} s" in message and "Nothing was changed" in message
        assert "gate health passed" in result.messages()
        assert result.stats["changed"] == 0
        assert sb.state() == before
    finally:
        with sb.store.open() as world:
            world.clear_incident(incident.id)
        sb.clock.advance(5 * 60)  # recovers at 300 s per sim minute
        sb.cloud.sync()
    assert lag_of(sb, target) < RPO_S


@pytest.mark.timeout(240)
def test_lag_over_the_rpo_refuses_a_failover_to_cloud_sql(sandbox: Sandbox) -> None:
    _refused_over_rpo(sandbox, "ap-southeast-1", "ap-south-1", "Cloud SQL (Cloud Monitoring replica_lag)")


@pytest.mark.timeout(240)
def test_lag_over_the_rpo_refuses_a_failover_to_azure_postgresql(sandbox: Sandbox) -> None:
    _refused_over_rpo(sandbox, "us-east-1", "sa-east-1",
                      "Azure PostgreSQL (Azure Monitor physical_replication_delay_in_seconds)")


@pytest.mark.timeout(240)
def test_check_mode_passes_the_cloud_sql_lag_gate_and_changes_nothing(sandbox: Sandbox) -> None:
    before = sandbox.state()
    result = run(sandbox, "failover.yml", {"from_region": "ap-southeast-1", "to_region": "ap-south-1",
                                           "weight_steps": [100]}, check=True)
    assert result.rc == 0, result.failure() or result.stderr[-2000:]
    assert "gate replica_lag passed: pg-ap-south-1 on Cloud SQL (Cloud Monitoring replica_lag):" \
        in result.messages()
    assert sandbox.state() == before


# -- failover promotes, failback restores one write primary ----------------------------------------------


def _failover_and_back(sb: Sandbox, source: str, target: str, where: str) -> None:
    before = db_roles(sb)
    assert before[target] == (DbRole.READ_REPLICA, source)
    assert before[source] == (DbRole.WRITE_PRIMARY, None)
    result = run(sb, "failover.yml", {"from_region": source, "to_region": target,
                                      "weight_steps": [50, 100], "step_wait_s": 0})
    assert result.rc == 0, result.failure() or result.stderr[-2000:]
    shown = result.messages()
    assert f"gate replica_lag passed: pg-{target} on {where}:" in shown, shown
    assert "gate headroom passed" in shown and "gate residency passed" in shown
    cloud = sb.fleet.regions[target].database.cloud.value
    assert f"verified: pg-{target} on {cloud} is a standalone write primary" in shown, shown
    after = sb.state()
    assert after["dns"][source] == {target: 100}
    assert db_roles(sb)[target] == (DbRole.WRITE_PRIMARY, None)
    assert write_primaries(sb, {source, target}) == sorted([source, target])  # the failover's split
    assert [t["step"] for t in result.timings][-3:] == ["promote_database", "verify", "total"]

    back = run(sb, "failback.yml", {"region": source})
    assert back.rc == 0, back.failure() or back.stderr[-2000:]
    restored = sb.state()
    assert restored["dns"][source] == {source: 100}
    roles = db_roles(sb)
    assert roles[target] == (DbRole.READ_REPLICA, source)
    assert roles[source] == (DbRole.WRITE_PRIMARY, None)
    assert write_primaries(sb, {source, target}) == [source]
    seen = adapter_view(sb)[f"database/{source}"]  # the RDS primary, as the AWS adapter reads it
    assert isinstance(seen, DatabaseState) and seen.role is DbRole.WRITE_PRIMARY


@pytest.mark.timeout(480)  # two playbook runs on a loaded 2-core machine
def test_failover_to_cloud_sql_promotes_and_failback_restores(sandbox: Sandbox) -> None:
    _failover_and_back(sandbox, "ap-southeast-1", "ap-south-1", "Cloud SQL (Cloud Monitoring replica_lag)")


@pytest.mark.timeout(480)
def test_failover_to_azure_postgresql_promotes_and_failback_restores(sandbox: Sandbox) -> None:
    _failover_and_back(sandbox, "us-east-1", "sa-east-1",
                       "Azure PostgreSQL (Azure Monitor physical_replication_delay_in_seconds)")
