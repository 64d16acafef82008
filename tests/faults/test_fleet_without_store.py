"""Reading the fleet does not need the store: issue 17, item 5 (with PostgreSQL down even read-only
``fleet status`` refused to show the fleet). The embedded server serves the fleet without a store and
says, in one line, why approvals, jobs and audit are unavailable; those answer one error line each.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opsconsole.testing.postgres import ThrowawayPostgres

from .store_cli import error_lines, run


def _shows_the_fleet(home: Path, env: dict[str, str] | None = None) -> str:
    status = run(home, "fleet", "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert document["totals"]["regions_reporting"] == document["totals"]["regions_total"] > 0
    assert not error_lines(status)
    return status.stderr


def test_a_missing_sqlite_store_still_shows_the_fleet(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run(home, "jobs", "list").returncode == 0
    (home / "opsconsole.db").unlink()
    note = _shows_the_fleet(home)
    assert "note" in note and "store missing" in note and "approvals, jobs and audit are unavailable" in note
    table = run(home, "fleet", "status")
    assert table.returncode == 0 and "us-east-1" in table.stdout
    refused = run(home, "approvals", "list")
    assert refused.returncode == 1 and len(error_lines(refused)) == 1
    assert not (home / "opsconsole.db").exists()


@pytest.mark.slow
def test_postgresql_down_still_shows_the_fleet(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with ThrowawayPostgres() as server:
        env = {"OPSCONSOLE_DB_URL": server.create_database("fleet_reads")}
        assert run(home, "jobs", "list", env=env).returncode == 0
        server.halt()
        try:
            note = _shows_the_fleet(home, env)
            assert "store unreachable" in note and "fleet_reads" in note
            for args in (("approvals", "list"), ("jobs", "list"), ("audit", "log")):
                refused = run(home, *args, env=env)
                assert refused.returncode == 1, (args, refused.stderr)
                (line,) = error_lines(refused)
                assert "store unreachable" in line
        finally:
            server.resume()
        back = run(home, "jobs", "list", env=env)
        assert back.returncode == 0 and not back.stderr.strip()
