"""Slack payloads in Slack's documented formats, signed with the v0 scheme, for the bot's tests.

* slash commands: ``application/x-www-form-urlencoded`` fields (token, team_id, user_id, command, text,
  response_url, trigger_id…);
* interactions (block_actions, view_submission): a form with one field, ``payload``, holding the JSON;
* events: a JSON ``event_callback`` envelope with ``event_id``.

Signature: ``v0=hex(HMAC-SHA256(secret, "v0:{timestamp}:{raw body}"))`` in ``X-Slack-Signature``, the
timestamp in ``X-Slack-Request-Timestamp``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

TEAM = "T0SANDBOX"
_n = itertools.count(1)


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def slash(text: str, user: str, response_url: str, *, channel: str = "C0OPSCHAT") -> tuple[str, str]:
    n = next(_n)
    body = urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": TEAM,
            "team_domain": "sandbox",
            "channel_id": channel,
            "channel_name": "ops",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/ops",
            "text": text,
            "api_app_id": "A0OPSCONSOLE",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": f"{n}.1700000000.trigger{n:04d}",
        }
    )
    return body, "application/x-www-form-urlencoded"


def block_action(
    action_id: str,
    value: str,
    user: str,
    *,
    channel: str,
    message_ts: str,
    response_url: str,
    blocks: list[Any] | None = None,
) -> tuple[str, str]:
    n = next(_n)
    payload = {
        "type": "block_actions",
        "api_app_id": "A0OPSCONSOLE",
        "token": "deprecated",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM},
        "team": {"id": TEAM, "domain": "sandbox"},
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": f"{n}.1700000000.click{n:04d}",
        "channel": {"id": channel, "name": "ops-approvals"},
        "message": {"type": "message", "ts": message_ts, "text": "request", "blocks": blocks or []},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": "b",
                "value": value,
                "type": "button",
                "action_ts": f"1700000001.{n:06d}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"


def view_submission(
    callback_id: str, view_id: str, user: str, metadata: str, values: dict[str, Any]
) -> tuple[str, str]:
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": "sandbox"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM},
        "api_app_id": "A0OPSCONSOLE",
        "token": "deprecated",
        "trigger_id": "1.1700000000.view",
        "view": {
            "id": view_id,
            "team_id": TEAM,
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": metadata,
            "hash": "1700000000.abc",
            "state": {"values": values},
            "blocks": [],
        },
        "response_urls": [],
    }
    return urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"


def event_callback(event: dict[str, Any], event_id: str) -> tuple[str, str]:
    body = {
        "token": "deprecated",
        "team_id": TEAM,
        "api_app_id": "A0OPSCONSOLE",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": "U0OPSBOT", "is_bot": True}],
    }
    return json.dumps(body), "application/json"


def post(
    url: str, body: str, content_type: str, headers: dict[str, str], timeout: float = 10.0
) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=body.encode(), method="POST", headers={"Content-Type": content_type, **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
