"""Socket Mode against a local fake (``apps.connections.open`` on the Slack stand-in + an aiohttp WebSocket
server): hello, a slash command, an interaction and an event acked with their envelope ids, a reconnect
on ``disconnect``, ``/healthz`` following the socket (503 when it is down), and a revoked app token being
one message and exit 2 (issue 15, defect 7).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botprocess import BOT_TOKEN, OPSCONSOLE, bot_environment
from inproc import core_on, settings
from slackmock import SlackMock
from socketfake import SocketFake

from bot import blocks
from bot.main import serve
from bot.server import BotServer
from bot.settings import BotConfigError
from opsconsole.core.facade import OpsCore

APP_TOKEN = "xapp-1-A0OPSCONSOLE-1234-abcdef0123456789"


@pytest.fixture
def env_clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPSCONSOLE_HOME", str(tmp_path))
    monkeypatch.setenv("OPSCONSOLE_SANDBOX_READER", "sim")
    return tmp_path


@pytest.fixture
def core(env_clean: Path) -> Iterator[OpsCore]:
    with core_on(env_clean) as core:
        yield core


def health(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow
def test_socket_mode_acks_every_envelope_reconnects_and_reports_health(core: OpsCore) -> None:
    with SlackMock() as slack, SocketFake() as fake:
        slack.socket_url = fake.url
        stop = threading.Event()
        up: list[BotServer] = []
        failure: list[BaseException] = []

        def run() -> None:
            try:
                serve(
                    settings(slack.api_url, signing_secret=None, app_token=APP_TOKEN),
                    core,
                    host="127.0.0.1",
                    port=0,
                    stop=stop,
                    say=lambda _t: None,
                    started=up.append,
                )
            except BaseException as error:  # surfaced below
                failure.append(error)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            fake.wait_connections(1)
            deadline = time.monotonic() + 30
            while not up and not failure and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not failure, failure
            port = up[0].port
            status, report = health(port)
            assert status == 200 and report["socket"]["ok"] and report["store"]["ok"], report

            slash = {
                "token": "x",
                "team_id": "T0SANDBOX",
                "user_id": "U0VICTOR",
                "channel_id": "C0OPSCHAT",
                "command": "/ops",
                "text": "status",
                "response_url": slack.response_url("socket-status"),
                "trigger_id": "1.2.socket",
            }
            fake.wait_ack(fake.send("slash_commands", slash, accepts_response_payload=True))
            slack.wait_for("response_url", lambda c: c.params["_path"].endswith("/socket-status"))

            action = {
                "type": "block_actions",
                "user": {"id": "U0BOB", "team_id": "T0SANDBOX"},
                "team": {"id": "T0SANDBOX"},
                "channel": {"id": "C0SBXAPPROVALS"},
                "container": {"type": "message", "message_ts": "1.1", "channel_id": "C0SBXAPPROVALS"},
                "trigger_id": "1.2.click",
                "response_url": slack.response_url("socket-click"),
                "actions": [
                    {"action_id": blocks.APPROVE, "value": "f" * 32, "action_ts": "5.5", "type": "button"}
                ],
            }
            fake.wait_ack(fake.send("interactive", action))
            slack.wait_for("chat.postEphemeral", lambda c: c.params.get("user") == "U0BOB")

            event = {
                "type": "event_callback",
                "team_id": "T0SANDBOX",
                "event_id": "Ev0SOCKET1",
                "event": {"type": "app_home_opened", "user": "U0BOB", "tab": "home"},
            }
            fake.wait_ack(fake.send("events_api", event))
            slack.wait_for("views.publish")

            fake.disconnect()
            fake.wait_connections(2)
            assert len(slack.of("apps.connections.open")) >= 3  # the start check, connect, reconnect
            fake.wait_ack(fake.send("slash_commands", {**slash, "trigger_id": "1.3.socket"}))

            fake.stop()  # Slack goes away: the health says so
            deadline = time.monotonic() + 30
            while health(port)[0] != 503:
                assert time.monotonic() < deadline, health(port)
                time.sleep(0.2)
            assert health(port)[1]["socket"]["ok"] is False
        finally:
            stop.set()
            thread.join(30)


def test_a_revoked_app_token_is_one_message(core: OpsCore) -> None:
    with SlackMock() as slack:
        slack.app_token_revoked = True
        with pytest.raises(BotConfigError) as error:
            serve(
                settings(slack.api_url, signing_secret=None, app_token=APP_TOKEN),
                core,
                host="127.0.0.1",
                port=0,
                stop=threading.Event(),
                say=lambda _t: None,
            )
        assert "SLACK_APP_TOKEN" in error.value.message and "invalid_auth" in error.value.message


@pytest.mark.slow
def test_opsconsole_bot_with_a_revoked_app_token_exits_2_without_a_traceback(env_clean: Path) -> None:
    with SlackMock() as slack:
        slack.app_token_revoked = True
        env = bot_environment(
            env_clean, slack.api_url, SLACK_APP_TOKEN=APP_TOKEN, OPSCONSOLE_SANDBOX_READER="sim"
        )
        result = subprocess.run(
            [OPSCONSOLE, "bot", "--port", "0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    assert result.returncode == 2, result.stderr
    assert "SLACK_APP_TOKEN" in result.stderr and "Traceback" not in result.stderr
    assert APP_TOKEN not in result.stderr + result.stdout and BOT_TOKEN not in result.stderr
