"""Is that process alive? One answer for the run engine, the leases and the local cloud.

A process that has exited but not been reaped (a zombie) is dead for every purpose here: it will never
renew a lease or finish a run. Where ``/proc`` exists its state letter says so; elsewhere (macOS, BSD)
only existence can be checked, and a zombie looks alive until its parent reaps it. When in doubt (a
process of another user that ``/proc`` will not show), it is alive: declaring a live holder dead would
let two runs hold one target.
"""

from __future__ import annotations

import os
from pathlib import Path


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` in ``/proc`` (``R``, ``S``, ``Z``…), or ``None`` if it has none there."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) S …": comm may hold spaces or parentheses, the state follows the last ")".
    return text[text.rfind(")") + 2 :][:1] or None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine is alive; a zombie is dead. When in doubt: alive."""
    if pid <= 0:
        return False
    if Path("/proc/self/stat").exists():
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return False
        except OSError:  # there, but not ours to read
            return True
        return text[text.rfind(")") + 2 :][:1] not in ("Z", "X")
    return _exists(pid)


def _exists(pid: int) -> bool:
    """Existence only (no ``/proc``): a zombie looks alive until its parent reaps it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- who owns a run or a lease: an identity that survives pid reuse, reboots and other hosts ---------------

_BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """This machine's boot id (a new one at every boot), or ``""`` where there is none (not Linux)."""
    try:
        return _BOOT_ID_PATH.read_text().strip()
    except OSError:
        return ""


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (field 22 of ``/proc/<pid>/stat``), or ``None``.

    A pid is reused after its process dies; the pair (pid, start time) is not, within one boot.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # fields[0] is the state (field 3): field 22 is fields[19]
    except (IndexError, ValueError):
        return None


class Owner:
    """The process that owns a run or a lease: host, boot, pid and the pid's start time (or a worker id).

    Stored as one string, ``host/boot_id/pid/start`` (:meth:`token`), with which any process can judge:
    on the same host and boot, the owner is alive iff a process with that pid *and* that start time is
    (decided at once); a different boot of this host means it is dead (the machine restarted); another
    host cannot be judged from here (:meth:`alive_here` returns ``None``): only an expired heartbeat in
    database time makes its work dead.
    """

    __slots__ = ("boot", "host", "pid", "start", "worker")

    def __init__(self, host: str, boot: str, pid: int, start: int | None, worker: str = "") -> None:
        self.host = host
        self.boot = boot
        self.pid = pid
        self.start = start
        self.worker = worker

    @classmethod
    def current(cls, worker: str = "") -> Owner:
        """This process."""
        import socket  # noqa: PLC0415  (kept off the import path of the liveness helpers)

        pid = os.getpid()
        return cls(socket.gethostname(), boot_id(), pid, process_start_time(pid), worker)

    def token(self) -> str:
        start = "" if self.start is None else str(self.start)
        text = f"{self.host}/{self.boot}/{self.pid}/{start}"
        return f"{text}/{self.worker}" if self.worker else text

    @classmethod
    def parse(cls, token: str | None) -> Owner | None:
        """The owner a :meth:`token` names, or ``None`` for anything else (a row written before owners)."""
        if not token:
            return None
        parts = token.split("/")
        if len(parts) < 4:
            return None
        try:
            pid = int(parts[2])
            start = int(parts[3]) if parts[3] else None
        except ValueError:
            return None
        return cls(parts[0], parts[1], pid, start, "/".join(parts[4:]))

    def alive_here(self, *, host: str | None = None, boot: str | None = None) -> bool | None:
        """Whether this owner is alive, judged from this machine: ``True``/``False`` when it can be
        proven here, ``None`` when the owner is on another host (only its heartbeat can tell)."""
        import socket  # noqa: PLC0415

        if self.host != (host if host is not None else socket.gethostname()):
            return None
        here_boot = boot if boot is not None else boot_id()
        if self.boot and here_boot and self.boot != here_boot:
            return False  # this machine restarted since: every process of that boot is gone
        if not pid_alive(self.pid):
            return False
        if self.start is not None:
            started = process_start_time(self.pid)
            if started is not None and started != self.start:
                return False  # the pid was reused by another process
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Owner) and other.token() == self.token()

    def __hash__(self) -> int:
        return hash(self.token())

    def __repr__(self) -> str:
        return f"Owner({self.token()!r})"


#: The file a temporary directory of a process names its owner in (an :meth:`Owner.token`).
OWNER_FILE = "opsconsole-owner"


def mark_owned(directory: Path) -> None:
    """Write this process's identity into ``directory`` so that :func:`remove_orphan_dirs` can tell, after
    a crash, that nobody uses it any more."""
    (directory / OWNER_FILE).write_text(Owner.current().token())


def remove_orphan_dirs(pattern: str, *, root: Path | None = None) -> list[Path]:
    """Remove the directories matching ``pattern`` under ``root`` (the system temp dir by default) whose
    owner (see :func:`mark_owned`) is provably gone; unmarked or live ones are left. Returns the removed."""
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    base = root if root is not None else Path(tempfile.gettempdir())
    removed = []
    for directory in base.glob(pattern):
        try:
            owner = Owner.parse((directory / OWNER_FILE).read_text().strip())
        except OSError:
            continue
        if owner is not None and owner.alive_here() is False:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed
