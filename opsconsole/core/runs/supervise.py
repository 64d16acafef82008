"""A run never outlives its owner unnoticed: a tiny watchdog per run that kills the run's processes the
moment the process that owns it dies — by ``kill -9`` too, when no handler of the owner can run.

ansible-playbook runs in its own session (ansible-runner starts it under a pty), so the owner's death
reaches none of it: no SIGHUP, no group signal. Each run therefore starts this watchdog
(``python -m opsconsole.core.runs.supervise``) in a session of its own, with a pipe from the owner on its
stdin. The kernel closes the owner's end of the pipe when the owner dies, however it dies; the watchdog
reads end-of-file without the word ``done`` and kills every process bearing the run's marker
(``OPSCONSOLE_JOB_ID=<job>``, see :func:`kill_job_processes`), repeating until none is left, then exits.
When the run ends normally the owner writes ``done`` and the watchdog exits without touching anything.
On Linux it also asks for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), a second path to the same
end. It ignores SIGINT and SIGHUP: a Ctrl-C at the terminal is the owner's to decide (cancel or detach).

This module imports nothing heavy (no ansible-runner, no SQLAlchemy) so that the watchdog is up within
a few tens of milliseconds; :mod:`opsconsole.core.runs.runner` re-exports the process helpers.

Use (the runner does this for every run)::

    watchdog = Watchdog.start(job_id, run_dir)
    ...                                         # the run
    watchdog.done()                             # the run ended: stand down
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from opsconsole.core.processes import process_state

log = logging.getLogger(__name__)

MARKER_VAR = "OPSCONSOLE_JOB_ID"
KILL_DEADLINE_S = 5.0
_JOB_ENV = "OPSCONSOLE_WATCH_JOB"
_DIR_ENV = "OPSCONSOLE_WATCH_RUN_DIR"
_OWNER_ENV = "OPSCONSOLE_WATCH_OWNER"
_DONE = b"done"
_PR_SET_PDEATHSIG = 1


# -- the processes of a job -------------------------------------------------------------------------------


def job_processes(job_id: str, run_dir: Path | None = None) -> list[int]:
    """Live processes of a job: those whose environment carries the job's marker, or whose command line
    names its run dir (e.g. when the environment cannot be read). Zombies are dead and are not listed."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: nothing to find; cancel still has ansible-runner's group kill
        return []
    marker = f"{MARKER_VAR}={job_id}".encode()
    run_dir_bytes = str(run_dir).encode() if run_dir is not None else None
    me = os.getpid()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ours = marker in environ.split(b"\0") or (run_dir_bytes is not None and run_dir_bytes in cmdline)
        if ours and process_state(pid) not in (None, "Z", "X"):
            found.append(pid)
    return found


def kill_job_processes(
    job_id: str, run_dir: Path | None = None, *, deadline_s: float = KILL_DEADLINE_S
) -> int:
    """SIGKILL every process of a job until none is left (a parent may fork between two scans).

    Returns how many processes were killed.
    """
    killed: set[int] = set()
    end = time.monotonic() + deadline_s
    while True:
        pids = job_processes(job_id, run_dir)
        if not pids:
            return len(killed)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
            except PermissionError:
                log.warning("job %s: may not kill process %d", job_id, pid)
        if time.monotonic() > end:
            log.warning("job %s: processes still alive after %.0f s: %s", job_id, deadline_s, pids)
            return len(killed)
        time.sleep(0.02)


# -- the owner's side ---------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the watchdog: SIGTERM when the parent (thread) dies (Linux only; best effort). Called by the
    watchdog itself, not in a ``preexec_fn`` (unsafe in the owner's threaded process)."""
    try:
        import ctypes  # noqa: PLC0415

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Watchdog:
    """The owner's handle on the watchdog of one run."""

    def __init__(self, process: subprocess.Popen[bytes] | None) -> None:
        self.process = process

    @classmethod
    def start(cls, job_id: str, run_dir: Path) -> Watchdog:
        """Start the watchdog of ``job_id`` (a no-op handle where there is no ``/proc`` to find the run's
        processes by). A watchdog that cannot start is logged, never fatal: the run still ends its own
        processes when it ends normally."""
        if not Path("/proc").is_dir():
            return cls(None)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            _JOB_ENV: job_id,
            _DIR_ENV: str(run_dir),
            _OWNER_ENV: str(os.getpid()),
        }
        try:
            process = subprocess.Popen(
                [sys.executable, "-S", "-m", __name__],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=env, start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            log.warning("job %s: could not start its watchdog (%s): if this process dies mid-run, the "
                        "next start cleans up its processes", job_id, exc)
            return cls(None)
        return cls(process)

    def done(self) -> None:
        """The run ended: tell the watchdog to exit without killing anything, and reap it."""
        process = self.process
        if process is None:
            return
        self.process = None
        stdin: IO[bytes] | None = process.stdin
        with contextlib.suppress(OSError, ValueError):
            if stdin is not None:
                stdin.write(_DONE + b"\n")
                stdin.flush()
                stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# -- the watchdog's side -------------------------------------------------------------------------------------


def _watch() -> int:
    job_id = os.environ.get(_JOB_ENV, "")
    run_dir = Path(os.environ.get(_DIR_ENV, "")) if os.environ.get(_DIR_ENV) else None
    if not job_id:
        return 2
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)

    def on_term(_signo: int, _frame: object) -> None:
        raise SystemExit(_reap(job_id, run_dir))

    signal.signal(signal.SIGTERM, on_term)
    if sys.platform.startswith("linux"):
        _die_with_parent()
    if str(os.getppid()) != os.environ.get(_OWNER_ENV, str(os.getppid())):
        # the owner died before the watchdog was up (it was re-parented to init or a subreaper)
        return _reap(job_id, run_dir)
    received = b""
    while True:
        try:
            chunk = os.read(0, 64)
        except InterruptedError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            break
        received += chunk
        if _DONE in received:
            return 0
    return _reap(job_id, run_dir)


def _reap(job_id: str, run_dir: Path | None) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish the job once started
    kill_job_processes(job_id, run_dir, deadline_s=30.0)
    return 0


if __name__ == "__main__":
    sys.exit(_watch())
