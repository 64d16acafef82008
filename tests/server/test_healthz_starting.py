"""``/healthz`` says "starting" for a source still within its startup time, and stays healthy meanwhile.

A progressive start (the clouds' emulators come up after the Kubernetes data) must not look like an outage
to a load balancer or a probe: a ``STARTING`` source is reported as ``starting`` (not ``failing``) with a
200, while a source past its ``startup_s`` without an answer is ``failing``. Real engine, real core, real
cache, real uvicorn on 127.0.0.1; the slow source blocks until the test releases it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.engine import SourceReading
from opsconsole.core.fleet.model import Fleet
from opsconsole.server.app import create_app
from opsconsole.server.embedded import ServedApp
from opsconsole.server.main import server_runtime
from opsconsole.server.settings import ServerSettings
from opsconsole.testing import healthy_records

WAIT_S = 30.0  # generous: a loaded 2-core machine


class _Fast:
    name = "k8s"

    def __init__(self, fleet: Fleet) -> None:
        self.records = tuple(r for r in healthy_records(fleet, source="k8s") if "cluster" in r.key)

    def read(self) -> SourceReading:
        return SourceReading(self.records)


class _Slow:
    """A cloud whose emulator is still starting: its reads block until released."""

    name = "aws"

    def __init__(self, fleet: Fleet, startup_s: float) -> None:
        keys = {r.key for r in healthy_records(fleet, source="k8s") if "cluster" in r.key}
        self.records = tuple(r for r in healthy_records(fleet, source="aws") if r.key not in keys)
        self.startup_s = startup_s
        self.release = threading.Event()

    def read(self) -> SourceReading:
        self.release.wait(WAIT_S * 2)
        return SourceReading(self.records)


@contextmanager
def _served(fleet: Fleet, slow: _Slow, deadline_s: float) -> Iterator[httpx.Client]:
    with OpsCore(fleet, [_Fast(fleet), slow], deadline_s=deadline_s) as core, \
            server_runtime(ServerSettings(refresh_s=0.2), core=core, scheduler=False, slack=False) as runtime:
        served = ServedApp(create_app(runtime), host="127.0.0.1", port=0)
        served.start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{served.port}", timeout=30) as http:
                yield http
        finally:
            slow.release.set()
            served.stop()


def _until(http: httpx.Client, condition: Any) -> httpx.Response:
    deadline = time.monotonic() + WAIT_S
    while True:
        response = http.get("/healthz")
        if condition(response.json()):
            return response
        assert time.monotonic() < deadline, response.text
        time.sleep(0.05)


def test_a_source_within_its_startup_time_is_starting_and_healthy(
    seed_fleet: Fleet, _isolated_home: Path
) -> None:
    slow = _Slow(seed_fleet, startup_s=WAIT_S * 4)
    with _served(seed_fleet, slow, deadline_s=WAIT_S * 4) as http:
        first = _until(http, lambda body: "aws" in body["checks"]["sources"])
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["status"] == "ok"
        assert body["checks"]["sources"] == {"k8s": "ok", "aws": "starting"}

        slow.release.set()
        answered = _until(http, lambda body: body["checks"]["sources"].get("aws") == "ok")
        assert answered.status_code == 200 and answered.json()["status"] == "ok"


def test_a_source_past_its_startup_time_is_failing(seed_fleet: Fleet, _isolated_home: Path) -> None:
    slow = _Slow(seed_fleet, startup_s=0.3)
    with _served(seed_fleet, slow, deadline_s=0.5) as http:
        late = _until(http, lambda body: body["checks"]["sources"].get("aws") == "failing")
        # One source of two failing is a degraded fleet, not a dead server: the check still passes.
        assert late.status_code == 200, late.text
        assert late.json()["checks"]["sources"]["k8s"] == "ok"
