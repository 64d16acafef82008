"""playbooks/scale.yml and env_schedule.yml, run for real with ansible-playbook against the local cloud.

One local cloud (all four emulators) for the module, with its driver syncing as ``opsconsole sandbox up``
does (env_schedule waits for readiness between tiers, which only a sync publishes). Each run is a real
``ansible-playbook -i inventory/hosts.yml playbooks/<name>.yml -e @extravars.json`` subprocess with a minimal
environment, as the runner gives it; effects are asserted on the world (after ``cloud.sync()``) and, for the
environment stop, through the Kubernetes adapter.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import CacheState, DatabaseState, Environment, Fleet, WorkloadState
from opsconsole.providers.k8s import KubernetesSource
from opsconsole.sandbox.localcloud import LocalCloud
from opsconsole.sandbox.state import WorldStore
from opsconsole.testing import FakeClock
from opsconsole.wiring import sandbox_emulators

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
AT = datetime(2026, 11, 26, 18, 30, tzinfo=UTC)
TIMINGS: dict[str, list[float]] = {}


@dataclass
class Run:
    rc: int
    out: str
    seconds: float

    @property
    def changed(self) -> int:
        m = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", self.out)
        assert m, self.out[-3000:]
        return int(m.group(1))


@dataclass
class Sandbox:
    cloud: LocalCloud
    fleet: Fleet
    workdir: Path
    env: dict[str, str]

    def play(self, playbook: str, extravars: dict[str, Any], *args: str) -> Run:
        aws = self.cloud.endpoints["aws"]
        data = {
            "opsconsole_kubeconfig": self.cloud.endpoints["k8s"].settings["kubeconfig"],
            "opsconsole_aws_endpoint_url": aws.urls["aws"],
            "opsconsole_cloudwatch_endpoint_url": aws.urls["cloudwatch"],
            "opsconsole_sandbox": True,
            **extravars,
        }
        path = self.workdir / "extravars.json"
        path.write_text(json.dumps(data))
        cmd = [
            str(VENV_BIN / "ansible-playbook"),
            "-i", str(REPO / "inventory" / "hosts.yml"),
            str(REPO / "playbooks" / playbook),
            "-e", f"@{path}",
            *args,
        ]
        started = time.monotonic()
        proc = subprocess.run(
            cmd, cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=240, check=False
        )
        seconds = time.monotonic() - started
        label = f"{playbook} {extravars.get('scale_target') or extravars.get('env_state')} {' '.join(args)}"
        TIMINGS.setdefault(label.strip(), []).append(round(seconds, 1))
        print(f"[{seconds:5.1f} s] {label.strip()}")
        return Run(proc.returncode, proc.stdout + proc.stderr, seconds)

    def ok(self, playbook: str, extravars: dict[str, Any], *args: str) -> Run:
        run = self.play(playbook, extravars, *args)
        assert run.rc == 0, run.out[-4000:]
        self.cloud.sync()
        return run


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    fleet = load_inventory()
    home = tmp_path_factory.mktemp("playbooks-home")
    store = WorldStore(home, fleet, FakeClock(AT), seed=7)
    cloud = LocalCloud(store, sandbox_emulators(fleet), sync_s=0.3)
    cloud.start()
    cloud.start_driver()
    work = tmp_path_factory.mktemp("playbooks-run")
    settings = cloud.endpoints["aws"].settings
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "HOME": str(work),
        "ANSIBLE_LOCAL_TEMP": str(work / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(work / "ansible-remote"),
        "AWS_ACCESS_KEY_ID": settings["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": settings["aws_secret_access_key"],
        "AWS_SESSION_TOKEN": settings["aws_session_token"],
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LANG": "C.UTF-8",
    }
    yield Sandbox(cloud, fleet, work, env)
    cloud.stop()
    print("\nplaybook run timings (s):", json.dumps(TIMINGS, indent=1))


def test_workload_replicas_preview_then_change_then_idempotent(sandbox: Sandbox) -> None:
    ask = {"scale_target": "workload", "region": "eu-west-1", "service": "checkout",
           "cluster": "eks-euw1-prod", "replicas": 12}
    with sandbox.cloud.store.open() as world:
        before = world.replicas("eks-euw1-prod", "checkout")
    assert before != 12
    preview = sandbox.ok("scale.yml", ask, "--check", "--diff")
    assert preview.changed == 1
    assert re.search(r'-\s+"replicas": ' + str(before) + r'\n\+\s+"replicas": 12', preview.out), preview.out
    with sandbox.cloud.store.open() as world:
        assert world.replicas("eks-euw1-prod", "checkout") == before
    assert sandbox.ok("scale.yml", ask).changed == 1
    with sandbox.cloud.store.open() as world:
        assert world.replicas("eks-euw1-prod", "checkout") == 12
    assert sandbox.ok("scale.yml", ask).changed == 0


def test_hpa_bounds_across_a_region(sandbox: Sandbox) -> None:
    sandbox.ok("scale.yml", {"scale_target": "hpa", "region": "eu-west-1", "service": "search",
                             "hpa_min": 5, "hpa_max": 90})
    prod = [c.name for c in sandbox.fleet.clusters_in("eu-west-1", Environment.PROD)]
    assert len(prod) == 3
    with sandbox.cloud.store.open() as world:
        assert {c: world.hpa_bounds(c, "search") for c in prod} == dict.fromkeys(prod, (5, 90))
        assert world.hpa_bounds("eks-euc1-prod", "search") != (5, 90)


def test_eks_node_group_bounds(sandbox: Sandbox) -> None:
    ask = {"scale_target": "nodes", "region": "eu-west-1", "cluster": "eks-euw1-prod",
           "nodes_min": 12, "nodes_max": 45}
    sandbox.ok("scale.yml", ask)
    with sandbox.cloud.store.open() as world:
        assert world.node_bounds("eks-euw1-prod") == (12, 45)
    assert sandbox.ok("scale.yml", ask).changed == 0


def test_eks_nodes_desired_preview_change_and_region_bound(sandbox: Sandbox) -> None:
    # us-west-2's prod clusters run 24 nodes (eks-usw2-prod 10 of them): the seed's bound is 50 per region.
    ask = {"scale_target": "nodes", "region": "us-west-2", "cluster": "eks-usw2-prod",
           "nodes_min": 8, "nodes_max": 40, "nodes_desired": 15}
    with sandbox.cloud.store.open() as world:
        before = (world.node_bounds("eks-usw2-prod"), world.nodes("eks-usw2-prod"))
    assert before == ((10, 50), 10)
    preview = sandbox.ok("scale.yml", ask, "--check", "--diff")
    assert "min/max/desired 10/50/10 -> 8/40/15 (check mode: not changed)" in preview.out, preview.out[-3000:]
    with sandbox.cloud.store.open() as world:
        assert (world.node_bounds("eks-usw2-prod"), world.nodes("eks-usw2-prod")) == before

    run = sandbox.ok("scale.yml", ask)
    assert run.changed == 1 and "min/max/desired 10/50/10 -> 8/40/15" in run.out, run.out[-3000:]
    with sandbox.cloud.store.open() as world:
        assert world.node_bounds("eks-usw2-prod") == (8, 40)

    over = sandbox.play("scale.yml", {**ask, "nodes_desired": 40})
    assert over.rc != 0 and "over the seed's bound of 50 nodes per region" in over.out, over.out[-3000:]
    outside = sandbox.play("scale.yml", {**ask, "nodes_desired": 41})
    assert outside.rc != 0 and "nodes_desired=41 must be an integer with nodes_min (8)" in outside.out
    with sandbox.cloud.store.open() as world:
        assert world.node_bounds("eks-usw2-prod") == (8, 40)


def test_read_replicas_and_cache_nodes(sandbox: Sandbox) -> None:
    sandbox.ok("scale.yml", {"scale_target": "read_replicas", "region": "eu-west-1", "read_replicas": 4})
    sandbox.ok("scale.yml", {"scale_target": "cache", "region": "eu-west-1", "cache_nodes": 5})
    with sandbox.cloud.store.open() as world:
        records = world.observe()
    db = next(r for r in records if isinstance(r, DatabaseState) and r.region == "eu-west-1")
    cache = next(r for r in records if isinstance(r, CacheState) and r.region == "eu-west-1")
    assert (db.read_replicas, cache.nodes) == (4, 5)


@pytest.mark.parametrize(
    ("ask", "says"),
    [
        ({"scale_target": "workload", "region": "eu-west-1", "service": "catalog", "replicas": 150},
         "replicas=150 is outside the bound 2-100"),
        ({"scale_target": "hpa", "region": "eu-west-1", "service": "catalog", "hpa_min": 1, "hpa_max": 20},
         "hpa_min=1 hpa_max=20"),
        ({"scale_target": "cache", "region": "eu-west-1", "cache_nodes": 11}, "cache_nodes=11 is outside"),
    ],
)
def test_out_of_bounds_is_refused_before_any_change(sandbox: Sandbox, ask: dict[str, Any], says: str) -> None:
    sandbox.cloud.sync()
    with sandbox.cloud.store.open() as world:
        before = world.to_dict()
    run = sandbox.play("scale.yml", ask)
    assert run.rc != 0 and says in run.out, run.out[-3000:]
    sandbox.cloud.sync()
    with sandbox.cloud.store.open() as world:
        after = world.to_dict()
    for key in ("workloads", "clusters"):
        assert after[key] == before[key]
    assert {r: v["cache_nodes"] for r, v in after["regions"].items()} == {
        r: v["cache_nodes"] for r, v in before["regions"].items()
    }


def _k8s_workloads(sandbox: Sandbox, clusters: set[str]) -> list[WorkloadState]:
    source = KubernetesSource.from_endpoints(sandbox.fleet, sandbox.cloud.endpoints["k8s"], timeout_s=30.0)
    reading = source.read()
    return [r for r in reading.records if isinstance(r, WorkloadState) and r.cluster in clusters]


def test_staging_stop_and_start_restores_the_old_sizes(sandbox: Sandbox) -> None:
    staging = {c.name for c in sandbox.fleet.clusters.values() if c.environment is Environment.STAGING}
    with sandbox.cloud.store.open() as world:
        sizes = {(c, s): world.replicas(c, s) for c in staging for s in
                 (w.name for w in sandbox.fleet.services_in(Environment.STAGING))}
        nodes = {c: world.nodes(c) for c in staging}
    ask = {"environment": "staging", "env_state": "stopped"}
    sandbox.ok("env_schedule.yml", ask)
    with sandbox.cloud.store.open() as world:
        assert Environment.STAGING in world.stopped_environments
        assert all(world.replicas(c, s) == 0 for c, s in sizes)
        assert all(world.nodes(c) == 0 for c in staging)
        assert world.nodes("eks-use1-dev") > 0
    served = _k8s_workloads(sandbox, staging)
    assert len(served) == len(sizes) and all(w.desired == 0 and w.ready == 0 for w in served)

    sandbox.ok("env_schedule.yml", {**ask, "env_state": "started"})
    with sandbox.cloud.store.open() as world:
        assert Environment.STAGING not in world.stopped_environments
        assert {k: world.replicas(*k) for k in sizes} == sizes
        assert {c: world.nodes(c) for c in staging} == nodes
    with sandbox.cloud.store.open() as world:
        simulated = {(r.cluster, r.service): r.ready for r in world.observe()
                     if isinstance(r, WorkloadState) and r.cluster in staging}
    served = _k8s_workloads(sandbox, staging)
    assert {(w.cluster, w.service): w.desired for w in served} == sizes
    assert {(w.cluster, w.service): w.ready for w in served} == simulated
    assert all(ready > 0 for ready in simulated.values())


def test_dev_stop_in_one_region_only_with_preview_and_idempotence(sandbox: Sandbox) -> None:
    ask = {"environment": "dev", "env_state": "stopped", "region": "eu-west-1"}
    with sandbox.cloud.store.open() as world:
        gateway = world.replicas("gke-euw1-dev", "gateway")
    preview = sandbox.ok("env_schedule.yml", ask, "--check", "--diff")
    assert preview.changed > 0 and '"replicas": 0' in preview.out
    with sandbox.cloud.store.open() as world:
        assert not world.is_stopped("gke-euw1-dev")
    sandbox.ok("env_schedule.yml", ask)
    with sandbox.cloud.store.open() as world:
        assert world.is_stopped("gke-euw1-dev") and world.nodes("gke-euw1-dev") == 0
        assert not world.is_stopped("eks-use1-dev") and world.nodes("eks-use1-dev") > 0
        assert Environment.DEV not in world.stopped_environments
    assert sandbox.ok("env_schedule.yml", ask).changed == 0
    sandbox.ok("env_schedule.yml", {**ask, "env_state": "started"})
    with sandbox.cloud.store.open() as world:
        assert not world.is_stopped("gke-euw1-dev") and world.replicas("gke-euw1-dev", "gateway") == gateway


def test_ansible_lint_production_profile_passes() -> None:
    proc = subprocess.run(
        # `-p production` (as often written) means `--format pep8` + a path "production" in ansible-lint 26.
        [str(VENV_BIN / "ansible-lint"), "--offline", "--profile", "production", "playbooks/"],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
        env={**os.environ, "PATH": f"{VENV_BIN}:/usr/bin:/bin", "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr
