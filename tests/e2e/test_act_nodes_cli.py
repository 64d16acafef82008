"""`opsconsole act nodes` for real (issue 14): an EKS node group's max raised through the CLI against the
local cloud (sandbox up: moto's Auto Scaling behind the world), previewed first (nothing changes), then
filed, approved by a second person and run; the AWS adapter reads the new bound back."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_process import cli, environment, sandbox_up

CLUSTER = "eks-cac1-prod"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("act-nodes")
    with sandbox_up(home):
        yield home


def node_bounds(home: Path) -> dict[str, int]:
    """The cluster's node bounds as the real adapters read them: the Auto Scaling group (aws) and the
    cluster record."""
    script = (
        "import json\n"
        "from opsconsole.core.fleet.model import ClusterState, NodeGroupState\n"
        "from opsconsole.wiring import sandbox_core\n"
        "with sandbox_core() as core:\n"
        "    snap = core.refresh().snapshot\n"
        f"    groups = [g for g in snap.of_type(NodeGroupState) if g.cluster == '{CLUSTER}']\n"
        f"    c = snap.get('cluster/{CLUSTER}')\n"
        "    g = groups[0] if groups else None\n"
        "    print(json.dumps({'group_max': g.max if g else None, 'group_source': g.source if g else None,"
        " 'cluster_max': c.nodes_max, 'min': c.nodes_min}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180,
                         env=environment(home), check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_eks_node_max_raise_runs_through_the_cli(home: Path) -> None:
    before = node_bounds(home)
    assert before["group_max"] is not None and before["group_source"] == "aws", before
    new_max = before["group_max"] + 5
    preview = cli(home, "--as", "alice", "act", "nodes", "--cluster", CLUSTER, "--max", str(new_max),
                  "--dry-run", timeout=300)
    assert "preview (check mode, nothing changes)" in preview.stdout
    assert f"→ {before['min']}–{new_max}" in preview.stdout and "succeeded" in preview.stdout, preview.stdout
    assert node_bounds(home)["group_max"] == before["group_max"]

    filed = json.loads(cli(home, "--as", "alice", "act", "nodes", "--cluster", CLUSTER, "--max",
                           str(new_max), "--json").stdout)
    assert (filed["status"], filed["risk"], filed["needs"]["approvals"]) == ("requested", "medium", 1), filed
    approver = sorted(filed["eligible_approvers"])[0]
    approved = cli(home, "--as", approver, "approvals", "approve", filed["request_id"][:8], timeout=400)
    assert "succeeded" in approved.stdout, approved.stdout + approved.stderr
    after = node_bounds(home)
    assert after["group_max"] == new_max, after
    job = next(j for j in json.loads(cli(home, "jobs", "list", "--json").stdout)
               if j["action"] == "nodes" and not j["check_mode"])
    assert job["status"] == "succeeded" and job["playbook"].endswith("scale.yml")
    # The same raise again changes nothing: refused before anything runs.
    again = cli(home, "--as", "alice", "act", "nodes", "--cluster", CLUSTER, "--max", str(new_max), ok=False)
    assert again.returncode == 2 and "no change" in again.stderr
