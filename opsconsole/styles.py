"""How the faces colour what they show: one table per kind of value, shared by the CLI and the console.

Keys are the values' strings (a ``StrEnum`` member looks up as its value, so ``HEALTH_STYLE[Health.OK]``
works as well as ``HEALTH_STYLE["ok"]``); styles are Rich's. Kept apart from both faces so that a new
status is coloured once, the same in the terminal's tables and in the console (they had drifted).
Imports nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

HEALTH_STYLE = {"ok": "green", "degraded": "yellow", "down": "bold red", "unknown": "dim"}
SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}
RISK_STYLE = {"low": "green", "medium": "yellow", "high": "bold red"}
JOB_STATUS_STYLE = {
    "succeeded": "green", "failed": "bold red", "cancelled": "yellow", "timed_out": "bold red",
    "interrupted": "bold yellow", "running": "cyan", "queued": "dim",
}
REQUEST_STATUS_STYLE = {
    "requested": "yellow", "approved": "cyan", "running": "cyan", "succeeded": "green",
    "failed": "bold red", "rejected": "red", "expired": "dim", "cancelled": "dim",
    "interrupted": "bold yellow",
}
EVENT_STYLE = {"changed": "yellow", "failed": "bold red", "unreachable": "bold red", "skipped": "dim",
               "ok": "green"}
SCHEDULE_STATE_STYLE = {"up": "green", "down": "dim"}
SOURCE_STATUS_STYLE = {"ok": "green"}
CLOUD_ABBREVIATION = {"azure": "az"}


def style(table: Mapping[str, str], value: object, default: str = "") -> str:
    """The style for an enum member or string ``value`` in one of the tables above."""
    key = getattr(value, "value", value)
    return table.get(str(key), default) if key is not None else default
