"""The emulators' HTTP server stays quiet when a client hangs up (it used to print a traceback each time)."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from opsconsole.sandbox.emulator import QuietHTTPServer


class _HangsUp(BaseHTTPRequestHandler):
    answered = threading.Event()

    def do_GET(self) -> None:
        _HangsUp.answered.set()
        raise BrokenPipeError(32, "Broken pipe")  # what writing to a client that went away raises

    def log_message(self, format: str, *args: object) -> None:
        return None


def _hit(server_class: type[ThreadingHTTPServer]) -> None:
    server = server_class(("127.0.0.1", 0), _HangsUp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _HangsUp.answered.clear()
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        conn.request("GET", "/")
        with pytest.raises((http.client.HTTPException, OSError)):
            conn.getresponse()
        assert _HangsUp.answered.wait(10)
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_client_that_hangs_up_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    _hit(QuietHTTPServer)
    assert "Traceback" not in capfd.readouterr().err


def test_the_stdlib_server_would_have_printed_a_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    _hit(ThreadingHTTPServer)
    assert "BrokenPipeError" in capfd.readouterr().err
