"""The embedded server of ``make run`` (a private Unix socket, one session token) and HTTPS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import ssl
import stat
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from slack_bolt import App

from opsconsole.core import wire
from opsconsole.core.errors import UsageError
from opsconsole.server.app import create_app
from opsconsole.server.embedded import EmbeddedServer, ServedApp
from opsconsole.server.main import server_runtime, tokens_create, tokens_list, tokens_revoke
from opsconsole.server.service import READ_ONLY_MESSAGE
from opsconsole.server.settings import ServerSettings
from tests.server.conftest import ServeFactory

FAILOVER = {"from_region": "eu-west-1", "to_region": "eu-central-1"}


def _socket_client(server: EmbeddedServer) -> httpx.Client:
    return httpx.Client(base_url="http://opsconsole", transport=httpx.HTTPTransport(uds=server.socket_path),
                        headers={"Authorization": f"Bearer {server.token}"}, timeout=30)


def test_embedded_server_serves_the_cast_member_on_a_private_socket(sim: None) -> None:
    with EmbeddedServer.start(acting_as="alice") as server:
        directory = Path(server.socket_path).parent
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        with _socket_client(server) as http:
            caller = wire.loads(http.get("/api/v1/whoami").content)
            assert (caller.person, caller.credential, caller.world) == ("alice", "embedded", "sandbox")
            assert http.get("/api/v1/whoami", headers={"Authorization": "Bearer ops_nope"}).status_code == 401
            filed = wire.loads(http.post("/api/v1/requests", json={"action": "failover",
                                                                   "params": FAILOVER}).content)
            assert filed.request.requester == "alice"
            assert wire.loads(http.get("/api/v1/fleet").content).snapshot.records
            assert http.get("/api/v1/jobs").status_code == 200
            assert [r.id for r in wire.loads(http.get("/api/v1/requests").content)] == [filed.request.id]
        client = server.client()
        try:
            assert client.whoami().person == "alice"
            assert [r.id for r in client.requests()] == [filed.request.id]
        finally:
            client.close()
    assert not directory.exists()


def test_embedded_server_refuses_an_unknown_cast_member(sim: None) -> None:
    with pytest.raises(UsageError, match="not in the sandbox cast"):
        EmbeddedServer.start(acting_as="mallory").__enter__()


def test_live_embedded_server_is_read_only(
    sim: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    with EmbeddedServer.start(live=True) as server, _socket_client(server) as http:
        caller = wire.loads(http.get("/api/v1/whoami").content)
        assert caller.world == "live" and caller.may_change is False
        response = http.post("/api/v1/requests", json={"action": "failover", "params": FAILOVER})
        assert response.status_code == 403
        assert response.json()["detail"] == READ_ONLY_MESSAGE


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_file, 0o600)
    return cert_file, key_file


def test_https_with_a_self_signed_certificate(serve: ServeFactory, tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert_file))
    server = serve(ssl_certfile=str(cert_file), ssl_keyfile=str(key_file), verify=trust)
    assert server.url.startswith("https://")
    with server.http("bob") as http:
        assert http.get("/healthz").status_code == 200
        assert wire.loads(http.get("/api/v1/whoami").content).person == "bob"
    with pytest.raises(httpx.ConnectError), httpx.Client(base_url=server.url) as untrusting:
        untrusting.get("/healthz")


def test_schedules_audit_and_openapi(serve: ServeFactory) -> None:
    server = serve()
    with server.http("erin") as http:
        schedules = wire.loads(http.get("/api/v1/schedules").content)
        assert set(schedules) == {"now", "statuses"}
        params = [("kind", "token_created"), ("limit", 3)]
        audit = wire.loads(http.get("/api/v1/audit", params=params).content)
        assert len(audit) == 3 and {e.kind for e in audit} == {"token_created"}
        verified = wire.loads(http.get("/api/v1/audit/verify").content)
        assert verified.ok
        document = http.get("/api/v1/openapi.json").json()
        assert "/api/v1/requests/{request_id}/approve" in document["paths"]


def test_token_administration(sim: None, _isolated_home: Path) -> None:
    settings = ServerSettings(home=_isolated_home)
    token_id, text = tokens_create(settings, "alice", created_by="erin", expires=dt.timedelta(days=1),
                                   label="laptop")
    assert text.startswith("opc_") and len(text) > 40
    listed = tokens_list(settings)
    assert [(t.id, t.person, t.label) for t in listed] == [(token_id, "alice", "laptop")]
    assert text not in repr(listed)
    revoked = tokens_revoke(settings, token_id[:8], by="erin")
    assert revoked.revoked_at is not None
    with pytest.raises(UsageError, match="already revoked"):
        tokens_revoke(settings, token_id, by="erin")
    with pytest.raises(UsageError):
        tokens_create(settings, "alice smith", created_by="erin")


def test_slack_is_mounted_on_the_same_app_and_checks_its_own_signature(core: object) -> None:
    slack = App(signing_secret="s" * 32, token="xoxb-test", token_verification_enabled=False)
    settings = ServerSettings()
    with server_runtime(settings, core=core, scheduler=False, slack=False) as runtime:  # type: ignore[arg-type]
        runtime.slack_app = slack
        served = ServedApp(create_app(runtime), port=0)
        served.start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{served.port}") as http:
                response = http.post("/slack/events", content=b"token=x&command=%2Fops",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        finally:
            served.stop()
    assert response.status_code == 401  # Bolt's own verdict: no Slack signature
    assert "www-authenticate" not in response.headers


def test_the_openapi_document_in_docs_is_the_one_served(serve: ServeFactory) -> None:
    """docs/openapi.json is what the server serves; after changing a route, rewrite it with
    OPSCONSOLE_WRITE_OPENAPI=1 pytest tests/server -k openapi_document."""
    kept = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
    with serve().http("bob") as http:
        served = http.get("/api/v1/openapi.json").json()
    if os.environ.get("OPSCONSOLE_WRITE_OPENAPI") == "1":
        kept.write_text(json.dumps(served, indent=2, sort_keys=True) + "\n")
    assert json.loads(kept.read_text()) == served, "docs/openapi.json is out of date (see the docstring)"
