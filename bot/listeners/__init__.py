"""Bolt listeners, one module per Slack surface; each module's ``register(app, runtime)`` wires it up.

Every listener acks first (Slack gives up after 3 s and shows the user an error) and hands the rest to
:meth:`bot.runtime.BotRuntime.work`. Side effects are deduplicated in the shared outbox, because Slack
retries and replays: on the event id for events, on action id + message ts + user for clicks, on the
trigger id for slash commands and on the view id for modal submissions.
"""

from __future__ import annotations

from slack_bolt import App

from bot.runtime import BotRuntime


def register_all(app: App, runtime: BotRuntime) -> None:
    from bot.listeners import actions, commands, events, views  # noqa: PLC0415

    for module in (commands, actions, views, events):
        module.register(app, runtime)
