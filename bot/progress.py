"""Follow requests and their runs, and keep each request's Slack message up to date, in place.

Why a module of its own: a playbook run emits dozens of task events in seconds, Slack allows about one
``chat.update`` per second per workspace for Tier 3 and the people reading the message need one readable
line, not a flicker. So:

* :class:`ProgressTracker` folds the runner's :class:`~opsconsole.core.runs.events.JobEvent` stream into one
  :class:`~bot.blocks.RunProgress` per job (current task, changed and failed counts) — in the publisher's
  thread, cheaply;
* :class:`MessageUpdater` marks the request's message dirty and a single thread renders it *when it is
  due*: at most one ``chat.update`` per message per ``interval_s`` (also across bot replicas: the shared
  message reference records when it was last edited), rendering the newest state at that moment, so
  intermediate states coalesce and the final one is never lost. A 429 is waited out (``Retry-After``)
  and the message stays dirty until it is posted. A render identical to the last one is skipped.
  An edit that can never succeed (:data:`DEAD`: the message or channel is gone, archived, or Slack
  refuses the rendering itself) is not retried: the reference is marked ``dead`` with the error, logged
  once, and the message is never edited again (the request stays visible in App Home, ``/ops
  approvals`` and the terminal).

Long jobs report with the bot token (``chat.update``), not a response_url: response URLs die after 30
minutes and five uses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from slack_sdk.errors import SlackApiError

from bot.blocks import Message, RunProgress
from bot.slackcalls import SlackCalls
from opsconsole.core.runs.events import EventKind, JobEvent
from opsconsole.core.store.outbox import Outbox

log = logging.getLogger(__name__)

FACE = "slack"

#: Web API errors after which editing the message again cannot work.
GONE = frozenset({"message_not_found", "channel_not_found", "is_archived", "cant_update_message"})
REFUSED = frozenset({"invalid_blocks", "msg_too_long", "invalid_blocks_format", "too_many_attachments"})
DEAD = GONE | REFUSED


def digest(message: Message) -> str:
    return hashlib.sha256(json.dumps(message, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ProgressTracker:
    """The latest :class:`RunProgress` of each job this process runs, from its task events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, RunProgress] = {}

    def on_event(self, event: JobEvent) -> bool:
        """Fold one event in; True when it changes what the message shows."""
        with self._lock:
            now = self._jobs.get(event.job_id) or RunProgress(job_id=event.job_id)
            kind = event.kind
            if kind is EventKind.TASK_START:
                new = replace(now, current_task=event.task)
            elif kind is EventKind.OK:
                new = replace(now, ok=now.ok + 1)
            elif kind is EventKind.CHANGED:
                new = replace(now, changed=now.changed + 1)
            elif kind in (EventKind.FAILED, EventKind.UNREACHABLE):
                new = replace(now, failed=now.failed + 1)
            elif kind is EventKind.JOB_STATUS:
                new = replace(now, status=str(event.data.get("status") or now.status))
            else:
                return False
            self._jobs[event.job_id] = new
            return new != now

    def get(self, job_id: str) -> RunProgress | None:
        with self._lock:
            return self._jobs.get(job_id)


class MessageUpdater:
    """Edits the messages of dirty subjects, coalesced and rate-limit aware (see the module docstring).

    Args:
        render: the message for a subject now (``None``: nothing to show, e.g. never posted).
        slack: the Web API, 429-aware.
        outbox: where the message references are (channel, ts, last rendering, last edit time).
        interval_s: at most one edit per message per this many seconds.
        wall: the wall clock (the references' edit times are wall-clock).
    """

    def __init__(
        self,
        render: Callable[[str], Message | None],
        slack: SlackCalls,
        outbox: Outbox,
        *,
        interval_s: float = 5.0,
        wall: Callable[[], datetime] | None = None,
    ) -> None:
        self._render = render
        self._slack = slack
        self._outbox = outbox
        self._interval = interval_s
        self._wall = wall or outbox.clock.now
        self._cond = threading.Condition()
        self._dirty: set[str] = set()
        self._not_before: dict[str, float] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="slack-updater", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Flush what is due now, then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def touch(self, subject: str) -> None:
        """The subject changed: re-render its message when it is due."""
        with self._cond:
            self._dirty.add(subject)
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._dirty)

    def _next_due(self) -> tuple[str | None, float]:
        now = time.monotonic()
        best, wait = None, 3600.0
        for subject in self._dirty:
            due = self._not_before.get(subject, 0.0)
            if due <= now:
                return subject, 0.0
            if due - now < wait:
                best, wait = subject, due - now
        return (None, wait) if best is not None else (None, 3600.0)

    def _loop(self) -> None:
        while True:
            with self._cond:
                subject, wait = self._next_due()
                while subject is None:
                    if self._stopping:
                        return
                    self._cond.wait(wait)
                    subject, wait = self._next_due()
                self._dirty.discard(subject)
            try:
                self._flush(subject)
            except Exception:  # one bad message must not stop the others' updates
                log.exception("updating the message of %s failed; trying again later", subject)
                with self._cond:
                    self._dirty.add(subject)
                    self._not_before[subject] = time.monotonic() + max(self._interval, 1.0)

    def _flush(self, subject: str) -> None:
        ref = self._outbox.message_ref(subject, FACE)
        if ref is None or ref.data.get("dead"):
            return
        # Across replicas: the last edit of this message by anyone, from the shared reference.
        since = (self._wall() - ref.updated_at).total_seconds()
        if ref.data.get("edited") and since < self._interval:
            self._defer(subject, self._interval - since)
            return
        message = self._render(subject)
        if message is None:
            return
        fingerprint = digest(message)
        if ref.data.get("digest") == fingerprint:
            return
        try:
            self._slack.call("chat.update", channel=ref.channel, ts=ref.ts, **message)
        except SlackApiError as error:
            code = str(error.response.get("error") or "")
            if code in DEAD:
                log.warning(
                    "message of %s in %s cannot be edited (%s): no more edits", subject, ref.channel, code
                )
                self._outbox.update_message(subject, FACE, data={**ref.data, "dead": code})
                return
            self._defer(subject, max(self._interval, 1.0))
            return
        self._outbox.update_message(subject, FACE, data={**ref.data, "digest": fingerprint, "edited": True})
        with self._cond:
            self._not_before[subject] = time.monotonic() + self._interval

    def _defer(self, subject: str, seconds: float) -> None:
        with self._cond:
            self._dirty.add(subject)
            self._not_before[subject] = time.monotonic() + seconds
            self._cond.notify_all()
