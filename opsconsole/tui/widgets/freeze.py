"""The emergency change freeze's banner: one red line under the header of every screen while it is on.

Why it exists: an admin who switches the freeze on (``opsconsole freeze on``, ``/ops freeze``, or
``:freeze on REASON`` in the console) stops every medium and high risk change; whoever looks at the console
must see that before filing one, on whatever screen they are, with who switched it, since when and why.
Every :class:`~opsconsole.tui.screens.base.ConsoleScreen` composes one under its header; it takes no room
while the freeze is off (so the screens look exactly as without it). The app keeps the server's last
answer (``GET /api/v1/freeze``, read with every refresh) in ``app.freeze`` and calls :meth:`show`.

Use::

    banner = FreezeBanner()
    banner.show({"on": True, "reason": "INC-42", "by": "erin", "since": "2026-12-06T13:00:00+00:00"})
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from rich.markup import escape
from textual.widgets import Static

__all__ = ["FreezeBanner", "freeze_text"]


def _since(value: Any) -> str:
    """``2026-12-06 13:00 UTC`` from the document's ISO time (shown as given when it does not parse)."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M") + (" UTC" if moment.utcoffset() is not None else "")


def freeze_text(document: Mapping[str, Any] | None) -> str:
    """The banner's line for a freeze document (``""`` when the freeze is off or unknown)."""
    if not document or not document.get("on"):
        return ""
    return (
        f"EMERGENCY FREEZE ON since {_since(document.get('since'))} by {document.get('by') or '?'}: "
        f"{document.get('reason') or '(no reason given)'} — medium and high risk changes are refused"
    )


class FreezeBanner(Static):
    """One line, red, while the emergency freeze is on; hidden (no room taken) while it is off."""

    DEFAULT_CSS: ClassVar[str] = """
    FreezeBanner {
        height: auto;
        width: 100%;
        padding: 0 1;
        background: $error;
        color: $text;
        text-style: bold;
        display: none;
    }
    """

    def __init__(self) -> None:
        super().__init__("", id="freeze-banner", markup=True)
        self.shown = ""

    def on_mount(self) -> None:
        self.show(getattr(self.app, "freeze", None))

    def show(self, document: Mapping[str, Any] | None) -> None:
        """Show ``document`` (the server's freeze status), or hide the banner when it is off."""
        text = freeze_text(document)
        if text == self.shown and self.display == bool(text):
            return
        self.shown = text
        self.update(escape(text))
        self.display = bool(text)
