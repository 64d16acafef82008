"""One error hierarchy for everything a user or an operator can be told.

Every error carries a short ``title`` and a full ``message``. Faces (CLI, TUI, bot) only render these;
they never see an SDK or Ansible exception, because adapters translate those at their boundary. An
:class:`OpsError` that is the user's mistake (a bad inventory, a bad parameter) sets ``user_error`` so
the CLI exits 2 and nobody is shown a traceback.
"""

from __future__ import annotations


class OpsError(Exception):
    """Base of every error opsconsole reports on purpose."""

    title = "opsconsole error"
    user_error = False

    def __init__(self, message: str, *, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if title is not None:
            self.title = title

    def __str__(self) -> str:
        return self.message


class InventoryError(OpsError):
    """The inventory is unreadable or invalid. Names the file, the key path and what was expected."""

    title = "invalid inventory"
    user_error = True

    def __init__(
        self,
        file: str,
        key_path: str,
        expected: str,
        *,
        found: str | None = None,
        line: int | None = None,
    ) -> None:
        self.file = file
        self.key_path = key_path
        self.expected = expected
        self.found = found
        self.line = line
        where = f"{file}:{line}" if line is not None else file
        message = f"{where}: {key_path}: expected {expected}"
        if found is not None:
            message += f", found {found}"
        super().__init__(message)


class UsageError(OpsError):
    """A command-line or request parameter is wrong (unknown region, bad value...)."""

    title = "invalid parameter"
    user_error = True


class SourceError(OpsError):
    """A fleet source could not be read (connection, permission, throttling, bad answer)."""

    title = "source unavailable"


class SandboxError(OpsError):
    """The embedded sandbox world could not be loaded, saved or driven."""

    title = "sandbox error"


class ExecutionUnavailable(OpsError):
    """This core was built to read only: it has no run engine (a server that cannot run playbooks)."""

    title = "changes unavailable"
