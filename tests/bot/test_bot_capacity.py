"""``/ops nodes``, ``/ops replicas`` and ``/ops cache`` (issue 14), ``/ops scale`` with HPA bounds, the
forms they open when arguments are missing, and a finding notice's button that files the suggested
action through the approval pipeline. In process, on the real Bolt app, the sim-read sandbox core and the
Slack stand-in; nothing here runs a playbook (every request filed needs an approval)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from inproc import bot_on, click, core_on, dispatch_ack, slash, wait_until
from slackmock import SlackMock
from test_bot_modals import submission

from bot import blocks, modals
from bot.listeners.commands import _planner
from bot.parse import CommandError, parse
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.findings import evaluate
from opsconsole.core.fleet.model import ClusterState
from opsconsole.core.fleet.report import finding_document
from opsconsole.testing import replace_record


@pytest.fixture
def slack() -> Iterator[SlackMock]:
    with SlackMock() as mock:
        yield mock


@pytest.fixture
def core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpsCore]:
    monkeypatch.setenv("OPSCONSOLE_HOME", str(tmp_path))
    with core_on(tmp_path) as core:
        yield core


@pytest.mark.parametrize(
    ("text", "action", "params", "risk"),
    [
        ("nodes --cluster gke-usw2-prod --max 45", "nodes", {"cluster": "gke-usw2-prod", "nodes_max": 45},
         "medium"),
        ("replicas --region us-west-2 --count 3", "replicas", {"region": "us-west-2", "read_replicas": 3},
         "medium"),
        ("replicas --region eu-central-1 --promote", "database",
         {"region": "eu-central-1", "change": "promote"}, "high"),
        ("cache --region eu-west-1 --nodes 7", "cache", {"region": "eu-west-1", "nodes": 7}, "medium"),
    ],
)
def test_a_capacity_command_files_its_request(
    core: OpsCore, slack: SlackMock, text: str, action: str, params: dict[str, Any], risk: str
) -> None:
    with bot_on(core, slack.api_url) as (app, _rt):
        status, ack = dispatch_ack(app, slash(text, "U0ALICE", slack.response_url("cap")))
        assert status == 200 and "Usage" not in ack, ack
        filed = wait_until(lambda: core.pipeline.requests.list(limit=5), what="the request filed")
        request = filed[0]
        assert (request.action, dict(request.params), request.requester, request.face) == (
            action, params, "alice", "slack")
        assert request.risk == risk
        reply = slack.wait_for("response_url")[0]
        assert "Filed request" in json.dumps(reply.params), reply.params


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("nodes --cluster gke-usw2-prod --max lots", "--max: expected a whole number"),
        ("replicas --region us-west-2 --count 3 --promote", "exactly one of --count N, --promote or"),
        ("replicas --region us-west-2 --count 3 --source us-east-1", "--source goes with --demote"),
    ],
)
def test_wrong_arguments_are_answered_with_the_usage(
    core: OpsCore, slack: SlackMock, text: str, needle: str
) -> None:
    with bot_on(core, slack.api_url) as (app, _rt):
        _, ack = dispatch_ack(app, slash(text, "U0ALICE", slack.response_url("bad")))
        assert needle in ack and "Usage" in ack, ack
        assert core.pipeline.requests.list(limit=5) == []


def test_a_refusal_of_the_planner_names_the_flag(core: OpsCore, slack: SlackMock) -> None:
    with bot_on(core, slack.api_url) as (app, _rt):
        dispatch_ack(app, slash("nodes --cluster gke-usw2-prod --max 60", "U0ALICE", slack.response_url("b")))
        reply = json.dumps(slack.wait_for("response_url")[0].params, ensure_ascii=False)
        assert "--max 60: outside the seed's bounds of 1–50 nodes per cluster" in reply
        assert core.pipeline.requests.list(limit=5) == []


def test_scale_changes_hpa_bounds(core: OpsCore) -> None:
    command = parse("scale search --hpa-max 80 --region eu-west-1 --cluster gke-euw1-prod")
    assert (command.hpa_max, command.replicas, command.cluster) == (80, None, "gke-euw1-prod")
    plan = _planner(command)(core.fleet, core.refresh().snapshot)
    assert plan.extravars["scale_target"] == "hpa" and plan.extravars["hpa_max"] == 80
    assert plan.extravars["cluster"] == "gke-euw1-prod"
    with pytest.raises(CommandError, match="`scale` needs 2 argument"):
        parse("scale search --region eu-west-1")


def test_nodes_without_arguments_opens_a_form_with_a_preview_and_files(
    core: OpsCore, slack: SlackMock
) -> None:
    with bot_on(core, slack.api_url) as (app, _rt):
        status, ack = dispatch_ack(app, slash("nodes --cluster aks-usw2-prod", "U0ALICE",
                                              slack.response_url("form")))
        assert status == 200 and "Usage" not in ack
        opened = slack.wait_for("views.open")[0].params["view"]
        assert [b.get("block_id") for b in opened["blocks"] if b["type"] == "input"] == [
            "cluster", "nodes_min", "nodes_max", "nodes_desired"]
        cluster_field = next(b for b in opened["blocks"] if b.get("block_id") == "cluster")
        assert cluster_field["element"]["initial_option"]["value"] == "aks-usw2-prod"  # as typed
        meta = opened["private_metadata"]
        # Nothing to change: the error shows under the field, the modal stays open.
        _, bad = dispatch_ack(app, submission(modals.FORM, "V0NODES", "U0ALICE", meta, {
            "cluster": {"value": {"type": "static_select", "selected_option": {"value": "aks-usw2-prod"}}},
        }))
        assert '"response_action": "errors"' in bad and "nodes_max" in bad
        _, planning = dispatch_ack(app, submission(modals.FORM, "V0NODES", "U0ALICE", meta, {
            "cluster": {"value": {"type": "static_select", "selected_option": {"value": "aks-usw2-prod"}}},
            "nodes_max": {"value": {"type": "number_input", "value": "35"}},
        }))
        assert '"response_action": "update"' in planning
        shown = slack.wait_for("views.update")[0].params
        text = json.dumps(shown["view"], ensure_ascii=False)
        assert "nodes min–max" in text and "→" in text and "medium" in text, text
        assert core.pipeline.requests.list(limit=5) == []
        dispatch_ack(app, submission(modals.PREVIEW, "V0NODES", "U0ALICE", shown["view"]["private_metadata"],
                                     {}))
        filed = wait_until(lambda: core.pipeline.requests.list(limit=5), what="the request filed")
        assert filed[0].action == "nodes" and dict(filed[0].params) == {"cluster": "aks-usw2-prod",
                                                                        "nodes_max": 35}


@pytest.mark.parametrize(
    ("text", "blocks_wanted"),
    [
        ("replicas --region us-west-2", ["region", "change", "count", "source"]),
        ("cache", ["region", "count"]),
    ],
)
def test_replicas_and_cache_with_arguments_missing_open_their_forms(
    core: OpsCore, slack: SlackMock, text: str, blocks_wanted: list[str]
) -> None:
    with bot_on(core, slack.api_url) as (app, _rt):
        _, ack = dispatch_ack(app, slash(text, "U0ALICE", slack.response_url("f")))
        assert "Usage" not in ack
        opened = slack.wait_for("views.open")[0].params["view"]
        assert [b.get("block_id") for b in opened["blocks"] if b["type"] == "input"] == blocks_wanted


def _nodes_finding(core: OpsCore) -> dict[str, Any]:
    """A node group at its max in the core's own fleet read, as the notice carries it."""
    snap = core.refresh().snapshot
    state = snap.get("cluster/gke-usw2-prod")
    assert isinstance(state, ClusterState)
    snap = replace_record(snap, state.key, nodes=state.nodes_max, ready_nodes=state.nodes_max)
    finding = next(f for f in evaluate(core.fleet, snap)
                   if f.suggested_action is not None and f.suggested_action.action == "nodes")
    return finding_document(finding)


def test_a_finding_notice_files_its_suggested_action(core: OpsCore, slack: SlackMock) -> None:
    finding = _nodes_finding(core)
    notice = blocks.finding_notice(finding)
    button = next(e for b in notice["blocks"] if b["type"] == "actions" for e in b["elements"])
    assert button["action_id"] == blocks.FILE_SUGGESTED
    assert json.loads(button["value"])["params"] == finding["suggested_action"]["params"]
    with bot_on(core, slack.api_url) as (app, _rt):
        # A viewer is refused by the pipeline, and told; nothing is filed.
        assert dispatch_ack(app, click(blocks.FILE_SUGGESTED, button["value"], "U0VICTOR"))[0] == 200
        refused = slack.wait_for("chat.postEphemeral", lambda c: c.params.get("user") == "U0VICTOR")[0]
        assert "viewer" in refused.params["text"], refused.params
        assert core.pipeline.requests.list(limit=5) == []
        assert dispatch_ack(app, click(blocks.FILE_SUGGESTED, button["value"], "U0ALICE"))[0] == 200
        filed = wait_until(lambda: core.pipeline.requests.list(limit=5), what="the request filed")
        assert filed[0].action == "nodes" and filed[0].requester == "alice" and filed[0].face == "slack"
        assert dict(filed[0].params) == finding["suggested_action"]["params"]
        told = slack.wait_for("chat.postEphemeral", lambda c: c.params.get("user") == "U0ALICE")[0]
        assert "Filed request" in told.params["text"]


def test_a_stale_suggestion_is_refused_with_the_reason(core: OpsCore, slack: SlackMock) -> None:
    value = json.dumps({"action": "cache", "params": {"region": "eu-west-1", "nodes": 40}, "finding": "x"})
    with bot_on(core, slack.api_url) as (app, _rt):
        dispatch_ack(app, click(blocks.FILE_SUGGESTED, value, "U0ALICE"))
        told = slack.wait_for("chat.postEphemeral", lambda c: c.params.get("user") == "U0ALICE")[0]
        assert "Not filed" in told.params["text"] and "--nodes 40" in told.params["text"]
        assert core.pipeline.requests.list(limit=5) == []
