"""Where jobs and their events persist, so that any face can show them later.

SQLAlchemy Core over SQLite by default (``<home>/opsconsole.db``, WAL, a busy timeout so that a TUI, a bot
and a CLI call can share the file), or any SQLAlchemy URL (PostgreSQL for teams: it arrives with the
Approvals issue, so the SQL here stays portable: no SQLite-only types or statements, JSON through
SQLAlchemy's portable ``JSON`` type, times stored in UTC).

The schema is created with ``metadata.create_all`` for now; Alembic migrations come with the Approvals
issue, which is the first to change a table that already holds users' data.

Use::

    store = JobStore(home)                    # or JobStore("postgresql+psycopg://…")
    job = store.create_job(action="scale", params={...}, playbook="scale.yml", check_mode=False,
                           actor="alice", face="cli")
    store.update_job(job.id, status=JobStatus.RUNNING, started_at=now)
    store.add_event(event)
    store.events(job.id, after_seq=10)        # what a follower has not seen yet
"""

from __future__ import annotations

import builtins
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import RowMapping

from opsconsole.core.clock import Clock, SystemClock
from opsconsole.core.events import EventKind, JobEvent
from opsconsole.core.paths import opsconsole_home

DB_FILE = "opsconsole.db"
SQLITE_BUSY_TIMEOUT_MS = 10_000


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"  # the console died mid-run: the outcome is unknown

    @property
    def terminal(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass(frozen=True)
class Job:
    """One playbook run, as recorded.

    ``pid`` is the process of the console that owns the run (not ansible-playbook's): a job left
    ``running`` whose owner is gone was interrupted. ``stats`` is ``{"hosts": {host: counts},
    "totals": counts}`` with counts ok / changed / failed / skipped / unreachable / rescued / ignored;
    ``timings`` is the playbook's ``opsconsole_timings`` (set_stats), if it recorded any.
    """

    id: str
    action: str
    params: Mapping[str, Any]
    playbook: str
    check_mode: bool
    status: JobStatus
    actor: str
    face: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    rc: int | None = None
    last_task: str | None = None
    stats: Mapping[str, Any] = field(default_factory=dict)
    timings: Sequence[Mapping[str, Any]] = ()
    pid: int | None = None
    error: str | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


metadata = MetaData()

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

_UPDATABLE = frozenset(c.name for c in jobs_table.columns) - {"id"}


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: everything stored is UTC, so say so."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _db_value(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


def _job(row: RowMapping) -> Job:
    created = _utc(row["created_at"])
    assert created is not None
    return Job(
        id=row["id"],
        action=row["action"],
        params=row["params"] or {},
        playbook=row["playbook"],
        check_mode=bool(row["check_mode"]),
        status=JobStatus(row["status"]),
        actor=row["actor"],
        face=row["face"],
        created_at=created,
        started_at=_utc(row["started_at"]),
        finished_at=_utc(row["finished_at"]),
        rc=row["rc"],
        last_task=row["last_task"],
        stats=row["stats"] or {},
        timings=tuple(row["timings"] or ()),
        pid=row["pid"],
        error=row["error"],
    )


def _event(row: RowMapping) -> JobEvent:
    at = _utc(row["at"])
    assert at is not None
    return JobEvent(
        job_id=row["job_id"],
        seq=row["seq"],
        at=at,
        kind=EventKind(row["kind"]),
        host=row["host"],
        play=row["play"],
        task=row["task"],
        message=row["message"],
        changed=bool(row["changed"]),
        data=row["data"] or {},
    )


def database_url(url_or_home: str | Path | None = None) -> str:
    """The URL a :class:`JobStore` opens: a URL given, ``OPSCONSOLE_DB_URL``, or the home's SQLite file."""
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


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
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


class JobStore:
    """Jobs and job events in a SQL database. Thread-safe; every call is its own transaction."""

    def __init__(self, url_or_home: str | Path | None = None, *, clock: Clock | None = None) -> None:
        self.url = database_url(url_or_home)
        self.clock: Clock = clock or SystemClock()
        self.engine = _make_engine(self.url)
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- jobs ------------------------------------------------------------------------------------

    def create_job(
        self,
        *,
        action: str,
        params: Mapping[str, Any],
        playbook: str,
        check_mode: bool,
        actor: str,
        face: str,
        status: JobStatus = JobStatus.QUEUED,
        pid: int | None = None,
    ) -> Job:
        """Record a new job (``queued`` unless told otherwise) and return it."""
        job = Job(
            id=uuid.uuid4().hex,
            action=action,
            params=dict(params),
            playbook=playbook,
            check_mode=check_mode,
            status=status,
            actor=actor,
            face=face,
            created_at=self.clock.now().astimezone(UTC),
            pid=pid,
        )
        with self.engine.begin() as conn:
            conn.execute(
                jobs_table.insert().values(
                    id=job.id, action=job.action, params=dict(job.params), playbook=job.playbook,
                    check_mode=job.check_mode, status=str(job.status), actor=job.actor, face=job.face,
                    created_at=job.created_at, pid=job.pid, stats={}, timings=[],
                )
            )
        return job

    def update_job(self, job_id: str, *, only_if_status: JobStatus | None = None, **fields: Any) -> bool:
        """Set ``fields`` of a job; returns whether a row was changed.

        With ``only_if_status`` the update happens only while the job still has that status, atomically:
        two processes finishing or cancelling the same job cannot overwrite each other.

        Raises:
            ValueError: a field that is not a column of ``jobs``.
        """
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not job fields: {', '.join(sorted(unknown))}")
        if not fields:
            return self.get(job_id) is not None
        statement = update(jobs_table).where(jobs_table.c.id == job_id)
        if only_if_status is not None:
            statement = statement.where(jobs_table.c.status == str(only_if_status))
        with self.engine.begin() as conn:
            result = conn.execute(statement.values({k: _db_value(v) for k, v in fields.items()}))
        return bool(result.rowcount)

    def get(self, job_id: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs_table).where(jobs_table.c.id == job_id)).mappings().first()
        return _job(row) if row is not None else None

    def list(
        self, limit: int = 50, status: JobStatus | Sequence[JobStatus] | None = None
    ) -> builtins.list[Job]:
        """The newest jobs first, optionally only those with ``status`` (one or several)."""
        statement = select(jobs_table).order_by(jobs_table.c.created_at.desc(), jobs_table.c.id).limit(limit)
        if status is not None:
            wanted = [status] if isinstance(status, JobStatus) else list(status)
            statement = statement.where(jobs_table.c.status.in_([str(s) for s in wanted]))
        with self.engine.connect() as conn:
            return [_job(row) for row in conn.execute(statement).mappings()]

    # -- events ----------------------------------------------------------------------------------

    def add_event(self, job_event: JobEvent) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                job_events_table.insert().values(
                    job_id=job_event.job_id, seq=job_event.seq, at=job_event.at.astimezone(UTC),
                    kind=str(job_event.kind), host=job_event.host, play=job_event.play, task=job_event.task,
                    message=job_event.message, changed=job_event.changed, data=dict(job_event.data),
                )
            )

    def events(self, job_id: str, after_seq: int = 0) -> builtins.list[JobEvent]:
        """A job's events with ``seq > after_seq``, in order."""
        return builtins.list(self.iter_events(job_id, after_seq))

    def iter_events(self, job_id: str, after_seq: int = 0) -> Iterator[JobEvent]:
        statement = (
            select(job_events_table)
            .where(job_events_table.c.job_id == job_id, job_events_table.c.seq > after_seq)
            .order_by(job_events_table.c.seq)
        )
        with self.engine.connect() as conn:
            rows = builtins.list(conn.execute(statement).mappings())
        for row in rows:
            yield _event(row)

    def last_seq(self, job_id: str) -> int:
        """The highest event ``seq`` of a job, 0 when it has none."""
        with self.engine.connect() as conn:
            value = conn.execute(
                select(func.max(job_events_table.c.seq)).where(job_events_table.c.job_id == job_id)
            ).scalar()
        return int(value or 0)
