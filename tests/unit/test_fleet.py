"""Tests of the fleet engine: deadlines, degraded sources, no pile-up, change sets, duplicate keys."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from opsconsole.core.errors import SourceError
from opsconsole.core.fleet.engine import (
    FleetService,
    SourceHealth,
    SourceReading,
    SourceStatus,
)
from opsconsole.core.fleet.model import CacheState, FleetRecord, RegionTraffic

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


class ManualClock:
    def __init__(self, start: datetime = T0) -> None:
        self.t = start

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


def cache(region: str, source: str, *, at: datetime = T0, hit_ratio: float = 0.9) -> CacheState:
    return CacheState(
        source=source, observed_at=at, region=region, nodes=3, healthy_nodes=3, hit_ratio=hit_ratio
    )


def traffic(region: str, source: str, *, at: datetime = T0, rps: float = 100.0) -> RegionTraffic:
    return RegionTraffic(
        source=source,
        observed_at=at,
        region=region,
        rps=rps,
        avg_latency_ms=40.0,
        p95_ms=90.0,
        p99_ms=150.0,
        error_rate=0.001,
        error_rate_1h=0.001,
        concurrent_users=1000,
        health_check_ok=True,
    )


Step = Callable[[], SourceReading]


def returns(*records: FleetRecord, problems: tuple[str, ...] = ()) -> Step:
    return lambda: SourceReading(tuple(records), problems)


def raises(exc: Exception) -> Step:
    def step() -> SourceReading:
        raise exc

    return step


def blocks(event: threading.Event, then: Step) -> Step:
    def step() -> SourceReading:
        event.wait(10)
        return then()

    return step


class ScriptedSource:
    """Runs one step per call; the last step repeats."""

    def __init__(self, name: str, *steps: Step) -> None:
        self.name = name
        self.steps = list(steps)
        self.calls = 0
        self.finished = threading.Event()

    def read(self) -> SourceReading:
        step = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        try:
            return step()
        finally:
            self.finished.set()


@pytest.fixture
def release() -> Iterator[list[threading.Event]]:
    """Events that hanging sources wait on; all are set at teardown so no thread stays blocked."""
    events: list[threading.Event] = []
    yield events
    for event in events:
        event.set()


def new_event(release: list[threading.Event]) -> threading.Event:
    event = threading.Event()
    release.append(event)
    return event


def health(snapshot_sources: tuple[SourceHealth, ...], name: str) -> SourceHealth:
    found = [h for h in snapshot_sources if h.name == name]
    assert len(found) == 1
    return found[0]


def test_degraded_sources_do_not_delay_the_snapshot(release: list[threading.Event]) -> None:
    clock = ManualClock()
    hang = new_event(release)
    never = new_event(release)
    sources = [
        ScriptedSource("healthy-a", returns(cache("eu", "healthy-a"))),
        ScriptedSource("healthy-b", returns(traffic("eu", "healthy-b"), traffic("us", "healthy-b"))),
        ScriptedSource("hanger", returns(cache("us", "hanger")), blocks(hang, returns())),
        ScriptedSource("raiser", returns(cache("ap", "raiser")), raises(SourceError("throttled by API"))),
        ScriptedSource(
            "half",
            returns(traffic("ap", "half"), traffic("sa", "half", rps=5)),
            returns(traffic("sa", "half", rps=7), problems=("region ap: timeout",)),
        ),
        ScriptedSource("broken", raises(ValueError("bad answer\nTraceback (most recent call last):"))),
        ScriptedSource("mute", blocks(never, returns(cache("af", "mute")))),
    ]
    deadline = 0.5
    with FleetService(sources, deadline_s=deadline, clock=clock) as fleet:
        t = time.monotonic()
        first, _ = fleet.refresh()
        assert time.monotonic() - t <= deadline * 1.1
        assert health(first.sources, "mute").status is SourceStatus.ERROR

        clock.advance(60)
        t = time.monotonic()
        snap, _ = fleet.refresh()
        elapsed = time.monotonic() - t
        assert elapsed <= deadline * 1.1, elapsed

    by = {h.name: h for h in snap.sources}
    assert snap.partial
    # healthy sources: intact and OK
    assert by["healthy-a"].status is SourceStatus.OK and by["healthy-a"].error is None
    assert by["healthy-a"].age_s == 0.0 and by["healthy-a"].records == 1
    assert snap.get("cache/eu") == cache("eu", "healthy-a")
    assert snap.get("traffic/us") == traffic("us", "healthy-b")
    assert by["healthy-b"].status is SourceStatus.OK and by["healthy-b"].records == 2
    # hanging source with last good data: stale, data kept and aged
    assert by["hanger"].status is SourceStatus.STALE
    assert by["hanger"].error == "no answer within 0.5 s"
    assert by["hanger"].age_s == 60.0 and by["hanger"].duration_s is None
    assert by["hanger"].last_success == T0
    assert snap.get("cache/us") == cache("us", "hanger")
    # raising source with last good data: stale with the message, no traceback
    assert by["raiser"].status is SourceStatus.STALE
    assert by["raiser"].error == "throttled by API"
    assert by["raiser"].age_s == 60.0 and by["raiser"].duration_s is not None
    assert snap.get("cache/ap") == cache("ap", "raiser")
    # half answer: returned keys replaced, missing ones kept, stale with the problems, oldest age
    assert by["half"].status is SourceStatus.STALE
    assert by["half"].error is not None and "region ap: timeout" in by["half"].error
    assert by["half"].age_s == 60.0 and by["half"].records == 2
    assert by["half"].last_success == T0
    sa = snap.get("traffic/sa")
    assert isinstance(sa, RegionTraffic) and sa.rps == 7
    assert snap.get("traffic/ap") == traffic("ap", "half")
    # never-good sources: error, no records
    assert by["broken"].status is SourceStatus.ERROR
    assert by["broken"].error == "ValueError: bad answer"
    assert by["broken"].age_s is None and by["broken"].records == 0
    assert by["mute"].status is SourceStatus.ERROR
    assert by["mute"].error is not None and by["mute"].error.startswith("previous read still running for")
    assert snap.get("cache/af") is None
    expected = ["cache/ap", "cache/eu", "cache/us", "traffic/ap", "traffic/eu", "traffic/sa", "traffic/us"]
    assert sorted(snap.records) == expected


def test_hung_source_is_called_once_across_refreshes(release: list[threading.Event]) -> None:
    clock = ManualClock()
    hang = new_event(release)
    src = ScriptedSource("slow", blocks(hang, returns(cache("eu", "slow"))), raises(SourceError("down")))
    with FleetService([src], deadline_s=0.2, clock=clock) as fleet:
        snap1, _ = fleet.refresh()
        h1 = health(snap1.sources, "slow")
        assert h1.status is SourceStatus.ERROR and h1.error == "no answer within 0.2 s"
        snap2, _ = fleet.refresh()
        h2 = health(snap2.sources, "slow")
        assert h2.status is SourceStatus.ERROR
        assert h2.error is not None and h2.error.startswith("previous read still running for 0.")
        assert src.calls == 1

        # The abandoned call finishes late: its data is adopted at the next refresh (documented choice),
        # and a fresh read is started too (which fails here), so the late data is served as stale.
        hang.set()
        assert src.finished.wait(5)
        time.sleep(0.1)  # let the worker hand the result to its future
        clock.advance(30)
        snap3, changes = fleet.refresh()
        assert src.calls == 2
        h3 = health(snap3.sources, "slow")
        assert h3.status is SourceStatus.STALE and h3.error == "down"
        assert snap3.get("cache/eu") == cache("eu", "slow")
        assert changes.added == {"cache/eu"}


def test_change_set_ignores_observed_at() -> None:
    clock = ManualClock()
    current: list[FleetRecord] = [cache("eu", "s"), cache("us", "s"), traffic("eu", "s")]
    src = ScriptedSource("s", lambda: SourceReading(tuple(current)))
    with FleetService([src], deadline_s=1.0, clock=clock) as fleet:
        _, first = fleet.refresh()
        assert first.added == {"cache/eu", "cache/us", "traffic/eu"} and first.sources_changed

        later = T0 + timedelta(minutes=5)
        current[:] = [cache("eu", "s", at=later), cache("us", "s", at=later), traffic("eu", "s", at=later)]
        _, same = fleet.refresh()
        assert same.empty, same

        current[:] = [cache("eu", "s", at=later, hit_ratio=0.5), traffic("eu", "s"), traffic("us", "s")]
        snap, changes = fleet.refresh()
        assert changes.added == {"traffic/us"}
        assert changes.removed == {"cache/us"}  # a healthy source's dropped key disappears
        assert changes.changed == {"cache/eu"}
        assert not changes.sources_changed and not changes.empty
        assert snap.get("cache/us") is None


def test_sources_changed_when_health_changes() -> None:
    ok = returns(cache("eu", "s"))
    src = ScriptedSource("s", ok, raises(RuntimeError("boom")), ok)
    with FleetService([src], deadline_s=1.0, clock=ManualClock()) as fleet:
        fleet.refresh()
        snap, changes = fleet.refresh()
        assert changes.sources_changed and not changes.added and not changes.removed
        assert health(snap.sources, "s").error == "RuntimeError: boom"
        _, back = fleet.refresh()
        assert back.sources_changed and back.changed == frozenset()


def test_duplicate_key_first_source_wins() -> None:
    first = ScriptedSource("first", returns(cache("eu", "first", hit_ratio=0.1)))
    second = ScriptedSource("second", returns(cache("eu", "second", hit_ratio=0.2), cache("us", "second")))
    with FleetService([first, second], deadline_s=1.0, clock=ManualClock()) as fleet:
        snap, _ = fleet.refresh()
    rec = snap.get("cache/eu")
    assert isinstance(rec, CacheState) and rec.source == "first" and rec.hit_ratio == 0.1
    assert snap.get("cache/us") is not None
    assert health(snap.sources, "first").records == 1
    assert health(snap.sources, "second").records == 1
    assert not snap.partial


def test_per_source_deadline_override() -> None:
    def slow(seconds: float) -> Step:
        def step() -> SourceReading:
            time.sleep(seconds)
            return SourceReading((cache("eu", "x"),))

        return step

    tight = ScriptedSource("tight", slow(0.4))
    roomy = ScriptedSource("roomy", slow(0.2))
    with FleetService(
        [tight, roomy], deadline_s=2.0, clock=ManualClock(), source_deadlines={"tight": 0.1}
    ) as fleet:
        t = time.monotonic()
        snap, _ = fleet.refresh()
        elapsed = time.monotonic() - t
    assert 0.2 <= elapsed < 0.35, elapsed
    assert health(snap.sources, "tight").error == "no answer within 0.1 s"
    roomy_health = health(snap.sources, "roomy")
    assert roomy_health.status is SourceStatus.OK
    assert roomy_health.duration_s is not None and roomy_health.duration_s >= 0.2


def test_reader_threads_are_daemons_and_bounded(release: list[threading.Event]) -> None:
    hang = new_event(release)
    sources = [ScriptedSource(f"s{i}", blocks(hang, returns())) for i in range(3)]
    with FleetService(sources, deadline_s=0.05) as fleet:
        fleet.refresh()
        fleet.refresh()
        readers = [t for t in threading.enumerate() if t.name.startswith("fleet-read")]
    assert readers and all(t.daemon for t in readers)
    assert sum(s.calls for s in sources) == 3


def test_snapshot_accessors_and_lifecycle() -> None:
    src = ScriptedSource("s", returns(traffic("us", "s"), cache("eu", "s"), cache("ap", "s")))
    fleet = FleetService([src], clock=ManualClock())
    assert fleet.snapshot is None
    snap, _ = fleet.refresh()
    assert fleet.snapshot is snap
    assert [c.region for c in snap.of_type(CacheState)] == ["ap", "eu"]
    assert [t.region for t in snap.of_type(RegionTraffic)] == ["us"]
    assert snap.source("nope") is None and snap.get("nope") is None
    with pytest.raises(TypeError):
        snap.records["x"] = cache("x", "s")  # type: ignore[index,unused-ignore]
    fleet.close()
    with pytest.raises(RuntimeError):
        fleet.refresh()


def test_rejects_duplicate_names_and_unknown_deadlines() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        FleetService([ScriptedSource("a", returns()), ScriptedSource("a", returns())])
    with pytest.raises(ValueError, match="unknown"):
        FleetService([ScriptedSource("a", returns())], source_deadlines={"b": 1.0})


def test_notes_of_a_complete_answer_keep_the_source_ok() -> None:
    """Throttling a source backed off from is worth telling, but its data is fresh: OK, with the note."""

    class Noted:
        name = "noted"

        def read(self) -> SourceReading:
            return SourceReading(records=(), notes=("throttled (HTTP 429) 2 time(s), backed off 0.4 s",))

    with FleetService([Noted()], deadline_s=1.0) as service:
        snapshot, _ = service.refresh()
    health = snapshot.source("noted")
    assert health is not None and health.status is SourceStatus.OK
    assert health.notes == ("throttled (HTTP 429) 2 time(s), backed off 0.4 s",)
    assert not snapshot.partial


def test_a_slow_neighbour_does_not_make_a_fresh_answer_stale(release: list[threading.Event]) -> None:
    """Ages are taken when each source answered: the k8s informers answer at once, a cloud takes 10 s
    of the same refresh; the informers' data is fresh, while data that was already old when it was
    served is still stale."""
    clock = ManualClock()
    fast = ScriptedSource("fast", returns(cache("eu", "fast")))
    fast.cadence_s = 2.0  # type: ignore[attr-defined]

    def slow_answer() -> SourceReading:
        fast.finished.wait(10)
        clock.advance(10)
        return SourceReading((traffic("eu", "slow"),))

    slow = ScriptedSource("slow", slow_answer)
    slow.cadence_s = 60.0  # type: ignore[attr-defined]

    def old_answer() -> SourceReading:
        return SourceReading((traffic("us", "old"),), as_of=clock.now() - timedelta(seconds=30))

    old = ScriptedSource("old", old_answer)
    old.cadence_s = 2.0  # type: ignore[attr-defined]
    with FleetService([fast, slow, old], deadline_s=30.0, clock=clock) as service:
        snapshot, _ = service.refresh()
    assert clock.now() == T0 + timedelta(seconds=10)
    fast_health = health(snapshot.sources, "fast")
    assert fast_health.status is SourceStatus.OK, fast_health
    assert fast_health.age_s is not None and fast_health.age_s < 4.0
    assert health(snapshot.sources, "slow").status is SourceStatus.OK
    old_health = health(snapshot.sources, "old")
    assert old_health.status is SourceStatus.STALE and "s old" in (old_health.error or "")


def _slow_once(seconds: float, then: Step) -> Step:
    calls = []

    def step() -> SourceReading:
        if not calls:
            calls.append(1)
            time.sleep(seconds)
        return then()

    return step


def test_an_approved_change_is_planned_on_the_late_sources_answer_not_without_it() -> None:
    """``OpsCore._snapshot_for_change``: a source past its deadline is waited for and read again (its
    figures are what the change's plan checks); a source that answered with a failure is not asked
    again."""
    from opsconsole.core.facade import OpsCore  # noqa: PLC0415
    from opsconsole.core.fleet.inventory import load_inventory  # noqa: PLC0415

    late = ScriptedSource("late", _slow_once(0.8, returns(cache("eu", "late"))))
    failing = ScriptedSource("failing", raises(SourceError("403 forbidden")))
    with OpsCore(load_inventory(), [late, failing], deadline_s=0.3) as core:
        snapshot = core._snapshot_for_change()
    assert health(snapshot.sources, "late").status is SourceStatus.OK
    assert snapshot.get("cache/eu") is not None
    assert failing.calls <= 2  # read by the refreshes the late source needed, never retried for itself

    failing = ScriptedSource("failing", raises(SourceError("403 forbidden")))
    with OpsCore(load_inventory(), [failing], deadline_s=0.3) as core:
        core._snapshot_for_change()
    assert failing.calls == 1
