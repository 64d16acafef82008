"""``opsconsole server``: the team's one ops server, and its token administration.

Why it exists: one process holds the inventory, the policy, rbac.yml, the cloud write credentials and
the store, runs the playbooks and the scheduler, and serves Slack; the TUI and CLI are its
authenticated clients. :func:`serve` runs it (uvicorn, HTTPS when a certificate is configured);
:func:`server_runtime` builds what it serves (tests and the embedded mode use the same parts);
``tokens_create`` / ``tokens_list`` / ``tokens_revoke`` are ``opsconsole server tokens …``.

Use::

    settings = ServerSettings.from_environment().replace(port=8443)
    serve(settings)                                          # until SIGTERM / Ctrl-C
    token_id, text = tokens_create(settings, "alice", created_by="erin", expires=timedelta(days=90))
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from typing import Any

from opsconsole.core.audit.log import AuditLog
from opsconsole.core.errors import UsageError
from opsconsole.core.facade import OpsCore
from opsconsole.core.paths import world_home
from opsconsole.core.store.db import Database
from opsconsole.server.app import Runtime, create_app
from opsconsole.server.auth import Authenticator, OidcValidator, TokenInfo, TokenStore
from opsconsole.server.cache import CoreEvents, FleetCache, Hub
from opsconsole.server.settings import ServerSettings

log = logging.getLogger(__name__)

__all__ = ["build_core", "serve", "server_runtime", "tokens_create", "tokens_list", "tokens_revoke"]


def _apply_environment(settings: ServerSettings) -> None:
    """The core's wiring reads the home and the database from the environment: make them the settings'."""
    if settings.home is not None:
        os.environ["OPSCONSOLE_HOME"] = str(settings.home)
    if settings.db_url is not None:
        os.environ["OPSCONSOLE_DB_URL"] = settings.db_url


def _audit_kwargs(factory: Any, settings: ServerSettings) -> dict[str, Any]:
    """The audit key (and head file) for a core factory that takes them; the key is created either way."""
    from opsconsole.core.audit.log import load_or_create_key  # noqa: PLC0415

    key = load_or_create_key(settings.audit_key_path)
    parameters = inspect.signature(factory).parameters
    kwargs: dict[str, Any] = {}
    if "audit_key" in parameters:
        kwargs["audit_key"] = key
    else:
        log.warning("this core does not sign the audit log yet (no audit_key parameter)")
    if settings.audit_head_file is not None and "audit_head_file" in parameters:
        kwargs["audit_head_file"] = settings.audit_head_file
    return kwargs


@contextmanager
def build_core(settings: ServerSettings) -> Iterator[OpsCore]:
    """The server's core: the sandbox when ``settings.sandbox``, else the live fleet of the inventory."""
    from opsconsole import wiring  # noqa: PLC0415

    _apply_environment(settings)
    if settings.sandbox:
        factory: Any = wiring.sandbox_core
        with factory(settings.inventory, home=settings.home, **_audit_kwargs(factory, settings)) as core:
            yield core
    else:
        factory = wiring.live_core
        with factory(settings.inventory, **_audit_kwargs(factory, settings)) as core:
            yield core


def _slack(core: OpsCore, stack: ExitStack) -> Any:
    """The Bolt app, when SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are set (its runtime started)."""
    if not (os.environ.get("SLACK_BOT_TOKEN") and os.environ.get("SLACK_SIGNING_SECRET")):
        return None
    from bot.app import build  # noqa: PLC0415 - slack-bolt loads only when Slack is configured
    from bot.settings import BotSettings  # noqa: PLC0415

    bot_settings = BotSettings.from_environment()
    slack_app, bot_runtime = build(bot_settings, core)
    bot_runtime.start()
    stack.callback(bot_runtime.stop)
    return slack_app


@contextmanager
def server_runtime(
    settings: ServerSettings,
    *,
    core: OpsCore | None = None,
    may_change: bool = True,
    scheduler: bool = True,
    slack: bool = True,
) -> Iterator[Runtime]:
    """Everything the server serves, started: the core (built from ``settings`` unless given), the fleet
    cache, the event hub, the authenticator (personal tokens, OIDC when configured), the scheduler
    (ticking; it elects a leader among servers; with ``scheduler=False`` one is built on the first
    ``/schedules`` call and never ticks) and Slack (when configured)."""
    with ExitStack() as stack:
        if core is None:
            core = stack.enter_context(build_core(settings))
        hub = Hub()
        stack.callback(hub.close)
        cache = FleetCache(core, hub, refresh_s=settings.refresh_s, clock=core.clock)
        events = CoreEvents(core, hub, clock=core.clock)
        stack.callback(events.close)
        tokens = TokenStore(core.database, core.pipeline.audit, clock=core.clock)
        oidc = None
        if settings.oidc_issuer and settings.oidc_audience and settings.oidc_jwks:
            oidc = OidcValidator(settings.oidc_issuer, settings.oidc_audience, settings.oidc_jwks,
                                 claim=settings.oidc_claim)
        current = core

        auth = Authenticator(lambda: current.directory, tokens=tokens, oidc=oidc)
        ticker = None
        if scheduler:
            from opsconsole.core.schedule.engine import Scheduler  # noqa: PLC0415

            ticker = Scheduler(core)
            ticker.start()
            stack.callback(ticker.stop)
        slack_app = _slack(core, stack) if slack else None
        cache.start()
        stack.callback(cache.stop)
        runtime = Runtime(core=core, cache=cache, hub=hub, auth=auth, may_change=may_change,
                          scheduler=ticker, max_body_bytes=settings.max_body_bytes, slack_app=slack_app)
        stack.callback(hub.close)  # streams end before the server waits for its connections
        yield runtime


def serve(settings: ServerSettings) -> None:
    """Run the ops server until interrupted (SIGINT / SIGTERM, handled by uvicorn)."""
    import uvicorn  # noqa: PLC0415

    with server_runtime(settings) as runtime:
        app = create_app(runtime)
        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, log_level="info", lifespan="on",
            timeout_graceful_shutdown=5, proxy_headers=False,
            ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
            ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        )
        scheme = "https" if settings.tls else "http"
        world = "sandbox" if runtime.core.sandbox else "live"
        log.info("opsconsole server (%s) on %s://%s:%d", world, scheme, settings.host, settings.port)
        if not settings.tls and settings.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("serving plain HTTP on %s: put TLS in front of it or set a certificate",
                        settings.host)
        uvicorn.Server(config).run()


# -- tokens ----------------------------------------------------------------------------------------------


@contextmanager
def _token_store(settings: ServerSettings) -> Iterator[TokenStore]:
    from opsconsole.core.audit.log import load_or_create_key  # noqa: PLC0415

    world = "sandbox" if settings.sandbox else "live"
    database = Database(settings.db_url or world_home(world, settings.state_home), world=world)
    try:
        # The same key as the server's, so that token entries carry a MAC like every other entry.
        audit = AuditLog(database, key=load_or_create_key(settings.audit_key_path),
                         head_file=settings.audit_head_file)
        yield TokenStore(database, audit)
    finally:
        database.close()


def tokens_create(
    settings: ServerSettings,
    person: str,
    *,
    created_by: str,
    expires: timedelta | None = None,
    label: str | None = None,
) -> tuple[str, str]:
    """A new personal token for ``person``: ``(token_id, token_text)`` (show the text once)."""
    if not person or any(c.isspace() for c in person):
        raise UsageError(f"person {person!r}: expected a person's name from rbac.yml")
    with _token_store(settings) as store:
        return store.create(person, created_by=created_by, expires=expires, label=label)


def tokens_list(settings: ServerSettings, *, person: str | None = None) -> list[TokenInfo]:
    """Every personal token (never their text), newest first."""
    with _token_store(settings) as store:
        return store.list(person=person)


def tokens_revoke(settings: ServerSettings, token_id: str, *, by: str) -> TokenInfo:
    """Revoke a token by id (or a unique prefix); audited."""
    with _token_store(settings) as store:
        return store.revoke(token_id, by=by)
