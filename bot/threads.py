"""Nobody left guessing: approvers are called by name, and the request's thread tells its story.

Why: the card in #approvals is edited in place, and an edit notifies nobody. So, beside it:

* **a DM card to each eligible approver** (mapped to a Slack user in rbac.yml), with the same Approve /
  Reject buttons, once per request and plan (after drift the new plan is sent again), at most
  :data:`MAX_DMS` people (the channel card mentions the rest);
* **a reminder in the thread** when the request has :data:`REMIND_BEFORE` (or a third of its life, if
  shorter) left without enough approvals, mentioning who may still approve;
* **milestones in the thread**: approved, running, and the result, mentioning the requester (and the
  approvers for the result); a failure is broadcast to the channel too; rejected / expired tell the
  requester why, and how to file it again;
* **an overrun**: a run taking longer than the p95 of its action's past successful runs (at least
  :data:`MIN_SAMPLES` of them) is noticed in the thread, once (:func:`p95`, :meth:`ThreadNotes.overrun`).

Each note is sent once across replicas (an outbox dedupe key per request, status and plan cycle). All of
it is best effort: a failed note is logged, never retried in a loop (the card itself is what must not be
lost, and :mod:`bot.posting` sees to that).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot import blocks
from bot.blocks import Message
from bot.progress import FACE
from bot.slackcalls import SlackCalls
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.change.rto import RTO_ACTIONS, RtoVerdict, rto_target
from opsconsole.core.fleet.model import Fleet
from opsconsole.core.store.outbox import Outbox

log = logging.getLogger(__name__)

MAX_DMS = 20
MIN_SAMPLES = 5
REMIND_BEFORE = timedelta(minutes=10)

MILESTONES: dict[RequestStatus, str] = {
    RequestStatus.APPROVED: ":white_check_mark: Approved by {approvers}.",
    RequestStatus.RUNNING: ":gear: Running now (job `{job}`); this card follows it.",
    RequestStatus.SUCCEEDED: ":white_check_mark: Succeeded{took}. {requester} {approvers}",
    RequestStatus.FAILED: ":x: *Failed*{took}: {error} {requester} {approvers} — "
    "`opsconsole jobs logs {job}`",
    RequestStatus.INTERRUPTED: ":warning: Interrupted{took}: {error} {requester}",
    RequestStatus.REJECTED: ":no_entry: {requester} rejected: {reason}. To try again, file it anew "
    "(`/ops {again}`).",
    RequestStatus.EXPIRED: ":clock3: {requester} it expired without enough approvals: nothing ran. To try "
    "again: `/ops {again}`.",
    RequestStatus.CANCELLED: ":heavy_minus_sign: Cancelled.",
}
BROADCAST = (RequestStatus.FAILED, RequestStatus.INTERRUPTED)


class NotesHost(Protocol):
    """What the notes need of :class:`bot.runtime.BotRuntime`."""

    outbox: Outbox
    slack: SlackCalls

    def slack_id(self, person: str) -> str | None: ...
    def mentions(self, persons: Sequence[str]) -> list[str]: ...
    def may_approve(self, request: ChangeRequest) -> list[str]: ...
    def approver_mentions(self, request: ChangeRequest) -> list[str]: ...
    def render_request(self, request: ChangeRequest) -> Message: ...


def again(request: ChangeRequest) -> str:
    """The ``/ops`` command that files the same change again."""
    p = request.params
    if request.action == "failover":
        return f"failover {p.get('from_region')} {p.get('to_region')}"
    if request.action == "failback":
        return f"failback {p.get('region')}"
    if request.action == "scale":
        return f"scale {p.get('service')} {p.get('replicas')} --region {p.get('region')}"
    return f"{request.action} " + " ".join(str(v) for v in p.values() if v is not None)


def p95(durations: Sequence[float]) -> float | None:
    """The 95th percentile (nearest rank) of ``durations``; ``None`` below :data:`MIN_SAMPLES`."""
    if len(durations) < MIN_SAMPLES:
        return None
    ordered = sorted(durations)
    return ordered[min(len(ordered) - 1, max(0, -(-95 * len(ordered) // 100) - 1))]


class ThreadNotes:
    def __init__(
        self, host: NotesHost, *, now: Callable[[], datetime], rto_s: float | None = None,
        fleet: Fleet | None = None, verdict: Callable[[str], RtoVerdict | None] | None = None,
    ) -> None:
        self.host = host
        self.now = now
        #: The strictest recovery time objective of the fleet's services (what a move is held to when
        #: the fleet cannot say better).
        self.rto_s = rto_s
        #: With the fleet, a move is held to the RTO of the most critical tier it affects, and the
        #: verdict the pipeline recorded on its job (``verdict(job_id)``) is what the thread says: the
        #: same computation as the CLI and the console (opsconsole/core/change/rto.py).
        self.fleet = fleet
        self.verdict = verdict

    def _rto_target_s(self, request: ChangeRequest) -> float | None:
        if self.fleet is not None:
            target = rto_target(self.fleet, request.action, request.params)
            if target is not None:
                return target.target_s
        return self.rto_s

    def _cycle(self, request: ChangeRequest) -> str:
        return str((request.drift or {}).get("at") or "0")

    def _reply(self, request: ChangeRequest, key: str, text: str, *, broadcast: bool = False) -> bool:
        ref = self.host.outbox.message_ref(f"request:{request.id}", FACE)
        if ref is None or ref.data.get("dead") or not self.host.outbox.first_time(key):
            return False
        try:
            self.host.slack.call(
                "chat.postMessage",
                channel=ref.channel,
                thread_ts=ref.ts,
                text=blocks.clip(text, 3000),
                reply_broadcast=broadcast,
            )
        except Exception as error:
            log.warning("thread note %s not posted: %s", key, error)
            return False
        return True

    def on_change(self, request: ChangeRequest, progress: Any = None) -> None:
        """A milestone of ``request`` reached: say it in the thread, once."""
        template = MILESTONES.get(request.status)
        if template is None:
            return
        requester = self.host.mentions([request.requester])[0]
        took = ""
        if progress is not None and getattr(progress, "duration_s", None) is not None:
            took = f" in {progress.duration_s:.1f} s"
        error = (
            (getattr(progress, "error", None) or request.reason or "see the job's log") if progress else ""
        )
        text = template.format(
            approvers=blocks.people(self.host.mentions(request.approvers), 1500),
            requester=requester,
            job=(request.job_id or "")[:12],
            took=took,
            error=blocks.escape(str(error)),
            reason=blocks.escape(request.reason or "no reason given"),
            again=again(request),
        )
        text += self._rto(request, progress)
        key = f"thread:{request.id}:{request.status.value}:{self._cycle(request)}"
        self._reply(request, key, text, broadcast=request.status in BROADCAST)

    def _rto(self, request: ChangeRequest, progress: Any) -> str:
        """The RTO clock of a failover / failback: started, or how much of it the run took."""
        target_s = self._rto_target_s(request)
        if request.action not in RTO_ACTIONS or not target_s:
            return ""
        target = f"{target_s / 60:.0f} min"
        if request.status is RequestStatus.RUNNING:
            return f" :stopwatch: RTO clock started (target {target})."
        if request.status not in (RequestStatus.SUCCEEDED, RequestStatus.FAILED):
            return ""
        recorded = self.verdict(request.job_id) if self.verdict is not None and request.job_id else None
        if recorded is not None:
            return f" :stopwatch: {recorded.sentence()}."
        took = getattr(progress, "duration_s", None) if progress is not None else None
        if took is not None:
            verdict = "within" if took <= target_s else "*over*"
            return f" :stopwatch: {took:.0f} s of the {target} RTO: {verdict} it."
        return ""

    def remind(self, request: ChangeRequest) -> bool:
        """A reminder in the thread when little time is left and approvals are missing (once)."""
        if request.status is not RequestStatus.REQUESTED:
            return False
        left = request.expires_at - self.now()
        window = min(REMIND_BEFORE, (request.expires_at - request.created_at) / 3)
        if left <= timedelta(0) or left > window:
            return False
        who = blocks.people(self.host.approver_mentions(request), 1500)
        minutes = max(1, int(left.total_seconds() // 60))
        text = (
            f":alarm_clock: {request.approvals_missing} more approval(s) needed within {minutes} min, "
            f"or it expires: {who}"
        )
        return self._reply(request, f"remind:{request.id}:{request.expires_at.isoformat()}", text)

    def dm_approvers(self, request: ChangeRequest, channel: str) -> int:
        """A DM card with Approve / Reject to each eligible approver mapped to a Slack user; how many."""
        if request.status is not RequestStatus.REQUESTED:
            return 0
        message = self.host.render_request(request)
        sent = 0
        for person in self.host.may_approve(request)[:MAX_DMS]:
            user = self.host.slack_id(person)
            if user is None:
                continue
            key = f"dm:{request.id}:{request.plan_hash}:{self._cycle(request)}:{person}"
            if not self.host.outbox.first_time(key):
                continue
            text = f"{request.requester} asks for your approval: {message.get('text')} (also in <#{channel}>)"
            try:
                self.host.slack.call(
                    "chat.postMessage", channel=user, text=blocks.clip(text, 3000), blocks=message["blocks"]
                )
                sent += 1
            except Exception as error:
                log.warning("approval DM to %s not sent: %s", person, error)
        return sent

    def overrun(self, request: ChangeRequest, started_at: datetime | None, usual_s: float | None) -> bool:
        """The run of ``request`` has taken longer than ``usual_s`` (its action's p95): say so, once."""
        if request.status is not RequestStatus.RUNNING or started_at is None or usual_s is None:
            return False
        elapsed = (self.now() - started_at).total_seconds()
        if elapsed <= usual_s:
            return False
        who = " ".join(self.host.mentions([request.requester, *request.approvers]))
        text = (
            f":hourglass: Running for {elapsed:.0f} s, longer than usual for {request.action} (p95 of past "
            f"runs: {usual_s:.0f} s). {who} — `opsconsole jobs logs {(request.job_id or '')[:12]}`"
        )
        return self._reply(request, f"overrun:{request.id}:{request.job_id}", text)
