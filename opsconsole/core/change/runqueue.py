"""Approved runs as a queue: any replica may take one, none twice, a bounded number at once.

A request that is approved (and not run at once by whoever approved it) waits in ``change_requests``
with status ``approved``. Each server (or bot replica) on the store runs a :class:`RunQueue`: it looks
for approved requests, takes as many as it has free slots (``max_parallel``, default 4), and runs each
through :meth:`Pipeline.execute` in a worker thread of its own, so one slow run never holds the others.

Never the same run twice: on PostgreSQL the look-up is ``SELECT … FOR UPDATE SKIP LOCKED`` (two
replicas polling at the same instant pick different requests instead of queueing on one row), and
whatever two replicas pick, only one wins the pipeline's ``approved → running`` compare-and-set — the
other is refused quietly ("already running") and moves on. On SQLite (one machine) the same plain query
serves; the compare-and-set is the guarantee there as everywhere.

Use::

    queue = RunQueue(pipeline, who=SCHEDULER_IDENTITY, face="queue", max_parallel=4)
    queue.start(poll_s=2.0)          # a daemon thread: drain(), sleep, drain()…
    queue.drain()                    # or one pass, from a test or a request handler
    queue.stop(); queue.join(60)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.pipeline import Pipeline
from opsconsole.core.change.rbac import Identity
from opsconsole.core.errors import OpsError
from opsconsole.core.store.db import requests_table

log = logging.getLogger(__name__)

#: Independent approved runs executed at once by one process, unless configured otherwise.
DEFAULT_PARALLEL_RUNS = 4


class RunQueue:
    """Takes approved requests from the store and runs them, at most ``max_parallel`` at once.

    Args:
        pipeline: the pipeline that runs them (its ``execute`` re-plans, checks, leases and starts).
        who: the identity the runs execute as (it must be allowed to run in the requests' scopes).
        face: recorded in the audit as where the run was started from.
        max_parallel: how many runs this process executes at once.
        on_done: called with ``(request_id, error)`` after each attempt (``error`` ``None`` on success).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        who: Identity,
        face: str = "queue",
        max_parallel: int = DEFAULT_PARALLEL_RUNS,
        on_done: Callable[[str, OpsError | None], None] | None = None,
    ) -> None:
        if max_parallel < 1:
            raise ValueError(f"max_parallel must be at least 1, not {max_parallel}")
        self.pipeline = pipeline
        self.who = who
        self.face = face
        self.max_parallel = max_parallel
        self.on_done = on_done
        self._slots = threading.BoundedSemaphore(max_parallel)
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._workers: list[threading.Thread] = []
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # -- taking --------------------------------------------------------------------------------------

    def approved(self, limit: int) -> list[str]:
        """Up to ``limit`` approved requests, oldest first, that no other replica is picking right now."""
        table = requests_table
        statement = (
            select(table.c.id)
            .where(table.c.status == str(RequestStatus.APPROVED))
            .order_by(table.c.created_at, table.c.id)
            .limit(limit)
        )
        database = self.pipeline.database
        try:
            with database.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    statement = statement.with_for_update(skip_locked=True)
                return [str(row) for row in conn.execute(statement).scalars()]
        except SQLAlchemyError as exc:
            raise database.unavailable(exc, "look for approved runs") from exc

    def drain(self) -> list[str]:
        """One pass: start a worker for each approved request that fits in a free slot; returns their ids."""
        with self._lock:
            busy = set(self._running)
        free = self.max_parallel - len(busy)
        if free <= 0:
            return []
        started = []
        for request_id in self.approved(free + len(busy)):
            if request_id in busy:
                continue
            if not self._slots.acquire(blocking=False):
                break
            with self._lock:
                self._running.add(request_id)
            worker = threading.Thread(target=self._run, args=(request_id,),
                                      name=f"opsconsole-run-{request_id[:8]}", daemon=True)
            self._workers.append(worker)
            worker.start()
            started.append(request_id)
        return started

    def _run(self, request_id: str) -> None:
        error: OpsError | None = None
        try:
            self.pipeline.execute(request_id, self.who, face=self.face, wait=True)
        except OpsError as exc:  # refused (run elsewhere, expired, drifted, busy) or the store is away
            error = exc
            log.info("approved request %s not run here: %s", request_id[:8], exc.message)
        except Exception as exc:  # a bug must not kill the queue silently: one line, then go on
            error = OpsError(f"{type(exc).__name__}: {exc}")
            log.error("approved request %s: the run failed to start: %s", request_id[:8], error.message)
        finally:
            with self._lock:
                self._running.discard(request_id)
            self._slots.release()
        if self.on_done is not None:
            self.on_done(request_id, error)

    # -- in the background ---------------------------------------------------------------------------

    def start(self, poll_s: float = 2.0) -> None:
        """Drain every ``poll_s`` seconds in a daemon thread until :meth:`stop`."""
        if self._poller is not None:
            return

        def loop() -> None:
            told = False
            while not self._stop.is_set():
                try:
                    self.drain()
                    told = False
                except OpsError as exc:
                    if not told:
                        log.warning("the run queue cannot look for approved runs: %s", exc.message)
                        told = True
                self._stop.wait(poll_s)

        self._poller = threading.Thread(target=loop, name="opsconsole-run-queue", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the workers started so far (and the poller, once stopped)."""
        if self._poller is not None and self._stop.is_set():
            self._poller.join(timeout)
        for worker in list(self._workers):
            worker.join(timeout)

    @property
    def running(self) -> set[str]:
        with self._lock:
            return set(self._running)
