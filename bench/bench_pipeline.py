"""The approval pipeline under load: 1,000 requests with votes, on SQLite and on PostgreSQL.

Each request goes through the pipeline as the faces drive it: alice files a prod failover (high risk:
policy, plan hash over the playbook and inventory contents, eligibility, conflict checks, audit), bob
and carol approve it (compare-and-set + vote + audit each; the second completes it), and alice cancels
it (so that the next request may claim the same targets). Four transitions per request, no playbook
run (runs are measured by bench_runner and bench_failover_drill).

Reported per back end: requests per second, and the p50 / p95 latency of each kind of transition. The
baseline, measured in the same process on the same database, is one bare audit append (one write
transaction); the ratio says what the pipeline costs on top of the one write a transition cannot avoid.
Goal: p95 of every transition under 100 ms on both back ends (an approval click in Slack or the TUI
must feel immediate).

Run: python bench/bench_pipeline.py   (writes bench/results/pipeline.json)
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opsconsole.core.audit.log import AuditLog  # noqa: E402
from opsconsole.core.audit.records import AuditKind  # noqa: E402
from opsconsole.core.change.actions import plan_failover  # noqa: E402
from opsconsole.core.change.pipeline import Pipeline  # noqa: E402
from opsconsole.core.change.rbac import Directory  # noqa: E402
from opsconsole.core.change.risk import load_policy  # noqa: E402
from opsconsole.core.fleet.inventory import load_inventory  # noqa: E402
from opsconsole.core.store.db import Database  # noqa: E402
from opsconsole.testing import FakeClock, healthy_records, snapshot_of  # noqa: E402
from opsconsole.testing.postgres import ThrowawayPostgres  # noqa: E402

REQUESTS = int(__import__("os").environ.get("BENCH_REQUESTS", "1000"))
BASELINE_APPENDS = 500
GOAL_P95_MS = 100.0
T0 = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def _timed(samples: list[float], fn: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = fn()
    samples.append((time.perf_counter() - started) * 1000)
    return result


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_backend(url: str) -> dict[str, Any]:
    fleet = load_inventory(ROOT / "inventory")
    database = Database(url)
    clock = FakeClock(T0)
    snapshot = snapshot_of(healthy_records(fleet, at=T0), at=T0)
    pipeline = Pipeline(
        fleet=fleet,
        database=database,
        directory=Directory.load(fleet.source, sandbox=True, fleet=fleet),
        policy=load_policy(fleet.source, fleet),
        snapshot=lambda: snapshot,
        executor=None,
        playbook_dir=ROOT / "playbooks",
        clock=clock,
    )
    alice, bob, carol = (pipeline.directory.cast_member(n) for n in ("alice", "bob", "carol"))
    plan = plan_failover(fleet, snapshot, from_region="eu-west-1", to_region="eu-central-1")

    baseline: list[float] = []
    audit = AuditLog(database, clock=clock)
    for i in range(BASELINE_APPENDS):
        _timed(
            baseline, lambda i=i: audit.append(AuditKind.PREVIEW, actor="bench", face="cli", data={"i": i})
        )

    timings: dict[str, list[float]] = {"file": [], "vote": [], "approve (completes)": [], "cancel": []}
    started = time.perf_counter()
    for _ in range(REQUESTS):
        clock.advance(1)
        request = _timed(timings["file"], lambda: pipeline.submit(plan, alice, face="slack").request)
        _timed(timings["vote"], lambda r=request: pipeline.approve(r.id, bob, face="slack"))
        approved = _timed(
            timings["approve (completes)"], lambda r=request: pipeline.approve(r.id, carol, face="tui")
        )
        assert approved.status.value == "approved", approved.status
        _timed(timings["cancel"], lambda r=request: pipeline.cancel(r.id, alice, face="cli"))
    elapsed = time.perf_counter() - started
    verified = pipeline.audit.verify()
    assert verified.ok, verified.problem
    database.close()
    base_p50 = statistics.median(baseline)
    return {
        "requests": REQUESTS,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(REQUESTS / elapsed, 1),
        "transitions_per_s": round(4 * REQUESTS / elapsed, 1),
        "baseline_audit_append_ms": {"p50": round(base_p50, 2), "p95": round(_pct(baseline, 0.95), 2)},
        "transitions_ms": {
            kind: {
                "p50": round(statistics.median(s), 2),
                "p95": round(_pct(s, 0.95), 2),
                "p50_vs_baseline": round(statistics.median(s) / base_p50, 1),
            }
            for kind, s in timings.items()
        },
        "audit_entries_verified": verified.checked,
    }


def main() -> int:
    results: dict[str, Any] = {
        "benchmark": "pipeline",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "goal": f"p95 of every transition < {GOAL_P95_MS:.0f} ms on SQLite and PostgreSQL",
    }
    with tempfile.TemporaryDirectory() as tmp:
        print("sqlite …", flush=True)
        results["sqlite"] = run_backend(f"sqlite:///{Path(tmp) / 'bench.db'}")
    with ThrowawayPostgres() as pg:
        print("postgresql …", flush=True)
        results["postgresql"] = run_backend(pg.create_database("bench"))
    worst = max(t["p95"] for b in ("sqlite", "postgresql") for t in results[b]["transitions_ms"].values())
    results["worst_p95_ms"] = worst
    results["met"] = worst < GOAL_P95_MS
    out = ROOT / "bench" / "results" / "pipeline.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    for backend in ("sqlite", "postgresql"):
        r = results[backend]
        print(
            f"{backend}: {r['requests_per_s']} requests/s ({r['transitions_per_s']} transitions/s); "
            f"baseline append p50 {r['baseline_audit_append_ms']['p50']} ms"
        )
        for kind, t in r["transitions_ms"].items():
            print(
                f"  {kind:<20} p50 {t['p50']:>7} ms  p95 {t['p95']:>7} ms  ({t['p50_vs_baseline']}x baseline)"
            )
    print(f"goal {results['goal']}: {'met' if results['met'] else 'MISSED'} (worst p95 {worst} ms)")
    return 0 if results["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
