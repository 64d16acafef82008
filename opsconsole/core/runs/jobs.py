"""Where jobs and their events persist, so that any face can show them later.

SQLAlchemy Core over the shared database of :mod:`opsconsole.core.store.db` (SQLite under the home by default,
PostgreSQL through ``OPSCONSOLE_DB_URL``).

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
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import RowMapping

from opsconsole.core.clock import Clock, SystemClock, utc
from opsconsole.core.runs.events import EventKind, JobEvent
from opsconsole.core.runs.records import Job, JobStatus
from opsconsole.core.store.db import Database, db_value, job_events_table, jobs_table
from opsconsole.core.store.dbtime import database_now

_UPDATABLE = frozenset(c.name for c in jobs_table.columns) - {"id"}
_utc = utc
_db_value = db_value


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
        owner=row.get("owner"),
        heartbeat_at=_utc(row.get("heartbeat_at")),
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


class JobStore:
    """Jobs and job events in a SQL database. Thread-safe; every call is its own transaction."""

    def __init__(
        self, url_or_home: str | Path | Database | None = None, *, clock: Clock | None = None
    ) -> None:
        self.database = url_or_home if isinstance(url_or_home, Database) else Database(url_or_home)
        self._owns_database = not isinstance(url_or_home, Database)
        self.url = self.database.url
        self.engine = self.database.engine
        self.clock: Clock = clock or SystemClock()

    def close(self) -> None:
        if self._owns_database:
            self.database.close()

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
        owner: str | None = None,
    ) -> Job:
        """Record a new job (``queued`` unless told otherwise) and return it.

        With ``owner`` (see :mod:`opsconsole.core.runs.owners`) the job's first heartbeat is stamped in
        database time in the same statement.
        """
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
            owner=owner,
        )
        with self.engine.begin() as conn:
            beat = database_now(conn) if owner is not None else None
            conn.execute(
                jobs_table.insert().values(
                    id=job.id, action=job.action, params=dict(job.params), playbook=job.playbook,
                    check_mode=job.check_mode, status=str(job.status), actor=job.actor, face=job.face,
                    created_at=job.created_at, pid=job.pid, stats={}, timings=[], owner=owner,
                    heartbeat_at=beat,
                )
            )
        return replace(job, heartbeat_at=beat)

    def heartbeat(self, job_ids: Sequence[str]) -> int:
        """Renew the heartbeat of these jobs while they are queued or running (database time).

        Returns how many were renewed.
        """
        if not job_ids:
            return 0
        with self.engine.begin() as conn:
            now = database_now(conn)
            result = conn.execute(
                update(jobs_table)
                .where(jobs_table.c.id.in_(builtins.list(job_ids)),
                       jobs_table.c.status.in_([str(JobStatus.QUEUED), str(JobStatus.RUNNING)]))
                .values(heartbeat_at=now)
            )
        return int(result.rowcount or 0)

    def database_now(self) -> datetime:
        """The store's clock now (see :mod:`opsconsole.core.store.dbtime`)."""
        with self.engine.connect() as conn:
            return database_now(conn)

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
