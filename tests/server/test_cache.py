"""The fleet cache plans changes on a view where every source answered, when one comes soon: a server
that has just started often finds a slow source past its deadline on its first refresh."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest

from opsconsole.core.fleet.engine import (
    ChangeSet,
    FleetService,
    SourceHealth,
    SourceReading,
    SourceStatus,
    change_notifier,
)
from opsconsole.core.fleet.findings import evaluate, region_health
from opsconsole.core.fleet.model import Fleet
from opsconsole.core.fleet.view import FleetView
from opsconsole.server.cache import FleetCache, FleetUnavailable, Hub
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


# --------------------------------------------------------------------------------------------------
# Early refreshes: a source that says its data changed wakes the cache (debounced, rate-limited)
# --------------------------------------------------------------------------------------------------


class _NotifyingCore:
    """A core whose fleet service can tell of changes (``on_fleet_change``); counts its refreshes."""

    def __init__(self, fleet: Fleet) -> None:
        self.view = _view(fleet, partial=False)
        self.refreshes = 0
        self.refreshed = threading.Condition()
        self.listeners: list[Any] = []

    def refresh(self) -> FleetView:
        with self.refreshed:
            self.refreshes += 1
            self.refreshed.notify_all()
        return self.view

    def on_fleet_change(self, callback: Any) -> Any:
        self.listeners.append(callback)
        return lambda: self.listeners.remove(callback)

    def change(self) -> None:
        for callback in list(self.listeners):
            callback("k8s")

    def wait_refreshes(self, n: int, timeout: float = 10.0) -> bool:
        with self.refreshed:
            return self.refreshed.wait_for(lambda: self.refreshes >= n, timeout)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


def test_a_change_refreshes_early_and_a_burst_makes_one_refresh(seed_fleet: Fleet) -> None:
    core = _NotifyingCore(seed_fleet)
    hub = Hub()
    fleet_events: list[Any] = []
    hub.listen(lambda e: fleet_events.append(e) if e.kind == "fleet" else None)
    # The periodic refresh is 60 s away: only the notification can explain a second refresh.
    cache = FleetCache(core, hub, refresh_s=60, debounce_s=0.2, min_interval_s=0.2)  # type: ignore[arg-type]
    cache.start()
    try:
        assert core.wait_refreshes(1)
        assert len(core.listeners) == 1  # the cache follows the core's changes
        started = time.monotonic()
        for _ in range(50):  # a world tick: many objects within milliseconds
            core.change()
        assert core.wait_refreshes(2), "no early refresh after a change"
        took = time.monotonic() - started
        assert took < 30  # far sooner than the 60-s floor (generous: a loaded machine)
        # The burst was one refresh: no second one follows it.
        assert not core.wait_refreshes(3, timeout=0.8), "a burst of changes made several refreshes"
        assert cache.early_refreshes == 1 and cache.notifications == 50
        assert len(fleet_events) == 2 and len(cache.notify_to_view_s) == 1
        print(f"change -> refreshed view: {took * 1000:.0f} ms (debounce 200 ms)")
    finally:
        cache.stop()
    assert core.listeners == []  # stop unsubscribes


def test_changes_without_pause_are_rate_limited_and_the_periodic_floor_stays(seed_fleet: Fleet) -> None:
    core = _NotifyingCore(seed_fleet)
    cache = FleetCache(core, Hub(), refresh_s=60, debounce_s=0.05, min_interval_s=0.25)  # type: ignore[arg-type]
    cache.start()
    stop = threading.Event()

    def storm() -> None:
        while not stop.is_set():
            core.change()
            time.sleep(0.002)

    try:
        assert core.wait_refreshes(1)
        thread = threading.Thread(target=storm, daemon=True)
        started = time.monotonic()
        thread.start()
        assert core.wait_refreshes(4), "a storm of changes made no early refreshes"
        time.sleep(1.0)
        stop.set()
        thread.join()
        elapsed = time.monotonic() - started
        # At most one refresh per min_interval_s (+1 for the one in flight), however many changes.
        assert core.refreshes - 1 <= elapsed / 0.25 + 1, (core.refreshes, elapsed)
        assert cache.notifications > core.refreshes * 5
    finally:
        stop.set()
        cache.stop()
    # Without changes, the periodic floor alone refreshes.
    quiet = _NotifyingCore(seed_fleet)
    periodic = FleetCache(quiet, Hub(), refresh_s=0.05, follow_changes=False)  # type: ignore[arg-type]
    periodic.start()
    try:
        assert quiet.wait_refreshes(3)
        assert quiet.listeners == [] and periodic.early_refreshes == 0
    finally:
        periodic.stop()


class _Notifying:
    """A fleet source that can tell when its data changed (``ChangeNotifying``)."""

    name = "watching"

    def __init__(self) -> None:
        self.listeners: list[Any] = []

    def read(self) -> SourceReading:
        return SourceReading(records=())

    def on_change(self, callback: Any) -> Any:
        self.listeners.append(callback)
        return lambda: self.listeners.remove(callback)


class _Plain:
    name = "polled"

    def read(self) -> SourceReading:
        return SourceReading(records=())


def test_the_fleet_service_follows_only_the_sources_that_can_tell() -> None:
    notifying, plain = _Notifying(), _Plain()
    heard: list[str] = []
    with FleetService([plain, notifying]) as service:
        assert service.notifying_sources == ("watching",)
        assert change_notifier(plain) is None
        unsubscribe = service.on_change(heard.append)
        assert len(notifying.listeners) == 1
        for callback in notifying.listeners:
            callback()
        assert heard == ["watching"]
        unsubscribe()
        assert notifying.listeners == []


# --------------------------------------------------------------------------------------------------
# On demand (a one-shot command's server): no read until a request needs the fleet
# --------------------------------------------------------------------------------------------------


class _OnDemandCore(_NotifyingCore):
    """Its sources exist only after ``prepare_fleet`` (they are built late): so does its change hook."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__(fleet)
        self.prepared = 0

    def prepare_fleet(self) -> None:
        self.prepared += 1

    def on_fleet_change(self, callback: Any) -> Any:
        assert self.prepared, "subscribed to the sources' changes before they were built"
        return super().on_fleet_change(callback)


def test_an_on_demand_cache_reads_nothing_until_asked_then_builds_once_and_follows_changes(
    seed_fleet: Fleet,
) -> None:
    core = _OnDemandCore(seed_fleet)
    cache = FleetCache(core, Hub(), refresh_s=60, debounce_s=0.01, min_interval_s=0.01,  # type: ignore[arg-type]
                       on_demand=True)
    cache.start()
    try:
        assert not core.wait_refreshes(1, timeout=0.3)  # an eager cache refreshes at once
        assert cache.peek() is None and core.prepared == 0
        assert cache.latest(wait_s=10) is core.view
        assert cache.complete(wait_s=10) is core.view
        assert core.prepared == 1 and core.refreshes >= 1
        seen = core.refreshes
        core.change()  # subscribed once built: a change still refreshes early
        assert core.wait_refreshes(seen + 1)
    finally:
        cache.stop()
    assert core.listeners == []


def test_an_on_demand_cache_stopped_before_any_demand_never_reads(seed_fleet: Fleet) -> None:
    core = _OnDemandCore(seed_fleet)
    cache = FleetCache(core, Hub(), refresh_s=60, on_demand=True)  # type: ignore[arg-type]
    cache.start()
    cache.stop()
    assert cache.peek() is None
    with pytest.raises(FleetUnavailable):  # a stopped server does not start reading on a late request
        cache.latest(wait_s=0.1)
    assert (core.prepared, core.refreshes) == (0, 0)
