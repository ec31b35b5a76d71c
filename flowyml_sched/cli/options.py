"""Option types shared by several commands, and the helpers that turn them into values."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from flowyml_sched.errors import InvalidParams

if TYPE_CHECKING:
    from flowyml_sched.application import ScheduleFile, Scheduler
    from flowyml_sched.config import Settings

STORE = "Store"
SCHEDULE = "Schedule"
POLICY = "Policy"

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
        help="YAML config file (keys db_url, db_path, timezone, state_dir). [env: FLOWYML_SCHEDULER_CONFIG]",
        rich_help_panel=STORE,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
YamlFile = Annotated[
    Optional[Path],
    typer.Option("--file", "-f", help="Edit this YAML schedules file instead of the store.", rich_help_panel=STORE),
]

Cron = Annotated[
    Optional[str],
    typer.Option(
        "--cron", help="Cron expression, 5 fields or a macro: '*/15 9-17 * * MON-FRI'.", rich_help_panel=SCHEDULE
    ),
]
Daily = Annotated[
    Optional[str], typer.Option("--daily", help="Every day at HH:MM wall time: 02:30.", rich_help_panel=SCHEDULE)
]
Hourly = Annotated[
    Optional[str], typer.Option("--hourly", help="Every hour at minute MM: 15.", rich_help_panel=SCHEDULE)
]
Every = Annotated[
    Optional[str],
    typer.Option(
        "--every", help="Interval of elapsed time: 90s, 15m, 2h, 1h30m, 7d, PT15M, P7D.", rich_help_panel=SCHEDULE
    ),
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


def bounded_float(flag: str, low: float, high: float, help: str) -> Any:
    """A float option within ``[low, high]`` that also refuses ``nan`` (see :func:`finite`)."""
    return typer.Option(flag, min=low, max=high, callback=finite, help=help)


def finite(value: float | None) -> float | None:
    """Typer callback for float options: refuses ``nan``, which passes every range check."""
    if value is not None and math.isnan(value):
        raise typer.BadParameter("nan is not a number; give a finite one")
    return value


def settings(db: Path | None, db_url: str | None, config: Path | None, tz: str | None = None) -> Settings:
    """Resolve the settings from these flags and the process environment."""
    from flowyml_sched.config import resolve_settings

    return resolve_settings(os.environ, db_path=db, db_url=db_url, timezone=tz, config_path=config)


@contextmanager
def scheduler(db: Path | None, db_url: str | None, config: Path | None, create: bool = True) -> Iterator[Scheduler]:
    """The use cases on the store the flags and environment name, closed on exit. Commands
    that only read pass ``create=False``, so a mistyped path is an error rather than a new
    empty store."""
    from flowyml_sched.application import open_scheduler

    with open_scheduler(settings(db, db_url, config), create=create) as opened:
        yield opened


def schedule_file(file: Path, db: Path | None, db_url: str | None, config: Path | None) -> ScheduleFile:
    """The use cases on the YAML file ``file``, new schedules in the configured zone."""
    from flowyml_sched.application import ScheduleFile

    return ScheduleFile(str(file), timezone=settings(db, db_url, config).timezone)


LABELS = {
    "cron": "--cron",
    "daily": "--daily",
    "hourly": "--hourly",
    "every": "--every",
    "anchor": "--anchor",
    "catchup": "--catchup",
    "overlap": "--overlap",
}
"""The options that name schedule fields in error messages (see :mod:`flowyml_sched.fields`)."""


def schedule_fields(
    pipeline: str | None,
    cron: str | None,
    daily: str | None,
    hourly: str | None,
    every: str | None,
    anchor: str | None,
    tz: str | None,
    param: list[str] | None,
    description: str | None,
    tag: list[str] | None,
    catchup: str | None,
    max_catchup: int | None,
    misfire_grace: str | None,
    overlap: str | None,
    timeout: str | None,
    retries: int | None,
    retry_backoff: str | None,
    *,
    name: str,
) -> dict[str, Any]:
    """The plain fields (the keys of a YAML entry, see :mod:`flowyml_sched.fields`) that the
    schedule options give; options not given are left out. Raises InvalidParams for a bad ``--param``."""
    fields: dict[str, Any] = {
        "name": name,
        "pipeline": pipeline,
        "cron": cron,
        "daily": daily,
        "hourly": int(hourly.removeprefix(":")) if hourly and hourly.removeprefix(":").isdigit() else hourly,
        "every": every,
        "anchor": anchor,
        "timezone": tz,
        "params": parse_params(param, name) if param is not None else None,
        "description": description,
        "tags": list(tag) if tag is not None else None,
        "catchup": catchup,
        "max_catchup": max_catchup,
        "misfire_grace": misfire_grace,
        "overlap": overlap,
        "timeout": timeout,
    }
    if retries is not None or retry_backoff is not None:
        fields["retries"] = {k: v for k, v in (("max", retries), ("backoff", retry_backoff)) if v is not None}
    return {k: v for k, v in fields.items() if v is not None}


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
