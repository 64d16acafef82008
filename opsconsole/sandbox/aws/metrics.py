"""The sandbox's CloudWatch metric store: series of points and the statistics CloudWatch computes.

Why this file exists: the emulator publishes the world's figures here (:meth:`MetricStore.put`...), and
the CloudWatch endpoint answers ``GetMetricData``/``GetMetricStatistics`` from it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from opsconsole.sandbox.aws.naming import GAUGE_RESOLUTION_S, HISTORY_S


@dataclass
class _Point:
    ts: float
    values: list[float]
    counts: list[float]


SeriesKey = tuple[str, str, str, tuple[tuple[str, str], ...]]


def series_key(region: str, namespace: str, name: str, dimensions: Mapping[str, str]) -> SeriesKey:
    return region, namespace, name, tuple(sorted(dimensions.items()))


_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")


def compute_stat(points: Iterable[_Point], stat: str) -> float | None:
    """One CloudWatch statistic over value/count pairs; ``None`` when there is no data."""
    pairs = [(v, c) for p in points for v, c in zip(p.values, p.counts, strict=True) if c > 0]
    if not pairs:
        return None
    total = sum(c for _, c in pairs)
    if stat == "SampleCount":
        return total
    if stat == "Sum":
        return sum(v * c for v, c in pairs)
    if stat == "Average":
        return sum(v * c for v, c in pairs) / total
    if stat == "Minimum":
        return min(v for v, _ in pairs)
    if stat == "Maximum":
        return max(v for v, _ in pairs)
    match = _PERCENTILE.match(stat)
    if match is None:
        raise ValueError(f"unsupported statistic {stat!r}")
    # Nearest rank on exact fractions: the smallest value whose cumulative count reaches p·N.
    rank = Fraction(match.group(1)) / 100 * Fraction(total)  # Fraction(float) is exact
    cumulative = Fraction(0)
    for value, count in sorted(pairs):
        cumulative += Fraction(count)
        if cumulative >= rank:
            return value
    return max(v for v, _ in pairs)


class MetricStore:
    """Thread-safe in-memory CloudWatch data: series key → points, pruned to :data:`HISTORY_S`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[SeriesKey, list[_Point]] = {}

    def put_gauge(self, key: SeriesKey, ts: float, values: list[float], counts: list[float]) -> None:
        """Add a point; points of the same series less than a minute older are replaced."""
        with self._lock:
            points = self._series.setdefault(key, [])
            keep = [p for p in points if p.ts <= ts - GAUGE_RESOLUTION_S and p.ts >= ts - HISTORY_S]
            keep.append(_Point(ts, values, counts))
            self._series[key] = keep

    def replace(self, key: SeriesKey, points: list[_Point]) -> None:
        with self._lock:
            self._series[key] = sorted(points, key=lambda p: p.ts)

    def query(
        self, key: SeriesKey, stat: str, start: float, end: float, period: float
    ) -> list[tuple[float, float]]:
        """(bucket start, value) per non-empty bucket of ``period`` s from ``start``, oldest first."""
        if period <= 0:
            raise ValueError("Period must be positive")
        with self._lock:
            points = [p for p in self._series.get(key, ()) if start <= p.ts <= end]
        buckets: dict[int, list[_Point]] = {}
        for p in points:
            buckets.setdefault(min(int((p.ts - start) // period), max(0, int((end - start) // period))),
                               []).append(p)
        out: list[tuple[float, float]] = []
        for idx in sorted(buckets):
            value = compute_stat(buckets[idx], stat)
            if value is not None:
                out.append((start + idx * period, value))
        return out

    def clear(self) -> None:
        with self._lock:
            self._series.clear()
