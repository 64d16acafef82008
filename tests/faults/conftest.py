"""Shared helpers of the fault suite: the process table read straight from /proc, waiting for a condition,
and an owner process (a real console stand-in) that runs a real playbook and can be signalled.

The fault tests make the operator's bad day happen for real — signals to the process that owns a run, a
second owner on one PostgreSQL, the store stopped mid-run, clocks that disagree, simultaneous filings —
and check what is left behind in the process table and in the store. Each runs on SQLite and PostgreSQL
where the issue says both (the ``db_url`` fixture of tests/conftest.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

FAULTS = Path(__file__).resolve().parent
REPO = FAULTS.parents[1]
PLAYBOOKS = FAULTS / "playbooks"
INVENTORY = PLAYBOOKS / "inventory" / "hosts.yml"

T = TypeVar("T")


def processes_matching(*needles: str) -> list[tuple[int, str]]:
    """Live (not zombie) processes whose command line or environment contains one of ``needles``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2:][:1] in ("Z", "X"):
            continue
        if any(n.encode() in cmdline or n.encode() in environ for n in needles):
            found.append((int(entry.name), cmdline.decode(errors="replace")))
    return found


def ansible_processes(job_id: str, *needles: str) -> list[tuple[int, str]]:
    """The run's processes: ansible-playbook, its workers and module processes (by the job's marker)."""
    return [p for p in processes_matching(f"OPSCONSOLE_JOB_ID={job_id}", *needles)
            if "opsconsole.core.runs.supervise" not in p[1]]


def eventually(check: Callable[[], T], *, within_s: float = 30.0, what: str = "condition") -> T:
    """``check()`` once it is truthy; fails after ``within_s`` (generous: the machine may be loaded)."""
    deadline = time.monotonic() + within_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
