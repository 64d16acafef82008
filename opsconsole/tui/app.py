"""The Textual console: the SRE's home screen for the whole fleet.

The app owns the one :class:`OpsCore` of the process and the data every screen shows (the latest
:class:`FleetView`, the approval queue, the recent jobs, an hour of region history). Screens never call
the core themselves: they ask the app (:meth:`OpsConsoleApp.call_core`), which runs the call in a thread
worker and hands the answer back as a message on the UI thread; the refresh runs the same way every
``refresh_s`` seconds, so input is never blocked. Events of the core's bus (job progress, requests decided
in Slack or the CLI) arrive on worker threads and are re-posted as messages.

``read_only`` hides every action binding and refuses every action, whichever way it is asked for.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, ExitStack
from typing import Any, ClassVar, TypeVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType

from opsconsole.core.change.rbac import Identity
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.errors import OpsError
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.engine import SourceStatus
from opsconsole.core.fleet.view import FleetView
from opsconsole.core.runs.records import Job
from opsconsole.tui.commands import FleetCommands
from opsconsole.tui.data import RegionHistory
from opsconsole.tui.messages import BusEvent, CoreDone, CoreFailed, CoreReady, FleetRefreshed, RefreshFailed

T = TypeVar("T")

#: Actions that change something: hidden and refused in read-only mode.
WRITE_ACTIONS = frozenset(
    {
        "scale",
        "failover",
        "environment",
        "approve",
        "reject",
        "cancel_request",
        "run_request",
        "cancel_job",
        "override",
        "act",
    }
)


def error_text(exc: BaseException) -> tuple[str, str]:
    """(title, message) for a notification: an OpsError says both; anything else only its type and line."""
    if isinstance(exc, OpsError):
        return exc.title, str(exc)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return "unexpected error", f"{type(exc).__name__}: {first}"


class OpsConsoleApp(App[None]):
    """The console. ``core_factory`` builds the core (it is entered on a worker thread: it may start the
    local cloud); ``refresh_s`` 0 turns the automatic refresh off (tests refresh by hand)."""

    CSS_PATH = "app.tcss"
    TITLE = "opsconsole"
    COMMANDS = App.COMMANDS | {FleetCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]  # noqa: RUF012 - Textual types it; re-annotating clashes (mypy)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help"),
        Binding("1", "go('overview')", "Fleet", show=False),
        Binding("2", "go('findings')", "Findings"),
        Binding("3", "go('approvals')", "Approvals"),
        Binding("4", "go('jobs')", "Jobs"),
        Binding("5", "go('schedules')", "Schedules", show=False),
        Binding("6", "go('audit')", "Audit", show=False),
        Binding("ctrl+r", "refresh", "Refresh", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        core_factory: Callable[[], AbstractContextManager[OpsCore]],
        *,
        acting_as: str | None = None,
        read_only: bool = False,
        refresh_s: float = 2.0,
        live: bool = False,
    ) -> None:
        super().__init__()
        self._core_factory = core_factory
        self._stack = ExitStack()
        self.acting_as = acting_as
        self.read_only = read_only
        self.refresh_s = refresh_s
        self.live = live
        self.core: OpsCore | None = None
        self.who: Identity | None = None
        self.view: FleetView | None = None
        self.requests: list[ChangeRequest] = []
        self.jobs: list[Job] = []
        self.history = RegionHistory()
        self.refreshes = 0
        self.last_refresh_s = 0.0
        self._refreshing = False
        self._source_status: dict[str, SourceStatus] = {}
        self._unsubscribe: Callable[[], None] | None = None
        if read_only:
            self.sub_title = "READ-ONLY"

    # -- life cycle ------------------------------------------------------------------------------------

    def on_mount(self) -> None:
        from opsconsole.tui.screens.fleet import OverviewScreen  # noqa: PLC0415 - screens import the app

        self.push_screen(OverviewScreen())
        self._open_core()

    @work(thread=True, group="core", exit_on_error=False)
    def _open_core(self) -> None:
        try:
            core = self._stack.enter_context(self._core_factory())
        except Exception as exc:
            self.post_message(CoreFailed(*error_text(exc)))
            return
        self.post_message(CoreReady(core))

    def on_core_ready(self, message: CoreReady) -> None:
        core = self.core = message.core
        try:
            self.who = (
                core.directory.cast_member(self.acting_as)
                if self.acting_as
                else core.directory.os_user(getpass.getuser())
            )
        except OpsError as exc:
            self.notify(str(exc), title=exc.title, severity="error")
        try:
            self._unsubscribe = core.runner.bus.subscribe(self._from_bus)
        except OpsError:
            self._unsubscribe = None  # a core that only reads has no run engine: no job events
        self.update_title()
        self.action_refresh()
        if self.refresh_s > 0:
            self.set_interval(self.refresh_s, self.action_refresh)

    def _from_bus(self, event: object) -> None:
        """Called on the publisher's thread: re-post to the UI thread (post_message is thread-safe)."""
        self.post_message(BusEvent(event))

    def on_core_failed(self, message: CoreFailed) -> None:
        self.notify(message.text, title=message.title, severity="error", timeout=30)

    def update_title(self) -> None:
        where = "LIVE" if self.live else "sandbox"
        who = self.who.person if self.who else "?"
        role = "" if self.who is None or self.who.known else " (viewer)"
        self.sub_title = f"{where} · {who}{role}" + (" · READ-ONLY" if self.read_only else "")

    async def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        # The core's close joins threads and may stop the local cloud: not on the UI thread's time.
        await self.run_in_thread(self._stack.close)

    async def run_in_thread(self, fn: Callable[[], T]) -> T:
        import asyncio  # noqa: PLC0415

        return await asyncio.get_running_loop().run_in_executor(None, fn)

    # -- refresh ---------------------------------------------------------------------------------------

    def action_refresh(self) -> None:
        if self.core is None or self._refreshing:
            return  # a slow source must not pile refreshes up
        self._refreshing = True
        self._refresh_worker(self.core)

    @work(thread=True, group="refresh", exit_on_error=False)
    def _refresh_worker(self, core: OpsCore) -> None:
        started = time.perf_counter()
        try:
            view = core.refresh()
            requests: list[ChangeRequest] = []
            jobs: list[Job] = []
            try:
                core.pipeline.expire_due()
                requests = core.pipeline.requests.list(limit=100)
                jobs = core.jobs.list(limit=50)
            except OpsError:
                pass  # no run engine (a reading core): no jobs; the fleet still shows
            self.post_message(FleetRefreshed(view, requests, jobs, time.perf_counter() - started))
        except Exception as exc:
            self.post_message(RefreshFailed(": ".join(error_text(exc))))

    def on_fleet_refreshed(self, message: FleetRefreshed) -> None:
        self._refreshing = False
        self.refreshes += 1
        self.last_refresh_s = message.took_s
        self.view = message.view
        self.requests = list(message.requests)
        self.jobs = list(message.jobs)
        self.history.add(message.view.snapshot)
        for source in message.view.snapshot.sources:
            before = self._source_status.get(source.name, SourceStatus.OK)
            if source.status is not before and source.status is not SourceStatus.OK:
                self.notify(
                    f"{source.name}: {source.error or source.status.value}",
                    title=f"source {source.status.value}",
                    severity="error" if source.status is SourceStatus.ERROR else "warning",
                )
            elif source.status is SourceStatus.OK and before is not SourceStatus.OK:
                self.notify(f"{source.name} answers again", title="source recovered")
            self._source_status[source.name] = source.status
        self.update_screens()

    def on_refresh_failed(self, message: RefreshFailed) -> None:
        self._refreshing = False
        self.notify(message.text, title="refresh failed", severity="error")

    def update_screens(self) -> None:
        from opsconsole.tui.screens.base import ConsoleScreen  # noqa: PLC0415

        for screen in self.screen_stack:
            if isinstance(screen, ConsoleScreen):
                screen.show_data()

    def on_bus_event(self, message: BusEvent) -> None:
        from opsconsole.tui.screens.base import ConsoleScreen  # noqa: PLC0415

        for screen in self.screen_stack:
            if isinstance(screen, ConsoleScreen):
                screen.on_core_event(message.event)

    # -- core calls ------------------------------------------------------------------------------------

    def call_core(
        self,
        fn: Callable[[OpsCore], T],
        done: Callable[[T], None] | None = None,
        failed: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Run ``fn(core)`` on a worker thread; ``done(result)`` then runs on the UI thread. An error is
        shown as a notification (and passed to ``failed``), never as a crash."""
        if self.core is None:
            self.notify("the console is still connecting to the fleet", severity="warning")
            return
        self._call_worker(self.core, fn, done, failed)

    @work(thread=True, group="calls", exit_on_error=False)
    def _call_worker(
        self,
        core: OpsCore,
        fn: Callable[[OpsCore], Any],
        done: Callable[[Any], None] | None,
        failed: Callable[[BaseException], None] | None,
    ) -> None:
        try:
            result = fn(core)
        except Exception as exc:
            title, text = error_text(exc)
            self.call_from_thread(self.notify, text, title=title, severity="error", timeout=8)
            if failed is not None:
                self.call_from_thread(failed, exc)
            return
        self.post_message(CoreDone(result, done))

    def on_core_done(self, message: CoreDone) -> None:
        if message.done is not None:
            message.done(message.result)

    # -- permissions -----------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # False hides the binding from the footer and does not run it.
        return not (self.read_only and action in WRITE_ACTIONS)

    def may_write(self, what: str) -> bool:
        """True if changes are allowed; else a notification says why not."""
        if self.read_only:
            self.notify(
                f"{what}: refused, the console was started with --read-only",
                title="read-only",
                severity="error",
            )
            return False
        return True

    # -- navigation ------------------------------------------------------------------------------------

    def action_go(self, name: str) -> None:
        from opsconsole.tui.screens import make_screen  # noqa: PLC0415

        if getattr(self.screen, "screen_name", None) == name:
            return
        if name == "overview":
            while len(self.screen_stack) > 2:
                self.pop_screen()
            return
        self.push_screen(make_screen(name))

    def action_help(self) -> None:
        from opsconsole.tui.screens.dialogs import HelpScreen  # noqa: PLC0415

        self.push_screen(HelpScreen(self._binding_lines()))

    def _binding_lines(self) -> Iterable[tuple[str, str]]:
        seen: set[str] = set()
        focused = self.screen.focused
        nodes = [*(focused.ancestors_with_self if focused is not None else []), self.screen, self]
        for node in nodes:
            for binding in getattr(node, "BINDINGS", []):
                if isinstance(binding, Binding) and binding.description and binding.key not in seen:
                    if self.read_only and binding.action.split("(")[0] in WRITE_ACTIONS:
                        continue
                    seen.add(binding.key)
                    yield binding.key, binding.description

    def open_action(self, action: str, params: dict[str, Any]) -> None:
        """Open the form of ``action`` (scale / failover / failback / env) with ``params`` filled in."""
        from opsconsole.tui.screens.change import ActionScreen  # noqa: PLC0415

        if not self.may_write(action):
            return
        self.push_screen(ActionScreen(action, params))

    def open_region(self, region: str) -> None:
        from opsconsole.tui.screens.fleet import RegionScreen  # noqa: PLC0415

        if self.view is not None and region not in self.view.fleet.regions:
            self.notify(f"unknown region {region}", severity="error")
            return
        self.push_screen(RegionScreen(region))

    def act_as(self, person: str) -> None:
        """Sandbox only: act as a member of the cast (to approve your own request as a colleague)."""
        if self.core is None:
            return
        try:
            self.who = self.core.directory.cast_member(person)
        except OpsError as exc:
            self.notify(str(exc), title=exc.title, severity="error")
            return
        self.acting_as = person
        self.update_title()
        self.notify(f"now acting as {person}", title="identity")
