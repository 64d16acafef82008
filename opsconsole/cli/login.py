"""``opsconsole login | logout | whoami``: which team server this machine's commands ask, and as whom.

``login --server URL`` takes a personal token (``opsconsole server tokens create`` on the server
prints one) from stdin when it is piped, else from a hidden prompt, checks it with the server
(``whoami``) and only then saves it (:mod:`opsconsole.client.config`: 0600, atomically). From then on
every command asks that server as that person. ``logout`` forgets it (commands then use the local
embedded sandbox again). ``whoami`` asks the server who it thinks you are.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from opsconsole.cli.context import cli_context, err, out
from opsconsole.core.errors import UsageError


def login(
    server: Annotated[str, typer.Option("--server", help="The ops server, e.g. https://ops.example.net.")],
    ca_file: Annotated[
        Path | None,
        typer.Option("--ca-file", exists=True, dir_okay=False, help="CA bundle that signed its certificate."),
    ] = None,
) -> None:
    """Log in to a team ops server with a personal token (read from stdin when piped, else prompted)."""
    from opsconsole.client import config  # noqa: PLC0415 — keeps `--help` fast
    from opsconsole.client.remote import RemoteClient  # noqa: PLC0415

    url = config.check_url(server)
    if sys.stdin.isatty():
        import getpass  # noqa: PLC0415 — a hidden prompt for the token, nothing else

        token = getpass.getpass(f"Token for {url}: ")
    else:
        token = sys.stdin.readline()
    token = token.strip()
    if not token:
        raise UsageError("no token given; create one on the server: opsconsole server tokens create PERSON")
    verify: bool | str = str(ca_file.resolve()) if ca_file is not None else True
    with RemoteClient(url, token, verify=verify) as client:
        caller = client.whoami()
    path = config.save(url, token, ca_file=str(ca_file.resolve()) if ca_file is not None else None)
    out.print(f"logged in to {url} as {caller.person}")
    err.print(f"[dim]({caller.role}, {caller.world}; saved in {path})[/]")


def logout() -> None:
    """Forget the saved server and token (commands then use the local sandbox)."""
    from opsconsole.client import config  # noqa: PLC0415

    out.print("logged out." if config.forget() else "not logged in.")


def whoami(ctx: typer.Context) -> None:
    """Who the ops server says you are, and where."""
    with cli_context(ctx).open_client() as ops:
        caller = ops.whoami()
    change = "" if caller.may_change else ", read-only"
    world = "the sandbox" if caller.world == "sandbox" else f"the {caller.world} fleet"
    out.print(f"{caller.person} ({caller.role}) on {world} via {caller.credential}{change}")
