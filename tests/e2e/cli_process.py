"""Running the real `opsconsole` command from tests: its environment, one call, a shared local cloud."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

OPSCONSOLE = str(Path(sys.executable).parent / "opsconsole")


def environment(home: Path) -> dict[str, str]:
    """This process's environment without any OPSCONSOLE_ setting, with its own home, and without the
    terminal width a test runner may have set (pytest-xdist's workers say COLUMNS=80): piped output is
    then as wide as a user's pipe gets, and the tables' columns are all there to assert on."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OPSCONSOLE_") and k not in ("COLUMNS", "LINES")}
    env["OPSCONSOLE_HOME"] = str(home)
    return env


def cli(home: Path, *args: str, ok: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run `opsconsole ARGS`; never a traceback; with ``ok`` the command must succeed. (A command that
    only looks at the store, like jobs or approvals, does not read the fleet: its embedded server starts
    on demand.)"""
    env = environment(home)
    result = subprocess.run([OPSCONSOLE, *args], capture_output=True, text=True, timeout=timeout,
                            env=env, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    if ok:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@contextmanager
def sandbox_up(home: Path) -> Iterator[subprocess.Popen[str]]:
    """`opsconsole sandbox up` running in ``home`` for the block; stopped with SIGTERM after it."""
    process = subprocess.Popen([OPSCONSOLE, "sandbox", "up"], env=environment(home), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    endpoints = home / "sandbox" / "endpoints.json"
    deadline = time.monotonic() + 90
    while not endpoints.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the local cloud did not come up in 90 s"
        time.sleep(0.2)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
