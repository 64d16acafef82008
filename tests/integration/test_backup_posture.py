"""Backup posture on the local cloud (issue 14): the seed's RDS databases keep 30 days of point-in-time
recovery, so the seeded fleet has no backup finding; a client's ModifyDBInstance lowering one database's
BackupRetentionPeriod (a plain boto3 client on the emulator's endpoint) survives the local cloud's syncs,
is read by the real AWS adapter and judged; raising it back clears the finding.

Only the AWS emulator is started (the retention is read from RDS only): the GCP and Azure sources read
monitoring, not their databases' backup settings, so those databases carry no retention and are not judged.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from opsconsole.core.fleet.findings import Finding, FindingKind, evaluate
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import Cloud, DatabaseState, DbRole, Fleet, Severity
from opsconsole.providers.aws import AwsSource
from opsconsole.sandbox.aws import AwsCloud
from opsconsole.sandbox.localcloud import LocalCloud
from opsconsole.sandbox.state import WorldStore
from opsconsole.testing import FakeClock, snapshot_of

AT = datetime(2026, 11, 26, 18, 30, tzinfo=UTC)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_inventory()


@pytest.fixture(scope="module")
def local_cloud(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    home = tmp_path_factory.mktemp("backup-home")
    cloud = LocalCloud(WorldStore(home, fleet, FakeClock(AT), seed=7), [AwsCloud(fleet)])
    cloud.start()
    yield cloud
    cloud.stop()


def rds_client(cloud: LocalCloud, aws_region: str) -> Any:
    endpoints = cloud.endpoints["aws"]
    s = endpoints.settings
    return boto3.Session(
        aws_access_key_id=s["aws_access_key_id"], aws_secret_access_key=s["aws_secret_access_key"],
        aws_session_token=s["aws_session_token"], region_name=aws_region,
    ).client("rds", endpoint_url=endpoints.urls["aws"])


def observe(fleet: Fleet, cloud: LocalCloud) -> tuple[dict[str, DatabaseState], list[Finding]]:
    """The databases and the backup findings, as the real AWS adapter reads the emulator now."""
    reading = AwsSource.from_endpoints(fleet, cloud.endpoints["aws"], timeout_s=20.0).read()  # loaded box
    assert reading.problems == (), reading.problems
    databases = {r.region: r for r in reading.records if isinstance(r, DatabaseState)}
    findings = [f for f in evaluate(fleet, snapshot_of(reading.records))
                if f.kind is FindingKind.BACKUP_RETENTION]
    return databases, findings


def test_lowered_retention_is_judged_survives_syncs_and_clears(fleet: Fleet, local_cloud: LocalCloud) -> None:
    aws_regions = sorted(r.id for r in fleet.regions.values() if r.database.cloud is Cloud.AWS)
    assert aws_regions
    databases, findings = observe(fleet, local_cloud)
    assert set(databases) == set(aws_regions)
    # Observed, not assumed: every RDS database reports its retention, and the seed's is 30 days.
    assert {rid: db.extra.get("backup_retention_days") for rid, db in databases.items()} == {
        rid: 30 for rid in aws_regions}
    assert findings == []

    rid = next(r for r in aws_regions if fleet.regions[r].database.role is DbRole.WRITE_PRIMARY)
    rds = rds_client(local_cloud, fleet.regions[rid].cloud_regions[Cloud.AWS])
    rds.modify_db_instance(DBInstanceIdentifier=f"pg-{rid}", BackupRetentionPeriod=7, ApplyImmediately=True)
    for _ in range(2):  # collect, advance, publish: the world's state must not write the retention back
        local_cloud.sync()
    described = rds.describe_db_instances(DBInstanceIdentifier=f"pg-{rid}")["DBInstances"][0]
    assert described["BackupRetentionPeriod"] == 7

    databases, findings = observe(fleet, local_cloud)
    assert databases[rid].extra["backup_retention_days"] == 7
    assert [(f.id, f.severity, f.region, f.measured, f.target) for f in findings] == [
        (f"backup_retention:backup/{rid}", Severity.HIGH, rid, 7, 30)]
    assert findings[0].suggested_action is None
    assert "raise the backup retention" in findings[0].evidence["fix"]

    rds.modify_db_instance(DBInstanceIdentifier=f"pg-{rid}", BackupRetentionPeriod=30, ApplyImmediately=True)
    local_cloud.sync()
    databases, findings = observe(fleet, local_cloud)
    assert databases[rid].extra["backup_retention_days"] == 30
    assert findings == []
