"""``opsconsole act nodes / replicas / cache`` in-process against an embedded sandbox server (issue 14):
each files its request through the approval pipeline at the policy's risk, and a user mistake exits 2
with a message naming the flag (nothing filed)."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Run, as_json


@pytest.mark.parametrize(
    ("args", "action", "risk", "approvals", "summary"),
    [
        (("nodes", "--cluster", "gke-usw2-prod", "--max", "45"), "nodes", "medium", 1,
         "gke-usw2-prod (gke us-west1): nodes min–max"),
        (("replicas", "--region", "us-west-2", "--count", "3"), "replicas", "medium", 1,
         "read replicas 2 → 3"),
        (("cache", "--region", "eu-west-1", "--nodes", "7"), "cache", "medium", 1, "nodes 6 → 7"),
        (("replicas", "--region", "eu-central-1", "--promote"), "database", "high", 2,
         "→ standalone write primary"),
    ],
)
def test_a_capacity_change_is_filed_at_the_policys_risk(
    opsconsole: Run, args: tuple[str, ...], action: str, risk: str, approvals: int, summary: str
) -> None:
    shown = opsconsole("--as", "alice", "act", *args, "--json")
    filed = as_json(shown)
    assert (filed["status"], filed["risk"], filed["needs"]["approvals"]) == ("requested", risk, approvals)
    detail = as_json(opsconsole("approvals", "show", filed["request_id"][:8], "--json"))
    assert detail["action"] == action
    assert any(summary in line for line in detail["summary"]), detail["summary"]


def test_the_plan_is_printed_before_it_is_filed(opsconsole: Run) -> None:
    text = opsconsole("--as", "alice", "act", "nodes", "--cluster", "aks-usw2-prod", "--max", "35").stdout
    assert "nodes request — playbook scale.yml — as alice" in text
    assert "nodes min–max 7–30 → 7–35" in text and "filed" in text


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("nodes", "--cluster", "gke-usw2-prd", "--max", "20"), "did you mean gke-usw2-prod?"),
        (("nodes", "--cluster", "gke-usw2-prod"), "give --min, --max or --desired"),
        (("nodes", "--cluster", "gke-usw2-prod", "--max", "60"), "--max 60: outside the seed's bounds"),
        (("nodes", "--cluster", "gke-usw2-prod", "--min", "30", "--max", "20"), "node min 30 would be over"),
        (("nodes", "--cluster", "gke-usw2-prod", "--max", "lots"), "--max"),
        (("replicas", "--region", "us-west-2"), "give exactly one of --count N, --promote or --demote"),
        (("replicas", "--region", "us-west-2", "--count", "3", "--promote"), "(given: --count, --promote)"),
        (("replicas", "--region", "us-west-2", "--count", "3", "--source", "us-east-1"),
         "--source goes with --demote"),
        (("replicas", "--region", "us-west-2", "--count", "11"), "--count 11: outside the seed's bounds"),
        (("replicas", "--region", "us-wst-2", "--count", "3"), "did you mean us-west-2?"),
        (("replicas", "--region", "eu-west-1", "--promote"), "already a write primary"),
        (("replicas", "--region", "eu-central-1", "--demote"), "already a read replica"),
        (("cache", "--region", "eu-west-1", "--nodes", "40"), "--nodes 40: outside the seed's bounds"),
        (("cache", "--region", "eu-west-1", "--nodes", "6"), "no change: redis-eu-west-1 already has 6"),
    ],
)
def test_capacity_mistakes_exit_2_and_file_nothing(
    opsconsole: Run, args: tuple[str, ...], needle: str
) -> None:
    result = opsconsole("--as", "alice", "act", *args, code=2)
    assert needle in result.stderr, result.stderr
    assert as_json(opsconsole("approvals", "list", "--all", "--json")) == []
