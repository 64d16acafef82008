"""The ``opsconsole`` command line: a thin face over the core, for scripts and quick looks.

Every command builds the core through :mod:`opsconsole.wiring`, asks it one question and renders the
answer, as a table for people or as a documented JSON document (``--json``) for scripts. A user's
mistake (bad inventory, unknown region, bad incident name) is printed as one clear message on stderr
with exit code 2; a failure of the machine (a source or the sandbox broken) exits 1. Nobody is shown a
traceback for either.

Until the Textual console lands, ``opsconsole`` with no command prints the fleet status.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from opsconsole import __version__
from opsconsole.core.errors import OpsError, UsageError
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.inventory import default_inventory_path, load_inventory
from opsconsole.core.fleet.model import Health, Severity
from opsconsole.core.fleet.report import findings_document, region_summaries, status_document, totals
from opsconsole.core.fleet.view import FleetView
from opsconsole.sandbox.incidents import IncidentKind, parse_kind

app = typer.Typer(
    help="Platform-ops console for the multi-cloud fleet (sandbox by default).",
    no_args_is_help=False,
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
fleet_app = typer.Typer(help="Read the fleet: status and findings.", no_args_is_help=True)
sandbox_app = typer.Typer(help="Drive the embedded sandbox world.", no_args_is_help=True)
inventory_app = typer.Typer(help="Validate an inventory.", no_args_is_help=True)
app.add_typer(fleet_app, name="fleet")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(inventory_app, name="inventory")

#: Piped output is not squeezed into rich's default 80 columns; COLUMNS still wins when set.
PIPED_WIDTH = 160
_piped = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
out = Console(highlight=False, width=PIPED_WIDTH if _piped else None)
err = Console(stderr=True, highlight=False)

HEALTH_STYLE = {Health.OK: "green", Health.DEGRADED: "yellow", Health.DOWN: "bold red", Health.UNKNOWN: "dim"}
CLOUD_ABBREVIATION = {"azure": "az"}
SEVERITY_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
}


class _State:
    """Global options, shared by the sub-commands through the click context."""

    def __init__(self, inventory: Path | None, acting_as: str | None, live: bool = False) -> None:
        self.inventory = inventory
        self.acting_as = acting_as
        self.live = live


def _state(ctx: typer.Context) -> _State:
    state = ctx.find_root().obj
    return state if isinstance(state, _State) else _State(None, None)


def _sandbox_cast(inventory: Path | None) -> dict[str, Any]:
    root = inventory or default_inventory_path()
    rbac = (root if root.is_dir() else root.parent) / "rbac.yml"
    try:
        data = yaml.safe_load(rbac.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    cast = data.get("sandbox_cast") if isinstance(data, dict) else None
    return cast if isinstance(cast, dict) else {}


def _version(value: bool) -> None:
    if value:
        out.print(f"opsconsole {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    inventory: Annotated[
        Path | None,
        typer.Option(
            "--inventory", "-i", envvar="OPSCONSOLE_INVENTORY", help="Inventory directory or hosts.yml."
        ),
    ] = None,
    acting_as: Annotated[
        str | None, typer.Option("--as", help="Act as a member of the sandbox cast (sandbox only).")
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live", envvar="OPSCONSOLE_LIVE",
            help="Read the real clouds named in the inventory's opsconsole_clouds, not the sandbox.",
        ),
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="The console shows everything and changes nothing.")
    ] = False,
) -> None:
    """Open the console (the Textual TUI in a terminal; piped, print the fleet status)."""
    if live and acting_as is not None:
        raise UsageError("--as acts as a member of the sandbox cast; it cannot be combined with --live")
    if live and ctx.invoked_subcommand == "sandbox":
        raise UsageError("the sandbox commands drive the simulated world; drop --live to use them")
    if acting_as is not None:
        cast = _sandbox_cast(inventory)
        if acting_as not in cast:
            names = ", ".join(sorted(cast)) or "none defined in rbac.yml"
            raise UsageError(f"--as {acting_as}: not in the sandbox cast; expected one of: {names}")
    ctx.obj = _State(inventory, acting_as, live)
    if ctx.invoked_subcommand is None:
        if sys.stdin.isatty() and sys.stdout.isatty():
            from opsconsole.tui import run  # noqa: PLC0415 - Textual loads only when the console opens

            run(inventory, acting_as=acting_as, live=live, read_only=read_only)
            return
        _print_status(_refresh(ctx.obj), region=None)


# -- fleet ---------------------------------------------------------------------------------------------


@contextmanager
def _progress(message: str) -> Iterator[None]:
    """A spinner on stderr while the core works, only when a person is watching."""
    if err.is_terminal:
        with err.status(message):
            yield
    else:
        yield


def _refresh(state: _State) -> FleetView:
    with _progress("Reading the fleet…"), _core(state) as core:
        return core.refresh()


def _core(state: _State) -> AbstractContextManager[OpsCore]:
    """The core on the sandbox, or on the real clouds with ``--live``."""
    from opsconsole.wiring import live_core, sandbox_core  # noqa: PLC0415 — keeps `--help` fast

    return live_core(state.inventory) if state.live else sandbox_core(state.inventory)


def _check_region(view: FleetView, region: str | None) -> None:
    if region is not None and region not in view.fleet.regions:
        known = ", ".join(sorted(view.fleet.regions))
        raise UsageError(f"--region {region}: unknown region; expected one of: {known}")


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _availability(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.3f}%"


@fleet_app.command("status")
def fleet_status(
    ctx: typer.Context,
    region: Annotated[str | None, typer.Option("--region", "-r", help="Only this region.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The opsconsole.fleet.status/v1 document.")] = False,
    watch: Annotated[
        float | None,
        typer.Option("--watch", "-w", min=0.5, max=3600, help="Redraw every N seconds until Ctrl-C."),
    ] = None,
) -> None:
    """Per region: tier, clouds, health, p95 vs target, availability, replica lag, pods, nodes, findings."""
    if watch is not None:
        if as_json:
            raise UsageError("--watch and --json cannot be combined; poll --json from your script instead")
        _watch_status(_state(ctx), region, watch)
        return
    view = _refresh(_state(ctx))
    _check_region(view, region)
    if as_json:
        print(json.dumps(status_document(view, region), indent=2))
    else:
        _print_status(view, region)


def _watch_status(state: _State, region: str | None, every_s: float) -> None:
    """Keep one core (and so one fleet engine) alive and redraw the status in place."""
    with _core(state) as core:
        view = core.refresh()
        _check_region(view, region)
        try:
            with Live(_status_view(view, region), console=out, auto_refresh=False) as live:
                while True:
                    time.sleep(every_s)
                    view = core.refresh()
                    live.update(_status_view(view, region), refresh=True)
        except KeyboardInterrupt:
            pass


def _print_status(view: FleetView, region: str | None) -> None:
    out.print(_status_view(view, region))


def _status_view(view: FleetView, region: str | None) -> Group:
    """The status screen as one renderable, printed once or redrawn by ``--watch``."""
    lines: list[RenderableType] = []
    targets = view.fleet.targets
    total = totals(view)
    stamp = view.snapshot.taken_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    partial = " [bold yellow](partial: some sources stale or failed)[/]" if total.partial else ""
    lines.append(f"[bold]Fleet status[/] at {stamp}{partial}")
    p95_style = "red" if (total.worst_p95_ms or 0) > targets.api_p95_ms else "green"
    lines.append(
        f"  traffic {total.rps:,.0f} rps / {total.api_rps_target:,.0f} target · "
        f"users {total.concurrent_users:,} · "
        f"p95 [{p95_style}]{_fmt(total.api_p95_ms, '.0f')} ms[/] (worst {_fmt(total.worst_p95_ms, '.0f')}) "
        f"/ {targets.api_p95_ms:.0f} ms · avg {_fmt(total.global_avg_latency_ms, '.0f')} ms "
        f"/ {targets.global_avg_latency_ms:.0f} ms"
    )
    lines.append(
        f"  availability {_availability(total.availability)} / {targets.availability_platform * 100:.2f}% · "
        f"error-budget burn {_fmt(total.error_budget_burn, '.1f', 'x')} · "
        f"worst replica lag {_fmt(total.worst_replica_lag_s, '.1f', ' s')} / RPO {targets.rpo_db_s:.0f} s · "
        f"DB {total.db_tps:,.0f} tps"
    )
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for column, justify in (
        ("region", "left"), ("tier", "right"), ("clouds", "left"), ("health", "left"), ("p95 ms", "right"),
        ("avail", "right"), ("rps", "right"), ("db", "left"), ("lag s", "right"), ("pods", "right"),
        ("nodes", "right"), ("cache", "right"), ("findings", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for summary in region_summaries(view):
        if region is not None and summary.id != region:
            continue
        clouds = "/".join(
            f"{CLOUD_ABBREVIATION.get(cloud, cloud)}{share * 100:.0f}"
            for cloud, share in summary.cloud_mix.items()
        )
        p95 = Text(_fmt(summary.p95_ms, ".0f"))
        if summary.p95_ms is not None and summary.p95_ms > targets.api_p95_ms:
            p95.stylize("bold red")
        lag = Text(_fmt(summary.replica_lag_s, ".1f"))
        if summary.replica_lag_s is not None and summary.replica_lag_s > targets.rpo_db_s:
            lag.stylize("bold red")
        findings = Text(str(summary.findings))
        if summary.worst_severity is not None:
            findings.stylize(SEVERITY_STYLE[summary.worst_severity])
        table.add_row(
            f"{summary.id}",
            str(summary.tier),
            clouds,
            Text(summary.health.value, style=HEALTH_STYLE[summary.health]),
            p95,
            _availability(summary.availability),
            _fmt(summary.rps, ",.0f"),
            "primary" if summary.db_role == "write_primary" else ("replica" if summary.db_role else "—"),
            lag,
            f"{summary.pods_ready}/{summary.pods_desired}",
            f"{summary.nodes_ready}/{summary.nodes}",
            summary.cache_nodes or "—",
            findings,
        )
    lines.append(table)
    sources = " · ".join(
        f"{s.name} [{'green' if s.status.value == 'ok' else 'yellow'}]{s.status.value}[/]"
        + (f" ({s.error})" if s.error else "")
        + (f" age {s.age_s:.1f} s" if s.age_s is not None else "")
        for s in view.snapshot.sources
    )
    count = sum(1 for f in view.findings if region is None or f.region == region)
    lines.append(f"  sources: {sources}")
    lines.append(f"  {count} finding(s); details: opsconsole fleet findings")
    return Group(*lines)


@fleet_app.command("findings")
def fleet_findings(
    ctx: typer.Context,
    region: Annotated[str | None, typer.Option("--region", "-r", help="Only this region.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The fleet.findings/v1 JSON document.")] = False,
) -> None:
    """What is off target, worst first, with the measured figure, the target and a suggested action."""
    view = _refresh(_state(ctx))
    _check_region(view, region)
    if as_json:
        print(json.dumps(findings_document(view, region), indent=2))
        return
    findings = [f for f in view.findings if region is None or f.region == region]
    if not findings:
        out.print("[green]No findings:[/] every target is met.")
        return
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for column in ("severity", "region", "finding", "measured", "target", "suggested action"):
        table.add_column(column)
    for finding in findings:
        action = finding.suggested_action
        table.add_row(
            Text(finding.severity.value, style=SEVERITY_STYLE[finding.severity]),
            finding.region or "fleet",
            finding.title,
            _measure(finding.measured),
            _measure(finding.target),
            action.summary if action else "—",
        )
    out.print(table)


def _measure(value: float | str) -> str:
    return f"{value:,.4g}" if isinstance(value, float) else str(value)


# -- sandbox -------------------------------------------------------------------------------------------


def _world_store(state: _State) -> Any:
    from opsconsole.wiring import world_store  # noqa: PLC0415 — see _refresh

    return world_store(load_inventory(state.inventory))


@sandbox_app.command("incident")
def sandbox_incident(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="One of: " + ", ".join(k.value for k in IncidentKind))],
    region: Annotated[str, typer.Option("--region", "-r", help="Region it hits.")] = "us-east-1",
    minutes: Annotated[
        float, typer.Option("--minutes", "-m", min=0.5, max=24 * 60, help="How long it lasts (sim minutes).")
    ] = 30.0,
) -> None:
    """Trigger a scripted incident in the sandbox world."""
    kind = parse_kind(name)
    store = _world_store(_state(ctx))
    if region not in store.fleet.regions:
        known = ", ".join(sorted(store.fleet.regions))
        raise UsageError(f"--region {region}: unknown region; expected one of: {known}")
    with store.open() as world:
        incident = world.trigger_incident(kind, region, duration=timedelta(minutes=minutes))
    out.print(
        f"[bold]{kind.value}[/] started in [bold]{region}[/] for {minutes:g} sim minutes "
        f"(id {incident.id}). Watch it: opsconsole fleet status"
    )


@sandbox_app.command("up")
def sandbox_up(ctx: typer.Context) -> None:
    """Run the local cloud in the foreground for other opsconsole processes to share (Ctrl-C stops it)."""
    from opsconsole.core.paths import opsconsole_home  # noqa: PLC0415
    from opsconsole.sandbox.localcloud import LocalCloud, endpoints_path, read_running  # noqa: PLC0415
    from opsconsole.wiring import sandbox_emulators, world_store  # noqa: PLC0415

    home = opsconsole_home()
    if read_running(home) is not None:
        raise UsageError(f"a local cloud already runs for {home}; see {endpoints_path(home)}")
    fleet = load_inventory(_state(ctx).inventory)
    store = world_store(fleet, home=home)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with _progress("Starting the local cloud…"):
        cloud = LocalCloud(store, sandbox_emulators(fleet))
        cloud.start()
    path = endpoints_path(home)
    try:
        cloud.write_endpoints(path)
        cloud.start_driver()
        for name, endpoints in cloud.endpoints.items():
            urls = ", ".join(url for key, url in endpoints.urls.items() if "/" not in key)
            out.print(f"  {name:<6} {urls}")
        out.print(f"Local cloud up; endpoints in {path}.")
        out.print("Other opsconsole commands now use it. Ctrl-C stops it.")
        with suppress(KeyboardInterrupt):
            while not stop.wait(1.0):
                pass
    finally:
        with suppress(FileNotFoundError):
            path.unlink()
        cloud.stop()
        out.print("Local cloud stopped.")


@sandbox_app.command("clear")
def sandbox_clear(
    ctx: typer.Context,
    region: Annotated[str | None, typer.Option("--region", "-r", help="Only this region.")] = None,
) -> None:
    """End active incidents (all, or one region's)."""
    store = _world_store(_state(ctx))
    with store.open() as world:
        cleared = world.clear_incidents(region)
    out.print(f"Cleared {cleared} incident(s).")


@sandbox_app.command("reset")
def sandbox_reset(ctx: typer.Context) -> None:
    """Throw the sandbox world away; the next command starts a fresh one."""
    store = _world_store(_state(ctx))
    store.reset()
    out.print("Sandbox world reset.")


# -- inventory -----------------------------------------------------------------------------------------


@inventory_app.command("check")
def inventory_check(
    ctx: typer.Context,
    path: Annotated[Path | None, typer.Argument(help="Inventory directory or hosts.yml.")] = None,
) -> None:
    """Validate an inventory and summarise it; exit 2 with the file, key and expectation if invalid."""
    fleet = load_inventory(path or _state(ctx).inventory)
    prod = sum(1 for c in fleet.clusters.values() if c.environment.value == "prod")
    out.print(
        f"[green]ok[/] {fleet.source}: {len(fleet.regions)} regions, {len(fleet.clusters)} clusters "
        f"({prod} prod), {len(fleet.services)} services"
    )


# -- entry point ---------------------------------------------------------------------------------------


def _configure_logging() -> None:
    """Library and adapter logs stay quiet unless ``OPSCONSOLE_LOG`` names a level: what a user needs
    to know reaches them as source errors and notes, not as log lines (the SDKs log a lot)."""
    level = os.environ.get("OPSCONSOLE_LOG", "").upper()
    if level in ("DEBUG", "INFO", "WARNING", "ERROR"):
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        logging.getLogger().addHandler(logging.NullHandler())
        logging.getLogger().setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the app and turns OpsErrors into one line and an exit code."""
    # gRPC's C core logs to stderr on its own (fork handlers when ansible-runner forks, GOAWAY when the
    # local cloud stops); only its errors are worth a user's attention.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    _configure_logging()
    run: Callable[..., Any] = app
    try:
        run(args=argv, prog_name="opsconsole", standalone_mode=True)
    except OpsError as error:
        err.print(f"[bold red]error[/]: {error.title}: {error.message}", soft_wrap=True)
        sys.exit(2 if error.user_error else 1)


# The act, jobs, approvals and audit commands live in their own modules; importing them registers them.
from opsconsole import (  # noqa: E402
    cli_act,  # noqa: F401
    cli_approvals,  # noqa: F401
    cli_audit,  # noqa: F401
    cli_bot,  # noqa: F401
    cli_schedule,  # noqa: F401
)
