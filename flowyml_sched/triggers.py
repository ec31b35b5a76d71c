"""Triggers: the value objects that say when a schedule fires, and the parsers of their text.

A trigger holds no timezone: the schedule that owns it does, and :mod:`flowyml_sched.timing`
takes both. Each kind is one class here and knows its own text: ``kind`` (its name as
stored), ``key`` (its key in a YAML entry and its CLI option), ``syntax`` (the help for both),
``parse(text, anchor)``, ``text()`` (as stored) and ``fields()`` (as written in YAML); a
calendar kind gives ``spec`` (the cron fields it fires on, which :mod:`flowyml_sched.timing`
walks), an anchored kind ``every`` and ``anchor``. :data:`KINDS` lists them: a new kind is a
class here, added to :data:`KINDS` and :data:`Trigger`. Four kinds:

- :class:`CronTrigger`: a 5-field cron expression in croniter's dialect, or a macro;
- :class:`DailyTrigger`: every day at HH:MM wall time, the same as cron ``MM HH * * *``;
- :class:`HourlyTrigger`: every hour at :MM, the same as cron ``MM * * * *``;
- :class:`IntervalTrigger`: every fixed length of elapsed time from an anchor instant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from flowyml_sched.errors import MAX_YEAR, MIN_YEAR, InvalidDuration, InvalidInstant, InvalidMinute, InvalidTimeOfDay

if TYPE_CHECKING:
    from flowyml_sched.cronspec import CronSpec

UTC = timezone.utc

MAX_DURATION = timedelta(days=36500)
"""The longest interval, timeout or grace accepted: 100 years."""

_SHORT_DURATION = re.compile(r"(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?")
_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})")


def _compile(expression: str) -> CronSpec:
    """:func:`flowyml_sched.cronspec.compile_cron`, imported on first use: the CLI lists the
    kinds (their keys and syntax) in every ``--help`` without loading croniter."""
    from flowyml_sched.cronspec import compile_cron

    return compile_cron(expression)


class _CalendarKind:
    """What the calendar kinds share: they fire at the wall-clock minutes of a cron expression
    (:meth:`cron`), have no anchor, and a YAML entry holds their text under their key."""

    kind: ClassVar[str]
    key: ClassVar[str]
    syntax: ClassVar[str]
    anchored: ClassVar[bool] = False

    def text(self) -> str:
        raise NotImplementedError

    def cron(self) -> str:
        """The cron expression of the minutes it fires at."""
        raise NotImplementedError

    def fields(self) -> dict[str, Any]:
        return {self.key: self.text()}

    @property
    def spec(self) -> CronSpec:
        return _compile(self.cron())


@dataclass(frozen=True)
class CronTrigger(_CalendarKind):
    """Fires at every wall-clock minute that matches ``expression`` (see :mod:`flowyml_sched.cronspec`)."""

    expression: str

    kind = "cron"
    key = "cron"
    syntax = "Cron expression, 5 fields or a macro: '*/15 9-17 * * MON-FRI'."

    def __post_init__(self) -> None:
        _compile(self.expression)

    @classmethod
    def parse(cls, text: str, anchor: datetime | None = None) -> CronTrigger:
        """Raises InvalidCronExpression."""
        return cls(text)

    def text(self) -> str:
        return self.expression

    cron = describe = text


@dataclass(frozen=True)
class DailyTrigger(_CalendarKind):
    """Fires every day at ``hour``:``minute`` wall time (cron ``MM HH * * *``)."""

    hour: int
    minute: int

    kind = "daily"
    key = "daily"
    syntax = "Every day at HH:MM wall time: 02:30."

    def __post_init__(self) -> None:
        if not 0 <= self.hour <= 23 or not 0 <= self.minute <= 59:
            raise InvalidTimeOfDay(f"{self.hour:02d}:{self.minute:02d}", "hour must be 0-23 and minute 0-59")

    @classmethod
    def parse(cls, text: str, anchor: datetime | None = None) -> DailyTrigger:
        """``HH:MM`` (00:00 to 23:59); raises InvalidTimeOfDay."""
        return parse_time_of_day(text)

    def text(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d}"

    def cron(self) -> str:
        return f"{self.minute} {self.hour} * * *"

    describe = text


@dataclass(frozen=True)
class HourlyTrigger(_CalendarKind):
    """Fires every hour at ``minute`` past the hour (cron ``MM * * * *``)."""

    minute: int

    kind = "hourly"
    key = "hourly"
    syntax = "Every hour at minute MM: 15."

    def __post_init__(self) -> None:
        if not 0 <= self.minute <= 59:
            raise InvalidMinute(str(self.minute))

    @classmethod
    def parse(cls, text: str, anchor: datetime | None = None) -> HourlyTrigger:
        """``MM`` or ``:MM`` (0 to 59); raises InvalidMinute."""
        return parse_minute(text)

    def text(self) -> str:
        return str(self.minute)

    def cron(self) -> str:
        return f"{self.minute} * * * *"

    def fields(self) -> dict[str, Any]:
        return {"hourly": self.minute}  # a number in YAML

    def describe(self) -> str:
        return f":{self.minute:02d}"


@dataclass(frozen=True)
class IntervalTrigger:
    """Fires at ``anchor + k * every`` for whole k, computed as elapsed time in UTC.

    ``every`` is a positive :class:`~datetime.timedelta`; ``anchor`` an aware datetime
    (kept as UTC). A 7-day interval anchored at 16:00 before a DST change fires at 17:00
    local after it: elapsed time, not wall time.
    """

    every: timedelta
    anchor: datetime

    kind = "interval"
    key = "every"
    anchored = True
    syntax = "Interval of elapsed time: 90s, 15m, 2h, 1h30m, 7d, PT15M, P7D."

    @classmethod
    def parse(cls, text: str, anchor: datetime | None = None) -> IntervalTrigger:
        """A duration (:func:`parse_duration`) counted from ``anchor`` (required, aware).
        Raises InvalidDuration, InvalidInstant."""
        if anchor is None:
            raise InvalidInstant("", "an interval needs an anchor", "anchor")
        return cls(parse_duration(text), anchor)

    def text(self) -> str:
        """The interval as stored and written (``1h30m``). Raises InvalidDuration for a part of
        a second, which that text cannot hold."""
        if self.every % timedelta(seconds=1):
            raise InvalidDuration(str(self.every), "it has a fraction of a second: durations are whole seconds")
        return format_duration(self.every)

    def fields(self) -> dict[str, Any]:
        return {"every": self.text(), "anchor": format_instant(self.anchor)}

    def __post_init__(self) -> None:
        if self.every <= timedelta(0):
            raise InvalidDuration(str(self.every), "it must be longer than zero")
        if self.every > MAX_DURATION:
            raise InvalidDuration(str(self.every), f"it is longer than {MAX_DURATION.days} days")
        if self.anchor.tzinfo is None or self.anchor.utcoffset() is None:
            raise InvalidInstant(self.anchor.isoformat(), "it has no UTC offset", "anchor")
        object.__setattr__(self, "anchor", self.anchor.astimezone(UTC))

    def describe(self) -> str:
        return f"every {format_duration(self.every)}"


Trigger = CronTrigger | DailyTrigger | HourlyTrigger | IntervalTrigger
"""Any of the trigger kinds."""

KINDS: tuple[type[Trigger], ...] = (CronTrigger, DailyTrigger, HourlyTrigger, IntervalTrigger)
"""Every trigger kind, in the order they are listed to users."""

TRIGGER_KEYS = tuple(kind.key for kind in KINDS)
"""Exactly one of these keys (a YAML entry's, a CLI option's) gives a schedule's trigger."""


def kind_of_key(key: str) -> type[Trigger]:
    """The trigger kind whose key is ``key`` (``every`` for intervals). Raises KeyError."""
    return next(kind for kind in KINDS if kind.key == key)


def format_instant(moment: datetime) -> str:
    """ISO 8601 in UTC with ``Z``, microseconds only when present: ``2026-01-01T00:00:00Z``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time_of_day(text: str) -> DailyTrigger:
    """Parse ``HH:MM`` (00:00 to 23:59) into a :class:`DailyTrigger`.

    Raises :class:`~flowyml_sched.errors.InvalidTimeOfDay`.
    """
    match = _TIME_OF_DAY.fullmatch(text.strip())
    if not match:
        raise InvalidTimeOfDay(text, "it is not HH:MM")
    hour, minute = int(match[1]), int(match[2])
    if hour > 23:
        raise InvalidTimeOfDay(text, f"hour {hour} is past 23")
    if minute > 59:
        raise InvalidTimeOfDay(text, f"minute {minute} is past 59")
    return DailyTrigger(hour, minute)


def parse_minute(text: str) -> HourlyTrigger:
    """Parse ``MM`` or ``:MM`` (0 to 59) into an :class:`HourlyTrigger`.

    Raises :class:`~flowyml_sched.errors.InvalidMinute`.
    """
    digits = text.strip().removeprefix(":")
    if not digits.isdigit() or not 0 <= int(digits) <= 59:
        raise InvalidMinute(text)
    return HourlyTrigger(int(digits))


def parse_duration(text: str, field: str | None = None) -> timedelta:
    """Parse ``90s``, ``15m``, ``2h``, ``1h30m``, ``7d`` or ISO 8601 (``PT15M``, ``P7D``).

    Returns a positive timedelta. Calendar years and months are refused: they are not a
    fixed length of elapsed time. ISO 8601 parsing is isodate's.
    Raises :class:`~flowyml_sched.errors.InvalidDuration`, naming ``field`` (an option or key) when given.
    """
    stripped = text.strip()
    if stripped[:1] in ("P", "p"):
        import isodate

        try:
            value = isodate.parse_duration(stripped.upper())
        except OverflowError:
            raise InvalidDuration(text, f"it is longer than {MAX_DURATION.days} days", field) from None
        except (isodate.ISO8601Error, ValueError) as exc:
            raise InvalidDuration(text, f"it is not an ISO 8601 duration ({exc})", field) from None
        if not isinstance(value, timedelta):
            raise InvalidDuration(text, "years and months have no fixed length; use a cron schedule", field)
    else:
        match = _SHORT_DURATION.fullmatch(stripped) if len(stripped) <= 40 else None
        if not stripped or not match:
            reason = "it is not a number followed by d, h, m or s"
            if stripped and _SHORT_DURATION.fullmatch(stripped.lower()):
                reason = "units are lower case (m is minutes; months have no fixed length)"
            raise InvalidDuration(text, reason, field)
        parts = {k: int(v) for k, v in match.groupdict(default="0").items()}
        try:
            value = timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
        except OverflowError:
            raise InvalidDuration(text, f"it is longer than {MAX_DURATION.days} days", field) from None
    if value <= timedelta(0):
        raise InvalidDuration(text, "it must be longer than zero", field)
    if value > MAX_DURATION:
        raise InvalidDuration(text, f"it is longer than {MAX_DURATION.days} days", field)
    return value


def format_duration(value: timedelta) -> str:
    """Render a timedelta in the short form :func:`parse_duration` reads (``1h30m``)."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_instant(text: str, option: str | None = None) -> datetime:
    """Parse an ISO 8601 instant that carries a UTC offset (or ``Z``).

    Returns an aware datetime with the offset as given. ``option`` names the flag or
    field for the error message. Raises :class:`~flowyml_sched.errors.InvalidInstant`.
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInstant(text, "it is not an ISO 8601 date and time", option) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInstant(text, "it has no UTC offset, so it names no single instant", option)
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise InvalidInstant(text, f"its year is outside {MIN_YEAR}-{MAX_YEAR}", option)
    return value


def trigger_from_text(kind: str, text: str, anchor: datetime | None = None) -> Trigger:
    """Rebuild a trigger from its kind as stored (``cron``, ``daily``, ``hourly``,
    ``interval``) and text; ``anchor`` (aware) is required for an anchored kind. Raises the
    parsers' errors for bad text and ``ValueError`` for an unknown kind."""
    for candidate in KINDS:
        if candidate.kind == kind:
            return candidate.parse(text, anchor)
    known = ", ".join(k.kind for k in KINDS)
    raise ValueError(f"unknown trigger kind {kind!r}: expected one of {known}")
