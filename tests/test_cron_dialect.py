"""Cron dialect cases found by running cronsim's and croniter's own suites through our engine,
with Debian cron's answers (cron(5), entry.c): a ``*`` inside a list, steps of 0, whitespace
that is not a space, and the Quartz/cronsim spellings ``5L`` and ``LW``."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from flowyml_sched.errors import InvalidCronExpression
from flowyml_sched.timing import fire_times
from flowyml_sched.triggers import CronTrigger

UTC = timezone.utc
AFTER = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday


def fires(expression: str, count: int = 4) -> list[str]:
    return [
        f.at.strftime("%a %Y-%m-%d %H:%M") for f in fire_times(CronTrigger(expression), ZoneInfo("UTC"), AFTER, count)
    ]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # a * in a list takes every value of its field, wherever it stands in the list
        (
            "*,5 * * * *",
            ["Thu 2026-01-01 00:01", "Thu 2026-01-01 00:02", "Thu 2026-01-01 00:03", "Thu 2026-01-01 00:04"],
        ),
        (
            "5,* * * * *",
            ["Thu 2026-01-01 00:01", "Thu 2026-01-01 00:02", "Thu 2026-01-01 00:03", "Thu 2026-01-01 00:04"],
        ),
        (
            "0 *,3 * * *",
            ["Thu 2026-01-01 01:00", "Thu 2026-01-01 02:00", "Thu 2026-01-01 03:00", "Thu 2026-01-01 04:00"],
        ),
        (
            "0 0 *,1 * *",
            ["Fri 2026-01-02 00:00", "Sat 2026-01-03 00:00", "Sun 2026-01-04 00:00", "Mon 2026-01-05 00:00"],
        ),
        (
            "0 0 1 *,6 *",
            ["Sun 2026-02-01 00:00", "Sun 2026-03-01 00:00", "Wed 2026-04-01 00:00", "Fri 2026-05-01 00:00"],
        ),
        (
            "* * * * *,0",
            ["Thu 2026-01-01 00:01", "Thu 2026-01-01 00:02", "Thu 2026-01-01 00:03", "Thu 2026-01-01 00:04"],
        ),
        (
            "0 0 * * *,1",
            ["Fri 2026-01-02 00:00", "Sat 2026-01-03 00:00", "Sun 2026-01-04 00:00", "Mon 2026-01-05 00:00"],
        ),
        # cron(5): day-of-month and day-of-week are ANDed when either field starts with *, else ORed
        (
            "0 0 *,1 * 1",
            ["Mon 2026-01-05 00:00", "Mon 2026-01-12 00:00", "Mon 2026-01-19 00:00", "Mon 2026-01-26 00:00"],
        ),
        (
            "0 0 1,* * 1",
            ["Fri 2026-01-02 00:00", "Sat 2026-01-03 00:00", "Sun 2026-01-04 00:00", "Mon 2026-01-05 00:00"],
        ),
        (
            "0 0 1 * *,1",
            ["Sun 2026-02-01 00:00", "Sun 2026-03-01 00:00", "Wed 2026-04-01 00:00", "Fri 2026-05-01 00:00"],
        ),
    ],
)
def test_a_star_inside_a_list_takes_every_value_of_its_field(expression: str, expected: list[str]) -> None:
    assert fires(expression) == expected


def test_a_star_in_the_hour_list_is_not_a_fixed_time_across_dst() -> None:
    # 0 *,3: every hour, so the spring-forward gap has no 02:00 to move (a fixed time would)
    berlin = [f.at.isoformat() for f in fire_times(CronTrigger("0 *,3 * * *"), ZoneInfo("Europe/Berlin"),
                                                    datetime(2026, 3, 29, 0, 30, tzinfo=UTC), 3)]  # fmt: skip
    assert berlin == ["2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00", "2026-03-29T05:00:00+02:00"]


@pytest.mark.parametrize("expression", ["5-5/0 * * * *", "10-10/0 * * * *", "59-0/0 * * * *", "*/0 * * * *"])
def test_a_step_of_zero_is_refused_naming_the_field(expression: str) -> None:
    with pytest.raises(InvalidCronExpression, match=r"\(field minute = '.*'\): a step must be 1 or more"):
        CronTrigger(expression)


@pytest.mark.parametrize("space", ["\u00a0", "\u3000", "\u2003", "\u0085"])
def test_whitespace_other_than_spaces_and_tabs_is_refused_naming_it(space: str) -> None:
    with pytest.raises(InvalidCronExpression, match=f"whitespace U\\+{ord(space):04X}"):
        CronTrigger(f"0{space}0 * * *")


@pytest.mark.parametrize("spelling", ["5L", "FRIL", "fril", "L5"])
def test_the_last_friday_of_the_month_in_quartzs_and_croniters_spellings(spelling: str) -> None:
    assert fires(f"0 9 * * {spelling}") == [
        "Fri 2026-01-30 09:00",
        "Fri 2026-02-27 09:00",
        "Fri 2026-03-27 09:00",
        "Fri 2026-04-24 09:00",
    ]


def test_7l_is_the_last_sunday_as_7_is_sunday() -> None:
    assert fires("0 0 * * 7L", 2) == ["Sun 2026-01-25 00:00", "Sun 2026-02-22 00:00"]


def test_lw_is_the_last_monday_to_friday_of_the_month() -> None:
    # January 2026 ends on a Saturday, February on a Saturday, May on a Sunday, March on a Tuesday
    assert fires("0 18 LW * *", 5) == [
        "Fri 2026-01-30 18:00",
        "Fri 2026-02-27 18:00",
        "Tue 2026-03-31 18:00",
        "Thu 2026-04-30 18:00",
        "Fri 2026-05-29 18:00",
    ]


def test_l_and_lw_together_fire_on_both_days() -> None:
    assert fires("0 0 L,LW * *", 3) == ["Fri 2026-01-30 00:00", "Sat 2026-01-31 00:00", "Fri 2026-02-27 00:00"]
