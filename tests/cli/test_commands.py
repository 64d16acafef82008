"""The commands in-process against an embedded sandbox server: reads, a request that needs two
approvers, who may vote (identity from the server, never from LOGNAME), and user mistakes (exit 2)."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Run, as_json


def test_fleet_status_as_json_and_as_a_table(opsconsole: Run) -> None:
    doc = as_json(opsconsole("fleet", "status", "--json"))
    assert doc["schema"] == "opsconsole.fleet.status/v1" and len(doc["regions"]) == 10
    assert doc["sources"][0]["name"] == "sim" and doc["sources"][0]["status"] == "ok"
    one = as_json(opsconsole("fleet", "status", "--json", "--region", "eu-west-1"))
    assert [r["id"] for r in one["regions"]] == ["eu-west-1"]
    assert one["regions"][0]["health"] in {"ok", "degraded"}  # an enum's value, as the report renders it
    table = opsconsole("fleet", "status").stdout
    assert "Fleet status" in table and "ap-south-1" in table and "sources: sim ok" in table


def test_findings(opsconsole: Run) -> None:
    opsconsole("sandbox", "incident", "region_outage", "--region", "eu-central-1")
    doc = as_json(opsconsole("fleet", "findings", "--json"))
    assert doc["schema"] == "opsconsole.fleet.findings/v1"
    assert any(f["kind"] == "region_down" and f["region"] == "eu-central-1" for f in doc["findings"])
    assert "critical" in opsconsole("fleet", "findings").stdout


def test_the_approval_queue_starts_empty(opsconsole: Run) -> None:
    assert opsconsole("approvals", "list").stdout.strip() == "No open requests."
    assert as_json(opsconsole("approvals", "list", "--all", "--json")) == []


def test_a_prod_failover_needs_two_approvers_and_identity_comes_from_the_server(opsconsole: Run) -> None:
    filed = as_json(opsconsole("--as", "alice", "act", "failover", "--from", "eu-west-1", "--to",
                               "eu-central-1", "--json"))
    assert (filed["status"], filed["risk"], filed["needs"]["approvals"]) == ("requested", "high", 2)
    assert set(filed["eligible_approvers"]) == {"bob", "carol", "erin"}
    rid = filed["request_id"]
    assert rid[:8] in opsconsole("approvals", "list").stdout

    own = opsconsole("--as", "alice", "approvals", "approve", rid[:8], code=2)
    assert "someone else must approve" in own.stderr
    # Without --as the embedded server serves the process's real account: a LOGNAME of a cast member
    # makes nobody that member, and an unknown account is a viewer.
    posing = opsconsole("approvals", "approve", rid[:8], code=2, env={"LOGNAME": "bob", "USER": "bob"})
    assert "viewer" in posing.stderr
    assert "viewer" in opsconsole("whoami", env={"LOGNAME": "bob", "USER": "bob"}).stdout

    voted = as_json(opsconsole("--as", "bob", "approvals", "approve", rid, "--json"))
    assert (voted["status"], voted["needs"]["approvals"], voted["approvers"]) == ("requested", 1, ["bob"])
    shown = as_json(opsconsole("approvals", "show", rid[:8], "--json"))
    assert shown["approvers"] == ["bob"] and set(shown["may_still_vote"]) == {"carol", "erin"}
    assert shown["face"] == "cli" and shown["votes"][0]["face"] == "cli"  # the audit says which face
    assert "failover" in opsconsole("approvals", "show", rid[:8]).stdout
    opsconsole("--as", "alice", "approvals", "cancel", rid[:8], "--reason", "drill called off")
    assert as_json(opsconsole("approvals", "show", rid, "--json"))["status"] == "cancelled"
    kinds = [e["kind"] for e in as_json(opsconsole("audit", "log", "--request", rid, "--json"))]
    assert kinds[0] == "request_filed" and "vote_refused" in kinds and "cancelled" in kinds
    assert "intact" in opsconsole("audit", "verify").stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("fleet", "status", "--region", "mars-1"), "unknown region"),
        (("fleet", "status", "--watch", "1", "--json"), "cannot be combined"),
        (("fleet", "status", "--watch", "0.1"), "--watch"),
        (("--as", "mallory", "fleet", "status"), "expected one of: alice, bob, carol, erin, victor"),
        (("act", "scale", "checkout", "--region", "eu-west-1", "--env", "qa"), "--env qa"),
        (("act", "scale", "chekout", "--region", "eu-west-1", "--replicas", "4"), "did you mean checkout?"),
        (("act", "failover", "--from", "eu-west-1", "--to", "eu-west-1"), "itself"),
        (("act", "scale", "search", "--region", "eu-west-1", "--hpa-max", "70"), "viewer"),
        (("approvals", "show", "ffffffff"), "no such request"),
        (("jobs", "show", "nope"), "no such job"),
        (("audit", "log", "--since", "yesterday"), "--since yesterday: expected an ISO-8601 time"),
        (("schedule", "show", "prod"), "no schedule"),
        (("schedule", "override", "staging", "nap"), "expected one of keep-awake"),
        (("sandbox", "incident", "meteor_strike"), "valid kinds"),
        (("--live", "sandbox", "reset"), "--live"),
        (("--live", "--as", "alice", "fleet", "status"), "--live"),
        (("server", "tokens", "create", "alice", "--expires", "soon"), "--expires soon"),
        (("login", "--server", "http://ops.example.net"), "use https://"),
    ],
)
def test_user_mistakes_exit_2_with_the_message(opsconsole: Run, args: tuple[str, ...], needle: str) -> None:
    result = opsconsole(*args, code=2)
    assert needle in result.stderr, result.stderr


def test_as_is_refused_with_a_team_server(opsconsole: Run) -> None:
    env = {"OPSCONSOLE_SERVER": "https://ops.example.net", "OPSCONSOLE_TOKEN": "opc_x"}
    result = opsconsole("--as", "alice", "fleet", "status", code=2, env=env)
    assert "--as is for the sandbox; with a server you act as your token's person" in result.stderr


def test_a_server_without_a_token_says_how_to_log_in(opsconsole: Run) -> None:
    result = opsconsole("fleet", "status", code=2, env={"OPSCONSOLE_SERVER": "https://ops.example.net"})
    assert "opsconsole login --server URL" in result.stderr


def test_an_unreachable_server_is_a_failure_not_a_traceback(opsconsole: Run) -> None:
    env = {"OPSCONSOLE_SERVER": "http://127.0.0.1:9", "OPSCONSOLE_TOKEN": "opc_x"}
    result = opsconsole("jobs", "list", code=1, env=env)
    assert "cannot reach the ops server at http://127.0.0.1:9" in result.stderr


def test_schedules_through_the_server(opsconsole: Run) -> None:
    rows = as_json(opsconsole("schedule", "show", "--json"))
    assert {(r["environment"], r["region"]) for r in rows} >= {("staging", "eu-west-1"), ("dev", "us-east-1")}
    made = opsconsole("--as", "alice", "schedule", "override", "staging", "keep-awake",
                      "--region", "eu-west-1", "--reason", "demo")
    assert "keep_awake staging in eu-west-1" in made.stdout and "by alice" in made.stdout
    rows = as_json(opsconsole("schedule", "show", "staging", "--json"))
    assert any(o["kind"] == "keep_awake" and o["by"] == "alice" for r in rows for o in r["overrides"])
    assert "total" in opsconsole("schedule", "preview", "--days", "3").stdout
    evaluated = opsconsole("schedule", "eval", "Mon-Fri 07:00-20:00 UTC", "--at", "2026-11-27T12:00Z")
    assert evaluated.stdout == "up\n"


def test_schedule_run_is_the_sandbox_only(opsconsole: Run) -> None:
    result = opsconsole("--live", "schedule", "run", code=2)
    assert "the ops server runs the scheduler" in result.stderr


def test_inventory_check(opsconsole: Run) -> None:
    assert "10 regions" in opsconsole("inventory", "check").stdout
