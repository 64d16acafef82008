"""A source still starting (``startup_s``) does not hold the first snapshot back, and says so.

The local cloud's AWS, GCP and Azure emulators take seconds to start; the console must show the
Kubernetes data at once and those sources as "starting" (not OK, not failed) until their first read
ends, then take it in as soon as it does (the service tells its ``on_change`` listeners).
"""

from __future__ import annotations

import threading

from opsconsole.core.errors import SourceError
from opsconsole.core.fleet.engine import FleetService, SourceReading, SourceStatus
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import FleetRecord
from opsconsole.testing import healthy_records

WAIT_S = 30.0  # generous: a loaded 2-core machine


class Fast:
    name = "fast"

    def read(self) -> SourceReading:
        return SourceReading((_record("fast", "a"),))


class Blocking:
    """Blocks its reads until released; a starting source when ``startup_s`` is set."""

    name = "slow"

    def __init__(self, startup_s: float | None = None, fail: bool = False) -> None:
        if startup_s is not None:
            self.startup_s = startup_s
        self.release = threading.Event()
        self.fail = fail
        self.reads = 0

    def read(self) -> SourceReading:
        self.reads += 1
        assert self.release.wait(WAIT_S), "never released"
        if self.fail:
            raise SourceError("the emulator did not start")
        return SourceReading((_record("slow", "b"),))


def _record(source: str, key: str) -> FleetRecord:
    """One record of the seed fleet, stamped with ``source`` (``a``: the first, ``b``: the second)."""
    return healthy_records(load_inventory(None), source=source)[0 if key == "a" else 1]


def _refresh_in_thread(service: FleetService) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(service.refresh()), daemon=True)
    thread.start()
    return thread, out


def test_first_snapshot_comes_without_a_starting_source_marked_starting() -> None:
    slow = Blocking(startup_s=WAIT_S * 2)
    told = threading.Event()
    # A deadline far longer than the test's wait: a refresh that waited for the slow source would hang.
    with FleetService([Fast(), slow], deadline_s=WAIT_S * 2) as service:
        service.on_change(lambda name: told.set() if name == "slow" else None)
        thread, out = _refresh_in_thread(service)
        thread.join(WAIT_S)
        assert out, "the first refresh waited for the starting source"
        snapshot, _ = out[0]  # type: ignore[misc]
        health = {h.name: h for h in snapshot.sources}
        assert health["fast"].status is SourceStatus.OK
        assert health["slow"].status is SourceStatus.STARTING
        assert health["slow"].age_s is None and health["slow"].last_success is None
        assert snapshot.partial  # a starting source is not OK
        assert {r.source for r in snapshot.records.values()} == {"fast"}
        assert not told.is_set()

        # Still starting on the next refresh, with no second read piled on the first.
        snapshot, changes = service.refresh()
        assert snapshot.source("slow").status is SourceStatus.STARTING
        assert slow.reads == 1

        slow.release.set()
        assert told.wait(WAIT_S), "the end of the first read was not told"
        snapshot, changes = service.refresh()
        assert snapshot.source("slow").status is SourceStatus.OK
        assert "slow" in {r.source for r in snapshot.records.values()}
        assert changes.sources_changed


def test_a_starting_source_whose_first_read_fails_is_an_error_not_starting() -> None:
    slow = Blocking(startup_s=WAIT_S * 2, fail=True)
    told = threading.Event()
    with FleetService([Fast(), slow], deadline_s=WAIT_S * 2) as service:
        service.on_change(lambda name: told.set())
        assert service.refresh()[0].source("slow").status is SourceStatus.STARTING
        slow.release.set()
        assert told.wait(WAIT_S)
        health = service.refresh()[0].source("slow")
        assert health.status is SourceStatus.ERROR
        assert "did not start" in (health.error or "")


def test_a_first_read_running_past_startup_s_is_an_error() -> None:
    slow = Blocking(startup_s=0.05)
    with FleetService([Fast(), slow], deadline_s=0.05) as service:
        first = service.refresh()[0].source("slow")
        # The first refresh may still be inside startup_s; once it is over the source has failed.
        assert first.status in (SourceStatus.STARTING, SourceStatus.ERROR)
        threading.Event().wait(0.1)  # past startup_s (a lower bound, not a timing assert)
        later = service.refresh()[0].source("slow")
        assert later.status is SourceStatus.ERROR
        slow.release.set()


def test_a_source_without_startup_s_is_waited_for_as_before() -> None:
    slow = Blocking()
    slow.release.set()
    with FleetService([Fast(), slow], deadline_s=WAIT_S) as service:
        snapshot, _ = service.refresh()
        assert snapshot.source("slow").status is SourceStatus.OK
        assert not snapshot.partial
