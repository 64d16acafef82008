"""How many calls the fleet's sources make to the clouds, and what looking costs.

Every adapter that talks to a cloud SDK (CloudWatch, Cloud Monitoring, Azure Monitor, the Kubernetes API)
reports each call here, so the cost of *looking* at the fleet is known: the server exports the counts as
Prometheus counters, ``opsconsole fleet sources`` prints them in words, and
:func:`estimate_monthly_cost` turns them into dollars from the operator's list prices
(``inventory/prices.yml``).

Usage, in an adapter::

    from opsconsole.core.fleet.metering import METER

    METER.count("aws", "GetMetricData", units=len(queries))          # one call, N metrics requested
    METER.count("aws", "GetMetricData", error=True, throttled=True)  # a throttled call

The meter is process-wide and thread-safe (sources are read from the engine's worker threads). It is pure
core: no SDK, no I/O. ``METER.reset()`` is for tests and benchmarks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "METER",
    "SECONDS_PER_MONTH",
    "CallCount",
    "CallMeter",
    "CostEstimate",
    "Price",
    "estimate_monthly_cost",
    "parse_prices",
]

#: A month of 30 days, as the clouds' price lists count it.
SECONDS_PER_MONTH = 30 * 24 * 3600


@dataclass(frozen=True)
class CallCount:
    """The calls one source made for one operation since the meter was (re)set."""

    source: str
    operation: str
    calls: int
    units: int
    errors: int
    throttles: int
    first_at: float
    last_at: float


@dataclass
class _Cell:
    calls: int = 0
    units: int = 0
    errors: int = 0
    throttles: int = 0
    first_at: float = 0.0
    last_at: float = 0.0


class CallMeter:
    """A thread-safe tally of calls per (source, operation).

    ``clock`` gives wall seconds (``time.time`` by default); benchmarks pass a simulated clock.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._lock = threading.Lock()
        self._cells: dict[tuple[str, str], _Cell] = {}
        self._clock: Callable[[], float] = clock or time.time
        self._since = self._clock()

    def set_clock(self, clock: Callable[[], float] | None) -> None:
        """Use another time source (a benchmark's simulated clock); ``None`` = the wall clock."""
        with self._lock:
            self._clock = clock or time.time

    def count(
        self,
        source: str,
        operation: str,
        *,
        units: int = 1,
        error: bool = False,
        throttled: bool = False,
    ) -> None:
        """Record one call of ``operation`` by ``source`` carrying ``units`` billable units."""
        with self._lock:
            now = self._clock()
            cell = self._cells.get((source, operation))
            if cell is None:
                cell = self._cells[(source, operation)] = _Cell(first_at=now)
            cell.calls += 1
            cell.units += max(0, int(units))
            if error or throttled:
                cell.errors += 1
            if throttled:
                cell.throttles += 1
            cell.last_at = now

    def snapshot(self) -> list[CallCount]:
        """Every (source, operation) counted so far, sorted by source then operation."""
        with self._lock:
            return [
                CallCount(source, op, c.calls, c.units, c.errors, c.throttles, c.first_at, c.last_at)
                for (source, op), c in sorted(self._cells.items())
            ]

    def since(self) -> float:
        """When the meter started counting (construction or the last :meth:`reset`)."""
        with self._lock:
            return self._since

    def total(self, source: str | None = None) -> int:
        """All calls counted, or those of one source."""
        with self._lock:
            return sum(c.calls for (s, _), c in self._cells.items() if source is None or s == source)

    def reset(self) -> None:
        """Forget every count (tests, benchmarks)."""
        with self._lock:
            self._cells.clear()
            self._since = self._clock()


#: The process-wide meter every adapter reports to.
METER = CallMeter()


# -- prices -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    """A list price: ``usd`` per ``per`` units (``unit`` = ``"call"`` or ``"unit"``) of one operation."""

    usd: float
    per: int = 1000
    unit: str = "unit"  # "unit": billed on units (metrics requested); "call": billed per call
    free_per_month: int = 0


@dataclass(frozen=True)
class CostEstimate:
    """What one source's looking costs a month at the observed rate."""

    source: str
    calls_per_hour: float
    units_per_hour: float
    usd_per_month: float
    by_operation: Mapping[str, float] = field(default_factory=dict)


def parse_prices(data: object, *, where: str = "prices.yml") -> dict[str, dict[str, Price]]:
    """Validate the prices document: ``{source: {operation: {usd, per, unit, free_per_month}}}``.

    A ``"*"`` operation is the source's default. Raises ``ValueError`` with the file and key on a mistake
    (the caller turns it into a ``UsageError``).
    """
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping of source -> operation -> price")
    root = data.get("prices", data)
    if not isinstance(root, Mapping):
        raise ValueError(f"{where}: 'prices' must be a mapping of source -> operation -> price")
    out: dict[str, dict[str, Price]] = {}
    for source, ops in root.items():
        if not isinstance(ops, Mapping):
            raise ValueError(f"{where}: prices.{source} must be a mapping of operation -> price")
        out[str(source)] = {
            str(op): _parse_price(spec, f"{where}: prices.{source}.{op}") for op, spec in ops.items()
        }
    return out


def _parse_price(raw: object, key: str) -> Price:
    spec: object = {"usd": raw} if isinstance(raw, int | float) and not isinstance(raw, bool) else raw
    if not isinstance(spec, Mapping):
        raise ValueError(f"{key} must be a mapping with 'usd' (and optional per, unit)")
    unknown = set(spec) - {"usd", "per", "unit", "free_per_month", "note"}
    if unknown:
        raise ValueError(f"{key}: unknown key(s) {sorted(unknown)}")
    usd = spec.get("usd", 0)
    per = spec.get("per", 1000)
    unit = spec.get("unit", "unit")
    free = spec.get("free_per_month", 0)
    if isinstance(usd, bool) or not isinstance(usd, int | float) or usd < 0:
        raise ValueError(f"{key}.usd must be a number >= 0, got {usd!r}")
    if isinstance(per, bool) or not isinstance(per, int) or per < 1:
        raise ValueError(f"{key}.per must be an integer >= 1, got {per!r}")
    if unit not in ("unit", "call"):
        raise ValueError(f"{key}.unit must be 'unit' or 'call', got {unit!r}")
    if isinstance(free, bool) or not isinstance(free, int) or free < 0:
        raise ValueError(f"{key}.free_per_month must be an integer >= 0, got {free!r}")
    return Price(float(usd), per, str(unit), free)


def _price_for(prices: Mapping[str, Mapping[str, Price]], source: str, op: str) -> Price | None:
    table = prices.get(source)
    if table is None:
        return None
    return table.get(op) or table.get("*")


def estimate_monthly_cost(
    counts: Iterable[CallCount],
    prices: Mapping[str, Mapping[str, Price]],
    window_s: float,
) -> dict[str, CostEstimate]:
    """Per source, the calls/hour seen over ``window_s`` seconds and what a month at that rate costs.

    Units (metrics requested) are billed when the price's ``unit`` is ``"unit"``, calls otherwise; a
    source or operation without a price costs 0 but is still counted.
    """
    window = max(float(window_s), 1e-9)
    scale_month = SECONDS_PER_MONTH / window
    scale_hour = 3600.0 / window
    calls: dict[str, float] = {}
    units: dict[str, float] = {}
    usd: dict[str, float] = {}
    by_op: dict[str, dict[str, float]] = {}
    for c in counts:
        calls[c.source] = calls.get(c.source, 0.0) + c.calls
        units[c.source] = units.get(c.source, 0.0) + c.units
        price = _price_for(prices, c.source, c.operation)
        cost = 0.0
        if price is not None:
            billed = (c.units if price.unit == "unit" else c.calls) * scale_month
            billed = max(0.0, billed - price.free_per_month)
            cost = billed / price.per * price.usd
        usd[c.source] = usd.get(c.source, 0.0) + cost
        by_op.setdefault(c.source, {})[c.operation] = by_op.get(c.source, {}).get(c.operation, 0.0) + cost
    return {
        s: CostEstimate(s, calls[s] * scale_hour, units[s] * scale_hour, usd[s], by_op.get(s, {}))
        for s in sorted(calls)
    }
