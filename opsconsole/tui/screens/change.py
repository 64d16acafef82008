"""Changing the fleet: the action form (validation, the preview in words, the risk and the approvals it
needs, a check-mode run of its playbook), the approval queue shared with Slack and the CLI, and the jobs
with their live log. Everything that changes something asks first, with Cancel as the default."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, RichLog, Static

from opsconsole.core.change.actions import (
    ActionPlan,
    plan_environment,
    plan_failback,
    plan_failover,
    plan_scale,
)
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.pipeline import RequestChanged, Submission
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.change.risk import RiskAssessment
from opsconsole.core.errors import UsageError
from opsconsole.core.fleet.model import Environment
from opsconsole.core.runs.events import EventKind, JobEvent
from opsconsole.core.runs.records import Job, JobStatus
from opsconsole.tui.screens.base import ConsoleScreen
from opsconsole.tui.screens.dialogs import ConfirmScreen, PromptScreen
from opsconsole.tui.widgets.table import FleetTable

FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "scale": (
        ("service", "Service"),
        ("region", "Region"),
        ("environment", "Environment"),
        ("cluster", "Cluster (empty: every cluster)"),
        ("replicas", "Replicas"),
        ("hpa_min", "HPA min"),
        ("hpa_max", "HPA max"),
    ),
    "failover": (("region", "From region"), ("to", "To region")),
    "failback": (("region", "Region"),),
    "env": (
        ("environment", "Environment (staging / dev)"),
        ("state", "State (stopped / started)"),
        ("region", "Region (empty: all)"),
    ),
}
TITLES = {
    "scale": "Scale a workload",
    "failover": "Fail a region over",
    "failback": "Fail a region back",
    "env": "Stop / start a non-prod environment",
}


def event_line(event: JobEvent) -> Text | None:
    """One log line per event worth reading (skipped tasks and task starts stay quiet)."""
    style = {
        EventKind.OK: "green",
        EventKind.CHANGED: "yellow",
        EventKind.FAILED: "bold red",
        EventKind.UNREACHABLE: "bold red",
        EventKind.STATS: "bold",
        EventKind.JOB_STATUS: "cyan",
        EventKind.PLAY_START: "bold",
    }.get(event.kind)
    if style is None:
        return None
    what = event.task or event.play or event.message
    detail = f" — {event.message}" if event.message and event.message != what else ""
    return Text(f"{event.at:%H:%M:%S} {event.kind.value:<10} {what}{detail}", style=style)


class ActionScreen(ConsoleScreen):
    """The form of one action. The plan is re-made on every keystroke (pure, fast), so a mistake shows at
    once; the risk comes from the pipeline; ctrl+t runs the playbook in check mode; ctrl+s submits."""

    screen_name = "action"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Cancel"),
        Binding("ctrl+t", "preview", "Check-mode preview", priority=True),
        Binding("ctrl+s", "submit", "Submit", priority=True),
    ]

    def __init__(self, action: str, params: dict[str, Any]) -> None:
        super().__init__()
        self.action_name = action
        self.params = {k: "" if v is None else str(v) for k, v in params.items()}
        self.plan: ActionPlan | None = None
        self.assessment: RiskAssessment | None = None
        self.preview_job: str | None = None
        self.preview_status: JobStatus | None = None
        self.submission: Submission | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with VerticalScroll(id="form"):
            yield Static(TITLES[self.action_name], id="form-title")
            for name, label in FIELDS[self.action_name]:
                with Horizontal(classes="field"):
                    yield Label(label, classes="field-label")
                    yield Input(self.params.get(name, ""), id=f"f-{name}", classes="field-input")
            yield Static("", id="production")
            yield Static("", id="plan")
            yield Static("", id="risk")
            with Horizontal(id="form-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Preview (ctrl+t)", id="preview")
                yield Button("Submit (ctrl+s)", id="submit", variant="warning")
            yield RichLog(id="preview-log", max_lines=400, wrap=False)
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(Input).focus()
        self.query_one("#preview-log", RichLog).display = False
        self.replan()

    def values(self) -> dict[str, str]:
        return {
            name: self.query_one(f"#f-{name}", Input).value.strip() for name, _ in FIELDS[self.action_name]
        }

    def make_plan(self) -> ActionPlan:
        view = self.console.view
        if view is None:
            raise UsageError("no fleet data yet: wait for the first refresh")
        v = self.values()

        def number(name: str) -> int | None:
            if not v.get(name):
                return None
            try:
                return int(v[name])
            except ValueError:
                raise UsageError(
                    f"{name.replace('_', ' ')}: expected a whole number, found {v[name]!r}"
                ) from None

        if self.action_name == "scale":
            try:
                env = Environment(v["environment"] or "prod")
            except ValueError:
                raise UsageError(f"environment {v['environment']!r}: expected prod, staging or dev") from None
            return plan_scale(
                view.fleet,
                view.snapshot,
                service=v["service"],
                region=v["region"],
                replicas=number("replicas"),
                hpa_min=number("hpa_min"),
                hpa_max=number("hpa_max"),
                environment=env,
                cluster=v["cluster"] or None,
            )
        if self.action_name == "failover":
            return plan_failover(view.fleet, view.snapshot, from_region=v["region"], to_region=v["to"])
        if self.action_name == "failback":
            return plan_failback(view.fleet, view.snapshot, region=v["region"])
        state = {"stop": "stopped", "start": "started"}.get(v["state"], v["state"])
        return plan_environment(
            view.fleet, view.snapshot, environment=v["environment"], state=state, region=v["region"] or None
        )

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id and event.input.id.startswith("f-"):
            self.replan()
        else:
            super().on_input_changed(event)

    def replan(self) -> None:
        before = self.plan
        try:
            self.plan = self.make_plan()
        except UsageError as exc:
            self.plan = None
            self.assessment = None
            self.query_one("#plan", Static).update(Text(f"✗ {exc}", style="bold red"))
            self.query_one("#risk", Static).update("")
            self.query_one("#production", Static).update("")
            self.set_class(False, "-production")
            return
        plan = self.plan
        self.set_class(plan.production, "-production")
        self.query_one("#production", Static).update(
            Text(" PRODUCTION CHANGE ", style="bold white on red")
            if plan.production
            else Text(" non-production ", style="black on cyan")
        )
        self.query_one("#plan", Static).update(
            Text("\n".join(["Preview (what would change):", *[f"  {line}" for line in plan.summary]]))
        )
        if before is None or before.summary != plan.summary or before.params != plan.params:
            view = self.console.view
            snapshot = view.snapshot if view else None
            self.query_one("#risk", Static).update("assessing the risk…")
            self.console.call_core(lambda core: core.pipeline.assess(plan, snapshot), self._show_risk)

    def _show_risk(self, assessment: RiskAssessment) -> None:
        self.assessment = assessment
        style = {"low": "green", "medium": "yellow", "high": "bold red"}.get(assessment.level.value, "")
        needs = "runs at once, no approval needed"
        if assessment.approvals_needed:
            needs = f"needs {assessment.approvals_needed} approval(s) before it runs"
        lines = [Text.assemble(("Risk ", "bold"), (assessment.level.value.upper(), style), f": {needs}")]
        lines += [Text(f"  · {reason}") for reason in assessment.reasons]
        if assessment.freeze:
            lines.append(Text(f"  REFUSED by a change freeze: {assessment.freeze}", style="bold red"))
        who = self.console.who
        if who is not None:
            lines.append(Text(f"  you are {who.person}", style="dim"))
        self.query_one("#risk", Static).update(Text("\n").join(lines))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.app.pop_screen()
        elif event.button.id == "preview":
            self.action_preview()
        elif event.button.id == "submit":
            self.action_submit()

    def action_preview(self) -> None:
        plan, who = self.plan, self.console.who
        if plan is None or who is None:
            self.notify("fix the form first", severity="warning")
            return
        log = self.query_one("#preview-log", RichLog)
        log.display = True
        log.clear()
        log.write(Text("check mode: the playbook runs and reports, nothing changes", style="bold"))

        def started(job: Job) -> None:
            self.preview_job = job.id
            self.preview_status = job.status

        self.console.call_core(
            lambda core: core.preview(plan, actor=who.person, face="tui", wait=False), started
        )

    def on_core_event(self, event: object) -> None:
        if isinstance(event, JobEvent) and event.job_id == self.preview_job:
            line = event_line(event)
            if line is not None:
                self.query_one("#preview-log", RichLog).write(line)
            if event.kind is EventKind.JOB_STATUS and event.message in {s.value for s in JobStatus}:
                self.preview_status = JobStatus(event.message)

    def action_submit(self) -> None:
        plan, who = self.plan, self.console.who
        if not self.console.may_write("submit"):
            return
        if plan is None or who is None:
            self.notify("fix the form first", severity="warning")
            return
        where = "PRODUCTION" if plan.production else "non-production"
        question = f"Submit this {where} change as {who.person}?\n\n" + "\n".join(plan.summary)

        def answered(yes: bool | None) -> None:
            if yes:
                view = self.console.view
                snapshot = view.snapshot if view else None
                self.console.call_core(
                    lambda core: core.pipeline.submit(plan, who, face="tui", snapshot=snapshot, wait=False),
                    self._submitted,
                )

        self.app.push_screen(ConfirmScreen(question, "Submit"), answered)

    def _submitted(self, submission: Submission) -> None:
        self.submission = submission
        request = submission.request
        self.app.pop_screen()
        if submission.job is not None:
            self.notify(
                f"request {request.short_id} runs now as job {submission.job.id[:12]}", title="running"
            )
            self.app.push_screen(JobsScreen(select=submission.job.id))
        else:
            self.notify(
                f"request {request.short_id} filed: {request.approvals_missing} approval(s) needed",
                title="filed",
            )
            self.app.push_screen(ApprovalsScreen(select=request.id))


REQUEST_COLUMNS = (
    ("id", "Request"),
    ("status", "Status"),
    ("risk", "Risk"),
    ("votes", "Votes"),
    ("action", "Action"),
    ("by", "By"),
    ("expires", "Expires"),
)
STATUS_STYLE = {
    RequestStatus.REQUESTED: "bold yellow",
    RequestStatus.APPROVED: "cyan",
    RequestStatus.RUNNING: "cyan",
    RequestStatus.SUCCEEDED: "green",
    RequestStatus.FAILED: "bold red",
    RequestStatus.REJECTED: "red",
    RequestStatus.EXPIRED: "dim",
    RequestStatus.CANCELLED: "dim",
}


def _until(moment: datetime, now: datetime) -> str:
    seconds = (moment - now).total_seconds()
    if seconds <= 0:
        return "expired"
    return f"{seconds / 60:.0f} min"


class ApprovalsScreen(ConsoleScreen):
    """The approval queue, shared with Slack and the CLI (re-read every refresh, and on every bus event)."""

    screen_name = "approvals"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "approve", "Approve"),
        Binding("x", "reject", "Reject"),
        Binding("c", "cancel_request", "Cancel request"),
        Binding("r", "run_request", "Run approved"),
    ]

    def __init__(self, select: str | None = None) -> None:
        super().__init__()
        self._select = select

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield FleetTable(REQUEST_COLUMNS, id="requests")
        yield Static("", id="request-detail")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#requests", FleetTable).focus()

    def show_data(self) -> None:
        core = self.console.core
        now = core.clock.now() if core else None
        rows: dict[str, tuple[Any, ...]] = {}
        ordered = sorted(self.console.requests, key=lambda r: (not r.status.open, -r.created_at.timestamp()))
        for r in ordered:
            votes = f"{len(r.approvers)}/{r.approvals_needed}" if r.approvals_needed else "—"
            rows[r.id] = (
                r.short_id,
                Text(r.status.value, style=STATUS_STYLE.get(r.status, "")),
                r.risk,
                votes,
                f"{r.action} " + " ".join(f"{k}={v}" for k, v in r.params.items()),
                r.requester,
                _until(r.expires_at, now) if now and r.status.open else "",
            )
        table = self.query_one("#requests", FleetTable)
        table.show(rows)
        if self._select and self._select in rows:
            table.move_cursor(row=table.get_row_index(self._select))
            self._select = None
        self._detail()

    def selected(self) -> ChangeRequest | None:
        key = self.query_one("#requests", FleetTable).selected_key
        return next((r for r in self.console.requests if r.id == key), None)

    def _detail(self) -> None:
        r, core = self.selected(), self.console.core
        box = self.query_one("#request-detail", Static)
        if r is None or core is None:
            box.update("no request selected" if core else "")
            return
        votes = [
            f"{v.person} {v.decision.value}" + (f" ({v.reason})" if v.reason else "") + f" via {v.face}"
            for v in r.votes
        ]
        may = core.pipeline.may_still_vote(r) if r.status.open else []
        lines = [
            f"{r.short_id} {r.action} — {r.status.value} — risk {r.risk} — by {r.requester} via {r.face}",
            *[f"  {line}" for line in r.summary],
            *[f"  · {reason}" for reason in r.risk_reasons],
            f"votes: {', '.join(votes) or 'none'}; approvals {len(r.approvers)} of {r.approvals_needed}",
            f"may still vote: {', '.join(may) or '—'}; expires {r.expires_at:%Y-%m-%d %H:%M} UTC",
        ]
        if r.reason:
            lines.append(f"reason: {r.reason}")
        if r.drift:
            lines.append(f"drift: {dict(r.drift)}")
        box.update("\n".join(lines))

    def on_data_table_row_highlighted(self, _event: FleetTable.RowHighlighted) -> None:
        self._detail()

    def on_core_event(self, event: object) -> None:
        if isinstance(event, RequestChanged):
            self.console.requests = [
                event.request if r.id == event.request.id else r for r in self.console.requests
            ]
            if all(r.id != event.request.id for r in self.console.requests):
                self.console.requests.insert(0, event.request)
            self.show_data()

    def _decide(self, what: str, fn: Any, done: Any = None) -> None:
        r, who = self.selected(), self.console.who
        if r is None or who is None or not self.console.may_write(what):
            return
        self.console.call_core(lambda core: fn(core, r, who), done or self._decided)

    def _decided(self, request: ChangeRequest) -> None:
        self.console.requests = [request if r.id == request.id else r for r in self.console.requests]
        self.show_data()
        self.notify(f"request {request.short_id} is {request.status.value}", title="decided")

    def action_approve(self) -> None:
        r = self.selected()
        if r is None:
            return

        def approved(request: ChangeRequest) -> None:
            self._decided(request)
            if request.status is RequestStatus.APPROVED:
                self._run(request)  # the approval that completes a request runs it, as in the CLI and Slack

        def answered(yes: bool | None) -> None:
            if yes:
                self._decide(
                    "approve", lambda core, req, who: core.pipeline.approve(req.id, who, face="tui"), approved
                )

        self.app.push_screen(
            ConfirmScreen(f"Approve {r.short_id}?\n" + "\n".join(r.summary), "Approve", danger=False),
            answered,
        )

    def action_reject(self) -> None:
        r = self.selected()
        if r is None or not self.console.may_write("reject"):
            return

        def answered(reason: str | None) -> None:
            if reason:
                self._decide(
                    "reject",
                    lambda core, req, who: core.pipeline.reject(req.id, who, face="tui", reason=reason),
                )

        self.app.push_screen(
            PromptScreen(f"Why reject {r.short_id}?", "the reason, for the requester"), answered
        )

    def action_cancel_request(self) -> None:
        r = self.selected()
        if r is None or not self.console.may_write("cancel"):
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._decide("cancel", lambda core, req, who: core.pipeline.cancel(req.id, who, face="tui"))

        self.app.push_screen(ConfirmScreen(f"Cancel request {r.short_id}?", "Cancel request"), answered)

    def action_run_request(self) -> None:
        r = self.selected()
        if r is not None and self.console.may_write("run"):
            self._run(r)

    def _run(self, request: ChangeRequest) -> None:
        who = self.console.who
        if who is None:
            return

        def started(job: Job) -> None:
            self.notify(f"request {request.short_id} runs as job {job.id[:12]}", title="running")
            self.app.push_screen(JobsScreen(select=job.id))

        self.console.call_core(
            lambda core: core.pipeline.execute(request.id, who, face="tui", wait=False), started
        )


JOB_COLUMNS = (
    ("id", "Job"),
    ("status", "Status"),
    ("action", "Action"),
    ("mode", "Mode"),
    ("by", "By"),
    ("started", "Started"),
    ("took", "Took"),
    ("task", "Last task"),
)
JOB_STYLE = {
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "bold red",
    JobStatus.CANCELLED: "yellow",
    JobStatus.TIMED_OUT: "bold red",
    JobStatus.INTERRUPTED: "bold yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.QUEUED: "dim",
}


class JobsScreen(ConsoleScreen):
    """Running and past runs, and the live log of the selected one."""

    screen_name = "jobs"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("c", "cancel_job", "Cancel job")]

    def __init__(self, select: str | None = None) -> None:
        super().__init__()
        self._select = select
        self.log_job: str | None = None
        self._log_seq = 0

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield FleetTable(JOB_COLUMNS, id="jobs")
        yield RichLog(id="job-log", max_lines=2000, wrap=False)
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#jobs", FleetTable).focus()

    def show_data(self) -> None:
        rows = {}
        for job in self.console.jobs:
            took = f"{job.duration_s:.0f}s" if job.duration_s is not None else ""
            rows[job.id] = (
                job.id[:12],
                Text(job.status.value, style=JOB_STYLE.get(job.status, "")),
                job.action,
                "check" if job.check_mode else "run",
                job.actor,
                f"{job.started_at:%H:%M:%S}" if job.started_at else "",
                took,
                job.last_task or "",
            )
        table = self.query_one("#jobs", FleetTable)
        table.show(rows)
        if self._select and self._select in rows:
            table.move_cursor(row=table.get_row_index(self._select))
            self._select = None
        self._follow(table.selected_key)

    def on_data_table_row_highlighted(self, _event: FleetTable.RowHighlighted) -> None:
        self._follow(self.query_one("#jobs", FleetTable).selected_key)

    def _follow(self, job_id: str | None) -> None:
        if job_id is None or job_id == self.log_job:
            return
        self.log_job, self._log_seq = job_id, 0
        self.query_one("#job-log", RichLog).clear()
        self.console.call_core(
            lambda core: core.jobs.events(job_id), lambda events: self._catch_up(job_id, events)
        )

    def _catch_up(self, job_id: str, events: list[JobEvent]) -> None:
        for event in events:
            self._append(job_id, event)

    def _append(self, job_id: str, event: JobEvent) -> None:
        if job_id != self.log_job or event.seq <= self._log_seq:
            return
        self._log_seq = event.seq
        line = event_line(event)
        if line is not None:
            self.query_one("#job-log", RichLog).write(line)

    def on_core_event(self, event: object) -> None:
        if isinstance(event, JobEvent):
            self._append(event.job_id, event)
            if event.kind is EventKind.JOB_STATUS:
                self.console.action_refresh()  # the table's status column follows at once

    def action_cancel_job(self) -> None:
        job_id = self.query_one("#jobs", FleetTable).selected_key
        job = next((j for j in self.console.jobs if j.id == job_id), None)
        if job is None or not self.console.may_write("cancel job"):
            return
        if job.status.terminal:
            self.notify(f"job {job.id[:12]} already {job.status.value}", timeout=3)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.console.call_core(
                    lambda core: core.runner.cancel(job.id),
                    lambda ok: self.notify("cancelled" if ok else "it was not running"),
                )

        self.app.push_screen(
            ConfirmScreen(f"Cancel job {job.id[:12]} ({job.action})?", "Cancel job"), answered
        )
