"""The emergency change freeze from the console: ``:freeze on REASON``, ``:freeze off``, ``:freeze``.

Why this module exists: issue 14 asks for the freeze "in one command … also from the console". The switch
is the server's (``POST /api/v1/freeze``: admins only, audited; :meth:`OpsApi.freeze`), exactly as the
CLI's ``opsconsole freeze`` and Slack's ``/ops freeze`` use it; this module is the console's words for it.
Switching asks first (a confirmation dialog, Cancel focused: :mod:`opsconsole.tui.screens.freeze`, opened
by the app on :class:`FreezeAsked`); a refusal (not an admin) is a notification naming the role it
needs, as the server words it, never a crash. The status is read with every refresh
(:func:`read_freeze_status`, on the refresh worker) and shown by the banner
(:class:`~opsconsole.tui.widgets.freeze.FreezeBanner`) on every screen.

Use (the ``:`` command line and the palette call these)::

    run_freeze(app, ["on", "INC-42:", "payments", "degraded"])
    run_freeze(app, ["off"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from textual.app import App
from textual.message import Message

from opsconsole.core.errors import OpsError

if TYPE_CHECKING:
    from opsconsole.core.api import OpsApi
    from opsconsole.tui.host import ConsoleHost

__all__ = ["FREEZE_HELP", "FreezeAsked", "FreezeStatus", "read_freeze_status", "run_freeze"]

FREEZE_HELP = ":freeze on REASON (admins) · :freeze off (admins) · :freeze (status)"


class FreezeStatus(Message):
    """The server's freeze document (``{"on", "reason", "by", "since"}``), read by a refresh or a switch."""

    def __init__(self, document: Mapping[str, Any], generation: int) -> None:
        super().__init__()
        self.document = dict(document)
        self.generation = generation


class FreezeAsked(Message):
    """Someone typed ``freeze on REASON`` / ``freeze off``: the app asks to confirm, then switches
    (:func:`opsconsole.tui.screens.freeze.ask_freeze`; the palette may not open screens itself)."""

    def __init__(self, on: bool, reason: str | None) -> None:
        super().__init__()
        self.on = on
        self.reason = reason


def read_freeze_status(api: OpsApi) -> dict[str, Any] | None:
    """The freeze document, or ``None`` when this server cannot say (an older server, or a server that
    only reads and has no store): the console then shows no banner rather than failing the refresh."""
    try:
        return api.freeze_status()
    except (OpsError, AttributeError, NotImplementedError):
        return None


def run_freeze(app: ConsoleHost, words: Sequence[str]) -> bool:
    """``freeze on REASON`` / ``freeze off`` / ``freeze [status]`` (``words``: what follows ``freeze``,
    as typed: the reason keeps its case). Returns False (and says why) for anything else."""
    head = words[0].lower() if words else "status"
    if head == "status":
        _show_status(app)
        return True
    if head == "on":
        reason = " ".join(words[1:]).strip()
        if not reason:
            app.notify("say why: :freeze on REASON (the reason is shown with every refusal)",
                       title="freeze", severity="warning")
            return False
        _ask(app, True, reason)
        return True
    if head == "off":
        _ask(app, False, None)
        return True
    app.notify(f"freeze {head}: not a freeze command; {FREEZE_HELP}", title="freeze", severity="warning")
    return False


def _show_status(app: ConsoleHost) -> None:
    document = getattr(app, "freeze", None)
    if document and document.get("on"):
        app.notify(f"on since {document.get('since')} by {document.get('by')}: {document.get('reason')}",
                   title="emergency freeze", severity="warning")
    else:
        app.notify("off (the change freezes of policy.yml still apply)", title="emergency freeze")


def _ask(app: ConsoleHost, on: bool, reason: str | None) -> None:
    if app.may_write("freeze"):
        cast("App[Any]", app).post_message(FreezeAsked(on, reason))
