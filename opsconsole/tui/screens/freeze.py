"""The emergency freeze's confirmation and switch: the part of ``:freeze on|off`` that opens a dialog.

Why this module exists: the palette and the ``:`` command line (:mod:`opsconsole.tui.freeze`) may not open
screens (the console's import layers), so they post :class:`~opsconsole.tui.freeze.FreezeAsked`; the app
calls :func:`ask_freeze`, which asks (Cancel focused), switches on the server (``POST /api/v1/freeze``,
admins only, audited) and hands the server's answer back as a
:class:`~opsconsole.tui.freeze.FreezeStatus` for the banners. A refusal is a notification naming the role
it needs (the server's words), never a crash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from rich.markup import escape
from textual.app import App

from opsconsole.core.errors import OpsError
from opsconsole.tui.freeze import FreezeStatus
from opsconsole.tui.screens.dialogs import ConfirmScreen

if TYPE_CHECKING:
    from opsconsole.core.api import OpsApi
    from opsconsole.tui.host import ConsoleHost

__all__ = ["ask_freeze"]


def ask_freeze(app: ConsoleHost, on: bool, reason: str | None = None) -> None:
    """Confirm, then switch the freeze on (with ``reason``) or off on the server."""
    question = (
        f"Switch the EMERGENCY CHANGE FREEZE ON for the whole fleet?\n\nReason: {escape(reason or '')}\n\n"
        "Every medium and high risk change is refused on every face until it is switched off."
        if on
        else "Lift the emergency change freeze? (The change freezes of policy.yml still apply.)"
    )

    def confirmed(yes: bool | None) -> None:
        if yes:
            _switch(app, on, reason)

    cast("App[Any]", app).push_screen(
        ConfirmScreen(question, "Freeze" if on else "Lift the freeze", danger=on), confirmed
    )


def _switch(app: ConsoleHost, on: bool, reason: str | None) -> None:
    def switch(api: OpsApi) -> dict[str, Any]:
        return api.freeze(on, reason=reason)

    def done(document: dict[str, Any]) -> None:
        generation = int(getattr(app, "generation", 0))
        cast("App[Any]", app).post_message(FreezeStatus(document, generation))
        app.notify("on: medium and high risk changes are refused" if document.get("on") else "lifted",
                   title="emergency freeze", severity="warning" if document.get("on") else "information")

    def failed(exc: BaseException) -> None:
        # The server's refusal names the role needed ("… needs an admin role there").
        title = exc.title if isinstance(exc, OpsError) else "freeze failed"
        app.notify(str(exc) or type(exc).__name__, title=f"freeze: {title}", severity="error", timeout=10)

    app.call_api(switch, done, failed, quiet=True)
