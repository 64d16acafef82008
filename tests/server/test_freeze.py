"""The emergency change freeze over a real server: an admin turns it on, an operator's medium-risk filing
is refused naming the reason, an admin's break glass passes, every switch is audited, and off lifts it."""

from __future__ import annotations

from typing import Any

import httpx

from opsconsole.core import wire
from opsconsole.core.audit.log import AuditLog
from tests.server.conftest import Served

#: A large prod scale-down: medium risk by policy.yml (prod-scale-down-large / below-load).
MEDIUM = {"action": "scale", "params": {"service": "catalog", "region": "eu-west-1", "replicas": 3}}
#: Another one on other targets (the first is held by the break-glass run).
MEDIUM_OTHER = {"action": "scale", "params": {"service": "search", "region": "eu-west-1", "replicas": 2}}
#: A scale-up: low risk, still allowed during a freeze.
LOW = {"action": "scale", "params": {"service": "search", "region": "us-east-1", "hpa_min": 4}}
REASON = "INC-42: payments degraded, hands off"


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def _level(http: httpx.Client, plan: dict[str, Any]) -> str:
    response = http.post("/api/v1/assess", json=plan)
    assert response.status_code == 200, response.text
    assessment = wire.loads(response.content)
    return str(getattr(assessment, "level", None) or assessment.risk.level)


def _audit_kinds(server: Served) -> list[tuple[str, str, dict[str, Any]]]:
    log = AuditLog(server.core.database)
    return [(str(e.kind), e.actor, dict(e.data)) for e in log.entries()]


def test_admin_freezes_operator_is_refused_break_glass_passes_and_off_lifts_it(server: Served) -> None:
    with server.http("erin", **{"x-opsconsole-face": "cli"}) as erin, server.http("alice") as alice:
        assert _level(alice, MEDIUM) in ("medium", "Risk.MEDIUM")
        assert _problem(alice.get("/api/v1/freeze"), 200)["on"] is False

        on = _problem(erin.post("/api/v1/freeze", json={"on": True, "reason": REASON}), 200)
        assert (on["on"], on["reason"], on["by"]) == (True, REASON, "erin")
        assert _problem(alice.get("/api/v1/freeze"), 200)["reason"] == REASON

        refused = _problem(alice.post("/api/v1/requests", json=MEDIUM), 409)
        assert "emergency freeze" in refused["detail"] and REASON in refused["detail"], refused

        glass = erin.post("/api/v1/requests", json={**MEDIUM, "break_glass_reason": "the fix for INC-42"})
        assert glass.status_code == 201, glass.text

        off = _problem(erin.post("/api/v1/freeze", json={"on": False}), 200)
        assert off["on"] is False
        assert _level(alice, MEDIUM_OTHER) in ("medium", "Risk.MEDIUM")
        after = alice.post("/api/v1/requests", json=MEDIUM_OTHER)
        assert after.status_code == 201, after.text

    kinds = _audit_kinds(server)
    switches = [(k, actor, data) for k, actor, data in kinds if k.startswith("freeze")]
    assert [(k, actor) for k, actor, _ in switches] == [("freeze_on", "erin"), ("freeze_off", "erin")]
    assert switches[0][2]["reason"] == REASON and switches[1][2]["was_on"] is True
    assert any(k == "request_refused" and actor == "alice" for k, actor, _ in kinds)


def test_only_an_admin_may_switch_and_the_refusal_is_audited(server: Served) -> None:
    with server.http("bob") as bob, server.http("victor") as victor:
        refused = _problem(bob.post("/api/v1/freeze", json={"on": True, "reason": "mine"}), 403)
        assert "admin" in refused["detail"]
        _problem(victor.post("/api/v1/freeze", json={"on": False}), 403)
        assert _problem(victor.get("/api/v1/freeze"), 200)["on"] is False
    refusals = [(actor, data) for kind, actor, data in _audit_kinds(server) if kind == "freeze_refused"]
    assert [actor for actor, _ in refusals] == ["bob", "victor"]


def test_freeze_needs_a_reason_and_low_risk_still_runs(server: Served) -> None:
    with server.http("erin") as erin, server.http("alice") as alice:
        assert "reason" in _problem(erin.post("/api/v1/freeze", json={"on": True}), 400)["detail"]
        _problem(erin.post("/api/v1/freeze", json={"on": True, "reason": REASON}), 200)
        assert _level(alice, LOW) in ("low", "Risk.LOW")
        filed = alice.post("/api/v1/requests", json=LOW)
        assert filed.status_code == 201, filed.text
