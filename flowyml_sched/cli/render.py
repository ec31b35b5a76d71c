"""Rendering of command results with Rich; plain text when stdout is not a terminal.

Rich honours ``NO_COLOR`` and drops colour and styles when stdout is not a terminal.
"""

from __future__ import annotations

import itertools
import os
import sys
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table

from flowyml_sched.describe import NO_WORKER_HINT, RUNS_IN_PYTHON, last_error, relative, show_value, trigger_label
from flowyml_sched.references import is_local_pipeline

if TYPE_CHECKING:
    from flowyml_sched.application.scheduler import Backfill
    from flowyml_sched.model import BrokenSchedule, Run, Schedule
    from flowyml_sched.spec import Plan
    from flowyml_sched.timing import ExcludedFireTime, FireTime


PIPE_WIDTH = 160
"""Columns of Rich output printed to a pipe or file (a terminal uses its own width)."""


def _console() -> Console:
    console = Console(highlight=False, markup=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, markup=False, emoji=False, width=PIPE_WIDTH)
    return console


class _Grid:
    """Rows under column headings: a Rich table on a terminal, plain aligned text otherwise
    (for pipes, files and scripts: no box characters, no wrapping, and much faster)."""

    def __init__(self, *columns: str, header: bool = True, right: tuple[int, ...] = ()):
        self.columns = columns
        self.header = header
        self.right = right
        self.rows: list[tuple[str, ...]] = []

    def add_row(self, *cells: str) -> None:
        self.rows.append(cells)

    def print(self) -> None:
        console = _console()
        if console.is_terminal:
            table = Table(
                box=box.SIMPLE_HEAD if self.header else None,
                show_header=self.header,
                show_edge=False,
                pad_edge=False,
            )
            for index, column in enumerate(self.columns):
                table.add_column(column, justify="right" if index in self.right else "left")
            for row in self.rows:
                table.add_row(*row)
            console.print(table)
            return
        lines = ([self.columns] if self.header else []) + self.rows
        widths = [max(len(line[i]) for line in lines) for i in range(len(self.columns))]
        out = []
        for line in lines:
            cells = [
                cell.rjust(width) if index in self.right else cell.ljust(width)
                for index, (cell, width) in enumerate(zip(line, widths, strict=True))
            ]
            out.append("  ".join(cells).rstrip())
        sys.stdout.write("\n".join(out) + "\n")


def fire_time_json(fire: FireTime) -> dict[str, Any]:
    """The JSON object of one fire time: ``fire_time`` (zone offset), ``utc``, and ``note`` when DST touched it."""
    item: dict[str, Any] = {"fire_time": fire.at.isoformat(), "utc": fire.utc.isoformat().replace("+00:00", "Z")}
    if fire.note is not None or fire.moved_from is not None:
        item["note"] = fire.describe_note()
    if fire.moved_from is not None:
        item["moved_from"] = fire.moved_from.isoformat()
        item["reason"] = fire.reason
    return item


def excluded_json(excluded: ExcludedFireTime) -> dict[str, Any]:
    """The JSON object of a fire time an exclusion took: ``fire_time``, ``utc``, ``reason``,
    ``moved_to`` (None: skipped) and ``merged``."""
    fire = excluded.fire
    return {
        "fire_time": fire.at.isoformat(),
        "utc": fire.utc.isoformat().replace("+00:00", "Z"),
        "reason": excluded.reason,
        "moved_to": excluded.moved_to.at.isoformat() if excluded.moved_to is not None else None,
        "merged": excluded.merged,
    }


def render_fire_times(fires: list[FireTime], zone_name: str, excluded: list[ExcludedFireTime] | None = None) -> None:
    """Print fire times as a table: local time, UTC, and the note (DST, a move by an
    exclusion); with ``excluded``, the fire times exclusions took among them, unnumbered."""
    table = _Grid("#", f"fire time ({zone_name})", "UTC", "note", right=(0,))
    rows: list[tuple[datetime, str, FireTime, str]] = [
        (fire.utc, str(index), fire, fire.describe_note()) for index, fire in enumerate(fires, start=1)
    ]
    rows += [(item.fire.utc, "-", item.fire, item.describe()) for item in excluded or []]
    for _utc, number, fire, note in sorted(rows, key=lambda row: row[0]):
        table.add_row(number, fire.at.strftime("%a %Y-%m-%d %H:%M:%S %z"), fire.utc.strftime("%Y-%m-%d %H:%M:%S"), note)
    table.print()


def render_schedule_list(rows: list[tuple[Schedule | BrokenSchedule, Run | None]], now: datetime) -> None:
    """Print the schedule list: name, trigger, zone, next fire (local and relative), last run,
    state (``enabled``, ``paused: note``, or ``broken: why`` for a row that cannot be loaded)."""
    console = _console()
    if not rows:
        console.print("no schedules; add one with 'flowyml-sched add' or 'flowyml-sched apply FILE'")
        return
    table = _Grid("name", "schedule", "zone", "next fire", "last run", "state")
    from flowyml_sched.model import BrokenSchedule
    from flowyml_sched.zones import get_zone

    for schedule, run in rows:
        last = f"{run.status.value} {relative(run.scheduled_for, now)}" if run else "-"
        if isinstance(schedule, BrokenSchedule):
            stored = schedule.stored
            at = schedule.next_fire_at
            table.add_row(
                schedule.name,
                f"{stored['kind']} {stored['expression']}",
                str(stored["timezone"]),
                f"{at:%Y-%m-%d %H:%M} UTC ({relative(at, now)})" if at else "-",
                last,
                f"broken: {schedule.reason}",
            )
            continue
        if schedule.next_fire_at is None:
            next_fire = "-"
        else:
            local = schedule.next_fire_at.astimezone(get_zone(schedule.timezone))
            next_fire = f"{local:%Y-%m-%d %H:%M} ({relative(schedule.next_fire_at, now)})"
        state = (
            "enabled" if schedule.enabled else "paused" + (f": {schedule.pause_note}" if schedule.pause_note else "")
        )
        if is_local_pipeline(schedule.pipeline):
            state += f" ({RUNS_IN_PYTHON})"
        table.add_row(schedule.name, trigger_label(schedule), schedule.timezone, next_fire, last, state)
    table.print()
    overdue = sum(
        1
        for schedule, _ in rows
        if schedule.enabled and schedule.next_fire_at is not None and now - schedule.next_fire_at > OVERDUE
    )
    if overdue:
        console.print(
            f"{overdue} schedule{'s are' if overdue != 1 else ' is'} past {'their' if overdue != 1 else 'its'} "
            f"fire time, unclaimed: is a worker running? ({NO_WORKER_HINT})"
        )


OVERDUE = timedelta(seconds=60)
"""A schedule whose next fire time is this far in the past has no worker claiming it."""


def render_schedule(schedule: Schedule | BrokenSchedule, fires: list[FireTime], now: datetime) -> None:
    """Print one schedule's fields, policies and next fire times; for a row that cannot be
    loaded, its stored values and why (``status broken``, ``error``)."""
    from flowyml_sched.model import BrokenSchedule, entry_to_dict, schedule_to_dict

    console = _console()
    table = _Grid("field", "value", header=False)
    if isinstance(schedule, BrokenSchedule):
        for key, value in entry_to_dict(schedule).items():
            table.add_row(key, show_value(key, value))
        table.print()
        return
    for key, value in schedule_to_dict(schedule).items():
        table.add_row(key, schedule.exclusions.describe() or "-" if key == "exclusions" else show_value(key, value))
    table.print()
    if schedule.enabled:
        console.print()
        render_fire_times(fires, schedule.timezone)


def render_history(name: str, runs: list[Run]) -> None:
    """Print runs newest first: fire time, status (with ``(manual)`` or ``(backfill)`` for a
    run asked for), start, duration, error, run id, worker."""
    from flowyml_sched.model import RunOrigin

    console = _console()
    if not runs:
        console.print(f"no runs recorded for {name}")
        return
    table = _Grid("scheduled for (UTC)", "status", "started (UTC)", "duration", "error", "run id", "worker")
    shortened = False
    for run in runs:
        error, cut = _first_line(run.error, HISTORY_ERROR_WIDTH)
        shortened = shortened or cut
        table.add_row(
            f"{run.scheduled_for:%Y-%m-%d %H:%M:%S}",
            run.status.value if run.origin is RunOrigin.schedule else f"{run.status.value} ({run.origin.value})",
            f"{run.started_at:%Y-%m-%d %H:%M:%S}" if run.started_at else "-",
            f"{run.duration_seconds:.2f}s" if run.duration_seconds is not None else "-",
            error,
            run.run_id or "",
            run.worker or "",
        )
    table.print()
    if shortened:
        console.print("errors shortened (…); 'history --json' shows them whole")


HISTORY_ERROR_WIDTH = 60
"""Characters of an error's first line that the history table shows."""


def _first_line(text: str | None, width: int) -> tuple[str, bool]:
    """The first line of ``text`` in at most ``width`` characters, cut at a word with ``…``;
    and whether anything was left out (a longer line, or more lines)."""
    if not text:
        return "", False
    lines = text.splitlines()
    line = lines[0]
    if len(line) <= width:
        return (line + "…", True) if len(lines) > 1 else (line, False)
    cut = line[: width - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…", True


def _utc(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None


def _local(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M %Z}" if value else "paused"


def plan_json(plan: Plan, applied: bool) -> dict[str, Any]:
    """The plan as JSON: lists of names per action, with next fire times before and after."""
    return {
        "applied": applied and plan.has_changes,
        "create": [{"name": c.name, "next_fire": _utc(c.next_after)} for c in plan.creates],
        "change": [
            {
                "name": c.name,
                "fields": list(c.fields),
                "next_fire_before": _utc(c.next_before),
                "next_fire_after": _utc(c.next_after),
            }
            for c in plan.changes
        ],
        "delete": [{"name": d.name, "next_fire_before": _utc(d.next_before)} for d in plan.deletes],
        "unchanged": [u.name for u in plan.unchanged],
    }


PLAN_LINES = 50
"""Changes a plan prints one per line; beyond them, how many more (``--json`` lists all)."""


def render_plan(plan: Plan, applied: bool) -> None:
    """Print the plan, one line per created, changed or deleted schedule (the first
    :data:`PLAN_LINES` of them, then how many more), and what was done."""
    console = _console()
    lines = itertools.chain(
        (f"+ create {entry.name}: next {_local(entry.next_after)}" for entry in plan.creates),
        (
            f"~ change {entry.name} ({', '.join(entry.fields)}): next {_local(entry.next_before)}"
            f" -> {_local(entry.next_after)}"
            for entry in plan.changes
        ),
        (f"- delete {entry.name}" for entry in plan.deletes),
    )
    for line in itertools.islice(lines, PLAN_LINES):
        console.print(line)
    more = len(plan.creates) + len(plan.changes) + len(plan.deletes) - PLAN_LINES
    if more > 0:
        console.print(f"... and {more} more (--json lists every one)")
    summary = (
        f"{len(plan.creates)} to create, {len(plan.changes)} to change, "
        f"{len(plan.deletes)} to delete, {len(plan.unchanged)} unchanged"
    )
    if not plan.has_changes:
        console.print(f"{summary}: nothing to do")
    elif applied:
        console.print(f"{summary}: applied")
    else:
        console.print(f"{summary}: dry run, nothing changed")


def render_health(report: dict[str, Any]) -> None:
    """Print a health report: status, workers, late schedules, per-schedule figures, last failure."""
    console = _console()
    rate = report["success_rate"]
    console.print(
        f"status: {report['status']}; {len(report['workers'])} live worker(s); "
        f"success rate {'-' if rate is None else f'{rate:.1%}'} over {report['window_seconds'] / 3600:g} h"
    )
    if not report["workers"]:
        console.print(f"  no worker is running: {NO_WORKER_HINT.split('; ')[1]} (or its systemd unit)")
    for worker in report["workers"]:
        locks = worker["lock_backend"] or "file"
        console.print(f"  worker {worker['id']} (heartbeat {worker['heartbeat_at']}; {locks} locks)")
    for warning in report["lock_warnings"]:
        console.print(f"  locks: {warning}", soft_wrap=True)
    for late in report["late"]:
        console.print(f"  late: {late['name']} was due {late['next_fire_at']} ({late['late_seconds']:.0f} s ago)")
    for broken in report["broken"]:
        console.print(f"  broken: {broken['name']}: {broken['error']}", soft_wrap=True)
    if report["schedules"]:
        table = _Grid("schedule", "runs", "success", "p50", "p95", "missed", "skipped")
        for name, figures in report["schedules"].items():
            share = figures["success_rate"]
            p50, p95 = figures["duration_p50_seconds"], figures["duration_p95_seconds"]
            table.add_row(
                name,
                str(figures["runs"]),
                "-" if share is None else f"{share:.0%}",
                "-" if p50 is None else f"{p50:.2f}s",
                "-" if p95 is None else f"{p95:.2f}s",
                str(figures["missed"]),
                str(figures["skipped"]),
            )
        table.print()
    failure = report["last_failure"]
    if failure:
        error = (failure["error"] or "").splitlines()[0] if failure["error"] else ""
        console.print(
            f"last failure: {failure['schedule']} for {failure['scheduled_for']}: {failure['status']} {error}"
        )


def render_backfill(backfill: Backfill) -> None:
    """Print a backfill's fire times (in the schedule's zone and UTC, DST notes), each with
    what becomes of it: ``queued`` (``would run`` on a dry run) or the run already in history."""
    zone_name = backfill.schedule.timezone
    kept = {run.scheduled_for: run for run in backfill.kept}
    queued = set(backfill.queued)
    table = _Grid("#", f"fire time ({zone_name})", "UTC", "note", "backfill", right=(0,))
    for index, fire in enumerate(backfill.fire_times, start=1):
        if fire.utc in queued:
            what = "would run" if backfill.dry_run else "queued"
        elif fire.utc in kept:
            what = f"in history: {kept[fire.utc].status.value}"
        else:  # asked for meanwhile by another backfill
            what = "in history"
        table.add_row(
            str(index),
            fire.at.strftime("%a %Y-%m-%d %H:%M:%S %z"),
            fire.utc.strftime("%Y-%m-%d %H:%M:%S"),
            fire.describe_note(),
            what,
        )
    table.print()


def describe_progress(run: Run) -> str:
    """One line on where a run asked for stands, for ``trigger --wait``."""
    from flowyml_sched.model import RunStatus

    if run.status is RunStatus.pending:
        return "waiting for a worker to take it"
    if run.status is RunStatus.running:
        if run.started_at is None:
            return f"attempt {run.attempt}: taken by {run.worker}"
        return f"attempt {run.attempt}: running on {run.worker} since {run.started_at:%H:%M:%S} UTC"
    error = last_error(run)
    retry = f"; retry at {run.retry_at:%Y-%m-%d %H:%M:%S} UTC" if run.retry_at else ""
    return f"attempt {run.attempt}: {run.status.value}{f' ({error})' if error else ''}{retry}"
