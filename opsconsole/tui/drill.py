"""A DR drill from the console: ``:drill failover FROM TO`` on the command line, or the palette.

Why this module exists: issue 14 asks for ``opsconsole drill failover --from R --to R2`` "and its console
and Slack forms". The drill itself is :func:`opsconsole.core.change.drill.run_drill` (failover, verify,
failback through the approval pipeline; a report under the home); this module is the console's words
for it. The command line and the palette may not open screens (the console's import layers), so they
post :class:`DrillAsked`; the app calls :func:`opsconsole.tui.screens.drill.ask_drill`, which confirms
(Cancel focused) and opens the drill's screen, where the drill runs on a worker thread with the
console's API and its steps, the RTO clock, the verdict and the report's path are shown.

Use::

    run_drill_command(app, ["failover", "eu-west-1", "eu-central-1"])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from textual.app import App
from textual.message import Message

if TYPE_CHECKING:
    from opsconsole.tui.host import ConsoleHost

__all__ = ["DRILL_HELP", "DrillAsked", "run_drill_command"]

DRILL_HELP = ":drill failover FROM TO (fail FROM over to TO, verify, fail it back; a report)"


class DrillAsked(Message):
    """Someone asked for a drill: the app confirms, then opens the drill's screen."""

    def __init__(self, from_region: str, to_region: str) -> None:
        super().__init__()
        self.from_region = from_region
        self.to_region = to_region


def run_drill_command(app: ConsoleHost, words: Sequence[str]) -> bool:
    """``failover FROM TO`` (``words``: what follows ``drill``). Returns False (and says why) for
    anything else, or when this console may not change the fleet."""
    args = [w.strip() for w in words if w.strip()]
    if not args or args[0].lower() != "failover" or len(args) != 3:
        app.notify(f"drill {' '.join(args)}: expected {DRILL_HELP}", title="drill", severity="warning")
        return False
    from_region, to_region = args[1].lower(), args[2].lower()
    view = app.view
    if view is not None:
        unknown = [r for r in (from_region, to_region) if r not in view.fleet.regions]
        if unknown:
            known = ", ".join(sorted(view.fleet.regions))
            app.notify(f"{', '.join(unknown)}: unknown region; expected one of: {known}", title="drill",
                       severity="warning")
            return False
    if from_region == to_region:
        app.notify(f"{from_region}: a region cannot fail over to itself", title="drill", severity="warning")
        return False
    if not app.may_write("drill"):
        return False
    cast("App[Any]", app).post_message(DrillAsked(from_region, to_region))
    return True
