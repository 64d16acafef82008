"""Entering WAL mode while another opener holds the lock (two replicas opening a fresh store at once).

SQLite can answer the WAL switch "database is locked" at once, without its busy handler, when waiting
could deadlock. CI met that as one of two processes failing to open a fresh store; these tests pin the
retry that waits the other opener out, and its bound.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from opsconsole.core.store.db import enter_wal_mode


class _RecordingCursor:
    """A real cursor that signals its first failed statement, so the test releases the lock after it."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor
        self.failures: list[sqlite3.Error] = []
        self.failed_once = threading.Event()

    def execute(self, sql: str, /) -> object:
        try:
            return self._cursor.execute(sql)
        except sqlite3.Error as exc:
            self.failures.append(exc)
            self.failed_once.set()
            raise


def _fresh_pair(path: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x INTEGER)")
    # timeout=0: the opener gets SQLITE_BUSY at once, as it does from the deadlock-avoiding path.
    opener = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
    return holder, opener


def test_the_wal_switch_waits_out_another_opener_holding_the_lock(tmp_path: Path) -> None:
    holder, opener = _fresh_pair(tmp_path / "store.db")
    holder.execute("BEGIN EXCLUSIVE")
    cursor = _RecordingCursor(opener.cursor())
    done = threading.Event()
    errors: list[BaseException] = []

    def switch() -> None:
        try:
            enter_wal_mode(cursor, within_s=30)
        except BaseException as exc:
            errors.append(exc)
        done.set()

    threading.Thread(target=switch, daemon=True).start()
    assert cursor.failed_once.wait(30), "the switch never met the held lock"
    holder.execute("COMMIT")
    assert done.wait(30), "the switch did not finish after the lock was released"
    assert errors == []
    codes = {getattr(f, "sqlite_errorcode", None) for f in cursor.failures}
    assert codes == {sqlite3.SQLITE_BUSY}
    assert opener.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    holder.close()
    opener.close()


def test_the_wal_switch_gives_up_locked_after_its_bound(tmp_path: Path) -> None:
    holder, opener = _fresh_pair(tmp_path / "store.db")
    holder.execute("BEGIN EXCLUSIVE")
    cursor = _RecordingCursor(opener.cursor())
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        enter_wal_mode(cursor, within_s=0.3)
    assert len(cursor.failures) >= 2  # it retried before giving up
    holder.execute("COMMIT")
    holder.close()
    opener.close()


def test_an_error_that_is_not_a_lock_is_raised_at_once(tmp_path: Path) -> None:
    (tmp_path / "store.db").write_bytes(b"this is not a database" * 100)
    opener = sqlite3.connect(tmp_path / "store.db", isolation_level=None, timeout=0)
    cursor = _RecordingCursor(opener.cursor())
    with pytest.raises(sqlite3.DatabaseError):
        enter_wal_mode(cursor, within_s=30)
    assert len(cursor.failures) == 1  # not retried
    opener.close()
