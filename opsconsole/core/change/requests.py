"""Change requests and their votes in the shared database, moved only by compare-and-set.

The approval rules live in :mod:`opsconsole.core.change.approvals` (pure). This module is the I/O around them:
it loads a request, lets :func:`~opsconsole.core.change.approvals.step` decide, and writes the outcome with
``UPDATE … WHERE id = :id AND version = :seen`` — so that when two people click Approve at the same
instant in two processes (a Slack bot replica and a terminal), exactly one write wins and the other is
re-decided on the new state. The audit entry of a transition is appended in the *same* transaction:
a request never moves without its record, and a record never describes a move that did not happen.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from opsconsole.core.audit.log import AuditLog
from opsconsole.core.audit.records import AuditKind
from opsconsole.core.change.approvals import (
    Decision,
    Event,
    Refused,
    RequestState,
    RequestStatus,
    Vote,
    step,
)
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.clock import utc
from opsconsole.core.errors import OpsError, UsageError
from opsconsole.core.store.db import (
    Database,
    StoreUnavailable,
    requests_table,
    votes_table,
    write_transaction,
)

#: How often a transition is re-decided when another process moved the request first.
CAS_ATTEMPTS = 20



#: The PostgreSQL advisory lock (a bigint of our choosing, b"opsclaim") that serialises filings.
CLAIMS_LOCK_KEY = 0x6F7073636C61696D

class _Contended(Exception):
    """The compare-and-set found the request moved by someone else."""


class RequestRefused(UsageError):
    """What someone tried to do with a request is not allowed now; the message says why."""

    title = "refused"


class RequestNotFound(UsageError):
    title = "no such request"


def _request(row: RowMapping, votes: Sequence[Vote]) -> ChangeRequest:
    created, expires = utc(row["created_at"]), utc(row["expires_at"])
    assert created is not None and expires is not None
    return ChangeRequest(
        id=row["id"],
        action=row["action"],
        params=row["params"] or {},
        playbook=row["playbook"],
        extravars=row["extravars"] or {},
        targets=tuple(row["targets"] or ()),
        summary=tuple(row["summary"] or ()),
        observed=row["observed"] or {},
        plan_hash=row["plan_hash"],
        hash_inputs=row["hash_inputs"] or {},
        risk=row["risk"],
        risk_reasons=tuple(row["risk_reasons"] or ()),
        approvals_needed=row["approvals_needed"],
        approver_scope=row["approver_scope"] or {},
        status=RequestStatus(row["status"]),
        requester=row["requester"],
        face=row["face"],
        created_at=created,
        expires_at=expires,
        version=row["version"],
        decided_at=utc(row["decided_at"]),
        reason=row["reason"],
        job_id=row["job_id"],
        break_glass=bool(row["break_glass"]),
        review_due_at=utc(row["review_due_at"]),
        preview=row["preview"] or {},
        drift=row["drift"],
        votes=tuple(votes),
        world=row["world"],
    )


def _vote(row: RowMapping) -> Vote:
    at = utc(row["at"])
    assert at is not None
    return Vote(
        person=row["voter"],
        decision=Decision(row["decision"]),
        role=row["role"],
        at=at,
        plan_hash=row["plan_hash"],
        reason=row["reason"],
        face=row["face"],
    )


@dataclass(frozen=True)
class NewRequest:
    """Everything a request is filed with (the pipeline fills it from the plan and the risk)."""

    action: str
    params: Mapping[str, Any]
    playbook: str
    extravars: Mapping[str, Any]
    targets: Sequence[str]
    summary: Sequence[str]
    observed: Mapping[str, Any]
    plan_hash: str
    hash_inputs: Mapping[str, Any]
    risk: str
    risk_reasons: Sequence[str]
    approvals_needed: int
    approver_scope: Mapping[str, Any]
    requester: str
    face: str
    created_at: datetime
    expires_at: datetime
    status: RequestStatus = RequestStatus.REQUESTED
    break_glass: bool = False
    review_due_at: datetime | None = None
    preview: Mapping[str, Any] = field(default_factory=dict)


class RequestStore:
    """Requests and votes in the database, every move a compare-and-set with its audit entry."""

    def __init__(self, database: Database, audit: AuditLog) -> None:
        self.database = database
        self.audit = audit

    def _unavailable(self, exc: SQLAlchemyError) -> StoreUnavailable:
        return self.database.unavailable(exc)

    # -- reading -------------------------------------------------------------------------------------

    def get(self, request_id: str) -> ChangeRequest:
        """The request ``request_id`` (a unique prefix of at least 4 characters will do).

        Raises:
            RequestNotFound: no request has that id, or the prefix is ambiguous.
        """
        try:
            with self.database.engine.connect() as conn:
                return self._load(conn, self._resolve(conn, request_id))
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    def list(
        self, *, statuses: Sequence[RequestStatus] | None = None, limit: int = 50
    ) -> builtins.list[ChangeRequest]:
        """Newest first, optionally only with the given statuses."""
        statement = select(requests_table).order_by(requests_table.c.created_at.desc()).limit(limit)
        if statuses:
            statement = statement.where(requests_table.c.status.in_([str(s) for s in statuses]))
        try:
            with self.database.engine.connect() as conn:
                rows = builtins.list(conn.execute(statement).mappings())
                votes = self._votes(conn, [r["id"] for r in rows])
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        return [_request(row, votes.get(row["id"], ())) for row in rows]

    def by_job(self, job_id: str) -> ChangeRequest | None:
        """The request whose run is job ``job_id``, if any (a preview has none)."""
        try:
            with self.database.engine.connect() as conn:
                found = conn.execute(
                    select(requests_table.c.id).where(requests_table.c.job_id == job_id).limit(1)
                ).scalar()
                return self._load(conn, str(found)) if found is not None else None
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    def _open(self, conn: Connection) -> builtins.list[ChangeRequest]:
        """Every requested or approved request, read on ``conn``."""
        rows = builtins.list(conn.execute(
            select(requests_table).where(requests_table.c.status.in_(
                [str(RequestStatus.REQUESTED), str(RequestStatus.APPROVED)]))
        ).mappings())
        votes = self._votes(conn, [r["id"] for r in rows])
        return [_request(row, votes.get(row["id"], ())) for row in rows]

    def _resolve(self, conn: Connection, request_id: str) -> str:
        exact = conn.execute(select(requests_table.c.id).where(requests_table.c.id == request_id)).scalar()
        if exact is not None:
            return str(exact)
        if len(request_id) >= 4:
            found = builtins.list(
                conn.execute(
                    select(requests_table.c.id)
                    .where(requests_table.c.id.startswith(request_id, autoescape=True))
                    .limit(2)
                ).scalars()
            )
            if len(found) == 1:
                return str(found[0])
            if len(found) > 1:
                raise RequestNotFound(f"request {request_id}: ambiguous prefix; give more characters")
        raise RequestNotFound(f"request {request_id}: no such request (opsconsole approvals list shows them)")

    def _load(self, conn: Connection, request_id: str) -> ChangeRequest:
        row = conn.execute(select(requests_table).where(requests_table.c.id == request_id)).mappings().first()
        if row is None:
            raise RequestNotFound(f"request {request_id}: no such request")
        return _request(row, self._votes(conn, [request_id]).get(request_id, ()))

    @staticmethod
    def _votes(conn: Connection, ids: Sequence[str]) -> dict[str, builtins.list[Vote]]:
        out: dict[str, builtins.list[Vote]] = {}
        if not ids:
            return out
        rows = conn.execute(
            select(votes_table)
            .where(votes_table.c.request_id.in_(ids))
            .order_by(votes_table.c.at, votes_table.c.voter)
        ).mappings()
        for row in rows:
            out.setdefault(row["request_id"], []).append(_vote(row))
        return out

    # -- writing -------------------------------------------------------------------------------------

    def create(
        self,
        new: NewRequest,
        *,
        audit_kind: str = AuditKind.REQUEST_FILED,
        audit_data: Mapping[str, Any] | None = None,
        guard: Callable[[Sequence[ChangeRequest]], None] | None = None,
    ) -> ChangeRequest:
        """Store a new request and its ``request_filed`` audit entry in one transaction.

        With ``guard``, filings are serialised (PostgreSQL: a transaction-level advisory lock; SQLite: the
        write lock taken at ``BEGIN IMMEDIATE``) and ``guard`` is called, inside that transaction, with
        every open (requested or approved) request as the store has it *now*; if it raises, nothing is
        filed. Two conflicting filings at the same instant: the second sees the first and is refused.
        """
        request_id = uuid.uuid4().hex
        values = {
            "id": request_id,
            "action": new.action,
            "params": dict(new.params),
            "playbook": new.playbook,
            "extravars": dict(new.extravars),
            "targets": builtins.list(new.targets),
            "summary": builtins.list(new.summary),
            "observed": dict(new.observed),
            "plan_hash": new.plan_hash,
            "hash_inputs": dict(new.hash_inputs),
            "risk": new.risk,
            "risk_reasons": builtins.list(new.risk_reasons),
            "approvals_needed": new.approvals_needed,
            "approver_scope": dict(new.approver_scope),
            "status": str(new.status),
            "requester": new.requester,
            "face": new.face,
            "created_at": new.created_at,
            "expires_at": new.expires_at,
            "break_glass": new.break_glass,
            "review_due_at": new.review_due_at,
            "preview": dict(new.preview),
            "version": 1,
            "world": self.database.world,
        }
        data = {
            "action": new.action,
            "params": dict(new.params),
            "targets": builtins.list(new.targets),
            "summary": builtins.list(new.summary),
            "risk": new.risk,
            "risk_reasons": builtins.list(new.risk_reasons),
            "approvals_needed": new.approvals_needed,
            "plan_hash": new.plan_hash,
            "status": str(new.status),
            "expires_at": new.expires_at.isoformat(),
            "break_glass": new.break_glass,
            "preview": dict(new.preview),
            **({"world": self.database.world} if self.database.world else {}),
            **(audit_data or {}),
        }
        try:
            with write_transaction(self.database.engine) as conn:
                if guard is not None:
                    if conn.dialect.name == "postgresql":
                        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({CLAIMS_LOCK_KEY})")
                    guard(self._open(conn))
                conn.execute(insert(requests_table).values(values))
                self.audit.append_in(
                    conn, audit_kind, actor=new.requester, face=new.face, request_id=request_id, data=data
                )
                return self._load(conn, request_id)
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    def transition(
        self,
        request_id: str,
        event: Callable[[ChangeRequest], Event],
        *,
        actor: str,
        face: str,
        audit_kind: str,
        audit_data: Callable[[ChangeRequest, ChangeRequest], Mapping[str, Any]] | None = None,
        refused_kind: str | None = AuditKind.VOTE_REFUSED,
        updates: Callable[[ChangeRequest, ChangeRequest], Mapping[str, Any]] | None = None,
    ) -> ChangeRequest:
        """Apply the event ``event(request)`` to the request, atomically; return the request after.

        ``event`` is called with the freshly loaded request (and again if another process moved it
        first), so a check such as the voter's role happens against the current request. ``updates``
        gives further columns to write with the move (the job id, the reason, the drift).

        Raises:
            RequestRefused: the state machine refused the event (recorded in the audit as
                ``refused_kind`` when that is given).
            StoreUnavailable: the database cannot be reached.
        """
        refusal: RequestRefused | None = None
        try:
            for _attempt in range(CAS_ATTEMPTS):
                try:
                    with write_transaction(self.database.engine) as conn:
                        before = self._load(conn, self._resolve(conn, request_id))
                        decided = step(before.state, event(before))
                        if isinstance(decided, Refused):
                            if refused_kind is not None:
                                self.audit.append_in(
                                    conn,
                                    refused_kind,
                                    actor=actor,
                                    face=face,
                                    request_id=before.id,
                                    data={"status": str(before.status), "reason": decided.reason},
                                )
                            refusal = RequestRefused(decided.reason)
                        else:
                            return self._write(
                                conn,
                                before,
                                decided,
                                actor=actor,
                                face=face,
                                audit_kind=audit_kind,
                                audit_data=audit_data,
                                updates=updates,
                            )
                except _Contended:
                    continue  # another process moved it first: decide again on what it is now
                break
            else:
                raise OpsError(
                    f"request {request_id}: still contended after {CAS_ATTEMPTS} attempts; try again"
                )
        except IntegrityError as exc:
            # The (request, voter, plan) key: the same person's second vote raced their first.
            raise RequestRefused("you already voted on this request: a person counts once") from exc
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        assert refusal is not None
        raise refusal

    def _write(
        self,
        conn: Connection,
        before: ChangeRequest,
        decided: RequestState,
        *,
        actor: str,
        face: str,
        audit_kind: str,
        audit_data: Callable[[ChangeRequest, ChangeRequest], Mapping[str, Any]] | None,
        updates: Callable[[ChangeRequest, ChangeRequest], Mapping[str, Any]] | None,
    ) -> ChangeRequest:
        values: dict[str, Any] = {
            "status": str(decided.status),
            "plan_hash": decided.plan_hash,
            "version": before.version + 1,
        }
        if updates is not None:
            values.update(updates(before, _with(before, decided)))
        moved = conn.execute(
            update(requests_table)
            .where(requests_table.c.id == before.id, requests_table.c.version == before.version)
            .values(values)
        ).rowcount
        if not moved:
            # PostgreSQL: another transaction committed a move first (on SQLite the write lock taken at
            # BEGIN rules that out).
            raise _Contended
        for vote in decided.votes[len(before.votes) :]:
            conn.execute(
                insert(votes_table).values(
                    request_id=before.id,
                    voter=vote.person,
                    decision=str(vote.decision),
                    reason=vote.reason,
                    role=vote.role,
                    face=vote.face,
                    at=vote.at,
                    plan_hash=vote.plan_hash,
                    world=self.database.world,
                )
            )
        after = self._load(conn, before.id)
        data = {
            "from": str(before.status),
            "to": str(after.status),
            **(audit_data(before, after) if audit_data else {}),
        }
        self.audit.append_in(
            conn, audit_kind, actor=actor, face=face, request_id=before.id, job_id=after.job_id, data=data
        )
        return after

    def update(self, request_id: str, **values: Any) -> None:
        """Set columns that are not part of the state machine (the preview, the job id of a preview)."""
        forbidden = {"status", "version", "plan_hash", "id"} & set(values)
        if forbidden:
            raise ValueError(f"use transition() for {', '.join(sorted(forbidden))}")
        try:
            with self.database.engine.begin() as conn:
                conn.execute(
                    update(requests_table)
                    .where(requests_table.c.id == request_id)
                    .values({**values, "version": requests_table.c.version + 1})
                )
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc


def _with(before: ChangeRequest, state: RequestState) -> ChangeRequest:
    """``before`` with the state machine's result applied (what ``updates`` callbacks see)."""
    import dataclasses  # noqa: PLC0415

    return dataclasses.replace(before, status=state.status, plan_hash=state.plan_hash, votes=state.votes)
