"""Typer application: each command parses, calls one use case of :mod:`flowyml_sched.application`, renders.

Errors: a :class:`~flowyml_sched.errors.SchedulerError` becomes its message on stderr and
exit status 1 (2 for usage errors); Typer/Click report bad options with status 2.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

import typer

from flowyml_sched import __version__
from flowyml_sched import config as c
from flowyml_sched.cli import options as o
from flowyml_sched.errors import SchedulerError, UsageError

if TYPE_CHECKING:
    from flowyml_sched.model import Schedule

F = TypeVar("F", bound=Callable[..., object])

app = typer.Typer(
    name="flowyml-sched",
    help=(
        "Schedule pipelines with correct time semantics: cron, daily, hourly and interval "
        "schedules in any IANA timezone, right across DST.\n\n"
        "Example: flowyml-sched add etl --pipeline etl.jobs:run --daily 02:30 --tz Europe/Berlin"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Manage the store's schema.\n\nExample: flowyml-sched db upgrade", no_args_is_help=True)
app.add_typer(db_app, name="db")


def translate_errors(command: F) -> F:
    """Turn a :class:`SchedulerError` raised by a command into a message and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return command(*args, **kwargs)
        except SchedulerError as error:
            typer.echo(f"flowyml-sched: error: {error}", err=True)
            raise typer.Exit(error.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")  # one write, not one per token


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


@app.command("next")
@translate_errors
@o.store_options
@o.trigger_options
def next_command(
    name: Annotated[Optional[str], typer.Argument(help="A stored schedule to preview instead of the options.")] = None,
    *,
    triggers: dict[str, Optional[str]],
    anchor: Annotated[
        Optional[str],
        typer.Option("--anchor", help="With --every: ISO 8601 instant the interval counts from (default: --after)."),
    ] = None,
    tz: o.Timezone = None,
    exclude_holidays: o.ExcludeHolidays = None,
    exclude_market: o.ExcludeMarket = None,
    exclude_date: o.ExcludeDates = None,
    exclude_range: o.ExcludeRanges = None,
    on_excluded: o.OnExcludedOpt = None,
    show_excluded: Annotated[
        bool,
        typer.Option(
            "--show-excluded",
            help="Also list the fire times among these that exclusions skip or move, and why (the holiday's name).",
        ),
    ] = False,
    after: Annotated[
        Optional[str], typer.Option("--after", help="ISO 8601 instant with offset to start after (default: now).")
    ] = None,
    count: Annotated[int, typer.Option("-n", "--count", min=1, max=100_000, help="How many fire times to show.")] = 5,
    as_json: o.Json = False,
    flags: o.StoreFlags,
) -> None:
    """Preview the next fire times of a schedule without storing anything.

    Each fire time is shown in the schedule's zone and in UTC; the ones a DST change
    touches or an exclusion moves are marked.

    Example: flowyml-sched next --cron '30 1 * * *' --tz America/New_York --after 2026-10-31T12:00:00-04:00 -n 3
    """
    from flowyml_sched.application import excluded_fire_times, preview
    from flowyml_sched.cli.render import render_fire_times
    from flowyml_sched.triggers import parse_instant

    start = parse_instant(after, "--after") if after else _now()
    excluding = {
        "exclude_holidays": exclude_holidays,
        "exclude_market": exclude_market,
        "exclude_date": exclude_date,
        "exclude_range": exclude_range,
    }
    source: Any
    if name is not None:
        if any(v is not None for v in (*triggers.values(), anchor, tz, on_excluded, *excluding.values())):
            raise UsageError("give a stored schedule's NAME or schedule options, not both")
        with flags.scheduler(create=False) as scheduler:
            source, fires = scheduler.preview(name, start, count)
        zone_name = source.timezone
    else:
        zone_name = tz if tz is not None else flags.settings().timezone
        source = {**triggers, "anchor": anchor, "exclude": o.exclude_of(excluding), "on_excluded": on_excluded}
        fires = preview(source, timezone=zone_name, after=start, count=count, labels=o.LABELS)
    excluded = (
        excluded_fire_times(source, timezone=zone_name, after=start, until=fires[-1].at, labels=o.LABELS)
        if show_excluded
        else []
    )
    if as_json:
        from flowyml_sched.cli.render import excluded_json, fire_time_json

        listed = [fire_time_json(f) for f in fires]
        _print_json(
            {"fire_times": listed, "excluded": [excluded_json(e) for e in excluded]} if show_excluded else listed
        )
    else:
        render_fire_times(fires, zone_name, excluded)
    from flowyml_sched.timing import EXCLUDED_LIMIT

    if len(excluded) >= EXCLUDED_LIMIT:
        typer.echo(f"only the first {EXCLUDED_LIMIT} excluded fire times are listed", err=True)


@app.command("add")
@translate_errors
@o.store_options
@o.schedule_options
def add_command(
    name: Annotated[str, typer.Argument(help="Unique name: letters, digits, '_', '-', '.'.")],
    pipeline: Annotated[
        str, typer.Option("--pipeline", help="Entry-point name (group flowyml_sched.pipelines) or package.module:attr.")
    ],
    *,
    options: dict[str, Any],
    check_pipeline: o.CheckPipeline = True,
    file: o.YamlFile = None,
    as_json: o.Json = False,
    flags: o.StoreFlags,
) -> None:
    """Add a schedule to the store (or, with --file, to a YAML file).

    Example: flowyml-sched add nightly-etl --pipeline etl.jobs:run --daily 02:30 --tz Europe/Berlin --param region=eu
    """
    fields = o.schedule_fields(options, name=name, pipeline=pipeline)
    if file is not None:
        flags.schedule_file(file).add(fields, check_pipeline=check_pipeline, labels=o.LABELS)
        typer.echo(f"added {name} to {file}")
        return
    with flags.scheduler() as scheduler:
        stored = scheduler.add(fields, check_pipeline=check_pipeline, labels=o.LABELS)
    _print_changed(stored, as_json, f"added {stored.name}")


@app.command("edit")
@translate_errors
@o.store_options
@o.schedule_options
def edit_command(
    name: Annotated[str, typer.Argument(help="The schedule to change.")],
    pipeline: Annotated[Optional[str], typer.Option("--pipeline", help="New pipeline reference.")] = None,
    *,
    options: dict[str, Any],
    no_exclusions: Annotated[
        bool,
        typer.Option(
            "--no-exclusions",
            help="Clear the exclusions; --exclude-* options given with it set the new ones.",
            rich_help_panel=o.EXCLUSIONS,
        ),
    ] = False,
    check_pipeline: o.CheckPipeline = True,
    file: o.YamlFile = None,
    as_json: o.Json = False,
    flags: o.StoreFlags,
) -> None:
    """Change fields of a schedule; options not given keep their values. --param and --tag replace the whole set;
    --exclude-holidays (or --exclude-market), --exclude-date and --exclude-range each replace their part of the exclusions.

    Example: flowyml-sched edit nightly-etl --daily 03:15 --timeout 45m
    """
    fields = o.schedule_fields(options, name=name, pipeline=pipeline)
    del fields["name"]
    if no_exclusions:
        fields["exclude"] = o.exclude_of(options, clear=True)
    if file is not None:
        flags.schedule_file(file).edit(name, fields, check_pipeline=check_pipeline)
        typer.echo(f"changed {name} in {file}")
        return
    with flags.scheduler(create=False) as scheduler:
        stored = scheduler.edit(name, fields, check_pipeline=check_pipeline, labels=o.LABELS)
    _print_changed(stored, as_json, f"changed {stored.name} (version {stored.version})")


def _print_changed(stored: Schedule, as_json: bool, done: str) -> None:
    """The stored schedule as JSON, or ``done`` with when it runs next."""
    if as_json:
        from flowyml_sched.model import schedule_to_dict

        _print_json(schedule_to_dict(stored))
    else:
        from flowyml_sched.describe import describe_next

        typer.echo(f"{done}: {describe_next(stored, _now())}")


@app.command("list")
@translate_errors
@o.store_options
def list_command(
    tag: Annotated[Optional[str], typer.Option("--tag", help="Only schedules with this tag.")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Only paused schedules.")] = False,
    enabled: Annotated[bool, typer.Option("--enabled", help="Only enabled schedules.")] = False,
    as_json: o.Json = False,
    *,
    flags: o.StoreFlags,
) -> None:
    """List schedules: name, kind and expression, zone, next fire time, last run, state.

    Example: flowyml-sched list --tag reports --enabled
    """
    if paused and enabled:
        raise UsageError("give --paused or --enabled, not both")
    state = False if paused else True if enabled else None
    from flowyml_sched.errors import StoreMissing

    try:
        with flags.scheduler(create=False) as scheduler:
            rows = scheduler.list(tag=tag, enabled=state)
    except StoreMissing as missing:
        if flags.settings().db_source != "default":
            raise  # a store named by a flag, the environment or a config file must exist
        if as_json:
            _print_json([])
        else:
            typer.echo(f"no schedules yet (no store at {missing.location}); add one with "
                       "'flowyml-sched add' or 'flowyml-sched apply FILE'")  # fmt: skip
        return
    if as_json:
        from flowyml_sched.model import entry_to_dict, run_to_dict

        _print_json([entry_to_dict(s) | {"last_run": run_to_dict(r) if r else None} for s, r in rows])
    else:
        from flowyml_sched.cli.render import render_schedule_list

        render_schedule_list(rows, _now())


@app.command("show")
@translate_errors
@o.store_options
def show_command(
    name: Annotated[str, typer.Argument(help="The schedule to show.")],
    as_json: o.Json = False,
    *,
    flags: o.StoreFlags,
) -> None:
    """Show every field of one schedule, its policies and its next fire times.

    Example: flowyml-sched show nightly-etl --json
    """
    with flags.scheduler(create=False) as scheduler:
        schedule, fires = scheduler.show(name, 3)
        now = scheduler.clock()
    if as_json:
        from flowyml_sched.model import entry_to_dict

        _print_json(entry_to_dict(schedule))
    else:
        from flowyml_sched.cli.render import render_schedule

        render_schedule(schedule, fires, now)


@app.command("pause")
@translate_errors
@o.store_options
def pause_command(
    name: Annotated[str, typer.Argument(help="The schedule to pause.")],
    note: Annotated[Optional[str], typer.Option("--note", help="Why it is paused; shown by list and show.")] = None,
    file: o.YamlFile = None,
    *,
    flags: o.StoreFlags,
) -> None:
    """Pause a schedule: the worker claims none of its fire times until it is resumed.

    Example: flowyml-sched pause nightly-etl --note "upstream outage"
    """
    if file is not None:
        changed = flags.schedule_file(file).pause(name, note)
        typer.echo(f"paused {name} in {file}" if changed else f"{name} is already paused in {file}")
        return
    with flags.scheduler(create=False) as scheduler:
        paused = scheduler.pause(name, note)
    typer.echo(f"paused {name}" if paused.changed else f"{name} is already paused")
    _warn_if_broken(paused.entry)


@app.command("resume")
@translate_errors
@o.store_options
def resume_command(
    name: Annotated[str, typer.Argument(help="The schedule to resume.")],
    file: o.YamlFile = None,
    *,
    flags: o.StoreFlags,
) -> None:
    """Resume a paused schedule from its next fire time after now.

    Example: flowyml-sched resume nightly-etl
    """
    if file is not None:
        changed = flags.schedule_file(file).resume(name)
        typer.echo(f"resumed {name} in {file}" if changed else f"{name} is not paused in {file}")
        return
    from flowyml_sched.describe import describe_next

    with flags.scheduler(create=False) as scheduler:
        resumed = scheduler.resume(name)
        now = scheduler.clock()
    done = f"resumed {name}" if resumed.changed else f"{name} is not paused"
    if _warn_if_broken(resumed.entry):
        typer.echo(f"{done}: it runs once repaired")
    else:
        typer.echo(f"{done}: {describe_next(resumed.entry, now)}")


def _warn_if_broken(entry: object) -> bool:
    """Say on stderr that a stored row cannot be loaded (it does not run until repaired); True if so."""
    from flowyml_sched.model import BrokenSchedule

    if not isinstance(entry, BrokenSchedule):
        return False
    typer.echo(f"flowyml-sched: warning: {entry.error}", err=True)
    return True


@app.command("remove")
@translate_errors
@o.store_options
def remove_command(
    name: Annotated[str, typer.Argument(help="The schedule to remove; its history is kept.")],
    file: o.YamlFile = None,
    *,
    flags: o.StoreFlags,
) -> None:
    """Remove a schedule. Its run history stays readable with 'history'.

    Example: flowyml-sched remove nightly-etl
    """
    if file is not None:
        flags.schedule_file(file).remove(name)
        typer.echo(f"removed {name} from {file}")
        return
    with flags.scheduler(create=False) as scheduler:
        scheduler.remove(name)
    typer.echo(f"removed {name}")


@app.command("clear")
@translate_errors
@o.store_options
def clear_command(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    *,
    flags: o.StoreFlags,
) -> None:
    """Remove every schedule (history is kept). Asks first unless --yes.

    Example: flowyml-sched clear --yes
    """
    if not yes and not typer.confirm("Remove every schedule from the store?", default=False):
        typer.echo("nothing removed", err=True)
        raise typer.Exit(1)
    with flags.scheduler(create=False) as scheduler:
        count = scheduler.clear()
    typer.echo(f"removed {count} schedule{'s' if count != 1 else ''}")


@app.command("history")
@translate_errors
@o.store_options
def history_command(
    name: Annotated[str, typer.Argument(help="The schedule (removed ones too).")],
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=c.HISTORY_LIMIT_MAX, help="How many runs, newest first.")
    ] = 20,
    as_json: o.Json = False,
    *,
    flags: o.StoreFlags,
) -> None:
    """Show a schedule's runs, newest first: fire time, status, start, duration, error, run id, worker.

    Example: flowyml-sched history nightly-etl --limit 10 --json
    """
    with flags.scheduler(create=False) as scheduler:
        runs = scheduler.history(name, limit)
    if as_json:
        from flowyml_sched.model import run_to_dict

        _print_json([run_to_dict(r) for r in runs])
    else:
        from flowyml_sched.cli.render import render_history

        render_history(name, runs)


@app.command("trigger")
@translate_errors
@o.store_options
def trigger_command(
    name: Annotated[str, typer.Argument(help="The schedule to run now (a paused one too).")],
    param: Annotated[
        Optional[list[str]],
        typer.Option(
            "--param",
            help="Parameter KEY=VALUE for this run only, over the schedule's (VALUE read as JSON when it is JSON); repeatable.",
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Wait for the run to end (through its retries), saying where it stands; exit 0 if it succeeded, else 1.",
        ),
    ] = False,
    as_json: o.Json = False,
    *,
    flags: o.StoreFlags,
) -> None:
    """Run a schedule once, now, through the workers, whatever its trigger.

    The run is recorded with scheduled_for = now and marked manual in history; the overlap
    policy applies as to any run (with skip, a run still going skips it).

    Example: flowyml-sched trigger nightly-etl --param period=yesterday --wait
    """
    params = o.parse_params(param, name)
    with flags.scheduler(create=False) as scheduler:
        run = scheduler.trigger(name, params)
        live = bool(scheduler.live_workers())
        if not as_json:
            typer.echo(f"asked for a run of {name} now ({run.scheduled_for.isoformat()})")
        if not live:
            _warn_no_worker("it runs")
        if wait:
            from flowyml_sched.cli.render import describe_progress

            assert run.id is not None
            try:
                run = scheduler.wait_for_run(run.id, on_change=lambda row: typer.echo(describe_progress(row), err=True))
            except KeyboardInterrupt:
                typer.echo(f"stopped waiting; the run is still asked for ('flowyml-sched history {name}')", err=True)
                raise typer.Exit(130) from None
    if as_json:
        from flowyml_sched.model import run_to_dict

        _print_json(run_to_dict(run))
    elif wait:
        from flowyml_sched.describe import last_error

        error = f" ({last_error(run)})" if run.error else ""
        typer.echo(f"{name} at {run.scheduled_for.isoformat()}: {run.status.value}{error}")
    if wait and run.status.value != "succeeded":
        raise typer.Exit(1)


def _warn_no_worker(what: str) -> None:
    """Say on stderr that runs asked for wait for a worker (``what``: "it runs", "they run")."""
    typer.echo(
        f"flowyml-sched: warning: no worker is running: {what} once one starts ('flowyml-sched run-worker')", err=True
    )


@app.command("backfill")
@translate_errors
@o.store_options
def backfill_command(
    name: Annotated[str, typer.Argument(help="The schedule whose past fire times to run.")],
    start: Annotated[
        str, typer.Option("--start", help="ISO 8601 instant with offset: the first fire time at or after it.")
    ],
    end: Annotated[str, typer.Option("--end", help="ISO 8601 instant with offset: fire times before it (not at it).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would run and store nothing.")] = False,
    max_runs: Annotated[
        int, typer.Option("--max", min=1, max=1_000_000, help="Refuse a range of more fire times than this.")
    ] = 1000,
    as_json: o.Json = False,
    *,
    flags: o.StoreFlags,
) -> None:
    """Run every fire time of a schedule in [--start, --end) once, oldest first, through the workers.

    One at a time unless the overlap policy is allow; not subject to the misfire grace or the
    catch-up policy; a paused schedule too. A fire time already in history (any status but
    missed) is not run again, so backfilling a range twice runs it once. Marked backfill in history.

    Example: flowyml-sched backfill nightly-etl --start 2026-03-27T00:00:00+01:00 --end 2026-04-01T00:00:00+02:00 --dry-run
    """
    from flowyml_sched.triggers import parse_instant

    first, last = parse_instant(start, "--start"), parse_instant(end, "--end")
    with flags.scheduler(create=False) as scheduler:
        backfill = scheduler.backfill(name, first, last, dry_run=dry_run, max_runs=max_runs)
        live = bool(scheduler.live_workers())
    if as_json:
        from flowyml_sched.model import run_to_dict

        _print_json(
            {
                "schedule": name,
                "dry_run": dry_run,
                "fire_times": [f.utc.isoformat() for f in backfill.fire_times],
                "would_run" if dry_run else "queued": [at.isoformat() for at in backfill.queued],
                "in_history": [run_to_dict(run) for run in backfill.kept],
            }
        )
        return
    from flowyml_sched.cli.render import render_backfill

    if not backfill.fire_times:
        from flowyml_sched.triggers import format_instant

        trigger = backfill.schedule.trigger
        since = (
            f" (its fire times count from its anchor, {format_instant(trigger.anchor)})"
            if trigger.anchored and trigger.anchor is not None and trigger.anchor > first
            else ""
        )
        typer.echo(f"{name} has no fire time in {format_instant(first)} .. {format_instant(last)}{since}")
        return
    render_backfill(backfill)
    count = len(backfill.queued)
    runs = f"{count} fire time{'s' if count != 1 else ''}"
    if dry_run:
        typer.echo(f"dry run: {runs} would run; nothing was stored")
    elif not count:
        typer.echo(f"nothing queued: every fire time of {name} in the range is in its history already")
    else:
        typer.echo(f"queued {runs} of {name}; 'flowyml-sched history {name}' shows them")
        if count and not live:
            _warn_no_worker("they run")


@app.command("apply")
@translate_errors
@o.store_options
def apply_command(
    file: Annotated[Path, typer.Argument(help="YAML schedules file.")],
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete stored schedules that came from FILE and are no longer in it.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and change nothing.")] = False,
    check_pipeline: o.CheckPipeline = True,
    as_json: o.Json = False,
    *,
    flags: o.StoreFlags,
) -> None:
    """Make the store match a YAML file: print the plan, then apply it in one transaction.

    The plan prints a line per created, changed or deleted schedule, the first 50 of them
    (then how many more); --json lists every one.

    Example: flowyml-sched apply schedules.yaml --prune --dry-run
    """
    with flags.scheduler() as scheduler:
        plan = scheduler.apply_file(str(file), prune=prune, dry_run=dry_run, check_pipelines=check_pipeline)
    if as_json:
        from flowyml_sched.cli.render import plan_json

        _print_json(plan_json(plan, applied=not dry_run))
    else:
        from flowyml_sched.cli.render import render_plan

        render_plan(plan, applied=not dry_run)


@app.command("export")
@translate_errors
@o.store_options
def export_command(
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    *,
    flags: o.StoreFlags,
) -> None:
    """Write every stored schedule as YAML that 'apply' takes back unchanged.

    Example: flowyml-sched export --output schedules.yaml
    """
    with flags.scheduler(create=False) as scheduler:
        text = scheduler.export()
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    typer.echo(f"wrote {output}", err=True)


@app.command("validate")
@translate_errors
def validate_command(
    file: Annotated[Path, typer.Argument(help="YAML schedules file.")], check_pipeline: o.CheckPipeline = True
) -> None:
    """Check a YAML schedules file and report every problem with file:line. Stores nothing.

    Example: flowyml-sched validate schedules.yaml
    """
    from flowyml_sched.application import validate_file

    spec = validate_file(str(file), check_pipelines=check_pipeline)
    for warning in spec.warnings:
        typer.echo(f"flowyml-sched: warning: {warning}", err=True)
    count = len(spec.schedules)
    typer.echo(f"{file}: {count} schedule{'s' if count != 1 else ''}, no problems")


@db_app.command("upgrade")
@translate_errors
@o.store_options
def db_upgrade_command(*, flags: o.StoreFlags) -> None:
    """Create the store's tables or upgrade them to the current schema.

    Example: flowyml-sched db upgrade --db-url postgresql+psycopg://scheduler@db/scheduler
    """
    with flags.scheduler() as scheduler:
        scheduler.upgrade()
    typer.echo("the store's schema is current")


@app.command("run-worker")
@translate_errors
@o.store_options
def run_worker_command(
    sync: Annotated[
        Optional[Path],
        typer.Option(
            "--sync",
            help="Apply this YAML file at start, when it changes and on SIGHUP (pruning its removed schedules).",
        ),
    ] = None,
    max_concurrent: Annotated[
        int,
        typer.Option(
            "--max-concurrent",
            min=c.MAX_CONCURRENT_RANGE[0],
            max=c.MAX_CONCURRENT_RANGE[1],
            help="Runs executed at once.",
        ),
    ] = c.DEFAULT_MAX_CONCURRENT,
    poll_interval: Annotated[
        float,
        o.bounded_float(
            "--poll-interval",
            *c.POLL_INTERVAL_RANGE,
            "Seconds between looks for changes where a write cannot wake the worker (no inotify, "
            "in-memory SQLite), and between retries after a failed round.",
        ),
    ] = c.DEFAULT_POLL_INTERVAL,
    claim_ahead: Annotated[
        float,
        o.bounded_float(
            "--claim-ahead",
            0,
            60,
            "Claim fire times this many seconds before they are due; their runs still start on time, never before.",
        ),
    ] = c.DEFAULT_CLAIM_AHEAD,
    grace: Annotated[
        float,
        o.bounded_float("--grace", 0, 86400, "Seconds running work may finish after SIGTERM before it is stopped."),
    ] = c.DEFAULT_GRACE,
    lease: Annotated[
        float,
        o.bounded_float(
            "--lease", 1, 86400, "Seconds a heartbeat keeps this worker's claims; then they are abandoned."
        ),
    ] = c.DEFAULT_LEASE,
    in_process: Annotated[
        bool, typer.Option("--in-process", help="Run pipelines in the worker process (no timeout, no isolation).")
    ] = False,
    cold_starts: Annotated[
        bool,
        typer.Option(
            "--cold-starts",
            help="Start each run's child process as a fresh interpreter, not forked, prepared, from a warm "
            "template of its pipeline's module (for modules whose import-time state must not be shared by "
            "runs, such as an open connection).",
        ),
    ] = False,
    keep_runs: Annotated[
        int, typer.Option("--keep-runs", min=1, max=10_000_000, help="History kept per schedule, in runs.")
    ] = c.DEFAULT_KEEP_RUNS,
    keep_days: Annotated[
        Optional[float],
        o.bounded_float("--keep-days", 0, 36500, "Also delete history older than this many days."),
    ] = None,
    state_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--state-dir",
            help="Locks and run logs; workers that share a store on one host must share it. [env: FLOWYML_SCHEDULER_STATE_DIR; default: $STATE_DIRECTORY, else $XDG_STATE_HOME/flowyml-sched, else ~/.local/state/flowyml-sched]",
        ),
    ] = None,
    lock_backend: Annotated[
        Optional[str],
        typer.Option(
            "--lock-backend",
            callback=o.lock_backend,
            help="Run locks that enforce overlap: 'file' (the workers of one host sharing --state-dir) or 'redis' "
            "(several hosts; needs --redis-url). [env: FLOWYML_SCHEDULER_LOCK_BACKEND; default: file]",
        ),
    ] = None,
    redis_url: Annotated[
        Optional[str],
        typer.Option(
            "--redis-url",
            help="Redis server of the redis lock backend, such as redis://host:6379/0. "
            "[env: FLOWYML_SCHEDULER_REDIS_URL]",
        ),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Run what is due now, wait for it, and exit.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 0 when a live worker heartbeat exists, 1 otherwise (probes).")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
    *,
    flags: o.StoreFlags,
) -> None:
    """Run the worker: claim due fire times and run their pipelines, each exactly once.

    Runs until SIGTERM or SIGINT (then drains within --grace); SIGHUP re-applies --sync.
    Speaks systemd's notify protocol when NOTIFY_SOCKET is set.

    Example: flowyml-sched run-worker --sync /etc/flowyml-sched/schedules.yaml --max-concurrent 8
    """
    import logging
    import os

    from flowyml_sched.application import open_worker
    from flowyml_sched.cli import logs

    settings = flags.settings(lock_backend=lock_backend, redis_url=redis_url)
    if check:
        with flags.scheduler(create=False) as scheduler:
            alive = scheduler.live_workers()
        typer.echo(f"{len(alive)} live worker{'s' if len(alive) != 1 else ''}" + "".join(f"\n  {w.id}" for w in alive))
        raise typer.Exit(0 if alive else 1)
    logs.configure(logging.DEBUG if verbose else logging.INFO)
    tuning = c.WorkerSettings(
        max_concurrent=max_concurrent,
        poll_interval=poll_interval,
        claim_ahead=claim_ahead,
        grace=grace,
        lease=lease,
        heartbeat_interval=lease / c.HEARTBEATS_PER_LEASE,
        in_process=in_process,
        warm_templates=not cold_starts,
        keep_runs=keep_runs,
        keep_days=keep_days,
        sync_file=sync,
    )
    with open_worker(settings, tuning, environ=os.environ, state_dir=state_dir) as worker:
        code = worker.run(once=once)
        if once:
            worker.wait_idle()
    raise typer.Exit(code)


@app.command("health")
@translate_errors
@o.store_options
def health_command(
    window: Annotated[str, typer.Option("--window", help="Runs in this past window count (duration).")] = "24h",
    tolerance: Annotated[
        str, typer.Option("--tolerance", help="A schedule this far past its fire time is late.")
    ] = "60s",
    as_json: o.Json = False,
    *,
    flags: o.StoreFlags,
) -> None:
    """Report live workers, late schedules, success rate and durations; exit 1 unless status is ok.

    Example: flowyml-sched health --window 7d --json
    """
    from flowyml_sched.triggers import parse_duration

    with flags.scheduler(create=False) as scheduler:
        report = scheduler.health(parse_duration(window, "--window"), parse_duration(tolerance, "--tolerance"))
    if as_json:
        _print_json(report)
    else:
        from flowyml_sched.cli.render import render_health

        render_health(report)
    raise typer.Exit(0 if report["status"] == "ok" else 1)


@app.command("pipelines")
@translate_errors
def pipelines_command(as_json: o.Json = False) -> None:
    """List the pipelines registered as entry points in the group flowyml_sched.pipelines.

    Example: flowyml-sched pipelines --json
    """
    from flowyml_sched.application import registered_pipelines

    found = registered_pipelines()
    if as_json:
        _print_json([{"name": name, "target": value} for name, value in found])
        return
    if not found:
        typer.echo("no pipelines registered in the entry-point group flowyml_sched.pipelines")
    for name, value in found:
        typer.echo(f"{name}  {value}")


@app.command("serve")
@translate_errors
@o.store_options
def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8080,
    token_file: Annotated[
        Optional[Path],
        typer.Option(
            "--token-file",
            help="File of bearer tokens, one 'admin TOKEN' or 'read TOKEN' a line, mode 0600. "
            "[default: FLOWYML_SCHEDULER_API_TOKEN (admin) and FLOWYML_SCHEDULER_API_READ_TOKEN (read)]",
        ),
    ] = None,
    public_metrics: Annotated[
        bool, typer.Option("--public-metrics", help="Let /metrics and the health endpoints answer without a token.")
    ] = False,
    *,
    flags: o.StoreFlags,
) -> None:
    """Serve the REST API (JSON under /api, OpenAPI at /openapi.json, docs at /docs), Prometheus metrics at /metrics and the dashboard at /.

    Without any token it listens on loopback only. Needs the api extra: pip install 'flowyml-sched[api]'.

    Example: flowyml-sched serve --host 0.0.0.0 --port 8080 --token-file /etc/flowyml-sched/api-tokens
    """
    try:
        import uvicorn

        from flowyml_sched import web
    except ImportError as missing:
        raise UsageError(
            f"serve needs the api extra ({missing.name} is missing): pip install 'flowyml-sched[api]'"
        ) from None
    tokens = web.tokens_for(token_file=token_file)
    if not tokens and not web.loopback(host):
        raise UsageError(
            f"refusing to serve on {host} without a token: set FLOWYML_SCHEDULER_API_TOKEN or give --token-file, "
            "or listen on 127.0.0.1"
        )
    settings = flags.settings()
    from flowyml_sched.application.scheduler import connect

    with flags.scheduler():  # the store exists and is current before the first request
        pass
    application = web.create_app(lambda: connect(settings, source="api"), tokens, public_health=public_metrics)
    uvicorn.run(application, host=host, port=port, log_level="info")


def main() -> None:
    """Console-script entry point.

    Typer turns the signature of every registered command into Click parameters at each
    start (about 20 ms for all of them); when the first argument names a command, only that
    one is registered. The root callback stays, so the group, ``--version`` and the usage
    errors are unchanged; ``--help`` and unknown names still see every command.
    """
    name = sys.argv[1] if len(sys.argv) > 1 else None
    chosen = [c for c in app.registered_commands if c.name == name]
    if chosen:
        app.registered_commands = chosen
        app.registered_groups = []
    app()
