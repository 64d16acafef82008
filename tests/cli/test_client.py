"""The thin client on its own: error mapping against a tiny real HTTP server, the SSE parser, the client
config file, and what importing it (and `opsconsole --help`) loads."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from opsconsole.client import Unauthenticated, config
from opsconsole.client.remote import RemoteClient, ServerError, Unreachable, parse_sse
from opsconsole.core import wire
from opsconsole.core.api import Caller, StreamEvent
from opsconsole.core.errors import UsageError
from opsconsole.core.runs.records import JobStatus

TOKEN = "opc_test"


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            "user_error": status < 500}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def tiny_app() -> FastAPI:
    app = FastAPI()

    @app.get("/api/v1/whoami")
    def whoami(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return _problem(401, "not logged in", "unknown or revoked token")
        caller = Caller(person="carol", role="approver", credential="token", world="sandbox")
        return Response(wire.dumps(caller), media_type="application/json")

    @app.get("/api/v1/jobs/{job_id}")
    def job(job_id: str) -> Response:
        if job_id == "busy":
            return _problem(409, "targets busy", "another run holds eu-west-1")
        return _problem(500, "store unavailable", "database is locked")

    @app.post("/api/v1/schedules/overrides")
    async def override(request: Request) -> Response:
        body = await request.json()
        return JSONResponse({"echo": body, "status": wire.encode(JobStatus.RUNNING)})

    return app


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(tiny_app(), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the tiny server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_answers_are_records_and_errors_map_to_exit_codes(server_url: str) -> None:
    with RemoteClient(server_url, TOKEN) as client:
        assert client.whoami() == Caller(person="carol", role="approver", credential="token", world="sandbox")
        with pytest.raises(UsageError, match="another run holds eu-west-1") as busy:
            client.job("busy")
        assert busy.value.title == "targets busy" and busy.value.user_error
        with pytest.raises(ServerError, match="database is locked") as failed:
            client.job("other")
        assert not failed.value.user_error
        # Bodies are plain JSON (times as ISO-8601); a StrEnum sent bare comes back as its value.
        echo = client.schedule_override("staging", "keep_awake", until=datetime(2026, 1, 1, tzinfo=UTC))
        assert echo["echo"]["until"] == "2026-01-01T00:00:00+00:00" and echo["status"] == "running"
    with RemoteClient(server_url, "opc_wrong") as stranger, pytest.raises(Unauthenticated) as no:
        stranger.whoami()
    assert no.value.user_error and "opsconsole login --server URL" in no.value.message
    assert TOKEN not in repr(RemoteClient(server_url, TOKEN))


def test_nothing_listening_is_unreachable() -> None:
    with RemoteClient("http://127.0.0.1:9", TOKEN, timeout_s=5) as client, pytest.raises(Unreachable) as exc:
        client.whoami()
    assert "cannot reach the ops server at http://127.0.0.1:9" in exc.value.message
    assert not exc.value.user_error


def test_server_sent_events_are_parsed_into_stream_events() -> None:
    at = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    first = StreamEvent(kind="request", at=at, data={"id": "abc", "status": "approved"})
    second = StreamEvent(kind="fleet", at=at, data={"taken_at": at})
    lines = [": connected", "", "event: request", f"data: {wire.dumps(first)}", "", ": keepalive", "",
             "event: fleet", f"data: {wire.dumps(second)}", ""]
    assert list(parse_sse(iter(lines))) == [first, second]


def test_the_client_file_is_private_and_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.resolve() is None
    path = config.save("https://ops.example.net/", "opc_secret")
    assert path == tmp_path / "config" / "opsconsole" / "client.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert config.resolve() == ("https://ops.example.net", "opc_secret")
    assert [p.name for p in path.parent.iterdir()] == ["client.json"]  # no temporary file left behind
    monkeypatch.setenv("OPSCONSOLE_SERVER", "https://other.example.net")
    with pytest.raises(Unauthenticated):
        config.resolve()  # a token saved for another server is not sent to this one
    monkeypatch.setenv("OPSCONSOLE_TOKEN", "opc_env")
    assert config.resolve() == ("https://other.example.net", "opc_env")
    monkeypatch.delenv("OPSCONSOLE_SERVER")
    monkeypatch.delenv("OPSCONSOLE_TOKEN")
    assert config.forget() and not config.forget() and config.resolve() is None


def test_importing_the_client_and_the_cli_loads_nothing_heavy() -> None:
    script = (
        "import sys\n"
        "import opsconsole.client.remote, opsconsole.client.config, opsconsole.cli\n"
        "heavy = ('sqlalchemy', 'boto3', 'grpc', 'kubernetes', 'azure', 'ansible', 'ansible_runner',\n"
        "         'textual', 'fastapi', 'uvicorn', 'google.cloud')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('google.cloud')))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            env={**os.environ}).stdout.strip()
    assert loaded == "[]"
    script = ("import sys, opsconsole.cli\n"
              "print(sorted(m for m in ('httpx', 'yaml', 'rich.live') if m in sys.modules))")
    help_only = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               check=True).stdout.strip()
    assert help_only == "[]"
