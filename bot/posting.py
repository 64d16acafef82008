"""Post each request's approval message once, and never lose it: an outbox entry until Slack says ``ok``.

Why: a request nobody sees waits until it expires. The message is therefore *filed* first, as a notice of
kind ``request_post`` in the shared :class:`~opsconsole.core.store.outbox.Outbox` (key
``post:request:<id>``), and recorded as posted only after ``chat.postMessage`` succeeded (then its channel
and ts become the request's message reference, which :class:`bot.progress.MessageUpdater` edits). A failed
post (``not_in_channel``, ``invalid_blocks``, a network error, still 429 after the retries) gives the claim
back and is tried again by :meth:`RequestPoster.loop` with a growing delay (``base_s`` doubling up to
``max_s``), by any replica, and after a restart (the notice is in the store; a replica that died holding
it loses it after the outbox's claim timeout). ``member_joined_channel`` for the bot (someone ran
``/invite @opsconsole``) retries that channel's posts at once (:meth:`RequestPoster.retry_channel`).

The requester is told the truth: :meth:`RequestPoster.post_now` returns a :class:`PostOutcome` that
:func:`bot.blocks.filed_reply` turns into "Filed … but I could not post in #approvals: I'm not in the
channel — /invite @opsconsole", and when a later try succeeds the requester gets a DM saying where it is.

Usage::

    poster = RequestPoster(outbox, slack, worker_id, render)
    outcome = poster.post_now(request_id, channel, notify={"user": "U0ALICE"})
    threading.Thread(target=poster.loop, args=(stop, 1.0)).start()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import or_, update
from sqlalchemy.exc import SQLAlchemyError

from bot.blocks import Message
from bot.progress import FACE, digest
from bot.slackcalls import SlackCalls
from opsconsole.core.errors import OpsError
from opsconsole.core.store.db import notices_table, write_transaction
from opsconsole.core.store.outbox import CLAIM_TIMEOUT, Notice, Outbox

log = logging.getLogger(__name__)

KIND = "request_post"

#: What a Web API error means for the person who filed the request (and what fixes it).
EXPLAIN: dict[str, str] = {
    "not_in_channel": "I'm not in the channel — `/invite @opsconsole` there and I will post it",
    "channel_not_found": (
        "the channel does not exist or is private without me — check `slack.yml`, then "
        "`/invite @opsconsole` in it"
    ),
    "is_archived": "the channel is archived — unarchive it or point `slack.yml` elsewhere",
    "invalid_blocks": "Slack refused the message's layout (a bug: the bot's log has the details)",
    "msg_too_long": "Slack refused the message as too long (a bug: the bot's log has the details)",
    "ratelimited": "Slack is rate-limiting me",
    "network": "I could not reach Slack",
}


def error_code(error: BaseException) -> str:
    """The Web API error code of ``error`` (``network`` for anything that is not a Slack answer)."""
    if isinstance(error, SlackApiError):
        status = getattr(error.response, "status_code", None)
        if status == 429:
            return "ratelimited"
        return str(error.response.get("error") or "unknown_error")
    return "network"


def explain(code: str) -> str:
    return EXPLAIN.get(code, f"Slack said `{code}`")


@dataclass(frozen=True)
class PostOutcome:
    """What became of one attempt to post a request's message."""

    channel: str
    #: Posted (now or before, by anyone).
    posted: bool
    #: The Web API error of this attempt (``None``: posted, or another replica is posting it right now).
    error: str | None = None

    @property
    def explanation(self) -> str | None:
        return explain(self.error) if self.error else None


def key_of(request_id: str) -> str:
    return f"post:request:{request_id}"


class RequestPoster:
    """Files, posts and retries request messages (see the module docstring).

    Args:
        render: the message for a request id now, or ``None`` to post nothing (the request is gone, or
            ended before anyone saw it).
        notify: called with (slack user id, text) to tell a requester their request is now posted.
        on_posted: called with (request id, channel) after each successful post (the approver DMs).
        base_s / max_s: the retry delay of a failed post: ``base_s``, doubling, at most ``max_s``.
    """

    def __init__(
        self,
        outbox: Outbox,
        slack: SlackCalls,
        worker_id: str,
        render: Callable[[str], Message | None],
        *,
        notify: Callable[[str, str], object] | None = None,
        on_posted: Callable[[str, str], object] | None = None,
        base_s: float = 5.0,
        max_s: float = 300.0,
    ) -> None:
        self.outbox = outbox
        self.slack = slack
        self.worker_id = worker_id
        self.render = render
        self.notify = notify
        self.on_posted = on_posted
        self.base_s = base_s
        self.max_s = max_s
        self._lock = threading.Lock()
        self._attempts: dict[str, int] = {}
        self._next_try: dict[str, float] = {}
        self._channels: dict[str, str] = {}
        self._wake = threading.Event()

    # -- filing -----------------------------------------------------------------------------------------

    def file(self, request_id: str, channel: str, notify: Mapping[str, Any] | None = None) -> None:
        """Record that the request's message is due in ``channel`` (a no-op if it already is)."""
        data = {"request_id": request_id, "channel": channel, "notify": dict(notify or {})}
        self.outbox.raise_notice(key_of(request_id), kind=KIND, subject=f"request:{request_id}", data=data)

    def post_now(self, request_id: str, channel: str, notify: Mapping[str, Any] | None = None) -> PostOutcome:
        """File the post and try it at once (the requester is waiting for the answer)."""
        ref = self.outbox.message_ref(f"request:{request_id}", FACE)
        if ref is not None:
            return PostOutcome(ref.channel, posted=True)
        self.file(request_id, channel, notify)
        outcomes = self.deliver(force=key_of(request_id))
        if key_of(request_id) in outcomes:
            return outcomes[key_of(request_id)]
        ref = self.outbox.message_ref(f"request:{request_id}", FACE)
        if ref is not None:
            return PostOutcome(ref.channel, posted=True)
        return PostOutcome(channel, posted=False)  # another replica holds it right now

    # -- delivering -------------------------------------------------------------------------------------

    def retry_channel(self, channel: str) -> None:
        """The bot just joined ``channel``: what failed there is due now."""
        with self._lock:
            for key, where in self._channels.items():
                if where == channel:
                    self._next_try[key] = 0.0
        self._wake.set()

    def pending(self) -> int:
        """Posts this process saw fail and has not yet posted."""
        with self._lock:
            return len(self._next_try)

    def _due(self, key: str, now: float) -> bool:
        with self._lock:
            return self._next_try.get(key, 0.0) <= now

    def _failed(self, key: str, channel: str, code: str) -> None:
        with self._lock:
            attempts = self._attempts.get(key, 0) + 1
            self._attempts[key] = attempts
            delay = min(self.max_s, self.base_s * 2 ** (attempts - 1))
            self._next_try[key] = time.monotonic() + delay
            self._channels[key] = channel
        log.warning(
            "posting %s to %s failed (%s, attempt %d): %s; trying again in %.0f s",
            key,
            channel,
            code,
            attempts,
            explain(code),
            delay,
        )

    def _succeeded(self, key: str) -> int:
        with self._lock:
            self._next_try.pop(key, None)
            self._channels.pop(key, None)
            return self._attempts.pop(key, 0)

    def _claim(self, key: str) -> Notice | None:
        """Own the pending post ``key`` (compare-and-set on the notice's version), or ``None``.

        Not :meth:`Outbox.claim`: that scans notices oldest first, and the posts done (kept for the
        record) would hide new ones from it; a done post is resolved, so :meth:`Outbox.open_keys` lists
        exactly the pending ones and this claims one of them by key.
        """
        notice = self.outbox.get(key)
        if notice is None or notice.resolved_at is not None or not notice.needs_delivery:
            return None
        now = self.outbox.clock.now()
        try:
            with write_transaction(self.outbox.database.engine) as conn:
                won = conn.execute(
                    update(notices_table)
                    .where(
                        notices_table.c.key == key,
                        notices_table.c.version == notice.version,
                        or_(
                            notices_table.c.claimed_by.is_(None),
                            notices_table.c.claimed_at < now - CLAIM_TIMEOUT,
                        ),
                    )
                    .values(claimed_by=self.worker_id, claimed_at=now, version=notice.version + 1)
                ).rowcount
        except SQLAlchemyError as exc:
            raise self.outbox.database.unavailable(exc) from exc
        return self.outbox.get(key) if won else None

    def deliver(self, *, force: str | None = None) -> dict[str, PostOutcome]:
        """Post every pending message whose retry is due (and ``force`` whatever its delay)."""
        outcomes: dict[str, PostOutcome] = {}
        now = time.monotonic()
        keys = self.outbox.open_keys(KIND)
        if force is not None and force in keys:
            keys = [force, *(k for k in keys if k != force)]
        for key in keys:
            if key != force and not self._due(key, now):
                continue
            notice = self._claim(key)
            if notice is not None:
                outcomes[key] = self._post(notice)
        return outcomes

    def _done(self, notice: Notice, where: Mapping[str, Any]) -> None:
        self.outbox.delivered(notice, where)
        self.outbox.resolve(notice.key)  # off the pending list (open_keys)

    def _post(self, notice: Notice) -> PostOutcome:
        request_id = str(notice.data.get("request_id") or notice.subject.partition(":")[2])
        channel = str(notice.data.get("channel") or "")
        subject = f"request:{request_id}"
        try:
            ref = self.outbox.message_ref(subject, FACE)
            if ref is not None:  # posted by the scheme before this one, or recorded and then crashed
                self._done(notice, {"channel": ref.channel, "ts": ref.ts})
                self._succeeded(notice.key)
                return PostOutcome(ref.channel, posted=True)
            message = self.render(request_id)
            if message is None:
                self._done(notice, {"skipped": True})
                self._succeeded(notice.key)
                return PostOutcome(channel, posted=False, error=None)
        except Exception:
            self.outbox.release(notice)
            raise
        try:
            response = self.slack.call("chat.postMessage", channel=channel, **message)
        except (SlackApiError, OpsError, OSError) as error:
            code = error_code(error)
            self.outbox.release(notice)
            self._failed(notice.key, channel, code)
            return PostOutcome(channel, posted=False, error=code)
        where = str(response.get("channel") or channel)
        ts = str(response.get("ts"))
        self.outbox.remember_message(subject, FACE, channel=where, ts=ts, data={"digest": digest(message)})
        self._done(notice, {"channel": where, "ts": ts})
        attempts = self._succeeded(notice.key)
        user = str((notice.data.get("notify") or {}).get("user") or "")
        # Tried before (here, or by a replica or a run before a restart: each claim bumps the version).
        late = attempts > 0 or notice.version > 2
        if late and user and self.notify is not None:
            try:
                told = f":white_check_mark: Request `{request_id[:8]}` is now posted in <#{where}>."
                self.notify(user, told)
            except Exception:
                log.warning("could not tell %s that %s is posted", user, request_id[:8], exc_info=True)
        log.info("posted %s in %s (after %d failed attempt(s))", subject, where, attempts)
        if self.on_posted is not None:
            try:
                self.on_posted(request_id, where)
            except Exception:
                log.warning("after posting %s", request_id[:8], exc_info=True)
        return PostOutcome(where, posted=True)

    def loop(self, stop: threading.Event, every_s: float) -> None:
        """Retry due posts every ``every_s`` (sooner when :meth:`retry_channel` wakes it) until ``stop``."""
        while not stop.is_set():
            try:
                self.deliver()
            except Exception:
                log.warning("retrying request posts failed; trying again", exc_info=True)
            self._wake.wait(every_s)
            self._wake.clear()
