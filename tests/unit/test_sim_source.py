"""Tests of the persisted sandbox world (WorldStore) and of the in-process ``sim`` fleet source."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from opsconsole.core.errors import SandboxError, UsageError
from opsconsole.core.fleet.engine import FleetService, FleetSource, SourceReading, SourceStatus
from opsconsole.core.fleet.model import ClusterState, Fleet, RegionTraffic, WorkloadState
from opsconsole.providers.sim import SimSource
from opsconsole.sandbox.state import WorldStore
from opsconsole.sandbox.world import World
from opsconsole.testing import DEFAULT_NOW, FakeClock


def test_a_new_world_starts_at_the_wall_clock(tmp_path: Path, seed_fleet: Fleet) -> None:
    clock = FakeClock()
    store = WorldStore(tmp_path, seed_fleet, clock)
    assert not store.exists
    with store.open() as world:
        assert world.now == DEFAULT_NOW
        assert world.seed == 42
    assert store.exists
    assert (tmp_path / "sandbox" / "world.json").is_file()
    assert (tmp_path / "sandbox" / "world.lock").exists()
    data = json.loads((tmp_path / "sandbox" / "world.json").read_text())
    assert data["format"] == "opsconsole-sandbox-world"
    assert not list((tmp_path / "sandbox").glob("*.tmp"))


def test_sim_time_follows_the_wall_clock_times_speed(tmp_path: Path, seed_fleet: Fleet) -> None:
    clock = FakeClock()
    store = WorldStore(tmp_path, seed_fleet, clock, speed=60.0)
    with store.open() as world:
        assert world.now == DEFAULT_NOW
    clock.advance(30)
    with store.open() as world:
        assert world.now == DEFAULT_NOW + timedelta(minutes=30)
    # Another speed re-anchors: no jump, then the new speed applies.
    clock.advance(10)
    slow = WorldStore(tmp_path, seed_fleet, clock, speed=1.0)
    with slow.open() as world:
        assert world.now == DEFAULT_NOW + timedelta(minutes=40)
    clock.advance(10)
    with slow.open() as world:
        assert world.now == DEFAULT_NOW + timedelta(minutes=40, seconds=10)


def test_changes_persist_and_the_world_moves_on(tmp_path: Path, seed_fleet: Fleet) -> None:
    clock = FakeClock()
    store = WorldStore(tmp_path, seed_fleet, clock, speed=10.0)
    with store.open() as world:
        inc = world.trigger_incident("traffic_spike", "eu-west-1")
        world.set_environment_stopped("dev", True)
    clock.advance(12)  # two sim minutes
    records = store.read()
    eu = next(r for r in records if isinstance(r, RegionTraffic) and r.region == "eu-west-1")
    assert eu.p95_ms > 200
    assert inc.id in eu.extra["incidents"]
    dev = [r for r in records if isinstance(r, ClusterState) and r.environment.value == "dev"]
    assert dev and all(r.nodes == 0 for r in dev)
    assert all(r.observed_at == DEFAULT_NOW + timedelta(minutes=2) for r in records)


def test_the_stored_world_equals_an_in_memory_one(tmp_path: Path, seed_fleet: Fleet) -> None:
    clock = FakeClock()
    store = WorldStore(tmp_path, seed_fleet, clock, seed=5, speed=30.0)
    twin = World(seed_fleet, seed=5, start=DEFAULT_NOW)
    with store.open() as world:
        world.trigger_incident("region_outage", "ca-central-1")
    twin.trigger_incident("region_outage", "ca-central-1")
    for _ in range(4):
        clock.advance(7)
        store.read()
    twin.advance(DEFAULT_NOW + timedelta(seconds=4 * 7 * 30))
    assert store.read() == twin.observe()


def test_an_exception_inside_the_block_saves_nothing(tmp_path: Path, seed_fleet: Fleet) -> None:
    clock = FakeClock()
    store = WorldStore(tmp_path, seed_fleet, clock)
    store.read()
    with pytest.raises(RuntimeError), store.open() as world:
        world.trigger_incident("region_outage", "us-east-1")
        raise RuntimeError("boom")
    with store.open() as world:
        assert world.incidents() == []


def test_usage_errors_inside_the_block_propagate(tmp_path: Path, seed_fleet: Fleet) -> None:
    store = WorldStore(tmp_path, seed_fleet, FakeClock())
    with pytest.raises(UsageError, match="valid kinds"), store.open() as world:
        world.trigger_incident("asteroid", "us-east-1")


def test_reset_forgets_the_world(tmp_path: Path, seed_fleet: Fleet) -> None:
    clock = FakeClock()
    store = WorldStore(tmp_path, seed_fleet, clock)
    with store.open() as world:
        world.set_cache_nodes("us-east-1", 9)
    assert store.reset() is True
    assert not store.exists
    assert store.reset() is False
    clock.advance(100)
    with store.open() as world:
        assert world.now == DEFAULT_NOW + timedelta(seconds=100)  # a fresh world, started now
        assert (
            world.to_dict()["regions"]["us-east-1"]["cache_nodes"]
            == seed_fleet.regions["us-east-1"].cache.nodes
        )


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"format": "something-else"}',
        '{"format": "opsconsole-sandbox-world", "world": {}}',
    ],
)
def test_a_corrupt_world_file_asks_for_a_reset(tmp_path: Path, seed_fleet: Fleet, content: str) -> None:
    store = WorldStore(tmp_path, seed_fleet, FakeClock())
    store.directory.mkdir(parents=True)
    store.path.write_text(content)
    with pytest.raises(SandboxError, match="opsconsole sandbox reset"):
        store.read()
    assert store.path.read_text() == content  # never silently discarded


def test_a_world_of_another_fleet_asks_for_a_reset(tmp_path: Path, seed_fleet: Fleet) -> None:
    clock = FakeClock()
    WorldStore(tmp_path, seed_fleet, clock).read()
    regions = dict(seed_fleet.regions)
    del regions["sa-east-1"]
    clusters = {k: c for k, c in seed_fleet.clusters.items() if c.region != "sa-east-1"}
    smaller = Fleet(
        source=seed_fleet.source,
        regions=regions,
        clusters=clusters,
        services=seed_fleet.services,
        targets=seed_fleet.targets,
        bounds=seed_fleet.bounds,
        provider_plan=seed_fleet.provider_plan,
        provider_plan_overall=seed_fleet.provider_plan_overall,
        cdn_split=seed_fleet.cdn_split,
    )
    with pytest.raises(SandboxError, match=r"different fleet.*opsconsole sandbox reset"):
        WorldStore(tmp_path, smaller, clock).read()


def test_the_lock_is_exclusive(tmp_path: Path, seed_fleet: Fleet) -> None:
    clock = FakeClock()
    store = WorldStore(tmp_path, seed_fleet, clock)
    other = WorldStore(tmp_path, seed_fleet, clock, lock_timeout_s=0.05)
    with store.open(), pytest.raises(SandboxError, match="busy"):
        other.read()
    assert other.read()  # free again


def test_a_wall_clock_going_back_does_not_move_sim_time_back(tmp_path: Path, seed_fleet: Fleet) -> None:
    clock = FakeClock()
    store = WorldStore(tmp_path, seed_fleet, clock)
    clock.advance(600)
    store.read()
    clock.set(DEFAULT_NOW)
    with store.open() as world:
        assert world.now == DEFAULT_NOW + timedelta(seconds=600)
    clock.set(DEFAULT_NOW + timedelta(seconds=660))
    with store.open() as world:
        assert world.now == DEFAULT_NOW + timedelta(seconds=660)


def test_bad_speed_is_a_usage_error(tmp_path: Path, seed_fleet: Fleet) -> None:
    with pytest.raises(UsageError, match="speed"):
        WorldStore(tmp_path, seed_fleet, FakeClock(), speed=0)


# --------------------------------------------------------------------------------------------------
# SimSource
# --------------------------------------------------------------------------------------------------


def test_sim_source_reads_the_stored_world(tmp_path: Path, seed_fleet: Fleet) -> None:
    clock = FakeClock()
    source = SimSource(WorldStore(tmp_path, seed_fleet, clock))
    as_protocol: FleetSource = source
    assert as_protocol.name == "sim"
    reading = source.read()
    assert isinstance(reading, SourceReading) and reading.complete
    assert isinstance(reading.records, tuple)
    assert all(r.source == "sim" and r.observed_at == DEFAULT_NOW for r in reading.records)
    assert len([r for r in reading.records if isinstance(r, RegionTraffic)]) == len(seed_fleet.regions)
    assert len([r for r in reading.records if isinstance(r, ClusterState)]) == len(seed_fleet.clusters)
    assert any(isinstance(r, WorkloadState) for r in reading.records)


def test_sim_source_over_an_in_memory_world(seed_fleet: Fleet) -> None:
    world = World(seed_fleet, seed=1, start=DEFAULT_NOW)
    source = SimSource(world.observe, name="sim-test")
    assert source.name == "sim-test"
    assert source.read().records == tuple(world.observe())


def test_sim_source_errors_carry_the_reset_hint(tmp_path: Path, seed_fleet: Fleet) -> None:
    store = WorldStore(tmp_path, seed_fleet, FakeClock())
    store.directory.mkdir(parents=True)
    store.path.write_text("garbage")
    with pytest.raises(SandboxError, match="opsconsole sandbox reset"):
        SimSource(store).read()


def test_sim_source_feeds_the_fleet_service(tmp_path: Path, seed_fleet: Fleet) -> None:
    clock = FakeClock()
    with FleetService(
        [SimSource(WorldStore(tmp_path, seed_fleet, clock))], deadline_s=10.0, clock=clock
    ) as service:
        snap, _changes = service.refresh()
    health = snap.source("sim")
    assert health is not None and health.status is SourceStatus.OK
    assert len(snap.of_type(RegionTraffic)) == len(seed_fleet.regions)
