"""``GET /api/v1/fleet/sources``, the Prometheus counters of the sources' API calls on ``/metrics``, and
``opsconsole fleet sources`` in words, over a real server."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsconsole.cli import app
from opsconsole.core.fleet.metering import METER
from tests.server.conftest import Served


def test_sources_route_gives_cadence_age_calls_and_cost(server: Served) -> None:
    METER.reset()
    for _ in range(21):
        METER.count("aws", "GetMetricData", units=6)
    METER.count("aws", "DescribeDBInstances", error=True, throttled=True)
    with server.http("victor") as http:
        answer = http.get("/api/v1/fleet/sources")
        assert answer.status_code == 200
        doc = answer.json()
        assert doc["schema"] == "opsconsole.fleet.sources/v1"
        rows = {r["name"]: r for r in doc["sources"]}
        sim = rows["sim"]  # the fleet's own source: its cadence and freshness
        assert sim["cadence_s"] is not None and sim["status"] in ("ok", "stale")
        assert "age_s" in sim and "last_read" in sim
        aws = rows["aws"]
        assert aws["calls"] == 22 and aws["errors"] == 1 and aws["throttles"] == 1
        assert aws["calls_per_hour"] > 0 and aws["usd_per_month"] > 0  # 126 metrics at $0.01 / 1,000
        assert doc["total"]["usd_per_month"] >= aws["usd_per_month"]
        assert http.get("/api/v1/fleet/sources", headers={"Authorization": "Bearer nope"}).status_code == 401
        metrics = http.get(f"{server.url}/metrics").text
    assert 'opsconsole_source_api_calls_total{source="aws",operation="GetMetricData"} 21' in metrics
    assert 'opsconsole_source_api_units_total{source="aws",operation="GetMetricData"} 126' in metrics
    assert 'opsconsole_source_api_throttles_total{source="aws",operation="DescribeDBInstances"} 1' in metrics
    METER.reset()


def test_cli_fleet_sources_prints_the_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSCONSOLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPSCONSOLE_SANDBOX_READER", "sim")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("OPSCONSOLE_SERVER", "OPSCONSOLE_TOKEN", "OPSCONSOLE_CA_FILE", "OPSCONSOLE_LIVE",
                 "OPSCONSOLE_SERVER_SANDBOX", "OPSCONSOLE_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    # The CLI's console took its width when it was imported; widen it for the table under test.
    from opsconsole.cli.context import out  # noqa: PLC0415
    monkeypatch.setattr(out, "width", 200)
    METER.reset()
    METER.count("aws", "GetMetricData", units=124)
    result = CliRunner().invoke(app, ["fleet", "sources"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for words in ("cadence", "last read", "calls/hour", "errors", "throttles", "est. $/month", "aws", "sim"):
        assert words in result.output, result.output
    as_json = CliRunner().invoke(app, ["fleet", "sources", "--json"])
    assert as_json.exit_code == 0 and '"opsconsole.fleet.sources/v1"' in as_json.output
    METER.reset()
