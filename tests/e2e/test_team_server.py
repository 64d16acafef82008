"""Issue 12's "Done when", as a team does it from the README ("Running it for a team"): one
`opsconsole server` process is the only authority; people are separate `opsconsole` processes that
reach it with a personal token (``OPSCONSOLE_SERVER`` + ``OPSCONSOLE_TOKEN``, or `opsconsole login`),
in homes of their own that hold no state.

- A prod failover filed by alice needs two approvers; her token under ``LOGNAME=bob`` is still alice
  (refused: she filed it); bob and carol approve; it runs once against the server's own local cloud.
- A status flipped or a vote inserted behind the server's back (raw SQL on its SQLite store) runs
  nothing, and `opsconsole audit verify` names the request.
- Over HTTPS with a self-signed certificate: `login --ca-file` works, a login that does not trust the
  certificate fails with a message, not a traceback.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from team_server import TeamServer, team_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PEOPLE = ("alice", "bob", "carol")
FAILOVER = ("act", "failover", "--from", "eu-west-1", "--to", "eu-central-1")
REPO = Path(__file__).resolve().parents[2]


def real_jobs(server: TeamServer, action: str) -> list[dict[str, Any]]:
    """Every non-preview job of ``action`` on the server."""
    jobs = server.json("alice", "jobs", "list", "-n", "1000")
    return [j for j in jobs if j["action"] == action and not j["check_mode"]]


def request(server: TeamServer, request_id: str) -> dict[str, Any]:
    return server.json("alice", "approvals", "show", request_id)  # type: ignore[no-any-return]


# -- 1. the "Done when" ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloud_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    """`opsconsole server --sandbox` with the default `cloud` reader: it starts its own local cloud."""
    with team_server(tmp_path_factory.mktemp("team")) as server:
        server.make_tokens(*PEOPLE)
        yield server


def test_done_when_a_team_server_decides_who_approves_and_runs_once(cloud_server: TeamServer) -> None:
    server = cloud_server
    weights = server.json("alice", "fleet", "status", "--region", "eu-west-1")["regions"][0]["dns_weights"]
    assert weights == {"eu-west-1": 100}
    # alice files a prod failover: it waits for two approvers.
    filed = server.json("alice", *FAILOVER)
    assert (filed["status"], filed["risk"], filed["needs"]["approvals"]) == ("requested", "high", 2), filed
    assert set(filed["eligible_approvers"]) >= {"bob", "carol"}
    rid = filed["request_id"]
    assert request(server, rid)["requester"] == "alice"
    # Who you are is the token, not the environment: alice's token under LOGNAME=bob is alice.
    posing = server.cli("alice", "approvals", "approve", rid, ok=False,
                        env={"LOGNAME": "bob", "USER": "bob"})
    assert posing.returncode == 2, posing.stdout + posing.stderr
    assert "you filed this request" in posing.stderr, posing.stderr
    assert request(server, rid)["approvers"] == []
    # bob only votes; carol's approval completes it and runs it (the command follows the run).
    bob = server.cli("bob", "approvals", "approve", rid, "--no-run")
    assert "approved by bob" in bob.stdout and "1 more approval" in bob.stdout, bob.stdout
    assert real_jobs(server, "failover") == []
    carol = server.cli("carol", "approvals", "approve", rid, timeout=420)
    assert "approved by carol" in carol.stdout and "succeeded" in carol.stdout, carol.stdout
    shown = request(server, rid)
    assert shown["status"] == "succeeded" and shown["approvers"] == ["bob", "carol"], shown
    job_id = shown["job_id"]
    assert job_id
    logs = server.cli("alice", "jobs", "logs", job_id, "--follow", timeout=300)
    assert "succeeded" in logs.stdout and "Promote" in logs.stdout, logs.stdout
    job = server.json("alice", "jobs", "show", job_id)
    assert job["status"] == "succeeded" and job["stats"]["totals"]["changed"] >= 1, job
    # Exactly one run, and the playbook really moved the local cloud the server reads.
    assert [j["id"] for j in real_jobs(server, "failover")] == [job_id]
    deadline = time.monotonic() + 60
    while True:
        regions = {r["id"]: r for r in server.json("alice", "fleet", "status")["regions"]}
        moved = regions["eu-west-1"]["dns_weights"] == {"eu-central-1": 100}
        promoted = regions["eu-central-1"]["db_role"] == "write_primary"  # another source, its own pace
        if (moved and promoted) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert regions["eu-west-1"]["dns_weights"] == {"eu-central-1": 100}, regions["eu-west-1"]
    assert regions["eu-central-1"]["db_role"] == "write_primary", regions["eu-central-1"]
    # The audit tells it: filed by alice, refused for alice (posing as bob), bob and carol, one run.
    entries = server.json("alice", "audit", "log", "--request", rid)
    kinds = [e["kind"] for e in entries]
    assert kinds[0] == "request_filed" and entries[0]["actor"] == "alice", kinds
    assert [e["actor"] for e in entries if e["kind"] == "vote_approve"] == ["bob", "carol"], entries
    assert [e["actor"] for e in entries if e["kind"] == "vote_refused"] == ["alice"], entries
    assert kinds.count("run_finished") == 1, kinds
    assert "intact" in server.cli("alice", "audit", "verify").stdout
    # The clients hold no state: their home has no store, no runs.
    assert not (server.client_home / "opsconsole.db").exists()
    assert not any(server.client_home.iterdir()), list(server.client_home.iterdir())


def test_no_credential_means_no_answer(cloud_server: TeamServer) -> None:
    server = cloud_server
    # A client with the server's URL but no token (and no saved login) is told how to log in.
    missing = server.cli(None, "approvals", "list", ok=False)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "opsconsole login" in missing.stderr, missing.stderr
    # A token the server never issued: the same.
    forged = server.cli(None, "approvals", "list", ok=False, env={"OPSCONSOLE_TOKEN": "opc_" + "x" * 43})
    assert forged.returncode == 2 and "opsconsole login" in forged.stderr, forged.stderr
    # Raw HTTP without Authorization: 401 problem+json, nothing listed.
    with server.http() as http:
        answer = http.get("/api/v1/requests")
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["status"] == 401 and problem["detail"] and "request_id" not in answer.text


# -- 2. a tampered store runs nothing --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    """`opsconsole server --sandbox` reading the simulated world in-process (fast)."""
    with team_server(tmp_path_factory.mktemp("tamper"), reader="sim") as server:
        server.make_tokens(*PEOPLE)
        yield server


def sql(server: TeamServer, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    """Raw SQL on the server's SQLite store, as someone with the database file (not opsconsole) would."""
    with sqlite3.connect(server.database, timeout=30) as db:
        return db.execute(statement, args).fetchall()


def test_a_tampered_store_runs_nothing_and_audit_verify_says_where(sim_server: TeamServer) -> None:
    server = sim_server
    filed = server.json("alice", *FAILOVER)
    rid = filed["request_id"]
    assert filed["needs"]["approvals"] == 2
    sql(server, "UPDATE change_requests SET status = 'approved' WHERE id = ?", rid)
    assert request(server, rid)["status"] == "approved"  # the store says so; the audit log does not
    jobs_before = server.json("alice", "jobs", "list", "-n", "1000")
    run = server.cli("alice", "approvals", "run", rid, ok=False)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "disagree with the audit log" in run.stderr and "nothing ran" in run.stderr, run.stderr
    assert server.json("alice", "jobs", "list", "-n", "1000") == jobs_before
    assert request(server, rid)["job_id"] is None
    verify = server.cli("alice", "audit", "verify", ok=False)
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert f"request {rid[:8]}: status approved" in verify.stdout, verify.stdout
    # The refusal itself is on the record.
    kinds = [e["kind"] for e in server.json("alice", "audit", "log", "--request", rid)]
    assert "approval_discrepancy" in kinds, kinds


def test_an_inserted_vote_is_not_counted_and_runs_nothing(sim_server: TeamServer) -> None:
    server = sim_server
    filed = server.json("alice", "act", "failover", "--from", "us-east-1", "--to", "us-west-2")
    rid = filed["request_id"]
    assert filed["needs"]["approvals"] == 2
    ((plan_hash, world),) = sql(server, "SELECT plan_hash, world FROM change_requests WHERE id = ?", rid)
    at = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
    sql(server, "INSERT INTO votes (request_id, voter, decision, reason, role, face, at, plan_hash, world) "
                "VALUES (?, 'bob', 'approve', NULL, 'approver', 'cli', ?, ?, ?)", rid, at, plan_hash, world)
    jobs_before = server.json("alice", "jobs", "list", "-n", "1000")
    # Not approved (even by the store's count): a run is refused.
    early = server.cli("alice", "approvals", "run", rid, ok=False)
    assert early.returncode == 2, early.stdout + early.stderr
    verify = server.cli("alice", "audit", "verify", ok=False)
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert f"request {rid[:8]}: bob's approve vote has no audited vote entry" in verify.stdout, verify.stdout
    # carol's approval would be the second by the votes table, but bob's is not counted: nothing runs.
    carol = server.cli("carol", "approvals", "approve", rid, ok=False, timeout=120)
    assert carol.returncode in (0, 2), carol.stdout + carol.stderr
    if carol.returncode == 2:  # the store's count completed it: the gate re-derived 1 of 2 and refused
        assert "disagree with the audit log" in carol.stderr and "1 of 2" in carol.stderr, carol.stderr
    else:
        assert "1 more approval" in carol.stdout, carol.stdout
    again = server.cli("alice", "approvals", "run", rid, ok=False)
    assert again.returncode == 2, again.stdout + again.stderr
    assert server.json("alice", "jobs", "list", "-n", "1000") == jobs_before
    assert request(server, rid)["job_id"] is None
    verify = server.cli("alice", "audit", "verify", ok=False)
    assert verify.returncode == 1 and f"request {rid[:8]}: bob's approve vote" in verify.stdout, verify.stdout


# -- 3. HTTPS --------------------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, signed by its own key (it is its own CA), and that key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "opsconsole e2e 127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_the_cli_over_https_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with team_server(tmp_path, reader="sim", tls=(cert, key)) as server:
        server.make_tokens("alice")
        token = server.tokens["alice"]
        # As a person at a laptop: nothing in the environment but a config directory of their own.
        bare = {"OPSCONSOLE_SERVER": "", "OPSCONSOLE_TOKEN": "", "OPSCONSOLE_CA_FILE": ""}
        untrusted = server.cli(None, "login", "--server", server.url, ok=False, stdin=token + "\n", env=bare)
        assert untrusted.returncode in (1, 2), untrusted.stdout + untrusted.stderr
        assert "certificate" in untrusted.stderr.lower(), untrusted.stderr
        assert not (server.client_config / "opsconsole" / "client.json").exists()
        login = server.cli(None, "login", "--server", server.url, "--ca-file", str(cert), stdin=token + "\n",
                           env=bare)
        assert f"logged in to {server.url} as alice" in login.stdout, login.stdout + login.stderr
        saved = server.client_config / "opsconsole" / "client.json"
        assert saved.stat().st_mode & 0o777 == 0o600
        assert json.loads(saved.read_text())["server"] == server.url
        whoami = server.cli(None, "whoami", env=bare)
        assert whoami.stdout.startswith("alice (operator)") and "sandbox" in whoami.stdout, whoami.stdout
        fleet = server.cli(None, "fleet", "status", "--json", env=bare)
        assert {r["id"] for r in json.loads(fleet.stdout)["regions"]} >= {"eu-west-1", "us-east-1"}
        # Plain HTTP to the HTTPS port gets nowhere.
        plain = server.cli(None, "whoami", ok=False, env={**bare, "OPSCONSOLE_SERVER": server.url.replace(
            "https://", "http://"), "OPSCONSOLE_TOKEN": token})
        assert plain.returncode in (1, 2), plain.stdout + plain.stderr


def test_the_clients_inventory_and_policy_do_not_count(sim_server: TeamServer, tmp_path: Path) -> None:
    """A client pointing OPSCONSOLE_INVENTORY at its own copy whose policy.yml makes everything low risk
    still gets the server's policy: a prod failover needs two approvers."""
    mine = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory", mine)
    (mine / "policy.yml").write_text(
        "---\nversion: 1\nlevels: {low: {approvals: 0}}\nrules:\n  - {name: anything-goes, risk: low}\n"
    )
    filed = json.loads(server_cli(sim_server, "alice", "act", "failover", "--from", "ap-southeast-1",
                                  "--to", "ap-northeast-1", "--json", OPSCONSOLE_INVENTORY=str(mine)))
    assert (filed["status"], filed["risk"], filed["needs"]["approvals"]) == ("requested", "high", 2)
    sim_server.cli("alice", "approvals", "cancel", filed["request_id"])


def server_cli(server: TeamServer, person: str, *args: str, **env: str) -> str:
    return server.cli(person, *args, env=env).stdout
