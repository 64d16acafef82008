"""Run every benchmark in bench/ (``make bench``); each writes bench/results/<name>.json.

Exits non-zero if any benchmark misses its goal. Benchmarks are separate processes so that one's
threads or caches cannot flatter the next.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main() -> int:
    failed = []
    for script in sorted(BENCH.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)], check=False).returncode != 0:
            failed.append(script.name)
    if failed:
        print("missed their goal or failed: " + ", ".join(failed))
        return 1
    print(f"results in {BENCH / 'results'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
