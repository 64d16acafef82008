"""The action catalogue refuses bad requests before anything runs, and previews good ones in words."""

from __future__ import annotations

import pytest

from opsconsole.core.change.actions import (
    CATALOGUE,
    ActionName,
    pinned_observations,
    plan_cache,
    plan_database,
    plan_environment,
    plan_failback,
    plan_failover,
    plan_nodes,
    plan_replicas,
    plan_scale,
    replan,
)
from opsconsole.core.errors import UsageError
from opsconsole.core.fleet.engine import Snapshot
from opsconsole.core.fleet.model import ClusterState, DbRole, Environment, Fleet, WorkloadState
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


# -- below the workloads: nodes, read replicas, database role, Redis (issue 14) --------------------------


def _cluster_state(snap: Snapshot, name: str) -> ClusterState:
    record = snap.get(f"cluster/{name}")
    assert isinstance(record, ClusterState)
    return record


def test_nodes_max_raise_plan(seed_fleet: Fleet, healthy: Snapshot) -> None:
    now = _cluster_state(healthy, "gke-usw2-prod")
    plan = plan_nodes(seed_fleet, healthy, cluster="gke-usw2-prod", nodes_max=now.nodes_max + 5)
    assert plan.action is ActionName.NODES and plan.playbook == "scale.yml"
    assert plan.extravars == {"scale_target": "nodes", "region": "us-west-2", "cluster": "gke-usw2-prod",
                              "nodes_min": now.nodes_min, "nodes_max": now.nodes_max + 5}
    assert plan.targets == ("region/us-west-2", "cluster/gke-usw2-prod")
    assert plan.params == {"cluster": "gke-usw2-prod", "nodes_max": now.nodes_max + 5}
    lo, hi = now.nodes_min, now.nodes_max
    assert f"nodes min–max {lo}–{hi} → {lo}–{hi + 5}" in plan.summary[0]
    assert plan.production
    # The node count moves with the autoscaler: not pinned for an approval; the bounds are.
    assert pinned_observations(plan) == {"cluster/gke-usw2-prod": {"min": lo, "max": hi}}


def test_nodes_desired_goes_in_the_extravars_and_the_summary(seed_fleet: Fleet, healthy: Snapshot) -> None:
    now = _cluster_state(healthy, "aks-usw2-prod")
    plan = plan_nodes(seed_fleet, healthy, cluster="aks-usw2-prod", nodes_desired=now.nodes + 1,
                      nodes_max=now.nodes_max)
    assert plan.extravars["nodes_desired"] == now.nodes + 1
    assert f"desired {now.nodes} → {now.nodes + 1}" in plan.summary[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cluster": "gke-usw2-prd", "nodes_max": 20}, "unknown cluster (did you mean gke-usw2-prod?)"),
        ({"cluster": "gke-usw2-prod"}, "nothing to change: give --min, --max or --desired"),
        ({"cluster": "gke-usw2-prod", "nodes_max": 60}, "--max 60: outside the seed's bounds of 1–50"),
        ({"cluster": "gke-usw2-prod", "nodes_min": 0}, "--min 0: outside the seed's bounds of 1–50"),
        ({"cluster": "gke-usw2-prod", "nodes_min": 30, "nodes_max": 20}, "node min 30 would be over max 20"),
        ({"cluster": "gke-usw2-prod", "nodes_desired": 45}, "--desired 45: outside gke-usw2-prod's node"),
        ({"cluster": "gke-usw2-prod", "nodes_max": "many"}, "--max 'many': expected a whole number"),
    ],
)
def test_nodes_refusals_name_the_flag(
    seed_fleet: Fleet, healthy: Snapshot, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        plan_nodes(seed_fleet, healthy, **kwargs)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_nodes_no_change_is_refused(seed_fleet: Fleet, healthy: Snapshot) -> None:
    now = _cluster_state(healthy, "eks-usw2-prod")
    with pytest.raises(UsageError, match="no change: eks-usw2-prod is already there"):
        plan_nodes(seed_fleet, healthy, cluster="eks-usw2-prod", nodes_min=now.nodes_min,
                   nodes_max=now.nodes_max)


def test_nodes_refuses_a_prod_region_over_the_seeds_bound(seed_fleet: Fleet, healthy: Snapshot) -> None:
    """The seed states its node bound per region: a desired count that takes a region's prod clusters over
    it is refused, a max raise (which adds no node by itself) is not."""
    bound = seed_fleet.bounds.cluster_nodes.max
    others = sum(_cluster_state(healthy, c.name).nodes
                 for c in seed_fleet.clusters_in("eu-west-1", Environment.PROD) if c.name != "eks-euw1-prod")
    too_many = bound - others + 1
    with pytest.raises(UsageError, match=f"over the seed's bound of {bound} nodes per region"):
        plan_nodes(seed_fleet, healthy, cluster="eks-euw1-prod", nodes_desired=too_many, nodes_max=bound)
    plan = plan_nodes(seed_fleet, healthy, cluster="eks-euw1-prod", nodes_max=bound - 1)
    assert "seed bound 50 per region" in plan.summary[1]


def test_nodes_of_a_staging_cluster_is_not_production(seed_fleet: Fleet, healthy: Snapshot) -> None:
    plan = plan_nodes(seed_fleet, healthy, cluster="gke-euw1-staging", nodes_max=9)
    assert not plan.production


def test_replicas_plan_and_refusals(seed_fleet: Fleet, healthy: Snapshot) -> None:
    plan = plan_replicas(seed_fleet, healthy, region="us-west-2", read_replicas=3)
    assert plan.extravars == {"scale_target": "read_replicas", "region": "us-west-2", "read_replicas": 3}
    assert plan.targets == ("region/us-west-2", "database/us-west-2")
    assert plan.summary == ("us-west-2 database pg-us-west-2 (aws, read_replica): read replicas 2 → 3",)
    with pytest.raises(UsageError, match="--count 20: outside the seed's bounds of 1–10 read replicas"):
        plan_replicas(seed_fleet, healthy, region="us-west-2", read_replicas=20)
    with pytest.raises(UsageError, match="no change: pg-us-west-2 already has 2 read replicas"):
        plan_replicas(seed_fleet, healthy, region="us-west-2", read_replicas=2)
    with pytest.raises(UsageError, match=r"--region 'us-wst-2': unknown region \(did you mean us-west-2\?\)"):
        plan_replicas(seed_fleet, healthy, region="us-wst-2", read_replicas=3)


def test_cache_plan_and_refusals(seed_fleet: Fleet, healthy: Snapshot) -> None:
    plan = plan_cache(seed_fleet, healthy, region="eu-west-1", nodes=7)
    assert plan.extravars == {"scale_target": "cache", "region": "eu-west-1", "cache_nodes": 7}
    assert plan.summary[0].startswith("eu-west-1 Redis redis-eu-west-1: nodes 6 → 7")
    with pytest.raises(UsageError, match="--nodes 40: outside the seed's bounds of 3–10 Redis nodes"):
        plan_cache(seed_fleet, healthy, region="eu-west-1", nodes=40)
    with pytest.raises(UsageError, match="no change: redis-eu-west-1 already has 6 nodes"):
        plan_cache(seed_fleet, healthy, region="eu-west-1", nodes=6)


def test_database_promote_and_demote(seed_fleet: Fleet, healthy: Snapshot) -> None:
    promote = plan_database(seed_fleet, healthy, region="eu-central-1", change="promote")
    assert promote.playbook == "database.yml"
    assert promote.extravars == {"db_change": "promote", "region": "eu-central-1"}
    assert "read replica of eu-west-1 → standalone write primary" in promote.summary[0]
    assert "two primaries in the eu zone" in promote.summary[1]
    with pytest.raises(UsageError, match="no change: pg-eu-west-1 is already a write primary"):
        plan_database(seed_fleet, healthy, region="eu-west-1", change="promote")
    with pytest.raises(UsageError, match="no change: pg-eu-central-1 is already a read replica"):
        plan_database(seed_fleet, healthy, region="eu-central-1", change="demote")
    # After a failover: eu-central-1 was promoted; its demotion follows the inventory's primary.
    promoted = replace_record(healthy, "database/eu-central-1", role=DbRole.WRITE_PRIMARY,
                              replicates_from=None)
    demote = plan_database(seed_fleet, promoted, region="eu-central-1", change="demote")
    assert demote.extravars == {"db_change": "demote", "region": "eu-central-1",
                                "source_region": "eu-west-1"}
    assert demote.params == {"region": "eu-central-1", "change": "demote", "source_region": "eu-west-1"}
    assert "database/eu-west-1" in demote.targets
    assert "write primary → read replica of pg-eu-west-1" in demote.summary[0]
    with pytest.raises(UsageError, match="--source us-east-1: outside eu-central-1's residency zone"):
        plan_database(seed_fleet, promoted, region="eu-central-1", change="demote",
                      source_region="us-east-1")
    us_promoted = replace_record(promoted, "database/us-west-2", role=DbRole.WRITE_PRIMARY,
                                 replicates_from=None)
    with pytest.raises(UsageError, match="--source ap-south-1: pg-ap-south-1 is not an available write"):
        plan_database(seed_fleet, us_promoted, region="us-west-2", change="demote",
                      source_region="ap-south-1")
    with pytest.raises(UsageError, match="expected --promote or --demote"):
        plan_database(seed_fleet, healthy, region="eu-central-1", change="restart")


def test_database_promote_refused_past_the_rpo(seed_fleet: Fleet, healthy: Snapshot) -> None:
    lagging = replace_record(healthy, "database/eu-central-1", replica_lag_s=seed_fleet.targets.rpo_db_s + 30)
    with pytest.raises(UsageError, match=r"over the .* RPO; promoting it now would lose data"):
        plan_database(seed_fleet, lagging, region="eu-central-1", change="promote")


def test_new_actions_replan_from_their_params(seed_fleet: Fleet, healthy: Snapshot) -> None:
    promoted = replace_record(healthy, "database/eu-central-1", role=DbRole.WRITE_PRIMARY,
                              replicates_from=None)
    for plan in (
        plan_nodes(seed_fleet, healthy, cluster="aks-usw2-prod", nodes_max=35),
        plan_replicas(seed_fleet, healthy, region="us-west-2", read_replicas=4),
        plan_cache(seed_fleet, healthy, region="us-west-2", nodes=5),
        plan_database(seed_fleet, promoted, region="eu-central-1", change="demote"),
    ):
        again = replan(seed_fleet, promoted, plan.action.value, plan.params)
        assert (again.extravars, again.targets, pinned_observations(again)) == (
            plan.extravars, plan.targets, pinned_observations(plan))
    with pytest.raises(UsageError, match="unknown action 'scale_nodes'"):
        replan(seed_fleet, healthy, "scale_nodes", {"cluster": "aks-usw2-prod"})
