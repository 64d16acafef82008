"""The real `opsconsole` command in a real terminal (tmux): it opens the console, answers keys, quits;
piped, the same command still prints the fleet status (what CI greps)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

OPSCONSOLE = str(Path(sys.executable).parent / "opsconsole")


def environment(home: Path) -> dict[str, str]:
    """This process's environment without any OPSCONSOLE_ setting, with its own home (as tests/e2e)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSCONSOLE_")}
    env["OPSCONSOLE_HOME"] = str(home)
    return env


pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")]


def capture(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=False
    ).stdout


def wait_for(session: str, text: str, timeout: float = 90) -> str:  # generous: a loaded machine
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = capture(session)
        if text in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never showed; screen:\n{capture(session)}")


def test_opsconsole_opens_the_console_in_a_terminal(tmp_path: Path) -> None:
    session = f"ops-{uuid.uuid4().hex[:8]}"
    env = {**environment(tmp_path), "OPSCONSOLE_SANDBOX_READER": "sim", "TERM": "xterm-256color"}
    exports = " ".join(f"{k}={v!r}" for k, v in env.items() if k.startswith(("OPSCONSOLE_", "TERM")))
    subprocess.run(
        [
            "tmux",
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "120",
            "-y",
            "40",
            f"env {exports} {OPSCONSOLE} --as alice",
        ],
        check=True,
        env=env,
    )
    try:
        screen = wait_for(session, "us-east-1")
        assert "p95" in screen and "alice" in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "2"], check=True)
        wait_for(session, ", worst first")  # "1 finding, worst first" or "N findings, …"
        subprocess.run(["tmux", "send-keys", "-t", session, "Escape"], check=True)
        wait_for(session, "worst RPO lag")  # back on the overview (a quick Escape + q would read as alt+q)
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            alive = subprocess.run(["tmux", "has-session", "-t", session], capture_output=True, check=False)
            if alive.returncode != 0:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the console did not quit on q")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, check=False)


def test_piped_opsconsole_still_prints_the_status(tmp_path: Path) -> None:
    env = {**environment(tmp_path), "OPSCONSOLE_SANDBOX_READER": "sim"}
    result = subprocess.run(
        [OPSCONSOLE],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "us-east-1" in result.stdout
