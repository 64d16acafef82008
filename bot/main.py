"""Run the bot: the HTTP server (``/slack/events`` in HTTP mode, ``/healthz``, ``/metrics``), the runtime's
loops and, in Socket Mode, the WebSocket to Slack — until ``stop`` is set.

Why a module of its own: ``opsconsole bot`` (:mod:`opsconsole.cli.bot`) and the tests run the same code.
What it guarantees on top of Bolt:

* a revoked or wrong app-level token is one :class:`~bot.settings.BotConfigError` (exit 2), checked
  before anything starts (:func:`bot.app.check_app_token`);
* ``/healthz`` says whether the Socket Mode connection is up and whether the store can be read, and
  answers 503 when either is down (a load balancer or a supervisor then knows);
* Socket Mode reconnects by itself (slack_sdk's client: on a ``disconnect`` envelope and on a dead
  connection); the health probe shows the gap.

Usage::

    serve(BotSettings.from_environment(), core, host="127.0.0.1", port=3000, stop=threading.Event())
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from bot.app import build
from bot.server import EVENTS_PATH, BotServer, add_probe, wsgi_app
from bot.settings import BotSettings
from opsconsole.core.facade import OpsCore

log = logging.getLogger(__name__)


def serve(
    settings: BotSettings,
    core: OpsCore,
    *,
    host: str,
    port: int,
    stop: threading.Event,
    say: Callable[[str], None] = print,
    started: Callable[[BotServer], None] | None = None,
) -> None:
    """Run until ``stop`` is set (see the module docstring).

    Raises:
        BotConfigError: a token Slack refuses, or Slack unreachable at start.
    """
    slack_app, runtime = build(settings, core)
    facts: dict[str, Any] = {"ok": True, "mode": "socket" if settings.socket_mode else "http"}
    facts["sandbox"] = core.sandbox
    server = BotServer(
        host,
        port,
        wsgi_app(
            None if settings.socket_mode else slack_app,
            lambda: dict(facts),
            signing_secret=settings.signing_secret,
            max_body=settings.max_body,
        ),
    )
    server.start()
    runtime.start()
    handler: Any = None
    remove_probe: Callable[[], None] | None = None
    try:
        if settings.socket_mode:
            from slack_bolt.adapter.socket_mode import SocketModeHandler  # noqa: PLC0415

            handler = SocketModeHandler(slack_app, settings.app_token)

            def socket_health() -> dict[str, Any]:
                up = bool(handler.client.is_connected())
                return {"name": "socket", "ok": up, "state": "connected" if up else "disconnected"}

            remove_probe = add_probe(socket_health)
            handler.connect()
            say(f"opsconsole bot: Socket Mode; health on http://{host}:{server.port}/healthz")
        else:
            say(f"opsconsole bot: listening on http://{host}:{server.port}{EVENTS_PATH}")
        if started is not None:
            started(server)
        while not stop.wait(1.0):
            pass
    finally:
        if remove_probe is not None:
            remove_probe()
        if handler is not None:
            handler.close()
        server.stop()
        runtime.stop()
        say("opsconsole bot stopped.")
