"""What the listeners share: the core, the outbox, the Slack calls, a work pool, the message updater.

A listener acks at once and hands the slow part to :meth:`BotRuntime.work` (its own pool, not Bolt's:
Bolt's listener threads are what the next ack needs). The runtime also runs the bot's two background
loops:

* the **request follower**: subscribes to the core's event bus (request moves and task events of runs in
  this process) and, every ``poll_s``, expires what is due and lists the requests in the shared store, so
  that a request decided in the terminal or by another bot replica is re-rendered here too; requests
  waiting for approval that no face posted yet (filed in the terminal) are posted once, whichever replica
  sees them first (:meth:`Outbox.first_time` claims the post);
* the **notice deliverer** (:mod:`bot.notices`).

Several replicas on one PostgreSQL behave as one: posts are claimed in the outbox, votes and runs go
through the pipeline's compare-and-set and leases, retried payloads are deduplicated in the outbox.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient

from bot import blocks
from bot.blocks import Message, RunProgress
from bot.channels import Channels, load_channels
from bot.identity import identity_of
from bot.notices import NoticeDeliverer
from bot.progress import MessageUpdater, ProgressTracker, post_once
from bot.settings import BotSettings
from bot.slackcalls import SlackCalls
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.pipeline import RequestChanged
from opsconsole.core.change.rbac import Identity, Permission
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.change.requests import RequestNotFound
from opsconsole.core.errors import OpsError
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.view import FleetView
from opsconsole.core.runs.events import JobEvent
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.records import Job
from opsconsole.core.schedule.engine import Scheduler
from opsconsole.core.store.outbox import Outbox

log = logging.getLogger(__name__)

#: A fleet read this fresh is shared by every command (50 people asking /ops status at once read once).
VIEW_MAX_AGE_S = 3.0


def subject_of(request_id: str) -> str:
    return f"request:{request_id}"


def regions_of(request: ChangeRequest) -> list[str]:
    regions = list(request.approver_scope.get("regions") or ())
    for target in request.targets:
        kind, _, rest = target.partition("/")
        if kind in ("region", "database") and rest:
            regions.append(rest)
    return sorted(set(regions))


class BotRuntime:
    """The bot's shared state and background loops (see the module docstring)."""

    def __init__(self, settings: BotSettings, core: OpsCore, client: WebClient) -> None:
        self.settings = settings
        self.core = core
        self.client = client
        self.slack = SlackCalls(client)
        self.outbox = Outbox(core.database, clock=core.clock)
        self.channels: Channels = load_channels(core.fleet, sandbox=core.sandbox)
        self.tracker = ProgressTracker()
        self.updater = MessageUpdater(
            self.render_request_subject, self.slack, self.outbox, interval_s=settings.update_interval_s
        )
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="bot-work")
        self._view_lock = threading.Lock()
        self._view: FleetView | None = None
        self._view_at = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._seen: dict[str, int] = {}
        self._job_requests: dict[str, str] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._jobs: JobStore | None = None
        self._scheduler: Scheduler | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self, *, notices: bool = True) -> None:
        self._unsubscribe = self.bus_subscribe()
        self.updater.start()
        self._spawn("slack-follower", self._follow_loop)
        if notices:
            deliverer = NoticeDeliverer(self)
            self._spawn("slack-notices", lambda: deliverer.loop(self._stop, self.settings.notice_s))

    def stop(self) -> None:
        self._stop.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._pool.shutdown(wait=True, cancel_futures=False)
        self.updater.stop()
        self.slack.stop()
        for thread in self._threads:
            thread.join(5)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def work(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` after the ack, on the bot's pool; a failure is logged, never lost silently."""

        def run() -> Any:
            try:
                return fn(*args)
            except Exception:
                log.exception("background work %s failed", getattr(fn, "__name__", fn))
                raise

        return self._pool.submit(run)

    # -- reading --------------------------------------------------------------------------------------

    def view(self, max_age_s: float = VIEW_MAX_AGE_S) -> FleetView:
        """A fleet read no older than ``max_age_s`` (one read serves every concurrent asker)."""
        import time  # noqa: PLC0415

        with self._view_lock:
            if self._view is None or time.monotonic() - self._view_at > max_age_s:
                self._view = self.core.refresh()
                self._view_at = time.monotonic()
            return self._view

    def identity(self, body: Mapping[str, Any]) -> Identity:
        return identity_of(self.core.directory, body)

    @property
    def jobs(self) -> JobStore:
        """The job store: the runner's, or (on a core that cannot run) the same database read directly."""
        if self._jobs is None:
            try:
                self._jobs = self.core.jobs
            except OpsError:
                self._jobs = JobStore(os.environ.get("OPSCONSOLE_DB_URL") or None)
        return self._jobs

    @property
    def scheduler(self) -> Scheduler:
        """The schedules (read and overrides only: the engine runs elsewhere, see :mod:`bot.schedule`)."""
        if self._scheduler is None:
            self._scheduler = Scheduler(self.core)
        return self._scheduler

    def may_approve(self, request: ChangeRequest) -> list[str]:
        return self.core.pipeline.may_still_vote(request)

    def may_run(self, request: ChangeRequest) -> list[str]:
        """Who may start an approved request from Slack: operators and above in its scope."""
        return list(self.core.directory.eligible(Permission.REQUEST, request.scope))

    def approvals_channel(self, request: ChangeRequest) -> str:
        return self.channels.approvals.for_regions(self.core.fleet, regions_of(request))

    # -- request messages -----------------------------------------------------------------------------

    def progress_of(self, request: ChangeRequest) -> RunProgress | None:
        if not request.job_id:
            return None
        live = self.tracker.get(request.job_id)
        job: Job | None = None
        try:
            job = self.jobs.get(request.job_id)
        except Exception:  # the job store is another database only in odd set-ups: show what we have
            log.debug("job %s not readable", request.job_id, exc_info=True)
        if job is not None and (job.status.terminal or live is None):
            totals = (job.stats or {}).get("totals", {})
            return RunProgress(
                job_id=job.id,
                status=job.status.value,
                current_task=job.last_task,
                ok=int(totals.get("ok", live.ok if live else 0)),
                changed=int(totals.get("changed", live.changed if live else 0)),
                failed=int(totals.get("failed", live.failed if live else 0)),
                duration_s=job.duration_s,
                error=job.error,
            )
        return live

    def render_request(self, request: ChangeRequest) -> Message:
        return blocks.request_message(
            request,
            may_approve=self.may_approve(request),
            progress=self.progress_of(request),
            may_run=self.may_run(request) if request.status is RequestStatus.APPROVED else (),
        )

    def render_request_subject(self, subject: str) -> Message | None:
        kind, _, request_id = subject.partition(":")
        if kind != "request":
            return None
        try:
            request = self.core.pipeline.requests.get(request_id)
        except RequestNotFound:
            return None
        return self.render_request(request)

    def post_request(self, request: ChangeRequest) -> str:
        """Post the request's message in its approvals channel, once across every replica; returns the
        channel (where it is, whoever posted it)."""
        subject = subject_of(request.id)
        channel = self.approvals_channel(request)
        post_once(self.outbox, self.slack, subject, channel, self.render_request(request))
        self.updater.touch(subject)  # it may have moved while we posted
        ref = self.outbox.message_ref(subject, "slack")
        return ref.channel if ref is not None else channel

    def ephemeral(self, channel: str | None, user: str, message: Message) -> None:
        """A reply only ``user`` sees, in ``channel`` (a DM with the bot when there is none)."""
        payload = {k: v for k, v in message.items() if k in ("text", "blocks")}
        try:
            if channel:
                self.slack.call("chat.postEphemeral", channel=channel, user=user, **payload)
            else:
                self.slack.call("chat.postMessage", channel=user, **payload)
        except Exception:
            log.warning("could not tell %s: %s", user, payload.get("text"))

    # -- following ------------------------------------------------------------------------------------

    def bus_subscribe(self) -> Callable[[], None] | None:
        try:
            bus = self.core.runner.bus
        except OpsError:
            bus = self.core.pipeline.bus  # a core that cannot run still publishes request moves
        return bus.subscribe(self.on_event)

    def on_event(self, event: object) -> None:
        """From the core's bus, in the publisher's thread: note it, mark the message dirty, return."""
        if isinstance(event, RequestChanged):
            request = event.request
            if request.job_id:
                self._job_requests[request.job_id] = request.id
            self.updater.touch(subject_of(request.id))
        elif isinstance(event, JobEvent) and self.tracker.on_event(event):
            request_id = self._job_requests.get(event.job_id)
            if request_id is not None:
                self.updater.touch(subject_of(request_id))

    def _follow_loop(self) -> None:
        last_cleanup = 0.0
        import time  # noqa: PLC0415

        while not self._stop.is_set():
            try:
                self.follow_once()
                if time.monotonic() - last_cleanup > 3600:
                    self.outbox.forget_before(self.core.clock.now() - timedelta(days=1))
                    last_cleanup = time.monotonic()
            except Exception:
                log.warning("following requests failed; retrying", exc_info=True)
            self._stop.wait(self.settings.poll_s)

    def follow_once(self) -> None:
        """Expire what is due; re-render requests moved by anyone; post waiting ones nobody posted."""
        pipeline = self.core.pipeline
        pipeline.expire_due()
        requests = pipeline.requests.list(limit=200)
        for request in requests:
            if self._seen.get(request.id) == request.version:
                continue
            self._seen[request.id] = request.version
            if request.job_id:
                self._job_requests[request.job_id] = request.id
            if request.status is RequestStatus.REQUESTED:
                self.post_request(request)
            else:  # moved elsewhere, or left behind while this bot was down: the digest skips no-ops
                self.updater.touch(subject_of(request.id))

    def waiting_for(self, who: Identity, requests: Iterable[ChangeRequest]) -> list[ChangeRequest]:
        return [
            r
            for r in requests
            if r.status is RequestStatus.REQUESTED
            and r.requester != who.person
            and who.may(Permission.APPROVE, r.scope)
            and who.person not in r.approvers
        ]
