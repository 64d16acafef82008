"""The bot's log: on by default (INFO to stderr), with every Slack token scrubbed from every line.

Why: the bot runs unattended, and what it tells users ("the bot's log says what") must be true. The CLI
keeps library logs quiet unless ``OPSCONSOLE_LOG`` names a level; :func:`configure` (called by
:func:`bot.app.build`) turns the log on at INFO when nobody configured one (``OPSCONSOLE_LOG`` still wins,
and a host that set up its own handlers, such as ``opsconsole server``, keeps them), quiets the SDKs'
per-request chatter, and adds :class:`Redact` to every handler so that a token that slips into a message
(an exception's text, a URL) is written as ``xoxb-…``.
"""

from __future__ import annotations

import logging
import os
import re
import sys

TOKEN = re.compile(r"\b(xox[abposr]|xapp)-[A-Za-z0-9-]+")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
NOISY = ("slack_sdk", "slack_bolt", "urllib3", "websocket")


def scrub(text: str) -> str:
    return TOKEN.sub(lambda m: f"{m.group(1)}-…", text)


class Redact(logging.Filter):
    """Replaces tokens in a record's final message (its arguments included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler
            return True
        clean = scrub(message)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


def _real_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if not isinstance(h, logging.NullHandler)]


def configure() -> None:
    """Turn the log on (see the module docstring); idempotent."""
    root = logging.getLogger()
    if not _real_handlers():
        level = os.environ.get("OPSCONSOLE_LOG", "").upper()
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
        root.setLevel(level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else logging.INFO)
    elif root.level > logging.INFO and not os.environ.get("OPSCONSOLE_LOG"):
        root.setLevel(logging.INFO)
    if not os.environ.get("OPSCONSOLE_LOG"):
        for name in NOISY:
            logging.getLogger(name).setLevel(logging.WARNING)
    for each in _real_handlers():
        if not any(isinstance(f, Redact) for f in each.filters):
            each.addFilter(Redact())
