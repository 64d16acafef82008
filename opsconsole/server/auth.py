"""Who is calling the ops server: credentials in, people of rbac.yml out.

Why it exists: identity used to come from the client's own environment (``LOGNAME``), which anyone can
set. The server takes it only from a credential it can check:

* a personal API token (``opc_…``), made by ``opsconsole server tokens create``: only its SHA-256 is
  stored (:class:`TokenStore`); it may expire and be revoked; creation, revocation and the first use
  from a new address are audited;
* an OIDC bearer JWT from the team's identity provider (:class:`OidcValidator`): issuer, audience,
  signature and expiry are checked and one claim (``email`` by default) names the person;
* an in-memory session token minted by the embedded server of ``make run`` for its one user.

:class:`Authenticator` tries them in that order for an ``Authorization: Bearer …`` header.

A person named by a credential is looked up in rbac.yml: first as a person's name, then as an
``os_users`` principal (so an OIDC email can be listed under ``os_users``); anyone else is a viewer.

Use::

    tokens = TokenStore(core.database, core.pipeline.audit)
    token_id, text = tokens.create("alice", created_by="admin", expires=timedelta(days=90), label="laptop")
    auth = Authenticator(core.directory, tokens=tokens, oidc=None)
    who = auth.authenticate("Bearer " + text, addr="127.0.0.1")      # an AuthResult, or None
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from opsconsole.core.audit.log import AuditLog
from opsconsole.core.change.rbac import Directory, Identity
from opsconsole.core.clock import Clock, SystemClock, utc
from opsconsole.core.errors import OpsError, UsageError
from opsconsole.core.store.db import Database, api_tokens_table

if TYPE_CHECKING:
    import jwt

log = logging.getLogger(__name__)

TOKEN_PREFIX = "opc_"
SESSION_PREFIX = "ops_"
#: How often ``last_used_at`` is written for a token used again from the same address.
LAST_USED_EVERY = timedelta(seconds=60)
#: The JWT algorithms accepted from an identity provider (asymmetric only: no "none", no HMAC).
OIDC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]

AUDIT_TOKEN_CREATED = "token_created"
AUDIT_TOKEN_REVOKED = "token_revoked"
AUDIT_TOKEN_NEW_ADDRESS = "token_used_from_new_address"


class Unauthenticated(OpsError):
    """No credential, or one the server does not accept (HTTP 401)."""

    title = "not authenticated"
    user_error = True


def token_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """A personal token as listed (never its text)."""

    id: str
    person: str
    label: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    last_used_addr: str | None
    revoked_at: datetime | None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def _info(row: Any) -> TokenInfo:
    created = utc(row["created_at"])
    assert created is not None
    return TokenInfo(
        id=row["id"], person=row["person"], label=row["label"], created_by=row["created_by"],
        created_at=created, expires_at=utc(row["expires_at"]), last_used_at=utc(row["last_used_at"]),
        last_used_addr=row["last_used_addr"], revoked_at=utc(row["revoked_at"]),
    )


class TokenStore:
    """Personal API tokens in the shared database (``api_tokens``). Thread-safe.

    Args:
        database: the shared database.
        audit: where creation, revocation and first use from a new address are recorded.
    """

    def __init__(self, database: Database, audit: AuditLog, *, clock: Clock | None = None) -> None:
        self.database = database
        self.audit = audit
        self.clock: Clock = clock or SystemClock()

    def create(
        self,
        person: str,
        *,
        created_by: str,
        expires: timedelta | None = None,
        label: str | None = None,
    ) -> tuple[str, str]:
        """A new token for ``person``: ``(token_id, token_text)``; the text is shown once, never stored.

        Raises:
            UsageError: an empty person, or an expiry that is not in the future.
            StoreUnavailable: the database cannot be reached.
        """
        if not person.strip():
            raise UsageError("a token needs a person")
        if expires is not None and expires <= timedelta(0):
            raise UsageError("a token's lifetime must be positive")
        now = self.clock.now()
        token_id = uuid.uuid4().hex
        text = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires_at = now + expires if expires is not None else None
        try:
            with self.database.engine.begin() as conn:
                conn.execute(api_tokens_table.insert().values(
                    id=token_id, person=person, token_hash=token_hash(text), label=label,
                    created_by=created_by, created_at=now, expires_at=expires_at,
                ))
                self.audit.append_in(conn, AUDIT_TOKEN_CREATED, actor=created_by, face="server", data={
                    "token": token_id, "person": person, "label": label,
                    "expires_at": expires_at.isoformat() if expires_at else None,
                })
        except SQLAlchemyError as exc:
            raise self.database.unavailable(exc, "create the token") from exc
        return token_id, text

    def list(self, *, person: str | None = None) -> list[TokenInfo]:
        """Every token, newest first (only ``person``'s when given)."""
        statement = select(api_tokens_table).order_by(api_tokens_table.c.created_at.desc())
        if person is not None:
            statement = statement.where(api_tokens_table.c.person == person)
        try:
            with self.database.engine.connect() as conn:
                return [_info(row) for row in conn.execute(statement).mappings()]
        except SQLAlchemyError as exc:
            raise self.database.unavailable(exc, "list the tokens") from exc

    def revoke(self, token_id: str, *, by: str = "admin") -> TokenInfo:
        """Revoke a token (its id or a unique prefix of at least 4 characters).

        Raises:
            UsageError: no such token, an ambiguous prefix, or already revoked.
        """
        matches = [t for t in self.list() if t.id == token_id] or (
            [t for t in self.list() if t.id.startswith(token_id)] if len(token_id) >= 4 else []
        )
        if not matches:
            raise UsageError(f"token {token_id}: no such token (opsconsole server tokens list shows them)")
        if len(matches) > 1:
            raise UsageError(f"token {token_id}: ambiguous prefix; give more characters")
        found = matches[0]
        if found.revoked_at is not None:
            raise UsageError(
                f"token {found.id[:8]} was already revoked at {found.revoked_at:%Y-%m-%d %H:%M} UTC")
        now = self.clock.now()
        try:
            with self.database.engine.begin() as conn:
                conn.execute(update(api_tokens_table).where(api_tokens_table.c.id == found.id)
                             .values(revoked_at=now))
                self.audit.append_in(conn, AUDIT_TOKEN_REVOKED, actor=by, face="server",
                                     data={"token": found.id, "person": found.person})
        except SQLAlchemyError as exc:
            raise self.database.unavailable(exc, "revoke the token") from exc
        return TokenInfo(**{**found.__dict__, "revoked_at": now})

    def authenticate(self, token: str, addr: str | None) -> str | None:
        """The person ``token`` belongs to; ``None`` if it is unknown, expired or revoked.

        Records the use (at most once a minute per token) and audits the first use from a new address.

        Raises:
            StoreUnavailable: the database cannot be reached.
        """
        if not token.startswith(TOKEN_PREFIX):
            return None
        digest = token_hash(token)
        now = self.clock.now()
        table = api_tokens_table
        try:
            with self.database.engine.connect() as conn:
                row = conn.execute(select(table).where(table.c.token_hash == digest)).mappings().first()
            if row is None or not hmac.compare_digest(row["token_hash"], digest):
                return None
            info = _info(row)
            if not info.usable(now):
                return None
            new_address = addr is not None and addr != info.last_used_addr
            stale = info.last_used_at is None or now - info.last_used_at >= LAST_USED_EVERY
            if new_address or stale:
                with self.database.engine.begin() as conn:
                    conn.execute(update(table).where(table.c.id == info.id)
                                 .values(last_used_at=now, last_used_addr=(addr or "")[:64] or None))
                    if new_address:
                        self.audit.append_in(conn, AUDIT_TOKEN_NEW_ADDRESS, actor=info.person, face="server",
                                             data={"token": info.id, "addr": addr,
                                                   "previous_addr": info.last_used_addr})
        except SQLAlchemyError as exc:
            raise self.database.unavailable(exc, "check the token") from exc
        return info.person


class OidcValidator:
    """Checks OIDC bearer JWTs from one identity provider and names the person in them.

    Args:
        issuer: the ``iss`` the tokens must carry.
        audience: the ``aud`` they must be for.
        jwks: the provider's signing keys: a file path (a JWKS JSON document) or an ``https://`` URL.
        claim: the claim naming the person (``email``, ``preferred_username``, ``sub``...).
        leeway_s: clock skew tolerated on ``exp`` / ``nbf`` / ``iat``.
    """

    def __init__(
        self, issuer: str, audience: str, jwks: str | Path, *, claim: str = "email", leeway_s: float = 60
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.claim = claim
        self.leeway_s = leeway_s
        import jwt  # noqa: PLC0415 - PyJWT and cryptography load only when OIDC is configured (60 ms)

        source = str(jwks)
        self._client: jwt.PyJWKClient | None = None
        self._keys: jwt.PyJWKSet | None = None
        if source.startswith(("https://", "http://")):
            self._client = jwt.PyJWKClient(source, cache_keys=True, lifespan=300, timeout=10)
        else:
            path = Path(source).expanduser()
            try:
                self._keys = jwt.PyJWKSet.from_dict(json.loads(path.read_text()))
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                raise UsageError(f"OIDC JWKS {path}: cannot read a key set ({exc})") from None

    def _key(self, token: str) -> Any:
        import jwt  # noqa: PLC0415 - loaded by __init__ already

        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        assert self._keys is not None
        kid = jwt.get_unverified_header(token).get("kid")
        keys = self._keys.keys
        if kid is not None:
            for key in keys:
                if key.key_id == kid:
                    return key.key
            raise Unauthenticated("the token's signing key is not one of the provider's")
        if len(keys) == 1:
            return keys[0].key
        raise Unauthenticated("the token names no signing key (kid) and the provider has several")

    def validate(self, token: str) -> str:
        """The value of :attr:`claim` in a valid token.

        Raises:
            Unauthenticated: bad signature, wrong issuer or audience, expired, or the claim is missing.
        """
        import jwt  # noqa: PLC0415 - loaded by __init__ already

        try:
            claims = jwt.decode(
                token, self._key(token), algorithms=OIDC_ALGORITHMS, audience=self.audience,
                issuer=self.issuer, leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the identity token has expired: log in again") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the identity token was refused: {exc}") from None
        value = claims.get(self.claim)
        if not isinstance(value, str) or not value:
            raise Unauthenticated(f"the identity token has no {self.claim!r} claim")
        return value


def person_identity(directory: Directory, name: str) -> Identity:
    """``name`` as rbac.yml knows them: a person's name, else an ``os_users`` principal; else a viewer."""
    if name in directory.people:
        return directory.person(name)
    mapped = directory.principals.get(f"os:{name}")
    if mapped is not None:
        return directory.person(mapped)
    return directory.person(name)


@dataclass(frozen=True)
class AuthResult:
    """Who a credential names, and how the server knows."""

    identity: Identity
    #: ``token``, ``oidc`` or ``embedded``.
    credential: str


class Authenticator:
    """Resolves an ``Authorization`` header to an :class:`AuthResult` (see the module docstring)."""

    def __init__(
        self,
        directory: Callable[[], Directory],
        *,
        tokens: TokenStore | None = None,
        oidc: OidcValidator | None = None,
    ) -> None:
        self._directory = directory
        self.tokens = tokens
        self.oidc = oidc
        self._sessions: dict[str, Identity] = {}
        self._lock = threading.Lock()

    def mint_session(self, identity: Identity) -> str:
        """An in-memory token for ``identity`` (the embedded server's one user); gone with the process."""
        text = SESSION_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[token_hash(text)] = identity
        return text

    def authenticate(self, authorization: str | None, addr: str | None) -> AuthResult:
        """Who the header's bearer credential names.

        Raises:
            Unauthenticated: no header, not a bearer credential, or one the server does not accept.
            StoreUnavailable: a personal token cannot be checked because the database is down.
        """
        if not authorization:
            raise Unauthenticated("no credential: send Authorization: Bearer <token>")
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthenticated("expected Authorization: Bearer <token>")
        if credential.startswith(SESSION_PREFIX):
            with self._lock:
                identity = self._sessions.get(token_hash(credential))
            if identity is None:
                raise Unauthenticated("unknown session token")
            return AuthResult(identity, "embedded")
        if credential.startswith(TOKEN_PREFIX):
            person = self.tokens.authenticate(credential, addr) if self.tokens is not None else None
            if person is None:
                raise Unauthenticated("the token is unknown, expired or revoked")
            return AuthResult(person_identity(self._directory(), person), "token")
        if self.oidc is not None and credential.count(".") == 2:
            name = self.oidc.validate(credential)
            return AuthResult(person_identity(self._directory(), name), "oidc")
        raise Unauthenticated("the credential is not one this server accepts")
