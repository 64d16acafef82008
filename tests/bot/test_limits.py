"""Every message the bot renders for a large fleet is one Slack accepts (issue 15, defect 4).

A synthetic fleet of 120 regions, 120 approvers, 600 open requests, long previews and job lists: each
builder's output is validated with ``slack_sdk.models.blocks`` and the documented limits
(:mod:`slacklimits`), and every list that is cut says so ("showing N of M — … for all").
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
from slacklimits import assert_within_limits, problems
from test_blocks import BOB, T0, TOTALS, request, summary

from bot import blocks
from bot.parse import USAGE
from opsconsole.core.audit.records import AuditEntry
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.fleet.model import Health
from opsconsole.core.runs.records import Job, JobStatus

REGIONS = [
    summary(f"xx-region-{i:03d}", (Health.OK, Health.DEGRADED, Health.DOWN)[i % 3], 100.0 + i, i % 4)
    for i in range(120)
]
APPROVERS = [f"<@U0APPROVER{i:03d}>" for i in range(120)]


def text_of(message: dict[str, object]) -> str:
    return json.dumps(message, ensure_ascii=False)


def test_the_checker_catches_what_slack_refuses() -> None:
    """The limits check can fail: the renderings before the fix broke each of these."""
    too_many = {"text": "x", "blocks": [{"type": "divider"}] * 51}
    wide = {"blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "x" * 2001}]}]}
    open_code = {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "```abc"}}]}
    long_header = {"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]}
    for bad in (too_many, wide, open_code, long_header):
        assert problems(bad)


def test_status_of_120_regions_fits_and_says_nothing_is_cut() -> None:
    message = blocks.status_message(REGIONS, TOTALS, taken_at=T0, partial=False)
    assert_within_limits(message)
    text = text_of(message)
    assert all(r.id in text for r in REGIONS)  # 120 short lines fit: nothing cut
    assert "showing" not in text
    assert ":large_yellow_circle: degraded" in text  # a health word beside each colour dot


def test_home_of_120_regions_keeps_the_approval_list() -> None:
    waiting = [request(id=f"{i:08x}{0:024x}") for i in range(40)]
    home = blocks.home_view(REGIONS, TOTALS, taken_at=T0, waiting=waiting, person="bob")
    assert_within_limits(home, "home")
    text = text_of(home)
    assert "Waiting for your approval" in text and waiting[0].short_id in text


def test_a_request_with_120_approvers_and_a_long_preview_fits() -> None:
    long = request(summary=tuple(f"replicas checkout-{i} 3 → 4" for i in range(400)))
    message = blocks.request_message(long, may_approve=APPROVERS)
    assert_within_limits(message)
    [fields] = [b for b in message["blocks"] if b.get("fields")]
    may = next(f["text"] for f in fields["fields"] if f["text"].startswith("*May approve*"))
    assert "<@U0APPROVER000>" in may and may.rstrip().endswith("more") and len(may) <= 2000
    voted = blocks.request_message(request(votes=(BOB,)), may_approve=APPROVERS[:3])
    assert_within_limits(voted)


@pytest.mark.parametrize("count", [19, 50, 600])
def test_approvals_lists_say_when_they_are_cut(count: int) -> None:
    many = [
        request(id=f"{i:08x}{0:024x}", params={"from_region": "x" * 60, "to_region": "y" * 60})
        for i in range(count)
    ]
    message = blocks.approvals_message(many)
    assert_within_limits(message)
    text = text_of(message)
    shown = sum(1 for r in many if r.short_id in text)
    if shown < count:
        assert f"showing {shown} of {count}" in text and "opsconsole approvals list" in text
    else:
        assert "showing" not in text


def test_jobs_env_findings_and_audit_fit_and_say_when_cut() -> None:
    jobs = [
        Job(
            id=f"job{i:029d}",
            action="scale",
            params={"service": "s" * 400, "region": f"r{i}"},
            playbook="scale.yml",
            check_mode=False,
            status=JobStatus.SUCCEEDED,
            actor="alice",
            face="slack",
            created_at=T0,
        )
        for i in range(20)
    ]
    message = blocks.jobs_message(jobs)
    assert_within_limits(message)
    shown = sum(1 for j in jobs if j.id[:12] in text_of(message))
    assert shown == 20 or f"showing {shown} of 20" in text_of(message)

    rows = [
        {
            "environment": "staging",
            "region": r.id,
            "desired": "up",
            "scheduled": "down",
            "applied": None,
            "next_transitions": [{"at": T0, "state": "down"}, {"at": T0 + timedelta(hours=1), "state": "up"}],
            "overrides": [{"id": "o", "kind": "keep_awake", "until": T0, "by": "alice", "region": None}],
            "holds": ["freeze"],
            "warning_at": T0,
            "clusters": [],
        }
        for r in REGIONS
    ]
    env = blocks.env_status_message(rows, environment="staging")
    assert_within_limits(env)
    shown = sum(1 for r in REGIONS if f"*{r.id}*" in text_of(env))
    assert shown == 120 or f"showing {shown} of 120" in text_of(env)

    findings = [
        {"severity": "high", "title": "t" * 1000, "region": r.id, "measured": 1, "target": 0}
        for r in REGIONS * 3
    ]
    found = blocks.findings_message(findings)
    assert_within_limits(found)
    assert "showing" in text_of(found) and "of 360" in text_of(found)

    entries = [
        AuditEntry(i, T0, "vote.approve", "bob", "slack", "r", None, {"x": "y" * 300}, "p", "h")
        for i in range(200)
    ]
    audit = blocks.audit_message("0123456789abcdef", entries)
    assert_within_limits(audit)
    assert "of 200" in text_of(audit)


def test_replies_modal_and_notices_fit() -> None:
    filed = blocks.filed_reply(request(), channel="C0APPROVALS", may_approve=APPROVERS)
    assert len(filed["text"]) < 3000 and "more" in filed["text"]
    assert_within_limits(blocks.help_message(list(USAGE.values())))
    modal = blocks.reject_modal(replace(request(), params={"from_region": "x" * 4000}), private_metadata="{}")
    assert_within_limits(modal, "modal")
    assert_within_limits(
        blocks.finding_notice(
            {
                "severity": "high",
                "title": "t" * 5000,
                "region": "r",
                "object": "o",
                "measured": 1,
                "target": 0,
            }
        )
    )
    assert_within_limits(
        blocks.request_message(request(RequestStatus.EXPIRED, reason="r" * 5000), may_approve=APPROVERS)
    )
