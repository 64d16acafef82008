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

import contextlib
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
from bot.posting import KIND as POST_KIND
from bot.posting import PostOutcome, RequestPoster
from bot.progress import MessageUpdater, ProgressTracker
from bot.rtoclock import rto_line, ticking
from bot.server import add_probe
from bot.settings import BotSettings
from bot.slackcalls import SlackCalls
from bot.threads import ThreadNotes, p95
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.pipeline import RequestChanged
from opsconsole.core.change.rbac import Identity, Permission
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.change.requests import RequestNotFound
from opsconsole.core.change.rto import RTO_ACTIONS, RtoVerdict, strictest_rto_s, verdict_of
from opsconsole.core.errors import OpsError
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.view import FleetView
from opsconsole.core.runs.events import JobEvent
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.records import Job, JobStatus
from opsconsole.core.schedule.engine import Scheduler
from opsconsole.core.store.outbox import Outbox

log = logging.getLogger(__name__)

#: A fleet read this fresh is shared by every command (50 people asking /ops status at once read once).
VIEW_MAX_AGE_S = 3.0


def subject_of(request_id: str) -> str:
    return f"request:{request_id}"


def respond_url(url: str, payload: Mapping[str, Any]) -> bool:
    """POST ``payload`` to a Slack response_url; True when Slack took it (the status is checked)."""
    from slack_sdk.webhook import WebhookClient  # noqa: PLC0415

    try:
        response = WebhookClient(url, timeout=10).send_dict(dict(payload))
    except Exception as error:
        log.warning("response_url unreachable: %s", error)
        return False
    if response.status_code != 200:
        log.warning("response_url refused the reply: %s %s", response.status_code, response.body[:200])
        return False
    return True


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
        self.notes = ThreadNotes(self, now=core.clock.now, rto_s=strictest_rto_s(core.fleet),
                                 fleet=core.fleet, verdict=self._rto_verdict)
        self.poster = RequestPoster(
            self.outbox,
            self.slack,
            self.worker_id,
            self._render_for_post,
            notify=lambda user, text: self.ephemeral(None, user, {"text": text}),
            on_posted=self._posted,
            base_s=settings.retry_s,
        )
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
        self._remove_probe: Callable[[], None] | None = None
        self._homes: dict[str, tuple[float, Callable[[], None]]] = {}
        self._homes_lock = threading.Lock()
        self._usual: dict[str, tuple[float, float | None]] = {}

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self, *, notices: bool = True) -> None:
        self._remove_probe = add_probe(self.health)
        self._unsubscribe = self.bus_subscribe()
        self.updater.start()
        self._spawn("slack-follower", self._follow_loop)
        self._spawn("slack-poster", lambda: self.poster.loop(self._stop, min(self.settings.retry_s, 5.0)))
        if notices:
            deliverer = NoticeDeliverer(self)
            self._spawn("slack-notices", lambda: deliverer.loop(self._stop, self.settings.notice_s))

    def health(self) -> dict[str, Any]:
        """For ``/healthz``: can the shared store be read (approvals, dedupe and posts all need it)?"""
        try:
            self.outbox.open_keys(POST_KIND)
        except Exception as error:
            return {"name": "store", "ok": False, "error": str(getattr(error, "message", error))[:200]}
        return {"name": "store", "ok": True, "pending_posts": self.poster.pending()}

    def stop(self) -> None:
        if self._remove_probe is not None:
            self._remove_probe()
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

    def slack_id(self, person: str) -> str | None:
        """The Slack user id rbac.yml maps ``person`` to (the first one), or ``None``."""
        entry = self.core.directory.people.get(person)
        for principal in entry.slack if entry is not None else ():
            _, _, user = principal.partition(":")
            if user:
                return user
        return None

    def approver_mentions(self, request: ChangeRequest) -> list[str]:
        """Who may approve ``request``, as mentions; its regions' user group first (slack.yml)."""
        people = self.mentions(self.may_approve(request))
        groups = self.channels.approver_groups
        if groups is None or request.status is not RequestStatus.REQUESTED:
            return people
        return [f"<!subteam^{groups.for_regions(self.core.fleet, regions_of(request))}>", *people]

    def mentions(self, persons: Iterable[str]) -> list[str]:
        """``<@U…>`` for each person mapped to a Slack user (Slack notifies them), else the name."""
        out = []
        for person in persons:
            user = self.slack_id(person)
            out.append(f"<@{user}>" if user else person)
        return out

    def may_run(self, request: ChangeRequest) -> list[str]:
        """Who may start an approved request from Slack: operators and above in its scope."""
        return list(self.core.directory.eligible(Permission.REQUEST, request.scope))

    def approvals_channel(self, request: ChangeRequest) -> str:
        return self.channels.approvals.for_regions(self.core.fleet, regions_of(request))

    # -- request messages -----------------------------------------------------------------------------

    def _rto_verdict(self, job_id: str) -> RtoVerdict | None:
        """The RTO verdict the pipeline recorded on a failover's job (``None``: none, or unreadable)."""
        try:
            job = self.jobs.get(job_id)
        except Exception:  # the job store is another database only in odd set-ups: say what we know
            log.debug("job %s not readable", job_id, exc_info=True)
            return None
        return verdict_of(job) if job is not None else None

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
            may_approve=self.approver_mentions(request),
            progress=self.progress_of(request),
            may_run=self.may_run(request) if request.status is RequestStatus.APPROVED else (),
            rto=self.rto_line(request),
        )

    def rto_line(self, request: ChangeRequest) -> str | None:
        """A failover / failback's RTO clock or verdict for its message (see :mod:`bot.rtoclock`)."""
        if request.action not in RTO_ACTIONS or not request.job_id:
            return None
        try:
            job = self.jobs.get(request.job_id)
        except Exception:  # the job store is another database only in odd set-ups: no clock then
            log.debug("job %s not readable", request.job_id, exc_info=True)
            return None
        return rto_line(self.core.fleet, request, job, self.core.clock.now())

    def render_request_subject(self, subject: str) -> Message | None:
        kind, _, request_id = subject.partition(":")
        if kind != "request":
            return None
        try:
            request = self.core.pipeline.requests.get(request_id)
        except RequestNotFound:
            return None
        return self.render_request(request)

    def _posted(self, request_id: str, channel: str) -> None:
        """The card is up: DM it to each eligible approver (see :mod:`bot.threads`)."""
        self.notes.dm_approvers(self.core.pipeline.requests.get(request_id), channel)

    def home_opened(self, user: str, body: Mapping[str, Any], publish: Callable[[], None]) -> None:
        """Remember that ``user`` looks at App Home: it is re-published when a request changes."""
        import time  # noqa: PLC0415

        if user:
            with self._homes_lock:
                self._homes[user] = (time.monotonic(), publish)

    def republish_homes(self) -> None:
        """Re-publish the Home tab of everyone who opened it in the last hour."""
        import time  # noqa: PLC0415

        with self._homes_lock:
            now = time.monotonic()
            for user in [u for u, (at, _) in self._homes.items() if now - at > 3600]:
                del self._homes[user]
            publishers = [publish for _, publish in self._homes.values()]
        for publish in publishers:
            try:
                publish()
            except Exception:
                log.warning("re-publishing App Home failed", exc_info=True)

    def note(self, request: ChangeRequest) -> None:
        """A request moved: its milestone in the thread; after drift, the new plan to the approvers."""
        if request.status is RequestStatus.REQUESTED:
            ref = self.outbox.message_ref(subject_of(request.id), "slack")
            if request.drift and ref is not None:
                self.notes.dm_approvers(request, ref.channel)
            return
        self.notes.on_change(request, self.progress_of(request))

    def _render_for_post(self, request_id: str) -> Message | None:
        """The message to post for a request whose post is due (``None``: it ended unseen, post nothing)."""
        try:
            request = self.core.pipeline.requests.get(request_id)
        except RequestNotFound:
            return None
        if request.status in (RequestStatus.EXPIRED, RequestStatus.REJECTED, RequestStatus.CANCELLED):
            return None
        return self.render_request(request)

    def post_request(self, request: ChangeRequest, *, requester: str | None = None) -> PostOutcome:
        """Post the request's message in its approvals channel, once across every replica, and keep
        trying if Slack refuses (see :mod:`bot.posting`); ``requester``: the Slack user to tell when a
        later try succeeds."""
        subject = subject_of(request.id)
        outcome = self.poster.post_now(
            request.id, self.approvals_channel(request), {"user": requester} if requester else None
        )
        self.updater.touch(subject)  # it may have moved while we posted
        return outcome

    def ephemeral(self, channel: str | None, user: str, message: Message) -> bool:
        """A reply only ``user`` sees, in ``channel`` (a DM with the bot when there is none, or when
        Slack refuses the ephemeral: the bot is not in that channel). False: nobody could be told."""
        payload = {k: v for k, v in message.items() if k in ("text", "blocks")}
        if channel:
            try:
                self.slack.call("chat.postEphemeral", channel=channel, user=user, **payload)
                return True
            except Exception as error:
                log.info("could not reply in %s (%s); trying a DM", channel, error)
        try:
            self.slack.call("chat.postMessage", channel=user, **payload)
            return True
        except Exception as error:
            log.warning("could not tell %s (%s): %s", user, error, payload.get("text"))
            return False

    def tell(self, body: Mapping[str, Any], channel: str | None, user: str, message: Message) -> None:
        """Tell the person behind ``body`` something after the ack: ephemeral in the channel, else
        through the payload's response_url, else a DM."""
        payload = {k: v for k, v in message.items() if k in ("text", "blocks")}
        if channel:
            try:
                self.slack.call("chat.postEphemeral", channel=channel, user=user, **payload)
                return
            except Exception as error:
                log.info("could not reply in %s (%s)", channel, error)
        url = str(body.get("response_url") or "")
        if url and respond_url(url, {"response_type": "ephemeral", "replace_original": False, **payload}):
            return
        self.ephemeral(None, user, message)

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
            if not self._stop.is_set():
                with contextlib.suppress(RuntimeError):  # the pool is shutting down
                    self.work(self.note, request)
                    if self._homes:
                        self.work(self.republish_homes)
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
            recent = (request.decided_at or request.created_at) > self.core.clock.now() - timedelta(hours=1)
            if recent:
                self.note(request)
        for request in requests:
            if request.status is RequestStatus.REQUESTED:
                self.notes.remind(request)
            elif request.status is RequestStatus.RUNNING and request.job_id:
                self._check_overrun(request)
                if ticking(request):  # the RTO clock moves: re-render at the updater's pace
                    self.updater.touch(subject_of(request.id))

    def usual_duration(self, action: str) -> float | None:
        """The p95 duration of ``action``'s past successful runs (cached a minute)."""
        import time  # noqa: PLC0415

        cached = self._usual.get(action)
        if cached is not None and time.monotonic() - cached[0] < 60:
            return cached[1]
        durations = [
            j.duration_s
            for j in self.jobs.list(limit=200, status=JobStatus.SUCCEEDED)
            if j.action == action and not j.check_mode and j.duration_s is not None
        ]
        value = p95(durations)
        self._usual[action] = (time.monotonic(), value)
        return value

    def _check_overrun(self, request: ChangeRequest) -> None:
        try:
            job = self.jobs.get(str(request.job_id))
            if job is not None:
                self.notes.overrun(request, job.started_at, self.usual_duration(request.action))
        except Exception:
            log.debug("overrun check of %s failed", request.short_id, exc_info=True)

    def waiting_for(self, who: Identity, requests: Iterable[ChangeRequest]) -> list[ChangeRequest]:
        return [
            r
            for r in requests
            if r.status is RequestStatus.REQUESTED
            and r.requester != who.person
            and who.may(Permission.APPROVE, r.scope)
            and who.person not in r.approvers
        ]
