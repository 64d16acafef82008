"""``opsconsole fleet status | findings``: the fleet as the ops server sees it.

The view comes from the server's cache (``GET /api/v1/fleet``): a team server's, or the embedded one's
on the sandbox (``--live``: the real clouds, read-only). ``--watch`` keeps one connection and re-fetches
the view every N seconds, redrawing in place.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated

import typer

from opsconsole.cli import render
from opsconsole.cli.context import CliContext, cli_context, out, progress
from opsconsole.core.errors import UsageError

if TYPE_CHECKING:
    from opsconsole.core.fleet.view import FleetView

fleet_app = typer.Typer(help="Read the fleet: status and findings.", no_args_is_help=True)

Region = Annotated[str | None, typer.Option("--region", "-r", help="Only this region.")]


def read_fleet(state: CliContext) -> FleetView:
    """One view of the fleet from the server."""
    with progress("Reading the fleet…"), state.open_client() as ops:
        return ops.fleet()


def check_region(view: FleetView, region: str | None) -> None:
    if region is not None and region not in view.fleet.regions:
        known = ", ".join(sorted(view.fleet.regions))
        raise UsageError(f"--region {region}: unknown region; expected one of: {known}")


def print_status(view: FleetView, region: str | None) -> None:
    out.print(render.status_view(view, region))


@fleet_app.command("status")
def fleet_status(
    ctx: typer.Context,
    region: Region = None,
    as_json: Annotated[bool, typer.Option("--json", help="The opsconsole.fleet.status/v1 document.")] = False,
    watch: Annotated[
        float | None,
        typer.Option("--watch", "-w", min=0.5, max=3600, help="Redraw every N seconds until Ctrl-C."),
    ] = None,
) -> None:
    """Per region: tier, clouds, health, p95 vs target, availability, replica lag, pods, nodes, findings."""
    if watch is not None:
        if as_json:
            raise UsageError("--watch and --json cannot be combined; poll --json from your script instead")
        _watch_status(cli_context(ctx), region, watch)
        return
    view = read_fleet(cli_context(ctx))
    check_region(view, region)
    if as_json:
        from opsconsole.core.fleet.report import status_document  # noqa: PLC0415

        print(json.dumps(status_document(view, region), indent=2))
    else:
        print_status(view, region)


def _watch_status(state: CliContext, region: str | None, every_s: float) -> None:
    """Keep one connection to the server and redraw the status in place."""
    from rich.live import Live  # noqa: PLC0415

    with state.open_client() as ops:
        view = ops.fleet()
        check_region(view, region)
        try:
            with Live(render.status_view(view, region), console=out, auto_refresh=False) as live:
                while True:
                    time.sleep(every_s)
                    view = ops.fleet()
                    live.update(render.status_view(view, region), refresh=True)
        except KeyboardInterrupt:
            pass


@fleet_app.command("findings")
def fleet_findings(
    ctx: typer.Context,
    region: Region = None,
    as_json: Annotated[bool, typer.Option("--json", help="The fleet.findings/v1 JSON document.")] = False,
) -> None:
    """What is off target, worst first, with the measured figure, the target and a suggested action."""
    view = read_fleet(cli_context(ctx))
    check_region(view, region)
    if as_json:
        from opsconsole.core.fleet.report import findings_document  # noqa: PLC0415

        print(json.dumps(findings_document(view, region), indent=2))
        return
    table = render.findings_table(view, region)
    if table is None:
        out.print("[green]No findings:[/] every target is met.")
    else:
        out.print(table)
