"""`opsconsole schedule eval | show | preview` as an SRE runs them: real processes, the seed inventory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_process import cli


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_eval_prints_one_line_per_instant_in_order(home: Path) -> None:
    result = cli(home, "schedule", "eval", "Mon-Fri 07:30-20:30 Europe/Berlin",
                 "--at", "2026-03-30T05:30:00+00:00",  # Monday 07:30 CEST: up
                 "--at", "2026-03-29T10:00:00+00:00",  # the DST Sunday: down
                 "--at", "2026-03-27T19:29:00+00:00")  # Friday 20:29 CET: up
    assert result.stdout.splitlines() == ["up", "down", "up"]


def test_eval_with_a_zone_for_naive_instants(home: Path) -> None:
    result = cli(home, "schedule", "eval", "Mon-Fri 07:00-20:00", "--tz", "America/New_York",
                 "--at", "2026-11-27T06:59", "--at", "2026-11-27T07:00")
    assert result.stdout.splitlines() == ["down", "up"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [("Mon-Fry 07:30-20:30 UTC", "'Fry' is not a weekday"), ("Mon-Fri 22:00-06:00 UTC", "overnight")],
)
def test_eval_of_an_invalid_spec_exits_2_with_a_clear_message(home: Path, spec: str, message: str) -> None:
    result = cli(home, "schedule", "eval", spec, "--at", "2026-11-27T12:00:00+00:00", ok=False)
    assert result.returncode == 2
    assert "invalid schedule" in result.stderr and message in result.stderr
    assert result.stdout == ""


def test_eval_of_instance_scheduler_periods_in_their_zone(home: Path) -> None:
    """The other syntax schedules.yml reads: periods, up if any runs, in --tz (Berlin: UTC+1 in winter)."""
    result = cli(home, "schedule", "eval", "--tz", "Europe/Berlin",
                 "--period", '{begintime: "09:00", endtime: "17:00", weekdays: "mon-fri"}',
                 "--period", "{begintime: 10:00, endtime: 12:00, weekdays: sat}",  # YAML's 10:00 = 600
                 "--at", "2026-12-07T07:59:00Z",  # Monday 08:59 Berlin: down
                 "--at", "2026-12-07T08:00:00Z",  # Monday 09:00 Berlin: up
                 "--at", "2026-12-07T16:00:00Z",  # Monday 17:00 Berlin: the end is exclusive
                 "--at", "2026-12-05T10:30:00Z")  # Saturday 11:30 Berlin: the second period
    assert result.stdout.splitlines() == ["down", "up", "down", "up"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--period", "{begintime: 25:00}"], "from 00:00 to 23:59"),
        (["--period", "{weekday: mon}"], "unknown period key"),
        (["--period", "[mon]"], "expected a mapping"),
        (["Mon-Fri 07:00-20:00 UTC", "--period", "{weekdays: mon}"], "not both"),
        ([], "or --period"),
    ],
)
def test_eval_of_bad_periods_exits_2_naming_the_period(home: Path, args: list[str], message: str) -> None:
    result = cli(home, "schedule", "eval", *args, "--at", "2026-11-27T12:00:00+00:00", ok=False)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_show_lists_every_scheduled_environment_and_region(home: Path) -> None:
    result = cli(home, "schedule", "show", "--json")
    rows = json.loads(result.stdout)
    assert {(r["environment"], r["region"]) for r in rows} == {
        ("staging", "us-east-1"), ("staging", "eu-west-1"), ("staging", "ap-southeast-1"),
        ("dev", "us-east-1"), ("dev", "eu-west-1"),
    }
    for row in rows:
        assert row["desired"] in ("up", "down") and row["applied"] is None
        assert row["next_transitions"] and row["clusters"]
    table = cli(home, "schedule", "show", "staging").stdout
    assert "staging" in table and "dev " not in table and "ap-southeast-1" in table


def test_show_of_an_unscheduled_environment_exits_2(home: Path) -> None:
    result = cli(home, "schedule", "show", "prod", ok=False)
    assert result.returncode == 2 and "no schedule" in result.stderr


def test_preview_draws_14_days_with_hours_down_and_the_saving(home: Path) -> None:
    result = cli(home, "schedule", "preview", "--days", "14")
    lines = result.stdout.splitlines()
    assert "14 days from" in result.stdout and "saving" in result.stdout
    assert sum(1 for line in lines if line.lstrip().startswith(("staging", "dev"))) == 5
    total = next(line for line in lines if "total" in line)
    assert int(total.split()[1]) > 1000  # hours down over 14 days, 5 schedules
