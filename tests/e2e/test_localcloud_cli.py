"""The CLI reading the sandbox through the local cloud: `opsconsole sandbox up` shared by other commands,
and a command that starts a local cloud for its own lifetime."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_process import cli, sandbox_up

ADAPTERS = ["k8s", "aws", "gcp", "azure"]


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home with `opsconsole sandbox up` running in it."""
    home = tmp_path_factory.mktemp("shared")
    endpoints = home / "sandbox" / "endpoints.json"
    with sandbox_up(home) as process:
        yield home
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Local cloud stopped." in out and "Traceback" not in err
    assert not endpoints.exists(), "sandbox up must remove its endpoints file when it stops"


def status(home: Path, *extra: str) -> dict:  # type: ignore[type-arg]
    return json.loads(cli(home, "fleet", "status", "--json", *extra).stdout)


def test_status_is_read_through_the_four_adapters(shared_home: Path) -> None:
    doc = status(shared_home)
    assert [s["name"] for s in doc["sources"]] == ADAPTERS
    assert all(s["status"] == "ok" for s in doc["sources"]), doc["sources"]
    assert len(doc["regions"]) == 10 and doc["partial"] is False
    assert all(r["p95_ms"] is not None and r["nodes"] > 0 for r in doc["regions"])


def test_an_incident_reaches_the_console_through_the_emulators(shared_home: Path) -> None:
    cli(shared_home, "sandbox", "incident", "region_outage", "--region", "ap-southeast-2")
    deadline = time.monotonic() + 20  # the local cloud syncs every 2 s
    health = None
    while time.monotonic() < deadline:
        health = status(shared_home, "--region", "ap-southeast-2")["regions"][0]["health"]
        if health == "down":
            break
        time.sleep(1)
    assert health == "down"
    cli(shared_home, "sandbox", "clear")


def test_a_second_sandbox_up_is_refused(shared_home: Path) -> None:
    result = cli(shared_home, "sandbox", "up", ok=False)
    assert result.returncode == 2 and "already runs" in result.stderr


def test_without_sandbox_up_a_command_starts_its_own_local_cloud(tmp_path: Path) -> None:
    doc = status(tmp_path)
    assert [s["name"] for s in doc["sources"]] == ADAPTERS
    assert all(s["status"] == "ok" for s in doc["sources"]), doc["sources"]
    assert not (tmp_path / "sandbox" / "endpoints.json").exists()


def test_a_command_that_never_shows_the_fleet_starts_no_local_cloud(tmp_path: Path) -> None:
    world = tmp_path / "sandbox" / "world.json"
    cli(tmp_path, "--as", "alice", "jobs", "list")
    cli(tmp_path, "approvals", "list")
    assert "intact" in cli(tmp_path, "audit", "verify").stdout
    # No emulator started, so nothing synced the world: it was never even written.
    assert not world.exists()
    doc = status(tmp_path)  # the fleet, asked for: the command's own local cloud, every source read
    assert all(s["status"] == "ok" for s in doc["sources"]), doc["sources"]
    assert world.exists()
