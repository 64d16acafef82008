"""The tamper-evident audit log: who asked for, approved, ran and overrode what, from which face, when.

Why it exists: every request, vote, preview, run, result, override, expiry and break-glass in opsconsole
is appended here, so that after an incident (or in an audit) the SREs can say exactly who changed the
fleet and on whose approval — and trust that nobody edited that record afterwards. Each entry carries
the SHA-256 of its own content and of its predecessor's hash (a hash chain), and a one-row *head*
holds the last sequence number and hash. :meth:`AuditLog.verify` recomputes the chain and names the
first entry that was changed, removed, inserted or reordered, and whether entries were cut off the end.

What it cannot prove: someone with write access to the database who rewrites every entry from the
tampered one to the end *and* the head leaves a consistent chain. Anchor the head outside the database
against that (``opsconsole audit verify`` prints its hash: post it to the change ticket or a channel).

Use::

    audit = AuditLog(database)
    audit.append(AuditKind.RUN_STARTED, actor="slack:T1:U2", face="slack",
                 request_id=request.id, job_id=job.id, data={"playbook": "failover.yml"})

    with database.engine.begin() as conn:           # a state change and its record, atomically
        conn.execute(update(requests_table)...)
        audit.append_in(conn, AuditKind.APPROVED, actor=..., face="tui", request_id=..., data={...})

    audit.entries(request_id=request.id)            # oldest first
    result = audit.verify()                         # result.ok, result.problem, result.first_bad_seq

Concurrency: an append updates the head row *first* in its transaction. That statement is a write, so it
takes SQLite's write lock (waiting out the busy timeout, like any writer) or PostgreSQL's row lock on
the head, and every other appender — thread or process — waits for the transaction to end. Sequence
numbers are therefore gapless and each entry chains onto the one committed before it; no
dialect-specific locking is needed. (On SQLite the first statement of a transaction being a write is
what matters: it cannot hit a stale read snapshot, so the busy timeout applies.)

The canonical encoding that is hashed is :func:`canonical_bytes`: a JSON object of the entry's fields
(``seq``, ``at``, ``kind``, ``actor``, ``face``, ``request_id``, ``job_id``, ``data``, ``prev_hash``) with
sorted keys, no whitespace, ASCII only (``\\uXXXX`` escapes), times as ISO-8601 UTC with microseconds.
``data`` is restricted to plain JSON (str keys, finite numbers) so it reads back from either back end's
JSON column exactly as it was hashed.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Text, event, func, insert, select, type_coerce, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from opsconsole.core.audit.records import (
    GENESIS_HASH,
    AuditEntry,
    AuditKind,
    AuditVerification,
    PublishedHead,
    StoreVerification,
    entry_mac,
    mac_matches,
    plain_json,
)
from opsconsole.core.clock import Clock, SystemClock, utc
from opsconsole.core.errors import OpsError, UsageError
from opsconsole.core.store.db import (
    Database,
    StoreUnavailable,
    audit_head_table,
    audit_table,
    requests_table,
    store_meta_table,
    votes_table,
)

log = logging.getLogger(__name__)

#: The audit_head row's id: there is exactly one head.
HEAD_ID = 1
#: Rows :meth:`AuditLog.verify` reads per query: bounded memory however long the log is.
VERIFY_BATCH = 2000
#: Column widths of audit_log (PostgreSQL refuses longer values, SQLite would keep them: check first).
_LIMITS = {"kind": 48, "actor": 256, "face": 32, "request_id": 32, "job_id": 32}
#: store_meta key: the seq of the first entry written with a MAC (every later entry must carry one).
MAC_SINCE_KEY = "audit_mac_since"
#: The audit key's length in bytes (see :func:`load_or_create_key`).
KEY_BYTES = 32


class AuditError(OpsError):
    """The audit log cannot take an entry because its stored state is inconsistent (see ``verify``)."""

    title = "audit log inconsistent"


@dataclass(frozen=True)
class ChainProblem:
    """What :class:`ChainChecker` found: see :class:`AuditVerification` for the fields' meaning."""

    first_bad_seq: int | None
    text: str
    entry: AuditEntry | None
    #: The last entry's hash is not the head's: entries beyond the head, if any, explain it better.
    head_mismatch: bool = False


class ChainChecker:
    """The pure part of :meth:`AuditLog.verify`: fed entries in ``seq`` order, finds the first problem.

    Call :meth:`feed` for each entry until it returns a problem, then :meth:`finish` with the head.
    Keeps only the last two entries, so a log of any length is checked in constant memory.
    """

    def __init__(self, *, key: bytes | None = None, mac_since: int | None = None) -> None:
        self.checked = 0
        #: With a key, every entry from ``mac_since`` (or from the first entry carrying a MAC) on must
        #: carry the right MAC: a chain rewritten without the key fails here.
        self.key = key
        self.mac_since = mac_since
        self._last: AuditEntry | None = None
        # An entry whose content is intact but whose prev_hash is not its predecessor's hash: either the
        # predecessor was rewritten with a recomputed hash, or this entry was inserted. The next entry
        # (or the head) tells which: if it chains onto this one, this one is the original.
        self._suspect: tuple[AuditEntry, AuditEntry] | None = None

    def feed(self, entry: AuditEntry, *, unreadable: str | None = None) -> ChainProblem | None:
        """Check the next entry; ``unreadable`` says why its stored values could not be read, if so."""
        self.checked += 1
        if self._suspect is not None:
            suspect, before = self._suspect
            self._suspect = None
            if entry.seq == suspect.seq + 1 and entry.prev_hash == suspect.hash:
                return _rewritten(before, f"entry {suspect.seq}'s prev_hash still holds the original hash")
            return _does_not_follow(suspect)
        last = self._last
        expected = 1 if last is None else last.seq + 1
        if entry.seq != expected:
            return _missing(expected, entry, last)
        if unreadable is not None:
            self._last = entry
            return ChainProblem(entry.seq, f"entry {entry.seq} was changed after it was written "
                                           f"({unreadable})", entry)
        try:
            content_ok = entry.content_hash() == entry.hash
        except (TypeError, ValueError):  # data no append would have accepted
            content_ok = False
        link_ok = entry.prev_hash == (GENESIS_HASH if last is None else last.hash)
        self._last = entry
        if link_ok and content_ok:
            return self._mac(entry)
        if link_ok:
            return ChainProblem(entry.seq, f"entry {entry.seq} was changed after it was written "
                                       "(its hash does not match its content)", entry)
        if not content_ok or last is None:
            return _does_not_follow(entry)
        self._suspect = (entry, last)
        return None

    def _mac(self, entry: AuditEntry) -> ChainProblem | None:
        if self.key is None:
            return None
        if entry.mac is None:
            if self.mac_since is not None and entry.seq >= self.mac_since:
                return ChainProblem(entry.seq, f"entry {entry.seq} has no MAC although every entry from "
                                               f"{self.mac_since} on was written with the audit key: it was "
                                               "rewritten or inserted without the key", entry)
            return None
        if self.mac_since is None or entry.seq < self.mac_since:
            self.mac_since = entry.seq
        if not mac_matches(self.key, entry.hash, entry.mac):
            return ChainProblem(entry.seq, f"entry {entry.seq}'s MAC does not match its hash under the audit "
                                           "key: it was rewritten without the key (or the key is not this "
                                           "log's)", entry)
        return None

    def finish(self, head_seq: int, head_hash: str, *, head_exists: bool = True) -> ChainProblem | None:
        """The checks once every entry up to the head was fed: the suspect, truncation, the head."""
        last = self._last
        if self._suspect is not None:
            suspect, before = self._suspect
            if head_exists and head_seq == suspect.seq and head_hash == suspect.hash:
                return _rewritten(before, "the head still holds the original hash")
            return _does_not_follow(suspect)
        if not head_exists:
            if last is None:
                return None
            return ChainProblem(None, f"the log has entries (up to {last.seq}) but no head: "
                                  "the head row was deleted", last)
        if last is None:
            if head_seq == 0:
                return None
            return ChainProblem(1, f"the log is empty but its head says {head_seq}: every entry was removed",
                                None)
        if last.seq < head_seq:
            return ChainProblem(last.seq + 1, f"the log ends at entry {last.seq} but its head says "
                                              f"{head_seq}: entries were removed from the end", last)
        if last.hash != head_hash:
            return ChainProblem(last.seq, f"entry {last.seq} was changed after it was written and its hash "
                                      "recomputed, or the head was edited (the head holds another hash "
                                      "for it)", last, head_mismatch=True)
        return None


def _missing(expected: int, entry: AuditEntry, last: AuditEntry | None) -> ChainProblem:
    which = f"entry {expected} is" if entry.seq == expected + 1 else f"entries {expected}–{entry.seq - 1} are"
    jump = f"the log starts at entry {entry.seq}" if last is None else f"seq jumps {last.seq} → {entry.seq}"
    return ChainProblem(expected, f"{which} missing ({jump})", entry)


def _does_not_follow(entry: AuditEntry) -> ChainProblem:
    if entry.seq == 1:
        return ChainProblem(1, "entry 1 does not start the chain (its prev_hash is not the genesis hash): "
                           "inserted or reordered", entry)
    before = entry.seq - 1
    return ChainProblem(entry.seq, f"entry {entry.seq} does not follow entry {before} (its prev_hash is not "
                               f"{before}'s hash): inserted or reordered", entry)


def _rewritten(entry: AuditEntry, evidence: str) -> ChainProblem:
    return ChainProblem(entry.seq, f"entry {entry.seq} was changed after it was written and its hash "
                               f"recomputed ({evidence})", entry)


# -- the log ---------------------------------------------------------------------------------------------


_KNOWN_KINDS = frozenset(kind.value for kind in AuditKind)


def _kind(value: str) -> str:
    """An :class:`AuditKind` when this version knows the kind, else the string as stored."""
    return AuditKind(value) if value in _KNOWN_KINDS else value


#: The log's columns with ``at`` and ``data`` as the driver hands them over, not through SQLAlchemy's
#: result processors: a row edited by hand into something unreadable (bad JSON, NaN, a malformed time,
#: all possible on SQLite) must make ``verify`` report that entry, not crash it or ``audit log``.
_READ = select(*(type_coerce(column, Text).label(column.name) if column.name in ("at", "data") else column
                 for column in audit_table.c))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _read(row: RowMapping) -> tuple[AuditEntry, str | None]:
    """An entry from a row of :data:`_READ`, and why it is unreadable (``None`` when it is fine).

    An unreadable value is replaced by a placeholder (the epoch; ``{"unreadable": <the raw text>}``) so
    the rest of the entry can still be shown.
    """
    unreadable: list[str] = []
    at: Any = row["at"]
    if isinstance(at, str):  # SQLite: the text SQLAlchemy wrote ("2026-11-26 12:00:00.000000")
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            unreadable.append(f"its time {at!r} is not a time")
            at = _EPOCH
    if not isinstance(at, datetime):
        unreadable.append(f"its time {at!r} is not a time")
        at = _EPOCH
    data: Any = row["data"]
    if isinstance(data, str):  # SQLite: JSON text (PostgreSQL's driver has already parsed it)
        try:
            data = json.loads(data, parse_constant=_no_constants)
        except ValueError:
            unreadable.append("its data is not valid JSON")
            data = {"unreadable": data}
    if not isinstance(data, Mapping):
        unreadable.append("its data is not a JSON object")
        data = {"unreadable": data}
    entry = AuditEntry(
        seq=int(row["seq"]), at=utc(at) or _EPOCH, kind=_kind(row["kind"]), actor=row["actor"],
        face=row["face"], request_id=row["request_id"], job_id=row["job_id"], data=data,
        prev_hash=row["prev_hash"], hash=row["hash"], mac=row["mac"],
    )
    return entry, "; ".join(unreadable) or None


class AuditLog:
    """The audit log in the shared database. Thread-safe; share one per process.

    Args:
        database: the shared database (its engine is used; this class does not close it).
        clock: stamps ``at`` (the system clock unless a test passes a fake one).
        key: the audit key (see :func:`load_or_create_key`): every append stores the MAC of the entry's
            hash under it in ``audit_log.mac``, and :meth:`verify` checks every MAC, so that a chain
            rewritten (entries and head together) by someone without the key is detected.
        head_file: where every append publishes the head outside the database, atomically (mode 0600):
            ``{"seq", "hash", "mac", "at"}``; :meth:`verify` then fails when the chain no longer
            holds that entry with that hash (wiped, truncated or rewritten).
    """

    def __init__(
        self,
        database: Database,
        *,
        clock: Clock | None = None,
        key: bytes | None = None,
        head_file: Path | None = None,
    ) -> None:
        self.database = database
        self.clock: Clock = clock or SystemClock()
        if key is not None and len(key) < 16:
            raise ValueError("the audit key must be at least 16 bytes")
        self.key = key
        self.head_file = head_file
        self._published: tuple[int, str] = (0, GENESIS_HASH)
        self._publish_lock = threading.Lock()

    # -- appending ---------------------------------------------------------------------------------

    def append(
        self,
        kind: AuditKind | str,
        *,
        actor: str,
        face: str,
        request_id: str | None = None,
        job_id: str | None = None,
        data: Mapping[str, Any],
    ) -> AuditEntry:
        """Append one entry in its own transaction and return it as stored.

        Args:
            kind: an :class:`AuditKind` (any string of up to 48 characters is accepted).
            actor: who did it (a principal id, e.g. ``slack:T1:U2`` or an OS user).
            face: tui, slack, cli or scheduler.
            request_id, job_id: what it is about, when it is about a request or a run.
            data: parameters, preview, outcome...: plain JSON (see :func:`plain_json`).

        Raises:
            TypeError, ValueError: ``data`` is not plain JSON, or a field is too long for its column.
            StoreUnavailable: the database cannot be reached.
            AuditError: the stored log disagrees with its head (an entry with the next seq exists).
        """
        fields = self._checked(kind, actor, face, request_id, job_id, data)
        try:
            with self.database.engine.begin() as conn:
                entry = self._append(conn, fields)
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        self._publish(entry)
        return entry

    def append_in(
        self,
        conn: Connection,
        kind: AuditKind | str,
        *,
        actor: str,
        face: str,
        request_id: str | None = None,
        job_id: str | None = None,
        data: Mapping[str, Any],
    ) -> AuditEntry:
        """Append one entry inside the caller's open transaction on ``conn``; see :meth:`append`.

        For the approval pipeline: a state change and its audit entry commit together or not at all
        (the caller commits; a rollback takes the entry with it, and leaves no gap in the sequence).
        The entry's head lock is held from this call until the caller's transaction ends, so keep what
        follows it short: every other appender waits for it. On SQLite, start the transaction with a
        write (or ``BEGIN IMMEDIATE``) when it reads first: a transaction that read before its first
        write fails at once with "database is locked" if another process wrote in between.

        Raises:
            As :meth:`append`; a database error leaves the caller's transaction to be rolled back.
        """
        fields = self._checked(kind, actor, face, request_id, job_id, data)
        try:
            entry = self._append(conn, fields)
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        if self.head_file is not None:
            self._publish_on_commit(conn, entry)
        return entry

    # -- the published head ------------------------------------------------------------------------

    def _publish_on_commit(self, conn: Connection, entry: AuditEntry) -> None:
        """Publish ``entry`` as the head once the caller's transaction commits (never if it rolls back)."""

        # Listeners cannot be removed while SQLAlchemy calls them: each fires once, and whichever of the
        # two ends the transaction first settles it (the connection object dies with its block).
        settled = threading.Event()

        def committed(_conn: Connection) -> None:
            # SQLAlchemy calls this just before the DBAPI commit: should that commit then fail, the next
            # append reuses the seq and republishes it (see _publish).
            if not settled.is_set():
                settled.set()
                try:
                    self._publish(entry)
                except OSError:  # never fail the caller's commit over the copy outside the database
                    log.exception("could not publish the audit head to %s", self.head_file)

        def rolled_back(_conn: Connection) -> None:
            settled.set()

        event.listen(conn, "commit", committed, once=True)
        event.listen(conn, "rollback", rolled_back, once=True)

    def _publish(self, entry: AuditEntry) -> None:
        """Write the head file (tmp + rename, 0600) unless a later entry was already published."""
        if self.head_file is None:
            return
        with self._publish_lock:
            if entry.seq < self._published[0] or (entry.seq, entry.hash) == self._published:
                return  # a later entry is already published (appends of several threads), or this one
            write_published_head(self.head_file, PublishedHead(
                seq=entry.seq, hash=entry.hash, mac=entry.mac, at=entry.at.isoformat(timespec="microseconds"),
            ))
            self._published = (entry.seq, entry.hash)

    def _checked(
        self, kind: AuditKind | str, actor: str, face: str, request_id: str | None, job_id: str | None,
        data: Mapping[str, Any],
    ) -> dict[str, Any]:
        if not isinstance(kind, str):
            raise TypeError(f"audit kind: expected an AuditKind or a string, got {type(kind).__name__}")
        fields: dict[str, Any] = {
            "kind": str.__str__(kind), "actor": actor, "face": face, "request_id": request_id,
            "job_id": job_id,
        }
        for name, limit in _LIMITS.items():
            value = fields[name]
            if value is None:
                continue
            if not isinstance(value, str):
                raise TypeError(f"audit {name}: expected a string, got {type(value).__name__}")
            if len(value) > limit:
                raise ValueError(f"audit {name}: {len(value)} characters, at most {limit} fit: "
                                 f"{value[:40]!r}…")
        if not fields["kind"] or not actor or not face:
            raise ValueError("audit kind, actor and face must not be empty")
        if not isinstance(data, Mapping):
            raise TypeError(f"audit data: expected a mapping, got {type(data).__name__}")
        fields["data"] = plain_json(data)
        return fields

    def _append(self, conn: Connection, fields: dict[str, Any]) -> AuditEntry:
        head = audit_head_table.c
        # First statement: a write to the head row. It takes the write lock (SQLite) or the head's row
        # lock (PostgreSQL) until the transaction ends, which orders this append after every other.
        bumped = conn.execute(update(audit_head_table).where(head.id == HEAD_ID).values(seq=head.seq + 1))
        if bumped.rowcount != 1:
            self._create_head(conn)
        seq, prev_hash = conn.execute(select(head.seq, head.hash).where(head.id == HEAD_ID)).one()
        at = utc(self.clock.now())
        assert at is not None
        entry = AuditEntry(
            seq=int(seq), at=at, kind=_kind(fields["kind"]),
            actor=fields["actor"], face=fields["face"], request_id=fields["request_id"],
            job_id=fields["job_id"], data=fields["data"], prev_hash=prev_hash, hash="",
        )
        entry = replace(entry, hash=entry.content_hash())
        if self.key is not None:
            entry = replace(entry, mac=entry_mac(self.key, entry.hash))
            meta = store_meta_table.c
            if conn.execute(select(meta.value).where(meta.key == MAC_SINCE_KEY)).first() is None:
                # Appenders are serialised by the head row taken above: no one else inserts it meanwhile.
                conn.execute(insert(store_meta_table).values(key=MAC_SINCE_KEY, value=str(entry.seq)))
        try:
            conn.execute(insert(audit_table).values(
                seq=entry.seq, at=entry.at, kind=fields["kind"], actor=entry.actor, face=entry.face,
                request_id=entry.request_id, job_id=entry.job_id, data=entry.data,
                prev_hash=entry.prev_hash, hash=entry.hash, mac=entry.mac,
            ))
        except IntegrityError as exc:
            raise AuditError(
                f"entry {entry.seq} already exists but the head says {entry.seq - 1}: the head was changed "
                "outside opsconsole; run `opsconsole audit verify`"
            ) from exc
        conn.execute(update(audit_head_table).where(head.id == HEAD_ID).values(hash=entry.hash))
        return entry

    @staticmethod
    def _create_head(conn: Connection) -> None:
        """The first append (or one after the head row was lost): create the head, at the log's end."""
        log = audit_table.c
        last = conn.execute(select(log.seq, log.hash).order_by(log.seq.desc()).limit(1)).first()
        seq, hash_ = (int(last.seq), str(last.hash)) if last is not None else (0, GENESIS_HASH)
        try:
            # A savepoint: on PostgreSQL two first appenders can both find no head; the loser's INSERT
            # waits for the winner's commit, fails, and must not doom the caller's transaction.
            with conn.begin_nested():
                conn.execute(insert(audit_head_table).values(id=HEAD_ID, seq=seq + 1, hash=hash_))
        except IntegrityError:
            head = audit_head_table.c
            if conn.execute(update(audit_head_table).where(head.id == HEAD_ID)
                            .values(seq=head.seq + 1)).rowcount != 1:
                raise AuditError("the audit head can be neither created nor updated") from None

    # -- reading -------------------------------------------------------------------------------------

    def entries(
        self,
        *,
        since: datetime | None = None,
        request_id: str | None = None,
        kinds: Iterable[AuditKind | str] | None = None,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        """Entries oldest first, optionally only those at or after ``since``, about ``request_id``, of
        ``kinds``. With ``limit``, the *most recent* ``limit`` of them (still oldest first), as ``tail``.

        Raises:
            StoreUnavailable: the database cannot be reached.
        """
        log = audit_table.c
        statement = _READ
        if since is not None:
            statement = statement.where(log.at >= utc(since))
        if request_id is not None:
            statement = statement.where(log.request_id == request_id)
        if kinds is not None:
            statement = statement.where(log.kind.in_([str.__str__(k) for k in kinds]))
        if limit is not None:
            statement = statement.order_by(log.seq.desc()).limit(max(limit, 0))
        else:
            statement = statement.order_by(log.seq)
        try:
            with self.database.engine.connect() as conn:
                found = [_read(row)[0] for row in conn.execute(statement).mappings()]
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        return found[::-1] if limit is not None else found

    def verify(
        self, *, batch: int = VERIFY_BATCH, published_head: PublishedHead | None = None
    ) -> AuditVerification:
        """Recompute the chain from entry 1 to the head and report the first problem found.

        With the audit key, every entry's MAC is checked too (from the first entry written with the key
        on: one missing or wrong names its seq). ``published_head`` (by default read from the head file,
        when this log has one and it exists) must still be in the chain, with its hash: otherwise the
        log was wiped, truncated or rewritten, and the result says which.

        Reads the head first and then the entries up to it in ``seq`` order, ``batch`` rows per query,
        so appends running meanwhile neither disturb it nor are half-checked; then makes sure nothing
        lies beyond the head. Memory stays bounded whatever the log's length.

        Raises:
            StoreUnavailable: the database cannot be reached.
        """
        if published_head is None and self.head_file is not None:
            published_head = read_published_head(self.head_file)
        try:
            with self.database.engine.connect() as conn:
                return self._verify(conn, batch, published_head)
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    def _verify(
        self, conn: Connection, batch: int, published: PublishedHead | None = None
    ) -> AuditVerification:
        head_row = conn.execute(
            select(audit_head_table.c.seq, audit_head_table.c.hash).where(audit_head_table.c.id == HEAD_ID)
        ).first()
        head_exists = head_row is not None
        head_seq, head_hash = (int(head_row.seq), str(head_row.hash)) if head_row else (0, GENESIS_HASH)
        mac_since: int | None = None
        if self.key is not None:
            since = conn.execute(select(store_meta_table.c.value)
                                 .where(store_meta_table.c.key == MAC_SINCE_KEY)).scalar()
            mac_since = int(since) if since is not None and str(since).isdigit() else None
        checker = ChainChecker(key=self.key, mac_since=mac_since)
        published_seq = published.seq if published is not None else None

        def result(problem: ChainProblem | None) -> AuditVerification:
            found = AuditVerification(True, checker.checked, head_seq, head_hash, keyed=self.key is not None,
                                      mac_since=checker.mac_since, published_seq=published_seq)
            if problem is None:
                return found
            return replace(found, ok=False, first_bad_seq=problem.first_bad_seq, problem=problem.text,
                           entry=problem.entry)

        for entry, unreadable in self._stream(conn, None if not head_exists else head_seq, batch):
            problem = checker.feed(entry, unreadable=unreadable)
            if problem is not None:
                return result(problem)
        problem = checker.finish(head_seq, head_hash, head_exists=head_exists)
        if head_exists and (problem is None or problem.head_mismatch):
            problem = self._beyond_head(conn, head_seq) or problem
        if problem is None and published is not None:
            problem = self._check_published(conn, published)
        return result(problem)

    def _check_published(self, conn: Connection, published: PublishedHead) -> ChainProblem | None:
        """The published head against the chain: its entry must still be there, with its hash."""
        if self.key is not None and not mac_matches(self.key, published.hash, published.mac):
            what = "no MAC" if published.mac is None else "a MAC that is not this key's"
            return ChainProblem(published.seq, f"the published head (entry {published.seq}) carries {what}: "
                                               "the head file was not written with the audit key (forged?)",
                                None)
        log = audit_table.c
        row = conn.execute(_READ.where(log.seq == published.seq)).mappings().first()
        if row is None:
            last = conn.execute(select(func.max(log.seq))).scalar()
            if last is None:
                text = (f"the log is empty but the published head names entry {published.seq} "
                        f"(written {published.at}): the log was wiped")
            else:
                text = (f"the log ends at entry {last} but the published head names entry {published.seq} "
                        f"(written {published.at}): the log was truncated")
            return ChainProblem(published.seq, text, None)
        entry = _read(row)[0]
        if entry.hash != published.hash:
            return ChainProblem(published.seq, f"entry {published.seq}'s hash is not the one published for "
                                               f"it at {published.at}: the chain was rewritten", entry)
        return None

    @staticmethod
    def _stream(conn: Connection, up_to: int | None, batch: int) -> Iterator[tuple[AuditEntry, str | None]]:
        """Entries in seq order (up to ``up_to`` when given), ``batch`` at a time (keyset pagination)."""
        log = audit_table.c
        after = None
        while True:
            statement = _READ.order_by(log.seq).limit(batch)
            if after is not None:
                statement = statement.where(log.seq > after)
            if up_to is not None:
                statement = statement.where(log.seq <= up_to)
            rows = conn.execute(statement).mappings().all()
            for row in rows:
                yield _read(row)
            if len(rows) < batch:
                return
            after = rows[-1]["seq"]

    @staticmethod
    def _beyond_head(conn: Connection, head_seq: int) -> ChainProblem | None:
        """An entry past the head that no append accounts for (added by hand, or a forged tail)."""
        log, head = audit_table.c, audit_head_table.c
        # Entries first, head second: an append's entry and head move commit together, so any entry
        # seen here that a real append wrote has its head move visible to the second query.
        beyond = conn.execute(select(func.max(log.seq)).where(log.seq > head_seq)).scalar()
        if beyond is None:
            return None
        now = conn.execute(select(head.seq).where(head.id == HEAD_ID)).scalar()
        if now is not None and int(beyond) <= int(now):
            return None  # appended while we checked: legitimate, verified next time
        limit = int(now) if now is not None else head_seq
        first = conn.execute(_READ.where(log.seq > limit).order_by(log.seq).limit(1)).mappings().first()
        entry = _read(first)[0] if first is not None else None
        seq = entry.seq if entry is not None else int(beyond)
        return ChainProblem(seq, f"entry {seq} lies beyond the head (which says {limit}): it was added "
                                 "outside opsconsole, or the head was set back", entry)

    def head(self) -> tuple[int, str]:
        """The head's (seq, hash): (0, genesis hash) before the first append.

        Raises:
            StoreUnavailable: the database cannot be reached.
        """
        head = audit_head_table.c
        try:
            with self.database.engine.connect() as conn:
                row = conn.execute(select(head.seq, head.hash).where(head.id == HEAD_ID)).first()
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        return (int(row.seq), str(row.hash)) if row is not None else (0, GENESIS_HASH)

    def _unavailable(self, exc: SQLAlchemyError) -> StoreUnavailable:
        return self.database.unavailable(exc)


# -- the audit key and the published head (files outside the database) ----------------------------------


class KeyFileError(UsageError):
    """The audit key file cannot be used (readable by others, wrong size, unreadable)."""

    title = "audit key unusable"


def load_or_create_key(path: Path) -> bytes:
    """The audit key at ``path``: 32 random bytes, created (file 0600, directory 0700) when missing.

    Raises:
        KeyFileError: the file is readable or writable by its group or others (fix with
            ``chmod 600``), is not a regular file, or does not hold exactly 32 bytes.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path.parent, 0o700)
        key = secrets.token_bytes(KEY_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create_key(path)  # another process created it first: use theirs
        with os.fdopen(fd, "wb") as out:
            out.write(key)
            out.flush()
            os.fsync(out.fileno())
        return key
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"{path}: the audit key must be a regular file")
    if info.st_mode & 0o077:
        raise KeyFileError(f"{path}: the audit key is accessible to its group or others (mode "
                           f"{stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}` and check who read it")
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"{path}: expected {KEY_BYTES} bytes of key, found {len(key)}")
    return key


def write_published_head(path: Path, head: PublishedHead) -> None:
    """Write ``head`` to ``path`` atomically (a 0600 temporary file in the same directory, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = json.dumps({"seq": head.seq, "hash": head.hash, "mac": head.mac, "at": head.at}, sort_keys=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_published_head(path: Path) -> PublishedHead | None:
    """The head published in ``path``, or ``None`` when the file does not exist.

    Raises:
        AuditError: the file exists but is not a published head (edited by hand?).
    """
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        return PublishedHead(seq=int(data["seq"]), hash=str(data["hash"]),
                             mac=None if data.get("mac") is None else str(data["mac"]), at=str(data["at"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditError(f"{path}: not a published audit head ({exc})") from exc


# -- what the audit log says of a request (approvals re-derived, not read from a status column) ----------


@dataclass(frozen=True)
class Evidence:
    """A change request as its audit entries tell it, against its row and its votes in the store.

    ``approvers``: people whose approval of the request's current plan has both a vote row and its
    audited ``vote_approve`` entry (same request, same person as actor, same plan hash; with a valid MAC
    when the log has a key). ``needed``: the approvals needed, as audited when it was filed (or as
    stored, if larger). ``problems``: every way the row disagrees with the audit, in words.
    """

    request_id: str
    approvers: tuple[str, ...]
    needed: int
    break_glass: bool
    problems: tuple[str, ...]

    @property
    def sufficient(self) -> bool:
        """Whether the audit log backs running the request: no disagreement, enough audited approvals."""
        return not self.problems and len(self.approvers) >= self.needed


_VOTE_KINDS = {"approve": str(AuditKind.VOTE_APPROVE), "reject": str(AuditKind.VOTE_REJECT)}
_FILING_KINDS = (str(AuditKind.REQUEST_FILED), str(AuditKind.BREAK_GLASS))
#: Statuses a request reaches only once approved (or filed needing no approval).
_PAST_APPROVAL = frozenset({"approved", "running", "succeeded", "failed", "interrupted"})


def request_evidence(
    conn: Connection, request_id: str, *, key: bytes | None, strict: bool = True
) -> Evidence:
    """Re-derive what the audit log says of request ``request_id`` (see :class:`Evidence`).

    ``strict``: an audited vote counts only when its entry names the plan hash (every entry this version
    writes does); ``False`` also accepts entries written before plan hashes were recorded (for
    :func:`verify_store` over old logs).
    """
    row = conn.execute(select(requests_table).where(requests_table.c.id == request_id)).mappings().first()
    if row is None:
        return Evidence(request_id, (), 0, False, (f"request {request_id}: no such request",))
    log = audit_table.c
    entries: list[AuditEntry] = []
    for raw in conn.execute(_READ.where(log.request_id == request_id).order_by(log.seq)).mappings():
        entry, unreadable = _read(raw)
        if unreadable is not None or entry.content_hash() != entry.hash:
            continue
        if key is not None and not mac_matches(key, entry.hash, entry.mac):
            continue
        entries.append(entry)
    problems: list[str] = []
    short = request_id[:8]
    filing = next((e for e in entries if e.kind in _FILING_KINDS), None)
    if filing is None:
        problems.append(f"request {short}: no audited filing entry")
        needed, glass, plan_hash, status = int(row["approvals_needed"]), False, None, None
    else:
        if filing.actor != row["requester"]:
            problems.append(f"request {short}: filed by {filing.actor} per the audit, the store says "
                            f"{row['requester']}")
        needed = max(int(filing.data.get("approvals_needed", 0) or 0), int(row["approvals_needed"]))
        if int(row["approvals_needed"]) < needed:
            problems.append(f"request {short}: needs {needed} approval(s) per the audit, the store says "
                            f"{row['approvals_needed']}")
        glass = filing.kind == AuditKind.BREAK_GLASS
        if bool(row["break_glass"]) and not glass:
            problems.append(f"request {short}: marked break glass in the store but not filed so in the audit")
        plan_hash = filing.data.get("plan_hash")
        status = filing.data.get("status")
    for entry in entries:
        if entry.kind == AuditKind.DRIFT_DETECTED and "plan_hash" in entry.data:
            plan_hash = entry.data["plan_hash"]
        if "to" in entry.data:
            status = entry.data["to"]
    if plan_hash is not None and plan_hash != row["plan_hash"]:
        problems.append(f"request {short}: its plan hash is not the audited one")
    if status is not None and status != row["status"]:
        problems.append(f"request {short}: status {row['status']} in the store, {status} per the audit log")
    audited_votes = {(e.kind, e.actor, e.data.get("plan_hash"))
                     for e in entries if e.kind in _VOTE_KINDS.values()}
    approvers: list[str] = []
    votes = conn.execute(select(votes_table).where(votes_table.c.request_id == request_id)
                         .order_by(votes_table.c.at, votes_table.c.voter)).mappings()
    for vote in votes:
        kind = _VOTE_KINDS.get(vote["decision"], "")
        backed = (kind, vote["voter"], vote["plan_hash"]) in audited_votes or (
            not strict and (kind, vote["voter"], None) in audited_votes
        )
        if not backed:
            problems.append(f"request {short}: {vote['voter']}'s {vote['decision']} vote has no audited "
                            "vote entry (added outside opsconsole?)")
            continue
        if (vote["decision"] == "approve" and vote["plan_hash"] == row["plan_hash"]
                and vote["voter"] != row["requester"] and vote["voter"] not in approvers):
            approvers.append(vote["voter"])
    if row["status"] in _PAST_APPROVAL and len(approvers) < needed:
        problems.append(f"request {short}: status {row['status']} but only {len(approvers)} of {needed} "
                        "approval(s) are in the audit log")
    return Evidence(request_id, tuple(approvers), needed, glass, tuple(problems))


def verify_store(
    database: Database,
    *,
    key: bytes | None = None,
    head_file: Path | None = None,
    published_head: PublishedHead | None = None,
) -> StoreVerification:
    """The audit chain (see :meth:`AuditLog.verify`) and every change request against it: names each
    request whose status or votes lack their audit entries. What ``opsconsole audit verify`` runs.

    Raises:
        StoreUnavailable: the database cannot be reached.
    """
    chain = AuditLog(database, key=key, head_file=head_file).verify(published_head=published_head)
    found: list[str] = []
    try:
        with database.engine.connect() as conn:
            ids = conn.execute(select(requests_table.c.id).order_by(requests_table.c.created_at)).scalars()
            for request_id in list(ids):
                found.extend(request_evidence(conn, request_id, key=key, strict=False).problems)
    except SQLAlchemyError as exc:
        raise database.unavailable(exc) from exc
    return StoreVerification(chain, tuple(found))
