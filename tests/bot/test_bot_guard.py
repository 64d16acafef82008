"""The bot's own HTTP server guards ``/slack/events`` before Bolt parses anything (issue 15, defect 8): a
body over the cap is refused by its Content-Length without being read, an unsigned body is refused before
it is parsed (even when it is not JSON), and a signed malformed body is a 400 with no traceback; and
``/healthz`` turns 503 when the store is down.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import slackpayloads as sp
from botprocess import SECRET
from inproc import bot_on, core_on
from slackmock import SlackMock

from bot.server import BotServer, wsgi_app
from opsconsole.core.store.db import StoreUnavailable


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[BotServer, object]]:
    monkeypatch.setenv("OPSCONSOLE_HOME", str(tmp_path))
    with SlackMock() as slack, core_on(tmp_path) as core, bot_on(core, slack.api_url) as (app, rt):
        server = BotServer("127.0.0.1", 0, wsgi_app(app, lambda: {"ok": True}, max_body=64_000))
        server.start()
        try:
            yield server, rt
        finally:
            server.stop()


def raw(port: int, head: str, body: bytes = b"") -> tuple[int, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head.encode() + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        try:
            while chunk := conn.recv(65536):
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    status = int(data.split(b" ", 2)[1])
    return status, data.decode(errors="replace")


def test_an_oversized_body_is_refused_unread(served: tuple[BotServer, object]) -> None:
    server, _ = served
    head = (
        "POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 100000000\r\nConnection: close\r\n\r\n"
    )
    started = time.monotonic()
    status, _ = raw(server.port, head, b"{" * 1000)  # 100 MB announced, 1 kB sent: nothing waits for more
    assert status == 413 and time.monotonic() - started < 5


def test_the_signature_is_checked_before_parsing_and_malformed_bodies_are_400(
    served: tuple[BotServer, object], caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = served
    url = f"http://127.0.0.1:{server.port}/slack/events"
    caplog.set_level(logging.INFO)
    assert sp.post(url, "{not json", "application/json", {})[0] == 401  # unsigned: never parsed
    assert sp.post(url, "{not json", "application/json", sp.sign("wrong", "{not json"))[0] == 401
    assert sp.post(url, "{not json", "application/json", sp.sign(SECRET, "{not json"))[0] == 400
    form = "payload=%7Bbroken"
    assert sp.post(url, form, "application/x-www-form-urlencoded", sp.sign(SECRET, form))[0] == 400
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.exc_info]
    good = json.dumps({"type": "url_verification", "challenge": "c123", "token": "t"})
    status, text = sp.post(url, good, "application/json", sp.sign(SECRET, good))
    assert status == 200 and "c123" in text


def test_healthz_is_503_when_the_store_is_down(
    served: tuple[BotServer, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, rt = served
    url = f"http://127.0.0.1:{server.port}/healthz"
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    with urllib.request.urlopen(url, timeout=5) as response:
        assert json.loads(response.read())["store"]["ok"] is True

    def down(*_a: object, **_k: object) -> list[str]:
        raise StoreUnavailable("could not connect to server")

    monkeypatch.setattr(rt.outbox, "open_keys", down)  # type: ignore[attr-defined]
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(url, timeout=5)
    assert error.value.code == 503 and json.loads(error.value.read())["store"]["ok"] is False
