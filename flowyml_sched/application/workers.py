"""Building a worker from resolved settings: the one place where the store, the run locks,
the executor's settings and the worker are put together (the CLI's ``run-worker``, later the
Python API and the REST API's ``serve``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from flowyml_sched.application.files import validate_file
from flowyml_sched.application.scheduler import Scheduler

if TYPE_CHECKING:
    from flowyml_sched.config import Settings, WorkerSettings
    from flowyml_sched.worker import Worker


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
    from flowyml_sched.locks import FileLocks
    from flowyml_sched.sdnotify import Notifier
    from flowyml_sched.store import open_store
    from flowyml_sched.worker import Worker

    if tuning.sync_file is not None:  # at start a missing or invalid file is fatal; later a bad edit is logged
        validate_file(str(tuning.sync_file))
    state = state_dir or settings.state_dir
    if tuning.log_dir is None:
        tuning = replace(tuning, log_dir=state / "logs")
    store = open_store(settings.db_url)

    def sync(path: Path, now: datetime) -> None:
        Scheduler(store, clock=lambda: now, timezone=settings.timezone).sync_file(path)

    try:
        yield Worker(store, FileLocks(state / "locks"), tuning, notifier=Notifier(environ), sync=sync)
    finally:
        store.close()
