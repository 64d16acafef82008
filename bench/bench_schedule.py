"""Schedule evaluation: 1,000 environment schedules over 14 days at one-minute resolution (goal < 2 s).

The schedules are a mix of what schedules.yml allows: kube-downscaler uptimes (some with a downtime and
public holidays) and Instance Scheduler periods (nth / last weekdays, month days), in the ten zones of the
seed's regions. Each gets a 20,160-minute timeline (:func:`opsconsole.core.schedule.engine.timeline`), which
evaluates a schedule only where it can change. Baselines, in the same process:

* ``bare_zoneinfo_s``: converting every one of the 20.16 M minutes to its local zone and doing nothing else
  (measured on 1 % of the schedules, scaled up) — what a minute-by-minute evaluator pays before it
  has even looked at a rule;
* ``per_minute_s``: evaluating every minute with ``UnitSchedule.up`` (measured on 1 %, scaled up).

The per-minute run of the sample also checks that the fast timelines are exactly the per-minute answers.

Run: python bench/bench_schedule.py   (writes bench/results/schedule.json)
"""

from __future__ import annotations

import json
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opsconsole.core.schedule.engine import UnitSchedule, timeline  # noqa: E402
from opsconsole.core.schedule.timespec import parse_period, parse_spec, period_schedule  # noqa: E402

GOAL_S = 2.0
SCHEDULES = 1000
DAYS = 14
MINUTES = DAYS * 1440
SAMPLE = SCHEDULES // 100
START = datetime(2026, 3, 23, 0, 0, tzinfo=UTC)  # two weeks over Europe's DST change (29 March)

ZONES = [("America/New_York", "US"), ("America/Los_Angeles", "US"), ("America/Toronto", "CA"),
         ("America/Sao_Paulo", "BR"), ("Europe/Dublin", "IE"), ("Europe/Berlin", "DE"),
         ("Asia/Singapore", "SG"), ("Asia/Tokyo", "JP"), ("Asia/Kolkata", "IN"), ("Australia/Sydney", "AU")]


def make_schedules() -> list[UnitSchedule]:
    units = []
    for i in range(SCHEDULES):
        tz, country = ZONES[i % len(ZONES)]
        start_h, end_h = 6 + i % 4, 18 + i % 4
        uptime = downtime = periods = None
        if i % 3 == 2:
            periods = period_schedule([
                parse_period({"begintime": f"{start_h:02d}:00", "endtime": f"{end_h:02d}:30",
                              "weekdays": "mon-thu"}),
                parse_period({"begintime": f"{start_h:02d}:00", "endtime": "15:00",
                              "weekdays": "fri#1, friL"}),
                parse_period({"monthdays": "L", "months": "jan-jun"}),
            ], tz)
        else:
            uptime = parse_spec(f"Mon-Fri {start_h:02d}:00-{end_h:02d}:00, Sat-Sat 10:00-12:00", tz=tz)
            if i % 3 == 1:
                downtime = parse_spec("2026-03-27T12:00:00+00:00-2026-03-27T18:00:00+00:00")
        units.append(UnitSchedule(
            environment=f"env{i}", region=f"r{i % len(ZONES)}", timezone=tz, uptime=uptime,
            downtime=downtime, periods=periods, holiday_countries=(country,) if i % 2 else (),
            lead=timedelta(minutes=30), clusters=(f"c{i}",),
        ))
    return units


def main() -> int:
    units = make_schedules()
    for unit in units[:len(ZONES)]:  # warm the holiday calendars and zone caches
        timeline(unit, START, 1440)

    t0 = time.perf_counter()
    lines = [timeline(u, START, MINUTES) for u in units]
    fast_s = time.perf_counter() - t0
    up_minutes = sum(sum(line) for line in lines)

    sample = units[::SCHEDULES // SAMPLE]
    instants = [START + timedelta(minutes=m) for m in range(MINUTES)]
    t0 = time.perf_counter()
    for unit in sample:
        tz = unit.tz
        for at in instants:
            at.astimezone(tz)
    bare_s = (time.perf_counter() - t0) * SCHEDULES / len(sample)

    t0 = time.perf_counter()
    mismatches = 0
    for unit in sample:
        slow = bytearray(1 if unit.up(at) else 0 for at in instants)
        mismatches += sum(a != b for a, b in zip(slow, timeline(unit, START, MINUTES), strict=True))
    per_minute_s = (time.perf_counter() - t0) * SCHEDULES / len(sample)

    results = {
        "schedules": SCHEDULES,
        "days": DAYS,
        "minutes_each": MINUTES,
        "evaluated_minutes": SCHEDULES * MINUTES,
        "timelines_s": round(fast_s, 3),
        "bare_zoneinfo_s": round(bare_s, 3),
        "per_minute_s": round(per_minute_s, 3),
        "ratio_to_bare_zoneinfo": round(fast_s / bare_s, 3) if bare_s else 0.0,
        "up_share": round(up_minutes / (SCHEDULES * MINUTES), 3),
        "sample_mismatches": mismatches,
        "goal_s": GOAL_S,
        "python": platform.python_version(),
        "at": datetime.now(UTC).isoformat(),
    }
    out = ROOT / "bench" / "results" / "schedule.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"schedule: {SCHEDULES} schedules x {DAYS} days at 1 min in {fast_s:.2f} s (goal < {GOAL_S:.0f} s); "
        f"bare zoneinfo for every minute {bare_s:.1f} s, per-minute evaluation {per_minute_s:.1f} s "
        f"(estimated from {len(sample)}); {mismatches} mismatches"
    )
    return 0 if fast_s < GOAL_S and mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
