"""The HTTP layer of the Kubernetes API emulator: one threaded server on 127.0.0.1, one port for all clusters.

Why this module exists: sockets, keep-alive, Content-Length and the ``down`` fault (really refusing
connections) are transport concerns, apart from what the API answers. :class:`Listener` owns the
listening socket and the open connections; its handler hands every request to a :data:`Respond`
callable and writes the answer back.

Design choices:

* **stdlib ``ThreadingHTTPServer``** (:class:`~opsconsole.sandbox.emulator.QuietHTTPServer`), **not
  aiohttp.** Requests are tiny and few (tens of keep-alive connections, one thread each); a plain
  threaded server needs no event loop thread, lets the ``slow`` fault block one connection with
  ``time.sleep`` without touching the others, and lets the ``down`` fault really refuse connections by
  closing the listening socket (:meth:`Listener.unbind`) and rebinding it later on the same port.
* **Answers**: a :data:`Respond` returns ``(code, headers, body, truncate)``, or None to drop the
  connection without an answer (``down``). ``truncate`` sends half of the declared body and closes the
  connection (the ``malformed`` fault).
* **Streams** (watches): a body that is an iterator of chunks is sent with ``Transfer-Encoding:
  chunked``, one HTTP chunk per item as it comes; the iterator ending sends the final chunk (the
  connection stays usable), :class:`~opsconsole.sandbox.kube.watch.WatchDropped` drops the connection
  without it. Each stream holds its connection's thread; the listen backlog is raised so that a console
  opening ~190 watches at once is not refused.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

from opsconsole.sandbox.emulator import QuietHTTPServer
from opsconsole.sandbox.kube.watch import WatchDropped

__all__ = ["Answer", "Listener", "Payload", "Respond"]

log = logging.getLogger(__name__)

#: A body: bytes, or chunks of a stream (a watch).
Payload = bytes | Iterator[bytes]
#: (status code, extra headers, JSON body, truncate the body and close).
Answer = tuple[int, dict[str, str], Payload, bool]
#: (method, raw path with query, Content-Type, body, Authorization) → the answer, None to drop it.
Respond = Callable[[str, str, str, bytes, str], Answer | None]


class _Server(QuietHTTPServer):
    request_queue_size = 256
    respond: Respond
    track: Callable[[socket.socket, bool], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "opsconsole-kube-api/1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle + the client's delayed ACK
        # add ~40 ms to every keep-alive answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("kube-api %s: " + format, self.address_string(), *args)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        result = self.server.respond(
            self.command, self.path, self.headers.get("Content-Type", ""), body,
            self.headers.get("Authorization", ""),
        )
        if result is None:  # down: drop the connection without an answer
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        code, headers, payload, truncate = result
        if not isinstance(payload, bytes):
            self._stream(code, headers, payload, truncate)
            return
        self.send_response(code)
        self.send_header("Content-Type", headers.get("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            if key != "Content-Type":
                self.send_header(key, value)
        if truncate:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload[: len(payload) // 2] if truncate else payload)

    def _stream(self, code: int, headers: dict[str, str], chunks: Iterator[bytes], drop: bool) -> None:
        """Send ``chunks`` as a chunked body, each as soon as it comes (see the module docstring)."""
        self.send_response(code)
        self.send_header("Content-Type", headers.get("Content-Type", "application/json"))
        self.send_header("Transfer-Encoding", "chunked")
        for key, value in headers.items():
            if key != "Content-Type":
                self.send_header(key, value)
        self.end_headers()
        try:
            for chunk in chunks:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if drop:
                raise WatchDropped()
            self.wfile.write(b"0\r\n\r\n")
        except (WatchDropped, OSError):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class Listener:
    """The listening socket on 127.0.0.1 and the connections it accepted.

    Args:
        respond: answers each request (see :data:`Respond`).
    """

    def __init__(self, respond: Respond) -> None:
        self._respond = respond
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        #: The port, once bound (kept while unbound by the ``down`` fault, to rebind the same one).
        self.port: int | None = None
        self._conns: set[socket.socket] = set()
        self._conn_lock = threading.Lock()

    def bind(self, port: int) -> None:
        """Listen on ``port`` (0: a free one, then :attr:`port`) and serve in a daemon thread."""
        server = _Server(("127.0.0.1", port), _Handler)
        server.respond = self._respond
        server.track = self._track
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="kube-api", daemon=True
        )
        self._thread.start()

    def unbind(self) -> None:
        """Close the listening socket and shut every open connection (clients see the server go away)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._conn_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._conn_lock:
            if opened:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)
