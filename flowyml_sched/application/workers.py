"""Building a worker from resolved settings: the one place where the store, the run locks,
the executor's settings and the worker are put together (the CLI's ``run-worker``, later the
Python API and the REST API's ``serve``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from flowyml_sched.application.files import validate_file
from flowyml_sched.application.scheduler import Scheduler
from flowyml_sched.config import SettingError
from flowyml_sched.errors import LockBackendUnavailable
from flowyml_sched.locks import FileLocks
from flowyml_sched.worker.events import Event, Listener, RunFinished, RunSkipped, log_event

logger = logging.getLogger("flowyml_sched.worker")

if TYPE_CHECKING:
    from flowyml_sched.config import Settings, WorkerSettings
    from flowyml_sched.locks import LockBackend
    from flowyml_sched.model import ClaimScope
    from flowyml_sched.store import ScheduleStore
    from flowyml_sched.worker import Worker
    from flowyml_sched.worker.parts import LocalPipeline


@contextmanager
def open_worker(
    settings: Settings,
    tuning: WorkerSettings,
    *,
    environ: Mapping[str, str],
    state_dir: Path | None = None,
) -> Iterator[Worker]:
    """A worker on the store that ``settings`` name, with ``tuning``; the store is closed on exit.

    Run locks and (unless ``tuning`` names a ``log_dir``) run logs live in ``state_dir``,
    by default the configured state directory: workers that share a store on one host must
    share it. ``environ`` is the process environment, read for systemd's ``NOTIFY_SOCKET``.
    The worker applies ``tuning.sync_file`` through :meth:`Scheduler.sync_file`, the
    schedules it stores carrying that file as their source. Raises StoreError, and
    SpecFileError or InvalidSpec when the sync file is missing or invalid at start.
    """
    from flowyml_sched.store import open_store

    if tuning.sync_file is not None:  # at start a missing or invalid file is fatal; later a bad edit is logged
        validate_file(str(tuning.sync_file))
    store = open_store(settings.db_url)
    try:
        yield worker_on(store, settings, tuning, environ=environ, state_dir=state_dir)
    finally:
        store.close()


RunEnd = RunFinished
"""What :func:`run_ends` reports: the end of an attempt that started (a
:class:`~flowyml_sched.worker.events.RunFinished`: status, error, exception, times)."""


def run_ends(callback: Callable[[RunFinished], None]) -> Listener:
    """A listener of a worker's events that calls ``callback`` with the end of each attempt
    that started (skipped and missed fire times, and attempts closed unstarted, are left out)."""

    def listener(event: Event) -> None:
        if isinstance(event, RunFinished) and not isinstance(event, RunSkipped) and event.started_at is not None:
            callback(event)

    return listener


def run_locks(store: ScheduleStore, settings: Settings, tuning: WorkerSettings, state: Path) -> LockBackend:
    """The run locks ``settings`` choose (the one factory of lock backends).

    ``file``: files in ``state/locks``, shared by the workers of one host that share ``state``
    (on a PostgreSQL store that is logged as a warning: overlap then holds only among them).
    ``redis``: redis-py locks at ``settings.redis_url`` with a TTL of two leases; on a
    PostgreSQL store their keys are namespaced by the store's identity; on SQLite (each process
    keeps a store of its own: the Python API's deployment on several servers) by the Redis
    database alone, and each fire time is also claimed in Redis. Raises SettingError when the
    ``multi`` extra (redis-py) is missing or the Redis server refuses this worker for good (a
    wrong password, no such database, not Redis); an unreachable one is only logged (the
    worker recovers with it). Raises StoreError.
    """
    if settings.lock_backend == "redis":
        try:
            from flowyml_sched.locks.redis import RedisLocks, lock_ttl
        except ImportError:
            raise SettingError(
                "lock_backend", "redis", "'file', or install the multi extra: pip install 'flowyml-sched[multi]'"
            ) from None
        assert settings.redis_url is not None  # resolve_settings checks it
        identity = store.identity()
        shared = store.dialect == "postgresql"
        locks = RedisLocks(
            settings.redis_url,
            identity if shared else "own-stores",
            lock_ttl(tuning.lease),
            fire_time_holder=None if shared else identity,
        )
        try:
            locks.check_settings()
        except LockBackendUnavailable as error:
            raise SettingError(
                "redis_url", locks.url, f"a Redis server that takes this worker's commands ({error})"
            ) from None
        return locks
    if store.dialect == "postgresql":
        logger.warning(
            "file locks on a PostgreSQL store: overlap holds only among the workers sharing this host's state "
            "directory (%s); workers on other hosts need --lock-backend redis",
            state,
        )
    return FileLocks(state / "locks")


def worker_on(
    store: ScheduleStore,
    settings: Settings,
    tuning: WorkerSettings,
    *,
    environ: Mapping[str, str],
    state_dir: Path | None = None,
    listeners: Sequence[Listener] | None = None,
    scope: ClaimScope | None = None,
    callables: Mapping[str, LocalPipeline] | None = None,
) -> Worker:
    """A worker on ``store`` (left open), as :func:`open_worker` builds it; ``listeners``,
    ``scope`` and ``callables`` as :class:`~flowyml_sched.worker.Worker` takes them (by
    default: the log, every schedule whose pipeline any process can load, none)."""
    from flowyml_sched.model import EVERY_REFERENCE
    from flowyml_sched.sdnotify import Notifier
    from flowyml_sched.worker import Worker

    state = state_dir or settings.state_dir
    if tuning.log_dir is None:
        tuning = replace(tuning, log_dir=state / "logs")

    def sync(path: Path, now: datetime) -> None:
        Scheduler(store, clock=lambda: now, timezone=settings.timezone).sync_file(path)

    return Worker(
        store,
        run_locks(store, settings, tuning, state),
        tuning,
        notifier=Notifier(environ),
        sync=sync,
        listeners=(log_event,) if listeners is None else listeners,
        scope=scope or EVERY_REFERENCE,
        callables=callables,
    )
