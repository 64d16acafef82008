"""What every command shares: the global options, the way to the ops server, the output consoles.

Why it exists: a command that reads or changes the fleet, or reads the queue, jobs, audit or schedules,
asks an ops server (:class:`~opsconsole.core.api.OpsApi`); it never builds the core itself. Which server
is decided here, in one place, by :meth:`CliContext.open_client`:

* a team server when one is configured (``OPSCONSOLE_SERVER`` + ``OPSCONSOLE_TOKEN``, or the file
  ``opsconsole login`` wrote): :class:`~opsconsole.client.remote.RemoteClient`, acting as the token's
  person (``--as`` is refused there);
* otherwise the embedded server, in this process on a private Unix socket
  (:class:`opsconsole.server.embedded.EmbeddedServer`): the sandbox, acting as the ``--as`` cast member
  or as the OS user mapped through rbac.yml (an unknown one is a viewer); with ``--live``, the real
  clouds read-only (the server refuses every change).

Either way the command talks HTTP through the same client: one code path.

Use, in a command::

    with cli_context(ctx).open_client() as ops:
        view = ops.fleet()
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from opsconsole.core.errors import OpsError, UsageError

if TYPE_CHECKING:
    from opsconsole.core.api import OpsApi

#: Piped output is not squeezed into rich's default 80 columns; COLUMNS still wins when set.
PIPED_WIDTH = 160
_piped = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
out = Console(highlight=False, width=PIPED_WIDTH if _piped else None)
err = Console(stderr=True, highlight=False)

AS_WITH_SERVER = "--as is for the sandbox; with a server you act as your token's person"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C (:func:`terminate_like_interrupt`): the command
    unwinds — a run it follows is cancelled, the embedded server stops — instead of dying on the spot."""


#: Set once SIGTERM has reached this process (see :func:`exit_code_of`).
_terminated: list[bool] = []


def terminate_like_interrupt() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread (the CLI's entry point calls this)."""
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    if threading.current_thread() is not threading.main_thread():
        return

    def _raise(_signum: int, _frame: Any) -> None:
        _terminated.append(True)
        raise Terminated

    signal.signal(signal.SIGTERM, _raise)


def exit_code_of(code: object) -> object:
    """The exit code for ``code`` as the command ends: 143 where a SIGTERM made it 130.

    Typer turns any ``KeyboardInterrupt`` that leaves a command into exit 130, :class:`Terminated`
    included. A SIGTERM that lands while a command is not following a run (still filing it, or
    starting its embedded server) would then exit as if it were Ctrl-C.
    """
    return 143 if code == 130 and _terminated else code


@dataclass
class CliContext:
    """The global options, shared by the sub-commands through the click context."""

    inventory: Path | None = None
    live: bool = False
    acting_as: str | None = None
    read_only: bool = False
    out: Console = field(default=out, repr=False)
    err: Console = field(default=err, repr=False)

    def remote(self) -> Any:
        """The configured team server (:class:`~opsconsole.client.config.ClientSettings`) or None."""
        from opsconsole.client import config  # noqa: PLC0415 — keeps `--help` fast

        return config.settings()

    @contextmanager
    def open_client(self, message: str = "Asking the ops server…") -> Iterator[OpsApi]:
        """An :class:`~opsconsole.core.api.OpsApi`: the team server's, else an embedded one (see the module
        docstring). A spinner shows on stderr while it starts, when a person is watching.

        Raises:
            UsageError: ``--as`` with a team server.
        """
        remote = self.remote()
        if remote is not None:
            if self.acting_as is not None:
                raise UsageError(AS_WITH_SERVER)
            from opsconsole.client.remote import RemoteClient  # noqa: PLC0415

            with RemoteClient(remote.url, remote.token, verify=remote.verify, face="cli") as client:
                yield client
            return
        from opsconsole.server.embedded import EmbeddedServer  # noqa: PLC0415 — FastAPI, the core

        with ExitStack() as stack:
            with progress("Starting the embedded ops server…" if message else ""):
                server = stack.enter_context(
                    # On demand: a command that never shows the fleet (jobs, approvals, audit) does
                    # not read it, nor start the local cloud for it.
                    EmbeddedServer.start(inventory=self.inventory, live=self.live, acting_as=self.acting_as,
                                         on_demand=True)
                )
            try:
                yield server.client(face="cli")
            except OpsError as exc:
                problem = server.store_problem
                if problem is not None and problem.user_error and exc.title == problem.title:
                    raise problem from None  # the user's to fix (a read-only store): exit 2, as said
                raise
            # Said once, after an answer that did not need the store (one that did failed naming it).
            problem = server.store_problem
            if problem is not None:
                self.err.print(f"[yellow]note[/]: the fleet was read without the store ({problem.title}: "
                               f"{problem.message}); approvals, jobs and audit are unavailable",
                               soft_wrap=True, markup=True, highlight=False)

    @property
    def uses_server(self) -> bool:
        """True when commands go to a team server rather than the local embedded one."""
        return self.remote() is not None


def cli_context(ctx: typer.Context) -> CliContext:
    """The :class:`CliContext` the root callback stored (a default one when invoked without it)."""
    state = ctx.find_root().obj
    return state if isinstance(state, CliContext) else CliContext()


@contextmanager
def progress(message: str) -> Iterator[None]:
    """A spinner on stderr while something works, only when a person is watching."""
    if message and err.is_terminal:
        with err.status(message):
            yield
    else:
        yield
