"""A progressive local cloud: the first emulators at once, the others on the first demand for one (and a
one-shot command's: nothing at once, nothing synced, until then).

Stand-in emulators (no sockets) in front of the real world store under tmp_path.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from opsconsole import wiring
from opsconsole.core.errors import SandboxError
from opsconsole.core.fleet.model import Fleet
from opsconsole.sandbox.emulator import Endpoints
from opsconsole.sandbox.localcloud import LocalCloud, PendingEndpoints, started_now
from opsconsole.sandbox.world import World

WAIT_S = 30.0


class _Emulator:
    def __init__(self, name: str, gate: threading.Event | None = None) -> None:
        self.name = name
        self.gate = gate
        self.published = 0
        self.stopped = False

    def start(self) -> Endpoints:
        if self.gate is not None:
            assert self.gate.wait(WAIT_S)
        return Endpoints(urls={self.name: f"http://127.0.0.1/{self.name}"})

    def collect(self, world: World) -> None:
        pass

    def publish(self, world: World) -> None:
        self.published += 1

    def stop(self) -> None:
        self.stopped = True


def test_the_later_emulators_start_on_demand_and_are_synced(seed_fleet: Fleet, tmp_path: Path) -> None:
    gate = threading.Event()
    built: list[str] = []
    later = _Emulator("aws", gate)

    def make_later() -> list[_Emulator]:
        built.append("later")
        return [_Emulator("k8s"), later]  # a second k8s is dropped: that one started first

    cloud = LocalCloud(wiring.world_store(seed_fleet, home=tmp_path), [_Emulator("k8s")],  # type: ignore[list-item]
                       later=make_later)  # type: ignore[arg-type]
    try:
        cloud.start()
        endpoints = PendingEndpoints(cloud)
        assert started_now(endpoints, "k8s") and not started_now(endpoints, "aws")
        assert built == []  # nothing built before someone asks
        got: list[Endpoints] = []
        asker = threading.Thread(target=lambda: got.append(endpoints["aws"]), daemon=True)
        asker.start()
        asker.join(0.1)
        assert not got  # still starting: the demand waits
        gate.set()
        asker.join(WAIT_S)
        assert got and got[0].urls == {"aws": "http://127.0.0.1/aws"}
        assert later.published >= 1  # synced before anyone learnt where it listens
        assert [e.name for e in cloud.emulators] == ["k8s", "aws"]
        assert built == ["later"]
    finally:
        gate.set()
        cloud.stop()
    assert later.stopped


def test_a_later_emulator_that_fails_is_an_error_naming_why(seed_fleet: Fleet, tmp_path: Path) -> None:
    def broken() -> list[_Emulator]:
        raise SandboxError("moto would not import")

    cloud = LocalCloud(wiring.world_store(seed_fleet, home=tmp_path), [_Emulator("k8s")],  # type: ignore[list-item]
                       later=broken)
    try:
        cloud.start()
        with pytest.raises(SandboxError, match="moto would not import"):
            cloud.endpoint("aws", timeout_s=WAIT_S)
        with pytest.raises(KeyError):
            PendingEndpoints(cloud)["aws"]
        assert cloud.endpoint("k8s").urls == {"k8s": "http://127.0.0.1/k8s"}
    finally:
        cloud.stop()


def test_a_local_cloud_with_nothing_first_touches_nothing_until_an_endpoint_is_asked(
    seed_fleet: Fleet, tmp_path: Path
) -> None:
    store = wiring.world_store(seed_fleet, home=tmp_path)
    emulator = _Emulator("k8s")
    cloud = LocalCloud(store, [], later=lambda: [emulator], sync_s=0.05)  # type: ignore[list-item,return-value]
    try:
        cloud.start()
        cloud.start_driver()
        # Nothing started, nothing synced, the world not even written: a `jobs list` costs nothing here.
        assert cloud.last_sync_s is None and not store.path.exists()
        assert PendingEndpoints(cloud)["k8s"].urls == {"k8s": "http://127.0.0.1/k8s"}
        # Now the driver keeps it in step, as it would have from the start.
        deadline = time.monotonic() + WAIT_S
        while emulator.published < 3:
            assert time.monotonic() < deadline, "the driver never synced the emulator started later"
            time.sleep(0.01)
        assert store.path.exists()
    finally:
        cloud.stop()
