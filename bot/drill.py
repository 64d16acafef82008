"""``/ops drill failover <from> <to>``: a DR drill filed from Slack, run on the bot's pool.

Why a module of its own: :func:`opsconsole.core.change.drill.run_drill` wants a
:class:`~opsconsole.core.change.drill.DrillOps` (the part of :class:`opsconsole.core.api.OpsApi` a drill
calls). The only in-process ``OpsApi`` is the server's ``OpsService`` (``opsconsole/server/service.py``),
and the bot talks to the core only; so :class:`BotDrillOps` is that part of the API on the bot's own
filing path: plans on a fresh fleet read (``plan_failover`` / ``plan_failback``), files with the
pipeline for the person who asked (``face="slack"``), and posts each request to its approvals channel,
where it is approved with the buttons as any other. Each move's message then carries the RTO clock and
verdict (:mod:`bot.rtoclock`).

:func:`run_slack_drill` runs the drill and tells its story in a thread of its own in the channel the
command came from: a starting message, each step (``say``), the RTO clock while a move runs (edited in
place, at most every :data:`CLOCK_EVERY_S`), and the summary at the end: the verdict, RTO, RPO and the
report's path (``$OPSCONSOLE_HOME/drills/…``, written on the bot's host).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot import blocks
from opsconsole.core.api import Assessment, Filed, RequestDetail
from opsconsole.core.change.actions import ActionPlan, plan_failback, plan_failover
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.drill import DrillReport, run_drill
from opsconsole.core.change.rbac import Identity
from opsconsole.core.change.rto import clock, clock_text, elapsed_s, rto_target
from opsconsole.core.errors import OpsError, UsageError
from opsconsole.core.fleet.report import findings_document, status_document
from opsconsole.core.fleet.view import FleetView
from opsconsole.core.runs.events import JobEvent
from opsconsole.core.runs.records import Job

if TYPE_CHECKING:
    from bot.runtime import BotRuntime

log = logging.getLogger(__name__)

FACE = "slack"
#: How often (at most) the drill thread's clock message is edited while a move runs.
CLOCK_EVERY_S = 5.0
#: How often a followed job is looked at.
POLL_S = 0.5


class DrillUnavailable(OpsError):
    title = "drill unavailable"


class BotDrillOps:
    """The part of :class:`~opsconsole.core.api.OpsApi` a drill calls, on the bot's core, for ``who``.

    ``requester``: the Slack user to tell if posting a request's message fails at first.
    """

    def __init__(self, rt: BotRuntime, who: Identity, *, requester: str | None = None) -> None:
        self.rt = rt
        self.who = who
        self.requester = requester

    def _plan(self, action: str, params: Mapping[str, Any]) -> tuple[ActionPlan, FleetView]:
        view = self.rt.view(max_age_s=0.0)
        if action == "failover":
            plan = plan_failover(self.rt.core.fleet, view.snapshot, from_region=str(params["from_region"]),
                                 to_region=str(params["to_region"]))
        elif action == "failback":
            plan = plan_failback(self.rt.core.fleet, view.snapshot, region=str(params["region"]))
        else:
            raise UsageError(f"a drill files failover and failback only, not {action}")
        return plan, view

    def assess(self, action: str, params: Mapping[str, Any]) -> Assessment:
        plan, view = self._plan(action, params)
        risk = self.rt.core.pipeline.assess(plan, view.snapshot)
        return Assessment(action=action, params=dict(plan.params), playbook=plan.playbook,
                          summary=tuple(plan.summary), targets=tuple(plan.targets), risk=risk)

    def fleet(self) -> FleetView:
        return self.rt.view()

    def status(self, region: str | None = None) -> dict[str, Any]:
        return status_document(self.rt.view(max_age_s=1.0), region)

    def findings(self, region: str | None = None) -> dict[str, Any]:
        return findings_document(self.rt.view(max_age_s=1.0), region)

    def preview(self, action: str, params: Mapping[str, Any]) -> Job:
        plan, _ = self._plan(action, params)
        return self.rt.core.preview(plan, actor=self.who.person, face=FACE, wait=False)

    def submit(
        self, action: str, params: Mapping[str, Any], *, break_glass_reason: str | None = None
    ) -> Filed:
        plan, view = self._plan(action, params)
        pipeline = self.rt.core.pipeline
        submission = pipeline.submit(plan, self.who, face=FACE, snapshot=view.snapshot,
                                     break_glass_reason=break_glass_reason, wait=False)
        request = pipeline.requests.get(submission.request.id)
        self.rt.post_request(request, requester=self.requester)  # approved with the buttons, as usual
        still = () if submission.job is not None else tuple(pipeline.may_still_vote(request))
        return Filed(request=request, risk=submission.assessment, job=submission.job, may_still_vote=still)

    def request(self, request_id: str) -> RequestDetail:
        pipeline = self.rt.core.pipeline
        pipeline.expire_due()
        request = pipeline.requests.get(request_id)
        still = tuple(pipeline.may_still_vote(request)) if request.status is RequestStatus.REQUESTED else ()
        return RequestDetail(request=request, may_still_vote=still)

    def run_request(self, request_id: str) -> Job:
        return self.rt.core.pipeline.execute(request_id, self.who, face=FACE, wait=False)

    def job(self, job_id: str) -> Job:
        job = self.rt.jobs.get(job_id)
        if job is None:
            raise DrillUnavailable(f"job {job_id}: no such job")
        return job

    def job_events(self, job_id: str, *, after_seq: int = 0, wait_s: float = 0.0) -> list[JobEvent]:
        events = self.rt.jobs.events(job_id, after_seq)
        if not events and wait_s > 0:
            time.sleep(min(wait_s, POLL_S))
            events = self.rt.jobs.events(job_id, after_seq)
        return list(events)


def summary_text(report: DrillReport) -> str:
    """The drill's summary in the thread: passed or not, the RTO and RPO against their targets, the
    report's path and what went wrong."""
    head = (":white_check_mark: *Drill passed*" if report.passed else ":x: *Drill FAILED*")
    verdict = report.verdict or ("n/a (dry run)" if report.dry_run else "n/a")
    lines = [f"{head}: failover {report.from_region} → {report.to_region} and back"]
    rto = f"*RTO* {verdict}"
    if report.rto_s is not None and report.rto_target_s:
        rto += f": {clock_text(report.rto_s, report.rto_target_s)} ({report.rto_tier} tier)"
    lines.append(rto)
    if report.rpo is not None:
        lag, target = report.rpo.get("replica_lag_s"), report.rpo.get("target_s")
        lines.append(f"*RPO* {report.rpo.get('verdict') or 'n/a'}: replica lag of {report.rpo.get('region')} "
                     f"{'n/a' if lag is None else f'{float(lag):.1f} s'} of "
                     f"{'n/a' if target is None else f'{float(target):.0f} s'}")
    lines.append(f"*Report* `{report.paths.get('md')}`")
    lines += [f"• {blocks.escape(p)}" for p in report.problems]
    return "\n".join(lines)


class _Thread:
    """The drill's messages: a parent in the channel, its story in the thread (best effort)."""

    def __init__(self, rt: BotRuntime, channel: str) -> None:
        self.rt = rt
        self.channel = channel
        self.ts: str | None = None
        self.clock_ts: str | None = None

    def post(self, text: str, *, reply: bool = True) -> str | None:
        params: dict[str, Any] = {"channel": self.channel, "text": blocks.clip(text, 3000)}
        if reply and self.ts:
            params["thread_ts"] = self.ts
        try:
            answer = self.rt.slack.call("chat.postMessage", **params)
        except Exception as error:
            log.warning("drill message not posted: %s", error)
            return None
        ts = str(answer.get("ts") or "") or None
        if not reply:
            self.ts = ts
        return ts

    def edit(self, ts: str, text: str) -> None:
        try:
            self.rt.slack.call("chat.update", channel=self.channel, ts=ts, text=blocks.clip(text, 3000))
        except Exception as error:
            log.info("drill clock not edited: %s", error)


def run_slack_drill(
    rt: BotRuntime, who: Identity, *, from_region: str, to_region: str, channel: str,
    requester: str | None = None, verify_deadline_s: float | None = None, poll_s: float | None = None,
) -> DrillReport | None:
    """Run the drill for ``who``, telling it in a thread in ``channel``; the report (``None``: refused
    before it started, said in the channel)."""
    thread = _Thread(rt, channel)
    ops = BotDrillOps(rt, who, requester=requester)
    thread.post(f":rotating_light: DR drill by *{who.person}*: failover {from_region} → {to_region}, verify, "
                f"failback. Each move is posted for approval as usual; the story follows in this thread.",
                reply=False)

    def say(text: str) -> None:
        thread.post(f"drill: {blocks.escape(text)}")

    def follow(job: Job) -> Job:
        target = rto_target(rt.core.fleet, job.action, job.params)
        shown = 0.0
        clock_ts: str | None = None
        while True:
            job = ops.job(job.id)
            if job.status.terminal:
                break
            if target is not None and time.monotonic() - shown >= CLOCK_EVERY_S:
                shown = time.monotonic()
                elapsed = elapsed_s(job, datetime.now(UTC))
                text = (f":stopwatch: {job.action}: " + (
                    f"RTO clock starts with the run (target {clock(target.target_s)})" if elapsed is None
                    else f"{clock_text(elapsed, target.target_s)} ({target.tier} tier)"))
                if clock_ts is None:
                    clock_ts = thread.post(text)
                else:
                    thread.edit(clock_ts, text)
            time.sleep(POLL_S)
        return job

    extra: dict[str, Any] = {}
    if verify_deadline_s is not None:
        extra["verify_deadline_s"] = verify_deadline_s
    if poll_s is not None:
        extra["poll_s"] = poll_s
    try:
        report = run_drill(ops, from_region=from_region, to_region=to_region, say=say, follow=follow,
                           **extra)
    except OpsError as error:
        thread.post(f":x: drill refused: {error.title}: {blocks.escape(error.message)}")
        return None
    thread.post(summary_text(report))
    return report
