"""The health report: live workers, late and broken schedules, success rates and durations."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from flowyml_sched.model import BrokenSchedule, Run, RunStatus, Schedule, WorkerInfo, run_to_dict

if TYPE_CHECKING:
    from flowyml_sched.store import ScheduleStore

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


def lock_warnings(live: list[WorkerInfo], dialect: str) -> list[str]:
    """What makes overlap unsafe among the ``live`` workers of a store on ``dialect``: a
    worker whose lock backend is unreachable, live workers with different lock backends or
    different Redis servers or databases (their locks never meet; ``lock_target``), and file
    locks on several hosts of a shared (PostgreSQL) store."""
    warnings = [f"worker {w.id}: {w.lock_problem}" for w in live if w.lock_problem]
    by_backend: dict[str, list[str]] = {}
    for worker in live:
        by_backend.setdefault(worker.lock_backend or "file", []).append(worker.id)
    if len(by_backend) > 1:
        uses = "; ".join(f"{backend}: {', '.join(ids)}" for backend, ids in sorted(by_backend.items()))
        warnings.append(f"live workers use different lock backends ({uses}): overlap is not enforced between them")
    by_target: dict[str, list[str]] = {}
    for worker in live:
        if worker.lock_backend == "redis" and worker.lock_target:
            by_target.setdefault(worker.lock_target, []).append(worker.id)
    if len(by_target) > 1:
        uses = "; ".join(f"{target}: {', '.join(ids)}" for target, ids in sorted(by_target.items()))
        warnings.append(
            f"live workers keep their locks in different Redis servers or databases ({uses}): overlap is not "
            "enforced between them (after a Redis restart, until each worker has seen the new server: 20 s)"
        )
    file_hosts = sorted({w.host for w in live if (w.lock_backend or "file") == "file"})
    if dialect == "postgresql" and len(file_hosts) > 1:
        warnings.append(
            f"workers on {len(file_hosts)} hosts ({', '.join(file_hosts)}) use file locks: overlap holds only "
            "within each host; use --lock-backend redis"
        )
    return warnings


def health_report(
    store: ScheduleStore,
    live: list[WorkerInfo],
    now: datetime,
    window: timedelta = DEFAULT_HEALTH_WINDOW,
    tolerance: timedelta = DEFAULT_LATE_TOLERANCE,
) -> dict[str, Any]:
    """A JSON-able health report at ``now``: ``status`` (``ok``, ``degraded`` or ``down``),
    the ``live`` workers (each with its ``lock_backend`` and ``lock_problem``), the
    ``lock_warnings`` (:func:`lock_warnings`; any makes the status ``degraded``), ``late`` schedules, ``broken`` ones (rows that cannot be loaded, each
    ``{"name", "error"}``; any makes the status ``degraded``), per-schedule success rate and duration p50/p95
    (seconds) over ``window``, and the ``last_failure``. Never raises on odd data: rows
    with missing times are left out of the figures.
    """
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
    locks = lock_warnings(live, store.dialect)
    total = sum(e["runs"] for e in per_schedule.values())
    succeeded = sum(e["succeeded"] for e in per_schedule.values())
    status = "ok"
    if schedules and not live:
        status = "down"
    elif late or broken or locks:
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
                "lock_backend": w.lock_backend,
                "lock_problem": w.lock_problem,
                "lock_target": w.lock_target,
            }
            for w in live
        ],
        "lock_warnings": locks,
        "late": late,
        "broken": broken,
        "success_rate": succeeded / total if total else None,
        "schedules": report_schedules,
        "last_failure": run_to_dict(last_failure) if last_failure else None,
    }
