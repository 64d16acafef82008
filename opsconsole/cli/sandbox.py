"""``opsconsole sandbox incident | up | clear | reset``: drive the local simulated world.

These stay local on purpose: the sandbox world is a file under ``$OPSCONSOLE_HOME`` that this machine's
embedded server (and ``sandbox up``'s local cloud) reads; no ops server is asked. They refuse ``--live``.
"""

from __future__ import annotations

import signal
import threading
from contextlib import suppress
from datetime import timedelta
from typing import Annotated, Any

import typer

from opsconsole.cli.context import CliContext, cli_context, out, progress
from opsconsole.core.errors import UsageError
from opsconsole.sandbox.incidents import IncidentKind, parse_kind

sandbox_app = typer.Typer(help="Drive the embedded sandbox world.", no_args_is_help=True)


def wiring_world_store(fleet: Any, *, home: Any = None) -> Any:
    """:func:`opsconsole.wiring.world_store` (imported here: it pulls in the providers)."""
    from opsconsole.wiring import world_store  # noqa: PLC0415 — keeps `--help` fast

    return world_store(fleet, home=home)


def world_store(state: CliContext) -> Any:
    from opsconsole.core.fleet.inventory import load_inventory  # noqa: PLC0415 — keeps `--help` fast

    return wiring_world_store(load_inventory(state.inventory))


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
    store = world_store(cli_context(ctx))
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
    from opsconsole.core.fleet.inventory import load_inventory  # noqa: PLC0415
    from opsconsole.core.paths import opsconsole_home  # noqa: PLC0415
    from opsconsole.sandbox.localcloud import LocalCloud, endpoints_path, read_running  # noqa: PLC0415
    from opsconsole.wiring import sandbox_emulators  # noqa: PLC0415

    home = opsconsole_home()
    if read_running(home) is not None:
        raise UsageError(f"a local cloud already runs for {home}; see {endpoints_path(home)}")
    fleet = load_inventory(cli_context(ctx).inventory)
    store = wiring_world_store(fleet, home=home)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with progress("Starting the local cloud…"):
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
    store = world_store(cli_context(ctx))
    with store.open() as world:
        cleared = world.clear_incidents(region)
    out.print(f"Cleared {cleared} incident(s).")


@sandbox_app.command("reset")
def sandbox_reset(ctx: typer.Context) -> None:
    """Throw the sandbox world away; the next command starts a fresh one."""
    store = world_store(cli_context(ctx))
    store.reset()
    out.print("Sandbox world reset.")
