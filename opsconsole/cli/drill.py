"""``opsconsole drill failover --from R --to R2``: a DR drill, failover → verify → failback, with a report.

The drill (``opsconsole/core/change/drill.py``) files each move through the normal approval pipeline, as
``act failover`` / ``act failback`` do. When a move needs approval the drill waits for it, printing who
may approve and the exact command (a drill is planned: the approvers are on hand); Ctrl-C stops waiting,
leaving the request open (``opsconsole approvals cancel ID`` withdraws it). ``--break-glass REASON``
(admins) runs each move at once, audited. While a move runs, its task lines and the RTO clock
(``RTO 0:12 / 15:00``) are shown; at the end the report's path and verdict.

The report goes to ``$OPSCONSOLE_HOME/drills/<UTC timestamp>-<R>-<R2>.md`` and ``.json``. ``--json``
prints ``report`` (the Markdown report's path), ``json_report``, ``rto_s``, ``rto_target_s``, ``verdict``
(``met`` / ``missed``; ``aborted`` when the failover never ran; ``null`` for ``--dry-run``) and ``passed``.
Exit status: 0 when the drill passed, 1 when it did not (RTO or RPO missed, a step failed or was not
verified, or it was aborted), 2 for a refused request.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from opsconsole.cli.context import cli_context, err, out

if TYPE_CHECKING:
    from opsconsole.core.runs.records import Job

drill_app = typer.Typer(help="DR drills: fail a region over and back, timed against the RTO and RPO.",
                        no_args_is_help=True)


@drill_app.command("failover")
def drill_failover(
    ctx: typer.Context,
    from_region: Annotated[str, typer.Option("--from", help="The region whose users move.")],
    to_region: Annotated[str, typer.Option("--to", help="The region that takes them.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Preview the failover only (check mode).")]
    = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report's path and verdict as JSON.")]
    = False,
    break_glass: Annotated[
        str | None,
        typer.Option("--break-glass", metavar="REASON",
                     help="Admins only: run each move now, past missing approvals (audited, reviewed)."),
    ] = None,
) -> None:
    """Fail a region over, verify, fail it back, and write a drill report with the RTO verdict."""
    from opsconsole.cli.jobs import follow_job  # noqa: PLC0415
    from opsconsole.core.change.drill import run_drill  # noqa: PLC0415

    context = cli_context(ctx)
    with context.open_client() as ops:

        def say(text: str) -> None:
            (err if as_json else out).print(f"[bold]drill[/] {text}")

        def follow(job: Job) -> Job:
            return follow_job(ops, job, show=not as_json, owned=True, detachable=context.uses_server)

        report = run_drill(ops, from_region=from_region, to_region=to_region, break_glass=break_glass,
                           dry_run=dry_run, say=say, follow=follow)
    if as_json:
        print(json.dumps({
            "report": report.paths.get("md"), "json_report": report.paths.get("json"),
            "rto_s": report.rto_s, "rto_target_s": report.rto_target_s, "verdict": report.verdict,
            "passed": report.passed, "problems": report.problems,
        }, indent=2))
    else:
        for problem in report.problems:
            err.print(f"  [yellow]{problem}[/]")
        if report.write_primaries_after is not None:
            out.print(f"write primaries after the failback: {', '.join(report.write_primaries_after)}")
        verdict = report.verdict or "n/a (dry run)"
        out.print(f"[bold]drill {'passed' if report.passed else 'FAILED'}[/] — RTO verdict {verdict}"
                  + (f": {report.rto['text']}" if report.rto else "")
                  + f"\n  report: {report.paths.get('md')}")
    if not report.passed:
        raise typer.Exit(1)
