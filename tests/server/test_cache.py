"""The fleet cache plans changes on a view where every source answered, when one comes soon: a server
that has just started often finds a slow source past its deadline on its first refresh."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from opsconsole.core.fleet.engine import ChangeSet, SourceHealth, SourceStatus
from opsconsole.core.fleet.findings import evaluate, region_health
from opsconsole.core.fleet.model import Fleet
from opsconsole.core.fleet.view import FleetView
from opsconsole.server.cache import FleetCache, Hub
from opsconsole.testing import healthy_records, snapshot_of

NO_CHANGE = ChangeSet(frozenset(), frozenset(), frozenset(), False)


def _view(fleet: Fleet, *, partial: bool) -> FleetView:
    snapshot = snapshot_of(healthy_records(fleet))
    if partial:  # one source past its deadline
        late = SourceHealth(name="k8s", status=SourceStatus.ERROR, age_s=None, error="deadline",
                            last_success=None, duration_s=5.0, records=0)
        snapshot = dataclasses.replace(snapshot, sources=(*snapshot.sources, late))
    findings = tuple(evaluate(fleet, snapshot))
    return FleetView(fleet, snapshot, NO_CHANGE, findings, region_health(fleet, snapshot, findings))


class _Core:
    """Answers a partial view first, then whole ones; the second refresh waits for the test's go."""

    def __init__(self, fleet: Fleet) -> None:
        self.views = [_view(fleet, partial=True), _view(fleet, partial=False)]
        self.calls = 0
        self.go = threading.Event()

    def refresh(self) -> FleetView:
        self.calls += 1
        if self.calls > 1:
            self.go.wait(10)
        return self.views[min(self.calls, 2) - 1]

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


def test_a_change_is_planned_on_the_next_whole_view_not_the_partial_first_one(seed_fleet: Fleet) -> None:
    core = _Core(seed_fleet)
    cache = FleetCache(core, Hub(), refresh_s=0.01)  # type: ignore[arg-type]
    cache.start()
    try:
        assert cache.latest().snapshot.partial  # the first refresh lacked a source
        threading.Timer(0.2, core.go.set).start()
        planned_on = cache.complete(wait_s=10)
        assert not planned_on.snapshot.partial
    finally:
        core.go.set()
        cache.stop()


def test_without_a_whole_view_in_time_the_newest_one_is_used(seed_fleet: Fleet) -> None:
    core = _Core(seed_fleet)
    cache = FleetCache(core, Hub(), refresh_s=0.01)  # type: ignore[arg-type]
    cache.start()
    try:
        assert cache.complete(wait_s=0.2).snapshot.partial  # the planners then say what they lack
        # Waited once in vain: a source that stays down does not make every later plan wait.
        started = time.monotonic()
        assert cache.complete(wait_s=8).snapshot.partial
        assert time.monotonic() - started < 4
    finally:
        core.go.set()
        cache.stop()
