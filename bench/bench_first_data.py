"""Time to first data with the local cloud: how long a newcomer waits for the console to show the fleet.

Goal (issue #16): time to first data with the local cloud (embedded server) < 1.5 s on a quiet machine.

Each run is a fresh interpreter that does what ``opsconsole`` (``make run``) does: imports the console,
opens it headless (Textual's ``run_test``) on the embedded ops server, which starts the local cloud
(the Kubernetes, AWS/moto, Cloud Monitoring and Azure Monitor emulators) and reads it through the real
adapters, and waits until a refresh *with fleet records* is on screen. Measured in the same run:

* ``baseline``: ``EmbeddedServer.start()`` as before: every emulator starts, then the first refresh waits
  for every source;
* ``progressive``: ``EmbeddedServer.start(progressive=True)``: the Kubernetes emulator and source first,
  the clouds' emulators once the first view is out (their sources show "starting" meanwhile);
* ``process``: what ``opsconsole`` does: the progressive server in a child process of its own, started
  before the console imports Textual (``open_api(server_process=True)``, see
  ``opsconsole/server/process.py``). The goal is judged on this one.

For each: seconds to the first data on screen, to every source answering (``all_ok_s``, as the server's
``/fleet`` says), and what the first screen's sources said. ``fresh`` runs use a new ``OPSCONSOLE_HOME``
each (the very first run: the store's schema is created); ``warm`` runs reuse one home (every later run).

Run: python bench/bench_first_data.py [runs]   (writes bench/results/first_data.json)
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 1.5

CHILD = """
import time, sys, json
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
import asyncio
from contextlib import contextmanager
MODE = {mode!r}
if MODE == "process":  # as `opsconsole` opens it: the CLI, the server's process, then Textual
    import opsconsole.cli  # the console script's module, loaded before anything else runs
    from opsconsole.tui import open_api
    factory, _reopen = open_api(None, acting_as="alice", server_process=True)
from opsconsole.tui.app import OpsConsoleApp
if MODE != "process":
    from opsconsole.server.embedded import EmbeddedServer

    @contextmanager
    def factory():  # as opsconsole.tui.open_api's in-process embedded(), with the mode under test
        with EmbeddedServer.start(acting_as="alice", progressive=MODE == "progressive") as server:
            with server.client(face="tui") as client:
                yield client

async def main():
    app = OpsConsoleApp(factory, refresh_s=0)
    async with app.run_test(size=(120, 40)) as pilot:
        seen = 0
        while app.view is None or not app.view.snapshot.records:
            if app.refreshes > seen:  # a view without records (nothing answered yet): ask again
                seen = app.refreshes
                app.action_refresh()
            await pilot.pause(0.005)
        # The view's message handled by every widget and the screen drawn (pause(0)); not pause(), which
        # also waits up to a second for the *process* to go idle, i.e. for the clouds' emulators that
        # start in the background right after the first view.
        await pilot.pause(0)
        first = time.perf_counter() - t0
        shown = {{s.name: s.status.value for s in app.view.snapshot.sources}}
        while True:  # every source answered, as the server's API says
            view = await asyncio.get_running_loop().run_in_executor(None, app.api.fleet)
            if all(s.status.value == "ok" for s in view.snapshot.sources):
                break
            if time.perf_counter() - t0 > 120:
                break
            await asyncio.sleep(0.05)
        print(json.dumps({{"first_data_s": first, "all_ok_s": time.perf_counter() - t0,
                           "first_sources": shown, "first_records": len(app.view.snapshot.records)}}))
asyncio.run(main())
"""

#: The starts measured: all at once in-process (the old start), progressive in-process, and progressive
#: in a server process of its own (what `opsconsole` does).
MODES = ("baseline", "progressive", "process")


def one_run(mode: str, home: str) -> dict[str, Any]:
    env = {**os.environ, "OPSCONSOLE_HOME": home, "OPSCONSOLE_SANDBOX_READER": "cloud",
           "XDG_CONFIG_HOME": os.path.join(home, "config")}
    for name in ("OPSCONSOLE_SERVER", "OPSCONSOLE_TOKEN"):  # no team server: the embedded one
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=str(ROOT), mode=mode)],
        env=env, capture_output=True, text=True, check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def series(runs: int, *, warm: bool) -> dict[str, list[dict[str, Any]]]:
    """Each mode ``runs`` times, interleaved (a change of load hits every mode alike)."""
    out: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as shared:
        if warm:
            one_run("baseline", shared)  # the home's first run (schema, world) is not counted
        for _ in range(runs):
            for mode in MODES:
                if warm:
                    out[mode].append(one_run(mode, shared))
                else:
                    with tempfile.TemporaryDirectory() as home:
                        out[mode].append(one_run(mode, home))
    return out


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 3)


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    # As `make run` does: the bytecode compiled (an editable install compiles nothing, and these machines
    # set PYTHONDONTWRITEBYTECODE, so each run would compile every module again).
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(ROOT / "opsconsole")],
                   check=True, capture_output=True)
    load_before = os.getloadavg()[0]
    measured: dict[str, list[dict[str, Any]]] = {}
    for warm in (True, False):
        for mode, rows in series(runs, warm=warm).items():
            measured[f"{mode}_{'warm' if warm else 'fresh'}"] = rows
    summary = {key: {"first_data_s": _median(rows, "first_data_s"), "all_ok_s": _median(rows, "all_ok_s"),
                     "first_data_s_runs": [round(r["first_data_s"], 3) for r in rows],
                     "first_sources": rows[-1]["first_sources"],
                     "first_records": rows[-1]["first_records"]}
               for key, rows in measured.items()}
    best = summary["process_warm"]["first_data_s"]
    results = {
        "time_to_first_data": summary,
        "ratio_to_baseline": {
            f"{mode}_{home}": round(summary[f"{mode}_{home}"]["first_data_s"]
                                    / summary[f"baseline_{home}"]["first_data_s"], 3)
            for mode in ("progressive", "process") for home in ("warm", "fresh")
        },
        "goal_s": GOAL_S,
        "met": best < GOAL_S,
        "cpus": os.cpu_count(),
        "load_avg_1m_before": round(load_before, 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out = ROOT / "bench" / "results" / "first_data.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("time to first data (embedded, local cloud), median of", runs, "runs:")
    for key, row in summary.items():
        print(f"  {key:18} first data {row['first_data_s']:.2f} s  all sources ok {row['all_ok_s']:.2f} s"
              f"  first screen: {row['first_sources']}")
    print(f"goal < {GOAL_S} s (quiet machine; load {load_before:.1f} before): "
          f"{'ok' if results['met'] else 'MISSED'}; wrote {out}")
    return 0 if results["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
