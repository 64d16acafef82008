"""Backup posture against the seed (issue 14): a database's observed backup retention below the 30-day
point-in-time recovery target is a finding; an unobserved retention is no finding and no claim.

Built like tests/unit/test_findings_targets.py: the kit's healthy records of the seed fleet (which carry
no retention: not observed), one database given a retention, and the finding checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

import opsconsole.testing as testing_kit
from opsconsole.core.fleet.engine import Snapshot
from opsconsole.core.fleet.findings import Finding, FindingKind, evaluate
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import DatabaseState, DbRole, Fleet, Severity
from opsconsole.testing import healthy_records, replace_record, snapshot_of


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_inventory()


@pytest.fixture
def healthy(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Snapshot:
    monkeypatch.setattr(testing_kit, "_NODE_FILL", 0.0)
    snap = snapshot_of(healthy_records(fleet))
    assert evaluate(fleet, snap) == []
    return snap


def backups(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.kind is FindingKind.BACKUP_RETENTION]


def with_retention(snap: Snapshot, region: str, days: Any) -> Snapshot:
    db = snap.get(f"database/{region}")
    assert isinstance(db, DatabaseState)
    return replace_record(snap, f"database/{region}", extra={**db.extra, "backup_retention_days": days})


def region_with_role(fleet: Fleet, role: DbRole) -> str:
    return next(r.id for r in sorted(fleet.regions.values(), key=lambda r: r.id) if r.database.role is role)


def test_unobserved_retention_is_no_finding(fleet: Fleet, healthy: Snapshot) -> None:
    for rid in fleet.regions:
        db = healthy.get(f"database/{rid}")
        assert isinstance(db, DatabaseState) and "backup_retention_days" not in db.extra
    assert backups(evaluate(fleet, healthy)) == []


def test_retention_at_or_over_the_target_is_no_finding(fleet: Fleet, healthy: Snapshot) -> None:
    assert fleet.targets.backup_pitr_days == 30
    snap = with_retention(healthy, "us-east-1", 30)
    snap = with_retention(snap, "eu-west-1", 35)
    assert evaluate(fleet, snap) == []


def test_write_primary_under_the_pitr_target_is_high(fleet: Fleet, healthy: Snapshot) -> None:
    rid = region_with_role(fleet, DbRole.WRITE_PRIMARY)
    found = backups(evaluate(fleet, with_retention(healthy, rid, 7)))
    assert len(found) == 1
    f = found[0]
    assert (f.id, f.severity, f.region, f.measured, f.target) == (
        f"backup_retention:backup/{rid}", Severity.HIGH, rid, 7, 30)
    assert f.suggested_action is None
    assert f.evidence["backup_retention_days"] == 7 and f.evidence["pitr_target_days"] == 30
    assert f.evidence["role"] == "write_primary"
    assert "raise the backup retention" in f.evidence["fix"] and "30 days" in f.evidence["fix"]
    assert "7 days" in f.title and "30-day" in f.title


def test_replica_under_the_pitr_target_is_medium(fleet: Fleet, healthy: Snapshot) -> None:
    rid = region_with_role(fleet, DbRole.READ_REPLICA)
    f = backups(evaluate(fleet, with_retention(healthy, rid, 29)))
    assert [(x.severity, x.region, x.measured) for x in f] == [(Severity.MEDIUM, rid, 29)]


def test_backups_off_say_so(fleet: Fleet, healthy: Snapshot) -> None:
    rid = region_with_role(fleet, DbRole.WRITE_PRIMARY)
    [f] = backups(evaluate(fleet, with_retention(healthy, rid, 0)))
    assert "automated backups are off" in f.title and f.measured == 0


def test_finding_clears_when_the_retention_is_raised(fleet: Fleet, healthy: Snapshot) -> None:
    rid = region_with_role(fleet, DbRole.WRITE_PRIMARY)
    low = with_retention(healthy, rid, 1)
    assert len(backups(evaluate(fleet, low))) == 1
    assert backups(evaluate(fleet, with_retention(low, rid, 30))) == []


@pytest.mark.parametrize("junk", [None, "30", 7.0, True])
def test_a_retention_that_is_not_a_day_count_is_not_judged(
    fleet: Fleet, healthy: Snapshot, junk: Any
) -> None:
    assert backups(evaluate(fleet, with_retention(healthy, "us-east-1", junk))) == []
