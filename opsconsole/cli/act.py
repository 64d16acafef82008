"""``opsconsole act …``: change the fleet through its playbooks, by asking the ops server.

The server plans the change on its latest snapshot and judges its risk (``assess``: printed first), then
either previews it (``--dry-run``: the playbook in check mode with diffs, which changes nothing and needs
no approval) or files it through the approval pipeline (``submit``): a low-risk change runs at once, a
riskier one waits for approvers (``opsconsole approvals``). A run's task lines are followed as they
happen, then its outcome; the exit code is 1 when it did not succeed. Who is asking is the server's
business: the token's person (the ``--as`` cast member or the OS user on the embedded sandbox).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from opsconsole.cli import render
from opsconsole.cli.context import cli_context, err, out, progress
from opsconsole.cli.jobs import follow_job, settled
from opsconsole.core.errors import UsageError

if TYPE_CHECKING:
    from opsconsole.core.api import Filed

act_app = typer.Typer(help="Change the fleet through its playbooks (preview with --dry-run).",
                      no_args_is_help=True)
env_app = typer.Typer(help="Stop or start a non-prod environment.", no_args_is_help=True)
act_app.add_typer(env_app, name="env")

DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Preview: run the playbook in check mode with diffs.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the job as JSON.")]
BreakGlass = Annotated[
    str | None,
    typer.Option("--break-glass", metavar="REASON",
                 help="Admins only: run now, past missing approvals and change freezes (audited, reviewed)."),
]
ENVIRONMENTS = ("prod", "staging", "dev")


def _heading(action: str, params: dict[str, Any]) -> str:
    """The action as the playbooks name it (``env_stop`` rather than ``environment``)."""
    if action == "environment":
        return "env_stop" if params.get("state") == "stopped" else "env_start"
    return action


def run_action(
    ctx: typer.Context,
    action: str,
    params: dict[str, Any],
    dry_run: bool,
    as_json: bool,
    break_glass: str | None = None,
) -> None:
    """Assess, show the plan and the risk, then preview or file it, and follow any run to its end."""
    params = {k: v for k, v in params.items() if v is not None}
    with cli_context(ctx).open_client() as ops:
        if not as_json:
            with progress("Planning…"):
                who = ops.whoami()
                assessment = ops.assess(action, params)
            mode = "preview (check mode, nothing changes)" if dry_run else "request"
            out.print(f"[bold]{_heading(action, params)}[/] {mode} — playbook {assessment.playbook} "
                      f"— as {who.person}")
            for line in assessment.summary:
                out.print(f"  {line}")
            render.print_risk(out, assessment.risk)
        filed: Filed | None = None
        if dry_run:
            job = ops.preview(action, params)
        else:
            filed = ops.submit(action, params, break_glass_reason=break_glass)
            if filed.job is None:
                _print_filed(filed, as_json)
                return
            job = filed.job
        job = follow_job(ops, job, show=not as_json, owned=True,
                         detachable=cli_context(ctx).uses_server)
        if filed is not None:
            filed_request = settled(ops, filed.request.id)
    if as_json:
        document = render.job_document(job)
        if filed is not None:
            document = {**render.request_summary(filed_request), "job": document}
        print(json.dumps(document, indent=2))
    else:
        render.print_outcome(out, err, job)
    if job.status.value != "succeeded":
        raise typer.Exit(1)


def _print_filed(filed: Filed, as_json: bool) -> None:
    request = filed.request
    eligible = list(filed.may_still_vote)
    if as_json:
        print(json.dumps({**render.request_summary(request), "eligible_approvers": eligible}, indent=2))
        return
    out.print(
        f"[bold]filed[/] request [bold]{request.short_id}[/] ({request.id}): waiting for "
        f"{request.approvals_missing} approval(s) from {', '.join(eligible)}; expires "
        f"{request.expires_at:%H:%M:%S %Z}.\n  opsconsole approvals approve {request.short_id}"
    )


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
    if environment not in ENVIRONMENTS:
        raise UsageError(f"--env {environment}: expected prod, staging or dev")
    run_action(ctx, "scale", {"service": workload, "region": region, "replicas": replicas, "hpa_min": hpa_min,
                              "hpa_max": hpa_max, "environment": environment, "cluster": cluster},
               dry_run, as_json, break_glass)


@act_app.command("nodes")
def act_nodes(
    ctx: typer.Context,
    cluster: Annotated[str, typer.Option("--cluster", "-c", help="The cluster, e.g. gke-usw2-prod.")],
    nodes_min: Annotated[int | None, typer.Option("--min", help="New node minimum.")] = None,
    nodes_max: Annotated[int | None, typer.Option("--max", help="New node maximum.")] = None,
    nodes_desired: Annotated[int | None, typer.Option("--desired", help="Nodes to run now (within the "
                                                      "range; the autoscaler may move it).")] = None,
    dry_run: DryRun = False,
    as_json: AsJson = False,
    break_glass: BreakGlass = None,
) -> None:
    """Set a cluster's node group / node pool bounds (EKS, GKE, AKS), or its desired nodes."""
    if nodes_min is None and nodes_max is None and nodes_desired is None:
        raise UsageError("act nodes: give --min, --max or --desired (e.g. --cluster gke-usw2-prod --max 50)")
    run_action(ctx, "nodes", {"cluster": cluster, "nodes_min": nodes_min, "nodes_max": nodes_max,
                              "nodes_desired": nodes_desired}, dry_run, as_json, break_glass)


@act_app.command("replicas")
def act_replicas(
    ctx: typer.Context,
    region: Annotated[str, typer.Option("--region", "-r", help="Region id: its database.")],
    count: Annotated[int | None, typer.Option("--count", help="New number of read replicas.")] = None,
    promote: Annotated[bool, typer.Option("--promote", help="Make the region's database a write "
                                          "primary.")] = False,
    demote: Annotated[bool, typer.Option("--demote", help="Make it a read replica again "
                                         "(failback).")] = False,
    source: Annotated[str | None, typer.Option("--source", help="With --demote: the write primary to "
                                               "replicate from (default: the inventory's).")] = None,
    dry_run: DryRun = False,
    as_json: AsJson = False,
    break_glass: BreakGlass = None,
) -> None:
    """A region database's read replicas (--count N), or its role (--promote / --demote [--source R])."""
    chosen = [flag for flag, on in (("--count", count is not None), ("--promote", promote),
                                    ("--demote", demote)) if on]
    if len(chosen) != 1:
        said = f" (given: {', '.join(chosen)})" if chosen else ""
        raise UsageError(f"act replicas: give exactly one of --count N, --promote or --demote{said}")
    if source is not None and not demote:
        raise UsageError("act replicas: --source goes with --demote (the primary to replicate from)")
    if count is not None:
        run_action(ctx, "replicas", {"region": region, "read_replicas": count}, dry_run, as_json, break_glass)
    else:
        run_action(ctx, "database", {"region": region, "change": "promote" if promote else "demote",
                                     "source_region": source}, dry_run, as_json, break_glass)


@act_app.command("cache")
def act_cache(
    ctx: typer.Context,
    region: Annotated[str, typer.Option("--region", "-r", help="Region id: its Redis.")],
    nodes: Annotated[int, typer.Option("--nodes", help="New number of Redis nodes.")],
    dry_run: DryRun = False,
    as_json: AsJson = False,
    break_glass: BreakGlass = None,
) -> None:
    """Set the number of a region's Redis nodes."""
    run_action(ctx, "cache", {"region": region, "nodes": nodes}, dry_run, as_json, break_glass)


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
    run_action(ctx, "failover", {"from_region": from_region, "to_region": to_region}, dry_run, as_json,
               break_glass)


@act_app.command("failback")
def act_failback(
    ctx: typer.Context,
    region: Annotated[str, typer.Argument(help="The region whose users come back.")],
    dry_run: DryRun = False,
    as_json: AsJson = False,
    break_glass: BreakGlass = None,
) -> None:
    """Send a region's users back to it after a failover."""
    run_action(ctx, "failback", {"region": region}, dry_run, as_json, break_glass)


def _env_action(state: str) -> Callable[..., None]:
    def command(
        ctx: typer.Context,
        environment: Annotated[str, typer.Argument(help="staging or dev.")],
        region: Annotated[str | None, typer.Option("--region", "-r", help="Only this region.")] = None,
        dry_run: DryRun = False,
        as_json: AsJson = False,
        break_glass: BreakGlass = None,
    ) -> None:
        run_action(ctx, "environment", {"environment": environment, "state": state, "region": region},
                   dry_run, as_json, break_glass)

    command.__doc__ = ("Stop a non-prod environment in dependency order, remembering its sizes."
                       if state == "stopped" else "Start a stopped non-prod environment at its old sizes.")
    return command


env_app.command("stop")(_env_action("stopped"))
env_app.command("start")(_env_action("started"))
