"""Issue 16: the console survives a tmux script that mashes every key on every screen, at 80×24 and
200×50 — the real ``opsconsole`` command (embedded server, sim reader) in a real terminal. After each
screen's burst the process must still be running and the pane must show no traceback; at the end ``q``
must still quit it, with exit status 0."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from .test_tmux import OPSCONSOLE, capture, environment, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")]

#: Every key a person could press, as tmux names them (``q`` is left for the end: it quits).
KEYS = [
    *"abcdefghijklmnoprstuvwxyz",
    *"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    *"0123456789",
    *"/?:[]-=+.,;'`\\!@#$%^&*()_<>{}|~\"",
    "Enter",
    "Tab",
    "BTab",
    "Up",
    "Down",
    "Left",
    "Right",
    "PPage",
    "NPage",
    "Home",
    "End",
    "BSpace",
    "DC",
    "Space",
    "C-r",
    "C-p",
    "C-t",
    "C-s",
    "C-o",
    "C-l",
    "F1",
    "Escape",
]
SCREENS = ["1", "2", "3", "4", "5", "6", "1 Enter"]


def _send(session: str, *keys: str) -> None:
    subprocess.run(["tmux", "send-keys", "-t", session, *keys], check=True)


def _alive(session: str) -> bool:
    out = subprocess.run(
        ["tmux", "display-message", "-p", "-t", session, "#{pane_dead}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.returncode == 0 and out.stdout.strip() == "0"


def _calm(session: str) -> None:
    # Close whatever the burst opened (forms, dialogs, the palette, the command line, a filter).
    for _ in range(6):
        _send(session, "Escape")
        time.sleep(0.25)  # a quick Escape + key reads as alt+key


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=["80x24", "200x50"])
def test_mashing_every_key_on_every_screen_does_not_kill_the_console(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    session = f"mash-{uuid.uuid4().hex[:8]}"
    env = {**environment(tmp_path), "OPSCONSOLE_SANDBOX_READER": "sim", "TERM": "xterm-256color"}
    exports = " ".join(f"{k}={v!r}" for k, v in env.items() if k.startswith(("OPSCONSOLE_", "TERM")))
    status = tmp_path / "status"
    command = f"env {exports} {OPSCONSOLE} --as alice; echo exit=$? > {status}"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1]), command],
        check=True,
        env=env,
    )
    subprocess.run(["tmux", "set-option", "-t", session, "remain-on-exit", "on"], check=True)
    try:
        wait_for(session, "us-east-1", timeout=60)
        for screen in SCREENS:
            _calm(session)
            for key in screen.split():
                _send(session, key)
                time.sleep(0.3)
            for key in KEYS:
                _send(session, "-l", key) if len(key) == 1 else _send(session, key)
                time.sleep(0.02)
            time.sleep(0.5)
            pane = capture(session)
            assert not status.exists(), f"the console exited on screen {screen}:\n{pane}"
            assert _alive(session), f"the console died on screen {screen}:\n{pane}"
            assert "Traceback" not in pane and "Error" not in pane.split("\n")[0], pane
        _calm(session)
        _send(session, "1")
        wait_for(session, "us-east-1", timeout=30)
        time.sleep(0.5)
        _send(session, "q")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not status.exists():
            time.sleep(0.2)
        assert status.exists(), f"q did not quit:\n{capture(session)}"
        assert status.read_text().strip() == "exit=0", capture(session)
        assert "Traceback" not in capture(session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, check=False)
