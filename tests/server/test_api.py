"""The ops server over real HTTP: credentials, the approval flow, limits, health, sharing and the stream."""

from __future__ import annotations

import json
import queue
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import update

from opsconsole.core import wire
from opsconsole.core.api import Caller, Filed, StreamEvent
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.store.db import api_tokens_table
from tests.server.conftest import Served

FAILOVER = {"action": "failover", "params": {"from_region": "eu-west-1", "to_region": "eu-central-1"}}


def _problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert "Traceback" not in response.text
    return dict(body)


def test_missing_forged_expired_revoked_tokens_are_401_and_record_nothing(server: Served) -> None:
    tokens = server.runtime.auth.tokens
    assert tokens is not None
    expired_id, expired = tokens.create("alice", created_by="test", expires=timedelta(hours=1))
    with server.core.database.engine.begin() as conn:
        conn.execute(update(api_tokens_table).where(api_tokens_table.c.id == expired_id)
                     .values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    revoked_id, revoked = tokens.create("alice", created_by="test")
    tokens.revoke(revoked_id, by="test")
    before = server.counts()
    for token in (None, "opc_forged-forged-forged", "not-even-a-token", expired, revoked):
        with server.http(token=token) as http:
            response = http.post("/api/v1/requests", json=FAILOVER)
            body = _problem(response, 401)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert body["user_error"] is True
            _problem(http.get("/api/v1/whoami"), 401)
    assert server.counts() == before


def test_identity_comes_from_the_token_only(server: Served) -> None:
    pretending = {"X-Opsconsole-User": "bob", "X-Remote-User": "bob", "LOGNAME": "bob"}
    with server.http("alice", **pretending) as http:
        caller = wire.loads(http.get("/api/v1/whoami", params={"as": "bob"}).content)
        assert caller == Caller(person="alice", role="operator", credential="token", world="sandbox")
        filed = wire.loads(http.post("/api/v1/requests", json=FAILOVER).content)
        assert isinstance(filed, Filed)
        assert filed.request.requester == "alice"
        # She cannot approve her own request, whatever she claims to be.
        refused = http.post(f"/api/v1/requests/{filed.request.id}/approve", json={"run": False})
        assert refused.status_code == 403, refused.text
    with server.http("bob") as http:
        detail = wire.loads(http.get(f"/api/v1/requests/{filed.request.id}").content)
    assert detail.request.votes == ()
    assert detail.request.status == RequestStatus.REQUESTED


def test_prod_failover_needs_two_approvals_then_runs_exactly_once(server: Served) -> None:
    with server.http("alice") as alice:
        response = alice.post("/api/v1/requests", json=FAILOVER)
        assert response.status_code == 201, response.text
        filed = wire.loads(response.content)
    request = filed.request
    assert request.status == RequestStatus.REQUESTED
    assert request.approvals_needed == 2
    assert filed.job is None
    assert {"bob", "carol"} <= set(filed.may_still_vote)
    with server.http("bob") as bob:
        decided = wire.loads(bob.post(f"/api/v1/requests/{request.id}/approve", json={"run": False}).content)
        assert decided.request.status == RequestStatus.REQUESTED
        assert decided.request.approvals_missing == 1
        assert [v.person for v in decided.request.votes] == ["bob"]
        assert "bob" not in decided.may_still_vote
        assert decided.job is None
    with server.http("carol") as carol:
        decided = wire.loads(carol.post(f"/api/v1/requests/{request.id[:8]}/approve",
                                        json={"run": False}).content)
        assert decided.request.status == RequestStatus.APPROVED
        assert decided.job is None
    with server.http("alice") as alice:
        started = alice.post(f"/api/v1/requests/{request.id}/run")
        assert started.status_code == 201, started.text
        job = wire.loads(started.content)
        again = alice.post(f"/api/v1/requests/{request.id}/run")
        assert again.status_code == 409, again.text
        jobs = wire.loads(alice.get("/api/v1/jobs").content)
        assert [j.id for j in jobs if not j.check_mode] == [job.id]
        assert wire.loads(alice.get(f"/api/v1/requests/{request.id}").content).request.job_id == job.id
        assert wire.loads(alice.get(f"/api/v1/jobs/{job.id[:8]}").content).id == job.id
        # The requester may stop her run; it is stopped or already over.
        cancelled = alice.post(f"/api/v1/jobs/{job.id}/cancel")
        assert cancelled.status_code in (200, 409), cancelled.text
        events = wire.loads(alice.get(f"/api/v1/jobs/{job.id}/events", params={"wait_s": 5}).content)
        assert all(e.job_id == job.id for e in events)
    with server.http("victor") as victor:  # a viewer may not stop it
        refused = victor.post(f"/api/v1/jobs/{job.id}/cancel")
        assert refused.status_code in (403, 409), refused.text


def test_a_viewer_cannot_file(server: Served) -> None:
    with server.http("victor") as http:
        response = http.post("/api/v1/requests", json=FAILOVER)
    assert response.status_code == 403
    assert "victor" in response.json()["detail"]


def test_the_audit_names_the_clients_face_and_nothing_else_from_the_header(server: Served) -> None:
    with server.http("alice", **{"X-Opsconsole-Face": "cli"}) as http:
        from_cli = wire.loads(http.post("/api/v1/requests", json=FAILOVER).content).request
        http.post(f"/api/v1/requests/{from_cli.id}/cancel", json={})
    with server.http("alice", **{"X-Opsconsole-Face": "root"}) as http:
        other = wire.loads(http.post("/api/v1/requests", json=FAILOVER).content).request
        assert other.requester == "alice"
    assert (from_cli.face, other.face) == ("cli", "api")


def test_body_over_the_cap_is_413_before_parsing(serve: object) -> None:
    server = serve(max_body_bytes=2048)  # type: ignore[operator]
    padding = {"action": "failover", "params": FAILOVER["params"], "pad": "x" * 4096}
    with server.http("alice") as http:
        assert http.get("/api/v1/whoami").status_code == 200  # the token's first use is audited
        before = server.counts()
        _problem(http.post("/api/v1/requests", json=padding), 413)

        def chunks() -> object:  # no Content-Length: the bytes are counted as they come
            for _ in range(10):
                yield b"{" + b" " * 1000

        response = http.post("/api/v1/requests", content=chunks(),  # type: ignore[arg-type]
                             headers={"Content-Type": "application/json"})
        _problem(response, 413)
    assert server.counts() == before


def test_malformed_json_and_unknown_parameters_are_400(server: Served) -> None:
    with server.http("alice") as http:
        body = _problem(http.post("/api/v1/requests", content=b'{"action": "failover", "params": {',
                                  headers={"Content-Type": "application/json"}), 400)
        assert "JSON" in str(body["detail"])
        body = _problem(http.post("/api/v1/assess", json={"action": "failover",
                                                          "params": {"from": "eu-west-1"}}), 400)
        assert "'from'" in str(body["detail"]) and "from_region" in str(body["detail"])
        body = _problem(http.post("/api/v1/assess", json={"action": "reboot", "params": {}}), 400)
        assert "reboot" in str(body["detail"])
        _problem(http.get("/api/v1/requests/ffffffffffff"), 404)
        _problem(http.get("/api/v1/jobs/ffffffffffff"), 404)


def test_assess_scale_with_environment_as_a_string(server: Served) -> None:
    with server.http("alice") as http:
        response = http.post("/api/v1/assess", json={
            "action": "scale", "params": {"service": "checkout", "region": "eu-west-1", "replicas": 7,
                                          "environment": "prod"}})
    if response.status_code == 200:
        assessment = wire.loads(response.content)
        assert assessment.action == "scale" and assessment.targets
    else:  # the planner may refuse the numbers on this inventory; it must say so as a user error
        assert response.status_code == 400, response.text


def test_healthz_turns_503_when_the_store_is_gone(server: Served) -> None:
    with server.http() as http:
        first = http.get("/healthz")
        assert first.status_code == 200, first.text
        assert first.json()["checks"]["store"] == "ok"
        database_file = Path(str(server.core.database.engine.url.database))
        moved = database_file.with_name("moved.db")
        database_file.rename(moved)
        try:
            down = http.get("/healthz")
            assert down.status_code == 503
            assert down.json()["status"] == "failing"
            assert down.json()["checks"]["store"] != "ok"
        finally:
            moved.rename(database_file)
        assert http.get("/healthz").status_code == 200
        metrics = http.get("/metrics")
        assert metrics.status_code == 200
        assert "opsconsole_server_requests_total" in metrics.text
        assert "opsconsole_server_cache_age_seconds" in metrics.text


def test_two_clients_see_each_others_requests(server: Served) -> None:
    with server.http("alice") as alice, server.http("bob") as bob:
        filed = wire.loads(alice.post("/api/v1/requests", json=FAILOVER).content)
        listed = wire.loads(bob.get("/api/v1/requests").content)
        assert filed.request.id in [r.id for r in listed]
        view = wire.loads(bob.get("/api/v1/fleet").content)
        assert view.snapshot.records


def test_the_stream_delivers_a_request_event(server: Served) -> None:
    lines: queue.Queue[str] = queue.Queue()
    stop = threading.Event()

    def read() -> None:
        with server.http("bob") as http, http.stream("GET", "/api/v1/stream",
                                                     timeout=httpx.Timeout(30, read=None)) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                lines.put(line)
                if stop.is_set():
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert lines.get(timeout=20) == ": connected"
    with server.http("alice") as alice:
        filed = wire.loads(alice.post("/api/v1/requests", json=FAILOVER).content)
    found: StreamEvent | None = None
    deadline = time.monotonic() + 30
    while found is None:
        assert time.monotonic() < deadline, "no request event within 30 s"
        line = lines.get(timeout=20)
        if line.startswith("data: "):
            event = wire.loads(line[len("data: "):])
            if event.kind == "request" and event.data["id"] == filed.request.id:
                found = event
    stop.set()
    assert found.data["status"] == "requested"


def test_oidc_bearer_tokens(serve: object, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    issuer, audience = "https://idp.example.test", "opsconsole"
    server = serve(oidc_issuer=issuer, oidc_audience=audience, oidc_jwks=str(jwks),  # type: ignore[operator]
                   oidc_claim="preferred_username")
    now = datetime.now(UTC)

    def token(signer: object = key, **claims: object) -> str:
        body = {"iss": issuer, "aud": audience, "exp": now + timedelta(minutes=5), "iat": now,
                "preferred_username": "bob", **claims}
        return jwt.encode(body, signer, algorithm="RS256", headers={"kid": "k1"})  # type: ignore[arg-type]

    with server.http(token=token()) as http:
        response = http.get("/api/v1/whoami")
        assert response.status_code == 200, response.text
        caller = wire.loads(response.content)
        assert (caller.person, caller.role, caller.credential) == ("bob", "approver", "oidc")
    before = server.counts()
    for bad in (token(iss="https://evil.example.test"), token(aud="someone-else"), token(signer=other),
                token(exp=now - timedelta(hours=1), iat=now - timedelta(hours=2))):
        with server.http(token=bad) as http:
            _problem(http.get("/api/v1/whoami"), 401)
            _problem(http.post("/api/v1/requests", json=FAILOVER), 401)
    assert server.counts() == before


def test_status_and_findings_documents_are_small_and_check_the_region(server: Served) -> None:
    with server.http("victor") as http:
        whole = http.get("/api/v1/fleet")
        status = http.get("/api/v1/fleet/status")
        assert status.status_code == 200
        document = status.json()
        assert document["schema"] == "opsconsole.fleet.status/v1" and len(document["regions"]) == 10
        assert len(status.content) * 10 < len(whole.content)  # what a status call downloads
        one = http.get("/api/v1/fleet/status", params={"region": "eu-west-1"}).json()
        assert [r["id"] for r in one["regions"]] == ["eu-west-1"]
        findings = http.get("/api/v1/fleet/findings", params={"region": "eu-west-1"}).json()
        assert findings["schema"] == "opsconsole.fleet.findings/v1"
        unknown = http.get("/api/v1/fleet/status", params={"region": "mars-1"})
        assert unknown.status_code == 400 and "mars-1" in unknown.json()["detail"]


def test_the_scheduler_is_built_by_the_first_schedules_call_not_by_whoami(server: Served) -> None:
    """Building the scheduler reads the schedules and opens its outbox (half a second): a console's first
    ``whoami`` must not pay for it; the first ``/schedules`` builds it, once, for every caller after."""
    assert server.runtime.scheduler is None  # scheduler=False: built on first use
    with server.http("alice") as http:
        assert http.get("/api/v1/whoami").status_code == 200
        assert http.get("/api/v1/fleet").status_code == 200
        assert server.runtime.scheduler is None
        assert http.get("/api/v1/schedules").status_code == 200
        built = server.runtime.scheduler
        assert built is not None
    with server.http("bob") as http:
        assert http.get("/api/v1/schedules").status_code == 200
    assert server.runtime.scheduler is built
