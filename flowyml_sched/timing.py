"""Fire-time math: when a trigger fires in a timezone. Pure: no clock, no I/O.

Every function takes the reference instant as an argument and returns aware datetimes in
the schedule's zone. Instants are compared in UTC, never as wall times: Python compares two
aware datetimes in different zones inside a DST fold as unequal even when they name the
same instant (PEP 495).

The rules, Debian cron's (cron(8), also implemented by the cronsim library):

(a) A *fixed-time* schedule (neither the cron minute nor hour field starts with ``*``;
    every daily schedule) whose wall time falls in a spring-forward **DST gap** fires once,
    at the first instant after the gap. Europe/Berlin, 2020-03-29, ``1 2 * * *``:
    02:01 does not exist, so it fires at 03:00+02:00.
(b) A fixed-time schedule whose wall time occurs twice in an autumn **DST fold** fires once,
    at the first occurrence. America/New_York, 2026-11-01, daily 01:30: 01:30-04:00 only.
(c) A schedule whose minute or hour field starts with ``*`` (``*/15 * * * *``,
    ``0 */2 * * *``, every hourly schedule) follows real elapsed time: it fires in both
    passes of a repeated hour and not at all in a skipped one. US/Pacific, 2024-11-03,
    hourly :00: 01:00-07:00, 01:00-08:00, 02:00-08:00.
(d) Day-of-month and day-of-week: see :mod:`flowyml_sched.cronspec`.
(e) Daily HH:MM is cron ``MM HH * * *``; hourly :MM is ``MM * * * *``.

An interval is elapsed time: ``anchor + k * every`` computed in UTC, so a 7-day interval
anchored at 16:00+01:00 fires at 17:00+02:00 after the spring change. It never drifts with
how long a run takes.

Every fire time returned is strictly after the reference instant.

Exclusions (:mod:`flowyml_sched.exclusions`) apply to the fire times these rules give: one
whose local date is excluded is skipped, or moved to the same wall time on the next or
previous business day, resolved by rules (a) and (b); two fire times at one instant are one.

The gap and fold rules in one sentence: a fixed-time schedule fires when the wall clock
first reaches its time; a wildcard schedule fires whenever the wall clock shows its time.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import replace as _replace
from datetime import date, datetime, time, timedelta, timezone, tzinfo

from flowyml_sched.cronspec import CronSpec
from flowyml_sched.errors import NeverFires, OutOfRange
from flowyml_sched.exclusions import NO_EXCLUSIONS, Exclusions, OnExcluded
from flowyml_sched.triggers import IntervalTrigger, Trigger

UTC = timezone.utc
_ONE_SECOND = timedelta(seconds=1)
_ONE_MINUTE = timedelta(minutes=1)


class DstNote(enum.Enum):
    """How a DST change touched a fire time; ``None`` when it did not."""

    gap_end = "moved to the end of the DST gap"
    fold_first = "first of two"
    fold_second_pass = "repeated hour, second pass"
    fold_first_pass = "repeated hour, first pass"
    interval_shift = "crosses a DST change: wall time shifts"


@dataclass(frozen=True)
class FireTime:
    """One fire time: ``at`` is aware, in the schedule's zone; ``note`` says how DST touched it.

    ``wall`` is the wall time the schedule asked for when DST moved it (gap) or when it
    occurs twice (fold); otherwise it equals ``at``'s wall time. ``moved_from`` is the
    excluded fire time (aware, in the zone) this one was moved from, ``reason`` why that one
    was excluded (a holiday's name); both None for a fire time no exclusion moved.
    """

    at: datetime
    note: DstNote | None = None
    wall: datetime | None = None
    moved_from: datetime | None = None
    reason: str | None = None

    @property
    def utc(self) -> datetime:
        return self.at.astimezone(UTC)

    def describe_note(self) -> str:
        """The DST note as a sentence, or an empty string."""
        moved = f"moved from {self.moved_from:%a %Y-%m-%d} ({self.reason})" if self.moved_from else ""
        if self.note is None:
            return moved
        if moved:
            return f"{moved}; {_replace(self, moved_from=None).describe_note()}"
        wall = f"{self.wall:%H:%M}" if self.wall else ""
        if self.note is DstNote.gap_end:
            return f"{wall} does not exist: moved to the end of the DST gap"
        if self.note is DstNote.fold_first:
            return f"first of two {wall}s (DST fold): runs once"
        return self.note.value


def next_fire_time(trigger: Trigger, zone: tzinfo, after: datetime, exclusions: Exclusions = NO_EXCLUSIONS) -> FireTime:
    """The first fire time of ``trigger`` in ``zone`` strictly after the instant ``after``,
    with ``exclusions`` applied (see the module's rules).

    ``after`` must be aware (any zone); the result is in ``zone``. Raises ``ValueError``
    for a naive ``after``, :class:`~flowyml_sched.errors.OutOfRange` when the fire time
    would fall past the year 9999 and :class:`~flowyml_sched.errors.NeverFires` when every
    fire time of the :data:`NEVER_FIRES_YEARS` years after ``after`` is excluded.
    """
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError(f"reference instant {after!r} is naive; pass an aware datetime")
    try:
        if exclusions:
            return _next_not_excluded(trigger, zone, after, exclusions)
        return _next_raw(trigger, zone, after)
    except OverflowError:
        raise OutOfRange(f"the next fire time after {after.isoformat()}") from None
    except ValueError as exc:
        if "out of range" not in str(exc):
            raise
        raise OutOfRange(f"the next fire time after {after.isoformat()}") from None


def _next_raw(trigger: Trigger, zone: tzinfo, after: datetime) -> FireTime:
    """:func:`next_fire_time` without exclusions."""
    if isinstance(trigger, IntervalTrigger):
        return _next_interval(trigger, zone, after)
    spec = trigger.spec
    cur = after.astimezone(UTC).replace(tzinfo=None)
    if spec.fixed_time:
        return _next_fixed(spec, zone, cur)
    return _next_wildcard(spec, zone, cur)


def iter_fire_times(
    trigger: Trigger, zone: tzinfo, after: datetime, exclusions: Exclusions = NO_EXCLUSIONS
) -> Iterator[FireTime]:
    """Endless iterator over the fire times strictly after ``after``, in increasing order."""
    current = after
    while True:
        fire = next_fire_time(trigger, zone, current, exclusions)
        yield fire
        current = fire.at


def fire_times(
    trigger: Trigger, zone: tzinfo, after: datetime, count: int, exclusions: Exclusions = NO_EXCLUSIONS
) -> list[FireTime]:
    """The first ``count`` fire times strictly after ``after``."""
    iterator = iter_fire_times(trigger, zone, after, exclusions)
    return [next(iterator) for _ in range(count)]


def fire_times_between(
    trigger: Trigger,
    zone: tzinfo,
    after: datetime,
    until: datetime,
    limit: int | None = None,
    exclusions: Exclusions = NO_EXCLUSIONS,
) -> list[FireTime]:
    """Fire times ``t`` with ``after < t <= until`` (instants), oldest first, at most ``limit``."""
    out: list[FireTime] = []
    end = until.astimezone(UTC)
    for fire in iter_fire_times(trigger, zone, after, exclusions):
        if fire.at > end or (limit is not None and len(out) >= limit):
            break
        out.append(fire)
    return out


# -- wall time <-> instant ------------------------------------------------------------------
# Instants are handled as naive UTC datetimes below: cheaper, and immune to PEP 495's
# inter-zone comparison rule.


def _to_wall(cur_utc: datetime, zone: tzinfo) -> datetime:
    """The zone's wall time (naive, with ``fold`` set on the second pass) at a naive-UTC instant."""
    return zone.fromutc(cur_utc.replace(tzinfo=zone)).replace(tzinfo=None)


def _offsets(wall: datetime, zone: tzinfo) -> tuple[timedelta, timedelta]:
    """UTC offsets of a naive wall time with fold=0 and fold=1.

    Equal: the wall time occurs once. First larger: it occurs twice (a fold; zoneinfo gives
    the earlier, pre-transition offset to fold=0). First smaller: it never occurs (a gap).
    """
    return wall.replace(tzinfo=zone, fold=0).utcoffset(), wall.replace(tzinfo=zone, fold=1).utcoffset()


def _transition_between(low: datetime, high: datetime, zone: tzinfo) -> datetime:
    """The first naive-UTC instant in ``(low, high]`` whose offset differs from ``low``'s.

    Transitions fall on whole seconds, so this bisects whole seconds. Callers pass a window
    of one DST shift: about twelve steps, and only for the rare fire times DST touches.
    """
    low = low.replace(microsecond=0)
    if high.microsecond:
        high = high.replace(microsecond=0) + _ONE_SECOND
    before = _offset_at(low, zone)
    lo, hi = 0, int((high - low).total_seconds())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_at(low + timedelta(seconds=mid), zone) == before:
            lo = mid
        else:
            hi = mid
    return low + timedelta(seconds=hi)


def _offset_at(cur_utc: datetime, zone: tzinfo) -> timedelta:
    return zone.fromutc(cur_utc.replace(tzinfo=zone)).utcoffset()


def _fire(instant_utc: datetime, zone: tzinfo, note: DstNote | None = None, wall: datetime | None = None) -> FireTime:
    return FireTime(instant_utc.replace(tzinfo=UTC).astimezone(zone), note, wall)


def _reached(wall: datetime, zone: tzinfo) -> tuple[datetime, DstNote | None]:
    """Rules (a) and (b) for one naive wall time: the naive-UTC instant the wall clock first
    reaches it, and how DST touched that."""
    first, second = _offsets(wall, zone)
    if first == second:
        return wall - first, None
    if first > second:  # fold: the first occurrence only
        return wall - first, DstNote.fold_first
    # gap: the transition instant, where the wall clock jumps past this time
    return _transition_between(wall - second, wall - first, zone), DstNote.gap_end


def _next_fixed(spec: CronSpec, zone: tzinfo, cur: datetime) -> FireTime:
    """Rules (a) and (b): the first instant the wall clock reaches a matching time, after ``cur``."""
    wall = spec.next_wall_time(_to_wall(cur, zone))
    while True:
        instant, note = _reached(wall, zone)
        if instant > cur:
            return _fire(instant, zone, note, wall if note else None)
        # Only reached when ``cur`` lies in the second pass of a fold, whose wall times
        # the clock already reached in the first pass.
        wall = spec.next_wall_time(wall)


def _next_wildcard(spec: CronSpec, zone: tzinfo, cur: datetime) -> FireTime:
    """Rule (c): the first instant after ``cur`` whose wall time matches."""
    cur_wall = _to_wall(cur, zone)
    candidates: list[FireTime] = []
    first, second = _offsets(cur_wall, zone)
    if first > second and not cur_wall.fold:
        # ``cur`` is in the first pass of a fold: the second pass, whose wall times restart
        # at the fold's start, may hold a match earlier than anything after ``cur_wall``.
        transition = _transition_between(cur, cur + (first - second), zone)
        wall = spec.next_wall_time(transition + second - _ONE_MINUTE)
        if wall < transition + first:
            candidates.append(_fire(wall - second, zone, DstNote.fold_second_pass))
    wall = spec.next_wall_time(cur_wall)
    while True:
        first, second = _offsets(wall, zone)
        if first == second:
            candidates.append(_fire(wall - first, zone))
            break
        if first > second:
            if wall - first > cur:
                candidates.append(_fire(wall - first, zone, DstNote.fold_first_pass))
            else:
                candidates.append(_fire(wall - second, zone, DstNote.fold_second_pass))
            break
        wall = spec.next_wall_time(wall)  # a wall time in a gap never occurs: not fired
    return min(candidates, key=lambda fire: fire.utc)


def _next_interval(trigger: IntervalTrigger, zone: tzinfo, after: datetime) -> FireTime:
    anchor = trigger.anchor
    after_utc = after.astimezone(UTC)
    if after_utc < anchor:
        instant = anchor
    else:
        instant = anchor + ((after_utc - anchor) // trigger.every + 1) * trigger.every
    at = instant.astimezone(zone)
    previous = (instant - trigger.every).astimezone(zone)
    note = DstNote.interval_shift if previous.utcoffset() != at.utcoffset() else None
    return FireTime(at, note)


# -- exclusions -----------------------------------------------------------------------------

NEVER_FIRES_YEARS = 10
"""How far :func:`next_fire_time` looks for a fire time that is not excluded."""


@dataclass(frozen=True)
class ExcludedFireTime:
    """A fire time of the trigger that an exclusion took: ``fire`` as the trigger gives it,
    ``reason`` (a holiday's name, ``excluded date``, ``excluded range FROM..TO``),
    ``moved_to`` (None: skipped) and ``merged`` (moved onto a fire time the schedule has anyway)."""

    fire: FireTime
    reason: str
    moved_to: FireTime | None = None
    merged: bool = False

    def describe(self) -> str:
        """``Thanksgiving Day: skipped``, ``Independence Day: moved to Mon 2026-07-06 09:00``."""
        if self.moved_to is None:
            return f"{self.reason}: skipped"
        merged = ", which runs anyway" if self.merged else ""
        return f"{self.reason}: moved to {self.moved_to.at:%a %Y-%m-%d %H:%M}{merged}"


EXCLUDED_LIMIT = 1000
"""The most excluded fire times :func:`excluded_between` lists."""


def excluded_between(
    trigger: Trigger,
    zone: tzinfo,
    after: datetime,
    until: datetime,
    exclusions: Exclusions,
    limit: int = EXCLUDED_LIMIT,
) -> list[ExcludedFireTime]:
    """The trigger's fire times ``t`` with ``after < t <= until`` that ``exclusions`` skip or
    move, oldest first, at most ``limit``: what ``next --show-excluded`` lists."""
    out: list[ExcludedFireTime] = []
    if not exclusions:
        return out
    end = until.astimezone(UTC)
    current = after
    while len(out) < limit:
        raw = _next_raw(trigger, zone, current)
        if raw.utc > end:
            break
        current = raw.at
        reason = exclusions.reason(raw.at.date())
        if reason is None:
            continue
        moved = _moved(raw, zone, exclusions, reason)
        merged = False
        if moved is not None:
            there = _next_raw(trigger, zone, moved.at - _MICROSECOND)
            merged = there.utc == moved.utc and exclusions.reason(there.at.date()) is None
        out.append(ExcludedFireTime(raw, reason, moved, merged))
    return out


_MICROSECOND = timedelta(microseconds=1)


def _next_not_excluded(trigger: Trigger, zone: tzinfo, after: datetime, exclusions: Exclusions) -> FireTime:
    """The least fire time after ``after`` once the excluded ones are skipped or moved.

    Fire times walk in increasing order from where an excluded one could still land after
    ``after``: with ``next_business_day``, the start of the run of days that are not business
    days before ``after``'s date (a move only goes later); otherwise ``after``. The walk stops
    once no later fire time can land before the best found: at once for one that is not
    excluded (skip, next) or once the business day before a fire time's date is past the best
    one's date (previous).
    """
    after_utc = after.astimezone(UTC)
    rule = exclusions.on_excluded
    current = _run_start(after, zone, exclusions) if rule is OnExcluded.next_business_day else after
    horizon = after_utc + timedelta(days=366 * NEVER_FIRES_YEARS)
    best: FireTime | None = None
    while True:
        raw = _next_raw(trigger, zone, current)
        current = raw.at
        day = raw.at.date()
        if best is not None:
            if rule is OnExcluded.previous_business_day:
                if exclusions.business_day_before(day) > best.at.date():
                    return best
            elif raw.utc > best.utc:
                return best
        reason = exclusions.reason(day)
        if reason is not None and best is None and raw.utc > horizon:
            raise NeverFires(after.astimezone(UTC).replace(microsecond=0).isoformat(), NEVER_FIRES_YEARS)
        if reason is None:
            if raw.utc > after_utc:
                if rule is not OnExcluded.previous_business_day:
                    return raw  # no later fire time lands earlier, and ties go to the fire time itself
                if best is None or raw.utc <= best.utc:
                    best = raw
            continue
        moved = _moved(raw, zone, exclusions, reason)
        if moved is None:  # skipped: go on after this day, or after the range that holds it
            last = exclusions.range_end(day) or day
            current = max(current.astimezone(UTC), _day_start(last + timedelta(days=1), zone) - _MICROSECOND)
            continue
        if moved.utc > after_utc and (best is None or moved.utc < best.utc):
            best = moved


def _moved(raw: FireTime, zone: tzinfo, exclusions: Exclusions, reason: str) -> FireTime | None:
    """Where an excluded fire time goes: None (skip), or its wall time on the business day
    the rule names."""
    if exclusions.on_excluded is OnExcluded.skip:
        return None
    day = raw.at.date()
    if exclusions.on_excluded is OnExcluded.next_business_day:
        target = exclusions.business_day_after(day)
    else:
        target = exclusions.business_day_before(day)
    asked = raw.wall if raw.wall is not None else raw.at.replace(tzinfo=None)
    wall = datetime.combine(target, asked.time())
    instant, note = _reached(wall, zone)
    return FireTime(
        instant.replace(tzinfo=UTC).astimezone(zone), note, wall if note else None, moved_from=raw.at, reason=reason
    )


def _day_start(day: date, zone: tzinfo) -> datetime:
    """The instant (aware UTC) the local date ``day`` begins in ``zone``."""
    instant, _note = _reached(datetime.combine(day, time()), zone)
    return instant.replace(tzinfo=UTC)


def _run_start(after: datetime, zone: tzinfo, exclusions: Exclusions) -> datetime:
    """Where the walk for ``next_business_day`` starts: just before the earliest excluded day
    of the run of days that are not business days up to ``after``'s local date (a fire time
    on it may move past ``after``), or ``after`` itself when that run holds no excluded day."""
    day = after.astimezone(zone).date()
    earliest = day if exclusions.reason(day) is not None else None
    while not exclusions.is_business_day(day - timedelta(days=1)):
        day -= timedelta(days=1)
        if exclusions.reason(day) is not None:
            earliest = day
    after_utc = after.astimezone(UTC)
    return after_utc if earliest is None else min(after_utc, _day_start(earliest, zone) - _MICROSECOND)
