"""Option types shared by several commands, and the helpers that turn them into values."""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

import typer

from flowyml_sched.errors import InvalidParams, UsageError
from flowyml_sched.triggers import KINDS, TRIGGER_KEYS

if TYPE_CHECKING:
    from flowyml_sched.application import ScheduleFile, Scheduler
    from flowyml_sched.config import Settings

F = TypeVar("F", bound=Callable[..., object])

STORE = "Store"
SCHEDULE = "Schedule"
POLICY = "Policy"
EXCLUSIONS = "Exclusions"

DbPath = Annotated[
    Optional[Path],
    typer.Option("--db", help="SQLite file of the store. [env: FLOWYML_SCHEDULER_DB_PATH]", rich_help_panel=STORE),
]
DbUrl = Annotated[
    Optional[str],
    typer.Option(
        "--db-url",
        help="SQLAlchemy URL of the store, such as postgresql+psycopg://host/db. [env: FLOWYML_SCHEDULER_DB_URL]",
        rich_help_panel=STORE,
    ),
]
ConfigPath = Annotated[
    Optional[Path],
    typer.Option(
        "--config",
        help="YAML config file (keys db_url, db_path, timezone, state_dir, lock_backend, redis_url; and the Python "
        "API's persist, distributed, check_interval, max_concurrent). [env: FLOWYML_SCHEDULER_CONFIG]",
        rich_help_panel=STORE,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
YamlFile = Annotated[
    Optional[Path],
    typer.Option("--file", "-f", help="Edit this YAML schedules file instead of the store.", rich_help_panel=STORE),
]

Anchor = Annotated[
    Optional[str],
    typer.Option(
        "--anchor",
        help="With --every: ISO 8601 instant with offset the interval counts from (default: now).",
        rich_help_panel=SCHEDULE,
    ),
]
Timezone = Annotated[
    Optional[str],
    typer.Option(
        "--tz",
        help="IANA timezone of the schedule, such as Europe/Berlin. [default: FLOWYML_SCHEDULER_TIMEZONE, the config file's timezone, else UTC]",
        rich_help_panel=SCHEDULE,
    ),
]
Params = Annotated[
    Optional[list[str]],
    typer.Option(
        "--param",
        help="Pipeline parameter KEY=VALUE (VALUE read as JSON when it is JSON, else text); repeatable.",
        rich_help_panel=SCHEDULE,
    ),
]
CheckPipeline = Annotated[
    bool,
    typer.Option(
        "--check-pipeline/--no-check-pipeline",
        help="Refuse a pipeline that cannot be found in this environment (entry point or importable module).",
    ),
]
Description = Annotated[Optional[str], typer.Option("--description", help="What the schedule is for.")]
Tags = Annotated[Optional[list[str]], typer.Option("--tag", help="Tag, repeatable.")]
CatchUpOpt = Annotated[
    Optional[str],
    typer.Option("--catchup", help="After downtime: latest (default), none or all.", rich_help_panel=POLICY),
]
MaxCatchUp = Annotated[
    Optional[int],
    typer.Option("--max-catchup", help="With --catchup all: most missed fire times run (100).", rich_help_panel=POLICY),
]
MisfireGrace = Annotated[
    Optional[str],
    typer.Option(
        "--misfire-grace",
        help="A fire time claimed later than this (60s) counts as missed and follows --catchup.",
        rich_help_panel=POLICY,
    ),
]
OverlapOpt = Annotated[
    Optional[str],
    typer.Option(
        "--overlap",
        help="While the previous run goes on: skip (default), queue, allow, replace.",
        rich_help_panel=POLICY,
    ),
]
Timeout = Annotated[
    Optional[str],
    typer.Option("--timeout", help="Stop a run after this duration, such as 30m.", rich_help_panel=POLICY),
]
Retries = Annotated[
    Optional[int], typer.Option("--retries", help="Times a failed run is tried again (0).", rich_help_panel=POLICY)
]
RetryBackoff = Annotated[
    Optional[str],
    typer.Option("--retry-backoff", help="Wait between tries, such as 1m (60s).", rich_help_panel=POLICY),
]
ExcludeHolidays = Annotated[
    Optional[str],
    typer.Option(
        "--exclude-holidays",
        help="Skip (or move) fire times on this country's public holidays, with an optional subdivision: US, US-NY, GB-ENG, DE-BY.",
        rich_help_panel=EXCLUSIONS,
    ),
]
ExcludeMarket = Annotated[
    Optional[str],
    typer.Option(
        "--exclude-market",
        help="Skip (or move) fire times on the days this market is closed: NYSE, XLON, XETR, ...",
        rich_help_panel=EXCLUSIONS,
    ),
]
ExcludeDates = Annotated[
    Optional[list[str]],
    typer.Option(
        "--exclude-date", help="A local date not to fire on, YYYY-MM-DD; repeatable.", rich_help_panel=EXCLUSIONS
    ),
]
ExcludeRanges = Annotated[
    Optional[list[str]],
    typer.Option(
        "--exclude-range",
        help="Local dates not to fire on, FROM..TO (both included): 2026-08-03..2026-08-14; repeatable.",
        rich_help_panel=EXCLUSIONS,
    ),
]
OnExcludedOpt = Annotated[
    Optional[str],
    typer.Option(
        "--on-excluded",
        help="An excluded fire time is: skip (default), next_business_day or previous_business_day "
        "(the same wall time on the next / previous weekday that is not excluded).",
        rich_help_panel=EXCLUSIONS,
    ),
]


def bounded_float(flag: str, low: float, high: float, help: str) -> Any:
    """A float option within ``[low, high]`` that also refuses ``nan`` (see :func:`finite`)."""
    return typer.Option(flag, min=low, max=high, callback=finite, help=help)


def lock_backend(value: str | None) -> str | None:
    """Typer callback for ``--lock-backend``: one of the lock backends (a usage error otherwise)."""
    from flowyml_sched.config import LOCK_BACKENDS

    if value is not None and value not in LOCK_BACKENDS:
        raise typer.BadParameter(f"{value!r} is not a lock backend; use {' or '.join(map(repr, LOCK_BACKENDS))}")
    return value


def finite(value: float | None) -> float | None:
    """Typer callback for float options: refuses ``nan``, which passes every range check."""
    if value is not None and math.isnan(value):
        raise typer.BadParameter("nan is not a number; give a finite one")
    return value


@dataclass(frozen=True)
class StoreFlags:
    """The store that ``--db``, ``--db-url`` and ``--config`` (and the environment) name."""

    db: Path | None = None
    db_url: str | None = None
    config: Path | None = None

    def settings(self, *, lock_backend: str | None = None, redis_url: str | None = None) -> Settings:
        """The settings resolved from these flags (and the worker's ``lock_backend`` and
        ``redis_url``) and the process environment. Raises UsageError when both ``--db`` and
        ``--db-url`` are given, SettingError and ConfigError."""
        from flowyml_sched.config import resolve_settings

        if self.db is not None and self.db_url is not None:
            raise UsageError("give --db or --db-url, not both")
        return resolve_settings(
            os.environ,
            db_path=self.db,
            db_url=self.db_url,
            config_path=self.config,
            lock_backend=lock_backend,
            redis_url=redis_url,
        )

    @contextmanager
    def scheduler(self, create: bool = True) -> Iterator[Scheduler]:
        """The use cases on the store, closed on exit. Commands that only read pass
        ``create=False``, so a mistyped path is an error rather than a new empty store (the
        error then says where that path came from)."""
        from flowyml_sched.application import open_scheduler
        from flowyml_sched.errors import StoreMissing

        settings = self.settings()
        try:
            with open_scheduler(settings, create=create) as opened:
                yield opened
        except StoreMissing as missing:
            named = _NAMED_BY.get(settings.db_source, settings.db_source)
            raise StoreMissing(missing.location, f"{missing.reason}; the store was named by {named}") from None

    def schedule_file(self, file: Path) -> ScheduleFile:
        """The use cases on the YAML file ``file``, new schedules in the configured zone."""
        from flowyml_sched.application import ScheduleFile

        return ScheduleFile(str(file), timezone=self.settings().timezone)


_NAMED_BY = {
    "config db_url": "the config file's db_url",
    "config db_path": "the config file's db_path",
    "default": "default (no --db, --db-url, environment or config file named one)",
}
"""How a store's source (:attr:`flowyml_sched.config.Settings.db_source`) is said in messages."""


def store_options(command: F) -> F:
    """Give ``command`` the options ``--db``, ``--db-url`` and ``--config`` (last), and pass
    them to it as one :class:`StoreFlags`, its parameter ``flags``."""
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        for name, annotation in (("db", DbPath), ("db_url", DbUrl), ("config", ConfigPath))
    ]
    return _with_options(command, extra, before=None, into="flags", build=lambda given: StoreFlags(**given))


LABELS = {
    key: "--" + key.replace("_", "-")
    for key in (
        *TRIGGER_KEYS,
        "anchor",
        "catchup",
        "overlap",
        "misfire_grace",
        "timeout",
        "retry_backoff",
        "on_excluded",
    )
} | {"exclude": "--exclude-holidays, --exclude-market, --exclude-date or --exclude-range"}
"""The options that name schedule fields in error messages (see :mod:`flowyml_sched.fields`)."""


def _trigger_parameters() -> list[inspect.Parameter]:
    """One option per trigger kind (``--cron``, ``--daily``, ...), from the kinds themselves."""
    return [
        inspect.Parameter(
            kind.key,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                Optional[str], typer.Option(f"--{kind.key}", help=kind.syntax, rich_help_panel=SCHEDULE)
            ],
        )
        for kind in KINDS
    ]


_SCHEDULE_OPTIONS = {
    "anchor": Anchor,
    "tz": Timezone,
    "param": Params,
    "description": Description,
    "tag": Tags,
    "catchup": CatchUpOpt,
    "max_catchup": MaxCatchUp,
    "misfire_grace": MisfireGrace,
    "overlap": OverlapOpt,
    "timeout": Timeout,
    "retries": Retries,
    "retry_backoff": RetryBackoff,
    "exclude_holidays": ExcludeHolidays,
    "exclude_market": ExcludeMarket,
    "exclude_date": ExcludeDates,
    "exclude_range": ExcludeRanges,
    "on_excluded": OnExcludedOpt,
}
"""The options of ``add`` and ``edit`` besides the trigger kinds', in the order of their help."""


def trigger_options(command: F) -> F:
    """Give ``command`` one option per trigger kind, placed before its ``anchor`` parameter,
    and pass their values to it as the mapping ``triggers`` (key to text, None when not given)."""
    return _with_options(command, _trigger_parameters(), before="anchor", into="triggers", build=dict)


def schedule_options(command: F) -> F:
    """Give ``command`` the schedule options: one per trigger kind, then ``--anchor``, ``--tz``,
    ``--param``, ``--description``, ``--tag`` and the policy options, placed before its
    ``check_pipeline`` parameter; pass their values to it as the mapping ``options`` (the
    parameter name to the value, None when not given)."""
    others = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        for name, annotation in _SCHEDULE_OPTIONS.items()
    ]
    return _with_options(
        command, [*_trigger_parameters(), *others], before="check_pipeline", into="options", build=dict
    )


def _with_options(
    command: F,
    extra: list[inspect.Parameter],
    *,
    before: str | None,
    into: str,
    build: Callable[[dict[str, Any]], object],
) -> F:
    """``command`` with the parameters ``extra`` added to its signature (which Typer reads)
    before the parameter ``before`` (None: at the end); their values reach it as
    ``build(values by name)``, its parameter ``into``."""
    signature = inspect.signature(command, eval_str=True)
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values() if p.name != into]
    at = len(own) if before is None else next(index for index, p in enumerate(own) if p.name == before)
    parameters = [*own[:at], *extra, *own[at:]]
    names = [p.name for p in extra]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in names}
        return command(**kwargs, **{into: build(given)})

    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper  # type: ignore[return-value]


def schedule_fields(options: Mapping[str, Any], *, name: str, pipeline: str | None) -> dict[str, Any]:
    """The plain fields (the keys of a YAML entry, see :mod:`flowyml_sched.fields`) that the
    options of :func:`schedule_options` give, with ``name`` and ``pipeline``; options not
    given are left out. Raises InvalidParams for a bad ``--param``."""
    fields: dict[str, Any] = {
        "name": name,
        "pipeline": pipeline,
        **{key: options[key] for key in TRIGGER_KEYS},
        "anchor": options["anchor"],
        "timezone": options["tz"],
        "params": parse_params(options["param"], name) if options["param"] is not None else None,
        "description": options["description"],
        "tags": list(options["tag"]) if options["tag"] is not None else None,
        **{key: options[key] for key in ("catchup", "max_catchup", "misfire_grace", "overlap", "timeout")},
    }
    retries, backoff = options["retries"], options["retry_backoff"]
    if retries is not None or backoff is not None:
        fields["retries"] = {k: v for k, v in (("max", retries), ("backoff", backoff)) if v is not None}
    fields["exclude"] = exclude_of(options)
    fields["on_excluded"] = options["on_excluded"]
    return {k: v for k, v in fields.items() if v is not None}


def exclude_of(options: Mapping[str, Any], clear: bool = False) -> dict[str, Any] | None:
    """The ``exclude`` field (see :func:`flowyml_sched.fields.exclusions_with`) the
    ``--exclude-*`` options give, each checked and named in errors by its option; with
    ``clear`` (``edit --no-exclusions``) the parts not given are cleared. None when there is
    nothing to change. Raises InvalidExclusion and UsageError."""
    from flowyml_sched.exclusions import DateRange, HolidayCalendar, parse_date

    holidays, market = options["exclude_holidays"], options["exclude_market"]
    if holidays is not None and market is not None:
        raise UsageError("give --exclude-holidays or --exclude-market, not both")
    out: dict[str, Any] = {"holidays": None, "dates": [], "ranges": []} if clear else {}
    if holidays is not None:
        out["holidays"] = HolidayCalendar.parse(holidays, "--exclude-holidays")
    if market is not None:
        out["holidays"] = HolidayCalendar(market=market.strip())
    if options["exclude_date"] is not None:
        out["dates"] = [parse_date(text, "--exclude-date") for text in options["exclude_date"]]
    if options["exclude_range"] is not None:
        out["ranges"] = [DateRange.parse(text, "--exclude-range") for text in options["exclude_range"]]
    return out or None


def parse_params(items: list[str] | None, schedule: str | None = None) -> dict[str, Any]:
    """``["k=v", ...]`` to a mapping; each value is JSON when it parses as JSON, else text.

    Raises :class:`~flowyml_sched.errors.InvalidParams` (naming ``schedule`` when given) for
    an item without ``=`` or JSON nested too deeply to read; the params' limits are checked by
    :func:`flowyml_sched.model.validate_params`.
    """
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidParams(
                item, "expected KEY=VALUE, such as --param day=2026-01-31 or --param limit=10", schedule
            )
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
        except RecursionError:
            from flowyml_sched.model import MAX_PARAMS_DEPTH

            raise InvalidParams(
                item, f"{key} is nested more than {MAX_PARAMS_DEPTH} levels deep (lists and mappings)", schedule
            ) from None
    return params
