"""plan_dispatch: which due fire times run, which are missed, and the next fire time.

The tables give every instant as an offset from ``NOW`` so a row reads as a timeline:
``-27h`` is a fire time 27 hours before the worker came back.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowyml_sched.dispatch import DEFAULT_MISFIRE_GRACE, MAX_MISSED_RECORDED, plan_dispatch
from flowyml_sched.model import CatchUp, Policy, Schedule
from flowyml_sched.timing import fire_times_between, next_fire_time
from flowyml_sched.triggers import CronTrigger, DailyTrigger, HourlyTrigger, IntervalTrigger, Trigger
from flowyml_sched.zones import get_zone

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")

NOW = datetime(2026, 1, 12, 12, 0, tzinfo=UTC)
"""The worker comes back at 12:00 UTC on Jan 12; the daily 09:00 UTC schedule last ran on Jan 9."""
FIRST_DUE = NOW - timedelta(hours=51)
"""Jan 10 09:00 UTC: the first fire time of the downtime (then -27h and -3h)."""


def h(hours: float) -> datetime:
    """The instant ``hours`` from NOW (negative: before)."""
    return NOW + timedelta(hours=hours)


def daily_9am(**policy: object) -> Schedule:
    return Schedule(
        name="nightly",
        pipeline="jobs:nightly",
        trigger=DailyTrigger(9, 0),
        timezone="UTC",
        policy=Policy(**policy),
        next_fire_at=FIRST_DUE,
    )


def offsets(instants: list[datetime]) -> list[float]:
    return [(t - NOW) / timedelta(hours=1) for t in instants]


# -- three days of downtime, daily at 09:00 UTC: due at -51h, -27h, -3h --------------------

DOWNTIME_TABLE = [
    # (id, policy, run offsets in hours, missed offsets in hours)
    ("latest-runs-only-the-newest", {"catchup": CatchUp.latest}, [-3], [-51, -27]),
    ("none-runs-nothing", {"catchup": CatchUp.none}, [], [-51, -27, -3]),
    ("all-runs-three-oldest-first", {"catchup": CatchUp.all}, [-51, -27, -3], []),
    ("all-capped-at-2-runs-the-newest-2", {"catchup": CatchUp.all, "max_catchup": 2}, [-27, -3], [-51]),
    ("all-capped-at-1-runs-the-newest", {"catchup": CatchUp.all, "max_catchup": 1}, [-3], [-51, -27]),
    # misfire_grace widens "on time": on-time fire times run whatever the catch-up policy
    ("grace-4h-makes-3h-ago-on-time", {"catchup": CatchUp.latest, "misfire_grace": timedelta(hours=4)}, [-3], [-51, -27]),
    ("grace-28h-latest-runs-both-on-time", {"catchup": CatchUp.latest, "misfire_grace": timedelta(hours=28)}, [-27, -3], [-51]),
    ("grace-28h-none-still-runs-the-on-time", {"catchup": CatchUp.none, "misfire_grace": timedelta(hours=28)}, [-27, -3], [-51]),
    ("grace-52h-everything-on-time", {"catchup": CatchUp.none, "misfire_grace": timedelta(hours=52)}, [-51, -27, -3], []),
    ("all-cap-1-plus-on-time", {"catchup": CatchUp.all, "max_catchup": 1, "misfire_grace": timedelta(hours=4)}, [-27, -3], [-51]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "run", "missed"), [row[1:] for row in DOWNTIME_TABLE], ids=[r[0] for r in DOWNTIME_TABLE]
)
def test_three_days_of_downtime_with_a_daily_schedule(policy: dict, run: list[float], missed: list[float]) -> None:
    dispatch = plan_dispatch(daily_9am(**policy), NOW)
    assert offsets(dispatch.run) == run
    assert offsets(dispatch.missed) == missed
    assert dispatch.missed_unlisted == 0
    assert dispatch.next_fire_at == h(21)  # Jan 13 09:00 UTC


# -- the edge of "on time" ------------------------------------------------------------------

FIRE = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)

GRACE_TABLE = [
    # (id, misfire_grace, seconds after the fire time, runs?)
    ("default-grace-59s-late-runs", None, 59, True),
    ("default-grace-exactly-60s-late-runs", None, 60, True),
    ("default-grace-61s-late-is-missed", None, 61, False),
    ("grace-30s-narrows-45s-late-is-missed", timedelta(seconds=30), 45, False),
    ("grace-30s-exactly-30s-late-runs", timedelta(seconds=30), 30, True),
    ("grace-2h-widens-90min-late-runs", timedelta(hours=2), 5400, True),
    ("claimed-at-its-instant-runs", None, 0, True),
]


@pytest.mark.parametrize(("grace", "late_by", "runs"), [r[1:] for r in GRACE_TABLE], ids=[r[0] for r in GRACE_TABLE])
def test_a_fire_time_within_grace_runs_even_with_catchup_none(
    grace: timedelta | None, late_by: int, runs: bool
) -> None:
    schedule = Schedule(
        name="s",
        pipeline="jobs:s",
        trigger=DailyTrigger(9, 0),
        timezone="UTC",
        policy=Policy(catchup=CatchUp.none, misfire_grace=grace),
        next_fire_at=FIRE,
    )
    dispatch = plan_dispatch(schedule, FIRE + timedelta(seconds=late_by))
    assert dispatch.run == ([FIRE] if runs else [])
    assert dispatch.missed == ([] if runs else [FIRE])
    assert dispatch.next_fire_at == FIRE + timedelta(days=1)


def test_default_misfire_grace_is_sixty_seconds() -> None:
    assert timedelta(seconds=60) == DEFAULT_MISFIRE_GRACE


def test_latest_runs_no_late_fire_time_when_an_on_time_one_runs_anyway() -> None:
    # hourly at :00, down from 06:00 to 09:00:30: 07:00 and 08:00 are late, 09:00 is on time
    schedule = Schedule(
        name="s",
        pipeline="jobs:s",
        trigger=HourlyTrigger(0),
        timezone="UTC",
        policy=Policy(catchup=CatchUp.latest),
        next_fire_at=datetime(2026, 1, 12, 7, 0, tzinfo=UTC),
    )
    now = datetime(2026, 1, 12, 9, 0, 30, tzinfo=UTC)
    dispatch = plan_dispatch(schedule, now)
    assert dispatch.run == [datetime(2026, 1, 12, 9, 0, tzinfo=UTC)]
    assert dispatch.missed == [datetime(2026, 1, 12, 7, 0, tzinfo=UTC), datetime(2026, 1, 12, 8, 0, tzinfo=UTC)]


def test_nothing_is_due_one_microsecond_before_the_fire_time() -> None:
    schedule = daily_9am()
    dispatch = plan_dispatch(schedule, FIRST_DUE - timedelta(microseconds=1))
    assert dispatch.run == [] and dispatch.missed == [] and dispatch.missed_unlisted == 0
    assert dispatch.next_fire_at == FIRST_DUE


def test_a_fire_time_up_to_until_is_claimed_ahead_on_time_and_the_late_ones_are_judged_at_now() -> None:
    just_before = h(-3) - timedelta(milliseconds=100)
    dispatch = plan_dispatch(daily_9am(catchup=CatchUp.none), just_before, until=h(-3))
    assert offsets(dispatch.run) == [-3]  # ahead of its instant, so not late
    assert offsets(dispatch.missed) == [-51, -27]
    assert dispatch.next_fire_at == h(21)
    one_short = plan_dispatch(daily_9am(catchup=CatchUp.none), just_before, until=h(-3) - timedelta(microseconds=1))
    assert one_short.run == [] and one_short.next_fire_at == h(-3)


def test_of_fire_times_closer_together_than_the_claim_ahead_only_the_first_after_now_is_claimed() -> None:
    schedule = dataclasses.replace(daily_9am(), trigger=IntervalTrigger(timedelta(seconds=1), NOW), next_fire_at=NOW)
    dispatch = plan_dispatch(schedule, NOW - timedelta(milliseconds=500), until=NOW + timedelta(seconds=5))
    assert dispatch.run == [NOW]  # the next ones face the overlap policy at their instants, claimed one a round
    assert dispatch.next_fire_at == NOW + timedelta(seconds=1)


def test_until_before_now_is_refused() -> None:
    with pytest.raises(ValueError, match="is before now"):
        plan_dispatch(daily_9am(), NOW, until=NOW - timedelta(microseconds=1))


def test_next_fire_at_moves_strictly_past_a_now_that_is_exactly_a_fire_time() -> None:
    dispatch = plan_dispatch(daily_9am(catchup=CatchUp.all), h(-3))
    assert offsets(dispatch.run) == [-51, -27, -3]
    assert dispatch.next_fire_at == h(21)


def test_results_are_aware_utc() -> None:
    schedule = Schedule(
        name="s",
        pipeline="jobs:s",
        trigger=DailyTrigger(2, 30),
        timezone="Europe/Berlin",
        policy=Policy(catchup=CatchUp.all),
        next_fire_at=datetime(2026, 1, 10, 1, 30, tzinfo=UTC),
    )
    dispatch = plan_dispatch(schedule, NOW.astimezone(BERLIN))
    for instant in [*dispatch.run, *dispatch.missed, dispatch.next_fire_at]:
        assert instant.utcoffset() == timedelta(0)
        assert instant.tzinfo is not None


# -- DST inside the downtime ----------------------------------------------------------------


def test_dst_gap_day_inside_a_downtime_runs_at_the_end_of_the_gap() -> None:
    """Europe/Berlin springs forward on 2026-03-29 at 02:00 -> 03:00: daily 02:30 does not
    exist that day and fires at 03:00+02:00 (Debian cron's rule), once."""
    schedule = Schedule(
        name="berlin",
        pipeline="jobs:berlin",
        trigger=DailyTrigger(2, 30),
        timezone="Europe/Berlin",
        policy=Policy(catchup=CatchUp.all),
        next_fire_at=datetime(2026, 3, 28, 2, 30, tzinfo=BERLIN),
    )
    now = datetime(2026, 3, 30, 12, 0, tzinfo=BERLIN)  # down from the 28th to the 30th
    dispatch = plan_dispatch(schedule, now)
    walls = [t.astimezone(BERLIN).isoformat() for t in dispatch.run]
    assert walls == ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    assert dispatch.next_fire_at == datetime(2026, 3, 31, 2, 30, tzinfo=BERLIN)
    latest = plan_dispatch(dataclasses.replace(schedule, policy=Policy()), now)
    assert [t.astimezone(BERLIN).isoformat() for t in latest.missed] == walls[:2]


# -- very frequent schedules after long downtime --------------------------------------------


def every_second(**policy: object) -> Schedule:
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    return Schedule(
        name="tick",
        pipeline="jobs:tick",
        trigger=IntervalTrigger(timedelta(seconds=1), anchor),
        timezone="UTC",
        policy=Policy(**policy),
        next_fire_at=anchor + timedelta(seconds=1),
    )


def test_every_second_down_for_a_day_is_bounded_and_fast() -> None:
    schedule = every_second()
    now = schedule.next_fire_at + timedelta(days=1)
    started = time.perf_counter()
    dispatch = plan_dispatch(schedule, now)
    elapsed = time.perf_counter() - started
    due = 86_400 + 1
    assert len(dispatch.missed) == MAX_MISSED_RECORDED  # the newest late ones are listed, the rest counted
    assert dispatch.missed_unlisted == due - 61 - MAX_MISSED_RECORDED
    assert len(dispatch.run) + len(dispatch.missed) + dispatch.missed_unlisted == due
    # the 61 fire times of the last minute are on time and run; nothing late runs with latest
    assert dispatch.run == [now - timedelta(seconds=s) for s in range(60, -1, -1)]
    assert dispatch.missed[-1] == now - timedelta(seconds=61)  # the newest missed ones are the ones listed
    assert dispatch.next_fire_at == now + timedelta(seconds=1)
    assert elapsed < 5, f"took {elapsed:.1f} s"


def test_catchup_all_with_the_largest_max_catchup_is_not_quadratic() -> None:
    schedule = every_second(catchup=CatchUp.all, max_catchup=100_000)
    now = schedule.next_fire_at + timedelta(days=1)
    started = time.perf_counter()
    dispatch = plan_dispatch(schedule, now)
    elapsed = time.perf_counter() - started
    assert len(dispatch.run) == 86_401 and dispatch.missed == [] and dispatch.missed_unlisted == 0
    assert dispatch.run == sorted(dispatch.run)
    assert elapsed < 5, f"took {elapsed:.1f} s"


def test_every_on_time_fire_time_runs_even_when_there_are_more_than_the_missed_cap() -> None:
    """A wide grace can make more than MAX_MISSED_RECORDED fire times on time: each must run."""
    schedule = every_second(catchup=CatchUp.none, misfire_grace=timedelta(minutes=30))
    now = schedule.next_fire_at + timedelta(hours=1)
    dispatch = plan_dispatch(schedule, now)
    assert len(dispatch.run) == 30 * 60 + 1
    assert dispatch.run[0] == now - timedelta(minutes=30) and dispatch.run[-1] == now
    assert len(dispatch.run) + len(dispatch.missed) + dispatch.missed_unlisted == 3600 + 1


# -- invariants over random schedules and downtimes -----------------------------------------

TRIGGERS: list[tuple[Trigger, str]] = [
    (DailyTrigger(2, 30), "Europe/Berlin"),
    (HourlyTrigger(15), "America/New_York"),
    (CronTrigger("*/7 1-3 * * *"), "Europe/Berlin"),
    (IntervalTrigger(timedelta(minutes=13), datetime(2026, 1, 1, tzinfo=UTC)), "UTC"),
]


@settings(max_examples=150, deadline=None)
@given(
    trigger_index=st.integers(0, len(TRIGGERS) - 1),
    start=st.datetimes(datetime(2026, 1, 1), datetime(2026, 12, 31), timezones=st.just(UTC)),
    down_minutes=st.integers(-90, 4 * 24 * 60),
    catchup=st.sampled_from(list(CatchUp)),
    max_catchup=st.integers(1, 5),
    grace_seconds=st.one_of(st.none(), st.integers(1, 6 * 3600)),
    ahead_ms=st.one_of(st.just(0), st.integers(1, 3_600_000)),
)
def test_dispatch_accounts_for_every_due_fire_time_exactly_once(
    trigger_index: int,
    start: datetime,
    down_minutes: int,
    catchup: CatchUp,
    max_catchup: int,
    grace_seconds: int | None,
    ahead_ms: int,
) -> None:
    """Every fire time up to now, and the first after it when not after ``until`` (claimed
    ahead), is run or missed once; lateness is judged at now; the next fire time follows them."""
    trigger, zone_name = TRIGGERS[trigger_index]
    zone = get_zone(zone_name)
    grace = timedelta(seconds=grace_seconds) if grace_seconds else None
    first = next_fire_time(trigger, zone, start).utc
    schedule = Schedule(
        name="s",
        pipeline="jobs:s",
        trigger=trigger,
        timezone=zone_name,
        policy=Policy(catchup=catchup, max_catchup=max_catchup, misfire_grace=grace),
        next_fire_at=first,
    )
    now = first + timedelta(minutes=down_minutes)
    until = now + timedelta(milliseconds=ahead_ms)
    dispatch = plan_dispatch(schedule, now, until)

    due = [first] if first <= now else []
    due += [f.utc for f in fire_times_between(trigger, zone, first, now)] if first <= now else []
    after_now = first if first > now else next_fire_time(trigger, zone, now).utc
    if after_now <= until:
        due.append(after_now)
    effective = grace or DEFAULT_MISFIRE_GRACE
    on_time = [t for t in due if now - t <= effective]
    late = [t for t in due if now - t > effective]

    assert dispatch.next_fire_at > now
    assert dispatch.next_fire_at == (next_fire_time(trigger, zone, due[-1]).utc if due else first)
    assert dispatch.run == sorted(dispatch.run) and dispatch.missed == sorted(dispatch.missed)
    assert not set(dispatch.run) & set(dispatch.missed)
    assert set(dispatch.run) | set(dispatch.missed) == set(due)  # few enough here to be all listed
    assert dispatch.missed_unlisted == 0
    assert set(on_time) <= set(dispatch.run)
    late_run = [t for t in dispatch.run if t in late]
    if catchup is CatchUp.none:
        assert late_run == []
    elif catchup is CatchUp.latest:
        assert late_run == ([] if on_time else late[-1:])
    else:
        assert late_run == late[-max_catchup:]


@pytest.mark.parametrize("catchup", [CatchUp.latest, CatchUp.all])
def test_every_second_down_for_a_year_runs_the_newest_and_is_fast(catchup: CatchUp) -> None:
    schedule = every_second(catchup=catchup, max_catchup=3)
    now = schedule.next_fire_at + timedelta(days=365, seconds=0.5)
    started = time.perf_counter()
    dispatch = plan_dispatch(schedule, now)
    assert time.perf_counter() - started < 10  # bounded work (about one second here), not a year of fire times
    # fire times are whole seconds: on time are the 60 of the last minute (23:59:02 to 00:00:01)
    newest_late = now - timedelta(seconds=60.5)
    on_time = [now - timedelta(seconds=s + 0.5) for s in range(59, -1, -1)]
    # on-time fire times run; with latest nothing late runs beside them, with all the 3 newest late ones
    expected_late = [] if catchup is CatchUp.latest else [newest_late - timedelta(seconds=s) for s in (2, 1, 0)]
    assert dispatch.run == expected_late + on_time
    assert dispatch.missed[-1] == newest_late - timedelta(seconds=len(expected_late))
    assert dispatch.missed_uncounted_before is not None
    assert dispatch.missed_uncounted_before > schedule.next_fire_at
    assert dispatch.next_fire_at == now + timedelta(seconds=0.5)
