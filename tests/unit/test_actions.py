"""The action catalogue refuses bad requests before anything runs, and previews good ones in words."""

from __future__ import annotations

import pytest

from opsconsole.core.change.actions import (
    CATALOGUE,
    ActionName,
    plan_environment,
    plan_failback,
    plan_failover,
    plan_scale,
)
from opsconsole.core.errors import UsageError
from opsconsole.core.fleet.engine import Snapshot
from opsconsole.core.fleet.model import Environment, Fleet, WorkloadState
from opsconsole.testing import healthy_records, replace_record, snapshot_of


@pytest.fixture
def healthy(seed_fleet: Fleet) -> Snapshot:
    return snapshot_of(healthy_records(seed_fleet))


def test_every_action_names_an_existing_playbook(seed_fleet: Fleet) -> None:
    playbooks = seed_fleet.source.parent / "playbooks"
    for spec in CATALOGUE.values():
        assert spec.idle_timeout_s < spec.job_timeout_s
        assert spec.playbook.endswith(".yml")
    assert {s.name for s in CATALOGUE.values()} == set(ActionName)
    assert playbooks.name == "playbooks"


def test_scale_replicas_preview_in_words(seed_fleet: Fleet, healthy: Snapshot) -> None:
    current = healthy.get("workload/eks-euw1-prod/checkout")
    assert current is not None
    plan = plan_scale(seed_fleet, healthy, service="checkout", region="eu-west-1", replicas=4,
                      cluster="eks-euw1-prod")
    assert plan.playbook == "scale.yml"
    assert plan.extravars == {"scale_target": "workload", "replicas": 4, "region": "eu-west-1",
                              "service": "checkout", "cluster": "eks-euw1-prod"}
    assert plan.summary == (
        f"eu-west-1 eks-euw1-prod checkout: replicas {current.desired} → 4 "  # type: ignore[union-attr]
        f"(capacity {current.desired / 60:.0%} → 7% of HPA max 60)",  # type: ignore[union-attr]
    )
    assert "workload/eks-euw1-prod/checkout" in plan.targets and plan.production


def test_scale_in_a_non_prod_environment_names_its_cluster(seed_fleet: Fleet, healthy: Snapshot) -> None:
    plan = plan_scale(seed_fleet, healthy, service="checkout", region="eu-west-1", replicas=3,
                      environment=Environment.STAGING)
    assert plan.extravars["cluster"] == "gke-euw1-staging" and not plan.production


def test_scale_across_a_region_covers_every_prod_cluster(seed_fleet: Fleet, healthy: Snapshot) -> None:
    plan = plan_scale(seed_fleet, healthy, service="search", region="eu-west-1", hpa_max=80)
    assert len(plan.summary) == len(seed_fleet.clusters_in("eu-west-1", Environment.PROD)) == 3
    assert all("HPA 2–100 → 2–80" in line for line in plan.summary)
    assert plan.extravars["scale_target"] == "hpa" and "cluster" not in plan.extravars
    assert (plan.extravars["hpa_min"], plan.extravars["hpa_max"]) == (2, 80)  # the bound not given is kept


def test_scale_hpa_bound_not_given_must_agree_across_clusters(seed_fleet: Fleet, healthy: Snapshot) -> None:
    differs = replace_record(healthy, "workload/gke-euw1-prod/search", hpa_min=5)
    with pytest.raises(UsageError, match="give --hpa-min too"):
        plan_scale(seed_fleet, differs, service="search", region="eu-west-1", hpa_max=80)
    unknown = plan_scale(seed_fleet, None, service="search", region="eu-west-1", hpa_max=80)
    assert unknown.extravars["hpa_min"] == 2


def test_a_scale_that_changes_nothing_is_refused_and_says_so(seed_fleet: Fleet, healthy: Snapshot) -> None:
    """Issue 16, defect 4: "scale to 11" on 11 replicas was filed as "prod scale-up (11 → 11)"."""
    current = healthy.get("workload/eks-euw1-prod/checkout")
    assert isinstance(current, WorkloadState)
    same = current.desired
    with pytest.raises(UsageError) as caught:
        plan_scale(seed_fleet, healthy, service="checkout", region="eu-west-1", replicas=same,
                   cluster="eks-euw1-prod")
    assert caught.value.message.startswith("no change") and f"{same} → {same}" in caught.value.message
    with pytest.raises(UsageError, match="no change"):
        plan_scale(seed_fleet, healthy, service="checkout", region="eu-west-1", hpa_min=current.hpa_min,
                   hpa_max=current.hpa_max, cluster="eks-euw1-prod")


def test_a_region_wide_scale_labels_the_clusters_it_leaves_as_they_are(
    seed_fleet: Fleet, healthy: Snapshot
) -> None:
    eks = healthy.get("workload/eks-euw1-prod/checkout")
    assert isinstance(eks, WorkloadState)
    mixed = replace_record(healthy, "workload/gke-euw1-prod/checkout", desired=eks.desired - 1)
    plan = plan_scale(seed_fleet, mixed, service="checkout", region="eu-west-1", replicas=eks.desired)
    lines = {line.split()[1]: line for line in plan.summary}
    assert f"no change ({eks.desired} → {eks.desired})" in lines["eks-euw1-prod"]
    assert f"{eks.desired - 1} → {eks.desired}" in lines["gke-euw1-prod"]
    assert set(lines) == {c.name for c in seed_fleet.clusters_in("eu-west-1", Environment.PROD)}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"service": "chekout", "region": "eu-west-1", "replicas": 4}, "did you mean checkout?"),
        ({"service": "checkout", "region": "eu-west-9", "replicas": 4}, "unknown region"),
        ({"service": "checkout", "region": "eu-west-1", "replicas": 400},
         "outside checkout's HPA bounds 3–60"),
        ({"service": "checkout", "region": "eu-west-1", "hpa_max": 150},
         "outside the fleet's HPA bounds 2–100"),
        ({"service": "checkout", "region": "eu-west-1", "hpa_min": 50, "hpa_max": 40}, "HPA min 50 > max 40"),
        ({"service": "checkout", "region": "eu-west-1"}, "nothing to change"),
        ({"service": "checkout", "region": "eu-west-1", "replicas": 4, "cluster": "eks-use1-prod"},
         "not a prod cluster of eu-west-1"),
        ({"service": "analytics", "region": "us-east-1", "replicas": 4, "environment": Environment.DEV},
         "does not run in dev"),
    ],
)
def test_scale_refuses_bad_parameters(
    seed_fleet: Fleet, healthy: Snapshot, kwargs: dict, message: str  # type: ignore[type-arg]
) -> None:
    with pytest.raises(UsageError) as caught:
        plan_scale(seed_fleet, healthy, **kwargs)
    assert message in caught.value.message


def test_failover_plan_promotes_the_replica_of_a_write_primary(seed_fleet: Fleet, healthy: Snapshot) -> None:
    plan = plan_failover(seed_fleet, healthy, from_region="eu-west-1", to_region="eu-central-1")
    assert plan.extravars == {"from_region": "eu-west-1", "to_region": "eu-central-1"}
    assert any("promote pg-eu-central-1" in line for line in plan.summary)
    assert "database/eu-central-1" in plan.targets
    secondary = plan_failover(seed_fleet, healthy, from_region="eu-central-1", to_region="eu-west-1")
    assert not any("promote" in line for line in secondary.summary)


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("eu-west-1", "eu-west-1", "cannot fail over to itself"),
        ("eu-west-1", "us-east-1", "crosses residency zones"),
        ("us-east-1", "eu-west-1", "EU-resident data must stay in the EU"),
        ("eu-west-1", "mars-1", "unknown region"),
    ],
)
def test_failover_refusals(
    seed_fleet: Fleet, healthy: Snapshot, source: str, target: str, message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        plan_failover(seed_fleet, healthy, from_region=source, to_region=target)
    assert message in caught.value.message


def test_failover_to_an_unhealthy_region_is_refused(seed_fleet: Fleet, healthy: Snapshot) -> None:
    down = replace_record(healthy, "traffic/us-west-2", health_check_ok=False)
    with pytest.raises(UsageError, match="health check is failing"):
        plan_failover(seed_fleet, down, from_region="us-east-1", to_region="us-west-2")


def test_failover_refused_when_the_replica_lags_past_the_rpo(seed_fleet: Fleet, healthy: Snapshot) -> None:
    lagging = replace_record(healthy, "database/eu-central-1", replica_lag_s=900.0)
    with pytest.raises(UsageError, match="900 s behind, over the 300 s RPO"):
        plan_failover(seed_fleet, lagging, from_region="eu-west-1", to_region="eu-central-1")


def test_failback(seed_fleet: Fleet, healthy: Snapshot) -> None:
    with pytest.raises(UsageError, match="nothing to fail back"):
        plan_failback(seed_fleet, healthy, region="eu-west-1")
    moved = replace_record(healthy, "dns/eu-west-1", weights={"eu-central-1": 100})
    plan = plan_failback(seed_fleet, moved, region="eu-west-1")
    assert plan.summary[0] == "DNS api.eu-west-1: eu-central-1 100 → eu-west-1 100"


def test_environment_plans(seed_fleet: Fleet, healthy: Snapshot) -> None:
    plan = plan_environment(seed_fleet, healthy, environment="staging", state="stopped")
    staging = {c.name for c in seed_fleet.clusters.values() if c.environment is Environment.STAGING}
    assert {t.split("/")[1] for t in plan.targets if t.startswith("cluster/")} == staging
    assert plan.action is ActionName.ENV_STOP and not plan.production
    one = plan_environment(seed_fleet, healthy, environment="dev", state="started", region="eu-west-1")
    assert one.extravars == {"env_name": "dev", "env_state": "started", "region": "eu-west-1"}
    for bad, message in ((("prod", "stopped"), "production cannot be stopped"),
                         (("qa", "stopped"), "expected staging or dev"),
                         (("dev", "paused"), "expected stop or start")):
        with pytest.raises(UsageError, match=message):
            plan_environment(seed_fleet, healthy, environment=bad[0], state=bad[1])
    with pytest.raises(UsageError, match="dev has no cluster in ap-south-1"):
        plan_environment(seed_fleet, healthy, environment="dev", state="stopped", region="ap-south-1")
