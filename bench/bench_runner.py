"""Runner overhead: a one-task playbook through opsconsole's Runner vs plain ``ansible-playbook``.

Both run the same playbook (tests/integration/playbooks/one_task.yml) with the fleet's inventory
(inventory/hosts.yml), the same extravars file and the same minimal environment, alternately, in this one
process: plain ``ansible-playbook`` in a subprocess, then ``Runner.run`` (job record, private data dir,
ansible-runner's pexpect loop and callback plugin, events into SQLite and onto the bus, the process sweep,
redaction of the run dir and rotation). The goal is an overhead ≤ 0.25 s (median of the runner minus median
of plain; the median of the pairwise differences is reported too, as it is less sensitive to a busy box).

Run: python bench/bench_runner.py   (writes bench/results/runner.json)
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opsconsole.core.runs.events import EventBus, EventCapture  # noqa: E402
from opsconsole.core.runs.jobs import JobStore  # noqa: E402
from opsconsole.core.runs.records import JobStatus  # noqa: E402
from opsconsole.core.runs.runner import Runner  # noqa: E402

GOAL_OVERHEAD_S = 0.25
REPEATS = 7  # alternating pairs; a shared 2-core box is noisy, the median needs a few
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "one_task.yml"
INVENTORY = ROOT / "inventory" / "hosts.yml"
EXTRAVARS = {"greeting_target": "the benchmark"}


def plain_env(tmp: Path) -> dict[str, str]:
    return {
        "PATH": f"{sysconfig.get_path('scripts')}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(Path.home())),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "ANSIBLE_LOCAL_TEMP": str(tmp),
        "ANSIBLE_REMOTE_TMP": str(tmp),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
    }


def run_plain(workdir: Path) -> float:
    extravars = workdir / "extravars.json"
    extravars.write_text(json.dumps(EXTRAVARS))
    command = ["ansible-playbook", "-i", str(INVENTORY), str(PLAYBOOK), "-e", f"@{extravars}"]
    env = plain_env(workdir / "tmp")
    command[0] = str(Path(sysconfig.get_path("scripts")) / "ansible-playbook")
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"plain ansible-playbook failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def run_runner(runner: Runner) -> float:
    t0 = time.perf_counter()
    job = runner.run("bench", str(PLAYBOOK), EXTRAVARS, actor="bench", face="bench")
    elapsed = time.perf_counter() - t0
    if job.status is not JobStatus.SUCCEEDED:
        raise SystemExit(f"runner job failed: {job.error}")
    return elapsed


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        home = Path(tmp) / "home"
        plain_dir = Path(tmp) / "plain"
        (plain_dir / "tmp").mkdir(parents=True)
        home.mkdir()
        store = JobStore(home)
        bus = EventBus()
        bus.subscribe(EventCapture())  # a face listening, as in real use
        runner = Runner(store, bus, project_dir=ROOT, inventory=INVENTORY, home=home,
                        env={"AWS_REGION": "eu-west-1", "AWS_SECRET_ACCESS_KEY": "bench-dummy-secret"},
                        keep_runs=3)
        run_plain(plain_dir)  # warm-up: imports, collection loader caches, SQLite file
        run_runner(runner)
        plain, ours = [], []
        for _ in range(REPEATS):
            plain.append(run_plain(plain_dir))
            ours.append(run_runner(runner))
        runner.close()
        store.close()

    plain_median = statistics.median(plain)
    runner_median = statistics.median(ours)
    overhead = runner_median - plain_median
    pairwise = statistics.median(r - p for r, p in zip(ours, plain, strict=True))
    results = {
        "playbook": str(PLAYBOOK.relative_to(ROOT)),
        "inventory": str(INVENTORY.relative_to(ROOT)),
        "repeats": REPEATS,
        "plain_ansible_playbook_s": [round(x, 3) for x in plain],
        "runner_s": [round(x, 3) for x in ours],
        "plain_median_s": round(plain_median, 3),
        "runner_median_s": round(runner_median, 3),
        "overhead_median_s": round(overhead, 3),
        "overhead_pairwise_median_s": round(pairwise, 3),
        # The fastest run of each is the least disturbed by other work on the box: a floor, for reference.
        "overhead_min_s": round(min(ours) - min(plain), 3),
        "goal_overhead_s": GOAL_OVERHEAD_S,
        "met": overhead <= GOAL_OVERHEAD_S,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "at": datetime.now(UTC).isoformat(),
    }
    out = ROOT / "bench" / "results" / "runner.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"runner: plain ansible-playbook {plain_median:.3f} s, Runner {runner_median:.3f} s, overhead "
        f"{overhead:+.3f} s (pairwise {pairwise:+.3f} s, fastest vs fastest {min(ours) - min(plain):+.3f} s; "
        f"goal ≤ {GOAL_OVERHEAD_S} s; load {results['load_avg_1m']})"
    )
    return 0 if overhead <= GOAL_OVERHEAD_S else 1


if __name__ == "__main__":
    sys.exit(main())
