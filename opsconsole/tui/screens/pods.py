"""The console's pod views: a workload's pods, a pod's log, its events and its description.

Why this module exists: from a workload that is not ready (the region screen's Workloads tab, key ``p``)
an SRE wants the pods, the crash-looping one's log and what the kubelet says, without leaving the console
or holding cluster credentials: every read goes through the ops server (``OpsApi.pods`` / ``pod_log`` /
``pod_events`` / ``describe_pod``), which any authenticated person may make.

* :class:`PodsScreen`: the pods of a workload in a cluster (status, ready, restarts, age, node, node
  group), unhealthy first, re-read every :data:`POLL_S` seconds. Enter opens the log, ``e`` the events,
  ``d`` the description, ``n`` the node's region on its Nodes tab (pod → node → node group → region);
  the line under the table shows that path for the selected pod.
* :class:`PodLogScreen`: the last :data:`TAIL` lines; ``p`` toggles the previous (crashed) container,
  ``f`` follows (re-reads every :data:`FOLLOW_S` s and appends what is new), ``/`` searches (lines
  containing the text are highlighted, ``n`` / ``N`` jump between them).
* :class:`PodEventsScreen`: the pod's events, warnings highlighted.

Open it with :func:`open_pods` (what the region screen's ``p`` does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Input, RichLog, Static

from opsconsole.core.fleet.pods import kube_age
from opsconsole.tui.data import Column, Row
from opsconsole.tui.screens.base import ConsoleScreen
from opsconsole.tui.widgets.table import FleetTable

if TYPE_CHECKING:
    from textual.app import App

    from opsconsole.core.fleet.pods import EventInfo, PodDescription, PodInfo, PodLog

__all__ = ["POLL_S", "PodEventsScreen", "PodLogScreen", "PodsScreen", "open_pods"]

#: How often the pod list is read again (seconds).
POLL_S = 5.0
#: How often a followed log is read again (seconds).
FOLLOW_S = 2.0
#: Log lines read at a time.
TAIL = 500

POD_COLUMNS = (
    Column("name", "Pod", flex=True, max_width=48),
    Column("ready", "Ready"),
    Column("status", "Status"),
    Column("restarts", "Restarts", short="Rst"),
    Column("age", "Age"),
    Column("node", "Node", flex=True, drop=2),
    Column("group", "Node group", short="Group", drop=1),
    Column("exit", "Last exit", drop=3),
)
EVENT_COLUMNS = (
    Column("seen", "Last seen"),
    Column("type", "Type"),
    Column("reason", "Reason"),
    Column("count", "Count", short="#"),
    Column("source", "From", drop=1),
    Column("message", "Message", flex=True, max_width=120),
)


def pod_row(p: PodInfo) -> Row:
    bad = "bold red" if p.unhealthy else ""
    return (
        p.name,
        Text(p.ready_text, style=bad),
        Text(p.status, style=bad),
        Text(str(p.restarts), style="red" if p.restarts else ""),
        kube_age(p.age_s),
        p.node or "—",
        p.node_group or "—",
        p.last_exit or "",
    )


def open_pods(
    app: App[Any], cluster: str, workload: str | None = None, region: str | None = None, *,
    node: str | None = None, node_group: str | None = None,
) -> None:
    """Open the pods of ``workload`` in ``cluster`` (all of the cluster's when ``None``); ``node`` /
    ``node_group``: only those running on that node / in that node group (the node → pods direction)."""
    app.push_screen(PodsScreen(cluster, workload, region, node=node, node_group=node_group))


def _failed_text(error: BaseException) -> str:
    message = getattr(error, "message", None) or str(error)
    return f"[red]{escape(message)}[/red]"


class PodsScreen(ConsoleScreen):
    """The pods of a workload in a cluster (see the module docstring)."""

    screen_name = "pods"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "logs", "Logs"),
        Binding("e", "events", "Events"),
        Binding("d", "describe", "Describe"),
        Binding("n", "node", "Node"),
        Binding("r", "reload", "Reload"),
    ]

    def __init__(
        self, cluster: str, workload: str | None = None, region: str | None = None, *,
        node: str | None = None, node_group: str | None = None,
    ) -> None:
        super().__init__()
        self.cluster = cluster
        self.workload = workload
        self.region_id = region
        #: Only the pods on this node / in this node group (filtered here: the server lists a cluster's
        #: or a workload's pods, each with its node and node group).
        self.node = node
        self.node_group = node_group
        where = f"node {node}" if node else f"node group {node_group}" if node_group else (workload or "all")
        self.crumb = f"{cluster} › {where} › pods"
        self.pods: dict[str, PodInfo] = {}
        self.loads = 0

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static(f"Pods of {self.what} in {self.cluster}: loading…", id="pods-title")
        yield FleetTable(POD_COLUMNS, id="pods")
        yield Static("", id="pod-path")
        yield from self.compose_footer()

    @property
    def what(self) -> str:
        """Whose pods these are, for the title: "checkout", "every workload on node ip-10-0-1-7"."""
        text = self.workload or "every workload"
        if self.node:
            text += f" on node {self.node}"
        if self.node_group:
            text += f" in node group {self.node_group}"
        return text

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#pods", FleetTable).focus()
        self.action_reload()
        self.set_interval(POLL_S, self.action_reload)

    def action_reload(self) -> None:
        cluster, workload = self.cluster, self.workload
        self.ask(lambda api: api.pods(cluster, workload=workload), self._show, self._failed, quiet=True)

    def _failed(self, error: BaseException) -> None:
        self.query_one("#pods-title", Static).update(_failed_text(error))

    def _show(self, pods: list[PodInfo]) -> None:
        self.loads += 1
        if self.node:
            pods = [p for p in pods if p.node == self.node]
        if self.node_group:
            pods = [p for p in pods if p.node_group == self.node_group]
        self.pods = {p.name: p for p in pods}
        if self.region_id is None and pods:
            self.region_id = pods[0].region
        ordered = sorted(pods, key=lambda p: (not p.unhealthy, p.name))
        self.query_one("#pods", FleetTable).show({p.name: pod_row(p) for p in ordered})
        bad = sum(1 for p in pods if p.unhealthy)
        restarts = sum(p.restarts for p in pods)
        self.query_one("#pods-title", Static).update(
            f"Pods of {self.what} in {self.cluster}: {len(pods)} "
            f"({bad} not ready, {restarts} restarts)   "
            "[dim]enter logs · e events · d describe · n node[/dim]"
        )
        self._show_path()

    def selected(self) -> PodInfo | None:
        key = self.query_one("#pods", FleetTable).selected_key
        return self.pods.get(key) if key else None

    def _show_path(self) -> None:
        p = self.selected()
        text = (
            ""
            if p is None
            else (
                f"{p.name} → node {p.node or '—'} → node group {p.node_group or '—'} → cluster {p.cluster} "
                f"→ region {p.region}"
            )
        )
        self.query_one("#pod-path", Static).update(text)

    def on_fleet_table_row_highlighted(self, _event: FleetTable.RowHighlighted) -> None:
        self._show_path()

    def on_fleet_table_row_selected(self, _event: FleetTable.RowSelected) -> None:
        self.action_logs()

    def _need(self) -> PodInfo | None:
        p = self.selected()
        if p is None:
            self.notify("no pod selected", severity="warning", timeout=3)
        return p

    def action_logs(self) -> None:
        p = self._need()
        if p is not None:
            self.app.push_screen(PodLogScreen(p, previous=p.restarts > 0 and p.unhealthy))

    def action_events(self) -> None:
        p = self._need()
        if p is not None:
            self.app.push_screen(PodEventsScreen(p))

    def action_describe(self) -> None:
        p = self._need()
        if p is None:
            return

        def shown(d: PodDescription) -> None:
            from opsconsole.tui.screens.dialogs import DetailScreen  # noqa: PLC0415

            self.app.push_screen(DetailScreen(f"pod {p.name}", describe_text(d), p.name))

        self.ask(lambda api: api.describe_pod(p.cluster, p.namespace, p.name), shown)

    def action_node(self) -> None:
        """The pod's region on its Nodes tab (node → node group → region)."""
        p = self._need()
        if p is None:
            return
        self.console.open_region(p.region, "nodes")
        self.notify(
            f"{p.node or 'no node'} · node group {p.node_group or '—'} · cluster {p.cluster}",
            title="pod's node",
            timeout=6,
        )


def describe_text(d: PodDescription) -> str:
    p, info = d.pod, d.details
    lines = [
        f"{p.namespace}/{p.name}  {p.status}  ready {p.ready_text}  restarts {p.restarts}  "
        f"age {kube_age(p.age_s)}",
        f"path: region {p.region} → cluster {p.cluster} → node group {p.node_group or '—'} → "
        f"node {p.node or '—'}",
        f"controlled by {info.get('controlled_by', '')} · IP {info.get('ip', '')} · "
        f"QoS {info.get('qos', '')}",
        "conditions: " + ", ".join(f"{k}={v}" for k, v in (info.get("conditions") or {}).items()),
    ]
    for c in info.get("containers") or ():
        lines += [
            f"container {c['name']}: {c['image']}",
            f"  state: {c['state']}",
            f"  last state: {c['last_state'] or '—'}",
            f"  ready {c['ready']} · restarts {c['restarts']} · requests {c['requests']}",
            f"  readiness {c['readiness'] or '—'} · liveness {c['liveness'] or '—'}",
        ]
    if d.events:
        lines.append("events:")
        lines += [f"  {e.type:<8} {e.reason:<12} x{e.count:<4} {e.message}" for e in d.events]
    return "\n".join(lines)


class PodLogScreen(ConsoleScreen):
    """A pod's container log (see the module docstring)."""

    screen_name = "pod-log"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "previous", "Previous/current"),
        Binding("f", "follow", "Follow"),
        Binding("e", "events", "Events"),
        Binding("n", "next_match(1)", "Next match", show=False),
        Binding("N", "next_match(-1)", "Previous match", show=False),
        Binding("r", "reload", "Reload"),
    ]

    def __init__(self, pod: PodInfo, *, previous: bool = False) -> None:
        super().__init__()
        self.pod = pod
        self.previous = previous
        self.following = False
        self.lines: list[str] = []
        self.search = ""
        self.matches: list[int] = []
        self._match = -1
        self.crumb = f"{pod.cluster} › {pod.name} › log"

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="log-title")
        yield RichLog(id="pod-log", max_lines=5000, wrap=False, highlight=False, markup=False)
        yield Input(placeholder="search: text, Enter to keep, Escape to clear", id="log-search")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#log-search", Input).display = False
        self.query_one("#pod-log", RichLog).focus()
        self.action_reload()
        self.set_interval(FOLLOW_S, self._tick)

    def filter_target(self) -> FleetTable | None:
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "filter":
            return True
        return super().check_action(action, parameters)

    def _title(self) -> None:
        which = "previous (terminated) container" if self.previous else "current container"
        follow = " · following" if self.following else ""
        found = f" · {len(self.matches)} line(s) match {self.search!r}" if self.search else ""
        self.query_one("#log-title", Static).update(
            f"{escape(self.pod.name)} ({self.pod.status}, {self.pod.restarts} restarts) · {which}{follow}"
            f"{escape(found)}   [dim]p previous/current · f follow · / search · e events[/dim]"
        )

    def action_reload(self) -> None:
        p, previous = self.pod, self.previous
        self.ask(
            lambda api: api.pod_log(p.cluster, p.namespace, p.name, previous=previous, tail=TAIL),
            self._show,
            self._failed,
            quiet=True,
        )

    def _tick(self) -> None:
        if self.following:
            self.action_reload()

    def _failed(self, error: BaseException) -> None:
        self.lines = []
        log = self.query_one("#pod-log", RichLog)
        log.clear()
        log.write(Text(getattr(error, "message", None) or str(error), style="red"))
        self._title()

    def _show(self, result: PodLog) -> None:
        if result.previous != self.previous:
            return  # an answer to the other toggle, come late
        new = result.lines
        log = self.query_one("#pod-log", RichLog)
        if self.following and self.lines and _is_continuation(self.lines, new):
            added = new[_overlap(self.lines, new) :]
            for line in added:
                log.write(self._styled(line))
            self.lines = self.lines + added
        else:
            log.clear()
            self.lines = new
            for line in new:
                log.write(self._styled(line))
            if not new:
                log.write(Text("(empty log)", style="dim"))
        self._find()
        self._title()

    def _styled(self, line: str) -> Text:
        style = ""
        if "ERROR" in line or "FATAL" in line or line.startswith(("Traceback", "  File", "    ")):
            style = "red"
        if self.search and self.search.lower() in line.lower():
            style = "black on yellow"
        return Text(line, style=style)

    def _find(self) -> None:
        needle = self.search.lower()
        self.matches = [i for i, line in enumerate(self.lines) if needle and needle in line.lower()]

    def _redraw(self) -> None:
        log = self.query_one("#pod-log", RichLog)
        log.clear()
        for line in self.lines:
            log.write(self._styled(line))

    def action_previous(self) -> None:
        self.previous = not self.previous
        self.lines = []
        self.action_reload()
        self._title()

    def action_follow(self) -> None:
        self.following = not self.following
        if self.following:
            log = self.query_one("#pod-log", RichLog)
            log.auto_scroll = True
            log.scroll_end(animate=False)
            self.action_reload()
        self._title()

    def action_filter(self) -> None:  # "/" searches the log
        box = self.query_one("#log-search", Input)
        box.value = self.search
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "log-search":
            super().on_input_changed(event)
            return
        self.search = event.value
        self._find()
        self._redraw()
        self._title()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "log-search":
            return
        event.input.display = False
        self.query_one("#pod-log", RichLog).focus()
        self.action_next_match(1)

    def action_next_match(self, step: int) -> None:
        if not self.matches:
            return
        self._match = (self._match + step) % len(self.matches)
        log = self.query_one("#pod-log", RichLog)
        log.auto_scroll = False
        log.scroll_to(y=self.matches[self._match], animate=False)

    def action_back(self) -> None:
        box = self.query_one("#log-search", Input)
        if box.display:
            box.display = False
            self.search = ""
            self._find()
            self._redraw()
            self._title()
            self.query_one("#pod-log", RichLog).focus()
            return
        self.app.pop_screen()

    def action_events(self) -> None:
        self.app.push_screen(PodEventsScreen(self.pod))


def _overlap(old: list[str], new: list[str]) -> int:
    """How many leading lines of ``new`` are already at the end of ``old``."""
    for size in range(min(len(old), len(new)), 0, -1):
        if old[-size:] == new[:size]:
            return size
    return 0


def _is_continuation(old: list[str], new: list[str]) -> bool:
    return _overlap(old, new) > 0


class PodEventsScreen(ConsoleScreen):
    """The events about one pod, warnings highlighted (see the module docstring)."""

    screen_name = "pod-events"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "logs", "Logs"),
        Binding("r", "reload", "Reload"),
    ]

    def __init__(self, pod: PodInfo) -> None:
        super().__init__()
        self.pod = pod
        self.events: list[EventInfo] = []
        self.crumb = f"{pod.cluster} › {pod.name} › events"

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static(f"Events of {escape(self.pod.name)}: loading…", id="events-title")
        yield FleetTable(EVENT_COLUMNS, id="pod-events")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#pod-events", FleetTable).focus()
        self.action_reload()

    def action_reload(self) -> None:
        p = self.pod
        self.ask(
            lambda api: api.pod_events(p.cluster, p.namespace, p.name), self._show, self._failed, quiet=True
        )

    def _failed(self, error: BaseException) -> None:
        self.query_one("#events-title", Static).update(_failed_text(error))

    def _show(self, events: list[EventInfo]) -> None:
        self.events = events
        rows: dict[str, Row] = {}
        for i, e in enumerate(reversed(events)):  # newest first
            warn = "yellow" if e.type == "Warning" else ""
            seen = e.last_seen.strftime("%H:%M:%S") if e.last_seen else "—"
            rows[f"{i:04d}/{e.reason}"] = (
                seen,
                Text(e.type, style=warn),
                Text(e.reason, style=warn),
                str(e.count),
                e.source,
                e.message,
            )
        self.query_one("#pod-events", FleetTable).show(rows)
        warnings = sum(1 for e in events if e.type == "Warning")
        self.query_one("#events-title", Static).update(
            f"Events of {escape(self.pod.name)}: {len(events)} ({warnings} warning(s))   [dim]l logs[/dim]"
        )

    def action_logs(self) -> None:
        self.app.push_screen(PodLogScreen(self.pod, previous=self.pod.restarts > 0 and self.pod.unhealthy))
