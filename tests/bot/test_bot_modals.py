"""Modals for a change's parameters (issue 15, first-class list): ``/ops failover`` with its regions
missing opens a form with region selects; *Preview* shows current → new, the risk and who must approve;
*File it* files the request as the slash command would; the global shortcut *Request a change* opens a
chooser that becomes the form. In process, on the real Bolt app and the Slack stand-in (which refuses
views outside Slack's limits).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import pytest
from inproc import bot_on, core_on, dispatch_ack, slash, wait_until
from slacklimits import assert_within_limits
from slackmock import SlackMock

from bot import modals
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.model import IntRange


@pytest.fixture
def slack() -> Iterator[SlackMock]:
    with SlackMock() as mock:
        yield mock


@pytest.fixture
def core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpsCore]:
    monkeypatch.setenv("OPSCONSOLE_HOME", str(tmp_path))
    with core_on(tmp_path) as core:
        yield core


def submission(callback_id: str, view_id: str, user: str, metadata: str, values: dict[str, Any]) -> str:
    payload = {
        "type": "view_submission",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": user, "team_id": "T0SANDBOX"},
        "trigger_id": "1.2.modal",
        "view": {
            "id": view_id,
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": metadata,
            "hash": "1.abc",
            "state": {"values": values},
        },
    }
    return urlencode({"payload": json.dumps(payload)})


def chose(**picked: str) -> dict[str, Any]:
    return {
        block: {"value": {"type": "static_select", "selected_option": {"value": value}}}
        for block, value in picked.items()
    }


def test_failover_without_regions_opens_a_form_previews_and_files(core: OpsCore, slack: SlackMock) -> None:
    with bot_on(core, slack.api_url) as (app, _rt):
        status, ack = dispatch_ack(app, slash("failover", "U0ALICE", slack.response_url("form")))
        assert status == 200 and "Usage" not in ack
        opened = slack.wait_for("views.open")[0].params["view"]
        assert opened["callback_id"] == modals.FORM
        assert [b.get("block_id") for b in opened["blocks"] if b["type"] == "input"] == [
            "from_region",
            "to_region",
        ]
        assert "eu-west-1" in json.dumps(opened)
        meta = opened["private_metadata"]

        # The same region twice: Slack shows the error under the field, the modal stays open.
        _, bad = dispatch_ack(
            app,
            submission(
                modals.FORM, "V0FORM", "U0ALICE", meta, chose(from_region="eu-west-1", to_region="eu-west-1")
            ),
        )
        assert '"response_action": "errors"' in bad and "to_region" in bad

        _, planning = dispatch_ack(
            app,
            submission(
                modals.FORM,
                "V0FORM",
                "U0ALICE",
                meta,
                chose(from_region="eu-west-1", to_region="eu-central-1"),
            ),
        )
        assert '"response_action": "update"' in planning and "Planning" in planning
        shown = slack.wait_for("views.update")[0].params
        assert shown["view_id"] == "V0FORM"
        text = json.dumps(shown["view"], ensure_ascii=False)
        assert shown["view"]["submit"]["text"] == "File it"
        assert "→" in text and "Risk" in text and "<@U0BOB>" in text, text
        assert core.pipeline.requests.list(limit=5) == []  # nothing filed by a preview

        status, _ = dispatch_ack(
            app, submission(modals.PREVIEW, "V0FORM", "U0ALICE", shown["view"]["private_metadata"], {})
        )
        assert status == 200
        filed = wait_until(lambda: core.pipeline.requests.list(limit=5), what="the request filed")
        assert filed[0].action == "failover" and filed[0].requester == "alice" and filed[0].face == "slack"
        told = slack.wait_for("chat.postEphemeral", lambda c: c.params.get("user") == "U0ALICE")[0]
        assert "Filed request" in told.params["text"] and told.params["channel"] == "C0OPSCHAT"


def test_a_viewer_sees_why_in_the_preview(core: OpsCore, slack: SlackMock) -> None:
    with bot_on(core, slack.api_url) as (app, _rt):
        dispatch_ack(app, slash("scale checkout", "U0VICTOR", slack.response_url("vform")))
        opened = slack.wait_for("views.open")[0].params["view"]
        assert "checkout" in json.dumps(opened)  # what was typed is filled in
        values = {
            **chose(workload="checkout", region="eu-west-1", environment="prod"),
            "replicas": {"value": {"type": "number_input", "value": "5"}},
        }
        dispatch_ack(app, submission(modals.FORM, "V0VIEWER", "U0VICTOR", opened["private_metadata"], values))
        shown = slack.wait_for("views.update")[0].params["view"]
        assert "viewer" in json.dumps(shown) and "submit" not in shown


def test_the_shortcut_opens_a_chooser_that_becomes_the_form(core: OpsCore, slack: SlackMock) -> None:
    with bot_on(core, slack.api_url) as (app, _rt):
        shortcut = {
            "type": "shortcut",
            "callback_id": modals.SHORTCUT,
            "trigger_id": "1.2.shortcut",
            "user": {"id": "U0ALICE", "team_id": "T0SANDBOX"},
            "team": {"id": "T0SANDBOX"},
        }
        assert dispatch_ack(app, urlencode({"payload": json.dumps(shortcut)}))[0] == 200
        chooser = slack.wait_for("views.open")[0].params["view"]
        picked = {
            "type": "block_actions",
            "user": {"id": "U0ALICE", "team_id": "T0SANDBOX"},
            "team": {"id": "T0SANDBOX"},
            "container": {"type": "view", "view_id": "V0CHOOSE"},
            "view": {"id": "V0CHOOSE", "hash": "h", "private_metadata": chooser["private_metadata"]},
            "trigger_id": "1.3.pick",
            "actions": [
                {
                    "action_id": modals.ACTION_SELECT,
                    "block_id": "action",
                    "type": "static_select",
                    "selected_option": {"value": "env"},
                    "action_ts": "1.1",
                }
            ],
        }
        assert dispatch_ack(app, urlencode({"payload": json.dumps(picked)}))[0] == 200
        form = slack.wait_for("views.update")[0].params
        assert form["view_id"] == "V0CHOOSE" and form["view"]["callback_id"] == modals.FORM
        assert [b.get("block_id") for b in form["view"]["blocks"] if b["type"] == "input"] == [
            "environment",
            "verb",
        ]


def test_the_form_of_a_120_region_fleet_fits() -> None:
    geographies = ("americas", "emea", "apac")
    regions = {
        f"r-{i:03d}": SimpleNamespace(geography=SimpleNamespace(value=geographies[i % 3])) for i in range(120)
    }
    clusters = {
        f"c-{i:03d}-{env}": SimpleNamespace(region=f"r-{i:03d}", kind=SimpleNamespace(value="eks"),
                                            environment=SimpleNamespace(value=env))
        for i in range(120) for env in ("prod", "staging", "dev")
    }
    bounds = SimpleNamespace(cluster_nodes=IntRange(1, 50), read_replicas=IntRange(1, 10),
                             redis_nodes=IntRange(3, 10))
    fleet: Any = SimpleNamespace(regions=regions, services={f"svc-{i}": None for i in range(150)},
                                 clusters=clusters, bounds=bounds)
    for action in modals.ACTIONS:
        assert_within_limits(modals.form(fleet, action, private_metadata="{}"), "modal")
    picker = modals.cluster_select(fleet, "value")
    assert sum(len(g["options"]) for g in picker["option_groups"]) == 360  # every cluster is offered
    preview = modals.preview(
        summary=[f"replicas svc-{i} 3 → 4" for i in range(500)],
        risk="high",
        reasons=["prod"] * 300,
        approvals_needed=2,
        approvers=[f"<@U{i:08d}>" for i in range(120)],
        freeze=None,
        private_metadata="{}",
    )
    assert_within_limits(preview, "modal")
