"""The risk policy: how risky a change request is, and what it needs before it may run.

Why this module exists: a request (an :class:`~opsconsole.core.change.actions.ActionPlan`) from any face
must be
judged the same way — how many approvals it needs, from whom, for how long it may wait, and whether a
change freeze refuses it — and the judgement must be explained in words an on-call SRE accepts at 3 a.m.
("prod scale-down of checkout in eu-west-1 by 45 % (12 → 6 replicas) is over 30 %"). The rules are data
in ``inventory/policy.yml``, so the team changes them by review, not by release.

How to use it::

    policy = load_policy(inventory_dir, fleet)                    # once, at start-up
    plan = plan_scale(fleet, snapshot, service="checkout", region="eu-west-1", replicas=6)
    assessment = assess(policy, plan, fleet, snapshot, clock.now())
    assessment.level, assessment.approvals_needed, assessment.reasons
    directory.eligible(Permission.APPROVE, assessment.approver_scope)   # who may approve
    if assessment.freeze: ...                                     # refused unless glass is broken

How a request is judged, in order:

1. **Rules**, first match wins. A rule matches on the action, the environments the request touches
   (any of them), and conditions on a scale's numbers: ``scale_down_over_pct`` (the largest cut of
   running replicas in any cluster), ``below_load`` (fewer replicas, or a lower HPA max, than the
   current load needs at the HPA's CPU target), ``scale_up`` (nothing lowered). A fact the snapshot cannot
   tell (no snapshot, a workload missing from it) never makes a request look safer: an unknown condition
   matches a medium or high rule and never a low one, and the reasons say it was unknown. No rule
   matching at all gives medium.
2. **Escalation** by live state: in a touched region whose error-budget burn rate (either window, as
   :mod:`opsconsole.core.fleet.findings` computes it) is at or over the threshold, or whose p95 is at or over
   a
   fraction of the target, the level rises one step (low → medium → high), and the approvals to the
   level's number in the ``levels`` table. A prod scale that is not known to be a scale-up, with its
   load unknown, is at least medium whatever the rules say.
3. **Change freezes**: a freeze in force over the request's environments and regions refuses medium and
   high requests unless glass is broken; the assessment names it (the approval pipeline refuses), and
   low requests pass.

Pure: no I/O beyond :func:`load_policy`, no clock (``now`` is given), no face.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from opsconsole.core.change.actions import ActionName, ActionPlan
from opsconsole.core.change.rbac import Scope, _only_keys, _read_environments, _read_regions
from opsconsole.core.fleet.engine import Snapshot
from opsconsole.core.fleet.findings import BURN_RATE_HIGH
from opsconsole.core.fleet.inventory import _Node, _read_yaml
from opsconsole.core.fleet.model import Environment, Fleet, RegionTraffic, WorkloadState

__all__ = [
    "HPA_TARGET_UTILISATION",
    "ApproverScope",
    "ChangeFreeze",
    "EmergencySwitch",
    "Escalation",
    "Risk",
    "RiskAssessment",
    "RiskPolicy",
    "RiskRule",
    "assess",
    "load_policy",
    "plan_scope",
    "with_emergency",
]

POLICY_FILE = "policy.yml"
#: The CPU utilisation the fleet's HPAs aim at (70 % of requested CPU, as the scale playbook's HPAs and
#: the sandbox set them). The load a workload carries needs ``ceil(ready × cpu / target)`` replicas —
#: the HPA's own formula — so fewer than that is "below what the current load needs".
HPA_TARGET_UTILISATION = 0.7
#: Defaults when policy.yml leaves them out: the burn rate that opens a ticket in :mod:`policy`, and
#: 90 % of the p95 target.
DEFAULT_BURN_THRESHOLD = BURN_RATE_HIGH
DEFAULT_P95_OF_TARGET = 0.9
DEFAULT_TTL_S = 30 * 60
#: Bounds on how long a request may wait: less than a minute cannot be approved by a human; over a
#: week the fleet it was planned on is gone.
_TTL_RANGE = (60.0, 7 * 24 * 3600.0)
_NO_RULE = "(no rule matched)"


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _RISK_ORDER.index(self)

    def raised(self) -> Risk:
        """One level up (high stays high)."""
        return _RISK_ORDER[min(self.rank + 1, len(_RISK_ORDER) - 1)]


_RISK_ORDER: tuple[Risk, ...] = (Risk.LOW, Risk.MEDIUM, Risk.HIGH)


class ApproverScope(StrEnum):
    """Whose grants count as an approver's for a rule."""

    #: Approvers whose grants cover every environment and region the request touches.
    REGIONS_INVOLVED = "regions_involved"
    #: Approvers of the request's environments, in any region.
    ENVIRONMENT = "environment"


@dataclass(frozen=True)
class RiskAssessment:
    """The verdict on one request."""

    level: Risk
    approvals_needed: int
    #: What an approver's grants must cover (see :meth:`opsconsole.core.change.rbac.Directory.eligible`).
    approver_scope: Scope
    #: Why, in words, most important first.
    reasons: tuple[str, ...]
    #: The name of the policy rule that matched (``"(no rule matched)"`` if none did).
    rule: str
    #: ``"black-friday (2026-11-27 00:00 → 2026-11-30 23:59 UTC): <reason>"`` when a freeze in force
    #: refuses this request (unless glass is broken), else ``None``.
    freeze: str | None
    #: How long the request may wait for its approvals, in seconds.
    ttl_s: float

    @property
    def refused(self) -> bool:
        """True when a change freeze refuses the request (unless glass is broken)."""
        return self.freeze is not None


@dataclass(frozen=True)
class RiskRule:
    """One rule of policy.yml. ``None`` in a match field means "any"."""

    name: str
    actions: frozenset[ActionName] | None
    environments: frozenset[str] | None
    #: Matches a scale cutting some cluster's running replicas by more than this percentage.
    scale_down_over_pct: float | None
    #: When true, matches a scale leaving fewer replicas (or a lower HPA max) than the load needs.
    below_load: bool
    #: When true, matches a scale that lowers nothing (replicas and HPA bounds stay or grow).
    scale_up: bool
    risk: Risk
    approvals: int
    approvers: ApproverScope
    ttl_s: float | None
    #: Whether live state (error budget, p95) may raise this rule's level.
    escalate: bool = True

    @property
    def has_conditions(self) -> bool:
        return self.scale_down_over_pct is not None or self.below_load or self.scale_up


@dataclass(frozen=True)
class Escalation:
    """When live state in a touched region raises the risk one level."""

    #: Live figures are the prod front doors': only requests touching these environments are escalated.
    environments: frozenset[str]
    #: Error-budget burn rate (error rate / error budget), on the 5 m or the 1 h window.
    error_budget_burn: float
    #: p95 at or over this fraction of ``targets.api_p95_ms``.
    p95_of_target: float


@dataclass(frozen=True)
class ChangeFreeze:
    """A window in which medium and high requests are refused (unless glass is broken)."""

    name: str
    start: datetime
    end: datetime
    environments: frozenset[str] | None
    regions: frozenset[str] | None
    reason: str

    def in_force(self, now: datetime) -> bool:
        return self.start <= now <= self.end

    def applies_to(self, scope: Scope) -> bool:
        envs_hit = self.environments is None or bool(self.environments & scope.environments)
        regions_hit = self.regions is None or bool(self.regions & scope.regions)
        return envs_hit and regions_hit

    def describe(self) -> str:
        start, end = self.start.strftime("%Y-%m-%d %H:%M"), self.end.strftime("%Y-%m-%d %H:%M")
        start_zone, end_zone = _zone_name(self.start), _zone_name(self.end)
        when = (f"{start} → {end} {end_zone}" if start_zone == end_zone
                else f"{start} {start_zone} → {end} {end_zone}")
        return f"{self.name} ({when}): {self.reason}"


def _zone_name(at: datetime) -> str:
    name = at.tzname() or ""
    return "UTC" if name in ("UTC", "UTC+00:00", "Z") else name


@dataclass(frozen=True)
class RiskPolicy:
    """policy.yml, validated."""

    rules: tuple[RiskRule, ...]
    escalation: Escalation
    #: Approvals a level needs when escalation (or the unknown-load floor) sets the level.
    approvals: Mapping[Risk, int]
    freezes: tuple[ChangeFreeze, ...]
    default_ttl_s: float = DEFAULT_TTL_S
    #: The emergency freeze switch (:mod:`opsconsole.core.change.freeze`), asked on every assessment:
    #: returns the freeze while it is on (anything with ``describe()``), else ``None``. ``None`` here: no
    #: switch wired (a policy read from the file alone). See :func:`with_emergency`.
    emergency: Callable[[], EmergencySwitch | None] | None = field(default=None, compare=False)


class EmergencySwitch(Protocol):
    """What :attr:`RiskPolicy.emergency` returns while an emergency freeze is on."""

    def describe(self) -> str: ...


def with_emergency(policy: RiskPolicy, provider: Callable[[], EmergencySwitch | None]) -> RiskPolicy:
    """``policy`` with the emergency freeze switch wired: while ``provider()`` returns a freeze, every
    medium and high risk request is refused unless glass is broken, over the whole fleet, on top of the
    windows of policy.yml."""
    return dataclasses.replace(policy, emergency=provider)


# --------------------------------------------------------------------------------------------------
# What a plan touches, and what it does to a workload
# --------------------------------------------------------------------------------------------------


def plan_scope(plan: ActionPlan, fleet: Fleet) -> Scope:
    """The environments and regions a plan touches, from its targets and parameters.

    Clusters (``workload/<cluster>/…``, ``cluster/<name>``) count with their region and environment;
    ``region/``, ``dns/`` and ``database/`` targets with their region; a plan on production counts prod.
    A failback also touches the regions that serve the region's users now (they lose them).
    """
    environments: set[str] = set()
    regions: set[str] = set()
    env_param = plan.params.get("environment")
    if isinstance(env_param, str):
        environments.add(env_param)
    for target in plan.targets:
        kind, _, rest = target.partition("/")
        if kind in ("region", "dns", "database"):
            regions.add(rest)
        elif kind in ("workload", "cluster"):
            cluster = fleet.clusters.get(rest.split("/", 1)[0])
            if cluster is not None:
                regions.add(cluster.region)
                environments.add(cluster.environment.value)
        elif kind == "environment":
            environments.add(rest)
    for key in ("region", "from_region", "to_region"):
        value = plan.params.get(key)
        if isinstance(value, str):
            regions.add(value)
    if plan.action is ActionName.FAILBACK:
        for key, weights in plan.observed.items():
            if key.startswith("dns/") and isinstance(weights, Mapping):
                regions.update(r for r, w in weights.items() if r in fleet.regions and w)
    if plan.production:
        environments.add(Environment.PROD.value)
    return Scope(frozenset(environments), frozenset(regions))


@dataclass(frozen=True)
class _Change:
    """A scale's effect on one workload. ``None`` = unknown (no snapshot, or no record of it)."""

    cluster: str
    before: int | None
    after: int | None
    #: The most replicas the workload may run after the change: the replicas set, or the new HPA max.
    ceiling: int | None
    #: Whether some value goes down (replicas, HPA min or max).
    lowers: bool | None
    hpa_before: tuple[int, int] | None
    hpa_after: tuple[int, int] | None
    needed: int | None
    load: str


@dataclass(frozen=True)
class _ScaleFacts:
    service: str
    region: str
    environment: str
    hpa: bool
    changes: tuple[_Change, ...]
    #: Why figures are unknown, for the reasons ("no snapshot").
    unknown_why: str

    @property
    def where(self) -> bool:
        return len(self.changes) > 1

    def worst_cut(self) -> tuple[float, _Change] | None:
        """The largest cut in percent and its workload; ``None`` when a workload's figures are unknown."""
        best: tuple[float, _Change] | None = None
        for c in self.changes:
            if c.before is None or c.after is None:
                return None
            pct = (c.before - c.after) / c.before * 100 if c.before > 0 else 0.0
            if best is None or pct > best[0]:
                best = (pct, c)
        return best

    def summary(self) -> str:
        """The change in numbers, for the workload cut most: "31 → 28 replicas, its current load needs 23"."""
        if not self.changes:
            return ""
        worst = self.worst_cut()
        c = worst[1] if worst is not None else self.changes[0]
        if self.hpa and c.hpa_before and c.hpa_after:
            text = f"HPA {c.hpa_before[0]}–{c.hpa_before[1]} → {c.hpa_after[0]}–{c.hpa_after[1]}"
        elif c.before is not None and c.after is not None:
            text = f"{c.before} → {c.after} replicas"
        else:
            return ""
        if c.needed is not None:
            text += f", its current load needs {c.needed}"
        return text + (f", in {c.cluster}; {self.across()}" if self.where else "")

    def across(self) -> str:
        """Every cluster the plan changes, with its change: "the plan changes 3 clusters: eks-euw1-prod
        (14 → 12), gke-euw1-prod (3 → 12), aks-euw1-prod (3 → 12)" (a region-wide scale sets each)."""
        parts = []
        for c in self.changes:
            if self.hpa and c.hpa_before and c.hpa_after:
                change = f"HPA {c.hpa_before[0]}–{c.hpa_before[1]} → {c.hpa_after[0]}–{c.hpa_after[1]}"
            else:
                before = "?" if c.before is None else str(c.before)
                after = "?" if c.after is None else str(c.after)
                change = f"{before} → {after}"
            parts.append(f"{c.cluster} ({change})")
        return f"the plan changes {len(self.changes)} clusters: {', '.join(parts)}"

    def scale_up(self) -> bool | None:
        if any(c.lowers is None for c in self.changes):
            return None
        return not any(c.lowers for c in self.changes)

    def below_load(self) -> tuple[bool | None, _Change | None]:
        """(True, workload) if one is left below its load; (None, workload) if a load is unknown."""
        unknown: _Change | None = None
        for c in self.changes:
            if c.ceiling is not None and c.needed is not None:
                if c.ceiling < c.needed:
                    return True, c
            elif c.lowers is not False:
                unknown = unknown or c
        return (None, unknown) if unknown is not None else (False, None)


def _scale_facts(plan: ActionPlan, snapshot: Snapshot | None) -> _ScaleFacts:
    params = plan.params
    replicas = params.get("replicas")
    new_min, new_max = params.get("hpa_min"), params.get("hpa_max")
    changes: list[_Change] = []
    missing = False
    for target in plan.targets:
        if not target.startswith("workload/"):
            continue
        cluster = target.split("/")[1]
        observed = plan.observed.get(target)
        record = snapshot.get(target) if snapshot is not None else None
        live = record if isinstance(record, WorkloadState) else None
        before: int | None = None
        hpa_before: tuple[int, int] | None = None
        if isinstance(observed, Mapping) and observed.get("desired") is not None:
            before = int(observed["desired"])
            hpa_before = (int(observed["hpa_min"]), int(observed["hpa_max"]))
        elif live is not None:
            before, hpa_before = live.desired, (live.hpa_min, live.hpa_max)
        if before is None or live is None:
            missing = True
        needed, load = _needed(live)
        if isinstance(replicas, int):
            after: int | None = replicas
            ceiling: int | None = replicas
            lowers = None if before is None else replicas < before
            hpa_after = None
        else:
            lo = new_min if isinstance(new_min, int) else (hpa_before[0] if hpa_before else None)
            hi = new_max if isinstance(new_max, int) else (hpa_before[1] if hpa_before else None)
            hpa_after = (lo, hi) if lo is not None and hi is not None else None
            ceiling = hi
            after = None if before is None or lo is None or hi is None else max(lo, min(hi, before))
            if hpa_before is None or hpa_after is None or after is None or before is None:
                lowers = None
            else:
                lowers = after < before or hpa_after[0] < hpa_before[0] or hpa_after[1] < hpa_before[1]
        changes.append(_Change(cluster, before, after, ceiling, lowers, hpa_before, hpa_after, needed, load))
    return _ScaleFacts(
        service=str(params.get("service", "?")),
        region=str(params.get("region", "?")),
        environment=str(params.get("environment", Environment.PROD.value)),
        hpa=not isinstance(replicas, int),
        changes=tuple(changes),
        unknown_why=("no snapshot" if snapshot is None
                     else "not in the latest snapshot" if missing else ""),
    )


def _pct(share: float) -> str:
    return f"{share * 100:.0f} %"


def _needed(live: WorkloadState | None) -> tuple[int | None, str]:
    """Replicas the workload's current load needs at the HPA target, and the figures it came from."""
    if live is None or (live.ready <= 0 < live.desired):
        return None, ""
    busy = live.ready * live.cpu_utilisation
    needed = math.ceil(busy / HPA_TARGET_UTILISATION - 1e-9)
    return needed, (f"{live.ready} ready pods at {_pct(live.cpu_utilisation)} CPU, "
                    f"HPA target {_pct(HPA_TARGET_UTILISATION)}")


# --------------------------------------------------------------------------------------------------
# Assessment
# --------------------------------------------------------------------------------------------------


def _describe(plan: ActionPlan, scope: Scope, facts: _ScaleFacts | None = None) -> str:
    p = plan.params
    if plan.action is ActionName.FAILOVER:
        return f"prod failover of {p.get('from_region')} to {p.get('to_region')}"
    if plan.action is ActionName.FAILBACK:
        return f"prod failback of {p.get('region')}"
    if plan.action in (ActionName.ENV_STOP, ActionName.ENV_START):
        verb = "stop" if plan.action is ActionName.ENV_STOP else "start"
        where = f" in {p['region']}" if p.get("region") else ""
        return f"{verb} of {p.get('environment')}{where}"
    if plan.action is ActionName.SCALE:
        text = f"{p.get('environment', 'prod')} scale of {p.get('service')} in {p.get('region')}"
        return text + (f" ({facts.summary()})" if facts is not None and facts.summary() else "")
    if plan.action in (ActionName.NODES, ActionName.REPLICAS, ActionName.CACHE, ActionName.DATABASE):
        env = "prod" if plan.production else "non-prod"
        what = {ActionName.NODES: "node change", ActionName.REPLICAS: "read-replica change",
                ActionName.CACHE: "Redis change", ActionName.DATABASE: f"database {p.get('change')}"}
        text = f"{env} {what[plan.action]}"
        return f"{text} ({plan.summary[0]})" if plan.summary else text
    return f"{plan.action.value} of {scope.describe()}"


class _Judge:
    """One assessment's working state: the facts, and the reasons as they are found."""

    def __init__(self, policy: RiskPolicy, plan: ActionPlan, fleet: Fleet, snapshot: Snapshot | None) -> None:
        self.policy = policy
        self.plan = plan
        self.fleet = fleet
        self.snapshot = snapshot
        self.scope = plan_scope(plan, fleet)
        self.facts = _scale_facts(plan, snapshot) if plan.action is ActionName.SCALE else None

    # -- conditions: True / False / None (unknown) with the reason when it holds or is unknown ---------

    def cut(self, threshold: float) -> tuple[bool | None, str]:
        f = self.facts
        if f is None:
            return False, ""
        worst = f.worst_cut()
        if worst is None:
            return None, (f"current replicas of {f.service} in {f.region} unknown ({f.unknown_why}): "
                          f"treated as a scale-down of over {threshold:g} %")
        pct, c = worst
        if pct <= threshold:
            return False, ""
        where = f" in {c.cluster}" if f.where else ""
        every = f"; {f.across()}" if f.where else ""
        return True, (f"{f.environment} scale-down of {f.service} in {f.region} by {pct:.0f} % "
                      f"({c.before} → {c.after} replicas{where}) is over {threshold:g} %{every}")

    def below_load(self) -> tuple[bool | None, str]:
        f = self.facts
        if f is None:
            return False, ""
        state, c = f.below_load()
        if state is None:
            why = f.unknown_why or "no load figures"
            return None, (f"current load of {f.service} in {f.region} unknown ({why}): "
                          f"treated as below what it needs")
        if not state or c is None:
            return False, ""
        where = f" in {c.cluster}" if f.where else ""
        what = f"an HPA max of {c.ceiling}" if f.hpa else f"{c.ceiling} replicas"
        every = f"; {f.across()}" if f.where else ""
        return True, (f"{f.environment} scale of {f.service} in {f.region} to {what}{where} is below the "
                      f"{c.needed} replicas its current load needs ({c.load}){every}")

    def scale_up(self) -> tuple[bool | None, str]:
        f = self.facts
        if f is None:
            return False, ""
        up = f.scale_up()
        if not up:
            return up, ""
        c = f.changes[0]
        if f.hpa and c.hpa_before and c.hpa_after:
            change = f"HPA {c.hpa_before[0]}–{c.hpa_before[1]} → {c.hpa_after[0]}–{c.hpa_after[1]}"
        else:
            change = f"{c.before} → {c.after} replicas"
        if f.where:
            return True, (f"{f.environment} scale-up of {f.service} in {f.region} within its bounds, "
                          f"lowering nothing; {f.across()}")
        return True, (f"{f.environment} scale-up of {f.service} in {f.region} ({change}) "
                      f"within its bounds, lowering nothing")

    def match(self, rule: RiskRule) -> tuple[bool, list[str]]:
        """Whether ``rule`` applies, and the reasons its conditions give."""
        if rule.actions is not None and self.plan.action not in rule.actions:
            return False, []
        if rule.environments is not None and not (rule.environments & self.scope.environments):
            return False, []
        checks: list[tuple[bool | None, str]] = []
        if rule.scale_down_over_pct is not None:
            checks.append(self.cut(rule.scale_down_over_pct))
        if rule.below_load:
            checks.append(self.below_load())
        if rule.scale_up:
            checks.append(self.scale_up())
        reasons: list[str] = []
        for state, why in checks:
            # An unknown fact never makes a request look safer: it matches a risky rule, not a low one.
            if state is False or (state is None and rule.risk is Risk.LOW):
                return False, []
            reasons.append(why)
        return True, reasons

    # -- live state ------------------------------------------------------------------------------------

    def live_reasons(self) -> list[str]:
        """Why live state in the touched regions raises the risk (empty: it does not)."""
        escalation = self.policy.escalation
        if not (escalation.environments & self.scope.environments):
            return []
        targets = self.fleet.targets
        out: list[str] = []
        for region in sorted(self.scope.regions):
            record = self.snapshot.get(f"traffic/{region}") if self.snapshot is not None else None
            if not isinstance(record, RegionTraffic):
                continue
            budget = targets.error_budget
            if budget > 0:
                burn_5m, burn_1h = record.error_rate / budget, record.error_rate_1h / budget
                if max(burn_5m, burn_1h) >= escalation.error_budget_burn:
                    out.append(f"{region} is burning its error budget at {max(burn_5m, burn_1h):.1f}x "
                               f"(5 m {burn_5m:.1f}x, 1 h {burn_1h:.1f}x; escalates from "
                               f"{escalation.error_budget_burn:g}x)")
            share = record.p95_ms / targets.api_p95_ms
            if share >= escalation.p95_of_target:
                out.append(f"{region} p95 is {record.p95_ms:.0f} ms, {_pct(share)} of the "
                           f"{targets.api_p95_ms:.0f} ms target (escalates from "
                           f"{_pct(escalation.p95_of_target)})")
        return out

    def unknown_live(self) -> str | None:
        if not (self.policy.escalation.environments & self.scope.environments):
            return None
        if self.snapshot is None:
            return "no snapshot: live state (error budget, p95) of the regions touched was not judged"
        blind = sorted(r for r in self.scope.regions
                       if not isinstance(self.snapshot.get(f"traffic/{r}"), RegionTraffic))
        if blind:
            return (f"no live figures for {', '.join(blind)} in the latest snapshot: "
                    f"error budget and p95 there were not judged")
        return None


def assess(
    policy: RiskPolicy, plan: ActionPlan, fleet: Fleet, snapshot: Snapshot | None, now: datetime
) -> RiskAssessment:
    """Judge one request: its risk level, the approvals it needs and from whom, and any freeze refusing it.

    Args:
        policy: From :func:`load_policy`.
        plan: The validated request.
        fleet: The inventory the plan was made on.
        snapshot: The latest snapshot, or ``None`` when the fleet could not be read (then the facts it
            would give are unknown, and unknown never counts as safe).
        now: The current time, timezone-aware (a fake clock's in tests).

    Raises:
        ValueError: ``now`` is naive.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"a naive datetime has no place in opsconsole: {now!r}")
    judge = _Judge(policy, plan, fleet, snapshot)
    scope = judge.scope
    rule: RiskRule | None = None
    reasons: list[str] = []
    for candidate in policy.rules:
        matched, because = judge.match(candidate)
        if matched:
            rule, reasons = candidate, because
            break
    if rule is None:
        medium = policy.approvals[Risk.MEDIUM]
        rule = RiskRule(_NO_RULE, None, None, None, False, False, Risk.MEDIUM, medium,
                        ApproverScope.REGIONS_INVOLVED, None)
        reasons = [f"{_describe(plan, scope, judge.facts)}: no rule of the policy matches it, "
                   f"so it is medium risk"]
    elif not reasons:
        reasons = [f"{_describe(plan, scope, judge.facts)} is {rule.risk.value} risk (rule {rule.name})"]
    if judge.facts is not None and not rule.below_load:
        held, why = judge.below_load()
        if held:
            reasons.append(why)

    level, approvals = rule.risk, rule.approvals
    if rule.escalate:
        live = judge.live_reasons()
        if live:
            raised = level.raised()
            reasons.extend(live)
            if raised is level:
                reasons.append(f"live state would raise the risk, and it is already {level.value}")
            else:
                reasons.append(f"live state in the regions touched raises the risk: {level.value} → "
                               f"{raised.value}")
                level, approvals = raised, max(approvals, policy.approvals[raised])
    # The floor: a prod scale that may lower capacity, with the load unknown, is never low.
    if level is Risk.LOW and judge.facts is not None and Environment.PROD.value in scope.environments:
        load_known, _ = judge.facts.below_load()
        if load_known is None and judge.facts.scale_up() is not True:
            level, approvals = Risk.MEDIUM, max(approvals, policy.approvals[Risk.MEDIUM])
            reasons.append(f"current load of {judge.facts.service} in {judge.facts.region} unknown "
                           f"({judge.facts.unknown_why or 'no load figures'}): a prod scale-down "
                           f"is at least medium")
    blind = judge.unknown_live()
    if blind is not None:
        reasons.append(blind)

    freeze = _freeze_verdict(policy, scope, level, now, reasons)

    approver_scope = (scope if rule.approvers is ApproverScope.REGIONS_INVOLVED
                      else Scope(scope.environments, frozenset()))
    return RiskAssessment(
        level=level,
        approvals_needed=approvals,
        approver_scope=approver_scope,
        reasons=tuple(reasons),
        rule=rule.name,
        freeze=freeze,
        ttl_s=rule.ttl_s if rule.ttl_s is not None else policy.default_ttl_s,
    )


def _freeze_verdict(
    policy: RiskPolicy, scope: Scope, level: Risk, now: datetime, reasons: list[str]
) -> str | None:
    """The freeze refusing a ``level`` request over ``scope`` now (the emergency switch first, then the
    windows of policy.yml), or ``None``; what was judged is appended to ``reasons``."""
    freeze: str | None = None
    emergency = policy.emergency() if policy.emergency is not None else None
    if emergency is not None:
        if level is Risk.LOW:
            reasons.append(f"{emergency.describe()} is on; a low-risk request may still run")
        else:
            freeze = emergency.describe()
            reasons.append(f"{freeze} refuses {level.value}-risk requests unless glass is broken")
    for window in policy.freezes if freeze is None else ():
        if window.in_force(now) and window.applies_to(scope):
            if level is Risk.LOW:
                reasons.append(f"change freeze {window.describe()} is in force; a low-risk request may "
                               f"still run")
            else:
                freeze = window.describe()
                reasons.append(f"change freeze {freeze} refuses {level.value}-risk requests unless glass "
                               f"is broken")
            break
    return freeze


# --------------------------------------------------------------------------------------------------
# Reading policy.yml
# --------------------------------------------------------------------------------------------------


def load_policy(inventory_dir: Path, fleet: Fleet) -> RiskPolicy:
    """Read and validate ``policy.yml`` next to ``hosts.yml``.

    Raises:
        InventoryError: naming the file, the key path, the line and what was expected.
    """
    root = inventory_dir if inventory_dir.is_dir() else inventory_dir.parent
    path = root / POLICY_FILE
    data = _read_yaml(path, str(path))
    top = _Node(str(path), "", data, getattr(data, "line", 1))
    _only_keys(top, {"version", "default_ttl_s", "levels", "escalation", "rules", "change_freezes"})
    version = top.get("version")
    if version.as_int() != 1:
        raise version.fail("1", str(version.value))
    ttl_node = top.opt("default_ttl_s")
    default_ttl = DEFAULT_TTL_S if ttl_node is None else ttl_node.as_float(*_TTL_RANGE)

    levels = top.get("levels")
    _only_keys(levels, {r.value for r in Risk})
    approvals: dict[Risk, int] = {}
    for risk in Risk:
        level = levels.get(risk.value)
        _only_keys(level, {"approvals"})
        approvals[risk] = level.get("approvals").as_int(0, 10)
    for lower, higher in itertools.pairwise(_RISK_ORDER):
        if approvals[higher] < approvals[lower]:
            raise levels.get(higher.value).get("approvals").fail(
                f"at least the {approvals[lower]} approvals of {lower.value}", str(approvals[higher]))

    esc = top.get("escalation")
    _only_keys(esc, {"environments", "error_budget_burn", "p95_of_target"})
    burn = esc.opt("error_budget_burn")
    p95 = esc.opt("p95_of_target")
    escalation = Escalation(
        environments=_read_environments(esc.opt("environments")) or frozenset({Environment.PROD.value}),
        error_budget_burn=DEFAULT_BURN_THRESHOLD if burn is None else burn.as_float(0.1, 10_000),
        p95_of_target=DEFAULT_P95_OF_TARGET if p95 is None else p95.as_float(0.1, 10.0),
    )

    rules: list[RiskRule] = []
    seen: dict[str, str] = {}
    rules_node = top.get("rules")
    for item in ([] if rules_node.value is None else rules_node.as_list()):
        rule = _rule(item, approvals)
        if rule.name in seen:
            raise item.get("name").fail("a rule name used once", f"{rule.name} also at {seen[rule.name]}")
        seen[rule.name] = item.path
        rules.append(rule)

    freezes: list[ChangeFreeze] = []
    names: set[str] = set()
    freezes_node = top.opt("change_freezes")
    if freezes_node is not None and freezes_node.value is not None:
        for item in freezes_node.as_list():
            freeze = _freeze(item, fleet)
            if freeze.name in names:
                raise item.get("name").fail("a freeze name used once", freeze.name)
            names.add(freeze.name)
            freezes.append(freeze)
    return RiskPolicy(rules=tuple(rules), escalation=escalation, approvals=approvals,
                      freezes=tuple(freezes), default_ttl_s=default_ttl)


_SCALE_CONDITIONS = ("scale_down_over_pct", "below_load", "scale_up")


def _rule(node: _Node, approvals: Mapping[Risk, int]) -> RiskRule:
    _only_keys(node, {"name", "when", "risk", "approvals", "approvers", "ttl_s", "escalate"})
    name = node.get("name").as_str()
    when = node.opt("when")
    actions: frozenset[ActionName] | None = None
    environments: frozenset[str] | None = None
    cut: float | None = None
    below_load = scale_up = False
    if when is not None and when.value is not None:
        _only_keys(when, {"actions", "environments", *_SCALE_CONDITIONS})
        actions_node = when.opt("actions")
        if actions_node is not None:
            items = actions_node.as_list()
            if not items:
                raise actions_node.fail("at least one action (leave the key out for any)", "an empty list")
            actions = frozenset(a.as_enum(ActionName) for a in items)
        environments = _read_environments(when.opt("environments"))
        cut_node = when.opt("scale_down_over_pct")
        if cut_node is not None:
            cut = cut_node.as_float(0.0, 100.0)
        below_load = _true_flag(when.opt("below_load"))
        scale_up = _true_flag(when.opt("scale_up"))
        used = [k for k in _SCALE_CONDITIONS if when.opt(k) is not None]
        if used and actions != frozenset({ActionName.SCALE}):
            raise when.fail(f"actions: [scale] with the scale conditions ({', '.join(used)})",
                            "other actions" if actions else "no actions")
    risk = node.get("risk").as_enum(Risk)
    approvals_node = node.opt("approvals")
    count = approvals[risk] if approvals_node is None else approvals_node.as_int(0, 10)
    approvers_node = node.opt("approvers")
    approvers = (ApproverScope.REGIONS_INVOLVED if approvers_node is None
                 else approvers_node.as_enum(ApproverScope))
    ttl_node = node.opt("ttl_s")
    escalate_node = node.opt("escalate")
    return RiskRule(
        name=name,
        actions=actions,
        environments=environments,
        scale_down_over_pct=cut,
        below_load=below_load,
        scale_up=scale_up,
        risk=risk,
        approvals=count,
        approvers=approvers,
        ttl_s=None if ttl_node is None else ttl_node.as_float(*_TTL_RANGE),
        escalate=True if escalate_node is None else escalate_node.as_bool(),
    )


def _true_flag(node: _Node | None) -> bool:
    if node is None:
        return False
    if node.value is not True:
        raise node.fail("true (leave the key out to not test it)", repr(node.value))
    return True


def _freeze(node: _Node, fleet: Fleet) -> ChangeFreeze:
    _only_keys(node, {"name", "start", "end", "environments", "regions", "geographies", "reason"})
    name = node.get("name").as_str()
    start = _instant(node.get("start"))
    end = _instant(node.get("end"))
    if end <= start:
        raise node.get("end").fail(f"a time after start ({start.isoformat()})", end.isoformat())
    return ChangeFreeze(
        name=name,
        start=start,
        end=end,
        environments=_read_environments(node.opt("environments")),
        regions=_read_regions(node, fleet),
        reason=node.get("reason").as_str(),
    )


def _instant(node: _Node) -> datetime:
    """An ISO-8601 time with its zone offset (YAML may already have parsed it into a datetime)."""
    expected = 'an ISO-8601 time with a zone, such as "2026-11-27T00:00:00+00:00" or 2026-11-27T00:00Z'
    value: Any = node.value
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise node.fail(expected, repr(node.value)) from None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise node.fail(expected, f"{value.isoformat()} without a zone")
        return value
    if isinstance(value, date):
        raise node.fail(expected, f"the date {value.isoformat()} without a time")
    raise node.fail(expected, repr(value))
