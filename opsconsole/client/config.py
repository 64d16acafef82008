"""Which ops server a client talks to, and with which token.

Why it exists: the CLI and the TUI act as the person a credential names, and that credential must come
from somewhere that is not the process environment's user name. In order:

1. ``OPSCONSOLE_SERVER`` and ``OPSCONSOLE_TOKEN`` (CI, scripts, containers); ``OPSCONSOLE_CA_FILE``
   names a CA bundle for a server whose certificate a private CA signed. ``OPSCONSOLE_SERVER`` alone
   uses the saved token when it was saved for that same server.
2. The file ``opsconsole login`` writes: ``$XDG_CONFIG_HOME/opsconsole/client.json`` (default
   ``~/.config``), in a 0700 directory, mode 0600, replaced atomically.

Nothing configured means no team server: the CLI then starts its embedded server (the sandbox, or
``--live`` read-only).

Use::

    found = resolve()            # (url, token) or None
    save("https://ops.example.net", token, ca_file=None)
    forget()

Plain ``http://`` is refused except to a loopback address: the token would cross the network in clear.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from opsconsole.client import LOGIN_HINT, Unauthenticated
from opsconsole.core.errors import UsageError

FILE_NAME = "client.json"
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class ClientSettings:
    """A server to talk to and how."""

    url: str
    token: str
    #: A CA bundle to verify the server's certificate with (None: the system's CAs).
    ca_file: str | None = None
    #: Where these came from, for messages: ``environment`` or the file's path.
    source: str = "environment"

    @property
    def verify(self) -> bool | str:
        return self.ca_file or True


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/opsconsole/client.json`` (``~/.config`` when unset or relative)."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "opsconsole" / FILE_NAME


def check_url(url: str) -> str:
    """``url`` normalised (no trailing slash), or a UsageError saying what is wrong with it."""
    text = url.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"server {url!r}: expected an https:// URL such as https://ops.example.net")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise UsageError(
            f"server {url!r}: use https:// (over plain http the token would cross the network in clear; "
            "http:// is accepted for 127.0.0.1 and localhost only)"
        )
    return text


def _read_file(path: Path) -> ClientSettings | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable ({exc}); run `opsconsole logout` and log in again") from None
    if not isinstance(data, dict) or not isinstance(data.get("server"), str) or not isinstance(
        data.get("token"), str
    ):
        raise UsageError(f"{path}: expected server and token; run `opsconsole logout` and log in again")
    ca_file = data.get("ca_file")
    return ClientSettings(url=data["server"], token=data["token"],
                          ca_file=ca_file if isinstance(ca_file, str) else None, source=str(path))


def settings() -> ClientSettings | None:
    """The server and token to use (see the module docstring), or None when none is configured.

    Raises:
        Unauthenticated: ``OPSCONSOLE_SERVER`` is set but there is no token for it.
        UsageError: a bad URL or an unreadable client file.
    """
    env_url = os.environ.get("OPSCONSOLE_SERVER", "").strip()
    env_token = os.environ.get("OPSCONSOLE_TOKEN", "").strip()
    env_ca = os.environ.get("OPSCONSOLE_CA_FILE", "").strip() or None
    saved = _read_file(config_path())
    if env_url:
        url = check_url(env_url)
        if env_token:
            return ClientSettings(url=url, token=env_token, ca_file=env_ca)
        if saved is not None and saved.url == url:
            return ClientSettings(url=url, token=saved.token, ca_file=env_ca or saved.ca_file,
                                  source=saved.source)
        raise Unauthenticated(f"OPSCONSOLE_SERVER is {url} but there is no token for it; {LOGIN_HINT}")
    if saved is None:
        if env_token:
            raise UsageError("OPSCONSOLE_TOKEN is set but OPSCONSOLE_SERVER is not: set the server's URL too")
        return None
    if env_token:
        return ClientSettings(url=saved.url, token=env_token, ca_file=env_ca or saved.ca_file)
    return saved


def resolve() -> tuple[str, str] | None:
    """``(url, token)`` of the configured server, or None (see :func:`settings`)."""
    found = settings()
    return None if found is None else (found.url, found.token)


def save(url: str, token: str, *, ca_file: str | None = None) -> Path:
    """Remember ``url`` and ``token`` for later commands (0600 file in a 0700 directory, atomically)."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    document = {"server": check_url(url), "token": token, "ca_file": ca_file,
                "saved_at": datetime.now(UTC).isoformat(timespec="seconds")}
    fd, temp = tempfile.mkstemp(prefix=".client-", suffix=".json", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return path


def forget() -> bool:
    """Remove the saved server and token; False when there was nothing to remove."""
    try:
        config_path().unlink()
    except FileNotFoundError:
        return False
    return True
