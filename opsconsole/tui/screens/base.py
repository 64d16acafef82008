"""What every screen of the console shares: Escape goes back, ``/`` filters the table in focus, a
``show_data`` hook the app calls after each refresh (screens redraw from the app's data), and
:meth:`ConsoleScreen.ask`, the one way a screen calls the ops server: the call runs on a worker thread,
and its answer is dropped if the screen was closed before it came back."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, TypeVar, cast

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Header, Input, Static

from opsconsole.tui.widgets.footer import ConsoleFooter
from opsconsole.tui.widgets.freeze import FreezeBanner
from opsconsole.tui.widgets.table import FleetTable

if TYPE_CHECKING:
    from opsconsole.core.api import OpsApi, StreamEvent
    from opsconsole.tui.host import ConsoleHost

T = TypeVar("T")


class ConsoleScreen(Screen[None]):
    screen_name: ClassVar[str] = ""
    #: This screen's part of the breadcrumbs in the header ("fleet › eu-west-1 › nodes").
    crumb: str = ""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("slash", "filter", "Filter"),
    ]

    @property
    def console(self) -> ConsoleHost:
        """The app, as screens may use it (:class:`~opsconsole.tui.host.ConsoleHost`)."""
        return cast("ConsoleHost", self.app)

    def compose_header(self) -> ComposeResult:
        yield Header()
        yield FreezeBanner()  # the emergency freeze, while it is on (takes no room while it is off)

    def compose_footer(self) -> ComposeResult:
        yield Input(
            placeholder="filter: type to narrow the table, Enter or Escape to close",
            id="filter",
            classes="filter",
        )
        yield Static("", id="filter-status", classes="filter-status")
        yield ConsoleFooter()

    def update_crumbs(self) -> None:
        """The header's title: where this screen is, from the overview down ("opsconsole › fleet › …").

        Set after the next refresh: the Header reads the title into a child it has not mounted yet."""
        self.call_after_refresh(self._set_crumbs)

    def _set_crumbs(self, tries: int = 20) -> None:
        if not self.is_attached:
            return
        if not self.query("HeaderTitle"):  # the Header has not composed yet: setting now would raise
            if tries > 0:
                self.set_timer(0.05, lambda: self._set_crumbs(tries - 1))
            return
        parts = ["opsconsole"]
        for screen in self.app.screen_stack:
            if isinstance(screen, ConsoleScreen):
                parts.append(screen.crumb or screen.screen_name.replace("overview", "fleet"))
            if screen is self:
                break
        self.title = " › ".join(parts)

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one("#filter-status", Static).display = False
        self.update_crumbs()
        self.show_data()
        self.call_after_refresh(self.refresh_bindings)  # "/ Filter" once the tables have a size

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "filter":  # "/ Filter" is offered only where a table can be filtered
            return self.filter_target() is not None
        if action == "back" and len(self.app.screen_stack) <= 2:  # the overview: nowhere to go back to
            table = getattr(self, "_filtering", None)
            return table is not None and bool(table.filter_text)
        return self.console.check_action(action, parameters)  # read-only hides screen actions too

    def on_key(self, event: events.Key) -> None:
        # A key whose action is hidden because changes are refused (read-only) says so, instead of
        # doing nothing at all.
        for binding in self.BINDINGS:
            if not isinstance(binding, Binding) or event.key not in binding.key.split(","):
                continue
            action = binding.action.split("(")[0]
            if self.console.check_action(action, ()) is False and self.console.writes_refused():
                event.stop()
                self.console.may_write(binding.description or action)
                return

    def after_filter(self) -> None:
        """The filtered table changed (e.g. to update what depends on the selected row)."""

    def show_data(self) -> None:
        """Redraw from the app's latest data (called after every refresh)."""

    def on_server_event(self, event: StreamEvent) -> None:
        """An event of the server's stream (``job`` or ``request``)."""

    def ask(
        self,
        fn: Callable[[OpsApi], T],
        done: Callable[[T], None] | None = None,
        failed: Callable[[BaseException], None] | None = None,
        *,
        quiet: bool = False,
    ) -> None:
        """Call the server on a worker thread; ``done`` / ``failed`` run on the UI thread only if this
        screen is still open then (see :meth:`ConsoleHost.call_api`)."""
        self.console.call_api(fn, done, failed, owner=self, quiet=quiet)

    def filter_target(self) -> FleetTable | None:
        focused = self.focused
        if isinstance(focused, FleetTable):
            return focused
        tables = [t for t in self.query(FleetTable) if t.display and t.region.area > 0]
        return tables[0] if tables else None

    def action_filter(self) -> None:
        table = self.filter_target()
        if table is None:
            self.notify("nothing to filter here", timeout=2)
            return
        self._filtering = table
        box = self.query_one("#filter", Input)
        box.value = table.filter_text
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter" and getattr(self, "_filtering", None) is not None:
            self._filtering.set_filter(event.value)
            self.after_filter()
            self._show_filter_status()

    def _show_filter_status(self) -> None:
        # An applied filter stays visible under the table once the box is closed.
        table = getattr(self, "_filtering", None)
        status = self.query_one("#filter-status", Static)
        text = table.filter_text if table is not None else ""
        box_open = self.query_one("#filter", Input).display
        status.display = bool(text) and not box_open
        if text and table is not None:
            status.update(f" filter {text!r}: {table.row_count} rows shown — / changes it, escape clears it ")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self._close_filter()

    def _close_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = False
        table = getattr(self, "_filtering", None)
        if table is not None:
            table.focus()
        self._show_filter_status()

    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if box.display:
            self._close_filter()
            return
        table = getattr(self, "_filtering", None)
        if table is not None and table.filter_text:  # escape first clears an applied filter
            table.set_filter("")
            self.after_filter()
            self._show_filter_status()
            return
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
