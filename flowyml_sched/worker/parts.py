"""What the parts of a worker share: the state that :class:`~flowyml_sched.worker.Worker`
sets up, declared here once for the modules that each hold one concern (the loop, leases,
running claims), and the reporting of events to the listeners."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from flowyml_sched.config import WorkerSettings
from flowyml_sched.executor import ChildRun
from flowyml_sched.locks import LockBackend, RunLock
from flowyml_sched.model import Claim, WorkerInfo
from flowyml_sched.sdnotify import Notifier
from flowyml_sched.store import ScheduleStore
from flowyml_sched.warm import Templates
from flowyml_sched.worker.events import Event, Listener
from flowyml_sched.worker.wakeup import Wakeup

logger = logging.getLogger("flowyml_sched.worker")


LocalPipeline = tuple[str, object]
"""A pipeline registered in this process for a schedule: the schedule's stored ``pipeline``
text it runs for (a stored schedule whose pipeline was changed since runs as that reference),
and the callable or flowyml ``Pipeline`` object."""


@dataclass
class Active:
    """A claim this worker holds, and its child process once started (``in_process``: its
    pipeline started in this process, which no stop can end)."""

    claim: Claim
    child: ChildRun | None = None
    in_process: bool = False
    locks: list[RunLock] = field(default_factory=list)
    """The run locks it holds (its schedule's, and ``+queued`` while it waits): the lock keeper extends them."""
    lock_lost: str | None = None
    """Why a run lock was lost while it ran (a Redis lock's TTL ran out): noted on its run."""


@dataclass
class Maintenance:
    """Monotonic instants at which the next heartbeat and history pruning are due; whether the
    loop's heartbeat has stored a lease yet; and, after this worker stalled past its lease,
    the instant (its clock) before which it declares no other worker dead."""

    heartbeat_due: float = 0.0
    retention_due: float = 0.0
    lease_stored: bool = False
    reap_after: datetime | None = None


class WorkerParts:
    """The state of a worker, set up by :class:`~flowyml_sched.worker.Worker`."""

    store: ScheduleStore
    locks: LockBackend
    settings: WorkerSettings
    clock: Callable[[], datetime]
    notifier: Notifier
    listeners: Sequence[Listener]
    callables: Mapping[str, LocalPipeline]
    templates: Templates | None
    """The warm templates child runs are forked from (None: in-process runs, or cold starts)."""
    identity: WorkerInfo
    """This worker's row: its id and the lease it counts on (moved only once the store has it)."""
    _lease_lock: threading.Lock
    """Held for a heartbeat and the change of ``identity`` it may make."""
    _mutex: threading.Lock
    """Guards ``_active``, ``_held``, ``_kept``, ``_lost_ids``, ``_busy`` and ``_waiting_runners``."""
    _idle: threading.Condition
    _active: dict[int, Active]
    """Run id to the claims held, from their claim to their end."""
    _held: dict[int, datetime]
    """Run id to fire time of the runs claimed ahead and waiting for their instant."""
    _kept: set[int]
    """Run ids whose pending retry this worker takes itself (its rounds leave them alone)."""
    _lost_ids: set[str]
    """The ids this worker lost its lease under: a child of a run claimed under one is stopped
    as soon as it exists (its fenced start may have gone through just before the loss)."""
    _busy: int
    """Jobs (one schedule's claims of one round, or one retry) queued or running."""
    _jobs: queue.SimpleQueue[list[Claim] | None]
    _runners: list[threading.Thread]
    _waiting_runners: int
    _stopping: threading.Event
    """Set by the first stop signal: no more claims."""
    _stop_now: threading.Event
    """Set by the second stop signal."""
    _no_starts: threading.Event
    """Set when claimed runs may no longer start: a second signal, or the grace period's end."""
    _drain_deadline: float | None
    """Monotonic end of the grace period, once stopping."""
    _serving: bool
    """Inside :meth:`Worker.run`'s loop, whose rounds record finished runs: runners queue them."""
    _wake: Wakeup

    def _emit(self, event: Event) -> None:
        """Report ``event`` to each listener; one that raises is logged and the others still hear it."""
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("a listener of the worker's events failed on %s", type(event).__name__)
