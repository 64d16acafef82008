"""The call meter, list prices and the monthly estimate, the cadence schedule, and the engine's freshness
rule (stale after twice a source's cadence; served from the cache within it is ok)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from opsconsole.core.fleet.cadence import Cadence, PollCache
from opsconsole.core.fleet.engine import FleetService, SourceReading, SourceStatus
from opsconsole.core.fleet.metering import (
    SECONDS_PER_MONTH,
    CallMeter,
    estimate_monthly_cost,
    parse_prices,
)
from opsconsole.core.fleet.view import source_freshness, sources_document


class Tick:
    """A settable wall clock (seconds) that also answers as a datetime Clock."""

    def __init__(self, t: float = 1_000_020.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)


def test_meter_counts_per_source_and_operation_across_threads() -> None:
    meter = CallMeter()
    threads = [threading.Thread(target=lambda: [meter.count("aws", "GetMetricData", units=9)
                                                for _ in range(100)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    meter.count("aws", "GetMetricData", units=3, error=True, throttled=True)
    meter.count("gcp", "ListTimeSeries", units=0, error=True)
    snap = {(c.source, c.operation): c for c in meter.snapshot()}
    aws = snap[("aws", "GetMetricData")]
    assert (aws.calls, aws.units, aws.errors, aws.throttles) == (401, 3603, 1, 1)
    assert snap[("gcp", "ListTimeSeries")].errors == 1
    assert meter.total("aws") == 401 and meter.total() == 402
    meter.reset()
    assert meter.snapshot() == []


def test_estimate_bills_units_or_calls_from_the_price_list() -> None:
    clock = Tick(0.0)
    meter = CallMeter(clock)
    for _ in range(10):
        meter.count("aws", "GetMetricData", units=100)
        meter.count("aws", "DescribeDBInstances")
    meter.count("k8s", "list_pods")
    prices = parse_prices({"prices": {"aws": {"GetMetricData": {"usd": 0.01, "per": 1000},
                                              "*": {"usd": 0, "unit": "call"}}}})
    est = estimate_monthly_cost(meter.snapshot(), prices, window_s=3600)
    # 1,000 metrics an hour, $0.01 per 1,000: $0.01 an hour, 720 hours a month.
    assert est["aws"].usd_per_month == pytest.approx(0.01 * SECONDS_PER_MONTH / 3600)
    assert est["aws"].calls_per_hour == pytest.approx(20)
    assert est["k8s"].usd_per_month == 0 and est["k8s"].calls_per_hour == pytest.approx(1)
    dearer = parse_prices({"aws": {"GetMetricData": {"usd": 0.02, "per": 1000}}})
    assert estimate_monthly_cost(meter.snapshot(), dearer, 3600)["aws"].usd_per_month == pytest.approx(
        2 * est["aws"].usd_per_month)


@pytest.mark.parametrize(("doc", "words"), [
    ({"aws": {"GetMetricData": {"usd": -1}}}, "prices.aws.GetMetricData.usd must be a number >= 0"),
    ({"aws": {"GetMetricData": {"usd": 1, "per": 0}}}, ".per must be an integer >= 1"),
    ({"aws": {"GetMetricData": {"usd": 1, "unit": "byte"}}}, ".unit must be 'unit' or 'call'"),
    ({"aws": {"GetMetricData": {"usd": 1, "cost": 2}}}, "unknown key(s) ['cost']"),
    ({"aws": ["x"]}, "prices.aws must be a mapping"),
])
def test_bad_prices_are_named(doc: object, words: str) -> None:
    with pytest.raises(ValueError, match=r"prices\.yml") as info:
        parse_prices(doc)
    assert words in str(info.value)


def test_cadence_is_aligned_to_its_period_and_can_be_invalidated() -> None:
    clock = Tick(1_000_020.0)  # 20 s into a minute
    cadence = Cadence(60.0, clock=clock)
    assert cadence.due()
    cadence.done()
    next_at = cadence.next_at()
    assert next_at is not None and next_at % 60 == 0 and 0 < next_at - clock.t <= 60
    clock.t += 30
    assert not cadence.due()
    clock.t = cadence.next_at() or 0.0
    assert cadence.due()
    cadence.done()
    cadence.invalidate()
    assert cadence.due()
    assert Cadence(0.0, clock=clock).due()
    with pytest.raises(ValueError):
        Cadence(-1.0)


class CountingSource:
    """A source on a cadence through PollCache, counting its polls; ``fail`` makes a poll raise."""

    def __init__(self, clock: Tick, cadence_s: float) -> None:
        self.name = "metrics"
        self.cadence_s = cadence_s
        self.polls = 0
        self.fail = False
        self._poll = PollCache(Cadence(cadence_s, clock=clock))

    def read(self) -> SourceReading:
        return self._poll.read(self._now)

    def _now(self) -> SourceReading:
        if self.fail:
            raise ConnectionRefusedError("connection refused")
        self.polls += 1
        return SourceReading(records=())


def test_served_from_cache_within_cadence_is_ok_then_stale_after_twice_then_recovers() -> None:
    clock = Tick(999_960.0)  # on a minute boundary
    source = CountingSource(clock, 60.0)
    with FleetService([source], deadline_s=5.0, clock=clock, refresh_s=2.0) as service:
        for _ in range(20):  # 40 s of 2-s refreshes: one poll, ok throughout
            snap, _ = service.refresh()
            assert snap.sources[0].status is SourceStatus.OK, snap.sources[0]
            assert snap.sources[0].cadence_s == 60.0
            clock.t += 2
        assert source.polls == 1
        source.fail = True  # the far side is gone: the source keeps failing, the data ages
        clock.t = 999_960.0 + 121
        snap, _ = service.refresh()
        health = snap.sources[0]
        assert health.status is SourceStatus.STALE and health.age_s is not None and health.age_s > 120
        fresh = source_freshness(snap)[0]
        assert fresh.stale and fresh.cadence_s == 60.0
        source.fail = False  # back: the next refresh polls at once and is ok
        snap, _ = service.refresh()
        assert snap.sources[0].status is SourceStatus.OK and source.polls == 2


def test_a_source_serving_old_data_without_error_is_stale() -> None:
    """A source that answers 'fine' from data older than twice its cadence is not shown green."""
    clock = Tick(1_000_000.0)

    class Old:
        name = "old"
        cadence_s = 10.0

        def read(self) -> SourceReading:
            return SourceReading(records=(), as_of=clock.now() - timedelta(seconds=25))

    with FleetService([Old()], deadline_s=5.0, clock=clock) as service:
        snap, _ = service.refresh()
    assert snap.sources[0].status is SourceStatus.STALE
    assert "cadence 10 s" in (snap.sources[0].error or "")


def test_sources_document_words() -> None:
    clock = Tick(0.0)
    meter = CallMeter(clock)
    meter.count("aws", "GetMetricData", units=124)
    source = CountingSource(Tick(1_000_000.0), 60.0)
    with FleetService([source], deadline_s=5.0, clock=Tick(1_000_000.0)) as service:
        snap, _ = service.refresh()
    doc = sources_document(snap, meter.snapshot(), parse_prices({"aws": {"GetMetricData": 0.01}}), 3600)
    rows = {r["name"]: r for r in doc["sources"]}
    assert rows["metrics"]["cadence_s"] == 60.0 and rows["metrics"]["status"] == "ok"
    assert rows["aws"]["calls_per_hour"] == 1 and rows["aws"]["usd_per_month"] > 0
    assert doc["total"]["usd_per_month"] == rows["aws"]["usd_per_month"]


def test_a_half_answer_is_asked_again_soon_not_at_every_read() -> None:
    clock = Tick(999_960.0)
    polls: list[float] = []

    def half() -> SourceReading:
        polls.append(clock.t)
        return SourceReading(records=(), problems=("us-east-1: no recent ALB metrics",))

    cache = PollCache(Cadence(60.0, clock=clock))
    for _ in range(30):  # a minute of 2-s refreshes
        assert not cache.read(half).complete
        clock.t += 2
    # Retried every 15 s (not 30 times, not once a minute).
    assert len(polls) == 4 and all(15 <= b - a <= 17 for a, b in pairwise(polls))
