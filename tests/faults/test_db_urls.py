"""A database URL that does not parse is refused (exit 2, naming the variable and the accepted forms),
never treated as a path: issue 17, item 3 (``OPSCONSOLE_DB_URL`` without a scheme: ``approvals`` crashed
while ``act`` silently ran against a new SQLite file under the current directory) and item 9 (``foo://``,
``mysql://`` gave tracebacks).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from opsconsole.core.errors import UsageError
from opsconsole.core.store.db import Database, checked_url
from opsconsole.server.settings import ServerSettings
from opsconsole.testing.postgres import ThrowawayPostgres

from .store_cli import OPSCONSOLE, environment, error_lines, run

BAD_URLS = ["opsconsole.db", "foo://", "mysql://ops:s3cret@db.internal/ops", "sqlite:///relative.db",
            "sqlite://", "postgresql+psycopg2://db.internal/ops"]


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("command", [("approvals", "list"), ("act", "env", "stop", "dev", "--dry-run")])
def test_a_bad_url_is_exit_2_naming_the_variable_and_creates_nothing(
        tmp_path: Path, url: str, command: tuple[str, ...]) -> None:
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    refused = run(home, *command, env={"OPSCONSOLE_DB_URL": url}, cwd=cwd)
    assert refused.returncode == 2, refused.stderr
    (line,) = error_lines(refused)
    assert "OPSCONSOLE_DB_URL" in line and "sqlite:///" in line and "postgresql://" in line
    assert "s3cret" not in refused.stderr
    assert list(cwd.iterdir()) == []  # no store made under the current directory
    assert not (home / "opsconsole.db").exists()


def test_the_server_refuses_to_start_on_a_bad_url(tmp_path: Path) -> None:
    env = environment(tmp_path / "home", OPSCONSOLE_DB_URL="foo://nowhere", OPSCONSOLE_SERVER_PORT="0")
    result = subprocess.run([OPSCONSOLE, "server"], capture_output=True, text=True, timeout=120, env=env,
                            check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "OPSCONSOLE_DB_URL" in result.stderr and "postgresql://" in result.stderr
    with pytest.raises(UsageError, match="OPSCONSOLE_DB_URL"):
        ServerSettings.from_environment({"OPSCONSOLE_DB_URL": "mysql://x/y"})


@pytest.mark.parametrize("url", BAD_URLS)
def test_the_library_refuses_the_same_urls(url: str) -> None:
    with pytest.raises(UsageError) as refused:
        Database(url)
    assert "s3cret" not in refused.value.message


def test_the_accepted_forms(tmp_path: Path) -> None:
    assert checked_url(f"sqlite:///{tmp_path}/a.db") == f"sqlite:///{tmp_path}/a.db"
    assert checked_url("postgresql://ops@db:5432/ops") == "postgresql+psycopg://ops@db:5432/ops"
    assert checked_url("postgres://ops@db/ops") == "postgresql+psycopg://ops@db/ops"
    assert checked_url(" postgresql+psycopg://ops@db/ops ") == "postgresql+psycopg://ops@db/ops"


def test_a_plain_postgresql_url_opens_with_psycopg(postgres_server: ThrowawayPostgres) -> None:
    url = postgres_server.create_database("plain_scheme")
    database = Database(url.replace("postgresql+psycopg://", "postgresql://"), world="sandbox")
    try:
        assert database.url.startswith("postgresql+psycopg://") and database.store_id
    finally:
        database.close()
