"""Fixtures of the in-process CLI tests: typer's CliRunner on ``opsconsole.cli.app``, an embedded sandbox
server per command (the simulated world read in-process), a home and a client config dir under tmp_path,
and no team server configured unless a test says so."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from opsconsole.cli import app


@pytest.fixture(autouse=True)
def _cli_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSCONSOLE_SANDBOX_READER", "sim")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("OPSCONSOLE_SERVER", "OPSCONSOLE_TOKEN", "OPSCONSOLE_CA_FILE", "OPSCONSOLE_LIVE",
                 "OPSCONSOLE_SERVER_SANDBOX"):
        monkeypatch.delenv(name, raising=False)


Run = Callable[..., Result]


@pytest.fixture
def opsconsole() -> Run:
    """``opsconsole(*args, code=0, input=None, env=None)``: run the CLI in-process, check the exit code
    and that no traceback escaped."""
    runner = CliRunner()

    def run(*args: str, code: int | None = 0, input: str | None = None,
            env: dict[str, str] | None = None) -> Result:
        result = runner.invoke(app, list(args), input=input, env=env, catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert "Traceback" not in result.stderr, result.stderr
        if code is not None:
            assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        return result

    return run


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)
