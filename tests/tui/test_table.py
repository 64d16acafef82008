"""The console's own line-drawing table (issue 16, defect 6 and the 80×24 layout): sorting with an
indicator, numbers descending first and as tuples, ``j``/``k`` and the page keys, what a refresh repaints,
and which columns survive a narrow terminal."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult

from opsconsole.tui.data import WORKLOAD_COLUMNS
from opsconsole.tui.widgets.table import FleetTable, sort_key

from .helpers import refreshed, screen_text, sim_app, until

COLUMNS = (("name", "Name"), ("hpa", "HPA min/max"), ("cpu", "CPU"))
ROWS = {
    "a": ("alpha", "2/40", "5%"),
    "b": ("bravo", "2/100", "70%"),
    "c": ("charlie", "10/20", "—"),
    "d": ("delta", "1/5", "9%"),
}


class One(App[None]):
    def __init__(self, columns: Any = COLUMNS) -> None:
        super().__init__()
        self.columns = columns
        self.highlighted: list[str | None] = []

    def compose(self) -> ComposeResult:
        yield FleetTable(self.columns, id="t")

    def on_fleet_table_row_highlighted(self, event: FleetTable.RowHighlighted) -> None:
        self.highlighted.append(event.key)


def test_cells_sort_by_every_number_in_them() -> None:
    assert sort_key("2/40") < sort_key("2/100")
    assert sort_key("9%") < sort_key("70%")
    assert sort_key("1,200") > sort_key("999")
    assert sort_key("—")[0] == 1  # no number: last


async def test_sorting_shows_column_and_direction_numbers_descending_first() -> None:
    app = One()
    async with app.run_test(size=(80, 12)) as pilot:
        table = app.query_one(FleetTable)
        table.show(ROWS)
        table.focus()
        await pilot.pause()
        await pilot.press("o", "o")  # Name, then HPA
        await pilot.pause()
        assert table.sort_column == 1 and table.sort_reverse  # numeric: descending first
        order = [table._order[i] for i in range(table.row_count)]
        assert order == ["c", "b", "a", "d"]  # 10/20, 2/100, 2/40, 1/5
        assert "HPA min/max ▼" in screen_text(app)
        await pilot.press("O")
        await pilot.pause()
        assert table._order == ["d", "a", "b", "c"]  # ascending: 2/40 before 2/100
        assert "HPA min/max ▲" in screen_text(app)
        await pilot.press("o")  # CPU: "—" has no number and goes last both ways
        await pilot.pause()
        assert table._order[-1] == "c" and table._order[0] == "b"
        await pilot.press("O")
        await pilot.pause()
        assert table._order[-1] == "c" and table._order[0] == "a"


async def test_j_k_and_page_keys_move_the_cursor_and_a_refresh_keeps_it_on_its_row() -> None:
    app = One()
    rows = {f"r{i:04}": (f"svc-{i:04}", f"{i}/10", f"{i % 100}%") for i in range(500)}
    async with app.run_test(size=(80, 12)) as pilot:
        table = app.query_one(FleetTable)
        table.show(rows)
        table.focus()
        await pilot.pause()
        await pilot.press("j", "j", "k")
        assert table.selected_key == "r0001"
        await pilot.press("pagedown")
        assert table.cursor_row > 5 and table.scroll_y > 0
        await pilot.press("G")
        assert table.selected_key == "r0499"
        assert "svc-0499" in screen_text(app)
        table.sort_by(2)  # the row moves, the cursor follows it
        await pilot.pause()
        assert table.selected_key == "r0499"
        await pilot.press("g")
        await pilot.pause()
        assert app.highlighted[-1] == table.selected_key == table._order[0]
        changed = dict(rows)
        changed["r0003"] = ("svc-0003", "3/10", "55%")
        assert table.show(changed) == 1  # one cell written


async def test_the_filter_and_a_partial_refresh() -> None:
    app = One()
    async with app.run_test(size=(80, 12)) as pilot:
        table = app.query_one(FleetTable)
        table.show(ROWS)
        table.set_filter("ALP")
        await pilot.pause()
        assert table.row_count == 1 and table.selected_key == "a"
        table.show({"d": ("alpine", "1/5", "9%")}, partial=True)
        await pilot.pause()
        assert sorted(table._order) == ["a", "d"]
        table.set_filter("")
        assert table.row_count == 4


async def test_a_narrow_table_keeps_name_replicas_cpu_p95_and_errors() -> None:
    row = (
        "payments-gateway",
        Text("PROD", style="bold red"),
        "eks-euw1-prod-blue",
        "aws",
        "12/12",
        "4/40",
        "55%",
        "123",
        "0.12%",
    )
    app = One(WORKLOAD_COLUMNS)
    async with app.run_test(size=(80, 10)) as pilot:
        table = app.query_one(FleetTable)
        table.show({"w": row})
        await pilot.pause()
        shown = table.visible_columns()
        assert {"service", "ready", "cpu", "p95", "errors"} <= set(shown)
        assert "cloud" not in shown
        text = screen_text(app)
        assert "55%" in text and "123" in text and "0.12%" in text
    app = One(WORKLOAD_COLUMNS)
    async with app.run_test(size=(200, 10)) as pilot:
        table = app.query_one(FleetTable)
        table.show({"w": row})
        await pilot.pause()
        assert table.visible_columns() == [c.key for c in WORKLOAD_COLUMNS]
        assert "Ready/Desired" in screen_text(app)


async def test_the_region_screen_sorts_with_o_shown_in_the_footer_and_j_moves() -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(160, 48)) as pilot:
        await refreshed(pilot, app)
        app.open_region("eu-west-1")
        await until(pilot, lambda: app.screen.query("#workloads"))
        table = app.screen.query_one("#workloads", FleetTable)
        await until(pilot, lambda: table.row_count > 3)
        footer = screen_text(app)
        assert "o Sort" in footer and "O Reverse" in footer
        first = table.selected_key
        await pilot.press("j")
        assert table.selected_key != first


async def test_a_change_the_console_did_not_see_happen_still_shows() -> None:
    """The view's ChangeSet is relative to the server's previous snapshot: a console polling slower than
    the server refreshes must not rely on it (the local-cloud flow saw 17/17 after a scale to 9)."""
    import dataclasses  # noqa: PLC0415

    from opsconsole.core.fleet.engine import ChangeSet  # noqa: PLC0415
    from opsconsole.testing import replace_record  # noqa: PLC0415

    app = sim_app(acting_as="alice")
    async with app.run_test(size=(160, 48)) as pilot:
        await refreshed(pilot, app)
        app.open_region("eu-west-1")
        await until(pilot, lambda: app.screen.query("#workloads"))
        table = app.screen.query_one("#workloads", FleetTable)
        await until(pilot, lambda: table.row_count > 3)
        assert app.view is not None
        key = "workload/eks-euw1-prod/checkout"
        snapshot = replace_record(app.view.snapshot, key, desired=9, ready=9)
        nothing = ChangeSet(frozenset(), frozenset(), frozenset(), False)
        app.view = dataclasses.replace(app.view, snapshot=snapshot, changes=nothing)
        app.update_screens()
        await pilot.pause()
        assert table.cell_text(key, "ready") == "9/9"
