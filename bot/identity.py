"""Who sent a Slack payload, as the core's :class:`~opsconsole.core.change.rbac.Identity`.

Roles are checked at the moment of the click, with the user Slack names in *this* payload: never with
an id remembered from an earlier message, and never with the requester's. A user rbac.yml does not know
is a viewer (the directory decides that, not the bot).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opsconsole.core.change.rbac import Directory, Identity


def slack_ids(body: Mapping[str, Any]) -> tuple[str, str]:
    """``(team_id, user_id)`` of the person behind a slash command, an interaction or an event."""
    user = body.get("user")
    if isinstance(user, Mapping):  # block_actions, view_submission, shortcuts
        team = user.get("team_id") or (body.get("team") or {}).get("id") or ""
        return str(team), str(user.get("id") or "")
    event = body.get("event")
    if isinstance(event, Mapping):  # Events API
        return str(body.get("team_id") or event.get("team") or ""), str(event.get("user") or "")
    return str(body.get("team_id") or ""), str(body.get("user_id") or "")  # slash command (form fields)


def identity_of(directory: Directory, body: Mapping[str, Any]) -> Identity:
    team, user = slack_ids(body)
    return directory.slack_user(team or "T?", user or "U?")
