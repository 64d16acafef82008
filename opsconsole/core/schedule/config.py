"""``schedules.yml`` read and validated into :class:`Schedules` (one :class:`UnitSchedule` per unit).

Why it exists: reading the file — its keys, countries, costs, freezes, and each environment's (and
region's) time specs — is validation that branches by nature; it lives apart from the calendar
arithmetic (:mod:`opsconsole.core.schedule.calendar`) and from the engine that acts on it.

Use::

    schedules = load_schedules(fleet.source, fleet)     # raises InventoryError / ScheduleSpecError
    for unit in schedules.of("staging"): ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import holidays as holidays_lib

from opsconsole.core.change.rbac import Scope, _only_keys
from opsconsole.core.change.risk import ChangeFreeze, _freeze
from opsconsole.core.fleet.inventory import _Node, _read_yaml
from opsconsole.core.fleet.model import Environment, Fleet
from opsconsole.core.schedule.calendar import UnitSchedule
from opsconsole.core.schedule.timespec import TimeSpec, parse_period, parse_spec, period_schedule, zone

__all__ = ["DEFAULT_LEAD", "SCHEDULES_FILE", "Schedules", "load_schedules"]

SCHEDULES_FILE = "schedules.yml"
DEFAULT_LEAD = timedelta(minutes=30)


@dataclass(frozen=True)
class Schedules:
    """schedules.yml: one :class:`UnitSchedule` per (environment, region) with clusters, and freezes."""

    units: tuple[UnitSchedule, ...]
    freezes: tuple[ChangeFreeze, ...]
    source: Path

    @property
    def environments(self) -> tuple[str, ...]:
        return tuple(sorted({u.environment for u in self.units}))

    def of(self, environment: str, region: str | None = None) -> list[UnitSchedule]:
        return [u for u in self.units if u.environment == environment and region in (None, u.region)]

    def freezes_at(self, at: datetime, environment: str, region: str) -> list[ChangeFreeze]:
        scope = Scope.of(environments=[environment], regions=[region])
        return [f for f in self.freezes if f.in_force(at) and f.applies_to(scope)]


def load_schedules(inventory_dir: Path, fleet: Fleet) -> Schedules:
    """Read and validate ``schedules.yml`` next to ``hosts.yml``.

    Raises:
        InventoryError: a key is wrong (names the file, the key path and what was expected).
        ScheduleSpecError: a time spec or period cannot be read (names the file and key, the part, why).
    """
    root = inventory_dir if inventory_dir.is_dir() else inventory_dir.parent
    path = root / SCHEDULES_FILE
    data = _read_yaml(path, str(path))
    top = _Node(str(path), "", data, getattr(data, "line", 1))
    _only_keys(top, {"version", "countries", "freezes", "costs", "environments"})
    version = top.get("version")
    if version.as_int() != 1:
        raise version.fail("1", str(version.value))
    countries = _countries(_given(top.opt("countries")), fleet)
    prices = _prices(_given(top.opt("costs")))
    freezes_node = _given(top.opt("freezes"))
    freezes = [] if freezes_node is None else [_freeze(item, fleet) for item in freezes_node.as_list()]
    units: list[UnitSchedule] = []
    for env_name, env_node in top.get("environments").items():
        units.extend(_environment_units(env_name, env_node, fleet, countries, prices))
    return Schedules(tuple(units), tuple(freezes), path)


def _given(node: _Node | None) -> _Node | None:
    """``node``, or ``None`` for a key that is missing or null (both mean "not given")."""
    return None if node is None or node.value is None else node


def _countries(node: _Node | None, fleet: Fleet) -> dict[str, str]:
    """``countries``: region → the country whose public holidays it keeps."""
    if node is None:
        return {}
    countries: dict[str, str] = {}
    for region, child in node.items():
        if region not in fleet.regions:
            raise child.fail(f"a region of the fleet ({', '.join(sorted(fleet.regions))})", region)
        countries[region] = _country(child)
    return countries


def _prices(node: _Node | None) -> dict[str, float]:
    """``costs.instance_hourly_usd``: instance type → USD per hour (for the saving estimate)."""
    if node is None:
        return {}
    _only_keys(node, {"instance_hourly_usd"})
    price_node = _given(node.opt("instance_hourly_usd"))
    if price_node is None:
        return {}
    return {name: child.as_float(0.0, 10_000.0) for name, child in price_node.items()}


def _environment_units(
    env_name: str, env_node: _Node, fleet: Fleet, countries: Mapping[str, str], prices: Mapping[str, float]
) -> list[UnitSchedule]:
    """One environment's entry: a unit per region where it has clusters (none if listed empty)."""
    env = _Node(env_node.file, env_node.path, env_name, env_node.line).as_enum(Environment)
    if env is Environment.PROD:
        raise env_node.fail("staging or dev (production is never put to sleep)", env_name)
    regions_with_clusters = sorted({c.region for c in fleet.clusters.values() if c.environment is env})
    if env_node.value is None or env_node.mapping() == {}:
        return []  # listed without a schedule: not scheduled
    _only_keys(env_node, {*_UNIT_KEYS, "regions"})
    per_region: dict[str, _Node] = {}
    regions_node = _given(env_node.opt("regions"))
    if regions_node is not None:
        for region, node in regions_node.items():
            if region not in regions_with_clusters:
                raise node.fail(
                    f"a region where {env_name} has clusters ({', '.join(regions_with_clusters)})", region
                )
            _only_keys(node, set(_UNIT_KEYS))
            per_region[region] = node
    units: list[UnitSchedule] = []
    for region in regions_with_clusters:
        clusters = tuple(sorted(c.name for c in fleet.clusters.values()
                                if c.environment is env and c.region == region))
        cost = 0.0
        for name in clusters:
            spec = fleet.clusters[name]
            cost += math.ceil((spec.nodes.min + spec.nodes.max) / 2) * prices.get(spec.instance_type, 0.0)
        units.append(_unit(env.value, region, env_node, per_region.get(region), fleet,
                           countries, clusters, cost))
    return units


_UNIT_KEYS = ("uptime", "downtime", "periods", "timezone", "holidays", "warning_lead_min")


def _country(node: _Node) -> str:
    code = node.as_str().upper()
    try:
        holidays_lib.country_holidays(code)
    except NotImplementedError:
        raise node.fail("a country code the holidays package knows (US, DE, IE, SG...)", code) from None
    return code


def _unit(
    environment: str, region: str, env_node: _Node, region_node: _Node | None, fleet: Fleet,
    countries: Mapping[str, str], clusters: tuple[str, ...], cost: float,
) -> UnitSchedule:
    def pick(key: str) -> _Node | None:
        if region_node is not None and region_node.has(key):
            return region_node.get(key)
        return env_node.opt(key)

    tz_node = pick("timezone")
    timezone = fleet.regions[region].timezone
    if tz_node is not None and tz_node.value is not None:
        timezone = tz_node.as_str()
        try:
            zone(timezone)
        except KeyError:
            raise tz_node.fail("an IANA time zone such as Europe/Berlin", timezone) from None

    def spec(key: str) -> TimeSpec | None:
        node = pick(key)
        if node is None or node.value is None:
            return None
        return parse_spec(node.as_str(), schedule=f"{node.file}: {node.path}", tz=timezone)

    uptime, downtime = spec("uptime"), spec("downtime")
    periods_node = pick("periods")
    periods = None
    if periods_node is not None and periods_node.value is not None:
        if uptime is not None:
            raise periods_node.fail("either uptime or periods, not both")
        name = f"{periods_node.file}: {periods_node.path}"
        items = []
        for i, item in enumerate(periods_node.as_list()):
            raw = {str(k): v for k, v in item.mapping().items()}
            items.append(parse_period(raw, schedule=f"{name}[{i}]"))
        periods = period_schedule(items, timezone, schedule=name)

    holidays_node = pick("holidays")
    holiday_countries: tuple[str, ...] = ()
    if holidays_node is not None and holidays_node.value is not None:
        if isinstance(holidays_node.value, bool):
            if holidays_node.value:
                if region not in countries:
                    raise holidays_node.fail(f"a country for {region} under the top-level countries key")
                holiday_countries = (countries[region],)
        else:
            holiday_countries = tuple(_country(n) for n in holidays_node.as_list())

    lead_node = pick("warning_lead_min")
    lead = DEFAULT_LEAD if lead_node is None else timedelta(minutes=lead_node.as_float(0, 24 * 60))
    return UnitSchedule(
        environment=environment, region=region, timezone=timezone, uptime=uptime, downtime=downtime,
        periods=periods, holiday_countries=holiday_countries, lead=lead, clusters=clusters, hourly_cost=cost,
    )
