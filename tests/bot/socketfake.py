"""A local stand-in for Slack's Socket Mode WebSocket (on aiohttp), paired with :class:`slackmock.SlackMock`
whose ``apps.connections.open`` hands out :attr:`SocketFake.url`.

Like Slack it greets each connection with ``hello``, sends envelopes (``slash_commands``, ``interactive``,
``events_api``) that the app must ack with their ``envelope_id``, and can ask the app to reconnect with a
``disconnect`` message. It records the acks and counts connections.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from typing import Any

from aiohttp import WSMsgType, web


class SocketFake:
    def __init__(self) -> None:
        self.acks: dict[str, dict[str, Any]] = {}
        self.connections = 0
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._sockets: list[web.WebSocketResponse] = []
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/link/?ticket=fake"

    def __enter__(self) -> SocketFake:
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError("the fake Socket Mode server did not start")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/link/", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        self._sockets.append(ws)
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": {"host": "fake", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": "A0OPSCONSOLE"},
                }
            )
        )
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                data = json.loads(message.data)
                if "envelope_id" in data:
                    self.acks[str(data["envelope_id"])] = data
        if ws in self._sockets:
            self._sockets.remove(ws)
        return ws

    def _on_loop(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _send_all(self, text: str) -> None:
        for ws in list(self._sockets)[-1:]:
            await ws.send_str(text)

    def send(self, kind: str, payload: dict[str, Any], *, accepts_response_payload: bool = False) -> str:
        """Send an envelope on the newest connection; returns its envelope id."""
        envelope_id = f"env-{next(self._ids):04d}"
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        if kind == "events_api":
            envelope.update({"retry_attempt": 0, "retry_reason": ""})
        self._on_loop(self._send_all(json.dumps(envelope)))
        return envelope_id

    def disconnect(self, reason: str = "refresh_requested") -> None:
        self._on_loop(self._send_all(json.dumps({"type": "disconnect", "reason": reason})))

    def wait_ack(self, envelope_id: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while envelope_id not in self.acks:
            if time.monotonic() > deadline:
                raise AssertionError(f"no ack for {envelope_id} in {timeout} s (acks: {list(self.acks)})")
            time.sleep(0.02)
        return self.acks[envelope_id]

    def wait_connections(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.connections < count or not self._sockets:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.connections} connection(s), expected {count}")
            time.sleep(0.05)

    def stop(self) -> None:
        async def close() -> None:
            for ws in list(self._sockets):
                await ws.close()
            if self._runner is not None:
                await self._runner.cleanup()

        if self._loop.is_running():
            try:
                self._on_loop(close())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(10)
