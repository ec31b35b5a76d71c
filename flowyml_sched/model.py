"""Frozen value objects: schedules, their policies and runs. No I/O here.

Every datetime held by these objects is timezone-aware; the ones the store keeps
(``created_at``, ``updated_at``, ``next_fire_at``, run times) are UTC.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from flowyml_sched.errors import (
    InvalidExclusion,
    InvalidParams,
    InvalidPipelineReference,
    InvalidPolicy,
    InvalidScheduleName,
    ScheduleBroken,
    UnknownTimezone,
    describe_broken,
)
from flowyml_sched.exclusions import NO_EXCLUSIONS, Exclusions, exclusions_of
from flowyml_sched.references import LOCAL_PIPELINE_PREFIX
from flowyml_sched.triggers import Trigger
from flowyml_sched.zones import DEFAULT_TIMEZONE, get_zone

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
"""Schedule names become parts of file and key names, so they hold nothing else."""

_IDENTIFIER_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
PIPELINE_PATTERN = re.compile(
    rf"(?:{_IDENTIFIER_PATH}:{_IDENTIFIER_PATH}|[A-Za-z0-9][A-Za-z0-9_.-]*|{LOCAL_PIPELINE_PREFIX}{NAME_PATTERN.pattern})"
)
"""``package.module:attr.path``, an entry-point name in the group ``flowyml_sched.pipelines``,
or a callable registered in a Python process (:mod:`flowyml_sched.references`)."""


MAX_PIPELINE_LENGTH = 512
"""Longest pipeline reference, in characters (the store's ``pipeline`` column holds this many)."""

MAX_TIMEZONE_LENGTH = 64
"""Longest timezone name, in characters (the store's ``timezone`` column holds this many)."""

MAX_PARAMS_DEPTH = 32
"""Deepest nesting of a schedule's params: the params mapping is level 1, and each list or
mapping inside a value one level more (``{"a": [1]}`` is 2 levels deep)."""

MAX_PARAMS_BYTES = 65_536
"""Largest params, measured as their JSON text (``json.dumps``, as the store keeps them)."""

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
    """States of a run in the execution history. ``pending``: a run asked for (``trigger``,
    ``backfill``) that no worker has taken yet."""

    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    timed_out = "timed_out"
    interrupted = "interrupted"
    skipped = "skipped"
    missed = "missed"
    abandoned = "abandoned"


class RunOrigin(enum.Enum):
    """Why a run exists: ``schedule``, a fire time of the schedule's trigger, claimed when due;
    ``manual``, one run asked for now (``flowyml-sched trigger``), its ``scheduled_for`` the
    request's instant; ``backfill``, a past fire time asked for again (``flowyml-sched backfill``)."""

    schedule = "schedule"
    manual = "manual"
    backfill = "backfill"


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
    """A named schedule: what to run (``pipeline`` with ``params``), when (``trigger`` in
    ``timezone``, but not on the local dates ``exclusions`` names).

    ``source`` is ``"cli"`` or the path of the YAML file it came from. ``next_fire_at`` is
    the next fire time in UTC (None while paused). ``version`` counts stored changes.
    Raises the package's validation errors for a bad name, pipeline, zone or params, and
    InvalidExclusion for a rule that moves the excluded fire times of a schedule firing more than once a day.
    """

    name: str
    pipeline: str
    trigger: Trigger
    timezone: str = DEFAULT_TIMEZONE
    params: Mapping[str, Any] = field(default_factory=dict)
    exclusions: Exclusions = NO_EXCLUSIONS
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
        validate_pipeline(self.pipeline, self.name)
        validate_timezone(self.timezone)
        validate_params(self.params, self.name)
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "tags", tuple(sorted(set(self.tags))))
        for label, value in (("description", self.description), ("pause_note", self.pause_note)):
            check_text(value, label)
        for tag in self.tags:
            if not NAME_PATTERN.fullmatch(tag):
                raise InvalidPolicy("tag", tag, "letters, digits, '_', '-' and '.'")
        check_exclusions_fit(self.trigger, self.exclusions)

    @property
    def kind(self) -> str:
        return self.trigger.kind


def check_exclusions_fit(trigger: Trigger, exclusions: Exclusions) -> None:
    """Refuse (InvalidExclusion) a rule that moves the excluded fire times of a schedule that
    can fire more than once a day (an interval shorter than a day, hourly, a cron expression
    with more than one time of day): it fires on the business day anyway, so its moved fire
    times would pile onto that day's (and each lookup would walk every one of them)."""
    if not exclusions.moves:
        return
    every = getattr(trigger, "every", None)
    if every is not None:
        if every >= timedelta(days=1):
            return
        why = f"the interval ({trigger.describe()}) is shorter than a day"
    else:
        spec = trigger.spec
        if len(spec.minutes) * len(spec.hours) == 1:
            return
        why = f"{trigger.kind} {trigger.describe()} fires more than once a day"
    raise InvalidExclusion(
        "on_excluded",
        exclusions.on_excluded.value,
        f"{why}: only the fire times of a schedule that fires at most once a day move to a business "
        "day (the others would pile onto its own); skip them instead",
    )


BROKEN_FIELD_OF = {
    "kind": "trigger",
    "expression": "trigger",
    "anchor": "trigger",
    "catchup": "policy",
    "max_catchup": "policy",
    "misfire_grace_seconds": "policy",
    "overlap": "policy",
    "timeout_seconds": "policy",
    "retries": "policy",
    "retry_backoff_seconds": "policy",
}
"""The :class:`Schedule` field that a stored column belongs to, where the names differ."""


@dataclass(frozen=True)
class BrokenSchedule:
    """A stored schedule row that cannot be loaded as a :class:`Schedule`.

    ``name`` is the row's name as stored. ``problems`` pairs each stored field that does not
    load (``timezone``, ``expression``, ``params``, ``catchup``, ...) with why, one line each.
    ``fields`` holds the Schedule's fields as far as they load: a field that does not load keeps
    its stored value, except ``trigger`` and ``policy``, None when they do not load
    (``policy_fields`` then holds the policy's fields the same way). ``stored`` is the row as
    JSON-able values, with the keys of :func:`schedule_to_dict`.
    """

    name: str
    problems: tuple[tuple[str, str], ...]
    fields: Mapping[str, Any]
    policy_fields: Mapping[str, Any]
    stored: Mapping[str, Any]

    @property
    def reason(self) -> str:
        """The problems as one line: ``field timezone: unknown timezone 'Mars/Olympus'; ...``."""
        return describe_broken(self.name, self.problems).partition(", ")[2]

    @property
    def message(self) -> str:
        """``schedule 'm1', field timezone: unknown timezone 'Mars/Olympus'; ...``: one line."""
        return describe_broken(self.name, self.problems)

    @property
    def error(self) -> ScheduleBroken:
        """The error that a use of this row as a schedule raises."""
        return ScheduleBroken(self.name, self.problems)

    @property
    def enabled(self) -> bool:
        return bool(self.stored.get("enabled"))

    @property
    def kind(self) -> str:
        return str(self.stored.get("kind"))

    @property
    def trigger(self) -> Trigger | None:
        return self.fields.get("trigger")

    @property
    def next_fire_at(self) -> datetime | None:
        value = self.fields.get("next_fire_at")
        return value if isinstance(value, datetime) else None

    def repaired(self, changes: Mapping[str, Any]) -> Schedule:
        """The schedule this row becomes with ``changes`` (Schedule field names to values).

        Raises :class:`~flowyml_sched.errors.ScheduleBroken` naming the fields that stay
        broken (``changes`` gives them no new value; a broken ``name`` cannot be repaired,
        only removed), and the model's validation errors for bad new values.
        """
        left = [(f, why) for f, why in self.problems if BROKEN_FIELD_OF.get(f, f) not in changes]
        if left:
            raise ScheduleBroken(self.name, left)
        return Schedule(**{**self.fields, **changes})


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
    origin: RunOrigin = RunOrigin.schedule
    """Whether the schedule's trigger, a ``trigger`` or a ``backfill`` asked for this run."""
    params: dict[str, Any] | None = None
    """Parameters of this run only (``trigger --param``), over the schedule's; None: none."""
    id: int | None = field(default=None, compare=False)
    """The history row's database id; not part of a run's value."""


@dataclass(frozen=True)
class ScheduleHead:
    """What a stored schedule row says without being loaded: its ``name``, whether it is
    ``enabled``, its ``next_fire_at`` (aware UTC, or None), and its ``version``, which every
    change the store makes to its definition raises; ``damaged`` when one of these cannot be
    read (then the others are what could be: None, False or 0)."""

    name: str
    enabled: bool
    next_fire_at: datetime | None
    version: int
    damaged: bool = False
    """A value of these cannot be read (a row written by hand): the row is broken."""


@dataclass(frozen=True)
class RunTotals:
    """What the stored history adds up to: how many runs of each status (``RunStatus`` values
    as text), how many of those started (the others were skipped, missed, or closed before
    their start), and the mean ``duration_seconds`` of the runs that have one (None: none has)."""

    by_status: dict[str, int]
    started_by_status: dict[str, int]
    mean_duration_seconds: float | None


@dataclass(frozen=True)
class WorkerInfo:
    """A worker process as the workers table knows it; times aware UTC.

    ``status`` is ``alive``, ``stopped`` (a clean exit) or ``dead`` (its lease expired).
    ``lock_backend`` is ``file`` or ``redis`` (None: a row written before version 0007 of the
    schema); ``lock_problem`` why that backend was unusable at the last heartbeat, or None;
    ``lock_target`` where its locks are, as far as it knows (Redis: the server's run id and
    the database number), or None.
    """

    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    lease_expires_at: datetime
    status: str
    lock_backend: str | None = None
    lock_problem: str | None = None
    lock_target: str | None = None


@dataclass(frozen=True)
class Claim:
    """A fire time a worker has claimed: the run row's ``run_id`` (database id), the
    schedule as it was at claim time, ``scheduled_for`` (aware UTC) and the ``attempt`` it
    is to run (above 1 for a retry; :meth:`ScheduleStore.start_attempt` fences on it).
    ``retry_of`` is the outcome of the attempt before a retry: the row keeps it when the retry
    does not start (overlap, shutdown), since that attempt did run. ``owner`` is the id of
    the worker that claimed it: only under that id may it start. ``owed`` marks a claim
    taken from a pending retry (a retry, or an attempt handed over unstarted): it waits for
    the schedule's run lock rather than meet the overlap policy at once. ``origin`` and
    ``params`` are the run row's (:class:`Run`): a backfill waits for the run lock as long as
    it takes; ``params`` go over the schedule's."""

    run_id: int
    schedule: Schedule
    scheduled_for: datetime
    attempt: int = 1
    retry_of: RunStatus | None = None
    owner: str = ""
    owed: bool = False
    origin: RunOrigin = RunOrigin.schedule
    params: Mapping[str, Any] | None = None

    @property
    def run_params(self) -> dict[str, Any]:
        """The parameters the pipeline gets: the schedule's, with the run's own over them."""
        return {**self.schedule.params, **(self.params or {})}


@dataclass(frozen=True)
class ClaimScope:
    """Which schedules a worker claims (and whose pending retries it takes): those whose
    ``(name, pipeline)`` is in ``registered`` (a schedule whose pipeline another process has
    changed since is left to that process), and, with ``references``, every schedule whose
    pipeline is a reference any process can load (``module:attr`` or an entry-point name),
    that is, all but the callables registered in Python processes
    (:mod:`flowyml_sched.references`). ``run-worker`` claims every reference; a
    :class:`flowyml_sched.PipelineScheduler` what is registered on it (and the references too
    when made a full worker)."""

    registered: frozenset[tuple[str, str]] = frozenset()
    references: bool = True

    @property
    def kind(self) -> tuple[bool, bool]:
        """(by registration, by reference): what the claim's SQL filters on."""
        return (bool(self.registered), self.references)


EVERY_REFERENCE = ClaimScope()
"""The scope of ``run-worker``: every schedule whose pipeline any process can load."""


@dataclass(frozen=True)
class ClaimRound:
    """What one claim transaction did: the ``claims`` to run (oldest fire time first),
    ``next_due_at``, the earliest ``next_fire_at`` of an enabled schedule once it committed
    (aware UTC, or None), read in the same transaction, and the due rows found ``broken``
    (that cannot be loaded) in this round: skipped, and left out of later rounds until they change;
    and the fire times it recorded ``missed``."""

    claims: list[Claim]
    next_due_at: datetime | None
    broken: tuple[BrokenSchedule, ...] = ()
    missed: tuple[tuple[str, datetime, str], ...] = ()
    """(schedule, fire time, reason) of each fire time this round recorded ``missed``."""


@dataclass(frozen=True)
class RequestedRuns:
    """What a request for runs (:meth:`ScheduleStore.request_runs`) stored: the ``pending`` runs
    it ``queued`` (a fire time recorded ``missed`` is asked for again), and the runs already in
    history that it left as they are (``kept``), each oldest first."""

    queued: list[Run]
    kept: list[Run]


@dataclass(frozen=True)
class Heartbeat:
    """What a heartbeat found: ``lease_kept`` is False when the worker's row said ``dead``
    (its lease had expired and its runs were declared abandoned); ``others_expired`` is True
    when another ``alive`` worker's lease expired before this heartbeat (time to reap)."""

    lease_kept: bool
    others_expired: bool


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid schedule name, else raise InvalidScheduleName."""
    if not isinstance(name, str):
        raise InvalidScheduleName(f"<{type(name).__name__}: {name!r}>"[:140], "it is not text")
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidScheduleName(name)
    return name


def validate_pipeline(reference: str, schedule: str | None = None) -> str:
    """Return ``reference`` if it is shaped like an entry-point name or ``module:attr`` and at
    most :data:`MAX_PIPELINE_LENGTH` characters long.

    Whether it resolves is checked where the pipelines can be loaded (the worker). Raises
    :class:`~flowyml_sched.errors.InvalidPipelineReference` (naming ``schedule`` when given).
    """
    if isinstance(reference, str) and len(reference) > MAX_PIPELINE_LENGTH:
        raise InvalidPipelineReference(
            reference, f"it is {len(reference)} characters long, at most {MAX_PIPELINE_LENGTH} are allowed", schedule
        )
    if not isinstance(reference, str) or not PIPELINE_PATTERN.fullmatch(reference):
        raise InvalidPipelineReference(str(reference), schedule=schedule)
    return reference


def validate_timezone(name: str) -> str:
    """Return ``name`` if it is an IANA zone name of at most :data:`MAX_TIMEZONE_LENGTH`
    characters. Raises :class:`~flowyml_sched.errors.UnknownTimezone`."""
    if not isinstance(name, str) or len(name) > MAX_TIMEZONE_LENGTH:
        raise UnknownTimezone(str(name)[:MAX_TIMEZONE_LENGTH] + "...", [])
    get_zone(name)
    return name


def check_text(value: str | None, field: str) -> None:
    """Raise InvalidPolicy naming ``field`` for text no database stores as it is: a NUL
    (PostgreSQL's text refuses it) or a lone surrogate (no UTF-8 encoding)."""
    if value is None:
        return
    if "\x00" in value:
        raise InvalidPolicy(field, value, "text without NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPolicy(
            field, value.encode("utf-8", "backslashreplace").decode(), "text without lone surrogates"
        ) from None


def validate_params(params: object, schedule: str | None = None) -> None:
    """Raise InvalidParams unless ``params`` is a mapping with string keys that JSON can hold,
    nested at most :data:`MAX_PARAMS_DEPTH` levels deep and at most :data:`MAX_PARAMS_BYTES`
    long as JSON.

    The one check of params' shape and size: every way in (``add``, ``edit``, ``apply``, a
    stored row being loaded) goes through it, so whatever is stored can be exported and
    applied back. ``schedule`` is named in the message when given.
    """
    if not isinstance(params, Mapping):
        raise InvalidParams(params, "expected a mapping of names to values", schedule)
    if not params:  # most schedules: nothing to check, and listing thousands pays for each
        return
    if not all(isinstance(k, str) for k in params):
        raise InvalidParams(params, "every key must be a string", schedule)
    if "scheduled_for" in params:
        raise InvalidParams(
            params, "scheduled_for is reserved: the worker passes each run's fire time under that name", schedule
        )
    depth = params_depth(params)
    if depth > MAX_PARAMS_DEPTH:
        raise InvalidParams(
            params,
            f"nested more than {MAX_PARAMS_DEPTH} levels deep (lists and mappings, the params themselves counted)",
            schedule,
        )
    try:
        text = json.dumps(dict(params), allow_nan=False)
        if "\\ud" in text:  # a surrogate, perhaps lone: not text any file or database holds
            json.dumps(dict(params), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidParams(
            params, "a text in them holds a lone surrogate (such as \\ud800), which is no character", schedule
        ) from None
    except (TypeError, ValueError) as exc:
        raise InvalidParams(params, f"the values must be JSON: {exc}", schedule) from None
    size = len(text)
    if size > MAX_PARAMS_BYTES:
        raise InvalidParams(params, f"{size} bytes as JSON, at most {MAX_PARAMS_BYTES} are allowed", schedule)


def params_depth(value: object) -> int:
    """How many levels of lists and mappings ``value`` nests (0 for a scalar, 1 for ``{}``),
    counted without recursion; past ``MAX_PARAMS_DEPTH + 1`` it stops counting (a value that
    refers to itself is infinitely deep)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_PARAMS_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def schedule_columns(schedule: Schedule) -> dict[str, Any]:
    """Every stored field of a schedule, keyed as the store's columns: the trigger as ``kind``
    plus ``expression`` (its text) and ``anchor`` (an aware datetime, for an anchored kind),
    the policy's durations in seconds, instants as the schedule holds them."""

    def seconds(value: timedelta | None) -> float | None:
        return value.total_seconds() if value is not None else None

    policy = schedule.policy
    trigger = schedule.trigger
    return {
        "name": schedule.name,
        "pipeline": schedule.pipeline,
        "kind": trigger.kind,
        "expression": trigger.text(),
        "anchor": trigger.anchor if trigger.anchored else None,
        "timezone": schedule.timezone,
        "params": dict(schedule.params),
        "exclusions": exclusions_to_json(schedule.exclusions),
        "description": schedule.description,
        "tags": list(schedule.tags),
        "enabled": bool(schedule.enabled),
        "pause_note": schedule.pause_note,
        "catchup": policy.catchup.value,
        "max_catchup": policy.max_catchup,
        "misfire_grace_seconds": seconds(policy.misfire_grace),
        "overlap": policy.overlap.value,
        "timeout_seconds": seconds(policy.timeout),
        "retries": policy.retries,
        "retry_backoff_seconds": seconds(policy.retry_backoff),
        "source": schedule.source,
        "created_at": schedule.created_at,
        "updated_at": schedule.updated_at,
        "next_fire_at": schedule.next_fire_at,
        "version": schedule.version,
    }


def exclusions_to_json(exclusions: Exclusions) -> dict[str, Any] | None:
    """The ``exclusions`` column: the ``exclude:`` mapping plus ``on_excluded``; None when
    nothing is excluded."""
    if not exclusions:
        return None
    return exclusions.fields() | {"on_excluded": exclusions.on_excluded.value}


def exclusions_from_json(stored: Mapping[str, Any] | None) -> Exclusions:
    """The inverse of :func:`exclusions_to_json`. Raises InvalidExclusion."""
    if stored is None:
        return NO_EXCLUSIONS
    if not isinstance(stored, Mapping):
        raise InvalidExclusion("exclusions", stored, "expected a mapping")
    fields = dict(stored)
    rule = fields.pop("on_excluded", None)
    return exclusions_of(fields, rule)


def schedule_to_dict(schedule: Schedule) -> dict[str, Any]:
    """:func:`schedule_columns` as JSON-able values: datetimes as ISO 8601 UTC."""
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in schedule_columns(schedule).items()
    }


def entry_to_dict(entry: Schedule | BrokenSchedule) -> dict[str, Any]:
    """:func:`schedule_to_dict` plus ``status`` (``enabled``, ``paused`` or ``broken``) and
    ``error`` (why a broken row cannot be loaded, else None); a broken row gives its stored
    values under the same keys."""
    if isinstance(entry, BrokenSchedule):
        return dict(entry.stored) | {"status": "broken", "error": entry.reason}
    return schedule_to_dict(entry) | {"status": "enabled" if entry.enabled else "paused", "error": None}


def plain_text(text: str) -> str:
    """``text`` that every database stores and every log handler writes: NUL shown as
    ``\\x00`` (PostgreSQL text refuses it), lone surrogates (undecodable bytes of a
    pipeline's message) as ``\\udcff`` escapes."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def run_to_dict(run: Run) -> dict[str, Any]:
    """A history row as JSON-able values (datetimes ISO 8601 UTC, duration in seconds); the
    schedule's name is ``schedule``."""
    values = {f.name: getattr(run, f.name) for f in fields(Run) if f.name != "id"}
    out = {"schedule" if key == "schedule_name" else key: value for key, value in values.items()}
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
    out["status"] = run.status.value
    out["origin"] = run.origin.value
    return out
