"""Typer application: each command parses, calls one service function, renders.

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
from typing import Annotated, Any, Optional, TypeVar

import typer

from flowyml_sched import __version__
from flowyml_sched.cli import options as o
from flowyml_sched.errors import SchedulerError, UsageError

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
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


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


def _one_trigger(cron: str | None, daily: str | None, hourly: str | None, every: str | None, required: bool) -> None:
    chosen = [n for n, v in (("--cron", cron), ("--daily", daily), ("--hourly", hourly), ("--every", every)) if v]
    if len(chosen) > 1 or (required and not chosen):
        got = f" (got {', '.join(chosen)})" if chosen else ""
        raise UsageError(
            f"give {'exactly' if required else 'at most'} one of --cron, --daily, --hourly or --every{got}"
        )


@app.command("next")
@translate_errors
def next_command(
    name: Annotated[Optional[str], typer.Argument(help="A stored schedule to preview instead of the options.")] = None,
    cron: o.Cron = None,
    daily: o.Daily = None,
    hourly: o.Hourly = None,
    every: o.Every = None,
    anchor: Annotated[
        Optional[str],
        typer.Option("--anchor", help="With --every: ISO 8601 instant the interval counts from (default: --after)."),
    ] = None,
    tz: o.Timezone = None,
    after: Annotated[
        Optional[str], typer.Option("--after", help="ISO 8601 instant with offset to start after (default: now).")
    ] = None,
    count: Annotated[int, typer.Option("-n", "--count", min=1, max=100_000, help="How many fire times to show.")] = 5,
    as_json: o.Json = False,
    db: o.DbPath = None,
    db_url: o.DbUrl = None,
    config: o.ConfigPath = None,
) -> None:
    """Preview the next fire times of a schedule without storing anything.

    Each fire time is shown in the schedule's zone and in UTC; the ones a DST change
    touches are marked.

    Example: flowyml-sched next --cron '30 1 * * *' --tz America/New_York --after 2026-10-31T12:00:00-04:00 -n 3
    """
    from flowyml_sched.cli.render import render_fire_times
    from flowyml_sched.service import preview_fire_times, preview_stored
    from flowyml_sched.triggers import parse_instant

    if name is not None:
        if any(v is not None for v in (cron, daily, hourly, every, anchor, tz)):
            raise UsageError("give a stored schedule's NAME or schedule options, not both")
        start = parse_instant(after, "--after") if after else _now()
        with o.open_store(db, db_url, config, create=False) as store:
            schedule, fires = preview_stored(store, name, start, count)
        zone_name = schedule.timezone
    else:
        _one_trigger(cron, daily, hourly, every, required=True)
        if anchor is not None and every is None:
            raise UsageError("--anchor goes with --every only")
        zone_name = tz or o.settings(db, db_url, config).timezone
        fires = preview_fire_times(
            cron=cron,
            daily=daily,
            hourly=hourly,
            every=every,
            anchor=anchor,
            timezone_name=zone_name,
            after=after,
            count=count,
            now=_now(),
        )
    if as_json:
        from flowyml_sched.cli.render import fire_time_json

        _print_json([fire_time_json(f) for f in fires])
    else:
        render_fire_times(fires, zone_name)


@app.command("add")
@translate_errors
def add_command(
    name: Annotated[str, typer.Argument(help="Unique name: letters, digits, '_', '-', '.'.")],
    pipeline: Annotated[
        str, typer.Option("--pipeline", help="Entry-point name (group flowyml_sched.pipelines) or package.module:attr.")
    ],
    cron: o.Cron = None,
    daily: o.Daily = None,
    hourly: o.Hourly = None,
    every: o.Every = None,
    anchor: o.Anchor = None,
    tz: o.Timezone = None,
    param: o.Params = None,
    description: o.Description = None,
    tag: o.Tags = None,
    catchup: o.CatchUpOpt = None,
    max_catchup: o.MaxCatchUp = None,
    misfire_grace: o.MisfireGrace = None,
    overlap: o.OverlapOpt = None,
    timeout: o.Timeout = None,
    retries: o.Retries = None,
    retry_backoff: o.RetryBackoff = None,
    check_pipeline: o.CheckPipeline = True,
    file: o.YamlFile = None,
    as_json: o.Json = False,
    db: o.DbPath = None,
    db_url: o.DbUrl = None,
    config: o.ConfigPath = None,
) -> None:
    """Add a schedule to the store (or, with --file, to a YAML file).

    Example: flowyml-sched add nightly-etl --pipeline etl.jobs:run --daily 02:30 --tz Europe/Berlin --param region=eu
    """
    from flowyml_sched.model import Policy, Schedule, schedule_to_dict
    from flowyml_sched.service import add_schedule, build_trigger
    from flowyml_sched.triggers import parse_instant

    _one_trigger(cron, daily, hourly, every, required=True)
    if anchor is not None and every is None:
        raise UsageError("--anchor goes with --every only")
    now = _now()
    anchor_at = parse_instant(anchor, "--anchor") if anchor else now.replace(microsecond=0)
    schedule = Schedule(
        name=name,
        pipeline=pipeline,
        trigger=build_trigger(cron=cron, daily=daily, hourly=hourly, every=every, anchor=anchor_at),
        timezone=tz or o.settings(db, db_url, config).timezone,
        params=o.parse_params(param, name),
        description=description or "",
        tags=tuple(tag or ()),
        policy=o.policy_changes(
            Policy(), catchup, max_catchup, misfire_grace, overlap, timeout, retries, retry_backoff
        ),
    )
    if file is not None:
        from flowyml_sched.service import check_pipeline_reference
        from flowyml_sched.yamledit import add_schedule as add_to_file

        if check_pipeline:
            check_pipeline_reference(pipeline)
        add_to_file(str(file), schedule)
        typer.echo(f"added {name} to {file}")
        return
    with o.open_store(db, db_url, config) as store:
        stored = add_schedule(store, schedule, now, check_pipeline=check_pipeline)
    if as_json:
        _print_json(schedule_to_dict(stored))
    else:
        from flowyml_sched.cli.render import describe_next

        typer.echo(f"added {stored.name}: {describe_next(stored, now)}")


@app.command("edit")
@translate_errors
def edit_command(
    name: Annotated[str, typer.Argument(help="The schedule to change.")],
    pipeline: Annotated[Optional[str], typer.Option("--pipeline", help="New pipeline reference.")] = None,
    cron: o.Cron = None,
    daily: o.Daily = None,
    hourly: o.Hourly = None,
    every: o.Every = None,
    anchor: o.Anchor = None,
    tz: o.Timezone = None,
    param: o.Params = None,
    description: o.Description = None,
    tag: o.Tags = None,
    catchup: o.CatchUpOpt = None,
    max_catchup: o.MaxCatchUp = None,
    misfire_grace: o.MisfireGrace = None,
    overlap: o.OverlapOpt = None,
    timeout: o.Timeout = None,
    retries: o.Retries = None,
    retry_backoff: o.RetryBackoff = None,
    check_pipeline: o.CheckPipeline = True,
    file: o.YamlFile = None,
    as_json: o.Json = False,
    db: o.DbPath = None,
    db_url: o.DbUrl = None,
    config: o.ConfigPath = None,
) -> None:
    """Change fields of a schedule; options not given keep their values. --param and --tag replace the whole set.

    Example: flowyml-sched edit nightly-etl --daily 03:15 --timeout 45m
    """
    from flowyml_sched.model import Schedule, schedule_to_dict
    from flowyml_sched.service import build_trigger, edit_schedule
    from flowyml_sched.triggers import IntervalTrigger, parse_instant

    _one_trigger(cron, daily, hourly, every, required=False)
    now = _now()
    if check_pipeline and pipeline is not None:
        from flowyml_sched.service import check_pipeline_reference

        check_pipeline_reference(pipeline)
    if file is not None:
        from flowyml_sched.yamledit import edit_schedule as edit_in_file

        fields = _yaml_fields(
            pipeline, cron, daily, hourly, every, anchor, tz, param, description, tag,
            catchup, max_catchup, misfire_grace, overlap, timeout, retries, retry_backoff,
        )  # fmt: skip
        if not fields:
            raise UsageError("nothing to change: give at least one option")
        edit_in_file(str(file), name, fields)
        typer.echo(f"changed {name} in {file}")
        return
    with o.open_store(db, db_url, config, create=False) as store:
        current = store.entry(name)  # a row that cannot be loaded too: an edit may repair it
        changes: dict[str, Any] = {}
        if pipeline is not None:
            changes["pipeline"] = pipeline
        if cron or daily or hourly or every:
            old_anchor = current.trigger.anchor if isinstance(current.trigger, IntervalTrigger) else None
            anchor_at = parse_instant(anchor, "--anchor") if anchor else old_anchor or now.replace(microsecond=0)
            changes["trigger"] = build_trigger(cron=cron, daily=daily, hourly=hourly, every=every, anchor=anchor_at)
        elif anchor is not None:
            if not isinstance(current.trigger, IntervalTrigger):
                raise UsageError(f"--anchor applies to interval schedules only; {name} is {current.kind}")
            changes["trigger"] = IntervalTrigger(current.trigger.every, parse_instant(anchor, "--anchor"))
        if tz is not None:
            changes["timezone"] = tz
        if param is not None:
            changes["params"] = o.parse_params(param, name)
        if description is not None:
            changes["description"] = description
        if tag is not None:
            changes["tags"] = tuple(tag)
        policy_options = (catchup, max_catchup, misfire_grace, overlap, timeout, retries, retry_backoff)
        if any(option is not None for option in policy_options):
            base = current.policy if isinstance(current, Schedule) else current.policy_fields
            policy = o.policy_changes(base, *policy_options)
            if not isinstance(current, Schedule) or policy != current.policy:
                changes["policy"] = policy
        if not changes:
            raise UsageError("nothing to change: give at least one option")
        stored = edit_schedule(store, name, changes, now)
    if as_json:
        _print_json(schedule_to_dict(stored))
    else:
        from flowyml_sched.cli.render import describe_next

        typer.echo(f"changed {stored.name} (version {stored.version}): {describe_next(stored, now)}")


def _yaml_fields(
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
) -> dict[str, Any]:
    """The YAML keys and values that edit options set in a schedules file."""
    fields: dict[str, Any] = {
        "pipeline": pipeline,
        "cron": cron,
        "daily": daily,
        "hourly": int(hourly.removeprefix(":")) if hourly and hourly.removeprefix(":").isdigit() else hourly,
        "every": every,
        "anchor": anchor,
        "timezone": tz,
        "params": o.parse_params(param) if param is not None else None,
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


@app.command("list")
@translate_errors
def list_command(
    tag: Annotated[Optional[str], typer.Option("--tag", help="Only schedules with this tag.")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Only paused schedules.")] = False,
    enabled: Annotated[bool, typer.Option("--enabled", help="Only enabled schedules.")] = False,
    as_json: o.Json = False,
    db: o.DbPath = None,
    db_url: o.DbUrl = None,
    config: o.ConfigPath = None,
) -> None:
    """List schedules: name, kind and expression, zone, next fire time, last run, state.

    Example: flowyml-sched list --tag reports --enabled
    """
    from flowyml_sched.service import list_schedules

    if paused and enabled:
        raise UsageError("give --paused or --enabled, not both")
    state = False if paused else True if enabled else None
    with o.open_store(db, db_url, config, create=False) as store:
        rows = list_schedules(store, tag=tag, enabled=state)
    if as_json:
        from flowyml_sched.model import entry_to_dict, run_to_dict

        _print_json([entry_to_dict(s) | {"last_run": run_to_dict(r) if r else None} for s, r in rows])
    else:
        from flowyml_sched.cli.render import render_schedule_list

        render_schedule_list(rows, _now())


@app.command("show")
@translate_errors
def show_command(
    name: Annotated[str, typer.Argument(help="The schedule to show.")],
    as_json: o.Json = False,
    db: o.DbPath = None,
    db_url: o.DbUrl = None,
    config: o.ConfigPath = None,
) -> None:
    """Show every field of one schedule, its policies and its next fire times.

    Example: flowyml-sched show nightly-etl --json
    """
    from flowyml_sched.service import show_schedule

    now = _now()
    with o.open_store(db, db_url, config, create=False) as store:
        schedule, fires = show_schedule(store, name, now, 3)
    if as_json:
        from flowyml_sched.model import entry_to_dict

        _print_json(entry_to_dict(schedule))
    else:
        from flowyml_sched.cli.render import render_schedule

        render_schedule(schedule, fires, now)


@app.command("pause")
@translate_errors
def pause_command(
    name: Annotated[str, typer.Argument(help="The schedule to pause.")],
    note: Annotated[Optional[str], typer.Option("--note", help="Why it is paused; shown by list and show.")] = None,
    file: o.YamlFile = None,
    db: o.DbPath = None,
    db_url: o.DbUrl = None,
    config: o.ConfigPath = None,
) -> None:
    """Pause a schedule: the worker claims none of its fire times until it is resumed.

    Example: flowyml-sched pause nightly-etl --note "upstream outage"
    """
    if file is not None:
        from flowyml_sched.yamledit import set_enabled

        set_enabled(str(file), name, False, note)
        typer.echo(f"paused {name} in {file}")
        return
    from flowyml_sched.service import pause_schedule

    with o.open_store(db, db_url, config, create=False) as store:
        paused = pause_schedule(store, name, note, _now())
    typer.echo(f"paused {name}")
    _warn_if_broken(paused)


@app.command("resume")
@translate_errors
def resume_command(
    name: Annotated[str, typer.Argument(help="The schedule to resume.")],
    file: o.YamlFile = None,
    db: o.DbPath = None,
    db_url: o.DbUrl = None,
    config: o.ConfigPath = None,
) -> None:
    """Resume a paused schedule from its next fire time after now.

    Example: flowyml-sched resume nightly-etl
    """
    if file is not None:
        from flowyml_sched.yamledit import set_enabled

        set_enabled(str(file), name, True, None)
        typer.echo(f"resumed {name} in {file}")
        return
    from flowyml_sched.cli.render import describe_next
    from flowyml_sched.service import resume_schedule

    now = _now()
    with o.open_store(db, db_url, config, create=False) as store:
        stored = resume_schedule(store, name, now)
    if _warn_if_broken(stored):
        typer.echo(f"resumed {name}: it runs once repaired")
    else:
        typer.echo(f"resumed {name}: {describe_next(stored, now)}")


def _warn_if_broken(entry: object) -> bool:
    """Say on stderr that a stored row cannot be loaded (it does not run until repaired); True if so."""
    from flowyml_sched.model import BrokenSchedule

    if not isinstance(entry, BrokenSchedule):
        return False
    typer.echo(f"flowyml-sched: warning: {entry.error}", err=True)
    return True


@app.command("remove")
@translate_errors
def remove_command(
    name: Annotated[str, typer.Argument(help="The schedule to remove; its history is kept.")],
    file: o.YamlFile = None,
    db: o.DbPath = None,
    db_url: o.DbUrl = None,
    config: o.ConfigPath = None,
) -> None:
    """Remove a schedule. Its run history stays readable with 'history'.

    Example: flowyml-sched remove nightly-etl
    """
    if file is not None:
        from flowyml_sched.yamledit import remove_schedule

        remove_schedule(str(file), name)
        typer.echo(f"removed {name} from {file}")
        return
    with o.open_store(db, db_url, config, create=False) as store:
        store.remove(name, _now())
    typer.echo(f"removed {name}")


@app.command("clear")
@translate_errors
def clear_command(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: o.DbPath = None,
    db_url: o.DbUrl = None,
    config: o.ConfigPath = None,
) -> None:
    """Remove every schedule (history is kept). Asks first unless --yes.

    Example: flowyml-sched clear --yes
    """
    if not yes and not typer.confirm("Remove every schedule from the store?", default=False):
        typer.echo("nothing removed", err=True)
        raise typer.Exit(1)
    with o.open_store(db, db_url, config, create=False) as store:
        count = store.clear(_now())
    typer.echo(f"removed {count} schedule{'s' if count != 1 else ''}")


@app.command("history")
@translate_errors
def history_command(
    name: Annotated[str, typer.Argument(help="The schedule (removed ones too).")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000, help="How many runs, newest first.")] = 20,
    as_json: o.Json = False,
    db: o.DbPath = None,
    db_url: o.DbUrl = None,
    config: o.ConfigPath = None,
) -> None:
    """Show a schedule's runs, newest first: fire time, status, start, duration, error, run id, worker.

    Example: flowyml-sched history nightly-etl --limit 10 --json
    """
    from flowyml_sched.model import validate_name

    validate_name(name)
    with o.open_store(db, db_url, config, create=False) as store:
        runs = store.history(name, limit)
        if not runs:
            store.entry(name)  # an unknown name is an error, a schedule without runs is not
    if as_json:
        from flowyml_sched.model import run_to_dict

        _print_json([run_to_dict(r) for r in runs])
    else:
        from flowyml_sched.cli.render import render_history

        render_history(name, runs)


@app.command("apply")
@translate_errors
def apply_command(
    file: Annotated[Path, typer.Argument(help="YAML schedules file.")],
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete stored schedules that came from FILE and are no longer in it.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and change nothing.")] = False,
    check_pipeline: o.CheckPipeline = True,
    as_json: o.Json = False,
    db: o.DbPath = None,
    db_url: o.DbUrl = None,
    config: o.ConfigPath = None,
) -> None:
    """Make the store match a YAML file: print the plan, then apply it in one transaction.

    Example: flowyml-sched apply schedules.yaml --prune --dry-run
    """
    from flowyml_sched.service import apply_file

    with o.open_store(db, db_url, config) as store:
        plan = apply_file(store, str(file), prune=prune, dry_run=dry_run, now=_now(), check_pipelines=check_pipeline)
    if as_json:
        from flowyml_sched.cli.render import plan_json

        _print_json(plan_json(plan, applied=not dry_run))
    else:
        from flowyml_sched.cli.render import render_plan

        render_plan(plan, applied=not dry_run)


@app.command("export")
@translate_errors
def export_command(
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    db: o.DbPath = None,
    db_url: o.DbUrl = None,
    config: o.ConfigPath = None,
) -> None:
    """Write every stored schedule as YAML that 'apply' takes back unchanged.

    Example: flowyml-sched export --output schedules.yaml
    """
    from flowyml_sched.service import export_schedules

    with o.open_store(db, db_url, config, create=False) as store:
        text = export_schedules(store)
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
    from flowyml_sched.service import validate_file

    spec = validate_file(str(file), check_pipelines=check_pipeline)
    for warning in spec.warnings:
        typer.echo(f"flowyml-sched: warning: {warning}", err=True)
    count = len(spec.schedules)
    typer.echo(f"{file}: {count} schedule{'s' if count != 1 else ''}, no problems")


@db_app.command("upgrade")
@translate_errors
def db_upgrade_command(db: o.DbPath = None, db_url: o.DbUrl = None, config: o.ConfigPath = None) -> None:
    """Create the store's tables or upgrade them to the current schema.

    Example: flowyml-sched db upgrade --db-url postgresql+psycopg://scheduler@db/scheduler
    """
    with o.open_store(db, db_url, config) as store:
        store.upgrade()
    typer.echo("the store's schema is current")


@app.command("run-worker")
@translate_errors
def run_worker_command(
    sync: Annotated[
        Optional[Path],
        typer.Option(
            "--sync",
            help="Apply this YAML file at start, when it changes and on SIGHUP (pruning its removed schedules).",
        ),
    ] = None,
    max_concurrent: Annotated[
        int, typer.Option("--max-concurrent", min=1, max=1000, help="Runs executed at once.")
    ] = 4,
    poll_interval: Annotated[
        float,
        o.bounded_float(
            "--poll-interval",
            0.05,
            3600,
            "Seconds between looks for changes where a write cannot wake the worker (no inotify, "
            "in-memory SQLite), and between retries after a failed round.",
        ),
    ] = 1.0,
    claim_ahead: Annotated[
        float,
        o.bounded_float(
            "--claim-ahead",
            0,
            60,
            "Claim fire times this many seconds before they are due; their runs still start on time, never before.",
        ),
    ] = 0.1,
    grace: Annotated[
        float,
        o.bounded_float("--grace", 0, 86400, "Seconds running work may finish after SIGTERM before it is stopped."),
    ] = 30.0,
    lease: Annotated[
        float,
        o.bounded_float(
            "--lease", 1, 86400, "Seconds a heartbeat keeps this worker's claims; then they are abandoned."
        ),
    ] = 30.0,
    in_process: Annotated[
        bool, typer.Option("--in-process", help="Run pipelines in the worker process (no timeout, no isolation).")
    ] = False,
    keep_runs: Annotated[
        int, typer.Option("--keep-runs", min=1, max=10_000_000, help="History kept per schedule, in runs.")
    ] = 1000,
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
    once: Annotated[bool, typer.Option("--once", help="Run what is due now, wait for it, and exit.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 0 when a live worker heartbeat exists, 1 otherwise (probes).")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
    db: o.DbPath = None,
    db_url: o.DbUrl = None,
    config: o.ConfigPath = None,
) -> None:
    """Run the worker: claim due fire times and run their pipelines, each exactly once.

    Runs until SIGTERM or SIGINT (then drains within --grace); SIGHUP re-applies --sync.
    Speaks systemd's notify protocol when NOTIFY_SOCKET is set.

    Example: flowyml-sched run-worker --sync /etc/flowyml-sched/schedules.yaml --max-concurrent 8
    """
    import logging

    from flowyml_sched.cli import logs

    settings = o.settings(db, db_url, config)
    if check:
        from flowyml_sched.service import live_workers

        with o.open_store(db, db_url, config, create=False) as store:
            alive = live_workers(store, _now())
        typer.echo(f"{len(alive)} live worker{'s' if len(alive) != 1 else ''}" + "".join(f"\n  {w.id}" for w in alive))
        raise typer.Exit(0 if alive else 1)
    logs.configure(logging.DEBUG if verbose else logging.INFO)
    import os

    from flowyml_sched.locks import FileLocks
    from flowyml_sched.sdnotify import Notifier
    from flowyml_sched.service import sync_file
    from flowyml_sched.worker import Worker, WorkerSettings

    state = state_dir or settings.state_dir
    worker_settings = WorkerSettings(
        log_dir=state / "logs",
        max_concurrent=max_concurrent,
        poll_interval=poll_interval,
        claim_ahead=claim_ahead,
        grace=grace,
        lease=lease,
        heartbeat_interval=lease / 3,
        in_process=in_process,
        keep_runs=keep_runs,
        keep_days=keep_days,
        sync_file=sync,
    )
    with o.open_store(db, db_url, config) as store:
        worker = Worker(
            store,
            FileLocks(state / "locks"),
            worker_settings,
            notifier=Notifier(os.environ),
            sync=lambda path, now: sync_file(store, path, now),
        )
        if once:
            code = worker.run(once=True)
            worker.wait_idle()
        else:
            code = worker.run()
    raise typer.Exit(code)


@app.command("health")
@translate_errors
def health_command(
    window: Annotated[str, typer.Option("--window", help="Runs in this past window count (duration).")] = "24h",
    tolerance: Annotated[
        str, typer.Option("--tolerance", help="A schedule this far past its fire time is late.")
    ] = "60s",
    as_json: o.Json = False,
    db: o.DbPath = None,
    db_url: o.DbUrl = None,
    config: o.ConfigPath = None,
) -> None:
    """Report live workers, late schedules, success rate and durations; exit 1 unless status is ok.

    Example: flowyml-sched health --window 7d --json
    """
    from flowyml_sched.service import health
    from flowyml_sched.triggers import parse_duration

    with o.open_store(db, db_url, config, create=False) as store:
        report = health(store, _now(), parse_duration(window), parse_duration(tolerance))
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
    from flowyml_sched.pipelines import registered

    found = registered()
    if as_json:
        _print_json([{"name": name, "target": value} for name, value in found])
        return
    if not found:
        typer.echo("no pipelines registered in the entry-point group flowyml_sched.pipelines")
    for name, value in found:
        typer.echo(f"{name}  {value}")


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
