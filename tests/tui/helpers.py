"""Driving the console in tests: the console on a sim-reader core on a fake clock behind the fast API
double (:mod:`.apiadapter`), refreshed by hand, and waiting helpers. ``embedded_app`` opens it on the
real embedded server instead (uvicorn on a Unix socket, the HTTP client), as ``opsconsole`` does.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from textual.pilot import Pilot

from opsconsole.core.api import OpsApi
from opsconsole.core.facade import OpsCore
from opsconsole.testing import FakeClock
from opsconsole.tui.app import OpsConsoleApp
from opsconsole.wiring import sandbox_core

from .apiadapter import CoreApi

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"


class Harness:
    """One core shared by the console's API and every ``as NAME`` it opens (as the embedded server
    is shared by its clients)."""

    def __init__(
        self,
        core_factory: Callable[[], AbstractContextManager[OpsCore]],
        acting_as: str | None = None,
        gate: Callable[[str], None] | None = None,
        may_change: bool = True,
    ) -> None:
        self._core_factory = core_factory
        self.acting_as = acting_as
        self.gate = gate
        self.may_change = may_change
        self.core: OpsCore | None = None

    @contextmanager
    def _api(self, core: OpsCore, person: str | None) -> Iterator[OpsApi]:
        api = CoreApi(core, person, gate=self.gate, may_change=self.may_change)
        try:
            yield api
        finally:
            api.close()

    @contextmanager
    def factory(self) -> Iterator[OpsApi]:
        with self._core_factory() as core:
            self.core = core
            with self._api(core, self.acting_as) as api:
                yield api

    def reopen(self, person: str) -> AbstractContextManager[OpsApi]:
        assert self.core is not None
        return self._api(self.core, person)


def core_app(
    core_factory: Callable[[], AbstractContextManager[OpsCore]],
    *,
    acting_as: str | None = None,
    gate: Callable[[str], None] | None = None,
    may_change: bool = True,
    **kwargs: Any,
) -> OpsConsoleApp:
    """The console on the API double over ``core_factory``'s core; ``harness_of(app).core`` is the core."""
    harness = Harness(core_factory, acting_as, gate, may_change)
    refresh_s = kwargs.pop("refresh_s", 0)
    app = OpsConsoleApp(harness.factory, refresh_s=refresh_s, reopen=harness.reopen, **kwargs)
    app._test_harness = harness  # type: ignore[attr-defined]
    return app


def harness_of(app: OpsConsoleApp) -> Harness:
    harness = app._test_harness  # type: ignore[attr-defined]
    assert isinstance(harness, Harness)
    return harness


def sim_app(**kwargs: Any) -> OpsConsoleApp:
    clock = kwargs.pop("clock", None) or FakeClock()
    return core_app(lambda: sandbox_core(reader="sim", clock=clock), **kwargs)


def embedded_app(acting_as: str | None = None, **kwargs: Any) -> OpsConsoleApp:
    """The console as ``opsconsole`` opens it: the embedded server (set OPSCONSOLE_SANDBOX_READER)."""
    from opsconsole.tui import open_api  # noqa: PLC0415

    factory, reopen = open_api(None, acting_as=acting_as)
    return OpsConsoleApp(factory, refresh_s=kwargs.pop("refresh_s", 0), reopen=reopen, **kwargs)


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
    await until(pilot, lambda: app.api is not None, timeout)
    before = app.refreshes
    await until(pilot, lambda: not app._refreshing, timeout)
    if app.refreshes == before:
        app.action_refresh()
        await until(pilot, lambda: app.refreshes > before, timeout)
    await pilot.pause()


def notified(app: OpsConsoleApp, text: str) -> bool:
    return any(text in n.message for n in app._notifications)


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


def sim_without_team_server(tmp_path: Path, monkeypatch: Any) -> None:
    """The environment of an embedded-server test: the sim reader, and no team server configured."""
    monkeypatch.setenv("OPSCONSOLE_SANDBOX_READER", "sim")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("OPSCONSOLE_SERVER", "OPSCONSOLE_TOKEN", "OPSCONSOLE_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
