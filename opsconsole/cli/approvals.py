"""``opsconsole approvals …``: the approval queue, from the terminal, through the ops server.

The same queue the Slack bot and the TUI show: list the open requests, look at one (the plan in words,
the risk, the votes, who may still vote, the expiry, what drifted), approve, reject with a reason,
cancel, or run an approved one. The approval that completes a request starts its run on the server at
once (``--no-run`` only votes) and the command follows it; of any number of people trying at the same
instant, exactly one run happens (the server's pipeline sees to it). Who votes is the token's person.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from opsconsole.cli import render
from opsconsole.cli.context import cli_context, err, out
from opsconsole.cli.jobs import follow_job, settled
from opsconsole.core.errors import UsageError

if TYPE_CHECKING:
    from opsconsole.core.api import OpsApi
    from opsconsole.core.change.records import ChangeRequest
    from opsconsole.core.runs.records import Job

approvals_app = typer.Typer(
    help="The approval queue: list, show, approve, reject, cancel, run.", no_args_is_help=True
)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
RequestId = Annotated[str, typer.Argument(help="Request id (a unique prefix will do).")]


@approvals_app.command("list")
def approvals_list(
    ctx: typer.Context,
    everything: Annotated[
        bool, typer.Option("--all", "-a", help="Decided and finished requests too.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 50,
    as_json: AsJson = False,
) -> None:
    """Open requests (waiting for votes or for their run), newest first."""
    with cli_context(ctx).open_client() as ops:
        requests = ops.requests(open_only=not everything, limit=limit)
        if as_json:
            documents = [render.request_document(r, _may_still_vote(ops, r)) for r in requests]
            print(json.dumps(documents, indent=2))
            return
    if not requests:
        out.print("No open requests." if not everything else "No requests yet.")
        return
    out.print("[dim]id        filed             status      risk   votes  request[/]")
    for request in requests:
        out.print(render.request_line(request))


def _may_still_vote(ops: OpsApi, request: ChangeRequest) -> tuple[str, ...]:
    if request.status.value != "requested":
        return ()
    return ops.request(request.id).may_still_vote


@approvals_app.command("show")
def approvals_show(ctx: typer.Context, request_id: RequestId, as_json: AsJson = False) -> None:
    """One request: the plan, the risk, the votes, who may still vote, the expiry, any drift."""
    with cli_context(ctx).open_client() as ops:
        detail = ops.request(request_id)
    request = detail.request
    document = render.request_document(request, detail.may_still_vote)
    if as_json:
        print(json.dumps(document, indent=2))
        return
    out.print(render.request_line(request))
    for line in request.summary:
        out.print(f"  {line}")
    out.print(f"  risk {request.risk}: " + ("; ".join(request.risk_reasons) or "—"))
    if request.approvals_needed:
        out.print(
            f"  approvals {len(request.approvers)} of {request.approvals_needed}"
            f" — may still vote: {', '.join(document['may_still_vote']) or 'nobody'}"
        )
    for vote in request.votes:
        stale = "" if vote.plan_hash == request.plan_hash else " [dim](on an earlier plan: does not count)[/]"
        verb = "approved" if vote.decision.value == "approve" else f"rejected: {vote.reason}"
        out.print(f"  {vote.at:%H:%M:%S} {vote.person} ({vote.role}, {vote.face}) {verb}{stale}")
    if request.status.open:
        out.print(f"  expires {request.expires_at:%Y-%m-%d %H:%M:%S %Z}")
    if request.drift:
        out.print("  [yellow]drifted since approval[/]:")
        for line in request.drift.get("lines", []):
            out.print(f"    {line}")
    if request.break_glass and request.review_due_at is not None:
        out.print(f"  [bold red]break glass[/]: review due {request.review_due_at:%Y-%m-%d %H:%M %Z}")
    if request.job_id:
        out.print(f"  job {request.job_id} (opsconsole jobs logs {request.job_id[:12]})")


def _follow_run(ops: OpsApi, request: ChangeRequest, job: Job, person: str, *,
                detachable: bool = True) -> None:
    """Print the run's progress and outcome; exit 1 unless it succeeded."""
    out.print(f"running request {request.short_id}: {request.action} (as {person})")
    # This command started the run: Ctrl-C asks to cancel or detach (see follow_job).
    job = follow_job(ops, job, owned=True, detachable=detachable)
    settled(ops, request.id)  # its outcome is on the request when this command returns
    render.print_outcome(out, err, job)
    if job.status.value != "succeeded":
        raise typer.Exit(1)


@approvals_app.command("approve")
def approvals_approve(
    ctx: typer.Context,
    request_id: RequestId,
    no_run: Annotated[bool, typer.Option("--no-run", help="Only vote; do not run it when approved.")] = False,
    as_json: AsJson = False,
) -> None:
    """Approve a request (your role is checked now). The approval that completes it runs it."""
    with cli_context(ctx).open_client() as ops:
        decided = ops.approve(request_id, run=not no_run and not as_json)
        request = decided.request
        if as_json:
            print(json.dumps(render.request_document(request, decided.may_still_vote), indent=2))
            return
        person = ops.whoami().person
        missing = request.approvals_missing
        out.print(
            f"approved by {person}: request {request.short_id} is "
            f"{'approved' if decided.job is not None else request.status.value}"
            + (f" ({missing} more approval{'' if missing == 1 else 's'} needed)" if missing else "")
        )
        if decided.run_refused:
            raise UsageError(f"your approval counted, but the run did not start: {decided.run_refused}",
                             title="not run")
        if decided.job is not None:
            _follow_run(ops, request, decided.job, person, detachable=cli_context(ctx).uses_server)


@approvals_app.command("reject")
def approvals_reject(
    ctx: typer.Context,
    request_id: RequestId,
    reason: Annotated[str, typer.Option("--reason", help="Why (required; the requester sees it).")],
    as_json: AsJson = False,
) -> None:
    """Reject a request, with a reason. One eligible rejection decides it."""
    with cli_context(ctx).open_client() as ops:
        decided = ops.reject(request_id, reason=reason)
        person = "" if as_json else ops.whoami().person
    if as_json:
        print(json.dumps(render.request_document(decided.request, decided.may_still_vote), indent=2))
    else:
        out.print(f"rejected by {person}: request {decided.request.short_id} ({reason})")


@approvals_app.command("cancel")
def approvals_cancel(
    ctx: typer.Context,
    request_id: RequestId,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (optional).")] = None,
) -> None:
    """Cancel your own open request."""
    with cli_context(ctx).open_client() as ops:
        decided = ops.cancel_request(request_id, reason=reason)
    out.print(f"cancelled: request {decided.request.short_id}")


@approvals_app.command("run")
def approvals_run(ctx: typer.Context, request_id: RequestId) -> None:
    """Run an approved request (e.g. after its targets were busy): re-planned and checked for drift first."""
    with cli_context(ctx).open_client() as ops:
        job = ops.run_request(request_id)
        request = ops.request(request_id).request
        _follow_run(ops, request, job, ops.whoami().person, detachable=cli_context(ctx).uses_server)
