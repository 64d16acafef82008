"""Cadenced cloud sources against the sandbox's AWS emulator over real sockets: a cadence holds (reads
within it make no call), only missing datapoints are asked, describes are re-read after a run touched
them, and a local cloud restarted on new ports is found again by the source itself (stale → recovered)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from opsconsole.core.fleet.engine import FleetService, SourceStatus
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.metering import METER
from opsconsole.core.fleet.model import Fleet, NodeGroupState, RegionTraffic
from opsconsole.providers.aws import AwsSource
from opsconsole.sandbox.aws import AwsCloud
from opsconsole.sandbox.emulator import Endpoints
from opsconsole.sandbox.world import World

START = datetime(2025, 1, 15, 12, tzinfo=UTC)


def _next_minute() -> float:
    """A minute boundary just ahead of now: the reads that follow stay inside one period."""
    return float(math.ceil(time.time() / 60) * 60)


class Tick:
    """A wall clock the test moves by hand (seconds since the epoch; also a datetime Clock)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_inventory()


@pytest.fixture(scope="module")
def cloud(fleet: Fleet) -> Iterator[tuple[AwsCloud, Endpoints]]:
    emulator = AwsCloud(fleet)
    endpoints = emulator.start()
    emulator.publish(World(fleet, seed=42, start=START))
    yield emulator, endpoints
    emulator.stop()


def _gmd() -> tuple[int, int]:
    """(GetMetricData calls, metrics requested) counted so far for the aws source."""
    calls = [c for c in METER.snapshot() if c.source == "aws" and c.operation == "GetMetricData"]
    return sum(c.calls for c in calls), sum(c.units for c in calls)


def _describes() -> int:
    return sum(c.calls for c in METER.snapshot() if c.source == "aws" and c.operation.startswith("Describe"))


def test_reads_within_a_cadence_make_no_call(cloud: tuple[AwsCloud, Endpoints], fleet: Fleet) -> None:
    _, endpoints = cloud
    clock = Tick(_next_minute())
    source = AwsSource.from_endpoints(fleet, endpoints, metrics_cadence_s=60, describe_cadence_s=300,
                                      clock=clock)
    METER.reset()
    first = source.read()
    assert first.complete, first.problems
    calls, units = _gmd()
    assert calls >= len(fleet.regions) and units > calls  # one batch per region (+ Route53 health)
    describes = _describes()
    for _ in range(10):  # ten refreshes inside the minute: served from what is held
        clock.t += 2
        again = source.read()
        assert again.as_of == first.as_of and again.records == first.records
    assert _gmd() == (calls, units)
    assert _describes() == describes
    assert source.cadence_s == 60.0


def test_only_missing_datapoints_are_asked(cloud: tuple[AwsCloud, Endpoints], fleet: Fleet,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _, endpoints = cloud
    # A clock a minute ahead: the bucket the emulator's datapoints fall in is complete at the first poll.
    clock = Tick(time.time() + 60)
    source = AwsSource.from_endpoints(fleet, endpoints, metrics_cadence_s=60, describe_cadence_s=300,
                                      clock=clock)
    asked: list[dict[str, Any]] = []
    real_call = source._call

    def recording(region_id: str | None, aws_region: str, service: str, op: str, **kwargs: Any) -> Any:
        if op == "get_metric_data":
            asked.append(kwargs)
        return real_call(region_id, aws_region, service, op, **kwargs)

    monkeypatch.setattr(source, "_call", recording)
    first = source.read()
    assert first.complete, first.problems
    p95_first = {r.region: r.p95_ms for r in first.records if isinstance(r, RegionTraffic)}
    held = {k: dict(v) for k, v in source._series.items() if k[5] < k[6]}  # gauge series
    newest_complete = max(ts for points in held.values() for ts in points)
    gauge_starts_1 = [a["StartTime"] for a in asked
                      if any(q["Id"] == "p95" for q in a["MetricDataQueries"])]
    asked.clear()
    clock.t += 60
    second = source.read()
    assert second.complete, second.problems
    gauge_calls = [a for a in asked if any(q["Id"] == "p95" for q in a["MetricDataQueries"])]
    assert gauge_calls, "the gauges were not polled at the next period"
    for call in gauge_calls:
        assert call["StartTime"].timestamp() > newest_complete  # nothing held is asked again
        assert call["StartTime"] > min(gauge_starts_1)
    # The values held still answer (the newest datapoint inside the window).
    p95_second = {r.region: r.p95_ms for r in second.records if isinstance(r, RegionTraffic)}
    assert p95_second == pytest.approx(p95_first)


def test_describes_are_read_again_after_a_run_touched_them(cloud: tuple[AwsCloud, Endpoints],
                                                           fleet: Fleet) -> None:
    _, endpoints = cloud
    clock = Tick(_next_minute())
    source = AwsSource.from_endpoints(fleet, endpoints, metrics_cadence_s=60, describe_cadence_s=300,
                                      clock=clock)
    before = {r.name: r for r in source.read().records if isinstance(r, NodeGroupState)}
    group = next(iter(before.values()))
    s = endpoints.settings
    asg = boto3.Session(aws_access_key_id=s["aws_access_key_id"],
                        aws_secret_access_key=s["aws_secret_access_key"],
                        aws_session_token=s["aws_session_token"]).client(
        "autoscaling", region_name=str(group.extra["aws_region"]), endpoint_url=endpoints.urls["aws"])
    new_max = group.max + 3
    asg.update_auto_scaling_group(AutoScalingGroupName=group.name, MaxSize=new_max)
    clock.t += 5
    cached = {r.name: r for r in source.read().records if isinstance(r, NodeGroupState)}
    assert cached[group.name].max == group.max  # within the cadence: not asked
    source.touch()  # what the wiring does when a run ends
    after = {r.name: r for r in source.read().records if isinstance(r, NodeGroupState)}
    assert after[group.name].max == new_max
    asg.update_auto_scaling_group(AutoScalingGroupName=group.name, MaxSize=group.max)


@pytest.mark.slow
def test_a_restarted_local_cloud_on_new_ports_goes_stale_then_recovers(fleet: Fleet) -> None:
    first = AwsCloud(fleet)
    current = {"aws": first.start()}
    first.publish(World(fleet, seed=42, start=START))
    # Generous bounds: a cold first read of ten regions takes over 3 s on a loaded 2-core machine.
    source = AwsSource.from_endpoints(fleet, current["aws"], timeout_s=15.0, metrics_cadence_s=0,
                                      resolve_endpoints=lambda: current["aws"])
    second: AwsCloud | None = None
    try:
        # Without a metrics cadence the source's cadence is the refresh interval, and data older than
        # twice it is stale: a loaded machine's 4 s cold read would be stale on arrival at the default
        # 2 s. This test is about the restart, so the interval leaves room for slow reads.
        with FleetService([source], deadline_s=20.0, refresh_s=15.0) as service:
            snap, _ = service.refresh()
            assert snap.sources[0].status is SourceStatus.OK, snap.sources[0]
            first.stop()
            snap, _ = service.refresh()
            assert snap.sources[0].status is SourceStatus.STALE, snap.sources[0]
            second = AwsCloud(fleet)
            current["aws"] = second.start()
            assert current["aws"].urls["aws"] != source._endpoints["*"]
            second.publish(World(fleet, seed=42, start=START))
            snap, _ = service.refresh()  # no restart of anything: the source re-resolves by itself
            assert snap.sources[0].status is SourceStatus.OK, snap.sources[0]
            assert source._endpoints["*"] == current["aws"].urls["aws"]
    finally:
        first.stop()
        if second is not None:
            second.stop()


@pytest.mark.parametrize("cloud_name", ["gcp", "azure"])
def test_metrics_sources_hold_their_cadence_by_the_emulators_own_count(fleet: Fleet, cloud_name: str) -> None:
    from opsconsole.providers.azure import AzureSource  # noqa: PLC0415
    from opsconsole.providers.gcp import GcpSource  # noqa: PLC0415
    from opsconsole.sandbox.azure_monitor import AzureMonitorEmulator  # noqa: PLC0415
    from opsconsole.sandbox.gcp_monitoring import GcpMonitoringEmulator  # noqa: PLC0415

    emulator: Any = GcpMonitoringEmulator(fleet) if cloud_name == "gcp" else AzureMonitorEmulator(fleet)
    endpoints = emulator.start()
    try:
        emulator.publish(World(fleet, seed=42, start=START))
        clock = Tick(_next_minute())
        kind: Any = GcpSource if cloud_name == "gcp" else AzureSource
        source = kind.from_endpoints(fleet, endpoints, metrics_cadence_s=60, clock=clock)
        METER.reset()
        first = source.read()
        assert first.complete, first.problems
        served, counted = emulator.calls, METER.total(cloud_name)
        assert served > 0 and counted > 0
        for _ in range(10):
            clock.t += 2
            assert source.read().records == first.records
        assert (emulator.calls, METER.total(cloud_name)) == (served, counted)
        clock.t += 60  # the next period: one more batch
        assert source.read().complete
        assert emulator.calls == 2 * served and METER.total(cloud_name) >= 2 * counted - 1
        source.touch()  # a run ended: asked at once
        source.read()
        assert emulator.calls == 3 * served
    finally:
        emulator.stop()


def test_cloud_monitoring_asks_only_after_the_points_it_holds(fleet: Fleet,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from opsconsole.providers.gcp import GcpSource  # noqa: PLC0415
    from opsconsole.sandbox.gcp_monitoring import GcpMonitoringEmulator  # noqa: PLC0415

    emulator = GcpMonitoringEmulator(fleet)
    endpoints = emulator.start()
    try:
        emulator.publish(World(fleet, seed=42, start=START))
        source = GcpSource.from_endpoints(fleet, endpoints)  # cadence 0: every read polls
        starts: list[tuple[Any, float, float]] = []
        real_list = source._list

        def recording(query: Any, start_s: float, now: float, deadline: float) -> Any:
            starts.append((query, start_s, now))
            return real_list(query, start_s, now, deadline)

        monkeypatch.setattr(source, "_list", recording)
        first = source.read()
        assert first.complete, first.problems
        held_ends = {q: max(end for end, _ in series.values())
                     for q, series in source._held.items() if series}
        assert held_ends, "no 5-minute query kept its points"
        starts.clear()
        second = source.read()
        assert second.complete, second.problems
        for query, start_s, now in starts:
            if query in held_ends:
                assert start_s >= held_ends[query] > now - query.window_s  # only what is not held
            else:
                assert start_s == pytest.approx(now - query.window_s)  # a whole-window query (restarts)
        by_key = {r.key: r for r in second.records}
        for record in first.records:  # the same figures, from held + new points
            assert type(by_key[record.key]) is type(record)
    finally:
        emulator.stop()
