"""A sandbox failover drill end to end: wall time and the simulated RTO per service tier.

The Runbooks issue asks for "a sandbox failover drill end to end: wall time and the simulated RTO per
service tier, against 15 min / 1 h / 4 h". In one process, on a fresh ``OPSCONSOLE_HOME``, through
``sandbox_core()`` (the four real adapters reading an ephemeral local cloud started in this process, and
the run engine running the playbooks with ansible-runner):

* baseline: the wall time of one refresh of the whole fleet, and of a one-task check-mode run of
  ``scale.yml`` (its first task, the request check, refuses a target on purpose: ansible's start, the
  inventory and one task — the floor of any playbook run); also the failover's own preview (check
  mode), as an operator runs it before the drill;
* the drill: a *planned* failover eu-west-1 → eu-central-1 of a healthy fleet (the playbook's gates
  check the target's health, headroom and replica lag, which a healthy fleet passes), timed from the
  request: the plan, the failover job (``job.duration_s`` and the playbook's per-step timings), then
  refreshes until the console sees the move — ``dns/eu-west-1`` weights ``{eu-central-1: 100}``,
  eu-central-1's database a write primary, eu-central-1's front door healthy (health check OK, errors
  under 5 %, region not down). That instant is the RTO, in wall seconds and in simulated seconds
  (wall × ``OPSCONSOLE_SANDBOX_SPEED``, default 1), compared with each service tier's RTO
  (``Criticality.rto_minutes``: critical 15 min, important 1 h, standard 4 h);
* then the failback eu-west-1, timed the same way (until ``dns/eu-west-1`` is ``{eu-west-1: 100}``).

Exit status 1 if the drill does not complete or its RTO misses the critical tier's 15 minutes.

Run: python bench/bench_failover_drill.py   (writes bench/results/failover_drill.json)
"""

from __future__ import annotations

import json
import os
import platform
import shutil
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

from opsconsole.core.change.actions import ActionPlan, plan_failback, plan_failover  # noqa: E402
from opsconsole.core.facade import OpsCore  # noqa: E402
from opsconsole.core.fleet.model import (  # noqa: E402
    Criticality,
    DatabaseState,
    DbRole,
    DnsRecordSet,
    Health,
    RegionTraffic,
)
from opsconsole.core.fleet.view import FleetView  # noqa: E402
from opsconsole.core.runs.records import Job, JobStatus  # noqa: E402

FROM_REGION = "eu-west-1"
TO_REGION = "eu-central-1"
#: The same bar as the action catalogue's "healthy enough to take traffic".
MAX_ERROR_RATE = 0.05
#: How long to keep refreshing for the console to see a move before calling the drill failed.
SEEN_DEADLINE_S = 120.0
BASELINE_REFRESHES = 3
#: failover.yml's pause between DNS steps: 2 s on the sandbox, one DNS TTL (60 s) otherwise.
SANDBOX_STEP_WAIT_S = 2
PRODUCTION_STEP_WAIT_S = 60
ACTOR = "bench-failover-drill"
FACE = "bench"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timed_refresh(core: OpsCore) -> tuple[FleetView, float]:
    t0 = time.perf_counter()
    view = core.refresh()
    return view, time.perf_counter() - t0


def region_state(view: FleetView, *regions: str) -> dict[str, Any]:
    """What the console sees of the drill's regions: DNS weights, database role, front door."""
    snapshot = view.snapshot
    out: dict[str, Any] = {}
    for region in regions:
        dns = snapshot.get(f"dns/{region}")
        db = snapshot.get(f"database/{region}")
        traffic = snapshot.get(f"traffic/{region}")
        out[region] = {
            "dns_weights": dict(dns.weights) if isinstance(dns, DnsRecordSet) else None,
            "database_role": db.role.value if isinstance(db, DatabaseState) else None,
            "replicates_from": db.replicates_from if isinstance(db, DatabaseState) else None,
            "replica_lag_s": db.replica_lag_s if isinstance(db, DatabaseState) else None,
            "rps": round(traffic.rps, 1) if isinstance(traffic, RegionTraffic) else None,
            "health_check_ok": traffic.health_check_ok if isinstance(traffic, RegionTraffic) else None,
            "error_rate": traffic.error_rate if isinstance(traffic, RegionTraffic) else None,
            "health": view.health.get(region, Health.UNKNOWN).value,
        }
    out["sources"] = {s.name: s.status.value for s in snapshot.sources}
    return out


def serves_healthy(view: FleetView, region: str) -> bool:
    traffic = view.snapshot.get(f"traffic/{region}")
    return (
        isinstance(traffic, RegionTraffic)
        and traffic.health_check_ok
        and traffic.error_rate <= MAX_ERROR_RATE
        and view.health.get(region) is not Health.DOWN
    )


def failed_over(view: FleetView) -> bool:
    dns = view.snapshot.get(f"dns/{FROM_REGION}")
    db = view.snapshot.get(f"database/{TO_REGION}")
    return (
        isinstance(dns, DnsRecordSet)
        and dns.weights == {TO_REGION: 100}
        and isinstance(db, DatabaseState)
        and db.role is DbRole.WRITE_PRIMARY
        and serves_healthy(view, TO_REGION)
    )


def failed_back(view: FleetView) -> bool:
    dns = view.snapshot.get(f"dns/{FROM_REGION}")
    return isinstance(dns, DnsRecordSet) and dns.weights == {FROM_REGION: 100} and serves_healthy(
        view, FROM_REGION
    )


def job_summary(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status.value,
        "rc": job.rc,
        "duration_s": round(job.duration_s, 3) if job.duration_s is not None else None,
        "last_task": job.last_task,
        "error": job.error,
        "totals": dict(job.stats.get("totals", {})) if job.stats else {},
        "timings": [
            {"step": t.get("step"), "seconds": float(t.get("seconds", 0.0))} for t in job.timings
        ],
    }


def run_move(core: OpsCore, make_plan: Callable[[FleetView], ActionPlan],
             moved: Callable[[FleetView], bool]) -> dict[str, Any]:
    """Request a move (plan + run), then refresh until the console sees it; every phase timed."""
    view, _ = timed_refresh(core)  # what the console shows when the operator asks
    before = region_state(view, FROM_REGION, TO_REGION)
    requested = time.perf_counter()
    plan = make_plan(view)
    planned = time.perf_counter()
    # Through the approval pipeline, as every change: alice files it (high risk: two approvers), bob and
    # carol approve; the approvals are instant here, so what is timed is the machine's part.
    cast = core.directory.cast_member
    request = core.pipeline.submit(plan, cast("alice"), face=FACE, snapshot=view.snapshot).request
    core.pipeline.approve(request.id, cast("bob"), face=FACE)
    core.pipeline.approve(request.id, cast("carol"), face=FACE)
    approved = time.perf_counter()
    job = core.pipeline.execute(request.id, cast("carol"), face=FACE)  # re-plans on a fresh snapshot first
    executed = time.perf_counter()
    out: dict[str, Any] = {
        "summary": list(plan.summary),
        "before": before,
        "plan_s": round(planned - requested, 4),
        "file_and_approve_s": round(approved - planned, 3),
        "execute_wall_s": round(executed - approved, 3),
        "job": job_summary(job),
    }
    if job.duration_s is not None:
        # the run engine around ansible (job record, run dir, events) plus the local cloud's sync after it
        out["engine_and_sync_s"] = round(executed - approved - job.duration_s, 3)
    # The run engine's after_run synced the local cloud once, so the first refresh normally shows the
    # move; the cloud's driver syncs every 2 s besides. The loop still bounds the wait honestly.
    refreshes: list[float] = []
    seen_at: float | None = None
    if job.status is JobStatus.SUCCEEDED:
        while time.perf_counter() - executed < SEEN_DEADLINE_S:
            view, took = timed_refresh(core)
            refreshes.append(round(took, 3))
            if moved(view):
                seen_at = time.perf_counter()
                break
            time.sleep(0.5)
    out["after"] = region_state(view, FROM_REGION, TO_REGION)
    out["refreshes_until_seen"] = refreshes
    out["seen"] = seen_at is not None
    out["seen_after_job_s"] = round(seen_at - executed, 3) if seen_at is not None else None
    out["request_to_seen_s"] = round(seen_at - requested, 3) if seen_at is not None else None
    return out


def tier_verdicts(core: OpsCore, rto_sim_s: float | None) -> dict[str, Any]:
    tiers: dict[str, Any] = {}
    for tier in Criticality:
        target_s = tier.rto_minutes * 60
        tiers[tier.value] = {
            "rto_target_s": target_s,
            "services": sorted(s.name for s in core.fleet.services.values() if s.criticality is tier),
            "rto_sim_s": rto_sim_s,
            "share_of_target": round(rto_sim_s / target_s, 4) if rto_sim_s is not None else None,
            "pass": rto_sim_s is not None and rto_sim_s <= target_s,
        }
    return tiers


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="opsconsole-drill-"))
    os.environ["OPSCONSOLE_HOME"] = str(home)
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from opsconsole.wiring import SandboxSettings, sandbox_core  # noqa: PLC0415

    settings = SandboxSettings.from_environment()
    load_start = load()
    t0 = time.perf_counter()
    with sandbox_core(home=home, deadline_s=10.0, reader="cloud") as core:
        open_s = time.perf_counter() - t0
        first_view, first_refresh_s = timed_refresh(core)
        if first_view.snapshot.partial:
            print(f"failover drill: the first snapshot is partial: {region_state(first_view)['sources']}")
        baseline_refresh = [timed_refresh(core)[1] for _ in range(BASELINE_REFRESHES)]
        refresh_s = statistics.median(baseline_refresh)

        # The floor of any playbook run: scale.yml in check mode stopped by its first task (the request
        # check refuses the target on purpose), through the same run engine and connection variables.
        floor = core.runner.run(
            "scale", "scale.yml", {"scale_target": "(benchmark floor)", "region": FROM_REGION},
            check=True, actor=ACTOR, face=FACE, idle_timeout_s=120, job_timeout_s=600,
        )
        floor_s = floor.duration_s

        # The failover's own preview, as an operator runs it first (check mode: gates, reads, no change).
        view, _ = timed_refresh(core)
        preview_plan = plan_failover(core.fleet, view.snapshot, from_region=FROM_REGION, to_region=TO_REGION)
        preview = core.preview(preview_plan, actor=ACTOR, face=FACE)

        failover = run_move(
            core,
            lambda v: plan_failover(core.fleet, v.snapshot, from_region=FROM_REGION, to_region=TO_REGION),
            failed_over,
        )
        failback = run_move(core, lambda v: plan_failback(core.fleet, v.snapshot, region=FROM_REGION),
                            failed_back)
        final_view, _ = timed_refresh(core)
        final_state = region_state(final_view, FROM_REGION, TO_REGION)
        tiers_rto_wall = failover["request_to_seen_s"]
        rto_sim_s = round(tiers_rto_wall * settings.speed, 3) if tiers_rto_wall is not None else None
        tiers = tier_verdicts(core, rto_sim_s)
    load_end = load()
    shutil.rmtree(home, ignore_errors=True)

    dns_steps = sum(1 for t in failover["job"]["timings"] if str(t["step"]).startswith("dns_weights_"))
    rto_wall = failover["request_to_seen_s"]
    job_s = failover["job"]["duration_s"]
    results: dict[str, Any] = {
        "drill": {"kind": "planned failover of a healthy fleet, then failback",
                  "from_region": FROM_REGION, "to_region": TO_REGION},
        "sandbox": {
            "speed": settings.speed,
            "seed": settings.seed,
            "reader": "cloud: the four adapters, ephemeral local cloud in this process",
            "local_cloud_synced_by": "the run engine's after_run (no driver thread in an ephemeral cloud)",
            "step_wait_s": SANDBOX_STEP_WAIT_S,
        },
        "open_sandbox_core_s": round(open_s, 3),
        "baseline": {
            "first_refresh_s": round(first_refresh_s, 3),
            "refresh_median_s": round(refresh_s, 3),
            "refresh_s": [round(x, 3) for x in baseline_refresh],
            "scale_floor_check_s": round(floor_s, 3) if floor_s is not None else None,
            "scale_floor_job": {"status": floor.status.value, "rc": floor.rc, "last_task": floor.last_task,
                                "totals": dict(floor.stats.get("totals", {})) if floor.stats else {}},
            "failover_preview_check": job_summary(preview),
        },
        "failover": failover,
        "failback": failback,
        "final": final_state,
        "rto": {
            "from": "the failover request (plan), with the console's last snapshot in hand",
            "to": f"the first refresh showing dns/{FROM_REGION} = {{{TO_REGION}: 100}}, database/{TO_REGION} "
                  f"write_primary and traffic/{TO_REGION} healthy",
            "wall_s": rto_wall,
            "sim_s": rto_sim_s,
            "dns_steps": dns_steps,
            # the sandbox pauses 2 s between DNS steps where production waits one TTL (60 s)
            "wall_s_with_production_ttl_waits": (
                round(rto_wall + dns_steps * (PRODUCTION_STEP_WAIT_S - SANDBOX_STEP_WAIT_S), 3)
                if rto_wall is not None else None
            ),
        },
        "tiers": tiers,
        "ratios": {
            "failover_job_to_scale_floor": round(job_s / floor_s, 1) if job_s and floor_s else None,
            "failover_job_to_refresh": round(job_s / refresh_s, 1) if job_s else None,
            "failback_job_to_scale_floor": (
                round(failback["job"]["duration_s"] / floor_s, 1)
                if failback["job"]["duration_s"] and floor_s else None
            ),
        },
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "at": datetime.now(UTC).isoformat(),
    }
    out = ROOT / "bench" / "results" / "failover_drill.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")

    critical_ok = bool(tiers[Criticality.CRITICAL.value]["pass"])
    verdicts = " ".join(
        f"{name} {_target(t['rto_target_s'])} {'pass' if t['pass'] else 'MISS'}" for name, t in tiers.items()
    )
    fb_s = failback["request_to_seen_s"]
    print(
        f"failover drill {FROM_REGION}->{TO_REGION}: RTO "
        f"{_s(rto_wall)} wall = {_s(rto_sim_s)} sim (speed {settings.speed:g}); {verdicts}; "
        f"plan {failover['plan_s'] * 1000:.0f} ms, job {_s(job_s)} "
        f"({_ratio(job_s, floor_s)} the {_s(floor_s)} scale floor, {_ratio(job_s, refresh_s)} a "
        f"{_s(refresh_s)} refresh), seen {_s(failover['seen_after_job_s'])} after the job; "
        f"failback {_s(fb_s)} (job {_s(failback['job']['duration_s'])}"
        f"{'' if failback['seen'] else ', NOT seen'}); "
        f"load {load_start[0]:.1f}->{load_end[0]:.1f} on {os.cpu_count()} cpus"
    )
    return 0 if critical_ok else 1


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if not a or not b else f"{a / b:.1f}x"


def _target(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"


if __name__ == "__main__":
    sys.exit(main())
