"""Typer application: the commands and the one place errors become exit codes."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated, Optional, TypeVar

import typer

from flowyml_sched import __version__
from flowyml_sched.errors import SchedulerError, UsageError

F = TypeVar("F", bound=Callable[..., object])

app = typer.Typer(
    name="flowyml-sched",
    help=(
        "Schedule pipelines with correct time semantics: cron, daily, hourly and interval "
        "schedules in any IANA timezone, right across DST.\n\n"
        "Example: flowyml-sched next --daily 02:30 --tz Europe/Berlin --after 2026-03-28T12:00:00Z"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _fail(error: SchedulerError) -> typer.Exit:
    typer.echo(f"flowyml-sched: error: {error}", err=True)
    return typer.Exit(error.exit_code)


def translate_errors(command: F) -> F:
    """Turn a :class:`SchedulerError` raised by a command into a message and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return command(*args, **kwargs)
        except SchedulerError as error:
            raise _fail(error) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"flowyml-sched {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Schedule pipelines with correct time semantics."""


@app.command("next", context_settings={"help_option_names": ["-h", "--help"]})
@translate_errors
def next_command(
    cron: Annotated[
        Optional[str], typer.Option("--cron", help="Cron expression, 5 fields or a macro: '*/15 9-17 * * MON-FRI'.")
    ] = None,
    daily: Annotated[Optional[str], typer.Option("--daily", help="Every day at HH:MM wall time: 02:30.")] = None,
    hourly: Annotated[Optional[str], typer.Option("--hourly", help="Every hour at minute MM: 15.")] = None,
    every: Annotated[
        Optional[str], typer.Option("--every", help="Interval of elapsed time: 90s, 15m, 2h, 1h30m, 7d, PT15M, P7D.")
    ] = None,
    anchor: Annotated[
        Optional[str],
        typer.Option("--anchor", help="With --every: ISO 8601 instant the interval counts from (default: --after)."),
    ] = None,
    tz: Annotated[
        str,
        typer.Option(
            "--tz",
            help="IANA timezone of the schedule.",
            envvar=["FLOWYML_SCHEDULER_TIMEZONE", "flowyml_SCHEDULER_TIMEZONE"],
        ),
    ] = "UTC",
    after: Annotated[
        Optional[str], typer.Option("--after", help="ISO 8601 instant with offset to start after (default: now).")
    ] = None,
    count: Annotated[int, typer.Option("-n", "--count", min=1, max=100_000, help="How many fire times to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")] = False,
) -> None:
    """Preview the next fire times of a schedule without storing anything.

    Each fire time is shown in the schedule's zone and in UTC; the ones a DST change
    touches are marked.

    Example: flowyml-sched next --cron '30 1 * * *' --tz America/New_York --after 2026-10-31T12:00:00-04:00 -n 3
    """
    from flowyml_sched.cli.render import render_fire_times
    from flowyml_sched.service import preview_fire_times

    chosen = [
        name
        for name, value in (("--cron", cron), ("--daily", daily), ("--hourly", hourly), ("--every", every))
        if value is not None
    ]
    if len(chosen) != 1:
        raise UsageError(
            "give exactly one of --cron, --daily, --hourly or --every"
            + (f" (got {', '.join(chosen)})" if chosen else "")
        )
    if anchor is not None and every is None:
        raise UsageError("--anchor goes with --every only")
    fires = preview_fire_times(
        cron=cron,
        daily=daily,
        hourly=hourly,
        every=every,
        anchor=anchor,
        timezone_name=tz,
        after=after,
        count=count,
        now=datetime.now(timezone.utc),
    )
    if as_json:
        json.dump([fire_time_json(f) for f in fires], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render_fire_times(fires, tz)


def fire_time_json(fire: object) -> dict[str, object]:
    """The JSON object of one fire time: ``fire_time`` (zone offset), ``utc``, ``note``."""
    from flowyml_sched.timing import FireTime

    assert isinstance(fire, FireTime)
    item: dict[str, object] = {"fire_time": fire.at.isoformat(), "utc": fire.utc.isoformat().replace("+00:00", "Z")}
    if fire.note is not None:
        item["note"] = fire.describe_note()
    return item


def main() -> None:
    """Console-script entry point."""
    app()
