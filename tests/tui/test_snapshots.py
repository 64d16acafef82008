"""SVG snapshots of the main screens at 80×24, 120×40 and 200×50, compared with the committed ones (at
80×24 the overview is the compact one, a line per region, and the workloads keep name, replicas, CPU,
p95 and errors).

pytest-textual-snapshot would pull syrupy, which pins pytest < 9; Textual's own ``export_screenshot`` gives
the same SVG. The sim reader on a fake clock with the fixed seed makes the screens deterministic. A changed
screen fails the test; to accept it, run with ``OPSCONSOLE_UPDATE_SNAPSHOTS=1`` and review the SVG diff.
The overview at 120×40 is also ``docs/overview.svg`` (the README's screenshot).
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from opsconsole.tui.app import OpsConsoleApp
from opsconsole.tui.screens.change import ActionScreen
from opsconsole.tui.screens.fleet import FindingsScreen, RegionScreen
from opsconsole.tui.widgets.table import FleetTable

from .helpers import REPO, SNAPSHOTS, refreshed, screen_text, sim_app, until

UPDATE = os.environ.get("OPSCONSOLE_UPDATE_SNAPSHOTS") == "1"


def normalise(svg: str) -> str:
    """Drop what may differ between equal screens: the id prefix Rich derives from the content's hash."""
    return re.sub(r"terminal-\d+", "terminal", svg)


async def overview(pilot: Pilot[Any], app: OpsConsoleApp) -> None:
    await pilot.pause(0.2)


async def region(pilot: Pilot[Any], app: OpsConsoleApp) -> None:
    app.open_region("eu-west-1")
    await until(pilot, lambda: isinstance(app.screen, RegionScreen))
    await until(pilot, lambda: any(t.row_count for t in app.screen.query("#workloads").results(FleetTable)))
    await pilot.pause(0.2)


async def findings(pilot: Pilot[Any], app: OpsConsoleApp) -> None:
    await pilot.press("2")
    await until(pilot, lambda: isinstance(app.screen, FindingsScreen))
    await pilot.pause(0.2)


async def scale_form(pilot: Pilot[Any], app: OpsConsoleApp) -> None:
    app.open_action(
        "scale",
        {
            "service": "checkout",
            "region": "eu-west-1",
            "environment": "prod",
            "cluster": "eks-euw1-prod",
            "replicas": "20",
        },
    )
    await until(pilot, lambda: isinstance(app.screen, ActionScreen))
    form = app.screen
    assert isinstance(form, ActionScreen)
    await until(pilot, lambda: form.assessment is not None)
    for box in form.query(Input):
        box.cursor_blink = False
    await pilot.pause(0.2)


SCREENS: dict[str, Callable[[Pilot[Any], OpsConsoleApp], Awaitable[None]]] = {
    "overview": overview,
    "region": region,
    "findings": findings,
    "scale_form": scale_form,
}


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 50)], ids=["80x24", "120x40", "200x50"])
@pytest.mark.parametrize("name", list(SCREENS))
async def test_snapshot(name: str, size: tuple[int, int]) -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=size) as pilot:
        await refreshed(pilot, app)
        await SCREENS[name](pilot, app)
        await until(pilot, lambda: "^p" in (screen_text(app).splitlines() or [""])[-1])  # footer drawn
        # Settled: two screenshots 0.3 s apart agree (on a loaded machine the cards' grid can still be
        # laying out after the footer is drawn; a snapshot of that moment differs by a border's colour).
        svg = normalise(app.export_screenshot(title="opsconsole"))
        for _ in range(20):
            await pilot.pause(0.3)
            again = normalise(app.export_screenshot(title="opsconsole"))
            if again == svg:
                break
            svg = again
        text = screen_text(app)
    path = SNAPSHOTS / f"{name}_{size[0]}x{size[1]}.svg"
    if UPDATE or not path.exists():
        path.write_text(svg, encoding="utf-8")
        if name == "overview" and size == (120, 40):
            (REPO / "docs" / "overview.svg").write_text(svg, encoding="utf-8")
        if not UPDATE:
            pytest.skip(f"wrote the first snapshot {path.name}: review and commit it")
    assert svg == path.read_text(encoding="utf-8"), (
        f"{path.name} changed; if intended, rerun with OPSCONSOLE_UPDATE_SNAPSHOTS=1. Screen now:\n{text}"
    )
