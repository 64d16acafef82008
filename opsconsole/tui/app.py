"""The Textual console: the SRE's home screen for the whole fleet, a client of the ops server.

The app holds one :class:`~opsconsole.core.api.OpsApi` (a client of the team's ops server, or of the
embedded server ``make run`` starts in-process: the same client either way) and the data every screen
shows (the latest :class:`FleetView`, the approval queue, the recent jobs, an hour of region history).
Screens never call the API themselves on the UI thread: they ask the app (:meth:`OpsConsoleApp.call_api`,
or :meth:`ConsoleScreen.ask`), which runs the call in a thread worker and hands the answer back as a
message on the UI thread — dropped if the screen that asked is gone by then. The fleet is polled every
``refresh_s`` seconds the same way, so input is never blocked; the server's event stream (job progress,
requests decided in Slack or the CLI) is read on a background thread and re-posted as messages; its
``fleet`` events (the server's cache has a new view) bring a refresh at once, debounced, not at the next
poll.

Who the console acts as is the server's answer (:meth:`OpsApi.whoami`), never this process's login
name. ``read_only`` (``--read-only``), or a server that only reads (``--live`` without a team server),
hides every action binding and refuses every action, whichever way it is asked for.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, ExitStack
from typing import Any, ClassVar, TypeVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.message_pump import MessagePump
from textual.screen import ModalScreen, Screen

from opsconsole.core.api import Caller, OpsApi
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.errors import OpsError
from opsconsole.core.fleet.engine import SourceStatus
from opsconsole.core.fleet.view import FleetView
from opsconsole.core.runs.records import Job
from opsconsole.tui.bookmarks import ConsoleBookmarks
from opsconsole.tui.commands import FleetCommands, run_colon
from opsconsole.tui.data import RegionHistory, starting
from opsconsole.tui.drill import DrillAsked
from opsconsole.tui.freeze import FreezeAsked, FreezeStatus, read_freeze_status
from opsconsole.tui.host import ConsoleHost
from opsconsole.tui.messages import (
    ApiAnswer,
    ApiFailed,
    ApiReady,
    FleetRefreshed,
    RefreshFailed,
    ServerEvent,
)
from opsconsole.tui.screens.base import ConsoleScreen
from opsconsole.tui.screens.change import ActionScreen, ApprovalsScreen, JobsScreen
from opsconsole.tui.screens.dialogs import CommandLine, HelpScreen
from opsconsole.tui.screens.drill import ask_drill
from opsconsole.tui.screens.fleet import FindingsScreen, OverviewScreen, RegionScreen
from opsconsole.tui.screens.freeze import ask_freeze
from opsconsole.tui.screens.records import AuditScreen, SchedulesScreen
from opsconsole.tui.widgets.freeze import FreezeBanner

T = TypeVar("T")
log = logging.getLogger(__name__)

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
#: The longest wait between two attempts to reconnect to the server's event stream.
STREAM_RETRY_MAX_S = 30.0
#: The longest wait between two refreshes while the server does not answer (1 s, 2 s, 4 s … this).
REFRESH_RETRY_MAX_S = 30.0
#: After a ``fleet`` event of the stream (the server's cache published a new view), the console refreshes
#: this much later: the events of a burst (at most 5 a second) make one refresh, never a storm.
FLEET_EVENT_DEBOUNCE_S = 0.3

ApiFactory = Callable[[], AbstractContextManager[OpsApi]]
#: Opens the API as another member of the sandbox cast (``as bob`` in the palette).
Reopen = Callable[[str], AbstractContextManager[OpsApi]]


def error_text(exc: BaseException) -> tuple[str, str]:
    """(title, message) for a notification: an OpsError says both; anything else only its type and line."""
    if isinstance(exc, OpsError):
        return exc.title, str(exc)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return "unexpected error", f"{type(exc).__name__}: {first}"


def _view_moved(data: Mapping[str, Any]) -> bool:
    """A ``fleet`` event announces a view that differs from the last one (records added, removed or
    changed, or a source's health moved); an event without those fields counts as a change."""
    keys = ("added", "removed", "changed", "sources_changed")
    return not any(k in data for k in keys) or any(data.get(k) for k in keys)


class OpsConsoleApp(App[None]):
    """The console.

    Args:
        api_factory: opens the API (entered on a worker thread: it may start the embedded server and
            the local cloud); closed when the app exits.
        read_only: refuse every change (``--read-only``).
        refresh_s: seconds between two polls of the fleet; 0 turns the automatic refresh off (tests
            refresh by hand).
        live: the console looks at the live fleet (the title says so before the server answers).
        reopen: opens the API as another person (``as bob``): only the sandbox's embedded server has it.
    """

    CSS_PATH = "app.tcss"
    TITLE = "opsconsole"
    COMMANDS = App.COMMANDS | {FleetCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]  # noqa: RUF012 - Textual types it; re-annotating clashes (mypy)
    #: The screens ``go(name)`` opens (the keys 2–6, "Go to …" in the palette); ``go('overview')`` (key 1)
    #: goes back down to the overview, the bottom of the stack. Not Textual's ``SCREENS``: an installed
    #: screen is one instance for the app's whole life, so a screen opened again would show its old
    #: filter, selection and data, and 2 → 3 → 2 would put the same instance twice on the stack. Nor
    #: ``MODES``: each mode has a stack of its own, so Escape would no longer lead back to the overview
    #: nor to the screen you came from. Each ``go`` pushes a new screen on the one stack instead.
    NAMED_SCREENS: ClassVar[Mapping[str, Callable[[], ConsoleScreen]]] = {
        screen.screen_name: screen
        for screen in (FindingsScreen, ApprovalsScreen, JobsScreen, SchedulesScreen, AuditScreen)
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help"),
        Binding("1", "go('overview')", "Fleet", show=False),
        Binding("2", "go('findings')", "Findings"),
        Binding("3", "go('approvals')", "Approvals"),
        Binding("4", "go('jobs')", "Jobs"),
        Binding("5", "go('schedules')", "Schedules", show=False),
        Binding("6", "go('audit')", "Audit", show=False),
        Binding("ctrl+r", "force_refresh", "Refresh now", show=False),
        Binding("colon", "command_line", "Command line"),
        Binding("m", "mark", "Bookmark"),
        Binding("apostrophe", "jump", "Bookmarks"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        api_factory: ApiFactory,
        *,
        read_only: bool = False,
        refresh_s: float = 2.0,
        live: bool = False,
        reopen: Reopen | None = None,
    ) -> None:
        super().__init__()
        self._api_factory = api_factory
        self._reopen = reopen
        self._stack = ExitStack()
        #: What the API opened by ``as NAME`` holds (closed when replaced, and at exit).
        self._identity_stack: ExitStack | None = None
        self._quitting = threading.Event()
        self.read_only = read_only
        self.refresh_s = refresh_s
        self.live = live
        self.api: OpsApi | None = None
        self.who: Caller | None = None
        #: Bumped whenever the API is replaced: answers and events of an older one are dropped.
        self.generation = 0
        self.view: FleetView | None = None
        self.requests: list[ChangeRequest] = []
        self.jobs: list[Job] = []
        #: Who may still vote on each open request, as the server last said: id -> (version, names).
        self.may_vote: dict[str, tuple[int, tuple[str, ...]]] = {}
        self.history = RegionHistory()
        self.refreshes = 0
        self.last_refresh_s = 0.0
        self._refreshing = False
        self._refresh_seq = 0
        #: Refreshes failed in a row (0: the last one brought a view), and when the last good one came.
        self.refresh_failures = 0
        self._last_view_at = time.monotonic()
        self._next_try_at = 0.0
        self._interval_started = False
        self._source_status: dict[str, SourceStatus] = {}
        self._critical_seen: set[str] = set()
        #: The emergency freeze as the server last said (``{"on", "reason", "by", "since"}``; ``None``:
        #: not known yet). The banner of every screen shows it.
        self.freeze: dict[str, Any] | None = None
        #: A ``fleet`` event's refresh is waiting (debounced), or is due after the one in flight.
        self._fleet_event_pending = False
        self._fleet_event_again = False
        self._event_refresh_at = float("-inf")
        #: ``m`` + letter bookmarks the selected region / workload / cluster, ``'`` + letter jumps back.
        self.marks = ConsoleBookmarks(self)
        if read_only:
            self.sub_title = "READ-ONLY"

    # -- life cycle ------------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.push_screen(OverviewScreen())
        self.marks.load()
        self._open_api()

    @work(thread=True, group="api", exit_on_error=False)
    def _open_api(self) -> None:
        try:
            api = self._stack.enter_context(self._api_factory())
            caller = api.whoami()
        except Exception as exc:
            self.post_message(ApiFailed(*error_text(exc)))
            return
        self.post_message(ApiReady(api, caller))

    def on_api_ready(self, message: ApiReady) -> None:
        replaced = self._identity_stack if message.stack is not None else None
        if message.stack is not None:
            self._identity_stack = message.stack
        self.generation += 1
        self.api = message.api
        self.who = message.caller
        self.may_vote.clear()
        self.update_title()
        self.refresh_bindings()
        self._start_stream(message.api, self.generation)
        self._refreshing = False  # an answer of the old API is dropped: do not wait for it
        self.action_refresh()
        if self.refresh_s > 0 and not self._interval_started:
            self._interval_started = True
            self.set_interval(self.refresh_s, self._tick)
        if message.stack is not None:
            self.notify(f"now acting as {message.caller.person} ({message.caller.role})", title="identity")
        if replaced is not None:
            threading.Thread(target=replaced.close, name="opsconsole-close-identity", daemon=True).start()

    def on_api_failed(self, message: ApiFailed) -> None:
        self.notify(message.text, title=message.title, severity="error", timeout=30)

    def update_title(self) -> None:
        who = self.who
        where = "LIVE" if (who.world == "live" if who else self.live) else "sandbox"
        person = who.person if who else "?"
        role = " (viewer)" if who is not None and who.role == "viewer" else ""
        state = ""
        if self.refresh_failures:
            retry = max(0.0, self._next_try_at - time.monotonic())
            state = (
                f" · RECONNECTING (no data for {self.view_age_s():.0f}s, retry in {retry:.0f}s, ctrl+r now)"
            )
        self.sub_title = (
            f"{where} · {person}{role}" + (" · READ-ONLY" if self.writes_refused() else "") + state
        )

    async def on_unmount(self) -> None:
        self._quitting.set()

        def close() -> None:
            if self._identity_stack is not None:
                self._identity_stack.close()
            self._stack.close()

        # Closing may stop the embedded server and the local cloud: not on the UI thread's time.
        await self.run_in_thread(close)

    async def run_in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, fn)

    # -- the server's event stream ---------------------------------------------------------------------

    def _start_stream(self, api: OpsApi, generation: int) -> None:
        # A daemon thread, not a Textual worker: a stream blocked in a read must never hold up the exit
        # (the loop's executor is joined at exit). It ends when the API is closed or replaced.
        threading.Thread(
            target=self._read_stream, args=(api, generation), name="opsconsole-stream", daemon=True
        ).start()

    def _read_stream(self, api: OpsApi, generation: int) -> None:
        wait = 1.0
        while not self._quitting.is_set() and generation == self.generation:
            try:
                for event in api.stream():
                    if self._quitting.is_set() or generation != self.generation:
                        return
                    wait = 1.0
                    if event.kind in ("job", "request"):
                        self.post_message(ServerEvent(event, generation))
                    elif event.kind == "fleet" and self.refresh_s > 0 and _view_moved(event.data):
                        # The server's cache has a new view (e.g. the clouds' first data): show it now,
                        # not at the next poll. (refresh_s == 0: the tests refresh by hand.)
                        self.post_message(ServerEvent(event, generation))
            except Exception as exc:  # a dropped connection: the poll goes on, the stream comes back
                log.debug("event stream ended: %s", exc)
            if self._quitting.wait(wait):
                return
            wait = min(wait * 2, STREAM_RETRY_MAX_S)

    def on_server_event(self, message: ServerEvent) -> None:
        if message.generation != self.generation:
            return
        event = message.event
        if event.kind == "fleet":
            self._fleet_event(message.generation)
            return
        if event.kind == "request":
            request_id = str(event.data.get("id", ""))
            if request_id:
                self.call_api(lambda api: api.request(request_id), self._request_moved, quiet=True)
        for screen in self.screen_stack:
            if isinstance(screen, ConsoleScreen):
                screen.on_server_event(event)

    def _fleet_event(self, generation: int) -> None:
        # Debounced: one refresh FLEET_EVENT_DEBOUNCE_S after the first event of a burst; an event that
        # comes while a refresh is in flight asks for one more after it (so its view is not missed).
        if generation != self.generation or self._fleet_event_pending:
            return
        self._fleet_event_pending = True
        self.set_timer(FLEET_EVENT_DEBOUNCE_S, self._fleet_event_refresh)

    def _fleet_event_refresh(self) -> None:
        self._fleet_event_pending = False
        if self._refreshing:
            self._fleet_event_again = True
            return
        self._event_refresh_at = time.monotonic()
        self.action_refresh()

    def on_freeze_asked(self, message: FreezeAsked) -> None:
        ask_freeze(self, message.on, message.reason)  # confirm, then switch on the server

    def on_drill_asked(self, message: DrillAsked) -> None:
        ask_drill(self, message.from_region, message.to_region)  # confirm, then the drill's screen

    def on_freeze_status(self, message: FreezeStatus) -> None:
        if message.generation != self.generation:
            return
        self.freeze = message.document
        for banner in self._freeze_banners():
            banner.show(message.document)

    def _freeze_banners(self) -> Iterable[FreezeBanner]:
        for screen in self.screen_stack:
            if isinstance(screen, ConsoleScreen):
                yield from screen.query(FreezeBanner)

    def _request_moved(self, detail: Any) -> None:
        self.remember(detail.request, detail.may_still_vote)
        self.update_screens()

    def remember(self, request: ChangeRequest, may_still_vote: Iterable[str] | None = None) -> None:
        """Put what the server said of ``request`` in the queue (and who may still vote on it)."""
        if any(r.id == request.id for r in self.requests):
            self.requests = [request if r.id == request.id else r for r in self.requests]
        else:
            self.requests.insert(0, request)
        if may_still_vote is not None:
            self.may_vote[request.id] = (request.version, tuple(may_still_vote))

    # -- refresh ---------------------------------------------------------------------------------------

    def view_age_s(self) -> float:
        """Seconds since the last good refresh, once refreshes fail (0 while they succeed)."""
        return time.monotonic() - self._last_view_at if self.refresh_failures else 0.0

    def _tick(self) -> None:
        # The interval's refresh; while the server does not answer it backs off (1, 2, 4 … 30 s).
        if self.refresh_failures and time.monotonic() < self._next_try_at:
            self.update_title()
            return
        if not self.refresh_failures and time.monotonic() - self._event_refresh_at < self.refresh_s / 2:
            return  # a fleet event's refresh has just started: not two in a row
        self.action_refresh()

    def action_refresh(self) -> None:
        if self.api is None or self._refreshing:
            return  # a slow server must not pile refreshes up
        self._start_refresh()

    def action_force_refresh(self) -> None:
        """ctrl+r: refresh now, even if a refresh is hanging on a server that stopped answering."""
        if self.api is None:
            self.notify("the console is still connecting to the ops server", severity="warning")
            return
        self.notify("refreshing now…", timeout=1.5)
        self._start_refresh()

    def _start_refresh(self) -> None:
        assert self.api is not None
        self._refreshing = True
        self._refresh_seq += 1
        self._refresh_worker(self.api, self.generation, self._refresh_seq)

    @work(thread=True, group="refresh", exit_on_error=False)
    def _refresh_worker(self, api: OpsApi, generation: int, seq: int = 0) -> None:
        started = time.perf_counter()
        try:
            # The queue, the jobs and the freeze are asked beside the fleet, not after it: the first
            # ``/fleet`` waits for the server's first view, and these answer meanwhile.
            side: dict[str, Any] = {}
            beside = threading.Thread(target=self._read_beside, args=(api, side), daemon=True,
                                      name="opsconsole-refresh-beside")
            beside.start()
            view = api.fleet()
            beside.join()
            if "failure" in side:
                raise side["failure"]
            requests: list[ChangeRequest] = side.get("requests", [])
            jobs: list[Job] = side.get("jobs", [])
            freeze = side.get("freeze")
            if freeze is not None:
                self.post_message(FreezeStatus(freeze, generation))
            self.post_message(
                FleetRefreshed(view, requests, jobs, time.perf_counter() - started, generation, seq)
            )
        except Exception as exc:
            self.post_message(RefreshFailed(": ".join(error_text(exc)), seq))

    @staticmethod
    def _read_beside(api: OpsApi, into: dict[str, Any]) -> None:
        """The requests, jobs and freeze of a refresh, into ``into`` (``failure``: what went wrong)."""
        try:
            try:
                into["requests"] = api.requests(open_only=False, limit=100)
                into["jobs"] = api.jobs(limit=50)
            except OpsError:
                pass  # a server that only reads has no runs: the fleet still shows
            into["freeze"] = read_freeze_status(api)
        except Exception as exc:  # the refresh fails as a whole, as if read in turn
            into["failure"] = exc

    def on_fleet_refreshed(self, message: FleetRefreshed) -> None:
        if message.generation != self.generation or message.seq < self._refresh_seq:
            return  # an older API's, or a refresh superseded by ctrl+r
        self._refreshing = False
        if self.refresh_failures:
            self.notify("the ops server answers again", title="reconnected")
        self.refresh_failures = 0
        self._last_view_at = time.monotonic()
        self.refreshes += 1
        self.last_refresh_s = message.took_s
        self.view = message.view
        self.requests = list(message.requests)
        self.jobs = list(message.jobs)
        self.history.add(message.view.snapshot)
        self._notify_sources(message.view)
        self._notify_critical(message.view)
        self.update_title()
        self.update_screens()
        if self._fleet_event_again:  # a fleet event came during this refresh: its view may be newer
            self._fleet_event_again = False
            self._fleet_event(self.generation)

    def _notify_sources(self, view: FleetView) -> None:
        # One toast for every source that went bad in this refresh (not one per source, nor one that
        # names only the first), and one for those that came back.
        went_bad: list[str] = []
        back: list[str] = []
        worst = SourceStatus.STALE
        for source in view.snapshot.sources:
            if starting(source):  # its first read is still running: not a failure to announce
                continue
            before = self._source_status.get(source.name, SourceStatus.OK)
            if source.status is not before and source.status is not SourceStatus.OK:
                went_bad.append(f"{source.name} ({source.error or source.status.value})")
                if source.status is SourceStatus.ERROR:
                    worst = SourceStatus.ERROR
            elif source.status is SourceStatus.OK and before is not SourceStatus.OK:
                back.append(source.name)
            self._source_status[source.name] = source.status
        if went_bad:
            more = f"; and {len(went_bad) - 4} more" if len(went_bad) > 4 else ""
            shown = "; ".join(went_bad[:4]) + more
            self.notify(
                shown,
                title=f"{len(went_bad)} source{'s' if len(went_bad) != 1 else ''} {worst.value}",
                severity="error" if worst is SourceStatus.ERROR else "warning",
            )
        if back:
            self.notify(", ".join(back), title="sources answer again")

    def _notify_critical(self, view: FleetView) -> None:
        # A bell and a toast when a critical finding appears (not for those already seen).
        critical = {f.id: f for f in view.findings if f.severity.value == "critical"}
        new = [f for fid, f in critical.items() if fid not in self._critical_seen]
        if new and self.refreshes > 1:
            self.bell()
            self.notify(
                "; ".join(f.title for f in new[:3]),
                title=f"new critical finding{'s' if len(new) != 1 else ''}",
                severity="error",
                timeout=15,
            )
        self._critical_seen = set(critical)

    def on_refresh_failed(self, message: RefreshFailed) -> None:
        if message.seq < self._refresh_seq:
            return
        self._refreshing = False
        self.refresh_failures += 1
        wait = min(REFRESH_RETRY_MAX_S, 2.0 ** (self.refresh_failures - 1))
        self._next_try_at = time.monotonic() + wait
        if self.refresh_failures == 1:
            self.notify(
                f"{message.text} — retrying with backoff (up to every {REFRESH_RETRY_MAX_S:.0f} s); "
                "ctrl+r retries now",
                title="lost the ops server",
                severity="error",
                timeout=10,
            )
        self.update_title()
        self.update_screens()  # the cards turn stale

    def update_screens(self) -> None:
        for screen in self.screen_stack:
            if not isinstance(screen, ConsoleScreen) or not screen.is_mounted:
                continue  # not composed yet: its on_mount draws the data
            try:
                screen.show_data()
            except NoMatches:
                # Its widgets are gone: the app is closing and a late answer arrived (with the server in
                # a process of its own, answers come while Textual tears the screens down).
                log.debug("a view arrived for %s while its widgets were removed", screen.screen_name)

    # -- server calls ----------------------------------------------------------------------------------

    def call_api(
        self,
        fn: Callable[[OpsApi], T],
        done: Callable[[T], None] | None = None,
        failed: Callable[[BaseException], None] | None = None,
        *,
        owner: MessagePump | None = None,
        quiet: bool = False,
    ) -> None:
        """Run ``fn(api)`` on a worker thread; ``done(result)`` then runs on the UI thread. An error is
        shown as a notification (unless ``quiet``: the caller shows it) and passed to ``failed``, never
        a crash. With ``owner`` (the screen that asks), the answer is dropped if the owner is gone."""
        if self.api is None:
            self.notify("the console is still connecting to the ops server", severity="warning")
            return
        self._call_worker(self.api, fn, done, failed, owner, quiet)

    @work(thread=True, group="calls", exit_on_error=False)
    def _call_worker(
        self,
        api: OpsApi,
        fn: Callable[[OpsApi], Any],
        done: Callable[[Any], None] | None,
        failed: Callable[[BaseException], None] | None,
        owner: MessagePump | None,
        quiet: bool,
    ) -> None:
        try:
            result = fn(api)
        except Exception as exc:
            if not quiet:
                title, text = error_text(exc)
                self.call_from_thread(self.notify, text, title=title, severity="error", timeout=8)
            self.post_message(ApiAnswer(None, exc, None, failed, owner))
            return
        self.post_message(ApiAnswer(result, None, done, None, owner))

    def alive(self, owner: MessagePump | None) -> bool:
        """True while ``owner`` (a screen or a widget of one) is still on the screen stack."""
        if owner is None:
            return True
        screen = owner if isinstance(owner, Screen) else getattr(owner, "screen", None)
        return owner.is_attached and screen in self.screen_stack

    def on_api_answer(self, message: ApiAnswer) -> None:
        if not self.alive(message.owner):
            return  # the screen that asked was closed meanwhile
        if message.error is not None:
            if message.failed is not None:
                message.failed(message.error)
        elif message.done is not None:
            message.done(message.result)

    # -- permissions -----------------------------------------------------------------------------------

    def writes_refused(self) -> bool:
        """True with ``--read-only``, or on a server that only reads."""
        return self.read_only or (self.who is not None and not self.who.may_change)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # False hides the binding from the footer and does not run it.
        return not (self.writes_refused() and action in WRITE_ACTIONS)

    def may_write(self, what: str) -> bool:
        """True if changes are allowed; else a notification says why not."""
        if self.read_only:
            self.notify(
                f"{what}: refused, the console was started with --read-only",
                title="read-only",
                severity="error",
            )
            return False
        if self.who is not None and not self.who.may_change:
            self.notify(
                f"{what}: refused, this server only reads (`--live` without a team server); ask the "
                "team's ops server (opsconsole login --server URL)",
                title="read-only",
                severity="error",
            )
            return False
        return True

    def copy_text(self, text: str, what: str) -> None:
        """Copy ``text`` to the clipboard through the terminal (OSC 52: works over ssh and in tmux with
        ``set-clipboard on``) and say what was copied."""
        self.copy_to_clipboard(text)
        self.notify(f"copied {what}: {text}", title="clipboard", timeout=3)

    # -- navigation ------------------------------------------------------------------------------------

    def action_go(self, name: str) -> None:
        if getattr(self.screen, "holds_changes", False) or isinstance(self.screen, ModalScreen):
            # A digit inside an open form or dialog must not throw away what is being typed there.
            self.notify("close this form first (Escape), then switch screens", timeout=3)
            return
        if getattr(self.screen, "screen_name", None) == name:
            return
        if name == "overview":
            while len(self.screen_stack) > 2:
                self.pop_screen()
            return
        self.push_screen(self.NAMED_SCREENS[name]())

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self._binding_lines()))

    def _binding_lines(self) -> Iterable[tuple[str, str]]:
        seen: set[str] = set()
        focused = self.screen.focused
        nodes = [*(focused.ancestors_with_self if focused is not None else []), self.screen, self]
        for node in nodes:
            for binding in getattr(node, "BINDINGS", []):
                if isinstance(binding, Binding) and binding.description and binding.key not in seen:
                    if self.writes_refused() and binding.action.split("(")[0] in WRITE_ACTIONS:
                        continue
                    seen.add(binding.key)
                    keys = [self.get_key_display(Binding(k.strip(), "")) for k in binding.key.split(",")]
                    yield " ".join(keys), binding.description

    def open_action(self, action: str, params: dict[str, Any]) -> None:
        """Open the form of ``action`` (scale / failover / failback / env) with ``params`` filled in."""
        if not self.may_write(action):
            return
        self.push_screen(ActionScreen(action, params))

    def open_pods(self, cluster: str, workload: str | None = None, region: str | None = None, *,
                  node_group: str | None = None) -> None:
        """The pods screen of ``workload`` in ``cluster`` (``:pods CLUSTER [WORKLOAD]``, ``p``)."""
        from opsconsole.tui.screens.pods import open_pods  # noqa: PLC0415 - loaded when first used

        open_pods(self, cluster, workload, region, node_group=node_group)

    def open_region(self, region: str, tab: str | None = None) -> None:
        if self.view is not None and region not in self.view.fleet.regions:
            known = ", ".join(self.view.fleet.regions)
            self.notify(f"unknown region {region}; the regions are {known}", severity="error")
            return
        current = self.screen
        if isinstance(current, RegionScreen) and current.region_id == region:
            if tab is not None:
                current.show_tab(tab)
            return
        self.push_screen(RegionScreen(region, tab=tab))

    def action_command_line(self) -> None:
        """``:`` — the command line (``:nodes``, ``:jobs``, ``:region eu-west-1``, ``:q``)."""
        if isinstance(self.screen, ModalScreen) or getattr(self.screen, "holds_changes", False):
            return

        def run(line: str | None) -> None:
            if line:
                screen = self.screen
                region = getattr(screen, "region_id", None)
                if region is None and isinstance(screen, OverviewScreen):
                    region = screen.focused_region()
                run_colon(self, line, region)

        self.push_screen(CommandLine(), run)

    def action_mark(self) -> None:
        """``m`` then a letter: bookmark the selected region, workload or cluster."""
        self.marks.ask_mark()

    def action_jump(self) -> None:
        """``'`` then a letter: jump to a bookmark (the list shows them)."""
        self.marks.ask_jump()

    @property
    def can_act_as(self) -> bool:
        """True when ``as NAME`` works: on the sandbox's own (embedded) server only."""
        return self._reopen is not None

    def act_as(self, person: str) -> None:
        """Sandbox only: act as another member of the cast (to approve your own request as a colleague).

        The embedded server opens a client for that person (see :func:`opsconsole.tui.run`); the
        identity is then the server's answer, as always."""
        if self._reopen is None:
            self.notify(
                "`as NAME` works only on the sandbox's own server: with a team server you are who your "
                "credential says",
                title="identity",
                severity="error",
            )
            return
        self._switch_worker(self._reopen, person)

    @work(thread=True, group="identity", exit_on_error=False)
    def _switch_worker(self, reopen: Reopen, person: str) -> None:
        stack = ExitStack()
        try:
            api = stack.enter_context(reopen(person))
            caller = api.whoami()
        except Exception as exc:
            stack.close()
            title, text = error_text(exc)
            self.call_from_thread(self.notify, text, title=title, severity="error")
            return
        self.post_message(ApiReady(api, caller, stack))


#: mypy proves here that the app is what its screens and its palette take it for (they see it only
#: as a :class:`ConsoleHost`, so they never import this module back).
_THE_APP_IS_A_HOST: type[ConsoleHost] = OpsConsoleApp
