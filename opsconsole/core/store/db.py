"""The database every face shares: where it is, how to connect, and the schema.

One schema for jobs, change requests and their votes, leases on targets and the audit log, so that a
request filed in Slack can be approved in the terminal and both see the same runs and the same record.
SQLite (WAL, a busy timeout) under ``OPSCONSOLE_HOME`` by default; any SQLAlchemy URL through
``OPSCONSOLE_DB_URL`` — PostgreSQL (psycopg 3) for teams and for several bot replicas. The SQL stays
portable: no dialect-only types, JSON through SQLAlchemy's ``JSON``, times stored in UTC, and the
atomic steps (compare-and-set on a request's version, taking a lease, appending to the audit chain)
written as single ``UPDATE … WHERE`` / ``INSERT`` statements whose row counts tell who won.

The tables here are the schema's single description in code; :mod:`opsconsole.core.store.migrations`
(Alembic) creates and evolves it in a database: opening a :class:`Database` upgrades it to head
(:func:`ensure_schema`), adopting the previous release's files, and refuses a schema newer than the code.

A store has an identity (``store_meta.store_id``) and the home records which store it uses
(``$OPSCONSOLE_HOME/store.json``, written when a core first claims the store for its world): a store that
vanished or was replaced at a recorded address is refused (:class:`StoreMissing`, :class:`StoreReplaced`)
before anything is created in it, never silently recreated; :func:`adopt_store` (``opsconsole store
adopt``) accepts another on purpose. A URL is always a URL (:func:`checked_url`), never a path.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    inspect,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from opsconsole.core.errors import OpsError, UsageError
from opsconsole.core.paths import opsconsole_home
from opsconsole.core.store import migrations

DB_FILE = "opsconsole.db"
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: How long a PostgreSQL connection attempt may take before the store counts as unreachable.
CONNECT_TIMEOUT_S = 5

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# -- jobs: one playbook run each, and the task events it streamed -----------------------------------

jobs_table = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("action", String(64), nullable=False),
    Column("params", JSON, nullable=False),
    Column("playbook", String(512), nullable=False),
    Column("check_mode", Boolean, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("actor", String(256), nullable=False),
    Column("face", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("rc", Integer),
    Column("last_task", Text),
    Column("stats", JSON),
    Column("timings", JSON),
    Column("pid", Integer),
    Column("error", Text),
    #: Who runs it, ``host/boot_id/pid/start_ticks[/worker]``, and when it last said so in database time
    #: (migration 0005; see opsconsole.core.runs.owners).
    Column("owner", String(256)),
    Column("heartbeat_at", DateTime(timezone=True)),
)

job_events_table = Table(
    "job_events",
    metadata,
    Column("job_id", String(32), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("host", String(256)),
    Column("play", Text),
    Column("task", Text),
    Column("message", Text, nullable=False),
    Column("changed", Boolean, nullable=False),
    Column("data", JSON, nullable=False),
    # (job_id, seq) is unique: a follower resumes from the last seq it saw.
    PrimaryKeyConstraint("job_id", "seq", name="pk_job_events"),
)

# -- change requests and their votes -----------------------------------------------------------------

requests_table = Table(
    "change_requests",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("action", String(64), nullable=False),
    Column("params", JSON, nullable=False),
    Column("playbook", String(512), nullable=False),
    Column("extravars", JSON, nullable=False),
    Column("targets", JSON, nullable=False),
    Column("summary", JSON, nullable=False),
    Column("observed", JSON, nullable=False),
    #: The plan hash the approvals are bound to (action, params, playbook, inventory, observed state).
    Column("plan_hash", String(64), nullable=False),
    #: The inputs of the hash as they were, to show what drifted.
    Column("hash_inputs", JSON, nullable=False),
    Column("risk", String(16), nullable=False),
    Column("risk_reasons", JSON, nullable=False),
    Column("approvals_needed", Integer, nullable=False),
    #: Who may approve: {"regions": [...], "environments": [...]} scopes an approver role must cover.
    Column("approver_scope", JSON, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("requester", String(256), nullable=False),
    Column("face", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True)),
    Column("reason", Text),
    Column("job_id", String(32)),
    Column("break_glass", Boolean, nullable=False, default=False),
    Column("review_due_at", DateTime(timezone=True)),
    #: The check-mode preview: the job that ran it and its diff, in words.
    Column("preview", JSON, nullable=False),
    #: What drifted between approval and execution (shown when the request returns for approval).
    Column("drift", JSON),
    #: Compare-and-set: every transition is ``UPDATE … WHERE version = :seen``; one writer wins.
    Column("version", Integer, nullable=False),
    #: ``sandbox`` or ``live`` (migration 0004): a store of one world refuses requests of the other.
    Column("world", String(16)),
)

votes_table = Table(
    "votes",
    metadata,
    Column("request_id", String(32), nullable=False),
    Column("voter", String(256), nullable=False),
    Column("decision", String(16), nullable=False),  # approve | reject
    Column("reason", Text),
    Column("role", String(16), nullable=False),
    Column("face", String(32), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    #: The plan hash the vote was given for: a vote on a plan that has since drifted does not count.
    Column("plan_hash", String(64), nullable=False),
    Column("world", String(16)),  # see change_requests.world
    # A person counts once however often they click.
    PrimaryKeyConstraint("request_id", "voter", "plan_hash", name="pk_votes"),
)

# -- leases on targets --------------------------------------------------------------------------------

leases_table = Table(
    "leases",
    metadata,
    Column("target", String(256), nullable=False),
    Column("lease_id", String(32), nullable=False, index=True),
    #: exclusive | shared: shared holders of one target coexist (two scales in one region); an
    #: exclusive one excludes every other holder of it (a failover of that region).
    Column("mode", String(16), nullable=False),
    Column("holder", String(256), nullable=False),
    Column("purpose", Text, nullable=False),
    Column("request_id", String(32)),
    Column("host", String(256), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("renewed_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("owner", String(256)),  # the holder's identity, as jobs.owner (migration 0005)
    PrimaryKeyConstraint("target", "lease_id", name="pk_leases"),
)

#: One row (id 1) every acquirer updates first: taking leases is then serialised on both back ends (the
#: check for conflicting holders and the insert cannot interleave) without dialect-specific locking.
lease_guard_table = Table(
    "lease_guard",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("generation", Integer, nullable=False),
)

# -- the audit log: append-only, hash-chained ------------------------------------------------------------

audit_table = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("kind", String(48), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("face", String(32), nullable=False),
    Column("request_id", String(32), index=True),
    Column("job_id", String(32)),
    Column("data", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    #: HMAC-SHA256 of ``hash`` under the server's audit key, kept outside the database (migration 0004).
    Column("mac", String(64)),
)

#: One row (id 1): the chain's head. Appending updates it first, which serialises appenders on both
#: back ends (SQLite's write lock, PostgreSQL's row lock) without dialect-specific locking.
audit_head_table = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)

#: Leader election for the scheduler (one row per role; the holder renews it).
leaders_table = Table(
    "leaders",
    metadata,
    Column("role", String(64), primary_key=True),
    Column("holder", String(256), nullable=False),
    Column("renewed_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("term", Float, nullable=False),
)


# -- what the Slack bot and the scheduler share between processes (migration 0003) --------------------

#: An outbox: a notice (high-severity finding, shutdown warning) is delivered once by whichever process
#: claims it; ``key`` dedupes (e.g. ``finding:<finding key>``), ``resolved_at`` asks for a follow-up.
notices_table = Table(
    "notices",
    metadata,
    Column("key", String(256), primary_key=True),
    Column("kind", String(48), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("data", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("resolved_at", DateTime(timezone=True)),
    Column("claimed_by", String(256)),
    Column("claimed_at", DateTime(timezone=True)),
    #: Where it was delivered (e.g. {"slack": {"channel": ..., "ts": ...}}) and the follow-up's.
    Column("delivered", JSON),
    Column("version", Integer, nullable=False),
)

#: First writer wins: a Slack event id or (action id, message ts, user) seen once across all replicas.
dedupe_keys_table = Table(
    "dedupe_keys",
    metadata,
    Column("key", String(256), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
)

#: Where a face's message about a subject lives (``request:<id>`` → Slack channel + ts), so that any
#: replica can edit it in place; ``data`` keeps what was last rendered (to coalesce edits).
message_refs_table = Table(
    "message_refs",
    metadata,
    Column("subject", String(256), nullable=False),
    Column("face", String(32), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("ts", String(64), nullable=False),
    Column("data", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("subject", "face", name="pk_message_refs"),
)

#: Keep awake until T, skip tonight, force down until T: each ends by itself at ``until``.
schedule_overrides_table = Table(
    "schedule_overrides",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("environment", String(32), nullable=False, index=True),
    Column("region", String(64)),
    Column("kind", String(16), nullable=False),
    Column("until", DateTime(timezone=True), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("face", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("reason", Text),
)

#: The scheduler's memory per environment / region (``key``): the state it last applied and when, the
#: warning it last sent; survives restarts so that missed transitions are reconciled, not replayed.
schedule_state_table = Table(
    "schedule_state",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("data", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


# -- connecting ----------------------------------------------------------------------------------------


#: The variable naming a shared database, and the forms a database URL may take.
DB_URL_VARIABLE = "OPSCONSOLE_DB_URL"
URL_FORMS = ("sqlite:////absolute/path/opsconsole.db, or postgresql://user@host:5432/database "
             "(postgresql+psycopg://… too)")


def database_url(url_or_home: str | Path | None = None) -> str:
    """The URL to open: a URL given (a ``str``), ``OPSCONSOLE_DB_URL``, or the home's SQLite file (a
    ``Path``, or the home when nothing is configured).

    A string is always a URL, never a path: one that does not parse as a SQLite or PostgreSQL URL is
    refused (a typo must not open a new, empty store under the current directory).

    Raises:
        UsageError: the URL (or ``OPSCONSOLE_DB_URL``) is not one of :data:`URL_FORMS`.
    """
    if isinstance(url_or_home, str):
        named = DB_URL_VARIABLE if url_or_home == os.environ.get(DB_URL_VARIABLE) else "database URL"
        return checked_url(url_or_home, named)
    if url_or_home is None:
        configured = os.environ.get(DB_URL_VARIABLE)
        if configured is not None and configured.strip():
            return checked_url(configured, DB_URL_VARIABLE)
        url_or_home = opsconsole_home()
    home = Path(url_or_home)
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{home}: cannot create the store's directory ({exc.strerror or exc}): set "
                         f"OPSCONSOLE_HOME to a directory you can write") from exc
    return f"sqlite:///{home / DB_FILE}"


def checked_url(text: str, named: str = DB_URL_VARIABLE) -> str:
    """``text`` as a database URL opsconsole can open (``postgresql://`` gets the psycopg 3 driver).

    Raises:
        UsageError: not a SQLite URL with an absolute file path, nor a PostgreSQL URL; the message names
            ``named`` (the variable or option it came from) and the accepted forms.
    """
    value = text.strip()
    shown = redacted_text(value)
    if "://" not in value:
        raise UsageError(f"{named} {shown!r}: not a database URL (no scheme); expected {URL_FORMS}")
    try:
        url = make_url(value)
    except Exception:  # SQLAlchemy raises ArgumentError, ValueError… for malformed URLs
        raise UsageError(f"{named} {shown!r}: not a database URL; expected {URL_FORMS}") from None
    backend, _, driver = url.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        database = url.database or ""
        if not database or database == ":memory:":
            raise UsageError(f"{named} {shown!r}: names no file (an in-memory store forgets everything "
                             f"at exit); expected {URL_FORMS}")
        if not os.path.isabs(database):
            raise UsageError(f"{named} {shown!r}: the file {database!r} is relative (it would depend on "
                             f"the directory you run from); give an absolute path: {URL_FORMS}")
        return value
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend in ("postgresql", "postgres"):
        raise UsageError(f"{named} {shown!r}: the driver {driver!r} is not installed; opsconsole uses "
                         f"psycopg 3: {URL_FORMS}")
    raise UsageError(f"{named} {shown!r}: {url.drivername!r} is not a database opsconsole supports; "
                     f"expected {URL_FORMS}")


def redacted_text(text: str) -> str:
    """``text`` (perhaps a URL) without the password between ``user:`` and ``@``, for messages."""
    scheme, sep, rest = text.partition("://")
    if not sep or "@" not in rest:
        return text
    credentials, _, host = rest.rpartition("@")
    user, colon, _password = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


class _Executes(Protocol):
    """What enter_wal_mode needs of a DB-API cursor."""

    def execute(self, sql: str, /) -> object: ...


def enter_wal_mode(cursor: _Executes, *, within_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
    """Put the database in WAL mode, waiting out other openers for up to ``within_s``.

    Switching a fresh file to WAL needs the database's exclusive lock. When several processes open a
    fresh store at once (two bot replicas starting together), SQLite can answer the losers "database is
    locked" at once, without calling the busy handler: one of them holds a shared lock and waits for the
    exclusive one, so waiting would deadlock. The switch is retried with a short, jittered back-off until
    it succeeds or the busy timeout has passed; a database already in WAL mode answers at once.
    """
    deadline = time.monotonic() + within_s
    pause_s = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() + pause_s > deadline:
                raise
        time.sleep(pause_s * (0.5 + random.random()))
        pause_s = min(pause_s * 2, 0.2)


def make_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite in WAL mode with a busy timeout, or a pre-pinged pool elsewhere."""
    if not is_sqlite(url):
        connect_args: dict[str, Any] = {}
        if url.startswith("postgresql"):
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    engine = create_engine(
        url,
        # The runner writes events from its worker threads; SQLite's own locking (WAL + busy timeout)
        # serialises them, so the per-thread check only gets in the way.
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling is off: SQLAlchemy's "begin" below emits BEGIN itself, so
        # that a write transaction can start IMMEDIATE (see write_transaction).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        enter_wal_mode(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(IMMEDIATE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


#: Execution option asking SQLite for the write lock when the transaction begins (see write_transaction).
IMMEDIATE_OPTION = "opsconsole_sqlite_immediate"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that reads and then writes, safely under concurrency on both back ends.

    On SQLite a deferred transaction that reads first and writes later fails at once with "database is
    locked" when another process wrote in between (its snapshot is stale: SQLITE_BUSY_SNAPSHOT ignores
    the busy timeout). Taking the write lock at BEGIN (``BEGIN IMMEDIATE``) makes the others wait their
    turn instead. On PostgreSQL it is an ordinary transaction: compare-and-set statements, row locks or
    a guard row do the serialising there.
    """
    with engine.connect() as plain:
        conn = plain.execution_options(**{IMMEDIATE_OPTION: True})
        with conn.begin():
            yield conn


def db_value(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


def redacted_url(url: str) -> str:
    """``url`` without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


class StoreUnavailable(OpsError):
    """The database cannot be reached: nothing that needs it (approvals, leases, audit) may proceed."""

    title = "store unreachable"


class Database:
    """A connected database with the current schema: the one handle the stores share.

    Args:
        url_or_home: a SQLAlchemy URL, a home directory (its SQLite file), or ``None`` for
            ``OPSCONSOLE_DB_URL`` / ``$OPSCONSOLE_HOME``.

    Raises:
        StoreUnavailable: the database cannot be reached or its schema cannot be brought up to date.
    """

    def __init__(self, url_or_home: str | Path | None = None, *, world: str | None = None,
                 home: Path | None = None) -> None:
        self.url = database_url(url_or_home)
        #: The home whose record (:data:`STORE_RECORD`) names the store it uses (default: the home).
        self.record_home = home
        recorded = recorded_store(self.url, home)
        if recorded is not None:
            _refuse_missing_sqlite(self.url, recorded)
        self.engine = make_engine(self.url)
        #: The world (sandbox or live) this store was claimed for by :meth:`claim_world`, and its id.
        self.world: str | None = None
        self.store_id: str | None = None
        try:
            if recorded is not None:
                _check_identity(self.engine, self.url, recorded)
            ensure_schema(self.engine)
            _tighten_sqlite_file(self.url)
            if world is not None:
                self.claim_world(world)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise self.unavailable(exc) from exc
        except OpsError:
            self.engine.dispose()
            raise

    def claim_world(self, world: str) -> None:
        """Use this store for ``world`` (``sandbox`` or ``live``) only.

        The first core to open a store writes its world and a ``store_id`` into ``store_meta``; a store
        of the other world is refused, never silently used (a sandbox must not file requests into the
        team's live store, nor the reverse).

        Raises:
            WrongWorld: the store belongs to the other world.
            StoreUnavailable: the database cannot be reached.
            ValueError: ``world`` is neither sandbox nor live.
        """
        if world not in WORLDS:
            raise ValueError(f"world: expected one of {', '.join(WORLDS)}, got {world!r}")
        meta = store_meta_table.c
        found: dict[str, str] = {}
        for _attempt in range(2):
            try:
                with write_transaction(self.engine) as conn:
                    found = {str(k): str(v) for k, v in conn.execute(select(meta.key, meta.value).where(
                        meta.key.in_((WORLD_KEY, STORE_ID_KEY)))).all()}
                    for key, value in ((WORLD_KEY, world), (STORE_ID_KEY, uuid.uuid4().hex)):
                        if key not in found:
                            conn.execute(insert(store_meta_table).values(key=key, value=value))
                            found[key] = value
                break
            except IntegrityError:
                continue  # another opener wrote it first (PostgreSQL): read theirs
            except SQLAlchemyError as exc:
                raise self.unavailable(exc, "read the store's world") from exc
        recorded = recorded_store(self.url, self.record_home)
        if recorded is not None and recorded.store_id != found.get(STORE_ID_KEY):
            raise StoreReplaced(_replaced_message(self.url, recorded, found.get(STORE_ID_KEY)))
        if found.get(WORLD_KEY) != world:
            raise WrongWorld(
                f"{redacted_url(self.url)}: this store belongs to the {found.get(WORLD_KEY)} world; a "
                f"{world} console must not use it: point OPSCONSOLE_DB_URL (or OPSCONSOLE_HOME) at a "
                f"{world} store"
            )
        self.world = world
        self.store_id = found.get(STORE_ID_KEY)
        if recorded is None and self.store_id is not None:
            # The first use of this store from this home: remember which store it is, so that a store
            # that vanishes or is replaced later is refused rather than silently recreated.
            record_store(self.url, StoreRecord(self.store_id, world, _now_text()), self.record_home)

    def unavailable(self, exc: BaseException, doing: str | None = None) -> StoreUnavailable:
        """The error to raise for a driver or SQLAlchemy failure: this database (password removed), the
        driver's first line, and what was being done. Every store translates its errors through here."""
        detail = _first_line(exc)
        password = make_url(self.url).password
        if password:
            detail = detail.replace(str(password), "***")
        suffix = f" (could not {doing})" if doing else ""
        diagnosed = _sqlite_diagnosis(self.url)
        if diagnosed is not None:
            return diagnosed
        return StoreUnavailable(f"{redacted_url(self.url)}: {detail}{suffix}")

    @property
    def sqlite(self) -> bool:
        return is_sqlite(self.url)

    def close(self) -> None:
        self.engine.dispose()


class WrongWorld(StoreUnavailable):
    """The store belongs to the other world (sandbox vs live): it is refused, never silently used."""

    title = "store of another world"


#: The worlds a store can belong to, and the store_meta keys of its identity.
WORLDS = ("sandbox", "live")
WORLD_KEY = "world"
STORE_ID_KEY = "store_id"


def _tighten_sqlite_file(url: str) -> None:
    """A SQLite store file (and its WAL / shared-memory files) readable by its owner only (0600)."""
    if not is_sqlite(url):
        return
    database = make_url(url).database
    if not database or database == ":memory:":
        return
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{database}{suffix}")
        try:
            if path.is_file() and path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
        except OSError:
            continue  # not ours to change (another user's file): opening it already worked or failed


class StoreMissing(StoreUnavailable):
    """The store this home recorded is gone (its SQLite file deleted, its database emptied): refused,
    never silently recreated (see :func:`adopt_store` to start a new one on purpose)."""

    title = "store missing"


class StoreReplaced(StoreUnavailable):
    """The database at the recorded address is another store (another ``store_id``): refused."""

    title = "store replaced"


#: The file in the home recording which stores it uses: ``{"stores": {url: {store_id, world, since}}}``.
STORE_RECORD = "store.json"
ADOPT_HINT = "opsconsole store adopt"


@dataclass(frozen=True)
class StoreRecord:
    """What a home remembers about a store it used: its id, its world, since when."""

    store_id: str
    world: str
    since: str


def _record_key(url: str) -> str:
    """A store's key in the record: its URL without the password (never written to the home)."""
    return redacted_url(url)


def record_path(home: Path | None = None) -> Path:
    return (home if home is not None else opsconsole_home()) / STORE_RECORD


def _read_records(home: Path | None) -> dict[str, Any]:
    path = record_path(home)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StoreUnavailable(f"{path}: the home's record of its store cannot be read ({exc}); restore it "
                               f"or remove it to record the store anew") from exc
    stores = document.get("stores") if isinstance(document, dict) else None
    return stores if isinstance(stores, dict) else {}


def recorded_store(url: str, home: Path | None = None) -> StoreRecord | None:
    """The record this home keeps of the store at ``url``, if it used it before."""
    entry = _read_records(home).get(_record_key(url))
    if not isinstance(entry, dict) or not isinstance(entry.get("store_id"), str):
        return None
    return StoreRecord(str(entry["store_id"]), str(entry.get("world", "")), str(entry.get("since", "")))


def record_store(url: str, record: StoreRecord | None, home: Path | None = None) -> None:
    """Write (``None``: forget) the home's record of the store at ``url``; atomic, 0600."""
    stores = _read_records(home)
    key = _record_key(url)
    if record is None:
        stores.pop(key, None)
    else:
        stores[key] = {"store_id": record.store_id, "world": record.world, "since": record.since}
    path = record_path(home)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump({"stores": stores}, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise StoreUnavailable(f"{path}: cannot record the store this home uses ({exc.strerror or exc})") \
            from exc


def _now_text() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _sqlite_file(url: str) -> Path | None:
    if not is_sqlite(url):
        return None
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def _missing_message(url: str, record: StoreRecord, what: str) -> str:
    return (f"{redacted_url(url)}: {what}; this home used the {record.world} store {record.store_id[:12]} "
            f"there (since {record.since}) and will not silently start an empty one (its jobs, requests "
            f"and audit would be gone). Restore the store from a backup, or start a new, empty one on "
            f"purpose with `{ADOPT_HINT}`")


def _replaced_message(url: str, record: StoreRecord, found: str | None) -> str:
    return (f"{redacted_url(url)}: this is not the store this home uses (expected store "
            f"{record.store_id[:12]}, found {found[:12] if found else 'one without an id'}): point "
            f"OPSCONSOLE_DB_URL / OPSCONSOLE_HOME back at the right store, restore it, or "
            f"accept this one on purpose with `{ADOPT_HINT}`")


def sqlite_file_missing(url: str) -> bool:
    """Whether ``url`` is a SQLite store whose file does not exist (opening it would create one)."""
    path = _sqlite_file(url)
    return path is not None and not path.exists()


def store_identity(database: Database) -> str | None:
    """The ``store_id`` the store at ``database`` carries (``None``: none yet), claiming nothing.

    Raises:
        StoreUnavailable: it cannot be read.
    """
    meta = store_meta_table.c
    try:
        with database.engine.connect() as conn:
            found = conn.execute(select(meta.value).where(meta.key == STORE_ID_KEY)).scalar()
    except SQLAlchemyError as exc:
        raise database.unavailable(exc, "read the store's id") from exc
    return None if found is None else str(found)


def _refuse_missing_sqlite(url: str, record: StoreRecord) -> None:
    """Before SQLite creates a file: a recorded store whose file is gone is refused."""
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        raise StoreMissing(_missing_message(url, record, "the store's file is gone"))


def _check_identity(engine: Engine, url: str, record: StoreRecord) -> None:
    """Before anything is created in it: the database at a recorded address is the recorded store."""
    with engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
        if "store_meta" not in names:
            empty = "the database there is empty (no opsconsole store)"
            raise StoreMissing(_missing_message(url, record, empty))
        meta = store_meta_table.c
        found = conn.execute(select(meta.value).where(meta.key == STORE_ID_KEY)).scalar()
    if found != record.store_id:
        raise StoreReplaced(_replaced_message(url, record, None if found is None else str(found)))


def adopt_store(url_or_home: str | Path | None, *, world: str, home: Path | None = None) -> tuple[
        StoreRecord | None, StoreRecord]:
    """Accept the store at ``url_or_home`` on purpose: the one there now (a restored or another store), or
    a new, empty one when it is gone. Returns ``(the record before, the record now)``.

    Raises:
        StoreUnavailable: the database cannot be reached (nothing is changed then).
    """
    url = database_url(url_or_home)
    before = recorded_store(url, home)
    probe = make_engine(url)
    try:
        with probe.connect():
            pass
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"{redacted_url(url)}: {_first_line(exc)} (nothing adopted)") from exc
    finally:
        probe.dispose()
    record_store(url, None, home)
    try:
        database = Database(url, world=world, home=home)
    except BaseException:
        if before is not None:
            record_store(url, before, home)
        raise
    try:
        now = recorded_store(url, home)
        assert now is not None and database.store_id == now.store_id
        return before, now
    finally:
        database.close()


class StoreReadOnly(StoreUnavailable):
    """The SQLite store (or its directory) cannot be written: a setup mistake the user fixes (exit 2)."""

    title = "store read-only"
    user_error = True


class StoreFull(StoreUnavailable):
    """The file system holding the SQLite store is full: nothing can be recorded until space is freed."""

    title = "store's disk full"


#: Below this many free bytes the file system of a SQLite store counts as full.
FULL_BELOW_BYTES = 256 * 1024


def _sqlite_diagnosis(url: str) -> StoreUnavailable | None:
    """What is wrong with a SQLite store's file in words (read-only, disk full), when it can be told.

    SQLite says "unable to open database file", "attempt to write a readonly database" or "disk I/O
    error"; the user needs to know which file, and what to do.
    """
    path = _sqlite_file(url)
    if path is None:
        return None
    directory = path.parent
    try:
        info = os.statvfs(directory)
    except OSError:
        return None
    if info.f_bavail * info.f_frsize < FULL_BELOW_BYTES:
        free = info.f_bavail * info.f_frsize
        return StoreFull(f"{path}: the file system holding the store is full ({free} bytes free): free some "
                         f"space there and try again")
    for where in (directory, path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if where.exists() and not os.access(where, os.W_OK):
            return StoreReadOnly(f"{where}: read-only, and opsconsole records jobs, requests and the audit "
                                 f"in {path}: make it writable (a read-only mount or chmod), or point "
                                 f"OPSCONSOLE_HOME / OPSCONSOLE_DB_URL at a writable store")
    return None


class SchemaTooNew(StoreUnavailable):
    """A newer opsconsole migrated the database: this one must not guess at a schema it does not know."""

    title = "database schema too new"


#: The PostgreSQL advisory lock (a bigint of our choosing, b"opsschem") held while the schema is upgraded.
SCHEMA_LOCK_KEY = 0x6F7073736368656D
#: Alembic's bookkeeping table: one row, the revision the database is at.
_VERSION_TABLE = "alembic_version"
#: Databases made before Alembic, newest first: the revision whose tables they hold, and those tables.
#: The previous release created ``jobs`` and ``job_events``; main between that release and the migrations
#: created every table of 0002 with ``create_all``, in exactly 0002's shape.
_UNVERSIONED = (
    ("0002", frozenset({"jobs", "job_events", "change_requests", "votes", "leases", "lease_guard",
                        "audit_log", "audit_head", "leaders"})),
    ("0001", frozenset({"jobs", "job_events"})),
)

#: Threads of one process take turns (they would wait on the database's lock anyway), so that each
#: puts back the Alembic log level it found.
_UPGRADE_IN_PROCESS = threading.Lock()


def ensure_schema(engine: Engine) -> bool:
    """Bring the database's schema to the newest revision with Alembic (idempotent, safe to race).

    At head (every open after the first) this is one query and does not import Alembic. Otherwise it
    serialises with every other opener — PostgreSQL's ``pg_advisory_xact_lock``, SQLite's write lock
    (``BEGIN IMMEDIATE``) — reads the revision again, adopts a database made before migrations existed
    (stamps the revision whose tables it holds), and runs ``upgrade head`` in that one transaction: a
    concurrent opener waits, then finds head; a failed upgrade leaves the database as it was.

    Returns:
        Whether this call changed the schema (``False`` when another opener had already done it).

    Raises:
        SchemaTooNew: the database is at a revision this opsconsole does not know.
        StoreUnavailable: Alembic refused the upgrade.
        SQLAlchemyError: the database failed (unreachable, locked beyond the busy timeout…).
    """
    if _fast_revision(engine) == migrations.HEAD:
        return False
    with _UPGRADE_IN_PROCESS:
        alembic_logger = logging.getLogger("alembic")
        level = alembic_logger.level
        # Alembic logs each step at INFO; an app that logs INFO to the console would show them.
        alembic_logger.setLevel(logging.WARNING)
        try:
            with engine.connect() as conn:
                if conn.dialect.name == "sqlite":
                    _begin_sqlite_immediate(conn)
                else:
                    conn.begin()
                    if conn.dialect.name == "postgresql":
                        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")
                try:
                    changed = _upgrade_locked(conn, redacted_url(engine.url.render_as_string()))
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
                return changed
        finally:
            alembic_logger.setLevel(level)


def _fast_revision(engine: Engine) -> str | None:
    """The revision in ``alembic_version``, read without Alembic (about 120 ms to import) on the hot path.

    ``MigrationContext.get_current_revision`` does the same two queries; :func:`_upgrade_locked` uses it
    once Alembic is needed anyway.
    """
    with engine.connect() as conn:
        if not inspect(conn).has_table(_VERSION_TABLE):
            return None
        rows = conn.exec_driver_sql(f"SELECT version_num FROM {_VERSION_TABLE}").scalars().all()
    return str(rows[0]) if len(rows) == 1 else None


def _begin_sqlite_immediate(conn: Connection) -> None:
    """Begin ``conn``'s transaction holding SQLite's write lock, whatever pysqlite's transaction mode.

    Readers carry on (WAL); a second opener waits here (busy timeout) until the first commits.
    """
    conn.begin()
    raw: Any = conn.connection.dbapi_connection
    if raw.in_transaction:
        # An engine "begin" hook (make_engine's, when pysqlite's own transaction handling is off) already
        # emitted a plain, deferred BEGIN; nothing has been read in it yet, so ending it and starting
        # over IMMEDIATE loses nothing.
        conn.exec_driver_sql("COMMIT")
    # SQLAlchemy's own transaction stays open around it: its commit()/rollback() end this one.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _upgrade_locked(conn: Connection, where: str) -> bool:
    """Adopt, check and upgrade the schema on ``conn``, whose transaction holds the schema lock."""
    # Alembic is imported here only: opening a database already at head must not pay for it.
    from alembic import command  # noqa: PLC0415
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415
    from alembic.script import ScriptDirectory  # noqa: PLC0415
    from alembic.util.exc import CommandError  # noqa: PLC0415

    try:
        context = MigrationContext.configure(conn)
        current = context.get_current_revision()
        if current == migrations.HEAD:
            return False  # another opener upgraded it while this one waited for the lock
        config = migrations.alembic_config(conn)
        script = ScriptDirectory.from_config(config)
        if current is None:
            tables = set(inspect(conn).get_table_names())
            adopt = next((rev for rev, needed in _UNVERSIONED if needed <= tables), None)
            if adopt is not None:
                context.stamp(script, adopt)
        elif current not in {s.revision for s in script.walk_revisions()}:
            raise SchemaTooNew(
                f"{where}: database schema is at revision {current}, newer than this opsconsole knows "
                f"(head {script.get_current_head()}): upgrade opsconsole"
            )
        command.upgrade(config, "head")
    except CommandError as exc:  # several heads recorded, a broken script…
        raise StoreUnavailable(f"{where}: the schema cannot be upgraded: {exc}") from exc
    return True


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- the ops server's authority (migration 0004) ---------------------------------------------------------

#: Personal API tokens: only the SHA-256 of a token is stored; the token itself is shown once.
api_tokens_table = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("person", String(256), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("label", String(256)),
    Column("created_by", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    Column("last_used_addr", String(64)),
    Column("revoked_at", DateTime(timezone=True)),
)

#: The store's identity, written once: ``store_id`` and ``world`` (sandbox or live).
store_meta_table = Table(
    "store_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)
