"""The console's embedded server in a child process of its own: the first screen a second sooner.

Why it exists: ``opsconsole`` (the console, ``make run``) needs the embedded server (:mod:`.embedded`)
before it can show anything, and in one process everything it does before the first view -- importing
FastAPI and SQLAlchemy, starting the local cloud, the first Kubernetes read through the real client
against the emulator, uvicorn -- queues behind one GIL with Textual's own start. A child process does that
work on the other core while the console imports Textual and draws its frame, and it keeps the
emulators' background work (the clouds' emulators start right after the first view) off the console's
interpreter. The console still speaks to it exactly as to any ops server: HTTP over the private Unix
socket, with a session token.

The protocol is one JSON object per line, over the child's standard input and output (never the
command line or the environment, which other users can read):

* the child says ``{"ready": {"socket": ..., "token": ...}}`` once it serves, or
  ``{"error": {"kind": ..., "title": ..., "message": ...}}`` and exits 2 (a bad inventory, a store it
  cannot open: the same errors the in-process server raises);
* the console asks ``{"mint": "bob"}`` for ``as bob`` in the palette (sandbox only) and is answered
  ``{"token": ...}`` or an ``error``;
* the end of the child's standard input -- the console closed it, exited or was killed -- stops the
  server the way an in-process one stops (runs cancelled, the local cloud stopped) and the child exits.

The child runs in a session of its own, so the terminal's Ctrl-C reaches the console only; what it logs
goes to ``$OPSCONSOLE_HOME/console-server.log`` (0600, overwritten at each start), never to the
console's screen.

Use::

    process = ServerProcess.spawn(inventory=None, live=False, acting_as="alice")
    process.wait_ready()                  # raises the child's error, if it had one
    with process.client(face="tui") as api:
        api.whoami().person               # "alice"
    process.close()
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from opsconsole.core.errors import OpsError, UsageError
from opsconsole.core.paths import opsconsole_home

log = logging.getLogger(__name__)

#: How long the console waits for its server to serve (a loaded machine, a fresh home).
READY_TIMEOUT_S = 120.0
#: How long the console waits for its server to stop after closing its input, before ending it.
STOP_TIMEOUT_S = 30.0
#: The child's log, in the home.
LOG_NAME = "console-server.log"
#: The base URL a client uses (the host is ignored on a Unix socket); as :data:`.embedded.BASE_URL`.
BASE_URL = "http://opsconsole"


class ServerProcess:
    """The parent's side: the child process, its socket and token once ready (see the module docstring).

    Made by :meth:`spawn`; thread-safe.
    """

    def __init__(self, popen: subprocess.Popen[str], log_path: Path) -> None:
        self._popen = popen
        self.log_path = log_path
        self._lock = threading.Lock()
        self._ready: dict[str, Any] | None = None
        self._failure: OpsError | None = None
        self._closed = False

    @classmethod
    def spawn(
        cls, *, inventory: Path | None = None, live: bool = False, acting_as: str | None = None,
        progressive: bool = True,
    ) -> ServerProcess:
        """Start the child (it returns at once: :meth:`wait_ready` waits for it to serve)."""
        argv = [sys.executable, "-m", "opsconsole.server.process"]
        if inventory is not None:
            argv += ["--inventory", str(inventory)]
        if live:
            argv.append("--live")
        if acting_as is not None:
            argv += ["--as", acting_as]
        if progressive:
            argv.append("--progressive")
        home = opsconsole_home()
        home.mkdir(parents=True, exist_ok=True)
        log_path = home / LOG_NAME
        descriptor = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            popen = subprocess.Popen(  # our own interpreter and module, no shell
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=descriptor, text=True,
                bufsize=1, start_new_session=True, close_fds=True,
            )
        finally:
            os.close(descriptor)
        return cls(popen, log_path)

    @property
    def pid(self) -> int:
        return self._popen.pid

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """``{"socket", "token", ...}`` once the child serves.

        Raises:
            UsageError: the child refused what it was given (e.g. ``--as`` someone not in the cast).
            OpsError: the child failed to start, exited, or did not serve within ``timeout_s``.
        """
        with self._lock:
            if self._ready is not None:
                return self._ready
            if self._failure is not None:
                raise self._failure
            answer = self._read(timeout_s, waiting_for="to start")
            if "ready" in answer:
                self._ready = dict(answer["ready"])
                return self._ready
            self._failure = _error_of(answer, self)
            raise self._failure

    def client(self, *, face: str = "api") -> Any:
        """An :class:`~opsconsole.core.api.OpsApi` for the person the server was started for."""
        ready = self.wait_ready()
        return self._client(str(ready["token"]), face)

    def client_for(self, person: str, *, face: str = "api") -> Any:
        """A client acting as another member of the sandbox cast (``as bob``), with a session token the
        child mints for them.

        Raises:
            UsageError: not the sandbox's server, or ``person`` is not in the cast.
        """
        self.wait_ready()
        with self._lock:
            self._write({"mint": person})
            answer = self._read(30.0, waiting_for=f"a session for {person}")
        if "token" not in answer:
            raise _error_of(answer, self)
        return self._client(str(answer["token"]), face)

    def _client(self, token: str, face: str) -> Any:
        from opsconsole.client.remote import RemoteClient  # noqa: PLC0415 - the client is another package

        assert self._ready is not None
        return RemoteClient(BASE_URL, token, uds=str(self._ready["socket"]), face=face)

    def close(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Close the child's input (it stops its server and exits); end it if it has not within
        ``timeout_s``. Idempotent."""
        if self._closed:
            return
        self._closed = True
        stdin = self._popen.stdin
        if stdin is not None:
            with contextlib.suppress(OSError):  # already broken: the child is gone
                stdin.close()
        try:
            self._popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("the console's server (pid %d) did not stop in %.0f s: ending it", self.pid,
                        timeout_s)
            self._popen.kill()
            self._popen.wait(5)
        if self._popen.stdout is not None:
            self._popen.stdout.close()

    # -- the pipe ---------------------------------------------------------------------------------------

    def _write(self, message: dict[str, Any]) -> None:
        stdin = self._popen.stdin
        try:
            assert stdin is not None
            stdin.write(json.dumps(message) + "\n")
            stdin.flush()
        except (OSError, ValueError) as exc:  # closed, or the child is gone
            raise self._gone(f"could not be reached ({exc})") from None

    def _read(self, timeout_s: float, *, waiting_for: str) -> dict[str, Any]:
        """One answer line (read on a helper thread, so that a silent child cannot hang the console)."""
        stdout = self._popen.stdout
        assert stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True,
                                  name="opsconsole-server-process")
        reader.start()
        reader.join(timeout_s)
        if reader.is_alive():
            raise OpsError(f"the console's server did not answer {waiting_for} within {timeout_s:.0f} s "
                           f"(its log: {self.log_path})", title="server failed")
        if not line or not line[0]:
            self._popen.poll()
            raise self._gone(f"exited (status {self._popen.returncode}) before it answered {waiting_for}")
        try:
            answer = json.loads(line[0])
        except ValueError:
            raise self._gone(f"answered something unreadable ({line[0][:80]!r})") from None
        if not isinstance(answer, dict):
            raise self._gone("answered something unreadable")
        return answer

    def _gone(self, what: str) -> OpsError:
        tail = _tail(self.log_path)
        return OpsError(f"the console's server {what}; its log ({self.log_path}) ends: {tail}"
                        if tail else f"the console's server {what}", title="server failed")


def _error_of(answer: dict[str, Any], process: ServerProcess) -> OpsError:
    error = answer.get("error")
    if not isinstance(error, dict):
        return process._gone(f"answered {str(answer)[:80]}")
    message = str(error.get("message") or "unknown error")
    if error.get("kind") == "UsageError":
        return UsageError(message)
    return OpsError(message, title=str(error.get("title") or "server failed"))


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


# -- the child --------------------------------------------------------------------------------------------


def _say(out: IO[str], message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def _error_message(exc: OpsError) -> dict[str, Any]:
    kind = "UsageError" if isinstance(exc, UsageError) else type(exc).__name__
    return {"error": {"kind": kind, "title": exc.title, "message": exc.message}}


def main(argv: list[str] | None = None) -> int:
    """The child: serve until standard input ends; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m opsconsole.server.process")
    parser.add_argument("--inventory", type=Path)
    parser.add_argument("--live", action="store_true")
    parser.add_argument("--as", dest="acting_as")
    parser.add_argument("--progressive", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The protocol's lines only: nothing else may write to standard output.
    out = sys.stdout
    sys.stdout = sys.stderr
    from opsconsole.server.embedded import EmbeddedServer  # noqa: PLC0415 - the child's whole purpose

    try:
        start = EmbeddedServer.start(inventory=args.inventory, live=args.live, acting_as=args.acting_as,
                                     progressive=args.progressive)
        with start as server:
            _say(out, {"ready": {"socket": server.socket_path, "token": server.token,
                                 "person": server.identity.person, "pid": os.getpid()}})
            for line in sys.stdin:  # until the console closes it, exits or dies
                try:
                    person = json.loads(line).get("mint")
                    _say(out, {"token": server.mint_for(str(person))})
                except OpsError as exc:
                    _say(out, _error_message(exc))
                except (ValueError, AttributeError):
                    _say(out, {"error": {"kind": "UsageError", "title": "bad request",
                                         "message": f"not a request: {line[:80]!r}"}})
    except OpsError as exc:
        _say(out, _error_message(exc))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
