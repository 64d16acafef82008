"""The database every face shares: where it is, how to connect, and the schema.

One schema for jobs, change requests and their votes, leases on targets and the audit log, so that a
request filed in Slack can be approved in the terminal and both see the same runs and the same record.
SQLite (WAL, a busy timeout) under ``OPSCONSOLE_HOME`` by default; any SQLAlchemy URL through
``OPSCONSOLE_DB_URL`` — PostgreSQL (psycopg 3) for teams and for several bot replicas. The SQL stays
portable: no dialect-only types, JSON through SQLAlchemy's ``JSON``, times stored in UTC, and the
atomic steps (compare-and-set on a request's version, taking a lease, appending to the audit chain)
written as single ``UPDATE … WHERE`` / ``INSERT`` statements whose row counts tell who won.

The tables here are the schema's single description in code; :mod:`opsconsole.core.migrations`
(Alembic) creates and evolves it in a database.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
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
)
from sqlalchemy.exc import SQLAlchemyError

from opsconsole.core.errors import OpsError
from opsconsole.core.paths import opsconsole_home

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


# -- connecting ----------------------------------------------------------------------------------------


def database_url(url_or_home: str | Path | None = None) -> str:
    """The URL to open: a URL given, ``OPSCONSOLE_DB_URL``, or the home's SQLite file."""
    if isinstance(url_or_home, str) and "://" in url_or_home:
        return url_or_home
    if url_or_home is None:
        configured = os.environ.get("OPSCONSOLE_DB_URL")
        if configured:
            return configured
        url_or_home = opsconsole_home()
    home = Path(url_or_home)
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / DB_FILE}"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


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
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: everything stored is UTC, so say so."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def db_value(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


def redacted_url(url: str) -> str:
    """``url`` without its password, for messages."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415

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

    def __init__(self, url_or_home: str | Path | None = None) -> None:
        self.url = database_url(url_or_home)
        self.engine = make_engine(self.url)
        try:
            ensure_schema(self.engine)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise StoreUnavailable(f"{redacted_url(self.url)}: {_first_line(exc)}") from exc

    @property
    def sqlite(self) -> bool:
        return is_sqlite(self.url)

    def close(self) -> None:
        self.engine.dispose()


def ensure_schema(engine: Engine) -> None:
    """Bring the database's schema up to date (idempotent)."""
    metadata.create_all(engine)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
