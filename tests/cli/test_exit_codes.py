"""Exit codes of an interrupted command: 130 for Ctrl-C, 143 for SIGTERM, wherever it lands.

A CI run sent SIGTERM to `act env stop dev` just as its run started, before the command followed it:
the run was cancelled, but the command exited 130, as for Ctrl-C. Typer turns every KeyboardInterrupt
(SIGTERM's :class:`Terminated` included) that leaves a command into 130; the entry point gives it back
its own code. In-process, through the real entry point (``opsconsole.cli.main``).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from opsconsole.cli import context, main
from opsconsole.core.fleet import inventory


@pytest.fixture
def sigterm_restored() -> Iterator[None]:
    """The entry point installs its SIGTERM handler for good: put the test process's back."""
    assert threading.current_thread() is threading.main_thread()  # signals reach the main thread only
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
        context._terminated.clear()


def _exit_code_when_loading_the_inventory(monkeypatch: pytest.MonkeyPatch, interrupt: Any) -> object:
    monkeypatch.setattr(inventory, "load_inventory", interrupt)
    with pytest.raises(SystemExit) as ended:
        main(["inventory", "check"])
    return ended.value.code


def test_sigterm_outside_a_followed_run_exits_143(
    sigterm_restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def sigterm(*_args: object) -> None:
        # Only once the entry point's handler is in: the default action would end the test process.
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the SIGTERM handler did not interrupt the command")

    assert _exit_code_when_loading_the_inventory(monkeypatch, sigterm) == 143


def test_ctrl_c_outside_a_followed_run_still_exits_130(
    sigterm_restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ctrl_c(*_args: object) -> None:
        raise KeyboardInterrupt

    assert _exit_code_when_loading_the_inventory(monkeypatch, ctrl_c) == 130


def test_an_ordinary_end_keeps_its_code(sigterm_restored: None) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["inventory", "check"])
    assert ended.value.code in (0, None)
