"""The RTO clock the command line shows while a failover / failback runs (``RTO 2:31 / 15:00``).

:func:`rto_clock` wraps the following of a run (``opsconsole act failover``, ``approvals run``,
``drill failover``): on a terminal, a status line on stderr ticks every second; without one (a pipe, a
log), one line ``RTO 0:12 / 15:00`` goes to stdout as the run's task lines arrive, at most every
:data:`PIPE_EVERY_S`. The target is the same computation every face uses
(:func:`opsconsole.core.change.rto.rto_target`, the most critical tier the move affects), on the fleet
the server serves; the verdict at the end is the one the server recorded on the job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from opsconsole.cli.context import err, out
from opsconsole.core.change.rto import RTO_ACTIONS, clock, clock_text, elapsed_s, rto_target
from opsconsole.core.errors import OpsError

if TYPE_CHECKING:
    from opsconsole.core.api import OpsApi
    from opsconsole.core.runs.records import Job

#: Without a terminal, how often (at most) a clock line is printed among the task lines.
PIPE_EVERY_S = 5.0
#: On a terminal, how often the status line ticks.
TICK_S = 1.0


def target_for(ops: OpsApi, job: Job) -> float | None:
    """The RTO ``job`` is held to (seconds), or ``None`` (not a move, a preview, or no fleet to read)."""
    if job.action not in RTO_ACTIONS or job.check_mode:
        return None
    try:
        target = rto_target(ops.fleet().fleet, job.action, job.params)
    except OpsError:
        return None
    return target.target_s if target is not None else None


class _Clock:
    def __init__(self, ops: OpsApi, job: Job, target_s: float) -> None:
        self.ops = ops
        self.job = job
        self.target_s = target_s
        self.printed_at = 0.0

    def started(self) -> Job:
        if self.job.started_at is None:
            with suppress(OpsError):
                self.job = self.ops.job(self.job.id)
        return self.job

    def text(self) -> str:
        elapsed = elapsed_s(self.started(), datetime.now(UTC))
        if elapsed is None:
            return f"RTO clock starts with the run (target {clock(self.target_s)})"
        return clock_text(elapsed, self.target_s)

    def tick(self) -> None:
        """Without a terminal: a clock line among the task lines, at most every PIPE_EVERY_S."""
        now = time.monotonic()
        if now - self.printed_at >= PIPE_EVERY_S:
            self.printed_at = now
            out.print(f"  [cyan]{self.text()}[/]")


@contextmanager
def rto_clock(ops: OpsApi, job: Job, *, show: bool = True) -> Iterator[Callable[[], None] | None]:
    """Show the RTO clock of ``job`` while the block follows it; yields the tick to call as task lines
    arrive (``None`` when there is no clock to show, or a terminal status line ticks by itself)."""
    target_s = target_for(ops, job) if show else None
    if target_s is None:
        yield None
        return
    state = _Clock(ops, job, target_s)
    if not err.is_terminal:
        state.tick()
        yield state.tick
        return
    stop = threading.Event()
    with err.status(state.text()) as status:

        def ticking() -> None:
            while not stop.wait(TICK_S):
                status.update(state.text())

        thread = threading.Thread(target=ticking, name="rto-clock", daemon=True)
        thread.start()
        try:
            yield None
        finally:
            stop.set()
            thread.join(timeout=2)
