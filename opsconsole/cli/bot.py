"""``opsconsole bot``: the Slack bot, on the same core, queue and audit as the terminal.

Socket Mode when ``SLACK_APP_TOKEN`` is set; otherwise HTTP on ``--host`` / ``--port`` (path
``/slack/events``), verified with ``SLACK_SIGNING_SECRET``. ``SLACK_BOT_TOKEN`` always; ``SLACK_API_URL``
points the Web API elsewhere (a local Slack API server). ``/healthz`` and ``/metrics`` are served on the
HTTP server in both modes. A missing or malformed setting is one message and exit code 2. See
:mod:`bot` for how it is built. (A team's ``opsconsole server`` serves Slack itself, at
``/slack/events``; this command runs the bot on its own, as before.)
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from opsconsole.cli.context import cli_context, out


def bot(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface for the HTTP server.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")] = 3000,
) -> None:
    """Run the Slack bot (/ops, approval buttons, live progress, notices)."""
    from bot.main import serve  # noqa: PLC0415 — slack-bolt loads only for this command
    from bot.settings import BotSettings  # noqa: PLC0415
    from opsconsole.wiring import live_core, sandbox_core  # noqa: PLC0415

    state = cli_context(ctx)
    settings = BotSettings.from_environment()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with live_core(state.inventory) if state.live else sandbox_core(state.inventory) as core:
        serve(settings, core, host=host, port=port, stop=stop, say=out.print)
