"""Pilot tests of every screen on the sim reader: fast, deterministic, no playbooks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grimp
import pytest
from textual.binding import Binding

from opsconsole.core.errors import SourceError
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.engine import SourceReading
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import FleetRecord
from opsconsole.testing import FakeClock, healthy_records, replace_record
from opsconsole.tui.app import OpsConsoleApp
from opsconsole.tui.commands import SCREENS as PALETTE_SCREENS
from opsconsole.tui.commands import parse_command
from opsconsole.tui.data import spark_cells as spark_text
from opsconsole.tui.screens.change import ActionScreen, ApprovalsScreen, JobsScreen
from opsconsole.tui.screens.dialogs import ConfirmScreen, HelpScreen
from opsconsole.tui.screens.fleet import FindingsScreen, OverviewScreen, RegionScreen
from opsconsole.tui.screens.records import AuditScreen, SchedulesScreen
from opsconsole.tui.widgets.table import FleetTable

from .helpers import REPO, core_app, refreshed, screen_text, sim_app, until


class StaticSource:
    def __init__(self, name: str, records: list[FleetRecord]) -> None:
        self.name = name
        self.records = records

    def read(self) -> SourceReading:
        return SourceReading(tuple(self.records))


class BrokenSource:
    name = "aws"

    def read(self) -> SourceReading:
        raise SourceError("connection refused", title="aws unreachable")


def static_app(records: list[FleetRecord], *extra: object, **kwargs: object) -> OpsConsoleApp:
    fleet = load_inventory(REPO / "inventory")

    @contextmanager
    def factory() -> Iterator[OpsCore]:
        with OpsCore(fleet, [StaticSource("test", records), *extra], clock=FakeClock(), sandbox=True) as core:  # type: ignore[list-item]
            yield core

    return core_app(factory, **kwargs)  # type: ignore[arg-type]


async def test_overview_shows_every_region_the_totals_and_the_sources() -> None:
    app = sim_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        await pilot.pause(0.2)
        text = screen_text(app)
        assert isinstance(app.screen, OverviewScreen)
        for region in ("us-east-1", "eu-west-1", "ap-south-1"):
            assert region in text
        assert "p95" in text and "/200ms" in text and "rps" in text
        assert "sim" in text  # the freshness badge of the one source


async def test_select_a_region_drill_down_and_filter() -> None:
    app = sim_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        await pilot.pause(0.2)
        await pilot.press("right", "right", "right", "right")  # the fifth card: eu-west-1
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RegionScreen))
        screen = app.screen
        assert isinstance(screen, RegionScreen) and screen.region_id == "eu-west-1"
        table = screen.query_one("#workloads", FleetTable)
        await until(pilot, lambda: table.row_count > 10)
        await pilot.press("slash", *"checkout", "enter")
        assert table.row_count >= 1
        assert all(table.cell_text(key, "service") == "checkout" for key in table._shown)
        await until(
            pilot, lambda: "pods checkout" in screen_text(app)
        )  # the cross-layer path of the selected row
        await pilot.press("o")  # sort by the first column: still the same rows
        for tab in ("tab-nodes", "tab-databases", "tab-caches", "tab-traffic", "tab-chart"):
            screen.query_one("#tabs").active = tab  # type: ignore[attr-defined]
            await pilot.pause()
        assert "p95 latency, last hour" in screen_text(app)
        assert "filter 'checkout'" in screen_text(app)  # the applied filter stays in view
        await pilot.press("escape")  # escape first clears the filter...
        assert table.filter_text == "" and table.row_count > 10
        await pilot.press("escape")  # ...then goes back
        assert isinstance(app.screen, OverviewScreen)


async def test_only_changed_cells_are_redrawn() -> None:
    clock = FakeClock()
    app = sim_app(clock=clock)
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RegionScreen))
        table = app.screen.query_one("#workloads", FleetTable)
        await until(pilot, lambda: table.row_count > 10)
        app.action_refresh()
        await until(pilot, lambda: app.refreshes >= 2)
        await pilot.pause()
        assert table.last_updates == 0  # nothing moved on a frozen clock: nothing redrawn


async def test_findings_enter_opens_the_suggested_action_filled_in() -> None:
    fleet = load_inventory(REPO / "inventory")
    records = healthy_records(fleet)
    key = "workload/eks-euw1-prod/checkout"
    records = replace_record(records, key, cpu_utilisation=0.99, desired=60, ready=60, hpa_max=60)
    app = static_app(records)
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        assert app.view is not None and app.view.findings
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, FindingsScreen))
        table = app.screen.query_one("#findings", FleetTable)
        scale_ids = [
            f.id for f in app.view.findings if f.suggested_action and f.suggested_action.action == "scale"
        ]
        assert scale_ids
        table.move_cursor(row=table.get_row_index(scale_ids[0]))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ActionScreen))
        form = app.screen
        assert isinstance(form, ActionScreen)
        assert form.values()["service"] == "checkout" and form.values()["cluster"] == "eks-euw1-prod"


async def test_a_failed_source_shows_its_badge_and_a_notification_not_a_crash() -> None:
    fleet = load_inventory(REPO / "inventory")
    app = static_app(healthy_records(fleet), BrokenSource())
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        await pilot.pause(0.2)
        text = screen_text(app)
        assert "aws FAILED" in text
        assert any("aws" in n.message for n in app._notifications)


async def test_read_only_hides_and_refuses_every_action() -> None:
    app = sim_app(read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        await pilot.press("f")  # failover from the overview: hidden and refused
        await pilot.pause()
        assert not isinstance(app.screen, ActionScreen)
        app.open_action("scale", {"service": "checkout"})
        await pilot.pause()
        assert not isinstance(app.screen, ActionScreen)
        assert any("read-only" in n.message for n in app._notifications)
        assert "READ-ONLY" in app.sub_title
        footer = screen_text(app).splitlines()[-1]
        assert "Failover" not in footer


async def test_a_server_that_only_reads_hides_and_refuses_every_action() -> None:
    app = sim_app(acting_as="alice", may_change=False)  # `--live` without a team server
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        assert "READ-ONLY" in app.sub_title and "alice" in app.sub_title
        await pilot.press("f")
        await pilot.pause()
        assert not isinstance(app.screen, ActionScreen)
        app.open_action("failback", {"region": "eu-west-1"})
        await pilot.pause()
        assert not isinstance(app.screen, ActionScreen)
        assert any("only reads" in n.message for n in app._notifications)
        assert "Failover" not in screen_text(app).splitlines()[-1]


async def test_scale_form_validates_and_shows_preview_and_risk() -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        app.open_action(
            "scale",
            {
                "service": "checkout",
                "region": "eu-west-1",
                "environment": "prod",
                "cluster": "eks-euw1-prod",
                "replicas": "abc",
            },
        )
        await until(pilot, lambda: isinstance(app.screen, ActionScreen))
        form = app.screen
        assert isinstance(form, ActionScreen)
        await until(pilot, lambda: "expected a whole number" in screen_text(app))
        form.query_one("#f-replicas").value = "100000"  # type: ignore[attr-defined]
        await until(pilot, lambda: "✗" in screen_text(app) and not form._in_flight)  # the server refuses it
        assert form.assessment is None
        form.query_one("#f-replicas").value = "4"  # type: ignore[attr-defined]
        await until(pilot, lambda: form.assessment is not None)
        # The preview and the reasons are laid out a frame after the risk line: wait for them too.
        await until(pilot, lambda: "approval" in screen_text(app) and "→ 4" in screen_text(app))
        text = screen_text(app)
        assert "PRODUCTION CHANGE" in text and "→ 4" in text  # a large prod scale-down needs one
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert app.screen.focused is not None and app.screen.focused.id == "cancel"  # Cancel is the default
        await pilot.press("enter")  # Enter on Cancel: nothing is filed
        await pilot.pause()
        assert isinstance(app.screen, ActionScreen) and form.submission is None
        assert "needs 1 approval before it runs" in text  # not "1 approval(s)"


async def test_palette_commands_parse_and_open_the_form() -> None:
    assert parse_command("scale checkout in eu-west-1 to 12").params == {  # type: ignore[union-attr]
        "service": "checkout",
        "region": "eu-west-1",
        "replicas": 12,
    }
    assert parse_command("failover eu-west-1 to eu-central-1").params == {  # type: ignore[union-attr]
        "region": "eu-west-1",
        "to": "eu-central-1",
    }
    assert parse_command("stop staging in eu-west-1").params["state"] == "stopped"  # type: ignore[union-attr]
    assert parse_command("reject abc too big").params["reason"] == "too big"  # type: ignore[union-attr]
    assert parse_command("make coffee") is None
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"failover eu-west-1 to eu-central-1")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ActionScreen))
        form = app.screen
        assert isinstance(form, ActionScreen) and form.values() == {
            "region": "eu-west-1",
            "to": "eu-central-1",
        }


@pytest.mark.parametrize(
    "key,screen",
    [
        ("2", FindingsScreen),
        ("3", ApprovalsScreen),
        ("4", JobsScreen),
        ("5", SchedulesScreen),
        ("6", AuditScreen),
    ],
)
async def test_every_screen_opens_and_escape_goes_back(key: str, screen: type) -> None:
    app = sim_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, app)
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        await pilot.press(key)
        await until(pilot, lambda: isinstance(app.screen, screen))
        await pilot.pause(0.3)
        if screen is AuditScreen:
            await until(pilot, lambda: "chain verified" in screen_text(app))
        if screen is SchedulesScreen:
            await until(pilot, lambda: "staging" in screen_text(app))
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))


def test_tui_imports_no_bot_and_no_cloud_sdk() -> None:
    forbidden = (
        "import bot",
        "from bot",
        "boto3",
        "botocore",
        "google.cloud",
        "azure",
        "kubernetes",
        "slack",
    )
    for path in (REPO / "opsconsole" / "tui").rglob("*.py"):
        text = Path(path).read_text(encoding="utf-8")
        for line in text.splitlines():
            if line.lstrip().startswith(("import ", "from ")):
                assert not any(f in line for f in forbidden), f"{path}: {line}"


def test_only_the_entry_point_imports_the_app() -> None:
    """Screens and the palette see the app as a ``ConsoleHost`` (opsconsole/tui/host.py): importing the
    app back from them is the import cycle this keeps out."""
    graph = grimp.build_graph("opsconsole")
    importers = graph.find_modules_that_directly_import("opsconsole.tui.app")
    assert {m for m in importers if m.startswith("opsconsole.tui")} == {"opsconsole.tui"}


def test_the_keys_and_the_palette_name_the_screens_the_app_opens() -> None:
    named = {"overview", *OpsConsoleApp.NAMED_SCREENS}
    keys = {
        b.action.removeprefix("go('").removesuffix("')")
        for b in OpsConsoleApp.BINDINGS
        if isinstance(b, Binding) and b.action.startswith("go(")
    }
    assert keys == named == {name for name, _ in PALETTE_SCREENS}
    for name, screen in OpsConsoleApp.NAMED_SCREENS.items():
        assert getattr(screen, "screen_name", None) == name


async def test_a_named_screen_opens_anew_on_the_one_stack() -> None:
    app = sim_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, FindingsScreen))
        first = app.screen
        await pilot.press("2")  # already there: nothing happens
        await pilot.press("3")
        await until(pilot, lambda: isinstance(app.screen, ApprovalsScreen))
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, FindingsScreen))
        assert app.screen is not first  # a new screen, not the one below
        assert [type(s) for s in app.screen_stack[1:]] == [
            OverviewScreen,
            FindingsScreen,
            ApprovalsScreen,
            FindingsScreen,
        ]
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ApprovalsScreen))
        await pilot.press("1")
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        assert len(app.screen_stack) == 2


def test_the_card_sparkline_is_scaled_to_the_target_not_to_its_own_range() -> None:
    flat = spark_text([124.0, 125.0, 124.0, 125.0], 200.0)
    assert len(set(flat.plain)) == 1, flat.plain  # 1 ms of noise is not a cliff
    climb = spark_text([20.0, 100.0, 190.0, 260.0], 200.0)
    assert climb.plain == "▂▅██"
    assert [span.style for span in climb.spans][-2:] == ["yellow", "red"]
