"""The change pipeline: plan → risk → approval when needed → lease → run → audit, for every face.

A face (terminal, Slack, CLI, scheduler) never runs a playbook that changes the fleet itself; it hands
the pipeline an :class:`~opsconsole.core.change.actions.ActionPlan`
and the :class:`~opsconsole.core.change.rbac.Identity`
asking, and the pipeline decides:

1. **who** — the identity must be allowed to request a change in the plan's scope (a viewer is not);
2. **how risky** — the risk policy (``inventory/policy.yml``) gives a level and the approvals it needs;
   a change freeze refuses medium and high requests unless glass is broken;
3. **whether it can be approved at all** — enough eligible approvers besides the requester, or it is
   refused now rather than left pending for ever; and no run holds its targets, no open request
   claims them (rules 1–3 are the pure :func:`~opsconsole.core.change.admission.admit`; the
   pipeline gathers the facts it needs and audits its refusals);
4. **what an approval means** — the request is bound to a hash of the action, its parameters, the
   playbook's content, the inventory's content and the targets' observed state (see
   :func:`plan_binding`); at execution the plan is made again on a fresh snapshot, and if the hash
   differs nothing runs: the request returns for approval, showing what drifted;
5. **one run** — a lease on the targets, then the ``approved → running`` compare-and-set: of any number
   of processes trying to start it, exactly one runs it;
6. **the record** — every step lands in the hash-chained audit log, in the same transaction as the
   state it records.

Low-risk requests run at once (still leased and audited); break glass (admins only, with a reason)
runs at once too, flagged in the audit with a review due in 24 h.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy.exc import SQLAlchemyError

from opsconsole.core.audit.log import AuditLog, Evidence, request_evidence, verify_store
from opsconsole.core.audit.records import AuditKind, StoreVerification
from opsconsole.core.change.actions import ActionPlan, pinned_observations, replan
from opsconsole.core.change.admission import (
    Admission,
    Claim,
    Filing,
    admit,
    lease_targets,
    params_text,
)
from opsconsole.core.change.approvals import (
    Approve,
    Cancel,
    Drift,
    Expire,
    Finish,
    Outcome,
    Reject,
    RequestStatus,
    Start,
)
from opsconsole.core.change.gate import Act, Forbidden, fleet_scope, refusal
from opsconsole.core.change.locks import Lease, LeaseConflict, LeaseHolder, LeaseLost, Leases
from opsconsole.core.change.rbac import Directory, Identity, Permission, Scope
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.change.requests import NewRequest, RequestRefused, RequestStore
from opsconsole.core.change.risk import RiskAssessment, RiskPolicy, assess, plan_scope
from opsconsole.core.change.rto import RtoVerdict, record_verdict
from opsconsole.core.clock import Clock, SystemClock
from opsconsole.core.errors import ExecutionUnavailable, OpsError, UsageError
from opsconsole.core.fleet.engine import Snapshot
from opsconsole.core.fleet.model import Fleet
from opsconsole.core.runs.events import EventBus
from opsconsole.core.runs.records import Job, JobStatus
from opsconsole.core.store.db import Database, StoreUnavailable
from opsconsole.core.store.dbtime import StoreTime, store_time_for

log = logging.getLogger(__name__)

#: How long after a break-glass run its review falls due.
BREAK_GLASS_REVIEW = timedelta(hours=24)

#: How often a run's recorded outcome is retried while the store is away.
STORE_RETRY_S = 1.0

JOB_OUTCOME = {
    JobStatus.SUCCEEDED: Outcome.SUCCEEDED,
    JobStatus.INTERRUPTED: Outcome.INTERRUPTED,
    JobStatus.CANCELLED: Outcome.CANCELLED,
}


@dataclass(frozen=True)
class RequestChanged:
    """Published on the event bus whenever a request moves, so that faces update in place."""

    request: ChangeRequest
    kind: str


@dataclass(frozen=True)
class Submission:
    """What filing a plan gave: the request, its risk, and the job when it ran at once."""

    request: ChangeRequest
    assessment: RiskAssessment
    job: Job | None = None

    @property
    def ran(self) -> bool:
        return self.job is not None


class ApprovalDiscrepancy(RequestRefused):
    """The request's status or votes in the store disagree with the audit log: nothing runs."""

    title = "approvals not backed by the audit log"


class Executor:
    """How the pipeline runs a playbook (the core's runner, with the connection variables).

    ``get`` reads a job (the runner's store); :meth:`Pipeline.cancel_job` needs it.
    """

    def __init__(
        self,
        start: Callable[[ActionPlan, bool, str, str], Job],
        wait: Callable[[str], Job],
        cancel: Callable[[str], bool],
        after_run: Callable[[Job], None] | None = None,
        get: Callable[[str], Job | None] | None = None,
    ) -> None:
        self.start = start
        self.wait = wait
        self.cancel = cancel
        self.after_run = after_run
        self.get = get


def _digest_tree(paths: Sequence[Path]) -> str:
    """A content hash over files (sorted by path, relative names included)."""
    h = hashlib.sha256()
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            if "__pycache__" in path.parts or path.suffix in (".pyc", ".retry"):
                continue
            rel = path.relative_to(root.parent).as_posix()
            h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def plan_binding(plan: ActionPlan, *, inventory_dir: Path, playbook_dir: Path) -> tuple[str, dict[str, Any]]:
    """The hash an approval is bound to, and its inputs (kept to show what drifted).

    The playbook's content is the playbook and everything it can include (``tasks/``, ``library/``,
    ``roles/``, ``ansible.cfg``); the inventory's is every file of the inventory directory.
    """
    playbook_parts = [playbook_dir / plan.playbook] + [
        playbook_dir / name
        for name in ("tasks", "library", "roles", "ansible.cfg")
        if (playbook_dir / name).exists()
    ]
    inputs = {
        "action": plan.action.value,
        "params": json.loads(_canonical(dict(plan.params))),
        "playbook": _digest_tree(playbook_parts),
        "inventory": _digest_tree([inventory_dir]),
        "observed": json.loads(_canonical(pinned_observations(plan))),
    }
    return hashlib.sha256(_canonical(inputs).encode()).hexdigest(), inputs


def describe_drift(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """What differs between two sets of hash inputs, in words."""
    lines: list[str] = []
    if before.get("params") != after.get("params"):
        lines.append(f"parameters: {before.get('params')} → {after.get('params')}")
    if before.get("playbook") != after.get("playbook"):
        lines.append("the playbook (or a file it includes) changed since the approval")
    if before.get("inventory") != after.get("inventory"):
        lines.append("the inventory changed since the approval")
    was, now = before.get("observed") or {}, after.get("observed") or {}
    for key in sorted(set(was) | set(now)):
        if was.get(key) != now.get(key):
            lines.append(f"{key}: {_canonical(was.get(key))} → {_canonical(now.get(key))}")
    return lines or ["the plan's hash changed"]


class Pipeline:
    """The one way a change request becomes a run. Thread-safe; shared by every face of a process.

    Args:
        fleet: the inventory.
        database: the shared database (requests, votes, leases, audit).
        directory: who is who (``inventory/rbac.yml``).
        policy: the risk policy (``inventory/policy.yml``).
        snapshot: a fresh snapshot of the fleet (the pipeline re-plans on it before running).
        executor: how playbooks run.
        playbook_dir: where the playbooks are (their content is part of what an approval binds).
        bus: where :class:`RequestChanged` events are published.
        audit_key: the audit key (entries carry its MAC; runs count only votes whose audited entries
            carry a valid one); ``None`` writes and checks no MACs.
        audit_head_file: where the audit head is published after every append (``None``: nowhere).
    """

    def __init__(
        self,
        *,
        fleet: Fleet,
        database: Database,
        directory: Directory,
        policy: RiskPolicy,
        snapshot: Callable[[], Snapshot | None],
        executor: Executor | None,
        playbook_dir: Path,
        clock: Clock | None = None,
        bus: EventBus | None = None,
        lease_ttl_s: float = 90.0,
        audit_key: bytes | None = None,
        audit_head_file: Path | None = None,
        store_time: StoreTime | None = None,
    ) -> None:
        self.fleet = fleet
        self.database = database
        self.directory = directory
        self.policy = policy
        self.clock: Clock = clock or SystemClock()
        #: Filing, votes, expiry and runs are stamped and judged in the store's time (see dbtime).
        self.store_time: StoreTime = store_time or store_time_for(clock)
        self.audit_key = audit_key
        self.audit = AuditLog(database, clock=self.clock, key=audit_key, head_file=audit_head_file)
        self.requests = RequestStore(database, self.audit)
        self.leases = Leases(database, clock=self.clock, ttl_s=lease_ttl_s, store_time=self.store_time)
        self.bus = bus or EventBus()
        self._snapshot = snapshot
        self._executor = executor
        self._playbook_dir = playbook_dir
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()

    def _store_now(self) -> datetime:
        """Now in the store's time: what expiry is judged by on every host alike."""
        try:
            with self.database.engine.connect() as conn:
                return self.store_time.now(conn)
        except SQLAlchemyError as exc:
            raise self.database.unavailable(exc, "read the store's clock") from exc

    # -- filing ----------------------------------------------------------------------------------------

    def binding(self, plan: ActionPlan) -> tuple[str, dict[str, Any]]:
        return plan_binding(plan, inventory_dir=self.fleet.source, playbook_dir=self._playbook_dir)

    def assess(self, plan: ActionPlan, snapshot: Snapshot | None = None) -> RiskAssessment:
        """The risk of ``plan`` now (for a preview before filing)."""
        return assess(
            self.policy,
            plan,
            self.fleet,
            snapshot if snapshot is not None else self._snapshot(),
            self.clock.now(),
        )

    def submit(
        self,
        plan: ActionPlan,
        who: Identity,
        *,
        face: str,
        snapshot: Snapshot | None = None,
        break_glass_reason: str | None = None,
        preview: Mapping[str, Any] | None = None,
        wait: bool = True,
    ) -> Submission:
        """File ``plan`` for ``who``: run it now if it needs no approval, else queue it for approvers.

        Raises:
            RequestRefused: not allowed (role, freeze, nobody to approve, targets busy, break glass by a
                non-admin or without a reason) — recorded in the audit.
            StoreUnavailable: the database cannot be reached: nothing is filed, nothing runs.
        """
        self.expire_due()  # an expired request no longer claims its targets
        assessment = self.assess(plan, snapshot)
        filing = self._filing(plan, who, assessment, break_glass_reason)
        decision = admit(filing)
        if not decision.admitted:
            self._refuse(who, face, decision)
        try:
            request = self._file(plan, who, face, assessment, decision, break_glass_reason, preview,
                                 filing=filing)
        except _ClaimTaken as taken:
            self._refuse(who, face, taken.decision)
        self._publish(request, AuditKind.REQUEST_FILED)
        if decision.approvals_needed:
            return Submission(request, assessment)
        job = self._run_at_once(request, plan, who, face=face, wait=wait)
        return Submission(self.requests.get(request.id), assessment, job)

    def _filing(
        self, plan: ActionPlan, who: Identity, assessment: RiskAssessment, break_glass_reason: str | None
    ) -> Filing:
        """The facts :func:`~opsconsole.core.change.admission.admit` decides on (reads leases, requests)."""
        held, claims = self._check_free(plan) or ((), ())
        return Filing(
            plan=plan,
            assessment=assessment,
            who=who,
            scope=plan_scope(plan, self.fleet),
            other_approvers=[
                p
                for p in self.directory.eligible(Permission.APPROVE, assessment.approver_scope)
                if p != who.person
            ],
            held=held,
            claims=claims,
            break_glass_reason=break_glass_reason,
        )

    def _check_free(self, plan: ActionPlan) -> tuple[list[LeaseHolder], list[Claim]] | None:
        """What makes the plan's targets busy — live leases on them, open requests claiming them — or
        ``None`` when they are free (the admission rules refuse a busy plan)."""
        mine = lease_targets(plan)
        held = self.leases.conflicts(mine)
        open_requests = self.requests.list(
            statuses=[RequestStatus.REQUESTED, RequestStatus.APPROVED], limit=500
        )
        claims = [claim for claim in map(Claim.of, open_requests) if claim.overlaps(mine)]
        return (held, claims) if held or claims else None

    def _file(
        self,
        plan: ActionPlan,
        who: Identity,
        face: str,
        assessment: RiskAssessment,
        decision: Admission,
        break_glass_reason: str | None,
        preview: Mapping[str, Any] | None,
        *,
        filing: Filing | None = None,
    ) -> ChangeRequest:
        """Store the admitted request (``requested``, or ``approved`` when it needs no approval), audited.

        With ``filing``, the claims are checked again inside the filing's transaction, serialised with
        every other filing (:meth:`RequestStore.create`'s ``guard``): of two conflicting filings at the
        same instant exactly one is filed; the other raises :class:`_ClaimTaken`.
        """
        now = self._store_now()
        mine = lease_targets(plan)

        def still_free(open_requests: Sequence[ChangeRequest]) -> None:
            if filing is None:
                return
            claims = [c for c in map(Claim.of, open_requests)
                      if c.overlaps(mine) and not _expired(open_requests, c, now)]
            if not claims:
                return
            again = admit(replace(filing, claims=claims))
            if not again.admitted:
                raise _ClaimTaken(again)

        glass = decision.break_glass
        needed = decision.approvals_needed
        plan_hash, inputs = self.binding(plan)
        return self.requests.create(
            NewRequest(
                action=plan.action.value,
                params=plan.params,
                playbook=plan.playbook,
                extravars=plan.extravars,
                targets=plan.targets,
                summary=plan.summary,
                observed=plan.observed,
                plan_hash=plan_hash,
                hash_inputs=inputs,
                risk=assessment.level.value,
                risk_reasons=assessment.reasons,
                approvals_needed=needed,
                approver_scope={
                    "environments": sorted(assessment.approver_scope.environments),
                    "regions": sorted(assessment.approver_scope.regions),
                },
                requester=who.person,
                face=face,
                created_at=now,
                expires_at=now + timedelta(seconds=assessment.ttl_s),
                status=RequestStatus.REQUESTED if needed else RequestStatus.APPROVED,
                break_glass=glass,
                review_due_at=now + BREAK_GLASS_REVIEW if glass else None,
                preview=dict(preview or {}),
            ),
            audit_kind=AuditKind.BREAK_GLASS if glass else AuditKind.REQUEST_FILED,
            audit_data={
                "principal": who.principal,
                "rule": assessment.rule,
                **({"reason": break_glass_reason} if glass else {}),
            },
            guard=still_free,
        )

    def _run_at_once(
        self, request: ChangeRequest, plan: ActionPlan, who: Identity, *, face: str, wait: bool
    ) -> Job:
        """Run a request that needs no approval; if it cannot start, cancel it so it claims nothing."""
        try:
            return self.execute(request.id, who, face=face, wait=wait, plan=plan)
        except RequestRefused as refused:
            # Filed to run at once but it could not start (a run took its targets an instant ago): it
            # must not stay open and claim them; the requester sees why and may file it again.
            with suppress(RequestRefused):
                self.cancel(request.id, who, face=face, reason=f"could not start: {refused.message}")
            raise

    def _refuse(self, who: Identity, face: str, decision: Admission) -> NoReturn:
        """Audit an admission refusal and raise it (:class:`Forbidden` when the gate said no)."""
        reason = decision.reason or "refused"
        self.audit.append(
            AuditKind.REQUEST_REFUSED, actor=who.person, face=face, data=dict(decision.audit_data)
        )
        raise Forbidden(reason) if decision.forbidden else RequestRefused(reason)

    # -- deciding --------------------------------------------------------------------------------------

    def approve(self, request_id: str, who: Identity, *, face: str) -> ChangeRequest:
        """``who`` approves; the gate checks their role now, against the request's approver scope."""
        self.expire_due()
        denied: list[str | None] = [None]

        def event(req: ChangeRequest) -> Approve:
            scope = req.scope
            denied[0] = refusal(Act.VOTE, who, scope=scope, requester=req.requester)
            return Approve(who.person, who.role_for(scope).value, denied[0] is None, self._store_now(), face)

        with _as_forbidden(denied):
            after = self.requests.transition(
                request_id,
                event,
                actor=who.person,
                face=face,
                audit_kind=AuditKind.VOTE_APPROVE,
                audit_data=lambda b, a: {
                    "approvers": list(a.approvers),
                    "missing": a.approvals_missing,
                    "principal": who.principal,
                    "plan_hash": b.plan_hash,
                },
                updates=lambda _b, a: (
                    {"decided_at": self._store_now()} if a.status is RequestStatus.APPROVED else {}
                ),
            )
        if after.status is RequestStatus.APPROVED:
            self.audit.append(
                AuditKind.APPROVED,
                actor=who.person,
                face=face,
                request_id=after.id,
                data={"approvers": list(after.approvers)},
            )
        self._publish(after, AuditKind.VOTE_APPROVE)
        return after

    def reject(self, request_id: str, who: Identity, *, face: str, reason: str) -> ChangeRequest:
        self.expire_due()
        denied: list[str | None] = [None]

        def event(req: ChangeRequest) -> Reject:
            scope = req.scope
            denied[0] = refusal(Act.VOTE, who, scope=scope)
            return Reject(
                who.person, who.role_for(scope).value, denied[0] is None, reason, self._store_now(), face
            )

        with _as_forbidden(denied):
            after = self.requests.transition(
                request_id,
                event,
                actor=who.person,
                face=face,
                audit_kind=AuditKind.VOTE_REJECT,
                audit_data=lambda b, _a: {"reason": reason, "principal": who.principal,
                                          "plan_hash": b.plan_hash},
                updates=lambda _b, _a: {"decided_at": self._store_now(), "reason": reason},
            )
        self._publish(after, AuditKind.REJECTED)
        return after

    def cancel(
        self, request_id: str, who: Identity, *, face: str, reason: str | None = None
    ) -> ChangeRequest:
        """Cancel an open request: the gate lets its requester or an admin of its scope (checked now)."""
        denied: list[str | None] = [None]

        def event(req: ChangeRequest) -> Cancel:
            denied[0] = refusal(Act.CANCEL_REQUEST, who, scope=req.scope, requester=req.requester)
            return Cancel(who.person, self._store_now(), allowed=denied[0] is None)

        with _as_forbidden(denied):
            after = self.requests.transition(
                request_id,
                event,
                actor=who.person,
                face=face,
                audit_kind=AuditKind.CANCELLED,
                audit_data=lambda _b, _a: {"reason": reason, "principal": who.principal},
                updates=lambda _b, _a: {"decided_at": self._store_now(), "reason": reason},
            )
        self._publish(after, AuditKind.CANCELLED)
        return after

    def may_still_vote(self, request: ChangeRequest) -> list[str]:
        """People whose role lets them vote on ``request`` now and who have not voted on its plan."""
        voted = {v.person for v in request.votes if v.plan_hash == request.plan_hash}
        return [
            p
            for p in self.directory.eligible(Permission.APPROVE, request.scope)
            if p != request.requester and p not in voted
        ]

    def expire_due(self) -> list[ChangeRequest]:
        """Expire every open request past its expiry (the outcome is recorded); return them."""
        now = self._store_now()
        expired: list[ChangeRequest] = []
        for req in self.requests.list(statuses=[RequestStatus.REQUESTED, RequestStatus.APPROVED], limit=1000):
            if req.expires_at > now:
                continue
            try:
                after = self.requests.transition(
                    req.id,
                    lambda _req: Expire(now),
                    actor="opsconsole",
                    face="system",
                    audit_kind=AuditKind.EXPIRED,
                    refused_kind=None,
                    audit_data=lambda b, _a: {"approvers": list(b.approvers), "missing": b.approvals_missing},
                    updates=lambda _b, _a: {"decided_at": now},
                )
            except RequestRefused:
                continue  # someone decided it meanwhile
            expired.append(after)
            self._publish(after, AuditKind.EXPIRED)
        return expired

    # -- running ---------------------------------------------------------------------------------------

    def execute(
        self, request_id: str, who: Identity, *, face: str, wait: bool = True, plan: ActionPlan | None = None
    ) -> Job:
        """Run an approved request: re-plan, compare hashes, take the lease, start exactly once.

        ``plan`` is the plan just made by :meth:`submit` (no re-planning needed for a request filed and
        run in the same breath).

        Raises:
            RequestRefused: not approved, expired, drifted (the request returns for approval), targets
                busy, or already started elsewhere.
            StoreUnavailable: nothing runs.
        """
        # Whether the request may run is decided (and a tampered one refused and audited) before whether
        # this server can run anything at all: the refusal is the answer a caller needs.
        request = self._runnable(request_id, who, face)
        executor = self._executor
        if executor is None:
            raise ExecutionUnavailable("this server cannot run playbooks (it was started to read only)")
        plan = plan if plan is not None else self._replan(request, who, face)
        reason = refusal(Act.RUN, who, scope=plan_scope(plan, self.fleet), break_glass=request.break_glass)
        if reason is not None:
            self.audit.append(AuditKind.REQUEST_REFUSED, actor=who.person, face=face, request_id=request.id,
                              data={"reason": reason, "principal": who.principal})
            raise Forbidden(reason)
        self._check_binding(request, plan, who, face)
        lease = self._lease(request, plan, who, face)
        job = self._start(executor, request, plan, lease, who, face)
        if wait:
            return self._follow(request.id, job, lease, who, face)
        thread = threading.Thread(
            target=self._follow,
            args=(request.id, job, lease, who, face),
            name=f"request-{request.short_id}",
            daemon=True,
        )
        self._threads.append(thread)
        thread.start()
        return job

    def _runnable(self, request_id: str, who: Identity, face: str) -> ChangeRequest:
        """The request, if it is approved, of this world and backed by the audit log; else refused."""
        self.expire_due()
        request = self.requests.get(request_id)
        if request.status is not RequestStatus.APPROVED:
            # The state machine refuses ``Start`` from any other status, with the words for it.
            self.requests.transition(
                request.id,
                lambda _r: Start(self._store_now()),
                actor=who.person,
                face=face,
                audit_kind=AuditKind.RUN_STARTED,
                refused_kind=None,
            )
        here = self.database.world
        if request.world is not None and here is not None and request.world != here:
            raise RequestRefused(f"request {request.short_id} belongs to the {request.world} world; this "
                                 f"is the {here} one: nothing runs")
        self._check_evidence(request, who, face)
        return request

    def _replan(self, request: ChangeRequest, who: Identity, face: str) -> ActionPlan:
        """The request's plan made again on a fresh snapshot; a plan that cannot be made is refused."""
        try:
            return replan(self.fleet, self._snapshot(), request.action, request.params)
        except UsageError as exc:
            self.audit.append(
                AuditKind.DRIFT_DETECTED,
                actor=who.person,
                face=face,
                request_id=request.id,
                data={"reason": exc.message},
            )
            raise RequestRefused(f"request {request.short_id} cannot run now: {exc.message}") from exc

    def _check_binding(self, request: ChangeRequest, plan: ActionPlan, who: Identity, face: str) -> None:
        """Refuse if the plan's hash differs from the approved one: the request returns for approval."""
        new_hash, inputs = self.binding(plan)
        if new_hash == request.plan_hash:
            return
        lines = describe_drift(request.hash_inputs, inputs)
        after = self.requests.transition(
            request.id,
            lambda _r: Drift(new_hash, self._store_now()),
            actor=who.person,
            face=face,
            audit_kind=AuditKind.DRIFT_DETECTED,
            refused_kind=None,
            audit_data=lambda _b, _a: {"drift": lines, "plan_hash": new_hash},
            updates=lambda _b, _a: {
                "drift": {"lines": lines, "at": self._store_now().isoformat()},
                "hash_inputs": inputs,
                "summary": list(plan.summary),
                "observed": dict(plan.observed),
                "extravars": dict(plan.extravars),
            },
        )
        self._publish(after, AuditKind.DRIFT_DETECTED)
        raise RequestRefused(
            f"request {request.short_id} changed since it was approved; nothing ran and it needs "
            "approval "
            "again:\n  " + "\n  ".join(lines)
        )

    def _lease(self, request: ChangeRequest, plan: ActionPlan, who: Identity, face: str) -> Lease:
        """A lease on the plan's targets; a conflict is audited and refused."""
        try:
            return self.leases.acquire(
                lease_targets(plan),
                holder=request.requester,
                purpose=f"{request.action} {params_text(request.params)}",
                request_id=request.id,
            )
        except LeaseConflict as exc:
            self.audit.append(
                AuditKind.LEASE_REFUSED,
                actor=who.person,
                face=face,
                request_id=request.id,
                data={"reason": exc.message},
            )
            if exc.holders and all(h.request_id == request.id for h in exc.holders):
                # Two callers started the same approved request (the last vote's run and a Run button,
                # a drill): the first one's run is the request's; this one is told so.
                raise RequestRefused(f"request {request.short_id} is already being started (its targets "
                                     f"are held for it since a moment ago): follow its run") from exc
            raise RequestRefused(exc.message) from exc

    def _start(
        self, executor: Executor, request: ChangeRequest, plan: ActionPlan, lease: Lease, who: Identity,
        face: str,
    ) -> Job:
        """``approved → running`` (exactly one caller wins), then the playbook starts; audited, published.

        The lease is released if anything fails before the job is recorded against the request.
        """
        try:
            started = self.requests.transition(
                request.id,
                lambda _r: Start(self._store_now()),
                actor=who.person,
                face=face,
                audit_kind=AuditKind.RUN_STARTED,
                refused_kind=None,
                # One run_started entry per run (the job's id is on the request and in run_finished).
                audit_data=lambda _b, _a: {"executor": who.person, "playbook": plan.playbook,
                                           "targets": list(plan.targets)},
            )
            job = executor.start(plan, False, request.requester, face)
            self.requests.update(started.id, job_id=job.id)
        except BaseException:
            with suppress(OpsError):  # the lease lapses by itself if the store is what failed
                self.leases.release(lease)
            raise
        self._publish(self.requests.get(request.id), AuditKind.RUN_STARTED)
        return job

    def evidence(self, request_id: str) -> Evidence:
        """What the audit log says of a request: its audited approvals and every disagreement."""
        try:
            with self.database.engine.connect() as conn:
                return request_evidence(conn, request_id, key=self.audit_key)
        except SQLAlchemyError as exc:
            raise self.database.unavailable(exc) from exc

    def _check_evidence(self, request: ChangeRequest, who: Identity, face: str) -> None:
        """Refuse to run a request its audit entries do not back (approvals re-derived, not read from
        the status column); the disagreement is audited as ``approval_discrepancy``."""
        evidence = self.evidence(request.id)
        if evidence.sufficient:
            return
        problems = list(evidence.problems) or [
            f"request {request.short_id}: {len(evidence.approvers)} of {evidence.needed} approval(s) "
            "are in the audit log"
        ]
        self.audit.append(
            AuditKind.APPROVAL_DISCREPANCY, actor=who.person, face=face, request_id=request.id,
            data={"status": request.status.value, "stored_approvers": list(request.approvers),
                  "audited_approvers": list(evidence.approvers), "needed": evidence.needed,
                  "problems": problems, "principal": who.principal},
        )
        log.error("request %s refused to run: %s", request.id, "; ".join(problems))
        raise ApprovalDiscrepancy(
            f"request {request.short_id} cannot run: its status or votes in the store disagree with the "
            "audit log (nothing ran; run `opsconsole audit verify`):\n  " + "\n  ".join(problems)
        )

    def verify_consistency(self) -> StoreVerification:
        """The audit chain and every request against it (:func:`opsconsole.core.audit.log.verify_store`)."""
        return verify_store(self.database, key=self.audit_key, head_file=self.audit.head_file)

    # -- jobs ------------------------------------------------------------------------------------------

    def cancel_job(self, job_id: str, who: Identity, *, face: str) -> Job:
        """Cancel a queued or running job (a run or a preview); the gate decides, the audit records it.

        Allowed: an operator in the job's scope (its request's, else what its parameters name, else the
        whole fleet) or the job's requester (its request's requester, else who started it).

        Raises:
            RequestRefused: no such job, or it already ended.
            Forbidden: ``who`` may not (audited as ``request_refused``).
            OpsError: this pipeline cannot run or read jobs.
        """
        executor = self._executor
        if executor is None or executor.get is None:
            raise OpsError("this console was started read-only: it cannot cancel jobs")
        job = executor.get(job_id)
        if job is None:
            raise RequestRefused(f"job {job_id}: no such job")
        request = self.requests.by_job(job.id)
        scope = request.scope if request is not None else self._job_scope(job)
        requester = request.requester if request is not None else job.actor
        request_id = request.id if request is not None else None
        reason = refusal(Act.CANCEL_JOB, who, scope=scope, requester=requester)
        if reason is not None:
            self.audit.append(AuditKind.REQUEST_REFUSED, actor=who.person, face=face, request_id=request_id,
                              job_id=job.id, data={"action": "cancel_job", "reason": reason,
                                                   "principal": who.principal})
            raise Forbidden(reason)
        if job.status.terminal:
            raise RequestRefused(f"job {job.id[:8]} already ended ({job.status.value}): nothing to cancel")
        self.audit.append(AuditKind.JOB_CANCELLED, actor=who.person, face=face, request_id=request_id,
                          job_id=job.id, data={"status": job.status.value, "requester": requester,
                                               "principal": who.principal})
        executor.cancel(job.id)
        return executor.get(job.id) or job

    def _job_scope(self, job: Job) -> Scope:
        """A job without a request (a preview): the regions / environment its parameters name, else the
        whole fleet (only an operator of everything may then cancel someone else's job)."""
        regions: set[str] = set()
        environments: set[str] = set()
        for key in ("region", "from_region", "to_region"):
            value = job.params.get(key)
            if isinstance(value, str) and value in self.fleet.regions:
                regions.add(value)
        env = job.params.get("environment")
        if isinstance(env, str):
            environments.add(env)
        cluster = self.fleet.clusters.get(str(job.params.get("cluster", "")))
        if cluster is not None:
            regions.add(cluster.region)
            environments.add(cluster.environment.value)
        if not regions and not environments:
            return fleet_scope(self.fleet)
        return Scope.of(environments=environments, regions=regions)

    def _follow(self, request_id: str, job: Job, lease: Lease, who: Identity, face: str) -> Job:
        """Wait for the run, keeping the lease alive; record the outcome; release the lease."""
        executor = self._executor
        assert executor is not None

        def lost(error: LeaseLost) -> None:
            # The targets are no longer the run's alone (store unreachable past the lease's life, or
            # expired and taken): stop the run rather than let it race another.
            executor.cancel(job.id)
            with suppress(OpsError):  # the store may be what is gone; the run is stopped either way
                self.audit.append(
                    AuditKind.LEASE_REFUSED, actor="opsconsole", face="system", request_id=request_id,
                    job_id=job.id, data={"reason": f"lease lost mid-run: {error.message}; run cancelled"},
                )

        with self.leases.kept(lease, on_lost=lost):
            finished = executor.wait(job.id)
        if executor.after_run is not None:
            executor.after_run(finished)
        # A failover / failback is judged against its RTO: the verdict goes on the job and in the audit.
        finished, rto = self._judge_rto(finished)
        outcome = JOB_OUTCOME.get(finished.status, Outcome.FAILED)
        totals = (finished.stats or {}).get("totals", {})

        def record() -> ChangeRequest:
            return self.requests.transition(
                request_id,
                lambda _r: Finish(outcome, self._store_now()),
                actor=who.person,
                face=face,
                audit_kind=AuditKind.RUN_FINISHED,
                refused_kind=None,
                audit_data=lambda _b, _a: {
                    "job_id": finished.id,
                    "job_status": finished.status.value,
                    "rc": finished.rc,
                    "changed": totals.get("changed"),
                    "failed": totals.get("failed"),
                    "error": finished.error,
                    **({"rto": rto.document()} if rto is not None else {}),
                },
            )

        after = self._until_the_store_answers(record, f"record the result of request {request_id[:8]}")
        self._publish(after, AuditKind.RUN_FINISHED)
        return finished

    def _until_the_store_answers(self, work: Callable[[], ChangeRequest], doing: str) -> ChangeRequest:
        """``work()``, retried every second while the store is away (a run's outcome is a fact: it is
        recorded when the store returns, never dropped); one warning per outage, no traceback."""
        told = False
        while True:
            try:
                result = work()
            except StoreUnavailable as exc:
                if not told:
                    log.warning("could not %s: %s; retrying until the store answers", doing, exc.message)
                    told = True
                if self._closing.wait(STORE_RETRY_S):
                    raise
                continue
            if told:
                log.warning("the store answers again: %s done", doing)
            return result

    def _judge_rto(self, job: Job) -> tuple[Job, RtoVerdict | None]:
        """A finished failover / failback judged against its RTO, the verdict recorded on the job (see
        :mod:`opsconsole.core.change.rto`); a store that does not answer leaves the job unjudged rather
        than the run's outcome unrecorded (one warning, no traceback)."""
        try:
            return record_verdict(self.database, self.fleet, job)
        except (StoreUnavailable, SQLAlchemyError) as exc:
            log.warning("could not record the RTO verdict of job %s: %s", job.id[:8], exc)
            return job, None

    def reconcile(self, job_status: Callable[[str], JobStatus | None]) -> list[ChangeRequest]:
        """Requests left ``running`` by a console that died: mirror their jobs' outcome (nothing re-runs)."""
        done: list[ChangeRequest] = []
        for req in self.requests.list(statuses=[RequestStatus.RUNNING], limit=500):
            status = job_status(req.job_id) if req.job_id else None
            if status is not None and not status.terminal:
                continue
            outcome = JOB_OUTCOME.get(status, Outcome.FAILED) if status else Outcome.INTERRUPTED
            try:
                after = self.requests.transition(
                    req.id,
                    lambda _r, o=outcome: Finish(o, self._store_now()),  # type: ignore[misc]
                    actor="opsconsole",
                    face="system",
                    audit_kind=AuditKind.RUN_FINISHED,
                    refused_kind=None,
                    audit_data=lambda _b, _a, s=status: {
                        "job_status": s.value if s else None,  # type: ignore[misc]
                        "recovered": True,
                    },
                )
            except RequestRefused:
                continue
            done.append(after)
        return done

    def close(self) -> None:
        """Stop retrying (store away) in background runs' threads: their outcome is then left to the
        next start's recovery and reconcile."""
        self._closing.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for background runs (``wait=False``) to be recorded."""
        for thread in list(self._threads):
            thread.join(timeout)

    def _publish(self, request: ChangeRequest, kind: str) -> None:
        self.bus.publish(RequestChanged(request, kind))



class _as_forbidden:
    """Turn the state machine's refusal into :class:`Forbidden` when the gate is what said no."""

    def __init__(self, denied: list[str | None]) -> None:
        self.denied = denied

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> None:
        reason = self.denied[0]
        if isinstance(exc, RequestRefused) and not isinstance(exc, Forbidden) and reason is not None:
            raise Forbidden(reason) from exc


class _ClaimTaken(Exception):
    """A conflicting request was filed an instant before this one (seen inside the filing's transaction)."""

    def __init__(self, decision: Admission) -> None:
        super().__init__(decision.reason)
        self.decision = decision


def _expired(open_requests: Sequence[ChangeRequest], claim: Claim, now: datetime) -> bool:
    """Whether the open request behind ``claim`` is past its expiry (it claims nothing any more)."""
    return any(r.short_id == claim.short_id and r.expires_at <= now for r in open_requests)
