"""Reading the fleet: the overview (global figures, a card per region, freshness badges), a region's
drill-down (workloads, nodes, databases, caches, traffic, an hour's chart, the cross-layer path) and the
findings. Actions start from here: ``s`` scale the selected workload, ``f`` fail the region over,
``e`` stop / start a non-prod environment, Enter on a finding opens its suggested action."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Vertical
from textual.widgets import Label, Static, TabbedContent, TabPane

from opsconsole.core.fleet.model import Environment, Health, WorkloadState
from opsconsole.core.fleet.report import region_summaries, totals
from opsconsole.tui import data
from opsconsole.tui.screens.base import ConsoleScreen
from opsconsole.tui.screens.change import FIELDS, form_of
from opsconsole.tui.widgets.cards import RegionCard, sources_text, totals_text
from opsconsole.tui.widgets.table import FleetTable


def env_params(view: Any, region: str | None, wanted: Environment | None = None) -> dict[str, str]:
    """The env form's first values: a non-prod environment that has a cluster in ``region`` (the one
    asked for if it has), else one that has a cluster anywhere (region left empty: all of it); and the
    state it is not in now (a running environment is offered a stop)."""
    if view is None:
        return {"environment": "staging", "state": "stopped", "region": region or ""}
    clusters = [c for c in view.fleet.clusters.values() if c.environment is not Environment.PROD]
    here = [c for c in clusters if c.region == region]
    pick = next((c for c in here if c.environment is wanted), None) or (here[0] if here else None)
    if pick is None:
        pick = next((c for c in clusters if c.environment is wanted), None) or (
            clusters[0] if clusters else None
        )
        region = None
    if pick is None:
        return {"environment": "staging", "state": "stopped", "region": ""}
    state = view.snapshot.get(f"cluster/{pick.name}")
    running = getattr(state, "nodes", 1) > 0
    return {
        "environment": pick.environment.value,
        "state": "stopped" if running else "started",
        "region": region or "",
    }


_HEALTH_RANK = {Health.DOWN: 3, Health.DEGRADED: 2, Health.UNKNOWN: 1, Health.OK: 0}


class OverviewScreen(ConsoleScreen):
    screen_name = "overview"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "drill", "Open region"),
        Binding("w", "worst", "Worst region"),
        Binding("f", "failover", "Failover"),
        Binding("e", "environment", "Env stop/start"),
        Binding("right,l", "move(1)", "Next", show=False),
        Binding("left,h", "move(-1)", "Previous", show=False),
        Binding("down,j", "move(5)", "Down", show=False),
        Binding("up,k", "move(-5)", "Up", show=False),
        Binding("c", "compact", "Compact/cards"),
    ]
    #: Below this width the overview is one line per region (unless ``c`` chose otherwise).
    COMPACT_BELOW = 120

    def __init__(self) -> None:
        super().__init__()
        #: ``c`` pins the layout; ``None`` follows the terminal's width.
        self.compact_choice: bool | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("connecting to the fleet…", id="totals")
        yield Static("", id="sources")
        yield Grid(id="cards")
        yield FleetTable(data.REGION_COLUMNS, id="regions")
        yield from self.compose_footer()

    @property
    def compact(self) -> bool:
        if self.compact_choice is not None:
            return self.compact_choice
        return self.app.size.width < self.COMPACT_BELOW

    def _apply_layout(self) -> None:
        compact = self.compact
        grid = self.query_one("#cards", Grid)
        table = self.query_one("#regions", FleetTable)
        if grid.display == (not compact) and table.display == compact:
            return
        grid.display = not compact
        table.display = compact
        if compact:
            table.focus()
        elif self.cards:
            self.cards[0].focus()
        self.refresh_bindings()

    def on_resize(self) -> None:
        self._apply_layout()

    def action_compact(self) -> None:
        self.compact_choice = not self.compact
        self._apply_layout()
        self.show_data()

    @property
    def cards(self) -> list[RegionCard]:
        return list(self.query(RegionCard))

    def show_data(self) -> None:
        view = self.console.view
        if view is None:
            return
        self._apply_layout()
        summaries = region_summaries(view)
        stale = data.region_freshness(view, self.console.view_age_s())
        if self.compact:
            self.query_one("#regions", FleetTable).show(data.region_rows(view, self.console.history, stale))
        grid = self.query_one("#cards", Grid)
        if not self.cards:
            grid.mount_all([RegionCard(s.id) for s in summaries])
            self.call_after_refresh(self.show_data)
            if not self.compact and not isinstance(self.focused, RegionCard):
                self.call_after_refresh(lambda: self.cards and self.cards[0].focus())
            return
        worst = self.worst_region(summaries)
        self.query_one("#totals", Static).update(totals_text(totals(view), worst))
        self.query_one("#sources", Static).update(sources_text(view.snapshot.sources))
        target = view.fleet.targets.api_p95_ms
        by_id = {card.region_id: card for card in self.cards}
        for summary in summaries:
            card = by_id.get(summary.id)
            if card is not None:
                card.show(summary, target, self.console.history, stale.get(summary.id))

    @staticmethod
    def worst_region(summaries: list[Any]) -> str | None:
        def badness(s: Any) -> tuple[int, int, float]:
            severity = s.worst_severity.rank if s.worst_severity else 0
            return (_HEALTH_RANK[s.health], severity, s.p95_ms or 0.0)

        worst = max(summaries, key=badness, default=None)
        if worst is None or badness(worst)[:2] == (0, 0):
            return None
        return str(worst.id)

    def focused_region(self) -> str | None:
        if isinstance(self.focused, RegionCard):
            return self.focused.region_id
        if self.compact:
            return self.query_one("#regions", FleetTable).selected_key
        return None

    def on_fleet_table_row_selected(self, event: FleetTable.RowSelected) -> None:
        self.console.open_region(event.key)

    def action_move(self, step: int) -> None:
        cards = self.cards
        if not cards or self.compact:
            return
        index = cards.index(self.focused) if isinstance(self.focused, RegionCard) else 0
        columns = 5 if self.has_class("-wide") else 2
        step = columns if step == 5 else -columns if step == -5 else step
        cards[max(0, min(len(cards) - 1, index + step))].focus()

    def action_worst(self) -> None:
        view = self.console.view
        if view is None:
            return
        worst = self.worst_region(region_summaries(view))
        if worst is None:
            self.notify("every region is healthy", timeout=2)
            return
        self.query_one(f"#card-{worst}", RegionCard).focus()

    def action_drill(self) -> None:
        region = self.focused_region()
        if region:
            self.console.open_region(region)

    def action_failover(self) -> None:
        region = self.focused_region()
        view = self.console.view
        if region and view:
            self.console.open_action(
                "failover", {"region": region, "to": view.fleet.regions[region].failover_partner}
            )

    def action_environment(self) -> None:
        self.console.open_action("env", env_params(self.console.view, self.focused_region()))


class RegionScreen(ConsoleScreen):
    screen_name = "region"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "scale", "Scale"),
        Binding("f", "failover", "Failover"),
        Binding("e", "environment", "Env stop/start"),
        Binding("right_square_bracket", "tab(1)", "Next tab", show=False),
        Binding("left_square_bracket", "tab(-1)", "Previous tab", show=False),
        Binding("y", "copy", "Copy name", show=False),
        Binding("p", "pods", "Pods"),
    ]
    TABS = ("workloads", "nodes", "databases", "caches", "traffic", "chart")

    def __init__(self, region: str, tab: str | None = None) -> None:
        super().__init__()
        self.region_id = region
        self.crumb = region
        self._first_tab = tab

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="region-title")
        with TabbedContent(id="tabs"):
            with TabPane("Workloads", id="tab-workloads"):
                yield FleetTable(data.WORKLOAD_COLUMNS, id="workloads")
                yield Static("", id="path")
            with TabPane("Nodes", id="tab-nodes"):
                yield FleetTable(data.NODE_COLUMNS, id="nodes")
            with TabPane("Databases", id="tab-databases"):
                yield FleetTable(data.DATABASE_COLUMNS, id="databases")
            with TabPane("Caches", id="tab-caches"):
                yield FleetTable(data.CACHE_COLUMNS, id="caches")
            with TabPane("Traffic", id="tab-traffic"):
                yield FleetTable(data.TRAFFIC_COLUMNS, id="traffic")
            with TabPane("Chart", id="tab-chart"), Vertical(id="chart"):
                yield Label("p95 latency, last hour", id="p95-label")
                yield Static("", id="p95-chart")
                yield Label("requests / s, last hour", id="rps-label")
                yield Static("", id="rps-chart")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#workloads", FleetTable).focus()
        if self._first_tab is not None:
            self.show_tab(self._first_tab)

    def show_tab(self, tab: str) -> None:
        """Show ``tab`` (workloads, nodes, databases, caches, traffic, chart) and focus its table."""
        if tab not in self.TABS:
            return
        self.query_one("#tabs", TabbedContent).active = f"tab-{tab}"
        tables = self.query(f"#{tab}").results(FleetTable)
        for table in tables:
            table.focus()
        self.crumb = f"{self.region_id} › {tab}"
        self.update_crumbs()

    def action_tab(self, step: int) -> None:
        active = self.query_one("#tabs", TabbedContent).active.removeprefix("tab-")
        index = self.TABS.index(active) if active in self.TABS else 0
        self.show_tab(self.TABS[(index + step) % len(self.TABS)])

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = (event.pane.id or "").removeprefix("tab-")
        self.crumb = f"{self.region_id} › {tab}"
        self.update_crumbs()
        self.call_after_refresh(self.refresh_bindings)

    def action_copy(self) -> None:
        table = self.focused if isinstance(self.focused, FleetTable) else None
        key = table.selected_key if table is not None else None
        if key is not None:
            self.console.copy_text(key, "record key")

    def show_data(self) -> None:
        view = self.console.view
        if view is None:
            return
        region = view.fleet.regions[self.region_id]
        summary = next(s for s in region_summaries(view) if s.id == self.region_id)
        self.query_one("#region-title", Static).update(
            f"{region.id} · {region.name} · tier {region.tier} · {summary.health.value.upper()} · "
            f"partner {region.failover_partner} · {data.plural(summary.findings, 'finding')}"
        )
        # Every row, diffed by the table (a few ms for thousands of rows): the view's ChangeSet is the
        # change since the server's previous snapshot, not since the one this console last saw, so a
        # console polling slower than the server refreshes would miss changes if it trusted it.
        self.query_one("#workloads", FleetTable).show(data.workload_rows(view, self.region_id))
        self.query_one("#nodes", FleetTable).show(data.node_rows(view, self.region_id))
        self.query_one("#databases", FleetTable).show(data.database_rows(view, self.region_id))
        self.query_one("#caches", FleetTable).show(data.cache_rows(view, self.region_id))
        self.query_one("#traffic", FleetTable).show(data.traffic_rows(view, self.region_id))
        history = self.console.history
        p95, rps = history.p95(self.region_id), history.rps(self.region_id)
        chart = self.query_one("#p95-chart", Static)
        slices = max(12, min(60, (chart.size.width or 72) - 12))
        target = view.fleet.targets.api_p95_ms
        chart.update(
            data.chart_text(history.buckets(self.region_id, slices), height=5, unit="ms", target=target)
        )
        self.query_one("#rps-chart", Static).update(
            data.chart_text(history.buckets(self.region_id, slices, which=2), height=5, unit="")
        )
        if p95:
            self.query_one("#p95-label", Label).update(
                f"p95 latency, last hour: now {p95[-1]:.0f} ms, min {min(p95):.0f}, max {max(p95):.0f} "
                f"(target {view.fleet.targets.api_p95_ms:.0f})"
            )
            self.query_one("#rps-label", Label).update(
                f"requests / s, last hour: now {rps[-1]:,.0f}, min {min(rps):,.0f}, max {max(rps):,.0f}"
            )
        self._show_path()

    def _show_path(self) -> None:
        view = self.console.view
        key = self.query_one("#workloads", FleetTable).selected_key
        if view is not None and key is not None:
            self.query_one("#path", Static).update(data.cross_layer_path(view, key))

    def on_fleet_table_row_highlighted(self, _event: FleetTable.RowHighlighted) -> None:
        self._show_path()

    def after_filter(self) -> None:
        self._show_path()

    def selected_workload(self) -> WorkloadState | None:
        view = self.console.view
        key = self.query_one("#workloads", FleetTable).selected_key
        record = view.snapshot.get(key) if view is not None and key else None
        return record if isinstance(record, WorkloadState) else None

    def action_scale(self) -> None:
        w = self.selected_workload()
        if w is None:
            self.notify("select a workload first (Workloads tab)", severity="warning")
            return
        self.console.open_action(
            "scale",
            {
                "service": w.service,
                "region": w.region,
                "cluster": w.cluster,
                "replicas": w.desired,
                "environment": w.environment.value,
            },
        )

    def action_pods(self) -> None:
        """The pods of what is selected (opsconsole.tui.screens.pods): on the Workloads tab the workload's
        in its cluster; on the Nodes tab the pods of the cluster or node group (node → pods)."""
        if self.query_one("#tabs", TabbedContent).active == "tab-nodes":
            self.pods_of_node_row(self.query_one("#nodes", FleetTable).selected_key)
            return
        w = self.selected_workload()
        if w is None:
            self.notify("select a workload first (Workloads tab)", severity="warning")
            return
        self.console.open_pods(w.cluster, w.service, w.region)

    def pods_of_node_row(self, key: str | None) -> None:
        """The pods on a row of the Nodes tab: a cluster's (``cluster/NAME``) or a node group's
        (``nodegroup/CLUSTER/NAME``)."""
        kind, _, rest = (key or "").partition("/")
        if kind == "cluster" and rest:
            self.console.open_pods(rest, None, self.region_id)
        elif kind == "nodegroup" and "/" in rest:
            cluster, group = rest.split("/", 1)
            self.console.open_pods(cluster, None, self.region_id, node_group=group)
        else:
            self.notify("select a cluster or a node group first (Nodes tab)", severity="warning")

    def on_fleet_table_row_selected(self, event: FleetTable.RowSelected) -> None:
        if event.table.id == "nodes":  # Enter on a node row: the pods on it
            self.pods_of_node_row(event.key)

    def action_failover(self) -> None:
        view = self.console.view
        if view is not None:
            partner = view.fleet.regions[self.region_id].failover_partner
            self.console.open_action("failover", {"region": self.region_id, "to": partner})

    def action_environment(self) -> None:
        w = self.selected_workload()
        wanted = w.environment if w is not None and w.environment is not Environment.PROD else None
        self.console.open_action("env", env_params(self.console.view, self.region_id, wanted))


class FindingsScreen(ConsoleScreen):
    screen_name = "findings"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "suggested", "Suggested action"),
        Binding("r", "region", "Open region"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="findings-title")
        yield FleetTable(data.FINDING_COLUMNS, id="findings")
        yield Static("", id="evidence")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#findings", FleetTable).focus()

    def show_data(self) -> None:
        view = self.console.view
        if view is None:
            return
        self.query_one("#findings-title", Static).update(
            f"{data.plural(len(view.findings), 'finding')}, worst first — Enter opens the suggested action"
        )
        self.query_one("#findings", FleetTable).show(data.finding_rows(view.findings))
        self._show_evidence()

    def selected(self) -> Any:
        view = self.console.view
        key = self.query_one("#findings", FleetTable).selected_key
        return next((f for f in view.findings if f.id == key), None) if view and key else None

    def _show_evidence(self) -> None:
        finding = self.selected()
        if finding is not None:
            evidence = ", ".join(f"{k}={v}" for k, v in finding.evidence.items())
            self.query_one("#evidence", Static).update(
                f"{finding.title}\nmeasured {finding.measured} vs target {finding.target}\n{evidence}"
            )

    def on_fleet_table_row_highlighted(self, _event: FleetTable.RowHighlighted) -> None:
        self._show_evidence()

    def on_fleet_table_row_selected(self, _event: FleetTable.RowSelected) -> None:
        self.action_suggested()

    def action_region(self) -> None:
        finding = self.selected()
        if finding is not None and finding.region:
            self.console.open_region(finding.region)

    def action_suggested(self) -> None:
        finding = self.selected()
        if finding is None:
            return
        action = finding.suggested_action
        if action is None:
            self.notify("no suggested action for this finding", timeout=3)
            return
        params = dict(action.params)
        view = self.console.view
        if action.action == "scale" and view is not None:
            cluster = view.fleet.clusters.get(str(params.get("cluster")))
            if cluster is not None:
                params.setdefault("region", cluster.region)
                params.setdefault("environment", cluster.environment.value)
        # Every suggested action opens its form filled in, as the server names its parameters.
        form, fields = form_of(action.action, params)
        if form not in FIELDS:
            self.notify(f"{action.summary}", title="suggested action", timeout=8)
            return
        self.console.open_action(form, fields)
