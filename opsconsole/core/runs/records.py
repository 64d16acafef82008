"""A playbook run (a job) as every face sees it, free of the store: the server sends it, clients read it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


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

    ``pid`` is the process of the console that owns the run (not ansible-playbook's); ``owner`` names it
    across hosts and boots and ``heartbeat_at`` says when it last proved alive: a job left ``running``
    whose owner is provably gone (or silent past the heartbeat window, in database time) was interrupted.
    ``stats`` is ``{"hosts": {host: counts},
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
    #: The owner's identity (``host/boot_id/pid/start``, see :class:`opsconsole.core.processes.Owner`) and
    #: its last heartbeat in database time: what decides whether a ``running`` job is dead.
    owner: str | None = None
    heartbeat_at: datetime | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()
