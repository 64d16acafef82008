"""The thin client of the ops server: what the CLI and the TUI use to ask the one authority.

Why it exists: the faces no longer hold the core (credentials, policy, store, runs); they ask an ops
server over HTTP ``/api/v1`` with a credential, and render what it answers. :mod:`.remote` implements
:class:`opsconsole.core.api.OpsApi` over httpx (TCP with TLS to a team server, or a Unix socket to the
embedded server ``make run`` starts); :mod:`.config` finds which server and token to use
(``OPSCONSOLE_SERVER`` + ``OPSCONSOLE_TOKEN``, else the file ``opsconsole login`` wrote).

Importing this package is cheap (no httpx, no SQLAlchemy, no cloud SDK): the CLI's ``--help`` depends
on it.
"""

from __future__ import annotations

from opsconsole.core.errors import UsageError

#: What a 401 or a missing token tells the user to do.
LOGIN_HINT = "log in with `opsconsole login --server URL`, or set OPSCONSOLE_SERVER and OPSCONSOLE_TOKEN"


class Unauthenticated(UsageError):
    """The server did not accept the credential (none, unknown, revoked or expired). Exit 2."""

    title = "not logged in"


__all__ = ["LOGIN_HINT", "Unauthenticated"]
