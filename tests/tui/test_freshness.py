"""Issue 16, defect 2 (console side) and defect 3: stale data is shown as stale, never as a green OK; a
server that stops answering is retried with backoff and said so; ctrl+r refreshes even while a refresh
hangs; the sparkline is the last hour on a time axis; a new critical finding rings the bell."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta

from opsconsole.core.fleet.engine import SourceStatus
from opsconsole.core.fleet.findings import Finding, FindingKind
from opsconsole.core.fleet.model import Severity
from opsconsole.tui import data
from opsconsole.tui.screens.fleet import OverviewScreen
from opsconsole.tui.widgets.cards import RegionCard

from .helpers import notified, refreshed, sim_app, until


class Switch:
    """A gate for the API double: ``down`` makes the fleet call fail as a lost connection does;
    ``hold`` makes the next fleet call hang until released."""

    def __init__(self) -> None:
        self.down = False
        self.hold: threading.Event | None = None

    def __call__(self, operation: str) -> None:
        if operation != "fleet":
            return
        if self.hold is not None:
            hold, self.hold = self.hold, None
            hold.wait(30)
        if self.down:
            raise ConnectionRefusedError("[Errno 111] Connection refused")


def _stale(view: object, source_status: SourceStatus, age: float | None) -> object:
    snapshot = view.snapshot  # type: ignore[attr-defined]
    sources = tuple(
        dataclasses.replace(s, status=source_status, age_s=age, error="timed out") for s in snapshot.sources
    )
    return dataclasses.replace(view, snapshot=dataclasses.replace(snapshot, sources=sources))  # type: ignore[type-var]


async def test_a_card_on_a_stale_source_says_stale_and_is_not_green() -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(200, 50)) as pilot:
        await refreshed(pilot, app)
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen) and app.screen.query(RegionCard))
        card = app.screen.query(RegionCard).first()
        await until(pilot, lambda: card.has_class("-ok"))
        assert app.view is not None
        app.view = _stale(app.view, SourceStatus.STALE, 95.0)  # type: ignore[assignment]
        app.update_screens()
        await pilot.pause()
        assert not card.has_class("-ok") and card.has_class("-stale")
        assert card.border_subtitle == "STALE 2M"
        app.view = _stale(app.view, SourceStatus.ERROR, None)  # type: ignore[assignment]
        app.update_screens()
        await pilot.pause()
        assert card.border_subtitle == "UNKNOWN"


async def test_the_compact_overview_says_stale_too() -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, app)
        assert app.view is not None
        stale = data.region_freshness(_stale(app.view, SourceStatus.STALE, 45.0))  # type: ignore[arg-type]
        assert set(stale.values()) == {"stale 45s"}
        rows = data.region_rows(app.view, app.history, stale)
        assert all(row[2].plain == "STALE 45S" for row in rows.values())  # type: ignore[union-attr]


async def test_a_lost_server_is_retried_with_backoff_said_so_and_ctrl_r_reconnects() -> None:
    switch = Switch()
    app = sim_app(acting_as="alice", gate=switch)
    async with app.run_test(size=(200, 50)) as pilot:
        await refreshed(pilot, app)
        card = app.screen.query(RegionCard).first()
        await until(pilot, lambda: card.has_class("-ok"))
        switch.down = True
        app.action_refresh()
        await until(pilot, lambda: app.refresh_failures == 1)
        assert notified(app, "retrying with backoff")
        assert "RECONNECTING" in app.sub_title
        await until(pilot, lambda: card.has_class("-stale"))  # every card: no data is not good data
        assert not card.has_class("-ok")
        before = app.refreshes
        # The interval's refresh waits for the backoff. (Its first wait is a second; a loaded machine can
        # let that pass before the tick below, so the test holds the next try a minute away.)
        app._next_try_at = time.monotonic() + 60.0
        app._tick()
        await pilot.pause(0.2)
        assert app.refreshes == before and app.refresh_failures == 1
        switch.down = False
        await pilot.press("ctrl+r")  # ...ctrl+r does not
        await until(pilot, lambda: app.refreshes > before)
        assert notified(app, "answers again") and app.refresh_failures == 0
        assert "RECONNECTING" not in app.sub_title
        await until(pilot, lambda: card.has_class("-ok"))


async def test_ctrl_r_refreshes_while_a_refresh_hangs() -> None:
    switch = Switch()
    app = sim_app(acting_as="alice", gate=switch)
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        release = threading.Event()
        switch.hold = release
        app.action_refresh()  # hangs in the gate
        await until(pilot, lambda: app._refreshing and switch.hold is None)
        before = app.refreshes
        app.action_refresh()  # an ordinary refresh waits for the hanging one
        await pilot.press("ctrl+r")
        await until(pilot, lambda: app.refreshes > before)
        release.set()
        await pilot.pause(0.3)
        assert app.refreshes == before + 1  # the superseded answer is dropped


def test_the_sparkline_is_the_last_hour_on_a_time_axis() -> None:
    history = data.RegionHistory()
    start = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)

    def point(minutes: float, p95: float) -> None:
        series = history.points.setdefault("r", deque())
        series.append((start + timedelta(minutes=minutes), p95, 1.0))
        history.latest = start + timedelta(minutes=minutes)

    point(0, 100.0)
    one = history.buckets("r", 12)
    assert one[-1] == 100.0 and one[:-1] == [None] * 11  # one point at start-up: one bar, at "now"
    point(5, 400.0)  # a spike
    for minute in range(6, 16):
        point(minute, 100.0)
    spark = data.spark_cells(history.buckets("r", 12), 200.0)
    assert spark.plain[-2] == "█"  # the spike, two 5-minute slices back from the right edge
    assert spark.plain[-1] != "█"
    point(75, 100.0)  # an hour later the spike has left the chart
    assert 400.0 not in history.buckets("r", 12)
    chart = data.chart_text(history.buckets("r", 60), height=5, unit="ms", target=200.0).plain
    assert "-60m" in chart and "now" in chart and "ms" in chart


async def test_a_new_critical_finding_rings_the_bell_once() -> None:
    app = sim_app(acting_as="alice")
    rings: list[int] = []
    async with app.run_test(size=(120, 40)) as pilot:
        app.bell = lambda: rings.append(1)  # type: ignore[method-assign]
        await refreshed(pilot, app)
        await refreshed(pilot, app)
        assert app.view is not None
        critical = Finding(
            id="replica_lag:database/eu-west-1",
            kind=FindingKind.REPLICA_LAG,
            severity=Severity.CRITICAL,
            region="eu-west-1",
            object="database/eu-west-1",
            title="replica lag 400 s in eu-west-1",
            measured=400.0,
            target=300.0,
            evidence={},
            suggested_action=None,
        )
        view = dataclasses.replace(app.view, findings=(critical,))
        app._notify_critical(view)
        app._notify_critical(view)  # the same finding again: no second bell
        await pilot.pause()
        assert rings == [1] and notified(app, "replica lag 400 s")
