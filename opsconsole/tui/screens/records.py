"""Schedules and audit: what non-prod does at night (and its overrides), and the hash-chained log of
every decision with the result of verifying the chain."""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import yaml
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from opsconsole.core.model import ClusterState, Environment
from opsconsole.core.service import OpsCore
from opsconsole.tui.screens.base import ConsoleScreen
from opsconsole.tui.screens.dialogs import ConfirmScreen
from opsconsole.tui.widgets.table import FleetTable

SCHEDULE_COLUMNS = (
    ("env", "Environment"),
    ("region", "Region"),
    ("state", "State"),
    ("desired", "Should be"),
    ("next", "Next transitions"),
    ("overrides", "Overrides / holds"),
    ("clusters", "Clusters"),
)


def _scheduler(core: OpsCore) -> Any | None:
    """The scheduler of the Scheduling issue, when it is there (imported lazily: it may not be yet)."""
    try:
        module = importlib.import_module("opsconsole.core.scheduler")
    except ImportError:
        return None
    return module.Scheduler(core)


class SchedulesScreen(ConsoleScreen):
    screen_name = "schedules"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k", "override('KEEP_AWAKE')", "Keep awake"),
        Binding("t", "override('SKIP_TONIGHT')", "Skip tonight"),
        Binding("d", "override('FORCE_DOWN')", "Force down"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="schedules-title")
        yield FleetTable(SCHEDULE_COLUMNS, id="schedules")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#schedules", FleetTable).focus()

    def show_data(self) -> None:
        self.console.call_core(self._read, self._show)

    def _read(self, core: OpsCore) -> tuple[bool, dict[str, tuple[Any, ...]]]:
        scheduler = _scheduler(core)
        rows: dict[str, tuple[Any, ...]] = {}
        if scheduler is not None:
            for s in scheduler.status():
                key = f"{s.environment}/{s.region or '*'}"
                nxt = ", ".join(f"{t.state} {t.at:%a %H:%M}" for t in s.next_transitions[:2])
                extra = ", ".join(
                    [f"{o.kind.value} until {o.until:%a %H:%M} ({o.created_by})" for o in s.overrides]
                    + [str(h) for h in s.holds]
                )
                state = Text(
                    str(s.applied or "not applied yet"), style="yellow" if s.applied != s.desired else "green"
                )
                rows[key] = (
                    str(s.environment),
                    s.region or "all",
                    state,
                    str(s.desired),
                    nxt,
                    extra,
                    ", ".join(s.clusters),
                )
            return True, rows
        path = core.fleet.source / "schedules.yml"
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            config = {}
        windows = config.get("environments", {}) if isinstance(config, dict) else {}
        snap = core.snapshot
        for cluster in sorted(core.fleet.clusters.values(), key=lambda c: (c.environment.value, c.name)):
            if cluster.environment is Environment.PROD:
                continue
            record = snap.get(f"cluster/{cluster.name}") if snap else None
            nodes = f"{record.nodes} nodes" if isinstance(record, ClusterState) else "no data"
            window = windows.get(cluster.environment.value) or {}
            rows[cluster.name] = (
                cluster.environment.value,
                cluster.region,
                nodes,
                str(window.get("uptime", "always up")),
                "—",
                "—",
                cluster.name,
            )
        return False, rows

    def _show(self, result: tuple[bool, dict[str, tuple[Any, ...]]]) -> None:
        live, rows = result
        self.query_one("#schedules-title", Static).update(
            "non-prod schedules (scheduler)"
            if live
            else "non-prod environments — static view of inventory/schedules.yml (no scheduler installed)"
        )
        self.query_one("#schedules", FleetTable).show(rows)

    def action_override(self, kind: str) -> None:
        if not self.console.may_write("override"):
            return
        key = self.query_one("#schedules", FleetTable).selected_key
        who = self.console.who
        if key is None or who is None:
            return
        environment, _, region = key.partition("/")

        def apply(core: OpsCore) -> Any:
            scheduler = _scheduler(core)
            if scheduler is None:
                raise RuntimeError(
                    "overrides need the scheduler (opsconsole.core.scheduler), not installed yet"
                )
            module = importlib.import_module("opsconsole.core.scheduler")
            return scheduler.override(
                environment,
                getattr(module.OverrideKind, kind),
                who=who,
                face="tui",
                region=None if region in ("", "*") else region,
            )

        def applied(_result: Any) -> None:
            self.notify(f"{kind.lower()} set on {key}")
            self.show_data()

        def answered(yes: bool | None) -> None:
            if yes:
                self.console.call_core(apply, applied)

        self.app.push_screen(ConfirmScreen(f"{kind.replace('_', ' ').lower()} for {key}?", "Apply"), answered)


AUDIT_COLUMNS = (
    ("seq", "#"),
    ("at", "At"),
    ("kind", "Kind"),
    ("actor", "Actor"),
    ("face", "Face"),
    ("request", "Request"),
    ("data", "Data"),
)


class AuditScreen(ConsoleScreen):
    screen_name = "audit"

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("verifying the chain…", id="verify")
        yield FleetTable(AUDIT_COLUMNS, id="audit")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#audit", FleetTable).focus()

    def show_data(self) -> None:
        self.console.call_core(
            lambda core: (core.pipeline.audit.entries(limit=500), core.pipeline.audit.verify()), self._show
        )

    def _show(self, result: tuple[list[Any], Any]) -> None:
        entries, verification = result
        if verification.ok:
            text = Text(
                f"chain verified: {verification.checked} entries, head #{verification.head_seq}",
                style="green",
            )
        else:
            text = Text(
                f"CHAIN BROKEN at #{verification.first_bad_seq}: {verification.problem}", style="bold red"
            )
        self.query_one("#verify", Static).update(text)
        rows = {
            str(e.seq): (
                str(e.seq),
                f"{e.at:%m-%d %H:%M:%S}",
                e.kind,
                e.actor,
                e.face,
                (e.request_id or "")[:8],
                " ".join(f"{k}={v}" for k, v in e.data.items())[:80],
            )
            for e in reversed(entries)
        }
        self.query_one("#audit", FleetTable).show(rows)
