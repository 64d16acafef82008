"""The RTO clock line on a failover / failback request's message in the approvals channel.

Why: the request's message is what the approvers and the requester keep looking at while the move runs
(it is edited in place, see :mod:`bot.progress`); the clock belongs there, next to the run's progress,
not only in the thread. The computation is the one every face uses (:mod:`opsconsole.core.change.rto`):
the target is the RTO of the most critical tier the move affects, the clock runs from the job's start,
and once the pipeline has recorded the verdict on the job (``job.stats["rto"]``) the line says it.

Use (the runtime does, for each rendering)::

    line = rto_line(core.fleet, request, job, now)   # ":stopwatch: RTO 2:31 / 15:00 (critical tier)"
    blocks.request_message(request, ..., rto=line)

While the run goes on, :meth:`bot.runtime.BotRuntime.follow_once` marks such a request's message dirty
every poll, so the updater re-renders it at its usual pace (at most one edit per ``update_interval_s``).
"""

from __future__ import annotations

from datetime import datetime

from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.change.rto import RTO_ACTIONS, clock, clock_text, elapsed_s, rto_target, verdict_of
from opsconsole.core.fleet.model import Fleet
from opsconsole.core.runs.records import Job

EMOJI = ":stopwatch:"


def ticking(request: ChangeRequest) -> bool:
    """Whether ``request``'s message shows a clock that moves (a move against an RTO, running)."""
    return request.action in RTO_ACTIONS and request.status is RequestStatus.RUNNING


def rto_line(fleet: Fleet, request: ChangeRequest, job: Job | None, now: datetime) -> str | None:
    """The RTO line of ``request``'s message, or ``None`` (not a move, not started, or no target).

    * running: ``:stopwatch: RTO 2:31 / 15:00 (critical tier)`` (before the job starts: the target);
    * ended, verdict recorded: ``:stopwatch: RTO met, 14:32 to spare (…)`` / ``RTO missed by 1:05 (…)``;
    * ended without a verdict on the job (yet): the clock as it stopped.
    """
    if request.action not in RTO_ACTIONS or job is None or job.check_mode:
        return None
    verdict = verdict_of(job)
    if verdict is not None:
        if not verdict.completed:
            said = f"missed: the {verdict.action} did not complete"
        elif verdict.met:
            said = f"met, {clock(verdict.margin_s)} to spare"
        else:
            said = f"missed by {clock(-verdict.margin_s)}"
        return (f"{EMOJI} *RTO {said}* — {clock_text(verdict.rto_s, verdict.target_s)} "
                f"({verdict.tier} tier)")
    target = rto_target(fleet, request.action, request.params)
    if target is None:
        return None
    elapsed = elapsed_s(job, now)
    if elapsed is None:
        return f"{EMOJI} RTO clock starts with the run (target {clock(target.target_s)}, {target.tier} tier)"
    return f"{EMOJI} {clock_text(elapsed, target.target_s)} ({target.tier} tier)"
