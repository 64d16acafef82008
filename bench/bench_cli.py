"""One-shot CLI commands on the sandbox: what a command that never shows the fleet costs.

Goal: ``opsconsole jobs list`` (and every command that reads only the store: approvals, audit) answers
in < 2 s on the sandbox, with or without ``opsconsole sandbox up``, and at most half the time it took
when the embedded server read the whole fleet for every command.

Each run is a fresh interpreter that does what the CLI's ``open_client`` does: starts the embedded ops
server, asks one thing, exits. Measured in the same run, interleaved:

* ``eager`` (the baseline, the old behaviour): ``EmbeddedServer.start()``: the four adapters built and
  the first refresh of the whole fleet started at once (and, without ``sandbox up``, every emulator of
  an ephemeral local cloud started first);
* ``on_demand`` (what the CLI does now): ``EmbeddedServer.start(on_demand=True)``: the fleet is read
  only when a request needs it (see ``opsconsole/core/fleet/deferred.py``).

Two commands: ``jobs`` (the store only) and ``status`` (the fleet, whole). Two set-ups: ``shared`` (a
``sandbox up`` running: the emulators exist) and ``ephemeral`` (none: the command's own local cloud).
Also the real console script, ``opsconsole jobs list``, end to end.

And what a one-shot command's reads cost cold: each source's first read (SDK clients built, connections
opened, the emulators just started) against its second, in a fresh interpreter per run. A one-shot
command waits ``ONE_SHOT_DEADLINE_S`` for each source (``opsconsole/wiring.py``); the goal keeps every
cold read under half of it, room for a loaded machine (beside three CPU burners they took 2-3x longer).

Run: python bench/bench_cli.py [runs]   (writes bench/results/cli.json)
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OPSCONSOLE = str(Path(sys.executable).parent / "opsconsole")
GOAL_S = 2.0
GOAL_RATIO = 0.5
COLD_SHARE = 0.5

CHILD = """
import sys
sys.path.insert(0, {root!r})
import opsconsole.cli  # the console script's module, as `opsconsole` loads it
from opsconsole.server.embedded import EmbeddedServer
with EmbeddedServer.start(acting_as="alice", on_demand={on_demand!r}) as server:
    with server.client(face="cli") as client:
        if {command!r} == "jobs":
            client.jobs()
        else:
            assert client.status()["totals"]["regions_reporting"] > 0
"""

COLD_READS = """
import json, sys
sys.path.insert(0, {root!r})
from opsconsole import wiring
with wiring.sandbox_core(on_demand=True) as core:
    core.prepare_fleet()
    reads = []
    for _ in range(2):
        reads.append({{s.name: s.duration_s for s in core.refresh().snapshot.sources}})
        wiring.touch_sources(core.fleet_sources)  # the second read asks the clouds again, not its cache
print(json.dumps({{"deadline_s": wiring.ONE_SHOT_DEADLINE_S, "cold": reads[0], "warm": reads[1]}}))
"""


def _environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSCONSOLE_")}
    env["OPSCONSOLE_HOME"] = str(home)
    env["OPSCONSOLE_SANDBOX_READER"] = "cloud"
    return env


def _timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True, text=True, timeout=300)
    return time.perf_counter() - started


def _measure(home: Path, runs: int) -> dict[str, Any]:
    env = _environment(home)
    samples: dict[str, list[float]] = {}
    for _ in range(runs):  # interleaved: the machine's noise falls on every mode alike
        for command in ("jobs", "status"):
            for mode in ("eager", "on_demand"):
                code = CHILD.format(root=str(ROOT), on_demand=mode == "on_demand", command=command)
                samples.setdefault(f"{command}/{mode}", []).append(_timed([sys.executable, "-c", code], env))
        samples.setdefault("opsconsole jobs list", []).append(_timed([OPSCONSOLE, "jobs", "list"], env))
    result: dict[str, Any] = {
        name: {"median_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times]}
        for name, times in samples.items()
    }
    for command in ("jobs", "status"):
        eager = result[f"{command}/eager"]["median_s"]
        result[f"{command}/ratio"] = round(result[f"{command}/on_demand"]["median_s"] / eager, 2)
    return result


def _cold_reads(home: Path, runs: int) -> dict[str, Any]:
    """Each source's first read in a fresh one-shot core, and its second (median of ``runs``)."""
    env = _environment(home)
    samples: list[dict[str, Any]] = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", COLD_READS.format(root=str(ROOT))], env=env, check=True,
                              capture_output=True, text=True, timeout=300)
        samples.append(json.loads(done.stdout.strip().splitlines()[-1]))
    deadline = samples[0]["deadline_s"]
    result: dict[str, Any] = {"deadline_s": deadline}
    for name in samples[0]["cold"]:
        cold = statistics.median(s["cold"][name] or float("inf") for s in samples)
        warm = statistics.median(s["warm"][name] or float("inf") for s in samples)
        result[name] = {"cold_s": round(cold, 3), "warm_s": round(warm, 3),
                        "cold_share_of_deadline": round(cold / deadline, 2)}
    return result


def _with_sandbox_up(home: Path, runs: int) -> dict[str, Any]:
    process = subprocess.Popen([OPSCONSOLE, "sandbox", "up"], env=_environment(home),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (home / "sandbox" / "endpoints.json").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("`opsconsole sandbox up` did not come up")
            time.sleep(0.2)
        return _measure(home, runs)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(ROOT / "opsconsole")],
                   check=False, capture_output=True)
    with tempfile.TemporaryDirectory() as shared_home, tempfile.TemporaryDirectory() as own_home:
        shared = _with_sandbox_up(Path(shared_home), runs)
        ephemeral = _measure(Path(own_home), runs)
        cold = _cold_reads(Path(own_home), runs)
    met = all(
        setup["opsconsole jobs list"]["median_s"] < GOAL_S and setup["jobs/ratio"] <= GOAL_RATIO
        for setup in (shared, ephemeral)
    ) and all(v["cold_share_of_deadline"] <= COLD_SHARE for k, v in cold.items() if k != "deadline_s")
    report = {
        "benchmark": "cli",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_1m": round(os.getloadavg()[0], 2)},
        "runs": runs,
        "goal": f"`opsconsole jobs list` < {GOAL_S} s and <= {GOAL_RATIO} x the eager start, "
                "with and without `sandbox up`; every source's cold first read of a one-shot command "
                f"<= {COLD_SHARE} x its deadline",
        "met": met,
        "shared_local_cloud": shared,
        "ephemeral_local_cloud": ephemeral,
        "one_shot_cold_reads": cold,
    }
    out = ROOT / "bench" / "results" / "cli.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
