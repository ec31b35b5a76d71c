"""The Python API of flowyml's scheduler page: :class:`PipelineScheduler`,
:class:`SchedulerConfig` and :class:`Schedule`, with the page's names and signatures.

A front end like the CLI: it turns its arguments into plain fields, calls the application
layer (:class:`~flowyml_sched.application.Scheduler` for schedules and history,
:func:`~flowyml_sched.application.workers.worker_on` for the worker engine) and turns what
comes back into the page's shapes. Schedules and history live in the same store as the
CLI's (``flowyml-sched list`` shows them), and several processes that register the same
schedules run each fire time once: the worker's unique claim.

Where a pipeline runs:

- a module-level function (or class, or any object ``module:qualname`` finds again) is
  stored by that reference: a ``run-worker`` on the same store can run it too;
- a lambda, a closure, a bound method or a flowyml ``Pipeline`` object is stored as
  ``python-callable:<name>`` (:mod:`flowyml_sched.references`): only processes that
  registered it claim it;
- a reference string (``module:attr`` or an entry-point name) is stored as given and runs in
  a child process, as under ``run-worker``.

Callables run in this process, in a thread, at most ``max_concurrent_runs`` at once, with the
schedule's timeout as far as a thread can be stopped (:func:`flowyml_sched.executor.call_with_timeout`).
By default a scheduler claims only the schedules registered on it; ``run_all_schedules=True``
makes it a full worker for the store (every schedule whose pipeline any process can load,
in child processes, as ``run-worker`` does).

Importing this module imports no SQLAlchemy, Typer or Rich: the store opens when a
:class:`PipelineScheduler` is made.
"""

from __future__ import annotations

import atexit
import logging
import math
import operator
import os
import re
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowyml_sched import config as c
from flowyml_sched.clock import utc_now
from flowyml_sched.errors import InvalidDuration, RunFailed, ScheduleNotFound, SchedulerError, UnknownTimezone
from flowyml_sched.model import ClaimScope, Run, RunStatus
from flowyml_sched.model import Schedule as StoredSchedule
from flowyml_sched.zones import get_zone

if TYPE_CHECKING:
    from flowyml_sched.application.scheduler import Scheduler
    from flowyml_sched.application.workers import LocalPipeline, RunEnd, Worker

logger = logging.getLogger("flowyml_sched.api")

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

SHARED_ANCHOR = "1970-01-01T00:00:00Z"
"""The anchor of an interval registered in Redis mode with a store in each process: the
processes' fire times agree whenever each registered it."""

SOURCE = "python"
"""The ``source`` recorded on the schedules this API stores."""

SUCCEEDED_STATUSES = (RunStatus.succeeded,)
FAILED_STATUSES = (RunStatus.failed, RunStatus.timed_out, RunStatus.interrupted, RunStatus.abandoned)
"""The statuses :meth:`PipelineScheduler.health_check` counts as ``failed_runs`` among the runs
that started; ``skipped`` and ``missed`` fire times, and runs closed before their start, did
not run and count in neither."""


@dataclass(frozen=True)
class SchedulerConfig:
    """How a :class:`PipelineScheduler` stores and runs schedules (the page's
    ``SchedulerConfig``); values are checked when it is made.

    - ``persist_schedules``: keep schedules and history in a store (True), or in an in-memory
      SQLite store that goes with the process (False).
    - ``db_path`` (a SQLite file) or ``db_url`` (a SQLAlchemy URL: ``postgresql+psycopg://...``
      for several servers); both None: the CLI's store (``$FLOWYML_SCHEDULER_DB_URL``,
      ``_DB_PATH``, the config file, then ``~/.local/state/flowyml-sched/scheduler.db``).
    - ``distributed`` with ``lock_backend``: ``file`` locks serve the processes of one host
      sharing a store (the default, whether ``distributed`` or not); ``redis`` (with
      ``redis_url``, and ``distributed=True``) serves several hosts. On a shared PostgreSQL
      store Redis enforces overlap across hosts; with a SQLite store in each process (the
      page's deployment: the same code on several servers) each fire time is also claimed
      in Redis, so that one process runs it (README, "Several servers").
    - ``timezone``: the zone of a schedule registered without one (an IANA name).
    - ``check_interval_seconds``: the worker's poll interval (it also wakes on changes).
    - ``max_concurrent_runs``: runs going at once in this process.

    Raises :class:`~flowyml_sched.config.SettingError` (a ``ValueError``) naming the setting
    and the value, and UnknownTimezone (also a ``ValueError``) for the zone.
    """

    persist_schedules: bool = True
    db_path: str | os.PathLike[str] | None = None
    db_url: str | None = None
    distributed: bool = False
    lock_backend: str = "file"
    redis_url: str | None = None
    timezone: str = "UTC"
    check_interval_seconds: float = c.DEFAULT_POLL_INTERVAL
    max_concurrent_runs: int = c.DEFAULT_MAX_CONCURRENT

    def __post_init__(self) -> None:
        for name in ("persist_schedules", "distributed"):
            if not isinstance(getattr(self, name), bool):
                raise c.SettingError(name, getattr(self, name), "True or False")
        for name in ("db_url", "redis_url"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise c.SettingError(name, value, "a non-empty URL or None")
        if self.db_path is not None and (
            not isinstance(self.db_path, str | os.PathLike) or not str(self.db_path) or "\x00" in str(self.db_path)
        ):
            raise c.SettingError("db_path", self.db_path, "a file path or None")
        if self.db_url is not None and not _URL.match(self.db_url):
            raise c.SettingError("db_url", self.db_url, "a SQLAlchemy URL such as postgresql+psycopg://host/db")
        if self.db_path is not None and self.db_url is not None:
            raise c.SettingError(
                "db_url", self.db_url, f"None when db_path is given ({str(self.db_path)!r}): one store"
            )
        c.check_lock_backend(self.lock_backend)
        if self.lock_backend == "redis" and not self.redis_url:
            raise c.SettingError("redis_url", self.redis_url, "a redis:// URL when lock_backend is 'redis'")
        if self.lock_backend == "redis" and not self.distributed:
            raise c.SettingError("distributed", self.distributed, "True when lock_backend is 'redis'")
        if self.redis_url is not None:
            c.check_redis_url(self.redis_url)
        object.__setattr__(self, "timezone", _check_zone(_zone_name(self.timezone, "")))
        low, high = c.POLL_INTERVAL_RANGE
        interval = self.check_interval_seconds
        if isinstance(interval, bool) or not isinstance(interval, int | float) or not low <= interval <= high:
            raise c.SettingError("check_interval_seconds", interval, f"seconds from {low:g} to {high:g}")
        least, most = c.MAX_CONCURRENT_RANGE
        runs = self.max_concurrent_runs
        if isinstance(runs, bool) or not isinstance(runs, int) or not least <= runs <= most:
            raise c.SettingError("max_concurrent_runs", runs, f"a whole number from {least} to {most}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, config_path: Path | None = None) -> SchedulerConfig:
        """The config the environment gives (``FLOWYML_SCHEDULER_PERSIST``, ``_DB_PATH``,
        ``_DB_URL``, ``_DISTRIBUTED``, ``_LOCK_BACKEND``, ``_REDIS_URL``, ``_TIMEZONE``,
        ``_CHECK_INTERVAL``, ``_MAX_CONCURRENT``, each also spelt ``flowyml_SCHEDULER_...``)
        over the config file's keys of the same names (``persist``, ``check_interval``, ...),
        over the defaults (:func:`flowyml_sched.config.python_api_settings`). ``environ``
        defaults to ``os.environ``. Raises SettingError naming the variable and its value,
        and ConfigError for a config file that cannot be read."""
        found = c.python_api_settings(os.environ if environ is None else environ, config_path)
        if "db_url" in found and "db_path" in found:  # one store, chosen as the CLI chooses it
            from_env = {key for key, (_, source) in found.items() if source.startswith("FLOWYML_SCHEDULER_")}
            del found["db_path" if "db_url" in from_env or "db_path" not in from_env else "db_url"]
        values: dict[str, Any] = {}
        for key, (text, source) in found.items():
            if key in ("persist", "distributed"):
                values["persist_schedules" if key == "persist" else key] = c.parse_flag(key, text, source)
            elif key == "check_interval":
                values["check_interval_seconds"] = c.parse_number(key, text, source)
            elif key == "max_concurrent":
                values["max_concurrent_runs"] = int(c.parse_number(key, text, source, whole=True))
            elif key == "lock_backend" and text not in c.LOCK_BACKENDS:
                raise c.SettingError(key, text, " or ".join(map(repr, c.LOCK_BACKENDS)), source)
            elif key == "timezone":
                values[key] = _check_zone(text, source)
            else:
                values[key] = text
        return cls(**values)


@dataclass(frozen=True)
class Schedule:
    """A stored schedule as the page shows it. ``pipeline_name`` is the schedule's name (as
    flowyml has it); ``schedule_type`` its kind (``cron``, ``daily``, ``hourly``, ``interval``);
    ``schedule_value`` the cron text, ``"HH:MM"``, the minute as text, or an interval's
    whole seconds as text (1 h 30 min is ``"5400"``); ``next_run`` and ``last_run`` aware
    datetimes (UTC) or None; ``timezone`` the zone's name; ``context`` the params a run
    gets. Ours besides: ``pipeline``, the stored reference (``python-callable:<name>`` for
    a callable only its registering processes run), and ``pipeline_func``, the callable
    registered on this scheduler (None otherwise)."""

    pipeline_name: str
    schedule_type: str
    schedule_value: str
    timezone: str
    enabled: bool
    next_run: datetime | None
    last_run: datetime | None = None
    context: dict[str, Any] = field(default_factory=dict)
    pipeline: str = ""
    pipeline_func: Any = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        """The schedule's name (``pipeline_name``)."""
        return self.pipeline_name


class PipelineScheduler:
    """Schedules pipelines and runs them in this process (the page's ``PipelineScheduler``).

    ``config`` defaults to :meth:`SchedulerConfig.from_env`. ``on_success(schedule,
    execution)`` and ``on_failure(schedule, execution, exc)`` are called after each attempt
    this process ran of a schedule registered on it (``execution`` as one entry of
    :meth:`get_history`; ``exc`` what the pipeline raised, or a
    :class:`~flowyml_sched.errors.RunFailed` saying how it ended); a callback that raises is
    logged and changes nothing. ``run_all_schedules=True`` makes it a full worker for the
    store (see the module's text). ``clock`` (aware UTC "now") is for tests.

    Raises StoreError when the store cannot be opened.
    """

    def __init__(
        self,
        config: SchedulerConfig | None = None,
        on_success: Callable[[Schedule, dict[str, Any]], Any] | None = None,
        on_failure: Callable[[Schedule, dict[str, Any], BaseException], Any] | None = None,
        *,
        run_all_schedules: bool = False,
        clock: Callable[[], datetime] = utc_now,
    ):
        from flowyml_sched.application.scheduler import connect

        if config is not None and not isinstance(config, SchedulerConfig):
            raise c.SettingError("config", config, "a SchedulerConfig or None")
        for name, callback in (("on_success", on_success), ("on_failure", on_failure)):
            if callback is not None and not callable(callback):
                raise c.SettingError(name, callback, "a callable or None")
        self.config = config if config is not None else SchedulerConfig.from_env()
        self.on_success = on_success
        self.on_failure = on_failure
        self.run_all_schedules = run_all_schedules
        self._clock = clock
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if self.config.persist_schedules:
            settings = c.resolve_settings(
                os.environ,
                db_path=Path(self.config.db_path) if self.config.db_path is not None else None,
                db_url=self.config.db_url,
                timezone=self.config.timezone,
                lock_backend=self.config.lock_backend,
                redis_url=self.config.redis_url,
            )
        else:
            self._temporary = tempfile.TemporaryDirectory(prefix="flowyml-sched-")
            settings = c.Settings(
                "sqlite://",
                self.config.timezone,
                Path(self._temporary.name),
                "persist_schedules=False",
                lock_backend=self.config.lock_backend,
                redis_url=self.config.redis_url,
            )
        self._settings = settings
        self._own_store_shares_fire_times = settings.lock_backend == "redis" and settings.db_url.startswith("sqlite")
        """Redis mode with a store in each process: each fire time is claimed in Redis too."""
        self._scheduler: Scheduler = connect(settings, source=SOURCE, clock=clock)
        self._callables: dict[str, LocalPipeline] = {}
        self._registered: dict[str, str] = {}
        """Schedule name to the pipeline it was registered with (the claims' scope)."""
        self._worker: Worker | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._closed = False
        atexit.register(self.stop)  # a script that ends (or a Ctrl-C) without stop(): drain, record

    # -- registering -------------------------------------------------------------------------

    def schedule_cron(
        self,
        name: str,
        pipeline_func: Any,
        cron_expression: str,
        timezone: Any = None,
        context: Mapping[str, Any] | None = None,
        *,
        exclude: Mapping[str, Any] | None = None,
        on_excluded: str | None = None,
    ) -> Schedule:
        """Run ``pipeline_func`` at the wall-clock minutes of a 5-field cron expression.
        Raises InvalidCronExpression and the errors of :meth:`_register`."""
        if not isinstance(cron_expression, str):
            raise c.SettingError("cron_expression", cron_expression, "a cron expression such as '0 9 * * 1-5'")
        return self._register(
            name,
            pipeline_func,
            {"cron": cron_expression},
            timezone,
            context,
            _exclusions(exclude, on_excluded),
        )

    def schedule_daily(
        self,
        name: str,
        pipeline_func: Any,
        hour: int = 0,
        minute: int = 0,
        timezone: Any = None,
        context: Mapping[str, Any] | None = None,
        *,
        exclude: Mapping[str, Any] | None = None,
        on_excluded: str | None = None,
    ) -> Schedule:
        """Run ``pipeline_func`` every day at ``hour``:``minute`` wall time (0-23, 0-59); a
        time that a DST change skips runs at the first minute after the gap, one it repeats
        runs once. Raises InvalidTimeOfDay and the errors of :meth:`_register`."""
        return self._register(
            name,
            pipeline_func,
            {"daily": _time_of_day(hour, minute)},
            timezone,
            context,
            _exclusions(exclude, on_excluded),
        )

    def schedule_hourly(
        self,
        name: str,
        pipeline_func: Any,
        minute: int = 0,
        timezone: Any = None,
        context: Mapping[str, Any] | None = None,
        *,
        exclude: Mapping[str, Any] | None = None,
        on_excluded: str | None = None,
    ) -> Schedule:
        """Run ``pipeline_func`` every hour at ``minute`` (0-59). Raises InvalidMinute and the
        errors of :meth:`_register`."""
        return self._register(
            name,
            pipeline_func,
            {"hourly": _whole("minute", minute)},
            timezone,
            context,
            _exclusions(exclude, on_excluded),
        )

    def schedule_interval(
        self,
        name: str,
        pipeline_func: Any,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
        timezone: Any = None,
        context: Mapping[str, Any] | None = None,
        *,
        exclude: Mapping[str, Any] | None = None,
        on_excluded: str | None = None,
    ) -> Schedule:
        """Run ``pipeline_func`` every ``hours`` + ``minutes`` + ``seconds`` of elapsed time
        (whole seconds in all, more than zero), counted from when it is first registered
        (registering it again keeps that anchor); in Redis mode with a store in each process
        counted from the Unix epoch (:data:`SHARED_ANCHOR`), so that every process has the
        same fire times. Raises InvalidDuration and the errors of :meth:`_register`."""
        every = {"every": _interval(hours, minutes, seconds)}
        if self._own_store_shares_fire_times:
            every["anchor"] = SHARED_ANCHOR
        return self._register(
            name,
            pipeline_func,
            every,
            timezone,
            context,
            _exclusions(exclude, on_excluded),
        )

    def _register(
        self,
        name: str,
        target: Any,
        trigger: dict[str, Any],
        timezone: Any,
        context: Mapping[str, Any] | None,
        exclusions: Mapping[str, Any],
    ) -> Schedule:
        """Store the schedule (:meth:`Scheduler.register`: kept when its definition is the same)
        and register its callable here. ``exclusions`` holds ``exclude`` (the mapping of a
        YAML entry's ``exclude:``: ``holidays``, ``dates``, ``ranges``) and ``on_excluded``,
        each None when not given: every ``schedule_*`` method takes both as keywords. Raises a
        ``ValueError`` subclass of SchedulerError for a bad name, zone, trigger, context or
        exclusion, PipelineNotFound for a reference string that cannot be found here; nothing
        is stored then."""
        from flowyml_sched.application.scheduler import pipeline_of
        from flowyml_sched.model import validate_name

        validate_name(name)
        if isinstance(target, str):
            pipeline, local = target, None
        else:
            pipeline, local = pipeline_of(target, name), target
        fields = {
            "name": name,
            "pipeline": pipeline,
            **trigger,
            "timezone": _zone_name(timezone, self.config.timezone),
            "params": {} if context is None else dict(context) if isinstance(context, Mapping) else context,
            **exclusions,
        }
        stored, _ = self._scheduler.register(fields, check_pipeline=local is None)
        with self._lock:
            if local is not None:
                self._callables[name] = (pipeline, local)
            else:
                self._callables.pop(name, None)
            self._registered[name] = pipeline
            self._rescope()
        return self._view(stored, None)

    # -- managing ----------------------------------------------------------------------------

    def enable(self, name: str) -> None:
        """Resume a schedule from its next fire time after now. Raises ScheduleNotFound."""
        self._scheduler.resume(name)

    def disable(self, name: str) -> None:
        """Pause a schedule: no fire time runs until it is enabled. Raises ScheduleNotFound."""
        self._scheduler.pause(name)

    def unschedule(self, name: str) -> None:
        """Remove a schedule (its history stays, unlike flowyml's). Raises ScheduleNotFound."""
        self._scheduler.remove(name)
        with self._lock:
            self._callables.pop(name, None)
            self._registered.pop(name, None)
            self._rescope()

    def clear(self) -> None:
        """Remove every schedule of the store (history stays)."""
        self._scheduler.clear()
        with self._lock:
            self._callables.clear()
            self._registered.clear()
            self._rescope()

    def list_schedules(self) -> list[Schedule]:
        """Every schedule of the store, sorted by name (rows that cannot be loaded left out:
        ``flowyml-sched list`` shows them)."""
        return [self._view(s, run) for s, run in self._scheduler.list() if isinstance(s, StoredSchedule)]

    @property
    def schedules(self) -> dict[str, Schedule]:
        """Every schedule of the store by name (as :meth:`list_schedules`)."""
        return {s.pipeline_name: s for s in self.list_schedules()}

    def get_history(self, schedule_name: str, limit: int = 50) -> list[dict[str, Any]]:
        """The schedule's last ``limit`` runs, newest fire time first, as dicts with flowyml's
        keys ``started_at``, ``completed_at`` (ISO 8601 with offset, or None), ``success``,
        ``error``, ``duration_seconds``, ``run_id``, and ours ``scheduled_for``, ``status``,
        ``attempt``, ``worker``. [] for a name with no runs and no schedule (as flowyml).
        Raises InvalidScheduleName, and SettingError for a ``limit`` below 1."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= c.HISTORY_LIMIT_MAX:
            raise c.SettingError("limit", limit, f"a whole number from 1 to {c.HISTORY_LIMIT_MAX}")
        try:
            runs = self._scheduler.history(schedule_name, limit)
        except ScheduleNotFound:
            return []
        return [_execution(run) for run in runs]

    def health_check(self) -> dict[str, Any]:
        """``status`` (``running`` while this scheduler's worker keeps its heartbeat lease in
        the store, else ``stopped``), ``num_schedules``, ``enabled_schedules``, ``metrics``
        from the stored history of every schedule (``total_runs``, ``successful_runs``,
        ``failed_runs``, ``success_rate``: 0.0 without runs, ``avg_duration_seconds``: None
        without runs, ``skipped_runs``, ``missed_runs``), ``last_heartbeat`` (aware datetime
        or None) and ``next_runs``: up to 5 ``{name, next_run}``, soonest first."""
        schedules = self.list_schedules()
        totals = self._scheduler.run_totals()
        count, ran = totals.by_status.get, totals.started_by_status.get
        succeeded = sum(ran(s.value, 0) for s in SUCCEEDED_STATUSES)
        failed = sum(ran(s.value, 0) for s in FAILED_STATUSES)
        mine = self._worker_row()
        now = self._clock()
        alive = mine is not None and mine.status == "alive" and mine.lease_expires_at >= now
        upcoming = sorted((s for s in schedules if s.enabled and s.next_run is not None), key=lambda s: s.next_run)
        return {
            "status": "running" if alive and self.running else "stopped",
            "num_schedules": len(schedules),
            "enabled_schedules": sum(1 for s in schedules if s.enabled),
            "metrics": {
                "total_runs": succeeded + failed,
                "successful_runs": succeeded,
                "failed_runs": failed,
                "success_rate": succeeded / (succeeded + failed) if succeeded + failed else 0.0,
                "avg_duration_seconds": totals.mean_duration_seconds,
                "skipped_runs": count(RunStatus.skipped.value, 0),
                "missed_runs": count(RunStatus.missed.value, 0),
            },
            "last_heartbeat": mine.heartbeat_at if mine is not None else None,
            "next_runs": [{"name": s.pipeline_name, "next_run": s.next_run} for s in upcoming[:5]],
        }

    # -- running -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True from :meth:`start` until :meth:`stop` (or the blocking loop's end)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self, blocking: bool = False) -> None:
        """Run the worker engine in this process: in a background thread, or with
        ``blocking`` in the calling thread until SIGTERM or SIGINT (the first drains, a second
        stops at once, as ``run-worker``; the signal handlers before it are restored after).
        Does nothing when already running, and inside a run of a pipeline that a worker started
        (``$FLOWYML_SCHED_RUN_ID`` set: a child process that imported this scheduler's module
        must not serve). Raises SchedulerError after :meth:`close`."""
        from flowyml_sched.application.workers import log_event, run_ends, worker_on

        if os.environ.get("FLOWYML_SCHED_RUN_ID"):
            logger.warning("start() ignored: this process is a scheduled run's (FLOWYML_SCHED_RUN_ID is set)")
            return
        with self._lock:
            if self._closed:
                raise SchedulerError("this PipelineScheduler is closed: make a new one")
            if self.running:
                return
            tuning = c.WorkerSettings(
                poll_interval=float(self.config.check_interval_seconds),
                max_concurrent=self.config.max_concurrent_runs,
            )
            self._worker = worker_on(
                self._scheduler.store,
                self._settings,
                tuning,
                environ=os.environ,
                listeners=(log_event, run_ends(self._on_run_end)),
                scope=self._scope(),
                callables=self._callables,
            )
            worker = self._worker
            if blocking:
                self._thread = threading.current_thread()
            else:
                thread = threading.Thread(target=worker.run, name="flowyml-sched-worker", daemon=True)
                thread.start()
                self._thread = thread
                # back once the worker serves (its lease stored: health_check says running), or died
                while not worker.serving.wait(0.05) and thread.is_alive():
                    pass
        if blocking:
            try:
                worker.run()
            finally:
                with self._lock:
                    self._thread = None

    def stop(self) -> None:
        """Stop claiming and wait for the runs going to finish (up to the worker's grace
        period, then they are recorded ``interrupted``), as ``run-worker`` does on its first
        SIGTERM; returns at once when nothing runs. Does nothing when not running. Safe from
        any thread; from a callback (the worker's own thread) it asks and returns."""
        with self._lock:
            worker, thread = self._worker, self._thread
            if worker is None or thread is None:
                return
            worker.request_stop()
        if thread is threading.current_thread():
            return
        thread.join()
        with self._lock:
            if self._thread is thread:
                self._thread = None

    def close(self) -> None:
        """:meth:`stop`, then close the store (and remove an in-memory store's state directory)."""
        atexit.unregister(self.stop)
        self.stop()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._scheduler.close()
        if self._temporary is not None:
            self._temporary.cleanup()

    def __enter__(self) -> PipelineScheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inside ------------------------------------------------------------------------------

    def _scope(self) -> ClaimScope:
        return ClaimScope(frozenset(self._registered.items()), references=self.run_all_schedules)

    def _rescope(self) -> None:
        """Under ``_lock``: the worker claims what is registered now."""
        if self._worker is not None:
            self._worker.scope = self._scope()

    def _worker_row(self) -> Any:
        worker = self._worker
        return None if worker is None else self._scheduler.worker(worker.identity.id)

    def _view(self, stored: StoredSchedule, last: Run | None) -> Schedule:
        trigger = stored.trigger
        value = str(int(trigger.every.total_seconds())) if trigger.anchored else trigger.text()
        registered = self._callables.get(stored.name)
        return Schedule(
            pipeline_name=stored.name,
            schedule_type=trigger.kind,
            schedule_value=value,
            timezone=stored.timezone,
            enabled=stored.enabled,
            next_run=stored.next_fire_at,
            last_run=(last.started_at or last.scheduled_for) if last is not None else None,
            context=dict(stored.params),
            pipeline=stored.pipeline,
            pipeline_func=registered[1] if registered is not None else None,
        )

    def _on_run_end(self, event: RunEnd) -> None:
        """Calls ``on_success`` or ``on_failure`` for an attempt of a schedule registered here."""
        if self._registered.get(event.claim.schedule.name) != event.claim.schedule.pipeline:
            return
        schedule = self._view(event.claim.schedule, None)
        execution = _execution(
            Run(
                event.claim.schedule.name,
                event.claim.scheduled_for,
                event.status,
                event.claim.attempt,
                event.started_at,
                event.finished_at,
                event.duration,
                event.error,
                worker=event.claim.owner,
            )
        )
        try:
            if event.status is RunStatus.succeeded:
                if self.on_success is not None:
                    self.on_success(schedule, execution)
            elif self.on_failure is not None:
                self.on_failure(schedule, execution, event.exception or RunFailed(event.status.value, event.error))
        except Exception:
            logger.exception("the %s callback of %s raised", "on_success" if execution["success"] else "on_failure",
                             schedule.pipeline_name)  # fmt: skip


def _execution(run: Run) -> dict[str, Any]:
    """One run as :meth:`PipelineScheduler.get_history` gives it."""
    return {
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "completed_at": run.finished_at.isoformat() if run.finished_at else None,
        "success": run.status is RunStatus.succeeded,
        "error": run.error,
        "duration_seconds": run.duration_seconds,
        "run_id": run.run_id,
        "scheduled_for": run.scheduled_for.isoformat(),
        "status": run.status.value,
        "attempt": run.attempt,
        "worker": run.worker,
    }


def _check_zone(name: Any, source: str | None = None) -> str:
    """``name`` if it is an IANA zone name; else SettingError with the nearest names."""
    try:
        if isinstance(name, str):
            get_zone(name)
            return name
    except UnknownTimezone as exc:
        near = f" (nearest: {', '.join(exc.suggestions)})" if exc.suggestions else ""
        raise c.SettingError("timezone", name, f"an IANA zone name such as 'Europe/Berlin'{near}", source) from None
    raise c.SettingError("timezone", name, "an IANA zone name such as 'Europe/Berlin'", source)


def _zone_name(timezone: Any, default: str) -> str:
    """The IANA name of ``timezone``: None (``default``), a name, a ``zoneinfo.ZoneInfo`` or
    a pytz zone (by its name). Raises UnknownTimezone (a ``ValueError``)."""
    if timezone is None:
        return default
    if isinstance(timezone, str):
        return timezone
    for attribute in ("key", "zone"):  # zoneinfo.ZoneInfo, pytz
        name = getattr(timezone, attribute, None)
        if isinstance(name, str):
            return name
    raise c.SettingError("timezone", timezone, "an IANA zone name, a zoneinfo.ZoneInfo or a pytz zone")


def _whole(name: str, value: Any) -> int:
    """``value`` as an int when it is a whole number (numpy's too); else SettingError."""
    try:
        if not isinstance(value, bool):
            return operator.index(value)
    except TypeError:
        pass
    raise c.SettingError(name, value, "a whole number")


def _time_of_day(hour: Any, minute: Any) -> str:
    return f"{_whole('hour', hour):02d}:{_whole('minute', minute):02d}"


def _interval(hours: Any, minutes: Any, seconds: Any) -> str:
    """``hours`` + ``minutes`` + ``seconds`` as whole seconds (``5400s``). Raises InvalidDuration."""
    for name, value in (("hours", hours), ("minutes", minutes), ("seconds", seconds)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise c.SettingError(name, value, "a finite number")
    try:
        total = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise InvalidDuration(f"{hours} h {minutes} min {seconds} s", "it is far too long") from None
    if total <= timedelta(0):
        raise InvalidDuration(f"{hours} h {minutes} min {seconds} s", "it must be longer than zero")
    if total % timedelta(seconds=1):
        raise InvalidDuration(
            f"{total.total_seconds()} s", "it has a fraction of a second: intervals are whole seconds"
        )
    return f"{int(total.total_seconds())}s"


def _exclusions(exclude: Mapping[str, Any] | None, on_excluded: str | None) -> dict[str, Any]:
    """The ``exclude`` and ``on_excluded`` fields of a schedule declared in full: what is not
    given is cleared (a program that stops excluding dates stops excluding them)."""
    if exclude is not None and not isinstance(exclude, Mapping):
        from flowyml_sched.errors import InvalidExclusion

        raise InvalidExclusion("exclude", exclude, "a mapping of holidays, dates and ranges")
    return {
        "exclude": {"holidays": None, "dates": [], "ranges": [], **(exclude or {})},
        "on_excluded": on_excluded or "skip",
    }
