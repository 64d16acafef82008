"""Issue 16, the finishing pieces: a source whose first read is still running shows as "starting" (not
OK, not FAILED); a refused Kubernetes source shows ``?`` for pods and nodes, not ``0/0``; ``:pods`` and
the node → pods direction open the pods screen; the region screen's footer offers ``p pods``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from opsconsole.core.errors import SourceError
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.engine import SourceReading
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import ClusterState, WorkloadState
from opsconsole.testing import FakeClock, healthy_records
from opsconsole.tui.screens.fleet import OverviewScreen
from opsconsole.tui.widgets.cards import RegionCard

from .helpers import REPO, core_app, notified, refreshed, screen_text, until


class StaticSource:
    def __init__(self, name: str, records: list[object]) -> None:
        self.name = name
        self.records = records

    def read(self) -> SourceReading:
        return SourceReading(tuple(self.records))  # type: ignore[arg-type]


class SlowSource:
    """A source whose first read does not answer until ``release`` is set (a cold SDK, a starting
    emulator)."""

    name = "aws"

    def __init__(self) -> None:
        self.release = threading.Event()

    def read(self) -> SourceReading:
        self.release.wait(30)
        return SourceReading(())


async def test_a_source_still_on_its_first_read_shows_starting_not_ok_nor_failed() -> None:
    fleet = load_inventory(REPO / "inventory")
    slow = SlowSource()

    @contextmanager
    def factory() -> Iterator[OpsCore]:
        sources = [StaticSource("test", list(healthy_records(fleet))), slow]
        with OpsCore(fleet, sources, clock=FakeClock(), sandbox=True, deadline_s=0.3) as core:  # type: ignore[list-item]
            yield core

    app = core_app(factory)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await refreshed(pilot, app)
            await pilot.pause(0.2)
            text = screen_text(app)
            assert "aws starting" in text
            assert "aws FAILED" not in text and "aws STALE" not in text
            assert not notified(app, "aws")  # no "source failed" toast for a read still under way
            slow.release.set()
            await refreshed(pilot, app)
            await refreshed(pilot, app)  # the late answer is adopted at the next refresh
            await pilot.pause(0.2)
            assert "aws starting" not in screen_text(app)
    finally:
        slow.release.set()


class RefusedKubernetes:
    name = "k8s"

    def read(self) -> SourceReading:
        raise SourceError("connection refused", title="k8s unreachable")


async def test_a_refused_kubernetes_source_shows_unknown_pods_and_nodes_not_zero() -> None:
    fleet = load_inventory(REPO / "inventory")
    # Everything but what Kubernetes reports (workloads and clusters), and Kubernetes refusing.
    others = [r for r in healthy_records(fleet) if not isinstance(r, (WorkloadState, ClusterState))]

    @contextmanager
    def factory() -> Iterator[OpsCore]:
        sources = [StaticSource("test", others), RefusedKubernetes()]
        with OpsCore(fleet, sources, clock=FakeClock(), sandbox=True) as core:  # type: ignore[list-item]
            yield core

    app = core_app(factory)
    async with app.run_test(size=(160, 48)) as pilot:
        await refreshed(pilot, app)
        await pilot.pause(0.2)
        assert isinstance(app.screen, OverviewScreen)
        cards = list(app.screen.query(RegionCard))
        assert cards
        text = screen_text(app)
        assert "pods ?" in text and "nodes ?" in text
        assert "pods 0/0" not in text and "nodes 0/0" not in text
        await pilot.press("c")  # the compact overview: one line per region, the same "?"
        await until(pilot, lambda: "0/0" not in screen_text(app) and "?" in screen_text(app))
