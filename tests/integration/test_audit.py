"""The audit log on both back ends: round trips, filters, concurrency, and tampering found where it was done.

Every tampering here is done the way someone with database access would: raw SQL on the tables.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from opsconsole.core.audit.log import AuditError, AuditLog
from opsconsole.core.audit.records import GENESIS_HASH, AuditEntry, AuditKind, entry_hash
from opsconsole.core.store.db import Database, StoreUnavailable, audit_table, make_engine
from opsconsole.testing import FakeClock

#: Values that must come back from either back end's JSON column exactly as they were hashed.
AWKWARD_DATA: dict[str, Any] = {
    "floats": [0.1, 1.0, -0.0, 1e21, 1e-7, 5e-324, 1.7976931348623157e308, 123456789.12345679],
    "ints": [0, -1, 2**53 + 1, 10**30],
    "unicode": "Zürich ☃ 𝄞 e\u0301 \u2028 \t\n \"quoted\" \\ 日本語 \u0000",
    "nested": [[1, [2, [3, {"deep": [None, True, False, ""]}]]], {}, []],
    "keys": {"b": 1, "a": 2, "é": 3, "": 4, "with space": 5},
}


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def audit(database: Database, clock: FakeClock) -> AuditLog:
    return AuditLog(database, clock=clock)


def fill(audit: AuditLog, clock: FakeClock, count: int) -> list[AuditEntry]:
    entries = []
    for n in range(1, count + 1):
        clock.advance(60)
        entries.append(audit.append(AuditKind.VOTE_APPROVE, actor=f"user{n}", face="slack",
                                    request_id=f"req{n % 3}", data={"n": n, "why": "looks fine"}))
    return entries


def sql(database: Database, statement: str, **params: Any) -> None:
    with database.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_entries_read_back_exactly_as_appended(audit: AuditLog, clock: FakeClock) -> None:
    clock.advance(0.123456)
    first = audit.append(AuditKind.REQUEST_FILED, actor="slack:T1:U2", face="slack", request_id="r" * 32,
                         data=AWKWARD_DATA)
    clock.advance(1)
    second = audit.append("kind_from_a_later_version", actor="alice", face="cli", job_id="j1",
                          data={"tuple": (1, 2)})
    assert first.seq == 1 and first.prev_hash == GENESIS_HASH
    assert first.at == clock.now() - timedelta(seconds=1)
    assert second.seq == 2 and second.prev_hash == first.hash and second.data == {"tuple": [1, 2]}
    stored = audit.entries()
    assert stored == [first, second]
    assert stored[0].kind is AuditKind.REQUEST_FILED and stored[1].kind == "kind_from_a_later_version"
    assert stored[0].at.tzinfo is not None and stored[0].at.microsecond == 123456
    # Identical down to the float's type and the key order's irrelevance: the hash recomputes.
    assert json.dumps(stored[0].data, sort_keys=True) == json.dumps(AWKWARD_DATA, sort_keys=True)
    assert all(entry.content_hash() == entry.hash for entry in stored)
    assert audit.verify().ok


def test_verify_reports_an_intact_log_and_its_head(audit: AuditLog, clock: FakeClock) -> None:
    empty = audit.verify()
    assert (empty.ok, empty.checked, empty.head_seq, empty.head_hash) == (True, 0, 0, GENESIS_HASH)
    entries = fill(audit, clock, 7)
    result = audit.verify(batch=3)
    assert (result.ok, result.checked, result.head_seq, result.head_hash) == (True, 7, 7, entries[-1].hash)
    assert result.first_bad_seq is None and result.problem == "" and audit.head() == (7, entries[-1].hash)


# -- tampering ---------------------------------------------------------------------------------------------


def _rehash(database: Database, seq: int, **changes: Any) -> None:
    """Rewrite entry ``seq`` and give it the hash its new content has: what a careful forger does."""
    with database.engine.begin() as conn:
        row = conn.execute(select(audit_table).where(audit_table.c.seq == seq)).mappings().one()
        fields = {k: row[k] for k in ("seq", "at", "kind", "actor", "face", "request_id", "job_id", "data",
                                      "prev_hash")}
        fields.update(changes)
        new_hash = entry_hash(**fields)
        conn.execute(text("UPDATE audit_log SET actor = :actor, data = :data, prev_hash = :prev, "
                          "hash = :hash WHERE seq = :seq"),
                     {"actor": fields["actor"], "data": json.dumps(fields["data"]),
                      "prev": fields["prev_hash"], "hash": new_hash, "seq": seq})


def _forge(database: Database, seq: int, prev_hash: str, *, valid_hash: bool) -> None:
    """Insert a made-up entry with ``seq`` (its hash right for its content, or not)."""
    at = FakeClock().now()
    fields = {"seq": seq, "at": at, "kind": "approved", "actor": "mallory", "face": "cli", "request_id": None,
              "job_id": None, "data": {"forged": True}, "prev_hash": prev_hash}
    with database.engine.begin() as conn:
        forged_hash = entry_hash(**fields) if valid_hash else "e" * 64
        conn.execute(audit_table.insert().values(**fields, hash=forged_hash))


def _hash_of(database: Database, seq: int) -> str:
    with database.engine.connect() as conn:
        return str(conn.execute(text("SELECT hash FROM audit_log WHERE seq = :s"), {"s": seq}).scalar_one())


def _swap(database: Database, a: int, b: int) -> None:
    sql(database, "UPDATE audit_log SET seq = -1 WHERE seq = :a", a=a)
    sql(database, "UPDATE audit_log SET seq = :a WHERE seq = :b", a=a, b=b)
    sql(database, "UPDATE audit_log SET seq = :b WHERE seq = -1", b=b)


def _replace_with_forgery(database: Database, seq: int, *, keep_link: bool) -> None:
    prev = _hash_of(database, seq - 1) if keep_link else "f" * 64
    sql(database, "DELETE FROM audit_log WHERE seq = :s", s=seq)
    _forge(database, seq, prev, valid_hash=True)


#: name → (tampering on a log of 10 entries, first bad seq, the problem as verify words it)
TAMPERINGS: dict[str, tuple[Callable[[Database], None], int | None, str]] = {
    "data edited": (
        lambda db: sql(db, "UPDATE audit_log SET data = :d WHERE seq = 4", d='{"n": 4, "why": "LGTM"}'),
        4, "entry 4 was changed after it was written (its hash does not match its content)"),
    "actor edited": (
        lambda db: sql(db, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 6"),
        6, "entry 6 was changed after it was written (its hash does not match its content)"),
    "middle entry deleted": (
        lambda db: sql(db, "DELETE FROM audit_log WHERE seq = 5"),
        5, "entry 5 is missing (seq jumps 4 → 6)"),
    "first entry deleted": (
        lambda db: sql(db, "DELETE FROM audit_log WHERE seq = 1"),
        1, "entry 1 is missing (the log starts at entry 2)"),
    "forged entry past the head": (
        lambda db: _forge(db, 11, _hash_of(db, 10), valid_hash=True),
        11, "entry 11 lies beyond the head (which says 10): it was added outside opsconsole, "
            "or the head was set back"),
    "forged entry in place of a deleted one, linked and hashed": (
        lambda db: _replace_with_forgery(db, 6, keep_link=True),
        6, "entry 6 was changed after it was written and its hash recomputed "
           "(entry 7's prev_hash still holds the original hash)"),
    "forged entry in place of a deleted one, badly linked": (
        lambda db: _replace_with_forgery(db, 6, keep_link=False),
        6, "entry 6 does not follow entry 5 (its prev_hash is not 5's hash): inserted or reordered"),
    "two entries swapped": (
        lambda db: _swap(db, 7, 8),
        7, "entry 7 does not follow entry 6 (its prev_hash is not 6's hash): inserted or reordered"),
    "last entries deleted": (
        lambda db: sql(db, "DELETE FROM audit_log WHERE seq > 8"),
        9, "the log ends at entry 8 but its head says 10: entries were removed from the end"),
    "every entry deleted": (
        lambda db: sql(db, "DELETE FROM audit_log"),
        1, "the log is empty but its head says 10: every entry was removed"),
    "entry edited and rehashed": (
        lambda db: _rehash(db, 5, actor="mallory"),
        5, "entry 5 was changed after it was written and its hash recomputed "
           "(entry 6's prev_hash still holds the original hash)"),
    "last entry edited and rehashed": (
        lambda db: _rehash(db, 10, data={"n": 10, "why": "rubber stamp"}),
        10, "entry 10 was changed after it was written and its hash recomputed, or the head was edited "
            "(the head holds another hash for it)"),
    "head deleted": (
        lambda db: sql(db, "DELETE FROM audit_head"),
        None, "the log has entries (up to 10) but no head: the head row was deleted"),
}


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_tampering_is_found_and_the_first_bad_entry_named(
    name: str, audit: AuditLog, database: Database, clock: FakeClock
) -> None:
    fill(audit, clock, 10)
    tamper, first_bad, problem = TAMPERINGS[name]
    tamper(database)
    # Batches of 3: problems straddling a batch boundary are found too.
    result = audit.verify(batch=3)
    assert not result.ok and result.head_seq == (0 if name == "head deleted" else 10)
    assert (result.first_bad_seq, result.problem) == (first_bad, problem)
    # The entry to look at: the bad one or, when it is gone, its nearest surviving neighbour.
    if first_bad is not None and result.entry is not None:
        assert abs(result.entry.seq - first_bad) <= 1
    assert (result.entry is None) == (name == "every entry deleted")


def test_appending_after_the_head_row_was_lost_continues_the_chain(
    audit: AuditLog, database: Database, clock: FakeClock
) -> None:
    fill(audit, clock, 3)
    sql(database, "DELETE FROM audit_head")
    assert audit.append(AuditKind.PREVIEW, actor="alice", face="cli", data={}).seq == 4
    assert audit.verify().ok


def test_a_head_set_back_by_hand_stops_appends_with_a_clear_error(
    audit: AuditLog, database: Database, clock: FakeClock
) -> None:
    fill(audit, clock, 5)
    sql(database, "UPDATE audit_head SET seq = 3")
    with pytest.raises(AuditError, match="entry 4 already exists but the head says 3"):
        audit.append(AuditKind.PREVIEW, actor="alice", face="cli", data={})
    assert [e.seq for e in audit.entries()] == [1, 2, 3, 4, 5]
    result = audit.verify()
    assert (result.ok, result.first_bad_seq) == (False, 4)


# -- transactions and concurrency ------------------------------------------------------------------------


def test_append_in_commits_and_rolls_back_with_the_callers_transaction(
    audit: AuditLog, database: Database
) -> None:
    with pytest.raises(RuntimeError), database.engine.begin() as conn:
        audit.append_in(conn, AuditKind.APPROVED, actor="alice", face="tui", request_id="r1", data={})
        raise RuntimeError("the state change failed")
    assert audit.entries() == [] and audit.verify().ok
    with database.engine.begin() as conn:
        conn.execute(text("SELECT count(*) FROM audit_log"))  # the caller's own work comes first
        entry = audit.append_in(conn, AuditKind.APPROVED, actor="alice", face="tui", request_id="r1", data={})
    assert entry.seq == 1 and audit.entries() == [entry] and audit.verify().ok


def test_first_appenders_racing_to_create_the_head_both_land(audit: AuditLog, database: Database) -> None:
    """The head does not exist yet: the second appender waits for the first, then chains onto it."""
    done: list[AuditEntry] = []
    with database.engine.begin() as conn:
        first = audit.append_in(conn, AuditKind.REQUEST_FILED, actor="alice", face="cli", data={})
        racer = threading.Thread(target=lambda: done.append(
            audit.append(AuditKind.REQUEST_FILED, actor="bob", face="slack", data={})))
        racer.start()
        time.sleep(0.5)  # bob is now blocked on the head (PostgreSQL: on its key; SQLite: the write lock)
        assert not done
    racer.join(timeout=30)
    assert [e.seq for e in done] == [2] and done[0].prev_hash == first.hash
    assert audit.verify().ok


def test_appends_from_threads_make_a_gapless_chain(audit: AuditLog) -> None:
    def work(worker: int) -> None:
        for n in range(25):
            audit.append(AuditKind.RUN_FINISHED, actor=f"thread{worker}", face="scheduler", data={"n": n})

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [e.seq for e in audit.entries()] == list(range(1, 101))
    assert audit.verify().ok


APPENDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from opsconsole.core.audit.log import AuditLog
    from opsconsole.core.audit.records import AuditKind
    from opsconsole.core.store.db import Database
    url, worker, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    database = Database(url)
    audit = AuditLog(database)
    while not go.exists():  # start together, so that the appends really overlap
        time.sleep(0.01)
    for n in range(count):
        audit.append(AuditKind.RUN_STARTED, actor="proc" + worker, face="scheduler", data={"n": n})
    database.close()
""")


def test_appends_from_processes_make_a_gapless_chain(db_url: str, audit: AuditLog, tmp_path: Path) -> None:
    go = tmp_path / "go"
    processes = [subprocess.Popen([sys.executable, "-c", APPENDER, db_url, str(w), "50", str(go)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for w in range(4)]
    time.sleep(1.0)  # let them import and connect
    go.touch()
    for process in processes:
        _, stderr = process.communicate(timeout=90)
        assert process.returncode == 0, stderr
    entries = audit.entries()
    assert [e.seq for e in entries] == list(range(1, 201))
    assert sorted(e.actor for e in entries) == sorted(f"proc{w}" for w in range(4) for _ in range(50))
    result = audit.verify()
    assert result.ok and result.checked == 200 and result.head_seq == 200


# -- reading -----------------------------------------------------------------------------------------------


def test_entries_filter_by_time_request_and_kind_oldest_first(audit: AuditLog, clock: FakeClock) -> None:
    entries = fill(audit, clock, 9)  # one a minute; request ids req1, req2, req0, req1, ...
    clock.advance(60)
    expired = audit.append(AuditKind.EXPIRED, actor="scheduler", face="scheduler", request_id="req1", data={})
    assert audit.entries(since=entries[6].at) == [*entries[6:], expired]
    assert audit.entries(request_id="req1") == [entries[0], entries[3], entries[6], expired]
    assert audit.entries(kinds=[AuditKind.EXPIRED]) == [expired]
    assert audit.entries(kinds=["vote_approve", "expired"], request_id="req2") == [entries[1], entries[4],
                                                                                     entries[7]]
    assert audit.entries(limit=3) == [entries[7], entries[8], expired]  # the most recent, oldest first
    assert audit.entries(since=entries[2].at, request_id="req0", limit=1) == [entries[8]]
    assert audit.entries(since=clock.now() + timedelta(seconds=1)) == []


def test_an_unreachable_database_is_store_unavailable_without_its_password() -> None:
    url = "postgresql+psycopg://x:pw@127.0.0.1:9/none"
    with pytest.raises(StoreUnavailable) as opening:
        Database(url)
    # A log whose database goes away after it was opened: every call says so, the same way.
    dead = object.__new__(Database)  # opened earlier, unreachable now: no schema check on the way in
    dead.url, dead.engine = url, make_engine(url)
    gone = AuditLog(dead)
    calls: list[Callable[[], object]] = [
        lambda: gone.append(AuditKind.PREVIEW, actor="alice", face="cli", data={}),
        gone.entries, gone.verify, gone.head,
    ]
    errors = [opening.value]
    for call in calls:
        with pytest.raises(StoreUnavailable) as caught:
            call()
        errors.append(caught.value)
    for error in errors:
        assert "127.0.0.1:9" in str(error) and "pw" not in str(error), str(error)


def test_append_in_on_a_broken_connection_is_store_unavailable(audit: AuditLog, database: Database) -> None:
    with database.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        conn.invalidate()
        with pytest.raises(StoreUnavailable):
            audit.append_in(conn, AuditKind.PREVIEW, actor="alice", face="cli", data={})



def test_an_entry_edited_into_something_unreadable_is_reported_not_crashed_on(
    audit: AuditLog, database: Database, clock: FakeClock
) -> None:
    fill(audit, clock, 5)
    cases = {"[1, 2]": "its data is not a JSON object"}
    if database.sqlite:  # PostgreSQL's json and timestamptz columns refuse these outright
        cases |= {"{oops": "its data is not valid JSON", '{"x": NaN}': "its data is not valid JSON"}
    for raw, why in cases.items():
        sql(database, "UPDATE audit_log SET data = :d WHERE seq = 3", d=raw)
        result = audit.verify()
        assert (result.ok, result.first_bad_seq) == (False, 3)
        assert result.problem == f"entry 3 was changed after it was written ({why})"
        assert audit.entries()[2].data == {"unreadable": json.loads(raw) if raw.startswith("[") else raw}
    if database.sqlite:
        sql(database, "UPDATE audit_log SET at = 'last tuesday' WHERE seq = 2")
        result = audit.verify()
        assert (result.first_bad_seq, result.problem) == (
            2, "entry 2 was changed after it was written (its time 'last tuesday' is not a time)")
