"""The approval state machine: what may happen to a change request next, as a pure function.

Every change a face asks for becomes a request. Its life::

    requested ──approve × N distinct eligible people──► approved ──start──► running ──► succeeded
        │   ╲──reject (any eligible person, with a reason)──► rejected                 ╲─► failed
        │    ╲─expire (TTL passed, nobody decided)──► expired                           ╲─► interrupted
        ╰─cancel (the requester)──► cancelled
    approved ──drift (the plan no longer matches what was approved)──► requested (votes start over)
    approved ──expire──► expired (an approval is for the fleet as it was; a stale one cannot run)

:func:`step` takes the request as it is and one event and returns the request as it becomes, or a
:class:`Refused` saying why not. It does no I/O and reads no clock: the caller (the pipeline) loads the
request, checks the voter's role *at the moment of the vote* and passes it in the event, applies
``step``, and writes the result with a compare-and-set on the request's version, so that concurrent
votes from any number of processes give exactly one transition. Keeping the rules here, free of the
store and of the faces, is what lets them be tested exhaustively and read in one place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class RequestStatus(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def open(self) -> bool:
        """Still waiting for a decision or a run."""
        return self in (RequestStatus.REQUESTED, RequestStatus.APPROVED)

    @property
    def terminal(self) -> bool:
        return self not in (RequestStatus.REQUESTED, RequestStatus.APPROVED, RequestStatus.RUNNING)


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True)
class Vote:
    """One person's decision on one version of a plan (identified by its hash)."""

    person: str
    decision: Decision
    role: str
    at: datetime
    plan_hash: str
    reason: str | None = None
    face: str = "cli"


@dataclass(frozen=True)
class RequestState:
    """What the state machine needs to know of a request."""

    status: RequestStatus
    requester: str
    approvals_needed: int
    plan_hash: str
    expires_at: datetime
    votes: tuple[Vote, ...] = ()
    break_glass: bool = False

    @property
    def approvers(self) -> tuple[str, ...]:
        """Distinct people who approved the current plan, in the order they voted."""
        seen: list[str] = []
        for vote in self.votes:
            if (
                vote.plan_hash == self.plan_hash
                and vote.decision is Decision.APPROVE
                and vote.person not in seen
            ):
                seen.append(vote.person)
        return tuple(seen)

    @property
    def approvals_missing(self) -> int:
        return max(0, self.approvals_needed - len(self.approvers))


# -- events ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Approve:
    """``person`` approves; ``eligible``: whether their role, checked now, lets them approve this request."""

    person: str
    role: str
    eligible: bool
    at: datetime
    face: str = "cli"


@dataclass(frozen=True)
class Reject:
    person: str
    role: str
    eligible: bool
    reason: str
    at: datetime
    face: str = "cli"


@dataclass(frozen=True)
class Cancel:
    """``person`` cancels; ``allowed``: what the gate decided now (``None``: only the requester may)."""

    person: str
    at: datetime
    allowed: bool | None = None


@dataclass(frozen=True)
class Expire:
    """The clock says ``at``: a request past its expiry that nobody decided expires."""

    at: datetime


@dataclass(frozen=True)
class Drift:
    """At execution the plan's hash was recomputed and differs: the approvals were for another plan."""

    new_plan_hash: str
    at: datetime


@dataclass(frozen=True)
class Start:
    at: datetime


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    #: The run was cancelled (by a person, or by its console shutting down): not a failure of the change.
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Finish:
    outcome: Outcome
    at: datetime


Event = Approve | Reject | Cancel | Expire | Drift | Start | Finish


@dataclass(frozen=True)
class Refused:
    """The event does not apply; ``reason`` says why, in words for the person who tried."""

    reason: str


def step(state: RequestState, event: Event) -> RequestState | Refused:
    """The request after ``event``, or why ``event`` is refused. Pure: no I/O, no clock."""
    match event:
        case Approve() | Reject():
            return _vote(state, event)
        case Cancel(person=person, allowed=allowed):
            if allowed is None and person != state.requester:
                return Refused(f"only the requester ({state.requester}) can cancel this request")
            if allowed is False:
                return Refused(f"only the requester ({state.requester}) or an admin can cancel this request")
            if not state.status.open:
                return Refused(f"the request is already {state.status.value}")
            return dataclasses.replace(state, status=RequestStatus.CANCELLED)
        case Expire(at=at):
            if not state.status.open:
                return Refused(f"the request is {state.status.value}: it no longer expires")
            if at < state.expires_at:
                return Refused(f"the request is valid until {state.expires_at:%Y-%m-%d %H:%M:%S %Z}")
            return dataclasses.replace(state, status=RequestStatus.EXPIRED)
        case Drift(new_plan_hash=new_hash):
            if state.status is not RequestStatus.APPROVED:
                return Refused(f"only an approved request can drift (this one is {state.status.value})")
            if new_hash == state.plan_hash:
                return Refused("the plan has not changed")
            return dataclasses.replace(state, status=RequestStatus.REQUESTED, plan_hash=new_hash)
        case Start(at=at):
            if state.status is not RequestStatus.APPROVED:
                return Refused(_not_runnable(state))
            if at >= state.expires_at:
                return Refused(
                    f"the approval expired at {state.expires_at:%Y-%m-%d %H:%M:%S %Z}: file the request again"
                )
            return dataclasses.replace(state, status=RequestStatus.RUNNING)
        case Finish(outcome=outcome):
            if state.status is not RequestStatus.RUNNING:
                return Refused(f"the request is {state.status.value}, not running")
            return dataclasses.replace(state, status=RequestStatus(outcome.value))
    raise TypeError(f"not an approval event: {event!r}")  # pragma: no cover - exhaustive match


def _not_runnable(state: RequestState) -> str:
    if state.status is RequestStatus.REQUESTED:
        return f"the request still needs {state.approvals_missing} approval(s)"
    if state.status is RequestStatus.RUNNING:
        return "the request is already running"
    return f"the request is {state.status.value}"


def _vote(state: RequestState, event: Approve | Reject) -> RequestState | Refused:
    verb = "approve" if isinstance(event, Approve) else "reject"
    if state.status is not RequestStatus.REQUESTED:
        return Refused(f"the request is {state.status.value}: there is nothing to {verb}")
    if event.at >= state.expires_at:
        return Refused(f"the request expired at {state.expires_at:%Y-%m-%d %H:%M:%S %Z}")
    if event.person == state.requester and isinstance(event, Approve):
        return Refused("you filed this request: someone else must approve it")
    if not event.eligible:
        return Refused(f"your role ({event.role}) does not let you {verb} this request")
    if isinstance(event, Reject):
        if not event.reason.strip():
            return Refused("a rejection needs a reason")
        vote = Vote(
            event.person,
            Decision.REJECT,
            event.role,
            event.at,
            state.plan_hash,
            event.reason.strip(),
            event.face,
        )
        return dataclasses.replace(state, status=RequestStatus.REJECTED, votes=(*state.votes, vote))
    if event.person in state.approvers:
        return Refused("you already approved this request: a person counts once")
    vote = Vote(event.person, Decision.APPROVE, event.role, event.at, state.plan_hash, None, event.face)
    after = dataclasses.replace(state, votes=(*state.votes, vote))
    if after.approvals_missing == 0:
        after = dataclasses.replace(after, status=RequestStatus.APPROVED)
    return after


__all__ = [
    "Approve",
    "Cancel",
    "Decision",
    "Drift",
    "Event",
    "Expire",
    "Finish",
    "Outcome",
    "Refused",
    "Reject",
    "RequestState",
    "RequestStatus",
    "Start",
    "Vote",
    "step",
]
