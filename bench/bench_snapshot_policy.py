"""Snapshot + policy cost, for the seed fleet and for a synthetic fleet of 100 regions / 5,000 workloads.

One refresh = FleetService.refresh() over an in-memory source holding every record (so the fan-out,
merge and change set are measured, not I/O) + policy.evaluate() + region_health(). The goal from the
Foundation issue is under 1 s for the synthetic fleet on this machine. Ratios are reported against a
baseline measured in the same process: building the records once (pure Python object creation).

Run: python bench/bench_snapshot_policy.py   (writes bench/results/snapshot_policy.json)
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.synthetic import synthetic_fleet  # noqa: E402
from opsconsole.core.fleet.engine import FleetService, SourceReading  # noqa: E402
from opsconsole.core.fleet.findings import evaluate, region_health  # noqa: E402
from opsconsole.core.fleet.inventory import load_inventory  # noqa: E402
from opsconsole.core.fleet.model import Fleet, FleetRecord, WorkloadState  # noqa: E402
from opsconsole.testing import healthy_records  # noqa: E402

GOAL_S = 1.0


class MemorySource:
    name = "memory"

    def __init__(self, records: list[FleetRecord]) -> None:
        self.records = tuple(records)

    def read(self) -> SourceReading:
        return SourceReading(records=self.records)


def measure(fleet: Fleet, repeats: int) -> dict[str, float | int]:
    at = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    t0 = time.perf_counter()
    records = healthy_records(fleet, at)
    build_s = time.perf_counter() - t0
    workloads = sum(1 for r in records if isinstance(r, WorkloadState))
    source = MemorySource(records)
    timings = []
    findings = 0
    with FleetService([source], deadline_s=30.0) as service:
        service.refresh()  # warm-up: the first refresh has everything "added"
        for _ in range(repeats):
            t0 = time.perf_counter()
            snapshot, _changes = service.refresh()
            found = evaluate(fleet, snapshot)
            region_health(fleet, snapshot, found)
            timings.append(time.perf_counter() - t0)
            findings = len(found)
    median = statistics.median(timings)
    return {
        "regions": len(fleet.regions),
        "clusters": len(fleet.clusters),
        "workloads": workloads,
        "records": len(records),
        "findings": findings,
        "refresh_and_policy_median_s": round(median, 4),
        "refresh_and_policy_max_s": round(max(timings), 4),
        "record_build_s": round(build_s, 4),
        "ratio_to_record_build": round(median / build_s, 2) if build_s else 0.0,
    }


def main() -> int:
    seed = load_inventory(ROOT / "inventory")
    synthetic = synthetic_fleet(seed, regions=100, clusters_per_region=2, services=25)
    results = {
        "seed": measure(seed, repeats=20),
        "synthetic_100_regions_5000_workloads": measure(synthetic, repeats=5),
        "goal_s": GOAL_S,
        "python": platform.python_version(),
        "at": datetime.now(UTC).isoformat(),
    }
    out = ROOT / "bench" / "results" / "snapshot_policy.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    big = results["synthetic_100_regions_5000_workloads"]
    seed_r = results["seed"]
    assert isinstance(big, dict) and isinstance(seed_r, dict)
    print(
        f"snapshot+policy: seed {seed_r['workloads']} workloads "
        f"{seed_r['refresh_and_policy_median_s'] * 1000:.1f} ms; "
        f"synthetic {big['regions']} regions / {big['workloads']} workloads "
        f"{big['refresh_and_policy_median_s'] * 1000:.0f} ms (goal < {GOAL_S * 1000:.0f} ms, "
        f"{big['ratio_to_record_build']}x the record build)"
    )
    return 0 if float(big["refresh_and_policy_median_s"]) < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
