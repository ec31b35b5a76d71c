"""The package's errors: one base class, one subclass per kind of mistake.

Each error takes the offending value and builds its own sentence, so the command-line
tool prints ``str(error)`` and nothing else. Third-party errors (croniter's, isodate's)
are translated where they are raised, never passed through.
"""

from __future__ import annotations

from collections.abc import Sequence


class SchedulerError(Exception):
    """Base class of every error this package raises on purpose.

    The command-line tool catches exactly this type, prints the message on stderr and
    exits with status 1 (2 for usage errors, see :class:`UsageError`).
    """

    exit_code = 1


class UsageError(SchedulerError, ValueError):
    """A command was called with options that do not fit together."""

    exit_code = 2


class InvalidCronExpression(SchedulerError, ValueError):
    """A cron expression that croniter refuses or that can never fire.

    ``expression`` is the text as given; ``field`` names the offending field when one
    can be named (``"minute"``, ``"hour"``, ``"day-of-month"``, ``"month"``,
    ``"day-of-week"``).
    """

    def __init__(self, expression: str, reason: str, field: str | None = None, value: str | None = None):
        self.expression = expression
        self.reason = reason
        self.field = field
        self.value = value
        where = f" (field {field} = {value!r})" if field else ""
        super().__init__(
            f"invalid cron expression {expression!r}{where}: {reason}. "
            "Expected 5 fields 'minute hour day-of-month month day-of-week', "
            "for example '*/15 9-17 * * MON-FRI', or a macro such as @daily"
        )


class InvalidTimeOfDay(SchedulerError, ValueError):
    """A daily time that is not HH:MM with hour 0-23 and minute 0-59."""

    def __init__(self, value: str, reason: str):
        self.value = value
        super().__init__(f"invalid daily time {value!r}: {reason}. Expected HH:MM from 00:00 to 23:59, such as 02:30")


class InvalidMinute(SchedulerError, ValueError):
    """An hourly minute that is not a whole number from 0 to 59."""

    def __init__(self, value: str):
        self.value = value
        super().__init__(f"invalid minute past the hour {value!r}: expected a whole number from 0 to 59, such as 15")


class InvalidDuration(SchedulerError, ValueError):
    """An interval that is not a positive fixed length of elapsed time."""

    def __init__(self, value: str, reason: str, field: str | None = None):
        self.value = value
        self.reason = reason
        self.field = field
        who = f"{field}: " if field else ""
        bare = value.strip() if isinstance(value, str) else ""
        hint = f" (a number needs a unit: {bare}s, {bare}m or {bare}h)" if bare.isdigit() else ""
        super().__init__(
            f"{who}invalid interval {value!r}: {reason}{hint}. "
            "Expected a positive duration such as 90s, 15m, 2h, 1h30m, 7d, PT15M or P7D"
        )


class InvalidInstant(SchedulerError, ValueError):
    """An ISO 8601 instant that cannot be parsed or carries no UTC offset."""

    def __init__(self, value: str, reason: str, option: str | None = None):
        self.value = value
        label = f"{option} " if option else ""
        super().__init__(
            f"invalid {label}instant {value!r}: {reason}. "
            "Expected ISO 8601 with an offset, such as 2026-03-29T01:30:00+01:00 or 2026-03-29T00:30:00Z"
        )


class UnknownTimezone(SchedulerError, LookupError, ValueError):
    """A timezone name that is not in the IANA database (zoneinfo + tzdata).

    ``suggestions`` holds the nearest valid names, best first (possibly empty).
    """

    def __init__(self, name: str, suggestions: list[str]):
        self.name = name
        self.suggestions = suggestions
        hint = (
            f"; did you mean {' or '.join(suggestions)}?"
            if suggestions
            else "; use an IANA name such as Europe/Berlin or UTC"
        )
        super().__init__(f"unknown timezone {name!r}{hint}")


class InvalidScheduleName(SchedulerError, ValueError):
    """A schedule name with characters other than letters, digits, ``_``, ``-`` and ``.``."""

    def __init__(self, name: str, reason: str | None = None):
        self.name = name
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"invalid schedule name {_short(name, 140)}{why}: use 1-128 letters, digits, '_', '-' and '.', "
            "starting with a letter or digit, such as daily-etl or sales_report.v2"
        )


class InvalidPipelineReference(SchedulerError, ValueError):
    """A pipeline that is neither an entry-point name nor a ``package.module:attr`` reference."""

    def __init__(
        self, reference: str, reason: str = "it is not an entry-point name or module:attr", schedule: str | None = None
    ):
        self.reference = reference
        self.schedule = schedule
        who = f"schedule {schedule!r}: " if schedule is not None else ""
        super().__init__(
            f"{who}invalid pipeline {_short(reference)}: {reason}. Expected an entry-point name in the group "
            "flowyml_sched.pipelines (such as daily_summary) or package.module:attr (such as etl.jobs:run)"
        )


class InvalidPolicy(SchedulerError, ValueError):
    """A policy field (catch-up, overlap, timeout, retries) with a value outside its range."""

    def __init__(self, field: str, value: object, expected: str):
        self.field = field
        self.value = value
        super().__init__(f"invalid {field} {value!r}: expected {expected}")


class InvalidParams(SchedulerError, ValueError):
    """Schedule params that are not a JSON-able mapping within the size limits, or a
    ``--param`` that is not key=value. ``schedule`` names the schedule when it is known; the
    value is shown shortened, so the message stays one line."""

    def __init__(self, value: object, reason: str, schedule: str | None = None):
        self.value = value
        self.reason = reason
        self.schedule = schedule
        who = f"schedule {schedule!r}: " if schedule is not None else ""
        super().__init__(f"{who}invalid params {_short(value)}: {reason}")


class ScheduleExists(SchedulerError, ValueError):
    """Adding a schedule whose name is already taken."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"a schedule named {name!r} already exists; use 'edit' to change it or pick another name")


class ScheduleNotFound(SchedulerError, LookupError):
    """A schedule name that the store (or YAML file) does not hold."""

    def __init__(self, name: str, where: str | None = None):
        self.name = name
        hint = (
            "'flowyml-sched list' shows the names" if where is None else "'flowyml-sched validate FILE' lists its names"
        )
        super().__init__(f"no schedule named {name!r} in {where or 'the store'}; {hint}")


class ScheduleBroken(SchedulerError, ValueError):
    """A stored schedule row that cannot be loaded: a zone a tzdata update dropped, an
    expression, params or policy value written by hand in SQL.

    ``problems`` pairs each field that does not load with why (one line each). The worker
    skips the row; ``edit`` giving each such field a new value repairs it, ``remove`` drops it.
    """

    def __init__(self, name: str, problems: list[tuple[str, str]] | tuple[tuple[str, str], ...]):
        self.name = name
        self.problems = tuple(problems)
        super().__init__(f"{describe_broken(name, self.problems)}; repair it with 'flowyml-sched edit' or remove it")


def describe_broken(name: str, problems: tuple[tuple[str, str], ...]) -> str:
    """``schedule 'm1', field timezone: unknown timezone 'Mars/Olympus'; ...``: one line."""
    fields = "; ".join(f"field {field}: {' '.join(why.split())}" for field, why in problems)
    return f"schedule {name!r}, {fields}"


class StoreError(SchedulerError, OSError):
    """The schedule store cannot be opened, read or written (corrupt file, no permission, server down)."""

    def __init__(self, location: str, reason: str):
        self.location = location
        self.reason = reason
        super().__init__(f"cannot use the schedule store at {location}: {reason}")


class StoreMissing(StoreError):
    """A command that only reads found no store (SQLite file) at ``location``: none was made yet."""


class SpecProblem(SchedulerError, ValueError):
    """One problem in a YAML schedules file, located by file, line and schedule name."""

    def __init__(self, path: str, line: int | None, message: str, schedule: str | None = None):
        self.path = path
        self.line = line
        self.schedule = schedule
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        who = f" schedule {schedule!r}:" if schedule else ""
        super().__init__(f"{where}:{who} {message}")


class InvalidSpec(SchedulerError, ValueError):
    """A YAML schedules file with one or more problems; ``problems`` lists every one of them."""

    def __init__(self, path: str, problems: list[SpecProblem], outcome: str | None = None):
        self.path = path
        self.problems = problems
        self.outcome = outcome
        count = len(problems)
        lines = "\n".join(f"  {p}" for p in problems)
        said = f"; {outcome}" if outcome else ""
        super().__init__(f"{path}: {count} problem{'s' if count != 1 else ''}{said}\n{lines}")

    def because(self, outcome: str) -> InvalidSpec:
        """The same problems, saying what the command did not do about them (``nothing was applied``)."""
        return InvalidSpec(self.path, self.problems, outcome)


class RunExists(SchedulerError, ValueError):
    """Recording a run for a fire time that already has one (one run per schedule and fire time)."""

    def __init__(self, schedule_name: str, scheduled_for: object):
        self.schedule_name = schedule_name
        self.scheduled_for = scheduled_for
        when = scheduled_for.isoformat() if hasattr(scheduled_for, "isoformat") else str(scheduled_for)
        super().__init__(f"schedule {schedule_name!r} already has a run for the fire time {when}")


class RunGone(SchedulerError, LookupError):
    """A run waited for whose history row was deleted meanwhile."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        super().__init__(f"run {run_id} is no longer in the history (pruned while waited for)")


class PipelineNotFound(SchedulerError, LookupError):
    """A pipeline reference that does not resolve: no such entry point, module or attribute."""

    def __init__(self, reference: str, reason: str):
        self.reference = reference
        self.reason = reason
        super().__init__(
            f"pipeline {reference!r} cannot be loaded: {reason}. 'flowyml-sched pipelines' lists the "
            "registered entry points (group flowyml_sched.pipelines); a package.module:attr reference "
            "must be importable by the worker"
        )


class SpecFileError(SchedulerError, OSError):
    """A YAML schedules file that cannot be read or written: missing, no permission, not UTF-8."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"cannot use the schedules file {path}: {reason}")


class OutOfRange(SchedulerError, ValueError):
    """A fire time past the year 9999, the last one the calendar can hold."""

    def __init__(self, what: str):
        super().__init__(f"{what} falls past the year 9999, the last one the calendar can hold")


MIN_YEAR = 1800
"""Earliest year of an instant the tool accepts."""
MAX_YEAR = 9000
"""Latest year of an instant the tool accepts; fire times are sought up to year 9999."""


def _short(value: object, width: int = 80) -> str:
    """``repr(value)`` cut to about ``width`` characters (deep or large values included)."""
    import reprlib

    shortener = reprlib.Repr()
    shortener.maxstring = shortener.maxother = width
    shortener.maxlevel = 3
    try:
        text = shortener.repr(value)
    except ValueError:  # an int of more digits than Python prints
        text = f"<a {type(value).__name__} too large to print>"
    return text if len(text) <= width else text[: width - 3] + "..."


class RunFailed(SchedulerError, RuntimeError):
    """How a run that did not succeed ended, when its pipeline raised nothing this process saw
    (a child process's failure, a timeout, a stop): what ``on_failure`` callbacks get.
    ``status`` is the run's status (``failed``, ``timed_out``, ...), ``error`` its error text."""

    def __init__(self, status: str, error: str | None):
        self.status = status
        self.error = error
        super().__init__(f"the run ended {status}" + (f": {error}" if error else ""))


class InvalidExclusion(SchedulerError, ValueError):
    """An exclusion (``exclude:`` in YAML, ``--exclude-*`` options) that cannot hold: an unknown
    holiday country, subdivision or market (``suggestions``: the nearest valid codes, best
    first), a date that is not a date, a range that ends before it starts, a rule that does
    not fit the schedule. ``field`` names the key or option."""

    def __init__(self, field: str, value: object, reason: str, suggestions: Sequence[str] = ()):
        self.field = field
        self.value = value
        self.suggestions = list(suggestions)
        hint = f"; did you mean {' or '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"invalid {field} {value!r}: {reason}{hint}")


class NeverFires(SchedulerError, ValueError):
    """A schedule whose every fire time for years is excluded (``exclude:``), so it would never run."""

    def __init__(self, after: str, years: int):
        """``after``: the instant sought from, ISO 8601."""
        super().__init__(
            f"no fire time in the {years} years after {after} falls outside the schedule's exclusions: "
            "it would never run; exclude fewer dates or pause it instead"
        )


class LockBackendUnavailable(SchedulerError, OSError):
    """The lock backend (a Redis server) did not answer, or ``refused`` the command (a wrong
    password, a read-only replica, a full server); ``url`` names it without a password."""

    def __init__(self, url: str, reason: str, *, refused: bool = False, lasting: bool = False):
        self.url = url
        self.reason = reason
        self.refused = refused
        self.lasting = lasting
        """What no waiting heals (a wrong password, not a Redis server, no such database)."""
        what = "refused the command" if refused else "is unreachable"
        super().__init__(f"the lock backend at {url} {what}: {reason}")


class LockLost(SchedulerError, RuntimeError):
    """A leased run lock expired while its run went on (another holder may have taken it)."""
