"""The Textual console (``opsconsole`` in a terminal), a client of the ops server. See
:mod:`opsconsole.tui.app`.

:func:`run` opens the API the console talks to: the team's ops server when one is configured
(``opsconsole login``, or ``OPSCONSOLE_SERVER`` + ``OPSCONSOLE_TOKEN``), else the embedded server in
a child process of its own (the sandbox, or ``--live`` read-only; :mod:`opsconsole.server.process`) —
the same HTTP client either way. Who the console
acts as is what the server answers (``whoami``): the token's person, or, on the embedded server, the
``--as`` cast member (else the OS user as ``rbac.yml`` maps them). ``as bob`` in the palette works on the
sandbox's embedded server only: it opens another client of that same server, with a session token
minted for bob.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opsconsole.core.api import OpsApi
    from opsconsole.server.embedded import EmbeddedServer

#: What ``--as`` with a team server is told (the CLI says the same).
AS_WITH_SERVER = "--as is for the sandbox; with a server you act as your token's person"

ApiFactory = Callable[[], AbstractContextManager["OpsApi"]]
Reopen = Callable[[str], AbstractContextManager["OpsApi"]]


def open_api(
    inventory: Path | None = None, *, acting_as: str | None = None, live: bool = False,
    server_process: bool = False,
) -> tuple[ApiFactory, Reopen | None]:
    """How the console reaches the ops server: ``(factory, reopen)``.

    ``factory()`` opens the API (a context manager: the client, and the embedded server behind it when
    there is no team server); ``reopen(person)`` opens another client of the embedded sandbox server
    for a member of its cast, ``None`` where that makes no sense (a team server, a live fleet).

    ``server_process``: the embedded server runs in a child process, started now (before the caller
    imports Textual: see :mod:`opsconsole.server.process`); else in this process when ``factory()`` is
    entered.

    Raises:
        UsageError: ``acting_as`` with a team server; a bad client configuration.
        Unauthenticated: a server is configured without a token.
    """
    from opsconsole.client.config import settings  # noqa: PLC0415 - cheap, but only when the console opens
    from opsconsole.core.errors import UsageError  # noqa: PLC0415

    found = settings()
    if found is not None:
        if acting_as is not None:
            raise UsageError(AS_WITH_SERVER)

        def remote() -> AbstractContextManager[OpsApi]:
            from opsconsole.client.remote import RemoteClient  # noqa: PLC0415

            return RemoteClient(found.url, found.token, verify=found.verify, face="tui")

        return remote, None

    if server_process:
        return _process_api(inventory, acting_as=acting_as, live=live)

    servers: list[EmbeddedServer] = []

    @contextmanager
    def embedded() -> Iterator[OpsApi]:
        from opsconsole.server.embedded import EmbeddedServer  # noqa: PLC0415 - the server loads here only

        # Progressive: the console shows the Kubernetes data while the clouds' emulators still start.
        start = EmbeddedServer.start(inventory=inventory, live=live, acting_as=acting_as, progressive=True)
        with start as server:
            servers.append(server)
            try:
                with server.client(face="tui") as client:
                    yield client
            finally:
                servers.remove(server)

    def reopen(person: str) -> AbstractContextManager[OpsApi]:
        if not servers:
            raise UsageError("the console is not connected to its server yet")
        return client_as(servers[-1], person)

    return embedded, None if live else reopen


def _process_api(
    inventory: Path | None, *, acting_as: str | None, live: bool
) -> tuple[ApiFactory, Reopen | None]:
    """``open_api`` with the embedded server in a child process, spawned here and now."""
    from opsconsole.core.errors import UsageError  # noqa: PLC0415
    from opsconsole.server.process import ServerProcess  # noqa: PLC0415 - the parent's side only: light

    process = ServerProcess.spawn(inventory=inventory, live=live, acting_as=acting_as, progressive=True)
    ready: list[ServerProcess] = []

    @contextmanager
    def embedded() -> Iterator[OpsApi]:
        try:
            with process.client(face="tui") as client:
                ready.append(process)
                yield client
        finally:
            ready.clear()
            process.close()  # the server stops with the console (its runs cancelled, as in-process)

    def reopen(person: str) -> AbstractContextManager[OpsApi]:
        if not ready:
            raise UsageError("the console is not connected to its server yet")
        made: AbstractContextManager[OpsApi] = process.client_for(person, face="tui")
        return made

    embedded.process = process  # type: ignore[attr-defined]  # run() closes it if the app never opens it
    return embedded, None if live else reopen


def client_as(server: EmbeddedServer, person: str) -> AbstractContextManager[OpsApi]:
    """A client of the embedded ``server`` for ``person`` of the sandbox cast (``as bob``): a session
    token minted by the server's own authenticator for the cast member, over the same socket.

    Raises:
        UsageError: ``person`` is not in the sandbox cast.
    """
    made: AbstractContextManager[OpsApi] = server.client_for(person, face="tui")
    return made


def run(
    inventory: Path | None = None,
    *,
    acting_as: str | None = None,
    live: bool = False,
    read_only: bool = False,
) -> None:
    """Open the console on the team's ops server, or on the embedded one (the sandbox, or the live
    fleet read-only), until the user quits."""
    # The embedded server's process starts first, so that it builds the server while this one imports
    # Textual and draws the frame (see opsconsole.server.process).
    factory, reopen = open_api(inventory, acting_as=acting_as, live=live, server_process=True)
    try:
        from opsconsole.tui.app import OpsConsoleApp  # noqa: PLC0415 - Textual loads only when the TUI opens

        OpsConsoleApp(factory, read_only=read_only, live=live, reopen=reopen).run()
    finally:
        process = getattr(factory, "process", None)
        if process is not None:
            process.close()  # already closed when the app opened it; not if it failed before that
