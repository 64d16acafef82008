"""What looking at the fleet costs: API calls per hour per source, today's polling against cadenced polling.

On the seed fleet and the local cloud (the four emulators in this process), counting every SDK call at
the adapters through :data:`opsconsole.core.fleet.metering.METER`:

* **today** (cadence 0: every source asks at every refresh, as before): a few real refreshes every 2 s,
  scaled to an hour (1,800 refreshes);
* **cadenced** (the inventory's ``opsconsole_clouds`` cadences: metrics every 60 s aligned to the period,
  describes every 300 s): 10 minutes of 2-s refreshes on a *simulated* clock (the AWS emulator stamps
  its datapoints on the same clock and the local cloud syncs every simulated minute), so 300 refreshes
  run in seconds of wall time; counts are scaled from 10 minutes to an hour.

The Kubernetes source is read in both runs as it is built today (its LIST counts drop once it watches);
it is counted if it reports to METER. Prints calls/hour per source and in all, and the estimated monthly
cost from ``inventory/prices.yml`` beside today's. Goal: cadenced cloud-metric calls at most a tenth of
today's.

Run: python bench/bench_sources.py   (writes bench/results/sources.json)
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import opsconsole.sandbox.aws.cloud as aws_cloud_module  # noqa: E402
from opsconsole.core.clock import SystemClock  # noqa: E402
from opsconsole.core.fleet.engine import FleetService  # noqa: E402
from opsconsole.core.fleet.inventory import load_inventory, load_prices, source_cadences  # noqa: E402
from opsconsole.core.fleet.metering import METER, estimate_monthly_cost  # noqa: E402
from opsconsole.sandbox.localcloud import LocalCloud  # noqa: E402
from opsconsole.sandbox.state import WorldStore  # noqa: E402
from opsconsole.wiring import adapter_sources, sandbox_emulators  # noqa: E402

REFRESH_S = 2.0
TODAY_REFRESHES = 5
WINDOW_S = 600.0
CLOUDS = ("aws", "gcp", "azure")
GOAL_RATIO = 0.1


class SimClock:
    """Wall seconds that move only when told (also a datetime Clock for the engine)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)


class _TimeShim(types.ModuleType):
    """The ``time`` module with ``time()`` on the simulated clock."""

    def __init__(self, clock: SimClock) -> None:
        super().__init__("time")
        self._clock = clock

    def time(self) -> float:
        return self._clock()

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def per_source(window_s: float) -> dict[str, dict[str, float]]:
    prices = load_prices(ROOT / "inventory")
    est = estimate_monthly_cost(METER.snapshot(), prices, window_s)
    return {name: {"calls_per_hour": round(e.calls_per_hour, 1), "units_per_hour": round(e.units_per_hour, 1),
                   "usd_per_month": round(e.usd_per_month, 2)} for name, e in est.items()}


def _total(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    return {k: round(sum(v.get(k, 0) for v in rows.values()), 2) for k in ("calls_per_hour", "usd_per_month")}


def main() -> int:  # noqa: PLR0915 - one linear script: set up, two runs, print, write
    fleet = load_inventory(ROOT / "inventory")
    home = Path(tempfile.mkdtemp(prefix="bench-sources-"))
    sim = SimClock(time.time())
    # The AWS emulator stamps datapoints with time.time(): give it the simulated clock.
    aws_cloud_module.time = _TimeShim(sim)  # type: ignore[assignment]
    cloud = LocalCloud(WorldStore(home, fleet, SystemClock()), sandbox_emulators(fleet))
    cloud.start()
    try:
        # -- today: every source at every refresh ---------------------------------------------------
        METER.reset()
        METER.set_clock(sim)
        sources = adapter_sources(fleet, cloud.endpoints, timeout_s=8.0, clock=sim)
        wall = time.perf_counter()
        with FleetService(sources, deadline_s=10.0, clock=sim) as service:
            service.refresh()  # warm the clients
            METER.reset()
            for _ in range(TODAY_REFRESHES):
                service.refresh()
                sim.t += REFRESH_S
        today_wall = time.perf_counter() - wall
        today = per_source(TODAY_REFRESHES * REFRESH_S)

        # -- cadenced: 10 simulated minutes of 2-s refreshes ---------------------------------------------
        cadences = source_cadences(fleet.source)
        sources = adapter_sources(fleet, cloud.endpoints, timeout_s=8.0, cadences=cadences, clock=sim)
        statuses: dict[str, set[str]] = {}
        wall = time.perf_counter()
        with FleetService(sources, deadline_s=10.0, clock=sim) as service:
            METER.reset()
            started = sim.t
            next_sync = sim.t + 60.0
            while sim.t - started < WINDOW_S:
                snapshot, _ = service.refresh()
                for h in snapshot.sources:
                    statuses.setdefault(h.name, set()).add(h.status.value)
                sim.t += REFRESH_S
                if sim.t >= next_sync:  # the local cloud publishes the world once a simulated minute
                    cloud.sync()
                    next_sync += 60.0
        cadenced_wall = time.perf_counter() - wall
        cadenced = per_source(WINDOW_S)
    finally:
        cloud.stop()
        METER.set_clock(None)

    names = sorted(set(today) | set(cadenced))
    print(f"{'source':8} {'today calls/h':>14} {'cadenced calls/h':>17} {'today $/month':>14} "
          f"{'cadenced $/month':>17}")
    rows: dict[str, Any] = {}
    for name in names:
        t, c = today.get(name, {}), cadenced.get(name, {})
        rows[name] = {"today": t, "cadenced": c}
        print(f"{name:8} {t.get('calls_per_hour', 0):>14,.0f} {c.get('calls_per_hour', 0):>17,.0f} "
              f"{t.get('usd_per_month', 0):>14,.2f} {c.get('usd_per_month', 0):>17,.2f}")
    total_t = _total(today)
    total_c = _total(cadenced)
    print(f"{'all':8} {total_t['calls_per_hour']:>14,.0f} {total_c['calls_per_hour']:>17,.0f} "
          f"{total_t['usd_per_month']:>14,.2f} {total_c['usd_per_month']:>17,.2f}")
    clouds_today = sum(today.get(n, {}).get("calls_per_hour", 0) for n in CLOUDS)
    clouds_cadenced = sum(cadenced.get(n, {}).get("calls_per_hour", 0) for n in CLOUDS)
    ratio = clouds_cadenced / clouds_today if clouds_today else 0.0
    met = clouds_today > 0 and ratio <= GOAL_RATIO
    print(f"cloud metric/describe calls: cadenced / today = {ratio:.3f} (goal <= {GOAL_RATIO}) "
          f"{'met' if met else 'MISSED'}; statuses seen while cadenced: "
          + ", ".join(f"{k}={'/'.join(sorted(v))}" for k, v in sorted(statuses.items())))
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "method": {"refresh_s": REFRESH_S, "today_refreshes": TODAY_REFRESHES, "cadenced_window_s": WINDOW_S,
                   "cadenced_clock": "simulated (AWS emulator on the same clock; local cloud synced "
                                     "every simulated minute)",
                   "cadences": {k: {"metrics_s": v.metrics_s, "describe_s": v.describe_s}
                                for k, v in source_cadences(fleet.source).items()},
                   "wall_s": {"today": round(today_wall, 2), "cadenced": round(cadenced_wall, 2)}},
        "sources": rows,
        "total": {"today": total_t, "cadenced": total_c},
        "cloud_ratio": round(ratio, 4),
        "statuses_cadenced": {k: sorted(v) for k, v in statuses.items()},
        "goal_met": met,
    }
    out = ROOT / "bench" / "results" / "sources.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
