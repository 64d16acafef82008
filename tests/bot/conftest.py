"""Fixtures of the bot's tests: a local Slack Web API server and helpers to drive `opsconsole bot`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import slackpayloads as sp
from botprocess import OPSCONSOLE, SECRET, BotProcess
from slackmock import Call, SlackMock


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackMock]:
    with SlackMock() as mock:
        yield mock


def send(
    bot: BotProcess,
    payload: tuple[str, str],
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    body, content_type = payload
    return sp.post(
        bot.events_url, body, content_type, {**sp.sign(secret, body, timestamp), **(headers or {})}
    )


def approvals(home: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """`opsconsole approvals list --all --json`, as a user would run it next to the bot."""
    result = subprocess.run(
        [OPSCONSOLE, "approvals", "list", "--all", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return list(json.loads(result.stdout))


def request_message(slack: SlackMock, request_id: str) -> Call:
    """The approvals-channel message posted for a request (its buttons carry the request id)."""

    def about(call: Call) -> bool:
        return request_id in json.dumps(call.params.get("blocks"))

    return slack.wait_for("chat.postMessage", about)[0]
