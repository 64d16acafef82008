"""The ``opsconsole`` command line: a thin client of the ops server, for scripts and quick looks.

Every command that reads the fleet, changes it, or reads the queue, jobs, audit or schedules asks an
ops server through :class:`~opsconsole.core.api.OpsApi` (:meth:`.context.CliContext.open_client`): the
team's server when one is configured (``opsconsole login``, or ``OPSCONSOLE_SERVER`` +
``OPSCONSOLE_TOKEN``), else an embedded one in this process on the sandbox (``--live``: the real clouds,
read-only). A few commands stay local on purpose: ``sandbox …`` (the simulated world is a local file),
``inventory check``, ``schedule eval``, ``schedule run`` (sandbox only), ``server`` and ``bot``.

Answers are rendered (:mod:`.render`) as tables for people or as documented JSON documents
(``--json``) for scripts. A user's mistake is one clear message on stderr with exit code 2; a failure
of the machine exits 1. Nobody is shown a traceback for either.

``opsconsole`` with no command opens the Textual console in a terminal; piped, it prints the status.

One module per command group: :mod:`.fleet`, :mod:`.act`, :mod:`.jobs`, :mod:`.approvals`,
:mod:`.audit`, :mod:`.schedule`, :mod:`.sandbox`, :mod:`.inventory`, :mod:`.login`, :mod:`.server`,
:mod:`.bot`, :mod:`.store`. Importing this package stays cheap (``opsconsole --help`` loads no SDK, no
HTTP client, no SQLAlchemy): heavy imports happen inside the commands.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from opsconsole import __version__
from opsconsole.cli.context import (
    AS_WITH_SERVER,
    CliContext,
    cli_context,
    err,
    exit_code_of,
    out,
    terminate_like_interrupt,
)
from opsconsole.core.errors import OpsError, UsageError

__all__ = ["CliContext", "app", "cli_context", "main"]


class _Group(TyperGroup):
    """The root group: an :class:`OpsError` from any command becomes one line on stderr and an exit code
    (2 for the user's mistakes, 1 for failures), in-process too (tests invoke ``app`` directly)."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context
        try:
            return super().invoke(ctx)
        except OpsError as error:
            report(error)
            ctx.exit(2 if error.user_error else 1)


def report(error: OpsError) -> None:
    err.print(f"[bold red]error[/]: {error.title}: {error.message}", soft_wrap=True, markup=True,
              highlight=False)


app = typer.Typer(
    cls=_Group,
    help="Platform-ops console for the multi-cloud fleet (sandbox by default).",
    no_args_is_help=False,
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _server_configured() -> bool:
    """A team server is configured (its token need not be valid: that is for the server to say)."""
    if os.environ.get("OPSCONSOLE_SERVER", "").strip():
        return True
    from opsconsole.client.config import config_path  # noqa: PLC0415

    return config_path().exists()


def _version(value: bool) -> None:
    if value:
        out.print(f"opsconsole {__version__}")
        raise typer.Exit()


#: Commands that work on this machine only: ``--as`` means nothing to them.
_LOCAL = frozenset({"sandbox", "inventory", "login", "logout", "server", "bot", "store"})


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
            help="Read the real clouds named in the inventory's opsconsole_clouds, read-only "
                 "(changes go through the team's ops server: opsconsole login).",
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
    # Who is in the cast is the embedded server's to say (rbac.yml, read once, by the core).
    if acting_as is not None and ctx.invoked_subcommand not in _LOCAL and _server_configured():
        raise UsageError(AS_WITH_SERVER)
    state = CliContext(inventory=inventory, live=live, acting_as=acting_as, read_only=read_only)
    ctx.obj = state
    if ctx.invoked_subcommand is None:
        if sys.stdin.isatty() and sys.stdout.isatty():
            from opsconsole.tui import run  # noqa: PLC0415 - Textual loads only when the console opens

            run(inventory, acting_as=acting_as, live=live, read_only=read_only)
            return
        from opsconsole.cli import render  # noqa: PLC0415
        from opsconsole.cli.fleet import read_status  # noqa: PLC0415

        document = read_status(state, None)
        out.print(render.status_view(document))
        problem = render.status_problem(document)
        if problem is not None:
            raise problem


def _register() -> None:
    """Every command group and command, from its own module."""
    from opsconsole.cli import (  # noqa: PLC0415 — after `app` exists
        act,
        approvals,
        audit,
        bot,
        fleet,
        inventory,
        jobs,
        login,
        sandbox,
        schedule,
        server,
        store,
    )

    app.add_typer(fleet.fleet_app, name="fleet")
    app.add_typer(act.act_app, name="act")
    app.add_typer(jobs.jobs_app, name="jobs")
    app.add_typer(approvals.approvals_app, name="approvals")
    app.add_typer(audit.audit_app, name="audit")
    app.add_typer(schedule.schedule_app, name="schedule")
    app.add_typer(sandbox.sandbox_app, name="sandbox")
    app.add_typer(inventory.inventory_app, name="inventory")
    app.add_typer(server.server_app, name="server")
    app.add_typer(store.store_app, name="store")
    app.command("bot")(bot.bot)
    app.command("login")(login.login)
    app.command("logout")(login.logout)
    app.command("whoami")(login.whoami)
    from opsconsole.cli.pods import register as register_pods  # noqa: PLC0415 — pods, logs, events, describe

    register_pods(app)
    from opsconsole.cli.freeze import freeze_app  # noqa: PLC0415 — the emergency change freeze

    app.add_typer(freeze_app, name="freeze")
    from opsconsole.cli.drill import drill_app  # noqa: PLC0415 — DR drills

    app.add_typer(drill_app, name="drill")


_register()


def _configure_logging() -> None:
    """Library and adapter logs stay quiet unless ``OPSCONSOLE_LOG`` names a level: what a user needs
    to know reaches them as source errors and notes, not as log lines (the SDKs log a lot).
    ``opsconsole server`` logs at INFO by default (it runs unattended)."""
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
    terminate_like_interrupt()
    try:
        app(args=argv, prog_name="opsconsole", standalone_mode=True)
    except SystemExit as ending:
        raise SystemExit(exit_code_of(ending.code)) from None
    except OpsError as error:
        report(error)
        sys.exit(2 if error.user_error else 1)
