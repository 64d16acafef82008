"""The server's side of :class:`~opsconsole.core.api.OpsApi`: one authenticated caller, on the core.

Why it exists: the faces no longer hold the core; they ask the server. :class:`OpsService` is what the
server does for one caller whose identity it took from a credential (never from anything the client
says about itself): plan the named action on the latest cached snapshot, file it through the
pipeline, vote, run, cancel, read jobs, audit and schedules. Runs start with ``wait=False``, so an HTTP
call returns as soon as the run is started; the run goes on in the server and the client follows it
with :meth:`OpsService.job_events` or the stream.

Use (the HTTP routes do this per request)::

    service = OpsService(core, caller, identity, may_change=True, cache=cache)
    filed = service.submit("failover", {"from_region": "eu-west-1", "to_region": "eu-central-1"})
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from opsconsole.core.api import (
    ACTIONS,
    Assessment,
    Caller,
    Decided,
    Filed,
    RequestDetail,
    StreamEvent,
)
from opsconsole.core.change.actions import (
    ActionPlan,
    plan_cache,
    plan_database,
    plan_environment,
    plan_failback,
    plan_failover,
    plan_nodes,
    plan_replicas,
    plan_scale,
)
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.gate import Act, Forbidden, authorize, fleet_scope
from opsconsole.core.change.rbac import Identity, Role
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.change.requests import RequestNotFound, RequestRefused
from opsconsole.core.change.risk import plan_scope
from opsconsole.core.errors import ExecutionUnavailable, OpsError, UsageError
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.engine import Snapshot
from opsconsole.core.fleet.model import Environment, Fleet
from opsconsole.core.fleet.report import findings_document, status_document
from opsconsole.core.fleet.view import FleetView
from opsconsole.core.runs.events import JobEvent
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.records import Job

#: What a read-only server (``--live`` without a team server) answers to any change.
READ_ONLY_MESSAGE = (
    "`--live` without a team server is read-only: ask the team's ops server "
    "(opsconsole login --server URL)"
)

#: The parameters each action cannot do without.
REQUIRED: Mapping[str, frozenset[str]] = {
    "scale": frozenset({"service", "region"}),
    "failover": frozenset({"from_region", "to_region"}),
    "failback": frozenset({"region"}),
    "environment": frozenset({"environment", "state"}),
    "nodes": frozenset({"cluster"}),
    "replicas": frozenset({"region", "read_replicas"}),
    "database": frozenset({"region", "change"}),
    "cache": frozenset({"region", "nodes"}),
}

#: What "open" means in a request listing.
OPEN = (RequestStatus.REQUESTED, RequestStatus.APPROVED, RequestStatus.RUNNING)

#: The longest a long-poll for job events may wait.
MAX_WAIT_S = 25.0


class ReadOnly(Forbidden):
    """This server only reads (``--live`` without a team server): every change is refused (HTTP 403)."""

    title = "read-only"


class NotFound(UsageError):
    """No such job (or the prefix is ambiguous)."""

    title = "not found"


log = logging.getLogger(__name__)

def highest_role(identity: Identity) -> Role:
    """The highest role ``identity`` holds anywhere (viewer if none)."""
    return max((g.role for g in identity.grants), key=lambda r: r.rank, default=Role.VIEWER)


def caller_for(identity: Identity, *, credential: str, sandbox: bool, may_change: bool) -> Caller:
    return Caller(
        person=identity.person,
        role=highest_role(identity).value,
        credential=credential,
        world="sandbox" if sandbox else "live",
        may_change=may_change,
    )


def _int(action: str, name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise UsageError(f"{action}: parameter {name!r} must be an integer, found {value!r}")
    return value


def _str(action: str, name: str, value: Any, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise UsageError(f"{action}: parameter {name!r} must be a non-empty string, found {value!r}")
    return value


def plan_action(
    fleet: Fleet, snapshot: Snapshot | None, action: str, params: Mapping[str, Any]
) -> ActionPlan:
    """The core's plan for an action as the API names it (:data:`~opsconsole.core.api.ACTIONS`).

    Raises:
        UsageError: unknown action, unknown or missing parameter, a value of the wrong type, or whatever
            the planner refuses (unknown region, out of bounds...).
    """
    if action not in ACTIONS:
        raise UsageError(f"unknown action {action!r}; expected one of: {', '.join(sorted(ACTIONS))}")
    if not isinstance(params, Mapping):
        raise UsageError(f"{action}: params must be an object of parameter names to values")
    expected = ACTIONS[action]
    unknown = sorted(set(params) - expected)
    if unknown:
        raise UsageError(
            f"{action}: unknown parameter {unknown[0]!r}; expected: {', '.join(sorted(expected))}"
        )
    missing = sorted(REQUIRED[action] - {k for k, v in params.items() if v is not None})
    if missing:
        raise UsageError(
            f"{action}: missing parameter {missing[0]!r}; expected: {', '.join(sorted(expected))}"
        )
    p = dict(params)
    if action == "scale":
        env_text = p.get("environment") or "prod"
        try:
            environment = Environment(env_text)
        except ValueError:
            names = ", ".join(e.value for e in Environment)
            raise UsageError(f"scale: environment {env_text!r}: expected one of {names}") from None
        return plan_scale(
            fleet, snapshot,
            service=_str(action, "service", p["service"]),
            region=_str(action, "region", p["region"]),
            replicas=_int(action, "replicas", p.get("replicas")),
            hpa_min=_int(action, "hpa_min", p.get("hpa_min")),
            hpa_max=_int(action, "hpa_max", p.get("hpa_max")),
            environment=environment,
            cluster=_str(action, "cluster", p.get("cluster"), optional=True),
        )
    if action == "failover":
        return plan_failover(fleet, snapshot, from_region=_str(action, "from_region", p["from_region"]),
                             to_region=_str(action, "to_region", p["to_region"]))
    if action == "failback":
        return plan_failback(fleet, snapshot, region=_str(action, "region", p["region"]))
    if action in ("nodes", "replicas", "database", "cache"):
        return _plan_capacity(fleet, snapshot, action, p)
    state = _str(action, "state", p["state"])
    state = {"stop": "stopped", "start": "started"}.get(state, state)
    return plan_environment(fleet, snapshot, environment=_str(action, "environment", p["environment"]),
                            state=state, region=_str(action, "region", p.get("region"), optional=True))


def _plan_capacity(fleet: Fleet, snapshot: Snapshot | None, action: str, p: Mapping[str, Any]) -> ActionPlan:
    """The plans below the workloads: node groups, read replicas, a database's role, Redis nodes."""
    if action == "nodes":
        return plan_nodes(fleet, snapshot, cluster=_str(action, "cluster", p["cluster"]),
                          nodes_min=_int(action, "nodes_min", p.get("nodes_min")),
                          nodes_max=_int(action, "nodes_max", p.get("nodes_max")),
                          nodes_desired=_int(action, "nodes_desired", p.get("nodes_desired")))
    if action == "replicas":
        count = _int(action, "read_replicas", p["read_replicas"])
        assert count is not None  # required above
        return plan_replicas(fleet, snapshot, region=_str(action, "region", p["region"]), read_replicas=count)
    if action == "database":
        return plan_database(fleet, snapshot, region=_str(action, "region", p["region"]),
                             change=_str(action, "change", p["change"]),
                             source_region=_str(action, "source_region", p.get("source_region"),
                                                optional=True))
    nodes = _int(action, "nodes", p["nodes"])
    assert nodes is not None  # required above
    return plan_cache(fleet, snapshot, region=_str(action, "region", p["region"]), nodes=nodes)


class OpsService:
    """:class:`~opsconsole.core.api.OpsApi` for one authenticated caller (not :meth:`stream`: the
    HTTP layer streams from the hub).

    Args:
        core: the server's core.
        caller: what ``whoami`` answers.
        identity: the caller as rbac.yml knows them (what the pipeline checks).
        may_change: False on a read-only server: every change is refused with :data:`READ_ONLY_MESSAGE`.
        face: what the audit records as the face (``api``; ``tui``/``cli`` are clients of it).
        cache: the server's fleet cache (:class:`~opsconsole.server.cache.FleetCache`; default: a
            refresh of the core per call).
        scheduler: the server's :class:`~opsconsole.core.schedule.engine.Scheduler`, or a function that
            gives it on first use (default: one built on first use).
    """

    def __init__(
        self,
        core: OpsCore,
        caller: Caller,
        identity: Identity,
        *,
        may_change: bool,
        face: str = "api",
        cache: Any = None,
        scheduler: Any = None,
    ) -> None:
        self.core = core
        self.caller = caller
        self.identity = identity
        self.may_change = may_change
        self.face = face
        self.cache = cache
        self._scheduler_obj = scheduler

    # -- helpers --------------------------------------------------------------------------------------

    def _changes(self) -> None:
        if not self.may_change:
            raise ReadOnly(READ_ONLY_MESSAGE)

    def _view(self) -> FleetView:
        if self.cache is not None:
            view: FleetView = self.cache.latest()
            return view
        return self.core.refresh()

    def _plan(self, action: str, params: Mapping[str, Any]) -> tuple[ActionPlan, Snapshot]:
        # On a view where every source answered, when one comes soon (see FleetCache.complete).
        snapshot = (self.cache.complete() if self.cache is not None else self._view()).snapshot
        return plan_action(self.core.fleet, snapshot, action, params), snapshot

    def _jobs(self) -> JobStore:
        """The job store: the runner's, or (a core that cannot run) the same tables read directly."""
        try:
            return self.core.jobs
        except ExecutionUnavailable:
            return JobStore(self.core.database)

    def _job(self, job_id: str) -> Job:
        if not job_id:
            raise NotFound("job: no id given")
        store = self._jobs()
        job = store.get(job_id)
        if job is not None:
            return job
        if len(job_id) >= 4:
            found = [j for j in store.list(limit=1000) if j.id.startswith(job_id)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise NotFound(f"job {job_id}: ambiguous prefix; give more characters")
        raise NotFound(f"job {job_id}: no such job")

    # -- OpsApi ---------------------------------------------------------------------------------------

    def whoami(self) -> Caller:
        return self.caller

    def fleet(self) -> FleetView:
        return self._view()

    def status(self, region: str | None = None) -> dict[str, Any]:
        view = self._view()
        _known_region(view, region)
        if self.cache is not None:
            cached: dict[str, Any] = self.cache.document("status", region)
            return cached
        return status_document(view, region)

    def sources(self) -> dict[str, Any]:
        """Per fleet source: cadence, last read, age, status, calls/hour, errors, throttles, est. $/month."""
        import time  # noqa: PLC0415

        from opsconsole.core.fleet.inventory import load_prices  # noqa: PLC0415
        from opsconsole.core.fleet.metering import METER  # noqa: PLC0415
        from opsconsole.core.fleet.view import sources_document  # noqa: PLC0415

        view = self._view()
        window_s = max(1.0, time.time() - METER.since())
        prices = load_prices(self.core.fleet.source)
        return sources_document(view.snapshot, METER.snapshot(), prices, window_s)

    def findings(self, region: str | None = None) -> dict[str, Any]:
        view = self._view()
        _known_region(view, region)
        if self.cache is not None:
            cached: dict[str, Any] = self.cache.document("findings", region)
            return cached
        return findings_document(view, region)

    def assess(self, action: str, params: Mapping[str, Any]) -> Assessment:
        plan, snapshot = self._plan(action, params)
        risk = self.core.pipeline.assess(plan, snapshot)
        return Assessment(action=action, params=dict(plan.params), playbook=plan.playbook,
                          summary=tuple(plan.summary), targets=tuple(plan.targets), risk=risk)

    def preview(self, action: str, params: Mapping[str, Any]) -> Job:
        plan, _ = self._plan(action, params)
        return self.core.preview(plan, actor=self.identity.person, face=self.face, wait=False)

    def submit(
        self, action: str, params: Mapping[str, Any], *, break_glass_reason: str | None = None
    ) -> Filed:
        self._changes()
        plan, snapshot = self._plan(action, params)
        pipeline = self.core.pipeline
        submission = pipeline.submit(plan, self.identity, face=self.face, snapshot=snapshot,
                                     break_glass_reason=break_glass_reason, wait=False)
        request = submission.request
        if submission.job is not None:
            request = pipeline.requests.get(request.id)
        still = () if submission.job is not None else tuple(pipeline.may_still_vote(request))
        return Filed(request=request, risk=submission.assessment, job=submission.job, may_still_vote=still)

    def requests(self, *, open_only: bool = True, limit: int = 50) -> list[ChangeRequest]:
        if not 1 <= limit <= 1000:
            raise UsageError(f"limit {limit}: expected 1 to 1000")
        pipeline = self.core.pipeline
        pipeline.expire_due()
        statuses = OPEN if open_only else None
        return pipeline.requests.list(statuses=statuses, limit=limit)

    def request(self, request_id: str) -> RequestDetail:
        pipeline = self.core.pipeline
        request = pipeline.requests.get(request_id)
        still = tuple(pipeline.may_still_vote(request)) if request.status is RequestStatus.REQUESTED else ()
        return RequestDetail(request=request, may_still_vote=still)

    def approve(self, request_id: str, *, run: bool = True) -> Decided:
        self._changes()
        pipeline = self.core.pipeline
        after = pipeline.approve(request_id, self.identity, face=self.face)
        job: Job | None = None
        run_refused: str | None = None
        if run and after.status is RequestStatus.APPROVED:
            # The vote has counted whatever happens next; a run that cannot start is said, not raised.
            try:
                job = pipeline.execute(after.id, self.identity, face=self.face, wait=False)
            except (RequestRefused, ExecutionUnavailable) as exc:
                run_refused = exc.message
            after = pipeline.requests.get(after.id)
        still = tuple(pipeline.may_still_vote(after)) if after.status is RequestStatus.REQUESTED else ()
        return Decided(request=after, job=job, may_still_vote=still, run_refused=run_refused)

    def reject(self, request_id: str, *, reason: str) -> Decided:
        self._changes()
        if not (reason or "").strip():
            raise UsageError("reject: give a reason")
        after = self.core.pipeline.reject(request_id, self.identity, face=self.face, reason=reason)
        return Decided(request=after)

    def cancel_request(self, request_id: str, *, reason: str | None = None) -> Decided:
        self._changes()
        pipeline = self.core.pipeline
        request = pipeline.requests.get(request_id)
        authorize(Act.CANCEL_REQUEST, self.identity, scope=request.scope, requester=request.requester)
        after = pipeline.cancel(request.id, self.identity, face=self.face, reason=reason)
        return Decided(request=after)

    def run_request(self, request_id: str) -> Job:
        self._changes()
        return self.core.pipeline.execute(request_id, self.identity, face=self.face, wait=False)

    def jobs(self, *, limit: int = 20) -> list[Job]:
        if not 1 <= limit <= 1000:
            raise UsageError(f"limit {limit}: expected 1 to 1000")
        self._repair_jobs()
        return self._jobs().list(limit=limit)

    def _repair_jobs(self) -> None:
        """Listing jobs repairs what can be proven dead (its owner gone on this host, or its heartbeat
        expired in database time): such a job becomes ``interrupted`` and its request follows. Another
        host's live run is never touched. A failure here never hides the list."""
        try:
            runner = self.core.runner
        except ExecutionUnavailable:
            return
        try:
            if runner.recover():
                store = runner.store
                self.core.pipeline.reconcile(
                    lambda job_id: (job.status if (job := store.get(job_id)) else None))
        except OpsError as exc:
            log.warning("could not repair interrupted jobs: %s", exc.message)
        except SQLAlchemyError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("could not repair interrupted jobs: %s", first)

    def job(self, job_id: str) -> Job:
        return self._job(job_id)

    def job_events(self, job_id: str, *, after_seq: int = 0, wait_s: float = 0.0) -> list[JobEvent]:
        if not 0 <= wait_s <= MAX_WAIT_S:
            raise UsageError(f"wait_s {wait_s}: expected 0 to {MAX_WAIT_S:.0f}")
        job = self._job(job_id)
        store = self._jobs()
        events = store.events(job.id, after_seq)
        if events or wait_s <= 0:
            return events
        arrived = threading.Event()

        def on_event(event: Any) -> None:
            if getattr(event, "job_id", None) == job.id:
                arrived.set()

        unsubscribe = self.core.pipeline.bus.subscribe(on_event)
        try:
            events = store.events(job.id, after_seq)
            current = store.get(job.id)
            if not events and not (current is not None and current.status.terminal):
                arrived.wait(wait_s)
                events = store.events(job.id, after_seq)
        finally:
            unsubscribe()
        return events

    def cancel_job(self, job_id: str) -> Job:
        self._changes()
        job = self._job(job_id)
        pipeline = self.core.pipeline
        cancel = getattr(pipeline, "cancel_job", None)
        if cancel is not None:  # the core's own check and record (Pipeline.cancel_job), when it exists
            cancel(job.id, self.identity, face=self.face)
            return self._job(job.id)
        # Until then: the gate's rule here, then the runner.
        if job.status.terminal:
            raise RequestRefused(f"job {job.id[:8]} is already {job.status.value}")
        owner = next((r for r in pipeline.requests.list(limit=500) if r.job_id == job.id), None)
        if owner is not None:
            scope, requester = owner.scope, owner.requester
        else:
            requester = job.actor
            try:
                scope = plan_scope(plan_action(self.core.fleet, None, *_api_action(job)), self.core.fleet)
            except OpsError:
                scope = fleet_scope(self.core.fleet)
        authorize(Act.CANCEL_JOB, self.identity, scope=scope, requester=requester)
        self.core.runner.cancel(job.id)
        pipeline.audit.append("job_cancelled", actor=self.identity.person, face=self.face,
                              job_id=job.id, data={"principal": self.identity.principal})
        return self._job(job.id)

    def audit(
        self,
        *,
        since: datetime | None = None,
        request_id: str | None = None,
        kinds: tuple[str, ...] = (),
        limit: int = 200,
    ) -> list[Any]:
        if not 1 <= limit <= 10_000:
            raise UsageError(f"limit {limit}: expected 1 to 10000")
        audit = self.core.pipeline.audit
        full_id = None
        if request_id:
            # A unique prefix of a request the store holds is widened to its id; any other id is taken as
            # given: the audit outlives requests (a purged one, one from an older store).
            try:
                full_id = self.core.pipeline.requests.get(request_id).id
            except RequestNotFound:
                full_id = request_id
        return list(audit.entries(since=since, request_id=full_id, kinds=kinds or None, limit=limit))

    def audit_verify(self) -> Any:
        """The chain (hashes, MACs, the published head) and every request's status and votes against it."""
        return self.core.pipeline.verify_consistency()

    def schedules(self) -> tuple[datetime, list[Any]]:
        scheduler = self._scheduler()
        now = scheduler.clock.now()
        return now, list(scheduler.status(now))

    def schedule_override(
        self,
        environment: str,
        kind: str,
        *,
        until: datetime | None = None,
        region: str | None = None,
        reason: str | None = None,
    ) -> Any:
        self._changes()
        from opsconsole.core.schedule.engine import OverrideKind  # noqa: PLC0415

        try:
            override_kind = OverrideKind(kind)
        except ValueError:
            names = ", ".join(k.value for k in OverrideKind)
            raise UsageError(f"override kind {kind!r}: expected one of {names}") from None
        return self._scheduler().override(environment, override_kind, who=self.identity, face=self.face,
                                          until=until, region=region, reason=reason)

    def stream(self) -> Iterator[StreamEvent]:
        raise UsageError("the stream is served by the HTTP layer (GET /api/v1/stream)")

    def _scheduler(self) -> Any:
        """The server's scheduler (it ticks only where :mod:`.main` starts it); one built here if none,
        or by the provider given (the runtime builds it on first use)."""
        if self._scheduler_obj is None:
            from opsconsole.core.schedule.engine import Scheduler  # noqa: PLC0415

            self._scheduler_obj = Scheduler(self.core)
        elif callable(self._scheduler_obj):
            self._scheduler_obj = self._scheduler_obj()
        return self._scheduler_obj


def _api_action(job: Job) -> tuple[str, Mapping[str, Any]]:
    """A job's action and params as the API names them (env_stop/env_start are ``environment``)."""
    if job.action in ("env_stop", "env_start"):
        return "environment", dict(job.params)
    return job.action, dict(job.params)


def _known_region(view: FleetView, region: str | None) -> None:
    if region is not None and region not in view.fleet.regions:
        known = ", ".join(sorted(view.fleet.regions))
        raise UsageError(f"--region {region}: unknown region; expected one of: {known}")
