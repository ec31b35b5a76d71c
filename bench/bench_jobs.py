"""The work the benchmarks schedule: no-op pipelines for flowyml-sched and no-op jobs for APScheduler.

The benchmark suite starts workers with this directory on ``PYTHONPATH``, so the schedules
name these as ``bench_jobs:noop`` and ``bench_jobs:record_start``.

``record_start`` appends ``"<fire time> <time it started>"`` (Unix seconds) to the file
named by ``$BENCH_RECORD``, with one ``O_APPEND`` write, so several worker processes can
share the file. ``aps_record`` is APScheduler's equivalent: it keeps the pair in
:data:`FIRED` of the process that runs it.
"""

from __future__ import annotations

import os
import time
from datetime import datetime

RECORD_ENV = "BENCH_RECORD"

FIRED: list[tuple[float, float]] = []
"""(scheduled Unix time, Unix time the job function started) of each APScheduler run in this process."""


def noop() -> None:
    """Does nothing: the throughput benchmark measures the scheduler, not the pipeline."""


def record_start(scheduled_for: datetime) -> None:
    """Records when the pipeline started for which fire time (the lateness benchmark)."""
    started = time.time()
    path = os.environ.get(RECORD_ENV)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{scheduled_for.timestamp()!r} {started!r}\n".encode())
    finally:
        os.close(fd)


def aps_noop() -> None:
    """APScheduler's job for the schedules that never come due."""


def aps_record(due: float) -> None:
    """APScheduler's job for the due schedules: records (scheduled time, start time)."""
    FIRED.append((due, time.time()))
