"""Fire times across both DST changes of five zones, as tables of literal instants.

Zones and the 2026 changes the tables cross (wall clock before -> after, from the tz database):

- America/New_York: 2026-03-08 02:00-05:00 -> 03:00-04:00 (gap 02:00-02:59);
  2026-11-01 02:00-04:00 -> 01:00-05:00 (01:00-01:59 twice).
- Europe/Berlin: 2026-03-29 02:00+01:00 -> 03:00+02:00 (gap 02:00-02:59);
  2026-10-25 03:00+02:00 -> 02:00+01:00 (02:00-02:59 twice).
- Australia/Sydney: 2026-04-05 03:00+11:00 -> 02:00+10:00 (02:00-02:59 twice);
  2026-10-04 02:00+10:00 -> 03:00+11:00 (gap 02:00-02:59).
- Australia/Lord_Howe, a 30-minute shift: 2026-04-05 02:00+11:00 -> 01:30+10:30 (01:30-01:59
  twice); 2026-10-04 02:00+10:30 -> 02:30+11:00 (gap 02:00-02:29).
- Asia/Kathmandu: +05:45 all year, no DST. Its one change since 1980: 1986-01-01
  00:00+05:30 -> 00:15+05:45, a 15-minute gap (00:00-00:14).

The rules (see :mod:`flowyml_sched.timing`): a fixed-time schedule (cron whose minute and hour
fields do not start with ``*``; every daily schedule) fires when the wall clock first reaches
its time: a time in a gap fires at the gap's end, a time in a fold fires once, at its first
occurrence. A wildcard schedule (``*/15 * * * *``, ``0 */2 * * *``; every hourly schedule)
fires whenever the wall clock shows a matching time: twice in a repeated hour, never in a
skipped one. An interval is elapsed time from its anchor.

Every expected value is a literal with its offset; each test also checks that the literal is
the tz database's own rendering of that instant in the zone, so a typo in a table fails
loudly instead of testing nothing.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from flowyml_sched.timing import DstNote, fire_times
from flowyml_sched.triggers import (
    CronTrigger,
    IntervalTrigger,
    Trigger,
    parse_duration,
    parse_minute,
    parse_time_of_day,
)


def _trigger(kind: str, text: str, anchor: str | None = None) -> Trigger:
    if kind == "cron":
        return CronTrigger(text)
    if kind == "daily":
        return parse_time_of_day(text)
    if kind == "hourly":
        return parse_minute(text)
    assert anchor is not None, "an interval row needs an anchor"
    return IntervalTrigger(parse_duration(text), datetime.fromisoformat(anchor))


def _fires(kind: str, text: str, zone: str, after: str, count: int, anchor: str | None = None) -> list[str]:
    """The next ``count`` fire times as ISO strings in the zone (wall time and offset)."""
    trigger = _trigger(kind, text, anchor)
    return [f.at.isoformat() for f in fire_times(trigger, ZoneInfo(zone), datetime.fromisoformat(after), count)]


def _check_table_row(zone: str, after: str, expected: list[str]) -> None:
    """Each literal must be how the tz database writes that instant in ``zone``, and strictly later than ``after``."""
    tz = ZoneInfo(zone)
    for text in expected:
        instant = datetime.fromisoformat(text)
        assert instant.astimezone(tz).isoformat() == text, f"table error: {text} is not a wall time of {zone}"
        assert instant.timestamp() > datetime.fromisoformat(after).timestamp(), f"table error: {text} <= {after}"
    stamps = [datetime.fromisoformat(t).timestamp() for t in expected]
    assert stamps == sorted(set(stamps)), "table error: expected instants must strictly increase"


def _assert_fires(kind: str, text: str, zone: str, after: str, expected: list[str], anchor: str | None = None) -> None:
    _check_table_row(zone, after, expected)
    assert _fires(kind, text, zone, after, len(expected), anchor) == expected


# -- spring forward: the DST gap ------------------------------------------------------------

GAP_FIXED_CRON = [
    pytest.param(
        "30 2 * * *",
        "America/New_York",
        "2026-03-07T12:00:00-05:00",
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"],
        id="New_York",
    ),
    pytest.param(
        "30 2 * * *",
        "Europe/Berlin",
        "2026-03-28T12:00:00+01:00",
        ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"],
        id="Berlin",
    ),
    pytest.param(
        "30 2 * * *",
        "Australia/Sydney",
        "2026-10-03T12:00:00+10:00",
        ["2026-10-04T03:00:00+11:00", "2026-10-05T02:30:00+11:00", "2026-10-06T02:30:00+11:00"],
        id="Sydney",
    ),
    pytest.param(
        "15 2 * * *",
        "Australia/Lord_Howe",
        "2026-10-03T12:00:00+10:30",
        ["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00", "2026-10-06T02:15:00+11:00"],
        id="Lord_Howe-02:15-is-in-the-half-hour-gap",
    ),
    pytest.param(
        "5 0 * * *",
        "Asia/Kathmandu",
        "1985-12-30T12:00:00+05:30",
        [
            "1985-12-31T00:05:00+05:30",
            "1986-01-01T00:15:00+05:45",
            "1986-01-02T00:05:00+05:45",
            "1986-01-03T00:05:00+05:45",
        ],
        id="Kathmandu-1986-quarter-hour-gap",
    ),
]


@pytest.mark.parametrize(("expression", "zone", "after", "expected"), GAP_FIXED_CRON)
def test_fixed_time_cron_in_dst_gap_runs_at_gap_end(expression, zone, after, expected):
    _assert_fires("cron", expression, zone, after, expected)


GAP_DAILY = [
    pytest.param(
        "02:30",
        "America/New_York",
        "2026-03-07T12:00:00-05:00",
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
        id="New_York",
    ),
    pytest.param(
        "02:30",
        "Europe/Berlin",
        "2026-03-28T12:00:00+01:00",
        ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
        id="Berlin",
    ),
    pytest.param(
        "02:59",
        "Australia/Sydney",
        "2026-10-03T12:00:00+10:00",
        ["2026-10-04T03:00:00+11:00", "2026-10-05T02:59:00+11:00"],
        id="Sydney-last-minute-of-the-gap",
    ),
    pytest.param(
        "02:00",
        "Australia/Lord_Howe",
        "2026-10-03T12:00:00+10:30",
        ["2026-10-04T02:30:00+11:00", "2026-10-05T02:00:00+11:00"],
        id="Lord_Howe",
    ),
    pytest.param(
        "00:10",
        "Asia/Kathmandu",
        "1985-12-31T12:00:00+05:30",
        ["1986-01-01T00:15:00+05:45", "1986-01-02T00:10:00+05:45"],
        id="Kathmandu-1986",
    ),
]


@pytest.mark.parametrize(("time_of_day", "zone", "after", "expected"), GAP_DAILY)
def test_daily_job_in_dst_gap_runs_at_gap_end(time_of_day, zone, after, expected):
    _assert_fires("daily", time_of_day, zone, after, expected)


GAP_EXISTING_TIMES = [
    pytest.param(
        "daily",
        "03:00",
        "Europe/Berlin",
        "2026-03-28T12:00:00+01:00",
        ["2026-03-29T03:00:00+02:00", "2026-03-30T03:00:00+02:00"],
        id="Berlin-03:00-is-the-first-time-after-the-gap",
    ),
    pytest.param(
        "daily",
        "01:59",
        "America/New_York",
        "2026-03-07T12:00:00-05:00",
        ["2026-03-08T01:59:00-05:00", "2026-03-09T01:59:00-04:00"],
        id="New_York-01:59-is-the-last-time-before-the-gap",
    ),
    pytest.param(
        "cron",
        "30 2 * * *",
        "Australia/Lord_Howe",
        "2026-10-03T12:00:00+10:30",
        ["2026-10-04T02:30:00+11:00", "2026-10-05T02:30:00+11:00"],
        id="Lord_Howe-02:30-exists-after-a-half-hour-gap",
    ),
    pytest.param(
        "cron",
        "20 0 1 1 *",
        "Asia/Kathmandu",
        "1985-12-31T12:00:00+05:30",
        ["1986-01-01T00:20:00+05:45", "1987-01-01T00:20:00+05:45"],
        id="Kathmandu-00:20-exists-after-the-quarter-hour-gap",
    ),
]


@pytest.mark.parametrize(("kind", "text", "zone", "after", "expected"), GAP_EXISTING_TIMES)
def test_fixed_time_just_outside_the_gap_runs_at_its_own_wall_time(kind, text, zone, after, expected):
    _assert_fires(kind, text, zone, after, expected)


def test_two_fixed_times_in_the_same_gap_run_once_at_gap_end():
    # 02:00 and 02:30 both map to 03:00+02:00; one instant can fire only once.
    _assert_fires(
        "cron",
        "0,30 2 * * *",
        "Europe/Berlin",
        "2026-03-28T12:00:00+01:00",
        ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00", "2026-03-30T02:30:00+02:00"],
    )


GAP_WILDCARD = [
    pytest.param(
        "*/15 * * * *",
        "America/New_York",
        "2026-03-08T01:40:00-05:00",
        ["2026-03-08T01:45:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:15:00-04:00"],
        id="New_York-every-15-minutes",
    ),
    pytest.param(
        "*/15 * * * *",
        "Europe/Berlin",
        "2026-03-29T01:40:00+01:00",
        ["2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:15:00+02:00"],
        id="Berlin-every-15-minutes",
    ),
    pytest.param(
        "*/15 * * * *",
        "Australia/Sydney",
        "2026-10-04T01:40:00+10:00",
        ["2026-10-04T01:45:00+10:00", "2026-10-04T03:00:00+11:00", "2026-10-04T03:15:00+11:00"],
        id="Sydney-every-15-minutes",
    ),
    pytest.param(
        "*/15 * * * *",
        "Australia/Lord_Howe",
        "2026-10-04T01:40:00+10:30",
        [
            "2026-10-04T01:45:00+10:30",
            "2026-10-04T02:30:00+11:00",
            "2026-10-04T02:45:00+11:00",
            "2026-10-04T03:00:00+11:00",
        ],
        id="Lord_Howe-every-15-minutes-skips-02:00-and-02:15-only",
    ),
    pytest.param(
        "*/15 * * * *",
        "Asia/Kathmandu",
        "1985-12-31T23:40:00+05:30",
        ["1985-12-31T23:45:00+05:30", "1986-01-01T00:15:00+05:45", "1986-01-01T00:30:00+05:45"],
        id="Kathmandu-1986-every-15-minutes-skips-00:00",
    ),
    pytest.param(
        "0 */2 * * *",
        "America/New_York",
        "2026-03-07T23:30:00-05:00",
        ["2026-03-08T00:00:00-05:00", "2026-03-08T04:00:00-04:00", "2026-03-08T06:00:00-04:00"],
        id="New_York-every-2-hours-skips-02:00",
    ),
    pytest.param(
        "0 */2 * * *",
        "Europe/Berlin",
        "2026-03-28T23:30:00+01:00",
        ["2026-03-29T00:00:00+01:00", "2026-03-29T04:00:00+02:00", "2026-03-29T06:00:00+02:00"],
        id="Berlin-every-2-hours-skips-02:00",
    ),
    pytest.param(
        "0 */2 * * *",
        "Australia/Sydney",
        "2026-10-03T23:30:00+10:00",
        ["2026-10-04T00:00:00+10:00", "2026-10-04T04:00:00+11:00", "2026-10-04T06:00:00+11:00"],
        id="Sydney-every-2-hours-skips-02:00",
    ),
    pytest.param(
        "0 */2 * * *",
        "Australia/Lord_Howe",
        "2026-10-03T23:30:00+10:30",
        ["2026-10-04T00:00:00+10:30", "2026-10-04T04:00:00+11:00", "2026-10-04T06:00:00+11:00"],
        id="Lord_Howe-every-2-hours-skips-02:00",
    ),
    pytest.param(
        "0 */2 * * *",
        "Asia/Kathmandu",
        "1985-12-31T21:30:00+05:30",
        ["1985-12-31T22:00:00+05:30", "1986-01-01T02:00:00+05:45", "1986-01-01T04:00:00+05:45"],
        id="Kathmandu-1986-every-2-hours-skips-00:00",
    ),
]


@pytest.mark.parametrize(("expression", "zone", "after", "expected"), GAP_WILDCARD)
def test_wildcard_cron_skips_wall_times_in_dst_gap(expression, zone, after, expected):
    _assert_fires("cron", expression, zone, after, expected)


GAP_HOURLY = [
    pytest.param(
        "30",
        "America/New_York",
        "2026-03-08T01:00:00-05:00",
        ["2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00-04:00", "2026-03-08T04:30:00-04:00"],
        id="New_York",
    ),
    pytest.param(
        "30",
        "Europe/Berlin",
        "2026-03-29T01:00:00+01:00",
        ["2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00", "2026-03-29T04:30:00+02:00"],
        id="Berlin",
    ),
    pytest.param(
        "30",
        "Australia/Sydney",
        "2026-10-04T01:00:00+10:00",
        ["2026-10-04T01:30:00+10:00", "2026-10-04T03:30:00+11:00", "2026-10-04T04:30:00+11:00"],
        id="Sydney",
    ),
    pytest.param(
        "15",
        "Australia/Lord_Howe",
        "2026-10-04T01:00:00+10:30",
        ["2026-10-04T01:15:00+10:30", "2026-10-04T03:15:00+11:00", "2026-10-04T04:15:00+11:00"],
        id="Lord_Howe-:15-falls-in-the-half-hour-gap",
    ),
    pytest.param(
        "45",
        "Australia/Lord_Howe",
        "2026-10-04T01:00:00+10:30",
        ["2026-10-04T01:45:00+10:30", "2026-10-04T02:45:00+11:00", "2026-10-04T03:45:00+11:00"],
        id="Lord_Howe-:45-survives-the-half-hour-gap",
    ),
    pytest.param(
        "10",
        "Asia/Kathmandu",
        "1985-12-31T23:00:00+05:30",
        ["1985-12-31T23:10:00+05:30", "1986-01-01T01:10:00+05:45", "1986-01-01T02:10:00+05:45"],
        id="Kathmandu-1986-:10-falls-in-the-quarter-hour-gap",
    ),
    pytest.param(
        "20",
        "Asia/Kathmandu",
        "1985-12-31T23:00:00+05:30",
        ["1985-12-31T23:20:00+05:30", "1986-01-01T00:20:00+05:45", "1986-01-01T01:20:00+05:45"],
        id="Kathmandu-1986-:20-survives-the-quarter-hour-gap",
    ),
]


@pytest.mark.parametrize(("minute", "zone", "after", "expected"), GAP_HOURLY)
def test_hourly_job_skips_the_missing_wall_time(minute, zone, after, expected):
    _assert_fires("hourly", minute, zone, after, expected)


GAP_INTERVAL = [
    pytest.param(
        "1h",
        "America/New_York",
        "2026-03-08T00:30:00-05:00",
        ["2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00-04:00", "2026-03-08T04:30:00-04:00"],
        id="New_York-hourly-interval",
    ),
    pytest.param(
        "1h",
        "Europe/Berlin",
        "2026-03-29T00:30:00+01:00",
        ["2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00", "2026-03-29T04:30:00+02:00"],
        id="Berlin-hourly-interval",
    ),
    pytest.param(
        "1h",
        "Australia/Sydney",
        "2026-10-04T00:30:00+10:00",
        ["2026-10-04T01:30:00+10:00", "2026-10-04T03:30:00+11:00", "2026-10-04T04:30:00+11:00"],
        id="Sydney-hourly-interval",
    ),
    pytest.param(
        "1h",
        "Australia/Lord_Howe",
        "2026-10-04T00:30:00+10:30",
        ["2026-10-04T01:30:00+10:30", "2026-10-04T03:00:00+11:00", "2026-10-04T04:00:00+11:00"],
        id="Lord_Howe-hourly-interval-shifts-by-half-an-hour",
    ),
    pytest.param(
        "1h",
        "Asia/Kathmandu",
        "1985-12-31T23:30:00+05:30",
        ["1986-01-01T00:45:00+05:45", "1986-01-01T01:45:00+05:45"],
        id="Kathmandu-1986-hourly-interval-shifts-by-a-quarter-hour",
    ),
    pytest.param(
        "1d",
        "America/New_York",
        "2026-03-07T09:00:00-05:00",
        ["2026-03-08T10:00:00-04:00", "2026-03-09T10:00:00-04:00"],
        id="New_York-daily-interval-moves-to-10:00",
    ),
    pytest.param(
        "P7D",
        "Europe/Berlin",
        "2026-03-26T16:00:00+01:00",
        ["2026-04-02T17:00:00+02:00", "2026-04-09T17:00:00+02:00"],
        id="Berlin-weekly-interval-moves-to-17:00",
    ),
    pytest.param(
        "90m",
        "Australia/Sydney",
        "2026-10-04T00:00:00+10:00",
        ["2026-10-04T01:30:00+10:00", "2026-10-04T04:00:00+11:00", "2026-10-04T05:30:00+11:00"],
        id="Sydney-90-minute-interval",
    ),
]


@pytest.mark.parametrize(("every", "zone", "anchor", "expected"), GAP_INTERVAL)
def test_interval_counts_elapsed_time_across_the_spring_change(every, zone, anchor, expected):
    # The reference instant is the anchor itself: the first fire time is one step later.
    _assert_fires("interval", every, zone, anchor, expected, anchor=anchor)


# -- fall back: the DST fold (a repeated hour) ------------------------------------------------

FOLD_FIXED_CRON = [
    pytest.param(
        "30 1 * * *",
        "America/New_York",
        "2026-10-31T12:00:00-04:00",
        ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00", "2026-11-03T01:30:00-05:00"],
        id="New_York",
    ),
    pytest.param(
        "30 2 * * *",
        "Europe/Berlin",
        "2026-10-24T12:00:00+02:00",
        ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00", "2026-10-27T02:30:00+01:00"],
        id="Berlin",
    ),
    pytest.param(
        "30 2 * * *",
        "Australia/Sydney",
        "2026-04-04T12:00:00+11:00",
        ["2026-04-05T02:30:00+11:00", "2026-04-06T02:30:00+10:00", "2026-04-07T02:30:00+10:00"],
        id="Sydney",
    ),
    pytest.param(
        "45 1 * * *",
        "Australia/Lord_Howe",
        "2026-04-04T12:00:00+11:00",
        ["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30", "2026-04-07T01:45:00+10:30"],
        id="Lord_Howe-01:45-is-in-the-half-hour-fold",
    ),
    pytest.param(
        "0,30 1-2 * * *",
        "Australia/Lord_Howe",
        "2026-04-04T12:00:00+11:00",
        [
            "2026-04-05T01:00:00+11:00",
            "2026-04-05T01:30:00+11:00",
            "2026-04-05T02:00:00+10:30",
            "2026-04-05T02:30:00+10:30",
            "2026-04-06T01:00:00+10:30",
        ],
        id="Lord_Howe-01:30-runs-once-then-02:00-after-the-fold",
    ),
]


@pytest.mark.parametrize(("expression", "zone", "after", "expected"), FOLD_FIXED_CRON)
def test_fixed_time_cron_in_repeated_hour_runs_once_at_first_occurrence(expression, zone, after, expected):
    _assert_fires("cron", expression, zone, after, expected)


FOLD_DAILY = [
    pytest.param(
        "01:30",
        "America/New_York",
        "2026-10-31T12:00:00-04:00",
        ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        id="New_York",
    ),
    pytest.param(
        "02:00",
        "Europe/Berlin",
        "2026-10-24T12:00:00+02:00",
        ["2026-10-25T02:00:00+02:00", "2026-10-26T02:00:00+01:00"],
        id="Berlin-02:00-the-first-repeated-minute",
    ),
    pytest.param(
        "02:59",
        "Australia/Sydney",
        "2026-04-04T12:00:00+11:00",
        ["2026-04-05T02:59:00+11:00", "2026-04-06T02:59:00+10:00"],
        id="Sydney-02:59-the-last-repeated-minute",
    ),
    pytest.param(
        "01:30",
        "Australia/Lord_Howe",
        "2026-04-04T12:00:00+11:00",
        ["2026-04-05T01:30:00+11:00", "2026-04-06T01:30:00+10:30"],
        id="Lord_Howe",
    ),
    pytest.param(
        "01:15",
        "Australia/Lord_Howe",
        "2026-04-04T12:00:00+11:00",
        ["2026-04-05T01:15:00+11:00", "2026-04-06T01:15:00+10:30"],
        id="Lord_Howe-01:15-occurs-once-before-the-half-hour-fold",
    ),
]


@pytest.mark.parametrize(("time_of_day", "zone", "after", "expected"), FOLD_DAILY)
def test_daily_job_in_repeated_hour_runs_once_at_first_occurrence(time_of_day, zone, after, expected):
    _assert_fires("daily", time_of_day, zone, after, expected)


FOLD_STARTS = [
    pytest.param(
        "America/New_York",
        "2026-11-01T01:10:00-04:00",
        ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        id="New_York-start-in-first-pass-before-01:30",
    ),
    pytest.param(
        "America/New_York",
        "2026-11-01T01:40:00-04:00",
        ["2026-11-02T01:30:00-05:00", "2026-11-03T01:30:00-05:00"],
        id="New_York-start-in-first-pass-after-01:30",
    ),
    pytest.param(
        "America/New_York",
        "2026-11-01T01:10:00-05:00",
        ["2026-11-02T01:30:00-05:00", "2026-11-03T01:30:00-05:00"],
        id="New_York-start-in-second-pass-before-01:30",
    ),
    pytest.param(
        "America/New_York",
        "2026-11-01T01:30:00-04:00",
        ["2026-11-02T01:30:00-05:00"],
        id="New_York-start-exactly-at-the-first-01:30",
    ),
]


@pytest.mark.parametrize(("zone", "after", "expected"), FOLD_STARTS)
def test_fixed_time_job_does_not_run_again_in_the_second_pass(zone, after, expected):
    _assert_fires("daily", "01:30", zone, after, expected)


FOLD_WILDCARD = [
    pytest.param(
        "*/15 * * * *",
        "America/New_York",
        "2026-11-01T01:40:00-04:00",
        [
            "2026-11-01T01:45:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T01:15:00-05:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-01T01:45:00-05:00",
            "2026-11-01T02:00:00-05:00",
        ],
        id="New_York-every-15-minutes",
    ),
    pytest.param(
        "*/15 * * * *",
        "Europe/Berlin",
        "2026-10-25T02:40:00+02:00",
        [
            "2026-10-25T02:45:00+02:00",
            "2026-10-25T02:00:00+01:00",
            "2026-10-25T02:15:00+01:00",
            "2026-10-25T02:30:00+01:00",
            "2026-10-25T02:45:00+01:00",
            "2026-10-25T03:00:00+01:00",
        ],
        id="Berlin-every-15-minutes",
    ),
    pytest.param(
        "*/15 * * * *",
        "Australia/Sydney",
        "2026-04-05T02:40:00+11:00",
        [
            "2026-04-05T02:45:00+11:00",
            "2026-04-05T02:00:00+10:00",
            "2026-04-05T02:15:00+10:00",
            "2026-04-05T02:30:00+10:00",
            "2026-04-05T02:45:00+10:00",
            "2026-04-05T03:00:00+10:00",
        ],
        id="Sydney-every-15-minutes",
    ),
    pytest.param(
        "*/15 * * * *",
        "Australia/Lord_Howe",
        "2026-04-05T01:40:00+11:00",
        [
            "2026-04-05T01:45:00+11:00",
            "2026-04-05T01:30:00+10:30",
            "2026-04-05T01:45:00+10:30",
            "2026-04-05T02:00:00+10:30",
        ],
        id="Lord_Howe-every-15-minutes-repeats-01:30-and-01:45",
    ),
    pytest.param(
        "*/30 1 * * *",
        "Australia/Lord_Howe",
        "2026-04-04T12:00:00+11:00",
        [
            "2026-04-05T01:00:00+11:00",
            "2026-04-05T01:30:00+11:00",
            "2026-04-05T01:30:00+10:30",
            "2026-04-06T01:00:00+10:30",
        ],
        id="Lord_Howe-every-30-minutes-in-hour-1",
    ),
    pytest.param(
        "0 */2 * * *",
        "America/New_York",
        "2026-11-01T00:30:00-04:00",
        ["2026-11-01T02:00:00-05:00", "2026-11-01T04:00:00-05:00"],
        id="New_York-every-2-hours-has-no-even-hour-in-the-fold",
    ),
    pytest.param(
        "0 */2 * * *",
        "Europe/Berlin",
        "2026-10-25T01:30:00+02:00",
        ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T04:00:00+01:00"],
        id="Berlin-every-2-hours-runs-02:00-twice",
    ),
    pytest.param(
        "0 */2 * * *",
        "Australia/Sydney",
        "2026-04-05T01:30:00+11:00",
        ["2026-04-05T02:00:00+11:00", "2026-04-05T02:00:00+10:00", "2026-04-05T04:00:00+10:00"],
        id="Sydney-every-2-hours-runs-02:00-twice",
    ),
    pytest.param(
        "0 */2 * * *",
        "Australia/Lord_Howe",
        "2026-04-05T00:30:00+11:00",
        ["2026-04-05T02:00:00+10:30", "2026-04-05T04:00:00+10:30"],
        id="Lord_Howe-every-2-hours-has-no-:00-in-the-fold",
    ),
]


@pytest.mark.parametrize(("expression", "zone", "after", "expected"), FOLD_WILDCARD)
def test_wildcard_cron_runs_in_both_passes_of_repeated_hour(expression, zone, after, expected):
    _assert_fires("cron", expression, zone, after, expected)


FOLD_WILDCARD_STARTS = [
    pytest.param(
        "America/New_York",
        "2026-11-01T01:20:00-05:00",
        ["2026-11-01T01:30:00-05:00", "2026-11-01T01:45:00-05:00", "2026-11-01T02:00:00-05:00"],
        id="New_York-start-in-second-pass",
    ),
    pytest.param(
        "Europe/Berlin",
        "2026-10-25T02:50:00+02:00",
        ["2026-10-25T02:00:00+01:00", "2026-10-25T02:15:00+01:00"],
        id="Berlin-start-late-in-first-pass",
    ),
    pytest.param(
        "Australia/Lord_Howe",
        "2026-04-05T01:50:00+10:30",
        ["2026-04-05T02:00:00+10:30", "2026-04-05T02:15:00+10:30"],
        id="Lord_Howe-start-late-in-second-pass",
    ),
]


@pytest.mark.parametrize(("zone", "after", "expected"), FOLD_WILDCARD_STARTS)
def test_wildcard_cron_started_inside_the_fold_continues_in_elapsed_time(zone, after, expected):
    _assert_fires("cron", "*/15 * * * *", zone, after, expected)


FOLD_HOURLY = [
    pytest.param(
        "30",
        "America/New_York",
        "2026-11-01T00:45:00-04:00",
        ["2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00", "2026-11-01T02:30:00-05:00"],
        id="New_York",
    ),
    pytest.param(
        "30",
        "Europe/Berlin",
        "2026-10-25T01:45:00+02:00",
        ["2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00", "2026-10-25T03:30:00+01:00"],
        id="Berlin",
    ),
    pytest.param(
        "30",
        "Australia/Sydney",
        "2026-04-05T01:45:00+11:00",
        ["2026-04-05T02:30:00+11:00", "2026-04-05T02:30:00+10:00", "2026-04-05T03:30:00+10:00"],
        id="Sydney",
    ),
    pytest.param(
        "45",
        "Australia/Lord_Howe",
        "2026-04-05T00:50:00+11:00",
        ["2026-04-05T01:45:00+11:00", "2026-04-05T01:45:00+10:30", "2026-04-05T02:45:00+10:30"],
        id="Lord_Howe-:45-is-in-the-half-hour-fold",
    ),
    pytest.param(
        "15",
        "Australia/Lord_Howe",
        "2026-04-05T00:50:00+11:00",
        ["2026-04-05T01:15:00+11:00", "2026-04-05T02:15:00+10:30", "2026-04-05T03:15:00+10:30"],
        id="Lord_Howe-:15-is-not",
    ),
]


@pytest.mark.parametrize(("minute", "zone", "after", "expected"), FOLD_HOURLY)
def test_hourly_job_runs_twice_in_repeated_hour(minute, zone, after, expected):
    _assert_fires("hourly", minute, zone, after, expected)


FOLD_INTERVAL = [
    pytest.param(
        "1h",
        "America/New_York",
        "2026-11-01T00:30:00-04:00",
        ["2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00", "2026-11-01T02:30:00-05:00"],
        id="New_York-hourly-interval",
    ),
    pytest.param(
        "1h",
        "Europe/Berlin",
        "2026-10-25T01:30:00+02:00",
        ["2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00", "2026-10-25T03:30:00+01:00"],
        id="Berlin-hourly-interval",
    ),
    pytest.param(
        "1h",
        "Australia/Sydney",
        "2026-04-05T01:30:00+11:00",
        ["2026-04-05T02:30:00+11:00", "2026-04-05T02:30:00+10:00", "2026-04-05T03:30:00+10:00"],
        id="Sydney-hourly-interval",
    ),
    pytest.param(
        "1h",
        "Australia/Lord_Howe",
        "2026-04-05T00:30:00+11:00",
        ["2026-04-05T01:30:00+11:00", "2026-04-05T02:00:00+10:30", "2026-04-05T03:00:00+10:30"],
        id="Lord_Howe-hourly-interval-shifts-by-half-an-hour",
    ),
    pytest.param(
        "30m",
        "Australia/Lord_Howe",
        "2026-04-05T01:00:00+11:00",
        ["2026-04-05T01:30:00+11:00", "2026-04-05T01:30:00+10:30", "2026-04-05T02:00:00+10:30"],
        id="Lord_Howe-30-minute-interval-repeats-01:30",
    ),
    pytest.param(
        "1d",
        "America/New_York",
        "2026-10-31T09:00:00-04:00",
        ["2026-11-01T08:00:00-05:00", "2026-11-02T08:00:00-05:00"],
        id="New_York-daily-interval-moves-to-08:00",
    ),
    pytest.param(
        "PT15M",
        "Europe/Berlin",
        "2026-10-25T02:30:00+02:00",
        [
            "2026-10-25T02:45:00+02:00",
            "2026-10-25T02:00:00+01:00",
            "2026-10-25T02:15:00+01:00",
        ],
        id="Berlin-15-minute-interval",
    ),
]


@pytest.mark.parametrize(("every", "zone", "anchor", "expected"), FOLD_INTERVAL)
def test_interval_counts_elapsed_time_across_the_autumn_change(every, zone, anchor, expected):
    _assert_fires("interval", every, zone, anchor, expected, anchor=anchor)


def test_interval_reference_before_the_anchor_fires_at_the_anchor():
    _assert_fires(
        "interval",
        "1h",
        "Australia/Lord_Howe",
        "2026-04-04T12:00:00+11:00",
        ["2026-04-05T01:30:00+10:30", "2026-04-05T02:30:00+10:30"],
        anchor="2026-04-05T01:30:00+10:30",
    )


# -- Kathmandu: +05:45, no DST since 1986 -------------------------------------------------------

KATHMANDU_QUIET = [
    pytest.param(
        "cron",
        "30 2 * * *",
        "2026-03-28T12:00:00+05:45",
        ["2026-03-29T02:30:00+05:45", "2026-03-30T02:30:00+05:45"],
        id="fixed-time-on-Berlin's-spring-change-day",
    ),
    pytest.param(
        "cron",
        "30 1 * * *",
        "2026-10-31T12:00:00+05:45",
        ["2026-11-01T01:30:00+05:45", "2026-11-02T01:30:00+05:45"],
        id="fixed-time-on-New_York's-autumn-change-day",
    ),
    pytest.param(
        "cron",
        "*/15 * * * *",
        "2026-10-25T02:40:00+05:45",
        ["2026-10-25T02:45:00+05:45", "2026-10-25T03:00:00+05:45", "2026-10-25T03:15:00+05:45"],
        id="every-15-minutes",
    ),
    pytest.param(
        "cron",
        "0 */2 * * *",
        "2026-04-04T23:30:00+05:45",
        ["2026-04-05T00:00:00+05:45", "2026-04-05T02:00:00+05:45", "2026-04-05T04:00:00+05:45"],
        id="every-2-hours",
    ),
    pytest.param(
        "hourly",
        "30",
        "2026-10-04T00:45:00+05:45",
        ["2026-10-04T01:30:00+05:45", "2026-10-04T02:30:00+05:45", "2026-10-04T03:30:00+05:45"],
        id="hourly",
    ),
    pytest.param(
        "daily",
        "00:00",
        "2025-12-31T12:00:00+05:45",
        ["2026-01-01T00:00:00+05:45", "2026-01-02T00:00:00+05:45"],
        id="daily-midnight-on-the-1986-change-date",
    ),
]


@pytest.mark.parametrize(("kind", "text", "after", "expected"), KATHMANDU_QUIET)
def test_kathmandu_keeps_its_quarter_hour_offset_through_other_zones_dst_changes(kind, text, after, expected):
    _assert_fires(kind, text, "Asia/Kathmandu", after, expected)


def test_kathmandu_daily_job_runs_at_the_same_wall_time_every_day_of_a_year_with_no_notes():
    zone = ZoneInfo("Asia/Kathmandu")
    fires = fire_times(parse_time_of_day("02:30"), zone, datetime.fromisoformat("2026-01-01T00:00:00+05:45"), 365)
    assert {f.at.strftime("%H:%M %z") for f in fires} == {"02:30 +0545"}
    assert [f.note for f in fires] == [None] * 365
    assert fires[-1].at.isoformat() == "2026-12-31T02:30:00+05:45"
    gaps = {(b.utc - a.utc).total_seconds() for a, b in itertools.pairwise(fires)}
    assert gaps == {86400.0}


def test_kathmandu_interval_moves_its_wall_time_by_a_quarter_hour_in_1986():
    _assert_fires(
        "interval",
        "1d",
        "Asia/Kathmandu",
        "1985-12-30T09:00:00+05:30",
        ["1985-12-31T09:00:00+05:30", "1986-01-01T09:15:00+05:45", "1986-01-02T09:15:00+05:45"],
        anchor="1985-12-30T09:00:00+05:30",
    )


# -- DST notes ----------------------------------------------------------------------------------

NOTES = [
    pytest.param(
        ("daily", "02:30", None),
        "Europe/Berlin",
        "2026-03-28T12:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        DstNote.gap_end,
        "02:30 does not exist: moved to the end of the DST gap",
        id="gap-end",
    ),
    pytest.param(
        ("cron", "15 2 * * *", None),
        "Australia/Lord_Howe",
        "2026-10-03T12:00:00+10:30",
        "2026-10-04T02:30:00+11:00",
        DstNote.gap_end,
        "02:15 does not exist: moved to the end of the DST gap",
        id="gap-end-half-hour",
    ),
    pytest.param(
        ("cron", "5 0 * * *", None),
        "Asia/Kathmandu",
        "1985-12-31T12:00:00+05:30",
        "1986-01-01T00:15:00+05:45",
        DstNote.gap_end,
        "00:05 does not exist: moved to the end of the DST gap",
        id="gap-end-quarter-hour",
    ),
    pytest.param(
        ("cron", "30 1 * * *", None),
        "America/New_York",
        "2026-10-31T12:00:00-04:00",
        "2026-11-01T01:30:00-04:00",
        DstNote.fold_first,
        "first of two 01:30s (DST fold): runs once",
        id="fold-first-of-two",
    ),
    pytest.param(
        ("hourly", "30", None),
        "Australia/Sydney",
        "2026-04-05T02:00:00+11:00",
        "2026-04-05T02:30:00+11:00",
        DstNote.fold_first_pass,
        "repeated hour, first pass",
        id="wildcard-first-pass",
    ),
    pytest.param(
        ("hourly", "30", None),
        "Australia/Sydney",
        "2026-04-05T02:30:00+11:00",
        "2026-04-05T02:30:00+10:00",
        DstNote.fold_second_pass,
        "repeated hour, second pass",
        id="wildcard-second-pass",
    ),
    pytest.param(
        ("interval", "1h", "2026-03-08T00:30:00-05:00"),
        "America/New_York",
        "2026-03-08T01:30:00-05:00",
        "2026-03-08T03:30:00-04:00",
        DstNote.interval_shift,
        "crosses a DST change: wall time shifts",
        id="interval-shift",
    ),
    pytest.param(
        ("daily", "02:30", None),
        "Europe/Berlin",
        "2026-03-29T12:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        None,
        "",
        id="untouched-day-after",
    ),
    pytest.param(
        ("cron", "30 2 * * *", None),
        "Asia/Kathmandu",
        "2026-03-28T12:00:00+05:45",
        "2026-03-29T02:30:00+05:45",
        None,
        "",
        id="Kathmandu-untouched",
    ),
]


@pytest.mark.parametrize(("schedule", "zone", "after", "expected", "note", "sentence"), NOTES)
def test_dst_note_says_how_the_change_touched_the_fire_time(schedule, zone, after, expected, note, sentence):
    kind, text, anchor = schedule
    _check_table_row(zone, after, [expected])
    (fire,) = fire_times(_trigger(kind, text, anchor), ZoneInfo(zone), datetime.fromisoformat(after), 1)
    assert fire.at.isoformat() == expected
    assert fire.note is note
    assert fire.describe_note() == sentence


def test_reference_instant_in_another_zone_gives_the_same_fire_times():
    # 2026-03-29T00:30:00Z is 01:30+01:00 in Berlin and 20:30-04:00 the day before in New York.
    in_utc = _fires("cron", "*/30 * * * *", "Europe/Berlin", "2026-03-29T00:30:00+00:00", 3)
    in_new_york = _fires("cron", "*/30 * * * *", "Europe/Berlin", "2026-03-28T20:30:00-04:00", 3)
    expected = ["2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00", "2026-03-29T04:00:00+02:00"]
    _check_table_row("Europe/Berlin", "2026-03-29T00:30:00+00:00", expected)
    assert in_utc == in_new_york == expected
