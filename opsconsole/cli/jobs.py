"""``opsconsole jobs list | show | logs | cancel``: playbook runs, as the ops server keeps them.

Every run is a job on the server that ran it; ``logs --follow`` long-polls its events
(``GET /api/v1/jobs/{id}/events?wait_s=…``) until it ends. :func:`follow_job` is how every command that
starts a run (``act``, ``approvals approve | run``) prints its progress.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated

import typer

from opsconsole.cli import render
from opsconsole.cli.context import cli_context, err, out
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
               after_seq: int = 0) -> Job:
    """Print ``job``'s task lines as they arrive (``show``) and return it once it has ended."""
    seq = after_seq
    while True:
        events = ops.job_events(job.id, after_seq=seq, wait_s=POLL_WAIT_S)
        ended = False
        for event in events:
            seq = max(seq, event.seq)
            if show:
                render.print_event(out, event, show_skipped=show_skipped)
            status = event.data.get("status") if event.kind.value == "job_status" else None
            ended = ended or status not in (None, "queued", "running")
        if events and not ended:
            continue
        job = ops.job(job.id)
        if job.status.terminal:
            for event in ops.job_events(job.id, after_seq=seq):  # anything published as it ended
                if show:
                    render.print_event(out, event, show_skipped=show_skipped)
            return job


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
