"""Changing the fleet: the action form (the server's preview in words, the risk and the approvals it
needs, a check-mode run of its playbook), the approval queue shared with Slack and the CLI, and the jobs
with their live log. Everything that changes something asks first, with Cancel as the default.

The console plans nothing itself: the form sends the action's name and parameters to the ops server
(:meth:`OpsApi.assess`), which plans it on its latest snapshot and judges its risk; what the form shows
is the server's answer. Live logs follow the server's event stream and catch up with
:meth:`OpsApi.job_events`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, RichLog, Static

from opsconsole.core.api import Assessment, Decided, Filed, RequestDetail, StreamEvent
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.change.rto import RTO_ACTIONS, job_clock, rto_target
from opsconsole.core.errors import UsageError
from opsconsole.core.fleet.model import Environment, Fleet
from opsconsole.core.runs.events import EventKind, JobEvent
from opsconsole.core.runs.records import Job, JobStatus
from opsconsole.styles import JOB_STATUS_STYLE, REQUEST_STATUS_STYLE, style
from opsconsole.tui.data import plural
from opsconsole.tui.screens.base import ConsoleScreen
from opsconsole.tui.screens.dialogs import ConfirmScreen, PromptScreen
from opsconsole.tui.widgets.table import FleetTable

FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "scale": (
        ("service", "Service"),
        ("region", "Region"),
        ("environment", "Environment"),
        ("cluster", "Cluster (empty: all)"),
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
    "nodes": (
        ("cluster", "Cluster"),
        ("nodes_min", "Node min (empty: keep)"),
        ("nodes_max", "Node max (empty: keep)"),
        ("nodes_desired", "Desired nodes (empty: the autoscaler's)"),
    ),
    "replicas": (("region", "Region"), ("read_replicas", "Read replicas")),
    "database": (
        ("region", "Region"),
        ("change", "Change (promote / demote)"),
        ("source_region", "Replicate from (demote; empty: the inventory's)"),
    ),
    "cache": (("region", "Region"), ("nodes", "Redis nodes")),
}
TITLES = {
    "scale": "Scale a workload",
    "failover": "Fail a region over",
    "failback": "Fail a region back",
    "env": "Stop / start a non-prod environment",
    "nodes": "Change a cluster's nodes (node group / node pool)",
    "replicas": "Change a database's read replicas",
    "database": "Promote / demote a region's database",
    "cache": "Change a region's Redis nodes",
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


#: The form's names of the actions -> the server's (see ``ACTIONS`` in :mod:`opsconsole.core.api`).
API_ACTION = {"scale": "scale", "failover": "failover", "failback": "failback", "env": "environment",
              "nodes": "nodes", "replicas": "replicas", "database": "database", "cache": "cache"}
#: The forms whose fields are named like the server's parameters.
_SAME_NAMES = ("nodes", "replicas", "database", "cache")


def form_of(action: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The form and its field values for a request as the server names it (a finding's suggested
    action): the inverse of :func:`form_request`."""
    p = {k: v for k, v in params.items() if v is not None}
    if action == "failover":
        return "failover", {"region": p.get("from_region", p.get("region")),
                            "to": p.get("to_region", p.get("to"))}
    if action == "environment":
        return "env", p
    return action, p


def form_request(action: str, v: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The form's text as the server's action name and parameters (numbers parsed; empty fields left
    out). Checks only what the form itself must: the server validates the rest.

    Raises:
        UsageError: a number field holds something else.
    """

    def number(name: str) -> int | None:
        if not v.get(name):
            return None
        try:
            return int(v[name])
        except ValueError:
            what = name.replace("_", " ")
            raise UsageError(f"{what}: expected a whole number, found {v[name]!r}") from None

    params: dict[str, Any]
    if action == "scale":
        params = {
            "service": v["service"],
            "region": v["region"],
            "environment": v["environment"] or "prod",
            "cluster": v["cluster"] or None,
            "replicas": number("replicas"),
            "hpa_min": number("hpa_min"),
            "hpa_max": number("hpa_max"),
        }
    elif action == "failover":
        params = {"from_region": v["region"], "to_region": v["to"]}
    elif action == "failback":
        params = {"region": v["region"]}
    elif action in _SAME_NAMES:
        numbers = {"nodes_min", "nodes_max", "nodes_desired", "read_replicas", "nodes"}
        params = {name: (number(name) if name in numbers else (v[name] or None))
                  for name, _ in FIELDS[action]}
    else:
        state = {"stop": "stopped", "start": "started"}.get(v["state"], v["state"])
        params = {"environment": v["environment"], "state": state, "region": v["region"] or None}
    return API_ACTION[action], {k: value for k, value in params.items() if value is not None}


def touches_production(action: str, params: dict[str, Any], fleet: Fleet | None = None) -> bool:
    """Whether the change touches production (the form turns red): failovers and failbacks always do,
    a non-prod environment never, a scale when its environment is prod, a node change when its cluster
    is a prod one (unknown: prod)."""
    if action == "environment":
        return False
    if action == "scale":
        return str(params.get("environment", "prod")) == "prod"
    if action == "nodes" and fleet is not None:
        cluster = fleet.clusters.get(str(params.get("cluster")))
        return cluster is None or cluster.environment is Environment.PROD
    return True


class JobLog:
    """Follows one job's events into a log: from the start (:meth:`OpsApi.job_events`), then as the
    server's stream announces them. One fetch at a time, in ``seq`` order, nothing shown twice."""

    def __init__(
        self,
        screen: ConsoleScreen,
        write: Callable[[JobEvent], None],
        on_status: Callable[[JobStatus], None] | None = None,
    ) -> None:
        self.screen = screen
        self.write = write
        self.on_status = on_status
        self.job_id: str | None = None
        self.seq = 0
        self._fetching = False
        self._again = False

    def follow(self, job_id: str) -> None:
        self.job_id, self.seq, self._again = job_id, 0, False
        self.fetch()

    def fetch(self) -> None:
        job_id = self.job_id
        if job_id is None:
            return
        if self._fetching:
            self._again = True
            return
        self._fetching = True

        def fetched(events: list[JobEvent]) -> None:
            self._fetching = False
            if job_id == self.job_id:
                for event in events:
                    self.take(event)
            if self._again:
                self._again = False
                self.fetch()

        def failed(_exc: BaseException) -> None:
            self._fetching = False

        after = self.seq
        self.screen.ask(lambda api: api.job_events(job_id, after_seq=after), fetched, failed, quiet=True)

    def take(self, event: JobEvent) -> None:
        if event.job_id != self.job_id or event.seq <= self.seq:
            return
        self.seq = event.seq
        self.write(event)
        if (
            self.on_status is not None
            and event.kind is EventKind.JOB_STATUS
            and event.message in {s.value for s in JobStatus}
        ):
            self.on_status(JobStatus(event.message))

    def on_server_event(self, event: StreamEvent) -> None:
        """A ``job`` event: the pushed one if it is the next, else a fetch of what was missed."""
        if event.kind != "job" or event.data.get("job_id") != self.job_id:
            return
        pushed = event.data.get("event")
        if isinstance(pushed, JobEvent) and pushed.seq == self.seq + 1 and not self._fetching:
            self.take(pushed)
        else:
            self.fetch()


class ActionScreen(ConsoleScreen):
    """The form of one action. Every change of a field asks the server to assess it again (one call in
    flight, the latest values sent when it answers), so a mistake shows at once with the server's
    words; ctrl+t runs the playbook in check mode; ctrl+s submits."""

    screen_name = "action"
    #: The app's digit keys do not leave this screen (what is typed would be lost).
    holds_changes = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Cancel"),
        Binding("ctrl+t", "preview", "Check-mode preview", priority=True),
        Binding("ctrl+s", "submit", "Submit", priority=True),
    ]

    def __init__(self, action: str, params: dict[str, Any]) -> None:
        super().__init__()
        self.action_name = action
        self.params = {k: "" if v is None else str(v) for k, v in params.items()}
        #: The server's answer for the form as it is now (``None`` while it is wrong or being assessed).
        self.assessment: Assessment | None = None
        #: What was last sent to be assessed, and what is waiting to be sent after it.
        self._asked: tuple[str, dict[str, Any]] | None = None
        self._in_flight = False
        self.preview_status: JobStatus | None = None
        self.submission: Filed | None = None
        self._preview = JobLog(self, self._preview_line, self._preview_status)

    @property
    def preview_job(self) -> str | None:
        return self._preview.job_id

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

    def request(self) -> tuple[str, dict[str, Any]]:
        """The server's action name and parameters for the form as it is now (see :func:`form_request`)."""
        return form_request(self.action_name, self.values())

    def show_data(self) -> None:
        if self._asked is None and self.assessment is None and not self._in_flight:
            self.replan()  # the server was not there yet when the form opened

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id and event.input.id.startswith("f-"):
            self.replan()
        else:
            super().on_input_changed(event)

    def _wrong(self, message: str) -> None:
        self.assessment = None
        self.query_one("#plan", Static).update(Text(f"✗ {message}", style="bold red"))
        self.query_one("#risk", Static).update("")
        self.query_one("#production", Static).update("")
        self.set_class(False, "-production")

    def replan(self) -> None:
        """Ask the server to assess the form as it is now (unless it is being asked already: the latest
        values go when the answer comes)."""
        try:
            wanted = self.request()
        except UsageError as exc:
            self._asked = None
            self._wrong(str(exc))
            return
        if wanted == self._asked and (self.assessment is not None or self._in_flight):
            return
        self.assessment = None
        if self._in_flight:
            return  # sent when the answer to the one in flight comes back
        if self.console.api is None:
            self.query_one("#risk", Static).update("waiting for the ops server…")
            return
        self._asked = wanted
        self._in_flight = True
        self.query_one("#risk", Static).update("assessing the risk…")
        action, params = wanted
        self.ask(
            lambda api: api.assess(action, params),
            lambda answer: self._assessed(wanted, answer),
            lambda exc: self._refused(wanted, exc),
            quiet=True,
        )

    def _current(self, asked: tuple[str, dict[str, Any]]) -> bool:
        """True if the answer to ``asked`` is still the one to show (else ask again for the form now)."""
        self._in_flight = False
        try:
            now = self.request()
        except UsageError as exc:
            self._wrong(str(exc))
            return False
        if now != asked:
            self.replan()
            return False
        return True

    def _refused(self, asked: tuple[str, dict[str, Any]], exc: BaseException) -> None:
        if self._current(asked):
            self._wrong(str(exc))

    def _assessed(self, asked: tuple[str, dict[str, Any]], assessment: Assessment) -> None:
        if not self._current(asked):
            return
        self.assessment = assessment
        view = self.console.view
        production = touches_production(*asked, view.fleet if view is not None else None)
        self.set_class(production, "-production")
        self.query_one("#production", Static).update(
            Text(" PRODUCTION CHANGE ", style="bold white on red")
            if production
            else Text(" non-production ", style="black on cyan")
        )
        self.query_one("#plan", Static).update(
            Text("\n".join(["Preview (what would change):", *[f"  {line}" for line in assessment.summary]]))
        )
        risk = assessment.risk
        style = {"low": "green", "medium": "yellow", "high": "bold red"}.get(risk.level.value, "")
        needs = "runs at once, no approval needed"
        if risk.approvals_needed:
            needs = f"needs {plural(risk.approvals_needed, 'approval')} before it runs"
        lines = [Text.assemble(("Risk ", "bold"), (risk.level.value.upper(), style), f": {needs}")]
        lines += [Text(f"  · {reason}") for reason in risk.reasons]
        covered = self.clusters_covered(*asked)
        if len(covered) > 1:  # what the request changes, and how to narrow it to one cluster
            lines.append(
                Text(
                    f"  · applies to {len(covered)} clusters: {', '.join(covered)} "
                    "(fill in Cluster to change one)",
                    style="bold yellow",
                )
            )
        if risk.freeze:
            lines.append(Text(f"  REFUSED by a change freeze: {risk.freeze}", style="bold red"))
        who = self.console.who
        if who is not None:
            lines.append(Text(f"  you are {who.person}", style="dim"))
        self.query_one("#risk", Static).update(Text("\n").join(lines))

    def clusters_covered(self, action: str, params: dict[str, Any]) -> list[str]:
        """The clusters a scale request changes: the one given, or every cluster of its environment in
        the region."""
        view = self.console.view
        if action != "scale" or view is None:
            return []
        if params.get("cluster"):
            return [str(params["cluster"])]
        try:
            environment = Environment(str(params.get("environment", "prod")))
        except ValueError:
            return []
        return [c.name for c in view.fleet.clusters_in(str(params.get("region", "")), environment)]

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.app.pop_screen()
        elif event.button.id == "preview":
            self.action_preview()
        elif event.button.id == "submit":
            self.action_submit()

    def _form_request(self) -> tuple[str, dict[str, Any]] | None:
        """The form's request if the server's assessment of it is in, else ``None`` (said)."""
        if self.assessment is None or self._asked is None:
            self.notify("fix the form first (or wait for the assessment)", severity="warning")
            return None
        return self._asked

    def action_preview(self) -> None:
        ready = self._form_request()
        if ready is None:
            return
        action, params = ready
        log = self.query_one("#preview-log", RichLog)
        log.display = True
        log.clear()
        log.write(Text("check mode: the playbook runs and reports, nothing changes", style="bold"))

        def started(job: Job) -> None:
            self.preview_status = job.status
            self._preview.follow(job.id)

        self.ask(lambda api: api.preview(action, params), started)

    def _preview_line(self, event: JobEvent) -> None:
        line = event_line(event)
        if line is not None:
            self.query_one("#preview-log", RichLog).write(line)

    def _preview_status(self, status: JobStatus) -> None:
        self.preview_status = status

    def on_server_event(self, event: StreamEvent) -> None:
        self._preview.on_server_event(event)

    def action_submit(self) -> None:
        if not self.console.may_write("submit"):
            return
        ready, assessment, who = self._form_request(), self.assessment, self.console.who
        if ready is None or assessment is None:
            return
        action, params = ready
        where = "PRODUCTION" if touches_production(action, params) else "non-production"
        person = f" as {who.person}" if who is not None else ""
        covered = self.clusters_covered(action, params)
        scope = f" to {len(covered)} clusters ({', '.join(covered)})" if len(covered) > 1 else ""
        question = f"Submit this {where} change{scope}{person}?\n\n" + "\n".join(assessment.summary)

        def answered(yes: bool | None) -> None:
            if yes:
                self.ask(lambda api: api.submit(action, params), self._submitted)

        self.app.push_screen(ConfirmScreen(question, "Submit"), answered)

    def _submitted(self, filed: Filed) -> None:
        self.submission = filed
        request = filed.request
        self.console.remember(request, filed.may_still_vote)
        self.app.pop_screen()
        if filed.job is not None:
            self.notify(f"request {request.short_id} runs now as job {filed.job.id[:12]}", title="running")
            self.app.push_screen(JobsScreen(select=filed.job.id))
        else:
            self.notify(
                f"request {request.short_id} filed: {plural(request.approvals_missing, 'approval')} needed",
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


def _until(moment: datetime, now: datetime) -> str:
    seconds = (moment - now).total_seconds()
    if seconds <= 0:
        return "expired"
    return f"{seconds / 60:.0f} min"


class ApprovalsScreen(ConsoleScreen):
    """The approval queue, shared with Slack and the CLI (re-read every refresh, and whenever the
    server's stream says a request moved)."""

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
        self._asking_votes: set[tuple[str, int]] = set()

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield FleetTable(REQUEST_COLUMNS, id="requests")
        yield Static("", id="request-detail")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#requests", FleetTable).focus()

    def show_data(self) -> None:
        view = self.console.view
        now = view.snapshot.taken_at if view is not None else None  # the server's time, as of the refresh
        rows: dict[str, tuple[Any, ...]] = {}
        ordered = sorted(self.console.requests, key=lambda r: (not r.status.open, -r.created_at.timestamp()))
        for r in ordered:
            votes = f"{len(r.approvers)}/{r.approvals_needed}" if r.approvals_needed else "—"
            rows[r.id] = (
                r.short_id,
                Text(r.status.value, style=style(REQUEST_STATUS_STYLE, r.status)),
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

    def detail_text(self, r: ChangeRequest) -> str:
        """The selected request in words. Who may still vote is said only while it is open (the
        server's answer, asked for when not known for this version of the request)."""
        votes = [
            f"{v.person} {v.decision.value}" + (f" ({v.reason})" if v.reason else "") + f" via {v.face}"
            for v in r.votes
        ]
        lines = [
            f"{r.short_id} {r.action} — {r.status.value} — risk {r.risk} — by {r.requester} via {r.face}",
            *[f"  {line}" for line in r.summary],
            *[f"  · {reason}" for reason in r.risk_reasons],
            f"votes: {', '.join(votes) or 'none'}; approvals {len(r.approvers)} of {r.approvals_needed}",
        ]
        if r.status.open:
            known = self.console.may_vote.get(r.id)
            may = (", ".join(known[1]) or "—") if known and known[0] == r.version else "…"
            lines.append(f"may still vote: {may}; expires {r.expires_at:%Y-%m-%d %H:%M} UTC")
        elif r.decided_at is not None:
            lines.append(f"{r.status.value} {r.decided_at:%Y-%m-%d %H:%M} UTC")
        if r.reason:
            lines.append(f"reason: {r.reason}")
        if r.drift:
            lines.append(f"drift: {dict(r.drift)}")
        return "\n".join(lines)

    def _detail(self) -> None:
        r = self.selected()
        box = self.query_one("#request-detail", Static)
        if r is None:
            box.update("no request selected" if self.console.api is not None else "")
            return
        box.update(self.detail_text(r))
        known = self.console.may_vote.get(r.id)
        if r.status.open and (known is None or known[0] != r.version):
            self._ask_votes(r)

    def _ask_votes(self, r: ChangeRequest) -> None:
        key = (r.id, r.version)
        if key in self._asking_votes:
            return
        self._asking_votes.add(key)

        def answered(detail: RequestDetail) -> None:
            self._asking_votes.discard(key)
            self.console.remember(detail.request, detail.may_still_vote)
            self.show_data()

        def failed(_exc: BaseException) -> None:
            self._asking_votes.discard(key)

        self.ask(lambda api: api.request(r.id), answered, failed, quiet=True)

    def on_fleet_table_row_highlighted(self, _event: FleetTable.RowHighlighted) -> None:
        self._detail()

    def _decided(self, decided: Decided) -> None:
        request = decided.request
        self.console.remember(request, decided.may_still_vote)
        self.show_data()
        if request.status.value == "requested" and request.approvals_needed:
            counted = request.approvals_needed - request.approvals_missing
            self.notify(
                f"request {request.short_id}: {counted} of {request.approvals_needed} approvals",
                title="your vote counted",
            )
        else:
            self.notify(f"request {request.short_id} is {request.status.value}", title="decided")
        if decided.run_refused:
            self.notify(decided.run_refused, title="not run", severity="error")
        if decided.job is not None:  # the approval that completed it started the run, as in the CLI and Slack
            self._show_run(request, decided.job)

    def _show_run(self, request: ChangeRequest, job: Job) -> None:
        self.notify(f"request {request.short_id} runs as job {job.id[:12]}", title="running")
        self.app.push_screen(JobsScreen(select=job.id))

    def action_approve(self) -> None:
        r, who = self.selected(), self.console.who
        if r is None or not self.console.may_write("approve"):
            return
        if who is not None and who.person == r.requester:
            self.notify(
                f"you filed {r.short_id}: another approver must approve it",
                title="approve refused",
                severity="error",
            )
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.ask(lambda api: api.approve(r.id, run=True), self._decided)

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
                self.ask(lambda api: api.reject(r.id, reason=reason), self._decided)

        self.app.push_screen(
            PromptScreen(f"Why reject {r.short_id}?", "the reason, for the requester"), answered
        )

    def action_cancel_request(self) -> None:
        r = self.selected()
        if r is None or not self.console.may_write("cancel"):
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.ask(lambda api: api.cancel_request(r.id), self._decided)

        self.app.push_screen(ConfirmScreen(f"Cancel request {r.short_id}?", "Cancel request"), answered)

    def action_run_request(self) -> None:
        r = self.selected()
        if r is not None and self.console.may_write("run"):
            self.ask(lambda api: api.run_request(r.id), lambda job: self._show_run(r, job))


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


#: How often the jobs screen moves a running failover's RTO clock on.
RTO_TICK_S = 1.0


class JobsScreen(ConsoleScreen):
    """Running and past runs, and the live log of the selected one."""

    screen_name = "jobs"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("c", "cancel_job", "Cancel job")]

    def __init__(self, select: str | None = None) -> None:
        super().__init__()
        self._select = select
        self._log = JobLog(self, self._write, self._status)

    @property
    def log_job(self) -> str | None:
        return self._log.job_id

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield FleetTable(JOB_COLUMNS, id="jobs")
        yield RichLog(id="job-log", max_lines=2000, wrap=False)
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#jobs", FleetTable).focus()
        self.set_interval(RTO_TICK_S, self._tick_rto)

    def show_data(self) -> None:
        rows = {}
        now = datetime.now(UTC)
        for job in self.console.jobs:
            took = f"{job.duration_s:.0f}s" if job.duration_s is not None else ""
            # a failover / failback: its RTO clock while it runs, then its verdict (core/change/rto.py)
            took = self._rto_cell(job, now) or took
            rows[job.id] = (
                job.id[:12],
                Text(job.status.value, style=style(JOB_STATUS_STYLE, job.status)),
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

    def _rto_cell(self, job: Job, now: datetime) -> str | None:
        if job.action not in RTO_ACTIONS or job.check_mode:
            return None
        view = self.console.view
        target = rto_target(view.fleet, job.action, job.params) if view is not None else None
        return job_clock(job, target.target_s if target is not None else None, now)

    def _tick_rto(self) -> None:
        """Every second while a failover / failback runs, its RTO clock moves on."""
        if any(j.action in RTO_ACTIONS and not j.status.terminal for j in self.console.jobs):
            self.show_data()

    def on_fleet_table_row_highlighted(self, _event: FleetTable.RowHighlighted) -> None:
        self._follow(self.query_one("#jobs", FleetTable).selected_key)

    def _follow(self, job_id: str | None) -> None:
        if job_id is None or job_id == self._log.job_id:
            return
        self.query_one("#job-log", RichLog).clear()
        self._log.follow(job_id)

    def _write(self, event: JobEvent) -> None:
        line = event_line(event)
        if line is not None:
            self.query_one("#job-log", RichLog).write(line)

    def _status(self, _status: JobStatus) -> None:
        self.console.action_refresh()  # the table's status column follows at once

    def on_server_event(self, event: StreamEvent) -> None:
        self._log.on_server_event(event)
        if event.kind == "job" and event.data.get("status"):
            self.console.action_refresh()  # some job ended or started: its row follows at once

    def action_cancel_job(self) -> None:
        job_id = self.query_one("#jobs", FleetTable).selected_key
        job = next((j for j in self.console.jobs if j.id == job_id), None)
        if job is None or not self.console.may_write("cancel job"):
            return
        if job.status.terminal:
            self.notify(f"job {job.id[:12]} already {job.status.value}", timeout=3)
            return

        def cancelled(after: Job) -> None:
            self.notify(f"job {after.id[:12]} is {after.status.value}", title="cancel")
            self.console.action_refresh()

        def answered(yes: bool | None) -> None:
            if yes:
                self.ask(lambda api: api.cancel_job(job.id), cancelled)

        self.app.push_screen(
            ConfirmScreen(f"Cancel job {job.id[:12]} ({job.action})?", "Cancel job"), answered
        )
