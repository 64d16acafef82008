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


def cluster_max(home: Path, cluster: str) -> int:
    """The cluster's node max as the Kubernetes adapter reads it (the autoscaler's status, published
    from the world the GKE / AKS emulators changed)."""
    script = (
        "from opsconsole.wiring import sandbox_core\n"
        "with sandbox_core() as core:\n"
        f"    print(core.refresh().snapshot.get('cluster/{cluster}').nodes_max)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180,
                         env=environment(home), check=True).stdout
    return int(out.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("cluster", "region"), [("gke-usw2-prod", "us-west-2"), ("aks-usw2-prod", "us-west-2")]
)
def test_a_gke_or_aks_node_pool_at_its_max_is_raised_from_the_finding(
    home: Path, cluster: str, region: str
) -> None:
    """The issue's "done when": a node pool at its maximum in a GKE and in an AKS region, raised by running
    the finding's suggested action as shown, through the playbooks' GCP / Azure modules and emulators."""
    glass = ("--break-glass", "issue 14 e2e: pin the pool at its max")
    cli(home, "--as", "erin", "act", "nodes", "--cluster", cluster, "--min", "2", "--max", "2", *glass,
        timeout=400)
    assert cluster_max(home, cluster) == 2

    findings = json.loads(cli(home, "fleet", "findings", "--region", region, "--json").stdout)["findings"]
    at_max = [f for f in findings if f["kind"] == "nodes_at_max" and cluster in f["object"]]
    assert at_max, [f["id"] for f in findings]
    action = at_max[0]["suggested_action"]
    assert action["action"] == "nodes" and action["params"]["cluster"] == cluster, action
    assert f"opsconsole act nodes --cluster {cluster}" in action["summary"], action["summary"]
    new_max = int(action["params"]["nodes_max"])
    assert new_max > 2

    ran = json.loads(cli(home, "--as", "erin", "act", "nodes", "--cluster", cluster, "--max", str(new_max),
                         "--json", *glass, timeout=400).stdout)
    assert ran["status"] == "succeeded", ran
    assert cluster_max(home, cluster) == new_max
