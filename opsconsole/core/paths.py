"""Where opsconsole keeps its state on this machine.

``OPSCONSOLE_HOME`` if set, else ``$XDG_STATE_HOME/opsconsole``, else ``~/.local/state/opsconsole``.
The sandbox world, and later the store and run artifacts, live under it, so that separate commands
(a TUI, a bot, a CLI call) see one world.
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
    home.mkdir(parents=True, exist_ok=True)
    return home
