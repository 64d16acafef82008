"""Signals to the real ``opsconsole act …`` while it follows a run (embedded mode): issue 17, item 1.

Ctrl-C (SIGINT, no terminal) and SIGTERM cancel the run: the command exits 130 / 143 once the job's
record says ``cancelled``; kill -9 leaves the run to its parent-death tie (the runner's side) and the next
command that lists jobs repairs the record. In every case no ansible process is left 2 s after the command
is gone. The run is ``act env stop dev`` on the local cloud (it waits for each tier to go down: ~20 s).
The store's back end does not matter here (the signal path is the CLI's): SQLite only.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import ansible_processes, eventually
from .store_cli import OPSCONSOLE, environment, run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="the process checks read /proc"),
]


def _running_job(home: Path) -> str | None:
    path = home / "opsconsole.db"
    if not path.exists():
        return None
    conn = sqlite3.connect(path, timeout=10)
    try:
        row = conn.execute("SELECT id FROM jobs WHERE status = 'running' AND check_mode = 0").fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()
    return None if row is None else str(row[0])


def _job_status(home: Path, job_id: str) -> str:
    # Listing repairs what it can prove dead: the embedded server that reads through the local cloud
    # (the default) builds the runner, whose start-up recovery does it (the sim reader builds none).
    listed = run(home, "jobs", "list", "--json", env={"OPSCONSOLE_SANDBOX_READER": "cloud"})
    assert listed.returncode == 0, listed.stderr
    (job,) = [j for j in json.loads(listed.stdout) if j["id"] == job_id]
    return str(job["status"])


@pytest.mark.parametrize(("signum", "code", "status"), [
    (signal.SIGINT, 130, {"cancelled"}),
    (signal.SIGTERM, 143, {"cancelled"}),
    (signal.SIGKILL, -9, {"cancelled", "interrupted"}),
])
def test_a_signal_mid_run_leaves_no_process_and_a_true_record(
        tmp_path: Path, signum: signal.Signals, code: int, status: set[str]) -> None:
    home = tmp_path / "home"
    env = environment(home, OPSCONSOLE_SANDBOX_READER="cloud")
    command = subprocess.Popen([OPSCONSOLE, "--as", "alice", "act", "env", "stop", "dev"], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        job_id = eventually(lambda: _running_job(home), within_s=120, what="the run to start")
        eventually(lambda: ansible_processes(job_id), within_s=60, what="ansible-playbook to run")
        command.send_signal(signum)
        out, err = command.communicate(timeout=90)
    finally:
        if command.poll() is None:
            command.kill()
            command.communicate()
    assert "Traceback" not in err, err
    assert command.returncode == code, out + err
    gone_by = time.monotonic() + 2.0
    while ansible_processes(job_id) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert ansible_processes(job_id) == [], "an ansible process outlived the command by 2 s"
    assert _job_status(home, job_id) in status
    if signum != signal.SIGKILL:
        assert "cancelled" in (out + err).lower(), f"stdout: {out!r}\nstderr: {err!r}"
