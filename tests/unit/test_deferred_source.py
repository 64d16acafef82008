"""Sources built on first need (a one-shot command's): nothing is built until the fleet is read; the
build runs before any read's deadline; a failed build is that source's error and is tried again.
"""

from __future__ import annotations

import threading
import time

from opsconsole.core.errors import SourceError
from opsconsole.core.fleet.deferred import DeferredSource
from opsconsole.core.fleet.engine import FleetService, SourceReading, SourceStatus, underlying
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import FleetRecord
from opsconsole.testing import healthy_records

DEADLINE_S = 0.2
WAIT_S = 30.0


def _record(source: str, index: int) -> FleetRecord:
    return healthy_records(load_inventory(None), source=source)[index]


class Real:
    """The adapter a DeferredSource stands for."""

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index
        self.touched = 0

    def read(self) -> SourceReading:
        return SourceReading((_record(self.name, self.index),))

    def touch(self, kinds: object = None) -> None:
        self.touched += 1


class Builder:
    """Builds a :class:`Real`, slower than the engine's deadline, failing while ``failures`` > 0."""

    def __init__(self, name: str, index: int, *, build_s: float = 0.0, failures: int = 0) -> None:
        self.name = name
        self.index = index
        self.build_s = build_s
        self.failures = failures
        self.builds = 0

    def __call__(self) -> Real:
        self.builds += 1
        time.sleep(self.build_s)  # the cost being injected: an emulator starting, an SDK importing
        if self.failures > 0:
            self.failures -= 1
            raise SourceError(f"the {self.name} emulator did not start")
        return Real(self.name, self.index)


def test_nothing_is_built_until_the_fleet_is_read_and_then_once() -> None:
    build = Builder("aws", 0)
    source = DeferredSource("aws", build, cadence_s=60.0)
    with FleetService([source], deadline_s=WAIT_S) as service:
        assert build.builds == 0 and source.built_source is None
        assert underlying(source) is source
        snapshot, _ = service.refresh()
        service.refresh()
    assert build.builds == 1
    assert isinstance(source.built_source, Real) and underlying(source) is source.built_source
    assert snapshot.sources[0].status is SourceStatus.OK
    assert snapshot.sources[0].cadence_s == 60.0  # known before the adapter existed
    source.touch()
    assert source.built_source.touched == 1


def test_the_build_runs_before_the_deadline_so_a_slow_start_is_not_a_missed_deadline() -> None:
    slow = DeferredSource("aws", Builder("aws", 0, build_s=DEADLINE_S * 5))
    fast = DeferredSource("k8s", Builder("k8s", 1))
    with FleetService([fast, slow], deadline_s=DEADLINE_S) as service:
        snapshot, _ = service.refresh()
    assert {s.name: s.status for s in snapshot.sources} == {"k8s": SourceStatus.OK, "aws": SourceStatus.OK}
    assert len(snapshot.records) == 2


def test_a_failed_build_is_that_sources_error_and_is_tried_again() -> None:
    flaky = Builder("aws", 0, failures=2)  # the refresh's build before the deadline, then the read's
    fine = Builder("k8s", 1)
    with FleetService([DeferredSource("k8s", fine), DeferredSource("aws", flaky)],
                      deadline_s=WAIT_S) as service:
        first, _ = service.refresh()
        health = {s.name: s for s in first.sources}
        assert health["k8s"].status is SourceStatus.OK
        assert health["aws"].status is SourceStatus.ERROR
        assert "the aws emulator did not start" in (health["aws"].error or "")
        second, _ = service.refresh()
    assert {s.name: s.status for s in second.sources} == {"k8s": SourceStatus.OK, "aws": SourceStatus.OK}
    assert fine.builds == 1 and flaky.builds == 3  # the third: the next refresh's, before its deadline


def test_concurrent_first_reads_build_once() -> None:
    build = Builder("aws", 0, build_s=0.05)
    source = DeferredSource("aws", build)
    threads = [threading.Thread(target=source.read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert build.builds == 1
