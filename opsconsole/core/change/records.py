"""A change request as every face sees it, free of the store: the server sends it, clients read it.

:mod:`opsconsole.core.change.requests` keeps these in the database; this module only says what one is,
so that a thin client can hold one without importing SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from opsconsole.core.change.approvals import RequestState, RequestStatus, Vote
from opsconsole.core.change.rbac import Scope


@dataclass(frozen=True)
class ChangeRequest:
    """A request as stored, with its votes: what every face shows."""

    id: str
    action: str
    params: Mapping[str, Any]
    playbook: str
    extravars: Mapping[str, Any]
    targets: tuple[str, ...]
    summary: tuple[str, ...]
    observed: Mapping[str, Any]
    plan_hash: str
    hash_inputs: Mapping[str, Any]
    risk: str
    risk_reasons: tuple[str, ...]
    approvals_needed: int
    approver_scope: Mapping[str, Any]
    status: RequestStatus
    requester: str
    face: str
    created_at: datetime
    expires_at: datetime
    version: int
    decided_at: datetime | None = None
    reason: str | None = None
    job_id: str | None = None
    break_glass: bool = False
    review_due_at: datetime | None = None
    preview: Mapping[str, Any] = field(default_factory=dict)
    drift: Mapping[str, Any] | None = None
    votes: tuple[Vote, ...] = ()
    #: sandbox or live: the world of the store it was filed in (``None`` for requests filed before 0004).
    world: str | None = None

    @property
    def state(self) -> RequestState:
        return RequestState(
            status=self.status,
            requester=self.requester,
            approvals_needed=self.approvals_needed,
            plan_hash=self.plan_hash,
            expires_at=self.expires_at,
            votes=self.votes,
            break_glass=self.break_glass,
        )

    @property
    def approvers(self) -> tuple[str, ...]:
        return self.state.approvers

    @property
    def scope(self) -> Scope:
        """The environments and regions whose approvers may vote on it."""
        return Scope.of(environments=self.approver_scope.get("environments") or (),
                        regions=self.approver_scope.get("regions") or ())

    @property
    def approvals_missing(self) -> int:
        return self.state.approvals_missing

    @property
    def short_id(self) -> str:
        return self.id[:8]
