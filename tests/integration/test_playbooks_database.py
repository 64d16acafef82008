"""playbooks/database.yml on RDS, run for real (ansible-playbook in a subprocess) against a local cloud.

The same harness as test_playbooks_failover.py (one local cloud for the module, a world on a fake clock,
no driver: each test syncs by hand). Tests run in file order and share the world: the refusals and the
previews first, then a promotion of Frankfurt's replica and its demotion back (RDS has no demotion: the
playbook re-seeds the instance with CreateDBInstanceReadReplica, the AWS emulator's collect turns that
into ``world.demote_to_replica``). Effects are read from the world and through the real AWS adapter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from test_playbooks_failover import Sandbox, adapter_view, run_playbook

from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import DatabaseState, DbRole
from opsconsole.sandbox.localcloud import LocalCloud
from opsconsole.sandbox.state import WorldStore
from opsconsole.testing import FakeClock
from opsconsole.wiring import sandbox_emulators

pytestmark = pytest.mark.slow

AT = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    fleet = load_inventory()
    tmp = tmp_path_factory.mktemp("database")
    clock = FakeClock(AT)
    store = WorldStore(tmp / "home", fleet, clock, seed=7)
    cloud = LocalCloud(store, sandbox_emulators(fleet))
    cloud.start()
    try:
        yield Sandbox(fleet, cloud, store, clock, tmp)
    finally:
        cloud.stop()


def _replicas(sb: Sandbox, region: str) -> int:
    with sb.store.open() as world:
        return next(r.read_replicas for r in world.observe()
                    if isinstance(r, DatabaseState) and r.region == region)


def _diffs(run: object) -> str:
    results = run.task_results()  # type: ignore[attr-defined]
    return json.dumps([r["diff"] for _, r in results if r.get("diff")])


def test_refusals_change_nothing(sandbox: Sandbox) -> None:
    before = sandbox.state()
    cases = [
        ({"db_change": "promote", "region": "eu-west-1"}, "gate role refused",
         "pg-eu-west-1 is already a standalone write primary"),
        ({"db_change": "demote", "region": "eu-central-1", "source_region": "us-east-1"},
         "gate source refused", "zone us"),
        ({"db_change": "demote", "region": "eu-west-1"}, "gate source refused",
         "eu-west-1 replicates from nothing in the inventory"),
        ({"db_change": "demote", "region": "eu-central-1", "source_region": "eu-central-1"},
         "gate source refused", "eu-central-1"),
        ({"db_change": "rename", "region": "eu-central-1"}, "needs db_change", "rename"),
    ]
    for extravars, gate, detail in cases:
        run = run_playbook(sandbox, "database.yml", extravars)
        assert run.rc != 0, extravars
        assert gate in run.failure() and detail in run.failure(), (extravars, run.failure())
        assert run.stats["changed"] == 0
    assert sandbox.state() == before


def test_promote_previews_then_promotes_then_is_idempotent(sandbox: Sandbox) -> None:
    before = sandbox.state()
    assert before["db"]["eu-central-1"] == (DbRole.READ_REPLICA, "eu-west-1")
    ask = {"db_change": "promote", "region": "eu-central-1"}

    preview = run_playbook(sandbox, "database.yml", ask, check=True)
    assert preview.rc == 0, preview.failure() or preview.stderr[-2000:]
    assert preview.stats["changed"] == 1
    assert '"role": "standalone"' in _diffs(preview) and '"role": "read_replica"' in _diffs(preview)
    assert sandbox.state() == before

    run = run_playbook(sandbox, "database.yml", ask)
    assert run.rc == 0, run.failure() or run.stderr[-2000:]
    assert run.stats["changed"] == 1
    assert [t["step"] for t in run.timings] == ["pre_checks", "promote_database", "verify", "total"]
    assert "gate health passed" in run.messages()
    after = sandbox.state()
    assert after["db"]["eu-central-1"] == (DbRole.WRITE_PRIMARY, None)
    db = adapter_view(sandbox)["database/eu-central-1"]
    assert isinstance(db, DatabaseState) and db.role is DbRole.WRITE_PRIMARY and db.replicates_from is None

    again = run_playbook(sandbox, "database.yml", ask)
    assert again.rc == 0, again.failure()
    assert again.stats["changed"] == 0
    assert sandbox.state() == after


def test_demote_reseeds_the_replica_then_is_idempotent(sandbox: Sandbox) -> None:
    before = sandbox.state()
    assert before["db"]["eu-central-1"] == (DbRole.WRITE_PRIMARY, None)  # promoted by the test above
    replicas = _replicas(sandbox, "eu-central-1")
    ask = {"db_change": "demote", "region": "eu-central-1"}  # source: the inventory's replicates_from

    preview = run_playbook(sandbox, "database.yml", ask, check=True)
    assert preview.rc == 0, preview.failure() or preview.stderr[-2000:]
    shown = _diffs(preview)
    assert '"role": "read_replica"' in shown and ":db:pg-eu-west-1" in shown
    assert sandbox.state() == before

    run = run_playbook(sandbox, "database.yml", ask)
    assert run.rc == 0, run.failure() or run.stderr[-2000:]
    assert run.stats["changed"] == 1
    assert "verified: pg-eu-central-1 is a read replica of" in run.messages()
    assert [t["step"] for t in run.timings] == ["pre_checks", "demote_database", "verify", "total"]
    after = sandbox.state()
    assert after["db"]["eu-central-1"] == (DbRole.READ_REPLICA, "eu-west-1")
    assert after["db"]["eu-west-1"] == (DbRole.WRITE_PRIMARY, None)
    assert _replicas(sandbox, "eu-central-1") == replicas  # its own replicas came back under it
    db = adapter_view(sandbox)["database/eu-central-1"]
    assert isinstance(db, DatabaseState) and db.role is DbRole.READ_REPLICA
    assert db.replicates_from == "eu-west-1"

    again = run_playbook(sandbox, "database.yml", ask)
    assert again.rc == 0, again.failure()
    assert again.stats["changed"] == 0
    assert sandbox.state() == after
