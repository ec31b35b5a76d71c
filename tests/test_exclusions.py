"""Calendar exclusions: which local dates are excluded (holiday tables written by hand, checked
against python-holidays), what becomes of a fire time on one (skip, next or previous business
day, DST rules as everywhere), properties checked by Hypothesis against an independent walk,
and the bad input each form refuses."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import holiday_tables
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowyml_sched.errors import InvalidExclusion, NeverFires
from flowyml_sched.exclusions import DateRange, Exclusions, HolidayCalendar, OnExcluded, exclusions_of
from flowyml_sched.model import Schedule
from flowyml_sched.timing import DstNote, excluded_between, fire_times, fire_times_between, next_fire_time
from flowyml_sched.triggers import CronTrigger, DailyTrigger, HourlyTrigger, IntervalTrigger, Trigger

UTC = timezone.utc
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
BERLIN = ZoneInfo("Europe/Berlin")

CALENDARS = {
    "US_NY": HolidayCalendar(country="US", subdivision="NY"),
    "GB_ENG": HolidayCalendar(country="GB", subdivision="ENG"),
    "DE_BY": HolidayCalendar(country="DE", subdivision="BY"),
    "NYSE": HolidayCalendar(market="NYSE"),
}


def days_of(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=n) for n in range((date(year + 1, 1, 1) - first).days)]


def locals_of(fires: list, zone: ZoneInfo) -> list[str]:
    return [f.at.astimezone(zone).strftime("%a %Y-%m-%d %H:%M%z") for f in fires]


# -- which dates are excluded ----------------------------------------------------------------


@pytest.mark.parametrize("calendar", sorted(CALENDARS))
@pytest.mark.parametrize("year", [2026, 2027])
def test_a_holiday_calendar_excludes_the_listed_dates_and_only_those(calendar: str, year: int) -> None:
    table = {day: name for day, name in getattr(holiday_tables, calendar).items() if day.year == year}
    exclusions = Exclusions(holidays=CALENDARS[calendar])

    excluded = {day for day in days_of(year) if exclusions.reason(day) is not None}

    assert excluded == set(table)
    for day in table:  # the reason is the holiday's name (several joined with "; ")
        assert set(table[day].split("; ")) <= set(exclusions.reason(day).split("; ")), day


def test_dates_and_ranges_exclude_exactly_their_days_both_ends_included() -> None:
    exclusions = exclusions_of(
        {"dates": ["2026-12-24", "2026-12-31"], "ranges": [{"from": "2026-08-03", "to": "2026-08-14"}]}
    )

    excluded = [day for day in days_of(2026) if exclusions.reason(day) is not None]

    assert excluded == [date(2026, 8, 3) + timedelta(days=n) for n in range(12)] + [
        date(2026, 12, 24),
        date(2026, 12, 31),
    ]
    assert exclusions.reason(date(2026, 12, 24)) == "excluded date"
    assert exclusions.reason(date(2026, 8, 3)) == "excluded range 2026-08-03..2026-08-14"


# -- skip ------------------------------------------------------------------------------------


def test_the_issues_weekday_report_skips_thanksgiving_christmas_eve_and_the_summer_range() -> None:
    exclusions = exclusions_of(
        {
            "holidays": {"country": "US", "subdivision": "NY"},
            "dates": ["2026-12-24", "2026-12-31"],
            "ranges": [{"from": "2026-08-03", "to": "2026-08-14"}],
        },
        "skip",
    )
    weekdays = CronTrigger("0 9 * * 1-5")

    november = fire_times_between(
        weekdays,
        NEW_YORK,
        datetime(2026, 11, 23, tzinfo=UTC),
        datetime(2026, 11, 28, tzinfo=UTC),
        exclusions=exclusions,
    )
    december = fire_times_between(
        weekdays, NEW_YORK, datetime(2026, 12, 22, tzinfo=UTC), datetime(2027, 1, 5, tzinfo=UTC), exclusions=exclusions
    )
    august = fire_times_between(
        weekdays, NEW_YORK, datetime(2026, 7, 31, tzinfo=UTC), datetime(2026, 8, 18, tzinfo=UTC), exclusions=exclusions
    )

    assert [f.at.day for f in november] == [23, 24, 25, 27]  # Thanksgiving, Thu 26, skipped
    assert [f.at.date().isoformat() for f in december] == [
        "2026-12-22", "2026-12-23", "2026-12-28", "2026-12-29", "2026-12-30", "2027-01-04",
    ]  # fmt: skip
    assert [f.at.date().isoformat() for f in august] == ["2026-07-31", "2026-08-17"]
    assert all(f.moved_from is None and f.at.hour == 9 for f in november + december + august)


def test_an_every_minute_cron_skips_a_whole_holiday_in_one_step() -> None:
    exclusions = Exclusions(holidays=CALENDARS["US_NY"])
    before_thanksgiving = datetime(2026, 11, 25, 23, 59, tzinfo=NEW_YORK)

    fire = next_fire_time(CronTrigger("* * * * *"), NEW_YORK, before_thanksgiving, exclusions)

    assert fire.at == datetime(2026, 11, 27, 0, 0, tzinfo=NEW_YORK)


def test_a_schedule_whose_every_fire_time_is_excluded_is_refused_as_never_firing() -> None:
    christmas = CronTrigger("0 9 25 12 *")

    with pytest.raises(NeverFires, match="10 years"):
        next_fire_time(christmas, NEW_YORK, datetime(2026, 1, 1, tzinfo=UTC), Exclusions(holidays=CALENDARS["US_NY"]))


# -- moving to a business day ----------------------------------------------------------------


def rule(calendar: str, on_excluded: OnExcluded, **extra: object) -> Exclusions:
    return Exclusions(holidays=CALENDARS[calendar], on_excluded=on_excluded, **extra)  # type: ignore[arg-type]


def test_next_business_day_crosses_a_long_weekend() -> None:
    """Good Friday and Easter Monday 2026 are bank holidays in England: a Friday run moves to Tuesday."""
    fridays = CronTrigger("0 16 * * 5")

    fires = fire_times(
        fridays, LONDON, datetime(2026, 3, 28, tzinfo=UTC), 3, rule("GB_ENG", OnExcluded.next_business_day)
    )

    assert locals_of(fires, LONDON) == [
        "Tue 2026-04-07 16:00+0100",
        "Fri 2026-04-10 16:00+0100",
        "Fri 2026-04-17 16:00+0100",
    ]
    assert fires[0].moved_from == datetime(2026, 4, 3, 16, 0, tzinfo=LONDON)
    assert fires[0].reason == "Good Friday"
    assert fires[0].describe_note() == "moved from Fri 2026-04-03 (Good Friday)"


def test_next_business_day_crosses_a_month_and_a_year_end() -> None:
    """New Year's Day 2028 is a Saturday: New York observes it on Fri 2027-12-31, so a run on the
    31st of each month moves to Monday 2028-01-03."""
    month_end = CronTrigger("0 18 31 * *")

    fires = fire_times(
        month_end, NEW_YORK, datetime(2027, 12, 1, tzinfo=UTC), 2, rule("US_NY", OnExcluded.next_business_day)
    )

    assert locals_of(fires, NEW_YORK) == ["Mon 2028-01-03 18:00-0500", "Mon 2028-01-31 18:00-0500"]
    assert fires[0].reason == "New Year's Day (observed)"


def test_previous_business_day_crosses_a_month_end_backwards() -> None:
    """The Summer bank holiday, Mon 2026-08-31: a run on the 31st moves to Fri 2026-08-28."""
    fires = fire_times(
        CronTrigger("0 9 31 * *"),
        LONDON,
        datetime(2026, 8, 1, tzinfo=UTC),
        2,
        rule("GB_ENG", OnExcluded.previous_business_day),
    )

    assert locals_of(fires, LONDON) == ["Fri 2026-08-28 09:00+0100", "Sat 2026-10-31 09:00+0000"]


def test_a_moved_fire_time_merges_into_the_schedules_own_fire_time_on_that_day() -> None:
    weekdays = CronTrigger("0 9 * * 1-5")
    exclusions = rule("US_NY", OnExcluded.next_business_day)
    after = datetime(2026, 11, 23, tzinfo=UTC)

    fires = fire_times_between(weekdays, NEW_YORK, after, datetime(2026, 11, 28, tzinfo=UTC), exclusions=exclusions)
    excluded = excluded_between(weekdays, NEW_YORK, after, datetime(2026, 11, 28, tzinfo=UTC), exclusions)

    assert [f.at.day for f in fires] == [23, 24, 25, 27]  # Thursday's run is Friday's: one run, not two
    assert fires[-1].moved_from is None  # Friday's own
    assert [(e.fire.at.day, e.reason, e.moved_to.at.day, e.merged) for e in excluded] == [
        (26, "Thanksgiving Day", 27, True)
    ]
    assert excluded[0].describe() == "Thanksgiving Day: moved to Fri 2026-11-27 09:00, which runs anyway"


def test_a_fire_time_moved_past_now_is_still_ahead_when_asked_after_its_own_instant() -> None:
    """Thursday's Thanksgiving run moved to Friday is the next fire time after Thursday noon."""
    thursdays = CronTrigger("0 9 * * 4")
    exclusions = rule("US_NY", OnExcluded.next_business_day)

    fire = next_fire_time(thursdays, NEW_YORK, datetime(2026, 11, 26, 12, 0, tzinfo=NEW_YORK), exclusions)

    assert fire.at == datetime(2026, 11, 27, 9, 0, tzinfo=NEW_YORK)
    assert fire.moved_from == datetime(2026, 11, 26, 9, 0, tzinfo=NEW_YORK)


def test_a_holiday_on_a_dst_day_is_excluded_by_its_local_date_and_moves_to_its_asked_wall_time() -> None:
    """Easter Sunday 2027 (a holiday in Brandenburg) is the day Berlin springs forward: 02:30
    does not exist that day (rule (a): 03:00+02:00). Skipped, it is gone; moved, it lands on
    Tuesday (Easter Monday is a holiday too) at the 02:30 it asked for, no longer in a gap."""
    sundays = CronTrigger("30 2 * * 0")
    brandenburg = HolidayCalendar(country="DE", subdivision="BB")
    after = datetime(2027, 3, 20, tzinfo=UTC)
    assert next_fire_time(sundays, BERLIN, datetime(2027, 3, 27, tzinfo=UTC)).note is DstNote.gap_end

    skipped = fire_times(sundays, BERLIN, after, 2, Exclusions(holidays=brandenburg))
    moved = fire_times(
        sundays, BERLIN, after, 3, Exclusions(holidays=brandenburg, on_excluded=OnExcluded.next_business_day)
    )

    assert locals_of(skipped, BERLIN) == ["Sun 2027-03-21 02:30+0100", "Sun 2027-04-04 02:30+0200"]
    assert locals_of(moved, BERLIN) == [
        "Sun 2027-03-21 02:30+0100",
        "Tue 2027-03-30 02:30+0200",
        "Sun 2027-04-04 02:30+0200",
    ]
    assert moved[1].moved_from == datetime(2027, 3, 28, 3, 0, tzinfo=BERLIN) and moved[1].note is None


def test_a_move_onto_a_dst_gap_lands_at_the_gaps_end() -> None:
    """Jerusalem springs forward on a Friday (2027-03-26, 02:00 -> 03:00): a Monday 02:30 run
    moved back to that Friday asks for a wall time that does not exist, so it runs at 03:00,
    the first instant after the gap (rule (a))."""
    jerusalem = ZoneInfo("Asia/Jerusalem")
    mondays = CronTrigger("30 2 * * 1")
    exclusions = Exclusions(dates=(date(2027, 3, 29),), on_excluded=OnExcluded.previous_business_day)

    fire = next_fire_time(mondays, jerusalem, datetime(2027, 3, 23, tzinfo=UTC), exclusions)

    assert fire.note is DstNote.gap_end and fire.wall == datetime(2027, 3, 26, 2, 30)
    assert fire.at.astimezone(jerusalem).strftime("%a %Y-%m-%d %H:%M%z") == "Fri 2027-03-26 03:00+0300"
    assert (
        fire.describe_note()
        == "moved from Mon 2027-03-29 (excluded date); 02:30 does not exist: moved to the end of the DST gap"
    )


def test_previous_business_day_finds_a_later_fire_time_moved_to_before_an_earlier_one() -> None:
    """Every 31 h from Thu 2026-01-01 20:00 New York: Mon 17:00, then Wed 00:00. With Mon to Wed
    excluded both move back to Fri 2026-01-02, Wednesday's (00:00) before Monday's (17:00)."""
    every_31h = IntervalTrigger(timedelta(hours=31), datetime(2026, 1, 1, 20, 0, tzinfo=NEW_YORK))
    exclusions = Exclusions(
        ranges=(DateRange(date(2026, 1, 5), date(2026, 1, 7)),), on_excluded=OnExcluded.previous_business_day
    )

    fires = fire_times(every_31h, NEW_YORK, datetime(2026, 1, 1, 21, 0, tzinfo=NEW_YORK), 4, exclusions)

    assert locals_of(fires, NEW_YORK) == [
        "Fri 2026-01-02 00:00-0500",
        "Fri 2026-01-02 17:00-0500",
        "Sat 2026-01-03 03:00-0500",
        "Sun 2026-01-04 10:00-0500",
    ]


# -- properties ------------------------------------------------------------------------------

ZONES = ["America/New_York", "Europe/Berlin", "Australia/Sydney", "Asia/Jerusalem", "Africa/Cairo", "UTC"]
TRIGGERS: list[Trigger] = [
    CronTrigger("0 9 * * 1-5"),
    CronTrigger("30 2 * * *"),
    CronTrigger("15 */6 * * *"),
    DailyTrigger(23, 45),
    HourlyTrigger(5),
    CronTrigger("0 18 L * *"),
    IntervalTrigger(timedelta(days=1, hours=7), datetime(2026, 1, 1, 3, 0, tzinfo=UTC)),
]
START = date(2026, 1, 1)

days = st.integers(min_value=0, max_value=700).map(lambda n: START + timedelta(days=n))
ranges = st.tuples(days, st.integers(min_value=0, max_value=20)).map(
    lambda p: DateRange(p[0], p[0] + timedelta(days=p[1]))
)
exclusion_sets = st.builds(
    Exclusions,
    holidays=st.sampled_from([None, *CALENDARS.values()]),
    dates=st.lists(days, max_size=30).map(tuple),
    ranges=st.lists(ranges, max_size=4).map(tuple),
    on_excluded=st.sampled_from(list(OnExcluded)),
)
PROPERTIES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def business_day(exclusions: Exclusions, day: date, step: int) -> date:
    """An independent walk: the first Monday-Friday in direction ``step`` not excluded."""
    day += timedelta(days=step)
    while day.weekday() >= 5 or exclusions.reason(day) is not None:
        day += timedelta(days=step)
    return day


@PROPERTIES
@given(
    exclusions=exclusion_sets,
    zone_name=st.sampled_from(ZONES),
    trigger=st.sampled_from(TRIGGERS),
    offset=st.integers(min_value=0, max_value=500 * 24),
)
def test_fire_times_skip_or_move_exactly_the_excluded_ones_and_still_strictly_increase(
    exclusions: Exclusions, zone_name: str, trigger: Trigger, offset: int
) -> None:
    zone = ZoneInfo(zone_name)
    after = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=offset)
    until = after + timedelta(days=40)

    fires = fire_times_between(trigger, zone, after, until, exclusions=exclusions)

    utcs = [f.utc for f in fires]
    assert all(a < b for a, b in itertools.pairwise(utcs)), "fire times strictly increase"
    assert all(f.utc > after for f in fires)
    assert all(exclusions.reason(f.at.date()) is None for f in fires), "no fire time on an excluded date"
    # the same set, built independently from the trigger's own fire times (a margin either
    # side, for the moves across the window's edges)
    raw = fire_times_between(trigger, zone, after - timedelta(days=60), until + timedelta(days=60))
    expected: set[datetime] = set()
    for fire in raw:
        day = fire.at.date()
        if exclusions.reason(day) is None:
            expected.add(fire.utc)
        elif exclusions.on_excluded is not OnExcluded.skip:
            target = business_day(exclusions, day, 1 if exclusions.on_excluded is OnExcluded.next_business_day else -1)
            wall = datetime.combine(target, (fire.wall or fire.at.replace(tzinfo=None)).time())
            if zone.utcoffset(wall.replace(fold=0)) != zone.utcoffset(wall.replace(fold=1)):
                continue  # a DST gap or fold on a business day: the engine's rules (a), (b), tested above
            expected.add(wall.replace(tzinfo=zone).astimezone(UTC))
    inside = {t for t in expected if after < t <= until}
    assert set(utcs) >= inside
    assert set(utcs) - inside <= {f.utc for f in fires if f.note is not None}
    # asked from any instant (each of the trigger's own fire times in the window, where a
    # moved fire time may lie ahead), the next fire time is the first of these after it
    inside_raw = [fire for fire in raw if after <= fire.utc]
    for fire in inside_raw[:: max(1, len(inside_raw) // 40)]:  # at most about 40 of them
        ahead = next((t for t in utcs if t > fire.utc), None)
        if ahead is not None:
            assert next_fire_time(trigger, zone, fire.at, exclusions).utc == ahead, fire.at


@PROPERTIES
@given(exclusions=exclusion_sets, trigger=st.sampled_from(TRIGGERS[:5]), offset=st.integers(0, 500 * 24))
def test_a_moved_fire_time_lands_on_a_business_day_and_names_the_one_it_came_from(
    exclusions: Exclusions, trigger: Trigger, offset: int
) -> None:
    after = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=offset)

    for fire in fire_times(trigger, NEW_YORK, after, 20, exclusions):
        if fire.moved_from is not None:
            assert exclusions.is_business_day(fire.at.date())
            assert fire.reason == exclusions.reason(fire.moved_from.date())


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"holidays": {"country": "XX"}}, "invalid holidays country 'XX'"),
        ({"holidays": {"country": "Germany"}}, "did you mean DE"),
        ({"holidays": "US-XY"}, "invalid holidays subdivision of US 'XY'"),
        ({"holidays": {"market": "NYS"}}, "did you mean XNYS or NYSE"),
        (
            {"holidays": {"country": "US", "market": "NYSE"}},
            "invalid holidays 'US, NYSE': give a country or a market, not both",
        ),
        ({"holidays": {"subdivision": "NY"}}, "give a country (with an optional subdivision) or a market"),
        ({"dates": ["2026-02-30"]}, "invalid exclude dates '2026-02-30': it is not a date; expected YYYY-MM-DD"),
        ({"dates": "2026-12-24"}, "expected a list"),
        (
            {"ranges": [{"from": "2026-08-14", "to": "2026-08-03"}]},
            "'2026-08-14..2026-08-03': it ends before it starts",
        ),
        ({"ranges": ["2026-01-01..2040-01-01"]}, "longer than 1830 days"),
        ({"ranges": ["2026-01-01..2029-01-01", "2029-01-02..2032-01-01"]}, "2192 days in a row, more than 1830"),
        ({"dates": ["20261224"]}, "it is not a date"),
        ({"dates": ["1700-01-01"]}, "its year is outside 1800-9000"),
        ({"holiday": "US"}, "invalid exclude key 'holiday'"),
    ],
)
def test_bad_exclusions_are_refused_naming_the_value_and_what_would_be_valid(fields: dict, message: str) -> None:
    with pytest.raises(InvalidExclusion) as raised:
        exclusions_of(fields)
    assert message in str(raised.value)


def test_moving_the_fire_times_of_an_interval_shorter_than_a_day_is_refused_saying_why() -> None:
    every_hour = IntervalTrigger(timedelta(hours=1), datetime(2026, 1, 1, tzinfo=UTC))
    holidays = Exclusions(holidays=CALENDARS["US_NY"], on_excluded=OnExcluded.next_business_day)

    with pytest.raises(
        InvalidExclusion,
        match="shorter than a day: only the fire times of a schedule that fires at most once a day move",
    ):
        Schedule("s", "pipelines_for_tests:ok", every_hour, exclusions=holidays)
    Schedule(
        "s", "pipelines_for_tests:ok", every_hour, exclusions=Exclusions(holidays=CALENDARS["US_NY"])
    )  # skip is fine


@pytest.mark.parametrize(
    "trigger", [HourlyTrigger(5), CronTrigger("*/15 * * * *"), CronTrigger("0 9,17 * * 6")], ids=str
)
def test_moving_the_fire_times_of_any_schedule_that_fires_more_than_once_a_day_is_refused(trigger: Trigger) -> None:
    moving = Exclusions(dates=(date(2026, 12, 24),), on_excluded=OnExcluded.previous_business_day)

    with pytest.raises(InvalidExclusion, match="fires more than once a day"):
        Schedule("s", "pipelines_for_tests:ok", trigger, exclusions=moving)
    Schedule("s", "pipelines_for_tests:ok", CronTrigger("30 2 * * 6"), exclusions=moving)  # once a day moves


def test_an_interval_of_years_with_an_exclusion_far_from_it_is_no_schedule_that_never_fires() -> None:
    every_4000_days = IntervalTrigger(timedelta(days=4000), datetime(2026, 1, 1, tzinfo=UTC))
    exclusions = Exclusions(dates=(date(2030, 1, 1),))

    fire = next_fire_time(every_4000_days, UTC, datetime(2026, 6, 1, tzinfo=UTC), exclusions)

    assert fire.at == datetime(2036, 12, 14, tzinfo=UTC)
