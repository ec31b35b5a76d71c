"""Calendar exclusions: the local dates on which a schedule does not fire, and what becomes of
a fire time that falls on one. Pure: no clock; holiday data comes from the ``holidays``
package (python-holidays, the ``holidays`` extra), imported only when a schedule names a
holiday calendar.

A fire time is *excluded* when its local date in the schedule's zone is a holiday of
:attr:`Exclusions.holidays`, one of :attr:`Exclusions.dates`, or inside one of
:attr:`Exclusions.ranges` (both ends included). :attr:`Exclusions.on_excluded` says what
becomes of it (:class:`OnExcluded`); :func:`flowyml_sched.timing.next_fire_time` applies it.
A *business day* is a Monday to Friday that is not excluded: moved fire times land only on
business days. Saturdays and Sundays are not excluded themselves: a daily schedule still
fires on them unless they are excluded.
"""

from __future__ import annotations

import difflib
import enum
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from flowyml_sched.errors import MAX_YEAR, MIN_YEAR, InvalidExclusion

MAX_RANGE_DAYS = 1830
"""The most days in a row that ranges and dates may exclude together (five years): longer is a
pause, not a calendar. It keeps every schedule's next fire time within
:data:`flowyml_sched.timing.NEVER_FIRES_YEARS` of any instant."""

MAX_DATES = 10_000
"""The most dates (and, apart, ranges) one schedule may list."""

_DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")

_ONE_DAY = timedelta(days=1)
_HOLIDAYS_EXTRA = "holiday calendars need the holidays package: pip install 'flowyml-sched[holidays]'"
_CALENDAR_TEXT = re.compile(r"([A-Za-z][A-Za-z ]*?)(?:-([A-Za-z0-9]+))?")


class OnExcluded(enum.Enum):
    """What becomes of an excluded fire time.

    ``skip``: it is no fire time at all (no run, no ``missed`` row);
    ``next_business_day`` / ``previous_business_day``: it moves to the same wall time on the
    next / previous business day (DST gaps and folds resolved as for a fixed-time schedule),
    merging into a fire time the schedule has there anyway.
    """

    skip = "skip"
    next_business_day = "next_business_day"
    previous_business_day = "previous_business_day"


@dataclass(frozen=True)
class HolidayCalendar:
    """A python-holidays calendar: a ``country`` (ISO 3166 code, such as ``US``) with an
    optional ``subdivision`` (``NY``), or a financial ``market`` (``NYSE``). Codes are kept as
    the package spells them. Raises :class:`~flowyml_sched.errors.InvalidExclusion` for an
    unknown code (with the nearest valid ones) or when the package is not installed."""

    country: str | None = None
    subdivision: str | None = None
    market: str | None = None

    def __post_init__(self) -> None:
        if self.country is None and self.market is None:
            raise InvalidExclusion("holidays", "", "give a country (with an optional subdivision) or a market")
        if self.country is not None and self.market is not None:
            raise InvalidExclusion("holidays", f"{self.country}, {self.market}", "give a country or a market, not both")
        if self.market is not None and self.subdivision is not None:
            raise InvalidExclusion("holidays", self.describe(), "a market has no subdivision")
        if self.market is not None:
            object.__setattr__(self, "market", _known("market", self.market, _markets()))
            return
        assert self.country is not None
        countries = _countries()
        country = _known("country", self.country, countries)
        object.__setattr__(self, "country", country)
        if self.subdivision is not None:
            field = f"subdivision of {country}"
            object.__setattr__(self, "subdivision", _known(field, self.subdivision, countries[country]))

    @classmethod
    def parse(cls, text: str, field: str = "holidays") -> HolidayCalendar:
        """``US`` or ``US-NY`` (country, subdivision); raises InvalidExclusion."""
        match = _CALENDAR_TEXT.fullmatch(text.strip())
        if match is None:
            raise InvalidExclusion(field, text, "expected a country code with an optional subdivision, such as US-NY")
        return cls(country=match[1], subdivision=match[2])

    def describe(self) -> str:
        """``US-NY``, ``US`` or ``market NYSE``."""
        if self.market is not None:
            return f"market {self.market}"
        return f"{self.country}-{self.subdivision}" if self.subdivision else str(self.country)

    def fields(self) -> dict[str, str]:
        """As written in YAML and stored: ``{country: US, subdivision: NY}`` or ``{market: NYSE}``."""
        if self.market is not None:
            return {"market": self.market}
        out = {"country": str(self.country)}
        if self.subdivision is not None:
            out["subdivision"] = self.subdivision
        return out

    def name_of(self, day: date) -> str | None:
        """The holiday's name on ``day`` (names joined with ``; `` when several), or None."""
        return _year_of(self, day.year).get(day)


@dataclass(frozen=True)
class DateRange:
    """The local dates from ``start`` to ``end``, both included."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise InvalidExclusion("range", self.describe(), "it ends before it starts")
        if (self.end - self.start).days >= MAX_RANGE_DAYS:
            raise InvalidExclusion(
                "range", self.describe(), f"it is longer than {MAX_RANGE_DAYS} days; pause the schedule instead"
            )
        for day in (self.start, self.end):
            _check_year(day, "range", self.describe())

    @classmethod
    def parse(cls, text: str, field: str = "range") -> DateRange:
        """``2026-08-03..2026-08-14``; raises InvalidExclusion."""
        start, dots, end = text.partition("..")
        if not dots:
            raise InvalidExclusion(field, text, "expected FROM..TO, such as 2026-08-03..2026-08-14")
        return cls(parse_date(start, field), parse_date(end, field))

    def describe(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"

    def fields(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}


@dataclass(frozen=True)
class Exclusions:
    """The dates a schedule does not fire on, and :class:`OnExcluded`. False when it excludes
    nothing (the default of every schedule). ``dates`` and ``ranges`` are kept sorted."""

    holidays: HolidayCalendar | None = None
    dates: tuple[date, ...] = ()
    ranges: tuple[DateRange, ...] = ()
    on_excluded: OnExcluded = OnExcluded.skip
    _reasons: dict[date, str | None] = field(default_factory=dict, init=False, repr=False, compare=False)
    """:meth:`reason` of each day asked about: the engine asks about the same days again and again."""

    def __post_init__(self) -> None:
        if not isinstance(self.on_excluded, OnExcluded):
            raise InvalidExclusion("on_excluded", self.on_excluded, "expected " + _RULES)
        if not self:  # a rule for nothing excluded is no rule: one value for "excludes nothing"
            object.__setattr__(self, "on_excluded", OnExcluded.skip)
        if len(self.dates) > MAX_DATES or len(self.ranges) > MAX_DATES:
            raise InvalidExclusion(
                "exclude", f"{len(self.dates)} dates, {len(self.ranges)} ranges", f"at most {MAX_DATES} of each"
            )
        object.__setattr__(self, "dates", tuple(sorted(set(self.dates))))
        object.__setattr__(self, "ranges", tuple(sorted(set(self.ranges), key=lambda r: (r.start, r.end))))
        longest = self._longest_run()
        if longest is not None:
            first, last = longest
            raise InvalidExclusion(
                "exclude",
                f"{first.isoformat()}..{last.isoformat()}",
                f"its dates and ranges exclude {(last - first).days + 1} days in a row, more than "
                f"{MAX_RANGE_DAYS}; pause the schedule instead",
            )

    def __bool__(self) -> bool:
        return self.holidays is not None or bool(self.dates) or bool(self.ranges)

    @property
    def moves(self) -> bool:
        """True when excluded fire times move to a business day instead of being skipped."""
        return bool(self) and self.on_excluded is not OnExcluded.skip

    def reason(self, day: date) -> str | None:
        """Why the local date ``day`` is excluded (the holiday's name, ``excluded date``,
        ``excluded range FROM..TO``), or None when it is not."""
        try:
            return self._reasons[day]
        except KeyError:
            found = self._reasons[day] = self._find_reason(day)
            return found

    def _find_reason(self, day: date) -> str | None:
        if self.holidays is not None:
            name = self.holidays.name_of(day)
            if name is not None:
                return name
        if day in self.dates:
            return "excluded date"
        found = next((r for r in self.ranges if r.start <= day <= r.end), None)
        return None if found is None else f"excluded range {found.describe()}"

    def range_end(self, day: date) -> date | None:
        """The last day of the longest range holding ``day``, or None."""
        ends = [r.end for r in self.ranges if r.start <= day <= r.end]
        return max(ends) if ends else None

    def is_business_day(self, day: date) -> bool:
        """Monday to Friday and not excluded."""
        return day.weekday() < 5 and self.reason(day) is None

    def business_day_after(self, day: date) -> date:
        """The first business day after ``day``."""
        return self._walk(day, _ONE_DAY)

    def business_day_before(self, day: date) -> date:
        """The last business day before ``day``."""
        return self._walk(day, -_ONE_DAY)

    def fields(self) -> dict[str, Any]:
        """The ``exclude:`` mapping as plain data, keys only for what is given (empty when nothing is)."""
        out: dict[str, Any] = {}
        if self.holidays is not None:
            out["holidays"] = self.holidays.fields()
        if self.dates:
            out["dates"] = [d.isoformat() for d in self.dates]
        if self.ranges:
            out["ranges"] = [r.fields() for r in self.ranges]
        return out

    def describe(self) -> str:
        """One line: ``holidays US-NY, 2 dates, 1 range; skip``; empty when nothing is excluded."""
        if not self:
            return ""
        parts = []
        if self.holidays is not None:
            calendar = self.holidays.describe()
            parts.append(calendar if self.holidays.market is not None else f"holidays {calendar}")
        parts.extend(d.isoformat() for d in self.dates)
        parts.extend(r.describe() for r in self.ranges)
        return ", ".join(parts) + f"; {self.on_excluded.value}"

    def _longest_run(self) -> tuple[date, date] | None:
        """The first run of days that dates and ranges exclude together (days next to each
        other joined) longer than :data:`MAX_RANGE_DAYS`, or None."""
        spans = sorted([(r.start, r.end) for r in self.ranges] + [(d, d) for d in self.dates])
        run: tuple[date, date] | None = None
        for start, end in spans:
            if run is not None and start <= run[1] + _ONE_DAY:
                run = (run[0], max(run[1], end))
            else:
                run = (start, end)
            if (run[1] - run[0]).days >= MAX_RANGE_DAYS:
                return run
        return None

    def _walk(self, day: date, step: timedelta) -> date:
        # a run of days that are not business days is at most a range, its weekends and the
        # holidays around it (ranges are shorter than MAX_RANGE_DAYS)
        current = day + step
        while not self.is_business_day(current):
            current += step
        return current


NO_EXCLUSIONS = Exclusions()
"""Excludes nothing."""

_RULES = ", ".join(rule.value for rule in OnExcluded)


def parse_date(text: str, field: str = "date") -> date:
    """``YYYY-MM-DD`` (years 1800-9000, as instants); raises InvalidExclusion naming ``field``."""
    expected = "it is not a date; expected YYYY-MM-DD, such as 2026-12-24"
    if not _DATE_TEXT.fullmatch(text.strip()):
        raise InvalidExclusion(field, text, expected)
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidExclusion(field, text, expected) from None
    _check_year(day, field, text)
    return day


def _check_year(day: date, field: str, shown: str) -> None:
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise InvalidExclusion(field, shown, f"its year is outside {MIN_YEAR}-{MAX_YEAR}")


def on_excluded_of(value: Any, field: str = "on_excluded") -> OnExcluded:
    """The rule a text names; raises InvalidExclusion with the valid ones."""
    if isinstance(value, OnExcluded):
        return value
    try:
        return OnExcluded(str(value).strip().lower().replace("-", "_"))
    except ValueError:
        close = difflib.get_close_matches(str(value), [rule.value for rule in OnExcluded], n=1)
        raise InvalidExclusion(field, value, f"expected one of {_RULES}", close) from None


def exclusions_of(fields: Mapping[str, Any] | None, on_excluded: Any = None) -> Exclusions:
    """:class:`Exclusions` from the ``exclude:`` mapping (``holidays``: ``{country, subdivision}``,
    ``{market}`` or ``"US-NY"``; ``dates``: a list of ``YYYY-MM-DD``; ``ranges``: a list of
    ``{from, to}`` or ``"FROM..TO"``) as stored or read from YAML, and ``on_excluded`` (None:
    skip). Raises InvalidExclusion naming the key, for anything else."""
    fields = dict(fields or {})
    unknown = sorted(set(fields) - {"holidays", "dates", "ranges"})
    if unknown:
        close = difflib.get_close_matches(unknown[0], ["holidays", "dates", "ranges"], n=1)
        raise InvalidExclusion("exclude key", unknown[0], "expected holidays, dates or ranges", close)
    return Exclusions(
        holidays=_calendar_of(fields.get("holidays")),
        dates=tuple(_date_of(value, "exclude dates") for value in _listed(fields.get("dates"), "dates")),
        ranges=tuple(_range_of(value) for value in _listed(fields.get("ranges"), "ranges")),
        on_excluded=OnExcluded.skip if on_excluded is None else on_excluded_of(on_excluded),
    )


def _listed(value: Any, key: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise InvalidExclusion(f"exclude {key}", value, "expected a list")
    if len(value) > MAX_DATES:
        raise InvalidExclusion(f"exclude {key}", f"{len(value)} items", f"at most {MAX_DATES}")
    return list(value)


def _date_of(value: Any, field: str) -> date:
    if isinstance(value, date):
        _check_year(value, field, value.isoformat())
        return value
    return parse_date(str(value), field)


def _range_of(value: Any) -> DateRange:
    if isinstance(value, DateRange):
        return value
    if isinstance(value, str):
        return DateRange.parse(value, "exclude range")
    if not isinstance(value, Mapping) or set(value) != {"from", "to"}:
        raise InvalidExclusion("exclude range", value, "expected {from: YYYY-MM-DD, to: YYYY-MM-DD}")
    return DateRange(_date_of(value["from"], "exclude range from"), _date_of(value["to"], "exclude range to"))


def _calendar_of(value: Any) -> HolidayCalendar | None:
    if value is None or isinstance(value, HolidayCalendar):
        return value
    if isinstance(value, str):
        return HolidayCalendar.parse(value, "exclude holidays")
    keys = {"country", "subdivision", "market"}
    if not isinstance(value, Mapping) or not set(value) <= keys:
        raise InvalidExclusion(
            "exclude holidays", value, "expected {country: US, subdivision: NY}, {market: NYSE} or US-NY"
        )
    return HolidayCalendar(**{key: str(item) for key, item in value.items() if item is not None})


# -- python-holidays, imported on first use --------------------------------------------------


def _holidays_module() -> Any:
    try:
        import holidays
    except ImportError:
        raise InvalidExclusion("holidays", "", _HOLIDAYS_EXTRA) from None
    return holidays


@functools.cache
def _countries() -> dict[str, list[str]]:
    return _holidays_module().list_supported_countries(include_aliases=True)


@functools.cache
def _markets() -> dict[str, list[str]]:
    return _holidays_module().list_supported_financial(include_aliases=True)


@functools.cache
def _names_by_code() -> dict[str, str]:
    """Lower-case English names (``united states``) to their ISO code, for suggestions."""
    from holidays.registry import COUNTRIES

    out = {}
    for class_name, code, *_aliases in COUNTRIES.values():
        out[re.sub(r"(?<!^)(?=[A-Z])", " ", class_name).lower()] = code
    return out


def _known(what: str, code: str, known: Mapping[str, Any] | list[str]) -> str:
    """``code`` as the package spells it (case aside), or InvalidExclusion with the nearest."""
    if code in known:  # as stored: the common case, each time a stored schedule is loaded
        return code
    by_upper = {str(k).upper(): str(k) for k in known}
    found = by_upper.get(code.strip().upper())
    if found is not None:
        return found
    suggestions = difflib.get_close_matches(code.upper(), list(by_upper), n=3, cutoff=0.5)
    if what == "country":  # a country's name (Germany) suggests its code alone
        named = _names_by_code()
        close = difflib.get_close_matches(code.lower(), list(named), n=3, cutoff=0.75)
        suggestions = [named[n] for n in close] or suggestions
    unique = list(dict.fromkeys(by_upper.get(s.upper(), s) for s in suggestions))[:3]
    reason = "python-holidays has no such calendar"
    if code.isdigit():
        reason += ' (in YAML, quote a code with leading zeros: subdivision: "01")'
    if not unique and len(known) <= 40:
        return _refuse(what, code, f"expected one of {', '.join(map(str, known))}")
    return _refuse(what, code, reason, unique)


def _refuse(what: str, code: str, reason: str, suggestions: list[str] | None = None) -> str:
    raise InvalidExclusion(f"holidays {what}", code, reason, suggestions or ())


@functools.lru_cache(maxsize=256)
def _year_of(calendar: HolidayCalendar, year: int) -> dict[date, str]:
    """The calendar's holidays in ``year``, names in English where the package has them."""
    holidays = _holidays_module()
    if calendar.market is not None:
        found = holidays.financial_holidays(calendar.market, years=year, language="en_US")
    else:
        found = holidays.country_holidays(calendar.country, subdiv=calendar.subdivision, years=year, language="en_US")
    return dict(found.items())
