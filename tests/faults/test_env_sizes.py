"""Remembered sizes live in the world: issue 17, item 8. Without ``sandbox up``, ``act env stop dev`` then
``act env start dev`` (two commands, each with a local cloud of its own) lost the sizes env_schedule.yml
remembers in each cluster's ConfigMap: start reported "succeeded, changed 0" and dev stayed at 0 pods.
The ConfigMaps are now kept with the world and served again by the next command's local cloud.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from opsconsole.core.fleet.model import Fleet
from opsconsole.sandbox.world import World

from .store_cli import run


def _world(home: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((home / "sandbox" / "world.json").read_text())["world"]
    return data


def _dev_replicas(world: dict[str, Any]) -> dict[str, int]:
    return {key: int(w["replicas"]) for key, w in world["workloads"].items() if "-dev/" in key}


def test_kept_objects_survive_the_worlds_file(seed_fleet: Fleet) -> None:
    world = World(seed_fleet, start=datetime(2026, 12, 1, tzinfo=UTC))
    sleep = {"kind": "ConfigMap", "metadata": {"name": "opsconsole-sleep", "namespace": "voltage"},
             "data": {"state": "stopped", "gateway": "4"}}
    world.keep_client_objects("k8s", {"eks-use1-dev/voltage/opsconsole-sleep": sleep})
    again = World.from_dict(seed_fleet, json.loads(json.dumps(world.to_dict())))
    assert again.client_objects("k8s") == {"eks-use1-dev/voltage/opsconsole-sleep": sleep}
    again.keep_client_objects("k8s", {})
    assert World.from_dict(seed_fleet, again.to_dict()).client_objects("k8s") == {}


@pytest.mark.slow
def test_env_stop_then_start_in_separate_commands_restores_dev(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cloud = {"OPSCONSOLE_SANDBOX_READER": "cloud"}
    stop = run(home, "--as", "alice", "act", "env", "stop", "dev", env=cloud, timeout=300)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    stopped = _world(home)
    assert set(stopped["stopped_clusters"]) >= {"eks-use1-dev", "gke-euw1-dev"}
    assert not any(_dev_replicas(stopped).values())
    assert any(key.endswith("/voltage/opsconsole-sleep") for key in stopped["client_objects"]["k8s"])

    start = run(home, "--as", "alice", "act", "env", "start", "dev", env=cloud, timeout=300)
    assert start.returncode == 0, start.stdout + start.stderr
    assert "changed 0" not in start.stdout
    started = _world(home)
    assert not {"eks-use1-dev", "gke-euw1-dev"} & set(started["stopped_clusters"])
    assert all(replicas > 0 for replicas in _dev_replicas(started).values())
