"""``opsconsole server``: run the team's ops server; ``opsconsole server tokens …``: its personal tokens.

The server is the one authority (inventory, policy, credentials, store, runs, scheduler, Slack); see
:mod:`opsconsole.server.main`. Its settings come from the environment
(:class:`opsconsole.server.settings.ServerSettings`); the options here override them. Token commands
work on the server's database directly, so they are run on the server's host by whoever administers
it; the audit records them as that host account (``host:<account>``, from the process's uid — not from
LOGNAME or USER, which anyone can set).
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from opsconsole.cli.context import cli_context, err, out
from opsconsole.core.errors import UsageError

server_app = typer.Typer(
    help="Run the ops server (the one authority for a team), and manage its personal tokens.",
    invoke_without_command=True,
)
tokens_app = typer.Typer(help="Personal API tokens: create, list, revoke.", no_args_is_help=True)
server_app.add_typer(tokens_app, name="tokens")

_UNITS = {"h": "hours", "d": "days", "w": "weeks"}
_EXPIRY = re.compile(r"(\d+)([hdw])")


#: Where the ``server`` options leave the world and inventory for ``server tokens …`` (click's meta is
#: shared by every context of one invocation).
_META = "opsconsole.server.changes"


def _settings(ctx: typer.Context, **changes: Any) -> Any:
    """The environment's server settings with the CLI's options applied (the token commands must
    name the same world as the server: ``opsconsole server --sandbox tokens …``)."""
    from opsconsole.server.settings import ServerSettings  # noqa: PLC0415 — keeps `--help` fast

    state = cli_context(ctx)
    given = {"inventory": state.inventory, **ctx.meta.get(_META, {}), **changes}
    given["inventory"] = given["inventory"] or state.inventory
    return ServerSettings.from_environment().replace(**given)


@server_app.callback()
def server(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=0, max=65535, help="TCP port (default 8400).")
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", exists=True, dir_okay=False, help="PEM certificate (chain).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", exists=True, dir_okay=False, help="Its private key.")
    ] = None,
    sandbox: Annotated[
        bool | None,
        typer.Option("--sandbox/--live", help="Serve the simulated sandbox, or the live fleet (default)."),
    ] = None,
    inventory: Annotated[
        Path | None, typer.Option("--inventory", "-i", help="Inventory directory (or OPSCONSOLE_INVENTORY).")
    ] = None,
) -> None:
    """Run the ops server until Ctrl-C or SIGTERM (``server --sandbox tokens …``: the tokens of that
    world's server)."""
    state = cli_context(ctx)
    world = sandbox if sandbox is not None else (False if state.live else None)
    ctx.meta[_META] = {"sandbox": world, "inventory": inventory}
    if ctx.invoked_subcommand is not None:
        return
    if state.acting_as is not None:
        raise UsageError("--as is for the sandbox console; the server acts for each caller's credential")
    settings = _settings(ctx, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key)
    from opsconsole.server.main import serve  # noqa: PLC0415

    if not os.environ.get("OPSCONSOLE_LOG"):  # unattended: its own log at INFO unless told otherwise
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            force=True)
        # The SDKs log every call (and Azure every header) at INFO: the server's own lines are what an
        # operator reads; OPSCONSOLE_LOG=debug brings theirs back.
        for noisy in ("azure", "botocore", "boto3", "urllib3", "kubernetes", "google", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    scheme = "https" if settings.tls_cert else "http"
    err.print(f"opsconsole server ({'sandbox' if settings.sandbox else 'live'}) on "
              f"{scheme}://{settings.host}:{settings.port}")
    serve(settings)


def parse_expiry(text: str) -> timedelta | None:
    """``--expires``: ``90d``, ``12w``, ``36h``, or ``never``."""
    value = text.strip().lower()
    if value == "never":
        return None
    match = _EXPIRY.fullmatch(value)
    if match is None or int(match.group(1)) <= 0:
        raise UsageError(f"--expires {text}: expected a duration such as 90d, 12w or 36h, or never")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def host_account() -> str:
    """Who administers the server on its host, from the process's uid (not from the environment)."""
    try:
        import pwd  # noqa: PLC0415 — POSIX only

        return f"host:{pwd.getpwuid(os.getuid()).pw_name}"
    except (ImportError, KeyError, AttributeError):
        return f"host:uid-{getattr(os, 'getuid', lambda: -1)()}"


def _token_document(info: Any) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return None if value is None else str(value.isoformat())

    return {"id": info.id, "person": info.person, "label": info.label, "created_by": info.created_by,
            "created_at": iso(info.created_at), "expires_at": iso(info.expires_at),
            "last_used_at": iso(info.last_used_at), "last_used_addr": info.last_used_addr,
            "revoked_at": iso(info.revoked_at)}


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    person: Annotated[str, typer.Argument(help="The person (as rbac.yml names them) the token acts as.")],
    expires: Annotated[str, typer.Option("--expires", help="Lifetime: 90d, 12w, 36h, or never.")] = "90d",
    label: Annotated[str | None, typer.Option("--label", help="What it is for (e.g. laptop, ci).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {id, person, token} as JSON.")] = False,
) -> None:
    """Create a personal token; its text is printed once, keep it safe (opsconsole login reads it)."""
    from opsconsole.server.main import tokens_create as create  # noqa: PLC0415

    lifetime = parse_expiry(expires)
    token_id, text = create(_settings(ctx), person, created_by=host_account(), expires=lifetime, label=label)
    if as_json:
        print(json.dumps({"id": token_id, "person": person, "token": text,
                          "expires_in_s": lifetime.total_seconds() if lifetime else None}, indent=2))
        return
    err.print(f"token {token_id} for {person} (expires {'never' if lifetime is None else expires}); "
              "shown once — give it to them over a safe channel:")
    out.print(text, soft_wrap=True)


@tokens_app.command("list")
def tokens_list(
    ctx: typer.Context,
    person: Annotated[str | None, typer.Option("--person", help="Only this person's tokens.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every personal token (never their text), newest first."""
    from opsconsole.server.main import tokens_list as listed  # noqa: PLC0415

    infos = listed(_settings(ctx), person=person)
    if as_json:
        print(json.dumps([_token_document(i) for i in infos], indent=2))
        return
    if not infos:
        out.print("No tokens.")
        return
    for info in infos:
        usable = info.usable(datetime.now(UTC))
        state = "revoked" if info.revoked_at else ("active" if usable else "expired")
        expiry = f"expires {info.expires_at:%Y-%m-%d}" if info.expires_at else "no expiry"
        used = f"last used {info.last_used_at:%Y-%m-%d %H:%M}" if info.last_used_at else "never used"
        out.print(f"{info.id}  {info.person:<12} {state:<8} {expiry}, {used}"
                  + (f"  ({info.label})" if info.label else ""))


@tokens_app.command("revoke")
def tokens_revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(help="The token's id (a unique prefix will do).")],
) -> None:
    """Revoke a token: the server refuses it from now on (audited)."""
    from opsconsole.server.main import tokens_revoke as revoke  # noqa: PLC0415

    info = revoke(_settings(ctx), token_id, by=host_account())
    out.print(f"revoked token {info.id} of {info.person}")
