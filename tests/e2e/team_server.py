"""A real `opsconsole server` process for end-to-end tests, and its clients as separate CLI processes.

Why it exists: issue 12's "Done when" is about what a team sees: one server process that alone holds
the store and runs the playbooks, and people who reach it with `opsconsole …` and a personal token.
:func:`team_server` starts ``opsconsole server --sandbox`` on a free 127.0.0.1 port with its own
``OPSCONSOLE_HOME``, waits (with a deadline) until ``/healthz`` answers 200, and stops it with SIGTERM
(SIGKILL if it will not stop) when the block ends. :class:`TeamServer` makes tokens the way an
administrator does (``opsconsole server --sandbox tokens create NAME --json``) and runs the CLI as a
person: ``OPSCONSOLE_SERVER`` + ``OPSCONSOLE_TOKEN``, in a client home of its own and an empty
``XDG_CONFIG_HOME``, so that the client holds no state and no saved login.

Use::

    with team_server(tmp_path) as server:
        server.make_tokens("alice", "bob")
        filed = server.json("alice", "act", "failover", "--from", "eu-west-1", "--to", "eu-central-1")
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cli_process import OPSCONSOLE, environment

from opsconsole.testing.ports import free_port

#: How long a server may take to answer /healthz 200 (the `cloud` reader starts the local cloud first).
HEALTHY_WITHIN_S = 90.0


def stop(process: subprocess.Popen[Any], *, grace_s: float = 30.0) -> None:
    """SIGTERM, wait; SIGKILL (its whole process group) if it does not end within ``grace_s``."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        # Its own process group (started with start_new_session): the local cloud it started goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@dataclass
class TeamServer:
    """A running `opsconsole server` and how to be its clients."""

    home: Path
    url: str
    process: subprocess.Popen[str]
    log: Path
    #: Where client processes keep their (empty) state: never the server's home.
    client_home: Path
    #: An empty directory: no `opsconsole login` file is found there.
    client_config: Path
    #: CA bundle the clients trust (the TLS variant).
    ca_file: Path | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def database(self) -> Path:
        """The server's SQLite store."""
        return self.home / "opsconsole.db"

    def admin(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``opsconsole server --sandbox ARGS`` on the server's host (its home); must succeed."""
        result = subprocess.run([OPSCONSOLE, "server", "--sandbox", *args], capture_output=True, text=True,
                                timeout=timeout, env=self.server_env(), check=False)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def server_env(self) -> dict[str, str]:
        return environment(self.home)

    def make_tokens(self, *people: str) -> None:
        """A personal token for each person, made as the README says (printed once, as JSON)."""
        for person in people:
            document = json.loads(self.admin("tokens", "create", person, "--json").stdout)
            assert document["person"] == person and document["token"].startswith("opc_"), document
            self.tokens[person] = document["token"]

    def client_env(self, person: str | None, **extra: str) -> dict[str, str]:
        """A client's environment: the server's URL, ``person``'s token (none when None), its own home."""
        env = environment(self.client_home)
        env["XDG_CONFIG_HOME"] = str(self.client_config)
        env["OPSCONSOLE_SERVER"] = self.url
        if self.ca_file is not None:
            env["OPSCONSOLE_CA_FILE"] = str(self.ca_file)
        if person is not None:
            env["OPSCONSOLE_TOKEN"] = self.tokens[person]
        env.update(extra)
        return env

    def cli(
        self,
        person: str | None,
        *args: str,
        ok: bool = True,
        timeout: float = 180,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``opsconsole ARGS`` as ``person`` (``env`` adds or overrides variables); never a traceback;
        with ``ok`` it must succeed."""
        full = self.client_env(person)
        full.update(env or {})
        result = subprocess.run([OPSCONSOLE, *args], capture_output=True, text=True, timeout=timeout,
                                env=full, input=stdin, check=False)
        assert "Traceback" not in result.stderr, result.stderr
        if ok:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def json(self, person: str, *args: str, timeout: float = 180) -> Any:
        """The JSON a successful ``opsconsole ARGS --json`` prints."""
        return json.loads(self.cli(person, *args, "--json", timeout=timeout).stdout)

    def http(self, **headers: str) -> httpx.Client:
        """A plain HTTP client of the server (no credential unless given in ``headers``)."""
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, verify=trusting(self.ca_file))

    def server_log(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def trusting(ca_file: Path | None) -> ssl.SSLContext | bool:
    """httpx's ``verify`` for a server whose certificate ``ca_file`` signed (the system's CAs if None)."""
    return True if ca_file is None else ssl.create_default_context(cafile=str(ca_file))


def _wait_healthy(process: subprocess.Popen[str], url: str, log: Path, ca_file: Path | None) -> bool:
    """True once /healthz answers 200; False if the process ended first (e.g. the port was taken)."""
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    with httpx.Client(timeout=5, verify=trusting(ca_file)) as http:
        while True:
            if process.poll() is not None:
                return False
            try:
                if http.get(f"{url}/healthz").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
                raise AssertionError(f"{url}/healthz: no 200 within {HEALTHY_WITHIN_S:.0f} s:\n{tail}")
            time.sleep(0.25)


@contextmanager
def team_server(
    root: Path,
    *,
    reader: str | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[TeamServer]:
    """``opsconsole server --sandbox`` with its home under ``root`` for the block.

    ``reader``: ``sim`` reads the simulated world in-process (fast; no playbook can change it); None keeps
    the default ``cloud`` reader (the server starts its own local cloud). ``tls``: (certificate, key).
    """
    home = root / "server-home"
    home.mkdir(parents=True, exist_ok=True)
    (root / "client-home").mkdir(exist_ok=True)
    (root / "client-config").mkdir(exist_ok=True)
    env = environment(home)
    if reader is not None:
        env["OPSCONSOLE_SANDBOX_READER"] = reader
    for attempt in range(3):  # a free port can be taken between the probe and the bind: try another
        port = free_port()
        args = [OPSCONSOLE, "server", "--sandbox", "--host", "127.0.0.1", "--port", str(port)]
        scheme = "http"
        if tls is not None:
            args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
            scheme = "https"
        url = f"{scheme}://127.0.0.1:{port}"
        log = root / f"server-{attempt}.log"
        with log.open("w", encoding="utf-8") as sink:  # a file, not a pipe: the log is long and unread
            process = subprocess.Popen(args, env=env, text=True, stdin=subprocess.DEVNULL, stdout=sink,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if _wait_healthy(process, url, log, tls[0] if tls else None):
                break
        except BaseException:
            stop(process)
            raise
        text = log.read_text(encoding="utf-8", errors="replace")
        if "address already in use" not in text.lower():
            raise AssertionError(f"opsconsole server exited with {process.returncode}:\n{text[-3000:]}")
    else:
        raise AssertionError("no free port for the server after 3 attempts")
    server = TeamServer(home=home, url=url, process=process, log=log, client_home=root / "client-home",
                        client_config=root / "client-config", ca_file=tls[0] if tls else None)
    try:
        yield server
    finally:
        stop(process)
    assert process.returncode is not None
    assert "Traceback" not in server.server_log(), server.server_log()[-5000:]

