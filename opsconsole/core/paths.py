"""Where opsconsole keeps its state on this machine.

``OPSCONSOLE_HOME`` if set, else ``$XDG_STATE_HOME/opsconsole``, else ``~/.local/state/opsconsole``.
The sandbox world, the store and run artifacts live under it, so that separate commands (a TUI, a bot, a
CLI call) see one world. It is private: created 0700, and tightened to 0700 when found looser.
"""

from __future__ import annotations

import os
from pathlib import Path


def opsconsole_home() -> Path:
    """The state directory, created if missing."""
    configured = os.environ.get("OPSCONSOLE_HOME")
    if configured:
        home = Path(configured)
    else:
        state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        home = Path(state) / "opsconsole"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_dir(home)
    return home


def private_dir(path: Path) -> Path:
    """``path`` (a directory) made, and kept, 0700: created so, tightened when looser (if it is ours).

    The home holds the store, run directories with rendered playbook variables, and keys: nobody else on
    the machine has any business reading it.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_mode & 0o077 and info.st_uid == os.getuid():
        os.chmod(path, 0o700)
    return path
