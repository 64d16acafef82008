"""The server's cache does not hold the first view back for a source still starting; a one-shot command
still gets the whole fleet.

A ``progressive`` cache (the console's embedded server) serves the first view at once, the slow source
marked ``starting``, and takes its first answer in as soon as it ends (the engine tells, the cache
refreshes early). A plain cache's :meth:`FleetCache.latest` waits past views with a starting source, as a
one-shot ``opsconsole status`` needs. Real engine, real core, real cache; the slow source blocks until the
test releases it.
"""

from __future__ import annotations

import threading

from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.engine import SourceReading, SourceStatus
from opsconsole.core.fleet.model import Fleet
from opsconsole.server.cache import FleetCache, Hub
from opsconsole.testing import healthy_records

WAIT_S = 30.0  # generous: a loaded 2-core machine


class _Fast:
    name = "k8s"

    def __init__(self, fleet: Fleet) -> None:
        self.records = tuple(r for r in healthy_records(fleet, source="k8s") if "cluster" in r.key)

    def read(self) -> SourceReading:
        return SourceReading(self.records)


class _Starting:
    """A cloud whose emulator is still starting: its reads block until released."""

    name = "aws"
    startup_s = WAIT_S * 4

    def __init__(self, fleet: Fleet) -> None:
        keys = {r.key for r in healthy_records(fleet, source="k8s") if "cluster" in r.key}
        self.records = tuple(r for r in healthy_records(fleet, source="aws") if r.key not in keys)
        self.release = threading.Event()

    def read(self) -> SourceReading:
        assert self.release.wait(WAIT_S * 2), "never released"
        return SourceReading(self.records)


def _cache(fleet: Fleet, *, progressive: bool) -> tuple[FleetCache, _Starting]:
    slow = _Starting(fleet)
    # A deadline far past the test's waits: a refresh that waited for the starting source would hang.
    core = OpsCore(fleet, [_Fast(fleet), slow], deadline_s=WAIT_S * 4)
    cache = FleetCache(core, Hub(), refresh_s=WAIT_S * 4, progressive=progressive)  # no periodic refresh
    return cache, slow


def test_the_first_view_comes_without_the_starting_source_and_its_data_follows(seed_fleet: Fleet) -> None:
    cache, slow = _cache(seed_fleet, progressive=True)
    firsts: list[str] = []
    served: list[str] = []
    cache.on_first_view = lambda view: firsts.append(view.snapshot.source("aws").status.value)  # type: ignore[union-attr]
    cache.on_first_served = lambda view: served.append(view.snapshot.source("aws").status.value)  # type: ignore[union-attr]
    cache.start()
    try:
        view = cache.latest(wait_s=WAIT_S)
        status = {s.name: s.status for s in view.snapshot.sources}
        assert status == {"k8s": SourceStatus.OK, "aws": SourceStatus.STARTING}
        assert view.snapshot.records and {r.source for r in view.snapshot.records.values()} == {"k8s"}
        assert firsts == ["starting"]
        assert served == ["starting"]  # the embedded server starts the slow emulators on this
        titles = [(f.title, f.severity.value) for f in view.findings if f.object == "source/aws"]
        assert titles == [("source aws is starting: its records are not in yet", "low")]

        arrived = threading.Event()
        cache.hub.listen(lambda _e: arrived.set() if _aws_ok(cache) else None)
        slow.release.set()
        # No periodic refresh comes within the test: only the engine's word that the read ended does it.
        assert arrived.wait(WAIT_S), "the starting source's first answer was not taken in"
        view = cache.latest(wait_s=0)
        assert view.snapshot.source("aws").status is SourceStatus.OK  # type: ignore[union-attr]
        assert "aws" in {r.source for r in view.snapshot.records.values()}
        assert cache.early_refreshes >= 1
        assert firsts == ["starting"] and served == ["starting"]  # once
    finally:
        slow.release.set()
        cache.stop()
        cache.core.close()


def _aws_ok(cache: FleetCache) -> bool:
    view = cache.peek()
    health = view.snapshot.source("aws") if view is not None else None
    return health is not None and health.status is SourceStatus.OK


def test_a_plain_cache_waits_past_starting_views_for_a_one_shot_command(seed_fleet: Fleet) -> None:
    cache, slow = _cache(seed_fleet, progressive=False)
    published = threading.Event()
    cache.hub.listen(lambda _e: published.set())
    cache.start()
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(cache.latest(wait_s=WAIT_S * 2)), daemon=True)
    try:
        reader.start()
        assert published.wait(WAIT_S), "no first view"
        assert cache.peek() is not None
        assert cache.peek().snapshot.source("aws").status is SourceStatus.STARTING  # type: ignore[union-attr]
        reader.join(0.2)
        assert not got, "latest() served a view with a source still starting"
        slow.release.set()
        reader.join(WAIT_S)
        assert got
        view = got[0]
        assert view.snapshot.source("aws").status is SourceStatus.OK  # type: ignore[attr-defined]
    finally:
        slow.release.set()
        cache.stop()
        cache.core.close()
