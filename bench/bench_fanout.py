"""Benchmark: does FleetService.refresh() read sources concurrently?

30 sources each take 200 ms. Sequential reads take ~6 s; a concurrent refresh should take about as
long as the slowest source. Writes bench/results/fanout.json, prints one summary line, and exits 1 if
concurrent / slowest-source >= 1.3.

Run: python bench/bench_fanout.py
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from opsconsole.core.fleet.engine import FleetService, SourceReading, SourceStatus  # noqa: E402, RUF100
from opsconsole.core.fleet.model import CacheState, RegionTraffic  # noqa: E402, RUF100

N_SOURCES = 30
DELAY_S = 0.2
RECORDS_PER_SOURCE = 3
RUNS = 5
GOAL = 1.3
RESULT = ROOT / "bench" / "results" / "fanout.json"


class SleepySource:
    def __init__(self, index: int) -> None:
        self.name = f"src-{index:02d}"
        self.index = index

    def read(self) -> SourceReading:
        time.sleep(DELAY_S)
        now = datetime.now(UTC)
        records: list[CacheState | RegionTraffic] = [
            CacheState(
                source=self.name,
                observed_at=now,
                region=f"r{self.index}-{i}",
                nodes=3,
                healthy_nodes=3,
                hit_ratio=0.95,
            )
            for i in range(RECORDS_PER_SOURCE - 1)
        ]
        records.append(
            RegionTraffic(
                source=self.name,
                observed_at=now,
                region=f"r{self.index}",
                rps=1000.0,
                avg_latency_ms=40.0,
                p95_ms=90.0,
                p99_ms=150.0,
                error_rate=0.001,
                error_rate_1h=0.001,
                concurrent_users=5000,
                health_check_ok=True,
            )
        )
        return SourceReading(tuple(records))


def main() -> int:
    sources = [SleepySource(i) for i in range(N_SOURCES)]

    per_source: list[float] = []
    t_seq = time.perf_counter()
    for source in sources:
        t = time.perf_counter()
        source.read()
        per_source.append(time.perf_counter() - t)
    sequential_s = time.perf_counter() - t_seq
    slowest_s = max(per_source)

    runs: list[float] = []
    with FleetService(sources, deadline_s=5.0) as fleet:
        snapshot, _ = fleet.refresh()  # warm-up: starts the reader threads
        for _ in range(RUNS):
            t = time.perf_counter()
            snapshot, _ = fleet.refresh()
            runs.append(time.perf_counter() - t)
    not_ok = [h.name for h in snapshot.sources if h.status is not SourceStatus.OK]
    concurrent_s = statistics.median(runs)
    ratio = concurrent_s / slowest_s

    result = {
        "benchmark": "fanout",
        "sources": N_SOURCES,
        "delay_s": DELAY_S,
        "records": len(snapshot.records),
        "runs": RUNS,
        "concurrent_s": round(concurrent_s, 4),
        "concurrent_runs_s": [round(r, 4) for r in runs],
        "sequential_s": round(sequential_s, 4),
        "slowest_source_s": round(slowest_s, 4),
        "ratio_concurrent_to_slowest": round(ratio, 3),
        "ratio_concurrent_to_sequential": round(concurrent_s / sequential_s, 4),
        "goal_ratio_concurrent_to_slowest": GOAL,
        "sources_not_ok": not_ok,
        "python": platform.python_version(),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    ok = ratio < GOAL and not not_ok
    print(
        f"fanout: {N_SOURCES} sources x {DELAY_S * 1000:.0f} ms: concurrent {concurrent_s * 1000:.0f} ms "
        f"(median of {RUNS}), sequential {sequential_s * 1000:.0f} ms, "
        f"concurrent/slowest {ratio:.2f} (goal < {GOAL}), "
        f"concurrent/sequential {concurrent_s / sequential_s:.3f} -> {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
