"""Properties of the fire-time engine, checked by Hypothesis over zones with odd DST rules.

Cron expressions are generated together with the sets of values they stand for, so every
check below uses an independent reading of the expression, never the engine's own parser.
The strongest check, :func:`test_cron_fire_times_equal_a_minute_by_minute_scan_of_the_wall_clock`,
walks the zone's wall clock minute by minute and applies the rules literally:

- a wildcard schedule fires at every instant whose wall time matches;
- a fixed-time schedule fires at the instant the wall clock first reaches a matching wall time
  (a jump over a gap reaches every wall time inside it; the second pass of a fold reaches none).

Instants are compared in UTC. Every transition of these zones since 1980 falls on a whole
minute, so scanning whole minutes sees every instant a fire time can have.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from zone_transitions import transitions

from flowyml_sched.errors import InvalidCronExpression
from flowyml_sched.timing import fire_times, fire_times_between, iter_fire_times, next_fire_time
from flowyml_sched.triggers import CronTrigger, DailyTrigger, HourlyTrigger, IntervalTrigger

UTC = timezone.utc
ONE_MINUTE = timedelta(minutes=1)
ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "America/St_Johns",
    "America/Santiago",
    "America/Havana",
    "Antarctica/Troll",
    "Pacific/Apia",
    "UTC",
]
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _transitions(zone_name: str) -> tuple[datetime, ...]:
    return transitions(zone_name, 2036)


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    """Naive wall time of an instant in the zone."""
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


# -- generated cron expressions with their meaning ---------------------------------------------


@dataclass(frozen=True)
class Cron:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_and: bool
    fixed_time: bool

    def matches(self, wall: datetime) -> bool:
        """cron(8) on a naive wall time: minute, hour, month, then day-of-month OR/AND day-of-week."""
        if wall.minute not in self.minutes or wall.hour not in self.hours or wall.month not in self.months:
            return False
        dom = wall.day in self.days
        dow = (wall.weekday() + 1) % 7 in self.weekdays
        return (dom and dow) if self.days_and else (dom or dow)


@st.composite
def _field(draw, low: int, high: int, names: list[str] | None = None, first: int = 0, star: bool = True):
    """(text, values) for one cron field; ``names`` spell values ``first``, ``first + 1``, ..."""

    def spell(value: int) -> str:
        if names and 0 <= value - first < len(names) and draw(st.booleans()):
            return names[value - first]
        return str(value)

    kinds = ["star", "star-step", "values", "range", "range-step"] if star else ["values", "range", "range-step"]
    kind = draw(st.sampled_from(kinds))
    if kind == "star":
        return "*", set(range(low, high + 1))
    if kind == "star-step":
        step = draw(st.integers(1, (high - low + 1) // 2))
        return f"*/{step}", set(range(low, high + 1, step))
    if kind == "values":
        values = draw(st.lists(st.integers(low, high), min_size=1, max_size=4, unique=True))
        return ",".join(spell(v) for v in values), set(values)
    a = draw(st.integers(low, high))
    b = draw(st.integers(a, high))
    if kind == "range":
        return f"{spell(a)}-{spell(b)}", set(range(a, b + 1))
    step = draw(st.integers(1, max(1, b - a)))
    return f"{a}-{b}/{step}", set(range(a, b + 1, step))


@st.composite
def crons(draw, frequent: bool = False) -> Cron:
    """Random 5-field expressions, half fixed-time, half wildcard; ``frequent`` ones fire every
    day (days and months ``*``)."""
    if draw(st.booleans()):  # fixed time: neither minute nor hour starts with "*"
        minute, minutes = draw(_field(0, 59, star=False))
        hour, hours = draw(_field(0, 23, star=False))
    else:
        minute, minutes = draw(_field(0, 59))
        hour, hours = draw(_field(0, 23))
    if frequent:
        dom, days = "*", set(range(1, 32))
        month, months = "*", set(range(1, 13))
        dow, weekdays = "*", set(range(7))
    else:
        dom, days = draw(_field(1, 31))
        month, months = draw(_field(1, 12, MONTHS, first=1))
        dow, weekdays = draw(_field(0, 7, DAYS))  # 7 is Sunday, like 0
    text = f"{minute} {hour} {dom} {month} {dow}"
    try:
        CronTrigger(text)
    except InvalidCronExpression:
        reject()  # never fires (30 February): refused at once, tested elsewhere
    return Cron(
        text=text,
        minutes=frozenset(minutes),
        hours=frozenset(hours),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset(v % 7 for v in weekdays),
        days_and=dom.startswith("*") or dow.startswith("*"),
        fixed_time=not minute.startswith("*") and not hour.startswith("*"),
    )


zones = st.sampled_from(ZONES)


@st.composite
def instants_near_transitions(draw, zone_name: str) -> datetime:
    """An aware instant within a day of one of the zone's transitions (anywhere for UTC)."""
    transitions = _transitions(zone_name)
    if transitions:
        base = draw(st.sampled_from(transitions))
    else:
        base = datetime(1990, 1, 1, tzinfo=UTC) + timedelta(days=draw(st.integers(0, 365 * 40)))
    shift = draw(
        st.one_of(
            st.integers(-86400, 86400).map(lambda s: timedelta(seconds=s)),
            st.integers(-180, 180).map(lambda m: timedelta(minutes=m)),
            st.integers(-86400 * 10**6, 86400 * 10**6).map(lambda us: timedelta(microseconds=us)),
        )
    )
    shown_in = draw(st.sampled_from([UTC, ZoneInfo(zone_name), timezone(timedelta(hours=5, minutes=45))]))
    return (base + shift).astimezone(shown_in)


@st.composite
def scenarios(draw, triggers: st.SearchStrategy | None = None):
    """(trigger, zone name, zone, reference instant, generated cron or None)."""
    zone_name = draw(zones)
    after = draw(instants_near_transitions(zone_name))
    if triggers is not None:
        trigger = draw(triggers)
        return trigger, zone_name, ZoneInfo(zone_name), after, None
    cron = draw(crons())
    return CronTrigger(cron.text), zone_name, ZoneInfo(zone_name), after, cron


intervals = st.builds(
    IntervalTrigger,
    every=st.one_of(
        st.integers(1, 7 * 86400).map(lambda s: timedelta(seconds=s)),
        st.sampled_from([timedelta(minutes=15), timedelta(minutes=30), timedelta(hours=1), timedelta(days=1)]),
    ),
    anchor=st.datetimes(min_value=datetime(1985, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)),
)
any_trigger = st.one_of(
    crons().map(lambda c: CronTrigger(c.text)),
    st.builds(DailyTrigger, hour=st.integers(0, 23), minute=st.integers(0, 59)),
    st.builds(HourlyTrigger, minute=st.integers(0, 59)),
    intervals,
)


# -- properties -------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(scenarios(any_trigger))
def test_fire_times_strictly_increase_and_start_strictly_after_the_reference(scenario):
    trigger, _, zone, after, _ = scenario
    fires = fire_times(trigger, zone, after, 12)
    instants = [f.utc for f in fires]
    assert instants[0] > after
    assert all(a < b for a, b in itertools.pairwise(instants))
    assert all(f.at.tzinfo is zone for f in fires)  # returned in the schedule's zone


@PROPERTY_SETTINGS
@given(scenarios(any_trigger))
def test_next_fire_time_is_strictly_after_the_reference_and_then_next_for_every_instant_before_it(scenario):
    trigger, _, zone, after, _ = scenario
    first = next_fire_time(trigger, zone, after)
    assert first.utc > after
    # Any reference between ``after`` and the first fire time gives that same fire time,
    # and any reference between two consecutive fire times gives the later one.
    second = next_fire_time(trigger, zone, first.at)
    assert second.utc > first.utc
    for fraction in (0.0, 0.5, 0.999):
        between = first.utc + (second.utc - first.utc) * fraction
        assert next_fire_time(trigger, zone, between).utc == second.utc
    just_before = first.utc - timedelta(microseconds=1)
    if just_before >= after:
        assert next_fire_time(trigger, zone, just_before).utc == first.utc


@PROPERTY_SETTINGS
@given(scenarios())
def test_every_cron_fire_time_matches_the_expression_in_the_zone(scenario):
    trigger, _, zone, after, cron = scenario
    for fire in fire_times(trigger, zone, after, 10):
        wall = _wall(fire.at, zone)
        if not cron.fixed_time:
            assert cron.matches(wall), f"{cron.text}: {fire.at.isoformat()} does not match"
            continue
        # Fixed time: never in the second pass of a fold (the clock reached it in the first)...
        assert fire.at.fold == 0, f"{cron.text}: {fire.at.isoformat()} is a second pass"
        if cron.matches(wall):
            continue
        # ... and a wall time that does not match is the end of a gap that holds a matching one.
        before = _wall(fire.utc - timedelta(seconds=1), zone)
        assert before + timedelta(seconds=1) < wall, f"{cron.text}: {fire.at.isoformat()} is no gap end"
        skipped = before.replace(second=0) + ONE_MINUTE
        gap = [skipped + ONE_MINUTE * i for i in range(int((wall - skipped) / ONE_MINUTE))]
        assert any(cron.matches(w) for w in gap), f"{cron.text}: no matching time in the gap before {fire.at}"


def _scan(cron: Cron, zone: ZoneInfo, after: datetime, until: datetime) -> list[datetime]:
    """Fire times in (after, until] by walking the wall clock minute by minute (the rules, literally)."""
    first_minute = after.astimezone(UTC).replace(second=0, microsecond=0) + ONE_MINUTE
    # The latest wall time the clock has shown by ``after`` (folds here last at most 2 hours).
    reached = max([_wall(after, zone)] + [_wall(first_minute - ONE_MINUTE * k, zone) for k in range(1, 3 * 60 + 1)])
    out = []
    t = first_minute
    while t <= until:
        wall = _wall(t, zone)
        if cron.fixed_time:
            # Fires when the clock first reaches a matching wall time: any in (reached, wall].
            probe = reached.replace(second=0, microsecond=0) + ONE_MINUTE
            if probe <= wall and any(
                cron.matches(probe + ONE_MINUTE * i) for i in range((wall - probe) // ONE_MINUTE + 1)
            ):
                out.append(t)
            reached = max(reached, wall)
        elif cron.matches(wall):
            out.append(t)
        t += ONE_MINUTE
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_cron_fire_times_equal_a_minute_by_minute_scan_of_the_wall_clock(data):
    zone_name = data.draw(zones.filter(lambda z: _transitions(z)), label="zone")
    zone = ZoneInfo(zone_name)
    transition = data.draw(st.sampled_from(_transitions(zone_name)), label="transition")
    after = transition + timedelta(seconds=data.draw(st.integers(-20 * 3600, 3 * 3600), label="offset"))
    cron = data.draw(crons(frequent=True), label="cron")
    until = after + timedelta(hours=26)
    got = [f.utc for f in fire_times_between(CronTrigger(cron.text), zone, after, until)]
    assert got == _scan(cron, zone, after, until), cron.text


@PROPERTY_SETTINGS
@given(scenarios(intervals))
def test_interval_fire_times_are_anchor_plus_whole_steps_of_elapsed_time(scenario):
    trigger, _, zone, after, _ = scenario
    fires = [f.utc for f in fire_times(trigger, zone, after, 8)]
    steps = {b - a for a, b in itertools.pairwise(fires)}
    assert steps == {trigger.every}
    assert (fires[0] - trigger.anchor) % trigger.every == timedelta(0)
    assert fires[0] > after
    # The first fire time is the first of the series after ``after``: the anchor itself, or
    # a step later than an instant of the series at or before ``after``.
    assert fires[0] == trigger.anchor or fires[0] - trigger.every <= after


@PROPERTY_SETTINGS
@given(scenarios(any_trigger), st.integers(0, 3 * 86400), st.one_of(st.none(), st.integers(0, 30)))
def test_fire_times_between_agrees_with_iter_fire_times(scenario, span_seconds, limit):
    trigger, _, zone, after, _ = scenario
    until = after + timedelta(seconds=span_seconds)
    expected = []
    for fire in iter_fire_times(trigger, zone, after):
        if fire.utc > until or (limit is not None and len(expected) >= limit):
            break
        expected.append(fire)
    assert fire_times_between(trigger, zone, after, until, limit) == expected
    assert all(after < f.utc <= until for f in expected)


def test_minute_scan_agrees_with_the_tables_on_a_known_gap_and_fold():
    # The scan above is itself a test oracle; pin it to two facts from the DST tables.
    berlin = ZoneInfo("Europe/Berlin")
    daily = Cron("30 2 * * *", frozenset({30}), frozenset({2}), frozenset(range(1, 32)), frozenset(range(1, 13)),
                 frozenset(range(7)), True, True)  # fmt: skip
    gap = _scan(daily, berlin, datetime(2026, 3, 28, 12, tzinfo=UTC), datetime(2026, 3, 30, 12, tzinfo=UTC))
    assert [g.astimezone(berlin).isoformat() for g in gap] == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    fold = _scan(daily, berlin, datetime(2026, 10, 24, 12, tzinfo=UTC), datetime(2026, 10, 26, 12, tzinfo=UTC))
    assert [g.astimezone(berlin).isoformat() for g in fold] == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]
    quarter = Cron("*/15 * * * *", frozenset(range(0, 60, 15)), frozenset(range(24)), frozenset(range(1, 32)),
                   frozenset(range(1, 13)), frozenset(range(7)), True, False)  # fmt: skip
    both = _scan(quarter, berlin, datetime(2026, 10, 25, 0, 40, tzinfo=UTC), datetime(2026, 10, 25, 1, 10, tzinfo=UTC))
    assert [b.astimezone(berlin).isoformat() for b in both] == [
        "2026-10-25T02:45:00+02:00",
        "2026-10-25T02:00:00+01:00",
    ]
