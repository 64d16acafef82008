"""`opsconsole audit verify` and `opsconsole audit log` as an SRE runs them, on the home's SQLite file."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_process import cli

from opsconsole.core.audit.log import AuditLog
from opsconsole.core.audit.records import AuditEntry, AuditKind
from opsconsole.core.store.db import DB_FILE, Database
from opsconsole.testing import FakeClock


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def entries(home: Path) -> list[AuditEntry]:
    """Two entries from long ago (a fake clock), then two from now."""
    database = Database(home)
    try:
        old = AuditLog(database, clock=FakeClock(datetime(2025, 1, 6, 12, 0, tzinfo=UTC)))
        recent = AuditLog(database)
        return [
            old.append(AuditKind.REQUEST_FILED, actor="alice", face="cli", request_id="req1",
                       data={"action": "scale", "params": {"replicas": 6}}),
            old.append(AuditKind.VOTE_APPROVE, actor="bob", face="slack", request_id="req1", data={}),
            recent.append(AuditKind.RUN_STARTED, actor="alice", face="tui", request_id="req1", job_id="job1",
                          data={"playbook": "scale.yml"}),
            recent.append(AuditKind.OVERRIDE_SET, actor="carol", face="slack", data={"env": "staging"}),
        ]
    finally:
        database.close()


def test_verify_an_intact_log(home: Path, entries: list[AuditEntry]) -> None:
    result = cli(home, "audit", "verify")
    assert result.stdout.strip() == (f"audit log intact: 4 entries, head #4 {entries[-1].hash[:12]}; "
                                     "every request agrees with it")


def test_log_as_a_table_and_as_json_with_filters(home: Path, entries: list[AuditEntry]) -> None:
    table = cli(home, "audit", "log").stdout
    for word in ("request_filed", "vote_approve", "run_started", "override_set", "carol",
                 "2025-01-06 12:00:00"):
        assert word in table, table
    everything = json.loads(cli(home, "audit", "log", "--json").stdout)
    assert everything == [json.loads(json.dumps(entry.document())) for entry in entries]
    recent = json.loads(cli(home, "audit", "log", "--since", "2h", "--json").stdout)
    assert [e["seq"] for e in recent] == [3, 4]
    since_iso = json.loads(cli(home, "audit", "log", "--since", "2025-01-06T11:00Z", "--request", "req1",
                               "--kind", "vote_approve", "--kind", "run_started", "--json").stdout)
    assert [e["seq"] for e in since_iso] == [2, 3]
    assert [e["seq"] for e in json.loads(cli(home, "audit", "log", "-n", "1", "--json").stdout)] == [4]


def test_verify_names_an_entry_edited_with_raw_sql(home: Path, entries: list[AuditEntry]) -> None:
    with sqlite3.connect(home / DB_FILE) as conn:
        conn.execute("UPDATE audit_log SET data = ? WHERE seq = 2", ('{"note": "approved by the CTO"}',))
    result = cli(home, "audit", "verify", ok=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("audit log broken: entry 2 was changed after it was written "
            "(its hash does not match its content)") in result.stdout
    bad = "first bad entry: #2 2025-01-06 12:00:00 UTC vote_approve by bob (slack) request req1"
    assert bad in result.stdout
    as_json = json.loads(cli(home, "audit", "verify", "--json", ok=False).stdout)
    assert (as_json["ok"], as_json["first_bad_seq"], as_json["entry"]["actor"]) == (False, 2, "bob")


def test_a_bad_since_is_a_usage_error(home: Path, entries: list[AuditEntry]) -> None:
    result = cli(home, "audit", "log", "--since", "yesterday", ok=False)
    assert result.returncode == 2
    assert "--since yesterday: expected an ISO-8601 time" in result.stderr
    assert "or a duration such as 30m, 2h, 7d" in result.stderr


def test_a_row_edited_into_invalid_json_is_reported_and_still_listed(
    home: Path, entries: list[AuditEntry]
) -> None:
    with sqlite3.connect(home / DB_FILE) as conn:
        conn.execute("UPDATE audit_log SET data = '{not json' WHERE seq = 3")
    result = cli(home, "audit", "verify", ok=False)
    assert result.returncode == 1
    assert "entry 3 was changed after it was written (its data is not valid JSON)" in result.stdout
    listed = json.loads(cli(home, "audit", "log", "--json").stdout)
    assert listed[2]["data"] == {"unreadable": "{not json"}
