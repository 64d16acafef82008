"""A DataTable that takes the whole desired content every refresh and redraws only what changed.

Textual reloads a 10,000-row table in about a second, far too slow for a 2 s refresh; updating the cells
that changed costs next to nothing. :meth:`FleetTable.show` therefore diffs the rows it is given against
the rows it shows (cell by cell), adds and removes rows whose keys came or went, and calls
``update_cell`` only for cells whose text differs. It also owns the ``/`` filter (a case-insensitive
substring over the row's text) and sorting by a column (``o`` cycles the column, ``O`` reverses).

Moving the cursor must not re-render rows. Textual's DataTable keys its row cache on the cursor's and the
hover's coordinates, so a cursor move that scrolls the table (``down`` at the last visible row, page
down) re-rendered every visible row: 60–160 ms a key with 5,000 rows. A row the cursor is not on
looks the same wherever the cursor is, so :class:`FleetTable` hands the cache a fixed "elsewhere"
coordinate for those rows: after a scroll only the rows that came into view and the two rows the cursor
left and reached are rendered (``bench/bench_tui.py`` measures it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowKey

from opsconsole.tui.data import Cell, Row


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _renderable(cell: Cell) -> Text:
    # A str cell would be parsed as console markup on every first render (slower, and a "[" in a name
    # would be taken for a tag): the table's cells are plain text.
    return cell if isinstance(cell, Text) else Text(cell)


def _sort_value(cell: Cell) -> tuple[int, float, str]:
    text = _plain(cell).strip()
    number = text.split("/")[0].rstrip("%smx ").replace(",", "")
    try:
        return (0, float(number), text)
    except ValueError:
        return (1, 0.0, text)


#: Where the cursor "is" for a row it is not on (any row index no row has; the header is -1).
_ELSEWHERE = Coordinate(-2, -2)


class FleetTable(DataTable[Cell]):
    """Rows keyed by record key; :meth:`show` applies a new desired state with the fewest redraws."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("o", "sort_next", "Sort"),
        Binding("O", "sort_reverse", "Reverse", show=False),
        Binding("ctrl+home", "scroll_top", "First row", show=False),
        Binding("ctrl+end", "scroll_bottom", "Last row", show=False),
    ]

    def __init__(self, columns: Sequence[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._columns = tuple(columns)
        self._wanted: dict[str, Row] = {}
        self._shown: dict[str, Row] = {}
        self.filter_text = ""
        self.sort_column: int | None = None
        self.sort_reverse = False
        #: Cells redrawn by the last :meth:`show` (the tests and the benchmark read it).
        self.last_updates = 0

    def on_mount(self) -> None:
        self._ensure_columns()

    def _render_line_in_row(
        self,
        row_key: RowKey,
        line_no: int,
        base_style: Style,
        cursor_location: Coordinate,
        hover_location: Coordinate,
    ) -> tuple[list[list[Segment]], list[list[Segment]]]:
        # The cursor is always a row cursor here: a row it is not on renders as if it were elsewhere,
        # which keeps that row's cache entry valid across cursor moves (see the module docstring).
        row = self._row_locations.get(row_key)
        row = -1 if row is None else row
        if cursor_location.row != row:
            cursor_location = _ELSEWHERE
        if hover_location.row != row:
            hover_location = _ELSEWHERE
        return super()._render_line_in_row(row_key, line_no, base_style, cursor_location, hover_location)

    def _ensure_columns(self) -> None:
        # A screen may hand rows over before this widget's own Mount event (tabs mount lazily).
        if not self.columns:
            for key, label in self._columns:
                self.add_column(label, key=key)

    def _matches(self, row: Row) -> bool:
        if not self.filter_text:
            return True
        needle = self.filter_text.lower()
        return any(needle in _plain(cell).lower() for cell in row)

    def show(self, rows: Mapping[str, Row], *, partial: bool = False) -> int:
        """Make the table show ``rows``; with ``partial``, ``rows`` holds only changed rows (others stay).

        Returns the number of cells written.
        """
        self._ensure_columns()
        if partial:
            self._wanted.update(rows)
        else:
            self._wanted = dict(rows)
        updates = 0
        visible = {k: r for k, r in (rows.items() if partial else self._wanted.items()) if self._matches(r)}
        if not partial:
            for key in [k for k in self._shown if k not in visible]:
                self.remove_row(key)
                del self._shown[key]
        else:
            for key in [k for k, r in rows.items() if k in self._shown and not self._matches(r)]:
                self.remove_row(key)
                del self._shown[key]
        resort = False
        keys = [c for c, _ in self._columns]
        for key, row in visible.items():
            before = self._shown.get(key)
            if before is None:
                self.add_row(*map(_renderable, row), key=key)
                updates += len(row)
                resort = True
            elif before != row:
                for index, (old, new) in enumerate(zip(before, row, strict=True)):
                    if old != new:
                        try:
                            self.update_cell(key, keys[index], _renderable(new))
                        except CellDoesNotExist:  # pragma: no cover - removed meanwhile
                            continue
                        updates += 1
                        resort = resort or index == self.sort_column
            self._shown[key] = row
        if resort and self.sort_column is not None:
            self._apply_sort()
        self.last_updates = updates
        return updates

    def set_filter(self, text: str) -> None:
        """Show only the rows containing ``text`` (any column, any case)."""
        self.filter_text = text.strip()
        self.show(self._wanted)

    def _apply_sort(self) -> None:
        if self.sort_column is None:
            return
        self.sort(self._columns[self.sort_column][0], key=_sort_value, reverse=self.sort_reverse)

    def action_sort_next(self) -> None:
        self.sort_column = 0 if self.sort_column is None else (self.sort_column + 1) % len(self._columns)
        self._apply_sort()
        self.notify(f"sorted by {self._columns[self.sort_column][1]}", timeout=1.5)

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        if self.sort_column is None:
            self.sort_column = 0
        self._apply_sort()

    @property
    def selected_key(self) -> str | None:
        """The record key of the row under the cursor."""
        if self.row_count == 0:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except CellDoesNotExist:
            return None
        return row_key.value

    def cell_text(self, key: str, column: str) -> str:
        """The text shown in one cell (for tests)."""
        return _plain(self._shown[key][[c for c, _ in self._columns].index(column)])
