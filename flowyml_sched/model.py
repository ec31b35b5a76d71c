"""Frozen value objects: schedules, their policies and runs. No I/O here.

Every datetime held by these objects is timezone-aware; the ones the store keeps
(``created_at``, ``updated_at``, ``next_fire_at``, run times) are UTC.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flowyml_sched.errors import (
    InvalidParams,
    InvalidPipelineReference,
    InvalidPolicy,
    InvalidScheduleName,
)
from flowyml_sched.triggers import Trigger
from flowyml_sched.zones import DEFAULT_TIMEZONE, get_zone

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
"""Schedule names become parts of file and key names, so they hold nothing else."""

_IDENTIFIER_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
PIPELINE_PATTERN = re.compile(rf"(?:{_IDENTIFIER_PATH}:{_IDENTIFIER_PATH}|[A-Za-z0-9][A-Za-z0-9_.-]*)")
"""``package.module:attr.path`` or an entry-point name in the group ``flowyml_sched.pipelines``."""

DEFAULT_MAX_CATCHUP = 100
"""With catch-up ``all``: the most missed fire times run after downtime."""


class CatchUp(enum.Enum):
    """What runs after downtime or a resume for fire times that passed unrun.

    ``latest``: one run for the most recent missed fire time (systemd's ``Persistent=``);
    ``none``: go on with the next future fire time; ``all``: every missed fire time,
    oldest first, at most ``max_catchup`` of them.
    """

    latest = "latest"
    none = "none"
    all = "all"


class Overlap(enum.Enum):
    """What a fire time does while the schedule's previous run is still going.

    ``skip``: record it as skipped; ``queue``: run it after (at most one waiting);
    ``allow``: run it alongside; ``replace``: stop the running one and start this one.
    """

    skip = "skip"
    queue = "queue"
    allow = "allow"
    replace = "replace"


class RunStatus(enum.Enum):
    """States of a run in the execution history."""

    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    timed_out = "timed_out"
    interrupted = "interrupted"
    skipped = "skipped"
    missed = "missed"
    abandoned = "abandoned"


@dataclass(frozen=True)
class Policy:
    """Per-schedule execution policy; the worker gives these their meaning.

    ``timeout`` is elapsed time (None: no limit). ``misfire_grace`` is how late a fire
    time may be claimed and still count as on time (None: the default of
    :data:`flowyml_sched.dispatch.DEFAULT_MISFIRE_GRACE`, 60 s); later ones follow
    ``catchup``. ``retries`` is how many times a failed run is tried again, waiting
    ``retry_backoff`` between tries.
    """

    catchup: CatchUp = CatchUp.latest
    max_catchup: int = DEFAULT_MAX_CATCHUP
    misfire_grace: timedelta | None = None
    overlap: Overlap = Overlap.skip
    timeout: timedelta | None = None
    retries: int = 0
    retry_backoff: timedelta = timedelta(seconds=60)

    def __post_init__(self) -> None:
        if not isinstance(self.catchup, CatchUp):
            raise InvalidPolicy("catchup", self.catchup, "one of latest, none, all")
        if not isinstance(self.overlap, Overlap):
            raise InvalidPolicy("overlap", self.overlap, "one of skip, queue, allow, replace")
        if not isinstance(self.max_catchup, int) or not 1 <= self.max_catchup <= 100_000:
            raise InvalidPolicy("max_catchup", self.max_catchup, "a whole number from 1 to 100000")
        if not isinstance(self.retries, int) or not 0 <= self.retries <= 100:
            raise InvalidPolicy("retries", self.retries, "a whole number from 0 to 100")
        for name in ("misfire_grace", "timeout"):
            value = getattr(self, name)
            if value is not None and value <= timedelta(0):
                raise InvalidPolicy(name, value, "a positive duration such as 30s or 2h")
        if self.retry_backoff < timedelta(0):
            raise InvalidPolicy("retry backoff", self.retry_backoff, "a duration of zero or more")


@dataclass(frozen=True)
class Schedule:
    """A named schedule: what to run (``pipeline`` with ``params``), when (``trigger`` in ``timezone``).

    ``source`` is ``"cli"`` or the path of the YAML file it came from. ``next_fire_at`` is
    the next fire time in UTC (None while paused). ``version`` counts stored changes.
    Raises the package's validation errors for a bad name, pipeline, zone or params.
    """

    name: str
    pipeline: str
    trigger: Trigger
    timezone: str = DEFAULT_TIMEZONE
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    tags: tuple[str, ...] = ()
    enabled: bool = True
    pause_note: str | None = None
    policy: Policy = field(default_factory=Policy)
    source: str = "cli"
    created_at: datetime | None = None
    updated_at: datetime | None = None
    next_fire_at: datetime | None = None
    version: int = 1

    def __post_init__(self) -> None:
        validate_name(self.name)
        validate_pipeline(self.pipeline)
        get_zone(self.timezone)
        validate_params(self.params)
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "tags", tuple(sorted(set(self.tags))))
        for tag in self.tags:
            if not NAME_PATTERN.fullmatch(tag):
                raise InvalidPolicy("tag", tag, "letters, digits, '_', '-' and '.'")

    @property
    def kind(self) -> str:
        return self.trigger.kind


@dataclass(frozen=True)
class Run:
    """One row of execution history: a fire time of a schedule and what became of it.

    ``scheduled_for`` is the fire time (UTC); ``started_at`` / ``finished_at`` are UTC;
    ``duration_seconds`` is elapsed seconds; ``worker`` is the worker id that claimed it.
    """

    schedule_name: str
    scheduled_for: datetime
    status: RunStatus
    attempt: int = 1
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    error: str | None = None
    run_id: str | None = None
    worker: str | None = None
    host: str | None = None
    pid: int | None = None
    log_path: str | None = None
    retry_at: datetime | None = None
    """When a retry of this fire time is due (UTC): set on a ``failed``, ``timed_out`` or
    ``abandoned`` attempt with retries left, until a worker takes the retry; else None."""
    id: int | None = field(default=None, compare=False)
    """The history row's database id; not part of a run's value."""


@dataclass(frozen=True)
class WorkerInfo:
    """A worker process as the workers table knows it; times aware UTC.

    ``status`` is ``alive``, ``stopped`` (a clean exit) or ``dead`` (its lease expired).
    """

    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    lease_expires_at: datetime
    status: str


@dataclass(frozen=True)
class Claim:
    """A fire time a worker has claimed: the run row's ``run_id`` (database id), the
    schedule as it was at claim time, ``scheduled_for`` (aware UTC) and the ``attempt`` it
    is to run (above 1 for a retry; :meth:`ScheduleStore.start_attempt` fences on it).
    ``retry_of`` is the outcome of the attempt before a retry: the row keeps it when the retry
    does not start (overlap, shutdown), since that attempt did run."""

    run_id: int
    schedule: Schedule
    scheduled_for: datetime
    attempt: int = 1
    retry_of: RunStatus | None = None


@dataclass(frozen=True)
class ClaimRound:
    """What one claim transaction did: the ``claims`` to run (oldest fire time first), and
    ``next_due_at``, the earliest ``next_fire_at`` of an enabled schedule once it committed
    (aware UTC, or None), read in the same transaction."""

    claims: list[Claim]
    next_due_at: datetime | None


@dataclass(frozen=True)
class Heartbeat:
    """What a heartbeat found: ``lease_kept`` is False when the worker's row said ``dead``
    (its lease had expired and its runs were declared abandoned); ``others_expired`` is True
    when another ``alive`` worker's lease expired before this heartbeat (time to reap)."""

    lease_kept: bool
    others_expired: bool


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid schedule name, else raise InvalidScheduleName."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidScheduleName(str(name))
    return name


def validate_pipeline(reference: str) -> str:
    """Return ``reference`` if it is shaped like an entry-point name or ``module:attr``.

    Whether it resolves is checked where the pipelines can be loaded (the worker).
    Raises :class:`~flowyml_sched.errors.InvalidPipelineReference`.
    """
    if not isinstance(reference, str) or not PIPELINE_PATTERN.fullmatch(reference):
        raise InvalidPipelineReference(str(reference))
    return reference


def validate_params(params: object) -> None:
    """Raise InvalidParams unless ``params`` is a mapping with string keys that JSON can hold."""
    if not isinstance(params, Mapping):
        raise InvalidParams(params, "expected a mapping of names to values")
    if not all(isinstance(k, str) for k in params):
        raise InvalidParams(params, "every key must be a string")
    if "scheduled_for" in params:
        raise InvalidParams(params, "scheduled_for is reserved: the worker passes each run's fire time under that name")
    try:
        json.dumps(dict(params), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidParams(params, f"the values must be JSON: {exc}") from None


def schedule_to_dict(schedule: Schedule) -> dict[str, Any]:
    """Every stored field of a schedule as JSON-able values (datetimes as ISO 8601 UTC).

    Durations are seconds; the trigger is ``kind`` plus ``expression`` (cron text, HH:MM,
    MM or a duration) and, for intervals, ``anchor``.
    """
    from flowyml_sched.triggers import IntervalTrigger, trigger_text

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    def seconds(value: timedelta | None) -> float | None:
        return value.total_seconds() if value is not None else None

    policy = schedule.policy
    trigger = schedule.trigger
    return {
        "name": schedule.name,
        "pipeline": schedule.pipeline,
        "kind": schedule.kind,
        "expression": trigger_text(trigger),
        "anchor": iso(trigger.anchor) if isinstance(trigger, IntervalTrigger) else None,
        "timezone": schedule.timezone,
        "params": dict(schedule.params),
        "description": schedule.description,
        "tags": list(schedule.tags),
        "enabled": schedule.enabled,
        "pause_note": schedule.pause_note,
        "catchup": policy.catchup.value,
        "max_catchup": policy.max_catchup,
        "misfire_grace_seconds": seconds(policy.misfire_grace),
        "overlap": policy.overlap.value,
        "timeout_seconds": seconds(policy.timeout),
        "retries": policy.retries,
        "retry_backoff_seconds": seconds(policy.retry_backoff),
        "source": schedule.source,
        "created_at": iso(schedule.created_at),
        "updated_at": iso(schedule.updated_at),
        "next_fire_at": iso(schedule.next_fire_at),
        "version": schedule.version,
    }


def run_to_dict(run: Run) -> dict[str, Any]:
    """A history row as JSON-able values (datetimes ISO 8601 UTC, duration in seconds)."""
    return {
        "schedule": run.schedule_name,
        "scheduled_for": run.scheduled_for.isoformat(),
        "status": run.status.value,
        "attempt": run.attempt,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_seconds": run.duration_seconds,
        "error": run.error,
        "run_id": run.run_id,
        "worker": run.worker,
        "host": run.host,
        "pid": run.pid,
        "log_path": run.log_path,
        "retry_at": run.retry_at.isoformat() if run.retry_at else None,
    }
