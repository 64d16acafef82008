"""The command line's smaller failures of issue 17, item 9: out-of-range times and unknown audit kinds
are one line and exit 2 (they gave tracebacks or exit 0); a Kubernetes source that refuses shows pods and
nodes as unknown (not ``0/0`` with health ok); a fleet with no region reporting is an error, not a quiet
table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from opsconsole.cli import render
from opsconsole.core.clock import SystemClock
from opsconsole.core.errors import OpsError, SourceError
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.engine import FleetSource, SourceReading
from opsconsole.core.fleet.model import ClusterState, Fleet, WorkloadState
from opsconsole.core.fleet.report import status_document
from opsconsole.providers.sim import SimSource
from opsconsole.sandbox.state import WorldStore

from .store_cli import error_lines, run


def test_schedule_eval_at_the_end_of_time_is_exit_2(tmp_path: Path) -> None:
    refused = run(tmp_path / "home", "schedule", "eval", "Mon-Fri 07:30-20:30 Europe/Berlin",
                  "--at", "9999-12-31T23:59:59Z")
    assert refused.returncode == 2
    (line,) = error_lines(refused)
    assert "--at" in line and "out of range" in line


def test_audit_log_since_before_the_calendar_is_exit_2(tmp_path: Path) -> None:
    refused = run(tmp_path / "home", "audit", "log", "--since", "999999d")
    assert refused.returncode == 2
    (line,) = error_lines(refused)
    assert "--since 999999d" in line


def test_audit_log_of_an_unknown_kind_is_exit_2_naming_the_kinds(tmp_path: Path) -> None:
    refused = run(tmp_path / "home", "audit", "log", "--kind", "nosuchkind")
    assert refused.returncode == 2
    (line,) = error_lines(refused)
    assert "nosuchkind" in line and "run_started" in line and "vote_approve" in line


class _Refused:
    """The Kubernetes source of a cluster that refuses every call."""

    name = "k8s"

    def read(self) -> SourceReading:
        raise SourceError("connection refused", title="k8s unavailable")


class _WithoutKubernetes:
    """The sandbox's other sources: everything but what Kubernetes reports."""

    name = "sim"

    def __init__(self, inner: SimSource) -> None:
        self._inner = inner

    def read(self) -> SourceReading:
        reading = self._inner.read()
        kept = tuple(r for r in reading.records if not isinstance(r, ClusterState | WorkloadState))
        return dataclasses.replace(reading, records=kept)


def _status(seed_fleet: Fleet, tmp_path: Path, sources: Sequence[FleetSource]) -> dict[str, object]:
    with OpsCore(seed_fleet, sources, deadline_s=10) as core:
        return status_document(core.refresh())


def test_a_refused_kubernetes_source_shows_pods_and_nodes_unknown(seed_fleet: Fleet, tmp_path: Path) -> None:
    world = WorldStore(tmp_path / "world", seed_fleet, SystemClock())
    document = _status(seed_fleet, tmp_path, [_WithoutKubernetes(SimSource(world)), _Refused()])
    regions = document["regions"]
    assert isinstance(regions, list) and regions
    for region in regions:
        assert not region["pods_known"] and not region["nodes_known"]
        assert region["health"] != "ok"
    shown = render.status_view(document)
    from rich.console import Console  # noqa: PLC0415

    console = Console(width=200, record=True)
    console.print(shown)
    assert "0/0" not in console.export_text()
    whole = _status(seed_fleet, tmp_path, [SimSource(world)])
    assert all(r["pods_known"] and r["nodes_known"] for r in whole["regions"])  # type: ignore[index,union-attr]


def test_no_region_reporting_is_an_error() -> None:
    document = {
        "totals": {"regions_reporting": 0, "regions_total": 6},
        "sources": [{"name": name, "status": "error", "error": "timed out"}
                    for name in ("k8s", "aws", "gcp", "azure")],
    }
    problem = render.status_problem(document)
    assert isinstance(problem, OpsError) and not problem.user_error
    assert "0 of 6 regions reporting" in problem.message and "aws error (timed out)" in problem.message
    assert render.status_problem({**document, "totals": {"regions_reporting": 1, "regions_total": 6}}) is None
