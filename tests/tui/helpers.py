"""Driving the console in tests: a sim-reader core on a fake clock, refreshed by hand, and waiting helpers."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from rich.console import Console
from textual.pilot import Pilot

from opsconsole.core.facade import OpsCore
from opsconsole.testing import FakeClock
from opsconsole.tui.app import OpsConsoleApp
from opsconsole.wiring import sandbox_core

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"


def sim_factory(clock: FakeClock | None = None) -> Callable[[], AbstractContextManager[OpsCore]]:
    return lambda: sandbox_core(reader="sim", clock=clock or FakeClock())


def sim_app(**kwargs: Any) -> OpsConsoleApp:
    return OpsConsoleApp(
        sim_factory(kwargs.pop("clock", None)), refresh_s=kwargs.pop("refresh_s", 0), **kwargs
    )


async def until(
    pilot: Pilot[Any], condition: Callable[[], Any], timeout: float = 20.0, step: float = 0.05
) -> Any:
    """Wait until ``condition()`` is truthy (the app keeps running meanwhile)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {condition}")
        await pilot.pause(step)


async def refreshed(pilot: Pilot[Any], app: OpsConsoleApp, timeout: float = 20.0) -> None:
    """Trigger one refresh and wait until the app has shown it."""
    await until(pilot, lambda: app.core is not None, timeout)
    before = app.refreshes
    await until(pilot, lambda: not app._refreshing, timeout)
    if app.refreshes == before:
        app.action_refresh()
        await until(pilot, lambda: app.refreshes > before, timeout)
    await pilot.pause()


def screen_text(app: OpsConsoleApp) -> str:
    """The plain text of the screen, as a terminal would show it (the way export_screenshot renders it)."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()
