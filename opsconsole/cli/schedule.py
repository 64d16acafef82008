"""``opsconsole schedule …``: non-prod schedules from the terminal.

``eval`` answers "would this spec be up then?" on this machine without asking anyone (for writing
schedules.yml). ``show`` asks the ops server for each environment's state, next transitions, overrides
and holds; ``override`` asks it to keep an environment awake, skip tonight or force it down, as the
token's person (rbac.yml on the server decides whether they may). ``preview`` draws the timeline of the
schedules.yml in the inventory here, with the overrides the server has in force.

``run`` runs a scheduler in the foreground, and only on the sandbox: on a team server (or for the live
fleet) the server runs the one scheduler, so a second one here would be neither needed nor allowed.
"""

from __future__ import annotations

import json
import signal
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from opsconsole.cli.context import CliContext, cli_context, out
from opsconsole.core.errors import OpsError, UsageError
from opsconsole.styles import SCHEDULE_STATE_STYLE, style

if TYPE_CHECKING:
    from opsconsole.core.schedule.engine import EnvironmentStatus, Override, Schedules

schedule_app = typer.Typer(help="Non-prod schedules: eval, show, preview, override, run.",
                           no_args_is_help=True)

#: The chart: one cell per 4 hours, six a day, so that 14 days fit a 120-column terminal.
CELL_MIN = 240
CELLS_PER_DAY = 1440 // CELL_MIN
#: The CLI's names of the override kinds, and the names on the wire.
KIND_NAMES = {"keep-awake": "keep_awake", "skip-tonight": "skip_tonight", "force-down": "force_down"}
UP, DOWN = "up", "down"


def _instant(text: str, option: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: expected an ISO-8601 time such as 2026-11-27T07:30:00+01:00"
        ) from None
    try:
        # Every zone's local time of it must exist too (9999-12-31T23:59:59Z is past the calendar's end
        # east of UTC): two days of margin either side.
        (at - timedelta(days=2)) + timedelta(days=4)
    except OverflowError:
        raise UsageError(f"{option} {text!r}: out of range (expected a time between years 1 and 9998)") \
            from None
    return at


def _local_schedules(state: CliContext) -> Schedules:
    """schedules.yml of the inventory on this machine (``--inventory``, else the default)."""
    from opsconsole.core.fleet.inventory import load_inventory  # noqa: PLC0415 — keeps `--help` fast
    from opsconsole.core.schedule.engine import load_schedules  # noqa: PLC0415

    fleet = load_inventory(state.inventory)
    return load_schedules(fleet.source, fleet)


@schedule_app.command("eval")
def schedule_eval(
    at: Annotated[list[str], typer.Option("--at", help="An ISO-8601 instant (repeatable).")],
    spec: Annotated[
        str | None,
        typer.Argument(help='A kube-downscaler spec, e.g. "Mon-Fri 07:30-20:30 Europe/Berlin".'),
    ] = None,
    period: Annotated[
        list[str] | None,
        typer.Option(
            "--period",
            help='An Instance Scheduler period instead of a spec (repeatable: up if any runs), e.g. '
                 '\'{begintime: "09:00", endtime: "17:00", weekdays: "mon-fri"}\'.',
        ),
    ] = None,
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="Zone for naive --at values and zone-less parts; the periods' zone "
                                  "(default UTC, as Instance Scheduler's)."),
    ] = None,
) -> None:
    """Print, per --at and in order, one line: up or down (for a spec, or for --period)."""
    from opsconsole.core.schedule.timespec import evaluate, evaluate_periods  # noqa: PLC0415

    if spec is not None and period:
        raise UsageError("give either a kube-downscaler SPEC or --period, not both")
    if spec is None and not period:
        raise UsageError('give a kube-downscaler SPEC (e.g. "Mon-Fri 07:30-20:30 Europe/Berlin") or --period')
    periods = [_period(text, i + 1) for i, text in enumerate(period or [])]
    instants = [_instant(text, "--at") for text in at]
    for instant in instants:
        up = evaluate(spec, instant, tz=tz) if spec is not None else evaluate_periods(periods, instant, tz=tz)
        out.print(UP if up else DOWN)


def _period(text: str, number: int) -> dict[str, object]:
    """One ``--period`` value: a YAML / JSON mapping as in an Instance Scheduler period."""
    import yaml  # noqa: PLC0415

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at column {mark.column + 1}" if mark is not None else ""
        raise UsageError(f"--period {number} {text!r}: not a YAML mapping{where}") from None
    if not isinstance(data, dict):
        raise UsageError(
            f"--period {number} {text!r}: expected a mapping such as "
            '{begintime: "09:00", endtime: "17:00", weekdays: "mon-fri"}'
        )
    return {str(k): v for k, v in data.items()}


def _when(at: datetime | None, zone: str) -> str:
    if at is None:
        return "—"
    from opsconsole.core.schedule.timespec import zone as zone_info  # noqa: PLC0415

    return at.astimezone(zone_info(zone)).strftime("%a %d %b %H:%M %Z")


def _document(status: EnvironmentStatus) -> dict[str, object]:
    return {
        "environment": status.environment, "region": status.region, "desired": status.desired,
        "scheduled": status.scheduled, "applied": status.applied,
        "next_transitions": [{"at": t.at.isoformat(), "state": t.state} for t in status.next_transitions],
        "overrides": [{"id": o.id, "kind": o.kind.value, "until": o.until.isoformat(), "by": o.created_by,
                       "region": o.region} for o in status.overrides],
        "holds": list(status.holds),
        "warning_at": status.warning_at.isoformat() if status.warning_at else None,
        "clusters": list(status.clusters),
    }


def _zones(state: CliContext) -> dict[str, str]:
    """Each (environment:region)'s time zone from the local schedules.yml; none when it is unreadable
    (a team server's inventory need not be on this machine: times are then shown in UTC)."""
    try:
        return {u.key: u.timezone for u in _local_schedules(state).units}
    except OpsError:
        return {}


@schedule_app.command("show")
def schedule_show(
    ctx: typer.Context,
    environment: Annotated[str | None, typer.Argument(help="staging or dev (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each environment and region: its state now and its next transitions (in the region's time)."""
    state = cli_context(ctx)
    with state.open_client() as ops:
        _now, everything = ops.schedules()
    environments = sorted({s.environment for s in everything})
    if environment is not None and environment not in environments:
        raise UsageError(f"{environment}: no schedule for it; scheduled environments: "
                         f"{', '.join(environments) or 'none'}")
    statuses = [s for s in everything if environment in (None, s.environment)]
    if as_json:
        print(json.dumps([_document(s) for s in statuses], indent=2))
        return
    zones = _zones(state)
    table = Table(box=None, header_style="bold")
    for column in ("env", "region", "now", "schedule", "applied", "next", "then", "overrides / holds"):
        table.add_column(column)
    for s in statuses:
        zone = zones.get(f"{s.environment}:{s.region}", "UTC")
        nxt = s.next_transitions
        notes = [f"{o.kind.value} until {_when(o.until, zone)} by {o.created_by}" for o in s.overrides]
        notes += [f"[red]hold[/]: {h}" for h in s.holds]
        table.add_row(
            s.environment, s.region or "*",
            Text(s.desired, style=style(SCHEDULE_STATE_STYLE, s.desired, "yellow")),
            s.scheduled,
            Text(s.applied or "unknown", style=style(SCHEDULE_STATE_STYLE, s.applied)),
            f"{nxt[0].state} {_when(nxt[0].at, zone)}" if nxt else "—",
            f"{nxt[1].state} {_when(nxt[1].at, zone)}" if len(nxt) > 1 else "—",
            "\n".join(notes) or "",
        )
    out.print(table)


@schedule_app.command("preview")
def schedule_preview(
    ctx: typer.Context,
    days: Annotated[int, typer.Option("--days", min=1, max=60, help="How many days ahead.")] = 14,
) -> None:
    """A timeline per environment and region (█ up, · down; one cell per 4 hours, in UTC), the hours
    down and the saving, estimated from schedules.yml's instance prices × each cluster's nominal nodes."""
    from opsconsole.core.schedule.engine import timeline  # noqa: PLC0415

    state = cli_context(ctx)
    schedules = _local_schedules(state)
    with state.open_client() as ops:
        now, statuses = ops.schedules()
    overrides: dict[str, Override] = {o.id: o for s in statuses for o in s.overrides if o.until > now}
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = days * 1440
    table = Table(box=None, header_style="bold", title=f"{days} days from {start:%a %d %b} 00:00 UTC")
    table.add_column("env", no_wrap=True, min_width=7)
    table.add_column("region", no_wrap=True, min_width=14)
    day_heads = " ".join(f"{(start + timedelta(days=d)):%a%d}".ljust(CELLS_PER_DAY) for d in range(days))
    table.add_column(day_heads, no_wrap=True)
    table.add_column("down h", justify="right")
    table.add_column("$/h up", justify="right")
    table.add_column("saving $", justify="right")
    total_down = total_saving = 0.0
    in_force = sorted(overrides.values(), key=lambda o: o.created_at)
    for unit in schedules.units:
        line = timeline(unit, start, minutes, in_force)
        cells = []
        for i in range(0, minutes, CELL_MIN):
            block = line[i:i + CELL_MIN]
            cells.append("█" if sum(block) * 2 >= len(block) else "·")
        chart = " ".join("".join(cells[d * CELLS_PER_DAY:(d + 1) * CELLS_PER_DAY]) for d in range(days))
        down_h = (minutes - sum(line)) / 60
        saving = down_h * unit.hourly_cost
        total_down += down_h
        total_saving += saving
        table.add_row(unit.environment, unit.region, Text(chart, style="green"), f"{down_h:.0f}",
                      f"{unit.hourly_cost:.2f}", f"{saving:,.0f}")
    table.add_row("", "", "total", f"{total_down:.0f}", "", f"{total_saving:,.0f}", style="bold")
    out.print(table)
    out.print("[dim]Saving: hours down × (nominal nodes × on-demand price per hour) from schedules.yml; "
              "spot discounts and storage left out.[/]")


@schedule_app.command("override")
def schedule_override(
    ctx: typer.Context,
    environment: Annotated[str, typer.Argument(help="staging or dev.")],
    kind: Annotated[str, typer.Argument(help="keep-awake, skip-tonight or force-down.")],
    until: Annotated[str | None, typer.Option("--until", help="ISO-8601 end (defaults per kind).")] = None,
    region: Annotated[str | None, typer.Option("--region", "-r", help="Only this region.")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the audit).")] = None,
) -> None:
    """Keep an environment up, skip tonight's shutdown, or force it down — until a time; audited."""
    if kind not in KIND_NAMES:
        raise UsageError(f"{kind}: expected one of {', '.join(KIND_NAMES)}")
    until_at = _instant(until, "--until") if until is not None else None
    if until_at is not None and (until_at.tzinfo is None or until_at.utcoffset() is None):
        until_at = until_at.replace(tzinfo=UTC)
    with cli_context(ctx).open_client() as ops:
        made: Any = ops.schedule_override(environment, KIND_NAMES[kind], until=until_at, region=region,
                                          reason=reason)
    where = f" in {made.region}" if made.region else ""
    until_utc = made.until.astimezone(UTC)
    out.print(f"[green]{made.kind.value}[/] {made.environment}{where} until {until_utc:%Y-%m-%d %H:%M} UTC "
              f"(override {made.id[:8]}, by {made.created_by})")


@schedule_app.command("run")
def schedule_run(
    ctx: typer.Context,
    tick_s: Annotated[float, typer.Option("--tick", min=1.0, help="Seconds between passes.")] = 30.0,
) -> None:
    """Run the scheduler on the sandbox in the foreground (Ctrl-C stops); a team server runs its own."""
    state = cli_context(ctx)
    if state.live or state.uses_server:
        raise UsageError("the ops server runs the scheduler for the fleet it serves; `schedule run` drives "
                         "the local sandbox only (see `opsconsole schedule show`)")
    from opsconsole.core.schedule.engine import Scheduler  # noqa: PLC0415
    from opsconsole.wiring import sandbox_core  # noqa: PLC0415

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with sandbox_core(state.inventory) as core:
        scheduler = Scheduler(core, tick_s=tick_s)
        count = len(scheduler.schedules.units)
        out.print(f"Scheduler {scheduler.instance_id}: {count} schedules; Ctrl-C stops.")
        try:
            while not stop.is_set():
                report = scheduler.tick()
                stamp = f"{report.at:%H:%M:%S}"
                for line in report.filed:
                    out.print(f"{stamp} filed {line}")
                for key in report.warnings:
                    out.print(f"{stamp} warning {key}")
                for line in (*report.held, *report.errors):
                    out.print(f"{stamp} [yellow]{line}[/]")
                for override_id in report.expired:
                    out.print(f"{stamp} override {override_id[:8]} expired")
                stop.wait(tick_s)
        except KeyboardInterrupt:
            pass
        finally:
            scheduler.stop()
    out.print("Scheduler stopped.")
