"""Events API: App Home.

Slack retries an event it thinks was not received (``X-Slack-Retry-Num``; in Socket Mode with no header
at all), so every event takes effect once: the outbox dedupes on the event id. Events are acked by Bolt
as they arrive; the Home tab is built after.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_bolt import Ack, App

from bot import blocks, metrics
from bot.runtime import BotRuntime
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.fleet.report import region_summaries, totals


def first_event(rt: BotRuntime, body: Mapping[str, Any]) -> bool:
    event_id = body.get("event_id")
    if not event_id or rt.outbox.first_time(f"event:{event_id}"):
        return True
    metrics.DUPLICATES.labels("event").inc()
    return False


def register(app: App, rt: BotRuntime) -> None:
    @app.event("app_home_opened")
    def home_opened(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        metrics.PAYLOADS.labels("event").inc()
        rt.work(publish_home, rt, body)


def publish_home(rt: BotRuntime, body: Mapping[str, Any]) -> None:
    if not first_event(rt, body):
        return
    event = body.get("event") or {}
    if event.get("tab") not in (None, "home"):
        return
    who = rt.identity(body)
    view = rt.view()
    waiting = rt.waiting_for(
        who, rt.core.pipeline.requests.list(statuses=[RequestStatus.REQUESTED], limit=100)
    )
    home = blocks.home_view(
        region_summaries(view),
        totals(view),
        taken_at=view.snapshot.taken_at,
        waiting=waiting,
        person=who.person,
    )
    rt.slack.call("views.publish", user_id=event.get("user"), view=home)
