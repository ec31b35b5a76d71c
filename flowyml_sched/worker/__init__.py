"""The worker: claims due fire times from the store and runs each exactly once
(see :mod:`flowyml_sched.worker.loop`), reporting what it does as
:mod:`~flowyml_sched.worker.events` to its listeners."""

from flowyml_sched.config import WorkerSettings
from flowyml_sched.worker.events import (
    Event,
    LeaseLost,
    Listener,
    RunClaimed,
    RunFinished,
    RunMissed,
    RunsAbandoned,
    RunSkipped,
    RunStarted,
    WorkerHeartbeat,
    log_event,
)
from flowyml_sched.worker.loop import Worker

__all__ = [
    "Event",
    "LeaseLost",
    "Listener",
    "RunClaimed",
    "RunFinished",
    "RunMissed",
    "RunSkipped",
    "RunStarted",
    "RunsAbandoned",
    "Worker",
    "WorkerHeartbeat",
    "WorkerSettings",
    "log_event",
]
