"""The bot's HTTP server: ``POST /slack/events`` (Bolt, through its WSGI adapter), ``GET /healthz`` and
``GET /metrics`` (Prometheus).

Bolt's own ``App.start()`` binds every interface; this binds where it is told (127.0.0.1 by default: put
a TLS-terminating proxy in front of it for Slack). The standard library's threaded WSGI server is
enough: each request only runs up to its ack, which takes milliseconds. ``/healthz`` is also the
benchmark's baseline: a bare 200 on the same server.

``/slack/events`` is guarded before Bolt sees a byte: a body over ``max_body`` (by its Content-Length,
unread; or as it is read, when chunked) is 413; the Slack signature and timestamp are checked on the raw
body (401) *before* anything parses it; a signed body that is not the JSON or form it says it is gets a
400 with one log line, no traceback. ``/healthz`` merges the caller's facts with the registered
:data:`PROBES` (the store, the Socket Mode connection): 200 when every probe says ``ok``, else 503.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.signature import SignatureVerifier

from bot import metrics

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
StartResponse = Callable[..., Any]
#: Slack's payloads are a few kB; a large modal submission stays well under this.
MAX_BODY = 1_000_000

#: Health probes: each returns ``{"name": …, "ok": bool, …}``; registered by the runtime and the Socket
#: Mode runner of this process, read by every ``/healthz``.
PROBES: list[Callable[[], dict[str, Any]]] = []
_probes_lock = threading.Lock()


def add_probe(probe: Callable[[], dict[str, Any]]) -> Callable[[], None]:
    """Register ``probe`` for ``/healthz``; returns its removal."""
    with _probes_lock:
        PROBES.append(probe)

    def remove() -> None:
        with _probes_lock:
            if probe in PROBES:
                PROBES.remove(probe)

    return remove


def health_report(base: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    report = dict(base)
    ok = bool(report.get("ok", True))
    with _probes_lock:
        probes = list(PROBES)
    for probe in probes:
        try:
            found = dict(probe())
        except Exception as error:  # a probe that cannot say is a failing probe
            found = {"name": getattr(probe, "__name__", "probe"), "ok": False, "error": str(error)}
        name = str(found.pop("name", "probe"))
        ok = ok and bool(found.get("ok"))
        report[name] = found
    report["ok"] = ok
    return ok, report


def _plain(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    body = (text + "\n").encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _read_capped(environ: dict[str, Any], cap: int) -> bytes | None:
    """The request body, or ``None`` if it is over ``cap`` (not read past cap + 1 bytes)."""
    length_text = environ.get("CONTENT_LENGTH") or ""
    stream = environ["wsgi.input"]
    if length_text:
        try:
            length = int(length_text)
        except ValueError:
            return None
        if length < 0 or length > cap:
            return None
        return bytes(stream.read(length)) if length else b""
    data = stream.read(cap + 1) if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked" else b""
    return None if len(data) > cap else bytes(data)


def _signed(verifier: SignatureVerifier, body: bytes, headers: dict[str, str]) -> bool:
    """Slack's v0 signature and a timestamp within 5 minutes (a missing or garbled header: not signed)."""
    if not headers["x-slack-request-timestamp"].isdigit() or not headers["x-slack-signature"]:
        return False
    try:
        return bool(verifier.is_valid_request(body, headers))
    except ValueError:
        return False


def _well_formed(environ: dict[str, Any], body: bytes) -> bool:
    """The body parses as what its Content-Type says (JSON, or a form whose ``payload`` is JSON)."""
    kind = str(environ.get("CONTENT_TYPE") or "")
    try:
        text = body.decode("utf-8")
        if "json" in kind:
            return isinstance(json.loads(text), dict)
        form = parse_qs(text, strict_parsing=bool(text), max_num_fields=200)
        if "payload" in form:
            return isinstance(json.loads(form["payload"][0]), dict)
        return True
    except (UnicodeDecodeError, ValueError):
        return False


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 256  # bursts of 50+ commands must not be refused at accept


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def wsgi_app(
    app: App | None,
    health: Callable[[], dict[str, Any]],
    *,
    signing_secret: str | None = None,
    max_body: int = MAX_BODY,
) -> Callable[..., Iterable[bytes]]:
    """The WSGI application routing the three paths (``app`` None: no ``/slack/events``, Socket Mode).

    ``signing_secret``: what ``/slack/events`` checks before parsing (default: the Bolt app's own).
    """
    slack = SlackRequestHandler(app, path=EVENTS_PATH) if app is not None else None
    secret = signing_secret if signing_secret is not None else getattr(app, "_signing_secret", "") or ""
    verifier = SignatureVerifier(secret) if secret else None

    def events(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        assert slack is not None
        if environ.get("REQUEST_METHOD") != "POST":
            return _plain(start_response, "405 Method Not Allowed", "POST only")
        body = _read_capped(environ, max_body)
        if body is None:
            metrics.PAYLOADS.labels("too_large").inc()
            log.warning("refused a request body over %d bytes (unread)", max_body)
            return _plain(start_response, "413 Payload Too Large", "body too large")
        headers = {
            "x-slack-signature": str(environ.get("HTTP_X_SLACK_SIGNATURE") or ""),
            "x-slack-request-timestamp": str(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP") or ""),
        }
        if verifier is not None and not _signed(verifier, body, headers):
            metrics.PAYLOADS.labels("bad_signature").inc()
            return _plain(start_response, "401 Unauthorized", "invalid request")
        if not _well_formed(environ, body):
            metrics.PAYLOADS.labels("malformed").inc()
            log.warning("refused a signed request whose body is not %s", environ.get("CONTENT_TYPE"))
            return _plain(start_response, "400 Bad Request", "malformed body")
        environ = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        try:
            return slack(environ, start_response)
        except Exception:
            log.error("handling a Slack request failed", exc_info=True)
            return _plain(start_response, "500 Internal Server Error", "error")

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == EVENTS_PATH and slack is not None:
            started = time.perf_counter()
            try:
                return events(environ, start_response)
            finally:
                metrics.ACK_SECONDS.observe(time.perf_counter() - started)
        if path == "/healthz" and method == "GET":
            ok, report = health_report(health())
            body = json.dumps(report).encode()
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
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
