"""Fire-time cases from public bug reports of other schedulers, with their right answers.

Each row: the schedule (kind, text), its timezone, the reference instant, the interval
anchor (for ``every``) and the fire times that must follow, strictly after the reference,
in order. Instants are compared as instants, with the offsets visible in every expected value.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from flowyml_sched.errors import InvalidCronExpression
from flowyml_sched.fields import trigger_of
from flowyml_sched.timing import fire_times
from flowyml_sched.triggers import parse_instant
from flowyml_sched.zones import get_zone

CASES = [
    pytest.param(
        ("cron", "0 8 * * 1"),
        "Europe/Amsterdam",
        "2017-10-23T08:00:00.685732+02:00",
        None,
        [
            "2017-10-30T08:00:00+01:00",
            "2017-11-06T08:00:00+01:00",
            "2017-11-13T08:00:00+01:00",
        ],
        id="F01_weekly_fixed_time_across_the_autumn_DST_change",
    ),
    pytest.param(
        ("cron", "1 2 * * *"),
        "Europe/Berlin",
        "2020-03-29T01:59:55+01:00",
        None,
        [
            "2020-03-29T03:00:00+02:00",
            "2020-03-30T02:01:00+02:00",
            "2020-03-31T02:01:00+02:00",
        ],
        id="F02_fixed_time_inside_the_spring-forward_gap",
    ),
    pytest.param(
        ("cron", "1 2 * * *"),
        "Europe/Berlin",
        "2020-03-28T12:00:00+01:00",
        None,
        [
            "2020-03-29T03:00:00+02:00",
            "2020-03-30T02:01:00+02:00",
        ],
        id="F02.1_fixed_time_inside_the_spring-forward_gap_(variant)",
    ),
    pytest.param(
        ("cron", "*/5 * * * *"),
        "Europe/Zurich",
        "2023-10-29T02:55:00+02:00",
        None,
        [
            "2023-10-29T02:00:00+01:00",
            "2023-10-29T02:05:00+01:00",
            "2023-10-29T02:10:00+01:00",
            "2023-10-29T02:15:00+01:00",
        ],
        id="F03_every-5-minutes_through_the_repeated_autumn_hour",
    ),
    pytest.param(
        ("cron", "*/5 * * * *"),
        "Europe/Zurich",
        "2023-10-29T02:30:00+01:00",
        None,
        [
            "2023-10-29T02:35:00+01:00",
            "2023-10-29T02:40:00+01:00",
        ],
        id="F03.1_every-5-minutes_through_the_repeated_autumn_hour_(variant)",
    ),
    pytest.param(
        ("cron", "* * * * *"),
        "America/New_York",
        "2023-11-05T01:58:00-04:00",
        None,
        [
            "2023-11-05T01:59:00-04:00",
            "2023-11-05T01:00:00-05:00",
            "2023-11-05T01:01:00-05:00",
        ],
        id="F03.2_every-5-minutes_through_the_repeated_autumn_hour_(variant)",
    ),
    pytest.param(
        ("daily", "02:00"),
        "Europe/Berlin",
        "2023-10-28T12:00:00+02:00",
        None,
        [
            "2023-10-29T02:00:00+02:00",
            "2023-10-30T02:00:00+01:00",
            "2023-10-31T02:00:00+01:00",
        ],
        id="F04_daily_fixed_time_on_the_autumn_change_day_must_run_once",
    ),
    pytest.param(
        ("cron", "30 1 * * *"),
        "America/New_York",
        "2026-10-31T12:00:00-04:00",
        None,
        [
            "2026-11-01T01:30:00-04:00",
            "2026-11-02T01:30:00-05:00",
            "2026-11-03T01:30:00-05:00",
        ],
        id="F04.1_daily_fixed_time_on_the_autumn_change_day_must_run_once_(variant)",
    ),
    pytest.param(
        ("hourly", "0"),
        "US/Pacific",
        "2024-11-03T00:30:00-07:00",
        None,
        [
            "2024-11-03T01:00:00-07:00",
            "2024-11-03T01:00:00-08:00",
            "2024-11-03T02:00:00-08:00",
            "2024-11-03T03:00:00-08:00",
        ],
        id="F05_hourly_must_fire_in_both_passes_of_the_repeated_hour",
    ),
    pytest.param(
        ("daily", "16:04"),
        "America/New_York",
        "2025-03-08T16:04:00-05:00",
        None,
        [
            "2025-03-09T16:04:00-04:00",
            "2025-03-10T16:04:00-04:00",
            "2025-03-11T16:04:00-04:00",
        ],
        id="F06_daily_afternoon_time_on_the_spring-forward_day",
    ),
    pytest.param(
        ("cron", "0 8 * * *"),
        "CET",
        "2016-03-26T21:00:00+01:00",
        None,
        [
            "2016-03-27T08:00:00+02:00",
            "2016-03-28T08:00:00+02:00",
        ],
        id="F06.1_daily_afternoon_time_on_the_spring-forward_day_(variant)",
    ),
    pytest.param(
        ("cron", "30 2-23/4 * * *"),
        "Australia/Sydney",
        "2019-10-06T00:00:00+10:00",
        None,
        [
            "2019-10-06T03:00:00+11:00",
            "2019-10-06T06:30:00+11:00",
            "2019-10-06T10:30:00+11:00",
            "2019-10-06T14:30:00+11:00",
            "2019-10-06T18:30:00+11:00",
        ],
        id="F07_every-4-hours_starting_inside_the_spring-forward_gap",
    ),
    pytest.param(
        ("cron", "0 0 8-9 * 0#2"),
        "UTC",
        "2021-01-01T00:00:00+00:00",
        None,
        [
            "2021-01-08T00:00:00+00:00",
            "2021-01-09T00:00:00+00:00",
            "2021-01-10T00:00:00+00:00",
            "2021-02-08T00:00:00+00:00",
            "2021-02-09T00:00:00+00:00",
            "2021-02-14T00:00:00+00:00",
        ],
        id="F08_day-of-month_list_OR_nth_weekday",
    ),
    pytest.param(
        ("cron", "0 4 1 * 1-5"),
        "UTC",
        "2019-11-28T12:00:00+00:00",
        None,
        [
            "2019-11-29T04:00:00+00:00",
            "2019-12-01T04:00:00+00:00",
            "2019-12-02T04:00:00+00:00",
            "2019-12-03T04:00:00+00:00",
            "2019-12-04T04:00:00+00:00",
        ],
        id="F09_day-of-month_OR_day-of-week_(POSIX)",
    ),
    pytest.param(
        ("cron", "30 4 1,15 * 5"),
        "UTC",
        "2024-01-01T00:00:00+00:00",
        None,
        [
            "2024-01-01T04:30:00+00:00",
            "2024-01-05T04:30:00+00:00",
            "2024-01-12T04:30:00+00:00",
            "2024-01-15T04:30:00+00:00",
            "2024-01-19T04:30:00+00:00",
        ],
        id="F09.1_day-of-month_OR_day-of-week_(POSIX)_(variant)",
    ),
    pytest.param(
        ("cron", "0 0 L * *"),
        "UTC",
        "2015-09-30T00:00:00+00:00",
        None,
        [
            "2015-10-31T00:00:00+00:00",
            "2015-11-30T00:00:00+00:00",
            "2015-12-31T00:00:00+00:00",
            "2016-01-31T00:00:00+00:00",
            "2016-02-29T00:00:00+00:00",
        ],
        id="F10_last_day_of_month",
    ),
    pytest.param(
        ("cron", "0 0 31,L * *"),
        "UTC",
        "2024-08-12T00:00:00+00:00",
        None,
        [
            "2024-08-31T00:00:00+00:00",
            "2024-09-30T00:00:00+00:00",
            "2024-10-31T00:00:00+00:00",
            "2024-11-30T00:00:00+00:00",
            "2024-12-31T00:00:00+00:00",
        ],
        id="F10.1_last_day_of_month_(variant)",
    ),
    pytest.param(
        ("cron", "0 9 29 2 *"),
        "UTC",
        "2016-02-29T09:00:00+00:00",
        None,
        [
            "2020-02-29T09:00:00+00:00",
            "2024-02-29T09:00:00+00:00",
            "2028-02-29T09:00:00+00:00",
        ],
        id="F11_29_February_only",
    ),
    pytest.param(
        ("cron", "0 9 1W * *"),
        "UTC",
        "2025-09-10T00:00:00+00:00",
        None,
        [
            "2025-10-01T09:00:00+00:00",
            "2025-11-03T09:00:00+00:00",
            "2025-12-01T09:00:00+00:00",
            "2026-01-01T09:00:00+00:00",
            "2026-02-02T09:00:00+00:00",
        ],
        id="F12_nearest_weekday_(W)",
    ),
    pytest.param(
        ("cron", "0 9 15W * *"),
        "UTC",
        "2025-09-10T00:00:00+00:00",
        None,
        [
            "2025-09-15T09:00:00+00:00",
            "2025-10-15T09:00:00+00:00",
            "2025-11-14T09:00:00+00:00",
            "2025-12-15T09:00:00+00:00",
            "2026-01-15T09:00:00+00:00",
        ],
        id="F12.1_nearest_weekday_(W)_(variant)",
    ),
    pytest.param(
        ("cron", "0 4 1/5 * *"),
        "Asia/Seoul",
        "2022-02-28T01:00:00+09:00",
        None,
        [
            "2022-03-01T04:00:00+09:00",
            "2022-03-06T04:00:00+09:00",
            "2022-03-11T04:00:00+09:00",
            "2022-03-16T04:00:00+09:00",
        ],
        id="F13_day-of-month_step_across_a_month_end",
    ),
    pytest.param(
        ("cron", "0,30 * * * *"),
        "UTC",
        "2018-05-15T09:00:30+00:00",
        None,
        [
            "2018-05-15T09:30:00+00:00",
            "2018-05-15T10:00:00+00:00",
            "2018-05-15T10:30:00+00:00",
        ],
        id="F14_next_is_strictly_after_the_reference_instant",
    ),
    pytest.param(
        ("cron", "32 16 * * *"),
        "UTC",
        "2018-05-29T16:32:01+00:00",
        None,
        [
            "2018-05-30T16:32:00+00:00",
            "2018-05-31T16:32:00+00:00",
        ],
        id="F14.1_next_is_strictly_after_the_reference_instant_(variant)",
    ),
    pytest.param(
        ("cron", "0 3 * * *"),
        "UTC",
        "2020-01-01T03:00:00.400000+00:00",
        None,
        [
            "2020-01-02T03:00:00+00:00",
            "2020-01-03T03:00:00+00:00",
        ],
        id="F14.2_next_is_strictly_after_the_reference_instant_(variant)",
    ),
    pytest.param(
        ("daily", "00:00"),
        "US/Central",
        "2023-04-14T04:50:31+02:00",
        None,
        [
            "2023-04-14T00:00:00-05:00",
            "2023-04-15T00:00:00-05:00",
            "2023-04-16T00:00:00-05:00",
        ],
        id="F15_daily_in_a_zone_far_from_the_host_zone",
    ),
    pytest.param(
        ("every", "P7D"),
        "Europe/Brussels",
        "2019-03-26T16:00:00+01:00",
        "2019-03-26T16:00:00+01:00",
        [
            "2019-04-02T17:00:00+02:00",
            "2019-04-09T17:00:00+02:00",
            "2019-04-16T17:00:00+02:00",
        ],
        id="F16_interval_is_elapsed_time_across_DST",
    ),
    pytest.param(
        ("every", "2h"),
        "America/New_York",
        "2024-03-10T01:30:00-05:00",
        "2024-03-10T01:30:00-05:00",
        [
            "2024-03-10T04:30:00-04:00",
            "2024-03-10T06:30:00-04:00",
            "2024-03-10T08:30:00-04:00",
        ],
        id="F16.1_interval_is_elapsed_time_across_DST_(variant)",
    ),
    pytest.param(
        ("every", "2h"),
        "America/New_York",
        "2024-11-03T00:30:00-04:00",
        "2024-11-03T00:30:00-04:00",
        [
            "2024-11-03T01:30:00-05:00",
            "2024-11-03T03:30:00-05:00",
            "2024-11-03T05:30:00-05:00",
        ],
        id="F16.2_interval_is_elapsed_time_across_DST_(variant)",
    ),
    pytest.param(
        ("cron", "0 0 1 * *"),
        "UTC",
        "2016-12-31T23:59:59.070603+00:00",
        None,
        [
            "2017-01-01T00:00:00+00:00",
            "2017-02-01T00:00:00+00:00",
            "2017-03-01T00:00:00+00:00",
        ],
        id="F17_monthly_from_one_second_before_the_slot",
    ),
]


@pytest.mark.parametrize(("schedule", "zone", "after", "anchor", "expected"), CASES)
def test_field_case_fires_at_the_right_instants(schedule, zone, after, anchor, expected):
    kind, text = schedule
    start = parse_instant(after)
    trigger = trigger_of({kind: text, "anchor": anchor})
    got = [f.at for f in fire_times(trigger, get_zone(zone), start, len(expected))]
    want = [datetime.fromisoformat(e) for e in expected]
    assert [g.timestamp() for g in got] == [w.timestamp() for w in want]
    assert [g.utcoffset() for g in got] == [w.utcoffset() for w in want]


def test_a_date_that_never_exists_is_refused_at_once():
    with pytest.raises(InvalidCronExpression, match="no day can ever match"):
        trigger_of({"cron": "0 0 30 2 *"})
