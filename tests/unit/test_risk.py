"""The risk policy: each default rule, escalation by live state, freezes, unknown load, a bad policy.yml."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from opsconsole.core.change.actions import (
    ActionPlan,
    plan_environment,
    plan_failback,
    plan_failover,
    plan_scale,
)
from opsconsole.core.change.rbac import Directory, Permission, Scope
from opsconsole.core.change.risk import Risk, RiskPolicy, assess, load_policy, plan_scope
from opsconsole.core.errors import InventoryError
from opsconsole.core.fleet.engine import Snapshot
from opsconsole.core.fleet.model import Environment, Fleet
from opsconsole.testing import DEFAULT_NOW, healthy_records, replace_record, snapshot_of

SEED = Path(__file__).resolve().parents[2] / "inventory"
CHECKOUT = "workload/eks-euw1-prod/checkout"


@pytest.fixture
def policy(seed_fleet: Fleet) -> RiskPolicy:
    return load_policy(SEED, seed_fleet)


@pytest.fixture
def healthy(seed_fleet: Fleet) -> Snapshot:
    return snapshot_of(healthy_records(seed_fleet))


def checkout_at(snapshot: Snapshot, replicas: int, cpu: float) -> Snapshot:
    """checkout in eks-euw1-prod running ``replicas`` pods at ``cpu`` utilisation."""
    return replace_record(snapshot, CHECKOUT, desired=replicas, ready=replicas, cpu_utilisation=cpu)


def scale(fleet: Fleet, snapshot: Snapshot | None, **kwargs: Any) -> ActionPlan:
    kwargs.setdefault("cluster", "eks-euw1-prod")
    return plan_scale(fleet, snapshot, service="checkout", region="eu-west-1", **kwargs)


# -- what a plan touches ---------------------------------------------------------------------------------


def test_plan_scope_names_the_environments_and_regions_touched(seed_fleet: Fleet, healthy: Snapshot) -> None:
    failover = plan_failover(seed_fleet, healthy, from_region="eu-west-1", to_region="eu-central-1")
    assert plan_scope(failover, seed_fleet) == Scope.of(environments=["prod"],
                                                        regions=["eu-west-1", "eu-central-1"])
    staging = plan_scale(seed_fleet, healthy, service="checkout", region="eu-west-1", replicas=3,
                         environment=Environment.STAGING)
    assert plan_scope(staging, seed_fleet) == Scope.of(environments=["staging"], regions=["eu-west-1"])
    stop = plan_environment(seed_fleet, healthy, environment="dev", state="stopped")
    assert plan_scope(stop, seed_fleet) == Scope.of(environments=["dev"], regions=["us-east-1", "eu-west-1"])
    # A failback also touches the region that serves the users today.
    drained = replace_record(healthy, "dns/eu-west-1", weights={"eu-central-1": 100})
    back = plan_failback(seed_fleet, drained, region="eu-west-1")
    assert plan_scope(back, seed_fleet).regions == {"eu-west-1", "eu-central-1"}


# -- the default rules -----------------------------------------------------------------------------------


def test_prod_failover_is_high_and_needs_two_approvers_of_both_regions(
    seed_fleet: Fleet, policy: RiskPolicy, healthy: Snapshot, inventory_copy: Path
) -> None:
    plan = plan_failover(seed_fleet, healthy, from_region="us-east-1", to_region="us-west-2")
    verdict = assess(policy, plan, seed_fleet, healthy, DEFAULT_NOW)
    assert (verdict.level, verdict.approvals_needed, verdict.rule) == (Risk.HIGH, 2, "prod-failover")
    assert verdict.approver_scope == Scope.of(environments=["prod"], regions=["us-east-1", "us-west-2"])
    assert verdict.freeze is None and verdict.ttl_s == 1800
    assert verdict.reasons[0] == "prod failover of us-east-1 to us-west-2 is high risk (rule prod-failover)"
    # Whose approvals count: an approver for EMEA only is not among them.
    (inventory_copy / "rbac.yml").write_text(
        "version: 1\npeople:\n"
        "  dana: {os_users: [dana], grants: [{role: approver, geographies: [emea]}]}\n"
        "  sam: {os_users: [sam], grants: [{role: approver}]}\n", encoding="utf-8")
    directory = Directory.load(inventory_copy, sandbox=False, fleet=seed_fleet)
    assert directory.eligible(Permission.APPROVE, verdict.approver_scope) == ["sam"]


def test_prod_failback_is_high_too(seed_fleet: Fleet, policy: RiskPolicy, healthy: Snapshot) -> None:
    drained = replace_record(healthy, "dns/eu-west-1", weights={"eu-central-1": 100})
    verdict = assess(policy, plan_failback(seed_fleet, drained, region="eu-west-1"), seed_fleet, drained,
                     DEFAULT_NOW)
    assert (verdict.level, verdict.approvals_needed) == (Risk.HIGH, 2)
    assert verdict.approver_scope.regions == {"eu-west-1", "eu-central-1"}


def test_prod_scale_down_by_45_percent_is_medium(
    seed_fleet: Fleet, policy: RiskPolicy, healthy: Snapshot
) -> None:
    snap = checkout_at(healthy, 20, cpu=0.3)  # the load needs ceil(20 x 0.3 / 0.7) = 9 replicas
    verdict = assess(policy, scale(seed_fleet, snap, replicas=11), seed_fleet, snap, DEFAULT_NOW)
    assert (verdict.level, verdict.approvals_needed) == (Risk.MEDIUM, 1)
    assert verdict.rule == "prod-scale-down-large"
    assert verdict.reasons == (
        "prod scale-down of checkout in eu-west-1 by 45 % (20 → 11 replicas) is over 30 %",)
    assert verdict.approver_scope == Scope.of(environments=["prod"], regions=["eu-west-1"])


def test_a_small_prod_scale_down_below_the_load_is_medium(
    seed_fleet: Fleet, policy: RiskPolicy, healthy: Snapshot
) -> None:
    snap = checkout_at(healthy, 20, cpu=0.8)  # the load needs ceil(20 x 0.8 / 0.7) = 23 replicas
    verdict = assess(policy, scale(seed_fleet, snap, replicas=18), seed_fleet, snap, DEFAULT_NOW)
    assert (verdict.level, verdict.approvals_needed, verdict.rule) == (
        Risk.MEDIUM, 1, "prod-scale-down-below-load")
    assert verdict.reasons[0].startswith("prod scale of checkout in eu-west-1 to 18 replicas is below the 23 "
                                         "replicas its current load needs (20 ready pods at 80 % CPU")
    # Lowering the HPA max under the load is the same risk, though no replica goes away yet.
    hpa = assess(policy, scale(seed_fleet, snap, hpa_max=20), seed_fleet, snap, DEFAULT_NOW)
    assert hpa.level is Risk.MEDIUM and "an HPA max of 20" in hpa.reasons[0]


def test_a_small_prod_scale_down_with_room_is_low(
    seed_fleet: Fleet, policy: RiskPolicy, healthy: Snapshot
) -> None:
    snap = checkout_at(healthy, 20, cpu=0.5)  # needs 15
    verdict = assess(policy, scale(seed_fleet, snap, replicas=18), seed_fleet, snap, DEFAULT_NOW)
    assert (verdict.level, verdict.approvals_needed, verdict.rule) == (Risk.LOW, 0, "small-scale-change")
    assert "20 → 18 replicas, its current load needs 15" in verdict.reasons[0]


def test_a_scale_up_within_bounds_is_low(seed_fleet: Fleet, policy: RiskPolicy, healthy: Snapshot) -> None:
    across_region = plan_scale(seed_fleet, healthy, service="checkout", region="eu-west-1", replicas=50)
    verdict = assess(policy, across_region, seed_fleet, healthy, DEFAULT_NOW)
    assert (verdict.level, verdict.approvals_needed, verdict.rule) == (Risk.LOW, 0, "scale-up")
    raise_max = assess(policy, scale(seed_fleet, healthy, hpa_max=60, hpa_min=10), seed_fleet, healthy,
                       DEFAULT_NOW)
    assert raise_max.rule == "scale-up"


def test_non_prod_scheduling_and_scaling_are_low(
    seed_fleet: Fleet, policy: RiskPolicy, healthy: Snapshot
) -> None:
    for state in ("stopped", "started"):
        plan = plan_environment(seed_fleet, healthy, environment="staging", state=state)
        verdict = assess(policy, plan, seed_fleet, healthy, DEFAULT_NOW)
        assert (verdict.level, verdict.approvals_needed, verdict.rule) == (Risk.LOW, 0, "non-prod-scheduling")
    cut = plan_scale(seed_fleet, healthy, service="checkout", region="eu-west-1", replicas=3,
                     environment=Environment.STAGING)
    assert assess(policy, cut, seed_fleet, healthy, DEFAULT_NOW).level is Risk.LOW


# -- unknown load ----------------------------------------------------------------------------------------


def test_a_prod_scale_down_without_a_snapshot_is_not_taken_as_safe(
    seed_fleet: Fleet, policy: RiskPolicy
) -> None:
    verdict = assess(policy, scale(seed_fleet, None, replicas=28), seed_fleet, None, DEFAULT_NOW)
    assert (verdict.level, verdict.approvals_needed) == (Risk.MEDIUM, 1)
    assert verdict.rule == "prod-scale-down-large"
    assert verdict.reasons[0] == ("current replicas of checkout in eu-west-1 unknown (no snapshot): "
                                  "treated as a scale-down of over 30 %")
    assert any(r.startswith("no snapshot: live state") for r in verdict.reasons)
    # Nor is what might be a scale-up: an unknown fact never matches a low rule.
    maybe_up = assess(policy, scale(seed_fleet, None, replicas=50), seed_fleet, None, DEFAULT_NOW)
    assert (maybe_up.level, maybe_up.rule) == (Risk.MEDIUM, "prod-scale-down-large")


def test_unknown_load_is_at_least_medium_even_when_the_rules_would_say_low(
    seed_fleet: Fleet, inventory_copy: Path, healthy: Snapshot
) -> None:
    data = yaml.safe_load((SEED / "policy.yml").read_text(encoding="utf-8"))
    data["rules"] = [{"name": "all-scales-low", "when": {"actions": ["scale"]}, "risk": "low"}]
    (inventory_copy / "policy.yml").write_text(yaml.safe_dump(data), encoding="utf-8")
    lenient = load_policy(inventory_copy, seed_fleet)
    # The nominal checkout runs 5 replicas (opsconsole.testing): 4 is a small prod scale-down.
    verdict = assess(lenient, scale(seed_fleet, None, replicas=4), seed_fleet, None, DEFAULT_NOW)
    assert (verdict.level, verdict.rule) == (Risk.MEDIUM, "all-scales-low")
    assert any("a prod scale-down is at least medium" in r for r in verdict.reasons)
    # A workload missing from a snapshot is unknown too.
    from opsconsole.testing import drop_record  # noqa: PLC0415

    plan = scale(seed_fleet, healthy, replicas=4)
    blind = drop_record(healthy, CHECKOUT)
    assert assess(lenient, plan, seed_fleet, blind, DEFAULT_NOW).level is Risk.MEDIUM
    assert assess(lenient, plan, seed_fleet, healthy, DEFAULT_NOW).level is Risk.LOW


def test_an_unknown_fact_does_not_match_a_low_rule(seed_fleet: Fleet, inventory_copy: Path) -> None:
    up_first = with_policy(inventory_copy, seed_fleet, rules=[
        {"name": "scale-up", "when": {"actions": ["scale"], "scale_up": True}, "risk": "low"},
        {"name": "anything-else", "risk": "medium"},
    ])
    verdict = assess(up_first, scale(seed_fleet, None, replicas=50), seed_fleet, None, DEFAULT_NOW)
    assert (verdict.level, verdict.rule) == (Risk.MEDIUM, "anything-else")


# -- escalation by live state ----------------------------------------------------------------------------


def test_a_region_burning_its_error_budget_raises_the_risk_one_level(
    seed_fleet: Fleet, policy: RiskPolicy, healthy: Snapshot
) -> None:
    budget = seed_fleet.targets.error_budget
    burning = replace_record(checkout_at(healthy, 20, cpu=0.3), "traffic/eu-west-1", error_rate=budget * 8,
                             error_rate_1h=budget * 3)
    verdict = assess(policy, scale(seed_fleet, burning, replicas=18), seed_fleet, burning, DEFAULT_NOW)
    assert (verdict.level, verdict.approvals_needed, verdict.rule) == (Risk.MEDIUM, 1, "small-scale-change")
    assert ("eu-west-1 is burning its error budget at 8.0x (5 m 8.0x, 1 h 3.0x; escalates from 6x)"
            in verdict.reasons)
    assert verdict.reasons[-1] == "live state in the regions touched raises the risk: low → medium"
    # Scaling up is what an SRE does while a region burns: the shipped policy never escalates it.
    up = assess(policy, scale(seed_fleet, burning, replicas=40), seed_fleet, burning, DEFAULT_NOW)
    assert (up.level, up.approvals_needed, up.rule) == (Risk.LOW, 0, "scale-up")
    # A region the request does not touch does not count.
    elsewhere = replace_record(healthy, "traffic/us-east-1", error_rate=budget * 8, error_rate_1h=budget * 8)
    assert assess(policy, scale(seed_fleet, elsewhere, replicas=40), seed_fleet, elsewhere,
                  DEFAULT_NOW).level is Risk.LOW


def test_p95_near_target_raises_medium_to_high_with_the_levels_approvals(
    seed_fleet: Fleet, policy: RiskPolicy, healthy: Snapshot
) -> None:
    snap = replace_record(checkout_at(healthy, 20, cpu=0.3), "traffic/eu-west-1", p95_ms=185.0)
    verdict = assess(policy, scale(seed_fleet, snap, replicas=11), seed_fleet, snap, DEFAULT_NOW)
    assert (verdict.level, verdict.approvals_needed, verdict.rule) == (Risk.HIGH, 2, "prod-scale-down-large")
    assert "eu-west-1 p95 is 185 ms, 92 % of the 200 ms target (escalates from 90 %)" in verdict.reasons
    under = replace_record(snap, "traffic/eu-west-1", p95_ms=170.0)
    cooler = assess(policy, scale(seed_fleet, under, replicas=11), seed_fleet, under, DEFAULT_NOW)
    assert cooler.level is Risk.MEDIUM


def test_escalation_caps_at_high_and_leaves_non_prod_alone(
    seed_fleet: Fleet, policy: RiskPolicy, healthy: Snapshot
) -> None:
    hot = replace_record(healthy, "traffic/eu-central-1", p95_ms=230.0)
    failover = plan_failover(seed_fleet, healthy, from_region="eu-west-1", to_region="eu-central-1")
    verdict = assess(policy, failover, seed_fleet, hot, DEFAULT_NOW)
    assert (verdict.level, verdict.approvals_needed) == (Risk.HIGH, 2)
    assert "live state would raise the risk, and it is already high" in verdict.reasons
    hot_euw1 = replace_record(healthy, "traffic/eu-west-1", p95_ms=230.0)
    stop = plan_environment(seed_fleet, healthy, environment="staging", state="stopped", region="eu-west-1")
    assert assess(policy, stop, seed_fleet, hot_euw1, DEFAULT_NOW).level is Risk.LOW


# -- change freezes --------------------------------------------------------------------------------------


FREEZE = {
    "name": "black-friday",
    "start": "2026-11-27T00:00:00+00:00",
    "end": "2026-11-30T23:59:00Z",
    "environments": ["prod"],
    "reason": "peak retail traffic",
}
IN_FREEZE = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def with_policy(inventory: Path, fleet: Fleet, **changes: Any) -> RiskPolicy:
    data = yaml.safe_load((SEED / "policy.yml").read_text(encoding="utf-8"))
    data.update(changes)
    (inventory / "policy.yml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_policy(inventory, fleet)


def test_a_freeze_in_force_refuses_medium_and_high_but_not_low(
    seed_fleet: Fleet, inventory_copy: Path, healthy: Snapshot
) -> None:
    frozen = with_policy(inventory_copy, seed_fleet, change_freezes=[FREEZE])
    failover = plan_failover(seed_fleet, healthy, from_region="us-east-1", to_region="us-west-2")
    verdict = assess(frozen, failover, seed_fleet, healthy, IN_FREEZE)
    assert verdict.freeze == "black-friday (2026-11-27 00:00 → 2026-11-30 23:59 UTC): peak retail traffic"
    assert verdict.refused and verdict.level is Risk.HIGH
    snap = checkout_at(healthy, 20, cpu=0.3)
    assert assess(frozen, scale(seed_fleet, snap, replicas=11), seed_fleet, snap, IN_FREEZE).refused
    scale_up = assess(frozen, scale(seed_fleet, healthy, replicas=40), seed_fleet, healthy, IN_FREEZE)
    assert scale_up.freeze is None and scale_up.level is Risk.LOW
    assert any("black-friday" in r and "may still run" in r for r in scale_up.reasons)
    # Before and after the window, and outside its environments, nothing is refused.
    assert assess(frozen, failover, seed_fleet, healthy, DEFAULT_NOW).freeze is None
    assert assess(frozen, failover, seed_fleet, healthy, datetime(2026, 12, 1, tzinfo=UTC)).freeze is None
    staging = plan_scale(seed_fleet, healthy, service="checkout", region="eu-west-1", replicas=3,
                         environment=Environment.STAGING, cluster="gke-euw1-staging")
    assert assess(frozen, staging, seed_fleet, healthy, IN_FREEZE).freeze is None


def test_a_regional_freeze_only_refuses_requests_touching_its_regions(
    seed_fleet: Fleet, inventory_copy: Path, healthy: Snapshot
) -> None:
    emea = {k: v for k, v in FREEZE.items() if k != "environments"} | {"geographies": ["emea"]}
    frozen = with_policy(inventory_copy, seed_fleet, change_freezes=[emea])
    us = plan_failover(seed_fleet, healthy, from_region="us-east-1", to_region="us-west-2")
    eu = plan_failover(seed_fleet, healthy, from_region="eu-west-1", to_region="eu-central-1")
    assert assess(frozen, us, seed_fleet, healthy, IN_FREEZE).freeze is None
    assert assess(frozen, eu, seed_fleet, healthy, IN_FREEZE).freeze is not None


def test_the_seed_policy_does_not_freeze_the_sandbox(seed_fleet: Fleet, policy: RiskPolicy) -> None:
    assert policy.freezes == ()
    assert [r.name for r in policy.rules][:3] == ["prod-failover", "prod-database-role", "prod-capacity"]
    assert dict(policy.approvals) == {Risk.LOW: 0, Risk.MEDIUM: 1, Risk.HIGH: 2}


def test_a_rule_may_set_its_own_ttl(seed_fleet: Fleet, inventory_copy: Path, healthy: Snapshot) -> None:
    data = yaml.safe_load((SEED / "policy.yml").read_text(encoding="utf-8"))
    data["rules"][0]["ttl_s"] = 600
    custom = with_policy(inventory_copy, seed_fleet, rules=data["rules"])
    failover = plan_failover(seed_fleet, healthy, from_region="us-east-1", to_region="us-west-2")
    assert assess(custom, failover, seed_fleet, healthy, DEFAULT_NOW).ttl_s == 600


def test_now_must_carry_a_zone(seed_fleet: Fleet, policy: RiskPolicy, healthy: Snapshot) -> None:
    with pytest.raises(ValueError, match="naive"):
        assess(policy, scale(seed_fleet, healthy, replicas=40), seed_fleet, healthy, datetime(2026, 1, 1))


# -- a bad policy.yml ------------------------------------------------------------------------------------


def rule(**overrides: Any) -> dict[str, Any]:
    return {"name": "r", "when": {"actions": ["scale"], "environments": ["prod"]}, "risk": "medium",
            **overrides}


@pytest.mark.parametrize(
    ("changes", "key_path", "expected"),
    [
        ({"rules": [rule(risk="critical")]}, "rules[0].risk", "low, medium, high"),
        ({"rules": [rule(when={"actions": ["reboot"]})]}, "rules[0].when.actions[0]", "scale, failover"),
        ({"rules": [rule(when={"environments": ["qa"]})]}, "rules[0].when.environments[0]", "prod, staging"),
        ({"rules": [rule(when={"actions": ["failover"], "below_load": True})]}, "rules[0].when",
         "actions: [scale]"),
        ({"rules": [rule(when={"actions": ["scale"], "scale_down_over_pct": 130})]},
         "rules[0].when.scale_down_over_pct", "a number from 0.0 to 100.0"),
        ({"rules": [rule(approvers="friends")]}, "rules[0].approvers", "regions_involved, environment"),
        ({"rules": [rule(approvals_needed=1)]}, "rules[0].approvals_needed", "one of the keys"),
        ({"rules": [rule(), rule()]}, "rules[1].name", "a rule name used once"),
        ({"levels": {"low": {"approvals": 0}, "medium": {"approvals": 2}, "high": {"approvals": 1}}},
         "levels.high.approvals", "at least the 2 approvals of medium"),
        ({"escalation": {"p95_of_target": "high"}}, "escalation.p95_of_target", "a number"),
        ({"change_freezes": [{**FREEZE, "start": "2026-11-27T00:00:00"}]}, "change_freezes[0].start",
         "with a zone"),
        ({"change_freezes": [{**FREEZE, "end": "2026-11-26T00:00:00Z"}]}, "change_freezes[0].end",
         "a time after start"),
        ({"change_freezes": [{**FREEZE, "regions": ["mars-1"]}]}, "change_freezes[0].regions[0]",
         "a region of the fleet"),
        ({"change_freezes": [{k: v for k, v in FREEZE.items() if k != "reason"}]}, "change_freezes[0].reason",
         "this key to be present"),
    ],
)
def test_a_bad_policy_names_file_key_and_expectation(
    seed_fleet: Fleet, inventory_copy: Path, changes: dict[str, Any], key_path: str, expected: str
) -> None:
    with pytest.raises(InventoryError) as caught:
        with_policy(inventory_copy, seed_fleet, **changes)
    assert caught.value.file.endswith("policy.yml")
    assert caught.value.key_path == key_path
    assert expected in caught.value.expected


def test_a_duplicate_key_in_the_policy_is_refused_with_its_line(
    seed_fleet: Fleet, inventory_copy: Path
) -> None:
    text = (SEED / "policy.yml").read_text(encoding="utf-8")
    (inventory_copy / "policy.yml").write_text(text.replace("default_ttl_s: 1800", "default_ttl_s: 1800\n"
                                                            "default_ttl_s: 600"), encoding="utf-8")
    with pytest.raises(InventoryError, match=r"policy\.yml:\d+: default_ttl_s: expected each key once"):
        load_policy(inventory_copy, seed_fleet)


def test_no_policy_file_is_an_error_not_a_silent_default(seed_fleet: Fleet, inventory_copy: Path) -> None:
    (inventory_copy / "policy.yml").unlink()
    with pytest.raises(InventoryError, match="the file to exist"):
        load_policy(inventory_copy, seed_fleet)


def test_a_region_wide_scale_names_every_cluster_it_changes(
    seed_fleet: Fleet, policy: RiskPolicy, healthy: Snapshot
) -> None:
    # Issue 16, defect 4: "scale checkout in eu-west-1 to 12" sets every prod cluster of the region; the
    # risk line named only the cluster cut most.
    snap = checkout_at(healthy, 40, cpu=0.3)  # eks-euw1-prod cut by 70 %: the large scale-down rule
    plan = plan_scale(seed_fleet, snap, service="checkout", region="eu-west-1", replicas=12)
    clusters = sorted({t.split("/")[1] for t in plan.targets if t.startswith("workload/")})
    assert len(clusters) > 1
    verdict = assess(policy, plan, seed_fleet, snap, DEFAULT_NOW)
    assert verdict.rule == "prod-scale-down-large"
    first = verdict.reasons[0]
    assert f"the plan changes {len(clusters)} clusters" in first
    for name in clusters:
        assert name in first
    assert "eks-euw1-prod (40 → 12)" in first
    # A region-wide scale-up names them all too (it used to say "in <one> and 2 more").
    up = assess(policy, plan_scale(seed_fleet, healthy, service="checkout", region="eu-west-1",
                                   replicas=50), seed_fleet, healthy, DEFAULT_NOW)
    assert up.rule == "scale-up"
    assert "more" not in up.reasons[0]
    for name in clusters:
        assert f"{name} (" in up.reasons[0]
    # One cluster: no list.
    one = assess(policy, scale(seed_fleet, snap, replicas=12), seed_fleet, snap, DEFAULT_NOW)
    assert "the plan changes" not in one.reasons[0]
