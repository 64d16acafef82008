"""What a face may ask the authority for: the one contract between the ops server and its clients.

Why it exists: the terminal console, the CLI and (through the server) Slack used to hold the core
themselves, so each was requester, judge and executor at once. Now one ops server holds the
credentials, the policy, the store and the runs, and the faces are clients of it. :class:`OpsApi` is
what they may ask. The server implements it for an authenticated caller
(:class:`opsconsole.server.service.OpsService`); the thin client implements it over HTTP
(:class:`opsconsole.client.remote.RemoteClient`), and the embedded mode of ``make run`` is the same
server in-process behind the same client, so every face has one code path.

Nothing here says *who* is calling: the server knows it from the credential; a client never sends a
name. Every record crosses the wire through :mod:`opsconsole.core.wire`.

Actions are named as the CLI names them (``scale``, ``failover``, ``failback``, ``environment``, ``nodes``,
``replicas``, ``database``, ``cache``) with
the keyword parameters of the core's planners (:mod:`opsconsole.core.change.actions`): for example
``("scale", {"service": "checkout", "region": "eu-west-1", "replicas": 12})``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.change.risk import RiskAssessment
from opsconsole.core.fleet.pods import EventInfo, PodDescription, PodInfo, PodLog
from opsconsole.core.fleet.view import FleetView
from opsconsole.core.runs.events import JobEvent
from opsconsole.core.runs.records import Job

#: The actions a client may plan, and the planner keyword parameters each accepts.
ACTIONS: Mapping[str, frozenset[str]] = {
    "scale": frozenset({"service", "region", "replicas", "hpa_min", "hpa_max", "environment", "cluster"}),
    "failover": frozenset({"from_region", "to_region"}),
    "failback": frozenset({"region"}),
    "environment": frozenset({"environment", "state", "region"}),
    "nodes": frozenset({"cluster", "nodes_min", "nodes_max", "nodes_desired"}),
    "replicas": frozenset({"region", "read_replicas"}),
    #: ``change``: ``promote`` or ``demote``; ``source_region`` (demote only): the primary to follow.
    "database": frozenset({"region", "change", "source_region"}),
    "cache": frozenset({"region", "nodes"}),
}


@dataclass(frozen=True)
class Caller:
    """Who the server decided is calling, and where: what ``whoami`` answers."""

    person: str
    #: The highest role the person holds anywhere (viewer, operator, approver, admin).
    role: str
    #: How the server knows: ``token``, ``oidc``, ``slack`` or ``embedded`` (make run's own server).
    credential: str
    #: ``sandbox`` or ``live``: the world this server acts on.
    world: str
    #: False for a server that only reads (``--live`` without a team server).
    may_change: bool = True


@dataclass(frozen=True)
class Assessment:
    """A plan in words and its risk, before anything is filed or run."""

    action: str
    params: Mapping[str, Any]
    playbook: str
    summary: tuple[str, ...]
    targets: tuple[str, ...]
    risk: RiskAssessment


@dataclass(frozen=True)
class Filed:
    """What submitting a plan gave: the request, and the job when it started at once."""

    request: ChangeRequest
    risk: RiskAssessment
    job: Job | None = None
    #: Who may still vote on it (empty when it ran at once).
    may_still_vote: tuple[str, ...] = ()


@dataclass(frozen=True)
class RequestDetail:
    """One request with what only the server can say about it now."""

    request: ChangeRequest
    may_still_vote: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decided:
    """A vote, rejection or cancellation as recorded, and the run it started if it completed the approval."""

    request: ChangeRequest
    job: Job | None = None
    may_still_vote: tuple[str, ...] = ()
    #: Why the run the vote would have started did not start (the vote itself counted).
    run_refused: str | None = None


@dataclass(frozen=True)
class StreamEvent:
    """One thing that happened on the server, pushed to every connected client.

    ``kind`` is ``fleet`` (a new view: ``data`` has ``taken_at`` and the changed record keys),
    ``request`` (a request moved: ``data`` has ``id`` and ``status``), ``job`` (a job event or status:
    ``data`` has ``job_id`` and, for task events, the :class:`JobEvent`) or ``notice``.
    """

    kind: str
    at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


class OpsApi(Protocol):
    """The operations of the ops server. Every method may raise an :class:`~opsconsole.core.errors.OpsError`
    (a refusal is a ``UsageError`` naming why; a missing credential ``Unauthenticated``)."""

    def whoami(self) -> Caller:
        """The caller as the server sees it."""
        ...

    def fleet(self) -> FleetView:
        """The latest view of the fleet from the server's cache (no cloud call per client)."""
        ...

    def status(self, region: str | None = None) -> dict[str, Any]:
        """The ``opsconsole.fleet.status/v1`` document (what ``fleet status --json`` prints), computed by
        the server from its cache: small, so a status call stays quick however large the fleet."""
        ...

    def findings(self, region: str | None = None) -> dict[str, Any]:
        """The ``opsconsole.fleet.findings/v1`` document."""
        ...

    def sources(self) -> dict[str, Any]:
        """The ``opsconsole.fleet.sources/v1`` document: per fleet source its cadence, last read, age,
        status, calls per hour, errors, throttles and estimated monthly cost of looking."""
        ...

    def pods(
        self, cluster: str, *, workload: str | None = None, namespace: str | None = None
    ) -> list[PodInfo]:
        """The cluster's pods (of one workload if given): status, ready, restarts, age, node, node group.
        Read-only (viewers may); a server without a Kubernetes source refuses (the ``sim`` reader)."""
        ...

    def pod_log(
        self,
        cluster: str,
        namespace: str,
        pod: str,
        *,
        previous: bool = False,
        tail: int = 200,
        container: str | None = None,
    ) -> PodLog:
        """A container's last ``tail`` log lines; ``previous``: the last terminated (crashed) container."""
        ...

    def pod_events(self, cluster: str, namespace: str, pod: str) -> list[EventInfo]:
        """The events about one pod, oldest first."""
        ...

    def describe_pod(self, cluster: str, namespace: str, pod: str) -> PodDescription:
        """``kubectl describe pod``: the pod, its spec and status summarised, and its events."""
        ...

    def assess(self, action: str, params: Mapping[str, Any]) -> Assessment:
        """Plan ``action`` on the latest snapshot and judge its risk; nothing is filed."""
        ...

    def preview(self, action: str, params: Mapping[str, Any]) -> Job:
        """Start the plan's playbook in check mode with diffs (changes nothing); follow it with
        :meth:`job_events`."""
        ...

    def submit(
        self, action: str, params: Mapping[str, Any], *, break_glass_reason: str | None = None
    ) -> Filed:
        """File the plan through the approval pipeline: it starts at once when it needs no approval
        (``Filed.job``), else waits for approvers."""
        ...

    def requests(self, *, open_only: bool = True, limit: int = 50) -> list[ChangeRequest]:
        """Requests, newest first (open ones only by default)."""
        ...

    def request(self, request_id: str) -> RequestDetail:
        """One request (a unique prefix of its id will do)."""
        ...

    def approve(self, request_id: str, *, run: bool = True) -> Decided:
        """Vote to approve; with ``run``, the approval that completes it starts the run."""
        ...

    def reject(self, request_id: str, *, reason: str) -> Decided:
        ...

    def cancel_request(self, request_id: str, *, reason: str | None = None) -> Decided:
        ...

    def run_request(self, request_id: str) -> Job:
        """Start an approved request (re-planned, checked for drift, leased first)."""
        ...

    def jobs(self, *, limit: int = 20) -> list[Job]:
        ...

    def job(self, job_id: str) -> Job:
        """One job (a unique prefix of its id will do)."""
        ...

    def job_events(self, job_id: str, *, after_seq: int = 0, wait_s: float = 0.0) -> list[JobEvent]:
        """The job's events after ``after_seq``; with ``wait_s``, wait up to that long for the next one."""
        ...

    def cancel_job(self, job_id: str) -> Job:
        """Cancel a running job (operator in its scope, or its requester)."""
        ...

    def audit(
        self,
        *,
        since: datetime | None = None,
        request_id: str | None = None,
        kinds: tuple[str, ...] = (),
        limit: int = 200,
    ) -> list[Any]:
        """Audit entries, oldest first (:class:`~opsconsole.core.audit.records.AuditEntry`)."""
        ...

    def audit_verify(self) -> Any:
        """The chain checked, and every request's status and votes against it
        (:class:`~opsconsole.core.audit.records.StoreVerification`)."""
        ...

    def schedules(self) -> tuple[datetime, list[Any]]:
        """The server's time and each environment's schedule status
        (:class:`~opsconsole.core.schedule.engine.EnvironmentStatus`)."""
        ...

    def schedule_override(
        self,
        environment: str,
        kind: str,
        *,
        until: datetime | None = None,
        region: str | None = None,
        reason: str | None = None,
    ) -> Any:
        """Keep awake, skip tonight or force down until a time (:class:`Override`)."""
        ...

    def freeze_status(self) -> dict[str, Any]:
        """The emergency change freeze: ``{"on", "reason", "by", "since"}`` (anyone may read it)."""
        ...

    def freeze(self, on: bool, *, reason: str | None = None) -> dict[str, Any]:
        """Turn the emergency change freeze on (``reason`` required) or off; admins only, audited.
        Returns the document of :meth:`freeze_status` after the switch."""
        ...

    def stream(self) -> Iterator[StreamEvent]:
        """Events as they happen, until the caller stops iterating."""
        ...
