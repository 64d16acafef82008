"""A local Slack Web API server for the bot's tests and benchmark.

It answers the Web API methods the bot calls (``auth.test``, ``chat.postMessage``, ``chat.update``,
``chat.postEphemeral``, ``views.open``, ``views.publish``) in Slack's JSON format, records every call
(JSON or form bodies) with the time it arrived, serves response URLs under ``/response/…``, and can be
told to answer a method 429 with a ``Retry-After`` header a number of times.

It refuses what Slack refuses: a message or view outside Block Kit's limits (:mod:`slacklimits`) is
answered ``invalid_blocks`` / ``msg_too_long`` (messages) or ``invalid_arguments`` (views); a post to a
channel the bot is not in (:meth:`SlackMock.leave`) is ``not_in_channel`` until :meth:`SlackMock.invite`;
an edit of a message it deleted (:meth:`SlackMock.delete`) is ``message_not_found``; :meth:`SlackMock.fail`
answers a method's next calls with any error; ``apps.connections.open`` hands out :attr:`socket_url`
(``invalid_auth`` once :attr:`app_token_revoked`).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from slacklimits import problems


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    status: int = 200


class SlackMock:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._limits: dict[str, list[float]] = {}
        self._failures: dict[str, list[str]] = {}
        self.not_member: set[str] = set()
        self.deleted: set[str] = set()
        self.delay: dict[str, float] = {}
        self.socket_url: str | None = None
        self.app_token_revoked = False
        mock = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                if "json" in (self.headers.get("Content-Type") or ""):
                    params = json.loads(raw or "{}")
                else:
                    params = {k: v[0] for k, v in parse_qs(raw).items()}
                path = self.path.split("?")[0]
                method = path.removeprefix("/api/") if path.startswith("/api/") else "response_url"
                if method == "response_url":
                    params["_path"] = path
                status, body, headers = mock.answer(method, params)
                data = json.dumps(body).encode() if not isinstance(body, bytes) else body
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    def response_url(self, name: str) -> str:
        return f"{self.url}/response/{name}"

    def __enter__(self) -> SlackMock:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def rate_limit(self, method: str, *retry_after: float) -> None:
        """Answer the next ``len(retry_after)`` calls of ``method`` with 429 and these Retry-After values."""
        with self._lock:
            self._limits.setdefault(method, []).extend(retry_after)

    def fail(self, method: str, error: str, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` ``{"ok": false, "error": error}``."""
        with self._lock:
            self._failures.setdefault(method, []).extend([error] * times)

    def leave(self, channel: str) -> None:
        """The bot is not (any more) a member of ``channel``: posts there are ``not_in_channel``."""
        with self._lock:
            self.not_member.add(channel)

    def invite(self, channel: str) -> None:
        with self._lock:
            self.not_member.discard(channel)

    def delete(self, ts: str) -> None:
        """The message ``ts`` is gone: edits of it are ``message_not_found``."""
        with self._lock:
            self.deleted.add(ts)

    def _refusal(self, method: str, params: dict[str, Any]) -> str | None:
        failures = self._failures.get(method)
        if failures:
            return failures.pop(0)
        if method in ("chat.postMessage", "chat.postEphemeral") and params.get("channel") in self.not_member:
            return "not_in_channel"
        if method == "chat.update" and params.get("ts") in self.deleted:
            return "message_not_found"
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral", "response_url"):
            if len(str(params.get("text") or "")) > 40_000:
                return "msg_too_long"
            if params.get("blocks") and problems(params, "message"):
                return "invalid_blocks"
        if method in ("views.open", "views.update", "views.publish"):
            view = params.get("view") or {}
            if isinstance(view, str):
                view = json.loads(view)
            if problems(view, "home" if view.get("type") == "home" else "modal"):
                return "invalid_arguments"
        return None

    def answer(self, method: str, params: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        delay = self.delay.get(method)
        if delay:
            time.sleep(delay)
        with self._lock:
            limits = self._limits.get(method)
            if limits:
                wait = limits.pop(0)
                self.calls.append(Call(method, params, status=429))
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": f"{wait:g}"}
            refused = self._refusal(method, params)
            if refused is not None:
                self.calls.append(Call(method, params, status=400))
                if method == "response_url":
                    return 404, b"no_text" if refused == "invalid_blocks" else refused.encode(), {}
                return 200, {"ok": False, "error": refused}, {}
            self.calls.append(Call(method, params))
            ts = f"1700000000.{next(self._ts):06d}"
        if method == "apps.connections.open":
            if self.app_token_revoked or not self.socket_url:
                return 200, {"ok": False, "error": "invalid_auth"}, {}
            return 200, {"ok": True, "url": self.socket_url}, {}
        if method == "auth.test":
            return (
                200,
                {
                    "ok": True,
                    "url": "https://sandbox.slack.com/",
                    "team": "sandbox",
                    "user": "opsconsole",
                    "team_id": "T0SANDBOX",
                    "user_id": "U0OPSBOT",
                    "bot_id": "B0OPSBOT",
                },
                {},
            )
        if method == "chat.postMessage":
            return (
                200,
                {
                    "ok": True,
                    "channel": params.get("channel"),
                    "ts": ts,
                    "message": {"text": params.get("text"), "ts": ts},
                },
                {},
            )
        if method == "chat.update":
            return 200, {"ok": True, "channel": params.get("channel"), "ts": params.get("ts")}, {}
        if method == "chat.postEphemeral":
            return 200, {"ok": True, "message_ts": ts}, {}
        if method in ("views.open", "views.publish", "views.update"):
            return (
                200,
                {"ok": True, "view": {"id": f"V{ts.replace('.', '')}", **(params.get("view") or {})}},
                {},
            )
        if method == "response_url":
            return 200, b"ok", {}
        return 200, {"ok": True}, {}

    # -- looking at what the bot did ---------------------------------------------------------------

    def of(self, method: str, where: Callable[[Call], bool] | None = None) -> list[Call]:
        with self._lock:
            return [
                c
                for c in self.calls
                if c.method == method and c.status == 200 and (where is None or where(c))
            ]

    def refused(self, method: str) -> list[Call]:
        """Calls of ``method`` answered with an error (not 429s)."""
        with self._lock:
            return [c for c in self.calls if c.method == method and c.status == 400]

    def wait_for(
        self,
        method: str,
        where: Callable[[Call], bool] | None = None,
        *,
        count: int = 1,
        timeout: float = 30.0,
    ) -> list[Call]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.of(method, where)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                seen = [(c.method, c.status, str(c.params)[:300]) for c in self.calls[-15:]]
                raise AssertionError(f"no {count} {method} call(s) in {timeout} s; last calls: {seen}")
            time.sleep(0.05)
