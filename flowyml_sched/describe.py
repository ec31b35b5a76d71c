"""Schedules, runs and fire times in plain words, as every human-facing front end shows them
(the CLI's tables and messages, the dashboard's pages): no Rich, no HTML."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from flowyml_sched.references import is_local_pipeline

if TYPE_CHECKING:
    from flowyml_sched.model import Run, Schedule


def relative(moment: datetime, now: datetime) -> str:
    """``in 3h 12m`` or ``5m ago``: the gap between two instants, to the minute (seconds when under one)."""
    seconds = int((moment - now).total_seconds())
    span = abs(seconds)
    if span < 60:
        text = f"{span}s"
    else:
        days, rest = divmod(span // 60, 24 * 60)
        hours, minutes = divmod(rest, 60)
        parts = [f"{days}d"] if days else []
        if hours:
            parts.append(f"{hours}h")
        if minutes and not days:
            parts.append(f"{minutes}m")
        text = " ".join(parts) or "0m"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


def trigger_label(schedule: Schedule) -> str:
    """``daily 02:30``, ``cron */15 * * * *``, ``hourly :15``, ``interval every 15m``."""
    return f"{schedule.kind} {schedule.trigger.describe()}"


def describe_next(schedule: Schedule, now: datetime) -> str:
    """One line saying when a stored schedule fires next, in its zone and relative to now."""
    if schedule.next_fire_at is None:
        return "no fire time ahead: its exclusions take every one" if schedule.enabled else "paused"
    from flowyml_sched.zones import get_zone

    local = schedule.next_fire_at.astimezone(get_zone(schedule.timezone))
    return f"next {local:%Y-%m-%d %H:%M %Z} ({relative(schedule.next_fire_at, now)})"


RUNS_IN_PYTHON = "runs only in a Python process that registered it"
"""Said of a schedule whose pipeline is a callable a ``PipelineScheduler`` registered."""


NO_WORKER_HINT = "check with 'flowyml-sched run-worker --check'; start one with 'flowyml-sched run-worker'"


def show_value(key: str, value: Any) -> str:
    """A stored field as ``show`` prints it: JSON for structures, durations in seconds as in
    ``--json`` with 1h30m beside them, the misfire grace in force when the default, '-' for none."""
    import json

    from flowyml_sched.triggers import format_duration

    if key == "misfire_grace_seconds" and value is None:
        from flowyml_sched.dispatch import DEFAULT_MISFIRE_GRACE

        default = DEFAULT_MISFIRE_GRACE.total_seconds()
        return f"{default:g} ({format_duration(DEFAULT_MISFIRE_GRACE)}, the default)"
    if key == "timeout_seconds" and value is None:
        return "- (no timeout)"
    if key == "pipeline" and isinstance(value, str) and is_local_pipeline(value):
        return f"{value} (a Python callable: {RUNS_IN_PYTHON}; run-worker leaves it)"
    if value is None or value == "":
        return "-"
    if key.endswith("_seconds") and isinstance(value, int | float):
        try:
            return f"{value:g} ({format_duration(timedelta(seconds=value))})"
        except (OverflowError, ValueError):  # a stored row's value no duration holds (a broken row)
            return f"{value:g}"
    if isinstance(value, dict | list | bool):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def last_error(run: Run) -> str:
    """The first line of the last attempt's error (``error`` holds one line per earlier
    attempt above it), at most 500 characters; "" when there is none."""
    lines = (run.error or "").splitlines()
    if not lines:
        return ""
    return lines[min(run.attempt - 1, len(lines) - 1)][:500]
