"""The local cloud: start + first full snapshot, and the steady-state refresh through the four adapters.

Measures, in one process and on the seed fleet:

* start of the four emulators + the first publish + the first full snapshot through the adapters
  (goal < 3 s warm: the second start in this process, with every module imported);
* the steady-state refresh of the whole fleet through the four adapters (goal < 500 ms), with the
  per-source read time, against the in-process `sim` source read in the same run as a baseline —
  once with the emulators in this process (as a one-off CLI command runs them) and once with them in
  an `opsconsole sandbox up` process (as the console and the bot use them: the emulators then do not
  compete with the adapters for this process's interpreter lock).

Run: python bench/bench_localcloud.py   (writes bench/results/localcloud.json)
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opsconsole.core.clock import SystemClock  # noqa: E402
from opsconsole.core.facade import OpsCore  # noqa: E402
from opsconsole.core.fleet.inventory import load_inventory  # noqa: E402
from opsconsole.core.fleet.model import Fleet  # noqa: E402
from opsconsole.providers.sim import SimSource  # noqa: E402
from opsconsole.sandbox.emulator import Endpoints  # noqa: E402
from opsconsole.sandbox.localcloud import LocalCloud, read_running  # noqa: E402
from opsconsole.sandbox.state import WorldStore  # noqa: E402
from opsconsole.wiring import adapter_sources, sandbox_emulators  # noqa: E402

START_GOAL_S = 3.0
REFRESH_GOAL_S = 0.5
REFRESHES = 10


def start_and_first_snapshot(home: Path) -> tuple[float, LocalCloud]:
    fleet = load_inventory()
    started = time.perf_counter()
    cloud = LocalCloud(WorldStore(home, fleet, SystemClock()), sandbox_emulators(fleet))
    cloud.start()
    with OpsCore(fleet, adapter_sources(fleet, cloud.endpoints, timeout_s=8.0), deadline_s=10.0) as core:
        view = core.refresh()
    elapsed = time.perf_counter() - started
    assert not view.snapshot.partial, view.snapshot.sources
    return elapsed, cloud


def refreshes(fleet: Fleet, endpoints: Mapping[str, Endpoints]) -> tuple[list[float], dict[str, list[float]]]:
    sources = adapter_sources(fleet, endpoints, timeout_s=8.0)
    per_source: dict[str, list[float]] = {s.name: [] for s in sources}
    totals = []
    with OpsCore(fleet, sources, deadline_s=10.0) as core:
        core.refresh()
        for _ in range(REFRESHES):
            t0 = time.perf_counter()
            view = core.refresh()
            totals.append(time.perf_counter() - t0)
            assert not view.snapshot.partial, view.snapshot.sources
            for health in view.snapshot.sources:
                if health.duration_s is not None:
                    per_source[health.name].append(health.duration_s)
    return totals, per_source


def shared_local_cloud(home: Path) -> tuple[subprocess.Popen[str], dict[str, Endpoints]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSCONSOLE_")}
    env["OPSCONSOLE_HOME"] = str(home)
    process = subprocess.Popen([str(Path(sys.executable).parent / "opsconsole"), "sandbox", "up"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 60
    while (endpoints := read_running(home)) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("opsconsole sandbox up did not start")
        time.sleep(0.2)
    return process, endpoints


def main() -> int:
    fleet = load_inventory()
    with tempfile.TemporaryDirectory() as cold_home, tempfile.TemporaryDirectory() as warm_home:
        cold_s, cloud = start_and_first_snapshot(Path(cold_home))
        cloud.stop()
        warm_s, cloud = start_and_first_snapshot(Path(warm_home))
        try:
            in_process, _ = refreshes(fleet, cloud.endpoints)
            sim = SimSource(cloud.store)
            sim_times = []
            for _ in range(REFRESHES):
                t0 = time.perf_counter()
                sim.read()
                sim_times.append(time.perf_counter() - t0)
        finally:
            cloud.stop()
    with tempfile.TemporaryDirectory() as shared_home:
        process, endpoints = shared_local_cloud(Path(shared_home))
        try:
            shared, per_source = refreshes(fleet, endpoints)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    refresh = statistics.median(shared)
    sim_read = statistics.median(sim_times)
    results = {
        "start_and_first_snapshot_cold_s": round(cold_s, 3),
        "start_and_first_snapshot_warm_s": round(warm_s, 3),
        "refresh_median_s": round(refresh, 3),
        "refresh_max_s": round(max(shared), 3),
        "refresh_emulators_in_process_median_s": round(statistics.median(in_process), 3),
        "per_source_median_s": {name: round(statistics.median(t), 3) for name, t in per_source.items() if t},
        "sim_read_median_s": round(sim_read, 4),
        "ratio_refresh_to_sim_read": round(refresh / sim_read, 1),
        "goals": {"start_warm_s": START_GOAL_S, "refresh_s": REFRESH_GOAL_S},
        "python": platform.python_version(),
        "at": datetime.now(UTC).isoformat(),
    }
    out = ROOT / "bench" / "results" / "localcloud.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    per_source_s: dict[str, float] = results["per_source_median_s"]  # type: ignore[assignment]
    table = " ".join(f"{k} {v * 1000:.0f} ms" for k, v in per_source_s.items())
    print(
        f"localcloud: start+first snapshot cold {cold_s:.2f} s, warm {warm_s:.2f} s "
        f"(goal < {START_GOAL_S} s); "
        f"refresh via sandbox up {refresh * 1000:.0f} ms (goal < {REFRESH_GOAL_S * 1000:.0f} ms, "
        f"{refresh / sim_read:.0f}x the in-process sim read), emulators in-process "
        f"{statistics.median(in_process) * 1000:.0f} ms; per source: {table}"
    )
    return 0 if warm_s < START_GOAL_S and refresh < REFRESH_GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
