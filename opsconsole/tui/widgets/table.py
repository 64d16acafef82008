"""A table that draws its own lines (Textual's line API), for tables of 10,000 rows refreshed every 2 s.

Why not Textual's ``DataTable``: its row cache is keyed on the cursor and hover coordinates, ``sort`` and
``update_cell`` rebuild bookkeeping for every row, and a page-down re-rendered every visible row: 84 ms a
key and 110 ms a refresh at 5,000 rows (``bench/bench_tui.py`` keeps it as the baseline). This widget
keeps the rows as plain tuples in a dict, the visible order as a list of keys, and one rendered
:class:`~textual.strip.Strip` per (row, look) in a cache; :meth:`render_line` is called only for the lines
on screen. A refresh diffs the rows (tuple equality), drops the cache entries of changed rows, re-sorts
only when a sorted cell changed, and repaints; a key press repaints the two rows the cursor left and
reached, or the visible lines after a scroll (each from the cache when it can).

How to use it: ``table.show(rows)`` with ``{key: (cell, ...)}`` every refresh (``partial=True`` with only
the changed rows); ``selected_key`` is the row under the cursor; :class:`FleetTable.RowHighlighted` and
:class:`FleetTable.RowSelected` (Enter) are posted with the row's key. Columns are ``(key, label)`` pairs
or :class:`Column` with a short label and a drop priority, so that a narrow terminal (80×24) keeps the
columns that matter: short labels first, then columns are dropped by priority, then the widest are cut
with an ellipsis.

Sorting: ``o`` cycles the column, ``O`` reverses; the header shows the column and the direction (▼/▲).
A numeric column is sorted descending first (the biggest numbers are what you look for); a cell is sorted
by every number in it as a tuple, so ``2/100`` comes after ``2/40``; cells without a number (``—``) go last
in either direction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from opsconsole.tui.data import Cell, Column, Row

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
#: A sort key: (has no number, numbers, text) — rows without a number sort last both ways.
SortKey = tuple[int, tuple[float, ...], str]


def as_column(spec: Column | tuple[str, str]) -> Column:
    return spec if isinstance(spec, Column) else Column(spec[0], spec[1], flex=True)


def plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def sort_key(cell: Cell) -> SortKey:
    """Every number in the cell as a tuple (``2/100`` → (2, 100)); thousands separators are ignored."""
    text = plain(cell).strip()
    numbers = tuple(float(n) for n in _NUMBER.findall(text.replace(",", "")))
    return (0 if numbers else 1, numbers, text.lower())


def _fit(text: str, width: int) -> str:
    if len(text) <= width:
        return text + " " * (width - len(text))
    return text[: max(0, width - 1)] + "…" if width > 0 else ""


class FleetTable(ScrollView, can_focus=True):
    """Rows keyed by record key; :meth:`show` applies a new desired state and repaints only what changed."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("k", "vim(-1)", "Up", show=False),
        Binding("j", "vim(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "edge(-1)", "First row", show=False),
        Binding("end,G", "edge(1)", "Last row", show=False),
        Binding("ctrl+home", "edge(-1)", "First row", show=False),
        Binding("ctrl+end", "edge(1)", "Last row", show=False),
        Binding("enter", "select", "Select", show=False),
        Binding("o", "sort_next", "Sort"),
        Binding("O", "sort_reverse", "Reverse sort"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "fleet-table--header",
        "fleet-table--cursor",
        "fleet-table--even-row",
    }

    DEFAULT_CSS = """
    FleetTable {
        background: $surface;
        color: $foreground;
        height: 1fr;
        overflow-x: hidden;
        &:focus {
            background-tint: $foreground 5%;
            & > .fleet-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
        & > .fleet-table--header { text-style: bold; background: $panel; color: $foreground; }
        &:ansi > .fleet-table--header { background: ansi_bright_blue; color: ansi_default; }
        & > .fleet-table--even-row { background: $surface-lighten-1 50%; }
        &:dark > .fleet-table--even-row { background: $surface-darken-1 40%; }
        & > .fleet-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """

    class RowHighlighted(Message):
        """The cursor reached another row (``key`` is its record key)."""

        def __init__(self, table: FleetTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> FleetTable:
            return self.table

    class RowSelected(Message):
        """Enter (or a click on the selected row) on a row."""

        def __init__(self, table: FleetTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> FleetTable:
            return self.table

    def __init__(
        self, columns: Sequence[Column | tuple[str, str]], *, vim_keys: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        #: ``j`` / ``k`` move the cursor; off where the screen gives them another meaning (it then gets them).
        self.vim_keys = vim_keys
        self.columns: tuple[Column, ...] = tuple(as_column(c) for c in columns)
        self._wanted: dict[str, Row] = {}
        #: The rows shown (filtered), by key; ``_order`` is their order on screen.
        self._shown: dict[str, Row] = {}
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self._sort_keys: dict[str, SortKey] = {}
        self._widths = [0 for _ in self.columns]
        self._layout: list[tuple[int, int, str]] = []  # (column index, width, header label)
        self._layout_for: tuple[int, tuple[int, ...]] | None = None
        self._cache: dict[tuple[str, int], Strip] = {}
        self._looks: tuple[Style, Style, Style, Style] | None = None
        self.cursor_row = 0
        self._highlighted: str | None = None
        self.filter_text = ""
        self.sort_column: int | None = None
        self.sort_reverse = False
        #: Cells written by the last :meth:`show` (the tests and the benchmark read it).
        self.last_updates = 0

    # -- data ------------------------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def selected_key(self) -> str | None:
        """The record key of the row under the cursor."""
        if not self._order:
            return None
        return self._order[min(self.cursor_row, len(self._order) - 1)]

    def _matches(self, row: Row) -> bool:
        if not self.filter_text:
            return True
        needle = self.filter_text.lower()
        return any(needle in plain(cell).lower() for cell in row)

    def _grow_widths(self, rows: Iterable[Row]) -> None:
        widths = self._widths
        for row in rows:
            for i, cell in enumerate(row):
                n = len(cell.plain) if isinstance(cell, Text) else len(cell)
                widths[i] = max(widths[i], n)

    def show(self, rows: Mapping[str, Row], *, partial: bool = False) -> int:
        """Make the table show ``rows``; with ``partial``, ``rows`` holds only changed rows (others stay).

        Returns the number of cells written (changed or added)."""
        if partial:
            self._wanted.update(rows)
            source: Mapping[str, Row] = rows
        else:
            self._wanted = dict(rows)
            source = self._wanted
        shown = self._shown
        updates = 0
        reorder = False
        sorted_col = self.sort_column
        changed: list[Row] = []
        if not partial:
            gone = [k for k in shown if k not in source]
            for key in gone:
                del shown[key]
                self._drop_cache(key)
            reorder = bool(gone)
        filtering = bool(self.filter_text)
        for key, row in source.items():
            before = shown.get(key)
            if before is not None and before == row:
                continue
            if filtering and not self._matches(row):
                if before is not None:
                    del shown[key]
                    self._drop_cache(key)
                    reorder = True
                continue
            shown[key] = row
            changed.append(row)
            if before is None:
                updates += len(row)
                reorder = True
            else:
                updates += sum(1 for old, new in zip(before, row, strict=False) if old != new)
                self._drop_cache(key)
                if sorted_col is not None and before[sorted_col] != row[sorted_col]:
                    reorder = True
            if sorted_col is not None:
                self._sort_keys[key] = sort_key(row[sorted_col])
        if changed:
            self._grow_widths(changed)
        if reorder:
            self._reorder()
        elif changed:
            self.refresh()
        self.last_updates = updates
        return updates

    def _drop_cache(self, key: str) -> None:
        for variant in range(4):
            self._cache.pop((key, variant), None)

    def _reorder(self) -> None:
        keep = self.selected_key
        # Unsorted, the rows keep the order they were given in (the newest job first, as the server
        # lists them): a row that appears goes where it was given, not at the bottom.
        shown = self._shown
        order = [k for k in self._wanted if k in shown]
        if len(order) != len(shown):  # pragma: no cover - a shown row is always a wanted one
            order += [k for k in shown if k not in self._wanted]
        if self.sort_column is not None:
            keys = self._sort_keys
            col = self.sort_column
            for k in order:
                if k not in keys:
                    keys[k] = sort_key(self._shown[k][col])
            with_number = [k for k in order if keys[k][0] == 0]
            without = [k for k in order if keys[k][0] != 0]
            with_number.sort(key=keys.__getitem__, reverse=self.sort_reverse)
            without.sort(key=keys.__getitem__)
            order = with_number + without
        self._order = order
        self._index = {k: i for i, k in enumerate(order)}
        self._cache.clear()  # zebra stripes follow the position
        if keep is not None and keep in self._index:
            self.cursor_row = self._index[keep]
        self.cursor_row = max(0, min(self.cursor_row, len(order) - 1))
        self.virtual_size = Size(self.size.width, len(order) + 1)
        self.refresh()
        self._highlight()

    def set_filter(self, text: str) -> None:
        """Show only the rows containing ``text`` (any column, any case)."""
        self.filter_text = text.strip()
        self._shown = {k: r for k, r in self._wanted.items() if self._matches(r)}
        self._reorder()

    def get_row_index(self, key: str) -> int:
        return self._index[key]

    def move_cursor(self, *, row: int) -> None:
        self._set_cursor(row)

    def get_cell(self, key: str, column: str) -> Cell:
        """One cell as given to :meth:`show`."""
        return self._shown[key][[c.key for c in self.columns].index(column)]

    def cell_text(self, key: str, column: str) -> str:
        """The text of one cell (for tests)."""
        return plain(self._shown[key][[c.key for c in self.columns].index(column)])

    def visible_columns(self) -> list[str]:
        """The keys of the columns on screen at the current width (for tests)."""
        self._ensure_layout()
        return [self.columns[i].key for i, _, _ in self._layout]

    # -- cursor ------------------------------------------------------------------------------------------

    def _highlight(self) -> None:
        key = self.selected_key
        if key != self._highlighted:
            self._highlighted = key
            self.post_message(self.RowHighlighted(self, key))

    def _refresh_row(self, index: int) -> None:
        y = index + 1 - round(self.scroll_y)
        if 1 <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))

    def _set_cursor(self, row: int) -> None:
        if not self._order:
            return
        row = max(0, min(row, len(self._order) - 1))
        old = self.cursor_row
        self.cursor_row = row
        body = max(1, self.size.height - 1)
        top = round(self.scroll_y)
        if row < top:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif row >= top + body:
            self.scroll_to(y=row - body + 1, animate=False, immediate=True)
        if old != row:
            self._refresh_row(old)
            self._refresh_row(row)
        self._highlight()

    def action_cursor(self, step: int) -> None:
        self._set_cursor(self.cursor_row + step)

    def action_vim(self, step: int) -> None:
        self._set_cursor(self.cursor_row + step)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # False passes the key on to the screen (``k`` is "keep awake" on the schedules).
        return self.vim_keys if action == "vim" else True

    def action_page(self, direction: int) -> None:
        page = max(1, self.size.height - 2)
        self._set_cursor(self.cursor_row + direction * page)

    def action_edge(self, direction: int) -> None:
        self._set_cursor(0 if direction < 0 else len(self._order) - 1)

    def action_select(self) -> None:
        key = self.selected_key
        if key is not None:
            self.post_message(self.RowSelected(self, key))

    def action_scroll_top(self) -> None:  # the names DataTable had
        self.action_edge(-1)

    def action_scroll_bottom(self) -> None:
        self.action_edge(1)

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            return
        row = round(self.scroll_y) + event.y - 1
        if row < len(self._order):
            if row == self.cursor_row and event.chain >= 2:
                self.action_select()
            self._set_cursor(row)

    # -- sorting -----------------------------------------------------------------------------------------

    def _numeric(self, column: int) -> bool:
        for row in self._shown.values():
            key = sort_key(row[column])
            if key[0] == 0:
                return True
        return False

    def sort_by(self, column: int, reverse: bool | None = None) -> None:
        """Sort by ``column``; without ``reverse``, numbers descending first, text ascending."""
        self.sort_column = column
        self.sort_reverse = self._numeric(column) if reverse is None else reverse
        self._sort_keys = {k: sort_key(r[column]) for k, r in self._shown.items()}
        self._layout_for = None
        self._reorder()

    def action_sort_next(self) -> None:
        column = 0 if self.sort_column is None else (self.sort_column + 1) % len(self.columns)
        self.sort_by(column)
        direction = "descending" if self.sort_reverse else "ascending"
        self.notify(f"sorted by {self.columns[column].label}, {direction} (O reverses)", timeout=1.5)

    def action_sort_reverse(self) -> None:
        if self.sort_column is None:
            self.sort_by(0)
        self.sort_by(self.sort_column or 0, not self.sort_reverse)

    # -- layout and drawing ------------------------------------------------------------------------------

    def on_resize(self) -> None:
        self._layout_for = None
        self._cache.clear()
        self.virtual_size = Size(self.size.width, len(self._order) + 1)

    def _ensure_layout(self) -> None:
        width = self.scrollable_content_region.width or self.size.width
        signature = (width, tuple(self._widths))
        if self._layout_for == signature:
            return
        self._layout_for = signature
        self._cache.clear()
        self._layout = self.compute_layout(width)

    def compute_layout(self, width: int) -> list[tuple[int, int, str]]:
        """Which columns fit in ``width``, how wide, with which header (see the module docstring)."""
        cols = self.columns

        def label(i: int, short: bool) -> str:
            shorter = cols[i].short
            text = shorter if short and shorter is not None else cols[i].label
            if self.sort_column == i:
                text += " ▼" if self.sort_reverse else " ▲"
            return text

        def natural(i: int, short: bool) -> int:
            return min(cols[i].max_width, max(self._widths[i], len(label(i, short))))

        def total(shown: list[int], short: bool) -> int:
            return sum(natural(i, short) + 2 for i in shown)

        shown = list(range(len(cols)))
        short = False
        if total(shown, short) > width:
            short = True
        droppable = sorted((i for i in shown if cols[i].drop > 0), key=lambda i: (-cols[i].drop, -i))
        while total(shown, short) > width and droppable:
            victim = droppable.pop(0)
            if victim != self.sort_column:
                shown.remove(victim)
        widths = {i: natural(i, short) for i in shown}
        over = sum(w + 2 for w in widths.values()) - width
        flex = [i for i in shown if cols[i].flex] or shown
        while over > 0:
            widest = max(flex, key=lambda i: widths[i])
            if widths[widest] <= 6:
                break
            widths[widest] -= 1
            over -= 1
        return [(i, widths[i], label(i, short)) for i in shown]

    def notify_style_update(self) -> None:
        # Focus, theme or CSS changed: the looks of the rows drawn so far are stale.
        super().notify_style_update()
        self._looks = None
        self._cache.clear()

    def _styles(self) -> tuple[Style, Style, Style, Style]:
        # Computed once per style change, not once per line drawn.
        if self._looks is None:
            base = self.rich_style
            self._looks = (
                base + self.get_component_rich_style("fleet-table--header"),
                base,
                base + self.get_component_rich_style("fleet-table--even-row"),
                base + self.get_component_rich_style("fleet-table--cursor"),
            )
        return self._looks

    def _row_strip(self, row: Row, row_style: Style, width: int, cursor: bool) -> Strip:
        segments: list[Segment] = []
        used = 0
        for index, cell_width, _ in self._layout:
            cell = row[index]
            if isinstance(cell, Text):
                text = _fit(cell.plain, cell_width)
                style = row_style
                if not cursor and cell.style:
                    style = row_style + (
                        cell.style if isinstance(cell.style, Style) else Style.parse(cell.style)
                    )
                segments.append(Segment(" " + text + " ", style))
            else:
                segments.append(Segment(" " + _fit(cell, cell_width) + " ", row_style))
            used += cell_width + 2
        if used < width:
            segments.append(Segment(" " * (width - used), row_style))
        return Strip(segments).crop(0, width)

    def render_line(self, y: int) -> Strip:
        self._ensure_layout()
        width = self.size.width
        header, odd, even, cursor = self._styles()
        if y == 0:
            segments = []
            used = 0
            for _, cell_width, title in self._layout:
                segments.append(Segment(" " + _fit(title, cell_width) + " ", header))
                used += cell_width + 2
            if used < width:
                segments.append(Segment(" " * (width - used), header))
            return Strip(segments).crop(0, width)
        index = round(self.scroll_y) + y - 1
        if index >= len(self._order):
            return Strip.blank(width, odd)
        key = self._order[index]
        is_cursor = index == self.cursor_row
        variant = 2 + int(self.has_focus) if is_cursor else index % 2
        cached = self._cache.get((key, variant))
        if cached is not None and cached.cell_length == width:
            return cached
        style = cursor if is_cursor else (even if index % 2 else odd)
        strip = self._row_strip(self._shown[key], style, width, is_cursor)
        if len(self._cache) > 4000:
            self._cache.clear()
        self._cache[(key, variant)] = strip
        return strip

    def on_focus(self) -> None:
        self._refresh_row(self.cursor_row)

    def on_blur(self) -> None:
        self._refresh_row(self.cursor_row)
