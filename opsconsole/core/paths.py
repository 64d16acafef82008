"""Where opsconsole keeps its state on this machine.

``OPSCONSOLE_HOME`` if set, else ``$XDG_STATE_HOME/opsconsole``, else ``~/.local/state/opsconsole``.
The sandbox world, the store and run artifacts live under it, so that separate commands (a TUI, a bot, a
CLI call) see one world. It is private: created 0700, and tightened to 0700 when found looser.

The live fleet's state (its store and runs, when no ``OPSCONSOLE_DB_URL`` names a shared database) lives
apart, in ``live/`` under the home (:func:`world_home`): sandbox and live never share a store, and a
laptop that used the sandbox can still look at the live fleet.
"""

from __future__ import annotations

import os
from pathlib import Path

from opsconsole.core.errors import UsageError


def opsconsole_home() -> Path:
    """The state directory, created if missing."""
    configured = os.environ.get("OPSCONSOLE_HOME")
    if configured:
        home = Path(configured)
    else:
        state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        home = Path(state) / "opsconsole"
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        private_dir(home)
    except OSError as exc:
        named = "OPSCONSOLE_HOME" if configured else "the state directory"
        raise UsageError(f"{named} {home}: cannot create it ({exc.strerror or exc}); set OPSCONSOLE_HOME "
                         f"to a directory you can write") from exc
    if not home.is_dir():
        raise UsageError(f"OPSCONSOLE_HOME {home}: not a directory; set OPSCONSOLE_HOME to a directory")
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


def world_home(world: str, home: Path | None = None) -> Path:
    """Where ``world``'s store and runs live: the home for the sandbox, ``live/`` under it for the live
    fleet (``home``, when given, stands for :func:`opsconsole_home`)."""
    base = home if home is not None else opsconsole_home()
    if world == "sandbox":
        return private_dir(base)
    if world == "live":
        return private_dir(base / "live")
    raise ValueError(f"world {world!r}: expected sandbox or live")
