"""Time specs read as kube-downscaler and Instance Scheduler read them: a table of instants and answers.

Expected values are what hjacobs/kube-downscaler's ``matches_time_spec`` and Instance Scheduler's
``RunningPeriod.get_desired_state`` answer for the same input (local weekday, ``[from, to)`` minutes,
absolute ranges inclusive, day conditions AND-ed, begin-only / end-only periods carrying state).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.schedule.engine import load_schedules
from opsconsole.core.schedule.timespec import (
    ScheduleSpecError,
    evaluate,
    parse_period,
    parse_spec,
    period_schedule,
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


BERLIN = "Mon-Fri 07:30-20:30 Europe/Berlin"
NEW_YORK = "Mon-Fri 07:00-20:00 America/New_York"

SPEC_CASES = [
    # Europe/Berlin, winter (UTC+1) and summer (UTC+2); DST starts Sun 2026-03-29, ends Sun 2026-10-25.
    (BERLIN, "2026-03-27T06:29:00+00:00", False),  # Fri 07:29 CET
    (BERLIN, "2026-03-27T06:30:00+00:00", True),  # Fri 07:30 CET
    (BERLIN, "2026-03-27T19:29:00+00:00", True),  # Fri 20:29 CET
    (BERLIN, "2026-03-27T19:30:00+00:00", False),  # Fri 20:30 CET: the end is excluded
    (BERLIN, "2026-03-30T05:29:00+00:00", False),  # Mon 07:29 CEST (first weekday after the change)
    (BERLIN, "2026-03-30T05:30:00+00:00", True),  # Mon 07:30 CEST
    (BERLIN, "2026-03-30T06:30:00+00:00", True),  # would be 07:30 CET: already up in CEST
    (BERLIN, "2026-10-26T06:30:00+00:00", True),  # Mon after the change back: 07:30 CET
    (BERLIN, "2026-10-26T05:30:00+00:00", False),  # 06:30 CET
    (BERLIN, "2026-03-29T10:00:00+00:00", False),  # the DST Sunday itself
    # America/New_York: DST starts Sun 2026-03-08, ends Sun 2026-11-01.
    (NEW_YORK, "2026-03-06T11:59:00+00:00", False),  # Fri 06:59 EST
    (NEW_YORK, "2026-03-06T12:00:00+00:00", True),  # Fri 07:00 EST
    (NEW_YORK, "2026-03-09T11:00:00+00:00", True),  # Mon 07:00 EDT
    (NEW_YORK, "2026-03-09T10:59:00+00:00", False),  # Mon 06:59 EDT
    (NEW_YORK, "2026-11-02T12:00:00+00:00", True),  # Mon 07:00 EST
    (NEW_YORK, "2026-11-02T11:00:00+00:00", False),  # Mon 06:00 EST
    # the local weekday decides, not the UTC one
    ("Mon-Fri 00:00-24:00 Asia/Tokyo", "2026-11-29T16:00:00+00:00", True),  # Mon 01:00 JST, Sun in UTC
    ("Mon-Fri 00:00-24:00 America/Los_Angeles", "2026-11-28T03:00:00+00:00", True),  # Fri 19:00 PST
    # weekday ranges wrapping the week end
    ("Fri-Mon 10:00-12:00 UTC", "2026-11-29T11:00:00+00:00", True),  # Sun
    ("Fri-Mon 10:00-12:00 UTC", "2026-11-30T11:00:00+00:00", True),  # Mon
    ("Fri-Mon 10:00-12:00 UTC", "2026-12-01T11:00:00+00:00", False),  # Tue
    ("Sun-Thu 08:00-17:00 Asia/Jerusalem", "2026-11-29T08:00:00+00:00", True),  # Sun 10:00 IST
    ("Sun-Thu 08:00-17:00 Asia/Jerusalem", "2026-11-27T08:00:00+00:00", False),  # Fri
    # overnight windows, written the kube-downscaler way: two parts
    ("Mon-Fri 22:00-24:00 UTC, Tue-Sat 00:00-06:00 UTC", "2026-11-27T23:00:00+00:00", True),  # Fri 23:00
    ("Mon-Fri 22:00-24:00 UTC, Tue-Sat 00:00-06:00 UTC", "2026-11-28T05:59:00+00:00", True),  # Sat 05:59
    ("Mon-Fri 22:00-24:00 UTC, Tue-Sat 00:00-06:00 UTC", "2026-11-28T06:00:00+00:00", False),
    ("Mon-Fri 22:00-24:00 UTC, Tue-Sat 00:00-06:00 UTC", "2026-11-30T03:00:00+00:00", False),  # Mon 03:00
    # lists, absolute ranges (both ends included), always / never
    ("Sat-Sun 00:00-24:00 CET, Fri-Fri 20:00-24:00 CET", "2026-11-27T19:00:00+00:00", True),
    ("2026-12-24T00:00:00+00:00-2026-12-27T00:00:00+00:00", "2026-12-27T00:00:00+00:00", True),
    ("2026-12-24T00:00:00+00:00-2026-12-27T00:00:00+00:00", "2026-12-27T00:00:01+00:00", False),
    ("2026-12-24T00:00:00+01:00-2026-12-27T00:00:00+01:00", "2026-12-23T23:30:00+00:00", True),
    ("Always", "2026-11-27T03:00:00+00:00", True),
    ("never", "2026-11-27T12:00:00+00:00", False),
    ("mon-fri 07:00-20:00 UTC", "2026-11-27T12:00:00+00:00", True),  # weekday names in any case
]


@pytest.mark.parametrize(("spec", "at", "expected"), SPEC_CASES)
def test_kube_downscaler_specs(spec: str, at: str, expected: bool) -> None:
    assert evaluate(spec, utc(at)) is expected


def test_the_end_of_a_window_is_excluded_across_dst() -> None:
    # Fri 2026-03-06 20:00 EST = 01:00 UTC Saturday: the end minute itself is down.
    assert evaluate(NEW_YORK, utc("2026-03-07T01:00:00+00:00")) is False
    assert evaluate(NEW_YORK, utc("2026-03-07T00:59:00+00:00")) is True


def test_a_zone_less_part_takes_the_given_zone_and_naive_instants_are_local() -> None:
    assert evaluate("Mon-Fri 07:00-20:00", datetime(2026, 11, 27, 7, 0), tz="Europe/Berlin") is True
    assert evaluate("Mon-Fri 07:00-20:00", utc("2026-11-27T06:30:00+00:00"), tz="Europe/Berlin") is True
    assert evaluate("Mon-Fri 07:00-20:00", utc("2026-11-27T05:30:00+00:00"), tz="Europe/Berlin") is False


BACKWARDS = "2026-12-27T00:00:00+00:00-2026-12-24T00:00:00+00:00"
ZULU = "2026-12-24T00:00:00Z-2026-12-27T00:00:00Z"


@pytest.mark.parametrize(
    ("spec", "part", "why"),
    [
        ("Mon-Fri 07:30-20:30 Mars/Olympus", "Mon-Fri 07:30-20:30 Mars/Olympus", "unknown time zone"),
        ("Mon-Fry 07:30-20:30 UTC", "Mon-Fry 07:30-20:30 UTC", "not a weekday"),
        ("Mon-Fri 7:30-20:30 UTC", "Mon-Fri 7:30-20:30 UTC", "does not match the format"),
        ("Mon-Fri 07:30-25:00 UTC", "Mon-Fri 07:30-25:00 UTC", "not a time of day"),
        ("Mon-Fri 22:00-06:00 UTC", "Mon-Fri 22:00-06:00 UTC", "overnight window write two"),
        ("Mon-Fri 07:00-20:00 UTC, bogus", "bogus", "does not match the format"),
        ("Mon-Fri 07:00-20:00 UTC, always", "always", "stand alone"),
        (BACKWARDS, BACKWARDS, "ends before it starts"),
        (ZULU, ZULU, "does not match the format"),  # kube-downscaler wants +00:00, not Z
        ("Mon-Fri 07:00-20:00", "Mon-Fri 07:00-20:00", "no time zone"),
        ("", "", "empty spec"),
    ],
)
def test_invalid_specs_name_the_schedule_the_part_and_why(spec: str, part: str, why: str) -> None:
    with pytest.raises(ScheduleSpecError) as caught:
        parse_spec(spec, schedule="schedules.yml: environments.staging.uptime")
    assert caught.value.schedule == "schedules.yml: environments.staging.uptime"
    assert caught.value.part == part
    assert why in caught.value.why
    assert caught.value.user_error


# -- Instance Scheduler periods -------------------------------------------------------------------------


def period_up(periods: list[dict[str, object]], at: str, tz: str = "UTC") -> bool:
    schedule = period_schedule([parse_period(p) for p in periods], tz)
    return schedule.matches(utc(at))


OVERNIGHT: list[dict[str, object]] = [{"begintime": "22:00", "weekdays": "fri"},
                                      {"endtime": "06:00", "weekdays": "sat"}]

PERIOD_CASES = [
    # begin/end, [begin, end)
    ([{"begintime": "09:00", "endtime": "17:00", "weekdays": "mon-fri"}], "2026-11-27T09:00:00+00:00", True),
    ([{"begintime": "09:00", "endtime": "17:00", "weekdays": "mon-fri"}], "2026-11-27T17:00:00+00:00", False),
    ([{"begintime": "09:00", "endtime": "17:00", "weekdays": "mon-fri"}], "2026-11-28T12:00:00+00:00", False),
    # an end before the begin never runs in Instance Scheduler
    ([{"begintime": "22:00", "endtime": "06:00"}], "2026-11-27T23:00:00+00:00", False),
    # the Instance Scheduler overnight: a begin-only period and an end-only one on the next day; where
    # no period runs and one says "any", the state carries over (running > any > stopped)
    (OVERNIGHT, "2026-11-27T23:00:00+00:00", True),  # Fri 23:00
    (OVERNIGHT, "2026-11-28T03:00:00+00:00", True),  # Sat 03:00: "any", carried from Fri 22:00
    (OVERNIGHT, "2026-11-28T06:00:00+00:00", False),  # Sat 06:00: both stopped
    (OVERNIGHT, "2026-11-27T21:59:00+00:00", False),  # Fri 21:59: "any", carried from Thursday (stopped)
    ([{"begintime": "22:00"}, {"endtime": "06:00"}], "2026-11-28T06:00:00+00:00", True),  # "any" wins
    # weekday ranges wrap the week end; numbers 0-6 (0 = Monday)
    ([{"weekdays": "sat-mon"}], "2026-11-29T12:00:00+00:00", True),
    ([{"weekdays": "sat-mon"}], "2026-12-01T12:00:00+00:00", False),
    ([{"weekdays": "5-6"}], "2026-11-28T12:00:00+00:00", True),
    # nth weekday and last weekday
    ([{"weekdays": "mon#1"}], "2026-12-07T12:00:00+00:00", True),  # first Monday of December
    ([{"weekdays": "mon#1"}], "2026-12-14T12:00:00+00:00", False),
    ([{"weekdays": "fri#3"}], "2026-11-20T12:00:00+00:00", True),
    ([{"weekdays": "friL"}], "2026-11-27T12:00:00+00:00", True),  # last Friday of November
    ([{"weekdays": "friL"}], "2026-11-20T12:00:00+00:00", False),
    # monthdays: ranges, L, W, steps
    ([{"monthdays": "1-7"}], "2026-11-07T12:00:00+00:00", True),
    ([{"monthdays": "1-7"}], "2026-11-08T12:00:00+00:00", False),
    ([{"monthdays": "L"}], "2026-02-28T12:00:00+00:00", True),
    ([{"monthdays": "L"}], "2028-02-28T12:00:00+00:00", False),  # leap year: the 29th is last
    ([{"monthdays": "15W"}], "2026-11-16T12:00:00+00:00", True),  # the 15th is a Sunday → Monday 16th
    ([{"monthdays": "15W"}], "2026-11-15T12:00:00+00:00", False),
    ([{"monthdays": "15W"}], "2026-08-14T12:00:00+00:00", True),  # Saturday 15th → Friday 14th
    ([{"monthdays": "1W"}], "2026-08-03T12:00:00+00:00", True),  # Saturday 1st → Monday 3rd
    ([{"monthdays": "1/7"}], "2026-11-15T12:00:00+00:00", True),
    ([{"monthdays": "1/7"}], "2026-11-16T12:00:00+00:00", False),
    # months, with ranges wrapping the year end
    ([{"months": "nov-feb"}], "2026-01-10T12:00:00+00:00", True),
    ([{"months": "nov-feb"}], "2026-03-10T12:00:00+00:00", False),
    ([{"months": "jan-mar", "weekdays": "mon-fri", "begintime": "08:00", "endtime": "18:00"}],
     "2026-02-02T08:30:00+00:00", True),
    ([{"months": "jan-mar", "weekdays": "mon-fri", "begintime": "08:00", "endtime": "18:00"}],
     "2026-04-01T08:30:00+00:00", False),
]


@pytest.mark.parametrize(("periods", "at", "expected"), PERIOD_CASES)
def test_instance_scheduler_periods(periods: list[dict[str, object]], at: str, expected: bool) -> None:
    assert period_up(periods, at) is expected


def test_periods_follow_dst_in_their_zone() -> None:
    periods = [{"begintime": "07:00", "endtime": "20:00", "weekdays": "mon-fri"}]
    assert period_up(periods, "2026-03-09T11:00:00+00:00", "America/New_York") is True  # 07:00 EDT
    assert period_up(periods, "2026-03-06T11:00:00+00:00", "America/New_York") is False  # 06:00 EST
    assert period_up(periods, "2026-03-30T05:00:00+00:00", "Europe/Berlin") is True  # 07:00 CEST


@pytest.mark.parametrize(
    ("period", "part", "why"),
    [
        ({"weekdays": "mon-fry"}, "weekdays: mon-fry", "is not one of"),
        ({"weekdays": "mon#6"}, "weekdays: mon#6", "1 to 5"),
        ({"monthdays": "32"}, "monthdays: 32", "not a day of the month"),
        ({"monthdays": "20-10"}, "monthdays: 20-10", "ends before it starts"),
        ({"months": "jan-foo"}, "months: jan-foo", "is not one of"),
        ({"begintime": "25:00"}, "begintime: 25:00", "00:00 to 23:59"),
        ({"begintime": "9am"}, "begintime: 9am", "HH:MM"),
        ({"weekday": "mon"}, "weekday", "unknown period key"),
    ],
)
def test_invalid_periods(period: dict[str, object], part: str, why: str) -> None:
    with pytest.raises(ScheduleSpecError) as caught:
        parse_period(period, schedule="office-hours")
    assert caught.value.schedule == "office-hours"
    assert caught.value.part == part
    assert why in caught.value.why


# -- holidays, through the seed's schedules.yml ----------------------------------------------------------


def test_public_holidays_of_the_regions_country_are_down(seed_fleet) -> None:  # type: ignore[no-untyped-def]
    schedules = load_schedules(seed_fleet.source, seed_fleet)
    (us,) = schedules.of("staging", "us-east-1")
    (ie,) = schedules.of("staging", "eu-west-1")
    thanksgiving_noon = utc("2026-11-26T12:00:00-05:00")
    assert us.holiday(date(2026, 11, 26)) is not None
    assert us.up(thanksgiving_noon) is False  # Thanksgiving in the US
    assert ie.up(thanksgiving_noon) is True  # an ordinary Thursday in Ireland
    assert ie.up(utc("2026-12-25T12:00:00+00:00")) is False  # Christmas Day
    assert ie.up(utc("2026-03-17T12:00:00+00:00")) is False  # St Patrick's Day, Ireland only
    assert us.up(utc("2026-03-17T12:00:00-04:00")) is True


def test_a_bad_spec_in_schedules_yml_names_the_file_and_key(inventory_copy: Path) -> None:
    path = inventory_copy / "schedules.yml"
    text = path.read_text().replace('uptime: "Mon-Fri 07:00-20:00"', 'uptime: "Mon-Fro 07:00-20:00"')
    path.write_text(text)
    fleet = load_inventory(inventory_copy)
    with pytest.raises(ScheduleSpecError) as caught:
        load_schedules(inventory_copy, fleet)
    assert str(path) in str(caught.value)
    assert "environments.staging.uptime" in str(caught.value)
    assert "'Fro' is not a weekday" in str(caught.value)
