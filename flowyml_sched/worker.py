"""The worker: claims due fire times from the store and runs each exactly once.

``Worker.tick(now)`` does one round and takes "now" as an argument; ``Worker.run()`` is the
thin loop around it that reads the clock and sleeps until the earliest due fire time (less
the claim-ahead) or the next heartbeat, whichever comes first. It wakes at once on a signal,
a finished run, or a change to the schedules or the sync file: the store's change watch and
an inotify watch on the sync file give descriptors to sleep on. Where they cannot (no inotify,
in-memory SQLite), and after a failed round, it also wakes every poll interval to look.

On time: a round claims the fire times due within ``claim_ahead`` seconds (0.1 by default,
like Quartz's fire-ahead window), so the claim's commit (a disk flush) is done when they are
due; each run then waits for its fire time and starts then, never before. A pause or removal
made in the last ``claim_ahead`` seconds before a fire time that is already claimed does not
stop that run.

Exactly once: a fire time is claimed by inserting its run row, unique on (schedule,
scheduled_for), in the same transaction that moves the schedule's next fire time past the
round's horizon (now + claim-ahead). A worker that loses the race skips quietly. A claimed
run is owned by its worker, whose heartbeat renews a lease; when the lease expires any live
worker marks the run ``abandoned`` and retries it if the schedule has retries left. The fire
times of one schedule claimed in one round (catch-up after downtime) run one after the
other, oldest first.

Shutdown has two stages: the first SIGTERM/SIGINT stops claiming and gives running work
``grace`` seconds, then stops what remains and records it ``interrupted``; a second signal
stops everything at once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import select
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from flowyml_sched.clock import utc_now
from flowyml_sched.config import WorkerSettings
from flowyml_sched.dispatch import DEFAULT_MISFIRE_GRACE
from flowyml_sched.errors import SchedulerError, StoreError
from flowyml_sched.executor import ChildRun, Outcome, RunRequest, prepare_in_process
from flowyml_sched.filewatch import FileWatch
from flowyml_sched.locks import LockBackend, RunLock
from flowyml_sched.model import Claim, Heartbeat, Overlap, Run, RunStatus, WorkerInfo
from flowyml_sched.sdnotify import Notifier
from flowyml_sched.store import ScheduleStore

logger = logging.getLogger(__name__)

UTC = timezone.utc

PREPARE_AHEAD = 0.005
"""Seconds before its instant at which a held run wakes to prepare (after a sleep, that Python
work runs several times slower than warm)."""
SPIN = 0.001
"""Seconds before its instant at which a prepared run stops sleeping and yields the CPU until
then: on a virtual machine the timer wakes a thread up to a millisecond late."""
START_GUARD = 0.02
"""Seconds before the start of a run claimed ahead in which the loop starts no round: a round's
Python work holds the GIL (the waking run would wait up to the 5 ms switch interval), and the
rounds of the host's other workers take the CPU."""
START_SETTLE = timedelta(milliseconds=1)
"""How long after that start the round waits."""
UNSTARTED = "the worker stopped before this run started"
"""The error of a claimed run closed ``interrupted`` before it started."""
LEASE_LOST = "the worker's lease expired before this run started; another worker took its runs over"
"""The error of a run claimed ahead that its worker, stalled past its lease, does not start."""
FENCED = "its start was refused: the run is no longer this worker's to start (its lease ran out)"
"""The error of an attempt whose fenced start changed nothing (:meth:`ScheduleStore.start_attempt`)."""
STALLED = "the worker stalled past its lease between recording this run's start and starting it"
"""The error of an attempt whose start was recorded but not made in time: its lease may have run out."""
START_NOT_RECORDED = "its start could not be recorded before its misfire grace ended"
"""The error of a fire time that did not run because the store refused its fenced start."""
STOP_FLUSH = 10.0
"""Seconds after the grace period for which a stopping worker tries to write what it could not
record while the store was unreachable (grace 30 s + 10 s stays below systemd's 45 s)."""
FENCE_RETRY_FIRST = 0.05
"""Seconds before the first retry of a fenced start the store refused; doubled each time, up
to the poll interval."""
RETENTION_INTERVAL = 3600.0
"""Seconds between history pruning rounds."""


class _Wakeup:
    """What the loop sleeps on: :meth:`set` (from any thread, or a signal handler) wakes it, and so
    does any of the descriptors given to :meth:`wait` turning readable. A self-pipe (a socket
    pair: closed when collected, never a reused descriptor number)."""

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def set(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is pending already
            self._writer.send(b"\0")

    def wait(self, timeout: float, fds: list[int]) -> tuple[bool, set[int]]:
        """Sleep up to ``timeout`` seconds, until :meth:`set` (since the last wait) or one of
        ``fds`` is readable. Returns whether :meth:`set` woke it, and the readable ``fds``."""
        poller = select.poll()
        for fd in (self._reader.fileno(), *fds):
            poller.register(fd, select.POLLIN)
        ready = {fd for fd, _ in poller.poll(max(0.0, timeout) * 1000)}
        woken = False
        with contextlib.suppress(OSError):
            while self._reader.recv(4096):
                woken = True
        return woken, ready


@dataclass
class _Active:
    claim: Claim
    child: ChildRun | None = None


@dataclass
class _Maintenance:
    heartbeat_due: float = 0.0
    retention_due: float = 0.0
    sync_mtime: float | None = None
    sync_requested: bool = True


class Worker:
    """Claims and runs due fire times. Build one per process; call :meth:`run` or :meth:`tick`."""

    def __init__(
        self,
        store: ScheduleStore,
        locks: LockBackend,
        settings: WorkerSettings,
        *,
        clock: Callable[[], datetime] = utc_now,
        notifier: Notifier | None = None,
        sync: Callable[[Path, datetime], None] | None = None,
    ):
        if settings.log_dir is None and not settings.in_process:
            raise ValueError("a worker that runs pipelines in child processes needs WorkerSettings.log_dir")
        self.store = store
        self.locks = locks
        self.settings = settings
        self.clock = clock
        self.notifier = notifier or Notifier({})
        self._sync = sync
        self.identity = self._incarnation(clock())
        self._stopping = threading.Event()
        self._serving = False
        """Inside :meth:`run`'s loop, whose rounds record finished runs: runners queue them."""
        self._stop_now = threading.Event()
        self._no_starts = threading.Event()
        """Set when claimed runs may no longer start: a second signal, or the grace period's end."""
        self._drain_deadline: float | None = None  # monotonic end of the grace period, once stopping
        self._wake = _Wakeup()
        self._mutex = threading.Lock()
        self._idle = threading.Condition(self._mutex)
        self._active: dict[int, _Active] = {}
        self._jobs: queue.SimpleQueue[list[Claim] | None] = queue.SimpleQueue()
        self._busy = 0
        """Jobs (one schedule's claims of one round, or one retry) queued or running."""
        self._runners: list[threading.Thread] = []
        self._waiting_runners = 0
        self._maintenance = _Maintenance()
        self._watch = store.change_watch()
        self._sync_target: Path | None = None
        """Where the sync file resolved to when its watch began."""
        self._sync_watch = self._watch_sync_file()
        self._due: tuple[datetime | None] | None = None
        """The earliest due fire time as last read, while the watch says it still holds; None: read again."""
        self._backlog = False
        """The last claim round took as many schedules as it could: more may be due already."""
        self._claim_ahead = timedelta(seconds=settings.claim_ahead)
        """Rounds claim fire times due by now + this; ``run(once=True)`` claims only due ones."""
        self._held: dict[int, datetime] = {}
        """Run id to fire time of the runs claimed ahead and waiting for their instant."""
        self._last_due: datetime | None = None
        """The earliest due time as last read (kept when ``_due`` is invalidated)."""
        self._claimed_ahead: list[datetime] = []
        """Earlier due times that later reads moved past: claimed, their runs start then."""
        self._kept: set[int] = set()
        """Run ids whose pending retry this worker takes itself (its rounds leave them alone)."""

    # -- one round ---------------------------------------------------------------------------

    def tick(self, now: datetime) -> list[Claim]:
        """One round at ``now``: heartbeat and reap if due, apply the sync file if it changed,
        claim the fire times due by ``now`` + ``claim_ahead`` up to the free capacity and start
        them (each at its fire time), and record the runs that finished meanwhile (in the
        claim's transaction when there is one). Returns the claims."""
        self._maintain(now)
        claims = self._claim(now)
        self.store.record_queued_finishes()
        return claims

    def _claim(self, now: datetime) -> list[Claim]:
        if self._stopping.is_set():
            return []
        with self._mutex:
            free = self.settings.max_concurrent - self._busy
        if free <= 0:
            return []
        # an idle round reads nothing while the watch sees no change; the write transaction
        # only when something is due: as last read (the claim reads again, under the lock),
        # or left behind by the last round (its limit was the free capacity)
        until = now + self._claim_ahead
        known = self._due[0] if self._due is not None else None
        due = now if self._backlog or (known is not None and known <= until) else self._earliest_due()
        if due is None or due > until:
            return []
        self._due, self._backlog = None, False  # if the claim fails, the loop waits a poll, then reads
        with self._mutex:
            kept = list(self._kept)
        claimed = self.store.claim_due(now, self.identity, free, until=until, kept=kept)
        claims = claimed.claims
        self._read_due(claimed.next_due_at)
        self._backlog = len({claim.schedule.name for claim in claims}) >= free
        batches: dict[str, list[Claim]] = {}
        for claim in claims:
            batches.setdefault(claim.schedule.name, []).append(claim)
        for batch in batches.values():
            # one schedule's fire times of one round (catch-up, or several on time) run one
            # after the other, oldest first, rather than racing for the schedule's run lock
            # (with overlap "skip" all but one would be recorded skipped)
            self._start(batch)
        for claim in claims:  # logged once started, not to delay the start
            late = (now - claim.scheduled_for).total_seconds()
            logger.info(
                "claimed %s for %s%s",
                claim.schedule.name,
                claim.scheduled_for.isoformat(),
                f" ({late:.0f} s late)" if late >= 1 else "",
            )
        return claims

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no run is going (True) or ``timeout`` seconds pass (False)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def _wait_for_capacity(self) -> None:
        """Block (keeping the lease) until a run may start or the worker is stopping."""
        while not self._stopping.is_set():
            with self._idle:
                if self._idle.wait_for(lambda: self._busy < self.settings.max_concurrent, 0.2):
                    return
            self._keep_lease()

    def _earliest_due(self) -> datetime | None:
        """The earliest due fire time: read from the store only when the watch saw a change
        (the watch is asked first, so a change committed during the read is seen next time)."""
        if self._watch.changed() or self._due is None:
            self._read_due(self.store.next_due_at())
        return self._due[0] if self._due is not None else None

    # -- the loop ----------------------------------------------------------------------------

    def run(self, once: bool = False) -> int:
        """Serve until stopped by a signal (or, with ``once``, until what is due now has run).

        Returns the exit status: 0 after a clean shutdown; 1 when ``once`` and its round failed.
        """
        if threading.current_thread() is threading.main_thread():
            self._install_signals()
        self._heartbeat(self.clock())
        logger.info("worker %s serving %s", self.identity.id, self.store.location)
        self.notifier.ready(f"serving {self.store.location}")
        failed = False
        self._serving = not once
        if once:
            self._claim_ahead = timedelta(0)
        try:
            while not self._stopping.is_set():
                if quiet := self._quiet_before_start():  # once a round: at most START_GUARD late
                    self._stop_now.wait(quiet)
                now = self.clock()
                failed = not self._round(now)
                self.notifier.watchdog()
                if once:  # claim all that is due at this instant, then wait for it (past the grace period too)
                    while not failed and self._backlog and not self._stopping.is_set():
                        self._wait_for_capacity()
                        failed = not self._round(now)
                    while not self._stopping.is_set() and not self.wait_idle(0.2):
                        self._keep_lease()
                    break
                self._sleep(self._sleep_seconds(failed))
        finally:
            self._shutdown()
        return 1 if once and failed else 0

    def _round(self, now: datetime) -> bool:
        """:meth:`tick`, logging its failure instead of raising; True when it went through."""
        try:
            self.tick(now)
        except StoreError as exc:
            logger.error("%s; retrying in %g s", exc, self.settings.poll_interval)
            self.notifier.status(f"store unavailable: {exc}")
            return False
        except Exception:  # a bug must not end the loop while health says it runs
            logger.exception("the worker's round failed; retrying in %g s", self.settings.poll_interval)
            self.notifier.status("a round failed; see the log")
            return False
        return True

    def request_stop(self) -> None:
        """First stage: stop claiming, let running work finish within the grace period."""
        if self._stopping.is_set():
            self._stop_now.set()
            self._no_starts.set()
        self._stopping.set()
        self._wake.set()

    def request_sync(self) -> None:
        """Apply the sync file again at the next round (SIGHUP)."""
        self._maintenance.sync_requested = True
        self._wake.set()

    def _install_signals(self) -> None:
        def on_stop(signum: int, _frame: object) -> None:
            logger.info("received %s", signal.Signals(signum).name)
            self.request_stop()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, lambda _s, _f: self.request_sync())

    def _sleep(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds or until woken: by a signal or a finished run, or by
        a change to the schedules or the sync file. A watch that woke it is consumed here,
        whether or not the next round looks (left readable, it would wake every sleep); one
        that woke it for nothing (another table, another schema) does not end the sleep."""
        deadline = time.monotonic() + timeout
        while True:
            fds = self._watch_fds()
            store_fd, *sync_fd = fds
            woken, ready = self._wake.wait(deadline - time.monotonic(), [fd for fd in fds if fd is not None])
            # the store's watch is asked when it woke the loop, or when it must be polled or rechecked
            asked = store_fd is None or store_fd in ready or self._watch.recheck() is not None
            changed = asked and self._watch.changed()
            if changed:
                self._due = None
            synced = bool(sync_fd) and sync_fd[0] in ready and self._sync_watch.drain()
            if synced:
                self._maintenance.sync_requested = True
                if self._sync_watch.fileno() is not None and self.settings.sync_file.resolve() != self._sync_target:
                    self._sync_watch.close()
                    self._sync_watch = self._watch_sync_file()  # a link on its path now points elsewhere
            # a watch lost meanwhile (fileno None): back to the loop, which then polls
            if woken or changed or synced or None in self._watch_fds() or time.monotonic() >= deadline:
                return

    def _watch_sync_file(self) -> FileWatch | None:
        """A watch on the sync file, where it is and where it resolves to, and on each symlink on
        its path (a deploy that swaps a ``current`` link): a file written in place counts once
        closed, not half-written."""
        path = self.settings.sync_file
        if path is None:
            return None
        given = path.absolute()
        links = [link for link in (*reversed(given.parents), given) if link.is_symlink()]
        self._sync_target = path.resolve()
        return FileWatch([given, self._sync_target, *links], when_closed=True)

    def _watch_fds(self) -> tuple[int | None, ...]:
        """The descriptors of the change watch and the sync file's watch (None: that one must be polled)."""
        return (self._watch.fileno(), *((self._sync_watch.fileno(),) if self._sync_watch is not None else ()))

    def _sleep_seconds(self, failed: bool = False) -> float:
        """How long the loop sleeps; after a failed round, a poll interval (a write still wakes it)."""
        watchdog = self.notifier.watchdog_seconds / 2 if self.notifier.watchdog_seconds is not None else None
        if failed:
            return min(self.settings.poll_interval, watchdog) if watchdog is not None else self.settings.poll_interval
        # never past the next heartbeat (the lease must hold), nor half the systemd watchdog's period
        poll = max(0.0, self._maintenance.heartbeat_due - time.monotonic())
        if watchdog is not None:
            poll = min(poll, watchdog)
        if None in self._watch_fds():
            poll = min(poll, self.settings.poll_interval)  # no wake-up on a change: look every poll interval
        if (recheck := self._watch.recheck()) is not None:
            poll = min(poll, recheck)
        with self._mutex:
            if self._busy >= self.settings.max_concurrent:
                return poll
        if self._backlog:
            return 0.0
        if self._due is None:  # else the round just asked the watch
            try:
                self._read_due(self.store.next_due_at())
            except StoreError:
                return poll
        due = self._due[0] if self._due is not None else None
        if due is None:
            return poll
        return min(poll, max(0.0, (due - self._claim_ahead - self.clock()).total_seconds()))

    def _shutdown(self) -> None:
        self._serving = False  # runners record their own runs from now on
        self._record_queued()
        grace = self.settings.grace
        self.notifier.stopping(f"draining, up to {grace:g} s")
        logger.info("stopping: no more claims; waiting up to %g s for %d running", grace, len(self._active))
        deadline = self._drain_deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not self._stop_now.is_set():
            if self.wait_idle(0.2):
                break
            self._record_queued()
            self._keep_lease()
        self._no_starts.set()  # runs still waiting for their instant are closed unstarted
        with self._mutex:
            remaining = list(self._active.values())
        reason = (
            "worker stopped at once (second signal)"
            if self._stop_now.is_set()
            else (f"worker shut down: the {grace:g} s grace period ran out")
        )
        for active in remaining:
            if active.child is not None:
                active.child.kill_grace = 0.0 if self._stop_now.is_set() else active.child.kill_grace
                active.child.stop(RunStatus.interrupted, reason)
        if remaining:
            self.wait_idle(15.0)
        with self._mutex:
            leftover = list(self._active.values())
        for active in leftover:  # in-process runs cannot be stopped: record them, then leave
            self._close(active.claim, RunStatus.interrupted, reason, wait=False)
        if self._flush_queued(time.monotonic() if self._stop_now.is_set() else deadline + STOP_FLUSH):
            try:
                self.identity = replace(self.identity, heartbeat_at=self.clock(), status="stopped")
                self.store.heartbeat(self.identity)
            except StoreError as exc:
                logger.error("could not record the worker's stop: %s", exc)
        self._watch.close()
        if self._sync_watch is not None:
            self._sync_watch.close()
        for _ in self._runners:
            self._jobs.put(None)
        logger.info("worker %s stopped", self.identity.id)

    def _record_queued(self) -> bool:
        """Write what is queued for the store; False (logged) when the store refused it."""
        try:
            self.store.record_queued_finishes()
        except StoreError as exc:
            logger.error("could not record finished runs: %s", exc)
            return False
        return True

    def _flush_queued(self, until: float) -> bool:
        """At the stop: write what is queued, trying again with backoff until the monotonic
        instant ``until``. False when the store never took it: the worker then leaves its row
        ``alive``, so that once its lease runs out another worker declares the runs it could
        not record ``abandoned`` (and stores their retries)."""
        delay = FENCE_RETRY_FIRST
        while not self._record_queued():
            if time.monotonic() + delay > until:
                logger.error("the store did not come back before the stop: runs not recorded stay 'running' "
                             "until another worker finds this worker's lease expired")  # fmt: skip
                return False
            time.sleep(delay)
            delay = min(delay * 2, self.settings.poll_interval)
        return True

    # -- maintenance -------------------------------------------------------------------------

    def _maintain(self, now: datetime) -> None:
        clock = time.monotonic()
        state = self._maintenance
        if clock >= state.heartbeat_due:
            state.heartbeat_due = clock + self.settings.heartbeat_interval
            if self._heartbeat(now).others_expired:
                self.store.reap_abandoned(now)  # their retries are stored: a claim round takes them
            self._due = None  # read again: another worker may have stored a retry meanwhile
        if clock >= state.retention_due:
            state.retention_due = clock + RETENTION_INTERVAL
            older = now - timedelta(days=self.settings.keep_days) if self.settings.keep_days else None
            pruned = self.store.prune_history(self.settings.keep_runs, older)
            if pruned:
                logger.info("pruned %d old runs from history", pruned)
        self._maybe_sync(now)

    def _keep_lease(self) -> None:
        """While waiting for running work (draining, ``once``): heartbeat when due, so no other
        worker declares these runs abandoned and runs them again, and feed the watchdog."""
        state = self._maintenance
        if time.monotonic() >= state.heartbeat_due:
            state.heartbeat_due = time.monotonic() + self.settings.heartbeat_interval
            try:
                self._heartbeat(self.clock())
            except StoreError as exc:
                logger.error("heartbeat failed: %s", exc)
        self.notifier.watchdog()

    def _incarnation(self, now: datetime) -> WorkerInfo:
        """A new identity (``host:pid:random``) with a lease from ``now``: at start, and once
        another worker has declared this one dead (the old id stays dead)."""
        host = socket.gethostname()
        return WorkerInfo(
            id=f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            host=host,
            pid=os.getpid(),
            started_at=now,
            heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=self.settings.lease),
            status="alive",
        )

    def _owner(self, claim: Claim) -> WorkerInfo:
        """This worker as the owner of ``claim``: under the id it claimed it with."""
        return self.identity if claim.owner == self.identity.id else replace(self.identity, id=claim.owner)

    def _heartbeat(self, now: datetime) -> Heartbeat:
        """Renew the lease from ``now``. The lease this worker counts on moves only once the
        store has it: after a failed heartbeat (an outage) its fenced starts renew it first.
        Raises StoreError."""
        renewed = replace(
            self.identity, heartbeat_at=now, lease_expires_at=now + timedelta(seconds=self.settings.lease)
        )
        beat = self.store.heartbeat(renewed)
        self.identity = renewed
        if not beat.lease_kept:
            self._lost_lease()
            self.identity = self._incarnation(now)
            self.store.heartbeat(self.identity)
        with self._mutex:
            running = len(self._active)
        self.notifier.status(f"serving; {running} running")
        return beat

    def _lost_lease(self) -> None:
        """This worker missed its lease (stalled longer than ``lease``) and another worker
        declared its runs abandoned, perhaps retrying them: stop its own copies now. It goes on
        under a new id; what it claimed under the old one never starts."""
        with self._mutex:
            children = [a.child for a in self._active.values() if a.child is not None]
        logger.error(
            "worker %s: its lease had expired and another worker declared its runs abandoned; "
            "stopping its %d running pipelines and going on under a new id",
            self.identity.id,
            len(children),
        )
        for child in children:
            child.stop(RunStatus.interrupted, "the worker's lease expired while it ran")

    def _maybe_sync(self, now: datetime) -> None:
        path = self.settings.sync_file
        if path is None or self._sync is None:
            return
        state = self._maintenance
        if self._sync_watch is not None and self._sync_watch.fileno() is None and sys.platform == "linux":
            self._sync_watch = self._watch_sync_file()  # lost, its directory gone for a while: try again
            if self._sync_watch.fileno() is not None:
                state.sync_requested = True  # what changed while it was lost went unseen
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = None
        # with a watch, only its report (a writer closed the file) counts: a round for another
        # reason must not read a file half-written; without one, a new mtime does
        if not state.sync_requested and (self._sync_watch.fileno() is not None or mtime == state.sync_mtime):
            return
        state.sync_requested = False
        state.sync_mtime = mtime
        try:
            self._sync(path, now)
        except SchedulerError as exc:
            logger.error("sync of %s failed, keeping the current schedules: %s", path, exc)

    # -- running one claim -------------------------------------------------------------------

    def _start(self, claims: list[Claim]) -> None:
        """Hand ``claims`` (of one schedule, oldest first) to a runner thread, which runs them
        one after the other; a runner is started when none is waiting for work."""
        with self._mutex:
            for claim in claims:
                self._active[claim.run_id] = _Active(claim)
            self._busy += 1
            start_runner = self._waiting_runners == 0
            if start_runner:
                self._waiting_runners += 1
                runner = threading.Thread(target=self._serve_jobs, name=f"runner-{len(self._runners)}", daemon=True)
                self._runners.append(runner)
        self._jobs.put(claims)
        if start_runner:
            runner.start()

    def _serve_jobs(self) -> None:
        """A runner thread: run jobs until the ``None`` that :meth:`_shutdown` sends."""
        while (job := self._jobs.get()) is not None:
            with self._mutex:
                self._waiting_runners -= 1
            try:
                self._execute_all(job)
            except BaseException:  # a bug, or a pipeline's stray BaseException, must not take the runner down
                logger.exception("a runner failed")
            finally:
                with self._mutex:
                    self._busy -= 1
                    self._waiting_runners += 1
                    self._idle.notify_all()
                self._wake.set()

    def _execute_all(self, claims: list[Claim]) -> None:
        try:
            for index, claim in enumerate(claims):
                held = self._hold(claim)
                if (index or held) and self._too_late_to_start():
                    self._close(claim, RunStatus.interrupted, UNSTARTED)
                    continue
                self._execute(claim)
        finally:
            with self._mutex:
                for claim in claims:  # also those an escaping error left unstarted
                    self._active.pop(claim.run_id, None)
                    self._held.pop(claim.run_id, None)

    def _hold(self, claim: Claim) -> bool:
        """A run claimed ahead of its fire time (by this worker, or by one whose abandoned run
        this one retries) waits for it: True when it waited. It sleeps until
        :data:`PREPARE_AHEAD` seconds before the instant, prepares, and :meth:`_at_instant`
        waits out the rest; a second stop signal or the grace period's end stops the wait."""
        delay = (claim.scheduled_for - self.clock()).total_seconds()
        if delay <= 0:
            return False
        with self._mutex:
            self._held[claim.run_id] = claim.scheduled_for
        self._no_starts.wait(max(0.0, delay - PREPARE_AHEAD))
        return True

    def _at_instant(self, claim: Claim) -> None:
        """Right before a held run starts: wait for its fire time, the last :data:`SPIN` seconds
        yielding the CPU in a loop, until a second stop signal or the grace period's end."""
        with self._mutex:
            if claim.run_id not in self._held:
                return
        left = (claim.scheduled_for - self.clock()).total_seconds()
        end = time.monotonic() + left  # by the monotonic clock too: a frozen wall clock cannot hold it
        if left > SPIN:
            self._no_starts.wait(left - SPIN)
        while self.clock() < claim.scheduled_for and time.monotonic() < end and not self._no_starts.is_set():
            time.sleep(0)
        with self._mutex:
            self._held.pop(claim.run_id, None)

    def _fence(self, claim: Claim, run_uuid: str, log_path: Path | None) -> Outcome | None:
        """The fenced start (:meth:`ScheduleStore.start_attempt`), written before the pipeline
        starts, then the wait for the fire time. Returns None when the attempt starts now, else
        the outcome to record for it: ``interrupted`` when the store refused the start (the row
        is no longer this worker's unstarted claim, or its lease is gone), the worker is
        stopping, or it stalled past its lease after the write; ``missed`` when the store could
        not be reached in time.

        A lease that ran out by this worker's clock is renewed first, and so is one the store
        refused the start for (the heartbeat says whether another worker declared this one
        dead meanwhile: then its runs are gone). A write the store refuses is tried
        again, as long as the fire time is within its misfire grace and the worker is not
        stopping."""
        if self._too_late_to_start():
            return Outcome(RunStatus.interrupted, UNSTARTED)
        grace = claim.schedule.policy.misfire_grace or DEFAULT_MISFIRE_GRACE
        give_up = claim.scheduled_for + grace
        delay = FENCE_RETRY_FIRST
        renew = False
        while True:
            me = self.identity
            if claim.owner != me.id:  # claimed before this worker was declared dead
                return Outcome(RunStatus.interrupted, LEASE_LOST)
            try:
                now = self.clock()
                if renew or now >= me.lease_expires_at:
                    if not self._heartbeat(now).lease_kept:
                        return Outcome(RunStatus.interrupted, LEASE_LOST)
                    me = self.identity
                lease_left = (me.lease_expires_at - now).total_seconds()
                started = self.store.start_attempt(
                    claim,
                    me,
                    started_at=max(now, claim.scheduled_for),
                    run_uuid=run_uuid,
                    log_path=None if log_path is None else str(log_path),
                )
                must_start_by = time.monotonic() + lease_left
                if started or renew:
                    break
                renew = True  # refused: once more after renewing the lease, in case only it had run out
                continue
            except StoreError as exc:
                if self.clock() + timedelta(seconds=delay) >= give_up or self._stopping.wait(delay):
                    logger.error("%s for %s: %s", claim.schedule.name, claim.scheduled_for.isoformat(), exc)
                    return Outcome(RunStatus.missed, f"{START_NOT_RECORDED}: {exc.reason}")
                delay = min(delay * 2, self.settings.poll_interval)
        if not started:
            return Outcome(RunStatus.interrupted, FENCED)
        self._at_instant(claim)
        if self._too_late_to_start():
            return Outcome(RunStatus.interrupted, UNSTARTED)
        if time.monotonic() > must_start_by:
            return Outcome(RunStatus.interrupted, STALLED)
        return None

    def _read_due(self, due: datetime | None) -> None:
        """Keep the earliest due time as read. The one it replaces, when earlier, has been
        claimed (by this worker or another one on the host) and, when still ahead, its run is
        about to start: remembered for :meth:`_quiet_before_start`."""
        last = self._last_due
        if last is not None and (due is None or due > last):
            self._claimed_ahead.append(last)
        self._last_due = due
        self._due = (due,)

    def _quiet_before_start(self) -> float:
        """Seconds the loop waits before its round so as not to take the CPU (and this
        process's GIL) from runs claimed ahead that are about to start: until just after
        those starting within :data:`START_GUARD` (its own held runs, and the fire times it saw
        claimed); 0 when there are none."""
        if not self._held and not self._claimed_ahead:  # idle: nothing to look at
            return 0.0
        now = self.clock()
        with self._mutex:
            instants = [*self._held.values()]
        self._claimed_ahead = [at for at in self._claimed_ahead if at > now - START_SETTLE]
        instants += self._claimed_ahead
        soon = [left for left in ((at - now).total_seconds() for at in instants) if left <= START_GUARD]
        return max(0.0, *soon) + START_SETTLE.total_seconds() if soon else 0.0

    def _too_late_to_start(self) -> bool:
        """Claimed runs still start while draining, until the grace period ends or a second signal."""
        deadline = self._drain_deadline
        return self._no_starts.is_set() or (deadline is not None and time.monotonic() >= deadline)

    def _execute(self, claim: Claim) -> None:
        schedule = claim.schedule
        lock: RunLock | None = None
        queue_lock: RunLock | None = None
        try:
            if schedule.policy.overlap is not Overlap.allow:
                lock = self.locks.lock(schedule.name)
                if not lock.acquire(0):  # a held run takes it early when free, else at its instant
                    self._at_instant(claim)  # (the previous run may end by then)
                    if self._too_late_to_start():
                        self._close(claim, RunStatus.interrupted, UNSTARTED)
                        return
                    # a retry (or an attempt handed over) waits for the previous run: it is owed
                    # already; the misfire grace at most, then it meets the overlap policy
                    if not lock.acquire(0) and not (claim.owed and self._wait_for(lock, claim)):
                        lock, queue_lock = self._overlap(claim, lock)
                        if lock is None:
                            return
            self._attempts(claim)
        except Exception:
            logger.exception("%s for %s: the worker failed running it", schedule.name, claim.scheduled_for.isoformat())
            self._close(claim, RunStatus.failed, "worker error")
        finally:
            for held in (lock, queue_lock):
                if held is not None:
                    held.release()
            with self._mutex:
                self._active.pop(claim.run_id, None)

    def _wait_for(self, lock: RunLock, claim: Claim | None = None) -> bool:
        """Wait for ``lock`` until the worker stops or, with ``claim``, its misfire grace has
        passed; True once held."""
        grace = (claim.schedule.policy.misfire_grace or DEFAULT_MISFIRE_GRACE) if claim else None
        deadline = None if grace is None else time.monotonic() + grace.total_seconds()
        while not self._stopping.is_set() and (deadline is None or time.monotonic() < deadline):
            if lock.acquire(0.5):
                return True
        return False

    def _overlap(self, claim: Claim, lock: RunLock) -> tuple[RunLock | None, RunLock | None]:
        """The previous run holds the lock: apply the overlap policy. Returns the held locks,
        or (None, None) when this fire time does not run (its row is closed here)."""
        schedule = claim.schedule
        overlap = schedule.policy.overlap
        if overlap is Overlap.skip:
            self._close(claim, RunStatus.skipped, "the previous run was still going (overlap: skip)")
            return None, None
        if overlap is Overlap.queue:
            queue_lock = self.locks.lock(f"{schedule.name}+queued")  # '+' is in no schedule name
            if not queue_lock.acquire(0):
                self._close(
                    claim, RunStatus.skipped, "a run was already waiting behind the running one (overlap: queue)"
                )
                return None, None
            if self._wait_for(lock):
                queue_lock.release()  # the next fire time may wait now
                return lock, None
            queue_lock.release()
            self._close(claim, RunStatus.interrupted, "the worker stopped while the run waited (overlap: queue)")
            return None, None
        if self._stopping.is_set():  # draining: the running one keeps its grace period
            self._close(claim, RunStatus.interrupted, UNSTARTED)
            return None, None
        # replace: stop the running one, then take its place
        now = self.clock()
        for running in self.store.running_runs(schedule.name):
            if running.id == claim.run_id or running.scheduled_for >= claim.scheduled_for:
                continue  # only earlier runs are replaced; a later one claimed ahead waits for its instant
            reason = f"replaced by the run for {claim.scheduled_for.isoformat()} (overlap: replace)"
            if self.store.interrupt_run(running.id, now, reason):
                self._stop_running(running, reason)
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and not self._no_starts.is_set():
            if lock.acquire(0.5):
                return lock, None
        if self._no_starts.is_set():
            self._close(claim, RunStatus.interrupted, UNSTARTED)
        else:
            self._close(claim, RunStatus.failed, "the running run could not be replaced in time (overlap: replace)")
        return None, None

    def _stop_running(self, run: Run, reason: str) -> None:
        with self._mutex:
            mine = self._active.get(run.id) if run.id is not None else None
        if mine is not None and mine.child is not None:
            mine.child.stop(RunStatus.interrupted, reason)
        elif run.host == self.identity.host and run.pid and run.pid != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.pid, signal.SIGTERM)

    def _attempts(self, claim: Claim) -> None:
        """Run the claim's attempt and, while it fails with retries left, the next ones. Each
        retry is stored with the failure that calls for it (``retry_at``), so that another
        worker takes it if this one stops or dies first; meanwhile this worker keeps it (and
        the schedule's run lock) and takes it itself once the backoff has passed."""
        policy = claim.schedule.policy
        while True:
            started, outcome = self._attempt(claim)  # started None: it did not
            retry = (
                started is not None
                and outcome.status in (RunStatus.failed, RunStatus.timed_out)
                and claim.attempt <= policy.retries
            )
            retry_at = self.clock() + policy.retry_backoff if retry else None
            with self._mutex:
                if retry:
                    self._kept.add(claim.run_id)  # before the write: no round of this worker takes it
            try:
                closed = self._close(
                    claim,
                    outcome.status,
                    outcome.error,
                    outcome.pipeline_run_id,
                    started_at=started,
                    retry_at=retry_at,
                    wait=retry,
                )
                if not closed or not retry:
                    return  # a retry recorded later (the store was down) is taken by a round
                if self._stopping.wait(policy.retry_backoff.total_seconds()):
                    return  # stored: another worker takes it once this one has stopped
                taken = self._take_retry(claim)
            finally:
                with self._mutex:
                    self._kept.discard(claim.run_id)
            if taken is None:
                return
            claim = taken

    def _take_retry(self, claim: Claim) -> Claim | None:
        """Take this worker's own pending retry of ``claim`` (the claim of its next attempt),
        trying again while the store is unreachable; None when another worker took it, or this
        one is stopping."""
        while not self._stopping.is_set():
            try:
                owner = self.identity
                taken = self.store.retry_run(claim.run_id, owner, claim.attempt)
                if taken is None:
                    return None
                return replace(claim, attempt=taken[0], retry_of=taken[1], owner=owner.id, owed=True)
            except StoreError as exc:
                logger.error("%s for %s: could not take its retry: %s", claim.schedule.name, claim.scheduled_for, exc)
                self._stopping.wait(self.settings.poll_interval)
        return None

    def _attempt(self, claim: Claim) -> tuple[datetime | None, Outcome]:
        """Run one attempt; returns when it started (None: it did not, and the outcome says
        why) and how it ended."""
        schedule = claim.schedule
        run_uuid = uuid.uuid4().hex
        request = RunRequest(
            schedule.pipeline,
            dict(schedule.params),
            claim.scheduled_for,
            run_uuid,
            schedule=schedule.name,
            attempt=claim.attempt,
            worker=claim.owner,
        )
        timeout = schedule.policy.timeout.total_seconds() if schedule.policy.timeout else None
        if self.settings.in_process:  # the run id comes with the outcome
            call = prepare_in_process(request)
            if (refused := self._fence(claim, run_uuid, None)) is not None:
                return None, refused
            started = self.clock()
            outcome = call()
            return started, outcome if outcome.pipeline_run_id else replace(outcome, pipeline_run_id=run_uuid)
        stamp = claim.scheduled_for.strftime("%Y%m%dT%H%M%SZ")
        assert self.settings.log_dir is not None  # checked in __init__
        log_path = self.settings.log_dir / schedule.name / f"{stamp}-{claim.attempt}-{run_uuid[:8]}.log"
        if (refused := self._fence(claim, run_uuid, log_path)) is not None:
            return None, refused
        child = ChildRun(request, log_path, self.settings.max_log_bytes)
        with self._mutex:
            active = self._active.get(claim.run_id)
            if active is not None:
                active.child = child
        started = self.clock()
        child.start()
        if child.pid is not None:
            self.store.note_pid(claim.run_id, self._owner(claim), child.pid)
            self._wake.set()  # the loop's next round writes it
        if self._stopping.is_set() and self._stop_now.is_set():
            child.stop(RunStatus.interrupted, "worker stopped at once (second signal)")
        return started, child.wait(timeout)

    def _close(
        self,
        claim: Claim,
        status: RunStatus,
        error: str | None,
        pipeline_run_id: str | None = None,
        *,
        started_at: datetime | None = None,
        retry_at: datetime | None = None,
        wait: bool = True,
    ) -> bool:
        """Record the run's end (with ``retry_at``, the retry it calls for). A retry that did
        not start keeps the outcome of the attempt before it, with a line saying why. With
        ``wait`` False, while the loop serves, the next round records it (with others, in one
        transaction) and this returns True at once; otherwise returns whether the row was
        still this worker's running run. A write the store refuses is queued for the loop's
        rounds, which try it again until the store takes it (False then)."""
        if claim.retry_of is not None and started_at is None:
            status, error = claim.retry_of, f"attempt {claim.attempt}: not started: {error}"
        queue = self._serving and not wait
        finishing = functools.partial(
            self.store.finish_run,
            claim.run_id,
            self._owner(claim),
            status,
            self.clock(),
            error=error,
            pipeline_run_id=pipeline_run_id,
            started_at=started_at,
            retry_at=retry_at,
        )
        try:
            closed = finishing(wait=not queue)
        except StoreError as exc:
            logger.error("%s for %s: %s; recording it later", claim.schedule.name, claim.scheduled_for, exc)
            finishing(wait=False)  # no retry meanwhile: whether the row is still this worker's is unknown
            queue, closed = True, False
        if queue:
            self._wake.set()
        level = logging.INFO if status in (RunStatus.succeeded, RunStatus.skipped) else logging.WARNING
        first_line = error.splitlines()[0][:500].replace("\x00", "\\x00") if error else ""
        kept = "" if queue or closed else "; not recorded: the store no longer has it as this worker's (abandoned)"
        logger.log(level, "%s for %s: %s%s%s%s", claim.schedule.name, claim.scheduled_for.isoformat(), status.value,
                   f" ({first_line})" if error else "",
                   f"; retry at {retry_at.isoformat()}" if retry_at and not kept else "", kept)  # fmt: skip
        return closed
