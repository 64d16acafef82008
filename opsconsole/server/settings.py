"""The ops server's settings: where it listens, what it serves, whom it trusts.

Why it exists: ``opsconsole server`` runs unattended (systemd, a container), so every setting comes
from the environment, and the CLI's options override them (:meth:`ServerSettings.replace`). Nothing
secret is a setting: TLS keys, the audit key and Slack secrets are files or environment variables read
where they are used, and never logged.

=============================== ============================================== ========================
variable                        meaning                                        default
=============================== ============================================== ========================
OPSCONSOLE_SERVER_HOST          interface to bind                              127.0.0.1
OPSCONSOLE_SERVER_PORT          TCP port                                       8400
OPSCONSOLE_SERVER_TLS_CERT      PEM certificate (chain) for HTTPS              none (plain HTTP)
OPSCONSOLE_SERVER_TLS_KEY       its private key                                none
OPSCONSOLE_INVENTORY            the inventory directory                        the seed inventory
OPSCONSOLE_HOME                 state directory                                ~/.opsconsole
OPSCONSOLE_DB_URL               the shared database                            SQLite under the home
OPSCONSOLE_SERVER_SANDBOX       1: serve the sandbox instead of the live fleet 0
OPSCONSOLE_AUDIT_KEY            the audit MAC key file                         $HOME/server/audit.key
OPSCONSOLE_AUDIT_HEAD_FILE      where the audit head is published              none
OPSCONSOLE_OIDC_ISSUER          accept OIDC JWTs from this issuer              none (tokens only)
OPSCONSOLE_OIDC_AUDIENCE        ... for this audience                          none
OPSCONSOLE_OIDC_JWKS            ... signed by these keys (file or URL)         none
OPSCONSOLE_OIDC_CLAIM           the claim naming the person                    email
OPSCONSOLE_SERVER_REFRESH_S     seconds between fleet refreshes                2
OPSCONSOLE_SERVER_MAX_BODY      largest request body, in bytes                 1048576
=============================== ============================================== ========================
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsconsole.core.errors import UsageError
from opsconsole.core.paths import opsconsole_home


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{name}: expected a number, found {text!r}") from None
    if not low <= value <= high:
        raise UsageError(f"{name}: expected {low:g} to {high:g}, found {text!r}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    text = env.get(name, "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise UsageError(f"{name}: expected 1 or 0, found {text!r}")


def _db_url(env: Mapping[str, str]) -> str | None:
    """``OPSCONSOLE_DB_URL`` checked: the server refuses to start on a URL that does not parse."""
    text = env.get("OPSCONSOLE_DB_URL", "").strip()
    if not text:
        return None
    from opsconsole.core.store.db import checked_url  # noqa: PLC0415 - SQLAlchemy, only when configured

    return checked_url(text, "OPSCONSOLE_DB_URL")


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``opsconsole server`` needs to start (see the module docstring for the variables)."""

    host: str = "127.0.0.1"
    port: int = 8400
    tls_cert: Path | None = None
    tls_key: Path | None = None
    inventory: Path | None = None
    home: Path | None = None
    db_url: str | None = None
    sandbox: bool = False
    audit_key: Path | None = None
    audit_head_file: Path | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks: str | None = None
    oidc_claim: str = "email"
    refresh_s: float = 2.0
    max_body_bytes: int = 1024 * 1024

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> ServerSettings:
        """The settings the environment gives.

        Raises:
            UsageError: a malformed value, naming the variable.
        """
        env = os.environ if env is None else env

        def path(name: str) -> Path | None:
            text = env.get(name)
            return Path(text).expanduser() if text else None

        port = _float(env, "OPSCONSOLE_SERVER_PORT", 8400, 0, 65535)
        if port != int(port):
            found = env["OPSCONSOLE_SERVER_PORT"]
            raise UsageError(f"OPSCONSOLE_SERVER_PORT: expected an integer, found {found!r}")
        body = _float(env, "OPSCONSOLE_SERVER_MAX_BODY", 1024 * 1024, 1024, 1024**3)
        return cls(
            host=env.get("OPSCONSOLE_SERVER_HOST") or "127.0.0.1",
            port=int(port),
            tls_cert=path("OPSCONSOLE_SERVER_TLS_CERT"),
            tls_key=path("OPSCONSOLE_SERVER_TLS_KEY"),
            inventory=path("OPSCONSOLE_INVENTORY"),
            home=path("OPSCONSOLE_HOME"),
            db_url=_db_url(env),
            sandbox=_flag(env, "OPSCONSOLE_SERVER_SANDBOX"),
            audit_key=path("OPSCONSOLE_AUDIT_KEY"),
            audit_head_file=path("OPSCONSOLE_AUDIT_HEAD_FILE"),
            oidc_issuer=env.get("OPSCONSOLE_OIDC_ISSUER") or None,
            oidc_audience=env.get("OPSCONSOLE_OIDC_AUDIENCE") or None,
            oidc_jwks=env.get("OPSCONSOLE_OIDC_JWKS") or None,
            oidc_claim=env.get("OPSCONSOLE_OIDC_CLAIM") or "email",
            refresh_s=_float(env, "OPSCONSOLE_SERVER_REFRESH_S", 2.0, 0.1, 3600),
            max_body_bytes=int(body),
        ).checked()

    def replace(self, **changes: Any) -> ServerSettings:
        """These settings with the CLI's options applied (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None}).checked()

    def checked(self) -> ServerSettings:
        """Raises :class:`UsageError` for settings that cannot work together."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UsageError("TLS needs both OPSCONSOLE_SERVER_TLS_CERT and OPSCONSOLE_SERVER_TLS_KEY")
        oidc = [self.oidc_issuer, self.oidc_audience, self.oidc_jwks]
        if any(oidc) and not all(oidc):
            raise UsageError("OIDC needs OPSCONSOLE_OIDC_ISSUER, OPSCONSOLE_OIDC_AUDIENCE and "
                             "OPSCONSOLE_OIDC_JWKS")
        return self

    @property
    def state_home(self) -> Path:
        return self.home or opsconsole_home()

    @property
    def audit_key_path(self) -> Path:
        """The audit key file (default ``$OPSCONSOLE_HOME/server/audit.key``)."""
        return self.audit_key or self.state_home / "server" / "audit.key"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None
