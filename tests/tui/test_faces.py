"""The console among the other faces: requests filed and decided in Slack or the CLI (another OpsCore on
the same database), the scheduler's overrides and warnings, and a 16-colour terminal."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rich.color import Color as RichColor
from rich.color import ColorSystem
from rich.style import Style
from rich.text import Text
from textual.color import Color
from textual.widgets import Static

from opsconsole.core.change.actions import plan_failover
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.schedule.engine import DOWN, OverrideKind, Scheduler
from opsconsole.testing import FakeClock
from opsconsole.tui.screens.change import ApprovalsScreen
from opsconsole.tui.screens.dialogs import ConfirmScreen
from opsconsole.tui.screens.fleet import OverviewScreen, RegionScreen
from opsconsole.tui.screens.records import SchedulesScreen
from opsconsole.tui.widgets.cards import RegionCard
from opsconsole.tui.widgets.table import FleetTable
from opsconsole.wiring import sandbox_core

from .helpers import harness_of, refreshed, sim_app, until


async def test_requests_filed_and_decided_in_another_face_show_within_one_refresh() -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        # The Slack bot's (or the CLI's) own core: same database, its own bus, its own clock.
        with sandbox_core(reader="sim", clock=FakeClock()) as slack:
            view = slack.refresh()
            plan = plan_failover(view.fleet, view.snapshot, from_region="eu-west-1", to_region="eu-central-1")
            alice = slack.directory.cast_member("alice")
            filed = slack.pipeline.submit(
                plan, alice, face="slack", snapshot=view.snapshot, wait=False
            ).request
            assert filed.status is RequestStatus.REQUESTED and filed.approvals_needed == 2

            await pilot.press("3")
            await until(pilot, lambda: isinstance(app.screen, ApprovalsScreen))
            table = app.screen.query_one("#requests", FleetTable)
            assert filed.id not in table._shown
            await refreshed(pilot, app)  # one refresh: the TUI's bus never heard of it
            assert table.cell_text(filed.id, "status") == "requested"

            await pilot.press("ctrl+p")
            await pilot.pause(0.3)
            await pilot.press(*"as bob", "enter")
            await until(pilot, lambda: app.who is not None and app.who.person == "bob")
            table.move_cursor(row=table.get_row_index(filed.id))
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.click("#confirm")
            await until(pilot, lambda: table.cell_text(filed.id, "votes") == "1/2")
            seen = slack.pipeline.requests.get(filed.id)  # what the bot reads
            assert [(v.person, v.face) for v in seen.votes] == [("bob", "api")]

            carol = slack.directory.cast_member("carol")
            slack.pipeline.reject(filed.id, carol, face="slack", reason="not during the sale")
            assert table.cell_text(filed.id, "status") == "requested"
            await refreshed(pilot, app)
            assert table.cell_text(filed.id, "status") == "rejected"


async def test_schedules_overrides_go_through_the_scheduler_and_a_warning_shows_a_banner() -> None:
    clock = FakeClock()
    app = sim_app(clock=clock, acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        core = harness_of(app).core
        assert core is not None
        scheduler = Scheduler(core)
        unit = next(
            s for s in scheduler.status() if s.region and any(t.state == DOWN for t in s.next_transitions)
        )
        down = next(t.at for t in unit.next_transitions if t.state == DOWN)
        clock.advance((down - clock.now() - timedelta(minutes=10)).total_seconds())  # inside the lead
        key = f"{unit.environment}/{unit.region}"

        await pilot.press("5")
        await until(pilot, lambda: isinstance(app.screen, SchedulesScreen))
        screen = app.screen
        assert isinstance(screen, SchedulesScreen)
        banner = screen.query_one("#schedule-warning", Static)
        await until(pilot, lambda: banner.display)
        assert f"{unit.environment} in {unit.region} shuts down at {down:%H:%M}" in str(banner.render())

        table = screen.query_one("#schedules", FleetTable)

        async def override(key_press: str) -> None:
            table.move_cursor(row=table.get_row_index(key))
            await pilot.press(key_press)
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.click("#confirm")

        await override("k")
        await until(pilot, lambda: any(o.kind is OverrideKind.KEEP_AWAKE for o in scheduler.overrides()))
        held = next(o for o in scheduler.overrides() if o.kind is OverrideKind.KEEP_AWAKE)
        assert (held.environment, held.region, held.created_by, held.face) == (
            unit.environment,
            unit.region,
            "alice",
            "api",
        )
        await until(pilot, lambda: not banner.display)  # kept awake: no shutdown within the lead
        await override("t")
        await until(pilot, lambda: any(o.kind is OverrideKind.SKIP_TONIGHT for o in scheduler.overrides()))

        app.act_as("victor")  # a viewer: refused by the scheduler, said in a notification
        await until(pilot, lambda: app.who is not None and app.who.person == "victor")
        before = len(scheduler.overrides())
        await override("k")
        await until(pilot, lambda: any("viewer" in n.message for n in app._notifications))
        assert len(scheduler.overrides()) == before


STANDARD = {"green": {2, 10}, "yellow": {3, 11}, "red": {1, 9}}


def _sixteen(color: Color | RichColor | None) -> int:
    """The colour a 16-colour terminal shows for ``color`` (Rich's own downgrade, as the driver does)."""
    assert color is not None
    rich = color.rich_color if isinstance(color, Color) else color
    number = rich.downgrade(ColorSystem.STANDARD).number
    assert number is not None
    return number


async def test_health_and_production_colours_survive_sixteen_colours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("textual.constants.COLOR_SYSTEM", "standard")  # TEXTUAL_COLOR_SYSTEM=standard
    app = sim_app()
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.console.color_system == "standard"
        await refreshed(pilot, app)
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen) and app.screen.query(RegionCard))
        card = app.screen.query(RegionCard).first()
        seen = {}
        for health, family in (("ok", "green"), ("degraded", "yellow"), ("down", "red")):
            for other in ("ok", "degraded", "down"):
                card.set_class(other == health, f"-{other}")
            await pilot.pause()
            seen[health] = _sixteen(card.styles.border_top[1])
            assert seen[health] in STANDARD[family], (health, seen[health])
        assert len(set(seen.values())) == 3

        app.open_region("eu-west-1")
        await until(pilot, lambda: isinstance(app.screen, RegionScreen) and app.screen.query("#workloads"))
        table = app.screen.query_one("#workloads", FleetTable)
        await until(pilot, lambda: table.row_count > 0)
        prod = next(k for k in table._shown if table.cell_text(k, "env") == "PROD")
        cell = table.get_cell(prod, "env")
        assert isinstance(cell, Text)
        style = Style.parse(cell.style) if isinstance(cell.style, str) else cell.style
        assert style.bold and _sixteen(style.color) in STANDARD["red"]
