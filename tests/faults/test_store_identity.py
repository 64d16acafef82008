"""A store has an identity: deleted, replaced, read-only or full, it is refused with one clear line —
never silently recreated — and accepted again only on purpose (``opsconsole store adopt``).

Issue 17, item 4 (the SQLite file deleted mid-run: every later command silently made an empty store) and
item 9 (an uncreatable home, a full disk: tracebacks).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, inspect, text

from opsconsole.core.store.db import (
    STORE_RECORD,
    Database,
    StoreMissing,
    StoreReplaced,
    adopt_store,
    recorded_store,
    store_identity,
)
from opsconsole.testing.postgres import ThrowawayPostgres

from .store_cli import error_lines, fill, read_only, run, store_id_in, tiny_disk


def _first_use(home: Path) -> str:
    result = run(home, "jobs", "list")
    assert result.returncode == 0, result.stderr
    record = json.loads((home / STORE_RECORD).read_text())["stores"]
    (entry,) = record.values()
    assert entry["store_id"] == store_id_in(home / "opsconsole.db")
    return str(entry["store_id"])


def _remove_store(home: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{home / 'opsconsole.db'}{suffix}").unlink(missing_ok=True)


def test_the_first_use_of_a_home_creates_the_store_and_records_its_id(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store_id = _first_use(home)
    assert len(store_id) == 32
    again = run(home, "jobs", "list")
    assert again.returncode == 0 and store_id_in(home / "opsconsole.db") == store_id


def test_a_deleted_store_is_refused_and_not_recreated(tmp_path: Path) -> None:
    home = tmp_path / "home"
    old = _first_use(home)
    _remove_store(home)
    for args in (("jobs", "list"), ("approvals", "list"), ("audit", "verify")):
        refused = run(home, *args)
        assert refused.returncode == 1, (args, refused.stdout, refused.stderr)
        (line,) = error_lines(refused)
        assert "store missing" in line and str(home / "opsconsole.db") in line
        assert "opsconsole store adopt" in line and old[:12] in line
        assert "intact" not in refused.stdout
        assert not (home / "opsconsole.db").exists()  # never silently recreated
    adopted = run(home, "store", "adopt", "--yes")
    assert adopted.returncode == 0, adopted.stderr
    new = store_id_in(home / "opsconsole.db")
    assert new is not None and new != old and new[:12] in adopted.stdout
    assert run(home, "jobs", "list").returncode == 0


def test_a_replaced_store_is_refused_until_adopted(tmp_path: Path) -> None:
    home, other = tmp_path / "home", tmp_path / "other"
    mine, theirs = _first_use(home), _first_use(other)
    _remove_store(home)
    shutil.copy(other / "opsconsole.db", home / "opsconsole.db")
    refused = run(home, "jobs", "list")
    assert refused.returncode == 1
    (line,) = error_lines(refused)
    assert "store replaced" in line and mine[:12] in line and theirs[:12] in line
    not_asked = run(home, "store", "adopt")  # piped: nothing is accepted without --yes
    assert not_asked.returncode == 2 and "--yes" in not_asked.stderr
    assert run(home, "jobs", "list").returncode == 1
    assert run(home, "store", "adopt", "--yes").returncode == 0
    assert run(home, "jobs", "list").returncode == 0
    assert json.loads((home / STORE_RECORD).read_text())["stores"].popitem()[1]["store_id"] == theirs


def test_a_postgresql_store_emptied_or_replaced_is_refused(postgres_server: ThrowawayPostgres,
                                                           tmp_path: Path) -> None:
    name = f"identity_{tmp_path.name[-8:].replace('-', '_').lower()}"
    url = postgres_server.create_database(name)
    first = Database(url, world="sandbox")
    recorded = recorded_store(first.url)
    assert recorded is not None and recorded.store_id == first.store_id
    with first.engine.begin() as conn:  # another store's identity at the same address
        conn.execute(text("UPDATE store_meta SET value = 'f' || value WHERE key = 'store_id'"))
    first.close()
    with pytest.raises(StoreReplaced, match="not the store this home uses"):
        Database(url)
    # The database dropped and created again, empty: refused, and nothing is created in it.
    with psycopg.connect(host="127.0.0.1", port=postgres_server.port, user=postgres_server.user,
                         dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    with pytest.raises(StoreMissing, match="store adopt"):
        Database(url, world="sandbox")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert inspect(conn).get_table_names() == []
    finally:
        engine.dispose()
    before, now = adopt_store(url, world="sandbox")
    assert before == recorded and now.store_id != recorded.store_id
    again = Database(url, world="sandbox")
    try:
        assert store_identity(again) == now.store_id
    finally:
        again.close()


@pytest.mark.slow
def test_the_cli_records_and_refuses_a_postgresql_store(tmp_path: Path) -> None:
    with ThrowawayPostgres() as server:
        url = server.create_database("cli_identity")
        home = tmp_path / "home"
        env = {"OPSCONSOLE_DB_URL": url}
        assert run(home, "jobs", "list", env=env).returncode == 0
        record = json.loads((home / STORE_RECORD).read_text())["stores"]
        assert list(record) == [url]
        with psycopg.connect(host="127.0.0.1", port=server.port, user=server.user, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute('DROP DATABASE "cli_identity" WITH (FORCE)')
            conn.execute('CREATE DATABASE "cli_identity"')
        refused = run(home, "approvals", "list", env=env)
        assert refused.returncode == 1
        (line,) = error_lines(refused)
        assert "store missing" in line and "cli_identity" in line


def test_a_read_only_store_is_one_line_and_exit_2(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store_id = _first_use(home)
    with read_only(home):
        refused = run(home, "jobs", "list")
        assert refused.returncode == 2, refused.stderr
        (line,) = error_lines(refused)
        assert "read-only" in line and str(home) in line
    assert store_id_in(home / "opsconsole.db") == store_id
    assert run(home, "jobs", "list").returncode == 0


def test_a_full_disk_is_one_line_and_exit_1_and_nothing_is_lost(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk") as disk:
        home = disk / "home"
        store_id = _first_use(home)
        filler = fill(disk)
        for args in (("jobs", "list"), ("approvals", "list")):
            refused = run(home, *args)
            assert refused.returncode == 1, (args, refused.stderr)
            (line,) = error_lines(refused)
            assert "full" in line and str(home / "opsconsole.db") in line
        filler.unlink()
        assert run(home, "jobs", "list").returncode == 0
        assert store_id_in(home / "opsconsole.db") == store_id


@pytest.mark.parametrize("how", ["missing parent", "a file"])
def test_an_uncreatable_home_is_a_usage_error(tmp_path: Path, how: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    home = blocker / "home" if how == "a file" else Path("/proc/opsconsole-no-such/home")
    refused = run(home, "jobs", "list")
    assert refused.returncode == 2
    (line,) = error_lines(refused)
    assert "OPSCONSOLE_HOME" in line and str(home) in line
