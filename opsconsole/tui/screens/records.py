"""Schedules and audit: what non-prod does at night (and its overrides), and the hash-chained log of
every decision with the result of verifying the chain — both as the ops server reports them
(:meth:`OpsApi.schedules`, :meth:`OpsApi.audit`, :meth:`OpsApi.audit_verify`). The scheduler's records
are read by attribute: importing its module would pull the store in at the console's start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from opsconsole.tui.data import Column
from opsconsole.tui.screens.base import ConsoleScreen
from opsconsole.tui.screens.dialogs import ConfirmScreen, DetailScreen
from opsconsole.tui.widgets.table import FleetTable

if TYPE_CHECKING:
    from opsconsole.core.schedule.engine import EnvironmentStatus, Override

#: The scheduler's word for a shutdown transition (``opsconsole.core.schedule.engine.DOWN``).
DOWN = "down"
#: The overrides the keys set (``OverrideKind`` values).
OVERRIDE_KINDS = ("keep_awake", "skip_tonight", "force_down")

SCHEDULE_COLUMNS = (
    Column("env", "Environment", short="Env"),
    Column("region", "Region"),
    Column("state", "State now"),
    Column("desired", "Should be", drop=2),
    Column("next", "Next transitions (UTC / local)", short="Next (UTC)", flex=True, max_width=60),
    Column("overrides", "Overrides / holds", short="Overrides", flex=True, max_width=80),
    Column("clusters", "Clusters", drop=1, flex=True),
)


def when(moment: datetime, *, day: bool = True) -> str:
    """``Mon 19:00 UTC (20:00 local)``: the console says which clock (the CLI shows local time)."""
    utc = moment.astimezone(UTC)
    local = moment.astimezone()
    text = f"{utc:%a %H:%M} UTC" if day else f"{utc:%H:%M} UTC"
    if local.utcoffset() == utc.utcoffset():
        return text
    return f"{text} ({local:%H:%M} local)"


@dataclass(frozen=True)
class ScheduleView:
    """One read of the scheduler: its status per (environment, region), at ``now`` (the server's clock)."""

    now: datetime
    statuses: tuple[EnvironmentStatus, ...]


def schedule_rows(statuses: tuple[EnvironmentStatus, ...]) -> dict[str, tuple[Any, ...]]:
    rows: dict[str, tuple[Any, ...]] = {}
    for s in statuses:
        nxt = ", ".join(f"{t.state} {when(t.at)}" for t in s.next_transitions[:2])
        extra = (
            ", ".join(
                [f"{o.kind.value} until {when(o.until)} by {o.created_by}" for o in s.overrides]
                + list(s.holds)
            )
            or "—"
        )
        if s.applied is None:
            # The scheduler has not changed this environment since the server started: what it runs
            # now is whatever it was left in.
            state = Text(f"untouched (to be {s.desired})", style="yellow")
        else:
            state = Text(str(s.applied), style="yellow" if s.applied != s.desired else "green")
        rows[f"{s.environment}/{s.region or '*'}"] = (
            s.environment,
            s.region or "all",
            state,
            s.desired,
            nxt,
            extra,
            ", ".join(s.clusters),
        )
    return rows


def shutdown_warnings(view: ScheduleView) -> list[str]:
    """The shutdowns whose warning lead has begun (the scheduler's ``warning_at`` is past), soonest first."""
    out: list[tuple[datetime, str]] = []
    for s in view.statuses:
        down = next((t.at for t in s.next_transitions if t.state == DOWN), None)
        if s.warning_at is None or down is None or not s.warning_at <= view.now < down:
            continue
        minutes = (down - view.now).total_seconds() / 60
        out.append(
            (
                down,
                f"{s.environment} in {s.region or 'every region'} shuts down at "
                f"{when(down, day=False)} (in {minutes:.0f} min)",
            )
        )
    return [text for _, text in sorted(out)]


class SchedulesScreen(ConsoleScreen):
    """Non-prod environments as the server's scheduler sees them; ``k`` / ``t`` / ``d`` set an override on
    the selected row (the server checks the role and audits), and a banner names every shutdown whose
    warning lead has begun (the warning Slack gets too)."""

    screen_name = "schedules"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k", "override('keep_awake')", "Keep awake"),
        Binding("t", "override('skip_tonight')", "Skip tonight"),
        Binding("d", "override('force_down')", "Force down"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.schedule: ScheduleView | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("non-prod schedules", id="schedules-title")
        yield Static("", id="schedule-warning")
        yield FleetTable(SCHEDULE_COLUMNS, id="schedules", vim_keys=False)
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#schedule-warning", Static).display = False
        self.query_one("#schedules", FleetTable).focus()

    def show_data(self) -> None:
        if self.console.api is None:
            return

        def read(api: Any) -> ScheduleView:
            now, statuses = api.schedules()
            return ScheduleView(now, tuple(statuses))

        self.ask(read, self._show)

    def _show(self, view: ScheduleView) -> None:
        self.schedule = view
        warnings = shutdown_warnings(view)
        banner = self.query_one("#schedule-warning", Static)
        banner.display = bool(warnings)
        banner.update(
            Text("\n").join(
                Text(f" ⚠ {w} — k keep awake, t skip tonight ", style="bold black on yellow")
                for w in warnings
            )
        )
        self.query_one("#schedules", FleetTable).show(schedule_rows(view.statuses))

    def action_override(self, kind: str) -> None:
        if kind not in OVERRIDE_KINDS or not self.console.may_write("override"):
            return
        key = self.query_one("#schedules", FleetTable).selected_key
        if key is None:
            return
        environment, _, region = key.partition("/")

        def applied(override: Override) -> None:
            what = str(getattr(override.kind, "value", override.kind))
            self.notify(f"{what} on {key} until {override.until:%a %H:%M} UTC", title="override")
            self.show_data()

        def answered(yes: bool | None) -> None:
            if yes:
                self.ask(
                    lambda api: api.schedule_override(
                        environment, kind, region=None if region == "*" else region
                    ),
                    applied,
                )

        self.app.push_screen(ConfirmScreen(f"{kind.replace('_', ' ')} for {key}?", "Apply"), answered)


AUDIT_COLUMNS = (
    Column("seq", "#"),
    Column("at", "At (UTC)"),
    Column("kind", "Kind"),
    Column("actor", "Actor"),
    Column("face", "Face", drop=2),
    Column("request", "Request", drop=1),
    Column("data", "Data (enter: all of it)", short="Data", flex=True, max_width=400),
)


class AuditScreen(ConsoleScreen):
    """The hash-chained log, newest first; Enter opens an entry in full, ``y`` copies its request id."""

    screen_name = "audit"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open entry"),
        Binding("y", "copy", "Copy id"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("verifying the chain…", id="verify")
        yield FleetTable(AUDIT_COLUMNS, id="audit")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#audit", FleetTable).focus()

    def show_data(self) -> None:
        if self.console.api is not None:
            self.ask(lambda api: (api.audit(limit=500), api.audit_verify()), self._show)

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
                " ".join(f"{k}={v}" for k, v in e.data.items()),
            )
            for e in reversed(entries)
        }
        self.entries = {str(e.seq): e for e in entries}
        self.query_one("#audit", FleetTable).show(rows)

    def selected(self) -> Any:
        key = self.query_one("#audit", FleetTable).selected_key
        return self.entries.get(key) if key is not None else None

    def on_fleet_table_row_selected(self, _event: FleetTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        e = self.selected()
        if e is None:
            return
        fields = [
            f"at       {e.at:%Y-%m-%d %H:%M:%S %Z}",
            f"kind     {e.kind}",
            f"actor    {e.actor} (via {e.face})",
            f"request  {e.request_id or '—'}",
            "data:",
            *[f"  {k}: {v}" for k, v in e.data.items()],
        ]
        for name in ("hash", "prev_hash"):
            if getattr(e, name, None):
                fields.append(f"{name:<8} {getattr(e, name)}")
        self.app.push_screen(
            DetailScreen(f"audit entry #{e.seq}", "\n".join(fields), e.request_id or str(e.seq))
        )

    def action_copy(self) -> None:
        e = self.selected()
        if e is not None:
            self.console.copy_text(
                e.request_id or str(e.seq), "request id" if e.request_id else "entry number"
            )
