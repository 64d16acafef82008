"""``opsconsole act …`` and ``opsconsole jobs …``: change the fleet through playbooks, and follow the runs.

Every change is planned by the core's action catalogue (validated, previewed in words, its risk
assessed), then handed to the approval pipeline: a low-risk change runs at once, a riskier one is filed
as a request for approvers (``opsconsole approvals``). ``--dry-run`` runs the playbook in check mode with
diffs, which changes nothing and needs no approval. Progress streams as the playbook runs. Every run is
a job in the store, so ``jobs`` shows it later from any process.
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.text import Text

from opsconsole.cli import _core, _progress, _state, app, err, out
from opsconsole.core.change.actions import (
    ActionPlan,
    plan_environment,
    plan_failback,
    plan_failover,
    plan_scale,
)
from opsconsole.core.change.rbac import Identity
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.change.risk import RiskAssessment
from opsconsole.core.errors import UsageError
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import Environment
from opsconsole.core.runs.events import EventKind, JobEvent
from opsconsole.core.runs.records import Job, JobStatus

act_app = typer.Typer(help="Change the fleet through its playbooks (preview with --dry-run).",
                      no_args_is_help=True)
env_app = typer.Typer(help="Stop or start a non-prod environment.", no_args_is_help=True)
jobs_app = typer.Typer(help="Playbook runs: list, show, logs, cancel.", no_args_is_help=True)
act_app.add_typer(env_app, name="env")
app.add_typer(act_app, name="act")
app.add_typer(jobs_app, name="jobs")

DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Preview: run the playbook in check mode with diffs.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the job as JSON.")]

STATUS_STYLE = {
    JobStatus.SUCCEEDED: "green", JobStatus.FAILED: "bold red", JobStatus.CANCELLED: "yellow",
    JobStatus.TIMED_OUT: "bold red", JobStatus.INTERRUPTED: "bold yellow", JobStatus.RUNNING: "cyan",
    JobStatus.QUEUED: "dim",
}


def identity(ctx: typer.Context, core: OpsCore) -> Identity:
    """Who is asking: the sandbox cast member named by ``--as``, else the OS user (rbac.yml decides)."""
    acting_as = _state(ctx).acting_as
    if acting_as:
        return core.directory.cast_member(acting_as)
    return core.directory.os_user(getpass.getuser())


BreakGlass = Annotated[
    str | None,
    typer.Option("--break-glass", metavar="REASON",
                 help="Admins only: run now, past missing approvals and change freezes (audited, reviewed)."),
]


def _act(
    ctx: typer.Context,
    make_plan: Callable[[OpsCore], ActionPlan],
    dry_run: bool,
    as_json: bool,
    break_glass: str | None = None,
) -> None:
    """Plan against a fresh snapshot, show the preview and the risk, then preview, run or file it."""
    with _core(_state(ctx)) as core:
        with _progress("Reading the fleet…"):
            view = core.refresh()
        plan = make_plan(core)
        who = identity(ctx, core)
        assessment = core.pipeline.assess(plan, view.snapshot)
        if not as_json:
            mode = "preview (check mode, nothing changes)" if dry_run else "request"
            out.print(f"[bold]{plan.action.value}[/] {mode} — playbook {plan.playbook} — as {who.person}")
            for line in plan.summary:
                out.print(f"  {line}")
            _print_risk(assessment)
        unsubscribe = None if as_json else core.runner.bus.subscribe(_print_event)
        job: Job | None
        try:
            if dry_run:
                job = core.preview(plan, actor=who.person, face="cli")
                submission = None
            else:
                submission = core.pipeline.submit(plan, who, face="cli", snapshot=view.snapshot,
                                                  break_glass_reason=break_glass)
                job = submission.job
        finally:
            if unsubscribe is not None:
                unsubscribe()
        if submission is not None and job is None:
            _filed(core, submission.request, as_json)
            return
    assert job is not None
    if as_json:
        document = _job_document(job)
        if submission is not None:
            document = {**_request_summary(submission.request), "job": document}
        print(json.dumps(document, indent=2))
    else:
        _print_outcome(job)
    if job.status is not JobStatus.SUCCEEDED:
        raise typer.Exit(1)


def _print_risk(assessment: RiskAssessment) -> None:
    style = {"low": "green", "medium": "yellow", "high": "bold red"}.get(assessment.level.value, "")
    needs = "runs without approval"
    if assessment.approvals_needed:
        needs = (f"needs {assessment.approvals_needed} approval(s) from approvers of "
                 f"{assessment.approver_scope.describe()}")
    out.print(f"  risk: [{style}]{assessment.level.value}[/] ({assessment.rule}) — {needs}")
    for reason in assessment.reasons:
        out.print(f"    · {reason}")
    if assessment.freeze:
        out.print(f"  [bold red]change freeze[/]: {assessment.freeze}")


def _request_summary(request: ChangeRequest) -> dict[str, Any]:
    return {
        "request_id": request.id, "status": request.status.value, "risk": request.risk,
        "needs": {"approvals": request.approvals_missing, "of": request.approvals_needed,
                  "approver_scope": dict(request.approver_scope)},
        "expires_at": request.expires_at.isoformat(),
    }


def _filed(core: OpsCore, request: ChangeRequest, as_json: bool) -> None:
    eligible = core.pipeline.may_still_vote(request)
    if as_json:
        print(json.dumps({**_request_summary(request), "eligible_approvers": eligible}, indent=2))
        return
    out.print(
        f"[bold]filed[/] request [bold]{request.short_id}[/] ({request.id}): waiting for "
        f"{request.approvals_missing} approval(s) from {', '.join(eligible)}; expires "
        f"{request.expires_at:%H:%M:%S %Z}.\n  opsconsole approvals approve {request.short_id}"
    )


def _print_event(event: JobEvent) -> None:
    """One line per task result; skipped tasks (the playbooks' other branches) stay in `jobs logs`."""
    _print_any_event(event, show_skipped=False)


def _print_any_event(event: JobEvent, *, show_skipped: bool = True) -> None:
    if event.kind is EventKind.TASK_START or (event.kind is EventKind.SKIPPED and not show_skipped):
        return
    if event.kind in (EventKind.OK, EventKind.CHANGED, EventKind.FAILED, EventKind.SKIPPED,
                      EventKind.UNREACHABLE):
        style = {"changed": "yellow", "failed": "bold red", "unreachable": "bold red", "skipped": "dim"}.get(
            event.kind.value, "green")
        line = Text(f"  {event.kind.value:<8}", style=style)
        line.append(f" {event.task or ''}")
        if event.kind in (EventKind.FAILED, EventKind.UNREACHABLE) and event.message:
            line.append(f": {event.message}", style="red")
        out.print(line)


def _print_outcome(job: Job) -> None:
    totals = job.stats.get("totals", {}) if job.stats else {}
    style = STATUS_STYLE.get(job.status, "")
    duration = f" in {job.duration_s:.1f} s" if job.duration_s is not None else ""
    out.print(
        f"[{style}]{job.status.value}[/]{duration} — changed {totals.get('changed', 0)}, "
        f"failed {totals.get('failed', 0)} (job {job.id}; opsconsole jobs logs {job.id})"
    )
    if job.error:
        err.print(f"  {job.error}")
    for step in job.timings:
        out.print(f"  step {step.get('step')}: {float(step.get('seconds', 0)):.1f} s")


def _action_params(job: Job) -> dict[str, Any]:
    """The request's own parameters, without the connection variables every run gets."""
    return {k: v for k, v in job.params.items() if not k.startswith("opsconsole_")}


def _job_document(job: Job) -> dict[str, Any]:
    return {
        "id": job.id, "action": job.action, "params": _action_params(job), "playbook": job.playbook,
        "check_mode": job.check_mode, "status": job.status.value, "actor": job.actor, "face": job.face,
        "created_at": job.created_at.isoformat(), "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at), "rc": job.rc, "last_task": job.last_task,
        "stats": dict(job.stats), "timings": [dict(t) for t in job.timings], "error": job.error,
    }


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


@act_app.command("scale")
def act_scale(
    ctx: typer.Context,
    workload: Annotated[str, typer.Argument(help="The service, e.g. checkout.")],
    region: Annotated[str, typer.Option("--region", "-r", help="Region id.")],
    replicas: Annotated[int | None, typer.Option("--replicas", help="New replica count.")] = None,
    hpa_min: Annotated[int | None, typer.Option("--hpa-min", help="New HPA minimum.")] = None,
    hpa_max: Annotated[int | None, typer.Option("--hpa-max", help="New HPA maximum.")] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", help="Only this cluster.")] = None,
    environment: Annotated[str, typer.Option("--env", help="prod, staging or dev.")] = "prod",
    dry_run: DryRun = False,
    as_json: AsJson = False,
    break_glass: BreakGlass = None,
) -> None:
    """Scale a workload's replicas or HPA bounds in one cluster or across a region."""
    try:
        env = Environment(environment)
    except ValueError:
        raise UsageError(f"--env {environment}: expected prod, staging or dev") from None
    _act(ctx, lambda core: plan_scale(core.fleet, core.snapshot, service=workload, region=region,
                                      replicas=replicas, hpa_min=hpa_min, hpa_max=hpa_max,
                                      environment=env, cluster=cluster), dry_run, as_json, break_glass)


@act_app.command("failover")
def act_failover(
    ctx: typer.Context,
    from_region: Annotated[str, typer.Option("--from", help="The region whose users move.")],
    to_region: Annotated[str, typer.Option("--to", help="The region that takes them.")],
    dry_run: DryRun = False,
    as_json: AsJson = False,
    break_glass: BreakGlass = None,
) -> None:
    """Move a region's users to another region, promoting its database replica where needed."""
    _act(ctx, lambda core: plan_failover(core.fleet, core.snapshot, from_region=from_region,
                                         to_region=to_region), dry_run, as_json, break_glass)


@act_app.command("failback")
def act_failback(
    ctx: typer.Context,
    region: Annotated[str, typer.Argument(help="The region whose users come back.")],
    dry_run: DryRun = False,
    as_json: AsJson = False,
    break_glass: BreakGlass = None,
) -> None:
    """Send a region's users back to it after a failover."""
    _act(ctx, lambda core: plan_failback(core.fleet, core.snapshot, region=region), dry_run, as_json,
         break_glass)


def _env_action(state: str) -> Callable[..., None]:
    def command(
        ctx: typer.Context,
        environment: Annotated[str, typer.Argument(help="staging or dev.")],
        region: Annotated[str | None, typer.Option("--region", "-r", help="Only this region.")] = None,
        dry_run: DryRun = False,
        as_json: AsJson = False,
        break_glass: BreakGlass = None,
    ) -> None:
        _act(ctx, lambda core: plan_environment(core.fleet, core.snapshot, environment=environment,
                                                state=state, region=region), dry_run, as_json, break_glass)

    command.__doc__ = ("Stop a non-prod environment in dependency order, remembering its sizes."
                       if state == "stopped" else "Start a stopped non-prod environment at its old sizes.")
    return command


env_app.command("stop")(_env_action("stopped"))
env_app.command("start")(_env_action("started"))


# -- jobs -------------------------------------------------------------------------------------------------


def _job_store(_ctx: typer.Context) -> Any:
    from opsconsole.core.runs.jobs import JobStore  # noqa: PLC0415

    return JobStore()  # OPSCONSOLE_DB_URL, else the home's SQLite file


def _get_job(store: Any, job_id: str) -> Job:
    job = store.get(job_id)
    if job is None:
        matches = [j for j in store.list(limit=500) if j.id.startswith(job_id)]
        if len(matches) == 1:
            return matches[0]  # type: ignore[no-any-return]
        raise UsageError(f"job {job_id}: no such job" if not matches else
                         f"job {job_id}: ambiguous prefix ({len(matches)} jobs)")
    return job  # type: ignore[no-any-return]


@jobs_app.command("list")
def jobs_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 20,
    as_json: AsJson = False,
) -> None:
    """Running and past runs, newest first."""
    jobs = _job_store(ctx).list(limit=limit)
    if as_json:
        print(json.dumps([_job_document(j) for j in jobs], indent=2))
        return
    if not jobs:
        out.print("No jobs yet.")
        return
    for job in jobs:
        style = STATUS_STYLE.get(job.status, "")
        mode = " (preview)" if job.check_mode else ""
        params = " ".join(f"{k}={v}" for k, v in _action_params(job).items())
        out.print(f"{job.id[:12]}  {job.created_at:%Y-%m-%d %H:%M:%S}  [{style}]{job.status.value:<11}[/] "
                  f"{job.action}{mode} {params}  by {job.actor} ({job.face})")


@jobs_app.command("show")
def jobs_show(ctx: typer.Context, job_id: Annotated[str, typer.Argument()], as_json: AsJson = False) -> None:
    """One job: parameters, status, stats, timings."""
    job = _get_job(_job_store(ctx), job_id)
    if as_json:
        print(json.dumps(_job_document(job), indent=2))
    else:
        out.print(f"[bold]{job.action}[/] {_action_params(job)} — playbook {job.playbook}"
                  + (" (preview)" if job.check_mode else ""))
        _print_outcome(job)


@jobs_app.command("logs")
def jobs_logs(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument()],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
) -> None:
    """The job's task events; --follow streams them while it runs."""
    store = _job_store(ctx)
    job = _get_job(store, job_id)
    seq = 0
    while True:
        for event in store.events(job.id, after_seq=seq):
            seq = event.seq
            _print_any_event(event)
        job = store.get(job.id)
        if not follow or job.status.terminal:
            break
        time.sleep(0.5)
    _print_outcome(job)


@jobs_app.command("cancel")
def jobs_cancel(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument()],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Cancel a running job (asks first; no ansible process is left behind)."""
    from opsconsole.core.paths import opsconsole_home  # noqa: PLC0415
    from opsconsole.core.runs.events import EventBus  # noqa: PLC0415
    from opsconsole.core.runs.runner import Runner  # noqa: PLC0415
    from opsconsole.wiring import PROJECT_DIR  # noqa: PLC0415

    store = _job_store(ctx)
    job = _get_job(store, job_id)
    if job.status.terminal:
        raise UsageError(f"job {job.id[:12]} already ended ({job.status.value})")
    if not yes and not typer.confirm(f"Cancel {job.action} job {job.id[:12]}?", default=False):
        out.print("Not cancelled.")
        return
    # The inventory in use (--inventory / OPSCONSOLE_INVENTORY), not always the repository's seed.
    fleet = load_inventory(_state(ctx).inventory)
    runner = Runner(store, EventBus(), project_dir=PROJECT_DIR, inventory=fleet.source / "hosts.yml",
                    home=opsconsole_home())
    cancelled = runner.cancel(job.id)
    out.print(f"Job {job.id[:12]} {'cancelled' if cancelled else 'could not be cancelled'}.")
