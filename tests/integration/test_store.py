"""The job store on both back ends: the same calls give the same answers on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from opsconsole.core.runs.events import EventKind, JobEvent
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.records import JobStatus
from opsconsole.core.store.db import Database, StoreUnavailable


def test_jobs_and_events_round_trip(db_url: str) -> None:
    store = JobStore(db_url)
    try:
        job = store.create_job(action="scale", params={"replicas": 4}, playbook="scale.yml", check_mode=True,
                               actor="alice", face="cli")
        assert store.update_job(job.id, only_if_status=JobStatus.QUEUED, status=JobStatus.RUNNING)
        assert not store.update_job(job.id, only_if_status=JobStatus.QUEUED, status=JobStatus.FAILED)
        at = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
        for seq in (1, 2, 3):
            store.add_event(JobEvent(job_id=job.id, seq=seq, at=at, kind=EventKind.OK, host="localhost",
                                     play="p", task=f"t{seq}", message="", changed=seq == 2, data={"n": seq}))
        assert [e.task for e in store.events(job.id, after_seq=1)] == ["t2", "t3"]
        assert store.last_seq(job.id) == 3
        got = store.get(job.id)
        assert got is not None and got.status is JobStatus.RUNNING and got.params == {"replicas": 4}
        assert got.created_at.tzinfo is not None
        assert [j.id for j in store.list(status=JobStatus.RUNNING)] == [job.id]
    finally:
        store.close()


def test_an_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(StoreUnavailable) as caught:
        Database("postgresql+psycopg://nobody:secret@127.0.0.1:9/none")
    assert "127.0.0.1:9" in str(caught.value)
    assert "secret" not in str(caught.value)
