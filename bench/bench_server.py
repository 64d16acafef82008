"""The ops server under its clients: API latency, the thin client's start, and the cost of looking.

A real server (the sandbox through the four real adapters and the local cloud, uvicorn on 127.0.0.1,
a personal token) in this process:

1. **Status latency with 20 concurrent clients**: each client (its own httpx connection) asks
   ``GET /api/v1/fleet/status`` (what ``fleet status`` renders) ten times, then ``GET /api/v1/fleet``
   (the whole view the console renders) ten times; p50 / p99 of the answers, against the in-process
   baseline of the same work without HTTP and without the server's per-refresh cache (computing the
   document, encoding the view), one call at a time.
2. **Thin client**: ``opsconsole fleet status`` and ``opsconsole --help`` against that server, as
   subprocesses, wall time against ``python -c pass`` (the interpreter's own start). Goal < 0.5 s
   for both thin-client commands' own cost above the interpreter.
3. **Cloud API calls per minute with 0, 1 and 10 connected clients** (each polling ``/fleet`` every
   2 s like the console): counted at the transports (urllib3 for kubernetes, boto3 and Azure; gRPC for
   Cloud Monitoring) in the server's process. Goal: 10 clients cost what one costs (ratio <= 1.15; the
   refresh loop is the server's, not the clients').

Run: python bench/bench_server.py [--window 30]   (writes bench/results/server.json)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
OPSCONSOLE = Path(sys.executable).parent / "opsconsole"
CLIENTS = 20
PER_CLIENT = 10
GOAL_THIN_CLIENT_S = 0.5
GOAL_CALLS_RATIO = 1.15


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


class CallCounter:
    """Counts outgoing API calls at the transports every adapter's SDK goes through."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def hit(self) -> None:
        with self._lock:
            self.count += 1

    def install(self) -> None:
        import grpc._channel  # noqa: PLC0415
        import urllib3.connectionpool  # noqa: PLC0415

        counter = self
        urlopen = urllib3.connectionpool.HTTPConnectionPool.urlopen

        def counted_urlopen(pool: Any, *args: Any, **kwargs: Any) -> Any:
            counter.hit()
            return urlopen(pool, *args, **kwargs)

        urllib3.connectionpool.HTTPConnectionPool.urlopen = counted_urlopen  # type: ignore[method-assign]
        unary = grpc._channel._UnaryUnaryMultiCallable.__call__

        def counted_unary(callable_: Any, *args: Any, **kwargs: Any) -> Any:
            counter.hit()
            return unary(callable_, *args, **kwargs)

        grpc._channel._UnaryUnaryMultiCallable.__call__ = counted_unary  # type: ignore[method-assign]


@contextmanager
def running_server(home: Path) -> Iterator[tuple[str, str, Any]]:
    from opsconsole.server.app import create_app  # noqa: PLC0415
    from opsconsole.server.auth import TokenStore  # noqa: PLC0415
    from opsconsole.server.embedded import ServedApp  # noqa: PLC0415
    from opsconsole.server.main import server_runtime  # noqa: PLC0415
    from opsconsole.server.settings import ServerSettings  # noqa: PLC0415

    settings = ServerSettings(sandbox=True, home=home, refresh_s=2.0)
    with server_runtime(settings, scheduler=False, slack=False) as runtime:
        runtime.cache.latest(wait_s=60)
        served = ServedApp(create_app(runtime), host="127.0.0.1", port=0)
        served.start()
        try:
            core = runtime.core
            _, token = TokenStore(core.database, core.pipeline.audit).create("alice", created_by="bench")
            yield f"http://127.0.0.1:{served.port}", token, runtime
        finally:
            served.stop()


def latency(url: str, token: str, runtime: Any, path: str) -> dict[str, Any]:
    import httpx  # noqa: PLC0415

    from opsconsole.core import wire  # noqa: PLC0415
    from opsconsole.core.fleet.report import status_document  # noqa: PLC0415

    # Baseline: the same work in-process, one call at a time, uncached: encoding the view (for /fleet),
    # computing the status document (for /fleet/status).
    baseline: list[float] = []
    for _ in range(50):
        started = time.perf_counter()
        view = runtime.cache.latest()
        wire.dumps(view) if path == "/api/v1/fleet" else status_document(view)
        baseline.append((time.perf_counter() - started) * 1000)
    times: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(CLIENTS)

    def client() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            http.get("/api/v1/whoami").raise_for_status()
            barrier.wait()
            for _ in range(PER_CLIENT):
                started = time.perf_counter()
                http.get(path).raise_for_status()
                with lock:
                    times.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    base_p50 = statistics.median(baseline)
    return {
        "path": path, "clients": CLIENTS, "requests": len(times), "p50_ms": pct(times, 0.5),
        "p99_ms": pct(times, 0.99),
        "baseline_in_process_p50_ms": round(base_p50, 2),
        "p50_over_baseline": round(pct(times, 0.5) / base_p50, 1),
    }


def wall(command: list[str], env: dict[str, str], runs: int = 5) -> float:
    best = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        best.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()[:400]}")
    return round(statistics.median(best), 3)


def thin_client(url: str, token: str) -> dict[str, Any]:
    env = {**os.environ, "OPSCONSOLE_SERVER": url, "OPSCONSOLE_TOKEN": token}
    python = wall([sys.executable, "-c", "pass"], env)
    status = wall([str(OPSCONSOLE), "fleet", "status"], env)
    helped = wall([str(OPSCONSOLE), "--help"], env)
    return {
        "python_c_pass_s": python, "fleet_status_s": status, "help_s": helped,
        "fleet_status_above_python_s": round(status - python, 3),
        "help_above_python_s": round(helped - python, 3),
    }


def calls_per_minute(url: str, token: str, counter: CallCounter, window_s: float) -> dict[str, float]:
    import httpx  # noqa: PLC0415

    def measure(clients: int) -> float:
        stop = threading.Event()

        def poll() -> None:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
                while not stop.is_set():
                    http.get("/api/v1/fleet").raise_for_status()
                    stop.wait(2.0)

        threads = [threading.Thread(target=poll) for _ in range(clients)]
        for thread in threads:
            thread.start()
        time.sleep(2.5)  # clients connected and polling before the window opens
        before = counter.count
        time.sleep(window_s)
        calls = counter.count - before
        stop.set()
        for thread in threads:
            thread.join()
        return round(calls * 60 / window_s, 1)

    return {str(n): measure(n) for n in (0, 1, 10)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=30.0, help="seconds counted per client count")
    args = parser.parse_args()
    counter = CallCounter()
    counter.install()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["OPSCONSOLE_HOME"] = tmp
        os.environ.pop("OPSCONSOLE_DB_URL", None)
        with running_server(Path(tmp)) as (url, token, runtime):
            result: dict[str, Any] = {
                "latency_status": latency(url, token, runtime, "/api/v1/fleet/status"),
                "latency_fleet_view": latency(url, token, runtime, "/api/v1/fleet"),
            }
            result["thin_client"] = thin_client(url, token)
            result["cloud_calls_per_minute"] = calls_per_minute(url, token, counter, args.window)
    calls = result["cloud_calls_per_minute"]
    ratio = calls["10"] / calls["1"] if calls["1"] else float("inf")
    result["calls_10_over_1"] = round(ratio, 2)
    thin = result["thin_client"]
    result["goals"] = {
        "thin_client_above_python_s": GOAL_THIN_CLIENT_S, "calls_10_over_1": GOAL_CALLS_RATIO,
    }
    met = (thin["fleet_status_above_python_s"] < GOAL_THIN_CLIENT_S
           and thin["help_above_python_s"] < GOAL_THIN_CLIENT_S and ratio <= GOAL_CALLS_RATIO)
    result["met"] = met
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "server.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
