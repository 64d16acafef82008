"""``opsconsole jobs list | show | logs | cancel``: playbook runs, as the ops server keeps them.

Every run is a job on the server that ran it; ``logs --follow`` long-polls its events
(``GET /api/v1/jobs/{id}/events?wait_s=…``) until it ends. :func:`follow_job` is how every command that
starts a run (``act``, ``approvals approve | run``) prints its progress.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from opsconsole.cli import render
from opsconsole.cli.context import Terminated, cli_context, err, out
from opsconsole.cli.rtoclock import rto_clock
from opsconsole.core.errors import UsageError

if TYPE_CHECKING:
    from opsconsole.core.api import OpsApi
    from opsconsole.core.change.records import ChangeRequest
    from opsconsole.core.runs.records import Job

jobs_app = typer.Typer(help="Playbook runs: list, show, logs, cancel.", no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print the job as JSON.")]
#: How long one long-poll for a job's events waits on the server (it allows up to 25 s).
POLL_WAIT_S = 10.0


def follow_job(ops: OpsApi, job: Job, *, show: bool = True, show_skipped: bool = False,
               after_seq: int = 0, owned: bool = False, detachable: bool = True) -> Job:
    """Print ``job``'s task lines as they arrive (``show``) and return it once it has ended.

    ``owned``: this command started the run (``act``, ``approvals run``), so an interrupt is about the
    run, not only about following it: Ctrl-C asks whether to cancel it or detach (``detachable``: the run
    lives on a team server; an embedded run belongs to this process, so there the choice is cancel or
    keep following); without a terminal, and on SIGTERM, the run is cancelled. Either way the command
    exits 130 (143 on SIGTERM) once the job's record says how it ended. Not ``owned`` (``jobs logs -f``):
    an interrupt only stops following.
    """
    position = [after_seq]
    while True:
        try:
            with rto_clock(ops, job, show=show) as tick:  # a failover's RTO clock, live
                return _follow(ops, job, position, show=show, show_skipped=show_skipped, tick=tick)
        except KeyboardInterrupt as interrupt:
            if not owned:
                raise
            choice = _choose(job, interrupt, detachable=detachable)
            if choice == "follow":
                continue
            code = 143 if isinstance(interrupt, Terminated) else 130
            if choice == "detach":
                err.print(f"Detached: job {job.id[:12]} goes on on the server; follow it with "
                          f"`opsconsole jobs logs -f {job.id}`")
                raise typer.Exit(code) from None
            _cancel_and_report(ops, job)
            raise typer.Exit(code) from None


def _follow(ops: OpsApi, job: Job, position: list[int], *, show: bool, show_skipped: bool,
            tick: Callable[[], None] | None = None) -> Job:
    while True:
        events = ops.job_events(job.id, after_seq=position[0], wait_s=POLL_WAIT_S)
        ended = False
        for event in events:
            position[0] = max(position[0], event.seq)
            if show:
                render.print_event(out, event, show_skipped=show_skipped)
            status = event.data.get("status") if event.kind.value == "job_status" else None
            ended = ended or status not in (None, "queued", "running")
        if tick is not None and not ended:
            tick()
        if events and not ended:
            continue
        job = ops.job(job.id)
        if job.status.terminal:
            for event in ops.job_events(job.id, after_seq=position[0]):  # anything published as it ended
                if show:
                    render.print_event(out, event, show_skipped=show_skipped)
            return job


def _choose(job: Job, interrupt: KeyboardInterrupt, *, detachable: bool) -> str:
    """``cancel``, ``detach`` or ``follow``: asked on a terminal, ``cancel`` otherwise (and on SIGTERM,
    a second Ctrl-C, or the end of input)."""
    if isinstance(interrupt, Terminated) or not (sys.stdin.isatty() and sys.stderr.isatty()):
        return "cancel"
    if detachable:
        question = (f"Job {job.id[:12]} is running on the server: [c]ancel it, or [d]etach (it goes on; "
                    f"`opsconsole jobs logs -f`)?")
        choices = {"c": "cancel", "d": "detach"}
    else:
        question = (f"Job {job.id[:12]} runs in this process and cannot outlive it: [c]ancel it, or [f]ollow "
                    f"it to its end?")
        choices = {"c": "cancel", "f": "follow"}
    try:
        answer = typer.prompt(question, default="c", err=True, show_default=True)
    except (KeyboardInterrupt, EOFError, typer.Abort):
        return "cancel"
    return choices.get(str(answer).strip().lower()[:1], "cancel")


#: How long a cancelled job may take to be recorded as ended before the command gives up waiting.
CANCEL_WAIT_S = 30.0


def _cancel_and_report(ops: OpsApi, job: Job) -> None:
    """Cancel ``job`` and print how its record says it ended (within :data:`CANCEL_WAIT_S`)."""
    err.print(f"Cancelling job {job.id[:12]}…")
    after = ops.cancel_job(job.id)
    deadline = time.monotonic() + CANCEL_WAIT_S
    while not after.status.terminal and time.monotonic() < deadline:
        time.sleep(0.2)
        after = ops.job(job.id)
    if after.status.terminal:
        render.print_outcome(out, err, after)
    else:
        err.print(f"job {job.id[:12]} was asked to cancel but is still {after.status.value} after "
                  f"{CANCEL_WAIT_S:.0f} s; see `opsconsole jobs show {job.id}`")


def settled(ops: OpsApi, request_id: str, *, within_s: float = 15.0) -> ChangeRequest:
    """The request once its run's outcome is recorded on it (the server records it just after the job
    ends), or as it is after ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        request = ops.request(request_id).request
        if request.status.terminal or time.monotonic() > deadline:
            return request
        time.sleep(0.2)


@jobs_app.command("list")
def jobs_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 20,
    as_json: AsJson = False,
) -> None:
    """Running and past runs, newest first."""
    with cli_context(ctx).open_client() as ops:
        jobs = ops.jobs(limit=limit)
    if as_json:
        print(json.dumps([render.job_document(j) for j in jobs], indent=2))
        return
    if not jobs:
        out.print("No jobs yet.")
        return
    for job in jobs:
        out.print(render.job_line(job))


@jobs_app.command("show")
def jobs_show(ctx: typer.Context, job_id: Annotated[str, typer.Argument()], as_json: AsJson = False) -> None:
    """One job: parameters, status, stats, timings."""
    with cli_context(ctx).open_client() as ops:
        job = ops.job(job_id)
    if as_json:
        print(json.dumps(render.job_document(job), indent=2))
    else:
        out.print(f"[bold]{job.action}[/] {render.action_params(job)} — playbook {job.playbook}"
                  + (" (preview)" if job.check_mode else ""))
        render.print_outcome(out, err, job)


@jobs_app.command("logs")
def jobs_logs(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument()],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
) -> None:
    """The job's task events; --follow streams them while it runs."""
    with cli_context(ctx).open_client() as ops:
        job = ops.job(job_id)
        seq = 0
        while True:  # everything recorded so far (the server may answer in pages)
            events = ops.job_events(job.id, after_seq=seq)
            if not events:
                break
            for event in events:
                seq = max(seq, event.seq)
                render.print_event(out, event)
        job = follow_job(ops, job, show_skipped=True, after_seq=seq) if follow else ops.job(job.id)
    render.print_outcome(out, err, job)


@jobs_app.command("cancel")
def jobs_cancel(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument()],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Cancel a running job (asks first; no ansible process is left behind)."""
    with cli_context(ctx).open_client() as ops:
        job = ops.job(job_id)
        if job.status.terminal:
            raise UsageError(f"job {job.id[:12]} already ended ({job.status.value})")
        if not yes and not typer.confirm(f"Cancel {job.action} job {job.id[:12]}?", default=False):
            out.print("Not cancelled.")
            return
        after = ops.cancel_job(job.id)
    ended_otherwise = after.status.terminal and after.status.value != "cancelled"
    outcome = f"could not be cancelled (it ended: {after.status.value})." if ended_otherwise else "cancelled."
    out.print(f"Job {job.id[:12]} {outcome}")
