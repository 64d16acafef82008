"""``opsconsole approvals …``: the approval queue, from the terminal.

The same queue the Slack bot and the TUI show: list the open requests, look at one (the plan in words,
the risk, the votes, who may still vote, the expiry, what drifted), approve, reject with a reason,
cancel your own, or run an approved one. The approval that completes a request runs it at once in this
process (``--no-run`` only votes); of any number of people trying at the same instant, exactly one run
happens (the pipeline's compare-and-set and lease see to it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from opsconsole.cli import _core, _progress, _state, app, out
from opsconsole.cli_act import _print_event, _print_outcome, _request_summary, identity
from opsconsole.core.change.approvals import Decision, RequestStatus
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.runs.records import JobStatus

approvals_app = typer.Typer(
    help="The approval queue: list, show, approve, reject, cancel, run.", no_args_is_help=True
)
app.add_typer(approvals_app, name="approvals")

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
RequestId = Annotated[str, typer.Argument(help="Request id (a unique prefix will do).")]

STATUS_STYLE = {
    RequestStatus.REQUESTED: "yellow",
    RequestStatus.APPROVED: "cyan",
    RequestStatus.RUNNING: "cyan",
    RequestStatus.SUCCEEDED: "green",
    RequestStatus.FAILED: "bold red",
    RequestStatus.REJECTED: "red",
    RequestStatus.EXPIRED: "dim",
    RequestStatus.CANCELLED: "dim",
    RequestStatus.INTERRUPTED: "bold yellow",
}


@contextmanager
def _queue_core(ctx: typer.Context) -> Iterator[OpsCore]:
    """A core for looking and voting: the queue is in the database, so no fleet source is started."""
    state = _state(ctx)
    with OpsCore(load_inventory(state.inventory), [], sandbox=not state.live) as core:
        yield core


def _document(core: OpsCore, request: ChangeRequest) -> dict[str, Any]:
    return {
        **_request_summary(request),
        "action": request.action,
        "params": dict(request.params),
        "targets": list(request.targets),
        "summary": list(request.summary),
        "risk_reasons": list(request.risk_reasons),
        "requester": request.requester,
        "face": request.face,
        "created_at": request.created_at.isoformat(),
        "approvers": list(request.approvers),
        "may_still_vote": core.pipeline.may_still_vote(request),
        "votes": [
            {
                "person": v.person,
                "decision": v.decision.value,
                "role": v.role,
                "at": v.at.isoformat(),
                "reason": v.reason,
                "face": v.face,
                "current_plan": v.plan_hash == request.plan_hash,
            }
            for v in request.votes
        ],
        "plan_hash": request.plan_hash,
        "job_id": request.job_id,
        "break_glass": request.break_glass,
        "review_due_at": request.review_due_at.isoformat() if request.review_due_at else None,
        "reason": request.reason,
        "drift": dict(request.drift) if request.drift else None,
    }


def _line(request: ChangeRequest) -> str:
    style = STATUS_STYLE.get(request.status, "")
    params = " ".join(f"{k}={v}" for k, v in request.params.items())
    votes = f"{len(request.approvers)}/{request.approvals_needed}" if request.approvals_needed else "—"
    glass = " [bold red]BREAK-GLASS[/]" if request.break_glass else ""
    return (
        f"{request.short_id}  {request.created_at:%Y-%m-%d %H:%M}  [{style}]{request.status.value:<11}[/] "
        f"{request.risk:<6} {votes:>5}  {request.action} {params}  by {request.requester}{glass}"
    )


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
    with _queue_core(ctx) as core:
        pipeline = core.pipeline
        pipeline.expire_due()
        statuses = (
            None if everything else [RequestStatus.REQUESTED, RequestStatus.APPROVED, RequestStatus.RUNNING]
        )
        requests = pipeline.requests.list(statuses=statuses, limit=limit)
        if as_json:
            print(json.dumps([_document(core, r) for r in requests], indent=2))
            return
    if not requests:
        out.print("No open requests." if not everything else "No requests yet.")
        return
    out.print("[dim]id        filed             status      risk   votes  request[/]")
    for request in requests:
        out.print(_line(request))


@approvals_app.command("show")
def approvals_show(ctx: typer.Context, request_id: RequestId, as_json: AsJson = False) -> None:
    """One request: the plan, the risk, the votes, who may still vote, the expiry, any drift."""
    with _queue_core(ctx) as core:
        core.pipeline.expire_due()
        request = core.pipeline.requests.get(request_id)
        document = _document(core, request)
    if as_json:
        print(json.dumps(document, indent=2))
        return
    out.print(_line(request))
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
        verb = "approved" if vote.decision is Decision.APPROVE else f"rejected: {vote.reason}"
        out.print(f"  {vote.at:%H:%M:%S} {vote.person} ({vote.role}, {vote.face}) {verb}{stale}")
    if request.status.open:
        out.print(f"  expires {request.expires_at:%Y-%m-%d %H:%M:%S %Z}")
    if request.drift:
        out.print("  [yellow]drifted since approval[/]:")
        for line in request.drift.get("lines", []):
            out.print(f"    {line}")
    if request.break_glass:
        out.print(f"  [bold red]break glass[/]: review due {request.review_due_at:%Y-%m-%d %H:%M %Z}")
    if request.job_id:
        out.print(f"  job {request.job_id} (opsconsole jobs logs {request.job_id[:12]})")


def _run(ctx: typer.Context, request: ChangeRequest) -> None:
    """Run an approved request with live progress, on a core that reads the fleet (re-planning needs it)."""
    with _core(_state(ctx)) as core:
        who = identity(ctx, core)
        unsubscribe = core.runner.bus.subscribe(_print_event)
        try:
            with _progress("Reading the fleet…"):
                core.refresh()
            out.print(f"running request {request.short_id}: {request.action} (as {who.person})")
            job = core.pipeline.execute(request.id, who, face="cli")
        finally:
            unsubscribe()
    _print_outcome(job)
    if job.status is not JobStatus.SUCCEEDED:
        raise typer.Exit(1)


@approvals_app.command("approve")
def approvals_approve(
    ctx: typer.Context,
    request_id: RequestId,
    no_run: Annotated[bool, typer.Option("--no-run", help="Only vote; do not run it when approved.")] = False,
    as_json: AsJson = False,
) -> None:
    """Approve a request (your role is checked now). The approval that completes it runs it."""
    with _queue_core(ctx) as core:
        who = identity(ctx, core)
        request = core.pipeline.approve(request_id, who, face="cli")
        if as_json:
            print(json.dumps(_document(core, request), indent=2))
        else:
            missing = request.approvals_missing
            out.print(
                f"approved by {who.person}: request {request.short_id} is {request.status.value}"
                + (f" ({missing} more approval(s) needed)" if missing else "")
            )
    if request.status is RequestStatus.APPROVED and not no_run and not as_json:
        _run(ctx, request)


@approvals_app.command("reject")
def approvals_reject(
    ctx: typer.Context,
    request_id: RequestId,
    reason: Annotated[str, typer.Option("--reason", help="Why (required; the requester sees it).")],
    as_json: AsJson = False,
) -> None:
    """Reject a request, with a reason. One eligible rejection decides it."""
    with _queue_core(ctx) as core:
        who = identity(ctx, core)
        request = core.pipeline.reject(request_id, who, face="cli", reason=reason)
        document = _document(core, request)
    if as_json:
        print(json.dumps(document, indent=2))
    else:
        out.print(f"rejected by {who.person}: request {request.short_id} ({reason})")


@approvals_app.command("cancel")
def approvals_cancel(
    ctx: typer.Context,
    request_id: RequestId,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (optional).")] = None,
) -> None:
    """Cancel your own open request."""
    with _queue_core(ctx) as core:
        who = identity(ctx, core)
        request = core.pipeline.cancel(request_id, who, face="cli", reason=reason)
    out.print(f"cancelled: request {request.short_id}")


@approvals_app.command("run")
def approvals_run(ctx: typer.Context, request_id: RequestId) -> None:
    """Run an approved request (e.g. after its targets were busy): re-planned and checked for drift first."""
    with _queue_core(ctx) as core:
        request = core.pipeline.requests.get(request_id)
    _run(ctx, request)
