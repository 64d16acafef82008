"""Load and validate ``inventory/``: the fleet as data, shared with the playbooks.

The inventory is an ordinary Ansible YAML inventory so that ``ansible-playbook -i inventory/hosts.yml``
and opsconsole read one source of truth:

* ``hosts.yml`` — geography groups (``americas``, ``emea``, ``apac``) whose children are region groups
  (``region_<id>``), whose hosts are the Kubernetes clusters (with their host vars); the groups
  ``env_prod`` / ``env_staging`` / ``env_dev`` say which environment each cluster serves;
* ``group_vars/all.yml`` — targets, bounds, the service catalogue, the provider plan, the CDN split;
* ``group_vars/region_<id>.yml`` — one region each; ``group_vars/<geography>.yml``;
* ``policy.yml``, ``rbac.yml``, ``schedules.yml`` — read by the later parts of the core.

Every problem is reported as an :class:`~opsconsole.core.errors.InventoryError` naming the file, the key
path inside it, the line, and what was expected — never a traceback. Validation stops at the first
problem: an inventory is fixed one line at a time, and a cascade of follow-on errors only hides the
first one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from opsconsole.core.errors import InventoryError
from opsconsole.core.fleet.findings import RESTRICTED_RESIDENCY_ZONES
from opsconsole.core.fleet.metering import Price, parse_prices
from opsconsole.core.fleet.model import (
    KIND_OF_CLOUD,
    Bounds,
    CacheSpec,
    Cloud,
    CloudAccounts,
    ClusterSpec,
    Consistency,
    Criticality,
    DatabaseSpec,
    DbRole,
    Environment,
    Fleet,
    Geography,
    IntRange,
    RegionRole,
    RegionSpec,
    RoutingPolicy,
    ServiceSpec,
    Targets,
    TrafficSpec,
)

E = TypeVar("E", bound=Enum)

REGION_GROUP_PREFIX = "region_"
ENV_GROUP_PREFIX = "env_"
#: The files next to hosts.yml that belong to opsconsole rather than to Ansible.
SIDE_FILES = ("policy.yml", "rbac.yml", "schedules.yml")


def default_inventory_path() -> Path:
    """``$OPSCONSOLE_INVENTORY`` if set, else the seed fleet shipped in the repository's ``inventory/``."""
    configured = os.environ.get("OPSCONSOLE_INVENTORY")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / "inventory"


# --------------------------------------------------------------------------------------------------
# YAML with line numbers and duplicate-key detection
# --------------------------------------------------------------------------------------------------


class _LineMap(dict[Any, Any]):
    """A mapping that remembers the line of each key (1-based), for error messages."""

    key_lines: dict[Any, int]
    line: int


#: libyaml's parser when PyYAML was built with it (every wheel is): the seed inventory parses in ~20 ms
#: instead of ~200 ms, which a console's start waits for. Same nodes, marks and errors.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _InventoryYamlLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that records key lines and refuses duplicate keys (PyYAML keeps the last silently)."""

    file_name = "?"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        result = _LineMap()
        result.key_lines = {}
        result.line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in result:
                raise InventoryError(
                    self.file_name,
                    str(key),
                    "each key once in a mapping",
                    found=f"a duplicate (first on line {result.key_lines[key]})",
                    line=line,
                )
            result[key] = self.construct_object(value_node, deep=True)
            result.key_lines[key] = line
        return result


_InventoryYamlLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _InventoryYamlLoader.construct_mapping,
)


def _read_yaml(path: Path, display: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(display, "(file)", "the file to exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(display, "(file)", "a readable UTF-8 file", found=str(exc)) from None
    loader_class = type("_Loader", (_InventoryYamlLoader,), {"file_name": display})
    loader = loader_class(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise InventoryError(display, "(YAML syntax)", "valid YAML", found=problem, line=line) from None
    except yaml.YAMLError as exc:
        raise InventoryError(display, "(YAML syntax)", "valid YAML", found=str(exc)) from None
    finally:
        loader.dispose()


# --------------------------------------------------------------------------------------------------
# A typed reader over one YAML value that knows where it is
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    """One value in one file, with its key path, so that every check can say where it failed."""

    file: str
    path: str
    value: Any
    line: int | None

    def fail(self, expected: str, found: str | None = None) -> InventoryError:
        return InventoryError(self.file, self.path or "(top level)", expected, found=found, line=self.line)

    def _describe(self) -> str:
        if self.value is None:
            return "nothing (null)"
        if isinstance(self.value, dict):
            return "a mapping"
        if isinstance(self.value, list):
            return "a list"
        return f"{type(self.value).__name__} {self.value!r}"

    def _sub(self, key: str, value: Any) -> _Node:
        line = self.line
        if isinstance(self.value, _LineMap):
            line = self.value.key_lines.get(key, self.value.line)
        path = f"{self.path}.{key}" if self.path else str(key)
        return _Node(self.file, path, value, line)

    def mapping(self) -> dict[Any, Any]:
        if not isinstance(self.value, dict):
            raise self.fail("a mapping", self._describe())
        return self.value

    def has(self, key: str) -> bool:
        return key in self.mapping()

    def get(self, key: str) -> _Node:
        data = self.mapping()
        if key not in data:
            raise InventoryError(
                self.file, f"{self.path}.{key}" if self.path else key, "this key to be present",
                found="it missing", line=self.line,
            )
        return self._sub(key, data[key])

    def opt(self, key: str) -> _Node | None:
        data = self.mapping()
        return self._sub(key, data[key]) if key in data else None

    def items(self) -> Iterator[tuple[str, _Node]]:
        for key, value in self.mapping().items():
            if not isinstance(key, str):
                raise self._sub(str(key), value).fail("a string key", f"{type(key).__name__} {key!r}")
            yield key, self._sub(key, value)

    def as_list(self) -> list[_Node]:
        if not isinstance(self.value, list):
            raise self.fail("a list", self._describe())
        return [_Node(self.file, f"{self.path}[{i}]", v, self.line) for i, v in enumerate(self.value)]

    def as_str(self) -> str:
        if not isinstance(self.value, str) or not self.value.strip():
            raise self.fail("a non-empty string", self._describe())
        return self.value

    def as_int(self, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.fail("an integer" + _range_text(lo, hi), self._describe())
        if (lo is not None and self.value < lo) or (hi is not None and self.value > hi):
            raise self.fail("an integer" + _range_text(lo, hi), str(self.value))
        return self.value

    def as_float(self, lo: float | None = None, hi: float | None = None) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise self.fail("a number" + _range_text(lo, hi), self._describe())
        number = float(self.value)
        if math.isnan(number) or (lo is not None and number < lo) or (hi is not None and number > hi):
            raise self.fail("a number" + _range_text(lo, hi), str(self.value))
        return number

    def as_bool(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail("true or false", self._describe())
        return self.value

    def as_enum(self, enum: type[E]) -> E:
        allowed = [str(member.value) for member in enum]
        if not isinstance(self.value, str) or self.value not in allowed:
            raise self.fail("one of " + ", ".join(allowed), self._describe())
        return enum(self.value)

    def as_range(self, within: IntRange | None = None) -> IntRange:
        lo = within.min if within else None
        hi = within.max if within else None
        low = self.get("min").as_int(lo, hi)
        high = self.get("max").as_int(lo, hi)
        if low > high:
            raise self.fail("min <= max", f"min {low} > max {high}")
        return IntRange(low, high)


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""


def _shares(node: _Node, keys: type[E], *, total: float = 1.0) -> dict[E, float]:
    """A mapping of enum member → fraction, covering every member, summing to ``total``."""
    shares: dict[E, float] = {}
    for key, child in node.items():
        member = _Node(node.file, child.path, key, child.line).as_enum(keys)
        shares[member] = child.as_float(0.0, 1.0)
    missing = [str(m.value) for m in keys if m not in shares]
    if missing:
        raise node.fail("a share for each of " + ", ".join(str(m.value) for m in keys),
                        "none for " + ", ".join(missing))
    if abs(sum(shares.values()) - total) > 1e-6:
        raise node.fail(f"shares summing to {total:g}", f"{sum(shares.values()):g}")
    return shares


# --------------------------------------------------------------------------------------------------
# The loader
# --------------------------------------------------------------------------------------------------


def load_inventory(path: Path | str | None = None) -> Fleet:
    """Read and validate an inventory.

    The steps: ``group_vars/all.yml`` (bounds, targets, services, provider plan, CDN, cloud accounts),
    then ``hosts.yml`` with each region's ``group_vars`` file (environments, regions, clusters), then
    the checks across them (failover partners, replication, demand shares, accounts, a prod cluster in
    every region), then the side files (only that they parse).

    Args:
        path: the inventory directory, or its ``hosts.yml``; default :func:`default_inventory_path`.

    Returns:
        The validated :class:`~opsconsole.core.fleet.model.Fleet`.

    Raises:
        InventoryError: naming the file, the key path, the line and what was expected.
    """
    root = Path(path) if path is not None else default_inventory_path()
    hosts_file = root if root.is_file() else root / "hosts.yml"
    root = hosts_file.parent
    if not root.exists():
        raise InventoryError(str(root), "(directory)", "an inventory directory with hosts.yml")
    group_vars_dir = root / "group_vars"
    shared = _read_all_vars(_load(group_vars_dir / "all.yml"))
    layout = _read_hosts(_load(hosts_file), group_vars_dir, shared.bounds)
    _check_regions(layout, group_vars_dir)
    _check_residency_partners(layout)
    _check_capacity_plan(shared, layout)
    _check_accounts(shared, layout)
    for side_file in SIDE_FILES:
        side = root / side_file
        if side.exists():
            _load(side).mapping()
    return Fleet(
        source=root,
        regions=layout.regions,
        clusters=layout.clusters,
        services=shared.services,
        targets=shared.targets,
        bounds=shared.bounds,
        provider_plan=shared.provider_plan,
        provider_plan_overall=shared.provider_plan_overall,
        cdn_split=shared.cdn_split,
        accounts=shared.accounts,
    )


def _load(path: Path) -> _Node:
    """One YAML file of the inventory as the root node (error messages name the file)."""
    data = _read_yaml(path, str(path))
    line = data.line if isinstance(data, _LineMap) else 1
    return _Node(str(path), "", data, line)


@dataclass(frozen=True)
class _AllVars:
    """What ``group_vars/all.yml`` says, validated (``node`` kept for errors found later)."""

    node: _Node
    bounds: Bounds
    targets: Targets
    services: dict[str, ServiceSpec]
    provider_plan: dict[Geography, dict[Cloud, float]]
    provider_plan_overall: dict[Cloud, float]
    cdn_split: dict[str, float]
    accounts: CloudAccounts


def _read_all_vars(all_vars: _Node) -> _AllVars:
    bounds = _bounds(all_vars.get("opsconsole_bounds"))
    targets = _targets(all_vars.get("opsconsole_targets"))
    services = _services(all_vars.get("opsconsole_services"), bounds)
    plan_node = all_vars.get("opsconsole_provider_plan")
    provider_plan = {geo: _shares(plan_node.get(geo.value), Cloud) for geo in Geography}
    provider_plan_overall = _shares(plan_node.get("overall"), Cloud)
    cdn_split = {key: child.as_float(0.0, 1.0) for key, child in all_vars.get("opsconsole_cdn").items()}
    if abs(sum(cdn_split.values()) - 1.0) > 1e-6:
        raise all_vars.get("opsconsole_cdn").fail("CDN shares summing to 1", f"{sum(cdn_split.values()):g}")
    clouds_node = all_vars.opt("opsconsole_clouds")
    accounts = CloudAccounts() if clouds_node is None else _accounts(clouds_node)
    _cadences(clouds_node)  # validated with the rest; read by the wiring with source_cadences()
    return _AllVars(all_vars, bounds, targets, services, provider_plan, provider_plan_overall, cdn_split,
                    accounts)


@dataclass
class _Layout:
    """What ``hosts.yml`` and the regions' group_vars say, with the nodes later checks point at."""

    hosts: _Node
    top: _Node
    environments: dict[str, Environment] = field(default_factory=dict)
    regions: dict[str, RegionSpec] = field(default_factory=dict)
    clusters: dict[str, ClusterSpec] = field(default_factory=dict)
    cluster_nodes: dict[str, _Node] = field(default_factory=dict)
    region_group_of: dict[str, str] = field(default_factory=dict)
    partner_nodes: dict[str, _Node] = field(default_factory=dict)
    replicates_nodes: dict[str, _Node] = field(default_factory=dict)


def _read_hosts(hosts: _Node, group_vars_dir: Path, bounds: Bounds) -> _Layout:
    """``hosts.yml``: ``env_*`` groups name each cluster's environment; geography groups hold regions."""
    layout = _Layout(hosts=hosts, top=hosts.get("all").get("children"))
    for group, group_node in layout.top.items():
        if group.startswith(ENV_GROUP_PREFIX):
            _read_env_group(layout, group, group_node)
        else:
            _read_geography(layout, group, group_node, group_vars_dir, bounds)
    if not layout.regions:
        raise layout.top.fail("at least one region group under a geography group")
    for host, host_node in layout.cluster_nodes.items():
        if host not in layout.environments:
            raise host_node.fail("the cluster listed in one of env_prod, env_staging, env_dev")
        spec = layout.clusters[host]
        layout.clusters[host] = ClusterSpec(**{**spec.__dict__, "environment": layout.environments[host]})
    for host in layout.environments:
        if host not in layout.clusters:
            raise hosts.get("all").get("children").fail(
                "every host of an env_ group to be a cluster of some region", f"unknown cluster {host}"
            )
    return layout


def _read_env_group(layout: _Layout, group: str, group_node: _Node) -> None:
    env = _Node(layout.hosts.file, group_node.path, group[len(ENV_GROUP_PREFIX):], group_node.line)
    environment = env.as_enum(Environment)
    for host, host_node in group_node.get("hosts").items():
        if host in layout.environments:
            raise host_node.fail("each cluster in one environment group",
                                 f"{host} also in env_{layout.environments[host].value}")
        layout.environments[host] = environment


def _read_geography(layout: _Layout, group: str, group_node: _Node, group_vars_dir: Path,
                    bounds: Bounds) -> None:
    geography = _Node(layout.hosts.file, group_node.path, group, group_node.line).as_enum(Geography)
    geo_vars_file = group_vars_dir / f"{group}.yml"
    if geo_vars_file.exists():
        geo_node = _load(geo_vars_file).get("geography")
        if geo_node.as_enum(Geography) is not geography:
            raise geo_node.fail(f"{geography.value} (the group of this file)", str(geo_node.value))
    for region_group, region_group_node in group_node.get("children").items():
        if not region_group.startswith(REGION_GROUP_PREFIX):
            raise region_group_node.fail(f"a region group named {REGION_GROUP_PREFIX}<id>", region_group)
        region_vars = _load(group_vars_dir / f"{region_group}.yml")
        region = _region(region_vars, geography, bounds)
        expected_group = REGION_GROUP_PREFIX + region.id.replace("-", "_")
        if expected_group != region_group:
            raise region_vars.get("region").fail(f"the id matching group {region_group}", region.id)
        if region.id in layout.regions:
            raise region_vars.get("region").fail("a region id used once", f"{region.id} twice")
        layout.regions[region.id] = region
        layout.partner_nodes[region.id] = region_vars.get("failover_partner")
        layout.replicates_nodes[region.id] = region_vars.get("database").get("replicates_from")
        for host, host_node in region_group_node.get("hosts").items():
            if host in layout.cluster_nodes:
                raise host_node.fail("a cluster name used once", f"also in {layout.region_group_of[host]}")
            layout.cluster_nodes[host] = host_node
            layout.region_group_of[host] = region_group
            layout.clusters[host] = _cluster(host, host_node, region, bounds)


def _check_regions(layout: _Layout, group_vars_dir: Path) -> None:
    """Failover partners and replication sources name real regions; demand shares sum to 1."""
    regions = layout.regions
    region_ids = ", ".join(sorted(regions))
    for region in regions.values():
        if region.failover_partner not in regions or region.failover_partner == region.id:
            raise layout.partner_nodes[region.id].fail(f"another known region ({region_ids})",
                                                       region.failover_partner)
        source = region.database.replicates_from
        if region.database.role is DbRole.READ_REPLICA:
            if source not in regions or regions[source].database.role is not DbRole.WRITE_PRIMARY:
                primaries = ", ".join(sorted(r.id for r in regions.values()
                                             if r.database.role is DbRole.WRITE_PRIMARY))
                raise layout.replicates_nodes[region.id].fail(f"a write-primary region ({primaries})",
                                                              str(source))
        elif source is not None:
            raise layout.replicates_nodes[region.id].fail("null for a write primary", source)
    demand = sum(r.traffic.demand_share for r in regions.values())
    if abs(demand - 1.0) > 1e-6:
        raise InventoryError(str(group_vars_dir / "region_*.yml"), "traffic.demand_share",
                             "shares over all regions summing to 1", found=f"{demand:g}")


def _check_residency_partners(layout: _Layout) -> None:
    """A region of a restricted residency zone (EU data stays in the EU) fails over inside its zone."""
    for region in layout.regions.values():
        partner = layout.regions[region.failover_partner]
        zone = region.residency_zone
        if zone in RESTRICTED_RESIDENCY_ZONES and partner.residency_zone != zone:
            raise layout.partner_nodes[region.id].fail(
                f"a region of the {region.residency_zone} residency zone (its data must stay there)",
                f"{partner.id} in zone {partner.residency_zone}",
            )


def _check_capacity_plan(shared: _AllVars, layout: _Layout) -> None:
    """The prod clusters' capacity weights reproduce opsconsole_provider_plan per geography, within
    opsconsole_targets.provider_mix_tolerance: a weight off the plan (a typo x10) is refused here rather
    than found later as a permanent provider-mix finding. The error points at the heaviest prod cluster
    of the cloud furthest off its plan."""
    tolerance = shared.targets.provider_mix_tolerance
    for geography, plan in shared.provider_plan.items():
        prod = [
            c for c in layout.clusters.values()
            if c.environment is Environment.PROD and layout.regions[c.region].geography is geography
        ]
        total = sum(c.capacity_weight for c in prod)
        if total <= 0:
            continue
        share = {cloud: sum(c.capacity_weight for c in prod if c.cloud is cloud) / total for cloud in Cloud}
        worst = max(Cloud, key=lambda cloud: (abs(share[cloud] - plan.get(cloud, 0.0)), cloud.value))
        if abs(share[worst] - plan.get(worst, 0.0)) <= tolerance + 1e-9:
            continue
        over = max(Cloud, key=lambda cloud: share[cloud] - plan.get(cloud, 0.0))
        culprit = max((c for c in prod if c.cloud is over), key=lambda c: (c.capacity_weight, c.name))
        planned = ", ".join(f"{cloud.value} {plan.get(cloud, 0.0):.0%}" for cloud in Cloud)
        observed = ", ".join(f"{cloud.value} {share[cloud]:.0%}" for cloud in Cloud)
        raise layout.cluster_nodes[culprit.name].get("capacity_weight").fail(
            f"prod capacity weights of {geography.value} on the provider plan ({planned}, "
            f"± {tolerance:.0%})",
            f"{culprit.capacity_weight:g}, which makes {observed}",
        )


def _check_accounts(shared: _AllVars, layout: _Layout) -> None:
    """Cloud accounts name known regions and clusters; every region has a prod cluster."""
    region_ids = ", ".join(sorted(layout.regions))
    for region_id in shared.accounts.aws_profiles:
        if region_id not in layout.regions:
            raise shared.node.get("opsconsole_clouds").get("aws").get("profiles").fail(
                f"region ids as keys ({region_ids})", region_id
            )
    for cluster_name in shared.accounts.kube_contexts:
        if cluster_name not in layout.clusters:
            raise shared.node.get("opsconsole_clouds").get("kubernetes").get("contexts").fail(
                "cluster names of the inventory as keys", cluster_name
            )
    for region in layout.regions.values():
        if not any(c.environment is Environment.PROD for c in layout.clusters.values()
                   if c.region == region.id):
            raise layout.top.fail(f"at least one prod cluster in region {region.id}")


def _accounts(node: _Node) -> CloudAccounts:
    def optional_str(parent: _Node | None, key: str) -> str | None:
        child = parent.opt(key) if parent is not None else None
        return None if child is None or child.value is None else child.as_str()

    def str_map(parent: _Node | None, key: str) -> dict[str, str]:
        child = parent.opt(key) if parent is not None else None
        if child is None or child.value is None:
            return {}
        return {name: value.as_str() for name, value in child.items()}

    aws, gcp, azure, kube = (node.opt(k) for k in ("aws", "gcp", "azure", "kubernetes"))
    return CloudAccounts(
        aws_default_profile=optional_str(aws, "default_profile"),
        aws_profiles=str_map(aws, "profiles"),
        gcp_project=optional_str(gcp, "project"),
        azure_subscription_id=optional_str(azure, "subscription_id"),
        azure_workspace_id=optional_str(azure, "workspace_id"),
        kubeconfig=optional_str(kube, "kubeconfig"),
        kube_contexts=str_map(kube, "contexts"),
    )


def _bounds(node: _Node) -> Bounds:
    return Bounds(
        hpa_pods=node.get("hpa_pods").as_range(IntRange(1, 10_000)),
        cluster_nodes=node.get("cluster_nodes").as_range(IntRange(0, 10_000)),
        read_replicas=node.get("read_replicas").as_range(IntRange(0, 100)),
        redis_nodes=node.get("redis_nodes").as_range(IntRange(1, 1000)),
        storage_tb=node.get("storage_tb").as_range(IntRange(1, 100_000)),
    )


def _targets(node: _Node) -> Targets:
    latency = node.get("latency")
    availability = node.get("availability")
    throughput = node.get("throughput")
    cost = node.get("cost_mix")
    cost_mix = {key: cost.get(key).as_float(0.0, 1.0) for key in ("reserved", "spot", "on_demand")}
    if abs(sum(cost_mix.values()) - 1.0) > 1e-6:
        raise cost.fail("reserved + spot + on_demand summing to 1", f"{sum(cost_mix.values()):g}")
    return Targets(
        global_avg_latency_ms=latency.get("global_avg_ms").as_float(1, 60_000),
        regional_avg_latency_ms=latency.get("regional_avg_ms").as_float(1, 60_000),
        api_p95_ms=latency.get("api_p95_ms").as_float(1, 60_000),
        db_query_p95_ms=latency.get("db_query_p95_ms").as_float(1, 60_000),
        availability_platform=availability.get("platform").as_float(0.5, 0.999999),
        availability_db=availability.get("database").as_float(0.5, 0.999999),
        availability_cdn=availability.get("cdn").as_float(0.5, 0.999999),
        rpo_db_s=node.get("rpo").get("database_s").as_float(1, 86_400),
        api_rps=throughput.get("api_rps").as_float(1),
        db_tps=throughput.get("db_tps").as_float(1),
        concurrent_users=throughput.get("concurrent_users").as_int(1),
        cost_mix=cost_mix,
        cost_mix_tolerance=cost.get("tolerance").as_float(0.0, 1.0),
        provider_mix_tolerance=node.get("provider_mix_tolerance").as_float(0.0, 1.0),
        # RDS keeps 1-35 days of automated backups; Cloud SQL and Azure allow as much: 1-35 is checkable.
        backup_pitr_days=node.get("backup").get("pitr_days").as_int(1, 35),
        burst_headroom=node.get("headroom").get("burst").as_float(1.0, 100.0),
        growth_headroom=node.get("headroom").get("growth").as_float(1.0, 1000.0),
    )


def _services(node: _Node, bounds: Bounds) -> dict[str, ServiceSpec]:
    services: dict[str, ServiceSpec] = {}
    for name, svc in node.items():
        environments = tuple(e.as_enum(Environment) for e in svc.get("environments").as_list())
        if not environments:
            raise svc.get("environments").fail("at least one environment")
        services[name] = ServiceSpec(
            name=name,
            criticality=svc.get("criticality").as_enum(Criticality),
            consistency=svc.get("consistency").as_enum(Consistency),
            environments=environments,
            hpa=svc.get("hpa").as_range(bounds.hpa_pods),
            traffic_share=svc.get("traffic_share").as_float(0.0, 1.0),
            rps_per_pod=svc.get("rps_per_pod").as_float(1.0),
            resident_data=svc.get("resident_data").as_bool(),
        )
    if not services:
        raise node.fail("at least one service")
    return services


def _region(node: _Node, geography: Geography, bounds: Bounds) -> RegionSpec:
    region_id = node.get("region").as_str()
    timezone_node = node.get("region_timezone")
    timezone = timezone_node.as_str()
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise timezone_node.fail("an IANA time zone such as Europe/Berlin", timezone) from None
    cloud_regions = {
        _Node(node.file, child.path, key, child.line).as_enum(Cloud): child.as_str()
        for key, child in node.get("cloud_regions").items()
    }
    db = node.get("database")
    replicates = db.get("replicates_from")
    traffic = node.get("traffic")
    return RegionSpec(
        id=region_id,
        name=node.get("region_name").as_str(),
        tier=node.get("region_tier").as_int(1, 2),
        role=node.get("region_role").as_enum(RegionRole),
        geography=geography,
        timezone=timezone,
        failover_partner=node.get("failover_partner").as_str(),
        residency_zone=node.get("residency_zone").as_str(),
        cloud_regions=cloud_regions,
        database=DatabaseSpec(
            cloud=db.get("cloud").as_enum(Cloud),
            role=db.get("role").as_enum(DbRole),
            replicates_from=None if replicates.value is None else replicates.as_str(),
            # The seed's per-region bounds (opsconsole_bounds): 1-10 read replicas, 1-100 TB.
            read_replicas=db.get("read_replicas").as_int(bounds.read_replicas.min, bounds.read_replicas.max),
            storage_tb=db.get("storage_tb").as_int(bounds.storage_tb.min, bounds.storage_tb.max),
        ),
        cache=CacheSpec(
            nodes=node.get("cache").get("nodes").as_int(bounds.redis_nodes.min, bounds.redis_nodes.max)
        ),
        traffic=TrafficSpec(
            routing=traffic.get("routing").as_enum(RoutingPolicy),
            demand_share=traffic.get("demand_share").as_float(0.0, 1.0),
            base_latency_ms=traffic.get("base_latency_ms").as_float(1, 10_000),
        ),
    )


def _cluster(name: str, node: _Node, region: RegionSpec, bounds: Bounds) -> ClusterSpec:
    cloud = node.get("cloud").as_enum(Cloud)
    nodes = node.get("nodes").as_range(bounds.cluster_nodes)
    reserved = node.get("reserved_nodes")
    return ClusterSpec(
        name=name,
        region=region.id,
        cloud=cloud,
        kind=KIND_OF_CLOUD[cloud],
        environment=Environment.PROD,  # replaced by the env_ group membership once all groups are read
        cloud_region=node.get("cloud_region").as_str(),
        capacity_weight=node.get("capacity_weight").as_float(0.0),
        nodes=nodes,
        instance_type=node.get("instance_type").as_str(),
        pods_per_node=node.get("pods_per_node").as_int(1, 1000),
        reserved_nodes=reserved.as_int(0, nodes.max),
        spot_ratio=node.get("spot_ratio").as_float(0.0, 1.0),
    )


#: The list prices of API calls, next to hosts.yml (see inventory/prices.yml).
PRICES_FILE = "prices.yml"


# -- how often each cloud source asks (opsconsole_clouds.<cloud>.metrics_cadence_s / describe_cadence_s) ----


@dataclass(frozen=True)
class SourceCadence:
    """How often one cloud source polls: its metrics, and its describe-style calls (ASGs, RDS...).

    ``0`` means "at every refresh" (no caching between refreshes).
    """

    metrics_s: float = 60.0
    describe_s: float = 300.0


#: The clouds whose sources poll on a cadence, and their defaults (standard metrics: 1-minute period).
CADENCE_CLOUDS = ("aws", "gcp", "azure")
#: Bounds of the settings: 0 (every refresh) or 10 s .. 1 h for metrics, 30 s .. 1 day for describes.
METRICS_CADENCE_RANGE = (10.0, 3600.0)
DESCRIBE_CADENCE_RANGE = (30.0, 86_400.0)


def _cadence_value(parent: _Node, key: str, default: float, bounds: tuple[float, float]) -> float:
    child = parent.opt(key)
    if child is None or child.value is None:
        return default
    lo, hi = bounds
    expected = f"0 (every refresh) or a number of seconds from {lo:g} to {hi:g}"
    if isinstance(child.value, bool) or not isinstance(child.value, int | float):
        raise child.fail(expected, repr(child.value))
    value = float(child.value)
    if math.isnan(value) or (value != 0 and not lo <= value <= hi):
        raise child.fail(expected, f"{child.value!r}")
    return value


def _cadences(clouds_node: _Node | None) -> dict[str, SourceCadence]:
    out = {cloud: SourceCadence() for cloud in CADENCE_CLOUDS}
    if clouds_node is None or clouds_node.value is None:
        return out
    for cloud in CADENCE_CLOUDS:
        node = clouds_node.opt(cloud)
        if node is None or node.value is None:
            continue
        node.mapping()
        out[cloud] = SourceCadence(
            metrics_s=_cadence_value(node, "metrics_cadence_s", 60.0, METRICS_CADENCE_RANGE),
            describe_s=_cadence_value(node, "describe_cadence_s", 300.0, DESCRIBE_CADENCE_RANGE),
        )
    return out


def source_cadences(inventory: Path | str) -> dict[str, SourceCadence]:
    """Each cloud source's cadence from ``opsconsole_clouds`` in the inventory's ``group_vars/all.yml``.

    Args:
        inventory: the inventory directory (``fleet.source``) or its ``hosts.yml``.

    Raises:
        InventoryError: a cadence out of bounds or not a number (naming the file, key and line).
    """
    root = Path(inventory)
    if root.is_file():
        root = root.parent
    all_yml = root / "group_vars" / "all.yml"
    if not all_yml.exists():
        return {cloud: SourceCadence() for cloud in CADENCE_CLOUDS}
    return _cadences(_load(all_yml).opt("opsconsole_clouds"))


def load_prices(inventory: Path | str) -> dict[str, dict[str, Price]]:
    """The operator's list prices of API calls (``prices.yml`` next to ``hosts.yml``); none: all free.

    Raises:
        InventoryError: the file is not valid YAML or a price is malformed (naming the file and key).
    """
    root = Path(inventory)
    if root.is_file():
        root = root.parent
    path = root / PRICES_FILE
    if not path.exists():
        return {}
    node = _load(path)
    try:
        return parse_prices(node.value, where=str(path))
    except ValueError as exc:
        raise InventoryError(str(path), "prices", "valid list prices", found=str(exc)) from None
