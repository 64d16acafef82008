"""Events API: App Home (published when opened, and again when a request changes while it was opened in
the last hour: Approve / Reject there act on the request), and the bot joining a channel (its failed
approval posts there are retried).

Slack retries an event it thinks was not received (``X-Slack-Retry-Num``; in Socket Mode with no header
at all), so every event takes effect once: the outbox dedupes on the event id. Events are acked by Bolt
as they arrive; the Home tab is built after.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_bolt import Ack, App, BoltContext

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

    @app.event("member_joined_channel")
    def joined(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        """Someone ran ``/invite @opsconsole``: the posts that failed in that channel are due now."""
        ack()
        metrics.PAYLOADS.labels("event").inc()
        event = body.get("event") or {}
        if event.get("user") and event.get("user") == context.bot_user_id and event.get("channel"):
            rt.poster.retry_channel(str(event["channel"]))


def publish_home(rt: BotRuntime, body: Mapping[str, Any]) -> None:
    if not first_event(rt, body):
        return
    event = body.get("event") or {}
    if event.get("tab") not in (None, "home"):
        return
    rt.home_opened(str(event.get("user") or ""), body, lambda: republish_home(rt, body))
    republish_home(rt, body)


def republish_home(rt: BotRuntime, body: Mapping[str, Any]) -> None:
    """Build and publish the Home tab of the user behind ``body`` (also when a request changes)."""
    event = body.get("event") or {}
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
