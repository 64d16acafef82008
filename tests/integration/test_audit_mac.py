"""The audit log's key and published head: a chain rewritten, truncated or wiped by someone with write
access to the database (but not the key, nor the head file) is detected by ``verify``.

Real parts: the audit log on SQLite and on a throwaway PostgreSQL; the tampering is raw SQL, as an
attacker with database access would do it.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import delete, select, text, update

from opsconsole.core.audit.log import (
    AuditLog,
    KeyFileError,
    load_or_create_key,
    read_published_head,
)
from opsconsole.core.audit.records import GENESIS_HASH, AuditKind, entry_mac
from opsconsole.core.store.db import Database, audit_head_table, audit_table, write_transaction

pytestmark = pytest.mark.timeout(120)

KEY = b"k" * 32


@pytest.fixture
def database(db_url: str):  # type: ignore[no-untyped-def]
    db = Database(db_url)
    yield db
    db.close()


def _fill(audit: AuditLog, n: int = 5) -> None:
    for i in range(n):
        audit.append(AuditKind.RUN_STARTED, actor="alice", face="cli", data={"i": i})


def _rewrite_from(database: Database, first: int, *, change: dict[str, object]) -> None:
    """What an attacker without the key can do: edit entries from ``first`` on, recompute every hash from
    there to the end (keeping the chain consistent), and move the head to match."""
    audit = AuditLog(database)
    entries = audit.entries()
    prev = entries[first - 2].hash if first > 1 else GENESIS_HASH
    with database.engine.begin() as conn:
        for entry in entries[first - 1:]:
            data = {**entry.data, **change} if entry.seq == first else dict(entry.data)
            forged = replace(entry, data=data, prev_hash=prev)
            forged = replace(forged, hash=forged.content_hash())
            conn.execute(update(audit_table).where(audit_table.c.seq == entry.seq).values(
                data=data, prev_hash=prev, hash=forged.hash))
            prev = forged.hash
        conn.execute(update(audit_head_table).values(hash=prev))


def test_every_entry_carries_the_mac_of_its_hash(database: Database, tmp_path: Path) -> None:
    audit = AuditLog(database, key=KEY, head_file=tmp_path / "head.json")
    _fill(audit)
    entries = audit.entries()
    assert all(e.mac == entry_mac(KEY, e.hash) for e in entries)
    result = audit.verify()
    assert result.ok and result.keyed and result.mac_since == 1 and result.published_seq == 5


def test_editing_one_entry_and_recomputing_the_chain_without_the_key_is_detected(database: Database) -> None:
    audit = AuditLog(database, key=KEY)
    _fill(audit)
    _rewrite_from(database, 3, change={"i": 99})
    assert AuditLog(database).verify().ok  # without the key the forged chain is consistent
    result = audit.verify()
    assert not result.ok and result.first_bad_seq == 3 and "MAC" in result.problem


def test_rewriting_the_whole_chain_and_the_head_file_without_the_key_is_detected(
    database: Database, tmp_path: Path
) -> None:
    head_file = tmp_path / "head.json"
    audit = AuditLog(database, key=KEY, head_file=head_file)
    _fill(audit)
    original = read_published_head(head_file)
    _rewrite_from(database, 1, change={"i": -1})
    # The attacker also strips every MAC and rewrites the head file consistently (no key: no MAC).
    with database.engine.begin() as conn:
        conn.execute(update(audit_table).values(mac=None))
        conn.execute(text("DELETE FROM store_meta"))
        last = conn.execute(select(audit_table.c.seq, audit_table.c.hash).order_by(audit_table.c.seq.desc())
                            .limit(1)).one()
    head_file.write_text(json.dumps({"seq": last.seq, "hash": last.hash, "mac": None, "at": "now"}))
    assert AuditLog(database).verify().ok
    result = AuditLog(database, key=KEY, head_file=head_file).verify()
    # The head file was published with the key: one without a MAC (or with a wrong one) is forged.
    assert not result.ok and "MAC" in result.problem, result
    # And the head as it was published (a copy kept elsewhere) names the rewritten entry, even without
    # the key.
    result = AuditLog(database).verify(published_head=original)
    assert not result.ok and result.first_bad_seq == 5 and "rewritten" in result.problem


def test_a_chain_rewritten_after_its_head_was_published_is_detected(
    database: Database, tmp_path: Path
) -> None:
    head_file = tmp_path / "head.json"
    audit = AuditLog(database, key=KEY, head_file=head_file)
    _fill(audit)
    published = read_published_head(head_file)
    assert published is not None and published.seq == 5
    _rewrite_from(database, 2, change={"i": 7})
    with database.engine.begin() as conn:  # and re-MAC nothing: the attacker has no key
        conn.execute(update(audit_table).where(audit_table.c.seq >= 2).values(mac=None))
    result = AuditLog(database, head_file=head_file).verify()  # even without the key: the head disagrees
    assert not result.ok and result.first_bad_seq == 5 and "rewritten" in result.problem
    keyed = AuditLog(database, key=KEY, head_file=head_file).verify()
    assert not keyed.ok and keyed.first_bad_seq == 2 and "no MAC" in keyed.problem


def test_truncation_is_detected_by_the_published_head(database: Database, tmp_path: Path) -> None:
    head_file = tmp_path / "head.json"
    audit = AuditLog(database, key=KEY, head_file=head_file)
    _fill(audit)
    with database.engine.begin() as conn:
        conn.execute(delete(audit_table).where(audit_table.c.seq > 3))
        hash3 = conn.execute(select(audit_table.c.hash).where(audit_table.c.seq == 3)).scalar_one()
        conn.execute(update(audit_head_table).values(seq=3, hash=hash3))
    assert AuditLog(database, key=KEY).verify().ok  # the chain alone looks whole
    result = audit.verify()
    assert not result.ok and result.first_bad_seq == 5 and "truncated" in result.problem


def test_wiping_the_log_is_detected_by_the_published_head(database: Database, tmp_path: Path) -> None:
    head_file = tmp_path / "head.json"
    audit = AuditLog(database, key=KEY, head_file=head_file)
    _fill(audit, 3)
    with database.engine.begin() as conn:
        conn.execute(delete(audit_table))
        conn.execute(delete(audit_head_table))
    assert AuditLog(database).verify().ok
    result = audit.verify()
    assert not result.ok and "wiped" in result.problem


def test_a_forged_entry_inserted_at_the_end_without_the_key_is_detected(database: Database) -> None:
    audit = AuditLog(database, key=KEY)
    _fill(audit, 2)
    AuditLog(database).append(AuditKind.APPROVED, actor="mallory", face="cli", data={})  # no key
    result = audit.verify()
    assert not result.ok and result.first_bad_seq == 3 and "no MAC" in result.problem


def test_entries_from_before_the_key_are_accepted(database: Database) -> None:
    _fill(AuditLog(database), 2)
    keyed = AuditLog(database, key=KEY)
    _fill(keyed, 2)
    result = keyed.verify()
    assert result.ok and result.mac_since == 3


def test_the_head_file_is_private_and_follows_every_append(database: Database, tmp_path: Path) -> None:
    head_file = tmp_path / "state" / "audit-head.json"
    audit = AuditLog(database, key=KEY, head_file=head_file)
    _fill(audit, 2)
    assert stat.S_IMODE(head_file.stat().st_mode) == 0o600
    document = json.loads(head_file.read_text())
    last = audit.entries()[-1]
    assert document == {"seq": 2, "hash": last.hash, "mac": last.mac, "at": document["at"]}
    assert [p.name for p in head_file.parent.iterdir()] == ["audit-head.json"]  # no temporary left


def test_a_rolled_back_append_is_not_published(database: Database, tmp_path: Path) -> None:
    head_file = tmp_path / "head.json"
    audit = AuditLog(database, key=KEY, head_file=head_file)
    _fill(audit, 1)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), write_transaction(database.engine) as conn:
        audit.append_in(conn, AuditKind.APPROVED, actor="bob", face="cli", data={})
        raise Boom
    assert read_published_head(head_file).seq == 1  # type: ignore[union-attr]
    with write_transaction(database.engine) as conn:
        audit.append_in(conn, AuditKind.APPROVED, actor="bob", face="cli", data={})
    assert read_published_head(head_file).seq == 2  # type: ignore[union-attr]
    assert audit.verify().ok


def test_load_or_create_key(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "audit.key"
    key = load_or_create_key(path)
    assert len(key) == 32 and load_or_create_key(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    os.chmod(path, 0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create_key(path)
    os.chmod(path, 0o600)
    path.write_bytes(b"short")
    with pytest.raises(KeyFileError, match="32 bytes"):
        load_or_create_key(path)
