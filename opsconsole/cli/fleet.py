"""``opsconsole fleet status | findings``: the fleet as the ops server sees it.

The documents come from the server's cache (``GET /api/v1/fleet/status`` and ``…/findings``): a team
server's, or the embedded one's on the sandbox (``--live``: the real clouds, read-only). The server
computes them, so the client downloads a few kilobytes rather than the whole fleet view. ``--watch`` keeps
one connection and re-fetches the status every N seconds, redrawing in place.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from opsconsole.cli import render
from opsconsole.cli.context import CliContext, cli_context, out, progress
from opsconsole.core.errors import UsageError

fleet_app = typer.Typer(help="Read the fleet: status and findings.", no_args_is_help=True)

Region = Annotated[str | None, typer.Option("--region", "-r", help="Only this region.")]


def read_status(state: CliContext, region: str | None) -> dict[str, Any]:
    """The status document from the server (a region it does not know is its 400: exit 2)."""
    with progress("Reading the fleet…"), state.open_client() as ops:
        return ops.status(region)


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
    document = read_status(cli_context(ctx), region)
    if as_json:
        print(json.dumps(document, indent=2))
    else:
        out.print(render.status_view(document))


def _watch_status(state: CliContext, region: str | None, every_s: float) -> None:
    """Keep one connection to the server and redraw the status in place."""
    from rich.live import Live  # noqa: PLC0415

    with state.open_client() as ops:
        document = ops.status(region)
        try:
            with Live(render.status_view(document), console=out, auto_refresh=False) as live:
                while True:
                    time.sleep(every_s)
                    live.update(render.status_view(ops.status(region)), refresh=True)
        except KeyboardInterrupt:
            pass


@fleet_app.command("findings")
def fleet_findings(
    ctx: typer.Context,
    region: Region = None,
    as_json: Annotated[bool, typer.Option("--json", help="The fleet.findings/v1 JSON document.")] = False,
) -> None:
    """What is off target, worst first, with the measured figure, the target and a suggested action."""
    with progress("Reading the fleet…"), cli_context(ctx).open_client() as ops:
        document = ops.findings(region)
    if as_json:
        print(json.dumps(document, indent=2))
        return
    table = render.findings_table(document)
    if table is None:
        out.print("[green]No findings:[/] every target is met.")
    else:
        out.print(table)
