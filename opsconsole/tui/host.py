"""What the screens and the command palette may use of the console app: :class:`ConsoleHost`.

The app (:class:`opsconsole.tui.app.OpsConsoleApp`) opens the screens and registers the palette, so it
imports them; they call back into it (read the latest fleet, ask the server, open a form). Typing that
back-reference as the app would make the two import each other. They use this narrow protocol instead,
and only the app module knows the app: ``ConsoleScreen.console`` and ``FleetCommands.console`` return a
``ConsoleHost``. The app module states ``OpsConsoleApp`` is one (mypy proves it), so a member removed from
or changed in the app without this protocol following fails the type check, not the console.

Screen-stack moves (``push_screen``, ``pop_screen``, ``screen_stack``) are not here: a screen reaches them
through ``self.app``, Textual's own :class:`~textual.app.App`. Everything here is read-only or a method:
screens never assign the app's data, the app replaces it after each refresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from textual.message_pump import MessagePump
    from textual.notifications import SeverityLevel

    from opsconsole.core.api import Caller, OpsApi
    from opsconsole.core.change.records import ChangeRequest
    from opsconsole.core.fleet.view import FleetView
    from opsconsole.core.runs.records import Job
    from opsconsole.tui.data import RegionHistory

T = TypeVar("T")


class Bookmark(Protocol):
    @property
    def label(self) -> str:
        """What the bookmark names, in words."""


class Bookmarks(Protocol):
    """The console's bookmarks as the palette and the ``:`` command line use them (the app's are a
    :class:`opsconsole.tui.bookmarks.ConsoleBookmarks`)."""

    @property
    def marks(self) -> Mapping[str, Bookmark]:
        """Letter → bookmark."""

    def ask_jump(self) -> None:
        """The list of bookmarks; a letter jumps to one."""

    def mark(self, letter: str) -> bool:
        """Bookmark what is selected as ``letter``."""

    def delete(self, letter: str) -> bool:
        """Forget the bookmark ``letter``."""

    def jump(self, letter: str) -> bool:
        """Go to the bookmark ``letter``."""


class ConsoleHost(Protocol):
    """The console app as its screens and its command palette see it."""

    # -- what the app last heard from the server (replaced by each refresh) ----------------------------

    @property
    def api(self) -> OpsApi | None:
        """The client of the ops server; ``None`` until it answered ``whoami``."""

    @property
    def who(self) -> Caller | None:
        """Who the console acts as, as the server said; ``None`` until it said so."""

    @property
    def view(self) -> FleetView | None:
        """The latest fleet; ``None`` before the first refresh."""

    @property
    def requests(self) -> Sequence[ChangeRequest]:
        """The change requests, newest first."""

    @property
    def jobs(self) -> Sequence[Job]:
        """The recent jobs."""

    @property
    def may_vote(self) -> Mapping[str, tuple[int, tuple[str, ...]]]:
        """Who may still vote on each open request: id -> (the request's version, names)."""

    @property
    def history(self) -> RegionHistory:
        """An hour of p95 latency and request rate per region."""

    @property
    def marks(self) -> Bookmarks:
        """The bookmarks (``m`` / ``'``, ``:marks``): :mod:`opsconsole.tui.bookmarks`."""

    # -- permissions -----------------------------------------------------------------------------------

    def writes_refused(self) -> bool:
        """True with ``--read-only``, or on a server that only reads."""

    def may_write(self, what: str) -> bool:
        """True if changes are allowed; else a notification says why not."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Textual's hook: ``False`` hides and refuses an action (the write actions when read-only)."""

    # -- the server ------------------------------------------------------------------------------------

    def call_api(
        self,
        fn: Callable[[OpsApi], T],
        done: Callable[[T], None] | None = None,
        failed: Callable[[BaseException], None] | None = None,
        *,
        owner: MessagePump | None = None,
        quiet: bool = False,
    ) -> None:
        """Run ``fn(api)`` on a worker thread, ``done(result)`` / ``failed(error)`` on the UI thread
        (dropped if ``owner`` is gone by then)."""

    def remember(self, request: ChangeRequest, may_still_vote: Iterable[str] | None = None) -> None:
        """Put what the server said of ``request`` in the queue (and who may still vote on it)."""

    def action_refresh(self) -> None:
        """Read the fleet, the requests and the jobs again (on a worker thread)."""

    def view_age_s(self) -> float:
        """Seconds since the last refresh that failed to bring a view (0 while refreshes succeed)."""
        ...

    def copy_text(self, text: str, what: str) -> None:
        """Copy ``text`` to the terminal's clipboard (OSC 52) and say so."""

    # -- navigation and identity -----------------------------------------------------------------------

    def action_go(self, name: str) -> None:
        """Open the screen called ``name`` (``overview``, ``findings``, ``approvals``, ``jobs``,
        ``schedules``, ``audit``): what the keys 1–6 do."""

    def open_action(self, action: str, params: dict[str, Any]) -> None:
        """Open the form of ``action`` (scale / failover / failback / env) with ``params`` filled in."""

    def open_region(self, region: str, tab: str | None = None) -> None:
        """Open the drill-down of ``region`` (on ``tab``: workloads, nodes, databases …)."""

    def open_pods(self, cluster: str, workload: str | None = None, region: str | None = None, *,
                  node_group: str | None = None) -> None:
        """Open the pods of ``workload`` in ``cluster`` (every workload's when ``None``; only those on
        ``node_group``'s nodes when given)."""

    def exit(self, result: Any = None, return_code: int = 0, message: Any = None) -> None:
        """Quit the console (Textual's :meth:`~textual.app.App.exit`)."""

    def act_as(self, person: str) -> None:
        """Sandbox only: act as another member of the cast."""

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Show a toast (Textual's :meth:`~textual.app.App.notify`)."""
