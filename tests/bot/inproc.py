"""The bot in the test's own process: a real sandbox core (in-process reader, SQLite under tmp), the real
Bolt app and :class:`~bot.runtime.BotRuntime`, the local Slack stand-in; payloads are signed and handed
to Bolt's ``dispatch`` (the same path as ``/slack/events``, without the socket), or to the bot's HTTP
server when the test is about HTTP.

Faster than :mod:`botprocess` (no subprocess start), and lets a test reach into the runtime (a slow or
failing store, a restart on the same database).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import slackpayloads as sp
from botprocess import BOT_TOKEN, SECRET
from slack_bolt import App
from slack_bolt.request import BoltRequest

from bot.app import build
from bot.runtime import BotRuntime
from bot.settings import BotSettings
from opsconsole.core.facade import OpsCore
from opsconsole.wiring import sandbox_core

INVENTORY = Path(__file__).resolve().parents[2] / "inventory"
APPROVALS = "C0SBXAPPROVALS"
_n = itertools.count(1)


def settings(api_url: str, **extra: Any) -> BotSettings:
    values: dict[str, Any] = {
        "bot_token": BOT_TOKEN,
        "signing_secret": SECRET,
        "api_url": api_url,
        "update_interval_s": 0.2,
        "poll_s": 0.2,
        "notice_s": 3600.0,
        "retry_s": 0.2,
    }
    values.update(extra)
    return BotSettings(**values)


@contextmanager
def core_on(home: Path) -> Iterator[OpsCore]:
    with sandbox_core(INVENTORY, home=home, reader="sim") as core:
        yield core


@contextmanager
def bot_on(
    core: OpsCore, api_url: str, *, start: bool = True, **extra: Any
) -> Iterator[tuple[App, BotRuntime]]:
    app, runtime = build(settings(api_url, **extra), core)
    if start:
        runtime.start(notices=False)
    try:
        yield app, runtime
    finally:
        runtime.stop()


def dispatch(app: App, body: str, content_type: str = "application/x-www-form-urlencoded") -> int:
    """Hand a signed payload to Bolt as ``/slack/events`` would; returns the ack's HTTP status."""
    return dispatch_ack(app, body, content_type)[0]


def dispatch_ack(
    app: App, body: str, content_type: str = "application/x-www-form-urlencoded"
) -> tuple[int, str]:
    """:func:`dispatch`, with the ack's body (what Slack shows for a command answered in the ack)."""
    headers = {"content-type": [content_type], **{k.lower(): [v] for k, v in sp.sign(SECRET, body).items()}}
    response = app.dispatch(BoltRequest(body=body, headers=headers))
    return response.status, str(response.body)


def click(
    action_id: str,
    value: str,
    user: str,
    *,
    team: str = sp.TEAM,
    channel: str = APPROVALS,
    message_ts: str = "1700000000.000001",
    response_url: str = "",
) -> str:
    """A block_actions payload, as Slack sends it: each call is a new click (a new ``action_ts``)."""
    n = next(_n)
    payload = {
        "type": "block_actions",
        "api_app_id": "A0OPSCONSOLE",
        "user": {"id": user, "username": user.lower(), "team_id": team},
        "team": {"id": team, "domain": "sandbox"},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "trigger_id": f"{n}.1700000000.inproc{n:04d}",
        "channel": {"id": channel, "name": "ops-approvals"},
        "message": {"type": "message", "ts": message_ts, "text": "request", "blocks": []},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": "b",
                "value": value,
                "type": "button",
                "action_ts": f"{1700000001 + n}.{n:06d}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def slash(text: str, user: str, response_url: str, *, channel: str = "C0OPSCHAT") -> str:
    return sp.slash(text, user, response_url, channel=channel)[0]


def wait_until(predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met in {timeout} s")
        time.sleep(0.05)
