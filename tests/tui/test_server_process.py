"""The console's embedded server in a child process (opsconsole/server/process.py), as ``opsconsole`` runs
it: the child serves on its private socket and hands over its token on a pipe; ``as bob`` is a token the
child mints; a bad ``--as`` is the same usage error as in-process; the child stops when the console
closes its pipe -- or dies, even by ``kill -9`` -- and nothing of it is left; its log never holds a token.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opsconsole.core.errors import UsageError
from opsconsole.server.process import LOG_NAME, ServerProcess
from opsconsole.tui import open_api
from opsconsole.tui.app import OpsConsoleApp

from .helpers import refreshed, screen_text, sim_without_team_server, until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(autouse=True)
def _sim_and_no_team_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sim_without_team_server(tmp_path, monkeypatch)


def _gone(pid: int, within_s: float = 60.0) -> bool:
    """Whether process ``pid`` ends within ``within_s`` (reaped by its parent, or a zombie of a dead one)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def test_the_child_serves_mints_cast_sessions_and_stops_when_its_pipe_closes(
    _isolated_home: Path,
) -> None:
    process = ServerProcess.spawn(acting_as="alice")
    try:
        ready = process.wait_ready()
        socket = Path(str(ready["socket"]))
        assert socket.exists() and ready["pid"] == process.pid and ready["person"] == "alice"
        with process.client(face="tui") as api:
            caller = api.whoami()
            assert (caller.person, caller.credential) == ("alice", "embedded")
            assert api.fleet().snapshot.records
        with process.client_for("bob", face="tui") as bob:
            assert bob.whoami().person == "bob"
        with pytest.raises(UsageError, match="mallory: not in the sandbox cast"):
            process.client_for("mallory")
    finally:
        process.close()
    assert process._popen.returncode == 0
    assert not socket.exists() and not socket.parent.exists()  # its private directory went with it
    log = _isolated_home / LOG_NAME
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    assert str(ready["token"]) not in log.read_text()


def test_a_bad_as_is_the_usage_error_and_the_child_exits_2() -> None:
    process = ServerProcess.spawn(acting_as="nobody")
    with pytest.raises(UsageError, match="--as nobody: not in the sandbox cast"):
        process.wait_ready()
    process.close()
    assert process._popen.returncode == 2


def test_the_child_stops_when_the_console_is_killed(tmp_path: Path) -> None:
    """``kill -9`` of the console: its end of the pipe closes, and the child stops its server."""
    console = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from opsconsole.server.process import ServerProcess\n"
         "p = ServerProcess.spawn(acting_as='alice')\n"
         "p.wait_ready()\n"
         "print(p.pid, flush=True)\n"
         "time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True, env=os.environ.copy(),
    )
    try:
        assert console.stdout is not None
        child = int(console.stdout.readline())
        assert not _gone(child, within_s=0.5)  # serving
        console.send_signal(signal.SIGKILL)
        console.wait(10)
        assert _gone(child), f"the console's server (pid {child}) outlived the console"
    finally:
        console.kill()
        console.wait(10)


async def test_the_console_on_its_server_process_shows_data_and_acts_as_bob() -> None:
    factory, reopen = open_api(None, acting_as="alice", server_process=True)
    process: ServerProcess = factory.process  # type: ignore[attr-defined]
    app = OpsConsoleApp(factory, refresh_s=0, reopen=reopen)
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app, timeout=90)
        assert app.who is not None and app.who.person == "alice"
        assert "eu-west-1" in screen_text(app)
        app.act_as("bob")
        await until(pilot, lambda: app.who is not None and app.who.person == "bob", timeout=60)
    assert _gone(process.pid, within_s=60)  # the app's exit closed it
