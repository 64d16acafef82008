"""The emergency change freeze in the console, and the console following the server's ``fleet`` events.

- ``:freeze on REASON`` as erin (an admin) asks first, then the banner (who, since, why) is on every
  screen; alice (an operator) is refused with a notification naming the role, and nothing changes;
  ``:freeze off`` lifts it and the banner goes.
- A freeze switched by ``opsconsole freeze on`` in another process (the CLI's own embedded server on the
  same store) shows in the console after a refresh.
- A new view of the server's cache reaches the console through the stream's ``fleet`` event, not the
  poll (the poll is set to an hour).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from opsconsole.core.change.freeze import read_freeze
from opsconsole.tui.app import OpsConsoleApp
from opsconsole.tui.screens.dialogs import CommandLine, ConfirmScreen
from opsconsole.tui.screens.fleet import FindingsScreen
from opsconsole.tui.widgets.freeze import FreezeBanner, freeze_text

from .helpers import embedded_app, harness_of, notified, refreshed, screen_text, sim_app, until

REASON = "INC-42 payments degraded, hands off"
OPSCONSOLE = Path(sys.executable).with_name("opsconsole")


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _isolated_home: Path) -> Path:
    home = _isolated_home  # OPSCONSOLE_HOME (tests/conftest.py)
    monkeypatch.setenv("OPSCONSOLE_SANDBOX_READER", "sim")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("OPSCONSOLE_SERVER", "OPSCONSOLE_TOKEN", "OPSCONSOLE_CA_FILE", "OPSCONSOLE_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    return home


def banner(app: OpsConsoleApp) -> FreezeBanner:
    return app.screen.query_one(FreezeBanner)


async def colon(pilot: Any, app: OpsConsoleApp, line: str) -> None:
    """Type ``line`` on the ``:`` command line and run it."""
    await pilot.press("colon")
    await until(pilot, lambda: isinstance(app.screen, CommandLine))
    from textual.widgets import Input  # noqa: PLC0415

    app.screen.query_one(Input).value = line
    await pilot.press("enter")


async def confirm(pilot: Any, app: OpsConsoleApp) -> None:
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
    await pilot.click("#confirm")


def test_the_banner_says_who_since_and_why_and_nothing_while_off() -> None:
    assert freeze_text({"on": False, "reason": None, "by": None, "since": None}) == ""
    assert freeze_text(None) == ""
    text = freeze_text({"on": True, "reason": "INC-1", "by": "erin", "since": "2026-12-06T13:05:00+00:00"})
    assert "EMERGENCY FREEZE ON" in text and "2026-12-06 13:05 UTC" in text
    assert "erin" in text and "INC-1" in text


async def test_an_admin_freezes_an_operator_is_refused_and_off_clears_it() -> None:
    app = sim_app(acting_as="erin")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        core = harness_of(app).core
        assert core is not None
        assert not banner(app).display and "FREEZE" not in screen_text(app)

        await colon(pilot, app, f"freeze on {REASON}")
        await confirm(pilot, app)
        await until(pilot, lambda: banner(app).display)
        text = screen_text(app)
        assert "EMERGENCY FREEZE ON" in text and "by erin" in text and REASON in text
        frozen = read_freeze(core.database)
        assert frozen is not None and (frozen.by, frozen.reason) == ("erin", REASON)

        await pilot.press("2")  # every screen shows it
        await until(pilot, lambda: isinstance(app.screen, FindingsScreen))
        await until(pilot, lambda: banner(app).display and "EMERGENCY FREEZE ON" in screen_text(app))

        app.act_as("alice")  # an operator: the server refuses, the console says which role it takes
        await until(pilot, lambda: app.who is not None and app.who.person == "alice")
        await colon(pilot, app, "freeze off")
        await confirm(pilot, app)
        await until(pilot, lambda: notified(app, "emergency change freeze needs an admin role"))
        assert app.is_running and banner(app).display
        assert read_freeze(core.database) is not None

        app.act_as("erin")
        await until(pilot, lambda: app.who is not None and app.who.person == "erin")
        await colon(pilot, app, "freeze off")
        await confirm(pilot, app)
        await until(pilot, lambda: not banner(app).display)
        assert "FREEZE" not in screen_text(app)
        assert read_freeze(core.database) is None
        await pilot.press("escape")  # the overview's banner went too
        await until(pilot, lambda: not banner(app).display)


async def test_a_freeze_without_a_reason_or_an_unknown_word_is_a_warning() -> None:
    app = sim_app(acting_as="erin")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        await colon(pilot, app, "freeze on")
        await until(pilot, lambda: notified(app, "say why"))
        await colon(pilot, app, "freeze sideways")
        await until(pilot, lambda: notified(app, "not a freeze command"))
        assert not isinstance(app.screen, ConfirmScreen) and not banner(app).display


@pytest.mark.slow
async def test_a_freeze_switched_by_the_cli_in_another_process_shows_after_a_refresh(_home: Path) -> None:
    app = embedded_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app, timeout=60)
        assert app.freeze is not None and not app.freeze["on"] and not banner(app).display

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(OPSCONSOLE), "--as", "erin", "freeze", *args], capture_output=True,
                                  text=True, timeout=120, env=dict(os.environ), check=False)

        done = await asyncio.get_running_loop().run_in_executor(None, cli, "on", "--reason", "from the CLI")
        assert done.returncode == 0, done.stderr
        await refreshed(pilot, app, timeout=60)
        await until(pilot, lambda: banner(app).display)
        assert "from the CLI" in screen_text(app) and "by erin" in screen_text(app)


@pytest.mark.slow
async def test_a_new_view_of_the_server_reaches_the_screen_by_the_stream_not_the_poll() -> None:
    app = embedded_app(acting_as="alice", refresh_s=3600)  # the poll would come in an hour
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.refreshes >= 1, timeout=60)
        assert app.view is not None
        first_taken = app.view.snapshot.taken_at
        refreshes = app.refreshes
        # The embedded server's cache refreshes every 2 s and publishes a `fleet` event per new view.
        await until(pilot, lambda: app.refreshes > refreshes and app.view is not None
                    and app.view.snapshot.taken_at > first_taken, timeout=60)
        assert app._refresh_seq <= refreshes + 3  # debounced: no refresh per event burst, no storm


async def test_the_palette_switches_it_too() -> None:
    app = sim_app(acting_as="erin")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"freeze on drill", "enter")
        await confirm(pilot, app)
        await until(pilot, lambda: banner(app).display and "by erin: drill" in screen_text(app))
