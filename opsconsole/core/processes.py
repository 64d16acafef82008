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
