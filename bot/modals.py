"""Modals for a change's parameters: pick instead of typing, and see the preview before filing.

Why: ``/ops failover`` without its regions used to be a usage error. Now ``/ops scale``, ``/ops failover``,
``/ops failback``, ``/ops env``, ``/ops nodes``, ``/ops replicas`` and ``/ops cache`` with arguments
missing, and the global shortcut *Request a change*,
open a form (:func:`form`) with selects filled from the inventory (regions grouped by geography, so that
any fleet fits Slack's 100 options per group; workloads; environments). Its submission (*Preview*)
answers at once with a "planning…" view (Slack waits 3 s for the ack), plans on a fresh fleet read,
and replaces it with the preview (:func:`preview`): current → new, the risk and why, who must approve —
or what is wrong. *File it* on the preview files the request exactly as the slash command would.

Pure builders and the state parser live here; the listeners are in :mod:`bot.listeners.views`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from bot import blocks
from bot.parse import Command
from opsconsole.core.fleet.model import Fleet

FORM = "change_form"
PREVIEW = "change_preview"
SHORTCUT = "request_change"
ACTION_SELECT = "change_action"
ACTIONS = ("scale", "failover", "failback", "env", "nodes", "replicas", "cache")
#: The role changes of a region's database, as the replicas form offers them.
DB_CHANGES = ("count", "promote", "demote")
ENVIRONMENTS = ("staging", "dev")

View = dict[str, Any]


def _text(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": blocks.clip(text, 75), "emoji": True}


def _option(value: str, label: str | None = None) -> dict[str, Any]:
    return {"text": _text(label or value), "value": value}


def region_select(fleet: Fleet, action_id: str, initial: str | None = None) -> dict[str, Any]:
    """A select of every region, grouped by geography (at most 100 per group, as Slack allows)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for rid in sorted(fleet.regions):
        groups.setdefault(fleet.regions[rid].geography.value, []).append(_option(rid))
    element: dict[str, Any] = {
        "type": "static_select",
        "action_id": action_id,
        "placeholder": _text("Region"),
        "option_groups": [
            {"label": _text(geo.upper() if len(geo) <= 4 else geo.capitalize()), "options": options[:100]}
            for geo, options in sorted(groups.items())
        ][:100],
    }
    if initial in fleet.regions:
        element["initial_option"] = _option(str(initial))
    return element


def _input(block_id: str, label: str, element: dict[str, Any], *, optional: bool = False) -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": block_id,
        "label": _text(label),
        "element": element,
        "optional": optional,
    }


def _static(action_id: str, values: Sequence[str], initial: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "static_select",
        "action_id": action_id,
        "options": [_option(v) for v in values[:100]],
    }
    if initial in values:
        element["initial_option"] = _option(str(initial))
    return element


def _number(action_id: str, initial: int | None, low: int, high: int) -> dict[str, Any]:
    return {
        "type": "number_input",
        "action_id": action_id,
        "is_decimal_allowed": False,
        "min_value": str(low),
        "max_value": str(high),
        **({"initial_value": str(initial)} if initial is not None else {}),
    }


def cluster_select(fleet: Fleet, action_id: str, initial: str | None = None) -> dict[str, Any]:
    """A select of every cluster, grouped by geography in groups of at most 100 (Slack's limit per
    group), so that up to 10,000 clusters fit."""
    by_geo: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(fleet.clusters, key=lambda n: (fleet.clusters[n].region, n)):
        spec = fleet.clusters[name]
        region = fleet.regions.get(spec.region)
        geo = region.geography.value if region is not None else "other"
        by_geo.setdefault(geo, []).append(_option(name, _cluster_label(fleet, name)))
    groups: list[dict[str, Any]] = []
    for geo, options in sorted(by_geo.items()):
        title = geo.upper() if len(geo) <= 4 else geo.capitalize()
        for k in range(0, len(options), 100):
            label = title if k == 0 else f"{title} {k // 100 + 1}"
            groups.append({"label": _text(label), "options": options[k:k + 100]})
    element: dict[str, Any] = {
        "type": "static_select",
        "action_id": action_id,
        "placeholder": _text("Cluster"),
        "option_groups": groups[:100],
    }
    if initial in fleet.clusters:
        element["initial_option"] = _option(str(initial), _cluster_label(fleet, str(initial)))
    return element


def _cluster_label(fleet: Fleet, name: str) -> str:
    spec = fleet.clusters[name]
    return f"{name} ({spec.region}, {spec.kind.value}, {spec.environment.value})"


def _capacity_fields(fleet: Fleet, action: str, g: Command) -> list[dict[str, Any]]:
    """The fields of ``nodes``, ``replicas`` and ``cache`` (the arguments of ``opsconsole act``)."""
    bounds = fleet.bounds
    if action == "nodes":
        top = bounds.cluster_nodes
        return [
            _input("cluster", "Cluster", cluster_select(fleet, "value", g.cluster)),
            _input("nodes_min", "Node min (empty: keep)", _number("value", g.nodes_min, top.min, top.max),
                   optional=True),
            _input("nodes_max", "Node max (empty: keep)", _number("value", g.nodes_max, top.min, top.max),
                   optional=True),
            _input("nodes_desired", "Desired nodes (empty: the autoscaler's)",
                   _number("value", g.nodes_desired, top.min, top.max), optional=True),
        ]
    if action == "replicas":
        change = g.verb if g.verb in DB_CHANGES else "count"
        labels = {"count": "Set the read replicas", "promote": "Promote to primary",
                  "demote": "Demote to a replica"}
        replicas = bounds.read_replicas
        return [
            _input("region", "Region (its database)", region_select(fleet, "value", g.region)),
            _input("change", "Change", {
                "type": "static_select", "action_id": "value",
                "options": [_option(k, v) for k, v in labels.items()],
                "initial_option": _option(change, labels[change]),
            }),
            _input("count", "Read replicas (for Set)",
                   _number("value", g.count, replicas.min, replicas.max), optional=True),
            _input("source", "Replicate from (for Demote; empty: the inventory's)",
                   region_select(fleet, "value", g.source), optional=True),
        ]
    return [
        _input("region", "Region", region_select(fleet, "value", g.region)),
        _input("count", "Redis nodes",
               _number("value", g.count, bounds.redis_nodes.min, bounds.redis_nodes.max)),
    ]


def chooser(*, private_metadata: str) -> View:
    """The shortcut's first step: which kind of change (the form follows, in the same modal)."""
    return {
        "type": "modal",
        "callback_id": FORM,
        "private_metadata": private_metadata,
        "title": _text("Request a change"),
        "close": _text("Cancel"),
        "blocks": [
            {
                "type": "section",
                "block_id": "action",
                "text": {"type": "mrkdwn", "text": "What do you want to change?"},
                "accessory": {
                    "type": "static_select",
                    "action_id": ACTION_SELECT,
                    "options": [_option(a, f"/ops {a}") for a in ACTIONS],
                },
            }
        ],
    }


def form(fleet: Fleet, action: str, *, private_metadata: str, given: Command | None = None) -> View:
    """The parameters of ``action``, with what the slash command already gave filled in."""
    g = given or Command(action)
    fields: list[dict[str, Any]] = []
    if action == "failover":
        fields += [
            _input("from_region", "From region", region_select(fleet, "value", g.from_region)),
            _input("to_region", "To region", region_select(fleet, "value", g.to_region)),
        ]
    elif action == "failback":
        fields.append(_input("region", "Region", region_select(fleet, "value", g.region)))
    elif action == "scale":
        workloads = sorted(fleet.services)
        fields += [
            _input("workload", "Workload", _static("value", workloads, g.workload)),
            _input(
                "replicas",
                "Replicas",
                {
                    "type": "number_input",
                    "action_id": "value",
                    "is_decimal_allowed": False,
                    "min_value": "0",
                    "max_value": "1000",
                    **({"initial_value": str(g.replicas)} if g.replicas is not None else {}),
                },
            ),
            _input("region", "Region", region_select(fleet, "value", g.region)),
            _input(
                "environment",
                "Environment",
                _static("value", ["prod", "staging", "dev"], g.environment or "prod"),
            ),
        ]
    elif action in ("nodes", "replicas", "cache"):
        fields += _capacity_fields(fleet, action, g)
    else:
        fields += [
            _input("environment", "Environment", _static("value", list(ENVIRONMENTS), g.environment)),
            _input("verb", "Stop or start", _static("value", ["stop", "start"], g.verb)),
        ]
    meta = json.loads(private_metadata or "{}")
    meta["action"] = action
    return {
        "type": "modal",
        "callback_id": FORM,
        "private_metadata": json.dumps(meta),
        "title": _text(f"Request: {action}"[:24]),
        "submit": _text("Preview"),
        "close": _text("Cancel"),
        "blocks": [
            *fields,
            blocks._context("You will see the change, its risk and who must approve it before it is filed."),
        ],
    }


def values_of(view: Mapping[str, Any]) -> dict[str, str]:
    """``block_id → chosen value`` from a submitted view's state."""
    out: dict[str, str] = {}
    for block_id, actions in ((view.get("state") or {}).get("values") or {}).items():
        for state in (actions or {}).values():
            value = state.get("value")
            if value is None and state.get("selected_option"):
                value = state["selected_option"].get("value")
            if value is not None:
                out[str(block_id)] = str(value)
    return out


def command_of(action: str, values: Mapping[str, str]) -> tuple[Command | None, dict[str, str]]:
    """The command the form asks for, or the per-field errors Slack shows under the inputs."""
    errors: dict[str, str] = {}
    required = {
        "failover": ("from_region", "to_region"),
        "failback": ("region",),
        "scale": ("workload", "replicas", "region"),
        "env": ("environment", "verb"),
        "nodes": ("cluster",),
        "replicas": ("region", "change"),
        "cache": ("region", "count"),
    }.get(action, ())
    for name in required:
        if not values.get(name):
            errors[name] = "Pick one."
    if (
        action == "failover"
        and values.get("from_region")
        and values.get("from_region") == values.get("to_region")
    ):
        errors["to_region"] = "Pick another region than the one failing over."
    replicas: int | None = None
    if action == "scale" and values.get("replicas"):
        try:
            replicas = int(values["replicas"])
        except ValueError:
            errors["replicas"] = "A whole number."
    if action in ("nodes", "replicas", "cache"):
        return _capacity_command(action, values, errors)
    if errors:
        return None, errors
    if action == "failover":
        return Command("failover", from_region=values["from_region"], to_region=values["to_region"]), {}
    if action == "failback":
        return Command("failback", region=values["region"]), {}
    if action == "scale":
        return (
            Command(
                "scale",
                workload=values["workload"],
                replicas=replicas,
                region=values["region"],
                environment=values.get("environment") or "prod",
            ),
            {},
        )
    return Command("env", environment=values["environment"], verb=values["verb"]), {}


def _capacity_command(
    action: str, values: Mapping[str, str], errors: dict[str, str]
) -> tuple[Command | None, dict[str, str]]:
    """:func:`command_of` for ``nodes``, ``replicas`` and ``cache``."""
    numbers: dict[str, int | None] = {}
    for name in ("nodes_min", "nodes_max", "nodes_desired", "count"):
        try:
            numbers[name] = int(values[name]) if values.get(name) else None
        except ValueError:
            errors[name] = "A whole number."
    if action == "nodes" and not errors and all(numbers[k] is None for k in ("nodes_min", "nodes_max",
                                                                            "nodes_desired")):
        errors["nodes_max"] = "Give a min, a max or a desired count."
    if action == "replicas" and values.get("change") == "count" and numbers.get("count") is None:
        errors.setdefault("count", "How many read replicas?")
    if errors:
        return None, errors
    if action == "nodes":
        return Command("nodes", cluster=values["cluster"], nodes_min=numbers["nodes_min"],
                       nodes_max=numbers["nodes_max"], nodes_desired=numbers["nodes_desired"]), {}
    if action == "replicas":
        change = values["change"]
        if change == "count":
            return Command("replicas", region=values["region"], count=numbers["count"]), {}
        return Command("replicas", region=values["region"], verb=change,
                       source=values.get("source") if change == "demote" else None), {}
    if action == "cache":
        return Command("cache", region=values["region"], count=numbers["count"]), {}
    return None, {"action": f"unknown action {action}"}


def planning(*, private_metadata: str) -> View:
    return {
        "type": "modal",
        "callback_id": PREVIEW,
        "private_metadata": private_metadata,
        "title": _text("Preview"),
        "close": _text("Cancel"),
        "blocks": [blocks._md(":hourglass_flowing_sand: Planning on a fresh read of the fleet…")],
    }


def preview(
    *,
    summary: Sequence[str],
    risk: str,
    reasons: Sequence[str],
    approvals_needed: int,
    approvers: Sequence[str],
    freeze: str | None,
    private_metadata: str,
) -> View:
    """What filing would ask for: current → new, the risk and why, who must approve."""
    lines = "\n".join(f"• {blocks.escape(line)}" for line in summary) or "• (no change)"
    approval = (
        "No approval needed: it starts when filed."
        if approvals_needed == 0
        else f"{approvals_needed} approval(s) from: {blocks.people(list(approvers), 1500)}"
    )
    body = [
        blocks._md("*The change*\n" + lines),
        blocks._md(
            f"*Risk*: {blocks.RISK_EMOJI.get(risk, '')} {risk} — {blocks.escape('; '.join(reasons) or '—')}"
        ),
        blocks._md(f"*Who must approve*\n{approval}"),
    ]
    if freeze:
        body.append(blocks._md(f":no_entry: *Change freeze*: {blocks.escape(freeze)}"))
    return {
        "type": "modal",
        "callback_id": PREVIEW,
        "private_metadata": private_metadata,
        "title": _text("Preview"),
        "submit": _text("File it"),
        "close": _text("Cancel"),
        "blocks": body,
    }


def problem(message: str, *, private_metadata: str) -> View:
    return {
        "type": "modal",
        "callback_id": PREVIEW,
        "private_metadata": private_metadata,
        "title": _text("Cannot file this"),
        "close": _text("Close"),
        "blocks": [blocks._md(f":warning: {blocks.escape(message)}")],
    }
