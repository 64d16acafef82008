"""The one authorisation gate: who may do what to the fleet, decided in one place, at the moment it happens.

Why it exists: filing, voting, running, cancelling, breaking glass, overriding a schedule and managing
tokens used to be checked wherever each happened (the pipeline, the scheduler, a face), each in its own
words. Every such check is now a call of :func:`authorize` with an :class:`Act`, the
:class:`~opsconsole.core.change.rbac.Identity` asking and the :class:`~opsconsole.core.change.rbac.Scope`
the act touches, evaluated *when the change is made* (a role revoked between filing and running is
revoked for the run). A refusal is a :class:`Forbidden` (title "not allowed"; the HTTP server answers 403)
whose message says who lacks which role in which scope.

Use::

    authorize(Act.FILE, who, scope=plan_scope(plan, fleet))
    authorize(Act.VOTE, who, scope=request.scope, requester=request.requester)
    authorize(Act.RUN, who, scope=scope, break_glass=request.break_glass)
    authorize(Act.CANCEL_JOB, who, scope=job_scope, requester=job_requester)
    authorize(Act.MANAGE_TOKENS, who, scope=fleet_scope(fleet))
    reason = refusal(Act.VOTE, who, scope=scope)      # the same rules, as a reason or None

The rules (roles are ordered viewer < operator < approver < admin; "in scope" means over all of it):

=============== ===================================================================================
file            operator in scope
vote            approver in scope, and never the request's requester
run             operator in scope; a break-glass request only by an admin in scope (checked now)
cancel_request  the requester, or an admin in scope
cancel_job      an operator in the job's scope, or the job's requester
break_glass     admin in scope
override        operator in scope (a schedule override of an environment / region)
manage_tokens   admin in scope (pass :func:`fleet_scope`: every environment and region)
freeze          admin in scope (the emergency change freeze; pass :func:`fleet_scope`)
=============== ===================================================================================

Pure: no I/O, no clock. Auditing a refusal is the caller's business (the pipeline records it).
"""

from __future__ import annotations

from enum import StrEnum

from opsconsole.core.change.rbac import PERMISSION_ROLE, Identity, Permission, Role, Scope
from opsconsole.core.change.requests import RequestRefused
from opsconsole.core.fleet.model import Environment, Fleet

__all__ = ["Act", "Forbidden", "authorize", "fleet_scope", "refusal"]


class Act(StrEnum):
    """Something a person may be allowed to do."""

    FILE = "file"
    VOTE = "vote"
    RUN = "run"
    CANCEL_REQUEST = "cancel_request"
    CANCEL_JOB = "cancel_job"
    BREAK_GLASS = "break_glass"
    OVERRIDE = "override"
    MANAGE_TOKENS = "manage_tokens"
    FREEZE = "freeze"


class Forbidden(RequestRefused):
    """The gate refused: ``who`` lacks the role the act needs in its scope (the message says which).

    A :class:`~opsconsole.core.change.requests.RequestRefused` (hence a
    :class:`~opsconsole.core.errors.UsageError`), so callers that caught refusals keep catching these.
    """

    title = "not allowed"


#: What each act is called in a refusal ("filing a change needs an operator role there").
_DOING = {
    Act.FILE: "filing a change",
    Act.VOTE: "voting on this request",
    Act.RUN: "starting a run",
    Act.CANCEL_REQUEST: "cancelling this request",
    Act.CANCEL_JOB: "cancelling this job",
    Act.BREAK_GLASS: "breaking glass",
    Act.OVERRIDE: "a schedule override",
    Act.MANAGE_TOKENS: "managing API tokens",
    Act.FREEZE: "switching the emergency change freeze",
}

#: The permission each act needs (on top of the requester rules below).
_NEEDS = {
    Act.FILE: Permission.REQUEST,
    Act.VOTE: Permission.APPROVE,
    Act.RUN: Permission.REQUEST,
    Act.CANCEL_REQUEST: Permission.BREAK_GLASS,  # unless the requester
    Act.CANCEL_JOB: Permission.REQUEST,  # unless the requester
    Act.BREAK_GLASS: Permission.BREAK_GLASS,
    Act.OVERRIDE: Permission.REQUEST,
    Act.MANAGE_TOKENS: Permission.BREAK_GLASS,
    Act.FREEZE: Permission.BREAK_GLASS,
}


def fleet_scope(fleet: Fleet) -> Scope:
    """Every environment and every region of ``fleet``: the scope of fleet-wide acts (managing tokens)."""
    return Scope.of(environments=[e.value for e in Environment], regions=list(fleet.regions))


def _lacks(who: Identity, needed: Role, scope: Scope, doing: str) -> str:
    article = "an" if needed.value[0] in "aeiou" else "a"
    role = who.role_for(scope).value
    return (f"{who.person} is {'an' if role[0] in 'aeiou' else 'a'} {role} in {scope.describe()}: "
            f"{doing} needs {article} {needed.value} role there")


def refusal(
    act: Act | str,
    who: Identity,
    *,
    scope: Scope,
    requester: str | None = None,
    break_glass: bool = False,
) -> str | None:
    """Why ``who`` may not do ``act`` in ``scope`` now, or ``None`` when they may (see the module's table).

    Args:
        act: what they want to do.
        who: who asks (their grants as of now).
        scope: what the act touches (a request's scope, a job's, an environment's).
        requester: the request's (or job's) requester, for vote / cancel_request / cancel_job.
        break_glass: for ``run``: the request was filed breaking glass (only an admin may run it).
    """
    act = Act(act)
    if act is Act.VOTE and requester is not None and who.person == requester:
        return "you filed this request: someone else must approve it"
    if act in (Act.CANCEL_REQUEST, Act.CANCEL_JOB) and requester is not None and who.person == requester:
        return None
    permission = _NEEDS[act]
    if act is Act.RUN and break_glass:
        permission = Permission.BREAK_GLASS
    if who.may(permission, scope):
        return None
    needed = PERMISSION_ROLE[permission]
    doing = _DOING[act]
    if act is Act.RUN and break_glass:
        doing = "running a break-glass request"
    reason = _lacks(who, needed, scope, doing)
    if act is Act.CANCEL_REQUEST:
        reason += f" (or being its requester, {requester})" if requester else ""
    elif act is Act.CANCEL_JOB and requester:
        reason += f" (or being the job's requester, {requester})"
    if act is Act.BREAK_GLASS or (act is Act.RUN and break_glass):
        reason = "only an admin may break glass; " + reason
    return reason


def authorize(
    act: Act | str,
    who: Identity,
    *,
    scope: Scope,
    requester: str | None = None,
    break_glass: bool = False,
) -> None:
    """Return if ``who`` may do ``act`` in ``scope`` now; else raise :class:`Forbidden` saying why.

    Raises:
        Forbidden: who lacks which role in which scope (or is the requester voting on their own request).
    """
    reason = refusal(act, who, scope=scope, requester=requester, break_glass=break_glass)
    if reason is not None:
        raise Forbidden(reason)
