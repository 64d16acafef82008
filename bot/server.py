"""The bot's HTTP server: ``POST /slack/events`` (Bolt, through its WSGI adapter), ``GET /healthz`` and
``GET /metrics`` (Prometheus).

Bolt's own ``App.start()`` binds every interface; this binds where it is told (127.0.0.1 by default: put
a TLS-terminating proxy in front of it for Slack). The standard library's threaded WSGI server is
enough: each request only runs up to its ack, which takes milliseconds. ``/healthz`` is also the
benchmark's baseline: a bare 200 on the same server.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot import metrics

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
StartResponse = Callable[..., Any]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 256  # bursts of 50+ commands must not be refused at accept


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def wsgi_app(app: App | None, health: Callable[[], dict[str, Any]]) -> Callable[..., Iterable[bytes]]:
    """The WSGI application routing the three paths (``app`` None: no ``/slack/events``, Socket Mode)."""
    slack = SlackRequestHandler(app, path=EVENTS_PATH) if app is not None else None

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == EVENTS_PATH and slack is not None:
            started = time.perf_counter()
            try:
                return slack(environ, start_response)
            finally:
                metrics.ACK_SECONDS.observe(time.perf_counter() - started)
        if path == "/healthz" and method == "GET":
            body = json.dumps(health()).encode()
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        if path == "/metrics" and method == "GET":
            body = generate_latest(metrics.REGISTRY)
            start_response(
                "200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))]
            )
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return application


class BotServer:
    """A threaded HTTP server on ``host:port`` running :func:`wsgi_app` in a background thread."""

    def __init__(self, host: str, port: int, application: Callable[..., Iterable[bytes]]) -> None:
        self._server = make_server(
            host, port, application, server_class=_ThreadingServer, handler_class=_Handler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
