"""``opsconsole inventory check``: validate an inventory directory on this machine (no server asked)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from opsconsole.cli.context import cli_context, out

inventory_app = typer.Typer(help="Validate an inventory.", no_args_is_help=True)


@inventory_app.command("check")
def inventory_check(
    ctx: typer.Context,
    path: Annotated[Path | None, typer.Argument(help="Inventory directory or hosts.yml.")] = None,
) -> None:
    """Validate an inventory and summarise it; exit 2 with the file, key and expectation if invalid."""
    from opsconsole.core.fleet.inventory import load_inventory  # noqa: PLC0415 — keeps `--help` fast

    fleet = load_inventory(path or cli_context(ctx).inventory)
    prod = sum(1 for c in fleet.clusters.values() if c.environment.value == "prod")
    out.print(
        f"[green]ok[/] {fleet.source}: {len(fleet.regions)} regions, {len(fleet.clusters)} clusters "
        f"({prod} prod), {len(fleet.services)} services"
    )
