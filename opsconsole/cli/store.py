"""``opsconsole store show | adopt``: which store this home uses, and accepting another one on purpose.

Why it exists: the home records the id of the store it uses (``store.json``, written on first use). A
store that vanished (its SQLite file deleted) or was replaced (another id at the same address) is refused
by every command, never silently recreated: its jobs, pending requests and audit would be gone without a
word. ``store show`` says what the home recorded and what is there now; ``store adopt`` is the one
explicit way to accept what is there (a store restored from an older backup, another team store) or, when
nothing is, to start a new, empty store — after a confirmation (``--yes`` for scripts).

The store is the one the commands use: ``OPSCONSOLE_DB_URL`` when set, else the SQLite file of the home
(``--live``: the live fleet's, under ``live/``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from opsconsole.cli.context import cli_context, out
from opsconsole.core.errors import UsageError

store_app = typer.Typer(help="The store this home uses: show it, adopt another on purpose.",
                        no_args_is_help=True)


def _location(live: bool) -> tuple[str | Path, str]:
    """Where the commands' store is, and its world."""
    import os  # noqa: PLC0415

    from opsconsole.core.paths import world_home  # noqa: PLC0415

    world = "live" if live else "sandbox"
    configured = os.environ.get("OPSCONSOLE_DB_URL", "").strip()
    return (configured or world_home(world)), world


@store_app.command("show")
def store_show(ctx: typer.Context) -> None:
    """The store the commands use, the id this home recorded for it, and the id it has now."""
    from opsconsole.core.store import db  # noqa: PLC0415 — SQLAlchemy loads only here

    where, world = _location(cli_context(ctx).live)
    url = db.database_url(where)
    recorded = db.recorded_store(url)
    out.print(f"store: {escape(db.redacted_url(url))} ({world})", soft_wrap=True)
    if recorded is None:
        out.print("recorded: nothing yet (the first command that uses the store records it)")
    else:
        out.print(f"recorded: {recorded.store_id} ({recorded.world}, since {recorded.since})")
    if db.sqlite_file_missing(url):
        out.print("now: no store yet (the file does not exist)")
        return
    try:
        database = db.Database(url)
    except db.StoreUnavailable as exc:
        out.print(f"[bold red]now[/]: {escape(exc.title)}: {escape(exc.message)}", soft_wrap=True)
        raise typer.Exit(1) from None
    try:
        found = db.store_identity(database)
    finally:
        database.close()
    out.print(f"now: {found or 'no id yet'}")


@store_app.command("adopt")
def store_adopt(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (for scripts).")] = False,
) -> None:
    """Accept the store that is there now (or start a new, empty one when it is gone), on purpose."""
    from opsconsole.core.store import db  # noqa: PLC0415

    where, world = _location(cli_context(ctx).live)
    url = db.database_url(where)
    shown = escape(db.redacted_url(url))
    recorded = db.recorded_store(url)
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("store adopt: add --yes to accept the store without being asked")
        old = f"store {recorded.store_id[:12]}" if recorded else "no store yet"
        typer.confirm(f"This home recorded {old} at {db.redacted_url(url)}. Accept what is there now (or a "
                      f"new, empty store if nothing is)?", abort=True)
    before, now = db.adopt_store(url, world=world)
    if before is not None and before.store_id == now.store_id:
        out.print(f"{shown}: already the recorded store {now.store_id[:12]}; nothing changed", soft_wrap=True)
        return
    was = f" (was {before.store_id[:12]})" if before is not None else ""
    out.print(f"{shown}: this home now uses the {now.world} store {now.store_id[:12]}{was}", soft_wrap=True)
