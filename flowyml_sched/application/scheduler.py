"""The use cases on a store of schedules, one method each: what every front end (the CLI,
later the Python API and the REST API) calls. Each takes "now" from the injected clock and
records who made a change (``source``: ``cli``, a YAML file's path, later ``api``, ``python``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowyml_sched.bulk import collector_paused
from flowyml_sched.clock import utc_now
from flowyml_sched.errors import InvalidPipelineReference, InvalidSpec, ScheduleExists, ScheduleNotFound, UsageError
from flowyml_sched.exclusions import NO_EXCLUSIONS, Exclusions
from flowyml_sched.fields import changes_of, exclusions_with, schedule_of, trigger_of
from flowyml_sched.model import (
    BrokenSchedule,
    Run,
    RunTotals,
    Schedule,
    WorkerInfo,
    check_exclusions_fit,
    check_text,
    validate_name,
)
from flowyml_sched.references import local_pipeline
from flowyml_sched.timing import ExcludedFireTime, FireTime, excluded_between, fire_times, next_fire_time
from flowyml_sched.zones import DEFAULT_TIMEZONE, get_zone

if TYPE_CHECKING:
    from flowyml_sched.application.metrics import MetricsSnapshot, RunMetrics
    from flowyml_sched.config import Settings
    from flowyml_sched.spec import Plan
    from flowyml_sched.store import ScheduleStore
    from flowyml_sched.triggers import Trigger

logger = logging.getLogger(__name__)

_MICROSECOND = timedelta(microseconds=1)


def next_fire_at(schedule: Schedule, now: datetime) -> datetime | None:
    """The schedule's next fire time after ``now`` in UTC, or None while it is paused."""
    if not schedule.enabled:
        return None
    return next_fire_time(schedule.trigger, get_zone(schedule.timezone), now, schedule.exclusions).utc


def _utc_or_none(at: datetime | None) -> datetime | None:
    return None if at is None else at.astimezone(UTC)


def carried_next_fire_at(current: Schedule, updated: Schedule, now: datetime) -> datetime | None:
    """The next fire time of an edited schedule.

    When its timing is untouched (same trigger, zone and enabled state) the stored next
    fire time is kept, so an edit of, say, its description cannot drop a fire time that is
    due but not yet claimed; otherwise it is the first fire time after ``now``.
    """
    same_timing = (current.trigger, current.timezone, current.exclusions, current.enabled) == (
        updated.trigger,
        updated.timezone,
        updated.exclusions,
        updated.enabled,
    )
    return current.next_fire_at if same_timing else next_fire_at(updated, now)


def preview(
    fields: Mapping[str, Any], *, timezone: str, after: datetime, count: int, labels: Mapping[str, str] | None = None
) -> list[FireTime]:
    """The next ``count`` fire times after ``after`` (aware) of a schedule described by plain
    fields (one trigger key; an ``every`` counts from its ``anchor``, else from ``after``) in
    ``timezone``, with the exclusions its ``exclude`` and ``on_excluded`` give. Nothing is
    stored. Raises as :func:`~flowyml_sched.fields.trigger_of`, UnknownTimezone,
    InvalidExclusion, NeverFires and OutOfRange."""
    trigger, exclusions = _timing_of(fields, after, labels)
    return fire_times(trigger, get_zone(timezone), after, count, exclusions)


def _timing_of(
    fields: Mapping[str, Any], after: datetime, labels: Mapping[str, str] | None
) -> tuple[Trigger, Exclusions]:
    """The trigger and the exclusions that plain fields give, checked together."""
    trigger, exclusions = trigger_of(fields, after, labels), exclusions_with(NO_EXCLUSIONS, fields, labels)
    check_exclusions_fit(trigger, exclusions)
    return trigger, exclusions


def excluded_fire_times(
    source: Schedule | Mapping[str, Any],
    *,
    timezone: str,
    after: datetime,
    until: datetime,
    labels: Mapping[str, str] | None = None,
) -> list[ExcludedFireTime]:
    """The fire times in ``(after, until]`` (aware) that the exclusions of ``source`` skip or
    move, each with why and where it went: a stored schedule, or plain fields as for
    :func:`preview` (in ``timezone``). Raises as :func:`preview`."""
    if isinstance(source, Schedule):
        trigger, zone, exclusions = source.trigger, get_zone(source.timezone), source.exclusions
    else:
        (trigger, exclusions), zone = _timing_of(source, after, labels), get_zone(timezone)
    return excluded_between(trigger, zone, after, until, exclusions)


def _check_rule_acts(
    fields: Mapping[str, Any], name: str, exclusions: Exclusions, labels: Mapping[str, str] | None
) -> None:
    """Refuse (UsageError) an ``on_excluded`` that moves fire times, given for a schedule
    ``name`` whose ``exclusions`` exclude nothing: it would be dropped without a word."""
    rule = fields.get("on_excluded")
    if rule is None or exclusions or str(getattr(rule, "value", rule)).strip().lower() == "skip":
        return
    labels = labels or {}
    raise UsageError(
        f"{labels.get('on_excluded', 'on_excluded')} {getattr(rule, 'value', rule)} moves excluded fire times, "
        f"but {name} excludes no dates: give {labels.get('exclude', 'exclude')} too"
    )


def registered_pipelines() -> list[tuple[str, str]]:
    """The pipelines registered as entry points: (name, target) pairs sorted by name."""
    from flowyml_sched.pipelines import registered

    return registered()


def check_pipeline_reference(reference: str) -> None:
    """Raise PipelineNotFound unless the pipeline can be found in this environment."""
    from flowyml_sched.pipelines import check

    check(reference)


def pipeline_of(target: Any, name: str) -> str:
    """The pipeline to store for ``target``, a callable or flowyml ``Pipeline`` object that a
    Python process registers for schedule ``name``: ``module:qualname`` when that finds the
    same object from any process (a module-level function or class outside ``__main__``:
    ``run-worker`` can run it too), else ``python-callable:<name>``
    (:mod:`flowyml_sched.references`: only processes that registered it run it). Raises
    InvalidPipelineReference when ``target`` is neither callable nor a flowyml ``Pipeline``."""
    import sys

    from flowyml_sched.pipelines import is_flowyml_pipeline

    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str) and module != "__main__" and "<" not in qualname:
        found: Any = sys.modules.get(module)
        for part in qualname.split("."):
            found = getattr(found, part, None)
        if found is target:
            return f"{module}:{qualname}"
    if not callable(target) and not is_flowyml_pipeline(target):
        raise InvalidPipelineReference(
            repr(target), "it is neither callable, a flowyml Pipeline, nor a reference string", name
        )
    return local_pipeline(name)


BACKFILL_MAX = 1000
"""How many fire times a backfill may ask for unless told more (``backfill --max``)."""

WAIT_POLL_SECONDS = 0.5
"""How often :meth:`Scheduler.wait_for_run` reads the run's row."""


@dataclass(frozen=True)
class Backfill:
    """What a backfill of ``schedule`` over a range found: its ``fire_times`` there, oldest
    first; those asked for (``queued``: pending rows, or with ``dry_run`` those that would
    be); the runs already in history that stay as they are (``kept``)."""

    schedule: Schedule
    fire_times: list[FireTime]
    queued: list[datetime]
    kept: list[Run]
    dry_run: bool


@dataclass(frozen=True)
class Toggled:
    """What a pause or resume left: the stored ``entry``, and whether it ``changed`` (False
    when the schedule was paused, or running, already)."""

    entry: Schedule | BrokenSchedule
    changed: bool


class Scheduler:
    """The use cases on one store.

    ``clock`` gives "now" (aware UTC); ``source`` is recorded on the schedules this object
    stores (``cli``; a file's path for what :meth:`apply_file` stores); ``timezone`` is the
    zone of a new schedule whose fields name none (the configured default).
    """

    def __init__(
        self,
        store: ScheduleStore,
        *,
        clock: Callable[[], datetime] = utc_now,
        source: str = "cli",
        timezone: str = DEFAULT_TIMEZONE,
    ):
        self.store = store
        self.clock = clock
        self.source = source
        self.timezone = timezone
        self._metrics: RunMetrics | None = None

    # -- changes -------------------------------------------------------------------------

    def add(
        self, fields: Mapping[str, Any], *, check_pipeline: bool = True, labels: Mapping[str, str] | None = None
    ) -> Schedule:
        """Store a new schedule made from plain ``fields`` (see :mod:`flowyml_sched.fields`;
        ``labels`` name the fields in error messages). Raises as :func:`~flowyml_sched.fields.schedule_of`
        and :meth:`add_schedule`."""
        schedule = schedule_of(fields, timezone=self.timezone, now=self.clock(), source=self.source, labels=labels)
        _check_rule_acts(fields, schedule.name, schedule.exclusions, labels)
        return self.add_schedule(schedule, check_pipeline=check_pipeline)

    def add_schedule(self, schedule: Schedule, *, check_pipeline: bool = True) -> Schedule:
        """Store a new schedule with its next fire time.

        With ``check_pipeline``, a pipeline that cannot be found here is refused
        (:func:`flowyml_sched.pipelines.check`). Raises ScheduleExists, PipelineNotFound.
        """
        if check_pipeline:
            check_pipeline_reference(schedule.pipeline)
        now = self.clock()
        return self.store.add(replace(schedule, source=self.source, next_fire_at=next_fire_at(schedule, now)), now)

    def register(self, fields: Mapping[str, Any], *, check_pipeline: bool = True) -> tuple[Schedule, str]:
        """Store the schedule that plain ``fields`` define (as for :meth:`add`), as a program
        that declares its schedules each time it starts needs it: a new one is added; one
        stored with the same definition is kept as it is (enabled or paused, its next fire
        time, its history); one stored with a different definition is edited (the next fire
        time follows :meth:`edit_schedule`'s rules; an interval keeps its anchor). Returns the
        stored schedule and ``"created"``, ``"unchanged"`` or ``"updated"``. Several processes
        may register the same schedule at once. Raises as :meth:`add` and :meth:`edit_schedule`."""
        name = validate_name(fields["name"])
        for _ in range(2):  # a process that added it meanwhile: compare with what it stored
            try:
                current = self.store.entry(name)
            except ScheduleNotFound:
                try:
                    return self.add(fields, check_pipeline=check_pipeline), "created"
                except ScheduleExists:
                    continue
            changes = changes_of(current, {k: v for k, v in fields.items() if k != "name"}, now=self.clock())
            if isinstance(current, Schedule):  # the fields given, less those that stay as stored
                changes = {key: value for key, value in changes.items() if getattr(current, key) != value}
                if not changes:
                    return current, "unchanged"
            if check_pipeline and "pipeline" in changes:
                check_pipeline_reference(changes["pipeline"])
            return self._replace(current, changes), "updated"
        raise ScheduleExists(name)

    def edit(
        self,
        name: str,
        fields: Mapping[str, Any],
        *,
        check_pipeline: bool = True,
        labels: Mapping[str, str] | None = None,
    ) -> Schedule:
        """Change the fields of a stored schedule that ``fields`` gives (plain fields, as for
        :meth:`add`, without ``name``); the others keep their values. Raises UsageError when
        nothing would change, PipelineNotFound (with ``check_pipeline``), and as :meth:`edit_schedule`."""
        if check_pipeline and fields.get("pipeline") is not None:
            check_pipeline_reference(fields["pipeline"])
        current = self.store.entry(name)
        changes = changes_of(current, fields, now=self.clock(), labels=labels)
        exclusions = changes.get(
            "exclusions",
            current.fields.get("exclusions") if isinstance(current, BrokenSchedule) else current.exclusions,
        )
        _check_rule_acts(fields, name, exclusions or NO_EXCLUSIONS, labels)
        if not changes:
            raise UsageError("nothing to change: give at least one option")
        return self._replace(current, changes)

    def edit_schedule(self, name: str, changes: Mapping[str, Any]) -> Schedule:
        """Change fields of a stored schedule (``changes`` maps Schedule field names to values).

        The next fire time is kept when the timing is untouched (:func:`carried_next_fire_at`),
        else recomputed from now. A row that cannot be loaded (:class:`BrokenSchedule`) is
        repaired when ``changes`` gives each of its broken fields a valid value; its next fire
        time is then computed from now. Raises ScheduleNotFound, ScheduleBroken (a broken
        field left as it is) and the model's validation errors; nothing is stored when one is raised.
        """
        return self._replace(self.store.entry(name), changes)

    def _replace(self, current: Schedule | BrokenSchedule, changes: Mapping[str, Any]) -> Schedule:
        """:meth:`edit_schedule` of the entry already read."""
        now = self.clock()
        if isinstance(current, BrokenSchedule):
            repaired = current.repaired(changes)
            return self.store.replace(replace(repaired, next_fire_at=next_fire_at(repaired, now)), now)
        updated = replace(current, **changes)
        return self.store.replace(replace(updated, next_fire_at=carried_next_fire_at(current, updated, now)), now)

    def pause(self, name: str, note: str | None = None) -> Toggled:
        """Pause a schedule: no fire time is claimed until it is resumed. A row that cannot be
        loaded is paused too (and stays the :class:`BrokenSchedule` it is). A schedule paused
        already is left as it is (its note too), unless ``note`` gives it a new note. Raises
        ScheduleNotFound, and InvalidPolicy for a note no database holds (NUL, a lone surrogate)."""
        check_text(note, "pause note")
        return self._set_enabled(name, False, note)

    def resume(self, name: str) -> Toggled:
        """Resume a schedule from its next fire time after now; one that runs already is left
        as it is. A row that cannot be loaded is marked enabled without a next fire time: it
        runs once an edit repairs it (and stays the :class:`BrokenSchedule` it is). Raises
        ScheduleNotFound."""
        return self._set_enabled(name, True, None)

    def _set_enabled(self, name: str, enabled: bool, note: str | None) -> Toggled:
        current = self.store.entry(name)
        old_note = current.pause_note if isinstance(current, Schedule) else current.stored.get("pause_note")
        unreadable = isinstance(current, BrokenSchedule) and any(f == "enabled" for f, _ in current.problems)
        if current.enabled == enabled and not unreadable and (enabled or note is None or note == old_note):
            return Toggled(current, changed=False)
        if isinstance(current, BrokenSchedule):
            now = self.clock()
            self.store.set_enabled(name, enabled, note, now)
            entry = self.store.entry(name)
            if isinstance(entry, Schedule) and entry.enabled:  # the flag was all that was broken
                entry = self.store.replace(replace(entry, next_fire_at=next_fire_at(entry, now)), now)
            return Toggled(entry, changed=True)
        return Toggled(self._replace(current, {"enabled": enabled, "pause_note": note}), changed=True)

    def remove(self, name: str) -> None:
        """Delete a schedule; its run history stays, and its fire times due but unclaimed are
        recorded ``missed``. Raises ScheduleNotFound."""
        self.store.remove(name, self.clock())

    def clear(self) -> int:
        """Delete every schedule (history stays); returns how many were deleted."""
        return self.store.clear(self.clock())

    def upgrade(self) -> None:
        """Create the store's tables or upgrade them to the current schema."""
        self.store.upgrade()

    # -- runs asked for ------------------------------------------------------------------

    def trigger(self, name: str, params: Mapping[str, Any] | None = None) -> Run:
        """Ask the workers for one run of ``name`` now, a paused schedule too (a manual act):
        a ``pending`` row of origin ``manual`` whose ``scheduled_for`` is now (moved by a
        microsecond when now is one of the schedule's fire times, which stays the
        schedule's own), with ``params`` over the schedule's for this run only. The first live
        worker whose scope holds the schedule takes it and meets the overlap policy then.
        Returns the stored row (its ``id`` for :meth:`wait_for_run`). Raises
        InvalidScheduleName, InvalidParams, ScheduleNotFound, ScheduleBroken, StoreError."""
        from flowyml_sched.model import RunOrigin, validate_params

        validate_name(name)
        schedule = self.store.get(name)
        if params:
            validate_params({**schedule.params, **params}, name)
        now = self.clock()
        if (
            next_fire_time(schedule.trigger, get_zone(schedule.timezone), now - _MICROSECOND, schedule.exclusions).at
            == now
        ):
            now += _MICROSECOND
        return self.store.request_runs(name, [now], RunOrigin.manual, params).queued[0]

    def backfill(
        self, name: str, start: datetime, end: datetime, *, dry_run: bool = False, max_runs: int = BACKFILL_MAX
    ) -> Backfill:
        """Ask the workers to run every fire time of ``name`` in [``start``, ``end``) (aware;
        DST gaps and folds as everywhere: :mod:`flowyml_sched.timing`) once, oldest first,
        one at a time unless the overlap policy is ``allow``, whether or not the schedule is
        paused, whatever its misfire grace and catch-up policy. A fire time already in
        history keeps its run, unless that was recorded ``missed``: so a second backfill of
        the same range asks for nothing more. With ``dry_run`` nothing is stored. Raises
        UsageError (``start`` not before ``end``, ``end`` after now, more than ``max_runs``
        fire times), ScheduleNotFound, ScheduleBroken, StoreError."""
        from flowyml_sched.model import RunOrigin, RunStatus
        from flowyml_sched.timing import fire_times_between
        from flowyml_sched.triggers import format_instant

        validate_name(name)
        now = self.clock()
        if start >= end:
            raise UsageError(f"the start {format_instant(start)} is not before the end {format_instant(end)}")
        if end > now:
            raise UsageError(
                f"the end {format_instant(end)} is after now ({format_instant(now)}): a backfill runs past "
                "fire times; the schedule itself runs the later ones"
            )
        schedule = self.store.get(name)
        zone = get_zone(schedule.timezone)
        fires = fire_times_between(
            schedule.trigger, zone, start - _MICROSECOND, end - _MICROSECOND, max_runs + 1, schedule.exclusions
        )
        if len(fires) > max_runs:
            raise UsageError(
                f"{format_instant(start)} .. {format_instant(end)} holds more than {max_runs} fire "
                f"time{'s' if max_runs != 1 else ''} of {name}: give a shorter range, or a larger --max"
            )
        if dry_run:
            stored = {run.scheduled_for: run for run in self.store.runs_between(name, start, end)}
            kept = [stored[f.utc] for f in fires if f.utc in stored and stored[f.utc].status is not RunStatus.missed]
            kept_at = {run.scheduled_for for run in kept}
            return Backfill(schedule, fires, [f.utc for f in fires if f.utc not in kept_at], kept, True)
        requested = self.store.request_runs(name, [f.utc for f in fires], RunOrigin.backfill)
        queued = [run.scheduled_for for run in requested.queued]
        return Backfill(schedule, fires, queued, requested.kept, False)

    def wait_for_run(
        self,
        run_id: int,
        *,
        on_change: Callable[[Run], None] | None = None,
        poll: float = WAIT_POLL_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Run:
        """Read run ``run_id`` every ``poll`` seconds until it has ended: neither pending nor
        running, nor waiting for a retry (so through every retry its schedule allows). Calls
        ``on_change`` with the row each time its status, attempt, start or retry changes (taken
        by a worker, started, an attempt failed with a retry due, the next attempt taken). Returns the row
        as it ended. Raises StoreError, and RunGone when the row has been deleted (a
        ``history`` prune)."""
        from flowyml_sched.errors import RunGone
        from flowyml_sched.model import RunStatus

        seen = None
        while True:
            run = self.store.run(run_id)
            if run is None:
                raise RunGone(run_id)
            if run.status not in (RunStatus.pending, RunStatus.running) and run.retry_at is None:
                return run
            state = (run.status, run.attempt, run.started_at, run.retry_at)
            if on_change is not None and state != seen:
                on_change(run)
            seen = state
            sleep(poll)

    # -- reading -------------------------------------------------------------------------

    @collector_paused()
    def list(
        self, tag: str | None = None, enabled: bool | None = None
    ) -> list[tuple[Schedule | BrokenSchedule, Run | None]]:
        """Stored schedules sorted by name, each with its latest run (or None); a row that cannot
        be loaded is listed as a :class:`BrokenSchedule` (with why)."""
        schedules = self.store.entries(tag=tag, enabled=enabled)
        last = self.store.last_runs([s.name for s in schedules]) if schedules else {}
        return [(s, last.get(s.name)) for s in schedules]

    def preview(self, name: str, after: datetime, count: int) -> tuple[Schedule, list[FireTime]]:
        """A stored schedule and its next ``count`` fire times after ``after`` (even while paused).
        Raises ScheduleNotFound, and ScheduleBroken for a row that cannot be loaded."""
        schedule = self.store.get(name)
        return schedule, fire_times(schedule.trigger, get_zone(schedule.timezone), after, count, schedule.exclusions)

    def show(self, name: str, count: int) -> tuple[Schedule | BrokenSchedule, list[FireTime]]:
        """As :meth:`preview` after now, but a row that cannot be loaded comes back as a
        :class:`BrokenSchedule` with no fire times, so that it can be looked at, and so does a
        schedule whose exclusions leave it no fire time. Raises ScheduleNotFound."""
        from flowyml_sched.errors import NeverFires

        found = self.store.entry(name)
        if isinstance(found, BrokenSchedule):
            return found, []
        try:
            return found, fire_times(found.trigger, get_zone(found.timezone), self.clock(), count, found.exclusions)
        except NeverFires:  # it can still be looked at (and repaired)
            return found, []

    def history(self, name: str, limit: int) -> list[Run]:
        """The schedule's last ``limit`` runs, newest first (a removed schedule's too). Raises
        InvalidScheduleName, and ScheduleNotFound for a name with neither runs nor a schedule."""
        validate_name(name)
        runs = self.store.history(name, limit)
        if not runs:
            self.store.entry(name)  # an unknown name is an error, a schedule without runs is not
        return runs

    def run_totals(self, names: Collection[str] | None = None) -> RunTotals:
        """Counts of stored runs by status and their mean duration (of every schedule, or of ``names``)."""
        return self.store.run_totals(names)

    def worker(self, worker_id: str) -> WorkerInfo | None:
        """The stored row of worker ``worker_id`` (alive, stopped or dead), or None."""
        return next((w for w in self.store.list_workers() if w.id == worker_id), None)

    def close(self) -> None:
        """Close the store (see :func:`connect`)."""
        self.store.close()

    def live_workers(self) -> list[WorkerInfo]:
        """Workers whose heartbeat lease has not expired now."""
        now = self.clock()
        return [w for w in self.store.list_workers() if w.status == "alive" and w.lease_expires_at >= now]

    def health(self, window: timedelta | None = None, tolerance: timedelta | None = None) -> dict[str, Any]:
        """The health report now (see :func:`flowyml_sched.application.health.health_report`)."""
        from flowyml_sched.application.health import DEFAULT_HEALTH_WINDOW, DEFAULT_LATE_TOLERANCE, health_report

        return health_report(
            self.store,
            self.live_workers(),
            self.clock(),
            window or DEFAULT_HEALTH_WINDOW,
            tolerance or DEFAULT_LATE_TOLERANCE,
        )

    def metrics(self) -> MetricsSnapshot:
        """What ``/metrics`` reports now (see :mod:`flowyml_sched.application.metrics`): runs
        counted as they ended since this object's first call; each call reads what changed
        since the one before. Raises StoreError."""
        if self._metrics is None:
            from flowyml_sched.application.metrics import RunMetrics

            self._metrics = RunMetrics(self.store)
        return self._metrics.read(self.clock(), len(self.live_workers()))

    # -- files ---------------------------------------------------------------------------

    @collector_paused()
    def apply_file(self, path: str, *, prune: bool, dry_run: bool, check_pipelines: bool = True) -> Plan:
        """Plan the changes that make the store match a YAML file, and apply them unless ``dry_run``.

        All changes go in one transaction: all or nothing. With ``check_pipelines`` every
        pipeline must be found here (each one that is not is a problem with its line). Raises
        InvalidSpec (every problem of the file, nothing applied) and StoreError.
        """
        from flowyml_sched.application.files import validate_file
        from flowyml_sched.spec import plan

        now = self.clock()
        try:
            spec = validate_file(path, check_pipelines=check_pipelines)
        except InvalidSpec as exc:
            raise exc.because("nothing was applied") from None
        # a file is known by its absolute path, so --prune means the same file from any directory
        source = str(Path(path).resolve())
        entries = self.store.entries()
        current = [e for e in entries if isinstance(e, Schedule)]
        broken = {e.name for e in entries if isinstance(e, BrokenSchedule)}
        result = plan(spec, current, prune=prune, source=source, now=now)
        if not dry_run and (result.has_changes or result.other_source):
            self.store.apply(
                creates=[replace(e.new, next_fire_at=_utc_or_none(e.next_after)) for e in result.creates if e.new],
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

    def sync_file(self, path: Path) -> None:
        """The worker's ``--sync``: apply a YAML file, pruning the schedules that came from it.

        The worker is where pipelines must load, so an unresolvable one refuses the whole file
        (InvalidSpec) and the stored schedules stay as they were.
        """
        plan = self.apply_file(str(path), prune=True, dry_run=False)
        if plan.has_changes:
            logger.info(
                "synced %s: %d created, %d changed, %d deleted",
                path,
                len(plan.creates),
                len(plan.changes),
                len(plan.deletes),
            )

    @collector_paused()
    def export(self) -> str:
        """YAML text of every stored schedule, which ``apply`` takes back unchanged.

        Raises ScheduleBroken (naming the first) when a stored row cannot be loaded: it would be
        left out of the file, and a later ``apply --prune`` of that file would lose it.
        """
        from flowyml_sched.spec import dump_spec

        entries = self.store.entries()
        for entry in entries:
            if isinstance(entry, BrokenSchedule):
                raise entry.error
        return dump_spec(e for e in entries if isinstance(e, Schedule))


def connect(
    settings: Settings, *, source: str = "cli", clock: Callable[[], datetime] = utc_now, create: bool = True
) -> Scheduler:
    """A :class:`Scheduler` on the store that ``settings`` name, open until its
    :meth:`~Scheduler.close` (a long-lived front end: the Python API); new schedules get the
    configured zone. Raises StoreError."""
    from flowyml_sched.store import open_store

    store = open_store(settings.db_url, create=create)
    return Scheduler(store, clock=clock, source=source, timezone=settings.timezone)


@contextmanager
def open_scheduler(
    settings: Settings, *, create: bool = True, source: str = "cli", clock: Callable[[], datetime] = utc_now
) -> Iterator[Scheduler]:
    """A :class:`Scheduler` on the store that ``settings`` name, closed on exit; new
    schedules get the configured zone. Commands that only read pass ``create=False``, so a
    mistyped path is an error rather than a new empty store. Raises StoreError."""
    scheduler = connect(settings, source=source, clock=clock, create=create)
    try:
        yield scheduler
    finally:
        scheduler.close()
