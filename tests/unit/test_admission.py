"""The filing rules of :func:`opsconsole.core.change.admission.admit`, one refusal at a time, no store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from opsconsole.core.change.actions import ActionName, ActionPlan
from opsconsole.core.change.admission import Admission, Claim, Filing, Rule, admit, lease_modes, overlaps
from opsconsole.core.change.locks import LeaseHolder, LeaseMode
from opsconsole.core.change.rbac import Grant, Identity, Role, Scope
from opsconsole.core.change.risk import Risk, RiskAssessment

PROD_EU = Scope.of(environments=["prod"], regions=["eu-west-1"])
TARGETS = ("region/eu-west-1", "workload/prod-eu-1/checkout")


def person(name: str, role: Role | None) -> Identity:
    grants = (Grant(role),) if role is not None else ()
    return Identity(person=name, principal=f"person:{name}", grants=grants, known=role is not None)


ALICE = person("alice", Role.OPERATOR)
ERIN = person("erin", Role.ADMIN)
VICTOR = person("victor", None)


def plan(targets: tuple[str, ...] = TARGETS) -> ActionPlan:
    return ActionPlan(
        action=ActionName.SCALE,
        params={"cluster": "prod-eu-1", "service": "checkout", "replicas": 2, "note": None},
        playbook="scale.yml",
        extravars={},
        targets=targets,
        summary=("scale checkout to 2",),
        idle_timeout_s=60.0,
        job_timeout_s=600.0,
    )


def assessment(level: Risk = Risk.MEDIUM, *, needed: int = 1, freeze: str | None = None) -> RiskAssessment:
    return RiskAssessment(
        level=level,
        approvals_needed=needed,
        approver_scope=PROD_EU,
        reasons=("because",),
        rule="test-rule",
        freeze=freeze,
        ttl_s=3600.0,
    )


def filing(**overrides: Any) -> Filing:
    facts: dict[str, Any] = {
        "plan": plan(),
        "assessment": assessment(),
        "who": ALICE,
        "scope": PROD_EU,
        "other_approvers": ["bob", "carol"],
    }
    facts.update(overrides)
    return Filing(**facts)


def holder(target: str) -> LeaseHolder:
    at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    return LeaseHolder(target=target, mode=LeaseMode.EXCLUSIVE, holder="bob",
                       purpose="failover from=eu-west-1", request_id="r1", host="h", pid=1,
                       acquired_at=at, expires_at=at)


def refused(decision: Admission, rule: Rule, *, forbidden: bool = False, who: Identity = ALICE) -> str:
    """Check ``decision`` refuses by ``rule`` with the audit data the pipeline records; return the reason."""
    assert not decision.admitted
    assert decision.rule is rule
    assert decision.forbidden is forbidden
    assert decision.reason is not None
    assert decision.audit_data == {
        "action": "scale",
        "params": dict(plan().params),
        "reason": decision.reason,
        "principal": who.principal,
    }
    return decision.reason


def test_an_operator_with_approvers_available_is_admitted_needing_the_assessed_approvals() -> None:
    decision = admit(filing())
    assert decision.admitted and decision.rule is Rule.ADMITTED
    assert decision.approvals_needed == 1 and not decision.break_glass
    assert decision.reason is None and decision.audit_data == {}


def test_a_viewer_is_refused_by_the_gate() -> None:
    reason = refused(admit(filing(who=VICTOR)), Rule.ROLE, forbidden=True, who=VICTOR)
    assert "victor is a viewer" in reason and "filing a change needs an operator role" in reason


def test_refused_when_nobody_else_could_approve() -> None:
    reason = refused(admit(filing(other_approvers=[])), Rule.NO_APPROVERS)
    assert "needs 1 approval(s)" in reason and "only 0 person(s) besides alice may approve" in reason
    assert "scale cluster=prod-eu-1 service=checkout replicas=2" in reason  # None values left out


def test_the_requester_never_counts_as_their_own_approver() -> None:
    decision = admit(filing(assessment=assessment(needed=2), other_approvers=["alice", "bob"]))
    assert "only 1 person(s) besides alice may approve (bob)" in refused(decision, Rule.NO_APPROVERS)


def test_a_low_risk_request_needing_no_approval_is_admitted_without_approvers() -> None:
    decision = admit(filing(assessment=assessment(Risk.LOW, needed=0), other_approvers=[]))
    assert decision.admitted and decision.approvals_needed == 0


def test_refused_when_a_run_holds_a_target() -> None:
    reason = refused(admit(filing(held=[holder("workload/prod-eu-1/checkout")])), Rule.HELD)
    assert reason.startswith(
        "workload/prod-eu-1/checkout is held by bob (failover from=eu-west-1) since 09:30:00"
    )


def test_refused_when_an_open_request_claims_a_target() -> None:
    claim = Claim("abcd1234", "failover", "carol", "requested", ("region/eu-west-1",))
    reason = refused(admit(filing(claims=[claim])), Rule.CLAIMED)
    assert reason == ("region/eu-west-1 is claimed by open request abcd1234 (failover by carol, requested); "
                      "wait for it or have it cancelled")


def test_two_scales_of_different_workloads_in_one_region_do_not_clash() -> None:
    other = Claim("abcd1234", "scale", "carol", "approved", ("region/eu-west-1", "workload/prod-eu-1/cart"))
    assert admit(filing(claims=[other])).admitted
    assert overlaps(lease_modes("scale", TARGETS), lease_modes("scale", other.targets)) == []


def test_a_freeze_refuses_a_medium_risk_request_without_break_glass() -> None:
    reason = refused(admit(filing(assessment=assessment(freeze="black-friday: no changes"))), Rule.FREEZE)
    assert reason.startswith("change freeze in force: black-friday: no changes; a medium-risk request")


def test_a_freeze_lets_a_low_risk_request_through() -> None:
    assert admit(filing(assessment=assessment(Risk.LOW, freeze="black-friday"))).admitted


def test_break_glass_by_an_admin_passes_the_freeze_and_needs_no_approval() -> None:
    decision = admit(filing(who=ERIN, assessment=assessment(Risk.HIGH, needed=2, freeze="black-friday"),
                            other_approvers=[], break_glass_reason="checkout is down"))
    assert decision.admitted and decision.break_glass and decision.approvals_needed == 0


def test_break_glass_by_a_non_admin_is_refused_by_the_gate() -> None:
    reason = refused(admit(filing(break_glass_reason="urgent")), Rule.BREAK_GLASS_ROLE, forbidden=True)
    assert reason.startswith("only an admin may break glass; alice is an operator")


def test_break_glass_needs_a_reason() -> None:
    reason = refused(admit(filing(who=ERIN, break_glass_reason="  ")), Rule.BREAK_GLASS_REASON, who=ERIN)
    assert reason == "breaking glass needs a reason"


def test_the_role_is_checked_before_anything_else() -> None:
    decision = admit(filing(who=VICTOR, held=[holder("region/eu-west-1")], other_approvers=[],
                            assessment=assessment(freeze="f")))
    assert decision.rule is Rule.ROLE
