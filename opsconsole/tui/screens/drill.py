"""The DR drill's screen: ``:drill failover FROM TO`` confirmed, then followed to its report.

Why this module exists: the drill (:func:`opsconsole.core.change.drill.run_drill`) takes minutes and waits
for approvals; the console shows it as it goes rather than freezing: the drill runs on a Textual worker
thread with the console's API (the one the app's api factory opened), and this screen shows

* the steps as the drill says them (filed, waiting for whom and how to approve, failover, verify, …);
* the RTO clock of the move that runs, ticking every second (``RTO 0:12 / 15:00 (critical tier)``,
  the same computation as the CLI and Slack: :mod:`opsconsole.core.change.rto`), then its verdict;
* at the end the verdict, RTO, RPO and the report's path (``$OPSCONSOLE_HOME/drills/…`` on the host that
  ran the drill: this console's).

The approvals happen as for any request (the approvals screen, ``opsconsole approvals approve``, Slack).
Escape closes the screen; a drill still running goes on (its requests stay in the approvals queue).

Use (the app does, on :class:`~opsconsole.tui.drill.DrillAsked`)::

    ask_drill(app, "eu-west-1", "eu-central-1")
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.markup import escape
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, RichLog, Static

from opsconsole.core.change.drill import DrillOps, DrillReport, run_drill
from opsconsole.core.change.rto import clock_text, job_clock, rto_target
from opsconsole.core.errors import OpsError
from opsconsole.tui.screens.dialogs import ConfirmScreen

if TYPE_CHECKING:
    from opsconsole.core.runs.records import Job
    from opsconsole.tui.host import ConsoleHost

__all__ = ["DrillScreen", "ask_drill"]

#: How often the screen's clock ticks, and how long a followed run's events are waited for at a time.
TICK_S = 1.0
WAIT_S = 1.0


def ask_drill(app: ConsoleHost, from_region: str, to_region: str) -> None:
    """Confirm, then open :class:`DrillScreen` running the drill with the console's API."""
    question = (
        f"Run a DR DRILL: fail {escape(from_region)} over to {escape(to_region)}, verify, and fail it "
        "back?\n\nBoth moves are real changes, filed through the approval pipeline (approvers are asked "
        "as for any failover); the RTO clock and a report follow."
    )

    def confirmed(yes: bool | None) -> None:
        if yes:
            cast("App[Any]", app).push_screen(DrillScreen(from_region, to_region))

    cast("App[Any]", app).push_screen(ConfirmScreen(question, "Run the drill", danger=True), confirmed)


class DrillScreen(Screen[None]):
    """A drill running, its steps, its RTO clock and, at the end, its verdict and report."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]
    DEFAULT_CSS = """
    DrillScreen #drill-title { text-style: bold; padding: 0 1; }
    DrillScreen #drill-clock { padding: 0 1; color: $accent; }
    DrillScreen #drill-verdict { padding: 0 1; }
    DrillScreen #drill-steps { height: 1fr; }
    """

    def __init__(self, from_region: str, to_region: str, *, ops: DrillOps | None = None,
                 verify_deadline_s: float | None = None, poll_s: float | None = None) -> None:
        super().__init__()
        self.from_region = from_region
        self.to_region = to_region
        #: The API the drill runs with (``None``: the console's, when the screen opens).
        self.ops = ops
        self._options: dict[str, Any] = {}
        if verify_deadline_s is not None:
            self._options["verify_deadline_s"] = verify_deadline_s
        if poll_s is not None:
            self._options["poll_s"] = poll_s
        #: The move being followed (or last followed) and the RTO it is held to.
        self.job: Job | None = None
        self.target_s: float | None = None
        self.tier: str | None = None
        self.report: DrillReport | None = None
        self.error: str | None = None
        self.lines: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"DR drill: failover {escape(self.from_region)} → {escape(self.to_region)} "
                         "and back", id="drill-title")
            yield Static("RTO clock: waiting for the failover to run", id="drill-clock")
            yield RichLog(id="drill-steps", wrap=True, markup=False)
            yield Static("running…", id="drill-verdict")
        yield Footer()

    def on_mount(self) -> None:
        ops = self.ops if self.ops is not None else cast("ConsoleHost", self.app).api
        if ops is None:
            self._finished_error("the console is not connected to an ops server yet")
            return
        self.ops = ops
        self.set_interval(TICK_S, self.tick)
        self.run_worker(self._run, thread=True, exit_on_error=False, group="drill", name="drill")

    # -- the worker thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        ops = self.ops
        assert ops is not None
        try:
            report = run_drill(ops, from_region=self.from_region, to_region=self.to_region,
                               say=lambda text: self.app.call_from_thread(self.say, text),
                               follow=self._follow, **self._options)
        except OpsError as exc:
            self.app.call_from_thread(self._finished_error, f"{exc.title}: {exc.message}")
            return
        except Exception as exc:  # a lost connection, a bug: said on the screen, never a crash
            self.app.call_from_thread(self._finished_error, str(exc) or type(exc).__name__)
            return
        self.app.call_from_thread(self._finished, report)

    def _follow(self, job: Job) -> Job:
        """Follow a move to its end (long-polling its events), the clock ticking on the UI thread."""
        ops = self.ops
        assert ops is not None
        target = None
        with contextlib.suppress(OpsError):
            target = rto_target(ops.fleet().fleet, job.action, job.params)
        self.app.call_from_thread(self._following, job, target.target_s if target else None,
                                  target.tier if target else None)
        seq = 0
        while True:
            for event in ops.job_events(job.id, after_seq=seq, wait_s=WAIT_S):
                seq = max(seq, int(getattr(event, "seq", seq)))
            job = ops.job(job.id)
            self.app.call_from_thread(self._following, job, self.target_s, self.tier)
            if job.status.terminal:
                return job

    # -- the UI thread ---------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.lines.append(text)
        self.query_one("#drill-steps", RichLog).write(text)

    def _following(self, job: Job, target_s: float | None, tier: str | None) -> None:
        self.job, self.target_s, self.tier = job, target_s, tier
        self.tick()

    def clock_text(self) -> str:
        """What the clock line says now: the move's live clock, or its recorded verdict."""
        job = self.job
        if job is None:
            return "RTO clock: waiting for the failover to run"
        text = job_clock(job, self.target_s, datetime.now(UTC))
        if text is None:
            return f"{job.action}: no RTO clock"
        tier = f" ({self.tier} tier)" if self.tier and "tier" not in text else ""
        return f"{job.action} {job.status.value}: {text}{tier}"

    def tick(self) -> None:
        if self.is_attached:
            self.query_one("#drill-clock", Static).update(escape(self.clock_text()))

    def _finished(self, report: DrillReport) -> None:
        self.report = report
        verdict = report.verdict or ("n/a (dry run)" if report.dry_run else "n/a")
        rto = ""
        if report.rto_s is not None and report.rto_target_s:
            rto = f" — {clock_text(report.rto_s, report.rto_target_s)} ({report.rto_tier} tier)"
        rpo = ""
        if report.rpo is not None:
            rpo = (f"\nRPO {report.rpo.get('verdict') or 'n/a'}: replica lag "
                   f"{report.rpo.get('replica_lag_s')} s of {report.rpo.get('target_s')} s")
        problems = "".join(f"\n  ! {p}" for p in report.problems)
        text = (f"drill {'passed' if report.passed else 'FAILED'}: RTO verdict {verdict}{rto}{rpo}"
                f"\nreport: {report.paths.get('md')}{problems}")
        self.query_one("#drill-verdict", Static).update(escape(text))
        self.tick()
        self.app.notify(f"RTO verdict {verdict}; report {report.paths.get('md')}",
                        title=f"drill {'passed' if report.passed else 'FAILED'}",
                        severity="information" if report.passed else "warning", timeout=10)

    def _finished_error(self, text: str) -> None:
        self.error = text
        self.query_one("#drill-verdict", Static).update(escape(f"drill stopped: {text}"))
        self.app.notify(text, title="drill", severity="error", timeout=10)

    def action_close(self) -> None:
        if self.report is None and self.error is None:
            self.app.notify("the drill goes on; its requests stay in the approvals queue", title="drill")
        self.app.pop_screen()
