"""A team server for real (H2's server over TCP on 127.0.0.1, sandbox, SQLite under tmp_path): a token
made with `opsconsole server tokens create`, `opsconsole login` with it, then commands go to that server
as the token's person; `--as` is refused there; `logout` returns to the local sandbox."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsconsole.server.app import create_app
from opsconsole.server.embedded import ServedApp
from opsconsole.server.main import server_runtime
from opsconsole.server.settings import ServerSettings
from tests.cli.conftest import Run, as_json


@pytest.fixture
def team_server(tmp_path: Path, _isolated_home: Path) -> Iterator[str]:
    settings = ServerSettings(port=0, sandbox=True, home=_isolated_home, refresh_s=0.5)
    with server_runtime(settings, scheduler=False, slack=False) as runtime:
        served = ServedApp(create_app(runtime), host="127.0.0.1", port=0)
        served.start()
        try:
            yield f"http://127.0.0.1:{served.port}"
        finally:
            served.stop()


def test_login_then_commands_ask_the_team_server_as_the_token_person(
    opsconsole: Run, team_server: str, tmp_path: Path
) -> None:
    created = as_json(opsconsole("server", "--sandbox", "tokens", "create", "carol", "--expires", "30d",
                                 "--json"))
    assert created["person"] == "carol" and created["token"].startswith("opc_")
    listed = as_json(opsconsole("server", "--sandbox", "tokens", "list", "--json"))
    assert [t["person"] for t in listed] == ["carol"] and "token" not in listed[0]

    wrong = opsconsole("login", "--server", team_server, input="opc_nonsense\n", code=2)
    assert "opsconsole login --server URL" in wrong.stderr
    assert not (tmp_path / "config" / "opsconsole" / "client.json").exists()

    logged = opsconsole("login", "--server", team_server, input=created["token"] + "\n")
    assert logged.stdout.strip() == f"logged in to {team_server} as carol"
    saved = tmp_path / "config" / "opsconsole" / "client.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600

    assert opsconsole("whoami").stdout.startswith("carol (approver) on the sandbox via token")
    assert len(as_json(opsconsole("fleet", "status", "--json"))["regions"]) == 10
    refused = opsconsole("--as", "alice", "whoami", code=2)
    assert "--as is for the sandbox; with a server you act as your token's person" in refused.stderr

    opsconsole("server", "--sandbox", "tokens", "revoke", created["id"])
    revoked = opsconsole("whoami", code=2)
    assert "opsconsole login --server URL" in revoked.stderr

    assert opsconsole("logout").stdout.strip() == "logged out."
    assert "(viewer) on the sandbox via embedded" in opsconsole("whoami").stdout
