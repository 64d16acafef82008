"""``opsconsole fleet status | findings | sources``: the fleet as the ops server sees it.

The documents come from the server's cache (``GET /api/v1/fleet/status`` and ``…/findings``): a team
server's, or the embedded one's on the sandbox (``--live``: the real clouds, read-only). The server
computes them, so the client downloads a few kilobytes rather than the whole fleet view. ``--watch`` keeps
one connection and re-fetches the status every N seconds, redrawing in place. ``sources`` says what looking
costs: per source its cadence, last read, calls/hour, errors, throttles and est. $/month (list prices from
the inventory's ``prices.yml``).
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from opsconsole.cli import render
from opsconsole.cli.context import CliContext, cli_context, out, progress
from opsconsole.core.errors import UsageError

fleet_app = typer.Typer(help="Read the fleet: status, findings and sources.", no_args_is_help=True)

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
    # No region reporting (a frozen local cloud, every cloud refusing) must not pass for a quiet fleet.
    problem = render.status_problem(document)
    if problem is not None:
        raise problem


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


def _age_text(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago"


@fleet_app.command("sources")
def fleet_sources(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="The opsconsole.fleet.sources/v1 document.")
    ] = False,
) -> None:
    """Per source: cadence, last read, calls/hour, errors, throttles and the est. $/month of looking."""
    from rich.table import Table  # noqa: PLC0415

    with progress("Reading the sources…"), cli_context(ctx).open_client() as ops:
        document = ops.sources()
    if as_json:
        print(json.dumps(document, indent=2))
        return
    table = Table(title=f"Fleet sources (counted over the last {document.get('window_s', 0):.0f} s)")
    for column in ("source", "status", "cadence", "last read", "calls/hour", "errors", "throttles",
                   "est. $/month"):
        table.add_column(column, justify="right" if column not in ("source", "status") else "left")
    for row in document.get("sources", []):
        status = str(row.get("status"))
        if row.get("stale") and status == "ok":
            status = "stale"
        style = {"ok": "green", "stale": "yellow", "error": "red"}.get(status, "")
        cadence = row.get("cadence_s")
        table.add_row(
            str(row["name"]),
            f"[{style}]{status}[/]" if style else status,
            "every refresh" if not cadence else f"{cadence:g} s",
            _age_text(row.get("age_s")),
            f"{row.get('calls_per_hour', 0):,.0f}",
            str(row.get("errors", 0)),
            str(row.get("throttles", 0)),
            f"${row.get('usd_per_month', 0):,.2f}",
        )
    total = document.get("total", {})
    table.add_row("all", "", "", "", f"{total.get('calls_per_hour', 0):,.0f}", "", "",
                  f"${total.get('usd_per_month', 0):,.2f}", style="bold")
    out.print(table)
