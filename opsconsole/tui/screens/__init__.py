"""The console's screens, by name (the app's ``go`` action and the command palette use the names)."""

from __future__ import annotations

from textual.screen import Screen


def make_screen(name: str) -> Screen[None]:
    from opsconsole.tui.screens.change import ApprovalsScreen, JobsScreen  # noqa: PLC0415
    from opsconsole.tui.screens.fleet import FindingsScreen  # noqa: PLC0415
    from opsconsole.tui.screens.records import AuditScreen, SchedulesScreen  # noqa: PLC0415

    screens: dict[str, type[Screen[None]]] = {
        "findings": FindingsScreen,
        "approvals": ApprovalsScreen,
        "jobs": JobsScreen,
        "schedules": SchedulesScreen,
        "audit": AuditScreen,
    }
    return screens[name]()
