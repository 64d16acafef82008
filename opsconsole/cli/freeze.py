"""``opsconsole freeze on --reason "…" | off | status``: the emergency change freeze, in one command.

Why this module exists: during an incident an admin must stop every risky change at once, from wherever
they are, without editing ``policy.yml`` and waiting for a review. ``freeze on`` refuses every medium and
high risk request on every face (low-risk ones, such as a scale-up, still run; break glass, by an admin,
still passes) until ``freeze off``. Both are admins-only and audited; ``status`` is for anyone. The switch
lives in the store behind the ops server (``/api/v1/freeze``), so every server sharing the store sees it.

Use::

    opsconsole freeze on --reason "INC-42: payments degraded, hands off"
    opsconsole freeze status [--json]
    opsconsole freeze off
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from opsconsole.cli.context import cli_context, out

__all__ = ["freeze_app"]

freeze_app = typer.Typer(
    help="The emergency change freeze: refuse medium and high risk changes now (admins).",
    no_args_is_help=True,
)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _show(document: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(document, indent=2))
        return
    if document.get("on"):
        out.print(
            f"[bold red]emergency freeze ON[/] since {document.get('since')} by {document.get('by')}: "
            f"{document.get('reason')}\nmedium and high risk changes are refused unless glass is broken",
            soft_wrap=True,
        )
    else:
        out.print("emergency freeze off (the change freezes of policy.yml still apply)")


@freeze_app.command("on")
def freeze_on(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why: shown with every refusal.")],
    as_json: AsJson = False,
) -> None:
    """Turn the emergency freeze on: medium and high risk changes are refused until `freeze off`."""
    with cli_context(ctx).open_client() as ops:
        document = ops.freeze(True, reason=reason)
    _show(document, as_json)


@freeze_app.command("off")
def freeze_off(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Lift the emergency freeze (the windows of policy.yml still apply)."""
    with cli_context(ctx).open_client() as ops:
        document = ops.freeze(False)
    _show(document, as_json)


@freeze_app.command("status")
def freeze_status(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Whether the emergency freeze is on, why, by whom and since when."""
    with cli_context(ctx).open_client() as ops:
        document = ops.freeze_status()
    _show(document, as_json)
