"""The overview's pieces: the global figures against their targets, the sources' freshness badges, and
one card per region. They render what they are given; a card emits nothing itself (the screen reads
which card has focus)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from opsconsole.core.fleet.engine import SourceHealth
from opsconsole.core.fleet.model import Health
from opsconsole.core.fleet.report import RegionSummary, Totals
from opsconsole.styles import SEVERITY_STYLE
from opsconsole.tui.data import RegionHistory, badge, fmt, nodes_cell, pct, pods_cell, spark_cells


def totals_text(t: Totals, worst: str | None) -> Text:
    """Two lines: the global figures, each against its target, red when it misses it."""

    def part(label: str, value: str, bad: bool) -> Text:
        return Text.assemble((f"{label} ", "dim"), (value, "bold red" if bad else "bold"), "  ")

    p95_bad = t.api_p95_ms is not None and t.api_p95_ms > t.api_p95_target_ms
    avail_bad = t.availability is not None and t.availability < t.availability_target
    burn_bad = t.error_budget_burn is not None and t.error_budget_burn > 1
    lag_bad = t.worst_replica_lag_s is not None and t.worst_replica_lag_s > t.rpo_target_s
    line1 = Text.assemble(
        part("avg", f"{fmt(t.global_avg_latency_ms, '.0f')}ms", False),
        part("p95", f"{fmt(t.api_p95_ms, '.0f')}/{t.api_p95_target_ms:.0f}ms", p95_bad),
        part("avail", f"{pct(t.availability, 3)}/{pct(t.availability_target, 2)}", avail_bad),
        part(
            "budget left",
            "—" if t.error_budget_burn is None else pct(max(0.0, 1 - t.error_budget_burn)),
            burn_bad,
        ),
    )
    line2 = Text.assemble(
        part("rps", f"{t.rps / 1000:.1f}k/{t.api_rps_target / 1000:.0f}k", t.rps > t.api_rps_target),
        part("users", f"{t.concurrent_users / 1e6:.2f}M/{t.concurrent_users_target / 1e6:.0f}M", False),
        part("worst RPO lag", f"{fmt(t.worst_replica_lag_s, '.1f')}s/{t.rpo_target_s:.0f}s", lag_bad),
        part("worst", worst or "—", worst is not None),
        ("PARTIAL DATA" if t.partial else "", "bold yellow"),
    )
    return Text("\n").join([line1, line2])


def sources_text(sources: tuple[SourceHealth, ...]) -> Text:
    return Text.assemble(("sources ", "dim"), *[Text.assemble(badge(s), " ") for s in sources])


def card_text(s: RegionSummary, target_p95: float) -> Text:
    """Six short lines (a card is 20 columns wide at 120×40)."""
    mix = " ".join(f"{'az' if c == 'azure' else c}{v * 100:.0f}" for c, v in s.cloud_mix.items())
    p95_bad = s.p95_ms is not None and s.p95_ms > target_p95
    lag_bad = s.replica_lag_s is not None and s.replica_lag_s > 300
    findings = Text(
        f"{s.findings} finding{'s' if s.findings != 1 else ''}",
        style=SEVERITY_STYLE[s.worst_severity] if s.worst_severity else "dim",
    )
    if s.worst_severity:
        findings.append(f" {s.worst_severity.value}", style=SEVERITY_STYLE[s.worst_severity])
    return Text("\n").join(
        [
            Text(mix, style="dim"),
            Text.assemble(
                ("p95 ", "dim"),
                (f"{fmt(s.p95_ms, '.0f')}", "bold red" if p95_bad else "bold"),
                f"/{target_p95:.0f}ms",
            ),
            Text.assemble(
                ("av ", "dim"),
                pct(s.availability, 3),
                (" lag ", "dim"),
                (f"{fmt(s.replica_lag_s, '.1f')}s", "bold red" if lag_bad else ""),
            ),
            Text.assemble(("pods ", "dim"), pods_cell(s, short_style="bold yellow")),
            Text.assemble(("nodes ", "dim"), nodes_cell(s)),
            findings,
        ]
    )


class RegionCard(Vertical, can_focus=True):
    """One region: health colour on the border, figures, and a p95 sparkline over the last hour (one
    block per time slice, now at the right; a dot where no data came)."""

    def __init__(self, region: str) -> None:
        super().__init__(id=f"card-{region}", classes="card")
        self.region_id = region
        self.border_title = region

    _pending: tuple[RegionSummary, float, RegionHistory, str | None] | None = None

    def compose(self) -> ComposeResult:
        yield Static(classes="card-body")
        yield Static(classes="card-spark")

    def on_mount(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.call_after_refresh(self.show, *pending)

    def show(
        self,
        summary: RegionSummary,
        target_p95: float,
        history: RegionHistory,
        stale: str | None = None,
    ) -> None:
        """Show ``summary``; with ``stale`` ("stale 45s" / "unknown") the card says so instead of its
        health, and is never green: old data must not look like good news."""
        if not self.query(".card-body"):  # not composed yet (a refresh right after mounting): shown then
            self._pending = (summary, target_p95, history, stale)
            return
        for health in Health:
            self.set_class(stale is None and summary.health is health, f"-{health.value}")
        self.set_class(stale is not None, "-stale")
        self.border_title = f"{summary.id} T{summary.tier}"
        self.border_subtitle = stale.upper() if stale is not None else summary.health.value.upper()
        self.query_one(".card-body", Static).update(card_text(summary, target_p95))
        width = max(1, self.content_region.width - 1) if self.content_region.width else 18
        spark = spark_cells(history.buckets(summary.id, width), target_p95)
        self.query_one(".card-spark", Static).update(spark)
