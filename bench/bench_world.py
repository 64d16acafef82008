"""Cost of the sandbox world: one tick, one observe(), one save/load, for the seed and a synthetic fleet.

The world is stepped tick by tick (15 sim seconds each) and catches up at most one sim hour (240 ticks)
per advance, so the tick cost bounds how long a ``WorldStore.open()`` can take after a long pause:
240 × tick. The goal is a tick well under 5 ms for the seed fleet. The synthetic fleet (100 regions /
5,000 workloads, from bench/synthetic.py) shows how it scales.

Run: python bench/bench_world.py   (writes bench/results/world.json)
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.synthetic import synthetic_fleet  # noqa: E402
from opsconsole.core.fleet.inventory import load_inventory  # noqa: E402
from opsconsole.core.fleet.model import Fleet, WorkloadState  # noqa: E402
from opsconsole.sandbox.state import WorldStore  # noqa: E402
from opsconsole.sandbox.world import TICK_S, World  # noqa: E402
from opsconsole.testing import FakeClock  # noqa: E402

GOAL_TICK_MS = 5.0
START = datetime(2025, 1, 15, 18, 0, tzinfo=UTC)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def measure(fleet: Fleet, ticks: int, repeats: int) -> dict[str, float | int]:
    t0 = time.perf_counter()
    world = World(fleet, seed=42, start=START)
    create_s = time.perf_counter() - t0
    world.trigger_incident("traffic_spike", sorted(fleet.regions)[0])  # exercise the busy paths too
    per_tick = []
    for _ in range(ticks):
        t0 = time.perf_counter()
        world.advance_by(TICK_S)
        per_tick.append(time.perf_counter() - t0)
    observe = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        records = world.observe()
        observe.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    text = json.dumps(world.to_dict())
    save_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    World.from_dict(fleet, json.loads(text))
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    world.advance(world.now + timedelta(hours=6))  # capped catch-up: jump + 240 ticks
    catch_up_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as home:
        clock = FakeClock(START)
        store = WorldStore(Path(home), fleet, clock)
        store.read()
        store_read = []
        for _ in range(repeats):
            clock.advance(TICK_S)
            t0 = time.perf_counter()
            store.read()
            store_read.append(time.perf_counter() - t0)
    per_tick.sort()
    return {
        "regions": len(fleet.regions),
        "clusters": len(fleet.clusters),
        "workloads": sum(1 for r in records if isinstance(r, WorkloadState)),
        "records": len(records),
        "ticks_measured": ticks,
        "tick_median_ms": _ms(statistics.median(per_tick)),
        "tick_p95_ms": _ms(per_tick[int(0.95 * (len(per_tick) - 1))]),
        "observe_median_ms": _ms(statistics.median(observe)),
        "create_ms": _ms(create_s),
        "to_dict_json_ms": _ms(save_s),
        "from_dict_json_ms": _ms(load_s),
        "state_kib": round(len(text) / 1024, 1),
        "catch_up_6h_ms": _ms(catch_up_s),
        "store_read_one_tick_median_ms": _ms(statistics.median(store_read)),
    }


def main() -> int:
    seed = load_inventory(ROOT / "inventory")
    synthetic = synthetic_fleet(seed, regions=100, clusters_per_region=2, services=25)
    results = {
        "seed": measure(seed, ticks=2000, repeats=20),
        "synthetic_100_regions_5000_workloads": measure(synthetic, ticks=100, repeats=5),
        "goal_tick_ms_seed": GOAL_TICK_MS,
        "python": platform.python_version(),
        "at": datetime.now(UTC).isoformat(),
    }
    out = ROOT / "bench" / "results" / "world.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    s = results["seed"]
    big = results["synthetic_100_regions_5000_workloads"]
    assert isinstance(s, dict) and isinstance(big, dict)
    print(
        f"world: seed {s['workloads']} workloads tick {s['tick_median_ms']} ms (p95 {s['tick_p95_ms']}, "
        f"goal < {GOAL_TICK_MS} ms), observe {s['observe_median_ms']} ms, store read "
        f"{s['store_read_one_tick_median_ms']} ms; synthetic {big['workloads']} workloads tick "
        f"{big['tick_median_ms']} ms"
    )
    return 0 if float(s["tick_median_ms"]) < GOAL_TICK_MS else 1


if __name__ == "__main__":
    sys.exit(main())
