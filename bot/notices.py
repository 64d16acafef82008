"""Deliver the outbox's notices to Slack channels, once each, with a follow-up when resolved.

The bot raises a ``finding`` notice for every high or critical finding of the fleet (key
``finding:<finding id>``) and resolves those that are gone; the scheduler raises ``shutdown_warning``
notices before it puts a non-prod environment to sleep. Whoever raised it, a notice is *claimed* by one
bot replica (compare-and-set in the outbox), posted to its region's notices channel, and recorded as
delivered with the message's channel and ts; its resolution is posted in that message's thread. A
failed post gives the claim back, and a replica that died holding one loses it after a timeout.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Protocol

from bot import blocks
from bot.blocks import Message
from bot.channels import Channels
from bot.slackcalls import SlackCalls
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.model import Severity
from opsconsole.core.fleet.report import finding_document
from opsconsole.core.fleet.view import FleetView
from opsconsole.core.store.outbox import Notice, Outbox

log = logging.getLogger(__name__)

KINDS = ("finding", "shutdown_warning")
NOTIFY = (Severity.HIGH, Severity.CRITICAL)


class NoticeHost(Protocol):
    """What the deliverer needs of the bot's runtime (:class:`bot.runtime.BotRuntime` is one)."""

    core: OpsCore
    outbox: Outbox
    channels: Channels
    slack: SlackCalls
    worker_id: str

    def view(self) -> FleetView: ...


class NoticeDeliverer:
    def __init__(self, runtime: NoticeHost) -> None:
        self.rt = runtime

    def loop(self, stop: threading.Event, every_s: float) -> None:
        while not stop.wait(every_s):
            try:
                self.raise_findings()
                self.deliver()
            except Exception:
                log.warning("delivering notices failed; retrying", exc_info=True)

    def raise_findings(self) -> None:
        """Open a notice per high / critical finding now true; resolve those no longer true."""
        view = self.rt.view()
        outbox = self.rt.outbox
        current: set[str] = set()
        for finding in view.findings:
            if finding.severity not in NOTIFY:
                continue
            key = f"finding:{finding.id}"
            current.add(key)
            outbox.raise_notice(
                key, kind="finding", subject=finding.region or "fleet", data=finding_document(finding)
            )
        if view.snapshot.partial:
            return  # a finding missing from a partial read may only be unread: do not call it resolved
        for key in outbox.open_keys("finding"):
            if key not in current:
                outbox.resolve(key)

    def channel_for(self, notice: Notice) -> str:
        region = notice.data.get("region") or (
            notice.subject if notice.subject in self.rt.core.fleet.regions else None
        )
        return self.rt.channels.notices.for_regions(self.rt.core.fleet, [str(region)] if region else [])

    def render(self, notice: Notice) -> Message:
        if notice.kind == "shutdown_warning":
            at = notice.data.get("at")
            moment = datetime.fromisoformat(str(at)) if at else notice.created_at
            return blocks.shutdown_warning(notice.data, at=moment)
        return blocks.finding_notice(notice.data)

    def deliver(self) -> int:
        """Post what this replica claims; returns how many posts it made."""
        outbox, slack = self.rt.outbox, self.rt.slack
        posted = 0
        for notice in outbox.claim(self.rt.worker_id, kinds=KINDS):
            try:
                if notice.needs_delivery:
                    channel = self.channel_for(notice)
                    response = slack.call("chat.postMessage", channel=channel, **self.render(notice))
                    outbox.delivered(
                        notice,
                        {"channel": str(response.get("channel") or channel), "ts": str(response.get("ts"))},
                    )
                else:
                    first: dict[str, Any] = dict(notice.delivered.get("first") or {})
                    slack.call(
                        "chat.postMessage",
                        channel=first.get("channel") or self.channel_for(notice),
                        thread_ts=first.get("ts"),
                        **blocks.resolved_notice(notice.kind, notice.data),
                    )
                    outbox.delivered(notice, {"resolved": True}, follow_up=True)
                posted += 1
            except Exception:
                log.warning("notice %s not delivered; giving it back", notice.key, exc_info=True)
                outbox.release(notice)
        return posted
