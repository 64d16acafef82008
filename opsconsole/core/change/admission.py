"""Whether a plan may be filed: the pipeline's refusal rules at filing, as one pure function.

Why it exists: :meth:`opsconsole.core.change.pipeline.Pipeline.submit` used to interleave reading the
store (leases, open requests), asking the gate and auditing refusals; the rules themselves were hard to
see and could only be tested through a database. Here they are in one place, with no I/O and no clock:
the pipeline gathers the facts, calls :func:`admit`, and audits / raises what it says.

Use::

    decision = admit(Filing(plan=plan, assessment=assessment, who=who, scope=scope,
                            other_approvers=[...], held=leases.conflicts(lease_targets(plan)),
                            claims=[Claim.of(r) for r in open_requests],
                            break_glass_reason=None))
    if not decision.admitted:
        audit(decision.audit_data); raise Forbidden(decision.reason) if decision.forbidden else ...

The rules, checked in this order (the first that applies refuses):

1. ``role``: ``who`` may not file in the plan's scope (a viewer) — a gate refusal (*forbidden*);
2. ``break_glass_reason``: glass broken without a reason;
3. ``break_glass_role``: glass broken by someone who is not an admin of the scope (*forbidden*);
4. ``freeze``: a change freeze is in force and the request is not low-risk, and glass is not broken;
5. ``held``: a run holds one of the plan's targets (a live lease);
6. ``claimed``: another open request (requested or approved) claims one of them;
7. ``no_approvers``: the request needs more approvals than there are people besides ``who`` who may
   give them (refused now rather than left pending for ever).

Breaking glass needs no approval; otherwise the assessment says how many.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from opsconsole.core.change.actions import ActionName, ActionPlan
from opsconsole.core.change.gate import Act, refusal
from opsconsole.core.change.locks import LeaseHolder, LeaseMode
from opsconsole.core.change.rbac import Identity, Scope
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.change.risk import Risk, RiskAssessment

__all__ = [
    "Admission",
    "Claim",
    "Filing",
    "Rule",
    "admit",
    "lease_modes",
    "lease_targets",
    "overlaps",
    "params_text",
]


class Rule(StrEnum):
    """Which rule decided (``admitted`` when none refused)."""

    ADMITTED = "admitted"
    ROLE = "role"
    BREAK_GLASS_REASON = "break_glass_reason"
    BREAK_GLASS_ROLE = "break_glass_role"
    FREEZE = "freeze"
    HELD = "held"
    CLAIMED = "claimed"
    NO_APPROVERS = "no_approvers"


@dataclass(frozen=True)
class Claim:
    """An open request's hold on targets (what a new request must not overlap)."""

    short_id: str
    action: str
    requester: str
    status: str
    targets: tuple[str, ...]

    @classmethod
    def of(cls, request: ChangeRequest) -> Claim:
        return cls(request.short_id, request.action, request.requester, request.status.value,
                   tuple(request.targets))

    def overlaps(self, mine: Mapping[str, LeaseMode]) -> list[str]:
        """The targets of ``mine`` this claim clashes with (see :func:`overlaps`)."""
        return overlaps(mine, lease_modes(self.action, self.targets))


@dataclass(frozen=True)
class Filing:
    """The facts the admission rules look at, gathered by the pipeline.

    ``other_approvers`` are the people besides ``who`` who may approve in the assessment's approver
    scope; ``held`` the live leases that conflict with the plan's targets; ``claims`` every open
    request; ``break_glass_reason`` is ``None`` unless glass is being broken.
    """

    plan: ActionPlan
    assessment: RiskAssessment
    who: Identity
    scope: Scope
    other_approvers: Sequence[str] = ()
    held: Sequence[LeaseHolder] = ()
    claims: Sequence[Claim] = ()
    break_glass_reason: str | None = None

    @property
    def break_glass(self) -> bool:
        return self.break_glass_reason is not None


@dataclass(frozen=True)
class Admission:
    """The decision: admitted (with the approvals it needs) or refused (with the reason and audit data)."""

    rule: Rule
    approvals_needed: int = 0
    break_glass: bool = False
    reason: str | None = None
    #: True when the gate refused (a :class:`~opsconsole.core.change.gate.Forbidden`, HTTP 403).
    forbidden: bool = False
    #: What a refusal records in the audit (``request_refused``); empty when admitted.
    audit_data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def admitted(self) -> bool:
        return self.rule is Rule.ADMITTED


def admit(filing: Filing) -> Admission:
    """Apply the filing rules (see the module's list) to ``filing``; no I/O."""
    refused = (
        _who_may_file(filing)
        or _freeze(filing)
        or _targets_free(filing)
        or _approvable(filing)
    )
    if refused is not None:
        rule, reason, forbidden = refused
        return Admission(
            rule,
            approvals_needed=_needed(filing),
            break_glass=filing.break_glass,
            reason=reason,
            forbidden=forbidden,
            audit_data={
                "action": filing.plan.action.value,
                "params": dict(filing.plan.params),
                "reason": reason,
                "principal": filing.who.principal,
            },
        )
    return Admission(Rule.ADMITTED, approvals_needed=_needed(filing), break_glass=filing.break_glass)


_Refusal = tuple[Rule, str, bool]


def _needed(filing: Filing) -> int:
    return 0 if filing.break_glass else filing.assessment.approvals_needed


def _who_may_file(filing: Filing) -> _Refusal | None:
    denied = refusal(Act.FILE, filing.who, scope=filing.scope)
    if denied is not None:
        return Rule.ROLE, denied, True
    if not filing.break_glass:
        return None
    if not (filing.break_glass_reason or "").strip():
        return Rule.BREAK_GLASS_REASON, "breaking glass needs a reason", False
    denied = refusal(Act.BREAK_GLASS, filing.who, scope=filing.scope)
    if denied is not None:
        return Rule.BREAK_GLASS_ROLE, denied, True
    return None


def _freeze(filing: Filing) -> _Refusal | None:
    assessment = filing.assessment
    if filing.break_glass or assessment.freeze is None or assessment.level is Risk.LOW:
        return None
    return (
        Rule.FREEZE,
        f"change freeze in force: {assessment.freeze}; a {assessment.level.value}-"
        "risk request needs an admin to break glass",
        False,
    )


def _targets_free(filing: Filing) -> _Refusal | None:
    if filing.held:
        holder = filing.held[0]
        return (
            Rule.HELD,
            f"{holder.target} is held by {holder.holder} ({holder.purpose}) since "
            f"{holder.acquired_at:%H:%M:%S %Z}",
            False,
        )
    mine = lease_targets(filing.plan)
    for other in filing.claims:
        clash = other.overlaps(mine)
        if clash:
            return (
                Rule.CLAIMED,
                f"{clash[0]} is claimed by open request {other.short_id} "
                f"({other.action} by {other.requester}, {other.status}); "
                "wait for it or have it cancelled",
                False,
            )
    return None


def _approvable(filing: Filing) -> _Refusal | None:
    needed = _needed(filing)
    eligible = [p for p in filing.other_approvers if p != filing.who.person]
    if not needed or len(eligible) >= needed:
        return None
    plan, assessment = filing.plan, filing.assessment
    what = f"{plan.action.value} {params_text(plan.params)}"
    return (
        Rule.NO_APPROVERS,
        f"{what} needs {needed} approval(s) from approvers of "
        f"{assessment.approver_scope.describe()}, "
        f"but only {len(eligible)} person(s) besides {filing.who.person} may approve"
        + (f" ({', '.join(eligible)})" if eligible else ""),
        False,
    )


def lease_targets(plan: ActionPlan) -> dict[str, LeaseMode]:
    """The plan's targets with the mode each is held in (see :func:`lease_modes`)."""
    return lease_modes(plan.action.value, plan.targets)


def lease_modes(action: str, targets: Sequence[str]) -> dict[str, LeaseMode]:
    """An action's targets with the mode each is held in.

    A scale holds its region and clusters shared (two scales of different workloads in one region run
    side by side) and its workloads exclusive; a failover or failback holds its regions exclusive (no
    scale runs in a region whose traffic is moving); an environment stop / start holds its clusters
    exclusive (no scale of a staging workload while staging is being stopped).
    """
    scale = action == ActionName.SCALE.value
    # A capacity change (nodes, read replicas, Redis) shares its region like a scale: it holds what it
    # changes (the cluster, the database, the cache) exclusive.
    shares_region = action in {ActionName.SCALE.value, ActionName.NODES.value, ActionName.REPLICAS.value,
                               ActionName.CACHE.value}
    modes: dict[str, LeaseMode] = {}
    for target in targets:
        modes[target] = (LeaseMode.SHARED if shares_region and target.startswith("region/")
                         else LeaseMode.EXCLUSIVE)
        if scale and target.startswith("workload/"):
            modes.setdefault(f"cluster/{target.split('/')[1]}", LeaseMode.SHARED)
    return modes


def overlaps(mine: Mapping[str, LeaseMode], theirs: Mapping[str, LeaseMode]) -> list[str]:
    """The targets both hold where at least one holds them exclusive, sorted."""
    return sorted(t for t in mine.keys() & theirs.keys() if LeaseMode.EXCLUSIVE in (mine[t], theirs[t]))


def params_text(params: Mapping[str, Any]) -> str:
    """Parameters as ``key=value`` words (``None`` values left out)."""
    return " ".join(f"{k}={v}" for k, v in params.items() if v is not None)
