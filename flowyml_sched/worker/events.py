"""What a worker reports as it goes: one event per claim, start and end of a run, per fire
time missed, per heartbeat, and when other workers' runs are declared abandoned.

A listener is any callable taking one event; the worker calls its listeners in order, on
the thread where the event happened (the loop's or a runner's), and logs and ignores an
error a listener raises. A run's start and end come in that order (from its runner); its
claim is reported by the loop once the run is handed over, so as not to delay the start,
and may come after the start. :func:`log_event` is the listener that writes the worker's log;
metrics and the Python API's callbacks are others. Instants are aware UTC; durations and
lateness are seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from flowyml_sched.model import Claim, Run, RunOrigin, RunStatus, WorkerInfo, plain_text

logger = logging.getLogger("flowyml_sched.worker")


@dataclass(frozen=True)
class RunClaimed:
    """The worker claimed ``claim`` at ``claimed_at`` (its run starts at its fire time, not before)."""

    claim: Claim
    claimed_at: datetime

    @property
    def lateness(self) -> float:
        """Seconds from the fire time to the claim (negative when claimed ahead)."""
        return (self.claimed_at - self.claim.scheduled_for).total_seconds()


@dataclass(frozen=True)
class RunStarted:
    """Attempt ``claim.attempt`` of the claimed run started at ``started_at`` (its fenced start stored)."""

    claim: Claim
    started_at: datetime

    @property
    def lateness(self) -> float:
        """Seconds from the fire time to the start."""
        return (self.started_at - self.claim.scheduled_for).total_seconds()


@dataclass(frozen=True)
class RunFinished:
    """An attempt of ``claim`` ended with ``status`` (and ``error``, None on success) at
    ``finished_at``; ``started_at`` is None when it never started (the status says why).
    ``retry_at`` is when its retry is due, if it calls for one. ``recorded`` is False when
    the store no longer had the run as this worker's (another worker had declared it
    abandoned), None when the end is queued for the loop's next round (or an outage's end).
    ``exception`` is what a pipeline run in this process raised (None for a child process's)."""

    claim: Claim
    status: RunStatus
    error: str | None
    started_at: datetime | None
    finished_at: datetime
    retry_at: datetime | None = None
    recorded: bool | None = True
    exception: BaseException | None = field(default=None, compare=False)

    @property
    def duration(self) -> float | None:
        """Seconds from the start to the end (None when it never started)."""
        return None if self.started_at is None else (self.finished_at - self.started_at).total_seconds()

    @property
    def lateness(self) -> float | None:
        """Seconds from the fire time to the start (None when it never started)."""
        return None if self.started_at is None else (self.started_at - self.claim.scheduled_for).total_seconds()


@dataclass(frozen=True)
class RunSkipped(RunFinished):
    """A :class:`RunFinished` with status ``skipped``: the overlap policy let it not run."""


@dataclass(frozen=True)
class RunMissed:
    """The fire time ``scheduled_for`` of ``schedule`` did not run and was recorded ``missed``
    with ``reason``: claimed too late for its misfire grace (and not chosen by its catch-up
    policy), or its start could not be stored in time."""

    schedule: str
    scheduled_for: datetime
    reason: str


@dataclass(frozen=True)
class RunsAbandoned:
    """This worker's heartbeat found other workers' leases expired and declared their
    running ``runs`` abandoned (each with a retry due at once when it has retries left)."""

    runs: tuple[Run, ...]


@dataclass(frozen=True)
class WorkerHeartbeat:
    """The lease of ``worker`` was renewed (to ``worker.lease_expires_at``) with ``running``
    runs going; ``lease_kept`` is False when another worker had declared it dead meanwhile."""

    worker: WorkerInfo
    lease_kept: bool
    running: int


@dataclass(frozen=True)
class LeaseLost:
    """Worker ``worker_id`` found it had been declared dead (it stalled past its lease):
    it stops its ``running`` pipelines and goes on under the id ``new_id``."""

    worker_id: str
    running: int
    new_id: str


Event = RunClaimed | RunStarted | RunFinished | RunMissed | RunsAbandoned | WorkerHeartbeat | LeaseLost
"""Everything a worker reports."""

Listener = Callable[[Event], None]
"""Called with each event."""


def log_event(event: Event) -> None:
    """The worker's log: one line per claim, end of a run, missed fire time and lost lease;
    at INFO for what went as planned, WARNING for runs that did not succeed, ERROR for a
    lost lease. Starts and heartbeats go to DEBUG."""
    if isinstance(event, RunClaimed):
        late, origin = event.lateness, event.claim.origin
        logger.info(
            "claimed %s for %s%s",
            event.claim.schedule.name,
            event.claim.scheduled_for.isoformat(),
            f" ({origin.value})" if origin is not RunOrigin.schedule else f" ({late:.0f} s late)" if late >= 1 else "",
        )
    elif isinstance(event, RunStarted):
        logger.debug("started %s for %s (attempt %d)", event.claim.schedule.name,
                     event.claim.scheduled_for.isoformat(), event.claim.attempt)  # fmt: skip
    elif isinstance(event, RunFinished):
        _log_end(event)
    elif isinstance(event, RunMissed):
        logger.warning("%s for %s: missed (%s)", event.schedule, event.scheduled_for.isoformat(),
                       event.reason.splitlines()[0][:500])  # fmt: skip
    elif isinstance(event, RunsAbandoned):
        logger.debug("declared %d runs abandoned", len(event.runs))
    elif isinstance(event, WorkerHeartbeat):
        logger.debug("heartbeat of %s: lease until %s", event.worker.id, event.worker.lease_expires_at.isoformat())
    elif isinstance(event, LeaseLost):
        logger.error(
            "worker %s: its lease had expired and another worker declared its runs abandoned; "
            "stopping its %d running pipelines and going on under a new id",
            event.worker_id,
            event.running,
        )


def _log_end(event: RunFinished) -> None:
    status, error, retry_at = event.status, event.error, event.retry_at
    level = logging.INFO if status in (RunStatus.succeeded, RunStatus.skipped) else logging.WARNING
    first_line = plain_text(error.splitlines()[0][:500]) if error else ""  # any log handler can write it
    kept = "; not recorded: its row was closed already (abandoned or replaced)" if event.recorded is False else ""
    logger.log(level, "%s for %s: %s%s%s%s", event.claim.schedule.name, event.claim.scheduled_for.isoformat(),
               status.value, f" ({first_line})" if error else "",
               f"; retry at {retry_at.isoformat()}" if retry_at and not kept else "", kept)  # fmt: skip
