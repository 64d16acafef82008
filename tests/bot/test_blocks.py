"""`bot/blocks.py` is pure: the same records give the same Block Kit JSON, pinned in snapshots/.

Regenerate after an intended change with ``OPSCONSOLE_UPDATE_SNAPSHOTS=1 pytest tests/bot/test_blocks.py``
and review the diff of the JSON files.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot import blocks
from bot.blocks import RunProgress
from bot.parse import USAGE, CommandError, parse, parse_until
from bot.settings import BotConfigError, BotSettings
from opsconsole.core.change.approvals import Decision, RequestStatus, Vote
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.fleet.model import Health, Severity
from opsconsole.core.fleet.report import RegionSummary, Totals

SNAPSHOTS = Path(__file__).parent / "snapshots"
T0 = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)


def check(name: str, value: Any) -> None:
    path = SNAPSHOTS / f"{name}.json"
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("OPSCONSOLE_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path.name}: run with OPSCONSOLE_UPDATE_SNAPSHOTS=1 and review it"
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(text), f"{name} changed"


def summary(rid: str, health: Health, p95: float | None, findings: int) -> RegionSummary:
    return RegionSummary(
        id=rid,
        name=rid.upper(),
        tier=1,
        role="primary_hub",
        geography="emea",
        cloud_mix={"aws": 1.0},
        health=health,
        p95_ms=p95,
        avg_latency_ms=None,
        availability=0.9999,
        error_rate=0.0,
        rps=1200.0,
        concurrent_users=1000,
        db_role="primary",
        replica_lag_s=0.4,
        pods_ready=40,
        pods_desired=42,
        nodes_ready=10,
        nodes=10,
        nodes_max=20,
        cache_nodes="3/3",
        dns_weights={rid: 100},
        findings=findings,
        worst_severity=Severity.HIGH if findings else None,
    )


TOTALS = Totals(
    rps=2400.0,
    api_rps_target=5000.0,
    global_avg_latency_ms=80.0,
    global_avg_latency_target_ms=100.0,
    api_p95_ms=150.0,
    worst_p95_ms=230.0,
    api_p95_target_ms=200.0,
    availability=0.99995,
    availability_target=0.9999,
    error_budget_burn=0.5,
    concurrent_users=2000,
    concurrent_users_target=10000,
    db_tps=300.0,
    worst_replica_lag_s=0.4,
    rpo_target_s=300.0,
    regions_reporting=2,
    regions_total=2,
    partial=False,
)


def request(
    status: RequestStatus = RequestStatus.REQUESTED, votes: tuple[Vote, ...] = (), **extra: Any
) -> ChangeRequest:
    values: dict[str, Any] = dict(
        id="0123456789abcdef0123456789abcdef",
        action="failover",
        params={"from_region": "eu-west-1", "to_region": "eu-central-1"},
        playbook="failover.yml",
        extravars={},
        targets=("region/eu-west-1", "region/eu-central-1", "database/eu-west-1"),
        summary=("DNS eu-west-1 → eu-central-1 100", "database eu-central-1: replica → primary"),
        observed={},
        plan_hash="h1",
        hash_inputs={},
        risk="high",
        risk_reasons=("prod failover",),
        approvals_needed=2,
        approver_scope={"environments": ["prod"], "regions": ["eu-central-1", "eu-west-1"]},
        status=status,
        requester="alice",
        face="slack",
        created_at=T0,
        expires_at=T0 + timedelta(minutes=30),
        version=3,
        votes=votes,
    )
    values.update(extra)
    return ChangeRequest(**values)


BOB = Vote("bob", Decision.APPROVE, "approver", T0, "h1", None, "slack")
CAROL = Vote("carol", Decision.APPROVE, "approver", T0, "h1", None, "cli")


def test_status_message() -> None:
    summaries = [
        summary("eu-west-1", Health.OK, 120.0, 0),
        summary("eu-central-1", Health.DEGRADED, 230.0, 2),
    ]
    check("status", blocks.status_message(summaries, TOTALS, taken_at=T0, partial=False))
    check(
        "status_region",
        blocks.status_message(summaries, TOTALS, taken_at=T0, partial=True, region="eu-central-1"),
    )


@pytest.mark.parametrize(
    ("name", "req", "progress"),
    [
        ("request_waiting", request(), None),
        ("request_one_vote", request(votes=(BOB,)), None),
        (
            "request_running",
            request(RequestStatus.RUNNING, (BOB, CAROL), job_id="job0123456789"),
            RunProgress("job0123456789", current_task="Promote the replica", ok=4, changed=2),
        ),
        (
            "request_succeeded",
            request(RequestStatus.SUCCEEDED, (BOB, CAROL), job_id="job0123456789"),
            RunProgress("job0123456789", status="succeeded", ok=9, changed=4, duration_s=41.2),
        ),
        (
            "request_rejected",
            request(
                RequestStatus.REJECTED,
                (Vote("bob", Decision.REJECT, "approver", T0, "h1", "not during the sale", "slack"),),
                reason="not during the sale",
            ),
            None,
        ),
        ("request_expired", request(RequestStatus.EXPIRED), None),
    ],
)
def test_request_messages(name: str, req: ChangeRequest, progress: RunProgress | None) -> None:
    message = blocks.request_message(req, may_approve=["bob", "carol", "erin"], progress=progress)
    check(name, message)
    actions = [e["action_id"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    if req.status is RequestStatus.REQUESTED:
        assert actions == [blocks.APPROVE, blocks.REJECT]
    elif req.status is RequestStatus.RUNNING:
        assert actions == [blocks.CANCEL]  # for those allowed to cancel (the pipeline decides)
    else:
        assert actions == []


def test_other_builders() -> None:
    check("reject_modal", blocks.reject_modal(request(), private_metadata='{"request_id": "x"}'))
    check(
        "home",
        blocks.home_view(
            [summary("eu-west-1", Health.OK, 120.0, 0)],
            TOTALS,
            taken_at=T0,
            waiting=[request()],
            person="bob",
        ),
    )
    check(
        "finding_notice",
        blocks.finding_notice(
            {
                "severity": "high",
                "title": "p95 over target",
                "region": "eu-west-1",
                "object": "traffic/eu-west-1",
                "measured": 230.0,
                "target": 200.0,
                "suggested_action": {"summary": "scale gateway to 60"},
            }
        ),
    )
    check(
        "shutdown_warning",
        blocks.shutdown_warning(
            {"environment": "staging", "region": "eu-west-1", "clusters": ["eks-euw1-staging"]}, at=T0
        ),
    )
    check(
        "usage_error", blocks.usage_error("replicas: expected a whole number, found 'lots'", USAGE["scale"])
    )


def test_parse() -> None:
    assert parse("").name == "help"
    cmd = parse("scale checkout 12 --region eu-west-1 --env staging")
    assert (cmd.workload, cmd.replicas, cmd.region, cmd.environment) == (
        "checkout",
        12,
        "eu-west-1",
        "staging",
    )
    assert parse("failover eu-west-1 eu-central-1").to_region == "eu-central-1"
    assert parse("env staging stop").changes_fleet and not parse("env staging status").changes_fleet
    assert parse("keep-awake staging until 2h").until == "2h"
    for bad in (
        "scale checkout",
        "scale checkout x",
        "scale a 1 --zone z",
        "env dev sleep",
        "job",
        "keep-awake dev 18:00",
        "nope",
        "status a b",
    ):
        with pytest.raises(CommandError):
            parse(bad)
    assert parse_until("2h", T0) == T0 + timedelta(hours=2)
    assert parse_until("08:00", T0) == T0.replace(hour=8, minute=0) + timedelta(days=1)
    with pytest.raises(CommandError):
        parse_until("yesterday", T0)


def test_settings() -> None:
    good = {"SLACK_BOT_TOKEN": "xoxb-1-2-abc", "SLACK_SIGNING_SECRET": "s3cr3t"}
    settings = BotSettings.from_environment(good)
    assert not settings.socket_mode and "xoxb" not in repr(settings) and "s3cr3t" not in repr(settings)
    assert BotSettings.from_environment({**good, "SLACK_API_URL": "http://127.0.0.1:9/api"}).api_url == (
        "http://127.0.0.1:9/api/"
    )
    assert BotSettings.from_environment(
        {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}
    ).socket_mode
    for env in (
        {},
        {"SLACK_BOT_TOKEN": "xoxp-user"},
        {"SLACK_BOT_TOKEN": "xoxb-1"},
        {**good, "SLACK_API_URL": "slack"},
        {**good, "OPSCONSOLE_BOT_POLL_S": "soon"},
    ):
        with pytest.raises(BotConfigError) as error:
            BotSettings.from_environment(env)
        assert "xoxb-1-2-abc" not in error.value.message


def test_an_approved_request_not_started_offers_run_to_operators() -> None:
    votes = (Vote("bob", Decision.APPROVE, "approver", T0, "h1", None, "cli"),)
    message = blocks.request_message(
        request(RequestStatus.APPROVED, votes), may_approve=[], may_run=["alice", "bob", "erin"]
    )
    check("request_approved_not_started", message)
    [actions] = [b for b in message["blocks"] if b["type"] == "actions"]
    assert [e["action_id"] for e in actions["elements"]] == [blocks.RUN]
    text = json.dumps(message["blocks"])
    assert "not started" in text and "starting the run" not in text and "alice, bob, erin" in text


def test_env_status_message() -> None:
    row = {
        "environment": "staging",
        "region": "eu-west-1",
        "desired": "up",
        "scheduled": "down",
        "applied": None,
        "next_transitions": [{"at": T0, "state": "down"}, {"at": T0 + timedelta(hours=11), "state": "up"}],
        "overrides": [{"id": "o1", "kind": "keep_awake", "until": T0, "by": "alice", "region": None}],
        "holds": ["change freeze demo"],
        "warning_at": T0 - timedelta(minutes=30),
        "clusters": ["eks-euw1-staging"],
    }
    message = blocks.env_status_message([row], environment="staging")
    check("env_status", message)
    text = json.dumps(message["blocks"])
    assert "up now (scheduled down, applied unknown)" in text and "keep-awake" in text and "alice" in text
