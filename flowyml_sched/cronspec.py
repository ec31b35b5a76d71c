"""Cron expressions: croniter parses them, this module matches wall-clock minutes.

:func:`compile_cron` turns a 5-field expression (or a macro such as ``@daily``) into a
:class:`CronSpec`, whose :meth:`CronSpec.next_wall_time` finds the first *naive* wall-clock
minute strictly after a given one. Time zones are not this module's business: mapping wall
times to instants across DST lives in :mod:`flowyml_sched.timing`.

Parsing, names (``JAN``, ``MON``), ranges, lists, steps and range checks are croniter's.
Matching is our own, because croniter gets some of it wrong; the rules are Debian cron's
(cron(8)) extended with croniter's ``L``, ``W`` and ``#``:

- day-of-month and day-of-week are ORed when both are restricted; when either field's text
  starts with ``*`` (``*``, ``*/2``) or is ``?``, both must match;
- ``L`` in day-of-month is the month's last day; ``15W`` the weekday (Mon-Fri) nearest the
  15th within the same month (a day past the month's end counts as its last day);
- ``5#2`` in day-of-week is the second Friday; ``L5`` the month's last Friday; Sunday is 0 or 7.

An expression that can never match (``0 0 30 2 *``) is refused when compiled.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

from flowyml_sched.errors import InvalidCronExpression

if TYPE_CHECKING:
    from croniter import CroniterError

FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
"""Names of the five fields, in order, as cron(5) calls them."""

_LAST = "l"
_ONE_MINUTE = timedelta(minutes=1)
_RANDOM_OR_HASH = re.compile(r"(^|[,/-])[rh](\(|$|[,/-])")
_RANGE_TERM = re.compile(r"([0-9a-z]+)-([0-9a-z]+)(/[0-9]+|#[0-9]+)?")
_LAST_OF_WEEKDAY = re.compile(r"([0-7]|sun|mon|tue|wed|thu|fri|sat)l")
"""Quartz's and cronsim's spelling of "the last such weekday of the month" (``5L``); croniter's is ``L5``."""
_LAST_WEEKDAY_OF_MONTH = "lw"
"""Day-of-month ``LW`` (Quartz, cronsim): the last day of the month that is Monday to Friday."""
_NAMED_VALUES = (
    {},
    {},
    {},
    {
        name: number
        for number, name in enumerate(
            ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
        )
    },
    {name: number for number, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
)
# Every combination of (weekday of the 1st, month length) occurs within 28 consecutive
# years of the Gregorian calendar between 1901 and 2099, so an expression that matches no
# day in these years matches no day ever (cron(5) has no year field).
_PROBE_YEARS = range(2001, 2029)


def _nearest_weekday(year: int, month: int, day: int, last_day: int) -> int:
    """Day of the month nearest ``day`` that is Monday to Friday, without leaving the month."""
    day = min(day, last_day)
    weekday = calendar.weekday(year, month, day)
    if weekday < 5:
        return day
    if weekday == 5:  # Saturday: Friday before, or Monday after when the 1st is a Saturday
        return day - 1 if day > 1 else day + 2
    return day + 1 if day < last_day else day - 2  # Sunday


@dataclass(frozen=True)
class CronSpec:
    """A compiled cron expression: sorted minute and hour values plus day rules.

    ``fixed_time`` is true when neither the minute nor the hour field starts with ``*``;
    such a schedule fires once per matching wall time even across DST (see
    :mod:`flowyml_sched.timing`). Build one with :func:`compile_cron`.
    """

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: frozenset[int]
    days: frozenset[int]
    last_day: bool
    last_weekday: bool
    nearest_weekdays: frozenset[int]
    weekdays: frozenset[int]
    nth_weekdays: frozenset[tuple[int, int]]
    last_weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool
    days_and: bool
    fixed_time: bool

    def day_matches(self, year: int, month: int, day: int, last_day: int) -> bool:
        """True when the date satisfies day-of-month and day-of-week per cron(8)."""
        dom = (
            self.any_day
            or day in self.days
            or (self.last_day and day == last_day)
            or (self.last_weekday and day == _nearest_weekday(year, month, last_day, last_day))
            or any(day == _nearest_weekday(year, month, w, last_day) for w in self.nearest_weekdays)
        )
        if self.days_and and not dom:
            return False
        if self.any_weekday:
            dow = True
        else:
            weekday = (date(year, month, day).weekday() + 1) % 7  # cron: 0 = Sunday
            dow = (
                weekday in self.weekdays
                or (weekday, (day - 1) // 7 + 1) in self.nth_weekdays
                or (weekday in self.last_weekdays and day + 7 > last_day)
            )
        return (dom and dow) if self.days_and else (dom or dow)

    def next_wall_time(self, after: datetime) -> datetime:
        """First naive wall-clock minute strictly after the naive ``after`` that matches.

        Seconds and microseconds of ``after`` are ignored except that a match must be
        later than ``after``. Always terminates: :func:`compile_cron` refused expressions
        that never match.
        """
        t = after.replace(second=0, microsecond=0) + _ONE_MINUTE
        year, month, day, hour, minute = t.year, t.month, t.day, t.hour, t.minute
        minutes, hours, months = self.minutes, self.hours, self.months
        while True:
            if month not in months:
                month, day, hour, minute = month + 1, 1, 0, 0
                if month > 12:
                    year, month = year + 1, 1
                continue
            days = _matching_days(self, year, month)
            i = bisect_left(days, day)
            if i == len(days):
                month, day, hour, minute = month + 1, 1, 0, 0
                if month > 12:
                    year, month = year + 1, 1
                continue
            if days[i] != day:
                day, hour, minute = days[i], 0, 0
            i = bisect_left(hours, hour)
            if i == len(hours):
                day, hour, minute = day + 1, 0, 0
                if day > 28 and day > calendar.monthrange(year, month)[1]:
                    month, day = month + 1, 1
                    if month > 12:
                        year, month = year + 1, 1
                continue
            if hours[i] != hour:
                hour, minute = hours[i], 0
            i = bisect_left(minutes, minute)
            if i == len(minutes):
                hour, minute = hour + 1, 0
                if hour == 24:
                    day, hour = day + 1, 0
                    if day > 28 and day > calendar.monthrange(year, month)[1]:
                        month, day = month + 1, 1
                        if month > 12:
                            year, month = year + 1, 1
                continue
            return datetime(year, month, day, hour, minutes[i])


@lru_cache(maxsize=8192)
def _matching_days(spec: CronSpec, year: int, month: int) -> tuple[int, ...]:
    last_day = calendar.monthrange(year, month)[1]
    return tuple(d for d in range(1, last_day + 1) if spec.day_matches(year, month, d, last_day))


def _values(field: list, full: range) -> tuple[int, ...]:
    """The values of an expanded field; a ``*`` anywhere in its list means every value (cron(5))."""
    return tuple(full) if "*" in field else tuple(sorted(v for v in field if isinstance(v, int)))


@lru_cache(maxsize=4096)
def compile_cron(expression: str) -> CronSpec:
    """Compile a 5-field cron expression or macro into a :class:`CronSpec`.

    Accepts croniter's dialect minus its non-standard parts: exactly five fields
    (no seconds or year field) and no random (``R``) or hashed (``H``) values, since a
    schedule must fire at the same times every time it is read.

    Raises :class:`~flowyml_sched.errors.InvalidCronExpression` naming the field and value
    when croniter refuses the text, and when the expression can never match a day.
    """
    odd = next((ch for ch in expression if ch.isspace() and not ch.isascii()), None)
    if odd is not None:
        raise InvalidCronExpression(
            expression, f"it holds the whitespace U+{ord(odd):04X}: separate the fields with spaces"
        )
    text = " ".join(expression.split())
    if not text:
        raise InvalidCronExpression(expression, "it is empty")
    if not text.startswith("@") and len(text.split(" ")) != 5:
        raise InvalidCronExpression(expression, f"it has {len(text.split(' '))} fields, not 5")
    if not text.startswith("@"):
        # Checked before croniter sees the text: croniter refuses H with its own wording
        # and would report the value lower-cased.
        for name, value in zip(FIELD_NAMES, text.split(" "), strict=True):
            if _RANDOM_OR_HASH.search(value.lower()):
                raise InvalidCronExpression(
                    expression, "random (R) and hashed (H) values are not supported", name, value
                )
    from croniter import CroniterError, croniter  # here: the CLI's --help need not load it

    fields = text.lower().split(" ")
    last_weekday = False
    if not text.startswith("@"):
        days = fields[2].split(",")
        last_weekday = _LAST_WEEKDAY_OF_MONTH in days
        if last_weekday:  # croniter knows no LW: it reads L, the flag then tells LW from L
            keep_last = _LAST in days
            fields[2] = ",".join(dict.fromkeys(_LAST if d == _LAST_WEEKDAY_OF_MONTH else d for d in days))
        fields[4] = ",".join(
            f"{_LAST}{_weekday_number(m[1])}" if (m := _LAST_OF_WEEKDAY.fullmatch(term)) else term
            for term in fields[4].split(",")
        )
    try:
        parsed = croniter(text if text.startswith("@") else _collapse_equal_ranges(expression, " ".join(fields)))
    except CroniterError as exc:
        raise _translate(expression, text, exc) from None
    raw = parsed.expressions
    if len(raw) != 5:
        raise InvalidCronExpression(expression, f"it has {len(raw)} fields, not 5")
    minute, hour, dom, month, dow = parsed.expanded
    nth = parsed.nth_weekday_of_month
    nearest = frozenset(parsed.nearest_weekday)
    any_day = "*" in dom
    any_weekday = "*" in dow
    spec = CronSpec(
        expression=text,
        minutes=_values(minute, range(60)),
        hours=_values(hour, range(24)),
        months=frozenset(_values(month, range(1, 13))),
        days=frozenset(v for v in dom if isinstance(v, int) and v not in nearest),
        last_day=_LAST in dom and (not last_weekday or keep_last),
        last_weekday=last_weekday,
        nearest_weekdays=nearest,
        weekdays=frozenset(v for v in dow if isinstance(v, int) and v not in nth),
        nth_weekdays=frozenset((d, n) for d, ns in nth.items() for n in ns if n != _LAST),
        last_weekdays=frozenset(d for d, ns in nth.items() if _LAST in ns),
        any_day=any_day,
        any_weekday=any_weekday,
        days_and=raw[2].startswith(("*", "?")) or raw[4].startswith(("*", "?")),
        fixed_time=not _has_star(raw[0]) and not _has_star(raw[1]),
    )
    if not any(_matching_days(spec, y, m) for y in _PROBE_YEARS for m in sorted(spec.months)):
        raise InvalidCronExpression(
            expression, "no day can ever match it (check day-of-month against month and day-of-week)"
        )
    return spec


def _has_star(field: str) -> bool:
    """Whether a term of the field's list is ``*`` (or ``*/n``): it takes every value."""
    return any(term.startswith("*") for term in field.split(","))


def _collapse_equal_ranges(expression: str, text: str) -> str:
    """Rewrite each range whose ends are equal (``17-17``, ``MON-MON``, ``10-10/5``) as that one value.

    cron(5) reads ``17-17`` as hour 17; croniter deliberately reads an equal range as the
    field's whole cycle, so ``0 17-17 * * *`` would fire every hour. Ends are compared as
    written (names as numbers), so day-of-week ``0-7`` and ``SUN-7`` stay whole weeks. A
    step of 0 is refused (``5-5/0``), as cron, croniter and cronsim refuse it on any range.
    """
    fields = text.split(" ")
    for index, field in enumerate(fields):
        terms = field.lower().split(",")
        for position, term in enumerate(terms):
            match = _RANGE_TERM.fullmatch(term)
            if match and _field_value(index, match[1]) == _field_value(index, match[2]) is not None:
                if match[3] and match[3][0] == "/" and int(match[3][1:]) == 0:
                    raise InvalidCronExpression(expression, "a step must be 1 or more", FIELD_NAMES[index], term)
                terms[position] = match[1] + (match[3] if match[3] and match[3][0] == "#" else "")
        fields[index] = ",".join(terms)
    return " ".join(fields)


def _weekday_number(token: str) -> int:
    """Day-of-week ``token`` (``5``, ``fri``, ``7``) as croniter's number, 0 (Sunday) to 6."""
    return (int(token) if token.isdigit() else _NAMED_VALUES[4][token]) % 7


def _field_value(index: int, token: str) -> int | None:
    if token.isdigit():
        return int(token)
    return _NAMED_VALUES[index].get(token)


def _translate(expression: str, text: str, exc: CroniterError) -> InvalidCronExpression:
    """Turn croniter's error into ours, naming the first field croniter refuses alone."""
    from croniter import CroniterError, croniter

    fields = text.split(" ")
    if len(fields) == 5:
        for index, value in enumerate(fields):
            probe = ["*"] * 5
            probe[index] = value
            try:
                croniter(" ".join(probe))
            except CroniterError:
                return InvalidCronExpression(expression, _reason(exc), FIELD_NAMES[index], value)
    return InvalidCronExpression(expression, _reason(exc))


def _reason(exc: CroniterError) -> str:
    message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    if "out of range" in message:
        return "a value is out of range"
    if message.startswith("step") or "step '0'" in message:
        return "a step must be 1 or more"
    if "is not acceptable" in message and message.endswith("is not acceptable"):
        return "a value is not a number, name or cron symbol"
    return message.rstrip(".")
