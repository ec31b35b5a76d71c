"""Use cases shared by the command-line tool and (later) the REST API."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowyml_sched.errors import UsageError
from flowyml_sched.model import BrokenSchedule, Run, RunStatus, Schedule, WorkerInfo, run_to_dict
from flowyml_sched.timing import FireTime, fire_times, next_fire_time
from flowyml_sched.triggers import (
    CronTrigger,
    IntervalTrigger,
    Trigger,
    parse_duration,
    parse_instant,
    parse_minute,
    parse_time_of_day,
)
from flowyml_sched.zones import get_zone

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from flowyml_sched.spec import Plan, SpecFile
    from flowyml_sched.store import ScheduleStore


def build_trigger(
    *,
    cron: str | None = None,
    daily: str | None = None,
    hourly: str | None = None,
    every: str | None = None,
    anchor: datetime | None = None,
) -> Trigger:
    """Build the one trigger that the given text describes.

    Exactly one of ``cron``, ``daily`` (HH:MM), ``hourly`` (MM) or ``every`` (a duration)
    must be given; ``anchor`` (aware) is required with ``every``. Raises
    :class:`~flowyml_sched.errors.UsageError` when not exactly one is given, and the
    parsers' errors for bad text.
    """
    given = [v for v in (cron, daily, hourly, every) if v is not None]
    if len(given) != 1:
        raise UsageError("give exactly one of cron, daily, hourly or every")
    if cron is not None:
        return CronTrigger(cron)
    if daily is not None:
        return parse_time_of_day(daily)
    if hourly is not None:
        return parse_minute(hourly)
    if anchor is None:
        raise UsageError("an interval needs an anchor instant")
    return IntervalTrigger(parse_duration(every or ""), anchor)


def preview_fire_times(
    *,
    cron: str | None,
    daily: str | None,
    hourly: str | None,
    every: str | None,
    anchor: str | None,
    timezone_name: str,
    after: str | None,
    count: int,
    now: datetime,
) -> list[FireTime]:
    """The next ``count`` fire times of a schedule described on the command line.

    ``after`` and ``anchor`` are ISO 8601 text with an offset; ``after`` defaults to
    ``now`` and ``anchor`` to ``after``. Nothing is stored.
    """
    zone = get_zone(timezone_name)
    start = parse_instant(after, "--after") if after is not None else now
    anchor_at = parse_instant(anchor, "--anchor") if anchor is not None else start
    trigger = build_trigger(cron=cron, daily=daily, hourly=hourly, every=every, anchor=anchor_at)
    return fire_times(trigger, zone, start, count)


# -- stored schedules --------------------------------------------------------------------
# Each use case takes the store and "now" (aware UTC) from its caller.


def next_fire_at(schedule: Schedule, now: datetime) -> datetime | None:
    """The schedule's next fire time after ``now`` in UTC, or None while it is paused."""
    if not schedule.enabled:
        return None
    return next_fire_time(schedule.trigger, get_zone(schedule.timezone), now).utc


def add_schedule(store: ScheduleStore, schedule: Schedule, now: datetime, check_pipeline: bool = True) -> Schedule:
    """Store a new schedule with its next fire time.

    With ``check_pipeline``, a pipeline that cannot be found here is refused
    (:func:`flowyml_sched.pipelines.check`). Raises ScheduleExists, PipelineNotFound.
    """
    if check_pipeline:
        check_pipeline_reference(schedule.pipeline)
    return store.add(replace(schedule, source="cli", next_fire_at=next_fire_at(schedule, now)), now)


def edit_schedule(store: ScheduleStore, name: str, changes: Mapping[str, Any], now: datetime) -> Schedule:
    """Change fields of a stored schedule (``changes`` maps Schedule field names to values).

    The next fire time is kept when the timing is untouched (:func:`carried_next_fire_at`),
    else recomputed from ``now``. A row that cannot be loaded (:class:`BrokenSchedule`) is
    repaired when ``changes`` gives each of its broken fields a valid value; its next fire
    time is then computed from ``now``. Raises ScheduleNotFound, ScheduleBroken (a broken
    field left as it is) and the model's validation errors; nothing is stored when one is raised.
    """
    current = store.entry(name)
    if isinstance(current, BrokenSchedule):
        repaired = current.repaired(changes)
        return store.replace(replace(repaired, next_fire_at=next_fire_at(repaired, now)), now)
    updated = replace(current, **changes)
    return store.replace(replace(updated, next_fire_at=carried_next_fire_at(current, updated, now)), now)


def carried_next_fire_at(current: Schedule, updated: Schedule, now: datetime) -> datetime | None:
    """The next fire time of an edited schedule.

    When its timing is untouched (same trigger, zone and enabled state) the stored next
    fire time is kept, so an edit of, say, its description cannot drop a fire time that is
    due but not yet claimed; otherwise it is the first fire time after ``now``.
    """
    same_timing = (current.trigger, current.timezone, current.enabled) == (
        updated.trigger,
        updated.timezone,
        updated.enabled,
    )
    return current.next_fire_at if same_timing else next_fire_at(updated, now)


def pause_schedule(store: ScheduleStore, name: str, note: str | None, now: datetime) -> Schedule | BrokenSchedule:
    """Pause a schedule: no fire time is claimed until it is resumed. A row that cannot be
    loaded is paused too (and returned as the :class:`BrokenSchedule` it still is). Raises
    ScheduleNotFound."""
    return _set_enabled(store, name, False, note, now)


def resume_schedule(store: ScheduleStore, name: str, now: datetime) -> Schedule | BrokenSchedule:
    """Resume a schedule from its next fire time after ``now``. A row that cannot be loaded
    is marked enabled without a next fire time: it runs once an edit repairs it (and is
    returned as the :class:`BrokenSchedule` it still is). Raises ScheduleNotFound."""
    return _set_enabled(store, name, True, None, now)


def _set_enabled(
    store: ScheduleStore, name: str, enabled: bool, note: str | None, now: datetime
) -> Schedule | BrokenSchedule:
    if isinstance(store.entry(name), BrokenSchedule):
        store.set_enabled(name, enabled, note, now)
        return store.entry(name)
    return edit_schedule(store, name, {"enabled": enabled, "pause_note": note}, now)


def list_schedules(
    store: ScheduleStore, tag: str | None = None, enabled: bool | None = None
) -> list[tuple[Schedule | BrokenSchedule, Run | None]]:
    """Stored schedules sorted by name, each with its latest run (or None); a row that cannot
    be loaded is listed as a :class:`BrokenSchedule` (with why)."""
    schedules = store.entries(tag=tag, enabled=enabled)
    last = store.last_runs([s.name for s in schedules]) if schedules else {}
    return [(s, last.get(s.name)) for s in schedules]


def preview_stored(store: ScheduleStore, name: str, after: datetime, count: int) -> tuple[Schedule, list[FireTime]]:
    """A stored schedule and its next ``count`` fire times after ``after`` (even while paused).
    Raises ScheduleNotFound, and ScheduleBroken for a row that cannot be loaded."""
    schedule = store.get(name)
    return schedule, fire_times(schedule.trigger, get_zone(schedule.timezone), after, count)


def show_schedule(
    store: ScheduleStore, name: str, after: datetime, count: int
) -> tuple[Schedule | BrokenSchedule, list[FireTime]]:
    """As :func:`preview_stored`, but a row that cannot be loaded comes back as a
    :class:`BrokenSchedule` with no fire times, so that it can be looked at. Raises ScheduleNotFound."""
    found = store.entry(name)
    if isinstance(found, BrokenSchedule):
        return found, []
    return found, fire_times(found.trigger, get_zone(found.timezone), after, count)


def check_pipeline_reference(reference: str) -> None:
    """Raise PipelineNotFound unless the pipeline can be found in this environment."""
    from flowyml_sched.pipelines import check

    check(reference)


def validate_file(path: str, check_pipelines: bool = True) -> SpecFile:
    """Read and check a YAML schedules file; with ``check_pipelines`` every pipeline must be
    found in this environment (each one that is not is a problem at its schedule's line).

    Raises InvalidSpec listing every problem.
    """
    from flowyml_sched.errors import InvalidSpec, PipelineNotFound, SpecProblem
    from flowyml_sched.spec import load_spec

    spec = load_spec(path)
    if check_pipelines:
        problems = []
        for schedule in spec.schedules:
            try:
                check_pipeline_reference(schedule.pipeline)
            except PipelineNotFound as exc:
                problems.append(SpecProblem(path, spec.lines.get(schedule.name), str(exc), schedule.name))
        if problems:
            raise InvalidSpec(path, problems)
    return spec


def apply_file(
    store: ScheduleStore, path: str, *, prune: bool, dry_run: bool, now: datetime, check_pipelines: bool = True
) -> Plan:
    """Plan the changes that make the store match a YAML file, and apply them unless ``dry_run``.

    All changes go in one transaction: all or nothing. With ``check_pipelines`` every
    pipeline must be found here (each one that is not is a problem with its line). Raises
    InvalidSpec (every problem of the file, nothing applied) and StoreError.
    """
    from flowyml_sched.spec import plan

    spec = validate_file(path, check_pipelines=check_pipelines)
    # a file is known by its absolute path, so --prune means the same file from any directory
    source = str(Path(path).resolve())
    entries = store.entries()
    current = [e for e in entries if isinstance(e, Schedule)]
    broken = {e.name for e in entries if isinstance(e, BrokenSchedule)}
    result = plan(spec, current, prune=prune, source=source, now=now)
    if not dry_run and (result.has_changes or result.other_source):
        store.apply(
            creates=[replace(e.new, next_fire_at=next_fire_at(e.new, now)) for e in result.creates if e.new],
            updates=[
                replace(e.new, next_fire_at=carried_next_fire_at(e.old, e.new, now))
                # changed ones, and unchanged ones the file now owns (stored from the CLI or
                # another file), so that a later --prune of this file may delete them
                for e in (*result.changes, *(u for u in result.unchanged if u.name in result.other_source))
                if e.new and e.old
            ],
            # a row that cannot be loaded and that the file defines is replaced by the file's schedule
            deletes=[entry.name for entry in result.deletes] + [e.name for e in result.creates if e.name in broken],
            now=now,
        )
    return result


def export_schedules(store: ScheduleStore) -> str:
    """YAML text of every stored schedule, which ``apply`` takes back unchanged.

    Raises ScheduleBroken (naming the first) when a stored row cannot be loaded: it would be
    left out of the file, and a later ``apply --prune`` of that file would lose it.
    """
    from flowyml_sched.spec import dump_spec

    entries = store.entries()
    for entry in entries:
        if isinstance(entry, BrokenSchedule):
            raise entry.error
    return dump_spec(e for e in entries if isinstance(e, Schedule))


# -- health ------------------------------------------------------------------------------

DEFAULT_HEALTH_WINDOW = timedelta(hours=24)
"""Runs whose fire time falls in this window count for success rate and durations."""
DEFAULT_LATE_TOLERANCE = timedelta(seconds=60)
"""An enabled schedule whose next fire time is this far in the past is late (no worker claims it)."""


def _percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def health(
    store: ScheduleStore,
    now: datetime,
    window: timedelta = DEFAULT_HEALTH_WINDOW,
    tolerance: timedelta = DEFAULT_LATE_TOLERANCE,
) -> dict[str, Any]:
    """A JSON-able health report at ``now``: ``status`` (``ok``, ``degraded`` or ``down``),
    live ``workers``, ``late`` schedules, ``broken`` ones (rows that cannot be loaded, each
    ``{"name", "error"}``; any makes the status ``degraded``), per-schedule success rate and duration p50/p95
    (seconds) over ``window``, and the ``last_failure``. Never raises on odd data: rows
    with missing times are left out of the figures.
    """
    live = live_workers(store, now)
    entries = store.entries()
    schedules = [s for s in entries if isinstance(s, Schedule) and s.enabled]
    broken = [{"name": e.name, "error": e.reason} for e in entries if isinstance(e, BrokenSchedule)]
    late = [
        {
            "name": s.name,
            "next_fire_at": s.next_fire_at.isoformat(),
            "late_seconds": (now - s.next_fire_at).total_seconds(),
        }
        for s in schedules
        if s.next_fire_at is not None and now - s.next_fire_at > tolerance
    ]
    finals = {RunStatus.succeeded, RunStatus.failed, RunStatus.timed_out, RunStatus.abandoned, RunStatus.interrupted}
    per_schedule: dict[str, dict[str, Any]] = {}
    last_failure: Run | None = None
    for run in store.runs_since(now - window):
        entry = per_schedule.setdefault(
            run.schedule_name, {"runs": 0, "succeeded": 0, "durations": [], "missed": 0, "skipped": 0}
        )
        if run.status is RunStatus.missed:
            entry["missed"] += 1
        elif run.status is RunStatus.skipped:
            entry["skipped"] += 1
        if run.status not in finals:
            continue
        entry["runs"] += 1
        if run.status is RunStatus.succeeded:
            entry["succeeded"] += 1
        elif last_failure is None or run.scheduled_for >= last_failure.scheduled_for:
            last_failure = run
        if run.duration_seconds is not None:
            entry["durations"].append(run.duration_seconds)
    report_schedules = {
        name: {
            "runs": e["runs"],
            "succeeded": e["succeeded"],
            "success_rate": e["succeeded"] / e["runs"] if e["runs"] else None,
            "duration_p50_seconds": _percentile(e["durations"], 0.5),
            "duration_p95_seconds": _percentile(e["durations"], 0.95),
            "missed": e["missed"],
            "skipped": e["skipped"],
        }
        for name, e in sorted(per_schedule.items())
    }
    total = sum(e["runs"] for e in per_schedule.values())
    succeeded = sum(e["succeeded"] for e in per_schedule.values())
    status = "ok"
    if schedules and not live:
        status = "down"
    elif late or broken:
        status = "degraded"
    return {
        "status": status,
        "checked_at": now.isoformat(),
        "window_seconds": window.total_seconds(),
        "workers": [
            {
                "id": w.id,
                "host": w.host,
                "pid": w.pid,
                "started_at": w.started_at.isoformat(),
                "heartbeat_at": w.heartbeat_at.isoformat(),
            }
            for w in live
        ],
        "late": late,
        "broken": broken,
        "success_rate": succeeded / total if total else None,
        "schedules": report_schedules,
        "last_failure": run_to_dict(last_failure) if last_failure else None,
    }


def live_workers(store: ScheduleStore, now: datetime) -> list[WorkerInfo]:
    """Workers whose heartbeat lease has not expired at ``now``."""
    return [w for w in store.list_workers() if w.status == "alive" and w.lease_expires_at >= now]


def sync_file(store: ScheduleStore, path: Path, now: datetime) -> None:
    """The worker's ``--sync``: apply a YAML file, pruning the schedules that came from it.

    The worker is where pipelines must load, so an unresolvable one refuses the whole file
    (InvalidSpec) and the stored schedules stay as they were.
    """
    plan = apply_file(store, str(path), prune=True, dry_run=False, now=now)
    if plan.has_changes:
        logger.info(
            "synced %s: %d created, %d changed, %d deleted",
            path,
            len(plan.creates),
            len(plan.changes),
            len(plan.deletes),
        )
