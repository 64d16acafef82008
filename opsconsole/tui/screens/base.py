"""What every screen of the console shares: Escape goes back, ``/`` filters the table in focus, a
``show_data`` hook the app calls after each refresh (screens redraw from the app's data), and
:meth:`ConsoleScreen.ask`, the one way a screen calls the ops server: the call runs on a worker thread,
and its answer is dropped if the screen was closed before it came back."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, TypeVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Header, Input

from opsconsole.tui.widgets.table import FleetTable

if TYPE_CHECKING:
    from opsconsole.core.api import OpsApi, StreamEvent
    from opsconsole.tui.host import ConsoleHost

T = TypeVar("T")


class ConsoleScreen(Screen[None]):
    screen_name: ClassVar[str] = ""
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

    def compose_footer(self) -> ComposeResult:
        yield Input(
            placeholder="filter: type to narrow the table, Enter or Escape to close",
            id="filter",
            classes="filter",
        )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.show_data()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.console.check_action(action, parameters)  # read-only hides screen actions too

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

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self._close_filter()

    def _close_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = False
        table = getattr(self, "_filtering", None)
        if table is not None:
            table.focus()

    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if box.display:
            self._close_filter()
            return
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
