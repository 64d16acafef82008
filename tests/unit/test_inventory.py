"""The seed inventory is valid, Ansible reads it the same way, and every bad input names file and key."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from opsconsole.core.errors import InventoryError
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import Cloud, DbRole, Environment, Fleet, Geography

REGIONS = {
    "us-east-1", "us-west-2", "ca-central-1", "sa-east-1", "eu-west-1",
    "eu-central-1", "ap-southeast-1", "ap-northeast-1", "ap-southeast-2", "ap-south-1",
}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def load_error(inventory: Path) -> InventoryError:
    with pytest.raises(InventoryError) as caught:
        load_inventory(inventory)
    return caught.value


# -- the seed fleet --------------------------------------------------------------------------------


def test_seed_has_the_documents_ten_regions_and_tiers(seed_fleet: Fleet) -> None:
    assert set(seed_fleet.regions) == REGIONS
    tiers = {r.id: r.tier for r in seed_fleet.regions.values()}
    assert sorted(tiers.values()).count(1) == 6
    assert tiers["ca-central-1"] == tiers["sa-east-1"] == tiers["ap-southeast-2"] == tiers["ap-south-1"] == 2
    for region in seed_fleet.regions.values():
        assert region.failover_partner in REGIONS and region.failover_partner != region.id


def test_seed_write_primaries_and_replicas(seed_fleet: Fleet) -> None:
    assert sorted(seed_fleet.write_primaries) == ["ap-southeast-1", "eu-west-1", "us-east-1"]
    for region in seed_fleet.regions.values():
        if region.database.role is DbRole.READ_REPLICA:
            primary = seed_fleet.regions[region.database.replicates_from or ""]
            assert primary.geography is region.geography
            assert region.database.read_replicas in seed_fleet.bounds.read_replicas


@pytest.mark.parametrize("geography", list(Geography))
def test_capacity_weights_reproduce_the_provider_split(seed_fleet: Fleet, geography: Geography) -> None:
    weights = {cloud: 0.0 for cloud in Cloud}
    for cluster in seed_fleet.clusters.values():
        in_geography = seed_fleet.regions[cluster.region].geography is geography
        if cluster.environment is Environment.PROD and in_geography:
            weights[cluster.cloud] += cluster.capacity_weight
    total = sum(weights.values())
    for cloud, share in seed_fleet.provider_plan[geography].items():
        assert weights[cloud] / total == pytest.approx(share, abs=0.005)


def test_seed_bounds_and_targets_are_the_documents(seed_fleet: Fleet) -> None:
    b, t = seed_fleet.bounds, seed_fleet.targets
    assert (b.hpa_pods.min, b.hpa_pods.max, b.cluster_nodes.min, b.cluster_nodes.max) == (2, 100, 1, 50)
    assert (b.read_replicas.min, b.read_replicas.max, b.redis_nodes.min, b.redis_nodes.max) == (1, 10, 3, 10)
    assert (t.api_p95_ms, t.db_query_p95_ms, t.rpo_db_s, t.api_rps) == (200, 100, 300, 100_000)
    assert t.availability_platform == 0.9999 and t.concurrent_users == 1_000_000
    assert seed_fleet.cdn_split == {"cloudfront": 0.8, "cloudflare": 0.15, "google_cloud_cdn": 0.05}
    assert t.cost_mix == {"reserved": 0.7, "spot": 0.2, "on_demand": 0.1}


def test_every_service_has_criticality_consistency_and_envs(seed_fleet: Fleet) -> None:
    assert {"gateway", "checkout", "payments", "catalog", "inventory", "search", "sessions", "carts",
            "user-profiles", "notifications", "analytics"} <= set(seed_fleet.services)
    rto = {s.name: s.criticality.rto_minutes for s in seed_fleet.services.values()}
    assert rto["payments"] == 15 and rto["catalog"] == 60 and rto["analytics"] == 240
    non_prod = {c.environment for c in seed_fleet.clusters.values()} - {Environment.PROD}
    assert non_prod == {Environment.STAGING, Environment.DEV}


def test_ansible_reads_the_same_inventory(seed_fleet: Fleet) -> None:
    """Playbooks and opsconsole share one source of truth: ansible-inventory must agree with us."""
    ansible_inventory = Path(sys.executable).parent / "ansible-inventory"
    result = subprocess.run(
        [str(ansible_inventory), "-i", str(seed_fleet.source / "hosts.yml"), "--list"],
        capture_output=True, text=True, check=True, timeout=120,
    )
    data = json.loads(result.stdout)
    hostvars = data["_meta"]["hostvars"]
    assert set(hostvars) == set(seed_fleet.clusters)
    assert set(data["env_staging"]["hosts"]) == {
        c.name for c in seed_fleet.clusters.values() if c.environment is Environment.STAGING
    }
    for name, cluster in seed_fleet.clusters.items():
        assert hostvars[name]["region"] == cluster.region
        assert hostvars[name]["cloud"] == cluster.cloud.value
        assert hostvars[name]["nodes"]["max"] == cluster.nodes.max
    assert hostvars["eks-euw1-prod"]["geography"] == "emea"


# -- bad inputs: one test each, each naming the file and the key ---------------------------------------


def test_yaml_syntax_error_names_file_and_line(inventory_copy: Path) -> None:
    region_file = inventory_copy / "group_vars" / "region_eu_west_1.yml"
    edit(region_file, "region_tier: 1", "region_tier: [1")
    error = load_error(inventory_copy)
    assert error.file == str(region_file)
    assert error.line is not None and error.line >= 5
    assert "YAML" in error.message and "region_eu_west_1.yml" in error.message


def test_missing_key_names_the_key_path(inventory_copy: Path) -> None:
    region_file = inventory_copy / "group_vars" / "region_ap_south_1.yml"
    edit(region_file, "region_timezone: Asia/Kolkata\n", "")
    error = load_error(inventory_copy)
    assert error.file == str(region_file)
    assert error.key_path == "region_timezone"
    assert "region_ap_south_1.yml" in str(error) and "region_timezone" in str(error)


def test_unknown_region_as_failover_partner(inventory_copy: Path) -> None:
    region_file = inventory_copy / "group_vars" / "region_eu_central_1.yml"
    edit(region_file, "failover_partner: eu-west-1", "failover_partner: eu-west-9")
    error = load_error(inventory_copy)
    assert error.file == str(region_file)
    assert error.key_path == "failover_partner"
    assert "eu-west-9" in str(error) and "us-east-1" in str(error)  # lists the known regions


def test_unknown_region_as_replication_source(inventory_copy: Path) -> None:
    region_file = inventory_copy / "group_vars" / "region_us_west_2.yml"
    edit(region_file, "replicates_from: us-east-1", "replicates_from: us-east-7")
    error = load_error(inventory_copy)
    assert error.key_path == "database.replicates_from"
    assert "write-primary" in error.expected


def test_hpa_min_greater_than_max(inventory_copy: Path) -> None:
    all_file = inventory_copy / "group_vars" / "all.yml"
    edit(all_file, "hpa: {min: 3, max: 60}", "hpa: {min: 70, max: 60}")
    error = load_error(inventory_copy)
    assert error.file == str(all_file)
    assert error.key_path == "opsconsole_services.checkout.hpa"
    assert "min <= max" in str(error) and "70" in str(error)


def test_hpa_outside_fleet_bounds(inventory_copy: Path) -> None:
    all_file = inventory_copy / "group_vars" / "all.yml"
    edit(all_file, "hpa: {min: 4, max: 100}", "hpa: {min: 4, max: 150}")
    error = load_error(inventory_copy)
    assert error.key_path == "opsconsole_services.gateway.hpa.max"
    assert "from 2 to 100" in error.expected


def test_wrong_type(inventory_copy: Path) -> None:
    hosts = inventory_copy / "hosts.yml"
    edit(hosts, "max: 50", "max: fifty")
    error = load_error(inventory_copy)
    assert error.file == str(hosts)
    assert error.key_path == "all.children.americas.children.region_us_east_1.hosts.eks-use1-prod.nodes.max"
    assert "an integer" in error.expected and "'fifty'" in (error.found or "")
    assert error.line is not None


def test_wrong_enum_value_lists_the_choices(inventory_copy: Path) -> None:
    all_file = inventory_copy / "group_vars" / "all.yml"
    edit(all_file, "criticality: standard", "criticality: meh")
    error = load_error(inventory_copy)
    assert error.key_path.endswith(".criticality")
    assert "critical, important, standard" in error.expected


def test_duplicate_cluster_name(inventory_copy: Path) -> None:
    hosts = inventory_copy / "hosts.yml"
    text = hosts.read_text()
    # Rename the Canada EKS cluster to the US-East one: the same host id in two regions.
    hosts.write_text(text.replace("eks-cac1-prod:", "eks-use1-prod:", 1))
    error = load_error(inventory_copy)
    assert error.file == str(hosts)
    assert "eks-use1-prod" in error.key_path
    assert "used once" in error.expected


def test_duplicate_key_in_one_mapping(inventory_copy: Path) -> None:
    region_file = inventory_copy / "group_vars" / "region_sa_east_1.yml"
    edit(region_file, "region_tier: 2\n", "region_tier: 2\nregion_tier: 1\n")
    error = load_error(inventory_copy)
    assert error.file == str(region_file)
    assert error.key_path == "region_tier" and "duplicate" in (error.found or "")


def test_duplicate_region_id(inventory_copy: Path) -> None:
    region_file = inventory_copy / "group_vars" / "region_us_west_2.yml"
    edit(region_file, "region: us-west-2", "region: us-east-1")
    error = load_error(inventory_copy)
    assert error.file == str(region_file)
    assert error.key_path == "region"


def test_bad_timezone(inventory_copy: Path) -> None:
    edit(inventory_copy / "group_vars" / "region_ap_northeast_1.yml", "Asia/Tokyo", "Asia/Tokio")
    error = load_error(inventory_copy)
    assert error.key_path == "region_timezone" and "IANA" in error.expected


def test_missing_file(inventory_copy: Path) -> None:
    (inventory_copy / "group_vars" / "region_ap_south_1.yml").unlink()
    error = load_error(inventory_copy)
    assert error.file.endswith("region_ap_south_1.yml") and "exist" in error.expected


def test_cluster_in_no_environment_group(inventory_copy: Path) -> None:
    edit(inventory_copy / "hosts.yml", "\n        eks-sae1-prod: null\n", "\n")
    error = load_error(inventory_copy)
    assert "eks-sae1-prod" in error.key_path and "env_prod" in error.expected


def test_missing_inventory_directory(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nowhere")
    assert "nowhere" in error.file


def test_hosts_file_path_is_accepted(inventory_copy: Path) -> None:
    fleet = load_inventory(inventory_copy / "hosts.yml")
    assert len(fleet.regions) == 10
    shutil.rmtree(inventory_copy)


def test_cloud_accounts_are_read(seed_fleet: Fleet) -> None:
    accounts = seed_fleet.accounts
    assert accounts.aws_default_profile == "voltage-readonly"
    assert accounts.gcp_project == "voltage-platform-prod"
    assert accounts.azure_subscription_id and accounts.azure_workspace_id
    assert accounts.kubeconfig == "~/.kube/config" and accounts.kube_contexts == {}


def test_cloud_accounts_unknown_region_profile(inventory_copy: Path) -> None:
    all_file = inventory_copy / "group_vars" / "all.yml"
    edit(all_file, "    profiles: {}", "    profiles: {eu-west-9: prod-eu}")
    error = load_error(inventory_copy)
    assert error.key_path == "opsconsole_clouds.aws.profiles" and "eu-west-9" in str(error)


def test_cloud_accounts_unknown_cluster_context(inventory_copy: Path) -> None:
    all_file = inventory_copy / "group_vars" / "all.yml"
    edit(all_file, "    contexts: {}", "    contexts: {eks-nowhere: ctx}")
    error = load_error(inventory_copy)
    assert error.key_path == "opsconsole_clouds.kubernetes.contexts" and "eks-nowhere" in str(error)


# -- cadences and prices (issue 13) ------------------------------------------------------------------


def test_seed_cadences_and_prices(seed_fleet: Fleet) -> None:
    from opsconsole.core.fleet.inventory import load_prices, source_cadences  # noqa: PLC0415

    cadences = source_cadences(seed_fleet.source)
    assert {c: (v.metrics_s, v.describe_s) for c, v in cadences.items()} == {
        "aws": (60.0, 300.0), "gcp": (60.0, 300.0), "azure": (60.0, 300.0)}
    prices = load_prices(seed_fleet.source)
    assert prices["aws"]["GetMetricData"].usd == 0.01 and prices["aws"]["GetMetricData"].per == 1000


@pytest.mark.parametrize(("value", "found"), [("5", "5"), ("-60", "-60"), ("soon", "'soon'"),
                                              ("7200", "7200")])
def test_bad_metrics_cadence_names_file_key_and_bounds(inventory_copy: Path, value: str, found: str) -> None:
    all_yml = inventory_copy / "group_vars" / "all.yml"
    edit(all_yml, "    metrics_cadence_s: 60\n", f"    metrics_cadence_s: {value}\n")
    error = load_error(inventory_copy)
    assert error.file == str(all_yml)
    assert error.key_path == "opsconsole_clouds.aws.metrics_cadence_s"
    assert "0 (every refresh) or a number of seconds from 10 to 3600" in str(error)
    assert found in str(error)


def test_zero_cadence_means_every_refresh(inventory_copy: Path) -> None:
    from opsconsole.core.fleet.inventory import source_cadences  # noqa: PLC0415

    edit(inventory_copy / "group_vars" / "all.yml", "    describe_cadence_s: 300\n",
         "    describe_cadence_s: 0\n")
    fleet = load_inventory(inventory_copy)
    assert source_cadences(fleet.source)["aws"].describe_s == 0.0


def test_bad_prices_name_the_file(inventory_copy: Path) -> None:
    from opsconsole.core.fleet.inventory import load_prices  # noqa: PLC0415

    edit(inventory_copy / "prices.yml", "GetMetricData: {usd: 0.01,", "GetMetricData: {usd: -1,")
    with pytest.raises(InventoryError) as caught:
        load_prices(inventory_copy)
    assert "prices.yml" in str(caught.value) and "usd must be a number >= 0" in str(caught.value)


# -- the seed's bounds and the cross-file checks (issue 14) --------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "key_path", "expected"),
    [
        ("read_replicas: 3", "read_replicas: 20", "database.read_replicas", "from 1 to 10"),
        ("nodes: 6", "nodes: 40", "cache.nodes", "from 3 to 10"),
        ("storage_tb: 60", "storage_tb: 500", "database.storage_tb", "from 1 to 100"),
    ],
)
def test_region_figures_outside_the_seed_bounds_are_refused(
    inventory_copy: Path, old: str, new: str, key_path: str, expected: str
) -> None:
    region_file = inventory_copy / "group_vars" / "region_us_east_1.yml"
    edit(region_file, old, new)
    error = load_error(inventory_copy)
    assert (error.file, error.key_path) == (str(region_file), key_path)
    assert expected in error.expected
    assert error.line is not None and f"{region_file}:{error.line}:" in str(error)
    assert new.split(": ")[1] in str(error)


def test_capacity_weight_off_the_provider_plan_is_refused(inventory_copy: Path) -> None:
    hosts = inventory_copy / "hosts.yml"
    edit(hosts, "capacity_weight: 140", "capacity_weight: 1400")  # eks-euw1-prod, x10
    error = load_error(inventory_copy)
    assert error.file == str(hosts)
    assert error.key_path.endswith("eks-euw1-prod.capacity_weight"), error.key_path
    assert "provider plan" in error.expected and "emea" in error.expected
    assert "1400" in str(error) and error.line is not None


def test_eu_failover_partner_outside_the_eu_is_refused(inventory_copy: Path) -> None:
    region_file = inventory_copy / "group_vars" / "region_eu_west_1.yml"
    edit(region_file, "failover_partner: eu-central-1", "failover_partner: us-east-1")
    error = load_error(inventory_copy)
    assert (error.file, error.key_path) == (str(region_file), "failover_partner")
    assert "eu residency zone" in error.expected
    assert error.found == "us-east-1 in zone us"


def test_us_failover_partner_in_another_zone_is_allowed(inventory_copy: Path) -> None:
    region_file = inventory_copy / "group_vars" / "region_sa_east_1.yml"
    edit(region_file, "failover_partner: us-east-1", "failover_partner: eu-west-1")
    assert load_inventory(inventory_copy).regions["sa-east-1"].failover_partner == "eu-west-1"


# -- backup posture (issue 14: daily / weekly backups, 30-day point-in-time recovery) ------------------


def test_seed_backup_target_is_thirty_days_of_pitr(seed_fleet: Fleet) -> None:
    assert seed_fleet.targets.backup_pitr_days == 30


@pytest.mark.parametrize(("value", "found"), [("0", "0"), ("36", "36"), ("thirty", "'thirty'"),
                                              ("7.5", "7.5")])
def test_bad_backup_pitr_days_names_file_and_key(inventory_copy: Path, value: str, found: str) -> None:
    all_yml = inventory_copy / "group_vars" / "all.yml"
    edit(all_yml, "    pitr_days: 30\n", f"    pitr_days: {value}\n")
    error = load_error(inventory_copy)
    assert (error.file, error.key_path) == (str(all_yml), "opsconsole_targets.backup.pitr_days")
    assert "from 1 to 35" in error.expected
    assert found in str(error) and error.line is not None and f"{all_yml}:{error.line}:" in str(error)


def test_missing_backup_target_names_the_key(inventory_copy: Path) -> None:
    all_yml = inventory_copy / "group_vars" / "all.yml"
    edit(all_yml, "  backup:\n    pitr_days: 30\n", "")
    error = load_error(inventory_copy)
    assert error.file == str(all_yml) and "backup" in error.key_path
